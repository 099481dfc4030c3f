//! The few fields the load generator reads from a server frame, without parsing the rest.
//!
//! A full JSON parse per message would make the load generator the bottleneck. The server
//! writes `type` first and `topic` second (`{"type":"position","topic":"replay:r0",...}`),
//! and these readers rely on nothing else: each looks for its field's first occurrence.

/// The frame's `type`: `{"type":"snapshot",...` gives `snapshot`.
pub fn kind(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(r#"{"type":""#)?;
    rest.split('"').next()
}

/// The frame's `topic`, if it has one.
pub fn topic(text: &str) -> Option<&str> {
    let start = text.find(r#""topic":""#)? + 9;
    text[start..].split('"').next()
}

/// The `ts` of a position message.
pub fn fix_ts(text: &str) -> Option<i64> {
    let start = text.find(r#""ts":"#)? + 5;
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The start of a frame, for an error message (frames may be megabytes).
pub fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSITION: &str = r#"{"type":"position","topic":"replay:r7","deviceId":"356307040000001","lat":54.6,"lon":25.2,"ts":1796551201000,"speed":43.1}"#;

    #[test]
    fn reads_the_kind_the_topic_and_the_fix_time() {
        assert_eq!(kind(POSITION), Some("position"));
        assert_eq!(topic(POSITION), Some("replay:r7"));
        assert_eq!(fix_ts(POSITION), Some(1_796_551_201_000));
        assert_eq!(
            kind(r#"{"type":"replay_end","topic":"replay:r7"}"#),
            Some("replay_end")
        );
        assert_eq!(kind("not json"), None);
        assert_eq!(topic(r#"{"type":"pong"}"#), None);
    }

    #[test]
    fn an_excerpt_never_splits_a_character() {
        let text = "é".repeat(200);
        assert!(excerpt(&text).len() <= 300);
        assert!(excerpt("short") == "short");
    }
}
