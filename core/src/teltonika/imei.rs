//! The device identity a tracker announces: 1 to 64 ASCII digits (an IMEI has 15).

/// An IMEI (or any digit string of 1 to 64 digits) a tracker announced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Imei(String);

pub const MAX_IMEI_LEN: usize = 64;

impl Imei {
    /// The identity in `bytes`, when it is 1 to 64 ASCII digits.
    pub fn parse(bytes: &[u8]) -> Option<Imei> {
        let ok = (1..=MAX_IMEI_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit);
        // Only ASCII digits passed, so this is valid UTF-8.
        ok.then(|| Imei(bytes.iter().map(|&b| char::from(b)).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Imei {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
