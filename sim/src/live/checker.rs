//! The live path's broken guarantees, and the judgements of history (resumes, trails,
//! replays) the driver asks for with the model's facts.
//!
//! What each client saw is judged frame by frame, as it reads them, by the core's
//! [`ClientView`] (the checker the core's property tests use too), with the reference
//! model's list of faulty fixes; the final "nothing lost" judgement is made by the driver,
//! which holds the model. What a resume or a replay must show is computed here from what
//! the model counted (the fixes the live path accepted, the rows the model store holds),
//! never with the core's history or replay code.

use std::collections::BTreeSet;
use std::fmt;

use processor_core::live::client_view::Breach;
#[cfg(doc)]
use processor_core::live::client_view::ClientView;
use processor_core::live::RequestId;

/// Whether a client may be shown `(device, ts)`: anything but a fix the model knows is
/// faulty.
pub fn not_faulty(faulty: &BTreeSet<(String, i64)>, device: &str, ts: i64) -> bool {
    !faulty.contains(&(device.to_owned(), ts))
}

/// A broken guarantee of the live path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LiveViolationKind {
    /// What a client read broke a guarantee it can tell by itself (the core's
    /// [`ClientView`] judged it; a faulty fix shown is [`Breach::NotAllowed`]).
    View(Breach),
    /// A frame or close for a connection already closed.
    AfterClose,
    /// A client's outbound queue grew past the stated bound.
    QueueUnbounded,
    /// A client that reads everything was not up to date at the end of a step.
    FastClientBehind,
    /// When the run went quiet, a client's last position of a device was not the newest.
    Lost,
    /// The orphan counter differs from the records of devices in no event.
    OrphanCount,
    /// A frame the protocol does not have (not text, ping or pong), or a replay frame of
    /// the wrong kind.
    Malformed,
    /// A connection closed for the write timeout before its socket had held unwritten bytes
    /// and taken none of them for the whole timeout.
    WriteTimeoutEarly,
    /// A connection whose socket held unwritten bytes and took none of them for the write
    /// timeout was still open after the hub was told the time.
    WriteTimeoutMissed,
    /// Sharding changed what a client got: a connection's frames, closes or requests from
    /// its shard differ from what the single-shard reference, fed the same inputs, gave it
    /// (or the shards' counters do not add up to the reference's).
    ShardDiverged,
    /// A connection closed for its token's expiry (4001) before the token's current `exp`
    /// (or with no token deadline at all).
    ExpiryEarly,
    /// A connection whose token's current `exp` had passed was still open after the hub was
    /// told the time.
    ExpiryMissed,
    /// An answer to a token verification had the wrong effect: a renewal not answered with
    /// `{"type":"auth","exp":...}` of the new token, a refusal not answered with
    /// `unauthorized` alone.
    TokenMisjudged,
    /// A subscription held longer than the re-check interval without its event's visibility
    /// being looked up again (after the hub was told the time), or not looked up again at
    /// once after a renewed token.
    RecheckMissed,
    /// A visibility answer that no longer allows a held subscription (event made private, or
    /// a renewed token without the event) did not end it with `forbidden` at once.
    RevocationMissed,
    /// Any other visibility answer with the wrong effect: a subscription's own answer not
    /// giving `subscribed`, `forbidden` or the look-up failure as the model's claims and the
    /// event's visibility say, a re-check that allows (or failed) ending the subscription,
    /// an answer the hub should ignore doing something.
    AuthorizationMisjudged,
    /// A client message within the model's token bucket got `limit_exceeded` (or nothing),
    /// or one over it was acted on (a WebSocket ping over it answered).
    RateMisjudged,
    /// A client message within the rate answered other than the protocol says (a pong, an
    /// authorization request or `limit_exceeded` for a topic over the subscription limit,
    /// `unsubscribed`, a token verification, `bad_request`).
    MisAnswered,
    /// A connection closed for too many bad messages other than at the model's
    /// `max_bad_messages`-th (`bad_request`s and messages over the rate), or not closed then.
    BadMessageLimit,
    /// A resumed subscription (`since`, not `truncated`) whose positions of a device, its
    /// snapshot's and then the live ones, are not exactly the fixes after `since` the live
    /// path accepted (and the stored rows the snapshot was answered with), or, where the hub
    /// may have conflated the live ones (a slow reader, positions parked), not part of them
    /// in order: a gap, a repeat, one too many, out of order; or what the client saw before
    /// it left contradicts them; or a complete resume holding more than the maximum.
    ResumeMismatch,
    /// A truncated resume without exactly the newest position of each device, or truncated
    /// with no more than the maximum to send (nor arriving while it loaded).
    ResumeTruncated,
    /// A trail point that is no stored or accepted fix of its device, out of order, outside
    /// its window, or more points than the maximum.
    TrailWrong,
    /// A replay position sent before the replay's clock (its start plus the time elapsed
    /// since its snapshot times the speed, paused time not counted) reached its `ts`, or
    /// `replay_end` before the clock reached `to`.
    ReplayEarly,
    /// A replay that did not send every stored position of its window after its start
    /// (`from`, or the seek target) exactly once in key order, then `replay_end`: one
    /// missing, repeated, out of order or not stored, a wrong snapshot, a replay frame or
    /// load the model has no replay for, or a load for the wrong devices or time.
    ReplayMismatch,
    /// More positions held for a replay (read and not sent) than the read-ahead bound, or
    /// a page asked for that would make it so.
    ReplayReadAhead,
    /// When the run went quiet, a replay of a client that reads and did not pause it has
    /// not ended.
    ReplayUnfinished,
}

#[derive(Debug, Clone)]
pub struct LiveViolation {
    pub kind: LiveViolationKind,
    pub step: u64,
    pub detail: String,
}

impl fmt::Display for LiveViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}: {:?}: {}", self.step, self.kind, self.detail)
    }
}

// ---------------------------------------------------------------------------------------
// Resume

/// What a resumed subscription must show of one device from `since` on, in `ts` order:
/// every fix after `since` the live path accepted (as the model counted them: non-faulty,
/// newer than the device's newest before), and the stored rows after `since` the snapshot
/// was answered with that the live path never accepted (late uploads it dropped as older
/// than the device's newest, which Postgres stores all the same and a resume reads).
pub fn resumed_track(accepted: &[i64], stored_extra: &BTreeSet<i64>, since: i64) -> Vec<i64> {
    let start = accepted.partition_point(|ts| *ts <= since);
    let mut all: BTreeSet<i64> = accepted[start..].iter().copied().collect();
    all.extend(stored_extra.range(since.saturating_add(1)..));
    all.into_iter().collect()
}

/// Judges one device of a resumed subscription: `after` (the `ts` of its snapshot's
/// positions, then of the live ones, as read) must be `expected` exactly, and what the
/// client saw before it left, after `since`, must be part of it (so the union of before
/// and after over the span is the expected track). With `gaps` (the hub may have conflated
/// the live part), `after` need only be part of `expected`, in order, without repeats. The
/// difference, described, if any.
pub fn judge_resumed(
    device: &str,
    since: i64,
    before: &[i64],
    after: &[i64],
    expected: &[i64],
    gaps: bool,
) -> Option<String> {
    let contradicted: Vec<i64> = before
        .iter()
        .copied()
        .filter(|ts| *ts > since && expected.binary_search(ts).is_err())
        .collect();
    let fits = if gaps {
        after.windows(2).all(|w| w[0] < w[1])
            && after.iter().all(|ts| expected.binary_search(ts).is_ok())
    } else {
        after == expected
    };
    if fits && contradicted.is_empty() {
        return None;
    }
    let want: BTreeSet<i64> = expected.iter().copied().collect();
    let mut got = BTreeSet::new();
    let repeated: Vec<i64> = after
        .iter()
        .copied()
        .filter(|ts| !got.insert(*ts))
        .collect();
    let missing: Vec<i64> = if gaps {
        Vec::new()
    } else {
        want.difference(&got).copied().collect()
    };
    let extra: Vec<i64> = got.difference(&want).copied().collect();
    let ordered = after.windows(2).all(|w| w[0] < w[1]);
    Some(format!(
        "{device} since {since}: missing {}, not accepted {}, repeated {}{}{}; got {} expected {}",
        few(&missing),
        few(&extra),
        few(&repeated),
        if ordered { "" } else { ", out of order" },
        if contradicted.is_empty() {
            String::new()
        } else {
            format!(", seen before and not accepted {}", few(&contradicted))
        },
        few(after),
        few(expected),
    ))
}

/// A list, cut for a violation's text.
fn few(list: &[i64]) -> String {
    const SHOWN: usize = 8;
    let shown: Vec<String> = list.iter().take(SHOWN).map(i64::to_string).collect();
    if list.len() > SHOWN {
        format!("[{}, ... {} in all]", shown.join(", "), list.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

// ---------------------------------------------------------------------------------------
// Replay

/// Where a replay is, as the model holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPhase {
    /// Its event's visibility is being looked up (this request).
    Authorizing(RequestId),
    /// Granted or sought: its snapshot is due.
    Loading,
    /// Its snapshot went out: positions follow as its clock reaches them.
    Playing,
}

/// One replay as the model holds it: its window, its clock (kept apart from the hub's: the
/// start plus the time elapsed since the snapshot went out times the speed of the moment,
/// paused time not counted) and what it must send, judged on every command its hub gives.
/// The hub's own clock also stops while the client is behind or a page is awaited, so it
/// never runs ahead of this one: this one is the bound the contract states.
#[derive(Debug, Clone)]
pub struct ReplayModel {
    pub id: String,
    pub from: i64,
    pub to: i64,
    pub speed: f64,
    pub paused: bool,
    /// The event's devices when the replay was granted.
    pub devices: Vec<String>,
    pub phase: ReplayPhase,
    /// The time of the current snapshot: `from`, or the last seek target (at most `to`).
    pub start: i64,
    /// The stored keys (ts, device) with `start < ts <= to`: what the replay must send.
    pub expected: Vec<(i64, String)>,
    pub next: usize,
    clock: f64,
    clock_at: i64,
    /// Positions read by pages and not sent yet.
    pub held: usize,
    /// Where the next page starts: the key of the last row read (the start, before any).
    pub cursor: (i64, String),
    /// The snapshot load and the page load the hub waits for.
    pub snapshot_load: Option<RequestId>,
    /// A seek came while a snapshot load was in flight: the hub loads the time sought last
    /// once that one is answered, not at the seek.
    pub superseded: bool,
    pub page_load: Option<RequestId>,
}

impl ReplayModel {
    pub fn new(id: String, from: i64, to: i64, speed: f64, request: RequestId) -> ReplayModel {
        ReplayModel {
            id,
            from,
            to,
            speed,
            paused: false,
            devices: Vec::new(),
            phase: ReplayPhase::Authorizing(request),
            start: from,
            expected: Vec::new(),
            next: 0,
            clock: from as f64,
            clock_at: 0,
            held: 0,
            cursor: (from, String::new()),
            snapshot_load: None,
            superseded: false,
            page_load: None,
        }
    }

    pub fn topic(&self) -> String {
        format!("replay:{}", self.id)
    }

    /// The model's clock at `now`.
    fn advance(&mut self, now: i64) {
        if self.phase == ReplayPhase::Playing && !self.paused && now > self.clock_at {
            self.clock += (now - self.clock_at) as f64 * self.speed;
        }
        self.clock_at = self.clock_at.max(now);
    }

    /// `replay_control`'s pause and speed, as the hub took it at `now`.
    pub fn steer(&mut self, now: i64, speed: Option<f64>, paused: Option<bool>) {
        self.advance(now);
        if let Some(speed) = speed {
            self.speed = speed;
        }
        if let Some(paused) = paused {
            self.paused = paused;
        }
    }

    /// A seek to `at` at `now`: what was read is dropped, a snapshot at the new time is due
    /// (after the grant, when it is still being authorized).
    pub fn seek(&mut self, at: i64, now: i64) {
        self.advance(now);
        self.start = at.min(self.to);
        self.expected.clear();
        self.next = 0;
        self.held = 0;
        self.cursor = (self.start, String::new());
        self.superseded |= self.phase == ReplayPhase::Loading && self.snapshot_load.is_some();
        self.snapshot_load = None;
        self.page_load = None;
        if self.phase == ReplayPhase::Playing {
            self.phase = ReplayPhase::Loading;
        }
    }

    /// The snapshot went out at `now` with `got` (device, ts); `want` is what the store
    /// holds at the start, `expected` the keys the replay must then send.
    pub fn snapshot_sent(
        &mut self,
        now: i64,
        got: &[(String, i64)],
        want: &[(String, i64)],
        expected: Vec<(i64, String)>,
    ) -> Vec<(LiveViolationKind, String)> {
        let mut broken = Vec::new();
        if self.phase != ReplayPhase::Loading {
            broken.push((
                LiveViolationKind::ReplayMismatch,
                format!("{}: a snapshot in phase {:?}", self.topic(), self.phase),
            ));
        }
        if got != want {
            broken.push((
                LiveViolationKind::ReplayMismatch,
                format!(
                    "{}: snapshot at {} holds {got:?}; the store's newest per device at that time are {want:?}",
                    self.topic(),
                    self.start
                ),
            ));
        }
        self.phase = ReplayPhase::Playing;
        self.clock = self.start as f64;
        self.clock_at = now;
        self.expected = expected;
        self.next = 0;
        broken
    }

    /// A position went out at `now`.
    pub fn position_sent(
        &mut self,
        now: i64,
        ts: i64,
        device: &str,
    ) -> Vec<(LiveViolationKind, String)> {
        self.advance(now);
        let mut broken = Vec::new();
        let topic = self.topic();
        match self.expected.get(self.next) {
            Some((t, d)) if *t == ts && d == device && self.phase == ReplayPhase::Playing => {}
            want => broken.push((
                LiveViolationKind::ReplayMismatch,
                format!(
                    "{topic}: sent {device} {ts} in phase {:?}; next due {want:?} ({} of {} sent)",
                    self.phase,
                    self.next,
                    self.expected.len()
                ),
            )),
        }
        if (ts as f64) > self.clock {
            broken.push((
                LiveViolationKind::ReplayEarly,
                format!(
                    "{topic}: {device} {ts} sent at {now}, the clock at {} (speed {}, paused {})",
                    self.clock, self.speed, self.paused
                ),
            ));
        }
        // Past a mismatch, the rest is judged from where the hub is.
        if let Some(i) = self.expected[self.next.min(self.expected.len())..]
            .iter()
            .position(|(t, d)| *t == ts && d == device)
        {
            self.next += i + 1;
        }
        self.held = self.held.saturating_sub(1);
        broken
    }

    /// `replay_end` went out at `now`.
    pub fn end_sent(&mut self, now: i64) -> Vec<(LiveViolationKind, String)> {
        self.advance(now);
        let mut broken = Vec::new();
        let topic = self.topic();
        if self.phase != ReplayPhase::Playing || self.next < self.expected.len() {
            broken.push((
                LiveViolationKind::ReplayMismatch,
                format!(
                    "{topic}: replay_end in phase {:?} after {} of {} positions; the first not sent {:?}",
                    self.phase,
                    self.next,
                    self.expected.len(),
                    self.expected.get(self.next)
                ),
            ));
        }
        if self.clock < self.to as f64 {
            broken.push((
                LiveViolationKind::ReplayEarly,
                format!(
                    "{topic}: replay_end at {now}, the clock at {} before `to` {}",
                    self.clock, self.to
                ),
            ));
        }
        broken
    }

    /// A page of `limit` asked for: what is held plus `limit` stays within `read_ahead`.
    pub fn page_asked(
        &mut self,
        request: RequestId,
        limit: usize,
        read_ahead: usize,
    ) -> Option<String> {
        self.page_load = Some(request);
        (self.held + limit > read_ahead).then(|| {
            format!(
                "{}: a page of {limit} asked with {} held (read-ahead {read_ahead})",
                self.topic(),
                self.held
            )
        })
    }

    /// The page the hub waits for was answered with the rows of keys `rows`, in key order:
    /// those after the start are held until sent.
    pub fn page_answered(&mut self, rows: &[(i64, String)], read_ahead: usize) -> Option<String> {
        self.page_load = None;
        self.held += rows.iter().filter(|(ts, _)| *ts > self.start).count();
        if let Some(last) = rows.last() {
            self.cursor = self.cursor.clone().max(last.clone());
        }
        (self.held > read_ahead).then(|| {
            format!(
                "{}: {} positions held (read-ahead {read_ahead})",
                self.topic(),
                self.held
            )
        })
    }
}
