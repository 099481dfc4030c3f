//! Commands in flight: sent by a writer, executed by a server, answered back.

use std::fmt;

use processor_core::durable::{Command, Input, ReadFrom};
use processor_core::stream::StreamEntry;

/// Identifies one command in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// What the shell would hand back to the writer: the core's own input type.
pub type Answer = Input;

/// Where a command is.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// On its way to the server.
    Sent(Command),
    /// Executed; the answer is on its way back.
    Answered(Answer),
}

/// One command in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub slot: usize,
    pub incarnation: u64,
    /// The consumer name it runs under (it outlives a crash of its instance).
    pub consumer: String,
    pub stage: Stage,
    /// Its instance crashed after sending it: it still runs, the answer goes nowhere.
    pub orphan: bool,
}

impl Op {
    /// A write, executed by Postgres rather than Redis.
    pub fn is_write(&self) -> bool {
        matches!(self.stage, Stage::Sent(Command::Write { .. }))
    }

    /// A blocking read of new entries not yet executed.
    pub fn is_new_read(&self) -> bool {
        matches!(
            self.stage,
            Stage::Sent(Command::Read {
                from: ReadFrom::New,
                ..
            })
        )
    }
}

/// How the execution of a command fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFault {
    None,
    /// Fails before it takes effect.
    Before,
    /// Takes effect, then the answer is lost (reported as a failure).
    After,
    /// For a dead-letter batch: the first `n` entries are written, then the answer is lost.
    Partial(usize),
}

/// A compact rendering of a command for the trace: ids and keys rather than whole payloads.
pub struct CommandText<'a>(pub &'a Command);

impl fmt::Display for CommandText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Command::Write { id, rows } => {
                write!(f, "Write {} [", id.0)?;
                for row in rows.iter() {
                    write!(
                        f,
                        "({:?},{},{},{},{},{:?})",
                        row.position.device_id,
                        row.position.ts.as_i64(),
                        row.position.speed,
                        row.faulty,
                        row.received_at.as_i64(),
                        row.entries
                    )?;
                }
                write!(f, "]")
            }
            Command::DeadLetter { id, entries } => {
                write!(f, "DeadLetter {} [", id.0)?;
                for d in entries {
                    write!(
                        f,
                        "({},{},{:?})",
                        d.source_id,
                        d.payload.as_ref().map_or(0, |p| p.len()),
                        d.reason
                    )?;
                }
                write!(f, "]")
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// A compact rendering of an answer for the trace.
pub struct AnswerText<'a>(pub &'a Answer);

fn entries(f: &mut fmt::Formatter<'_>, entries: &[StreamEntry]) -> fmt::Result {
    for e in entries {
        write!(
            f,
            " {}x{}:{}",
            e.id,
            e.deliveries,
            e.payload.as_ref().map_or(-1, |p| p.len() as i64)
        )?;
    }
    Ok(())
}

impl fmt::Display for AnswerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Answer::Read(Ok(got)) => {
                write!(f, "read ok")?;
                entries(f, got)
            }
            Answer::Claimed(Ok(c)) => {
                write!(f, "claimed next={} deleted={:?}", c.next_cursor, c.deleted)?;
                entries(f, &c.entries)
            }
            other => write!(f, "{other:?}"),
        }
    }
}
