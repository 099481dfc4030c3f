//! One tracker's TCP connection: the handshake, the packets, and when to acknowledge, skip
//! or close. The shell feeds it what it reads and what Redis answered, and executes what it
//! says; it never acknowledges a packet before every entry of it is confirmed.
//!
//! At most one packet's XADDs are in flight, and acknowledgements follow packet order; a
//! couple of complete packets may wait behind it, and reading stops while they do, so a
//! connection holds at most a few packets whatever the tracker sends.

use std::collections::VecDeque;

use super::bad::BadPacket;
use super::data::decode_data;
use super::entry::{PacketEntries, Transport};
use super::imei::Imei;
use super::tcp_frame::{Expect, TcpFrame, TcpFramer, LOGGED_HEAD};
use crate::mono::MonoMillis;
use crate::UnixMillis;

/// Complete packets that may wait behind the one in flight before reading stops.
const MAX_WAITING: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Largest AVL packet, preamble to CRC.
    pub max_packet_bytes: usize,
    /// Bad packets (cumulative) after which the connection is closed; at least 1.
    pub max_bad_packets: u32,
    /// No complete frame for this long closes the connection.
    pub idle_timeout_ms: u64,
    /// A packet's XADDs not all confirmed within this count as a Redis error.
    pub ack_timeout_ms: u64,
}

/// Numbers a connection's packets in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketSeq(pub u64);

/// An input for [`TcpSession::handle`].
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Bytes read from the socket; `received_at` is the wall time the read returned (the
    /// entries' `received_at` when they complete a packet).
    Received {
        bytes: &'a [u8],
        received_at: UnixMillis,
    },
    /// The answer to [`Command::CheckDevice`].
    DeviceChecked { allowed: bool },
    /// Redis confirmed every XADD of the packet.
    Appended { packet: PacketSeq },
    /// An XADD of the packet failed, or Redis could not be reached.
    AppendFailed { packet: PacketSeq },
    /// The gateway is stopping: read nothing more, finish the packet in flight.
    Stop,
    /// Time passed; deadlines are judged against `now` (see [`TcpSession::poll_timeout`]).
    Tick,
}

/// Bytes to write to the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `01` (accepted) or `00` (refused).
    Handshake(bool),
    /// The acknowledged packet's record count.
    Ack(u32),
}

impl Reply {
    pub fn bytes(self) -> Vec<u8> {
        match self {
            Reply::Handshake(accepted) => vec![u8::from(accepted)],
            Reply::Ack(records) => records.to_be_bytes().to_vec(),
        }
    }
}

/// Why the gateway closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// An AVL packet (a handshake length of 0) came before the handshake.
    NoHandshake,
    /// The identity was answered `00`.
    DeviceRefused,
    /// The byte stream could not be framed.
    Unframeable,
    /// The bad packet that reached the bound.
    TooManyBadPackets,
    /// No complete frame within the idle timeout.
    Idle,
    /// Redis failed or did not confirm in time: the tracker will resend.
    RedisError,
    /// The gateway is stopping.
    Shutdown,
}

impl CloseReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::NoHandshake => "packet before handshake",
            CloseReason::DeviceRefused => "device refused",
            CloseReason::Unframeable => "stream cannot be framed",
            CloseReason::TooManyBadPackets => "too many bad packets",
            CloseReason::Idle => "idle",
            CloseReason::RedisError => "redis error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// What the session saw, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The handshake was answered `01`.
    DeviceAccepted(Imei),
    /// The handshake was answered `00` (the identity, as far as it could be read).
    DeviceRejected(String),
    /// A packet was refused; `head` is at most its first 64 bytes.
    BadPacket { reason: BadPacket, head: Vec<u8> },
    /// A packet was acknowledged, `latency_ms` after its last byte arrived.
    Acked { records: u32, latency_ms: u64 },
    /// A packet was not acknowledged because Redis failed or was too slow.
    RedisError,
}

/// What the shell is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send(Reply),
    /// Is this device admitted? Answered with [`Input::DeviceChecked`].
    CheckDevice(Imei),
    /// XADD every entry (pipelined), then answer [`Input::Appended`] or
    /// [`Input::AppendFailed`].
    Append {
        packet: PacketSeq,
        entries: PacketEntries,
    },
    Observe(Observation),
    /// Close the socket after writing what was sent; nothing more comes from this session.
    Close(CloseReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Handshake,
    Checking(Imei),
    Packets(Imei),
    /// Stopping: no more reading; closes once the packet in flight is answered.
    Draining,
    /// A fault that ends the connection came after complete packets: no more reading; they
    /// are answered (in order, as usual), then the connection closes. So what a tracker
    /// gets back does not depend on how its bytes were split into reads.
    Closing(CloseReason),
    Closed,
}

#[derive(Debug)]
struct Waiting {
    entries: PacketEntries,
    arrived: MonoMillis,
}

#[derive(Debug)]
struct InFlight {
    packet: PacketSeq,
    records: u32,
    arrived: MonoMillis,
    deadline: MonoMillis,
}

/// One tracker connection's state.
#[derive(Debug)]
pub struct TcpSession {
    config: SessionConfig,
    phase: Phase,
    framer: TcpFramer,
    bad_packets: u32,
    next_packet: u64,
    waiting: VecDeque<Waiting>,
    in_flight: Option<InFlight>,
    idle_deadline: MonoMillis,
    /// When the last read returned: the arrival time of a packet framed later from bytes
    /// already held.
    last_received_at: UnixMillis,
    commands: VecDeque<Command>,
}

impl TcpSession {
    /// A connection accepted at `now`.
    pub fn new(config: SessionConfig, now: MonoMillis) -> TcpSession {
        TcpSession {
            config,
            phase: Phase::Handshake,
            framer: TcpFramer::default(),
            bad_packets: 0,
            next_packet: 0,
            waiting: VecDeque::new(),
            in_flight: None,
            idle_deadline: now.plus(config.idle_timeout_ms),
            last_received_at: UnixMillis(0),
            commands: VecDeque::new(),
        }
    }

    pub fn handle(&mut self, now: MonoMillis, input: Input<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        match input {
            Input::Received { bytes, received_at } => {
                self.framer.push(bytes);
                self.last_received_at = received_at;
                self.frame(now);
            }
            Input::DeviceChecked { allowed } => self.device_checked(now, allowed),
            Input::Appended { packet } => self.appended(now, packet),
            Input::AppendFailed { packet } => {
                if self.in_flight.as_ref().map(|f| f.packet) == Some(packet) {
                    self.redis_error();
                }
            }
            Input::Stop => {
                self.waiting.clear();
                self.phase = Phase::Draining;
                self.close_if_drained();
            }
            Input::Tick => self.tick(now),
        }
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Input::Tick`] is next due; `None` once closed.
    pub fn poll_timeout(&self) -> Option<MonoMillis> {
        if self.phase == Phase::Closed {
            return None;
        }
        // While a packet is being stored the tracker is waiting for its answer, not idle:
        // only the acknowledgement's deadline runs.
        Some(
            self.in_flight
                .as_ref()
                .map_or(self.idle_deadline, |f| f.deadline),
        )
    }

    /// Whether the shell should read more from the socket now.
    pub fn wants_read(&self) -> bool {
        matches!(self.phase, Phase::Handshake | Phase::Packets(_))
            && self.waiting.len() < MAX_WAITING
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The device, once its handshake was accepted.
    pub fn imei(&self) -> Option<&Imei> {
        match &self.phase {
            Phase::Packets(imei) | Phase::Checking(imei) => Some(imei),
            _ => None,
        }
    }

    fn frame(&mut self, now: MonoMillis) {
        loop {
            let expect = match self.phase {
                Phase::Handshake => Expect::Identity,
                Phase::Packets(_) => Expect::Packet,
                // The verdict on the identity decides how the rest is read; when stopping
                // or closed nothing more is.
                Phase::Checking(_) | Phase::Draining | Phase::Closing(_) | Phase::Closed => return,
            };
            let frame = match self.framer.next_frame(expect, self.config.max_packet_bytes) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(unframeable) => {
                    self.observe(Observation::BadPacket {
                        reason: BadPacket::Framing,
                        head: unframeable.head,
                    });
                    self.close_after_answers(CloseReason::Unframeable);
                    return;
                }
            };
            self.idle_deadline = now.plus(self.config.idle_timeout_ms);
            match frame {
                TcpFrame::Keepalive => {}
                TcpFrame::NoIdentity => self.close(CloseReason::NoHandshake),
                TcpFrame::IdentityTooLong => self.refuse(String::new()),
                TcpFrame::Identity(bytes) => match Imei::parse(&bytes) {
                    Some(imei) => {
                        self.commands.push_back(Command::CheckDevice(imei.clone()));
                        self.phase = Phase::Checking(imei);
                    }
                    None => self.refuse(String::from_utf8_lossy(&bytes).into_owned()),
                },
                TcpFrame::BadCrc { head } => self.bad_packet(BadPacket::Crc, head),
                TcpFrame::Packet(data) => self.packet(now, &data),
            }
        }
    }

    fn refuse(&mut self, identity: String) {
        self.commands
            .push_back(Command::Send(Reply::Handshake(false)));
        self.observe(Observation::DeviceRejected(identity));
        self.close(CloseReason::DeviceRefused);
    }

    fn device_checked(&mut self, now: MonoMillis, allowed: bool) {
        let Phase::Checking(imei) = &self.phase else {
            return;
        };
        let imei = imei.clone();
        if !allowed {
            self.refuse(imei.to_string());
            return;
        }
        self.commands
            .push_back(Command::Send(Reply::Handshake(true)));
        self.observe(Observation::DeviceAccepted(imei.clone()));
        self.phase = Phase::Packets(imei);
        // A tracker that did not wait for `01` sent packets behind its identity.
        self.frame(now);
    }

    fn packet(&mut self, now: MonoMillis, data: &[u8]) {
        let Phase::Packets(imei) = &self.phase else {
            return;
        };
        match decode_data(data) {
            Ok(avl) => {
                let entries = PacketEntries::new(imei, &avl, Transport::Tcp, self.last_received_at);
                self.waiting.push_back(Waiting {
                    entries,
                    arrived: now,
                });
                self.start_next(now);
            }
            Err(reason) => self.bad_packet(reason, data[..data.len().min(LOGGED_HEAD)].to_vec()),
        }
    }

    fn bad_packet(&mut self, reason: BadPacket, head: Vec<u8>) {
        self.bad_packets += 1;
        self.observe(Observation::BadPacket { reason, head });
        if self.bad_packets >= self.config.max_bad_packets {
            self.close_after_answers(CloseReason::TooManyBadPackets);
        }
    }

    fn start_next(&mut self, now: MonoMillis) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(next) = self.waiting.pop_front() else {
            return;
        };
        let packet = PacketSeq(self.next_packet);
        self.next_packet += 1;
        self.in_flight = Some(InFlight {
            packet,
            records: next.entries.len() as u32,
            arrived: next.arrived,
            deadline: now.plus(self.config.ack_timeout_ms),
        });
        self.commands.push_back(Command::Append {
            packet,
            entries: next.entries,
        });
    }

    fn appended(&mut self, now: MonoMillis, packet: PacketSeq) {
        if self.in_flight.as_ref().map(|f| f.packet) != Some(packet) {
            return;
        }
        let Some(done) = self.in_flight.take() else {
            return;
        };
        self.commands
            .push_back(Command::Send(Reply::Ack(done.records)));
        self.observe(Observation::Acked {
            records: done.records,
            latency_ms: now.since(done.arrived),
        });
        match self.phase {
            Phase::Draining => self.close_if_drained(),
            Phase::Closing(reason) => {
                self.start_next(now);
                if self.in_flight.is_none() {
                    self.close(reason);
                }
            }
            _ => self.start_next(now),
        }
    }

    fn redis_error(&mut self) {
        self.in_flight = None;
        self.waiting.clear();
        self.observe(Observation::RedisError);
        self.close(CloseReason::RedisError);
    }

    fn tick(&mut self, now: MonoMillis) {
        if self.in_flight.as_ref().is_some_and(|f| now >= f.deadline) {
            self.redis_error();
            return;
        }
        if self.in_flight.is_none() && now >= self.idle_deadline {
            self.close(CloseReason::Idle);
        }
    }

    fn close_after_answers(&mut self, reason: CloseReason) {
        if self.in_flight.is_none() && self.waiting.is_empty() {
            self.close(reason);
        } else {
            self.phase = Phase::Closing(reason);
            self.framer = TcpFramer::default();
        }
    }

    fn close_if_drained(&mut self) {
        if self.in_flight.is_none() {
            self.close(CloseReason::Shutdown);
        }
    }

    fn observe(&mut self, observation: Observation) {
        self.commands.push_back(Command::Observe(observation));
    }

    fn close(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.waiting.clear();
        self.in_flight = None;
        self.framer = TcpFramer::default();
        self.commands.push_back(Command::Close(reason));
    }
}
