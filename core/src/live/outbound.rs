//! Per-connection outbound accounting and conflation (contract section 5, slow clients).
//!
//! The hub cannot see a socket, so it counts: every `Send` adds its length to `queued`, and
//! the shell reports what the socket actually wrote (`handle_drained`). While more than the
//! conflate threshold is queued, position messages are not sent but parked here, the newest
//! per (topic, device) only; they go out, oldest parked first, as the socket drains. Control
//! messages (replies, errors, snapshots) are never parked.
//!
//! The connection's *buffer* is everything waiting for it: queued bytes plus parked ones.
//! It is the buffer, not `queued` alone, that the back-pressure threshold applies to: the
//! parked positions are outbound bytes too, and without them a client that stopped reading
//! would sit just above the conflate threshold for ever.
//!
//! One snapshot at a time is exempt from the back-pressure threshold while it drains: a
//! snapshot with trails or a resume can be megabytes (bounded by the trail and resume
//! settings), and closing every client that asks for one would make them useless. Only
//! the snapshot's own bytes are exempt, only while no earlier exempt snapshot is still
//! queued, so the buffer stays under the threshold plus one snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::websocket::Frame;
use crate::wire::Topic;

/// A parked position message.
#[derive(Debug, Clone)]
struct Parked {
    /// Queue position: a replacement keeps the place of what it replaced, so a device that
    /// moves often cannot keep the others waiting.
    seq: u64,
    frame: Frame,
}

/// What to do with a position message offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Send it now.
    Send,
    /// Parked; `replaced` when it took the place of an older parked message (conflated).
    Parked { replaced: bool },
}

/// The outbound side of one connection.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Bytes sent and not yet reported drained.
    queued: u64,
    parked: BTreeMap<(Topic, Arc<str>), Parked>,
    /// Parked keys by queue position.
    order: BTreeMap<u64, (Topic, Arc<str>)>,
    parked_bytes: u64,
    next_seq: u64,
    /// Queued bytes sent before the exempt snapshot (they drain first).
    ahead: u64,
    /// What is left of the exempt snapshot's bytes.
    exempt: u64,
}

impl Outbound {
    pub(crate) fn queued(&self) -> u64 {
        self.queued
    }

    /// Queued plus parked bytes.
    pub(crate) fn buffered(&self) -> u64 {
        self.queued.saturating_add(self.parked_bytes)
    }

    pub(crate) fn parked_len(&self) -> usize {
        self.parked.len()
    }

    pub(crate) fn record_sent(&mut self, len: usize) {
        self.queued = self.queued.saturating_add(len as u64);
    }

    /// A snapshot: exempt from the back-pressure threshold while it drains, unless an
    /// earlier exempt one is still queued (then it counts like any message).
    pub(crate) fn record_snapshot_sent(&mut self, len: usize) {
        if self.exempt == 0 {
            self.ahead = self.queued;
            self.exempt = len as u64;
        }
        self.record_sent(len);
    }

    /// What the back-pressure threshold applies to: the buffer less the exempt snapshot.
    pub(crate) fn pressing(&self) -> u64 {
        self.buffered().saturating_sub(self.exempt)
    }

    /// The socket wrote `bytes`. More than was queued (a shell bug) empties the queue rather
    /// than going negative.
    pub(crate) fn record_drained(&mut self, bytes: u64) {
        self.queued = self.queued.saturating_sub(bytes);
        let from_ahead = bytes.min(self.ahead);
        self.ahead -= from_ahead;
        self.exempt = self.exempt.saturating_sub(bytes - from_ahead);
        if self.queued == 0 {
            self.ahead = 0;
            self.exempt = 0;
        }
    }

    /// Sends at once when nothing is parked and at most `threshold` bytes are queued;
    /// parks otherwise. Nothing parked means no older message of the same (topic, device)
    /// can overtake this one.
    pub(crate) fn offer(
        &mut self,
        topic: Topic,
        device: &Arc<str>,
        frame: &Frame,
        threshold: u64,
    ) -> Offer {
        if self.parked.is_empty() && self.queued <= threshold {
            return Offer::Send;
        }
        let key = (topic, Arc::clone(device));
        if let Some(old) = self.parked.get_mut(&key) {
            self.parked_bytes = self.parked_bytes - old.frame.len() as u64 + frame.len() as u64;
            old.frame = frame.clone();
            return Offer::Parked { replaced: true };
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.parked_bytes += frame.len() as u64;
        self.order.insert(seq, key.clone());
        self.parked.insert(
            key,
            Parked {
                seq,
                frame: frame.clone(),
            },
        );
        Offer::Parked { replaced: false }
    }

    /// The oldest parked message, when at most `threshold` bytes are queued. The caller
    /// sends it (and records it sent) before asking again.
    pub(crate) fn pop_ready(&mut self, threshold: u64) -> Option<Frame> {
        if self.queued > threshold {
            return None;
        }
        let (_, key) = self.order.pop_first()?;
        let parked = self.parked.remove(&key)?;
        self.parked_bytes -= parked.frame.len() as u64;
        Some(parked.frame)
    }

    /// Forgets what is parked for `topic`; returns how many messages that was.
    pub(crate) fn discard_topic(&mut self, topic: Topic) -> u64 {
        let keys: Vec<(Topic, Arc<str>)> = self
            .parked
            .keys()
            .filter(|(t, _)| *t == topic)
            .cloned()
            .collect();
        for key in &keys {
            if let Some(parked) = self.parked.remove(key) {
                self.order.remove(&parked.seq);
                self.parked_bytes -= parked.frame.len() as u64;
            }
        }
        keys.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn topic(n: u128) -> Topic {
        Topic(Uuid::from_u128(n))
    }

    #[test]
    fn parks_above_threshold_keeps_newest_in_first_place() {
        let mut out = Outbound::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let msg = |s: &'static str| Frame::text(s.as_bytes());
        assert_eq!(out.offer(topic(1), &a, &msg("x"), 10), Offer::Send);
        out.record_sent(13);
        assert_eq!(
            out.offer(topic(1), &a, &msg("a1"), 10),
            Offer::Parked { replaced: false }
        );
        assert_eq!(
            out.offer(topic(1), &b, &msg("b1"), 10),
            Offer::Parked { replaced: false }
        );
        assert_eq!(
            out.offer(topic(1), &a, &msg("a22"), 10),
            Offer::Parked { replaced: true }
        );
        assert_eq!(out.buffered(), 13 + 5 + 4);
        assert_eq!(out.pop_ready(10), None);
        out.record_drained(100);
        assert_eq!(out.queued(), 0);
        assert_eq!(out.pop_ready(10), Some(msg("a22")));
        assert_eq!(out.discard_topic(topic(1)), 1);
        assert_eq!(out.buffered(), 0);
        assert_eq!(out.pop_ready(10), None);
    }

    /// The conflate threshold is "at most `threshold` bytes queued": at it a message is
    /// still sent and a parked one still released; one byte over, neither.
    #[test]
    fn the_conflate_threshold_is_inclusive_for_offers() {
        let a: Arc<str> = "a".into();
        let msg = Frame::text(b"x");
        for (queued, expected) in [
            (9, Offer::Send),
            (10, Offer::Send),
            (11, Offer::Parked { replaced: false }),
        ] {
            let mut out = Outbound::default();
            out.record_sent(queued);
            assert_eq!(out.offer(topic(1), &a, &msg, 10), expected, "{queued}");
        }
    }

    #[test]
    fn the_conflate_threshold_is_inclusive_for_releases() {
        let a: Arc<str> = "a".into();
        let msg = Frame::text(b"x");
        let mut out = Outbound::default();
        out.record_sent(12);
        assert_eq!(
            out.offer(topic(1), &a, &msg, 10),
            Offer::Parked { replaced: false }
        );
        out.record_drained(1);
        assert_eq!(out.queued(), 11);
        assert_eq!(out.pop_ready(10), None);
        out.record_drained(1);
        assert_eq!(out.queued(), 10);
        assert_eq!(out.pop_ready(10), Some(msg.clone()));
        assert_eq!(out.buffered(), 10);
        // Below it, with nothing left parked, there is nothing to release.
        out.record_drained(1);
        assert_eq!(out.pop_ready(10), None);
    }

    #[test]
    fn a_snapshot_stops_being_exempt_as_it_drains_behind_what_was_queued_before_it() {
        let mut out = Outbound::default();
        out.record_sent(100);
        out.record_snapshot_sent(1_000);
        assert_eq!((out.queued(), out.pressing()), (1_100, 100));
        // The 100 bytes ahead of the snapshot drain first: it is still wholly exempt.
        out.record_drained(50);
        assert_eq!((out.queued(), out.pressing()), (1_050, 50));
        out.record_drained(100);
        assert_eq!((out.queued(), out.pressing()), (950, 0));
        // What is sent behind it presses; the snapshot drains and its exemption with it.
        out.record_sent(30);
        assert_eq!((out.queued(), out.pressing()), (980, 30));
        out.record_drained(950);
        assert_eq!((out.queued(), out.pressing()), (30, 30));
        out.record_drained(30);
        assert_eq!((out.queued(), out.pressing()), (0, 0));
        // Drained, a new snapshot is exempt again.
        out.record_snapshot_sent(500);
        assert_eq!((out.queued(), out.pressing()), (500, 0));
    }
}
