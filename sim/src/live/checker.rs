//! What each simulated WebSocket client saw, judged frame by frame as it arrives.
//!
//! The checker knows only what a client can know (the frames, in order) plus the reference
//! model's list of faulty fixes; the final "nothing lost" judgement is made by the driver,
//! which holds the model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A broken guarantee of the live path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LiveViolationKind {
    /// A position of a topic before that subscription's snapshot.
    PositionBeforeSnapshot,
    /// A second snapshot for one subscription, or one without `subscribed`.
    UnexpectedSnapshot,
    /// A position of a topic the client is not subscribed to.
    PositionWithoutSubscription,
    /// Per (topic, device), `ts` not newer than the one before.
    Backwards,
    /// A faulty fix reached a client.
    FaultySent,
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
    /// A frame the client cannot read.
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sub {
    /// The client asked for the topic (again): frames the hub queued before it saw the
    /// request may still arrive; `subscribed` or an error answers it.
    Requested,
    AwaitingSnapshot,
    Live,
}

/// One client's view: its subscriptions and, per (topic, device), the newest `ts` it got.
#[derive(Debug, Default)]
pub struct ClientView {
    subs: BTreeMap<String, Sub>,
    pub last: BTreeMap<(String, String), i64>,
    pub frames: u64,
}

impl ClientView {
    /// Topics whose snapshot has arrived.
    pub fn live_topics(&self) -> Vec<String> {
        self.subs
            .iter()
            .filter(|(_, s)| **s == Sub::Live)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The client sent `subscribe` for `topic`.
    pub fn requested(&mut self, topic: &str) {
        self.subs.insert(topic.to_owned(), Sub::Requested);
    }

    /// Takes one text frame; returns what it broke.
    pub fn receive(
        &mut self,
        frame: &[u8],
        faulty: &BTreeSet<(String, i64)>,
    ) -> Vec<(LiveViolationKind, String)> {
        self.frames += 1;
        let mut broken = Vec::new();
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(frame) else {
            broken.push((
                LiveViolationKind::Malformed,
                String::from_utf8_lossy(frame).into_owned(),
            ));
            return broken;
        };
        let topic = value["topic"].as_str().unwrap_or_default().to_owned();
        match value["type"].as_str() {
            Some("subscribed") => {
                self.subs.insert(topic.clone(), Sub::AwaitingSnapshot);
                self.last.retain(|(t, _), _| *t != topic);
            }
            Some("unsubscribed") => {
                self.subs.remove(&topic);
            }
            Some("snapshot") => {
                match self.subs.get(&topic) {
                    Some(Sub::AwaitingSnapshot) => {
                        self.subs.insert(topic.clone(), Sub::Live);
                    }
                    // The answer to an earlier subscribe, read after the client asked again.
                    Some(Sub::Requested) => {}
                    _ => broken.push((LiveViolationKind::UnexpectedSnapshot, topic.clone())),
                }
                for p in value["positions"].as_array().into_iter().flatten() {
                    self.position(&topic, p, faulty, &mut broken);
                }
            }
            Some("position") => {
                match self.subs.get(&topic) {
                    Some(Sub::Live) | Some(Sub::Requested) => {}
                    Some(Sub::AwaitingSnapshot) => {
                        broken.push((LiveViolationKind::PositionBeforeSnapshot, topic.clone()))
                    }
                    None => broken.push((
                        LiveViolationKind::PositionWithoutSubscription,
                        topic.clone(),
                    )),
                }
                self.position(&topic, &value, faulty, &mut broken);
            }
            Some("error") => {
                // `forbidden` and `limit_exceeded` naming a topic mean it is not held
                // afterwards: a refused subscribe, a failed look-up, or a subscription ended
                // by a re-check. (`bad_request` may echo a topic that is still held.) This
                // holds even when a slow client read an earlier subscribe's `subscribed` and
                // `snapshot` after asking again, which made its view Live.
                let ends = matches!(value["code"].as_str(), Some("forbidden" | "limit_exceeded"));
                if ends || self.subs.get(&topic) == Some(&Sub::Requested) {
                    self.subs.remove(&topic);
                }
            }
            Some("pong") => {}
            Some("auth") if value["exp"].is_u64() => {}
            _ => broken.push((LiveViolationKind::Malformed, value.to_string())),
        }
        broken
    }

    fn position(
        &mut self,
        topic: &str,
        p: &serde_json::Value,
        faulty: &BTreeSet<(String, i64)>,
        broken: &mut Vec<(LiveViolationKind, String)>,
    ) {
        let (Some(device), Some(ts)) = (p["deviceId"].as_str(), p["ts"].as_i64()) else {
            broken.push((LiveViolationKind::Malformed, p.to_string()));
            return;
        };
        if faulty.contains(&(device.to_owned(), ts)) {
            broken.push((
                LiveViolationKind::FaultySent,
                format!("{topic} {device} ts {ts}"),
            ));
        }
        let last = self
            .last
            .entry((topic.to_owned(), device.to_owned()))
            .or_insert(i64::MIN);
        if ts <= *last {
            broken.push((
                LiveViolationKind::Backwards,
                format!("{topic} {device}: ts {ts} after {last}"),
            ));
        }
        *last = (*last).max(ts);
    }
}
