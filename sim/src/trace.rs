//! The trace: a hash of every command and input of a run, in order.
//!
//! Two runs of one seed must produce the same hash; that is how determinism is checked.
//! Optionally the last few records are kept as text, for replaying a failure.

use std::collections::VecDeque;
use std::fmt;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over the text of every record.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    records: u64,
    keep: usize,
    tail: VecDeque<String>,
}

impl Trace {
    /// A trace that keeps the last `keep` records as text (0: hash only, the fast path).
    pub fn new(keep: usize) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            records: 0,
            keep,
            tail: VecDeque::new(),
        }
    }

    pub fn record(&mut self, args: fmt::Arguments<'_>) {
        self.records += 1;
        if self.keep == 0 {
            let _ = fmt::write(&mut Absorb(&mut self.hash), args);
        } else {
            let line = fmt::format(args);
            absorb(&mut self.hash, line.as_bytes());
            if self.tail.len() == self.keep {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
        absorb(&mut self.hash, b"\n");
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// The last records kept, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// FNV-1a of `bytes` on its own (used to fingerprint payloads in the trace).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    absorb(&mut hash, bytes);
    hash
}

fn absorb(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(FNV_PRIME);
    }
}

struct Absorb<'a>(&'a mut u64);

impl fmt::Write for Absorb<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        absorb(self.0, s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Trace;

    #[test]
    fn text_and_hash_only_agree() {
        let mut fast = Trace::new(0);
        let mut kept = Trace::new(2);
        for i in 0..5 {
            fast.record(format_args!("event {i}"));
            kept.record(format_args!("event {i}"));
        }
        assert_eq!(fast.hash(), kept.hash());
        assert_eq!(
            kept.tail(),
            vec!["event 3".to_owned(), "event 4".to_owned()]
        );
        assert_eq!(fast.records(), 5);
    }

    #[test]
    fn order_matters() {
        let mut a = Trace::new(0);
        let mut b = Trace::new(0);
        a.record(format_args!("x"));
        a.record(format_args!("y"));
        b.record(format_args!("y"));
        b.record(format_args!("x"));
        assert_ne!(a.hash(), b.hash());
    }
}
