//! What one WebSocket client may see, judged frame by frame as it reads them: the
//! contract's per-client guarantees (section 5) in a form every test of the live path
//! shares. The core's property tests read the hub's frames the instant they are made
//! ([`Reading::AsSent`]); the simulation's clients read them later, through a model socket
//! or a real one ([`Reading::Buffered`]), where frames queued before the hub saw a request
//! may still arrive after it.
//!
//! It reads frames as JSON values, never with the hub's own types or rules, so that it
//! judges the hub instead of repeating it. Which positions may be shown at all (not faulty,
//! stored or accepted) is the caller's knowledge, passed in as a predicate.

use std::collections::{BTreeMap, BTreeSet};

/// When the client reads what the hub sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Each frame as the hub makes it: nothing is in flight when the client sends a
    /// request, so a request's answer is the next frame of its topic.
    AsSent,
    /// Through a socket: frames queued before the hub saw a request may come after it.
    Buffered,
}

/// A broken guarantee, as one client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Breach {
    /// A position of a topic after `subscribed` and before its snapshot.
    PositionBeforeSnapshot,
    /// A position of a topic the client asked for again, before the hub answered
    /// ([`Reading::AsSent`] only).
    PositionBeforeAnswer,
    /// A position of a topic the client is not subscribed to.
    PositionWithoutSubscription,
    /// A second snapshot for one subscription, or one without `subscribed`.
    UnexpectedSnapshot,
    /// `subscribed` the client did not ask for ([`Reading::AsSent`] only).
    UnexpectedSubscribed,
    /// Per (topic, device), `ts` not newer than the one before.
    Backwards,
    /// A position the caller's predicate does not allow (a faulty fix, one never stored or
    /// accepted).
    NotAllowed,
    /// A device twice in the snapshot of a subscription without `since`
    /// ([`Reading::AsSent`] only: a buffered client cannot tell which request a snapshot
    /// answers).
    DeviceTwice,
    /// An answer to nothing the client asked ([`Reading::AsSent`] only): `auth` or
    /// `unauthorized` with no token sent, `replay_end` of no replay being played.
    Unasked,
    /// A frame the client cannot read.
    Malformed,
}

/// Where a position was shown, for the caller's predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Snapshot,
    Live,
}

/// What the client asked for with `subscribe` (or `replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The newest position per device.
    Newest,
    /// A resume (`since`): every position after it, several per device.
    Since,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// The client asked for the topic (again); `subscribed` or an error answers it.
    Requested(Asked),
    AwaitingSnapshot(Option<Asked>),
    Live,
}

/// One client's view: its topics and, per (topic, device), the newest `ts` it got and
/// every `ts` it got since the topic's last `subscribed`.
#[derive(Debug)]
pub struct ClientView {
    reading: Reading,
    subs: BTreeMap<String, Sub>,
    last: BTreeMap<(String, String), i64>,
    seen: BTreeMap<(String, String), Vec<i64>>,
    last_read: BTreeMap<String, i64>,
    frames: u64,
    /// `auth` messages sent and not answered yet.
    auths_asked: u32,
}

impl ClientView {
    pub fn new(reading: Reading) -> ClientView {
        ClientView {
            reading,
            subs: BTreeMap::new(),
            last: BTreeMap::new(),
            seen: BTreeMap::new(),
            last_read: BTreeMap::new(),
            frames: 0,
            auths_asked: 0,
        }
    }

    /// The client sent `auth`: one `auth` or `unauthorized` answers it.
    pub fn auth_requested(&mut self) {
        self.auths_asked += 1;
    }

    /// Read as sent, an answer to `auth` needs one asked; through a socket the caller
    /// judges those itself.
    fn auth_answered(&mut self, broken: &mut Vec<(Breach, String)>, what: &str) {
        if self.reading == Reading::AsSent {
            match self.auths_asked.checked_sub(1) {
                Some(left) => self.auths_asked = left,
                None => broken.push((Breach::Unasked, what.to_owned())),
            }
        }
    }

    /// The client sent `subscribe` for `topic` (or `replay` for its `replay:<id>`).
    pub fn requested(&mut self, topic: &str, asked: Asked) {
        self.subs.insert(topic.to_owned(), Sub::Requested(asked));
    }

    /// The client sent `unsubscribe` for `topic`. Read as sent, nothing of it may follow
    /// but `unsubscribed`; read through a socket, frames queued before it still may, until
    /// `unsubscribed` is read.
    pub fn unsubscribe_requested(&mut self, topic: &str) {
        if self.reading == Reading::AsSent {
            self.subs.remove(topic);
        }
    }

    /// Topics whose snapshot has been read.
    pub fn live_topics(&self) -> Vec<String> {
        self.subs
            .iter()
            .filter(|(_, s)| **s == Sub::Live)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Whether the snapshot of the client's last `subscribe` of `topic` has been read.
    pub fn is_live(&self, topic: &str) -> bool {
        self.subs.get(topic) == Some(&Sub::Live)
    }

    /// The newest `ts` read of `device` on `topic` since the topic's last `subscribed`.
    pub fn last(&self, topic: &str, device: &str) -> Option<i64> {
        self.last
            .get(&(topic.to_owned(), device.to_owned()))
            .copied()
    }

    /// The `ts` of the last position read of an event topic (snapshot or live).
    pub fn last_read(&self, topic: &str) -> Option<i64> {
        self.last_read.get(topic).copied()
    }

    /// Text frames read.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Per device, every `ts` read of an event topic since its last `subscribed`, in the
    /// order read.
    pub fn track(&self, topic: &str) -> BTreeMap<String, Vec<i64>> {
        self.seen
            .range((topic.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == topic)
            .map(|((_, d), ts)| (d.clone(), ts.clone()))
            .collect()
    }

    fn forget_topic(&mut self, topic: &str) {
        self.last.retain(|(t, _), _| t != topic);
        self.seen.retain(|(t, _), _| t != topic);
        self.last_read.remove(topic);
    }

    /// Reads one text frame; `allowed` says whether a (device, ts) may be shown at all.
    /// Returns what the frame broke.
    pub fn receive(
        &mut self,
        frame: &[u8],
        allowed: &dyn Fn(&str, i64, Shown) -> bool,
    ) -> Vec<(Breach, String)> {
        self.frames += 1;
        let mut broken = Vec::new();
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(frame) else {
            broken.push((
                Breach::Malformed,
                String::from_utf8_lossy(frame).into_owned(),
            ));
            return broken;
        };
        let topic = value["topic"].as_str().unwrap_or_default().to_owned();
        let buffered = self.reading == Reading::Buffered;
        match value["type"].as_str() {
            Some("subscribed") => {
                let asked = match self.subs.get(&topic) {
                    Some(Sub::Requested(asked)) => Some(*asked),
                    _ if buffered => None,
                    state => {
                        broken.push((
                            Breach::UnexpectedSubscribed,
                            format!("{topic} in state {state:?}"),
                        ));
                        None
                    }
                };
                self.subs
                    .insert(topic.clone(), Sub::AwaitingSnapshot(asked));
                self.forget_topic(&topic);
            }
            Some("unsubscribed") => {
                self.subs.remove(&topic);
            }
            // Nothing more of a replay follows its end.
            Some("replay_end") => {
                let played =
                    topic.starts_with("replay:") && self.subs.get(&topic) == Some(&Sub::Live);
                if !played && !buffered {
                    broken.push((Breach::Unasked, format!("replay_end of {topic}")));
                }
                self.subs.remove(&topic);
            }
            Some("snapshot") => self.snapshot(&topic, &value, allowed, &mut broken),
            Some("position") => {
                match self.subs.get(&topic) {
                    Some(Sub::Live) => {}
                    Some(Sub::Requested(_)) if buffered => {}
                    Some(Sub::Requested(_)) => {
                        broken.push((Breach::PositionBeforeAnswer, topic.clone()))
                    }
                    Some(Sub::AwaitingSnapshot(_)) => {
                        broken.push((Breach::PositionBeforeSnapshot, topic.clone()))
                    }
                    None => broken.push((Breach::PositionWithoutSubscription, topic.clone())),
                }
                self.position(&topic, &value, Shown::Live, allowed, &mut broken);
            }
            Some("error") => {
                // `forbidden` and `limit_exceeded` naming a topic mean it is not held
                // afterwards: a refused subscribe, a failed look-up or snapshot, or a
                // subscription ended by a re-check. (`bad_request` may echo a topic that
                // is still held; a message over the rate names none.) Read through a
                // socket this holds too: a slow client that read an earlier subscribe's
                // `subscribed` and `snapshot` after asking again holds nothing after it.
                match value["code"].as_str() {
                    Some("forbidden" | "limit_exceeded") => {
                        self.subs.remove(&topic);
                    }
                    Some("unauthorized") => self.auth_answered(&mut broken, "unauthorized"),
                    _ => {}
                }
            }
            Some("pong") => {}
            Some("auth") if value["exp"].is_u64() => self.auth_answered(&mut broken, "auth"),
            _ => broken.push((Breach::Malformed, value.to_string())),
        }
        broken
    }

    fn snapshot(
        &mut self,
        topic: &str,
        value: &serde_json::Value,
        allowed: &dyn Fn(&str, i64, Shown) -> bool,
        broken: &mut Vec<(Breach, String)>,
    ) {
        let buffered = self.reading == Reading::Buffered;
        let replay = topic.starts_with("replay:");
        let mut one_per_device = false;
        match self.subs.get(topic) {
            Some(Sub::AwaitingSnapshot(asked)) => {
                one_per_device = *asked == Some(Asked::Newest) && !buffered;
                self.subs.insert(topic.to_owned(), Sub::Live);
            }
            // A replay's seek: it starts over at the new time (also, read through a socket,
            // when the client has since started the replay again and reads what the old
            // one sent).
            Some(Sub::Live) if replay => self.forget_topic(topic),
            Some(Sub::Requested(_)) if replay && buffered => self.forget_topic(topic),
            // The answer to an earlier subscribe, read after the client asked again.
            Some(Sub::Requested(_)) if buffered => {}
            state => broken.push((
                Breach::UnexpectedSnapshot,
                format!("{topic} in state {state:?}"),
            )),
        }
        let mut devices = BTreeSet::new();
        for p in value["positions"].as_array().into_iter().flatten() {
            if let Some(device) = p["deviceId"].as_str() {
                if !devices.insert(device.to_owned()) && one_per_device {
                    broken.push((Breach::DeviceTwice, format!("{topic} {device}")));
                }
            }
            self.position(topic, p, Shown::Snapshot, allowed, broken);
        }
    }

    fn position(
        &mut self,
        topic: &str,
        p: &serde_json::Value,
        shown: Shown,
        allowed: &dyn Fn(&str, i64, Shown) -> bool,
        broken: &mut Vec<(Breach, String)>,
    ) {
        let (Some(device), Some(ts)) = (p["deviceId"].as_str(), p["ts"].as_i64()) else {
            broken.push((Breach::Malformed, p.to_string()));
            return;
        };
        if !allowed(device, ts, shown) {
            broken.push((
                Breach::NotAllowed,
                format!("{topic} {device} ts {ts} ({shown:?})"),
            ));
        }
        let last = self
            .last
            .entry((topic.to_owned(), device.to_owned()))
            .or_insert(i64::MIN);
        if ts <= *last {
            broken.push((
                Breach::Backwards,
                format!("{topic} {device}: ts {ts} after {last}"),
            ));
        }
        *last = (*last).max(ts);
        // Replays are judged where they are sent, against a model of the replay.
        if topic.starts_with("event:") {
            self.seen
                .entry((topic.to_owned(), device.to_owned()))
                .or_default()
                .push(ts);
            self.last_read.insert(topic.to_owned(), ts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "event:11111111-1111-4111-8111-000000000000";

    fn any(_: &str, _: i64, _: Shown) -> bool {
        true
    }

    fn read(view: &mut ClientView, frame: serde_json::Value) -> Vec<Breach> {
        view.receive(frame.to_string().as_bytes(), &any)
            .into_iter()
            .map(|(breach, _)| breach)
            .collect()
    }

    fn subscribed() -> serde_json::Value {
        serde_json::json!({"type": "subscribed", "topic": TOPIC})
    }

    fn snapshot(positions: &[(&str, i64)]) -> serde_json::Value {
        let positions: Vec<_> = positions
            .iter()
            .map(|(d, ts)| serde_json::json!({"deviceId": d, "ts": ts, "lat": 1.0, "lon": 2.0}))
            .collect();
        serde_json::json!({"type": "snapshot", "topic": TOPIC, "positions": positions})
    }

    fn position(device: &str, ts: i64) -> serde_json::Value {
        serde_json::json!({"type": "position", "topic": TOPIC, "deviceId": device, "ts": ts})
    }

    fn error(code: &str) -> serde_json::Value {
        serde_json::json!({"type": "error", "code": code, "topic": TOPIC, "message": "m"})
    }

    /// A view of `reading` subscribed to `TOPIC`, with A at 10 in its snapshot.
    fn live(reading: Reading) -> ClientView {
        let mut view = ClientView::new(reading);
        view.requested(TOPIC, Asked::Newest);
        assert!(read(&mut view, subscribed()).is_empty());
        assert!(read(&mut view, snapshot(&[("A", 10)])).is_empty());
        view
    }

    #[test]
    fn a_subscription_read_in_order_breaks_nothing() {
        for reading in [Reading::AsSent, Reading::Buffered] {
            let mut view = live(reading);
            assert!(read(&mut view, position("A", 11)).is_empty());
            assert!(read(&mut view, position("B", 5)).is_empty());
            assert!(view.is_live(TOPIC));
            assert_eq!(view.live_topics(), vec![TOPIC.to_owned()]);
            assert_eq!(view.last(TOPIC, "A"), Some(11));
            assert_eq!(view.last_read(TOPIC), Some(5));
            assert_eq!(view.track(TOPIC)["A"], vec![10, 11]);
            assert_eq!(view.frames(), 4);
        }
    }

    #[test]
    fn a_position_out_of_turn_is_named_for_its_state() {
        let mut view = ClientView::new(Reading::AsSent);
        assert_eq!(
            read(&mut view, position("A", 1)),
            [Breach::PositionWithoutSubscription]
        );
        view.requested(TOPIC, Asked::Newest);
        assert_eq!(
            read(&mut view, position("A", 2)),
            [Breach::PositionBeforeAnswer]
        );
        read(&mut view, subscribed());
        assert_eq!(
            read(&mut view, position("A", 3)),
            [Breach::PositionBeforeSnapshot]
        );
    }

    #[test]
    fn read_through_a_socket_an_earlier_answer_may_follow_a_request() {
        let mut view = live(Reading::Buffered);
        view.requested(TOPIC, Asked::Newest);
        assert!(read(&mut view, position("A", 11)).is_empty());
        assert!(read(&mut view, snapshot(&[("A", 12)])).is_empty());
        assert!(!view.is_live(TOPIC));
        assert!(read(&mut view, subscribed()).is_empty());
        assert_eq!(view.last(TOPIC, "A"), None);
        // Unasked, as far as this client can tell: it may answer an older request.
        let mut fresh = ClientView::new(Reading::Buffered);
        assert!(read(&mut fresh, subscribed()).is_empty());
    }

    #[test]
    fn read_as_sent_only_an_asked_topic_is_answered() {
        let mut view = ClientView::new(Reading::AsSent);
        assert_eq!(
            read(&mut view, subscribed()),
            [Breach::UnexpectedSubscribed]
        );
        let mut view = live(Reading::AsSent);
        assert_eq!(
            read(&mut view, snapshot(&[("A", 20)])),
            [Breach::UnexpectedSnapshot]
        );
        view.requested(TOPIC, Asked::Newest);
        assert_eq!(
            read(&mut view, snapshot(&[("A", 30)])),
            [Breach::UnexpectedSnapshot]
        );
    }

    #[test]
    fn a_second_snapshot_is_unexpected_in_either_reading() {
        let mut view = live(Reading::Buffered);
        assert_eq!(
            read(&mut view, snapshot(&[("A", 20)])),
            [Breach::UnexpectedSnapshot]
        );
    }

    #[test]
    fn a_replay_seek_starts_its_track_over() {
        let replay = "replay:r1";
        let frame = |kind: &str, ts: i64| {
            serde_json::json!({"type": kind, "topic": replay,
                "positions": [{"deviceId": "A", "ts": ts}]})
        };
        for reading in [Reading::AsSent, Reading::Buffered] {
            let mut view = ClientView::new(reading);
            view.requested(replay, Asked::Newest);
            read(
                &mut view,
                serde_json::json!({"type": "subscribed", "topic": replay}),
            );
            assert!(read(&mut view, frame("snapshot", 50)).is_empty());
            assert!(
                read(&mut view, frame("snapshot", 10)).is_empty(),
                "a seek back"
            );
            assert_eq!(view.last(replay, "A"), Some(10));
            // Replays are not tracked as an event's positions are.
            assert!(view.track(replay).is_empty());
            assert_eq!(view.last_read(replay), None);
        }
        let mut view = ClientView::new(Reading::Buffered);
        view.requested(replay, Asked::Newest);
        assert!(read(&mut view, frame("snapshot", 50)).is_empty());
        // Started again: what the old one sent, read after the request, starts over too.
        view.requested(replay, Asked::Newest);
        assert!(read(&mut view, frame("snapshot", 10)).is_empty());
        assert_eq!(view.last(replay, "A"), Some(10));
        let mut view = ClientView::new(Reading::AsSent);
        view.requested(replay, Asked::Newest);
        assert_eq!(
            read(&mut view, frame("snapshot", 50)),
            [Breach::UnexpectedSnapshot]
        );
    }

    #[test]
    fn ts_must_grow_per_topic_and_device() {
        let mut view = live(Reading::AsSent);
        assert_eq!(read(&mut view, position("A", 10)), [Breach::Backwards]);
        assert_eq!(read(&mut view, position("A", 9)), [Breach::Backwards]);
        assert!(read(&mut view, position("A", 11)).is_empty());
        assert_eq!(view.last(TOPIC, "A"), Some(11));
    }

    #[test]
    fn a_plain_snapshot_holds_each_device_once_a_resume_several_times() {
        let mut view = ClientView::new(Reading::AsSent);
        view.requested(TOPIC, Asked::Newest);
        read(&mut view, subscribed());
        assert_eq!(
            read(&mut view, snapshot(&[("A", 1), ("A", 2)])),
            [Breach::DeviceTwice]
        );
        view.requested(TOPIC, Asked::Since);
        read(&mut view, subscribed());
        assert!(read(&mut view, snapshot(&[("A", 1), ("A", 2)])).is_empty());
        assert_eq!(view.track(TOPIC)["A"], vec![1, 2]);
        // Through a socket the snapshot may answer another request.
        let mut view = ClientView::new(Reading::Buffered);
        view.requested(TOPIC, Asked::Newest);
        read(&mut view, subscribed());
        assert!(read(&mut view, snapshot(&[("A", 1), ("A", 2)])).is_empty());
    }

    #[test]
    fn the_predicate_is_asked_where_a_position_was_shown() {
        let mut view = ClientView::new(Reading::AsSent);
        view.requested(TOPIC, Asked::Newest);
        read(&mut view, subscribed());
        let only_live = |_: &str, ts: i64, shown: Shown| shown == Shown::Live && ts != 13;
        let frame = snapshot(&[("A", 10)]).to_string();
        let broken = view.receive(frame.as_bytes(), &only_live);
        assert_eq!(broken[0].0, Breach::NotAllowed);
        let frame = position("A", 12).to_string();
        assert!(view.receive(frame.as_bytes(), &only_live).is_empty());
        let frame = position("A", 13).to_string();
        assert_eq!(
            view.receive(frame.as_bytes(), &only_live)[0].0,
            Breach::NotAllowed
        );
    }

    #[test]
    fn refusals_end_a_topic_and_bad_requests_do_not() {
        for reading in [Reading::AsSent, Reading::Buffered] {
            for code in ["forbidden", "limit_exceeded"] {
                let mut view = live(reading);
                assert!(read(&mut view, error(code)).is_empty());
                assert!(!view.is_live(TOPIC));
                assert_eq!(
                    read(&mut view, position("A", 20)),
                    [Breach::PositionWithoutSubscription]
                );
            }
            let mut view = live(reading);
            assert!(read(&mut view, error("bad_request")).is_empty());
            assert!(view.is_live(TOPIC));
        }
    }

    #[test]
    fn an_unsubscribe_ends_a_topic_at_once_only_when_read_as_sent() {
        let mut view = live(Reading::AsSent);
        view.unsubscribe_requested(TOPIC);
        assert_eq!(
            read(&mut view, position("A", 20)),
            [Breach::PositionWithoutSubscription]
        );
        let mut view = live(Reading::Buffered);
        view.unsubscribe_requested(TOPIC);
        assert!(read(&mut view, position("A", 20)).is_empty());
        let unsubscribed = serde_json::json!({"type": "unsubscribed", "topic": TOPIC});
        assert!(read(&mut view, unsubscribed).is_empty());
        assert_eq!(
            read(&mut view, position("A", 21)),
            [Breach::PositionWithoutSubscription]
        );
    }

    #[test]
    fn what_a_client_cannot_read_is_malformed() {
        let mut view = live(Reading::Buffered);
        assert_eq!(view.receive(b"{nope", &any)[0].0, Breach::Malformed);
        for frame in [
            serde_json::json!({"type": "what"}),
            serde_json::json!({"type": "auth"}),
            serde_json::json!({"type": "position", "topic": TOPIC, "deviceId": "A"}),
        ] {
            assert!(read(&mut view, frame).contains(&Breach::Malformed));
        }
        assert!(read(&mut view, serde_json::json!({"type": "auth", "exp": 5})).is_empty());
        assert!(read(&mut view, serde_json::json!({"type": "pong"})).is_empty());
        let end = serde_json::json!({"type": "replay_end", "topic": TOPIC});
        assert!(read(&mut view, end).is_empty());
        assert!(!view.is_live(TOPIC));
    }

    #[test]
    fn read_as_sent_an_answer_needs_its_question() {
        let auth = || serde_json::json!({"type": "auth", "exp": 5});
        let refused =
            || serde_json::json!({"type": "error", "code": "unauthorized", "message": "m"});
        let mut view = ClientView::new(Reading::AsSent);
        assert_eq!(read(&mut view, auth()), [Breach::Unasked]);
        assert_eq!(read(&mut view, refused()), [Breach::Unasked]);
        view.auth_requested();
        view.auth_requested();
        assert!(read(&mut view, auth()).is_empty());
        assert!(read(&mut view, refused()).is_empty());
        assert_eq!(
            read(&mut view, auth()),
            [Breach::Unasked],
            "two asked, two answered"
        );
        // `replay_end` ends a replay being played, and nothing else.
        let end = |topic: &str| serde_json::json!({"type": "replay_end", "topic": topic});
        let mut view = live(Reading::AsSent);
        assert_eq!(read(&mut view, end(TOPIC)), [Breach::Unasked]);
        let replay = "replay:r";
        view.requested(replay, Asked::Newest);
        assert_eq!(
            read(&mut view, end(replay)),
            [Breach::Unasked],
            "not yet playing"
        );
        view.requested(replay, Asked::Newest);
        read(
            &mut view,
            serde_json::json!({"type": "subscribed", "topic": replay}),
        );
        read(
            &mut view,
            serde_json::json!({"type": "snapshot", "topic": replay, "positions": []}),
        );
        assert!(read(&mut view, end(replay)).is_empty());
        assert!(!view.is_live(replay));
    }
}
