//! Topics: `event:<uuid>`.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use uuid::Uuid;

const PREFIX: &str = "event:";

/// A subscribable topic: one event, named by its UUID.
///
/// Two spellings of one UUID (upper or lower case) are the same topic; the server always
/// writes the lower-case form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(pub Uuid);

impl Topic {
    pub fn event_id(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.0.as_hyphenated())
    }
}

/// A topic that is not `event:` followed by a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("topic must be event:<uuid> with the UUID in its hyphenated form")]
pub struct MalformedTopic;

impl FromStr for Topic {
    type Err = MalformedTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = s.strip_prefix(PREFIX).ok_or(MalformedTopic)?;
        // The uuid crate also takes the simple, braced and URN forms; the contract names one.
        if id.len() != 36 {
            return Err(MalformedTopic);
        }
        Uuid::try_parse(id).map(Topic).map_err(|_| MalformedTopic)
    }
}
