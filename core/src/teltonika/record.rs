//! An AVL record as a Teltonika tracker sends it, in its own units.

/// The three AVL codecs the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// 0x08: one-byte IO ids and counts.
    Codec8,
    /// 0x8E, "Codec 8 Extended": two-byte IO ids and counts, and variable-length IO values.
    Codec8Extended,
    /// 0x10: two-byte event IO id and IO ids, one-byte counts, and a generation type.
    Codec16,
}

impl Codec {
    pub const fn id(self) -> u8 {
        match self {
            Codec::Codec8 => 0x08,
            Codec::Codec8Extended => 0x8E,
            Codec::Codec16 => 0x10,
        }
    }

    pub const fn from_id(id: u8) -> Option<Codec> {
        match id {
            0x08 => Some(Codec::Codec8),
            0x8E => Some(Codec::Codec8Extended),
            0x10 => Some(Codec::Codec16),
            _ => None,
        }
    }
}

/// The value of one IO element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoValue {
    /// From the 1-, 2-, 4- or 8-byte group; `width` is that group's size in bytes.
    Fixed { width: u8, value: u64 },
    /// From codec 8 Extended's variable-length (NX) group.
    Bytes(Vec<u8>),
}

/// One AVL record, fields as on the wire (no scaling, no range checks: the processor's
/// decoder judges the values downstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvlRecord {
    /// Fix time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub priority: u8,
    /// Degrees x 10^7, west negative.
    pub longitude: i32,
    /// Degrees x 10^7, south negative.
    pub latitude: i32,
    /// Metres.
    pub altitude: i16,
    /// Degrees.
    pub angle: u16,
    pub satellites: u8,
    /// km/h.
    pub speed: u16,
    /// The IO element that caused the record; 0 when none did.
    pub event_io_id: u16,
    /// Codec 16 only.
    pub generation_type: Option<u8>,
    /// IO elements in the order they were sent.
    pub io: Vec<(u16, IoValue)>,
}
