//! Single values an organizer types: names, bib numbers, device ids, visibility, times.

use std::fmt;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::decode::check_device_id;

/// Longest event or entry name, in characters: enough for "Vilnius Marathon 2026, 42 km,
/// wave B", short enough for a map label and a list row.
pub const MAX_NAME_CHARS: usize = 200;

/// Longest bib, in characters: bibs are printed numbers with the odd letter ("A12", "101-2").
pub const MAX_BIB_CHARS: usize = 16;

/// Why one value was refused. `field` is the name the user knows it by (flag or column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} must be at most {max} characters (got {got})")]
    TooLong {
        field: &'static str,
        max: usize,
        got: usize,
    },
    #[error("{field} must not contain control characters")]
    ControlCharacter { field: &'static str },
    #[error("{field} must not contain spaces")]
    Whitespace { field: &'static str },
    #[error("{field} {problem}")]
    DeviceId {
        field: &'static str,
        problem: &'static str,
    },
    #[error("visibility must be `public` or `private` (got `{got}`)")]
    Visibility { got: String },
    #[error("{field} must be an RFC 3339 time such as 2026-05-01T09:00:00Z (got `{got}`)")]
    Time { field: &'static str, got: String },
}

/// An event's name: 1 to [`MAX_NAME_CHARS`] characters once trimmed, no control characters.
pub fn parse_event_name(value: &str) -> Result<String, FieldError> {
    name("name", value)
}

/// An entry's (participant's) name; the same rule as an event's.
pub fn parse_entry_name(value: &str) -> Result<String, FieldError> {
    name("name", value)
}

fn name(field: &'static str, value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::Empty { field });
    }
    let got = value.chars().count();
    if got > MAX_NAME_CHARS {
        return Err(FieldError::TooLong {
            field,
            max: MAX_NAME_CHARS,
            got,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::ControlCharacter { field });
    }
    Ok(value.to_owned())
}

/// A bib number: 1 to [`MAX_BIB_CHARS`] characters once trimmed, no spaces or control
/// characters. Text, not a number: "007" and "7" are different bibs, as printed.
pub fn parse_bib(value: &str) -> Result<String, FieldError> {
    let field = "bib";
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::Empty { field });
    }
    let got = value.chars().count();
    if got > MAX_BIB_CHARS {
        return Err(FieldError::TooLong {
            field,
            max: MAX_BIB_CHARS,
            got,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::ControlCharacter { field });
    }
    if value.chars().any(char::is_whitespace) {
        return Err(FieldError::Whitespace { field });
    }
    Ok(value.to_owned())
}

/// A device id as the stream carries it (contract section 3), surrounding spaces trimmed.
pub fn parse_device_id(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    check_device_id(value).map_err(|problem| FieldError::DeviceId {
        field: "device_id",
        problem,
    })?;
    Ok(value.to_owned())
}

/// An RFC 3339 time; `field` names the flag or column it came from.
pub fn parse_time(field: &'static str, value: &str) -> Result<OffsetDateTime, FieldError> {
    OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|_| FieldError::Time {
        field,
        got: value.to_owned(),
    })
}

/// Who may see an event (contract section 5): anyone, or tokens that grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventVisibility {
    #[default]
    Public,
    Private,
}

impl EventVisibility {
    /// The `events.visibility` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventVisibility::Public => "public",
            EventVisibility::Private => "private",
        }
    }
}

impl FromStr for EventVisibility {
    type Err = FieldError;

    fn from_str(value: &str) -> Result<EventVisibility, FieldError> {
        match value.trim() {
            "public" => Ok(EventVisibility::Public),
            "private" => Ok(EventVisibility::Private),
            other => Err(FieldError::Visibility {
                got: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for EventVisibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_event_name("  City Run ").as_deref(), Ok("City Run"));
        assert_eq!(
            parse_event_name("   "),
            Err(FieldError::Empty { field: "name" })
        );
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(matches!(
            parse_entry_name(&long),
            Err(FieldError::TooLong { got: 201, .. })
        ));
        assert_eq!(
            parse_entry_name("a\u{7}b"),
            Err(FieldError::ControlCharacter { field: "name" })
        );
        // Counted in characters, not bytes.
        assert!(parse_entry_name(&"ž".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn bibs_are_printed_text_without_spaces() {
        assert_eq!(parse_bib(" 007 ").as_deref(), Ok("007"));
        assert_eq!(parse_bib("A-12").as_deref(), Ok("A-12"));
        assert_eq!(
            parse_bib("1 2"),
            Err(FieldError::Whitespace { field: "bib" })
        );
        assert_eq!(parse_bib(""), Err(FieldError::Empty { field: "bib" }));
        assert!(matches!(
            parse_bib(&"9".repeat(17)),
            Err(FieldError::TooLong { max: 16, .. })
        ));
    }

    #[test]
    fn device_ids_follow_the_stream_rule() {
        assert_eq!(
            parse_device_id(" 356307042441013").as_deref(),
            Ok("356307042441013")
        );
        assert!(parse_device_id("").is_err());
        assert!(parse_device_id(&"1".repeat(65)).is_err());
        let error = parse_device_id("12\u{0}3").unwrap_err();
        assert_eq!(
            error.to_string(),
            "device_id must not contain control characters"
        );
    }

    #[test]
    fn visibility_is_public_or_private() {
        assert_eq!(
            "private".parse::<EventVisibility>(),
            Ok(EventVisibility::Private)
        );
        assert_eq!(
            "public".parse::<EventVisibility>(),
            Ok(EventVisibility::Public)
        );
        let error = "secret".parse::<EventVisibility>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "visibility must be `public` or `private` (got `secret`)"
        );
    }

    #[test]
    fn times_are_rfc_3339() {
        let t = parse_time("--starts-at", "2026-05-01T09:00:00+03:00").unwrap();
        assert_eq!(t.unix_timestamp(), 1_777_615_200);
        let error = parse_time("--starts-at", "2026-05-01 09:00").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("--starts-at must be an RFC 3339 time"));
    }

    #[test]
    fn a_bib_of_exactly_the_most_characters_is_taken() {
        let longest = "7".repeat(MAX_BIB_CHARS);
        assert_eq!(parse_bib(&longest), Ok(longest.clone()));
        assert!(matches!(
            parse_bib(&format!("{longest}7")),
            Err(FieldError::TooLong { got, .. }) if got == MAX_BIB_CHARS + 1
        ));
    }

    #[test]
    fn a_visibility_is_written_as_the_column_reads_it() {
        for (visibility, text) in [
            (EventVisibility::Public, "public"),
            (EventVisibility::Private, "private"),
        ] {
            assert_eq!(visibility.as_str(), text);
            assert_eq!(visibility.to_string(), text);
            assert_eq!(text.parse::<EventVisibility>(), Ok(visibility));
        }
    }
}
