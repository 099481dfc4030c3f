//! The UDP socket, executed: datagrams feed the core's [`UdpFlights`] (which judges each,
//! holds the ack deadlines and bounds how many appends run), appends run as tasks, and
//! answers go out when it says so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use processor_core::teltonika::hex::lower_hex;
use processor_core::teltonika::udp_flights::{
    Command, DatagramId, Input, Observation, UdpConfig, UdpFlights,
};
use processor_core::teltonika::Transport;

use super::appender::{AppendError, Appender};
use super::connection::{sleep_until, Gateway};
use crate::clock::Clock;

/// Datagrams whose appends may run at once; past this the socket is not read (the kernel's
/// buffer, then the network, drop the excess, and trackers resend).
const IN_FLIGHT: usize = 1_024;

type Appends = JoinSet<Result<(), AppendError>>;

/// The appends running, by datagram and by task (a task aborted ends with its id only).
#[derive(Default)]
struct Running {
    by_datagram: HashMap<DatagramId, AbortHandle>,
    by_task: HashMap<tokio::task::Id, DatagramId>,
}

impl Running {
    fn add(&mut self, id: DatagramId, handle: AbortHandle) {
        self.by_task.insert(handle.id(), id);
        self.by_datagram.insert(id, handle);
    }

    fn ended(&mut self, task: tokio::task::Id) -> Option<DatagramId> {
        let id = self.by_task.remove(&task)?;
        self.by_datagram.remove(&id);
        Some(id)
    }
}

pub async fn serve_udp<A: Appender, C: Clock>(
    socket: UdpSocket,
    max_bytes: usize,
    ack_timeout: std::time::Duration,
    gateway: Arc<Gateway<A, C>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut flights = UdpFlights::new(UdpConfig {
        max_bytes,
        ack_timeout_ms: ack_timeout.as_millis() as u64,
        max_in_flight: IN_FLIGHT,
    });
    // One byte more than the bound, so that an oversized datagram shows as one.
    let mut buf = vec![0u8; max_bytes + 1];
    let mut appends = Appends::new();
    let mut running = Running::default();
    let mut stopping = false;
    loop {
        while let Some(command) = flights.poll_command() {
            execute(command, &socket, &gateway, &mut appends, &mut running).await;
        }
        // Stopped: read nothing more, and answer (or abandon) what is appending.
        if stopping && flights.in_flight() == 0 {
            return;
        }
        let wake = flights.poll_timeout().map(|at| gateway.mono.instant(at));
        tokio::select! {
            _ = stop.wait_for(|s| *s), if !stopping => stopping = true,
            received = socket.recv_from(&mut buf), if !stopping && flights.wants_read() => {
                match received {
                    Ok((n, peer)) => {
                        let allow = gateway.allow.borrow().clone();
                        flights.handle(
                            gateway.mono.now(),
                            Input::Datagram {
                                bytes: &buf[..n],
                                peer,
                                received_at: gateway.wall.now(),
                                allow: &allow,
                            },
                        );
                    }
                    Err(error) => tracing::warn!(%error, "UDP receive failed"),
                }
            }
            Some(ended) = appends.join_next_with_id() => {
                let (task, result) = match ended {
                    Ok((task, result)) => (task, result.map_err(|e| e.to_string())),
                    Err(error) => (error.id(), Err(error.to_string())),
                };
                if let Some(id) = running.ended(task) {
                    let input = match result {
                        Ok(()) => Input::Appended(id),
                        Err(error) => {
                            tracing::debug!(datagram = id.0, error, "append ended without confirmation");
                            Input::AppendFailed(id)
                        }
                    };
                    flights.handle(gateway.mono.now(), input);
                }
            }
            () = sleep_until(wake) => flights.handle(gateway.mono.now(), Input::Tick),
        }
    }
}

async fn execute<A: Appender, C: Clock>(
    command: Command<SocketAddr>,
    socket: &UdpSocket,
    gateway: &Gateway<A, C>,
    appends: &mut Appends,
    running: &mut Running,
) {
    match command {
        Command::Append { id, entries } => {
            let appender = gateway.appender.clone();
            let handle = appends.spawn(async move { appender.append(entries).await });
            running.add(id, handle);
        }
        Command::Abandon(id) => {
            if let Some(handle) = running.by_datagram.get(&id) {
                handle.abort();
            }
        }
        Command::Reply {
            peer,
            bytes,
            records,
            latency_ms,
        } => {
            // A reply is one small datagram: the send completes at once or fails.
            match socket.send_to(&bytes, peer).await {
                Ok(_) => {
                    gateway
                        .metrics
                        .packet_acked(Transport::Udp, records, latency_ms as f64 / 1e3)
                }
                Err(error) => tracing::warn!(%peer, %error, "datagram answer not sent"),
            }
        }
        Command::Observe { peer, what } => match what {
            Observation::Bad { reason, head } => {
                gateway.metrics.bad_packet(reason);
                tracing::warn!(%peer, reason = reason.label(), head = lower_hex(&head), "bad datagram");
            }
            Observation::DeviceRejected { imei } => {
                gateway.metrics.devices_rejected.inc();
                tracing::info!(%peer, imei, "datagram from a device not allowed");
            }
            Observation::AppendFailed => {
                gateway.metrics.redis_errors.inc();
                tracing::warn!(%peer, "datagram not appended; not answered");
            }
            Observation::NotConfirmedInTime => {
                gateway.metrics.redis_errors.inc();
                tracing::warn!(%peer, "datagram not confirmed in time; not answered");
            }
        },
    }
}
