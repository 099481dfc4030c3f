//! Who may subscribe to what (contract section 5, "Authorization").
//!
//! The shell verifies the token and looks up an event's visibility; the decision is made
//! here, so that it is the same on every instance and covered by the core's tests.

use std::collections::BTreeSet;

use uuid::Uuid;

/// The `role` claim value that grants every existing event.
pub const ADMIN_ROLE: &str = "admin";

/// What a connection's token grants. Anonymous clients see public events only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Principal {
    #[default]
    Anonymous,
    Token {
        /// The `events` claim: events granted whatever their visibility.
        events: BTreeSet<Uuid>,
        /// `"role": "admin"`: every event is granted.
        admin: bool,
    },
}

impl Principal {
    /// The principal of a verified token, from its `events` and `role` claims.
    ///
    /// UUIDs compare case-insensitively because they are compared parsed; an `events` entry
    /// that is not a UUID grants nothing (it is ignored rather than failing the token).
    pub fn from_claims<'a>(
        events: impl IntoIterator<Item = &'a str>,
        role: Option<&str>,
    ) -> Principal {
        Principal::Token {
            events: events
                .into_iter()
                .filter_map(|e| Uuid::try_parse(e.trim()).ok())
                .collect(),
            admin: role == Some(ADMIN_ROLE),
        }
    }

    /// Whether this principal may subscribe to `event`, whose visibility is `visibility`.
    ///
    /// An event that does not exist is never granted, not even to an admin or to a token
    /// that names it: the answer must not tell existing private events from missing ones.
    pub fn may_subscribe(&self, event: Uuid, visibility: Visibility) -> bool {
        match visibility {
            Visibility::Unknown => false,
            Visibility::Public => true,
            Visibility::Private => match self {
                Principal::Anonymous => false,
                Principal::Token { events, admin } => *admin || events.contains(&event),
            },
        }
    }
}

/// An event's visibility, as the shell found it in Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Visibility {
    Public,
    Private,
    /// No such event (or a visibility the shell does not recognise).
    Unknown,
}

impl Visibility {
    /// The `events.visibility` column's value; anything but `public` or `private` is
    /// treated as an event nobody may see.
    pub fn from_column(value: Option<&str>) -> Visibility {
        match value {
            Some("public") => Visibility::Public,
            Some("private") => Visibility::Private,
            _ => Visibility::Unknown,
        }
    }
}
