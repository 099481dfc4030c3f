//! The UDP socket's datagrams between arrival and answer: each is judged
//! ([`judge_datagram`]), appended, and answered only once Redis confirmed every entry within
//! the ack timeout; a bounded number are in flight at once.
//!
//! A datagram's answer is the tracker's only sign that its records are safe, so it is sent
//! for a confirmed append and for nothing else: a failed append, or one not confirmed in
//! time, is left unanswered and the tracker sends the datagram again. An append abandoned
//! at its deadline still holds its place among those in flight until the shell reports it
//! ended, so the bound counts every append the shell is running.

use std::collections::{BTreeMap, VecDeque};

use super::allow_list::AllowList;
use super::bad::BadPacket;
use super::entry::PacketEntries;
use super::udp_judge::{judge_datagram, UdpVerdict};
use crate::{MonoMillis, UnixMillis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// Largest datagram.
    pub max_bytes: usize,
    /// A datagram's appends not all confirmed within this are abandoned: no answer.
    pub ack_timeout_ms: u64,
    /// Appends running at once; past this the socket is not read (the kernel's buffer, then
    /// the network, drop the excess, and trackers resend).
    pub max_in_flight: usize,
}

/// Numbers the datagrams appended, in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatagramId(pub u64);

/// An input for [`UdpFlights::handle`]; `P` is the sender's address.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a, P> {
    /// A datagram read; `received_at` is the wall time the read returned.
    Datagram {
        bytes: &'a [u8],
        peer: P,
        received_at: UnixMillis,
        allow: &'a AllowList,
    },
    /// Redis confirmed every entry of the datagram.
    Appended(DatagramId),
    /// An append failed, or Redis could not be reached.
    AppendFailed(DatagramId),
    /// Time passed; deadlines are judged against `now` (see [`UdpFlights::poll_timeout`]).
    Tick,
}

/// What the shell is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<P> {
    /// XADD every entry (pipelined), then answer [`Input::Appended`] or
    /// [`Input::AppendFailed`].
    Append {
        id: DatagramId,
        entries: PacketEntries,
    },
    /// Stop the append: whatever it does, its datagram is not answered. Answer
    /// [`Input::AppendFailed`] once it has stopped (or [`Input::Appended`] if it had
    /// finished).
    Abandon(DatagramId),
    /// Send `bytes` to `peer`; if it is sent, the datagram's `records` were acknowledged
    /// `latency_ms` after it arrived.
    Reply {
        peer: P,
        bytes: [u8; 7],
        records: u64,
        latency_ms: u64,
    },
    /// Something to count and log.
    Observe { peer: P, what: Observation },
}

/// What became of a datagram that is not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Refused; `head` is at most its first 64 bytes.
    Bad { reason: BadPacket, head: Vec<u8> },
    /// Sound, from a device the allow-list does not hold.
    DeviceRejected { imei: String },
    /// Its append failed.
    AppendFailed,
    /// Its append was not confirmed within the ack timeout.
    NotConfirmedInTime,
}

#[derive(Debug)]
struct Flight<P> {
    peer: P,
    reply: [u8; 7],
    records: u64,
    arrived: MonoMillis,
    /// `None` once abandoned: the append still runs, and nothing is answered.
    deadline: Option<MonoMillis>,
}

/// The datagrams of one UDP socket in flight.
#[derive(Debug)]
pub struct UdpFlights<P> {
    config: UdpConfig,
    next: u64,
    flights: BTreeMap<DatagramId, Flight<P>>,
    commands: VecDeque<Command<P>>,
}

impl<P: Clone> UdpFlights<P> {
    pub fn new(config: UdpConfig) -> UdpFlights<P> {
        UdpFlights {
            config,
            next: 0,
            flights: BTreeMap::new(),
            commands: VecDeque::new(),
        }
    }

    pub fn handle(&mut self, now: MonoMillis, input: Input<'_, P>) {
        match input {
            Input::Datagram {
                bytes,
                peer,
                received_at,
                allow,
            } => self.datagram(now, bytes, peer, received_at, allow),
            Input::Appended(id) | Input::AppendFailed(id) => {
                let Some(flight) = self.flights.remove(&id) else {
                    return;
                };
                // Abandoned: observed at its tick already.
                let Some(at) = flight.deadline else {
                    return;
                };
                let peer = flight.peer;
                // An answer at or after the deadline, before the tick that would have
                // abandoned it, is too late all the same.
                self.commands.push_back(match input {
                    _ if now >= at => Command::Observe {
                        peer,
                        what: Observation::NotConfirmedInTime,
                    },
                    Input::Appended(_) => Command::Reply {
                        peer,
                        bytes: flight.reply,
                        records: flight.records,
                        latency_ms: now.since(flight.arrived),
                    },
                    _ => Command::Observe {
                        peer,
                        what: Observation::AppendFailed,
                    },
                });
            }
            Input::Tick => self.tick(now),
        }
    }

    fn datagram(
        &mut self,
        now: MonoMillis,
        bytes: &[u8],
        peer: P,
        received_at: UnixMillis,
        allow: &AllowList,
    ) {
        match judge_datagram(bytes, self.config.max_bytes, allow, received_at) {
            UdpVerdict::Bad { reason, head } => self.commands.push_back(Command::Observe {
                peer,
                what: Observation::Bad { reason, head },
            }),
            UdpVerdict::Rejected { imei } => self.commands.push_back(Command::Observe {
                peer,
                what: Observation::DeviceRejected { imei },
            }),
            UdpVerdict::Append { entries, reply } => {
                let id = DatagramId(self.next);
                self.next += 1;
                self.flights.insert(
                    id,
                    Flight {
                        peer,
                        reply,
                        records: entries.len() as u64,
                        arrived: now,
                        deadline: Some(now.plus(self.config.ack_timeout_ms)),
                    },
                );
                self.commands.push_back(Command::Append { id, entries });
            }
        }
    }

    fn tick(&mut self, now: MonoMillis) {
        // One timeout for all and a monotonic clock: in id order, the deadlines of those
        // not abandoned never decrease.
        for (id, flight) in &mut self.flights {
            let Some(at) = flight.deadline else {
                continue;
            };
            if now < at {
                break;
            }
            {
                flight.deadline = None;
                self.commands.push_back(Command::Observe {
                    peer: flight.peer.clone(),
                    what: Observation::NotConfirmedInTime,
                });
                self.commands.push_back(Command::Abandon(*id));
            }
        }
    }

    pub fn poll_command(&mut self) -> Option<Command<P>> {
        self.commands.pop_front()
    }

    /// The earliest ack deadline; feed [`Input::Tick`] when it comes.
    pub fn poll_timeout(&self) -> Option<MonoMillis> {
        self.flights.values().find_map(|f| f.deadline)
    }

    /// Whether the socket may be read: fewer appends run than the bound.
    pub fn wants_read(&self) -> bool {
        self.flights.len() < self.config.max_in_flight
    }

    /// Appends the shell is running (abandoned ones included, until they end).
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }
}
