//! Command transcripts of the durable writer: inputs in, exact commands out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::json;

use processor_core::durable::{
    ClaimResult, Command, DeadLetter, DeadLetterId, DurableConfig, DurableStats, DurableWriter,
    Input, ReadFrom, WriteFailure, WriteId, WriteRow,
};
use processor_core::faulty::FaultyThresholds;
use processor_core::stream::{EntryId, StreamEntry};
use processor_core::{decode_position, MonoMillis, Now, UnixMillis};

const T0: UnixMillis = UnixMillis(1_764_324_000_000);
const ZERO: EntryId = EntryId::new(0, 0);

fn config() -> DurableConfig {
    DurableConfig {
        batch_size: 10,
        max_in_flight: 2,
        max_deliveries: 3,
        claim_idle_ms: 30_000,
        claim_interval_ms: 10_000,
        retry_min_ms: 100,
        retry_max_ms: 1_000,
        faulty: FaultyThresholds {
            min_satellites: 3,
            max_future_ms: 60_000,
            min_timestamp: processor_core::UnixMillis(i64::MIN),
        },
    }
}

/// Monotonic time in these tests runs with the wall clock, from far enough back that no
/// test's time is before it; a test of a wall-clock step builds its `Now` itself.
const MONO_AT_T0: u64 = 1 << 40;

fn clocks(wall: UnixMillis) -> Now {
    Now {
        mono: MonoMillis((MONO_AT_T0 as i64 + wall.since(T0)) as u64),
        wall,
    }
}

/// A deadline, as the wall-clock instant it falls on in these tests.
fn wall_of(deadline: MonoMillis) -> UnixMillis {
    UnixMillis(T0.as_i64() + deadline.0 as i64 - MONO_AT_T0 as i64)
}

fn at(ms: i64) -> UnixMillis {
    UnixMillis(T0.as_i64() + ms)
}

fn id(n: u64) -> EntryId {
    EntryId::new(1_000 + n, 0)
}

fn payload_json(value: serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&value).unwrap())
}

fn payload(device: &str, ts: UnixMillis) -> Bytes {
    payload_json(json!({
        "device_id": device,
        "timestamp": ts.as_i64(),
        "latitude": 54.68,
        "longitude": 25.28,
        "satellites": 9,
    }))
}

fn entry(n: u64, device: &str, ts: UnixMillis) -> StreamEntry {
    StreamEntry {
        id: id(n),
        payload: Some(payload(device, ts)),
        deliveries: 1,
    }
}

fn delivered(mut e: StreamEntry, deliveries: u64) -> StreamEntry {
    e.deliveries = deliveries;
    e
}

fn raw_entry(n: u64, payload: Option<&[u8]>) -> StreamEntry {
    StreamEntry {
        id: id(n),
        payload: payload.map(Bytes::copy_from_slice),
        deliveries: 1,
    }
}

fn drain(w: &mut DurableWriter) -> Vec<Command> {
    std::iter::from_fn(|| w.poll_command()).collect()
}

fn read(from: ReadFrom, count: usize) -> Command {
    Command::Read { from, count }
}

fn pending(after: EntryId) -> ReadFrom {
    ReadFrom::Pending { after }
}

fn claim(cursor: EntryId, count: usize) -> Command {
    Command::Claim {
        cursor,
        min_idle_ms: 30_000,
        count,
    }
}

/// What a row stores, compactly: device, fix time and the ids of the entries it carries.
type RowKey = (String, i64, Vec<EntryId>);

fn keys(rows: &[WriteRow]) -> Vec<RowKey> {
    rows.iter()
        .map(|r| {
            (
                r.position.device_id.clone(),
                r.position.ts.as_i64(),
                r.entries.iter().map(|(id, _)| *id).collect(),
            )
        })
        .collect()
}

fn key(device: &str, ts: UnixMillis, ids: &[u64]) -> RowKey {
    (
        device.to_owned(),
        ts.as_i64(),
        ids.iter().map(|n| id(*n)).collect(),
    )
}

/// A write command's id and rows.
type Write = (WriteId, Arc<[WriteRow]>);

/// Splits a transcript's write commands from the rest.
fn split_writes(commands: Vec<Command>) -> (Vec<Write>, Vec<Command>) {
    let mut writes = Vec::new();
    let mut rest = Vec::new();
    for c in commands {
        match c {
            Command::Write { id, rows } => writes.push((id, rows)),
            other => rest.push(other),
        }
    }
    (writes, rest)
}

/// The one write of a transcript, with the other commands.
fn one_write(commands: Vec<Command>) -> (WriteId, Arc<[WriteRow]>, Vec<Command>) {
    let (mut writes, rest) = split_writes(commands);
    assert_eq!(writes.len(), 1, "expected one write, got {writes:?}");
    let (id, rows) = writes.remove(0);
    (id, rows, rest)
}

fn acks(commands: &[Command]) -> Vec<EntryId> {
    commands
        .iter()
        .flat_map(|c| match c {
            Command::Ack(ids) => ids.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn assert_no_acks(commands: &[Command]) {
    assert_eq!(acks(commands), Vec::<EntryId>::new(), "{commands:?}");
}

/// A writer past start-up: the claim sweep found nothing, the pending list was empty, and
/// a read of new entries is in flight.
fn started_with(config: DurableConfig) -> DurableWriter {
    let batch = config.batch_size;
    let mut w = DurableWriter::new(config, clocks(T0));
    assert_eq!(
        drain(&mut w),
        vec![read(pending(ZERO), batch), claim(ZERO, batch)]
    );
    w.handle(clocks(T0), Input::Claimed(Ok(ClaimResult::default())));
    assert_eq!(drain(&mut w), vec![]);
    w.handle(clocks(T0), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![read(ReadFrom::New, batch)]);
    w
}

fn started() -> DurableWriter {
    started_with(config())
}

/// A poll_timeout in the past or present would make the shell spin.
fn assert_no_busy_timer(w: &DurableWriter, now: UnixMillis) {
    if let Some(t) = w.poll_timeout().map(wall_of) {
        assert!(
            t > now,
            "timer {t} is not after now {now}: the shell would spin"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Start-up and reading

#[test]
fn startup_drains_pending_then_claims() {
    let mut w = DurableWriter::new(config(), clocks(T0));
    assert_eq!(
        drain(&mut w),
        vec![read(pending(ZERO), 10), claim(ZERO, 10)]
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.held(), 0);
    assert!(!w.is_stopped());
}

#[test]
fn an_empty_pending_read_switches_to_new() {
    let mut w = DurableWriter::new(config(), clocks(T0));
    drain(&mut w);
    w.handle(clocks(T0), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![read(ReadFrom::New, 10)]);
}

#[test]
fn a_pending_drain_continues_after_the_last_entry_until_empty() {
    let mut w = DurableWriter::new(config(), clocks(T0));
    drain(&mut w);
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![
            delivered(entry(1, "A", T0), 2),
            delivered(entry(2, "B", T0), 2),
        ])),
    );
    let (_, rows, rest) = one_write(drain(&mut w));
    assert_eq!(keys(&rows), vec![key("A", T0, &[1]), key("B", T0, &[2])]);
    assert_eq!(rest, vec![read(pending(id(2)), 10)]);
    w.handle(clocks(T0), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![read(ReadFrom::New, 10)]);
}

#[test]
fn a_read_of_new_entries_keeps_reading_new_ones() {
    let mut w = started();
    w.handle(clocks(T0), Input::Read(Ok(vec![entry(1, "A", T0)])));
    let (_, _, rest) = one_write(drain(&mut w));
    assert_eq!(rest, vec![read(ReadFrom::New, 10)]);
    w.handle(clocks(T0), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![read(ReadFrom::New, 10)]);
}

#[test]
fn reads_ask_only_for_the_room_left() {
    // batch 10, two writes in flight: at most 30 entries held.
    let mut w = started();
    let batch = |from: u64| -> Vec<StreamEntry> {
        (from..from + 10)
            .map(|n| entry(n, &format!("D{n:03}"), T0))
            .collect()
    };
    w.handle(clocks(T0), Input::Read(Ok(batch(0))));
    let (_, rest) = split_writes(drain(&mut w));
    assert_eq!(rest, vec![read(ReadFrom::New, 10)]);
    w.handle(clocks(T0), Input::Read(Ok(batch(10))));
    let (_, rest) = split_writes(drain(&mut w));
    assert_eq!(rest, vec![read(ReadFrom::New, 10)]);
    w.handle(clocks(T0), Input::Read(Ok(batch(20))));
    let (writes, rest) = split_writes(drain(&mut w));
    // Two writes already in flight: the third waits, and there is no room for a read.
    assert!(writes.is_empty());
    assert_eq!(rest, vec![]);
    assert_eq!(w.held(), 30);
}

#[test]
fn a_failed_read_drains_pending_from_the_start_after_a_back_off() {
    let mut w = started();
    w.handle(clocks(T0), Input::Read(Ok(vec![entry(1, "A", T0)])));
    drain(&mut w);
    w.handle(clocks(at(5)), Input::Read(Err("read failed".into())));
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(105)));
    w.handle(clocks(at(104)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![]);
    w.handle(clocks(at(105)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![read(pending(ZERO), 10)]);
    // The retry is out: its time, now past, is no deadline while it is in flight.
    assert_no_busy_timer(&w, at(105));

    // A second failure in a row backs off longer.
    w.handle(clocks(at(200)), Input::Read(Err("read failed".into())));
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(400)));
    w.handle(clocks(at(400)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![read(pending(ZERO), 10)]);

    // The drain skips what is already held, then goes back to new entries.
    w.handle(clocks(at(401)), Input::Read(Ok(vec![entry(1, "A", T0)])));
    assert_eq!(drain(&mut w), vec![read(pending(id(1)), 10)]);
    w.handle(clocks(at(402)), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![read(ReadFrom::New, 10)]);
}

#[test]
fn a_stream_lost_during_a_read_redrains_after_it() {
    let mut w = started();
    w.handle(clocks(T0), Input::Acked(Err("connection lost".into())));
    assert_eq!(drain(&mut w), vec![]);
    w.handle(clocks(T0), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![read(pending(ZERO), 10)]);
}

// ---------------------------------------------------------------------------------------
// Writing and acking

#[test]
fn duplicates_are_one_row_acked_together_after_commit() {
    let mut w = started();
    let first = delivered(entry(1, "356307042441013", T0), 1);
    let second = delivered(entry(2, "356307042441013", T0), 4);
    let second_payload = second.payload.clone().unwrap();
    w.handle(clocks(at(10)), Input::Read(Ok(vec![first.clone(), second])));
    let (write, rows, rest) = one_write(drain(&mut w));
    assert_eq!(rest, vec![read(ReadFrom::New, 10)]);
    assert_eq!(
        &rows[..],
        &[WriteRow {
            position: decode_position(first.payload.as_ref().unwrap()).unwrap(),
            faulty: false,
            received_at: at(10),
            entries: vec![(id(1), 1), (id(2), 4)],
            payloads: vec![first.payload.clone().unwrap(), second_payload],
        }]
    );
    assert_eq!(w.held(), 2);

    w.handle(clocks(at(20)), Input::Written(write, Ok(1)));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1), id(2)])]);
    assert_eq!(w.held(), 0);
    assert_eq!(w.stats().rows_written, 1);
    assert_eq!(w.stats().records, 2);
}

#[test]
fn reads_arriving_while_every_write_is_in_flight_go_out_as_one_write() {
    let mut w = started();
    // Two writes in flight: the slots are taken.
    w.handle(clocks(T0), Input::Read(Ok(vec![entry(1, "A", T0)])));
    let (first, _, _) = one_write(drain(&mut w));
    w.handle(clocks(at(1)), Input::Read(Ok(vec![entry(2, "B", T0)])));
    let (second, _, _) = one_write(drain(&mut w));
    // A trickle of small reads meanwhile, one of them a duplicate of the other's key.
    w.handle(
        clocks(at(2)),
        Input::Read(Ok(vec![entry(3, "D", T0), entry(4, "C", T0)])),
    );
    let (writes, _) = split_writes(drain(&mut w));
    assert!(writes.is_empty(), "no slot: the rows wait");
    w.handle(
        clocks(at(3)),
        Input::Read(Ok(vec![entry(5, "C", at(5)), entry(6, "D", T0)])),
    );
    w.handle(clocks(at(4)), Input::Read(Ok(vec![entry(7, "E", T0)])));
    let (writes, _) = split_writes(drain(&mut w));
    assert!(writes.is_empty());

    w.handle(clocks(at(10)), Input::Written(first, Ok(1)));
    let (_, rows, _) = one_write(drain(&mut w));
    assert_eq!(
        keys(&rows),
        vec![
            key("C", T0, &[4]),
            key("C", at(5), &[5]),
            key("D", T0, &[3, 6]),
            key("E", T0, &[7]),
        ],
        "one write of everything that waited, in key order, one row per key"
    );
    w.handle(clocks(at(11)), Input::Written(second, Ok(1)));
    let (writes, _) = split_writes(drain(&mut w));
    assert!(writes.is_empty(), "nothing left over");
}

#[test]
fn a_waiting_write_takes_no_more_than_a_batch() {
    let mut w = started();
    w.handle(clocks(T0), Input::Read(Ok(vec![entry(1, "A", T0)])));
    let (first, _, _) = one_write(drain(&mut w));
    w.handle(clocks(T0), Input::Read(Ok(vec![entry(2, "A", at(1))])));
    let _ = drain(&mut w);
    let trickle: Vec<_> = (0..12).map(|n| entry(10 + n, "B", at(n as i64))).collect();
    for e in trickle {
        w.handle(clocks(T0), Input::Read(Ok(vec![e])));
    }
    w.handle(clocks(at(10)), Input::Written(first, Ok(1)));
    let (_, rows, _) = one_write(drain(&mut w));
    assert_eq!(rows.len(), 10, "batch_size");
}

#[test]
fn same_device_different_fix_times_are_separate_rows() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![entry(1, "A", T0), entry(2, "A", at(1))])),
    );
    let (_, rows, _) = one_write(drain(&mut w));
    assert_eq!(keys(&rows), vec![key("A", T0, &[1]), key("A", at(1), &[2])]);
}

#[test]
fn nothing_is_acked_before_the_write_commits() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![entry(1, "A", T0), entry(2, "B", T0)])),
    );
    let (write, _, rest) = one_write(drain(&mut w));
    assert_no_acks(&rest);

    // Time passing, further reads and claims do not ack it.
    let mut seen = Vec::new();
    w.handle(clocks(at(10_000)), Input::Timeout);
    seen.extend(drain(&mut w));
    w.handle(
        clocks(at(10_001)),
        Input::Claimed(Ok(ClaimResult::default())),
    );
    seen.extend(drain(&mut w));
    w.handle(clocks(at(10_002)), Input::Read(Ok(vec![])));
    seen.extend(drain(&mut w));
    w.handle(
        clocks(at(10_003)),
        Input::Written(write, Err(WriteFailure::Transient("down".into()))),
    );
    seen.extend(drain(&mut w));
    w.handle(clocks(at(20_000)), Input::Timeout);
    seen.extend(drain(&mut w));
    assert_no_acks(&seen);
    assert_eq!(w.held(), 2);

    let (retry, _) = split_writes(seen);
    assert_eq!(
        retry.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![write]
    );
    w.handle(clocks(at(20_000)), Input::Written(write, Ok(2)));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1), id(2)])]);
}

#[test]
fn an_answer_for_a_write_not_in_flight_is_ignored() {
    let mut w = started();
    w.handle(clocks(T0), Input::Read(Ok(vec![entry(1, "A", T0)])));
    let (write, _, _) = one_write(drain(&mut w));
    w.handle(clocks(T0), Input::Written(write, Ok(1)));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1)])]);
    w.handle(clocks(T0), Input::Written(write, Ok(1)));
    w.handle(clocks(T0), Input::Written(WriteId(99), Ok(1)));
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.stats().rows_written, 1);
}

#[test]
fn rows_are_sorted_by_device_then_fix_time() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![
            entry(1, "B", at(2)),
            entry(2, "A", at(5)),
            entry(3, "B", at(1)),
            entry(4, "A", at(-3)),
            entry(5, "10", at(0)),
            entry(6, "9", at(0)),
        ])),
    );
    let (_, rows, _) = one_write(drain(&mut w));
    // Device ids order as text: "10" before "9".
    assert_eq!(
        keys(&rows),
        vec![
            key("10", at(0), &[5]),
            key("9", at(0), &[6]),
            key("A", at(-3), &[4]),
            key("A", at(5), &[2]),
            key("B", at(1), &[3]),
            key("B", at(2), &[1]),
        ]
    );
}

#[test]
fn rows_beyond_the_batch_size_are_split_and_in_flight_writes_are_capped() {
    let mut w = started_with(DurableConfig {
        batch_size: 2,
        max_in_flight: 2,
        ..config()
    });
    w.handle(
        clocks(T0),
        Input::Read(Ok((1..=5)
            .map(|n| entry(n, &format!("D{n}"), T0))
            .collect())),
    );
    let (writes, _) = split_writes(drain(&mut w));
    assert_eq!(writes.len(), 2);
    assert_eq!(
        keys(&writes[0].1),
        vec![key("D1", T0, &[1]), key("D2", T0, &[2])]
    );
    assert_eq!(
        keys(&writes[1].1),
        vec![key("D3", T0, &[3]), key("D4", T0, &[4])]
    );
    w.handle(clocks(T0), Input::Written(writes[1].0, Ok(2)));
    let (third, rest) = split_writes(drain(&mut w));
    assert_eq!(rest[0], Command::Ack(vec![id(3), id(4)]));
    assert_eq!(third.len(), 1);
    assert_eq!(keys(&third[0].1), vec![key("D5", T0, &[5])]);
}

#[test]
fn the_faulty_flag_follows_the_rules_at_the_time_given() {
    let now = at(1_000);
    let mut w = started();
    let at_zero = payload_json(json!({
        "device_id": "N", "timestamp": now.as_i64(), "latitude": 0, "longitude": 0, "satellites": 9,
    }));
    let few_satellites = payload_json(json!({
        "device_id": "S", "timestamp": now.as_i64(), "latitude": 1, "longitude": 1, "satellites": 2,
    }));
    let enough_satellites = payload_json(json!({
        "device_id": "T", "timestamp": now.as_i64(), "latitude": 1, "longitude": 1, "satellites": 3,
    }));
    w.handle(
        clocks(now),
        Input::Read(Ok(vec![
            entry(1, "F0", now.plus(60_000)),
            entry(2, "F1", now.plus(60_001)),
            raw_entry(3, Some(&at_zero[..])),
            raw_entry(4, Some(&few_satellites[..])),
            raw_entry(5, Some(&enough_satellites[..])),
            entry(6, "P", T0),
        ])),
    );
    let (_, rows, _) = one_write(drain(&mut w));
    let flags: Vec<(&str, bool, UnixMillis)> = rows
        .iter()
        .map(|r| (r.position.device_id.as_str(), r.faulty, r.received_at))
        .collect();
    assert_eq!(
        flags,
        vec![
            ("F0", false, now),
            ("F1", true, now),
            ("N", true, now),
            ("P", false, now),
            ("S", true, now),
            ("T", false, now),
        ]
    );
}

#[test]
fn a_wall_clock_step_moves_no_deadline_and_the_rules_read_the_wall_clock_as_it_is() {
    let mut w = started();
    let claim_due = w.poll_timeout();
    assert_eq!(claim_due, Some(MonoMillis(MONO_AT_T0 + 10_000)));
    // The wall clock jumps an hour ahead while 1 ms passes: the claim sweep is not due.
    let ahead = Now {
        mono: MonoMillis(MONO_AT_T0 + 1),
        wall: at(3_600_000),
    };
    w.handle(ahead, Input::Timeout);
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.poll_timeout(), claim_due);
    // Then it steps back: a fix 60,001 ms after the wall clock's reading is in the future
    // (FAULTY_MAX_FUTURE_MS 60 s), and is received at that reading.
    let back = Now {
        mono: MonoMillis(MONO_AT_T0 + 2),
        wall: at(-60_001),
    };
    w.handle(back, Input::Read(Ok(vec![entry(1, "A", at(0))])));
    let (_, rows, _) = one_write(drain(&mut w));
    assert_eq!((rows[0].faulty, rows[0].received_at), (true, at(-60_001)));
    assert_eq!(w.poll_timeout(), claim_due);
}

// ---------------------------------------------------------------------------------------
// Decode errors and dead letters

#[test]
fn decode_errors_are_dead_lettered_then_acked() {
    let mut w = started();
    let not_json: &[u8] = b"{not json";
    let no_lat = payload_json(json!({"device_id": "A", "timestamp": 0, "longitude": 1}));
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![
            raw_entry(1, Some(not_json)),
            raw_entry(2, None),
            entry(3, "A", T0),
            raw_entry(4, Some(&no_lat[..])),
        ])),
    );
    let (write, _, rest) = one_write(drain(&mut w));
    assert_eq!(
        rest,
        vec![
            Command::DeadLetter {
                id: DeadLetterId(0),
                entries: vec![
                    DeadLetter {
                        source_id: id(1),
                        payload: Some(Bytes::from_static(b"{not json")),
                        reason: decode_position(not_json).unwrap_err().to_string(),
                    },
                    DeadLetter {
                        source_id: id(2),
                        payload: None,
                        reason: "entry has no payload field".into(),
                    },
                    DeadLetter {
                        source_id: id(4),
                        payload: Some(no_lat),
                        reason: "missing required field `latitude`".into(),
                    },
                ],
            },
            read(ReadFrom::New, 10),
        ]
    );
    assert_eq!(w.stats().decode_errors, 3);

    w.handle(clocks(T0), Input::DeadLettered(DeadLetterId(0), Ok(())));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1), id(2), id(4)])]);
    assert_eq!(w.held(), 1);
    w.handle(clocks(T0), Input::Written(write, Ok(1)));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(3)])]);
    assert_eq!(w.stats().dead_lettered, 3);
}

#[test]
fn a_failed_dead_letter_is_retried_and_acked_only_once_stored() {
    let mut w = started();
    w.handle(clocks(T0), Input::Read(Ok(vec![raw_entry(1, Some(b"[]"))])));
    let first = drain(&mut w);
    let Command::DeadLetter { id: dl, entries } = first[0].clone() else {
        panic!("expected a dead letter first, got {first:?}");
    };
    w.handle(
        clocks(at(1)),
        Input::DeadLettered(dl, Err("redis away".into())),
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(101)));
    w.handle(clocks(at(101)), Input::Timeout);
    assert_eq!(
        drain(&mut w),
        vec![Command::DeadLetter {
            id: dl,
            entries: entries.clone()
        }]
    );
    w.handle(
        clocks(at(102)),
        Input::DeadLettered(dl, Err("redis away".into())),
    );
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(302)));
    w.handle(clocks(at(302)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![Command::DeadLetter { id: dl, entries }]);
    w.handle(clocks(at(303)), Input::DeadLettered(dl, Ok(())));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1)])]);
    assert_eq!(w.held(), 0);
}

// ---------------------------------------------------------------------------------------
// Transient failures

#[test]
fn a_transient_failure_retries_the_same_rows_after_the_back_off() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![entry(1, "A", T0), entry(2, "B", T0)])),
    );
    let (write, rows, _) = one_write(drain(&mut w));

    w.handle(
        clocks(at(50)),
        Input::Written(write, Err(WriteFailure::Transient("timeout".into()))),
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(150)));
    w.handle(clocks(at(149)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![]);
    w.handle(clocks(at(150)), Input::Timeout);
    let retried = drain(&mut w);
    assert_eq!(
        retried,
        vec![Command::Write {
            id: write,
            rows: rows.clone()
        }]
    );

    // Doubling, then capped at retry_max_ms.
    let mut now = at(150);
    for delay in [200, 400, 800, 1_000, 1_000] {
        w.handle(
            clocks(now),
            Input::Written(write, Err(WriteFailure::Transient("deadlock".into()))),
        );
        assert_eq!(drain(&mut w), vec![]);
        assert_eq!(w.poll_timeout().map(wall_of), Some(now.plus(delay)));
        now = now.plus(delay);
        w.handle(clocks(now), Input::Timeout);
        assert_eq!(
            drain(&mut w),
            vec![Command::Write {
                id: write,
                rows: rows.clone()
            }]
        );
    }
    assert_eq!(w.stats().write_retries, 6);

    w.handle(clocks(now), Input::Written(write, Ok(2)));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1), id(2)])]);
}

#[test]
fn a_transient_failure_leaves_delivery_counts_alone() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![delivered(entry(1, "A", T0), 3)])),
    );
    let (write, _, _) = one_write(drain(&mut w));
    // At max_deliveries already: a transient failure still must not dead-letter it.
    w.handle(
        clocks(T0),
        Input::Written(write, Err(WriteFailure::Transient("down".into()))),
    );
    w.handle(clocks(at(100)), Input::Timeout);
    let (writes, rest) = split_writes(drain(&mut w));
    assert_eq!(writes[0].1[0].entries, vec![(id(1), 3)]);
    assert!(rest.is_empty(), "{rest:?}");
}

// ---------------------------------------------------------------------------------------
// Rejected rows

fn four_rows(w: &mut DurableWriter, deliveries: u64) -> (WriteId, Arc<[WriteRow]>) {
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![
            delivered(entry(1, "A", T0), deliveries),
            delivered(entry(2, "B", T0), deliveries),
            delivered(entry(3, "C", T0), deliveries),
            delivered(entry(4, "D", T0), deliveries),
        ])),
    );
    let (write, rows, _) = one_write(drain(w));
    (write, rows)
}

fn rejected() -> Result<u64, WriteFailure> {
    Err(WriteFailure::Rejected {
        reason: "value out of range".into(),
        row: None,
    })
}

#[test]
fn a_rejected_write_is_halved_until_the_bad_row_stands_alone() {
    let mut w = started();
    let (write, _) = four_rows(&mut w, 1);

    w.handle(clocks(T0), Input::Written(write, rejected()));
    let (halves, rest) = split_writes(drain(&mut w));
    assert_eq!(rest, vec![]);
    let [(ab, ab_rows), (cd, cd_rows)] = &halves[..] else {
        panic!("expected two halves, got {halves:?}");
    };
    assert_eq!(keys(ab_rows), vec![key("A", T0, &[1]), key("B", T0, &[2])]);
    assert_eq!(keys(cd_rows), vec![key("C", T0, &[3]), key("D", T0, &[4])]);

    w.handle(clocks(T0), Input::Written(*ab, Ok(2)));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1), id(2)])]);

    w.handle(clocks(T0), Input::Written(*cd, rejected()));
    let (quarters, rest) = split_writes(drain(&mut w));
    assert_eq!(rest, vec![]);
    let [(c, c_rows), (d, d_rows)] = &quarters[..] else {
        panic!("expected two single rows, got {quarters:?}");
    };
    assert_eq!(keys(c_rows), vec![key("C", T0, &[3])]);
    assert_eq!(keys(d_rows), vec![key("D", T0, &[4])]);

    w.handle(clocks(T0), Input::Written(*d, Ok(1)));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(4)])]);

    // Alone and rejected, delivered once of three: released for a later delivery.
    w.handle(clocks(T0), Input::Written(*c, rejected()));
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.held(), 0);
    assert_eq!(
        w.stats(),
        DurableStats {
            records: 4,
            decode_errors: 0,
            rows_written: 3,
            dead_lettered: 0,
            rejected_rows: 1,
            write_retries: 0,
        }
    );
}

#[test]
fn a_rejected_row_index_splits_that_row_out_directly() {
    let mut w = started();
    let (write, _) = four_rows(&mut w, 1);
    w.handle(
        clocks(T0),
        Input::Written(
            write,
            Err(WriteFailure::Rejected {
                reason: "bad".into(),
                row: Some(2),
            }),
        ),
    );
    let (parts, _) = split_writes(drain(&mut w));
    let parts: Vec<Vec<RowKey>> = parts.iter().map(|(_, rows)| keys(rows)).collect();
    assert_eq!(
        parts,
        vec![
            vec![key("C", T0, &[3])],
            vec![key("A", T0, &[1]), key("B", T0, &[2]), key("D", T0, &[4])],
        ]
    );
}

/// A row index from the store that is not in the batch (a shell or driver bug) must not be
/// trusted: the write is halved as if no row had been named.
#[test]
fn a_rejected_row_index_past_the_batch_is_ignored_and_the_write_halved() {
    for bad in [3, 4, 5, usize::MAX] {
        let mut w = started();
        let (write, _) = four_rows(&mut w, 1);
        w.handle(
            clocks(T0),
            Input::Written(
                write,
                Err(WriteFailure::Rejected {
                    reason: "bad".into(),
                    row: Some(bad),
                }),
            ),
        );
        let (parts, rest) = split_writes(drain(&mut w));
        assert_eq!(rest, vec![], "{bad}");
        let parts: Vec<Vec<RowKey>> = parts.iter().map(|(_, rows)| keys(rows)).collect();
        let expected = if bad == 3 {
            // The last row of the four, split out directly.
            vec![
                vec![key("D", T0, &[4])],
                vec![key("A", T0, &[1]), key("B", T0, &[2]), key("C", T0, &[3])],
            ]
        } else {
            vec![
                vec![key("A", T0, &[1]), key("B", T0, &[2])],
                vec![key("C", T0, &[3]), key("D", T0, &[4])],
            ]
        };
        assert_eq!(parts, expected, "{bad}");
    }
}

#[test]
fn a_lone_rejected_row_named_by_index_is_settled_not_split() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![delivered(entry(1, "A", T0), 2)])),
    );
    let (write, _, _) = one_write(drain(&mut w));
    w.handle(
        clocks(T0),
        Input::Written(
            write,
            Err(WriteFailure::Rejected {
                reason: "bad".into(),
                row: Some(0),
            }),
        ),
    );
    // Released for a later delivery, as with no index: nothing is written again.
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.held(), 0);
    assert_eq!(w.stats().rejected_rows, 1);
}

#[test]
fn a_lone_rejected_row_below_max_deliveries_is_released() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![delivered(entry(1, "A", T0), 2)])),
    );
    let (write, _, _) = one_write(drain(&mut w));
    w.handle(clocks(T0), Input::Written(write, rejected()));
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.held(), 0);
    assert_eq!(w.stats().dead_lettered, 0);
}

#[test]
fn a_lone_rejected_row_at_max_deliveries_is_dead_lettered_then_acked() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![delivered(entry(1, "A", T0), 3)])),
    );
    let (write, _, _) = one_write(drain(&mut w));
    w.handle(clocks(T0), Input::Written(write, rejected()));
    assert_eq!(
        drain(&mut w),
        vec![Command::DeadLetter {
            id: DeadLetterId(0),
            entries: vec![DeadLetter {
                source_id: id(1),
                payload: entry(1, "A", T0).payload,
                reason: "rejected by Postgres: value out of range".into(),
            }],
        }]
    );
    assert_eq!(w.held(), 1);
    w.handle(clocks(T0), Input::DeadLettered(DeadLetterId(0), Ok(())));
    assert_eq!(drain(&mut w), vec![Command::Ack(vec![id(1)])]);
    assert_eq!(w.held(), 0);
    assert_eq!(w.stats().dead_lettered, 1);
}

#[test]
fn a_rejected_row_of_duplicates_settles_each_entry_by_its_own_count() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![
            delivered(entry(1, "A", T0), 5),
            delivered(entry(2, "A", T0), 1),
        ])),
    );
    let (write, _, _) = one_write(drain(&mut w));
    w.handle(clocks(T0), Input::Written(write, rejected()));
    let commands = drain(&mut w);
    let [Command::DeadLetter { entries, .. }] = &commands[..] else {
        panic!("expected one dead letter, got {commands:?}");
    };
    assert_eq!(
        entries.iter().map(|d| d.source_id).collect::<Vec<_>>(),
        vec![id(1)]
    );
    // The other entry was released; the dead-lettered one is held until stored.
    assert_eq!(w.held(), 1);
}

#[test]
fn a_released_row_comes_back_through_a_claim_and_is_dead_lettered_at_the_limit() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![delivered(entry(1, "A", T0), 2)])),
    );
    let (write, _, _) = one_write(drain(&mut w));
    w.handle(clocks(T0), Input::Written(write, rejected()));
    drain(&mut w);

    w.handle(clocks(at(10_000)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![claim(ZERO, 10)]);
    w.handle(
        clocks(at(10_001)),
        Input::Claimed(Ok(ClaimResult {
            next_cursor: ZERO,
            entries: vec![delivered(entry(1, "A", T0), 3)],
            deleted: vec![],
        })),
    );
    let (again, _, _) = one_write(drain(&mut w));
    w.handle(clocks(at(10_002)), Input::Written(again, rejected()));
    let commands = drain(&mut w);
    assert!(
        matches!(&commands[..], [Command::DeadLetter { entries, .. }] if entries[0].source_id == id(1)),
        "{commands:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Claims

#[test]
fn claims_sweep_page_by_page_then_wait_for_the_interval() {
    let mut w = started();
    w.handle(clocks(at(9_999)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(10_000)));
    w.handle(clocks(at(10_000)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![claim(ZERO, 10)]);

    w.handle(
        clocks(at(10_001)),
        Input::Claimed(Ok(ClaimResult {
            next_cursor: EntryId::new(77, 1),
            entries: vec![delivered(entry(1, "A", T0), 2)],
            deleted: vec![id(2)],
        })),
    );
    let (_, rows, rest) = one_write(drain(&mut w));
    assert_eq!(rows[0].entries, vec![(id(1), 2)]);
    assert_eq!(
        rest,
        vec![
            Command::DeadLetter {
                id: DeadLetterId(0),
                entries: vec![DeadLetter {
                    source_id: id(2),
                    payload: None,
                    reason: "entry was deleted from the stream before it was stored".into(),
                }],
            },
            claim(EntryId::new(77, 1), 10),
        ]
    );
    // The claimed entry and the deleted one are both taken in.
    assert_eq!(w.stats().records, 2);

    w.handle(
        clocks(at(10_002)),
        Input::Claimed(Ok(ClaimResult::default())),
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(20_002)));
}

#[test]
fn a_claim_skips_entries_already_held() {
    let mut w = started();
    w.handle(clocks(T0), Input::Read(Ok(vec![entry(1, "A", T0)])));
    drain(&mut w);
    w.handle(clocks(at(10_000)), Input::Timeout);
    drain(&mut w);
    w.handle(
        clocks(at(10_000)),
        Input::Claimed(Ok(ClaimResult {
            next_cursor: ZERO,
            entries: vec![delivered(entry(1, "A", T0), 2)],
            deleted: vec![],
        })),
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.stats().records, 1);
}

#[test]
fn a_failed_claim_starts_over_at_the_next_interval() {
    let mut w = started();
    w.handle(clocks(at(10_000)), Input::Timeout);
    drain(&mut w);
    w.handle(
        clocks(at(10_000)),
        Input::Claimed(Ok(ClaimResult {
            next_cursor: EntryId::new(5, 0),
            ..ClaimResult::default()
        })),
    );
    assert_eq!(drain(&mut w), vec![claim(EntryId::new(5, 0), 10)]);
    w.handle(
        clocks(at(10_001)),
        Input::Claimed(Err("claim failed".into())),
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(20_001)));
    w.handle(clocks(at(20_001)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![claim(ZERO, 10)]);
}

// ---------------------------------------------------------------------------------------
// Timers

#[test]
fn a_full_writer_does_not_ask_to_be_woken_for_what_it_cannot_do() {
    // batch 2, one write in flight: at most 4 entries held.
    let mut w = started_with(DurableConfig {
        batch_size: 2,
        max_in_flight: 1,
        ..config()
    });
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![entry(1, "A", T0), entry(2, "B", T0)])),
    );
    let (first, _, rest) = one_write(drain(&mut w));
    assert_eq!(rest, vec![read(ReadFrom::New, 2)]);
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![entry(3, "C", T0), entry(4, "D", T0)])),
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.held(), 4);

    // The claim sweep falls due while nothing can be taken in.
    w.handle(clocks(at(10_000)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![]);
    assert_no_busy_timer(&w, at(10_000));
    w.handle(clocks(at(20_000)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![]);
    assert_no_busy_timer(&w, at(20_000));

    // Room again: the second write and the overdue claim go out; the claim takes the
    // room (claims go first: under a steady stream, reads would otherwise always take it),
    // and the read follows once the sweep is done, so `max_held` is never overshot.
    w.handle(clocks(at(20_001)), Input::Written(first, Ok(2)));
    let (second, rest) = split_writes(drain(&mut w));
    assert_eq!(second.len(), 1);
    assert_eq!(
        rest,
        vec![
            Command::Ack(vec![id(1), id(2)]),
            Command::Claim {
                cursor: ZERO,
                min_idle_ms: 30_000,
                count: 2
            },
        ]
    );
    w.handle(
        clocks(at(20_002)),
        Input::Claimed(Ok(ClaimResult::default())),
    );
    assert_eq!(drain(&mut w), vec![read(ReadFrom::New, 2)]);
}

// ---------------------------------------------------------------------------------------
// Shutdown

#[test]
fn shutdown_stops_reads_and_claims_but_settles_what_is_held() {
    let mut w = started();
    w.handle(
        clocks(T0),
        Input::Read(Ok(vec![entry(1, "A", T0), raw_entry(2, Some(b"null"))])),
    );
    let commands = drain(&mut w);
    let (write, _, _) = one_write(commands);

    w.handle(clocks(at(1)), Input::Shutdown);
    assert_eq!(drain(&mut w), vec![]);
    assert!(!w.is_stopped());

    // The read that was in flight still counts, and what it brought is settled too.
    w.handle(clocks(at(2)), Input::Read(Ok(vec![entry(3, "B", T0)])));
    let (late, _, rest) = one_write(drain(&mut w));
    assert_eq!(rest, vec![]);

    // No claim sweep and no read however long it takes.
    w.handle(
        clocks(at(3)),
        Input::Written(write, Err(WriteFailure::Transient("down".into()))),
    );
    assert_eq!(w.poll_timeout().map(wall_of), Some(at(103)));
    w.handle(clocks(at(50_000)), Input::Timeout);
    let (retry, rest) = split_writes(drain(&mut w));
    assert_eq!(retry.len(), 1);
    assert_eq!(rest, vec![]);
    assert!(!w.is_stopped());

    w.handle(clocks(at(50_001)), Input::Written(write, Ok(1)));
    w.handle(clocks(at(50_002)), Input::Written(late, Ok(1)));
    w.handle(
        clocks(at(50_003)),
        Input::DeadLettered(DeadLetterId(0), Ok(())),
    );
    assert_eq!(
        drain(&mut w),
        vec![
            Command::Ack(vec![id(1)]),
            Command::Ack(vec![id(3)]),
            Command::Ack(vec![id(2)]),
        ]
    );
    assert!(w.is_stopped());
    assert_eq!(w.poll_timeout().map(wall_of), None);
    w.handle(clocks(at(100_000)), Input::Timeout);
    assert_eq!(drain(&mut w), vec![]);
}

#[test]
fn shutdown_while_idle_stops_once_the_read_returns() {
    let mut w = started();
    w.handle(clocks(T0), Input::Shutdown);
    assert_eq!(drain(&mut w), vec![]);
    assert!(!w.is_stopped());
    w.handle(clocks(T0), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![]);
    assert!(w.is_stopped());
}

#[test]
fn shutdown_with_a_claim_in_flight_waits_for_it() {
    let mut w = DurableWriter::new(config(), clocks(T0));
    drain(&mut w);
    w.handle(clocks(T0), Input::Shutdown);
    w.handle(clocks(T0), Input::Read(Ok(vec![])));
    assert_eq!(drain(&mut w), vec![]);
    assert!(!w.is_stopped());
    w.handle(clocks(T0), Input::Claimed(Ok(ClaimResult::default())));
    assert_eq!(drain(&mut w), vec![]);
    assert!(w.is_stopped());
}

// ---------------------------------------------------------------------------------------
// A random shell: any order of answers keeps the ack rules

/// What the random shell does next; answers are skipped when nothing of their kind is
/// outstanding.
#[derive(Debug, Clone)]
enum Action {
    /// Answer the read; `kinds` picks each new entry's payload (see `kind_payload`).
    Read {
        kinds: Vec<u8>,
        fail: bool,
    },
    Claim {
        fail: bool,
    },
    /// Answer one outstanding write: 0 commit, 1 transient, 2 rejected, 3 rejected at a row.
    Write {
        pick: usize,
        outcome: u8,
    },
    DeadLetter {
        pick: usize,
        ok: bool,
    },
    Tick,
    StreamLost,
}

/// Few devices and fix times, so duplicates are common; one kind in eight undecodable.
fn kind_payload(kind: u8) -> Option<Bytes> {
    match kind % 16 {
        15 => None,
        14 => Some(Bytes::from_static(b"{\"device_id\":")),
        k => Some(payload(
            ["A", "B", "C"][k as usize % 3],
            at((k / 3 % 3) as i64),
        )),
    }
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (prop::collection::vec(any::<u8>(), 0..6), prop::bool::weighted(0.15))
            .prop_map(|(kinds, fail)| Action::Read { kinds, fail }),
        1 => prop::bool::weighted(0.2).prop_map(|fail| Action::Claim { fail }),
        4 => (any::<usize>(), prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)])
            .prop_map(|(pick, outcome)| Action::Write { pick, outcome }),
        2 => (any::<usize>(), prop::bool::weighted(0.7))
            .prop_map(|(pick, ok)| Action::DeadLetter { pick, ok }),
        2 => Just(Action::Tick),
        1 => Just(Action::StreamLost),
    ]
}

/// Plays Redis and Postgres for a writer, checking every command it issues.
struct Shell {
    w: DurableWriter,
    config: DurableConfig,
    now: UnixMillis,
    next_id: u64,
    /// Delivered to this consumer and not acked: id -> (payload, deliveries).
    pending: BTreeMap<EntryId, (Option<Bytes>, u64)>,
    read: Option<(ReadFrom, usize)>,
    claim: Option<(EntryId, usize)>,
    writes: Vec<Write>,
    dead: Vec<(DeadLetterId, Vec<DeadLetter>)>,
    /// Entries stored by a committed write or copied to the dead-letter stream.
    settled: BTreeSet<EntryId>,
    acked: BTreeSet<EntryId>,
}

impl Shell {
    fn new(config: DurableConfig) -> Shell {
        let mut shell = Shell {
            w: DurableWriter::new(config.clone(), clocks(T0)),
            config,
            now: T0,
            next_id: 1,
            pending: BTreeMap::new(),
            read: None,
            claim: None,
            writes: Vec::new(),
            dead: Vec::new(),
            settled: BTreeSet::new(),
            acked: BTreeSet::new(),
        };
        shell.collect();
        shell
    }

    fn collect(&mut self) {
        while let Some(command) = self.w.poll_command() {
            match command {
                Command::Read { from, count } => {
                    assert!(self.read.is_none(), "two reads in flight");
                    assert!(count >= 1 && count <= self.config.batch_size);
                    self.read = Some((from, count));
                }
                Command::Claim { cursor, count, .. } => {
                    assert!(self.claim.is_none(), "two claims in flight");
                    assert!(count >= 1 && count <= self.config.batch_size);
                    self.claim = Some((cursor, count));
                }
                Command::Write { id, rows } => {
                    assert!(!rows.is_empty() && rows.len() <= self.config.batch_size);
                    for pair in rows.windows(2) {
                        let key = |r: &WriteRow| (r.position.device_id.clone(), r.position.ts);
                        assert!(key(&pair[0]) < key(&pair[1]), "rows unsorted or repeated");
                    }
                    assert!(self.writes.iter().all(|(w, _)| *w != id));
                    self.writes.push((id, rows));
                    assert!(self.writes.len() <= self.config.max_in_flight);
                }
                Command::DeadLetter { id, entries } => {
                    assert!(!entries.is_empty());
                    self.dead.push((id, entries));
                }
                Command::Ack(ids) => {
                    for id in ids {
                        assert!(
                            self.settled.contains(&id),
                            "{id} acked before it was stored"
                        );
                        assert!(self.pending.remove(&id).is_some(), "{id} acked twice");
                        self.acked.insert(id);
                    }
                }
            }
        }
        if let Some(t) = self.w.poll_timeout().map(wall_of) {
            assert!(
                t > self.now,
                "timer {t} not after now {}: busy loop",
                self.now
            );
        }
    }

    fn deliver(&mut self, ids: Vec<EntryId>) -> Vec<StreamEntry> {
        ids.into_iter()
            .map(|id| {
                let (payload, deliveries) = self.pending.get_mut(&id).unwrap();
                *deliveries += 1;
                StreamEntry {
                    id,
                    payload: payload.clone(),
                    deliveries: *deliveries,
                }
            })
            .collect()
    }

    fn answer_read(&mut self, kinds: &[u8], fail: bool) {
        let Some((from, count)) = self.read.take() else {
            return;
        };
        let ids: Vec<EntryId> = match from {
            ReadFrom::New => kinds
                .iter()
                .take(count)
                .map(|&k| {
                    let id = EntryId::new(self.next_id, 0);
                    self.next_id += 1;
                    self.pending.insert(id, (kind_payload(k), 0));
                    id
                })
                .collect(),
            ReadFrom::Pending { after } => self
                .pending
                .range(EntryId::new(after.ms, after.seq + 1)..)
                .take(count)
                .map(|(id, _)| *id)
                .collect(),
        };
        // A failed read may still have been delivered: Redis counts it, the writer never
        // sees it.
        let entries = self.deliver(ids);
        if fail {
            self.w
                .handle(clocks(self.now), Input::Read(Err("read failed".into())));
        } else {
            self.w.handle(clocks(self.now), Input::Read(Ok(entries)));
        }
    }

    fn answer_claim(&mut self, fail: bool) {
        let Some((cursor, count)) = self.claim.take() else {
            return;
        };
        if fail {
            self.w
                .handle(clocks(self.now), Input::Claimed(Err("claim failed".into())));
            return;
        }
        let mut ids = self.pending.range(cursor..).map(|(id, _)| *id);
        let page: Vec<EntryId> = ids.by_ref().take(count).collect();
        let next_cursor = ids.next().unwrap_or_default();
        let entries = self.deliver(page);
        self.w.handle(
            clocks(self.now),
            Input::Claimed(Ok(ClaimResult {
                next_cursor,
                entries,
                deleted: vec![],
            })),
        );
    }

    fn answer_write(&mut self, pick: usize, outcome: u8) {
        if self.writes.is_empty() {
            return;
        }
        let (id, rows) = self.writes.remove(pick % self.writes.len());
        let outcome = match outcome {
            0 => {
                for row in rows.iter() {
                    self.settled.extend(row.entries.iter().map(|(id, _)| *id));
                }
                Ok(rows.len() as u64)
            }
            1 => Err(WriteFailure::Transient("down".into())),
            2 => Err(WriteFailure::Rejected {
                reason: "bad".into(),
                row: None,
            }),
            _ => Err(WriteFailure::Rejected {
                reason: "bad".into(),
                row: Some(pick % rows.len()),
            }),
        };
        self.w.handle(clocks(self.now), Input::Written(id, outcome));
    }

    fn answer_dead_letter(&mut self, pick: usize, ok: bool) {
        if self.dead.is_empty() {
            return;
        }
        let (id, entries) = self.dead.remove(pick % self.dead.len());
        if ok {
            self.settled.extend(entries.iter().map(|d| d.source_id));
            self.w
                .handle(clocks(self.now), Input::DeadLettered(id, Ok(())));
        } else {
            self.w.handle(
                clocks(self.now),
                Input::DeadLettered(id, Err("down".into())),
            );
        }
    }

    fn tick(&mut self) {
        let next = self
            .w
            .poll_timeout()
            .map(wall_of)
            .unwrap_or(self.now.plus(1_000));
        self.now = next.max(self.now.plus(1));
        self.w.handle(clocks(self.now), Input::Timeout);
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::Read { kinds, fail } => self.answer_read(kinds, *fail),
            Action::Claim { fail } => self.answer_claim(*fail),
            Action::Write { pick, outcome } => self.answer_write(*pick, *outcome),
            Action::DeadLetter { pick, ok } => self.answer_dead_letter(*pick, *ok),
            Action::Tick => self.tick(),
            Action::StreamLost => self.w.handle(
                clocks(self.now),
                Input::Acked(Err("connection lost".into())),
            ),
        }
        self.collect();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_random_shell_never_sees_an_early_ack_and_shutdown_settles(
        actions in prop::collection::vec(action(), 0..80),
        batch_size in 1usize..5,
        max_in_flight in 1usize..3,
    ) {
        let config = DurableConfig {
            batch_size,
            max_in_flight,
            max_deliveries: 3,
            ..config()
        };
        let mut shell = Shell::new(config.clone());
        for action in &actions {
            shell.apply(action);
            prop_assert!(shell.w.held() <= 2 * config.max_held(), "held {}", shell.w.held());
        }

        shell.w.handle(clocks(shell.now), Input::Shutdown);
        shell.collect();
        let mut rounds = 0;
        while !shell.w.is_stopped() {
            rounds += 1;
            prop_assert!(rounds < 100, "shutdown does not settle");
            shell.apply(&Action::Read { kinds: vec![], fail: false });
            shell.apply(&Action::Claim { fail: false });
            while !shell.writes.is_empty() {
                shell.apply(&Action::Write { pick: 0, outcome: 0 });
            }
            while !shell.dead.is_empty() {
                shell.apply(&Action::DeadLetter { pick: 0, ok: true });
            }
            shell.apply(&Action::Tick);
        }
        prop_assert_eq!(shell.w.held(), 0);
        prop_assert!(shell.read.is_none() && shell.claim.is_none());
        prop_assert!(shell.writes.is_empty() && shell.dead.is_empty());
        // Acks are never lost here, so everything stored was acked.
        prop_assert_eq!(&shell.settled, &shell.acked);
        // Once stopped, no read, no claim, nothing.
        shell.apply(&Action::Tick);
        prop_assert!(shell.read.is_none() && shell.claim.is_none());
    }
}
