//! The organizer's data: what a valid event, entry, bib number and device assignment is.
//!
//! The shell's `processor admin` commands parse what the user typed (flags or a CSV start
//! list) with these functions and store the result; every rule about the values themselves
//! lives here, every error names the field that was wrong.

mod fields;
mod rerun;
mod start_list;
mod window;

pub use fields::{
    parse_bib, parse_device_id, parse_entry_name, parse_event_name, parse_time, EventVisibility,
    FieldError, MAX_BIB_CHARS, MAX_NAME_CHARS,
};
pub use rerun::{
    bib_taken_by, entry_by_bib, entry_by_id, listed_entry, place_device, same_event, AssignMode,
    EntryCreate, EntryValues, EventValues, ListedEntry, Placement, START_LIST_DEVICES,
};
pub use start_list::{LineProblem, StartList, StartListEntry, StartListError, MAX_START_LIST_ROWS};
pub use window::{Change, TimeWindow, WindowError};
