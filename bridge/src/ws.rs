//! `GET /ws/games/{game_id}`: one game's updates pushed to a browser.
//!
//! The socket loop is generic over `Sink`/`Stream`, so it can be driven by a
//! real axum socket or by channels in a test. A snapshot goes first (unless
//! the client resumes from a version that is still current), then every update
//! in version order; a watcher that falls behind gets the latest snapshot
//! instead (conflation). Bad frames close the socket with 1008 (policy).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use shared::wire::{ClientMessage, MessageKind};
use shared::GameUpdate;
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
    let loaded = matches!(
        tokio::time::timeout(settings.load_timeout, watch.loaded.wait_for(|l| *l)).await,
        Ok(Ok(_))
    );
    if !loaded {
        let _ = sink
            .send(close(1011, "game state unavailable, retry"))
            .await;
        return Ended::LoadTimeout;
    }

    let snapshot = |hub: &GamesHub| -> (u64, String) {
        match hub.latest(game_id) {
            Some(frame) => (frame.version, frame.snapshot_text()),
            None => {
                let empty = GameUpdate {
                    game_id,
                    ..GameUpdate::default()
                };
                let text = serde_json::to_string(&shared::ServerMessage {
                    kind: MessageKind::Snapshot,
                    update: empty,
                })
                .expect("serialise");
                (0, text)
            }
        }
    };

    let mut last_sent;
    let current = hub.latest(game_id).map(|f| f.version).unwrap_or(0);
    match resume_from {
        Some(v) if v >= current => last_sent = v,
        _ => {
            let (version, text) = snapshot(hub);
            if !send(settings, sink, Message::Text(text.into())).await {
                return Ended::Stalled;
            }
            last_sent = version;
        }
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
                    if frame.version > last_sent {
                        if !send(settings, sink, Message::Text(frame.text.clone())).await {
                            metrics.stalled.fetch_add(1, Ordering::Relaxed);
                            return Ended::Stalled;
                        }
                        last_sent = frame.version;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    metrics.lagged.fetch_add(1, Ordering::Relaxed);
                    let (version, text) = snapshot(hub);
                    if version > last_sent {
                        if !send(settings, sink, Message::Text(text.into())).await {
                            metrics.stalled.fetch_add(1, Ordering::Relaxed);
                            return Ended::Stalled;
                        }
                        last_sent = version;
                    }
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
                        let (version, text) = snapshot(hub);
                        if version > resume_from {
                            if !send(settings, sink, Message::Text(text.into())).await {
                                return Ended::Stalled;
                            }
                            last_sent = version;
                        } else {
                            last_sent = last_sent.max(resume_from);
                        }
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
