//! What an admin command does when what it is asked to create or assign is already there:
//! the same thing again is a re-run and succeeds without a change; anything else is a
//! conflict the organizer resolves with an `update` or a `move`. The shell reads the rows
//! these judge inside the transaction that locked the event.

use time::OffsetDateTime;
use uuid::Uuid;

use super::fields::EventVisibility;
use super::window::TimeWindow;

/// An event's stored values, or the ones a `create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventValues<'a> {
    pub name: &'a str,
    pub visibility: EventVisibility,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
}

impl<'a> EventValues<'a> {
    pub fn new(name: &'a str, visibility: EventVisibility, window: &TimeWindow) -> Self {
        EventValues {
            name,
            visibility,
            starts_at: window.starts_at(),
            ends_at: window.ends_at(),
        }
    }
}

/// A `create` of an event whose id is taken is a re-run when every value is the one stored.
/// Postgres keeps microseconds: a time typed with more digits is the same time stored.
pub fn same_event(stored: &EventValues<'_>, asked: &EventValues<'_>) -> bool {
    let micros = |t: OffsetDateTime| t.unix_timestamp_nanos() / 1_000;
    stored.name == asked.name
        && stored.visibility == asked.visibility
        && stored.starts_at.map(micros) == asked.starts_at.map(micros)
        && stored.ends_at.map(micros) == asked.ends_at.map(micros)
}

/// An entry's stored values, or the ones a `create` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryValues<'a> {
    pub event: Uuid,
    pub name: Option<&'a str>,
    pub bib: Option<&'a str>,
}

/// The verdict on an entry `create` that found its id or its bib taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryCreate {
    /// A re-run: this entry is the one asked for.
    Existing(Uuid),
    /// Another entry has the id (with other values) or the bib.
    Conflict,
}

/// A `create --id` whose id is taken: a re-run only with the same event, name and bib.
pub fn entry_by_id(id: Uuid, stored: &EntryValues<'_>, asked: &EntryValues<'_>) -> EntryCreate {
    if stored == asked {
        EntryCreate::Existing(id)
    } else {
        EntryCreate::Conflict
    }
}

/// A `create` whose bib is held by `holder` (named `holder_name`) in the event: without an
/// id of its own and with the same name it is that entry again; else the bib is taken.
pub fn entry_by_bib(
    holder: Uuid,
    holder_name: Option<&str>,
    asked_id: Option<Uuid>,
    asked_name: Option<&str>,
) -> EntryCreate {
    if asked_id.is_none() && holder_name == asked_name {
        EntryCreate::Existing(holder)
    } else {
        EntryCreate::Conflict
    }
}

/// An `update --new-bib` whose bib `holder` holds in the event: the other entry that has
/// it, if any (the entry's own bib is no conflict).
pub fn bib_taken_by(entry: Uuid, holder: Option<Uuid>) -> Option<Uuid> {
    holder.filter(|h| *h != entry)
}

/// How a device is put in an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignMode {
    /// Refuse when another entry of the event has the device.
    Assign,
    /// Take it from the other entry.
    Move,
}

/// What putting a device in an entry does, given the entry of the event holding it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In no entry of the event: it is added.
    New,
    /// Already in this entry.
    Unchanged,
    /// Taken from `from` (a move).
    Moved { from: Uuid },
    /// In entry `holder`, and the mode does not move devices: a device is in one entry of
    /// an event at a time.
    Conflict { holder: Uuid },
}

pub fn place_device(entry: Uuid, holder: Option<Uuid>, mode: AssignMode) -> Placement {
    match holder {
        None => Placement::New,
        Some(current) if current == entry => Placement::Unchanged,
        Some(current) => match mode {
            AssignMode::Assign => Placement::Conflict { holder: current },
            AssignMode::Move => Placement::Moved { from: current },
        },
    }
}

/// What importing one start-list row does to the event's entries, given the entry holding
/// its bib (id and name), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedEntry {
    /// The entry is as the row says (an import run again changes nothing).
    Unchanged(Uuid),
    /// The entry takes the row's name: the list is the organizer's latest word.
    Renamed(Uuid),
    /// No entry has the bib: one is created.
    Created,
}

pub fn listed_entry(holder: Option<(Uuid, Option<&str>)>, name: Option<&str>) -> ListedEntry {
    match holder {
        Some((id, held)) if held == name => ListedEntry::Unchanged(id),
        Some((id, _)) => ListedEntry::Renamed(id),
        None => ListedEntry::Created,
    }
}

/// How an import puts a row's devices in its entry: the list is the organizer's latest
/// word, so a device it gives to a bib leaves whichever entry of the event had it.
pub const START_LIST_DEVICES: AssignMode = AssignMode::Move;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_list_row_keeps_renames_or_creates_the_entry_of_its_bib() {
        let id = Uuid::from_u128(7);
        assert_eq!(
            listed_entry(Some((id, Some("Ann"))), Some("Ann")),
            ListedEntry::Unchanged(id)
        );
        assert_eq!(
            listed_entry(Some((id, None)), None),
            ListedEntry::Unchanged(id)
        );
        assert_eq!(
            listed_entry(Some((id, Some("Ann"))), Some("Bo")),
            ListedEntry::Renamed(id)
        );
        assert_eq!(
            listed_entry(Some((id, Some("Ann"))), None),
            ListedEntry::Renamed(id)
        );
        assert_eq!(listed_entry(None, Some("Ann")), ListedEntry::Created);
        assert_eq!(START_LIST_DEVICES, AssignMode::Move);
    }
    use time::format_description::well_known::Rfc3339;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn an_event_is_the_same_to_the_microsecond_with_every_value() {
        let stored = EventValues {
            name: "Rally",
            visibility: EventVisibility::Public,
            starts_at: Some(t("2026-05-01T09:00:00.123456Z")),
            ends_at: None,
        };
        let finer = EventValues {
            starts_at: Some(t("2026-05-01T09:00:00.1234567Z")),
            ..stored.clone()
        };
        assert!(same_event(&stored, &finer));
        for other in [
            EventValues {
                name: "Rally 2",
                ..stored.clone()
            },
            EventValues {
                visibility: EventVisibility::Private,
                ..stored.clone()
            },
            EventValues {
                starts_at: Some(t("2026-05-01T09:00:00.123457Z")),
                ..stored.clone()
            },
            EventValues {
                starts_at: None,
                ..stored.clone()
            },
            EventValues {
                ends_at: Some(t("2026-05-01T15:00:00Z")),
                ..stored.clone()
            },
        ] {
            assert!(!same_event(&stored, &other), "{other:?}");
        }
    }

    #[test]
    fn an_entry_created_again_by_id_must_match_in_every_value() {
        let stored = EntryValues {
            event: id(1),
            name: Some("Ana"),
            bib: Some("7"),
        };
        assert_eq!(
            entry_by_id(id(9), &stored, &stored),
            EntryCreate::Existing(id(9))
        );
        for other in [
            EntryValues {
                event: id(2),
                ..stored
            },
            EntryValues {
                name: None,
                ..stored
            },
            EntryValues {
                bib: Some("8"),
                ..stored
            },
        ] {
            assert_eq!(entry_by_id(id(9), &stored, &other), EntryCreate::Conflict);
        }
    }

    #[test]
    fn a_taken_bib_is_the_same_entry_only_without_an_id_and_with_its_name() {
        assert_eq!(
            entry_by_bib(id(5), Some("Ana"), None, Some("Ana")),
            EntryCreate::Existing(id(5))
        );
        assert_eq!(
            entry_by_bib(id(5), None, None, None),
            EntryCreate::Existing(id(5))
        );
        assert_eq!(
            entry_by_bib(id(5), Some("Ana"), None, Some("Ben")),
            EntryCreate::Conflict
        );
        assert_eq!(
            entry_by_bib(id(5), Some("Ana"), Some(id(6)), Some("Ana")),
            EntryCreate::Conflict
        );
    }

    #[test]
    fn a_new_bib_may_be_free_or_the_entry_s_own() {
        assert_eq!(bib_taken_by(id(1), None), None);
        assert_eq!(bib_taken_by(id(1), Some(id(1))), None);
        assert_eq!(bib_taken_by(id(1), Some(id(2))), Some(id(2)));
    }

    #[test]
    fn a_device_in_another_entry_is_moved_only_by_a_move() {
        let (entry, other) = (id(1), id(2));
        for mode in [AssignMode::Assign, AssignMode::Move] {
            assert_eq!(place_device(entry, None, mode), Placement::New);
            assert_eq!(place_device(entry, Some(entry), mode), Placement::Unchanged);
        }
        assert_eq!(
            place_device(entry, Some(other), AssignMode::Assign),
            Placement::Conflict { holder: other }
        );
        assert_eq!(
            place_device(entry, Some(other), AssignMode::Move),
            Placement::Moved { from: other }
        );
    }
}
