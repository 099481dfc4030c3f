//! How far the telemetry stream may be trimmed: never past an entry some consumer group has
//! not been given yet, nor past one it still holds pending.
//!
//! Every group counts, not only the durable one: a broadcast group that lags would otherwise
//! lose live positions. With no durable group on the stream nothing is trimmed at all (its
//! group is created at the start of the stream, so entries before it exists are still owed
//! to Postgres).

use crate::stream::EntryId;

/// Where one consumer group stands, as `XINFO GROUPS` and `XPENDING` tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPosition {
    pub name: String,
    /// The last entry delivered to any of the group's consumers (`0-0`: none yet).
    pub last_delivered: EntryId,
    /// The smallest id still pending in the group, if any.
    pub oldest_pending: Option<EntryId>,
}

/// The id below which every entry may go (`XTRIM <stream> MINID <floor>`), or `None` when
/// nothing may.
pub fn trim_floor(groups: &[GroupPosition], durable_group: &str) -> Option<EntryId> {
    if !groups.iter().any(|g| g.name == durable_group) {
        return None;
    }
    groups
        .iter()
        .map(|g| {
            let next = after(g.last_delivered);
            g.oldest_pending.map_or(next, |p| p.min(next))
        })
        .min()
        // Nothing lies below 0-1.
        .filter(|floor| *floor > EntryId::new(0, 1))
}

/// The smallest id after `id`.
fn after(id: EntryId) -> EntryId {
    match id.seq.checked_add(1) {
        Some(seq) => EntryId::new(id.ms, seq),
        None => EntryId::new(id.ms.saturating_add(1), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, last: (u64, u64), pending: Option<(u64, u64)>) -> GroupPosition {
        GroupPosition {
            name: name.to_owned(),
            last_delivered: EntryId::new(last.0, last.1),
            oldest_pending: pending.map(|(ms, seq)| EntryId::new(ms, seq)),
        }
    }

    #[test]
    fn without_the_durable_group_nothing_is_trimmed() {
        assert_eq!(
            trim_floor(&[group("live-broadcast-a", (9, 0), None)], "durable-write"),
            None
        );
        assert_eq!(trim_floor(&[], "durable-write"), None);
    }

    #[test]
    fn up_to_the_oldest_pending_entry() {
        let groups = [group("durable-write", (50, 3), Some((20, 1)))];
        assert_eq!(
            trim_floor(&groups, "durable-write"),
            Some(EntryId::new(20, 1))
        );
    }

    #[test]
    fn past_everything_delivered_when_nothing_is_pending() {
        let groups = [group("durable-write", (50, 3), None)];
        assert_eq!(
            trim_floor(&groups, "durable-write"),
            Some(EntryId::new(50, 4))
        );
    }

    #[test]
    fn the_group_furthest_behind_decides() {
        let groups = [
            group("durable-write", (50, 3), None),
            group("live-broadcast-a", (40, 0), None),
            group("live-broadcast-b", (60, 0), None),
        ];
        assert_eq!(
            trim_floor(&groups, "durable-write"),
            Some(EntryId::new(40, 1))
        );
    }

    #[test]
    fn a_group_that_was_given_nothing_keeps_everything() {
        let groups = [
            group("durable-write", (50, 3), None),
            group("replay", (0, 0), None),
        ];
        assert_eq!(trim_floor(&groups, "durable-write"), None);
    }

    #[test]
    fn the_last_sequence_number_rolls_over_to_the_next_millisecond() {
        let groups = [group("durable-write", (7, u64::MAX), None)];
        assert_eq!(
            trim_floor(&groups, "durable-write"),
            Some(EntryId::new(8, 0))
        );
    }
}
