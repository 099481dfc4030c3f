-- Events, their entries and the devices each entry carries: the source of the
-- device-to-event map and of topic visibility.
CREATE TABLE events (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    visibility  text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE entries (
    id          uuid PRIMARY KEY,
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entries_event_id_idx ON entries (event_id);

CREATE TABLE entry_devices (
    entry_id    uuid NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    device_id   text NOT NULL,
    PRIMARY KEY (entry_id, device_id)
);
CREATE INDEX entry_devices_device_id_idx ON entry_devices (device_id);

-- Every position ever received, once per (device, fix time): the first stored wins.
CREATE TABLE positions (
    device_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    latitude     double precision NOT NULL,
    longitude    double precision NOT NULL,
    altitude     double precision NOT NULL,
    angle        double precision NOT NULL,
    speed        double precision NOT NULL,
    satellites   smallint NOT NULL,
    priority     smallint NOT NULL,
    event_io_id  integer,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb,
    faulty       boolean NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, ts)
);

-- The newest non-faulty position of each device, moved only forward in fix time by the
-- same statement that stores positions: snapshots read one row per device from here.
CREATE TABLE latest_positions (
    device_id    text PRIMARY KEY,
    ts           timestamptz NOT NULL,
    latitude     double precision NOT NULL,
    longitude    double precision NOT NULL,
    speed        double precision NOT NULL,
    angle        double precision NOT NULL
);
