//! One timer for every connection: the next deadline of each (a ping, a stalled write),
//! in a sorted set.
//!
//! Idle connections cost one entry each, and the shell sleeps on a single deadline (the
//! first one) instead of one timer per connection.

use std::collections::{BTreeMap, BTreeSet};

use super::command::ConnId;
use crate::UnixMillis;

#[derive(Debug, Default)]
pub(crate) struct PingSchedule {
    due: BTreeSet<(UnixMillis, ConnId)>,
    at: BTreeMap<ConnId, UnixMillis>,
}

impl PingSchedule {
    /// Schedules `conn` at `t`, replacing its previous time.
    pub(crate) fn schedule(&mut self, conn: ConnId, t: UnixMillis) {
        self.cancel(conn);
        self.due.insert((t, conn));
        self.at.insert(conn, t);
    }

    pub(crate) fn cancel(&mut self, conn: ConnId) {
        if let Some(t) = self.at.remove(&conn) {
            self.due.remove(&(t, conn));
        }
    }

    pub(crate) fn contains(&self, conn: ConnId) -> bool {
        self.at.contains_key(&conn)
    }

    pub(crate) fn first(&self) -> Option<UnixMillis> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Takes every connection due at `now`, earliest first (ties in id order).
    pub(crate) fn take_due(&mut self, now: UnixMillis) -> Vec<ConnId> {
        let mut taken = Vec::new();
        while let Some(&(t, conn)) = self.due.first() {
            if t > now {
                break;
            }
            self.due.pop_first();
            self.at.remove(&conn);
            taken.push(conn);
        }
        taken
    }

    pub(crate) fn clear(&mut self) {
        self.due.clear();
        self.at.clear();
    }
}
