//! The UDP socket: each datagram is judged by the core, appended, and answered only once
//! Redis confirmed it; a bounded number are in flight at once.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use processor_core::teltonika::hex::lower_hex;
use processor_core::teltonika::udp_judge::{judge_datagram, UdpVerdict};
use processor_core::teltonika::Transport;

use super::appender::Appender;
use super::connection::Gateway;
use crate::clock::Clock;

/// Datagrams whose appends may be in flight at once; past this the socket is not read (the
/// kernel's buffer, then the network, drop the excess, and trackers resend).
const IN_FLIGHT: usize = 1_024;

pub async fn serve_udp<A: Appender, C: Clock>(
    socket: UdpSocket,
    max_bytes: usize,
    ack_timeout: std::time::Duration,
    gateway: Arc<Gateway<A, C>>,
    mut stop: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    // One byte more than the bound, so that an oversized datagram shows as one.
    let mut buf = vec![0u8; max_bytes + 1];
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (n, peer) = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::warn!(%error, "UDP receive failed");
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let arrived = gateway.mono.now();
        let allow = gateway.allow.borrow().clone();
        match judge_datagram(&buf[..n], max_bytes, &allow, gateway.wall.now()) {
            UdpVerdict::Bad { reason, head } => {
                gateway.metrics.bad_packet(reason);
                tracing::warn!(%peer, reason = reason.label(), head = lower_hex(&head), "bad datagram");
            }
            UdpVerdict::Rejected { imei } => {
                gateway.metrics.devices_rejected.inc();
                tracing::info!(%peer, imei, "datagram from a device not allowed");
            }
            UdpVerdict::Append { entries, reply } => {
                let (socket, gateway) = (socket.clone(), gateway.clone());
                tasks.spawn(async move {
                    let _permit = permit;
                    let records = entries.len() as u64;
                    let appended =
                        tokio::time::timeout(ack_timeout, gateway.appender.append(entries)).await;
                    match appended {
                        Ok(Ok(())) => {
                            if socket.send_to(&reply, peer).await.is_ok() {
                                let waited = gateway.mono.now().since(arrived);
                                gateway.metrics.packet_acked(
                                    Transport::Udp,
                                    records,
                                    waited as f64 / 1e3,
                                );
                            }
                        }
                        Ok(Err(error)) => {
                            gateway.metrics.redis_errors.inc();
                            tracing::warn!(%peer, %error, "datagram not appended; not answered");
                        }
                        Err(_) => {
                            gateway.metrics.redis_errors.inc();
                            tracing::warn!(%peer, "datagram not confirmed in time; not answered");
                        }
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}
