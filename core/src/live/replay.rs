//! One paced replay (contract section 5.1): its clock and its read-ahead.
//!
//! The clock shows event time: `from` at the start (or the seek target), advancing by the
//! time elapsed times `speed` while it runs. It runs only while the replay plays, is not
//! paused, its client is not behind (the hub says when its outbound queue is over the
//! conflate threshold) and it has positions to show (or has read everything): so a slow
//! reader, or a slow Postgres, slows the replay instead of making it skip or burst, and
//! nothing is ever dropped or conflated. The clock is integrated step by step (each
//! step's elapsed time at the speed of that step), so pausing and changing speed need no
//! anchors.
//!
//! Positions are read ahead in pages along the replay key (ts, device), at most
//! `read_ahead` held at once; a new page is asked for once half of them went out.

use std::collections::VecDeque;

use uuid::Uuid;

use super::command::RequestId;
use crate::wire::{replay_topic, ReplayRequest, WirePosition};
use crate::{MonoMillis, UnixMillis};

/// Where a replay's next page starts: after this fix time, and after this device at it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplayKey {
    pub ts: UnixMillis,
    pub device: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The event's visibility is being looked up.
    Authorizing,
    /// The snapshot at the clock's time is loading.
    Snapshot,
    Playing,
}

#[derive(Debug)]
pub(crate) struct Replay {
    pub topic: String,
    pub event: Uuid,
    /// The event's devices when the replay was granted.
    pub devices: Vec<String>,
    pub to: UnixMillis,
    /// Trail seconds in each of its snapshots (0: none).
    pub trail_s: u64,
    speed: f64,
    paused: bool,
    /// Event time shown, milliseconds (fractional: slow speeds advance by less than 1 ms a
    /// millisecond).
    clock: f64,
    /// Monotonic: the replay's pace does not follow a wall-clock step.
    last_tick: MonoMillis,
    pub phase: Phase,
    /// The look-up or load in flight, and for a page how many rows it asked for.
    pub request: Option<(RequestId, usize)>,
    /// The time the snapshot load in flight was asked for.
    pub snapshot_at: Option<UnixMillis>,
    buffer: VecDeque<WirePosition>,
    pub cursor: ReplayKey,
    /// The time of the last snapshot: positions at it are in the snapshot.
    start: UnixMillis,
    exhausted: bool,
}

impl Replay {
    pub(crate) fn new(request: &ReplayRequest, now: MonoMillis) -> Replay {
        Replay {
            topic: replay_topic(&request.id),
            event: request.event,
            devices: Vec::new(),
            to: UnixMillis(request.to),
            trail_s: request.trail_s,
            speed: request.speed,
            paused: false,
            clock: request.from as f64,
            last_tick: now,
            phase: Phase::Authorizing,
            request: None,
            snapshot_at: None,
            buffer: VecDeque::new(),
            cursor: ReplayKey {
                ts: UnixMillis(request.from),
                device: String::new(),
            },
            start: UnixMillis(request.from),
            exhausted: false,
        }
    }

    /// The event time the clock shows, whole milliseconds.
    #[cfg(test)]
    pub(crate) fn clock(&self) -> UnixMillis {
        UnixMillis(self.clock.floor() as i64)
    }

    fn running(&self, blocked: bool) -> bool {
        self.phase == Phase::Playing
            && !self.paused
            && !blocked
            // Nothing read yet: wait for the page rather than run past it.
            && (!self.buffer.is_empty() || self.exhausted)
    }

    /// Moves the clock to `now`; the time since the last tick counts only if the replay
    /// was running (`blocked`: its client is behind).
    pub(crate) fn tick(&mut self, now: MonoMillis, blocked: bool) {
        let elapsed = now.since(self.last_tick) as f64;
        if self.running(blocked) {
            self.clock = (self.clock + elapsed * self.speed).min(self.to.as_i64() as f64);
        }
        self.last_tick = self.last_tick.max(now);
    }

    /// Call after [`tick`](Self::tick), so that the time before ran at the old speed.
    pub(crate) fn set_speed(&mut self, speed: f64) {
        self.speed = speed;
    }

    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Starts over at `at` (clamped to `to`): nothing read ahead is kept, and a snapshot
    /// at that time is due.
    pub(crate) fn seek(&mut self, at: UnixMillis, now: MonoMillis) {
        let at = at.min(self.to);
        self.buffer.clear();
        self.cursor = ReplayKey {
            ts: at,
            device: String::new(),
        };
        self.clock = at.as_i64() as f64;
        self.start = at;
        self.last_tick = now;
        self.exhausted = false;
        self.phase = Phase::Snapshot;
        self.request = None;
    }

    /// The next position whose time the clock reached.
    pub(crate) fn due(&mut self) -> Option<WirePosition> {
        let front = self.buffer.front()?;
        if (front.ts as f64) <= self.clock {
            self.buffer.pop_front()
        } else {
            None
        }
    }

    /// Everything was sent and the clock reached `to`.
    pub(crate) fn finished(&self) -> bool {
        self.phase == Phase::Playing
            && self.exhausted
            && self.buffer.is_empty()
            && self.clock >= self.to.as_i64() as f64
    }

    /// How many rows to ask for, when a page should be read now.
    pub(crate) fn wants_page(&self, read_ahead: usize) -> Option<usize> {
        let read_ahead = read_ahead.max(2);
        let wanted = self.phase == Phase::Playing
            && self.request.is_none()
            && !self.exhausted
            && self.buffer.len() <= read_ahead / 2;
        wanted.then(|| read_ahead - self.buffer.len())
    }

    /// A page that asked for `limit` rows: the rows after the cursor up to `to`, in key
    /// order; fewer than asked means there are no more.
    pub(crate) fn page(&mut self, mut rows: Vec<WirePosition>, limit: usize) {
        let exhausted = rows.len() < limit;
        rows.sort_by(|a, b| (a.ts, &a.device_id).cmp(&(b.ts, &b.device_id)));
        for row in rows {
            let key = ReplayKey {
                ts: UnixMillis(row.ts),
                device: row.device_id.clone(),
            };
            if key <= self.cursor {
                continue;
            }
            // The cursor passes rows at the snapshot's time too (they are in it), so that
            // a page of only those still moves the replay on.
            let shown = key.ts > self.start && key.ts <= self.to;
            self.cursor = key;
            if shown {
                self.buffer.push_back(row);
            }
        }
        self.exhausted = exhausted;
    }

    /// When the clock reaches the next thing to do (a position, or the end), if it runs.
    pub(crate) fn deadline(&self, blocked: bool) -> Option<MonoMillis> {
        if !self.running(blocked) {
            return None;
        }
        let target = match self.buffer.front() {
            Some(p) => p.ts as f64,
            None => self.to.as_i64() as f64,
        };
        let wait = ((target - self.clock) / self.speed).ceil().max(0.0);
        Some(self.last_tick.plus(wait as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(from: i64, to: i64, speed: f64) -> ReplayRequest {
        ReplayRequest {
            id: "r".into(),
            event: Uuid::nil(),
            from,
            to,
            speed,
            trail_s: 0,
        }
    }

    fn row(ts: i64, device: &str) -> WirePosition {
        WirePosition {
            device_id: device.into(),
            lat: 1.0,
            lon: 2.0,
            ts,
            speed: 0.0,
            course: 0.0,
        }
    }

    fn playing(from: i64, to: i64, speed: f64) -> Replay {
        let mut r = Replay::new(&request(from, to, speed), MonoMillis(0));
        r.phase = Phase::Playing;
        r
    }

    #[test]
    fn the_clock_runs_at_speed_and_stops_when_paused_or_blocked() {
        let mut r = playing(1_000, 100_000, 10.0);
        r.page(vec![row(50_000, "a")], 10);
        r.tick(MonoMillis(100), false);
        assert_eq!(r.clock(), UnixMillis(2_000));
        r.set_paused(true);
        r.tick(MonoMillis(1_000), false);
        assert_eq!(r.clock(), UnixMillis(2_000));
        r.set_paused(false);
        r.tick(MonoMillis(1_100), true);
        assert_eq!(
            r.clock(),
            UnixMillis(2_000),
            "a slow reader holds the clock"
        );
        r.set_speed(2.0);
        r.tick(MonoMillis(1_200), false);
        assert_eq!(r.clock(), UnixMillis(2_200));
    }

    #[test]
    fn positions_are_due_in_order_when_the_clock_reaches_them_then_the_end() {
        let mut r = playing(0, 10_000, 1.0);
        r.page(vec![row(2_000, "b"), row(1_000, "a"), row(2_000, "a")], 10);
        assert_eq!(r.deadline(false), Some(MonoMillis(1_000)));
        r.tick(MonoMillis(1_999), false);
        assert_eq!(r.due().map(|p| p.ts), Some(1_000));
        assert_eq!(r.due(), None);
        r.tick(MonoMillis(2_000), false);
        let both: Vec<String> = std::iter::from_fn(|| r.due())
            .map(|p| p.device_id)
            .collect();
        assert_eq!(both, vec!["a", "b"]);
        assert!(!r.finished());
        assert_eq!(r.deadline(false), Some(MonoMillis(10_000)));
        r.tick(MonoMillis(10_000), false);
        assert!(r.finished());
    }

    #[test]
    fn at_twice_the_speed_a_position_is_due_in_half_the_time() {
        let mut r = playing(0, 10_000, 2.0);
        r.page(vec![row(2_000, "a")], 10);
        assert_eq!(r.deadline(false), Some(MonoMillis(1_000)));
        assert_eq!(
            r.deadline(true),
            None,
            "a blocked replay waits for its client"
        );
    }

    #[test]
    fn without_read_ahead_the_clock_waits_for_the_next_page() {
        let mut r = playing(0, 10_000, 1.0);
        assert_eq!(r.wants_page(4), Some(4));
        r.tick(MonoMillis(5_000), false);
        assert_eq!(
            r.clock(),
            UnixMillis(0),
            "nothing read yet: the clock waits"
        );
        r.page(vec![row(1, "a"), row(2, "a"), row(3, "a"), row(4, "a")], 4);
        assert_eq!(r.wants_page(4), None, "full");
        r.tick(MonoMillis(5_002), false);
        assert_eq!(r.due().map(|p| p.ts), Some(1));
        assert_eq!(r.due().map(|p| p.ts), Some(2));
        assert_eq!(r.wants_page(4), Some(2), "half gone: read ahead again");
        assert_eq!(r.cursor.ts, UnixMillis(4));
    }

    #[test]
    fn a_seek_starts_over_at_its_time() {
        let mut r = playing(0, 10_000, 1.0);
        r.page(vec![row(1, "a")], 10);
        r.seek(UnixMillis(20_000), MonoMillis(7));
        assert_eq!(r.clock(), UnixMillis(10_000), "clamped to `to`");
        assert_eq!(r.phase, Phase::Snapshot);
        assert_eq!(r.due(), None);
    }

    #[test]
    fn positions_at_the_snapshot_time_are_not_replayed() {
        let mut r = playing(1_000, 10_000, 1.0);
        r.page(vec![row(1_000, "a"), row(1_000, "b")], 2);
        assert_eq!(r.cursor.device, "b", "the cursor moved past them");
        r.page(vec![row(1_001, "a")], 2);
        r.tick(MonoMillis(10), false);
        assert_eq!(r.due().map(|p| p.ts), Some(1_001));
        assert_eq!(r.due(), None);
    }
}
