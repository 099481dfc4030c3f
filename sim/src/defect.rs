//! The writer as the simulation drives it, with an optional planted defect.
//!
//! [`SimWriter`] forwards everything to the real [`DurableWriter`]. With a [`Defect`] other
//! than `None` it misbehaves on purpose, so that tests can show the checker notices; the core
//! itself is never changed.

use std::collections::VecDeque;

use processor_core::durable::{Command, DurableStats, DurableWriter, Input};
use processor_core::stream::EntryId;
use processor_core::{MonoMillis, Now};

/// A defect planted in the driver around the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Defect {
    /// The writer as it is.
    #[default]
    None,
    /// Acks a write's entries as soon as the write is issued, before it has committed.
    AckOnWriteIssue,
    /// Acks a dead-letter batch's entries as soon as it is issued, before it is written.
    AckOnDeadLetterIssue,
    /// When the writer wants no timer, asks for one at the last time it was told anyway
    /// (a deadline in the past that leads nowhere: a driver trusting it would spin).
    SpinningTimer,
}

impl std::str::FromStr for Defect {
    type Err = String;

    /// `none`, `ack-on-write-issue`, `ack-on-dead-letter-issue` or `spinning-timer`.
    fn from_str(s: &str) -> Result<Defect, String> {
        match s.trim() {
            "" | "none" => Ok(Defect::None),
            "ack-on-write-issue" => Ok(Defect::AckOnWriteIssue),
            "ack-on-dead-letter-issue" => Ok(Defect::AckOnDeadLetterIssue),
            "spinning-timer" => Ok(Defect::SpinningTimer),
            other => Err(format!(
                "unknown defect {other:?} (none, ack-on-write-issue, ack-on-dead-letter-issue, spinning-timer)"
            )),
        }
    }
}

impl Defect {
    /// The defect named by `SIM_DEFECT`, if set: lets a human watch the checker catch it.
    pub fn from_env() -> Defect {
        std::env::var("SIM_DEFECT")
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|e: String| panic!("SIM_DEFECT: {e}"))
            })
            .unwrap_or_default()
    }
}

/// The durable writer, possibly with a planted defect.
#[derive(Debug)]
pub struct SimWriter {
    inner: DurableWriter,
    defect: Defect,
    held_back: VecDeque<Command>,
    /// The latest time an input carried.
    last_now: MonoMillis,
}

impl SimWriter {
    pub fn new(inner: DurableWriter, defect: Defect) -> SimWriter {
        SimWriter {
            inner,
            defect,
            held_back: VecDeque::new(),
            last_now: MonoMillis(0),
        }
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        if let Some(command) = self.held_back.pop_front() {
            return Some(command);
        }
        let command = self.inner.poll_command()?;
        let early: Option<Vec<EntryId>> = match (&command, self.defect) {
            (Command::Write { rows, .. }, Defect::AckOnWriteIssue) => Some(
                rows.iter()
                    .flat_map(|r| r.entries.iter().map(|(id, _)| *id))
                    .collect(),
            ),
            (Command::DeadLetter { entries, .. }, Defect::AckOnDeadLetterIssue) => {
                Some(entries.iter().map(|d| d.source_id).collect())
            }
            _ => None,
        };
        match early {
            Some(ids) => {
                self.held_back.push_back(command);
                Some(Command::Ack(ids))
            }
            None => Some(command),
        }
    }

    pub fn poll_timeout(&self) -> Option<MonoMillis> {
        match (self.inner.poll_timeout(), self.defect) {
            (None, Defect::SpinningTimer) => Some(self.last_now),
            (t, _) => t,
        }
    }

    fn saw(&mut self, now: Now) {
        self.last_now = self.last_now.max(now.mono);
    }

    pub fn is_stopped(&self) -> bool {
        self.held_back.is_empty() && self.inner.is_stopped()
    }

    pub fn held(&self) -> usize {
        self.inner.held()
    }

    pub fn stats(&self) -> DurableStats {
        self.inner.stats()
    }

    pub fn handle(&mut self, now: Now, input: Input) {
        self.saw(now);
        self.inner.handle(now, input);
    }
}
