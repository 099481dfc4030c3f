//! Parsing of stream replies.

use bytes::Bytes;
use redis::Value;

use processor_core::stream::EntryId;

/// A reply that does not have the shape the command documents.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply to {command}: {problem}")]
pub struct ReplyError {
    pub command: &'static str,
    pub problem: &'static str,
}

fn bad(command: &'static str, problem: &'static str) -> ReplyError {
    ReplyError { command, problem }
}

/// An entry as read: its id and its `payload` field. `fields` is `None` when the entry was
/// deleted from the stream while pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub id: EntryId,
    pub payload: Option<Bytes>,
    pub deleted: bool,
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

pub fn entry_id(v: &Value, command: &'static str) -> Result<EntryId, ReplyError> {
    let raw = bytes_of(v).ok_or_else(|| bad(command, "entry id is not a string"))?;
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(command, "entry id is not <ms>-<seq>"))
}

fn entry(v: &Value, command: &'static str) -> Result<RawEntry, ReplyError> {
    let Value::Array(parts) = v else {
        return Err(bad(command, "entry is not an array"));
    };
    let [id, fields] = parts.as_slice() else {
        return Err(bad(command, "entry is not [id, fields]"));
    };
    let id = entry_id(id, command)?;
    let fields: &[Value] = match fields {
        Value::Nil => {
            return Ok(RawEntry {
                id,
                payload: None,
                deleted: true,
            })
        }
        Value::Array(f) => f,
        Value::Map(pairs) => {
            let payload = pairs
                .iter()
                .find(|(k, _)| bytes_of(k) == Some(b"payload"))
                .and_then(|(_, v)| bytes_of(v))
                .map(Bytes::copy_from_slice);
            return Ok(RawEntry {
                id,
                payload,
                deleted: false,
            });
        }
        _ => return Err(bad(command, "entry fields are not an array")),
    };
    let payload = fields
        .chunks(2)
        .find(|pair| pair.len() == 2 && bytes_of(&pair[0]) == Some(b"payload"))
        .and_then(|pair| bytes_of(&pair[1]))
        .map(Bytes::copy_from_slice);
    Ok(RawEntry {
        id,
        payload,
        deleted: false,
    })
}

fn entries(v: &Value, command: &'static str) -> Result<Vec<RawEntry>, ReplyError> {
    match v {
        Value::Array(items) => items.iter().map(|e| entry(e, command)).collect(),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad(command, "entry list is not an array")),
    }
}

/// The entries of an XREADGROUP reply on one stream; none on a timed-out block.
pub fn read_reply(v: &Value) -> Result<Vec<RawEntry>, ReplyError> {
    const C: &str = "XREADGROUP";
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => match streams.first() {
            None => Ok(Vec::new()),
            Some(Value::Array(kv)) if kv.len() == 2 => entries(&kv[1], C),
            Some(_) => Err(bad(C, "stream reply is not [key, entries]")),
        },
        Value::Map(streams) => match streams.first() {
            None => Ok(Vec::new()),
            Some((_, list)) => entries(list, C),
        },
        _ => Err(bad(C, "reply is neither nil nor a list of streams")),
    }
}

/// An XAUTOCLAIM reply: next cursor, claimed entries, ids deleted while pending.
pub fn autoclaim_reply(v: &Value) -> Result<(EntryId, Vec<RawEntry>, Vec<EntryId>), ReplyError> {
    const C: &str = "XAUTOCLAIM";
    let Value::Array(parts) = v else {
        return Err(bad(C, "reply is not an array"));
    };
    let cursor = parts
        .first()
        .ok_or_else(|| bad(C, "reply has no cursor"))
        .and_then(|c| entry_id(c, C))?;
    let claimed = entries(parts.get(1).unwrap_or(&Value::Nil), C)?;
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| entry_id(id, C))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok((cursor, claimed, deleted))
}

/// An extended XPENDING reply: (id, delivery count) per entry.
pub fn pending_counts(v: &Value) -> Result<Vec<(EntryId, u64)>, ReplyError> {
    const C: &str = "XPENDING";
    let Value::Array(rows) = v else {
        return Err(bad(C, "reply is not an array"));
    };
    rows.iter()
        .map(|row| {
            let Value::Array(cols) = row else {
                return Err(bad(C, "row is not an array"));
            };
            let id = entry_id(cols.first().unwrap_or(&Value::Nil), C)?;
            match cols.get(3) {
                Some(Value::Int(n)) => Ok((id, u64::try_from(*n).unwrap_or(0))),
                _ => Err(bad(C, "row has no delivery count")),
            }
        })
        .collect()
}

/// The count of a summary XPENDING reply.
pub fn pending_total(v: &Value) -> Result<u64, ReplyError> {
    match v {
        Value::Array(parts) => match parts.first() {
            Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            _ => Err(bad("XPENDING", "summary has no count")),
        },
        _ => Err(bad("XPENDING", "summary is not an array")),
    }
}

/// One group of an XINFO GROUPS reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub pending: u64,
    pub last_delivered: EntryId,
}

/// Every group in an XINFO GROUPS reply (RESP2 flat lists or RESP3 maps).
pub fn groups(v: &Value) -> Result<Vec<GroupInfo>, ReplyError> {
    const C: &str = "XINFO GROUPS";
    let Value::Array(groups) = v else {
        return Err(bad(C, "reply is not an array"));
    };
    groups
        .iter()
        .map(|group| {
            let pairs: Vec<(&Value, &Value)> = match group {
                Value::Array(flat) => flat
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (&c[0], &c[1]))
                    .collect(),
                Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
                _ => return Err(bad(C, "group is neither a list nor a map")),
            };
            let field = |name: &[u8]| {
                pairs
                    .iter()
                    .find(|(k, _)| bytes_of(k) == Some(name))
                    .map(|(_, v)| *v)
            };
            let name = field(b"name")
                .and_then(bytes_of)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::to_owned)
                .ok_or_else(|| bad(C, "group has no name"))?;
            let pending = match field(b"pending") {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => return Err(bad(C, "group has no pending count")),
            };
            let last_delivered = field(b"last-delivered-id")
                .ok_or_else(|| bad(C, "group has no last-delivered-id"))
                .and_then(|v| entry_id(v, C))?;
            Ok(GroupInfo {
                name,
                pending,
                last_delivered,
            })
        })
        .collect()
}

/// The `name` of every group in an XINFO GROUPS reply.
pub fn group_names(v: &Value) -> Result<Vec<String>, ReplyError> {
    Ok(groups(v)?.into_iter().map(|g| g.name).collect())
}

/// The smallest pending id of a summary XPENDING reply (`None` when nothing is pending).
pub fn pending_smallest(v: &Value) -> Result<Option<EntryId>, ReplyError> {
    match v {
        Value::Array(parts) => match parts.get(1) {
            None | Some(Value::Nil) => Ok(None),
            Some(id) => entry_id(id, "XPENDING").map(Some),
        },
        _ => Err(bad("XPENDING", "summary is not an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn read_reply_takes_payload_and_marks_deleted_entries() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("telemetry"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("other"), bulk("x"), bulk("payload"), bulk("{}")]),
                ]),
                Value::Array(vec![
                    bulk("2-5"),
                    Value::Array(vec![bulk("other"), bulk("x")]),
                ]),
                Value::Array(vec![bulk("3-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(&v).expect("well-formed reply");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].payload.as_deref(), Some(&b"{}"[..]));
        assert_eq!(got[1].id, EntryId::new(2, 5));
        assert_eq!((got[1].payload.is_none(), got[1].deleted), (true, false));
        assert!(got[2].deleted);
        assert!(read_reply(&Value::Nil)
            .expect("nil is no entries")
            .is_empty());
        assert!(read_reply(&Value::Int(3)).is_err());
    }

    #[test]
    fn autoclaim_reply_has_cursor_entries_and_deleted_ids() {
        let v = Value::Array(vec![
            bulk("7-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-0"),
                Value::Array(vec![bulk("payload"), bulk("p")]),
            ])]),
            Value::Array(vec![bulk("6-0")]),
        ]);
        let (cursor, claimed, deleted) = autoclaim_reply(&v).expect("well-formed reply");
        assert_eq!(cursor, EntryId::new(7, 0));
        assert_eq!(claimed[0].id, EntryId::new(5, 0));
        assert_eq!(deleted, vec![EntryId::new(6, 0)]);
    }

    #[test]
    fn pending_rows_give_delivery_counts() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("5-1"),
            bulk("consumer"),
            Value::Int(1200),
            Value::Int(3),
        ])]);
        assert_eq!(
            pending_counts(&v).expect("well-formed reply"),
            vec![(EntryId::new(5, 1), 3)]
        );
        assert!(pending_counts(&Value::Array(vec![Value::Array(vec![bulk("5-1")])])).is_err());
    }
}
