//! The data field of an AVL packet (codec, record count, records, record count again), the
//! same over TCP and UDP: decoded whole before anything of it is used, and encoded for the
//! fleet simulator and the tests.

use thiserror::Error;

use super::bad::BadPacket;
use super::record::{AvlRecord, Codec, IoValue};

/// A decoded data field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvlData {
    pub codec: Codec,
    pub records: Vec<AvlRecord>,
}

/// Decodes a data field, checking (in this order) the codec, the two record counts, and
/// that the records fill the data exactly.
pub fn decode_data(data: &[u8]) -> Result<AvlData, BadPacket> {
    let (&codec_id, rest) = data.split_first().ok_or(BadPacket::Malformed)?;
    let codec = Codec::from_id(codec_id).ok_or(BadPacket::Codec)?;
    let (&n1, rest) = rest.split_first().ok_or(BadPacket::Malformed)?;
    let (&n2, body) = rest.split_last().ok_or(BadPacket::Malformed)?;
    if n1 == 0 || n1 != n2 {
        return Err(BadPacket::Count);
    }
    let mut cursor = Cursor { bytes: body };
    let mut records = Vec::with_capacity(usize::from(n1));
    for _ in 0..n1 {
        records.push(read_record(&mut cursor, codec).ok_or(BadPacket::Malformed)?);
    }
    if !cursor.bytes.is_empty() {
        return Err(BadPacket::Malformed);
    }
    Ok(AvlData { codec, records })
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn take_slice(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }

    /// A count or id that is one byte wide in some codecs and two in others.
    fn narrow_or_wide(&mut self, wide: bool) -> Option<u16> {
        if wide {
            self.u16()
        } else {
            self.u8().map(u16::from)
        }
    }

    fn unsigned(&mut self, width: u8) -> Option<u64> {
        let bytes = self.take_slice(usize::from(width))?;
        Some(bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
    }
}

/// Field widths that differ between codecs.
struct Layout {
    wide_event_id: bool,
    generation_type: bool,
    wide_counts: bool,
    wide_ids: bool,
    nx_group: bool,
}

const fn layout(codec: Codec) -> Layout {
    match codec {
        Codec::Codec8 => Layout {
            wide_event_id: false,
            generation_type: false,
            wide_counts: false,
            wide_ids: false,
            nx_group: false,
        },
        Codec::Codec8Extended => Layout {
            wide_event_id: true,
            generation_type: false,
            wide_counts: true,
            wide_ids: true,
            nx_group: true,
        },
        Codec::Codec16 => Layout {
            wide_event_id: true,
            generation_type: true,
            wide_counts: false,
            wide_ids: true,
            nx_group: false,
        },
    }
}

const WIDTHS: [u8; 4] = [1, 2, 4, 8];

fn read_record(c: &mut Cursor<'_>, codec: Codec) -> Option<AvlRecord> {
    let shape = layout(codec);
    let timestamp_ms = c.u64()?;
    let priority = c.u8()?;
    let longitude = i32::from_be_bytes(c.take()?);
    let latitude = i32::from_be_bytes(c.take()?);
    let altitude = i16::from_be_bytes(c.take()?);
    let angle = c.u16()?;
    let satellites = c.u8()?;
    let speed = c.u16()?;
    let event_io_id = c.narrow_or_wide(shape.wide_event_id)?;
    let generation_type = if shape.generation_type {
        Some(c.u8()?)
    } else {
        None
    };
    // The total IO count is redundant with the groups' counts; trackers are known to get
    // it wrong, and the contract does not check it.
    c.narrow_or_wide(shape.wide_counts)?;
    let mut io = Vec::new();
    for width in WIDTHS {
        let count = c.narrow_or_wide(shape.wide_counts)?;
        for _ in 0..count {
            let id = c.narrow_or_wide(shape.wide_ids)?;
            let value = c.unsigned(width)?;
            io.push((id, IoValue::Fixed { width, value }));
        }
    }
    if shape.nx_group {
        let count = c.u16()?;
        for _ in 0..count {
            let id = c.u16()?;
            let len = c.u16()?;
            let bytes = c.take_slice(usize::from(len))?;
            io.push((id, IoValue::Bytes(bytes.to_vec())));
        }
    }
    Some(AvlRecord {
        timestamp_ms,
        priority,
        longitude,
        latitude,
        altitude,
        angle,
        satellites,
        speed,
        event_io_id,
        generation_type,
        io,
    })
}

/// A record that the chosen codec cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("a packet holds 1 to 255 records, not {0}")]
    RecordCount(usize),
    #[error("codec {codec:#04x} cannot carry {what} {value}")]
    TooWide {
        codec: u8,
        what: &'static str,
        value: u64,
    },
    #[error("an IO value of {width} bytes is not one of 1, 2, 4, 8")]
    Width { width: u8 },
    #[error("codec {0:#04x} has no variable-length IO values")]
    NoVariableLength(u8),
    #[error("codec 0x10 needs a generation type")]
    GenerationType,
}

/// Encodes records into a data field; the inverse of [`decode_data`] for records whose IO
/// elements are listed group by group (1-, 2-, 4-, 8-byte, then variable length).
pub fn encode_data(codec: Codec, records: &[AvlRecord]) -> Result<Vec<u8>, EncodeError> {
    let n = u8::try_from(records.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or(EncodeError::RecordCount(records.len()))?;
    let mut out = vec![codec.id(), n];
    for record in records {
        write_record(&mut out, codec, record)?;
    }
    out.push(n);
    Ok(out)
}

fn put_narrow_or_wide(
    out: &mut Vec<u8>,
    codec: Codec,
    wide: bool,
    what: &'static str,
    value: u64,
) -> Result<(), EncodeError> {
    let too_wide = || EncodeError::TooWide {
        codec: codec.id(),
        what,
        value,
    };
    if wide {
        out.extend_from_slice(&u16::try_from(value).map_err(|_| too_wide())?.to_be_bytes());
    } else {
        out.push(u8::try_from(value).map_err(|_| too_wide())?);
    }
    Ok(())
}

fn write_record(out: &mut Vec<u8>, codec: Codec, r: &AvlRecord) -> Result<(), EncodeError> {
    let shape = layout(codec);
    for (_, v) in &r.io {
        if let IoValue::Fixed { width, .. } = v {
            if !WIDTHS.contains(width) {
                return Err(EncodeError::Width { width: *width });
            }
        }
    }
    out.extend_from_slice(&r.timestamp_ms.to_be_bytes());
    out.push(r.priority);
    out.extend_from_slice(&r.longitude.to_be_bytes());
    out.extend_from_slice(&r.latitude.to_be_bytes());
    out.extend_from_slice(&r.altitude.to_be_bytes());
    out.extend_from_slice(&r.angle.to_be_bytes());
    out.push(r.satellites);
    out.extend_from_slice(&r.speed.to_be_bytes());
    put_narrow_or_wide(
        out,
        codec,
        shape.wide_event_id,
        "event IO id",
        u64::from(r.event_io_id),
    )?;
    if shape.generation_type {
        out.push(r.generation_type.ok_or(EncodeError::GenerationType)?);
    }
    let total = r.io.len() as u64;
    put_narrow_or_wide(out, codec, shape.wide_counts, "IO count", total)?;
    for width in WIDTHS {
        let group: Vec<_> =
            r.io.iter()
                .filter_map(|(id, v)| match v {
                    IoValue::Fixed { width: w, value } if *w == width => Some((*id, *value)),
                    _ => None,
                })
                .collect();
        put_narrow_or_wide(
            out,
            codec,
            shape.wide_counts,
            "IO group count",
            group.len() as u64,
        )?;
        for (id, value) in group {
            put_narrow_or_wide(out, codec, shape.wide_ids, "IO id", u64::from(id))?;
            if width < 8 && value >> (u32::from(width) * 8) != 0 {
                return Err(EncodeError::TooWide {
                    codec: codec.id(),
                    what: "IO value",
                    value,
                });
            }
            out.extend_from_slice(&value.to_be_bytes()[8 - usize::from(width)..]);
        }
    }
    let variable: Vec<_> =
        r.io.iter()
            .filter_map(|(id, v)| match v {
                IoValue::Bytes(b) => Some((*id, b)),
                IoValue::Fixed { .. } => None,
            })
            .collect();
    if shape.nx_group {
        put_narrow_or_wide(out, codec, true, "IO group count", variable.len() as u64)?;
        for (id, bytes) in variable {
            out.extend_from_slice(&id.to_be_bytes());
            put_narrow_or_wide(out, codec, true, "IO value length", bytes.len() as u64)?;
            out.extend_from_slice(bytes);
        }
    } else if !variable.is_empty() {
        return Err(EncodeError::NoVariableLength(codec.id()));
    }
    Ok(())
}
