//! `GET /ws/games/{game_id}`: one game's updates pushed to a browser.
//!
//! The socket loop is generic over `Sink`/`Stream`, so it can be driven by a
//! real axum socket or by channels in a test. A snapshot goes first (unless
//! the client resumes from the version that is current), then every delta in
//! version order, each following the last; a watcher that falls behind, or
//! whose next delta does not follow (a gap upstream), gets the whole state
//! instead (conflation). Bad frames close the socket with 1008 (policy).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use shared::wire::ClientMessage;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::games::{GamesHub, Watch};

/// Close code for a client that broke the protocol.
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code when the server shuts down.
pub const GOING_AWAY: u16 = 1001;

/// Knobs of the socket loop.
#[derive(Clone, Debug)]
pub struct WsSettings {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// Silence (no frame, no pong) after which the client is dropped.
    pub idle_timeout: Duration,
    /// A send that takes longer than this means a stalled client: drop it.
    pub send_timeout: Duration,
    /// The largest client text frame accepted.
    pub max_client_frame: usize,
    /// How long to wait for the game's partition to load before giving up.
    pub load_timeout: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            send_timeout: Duration::from_secs(10),
            max_client_frame: 1024,
            load_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of the WebSocket side, for `/metrics`.
#[derive(Default, Debug)]
pub struct WsMetrics {
    pub connected: AtomicU64,
    pub bad_frames: AtomicU64,
    pub lagged: AtomicU64,
    pub stalled: AtomicU64,
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Why the loop ended (for tests and logs).
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    ClientLeft,
    BadFrame,
    Stalled,
    Idle,
    Shutdown,
    LoadTimeout,
}

/// Runs one socket until it ends.
#[allow(clippy::too_many_arguments)]
pub async fn serve_socket<S, R, E>(
    mut sink: S,
    mut stream: R,
    game_id: u64,
    mut watch: Watch,
    hub: Arc<GamesHub>,
    resume_from: Option<u64>,
    settings: WsSettings,
    metrics: Arc<WsMetrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Ended
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    metrics.connected.fetch_add(1, Ordering::Relaxed);
    let ended = run(
        &mut sink,
        &mut stream,
        game_id,
        &mut watch,
        &hub,
        resume_from,
        &settings,
        &metrics,
        &mut shutdown,
    )
    .await;
    metrics.connected.fetch_sub(1, Ordering::Relaxed);
    ended
}

/// Sends one frame; false when the client is gone or stalled past the limit.
async fn send<S: Sink<Message> + Unpin>(settings: &WsSettings, sink: &mut S, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(settings.send_timeout, sink.send(msg)).await,
        Ok(Ok(()))
    )
}

#[allow(clippy::too_many_arguments)]
async fn run<S, R, E>(
    sink: &mut S,
    stream: &mut R,
    game_id: u64,
    watch: &mut Watch,
    hub: &GamesHub,
    resume_from: Option<u64>,
    settings: &WsSettings,
    metrics: &WsMetrics,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Ended
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let tailing = matches!(
        tokio::time::timeout(settings.load_timeout, watch.tailing.wait_for(|l| *l)).await,
        Ok(Ok(_))
    );
    let first = match tailing {
        true => tokio::time::timeout(settings.load_timeout, hub.snapshot(game_id))
            .await
            .ok()
            .and_then(Result::ok),
        false => None,
    };
    let Some(first) = first else {
        let _ = sink
            .send(close(1011, "game state unavailable, retry"))
            .await;
        return Ended::LoadTimeout;
    };

    let mut last_sent;
    match resume_from {
        // The client holds this version already: deltas from here.
        Some(v) if v == first.version => last_sent = v,
        _ => {
            if !send(settings, sink, Message::Text(first.text.clone())).await {
                return Ended::Stalled;
            }
            last_sent = first.version;
        }
    }

    // Sends the current snapshot if it is newer than what the client has.
    macro_rules! catch_up {
        () => {{
            match tokio::time::timeout(settings.load_timeout, hub.snapshot(game_id)).await {
                Ok(Ok(snap)) => {
                    if snap.version != last_sent {
                        if !send(settings, sink, Message::Text(snap.text.clone())).await {
                            metrics.stalled.fetch_add(1, Ordering::Relaxed);
                            return Ended::Stalled;
                        }
                        last_sent = snap.version;
                    }
                }
                _ => {
                    let _ = sink
                        .send(close(1011, "game state unavailable, retry"))
                        .await;
                    return Ended::LoadTimeout;
                }
            }
        }};
    }

    let mut ping = tokio::time::interval_at(
        Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            update = watch.updates.recv() => match update {
                Ok(frame) => {
                    if frame.since > last_sent {
                        // Something between is missing (a gap upstream):
                        // the whole state instead.
                        catch_up!();
                    } else if frame.version > last_sent {
                        if !send(settings, sink, Message::Text(frame.text.clone())).await {
                            metrics.stalled.fetch_add(1, Ordering::Relaxed);
                            return Ended::Stalled;
                        }
                        last_sent = frame.version;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    metrics.lagged.fetch_add(1, Ordering::Relaxed);
                    catch_up!();
                }
                Err(RecvError::Closed) => return Ended::Shutdown,
            },
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ended::ClientLeft,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Text(text))) => {
                        let parsed = (text.len() <= settings.max_client_frame)
                            .then(|| serde_json::from_str::<ClientMessage>(&text).ok())
                            .flatten();
                        let Some(ClientMessage { resume_from }) = parsed else {
                            metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
                            let _ = send(settings, sink, close(POLICY_VIOLATION, "expected {\"resume_from\": <version>}")).await;
                            return Ended::BadFrame;
                        };
                        // The client says where it stands: from there.
                        last_sent = resume_from;
                        catch_up!();
                    }
                    Some(Ok(Message::Binary(_))) => {
                        metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
                        let _ = send(settings, sink, close(POLICY_VIOLATION, "binary frames are not part of the protocol")).await;
                        return Ended::BadFrame;
                    }
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > settings.idle_timeout {
                    let _ = send(settings, sink, close(POLICY_VIOLATION, "no pong")).await;
                    return Ended::Idle;
                }
                if !send(settings, sink, Message::Ping(Default::default())).await {
                    metrics.stalled.fetch_add(1, Ordering::Relaxed);
                    return Ended::Stalled;
                }
            },
            _ = async {
                // A dropped sender means no shutdown will ever come.
                if shutdown.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => {
                let _ = send(settings, sink, close(GOING_AWAY, "server shutting down")).await;
                return Ended::Shutdown;
            }
        }
    }
}
