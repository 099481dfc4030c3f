-- What an organizer sets up with `processor admin` and a front end labels its map with
-- (contract sections 4 and 5.2): an event's time window and each entry's bib number.
--
-- Adding nullable columns without a default changes only the catalog (no table rewrite);
-- the check and the index read the tables once, which are small (events and entries, not
-- positions).
ALTER TABLE events
    ADD COLUMN starts_at timestamptz,
    ADD COLUMN ends_at timestamptz,
    ADD CONSTRAINT events_window_check
        CHECK (starts_at IS NULL OR ends_at IS NULL OR ends_at > starts_at);

ALTER TABLE entries ADD COLUMN bib text;

-- A bib names one entry within its event: the start list import matches entries by it.
CREATE UNIQUE INDEX entries_event_id_bib_idx ON entries (event_id, bib) WHERE bib IS NOT NULL;
