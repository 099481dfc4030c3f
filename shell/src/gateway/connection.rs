//! One tracker's TCP connection, executed: reads feed the core's session, its commands are
//! carried out, and its deadline is slept on. The same code runs over tokio and turmoil
//! sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use processor_core::teltonika::hex::lower_hex;
use processor_core::teltonika::session::{
    CloseReason, Command, Input, Observation, PacketSeq, SessionConfig, TcpSession,
};
use processor_core::teltonika::{AllowList, Transport};

use super::appender::{AppendError, Appender};
use super::metrics::GatewayMetrics;
use crate::clock::{Clock, MonoClock};

/// Bytes read at a time. A packet is reassembled by the session whatever the reads' sizes,
/// so this only trades system calls against idle memory per connection.
const READ_CHUNK: usize = 1024;

/// A reply is at most 4 bytes; a tracker that does not take them within this has gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every tracker connection of a gateway shares.
pub struct Gateway<A, C> {
    pub session: SessionConfig,
    pub appender: A,
    pub allow: watch::Receiver<Arc<AllowList>>,
    pub metrics: Arc<GatewayMetrics>,
    pub mono: MonoClock,
    pub wall: C,
}

type PendingAppend = Pin<Box<dyn Future<Output = (PacketSeq, Result<(), AppendError>)> + Send>>;

/// Serves one tracker until the session closes, the tracker goes away, or (after `stop`)
/// the packet in flight is answered.
pub async fn serve_tracker<S, A, C>(
    mut io: S,
    peer: String,
    gateway: Arc<Gateway<A, C>>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    A: Appender,
    C: Clock,
{
    let mut session = TcpSession::new(gateway.session, gateway.mono.now());
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending: Option<PendingAppend> = None;
    let mut stopping = false;
    let mut imei = String::new();
    loop {
        while let Some(command) = session.poll_command() {
            match command {
                Command::Send(reply) => {
                    let bytes = reply.bytes();
                    let write = tokio::time::timeout(WRITE_TIMEOUT, io.write_all(&bytes));
                    if !matches!(write.await, Ok(Ok(()))) {
                        tracing::info!(%peer, imei, "tracker connection closed: reply not taken");
                        return;
                    }
                }
                Command::CheckDevice(device) => {
                    let allowed = gateway.allow.borrow().admits(device.as_str());
                    session.handle(gateway.mono.now(), Input::DeviceChecked { allowed });
                }
                Command::Append { packet, entries } => {
                    let appender = gateway.appender.clone();
                    pending = Some(Box::pin(async move {
                        let result = appender.append(entries).await;
                        (packet, result)
                    }));
                }
                Command::Observe(observation) => {
                    observe(&gateway.metrics, &peer, &mut imei, observation)
                }
                Command::Close(reason) => {
                    if reason == CloseReason::Idle {
                        gateway.metrics.idle_closes.inc();
                    }
                    tracing::info!(%peer, imei, reason = reason.as_str(), "tracker connection closed");
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, io.shutdown()).await;
                    return;
                }
            }
        }
        let wake = session.poll_timeout().map(|at| gateway.mono.instant(at));
        tokio::select! {
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                session.handle(gateway.mono.now(), Input::Stop);
            }
            read = io.read(&mut buf), if session.wants_read() => match read {
                Ok(0) | Err(_) => {
                    tracing::info!(%peer, imei, "tracker connection closed by the tracker");
                    return;
                }
                Ok(n) => session.handle(
                    gateway.mono.now(),
                    Input::Received { bytes: &buf[..n], received_at: gateway.wall.now() },
                ),
            },
            (packet, result) = answer(&mut pending), if pending.is_some() => {
                pending = None;
                let input = match result {
                    Ok(()) => Input::Appended { packet },
                    Err(error) => {
                        tracing::warn!(%peer, imei, %error, "packet not appended; not acknowledged");
                        Input::AppendFailed { packet }
                    }
                };
                session.handle(gateway.mono.now(), input);
            }
            () = sleep_until(wake) => session.handle(gateway.mono.now(), Input::Tick),
        }
    }
}

async fn answer(pending: &mut Option<PendingAppend>) -> (PacketSeq, Result<(), AppendError>) {
    match pending {
        Some(append) => append.await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn observe(metrics: &GatewayMetrics, peer: &str, imei: &mut String, observation: Observation) {
    match observation {
        Observation::DeviceAccepted(device) => {
            *imei = device.to_string();
            tracing::info!(%peer, imei = %device, "tracker connected");
        }
        Observation::DeviceRejected(identity) => {
            metrics.devices_rejected.inc();
            tracing::info!(%peer, identity, "tracker refused");
        }
        Observation::BadPacket { reason, head } => {
            metrics.bad_packet(reason);
            tracing::warn!(%peer, imei, reason = reason.label(), head = lower_hex(&head), "bad packet");
        }
        Observation::Acked {
            records,
            latency_ms,
        } => {
            metrics.packet_acked(Transport::Tcp, u64::from(records), latency_ms as f64 / 1e3);
        }
        Observation::RedisError => {
            metrics.redis_errors.inc();
        }
    }
}
