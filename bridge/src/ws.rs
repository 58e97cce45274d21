//! `GET /ws/games/{game_id}`: one game's updates pushed to a browser.
//!
//! The socket loop is generic over `Sink`/`Stream`, so it can be driven by a
//! real axum socket or by channels in a test. A snapshot goes first (unless
//! the client resumes from the version that is current), then every delta in
//! version order, each following the last; a watcher that falls behind, or
//! whose next delta does not follow (a gap upstream), gets the whole state
//! instead (conflation). Bad frames close the socket with 1008 (policy).

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
    /// Open sockets.
    pub connected: prometheus_client::metrics::gauge::Gauge,
    /// Frames outside the protocol.
    pub bad_frames: prometheus_client::metrics::counter::Counter,
    /// Watchers that fell behind and were sent a snapshot (conflation).
    pub lagged: prometheus_client::metrics::counter::Counter,
    /// Sockets dropped for a send that took too long.
    pub stalled: prometheus_client::metrics::counter::Counter,
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
    metrics.connected.inc();
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
    metrics.connected.dec();
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
                            metrics.stalled.inc();
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
                            metrics.stalled.inc();
                            return Ended::Stalled;
                        }
                        last_sent = frame.version;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    metrics.lagged.inc();
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
                            metrics.bad_frames.inc();
                            let _ = send(settings, sink, close(POLICY_VIOLATION, "expected {\"resume_from\": <version>}")).await;
                            return Ended::BadFrame;
                        };
                        // The client says where it stands: from there.
                        last_sent = resume_from;
                        catch_up!();
                    }
                    Some(Ok(Message::Binary(_))) => {
                        metrics.bad_frames.inc();
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
                    metrics.stalled.inc();
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

#[cfg(test)]
mod tests {
    //! The socket loop driven by channels, as axum's `testing-websockets`
    //! example does: no network, and paused time for the timers.

    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::pin::Pin;

    use futures_util::stream::BoxStream;
    use shared::{GameDelta, GameSnapshot, Nation};
    use tokio::sync::mpsc;

    use super::*;
    use crate::games::MemorySource;

    type TestSink = Pin<Box<dyn Sink<Message, Error = Infallible> + Send>>;

    type TestStream = BoxStream<'static, Result<Message, Infallible>>;

    /// A socket's two ends made of channels.
    struct Ends {
        sink: TestSink,
        out: mpsc::Receiver<Message>,
        input: mpsc::UnboundedSender<Message>,
        stream: TestStream,
    }

    /// A sink into a channel of `capacity`, and a stream fed by `input`.
    fn channels(capacity: usize) -> Ends {
        let (out_tx, out) = mpsc::channel(capacity);
        let sink = futures_util::sink::unfold(out_tx, |tx, msg: Message| async move {
            let _ = tx.send(msg).await;
            Ok::<_, Infallible>(tx)
        });
        let (input, mut in_rx) = mpsc::unbounded_channel();
        let stream =
            futures_util::stream::poll_fn(move |cx| in_rx.poll_recv(cx).map(|m| m.map(Ok)));
        Ends {
            sink: Box::pin(sink),
            out,
            input,
            stream: Box::pin(stream),
        }
    }

    fn hub(version: u64) -> Arc<GamesHub> {
        let source = MemorySource::default();
        source.0.lock().unwrap().insert(
            1,
            GameSnapshot {
                game_id: 1,
                version,
                ..GameSnapshot::default()
            },
        );
        GamesHub::detached(4, Arc::new(source))
    }

    fn delta(since: u64, version: u64) -> GameDelta {
        GameDelta {
            game_id: 1,
            since,
            version,
            nations: BTreeMap::from([("p".to_string(), Nation::default())]),
            ..GameDelta::default()
        }
    }

    struct Running {
        out: mpsc::Receiver<Message>,
        input: mpsc::UnboundedSender<Message>,
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<Ended>,
    }

    fn start(hub: &Arc<GamesHub>, resume_from: Option<u64>, capacity: usize) -> Running {
        let Ends {
            sink,
            out,
            input,
            stream,
        } = channels(capacity);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let watch = hub.watch(1);
        let task = tokio::spawn(serve_socket(
            sink,
            stream,
            1,
            watch,
            hub.clone(),
            resume_from,
            WsSettings::default(),
            Arc::default(),
            shutdown,
        ));
        Running {
            out,
            input,
            stop,
            task,
        }
    }

    /// The next text frame as JSON (pings skipped).
    async fn next(r: &mut Running) -> serde_json::Value {
        loop {
            match r.out.recv().await.expect("a frame") {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn close_code(r: &mut Running) -> u16 {
        loop {
            match r.out.recv().await.expect("a frame") {
                Message::Close(Some(frame)) => return frame.code,
                Message::Close(None) => panic!("a close without a code"),
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn a_snapshot_first_then_updates_in_order() {
        let hub = hub(3);
        let mut r = start(&hub, None, 16);
        let first = next(&mut r).await;
        assert_eq!(
            (first["kind"].as_str(), first["version"].as_u64()),
            (Some("snapshot"), Some(3))
        );
        hub.ingest(delta(3, 4));
        hub.ingest(delta(2, 3)); // old: not sent
        hub.ingest(delta(4, 6));
        for want in [4, 6] {
            let v = next(&mut r).await;
            assert_eq!(
                (v["kind"].as_str(), v["version"].as_u64()),
                (Some("update"), Some(want))
            );
        }
        r.task.abort();
    }

    #[tokio::test]
    async fn resuming_at_the_current_version_skips_the_snapshot() {
        let hub = hub(3);
        let mut r = start(&hub, Some(3), 16);
        // Wait until the socket watches, then change the game.
        tokio::task::yield_now().await;
        hub.snapshot(1).await.unwrap();
        hub.ingest(delta(3, 4));
        let v = next(&mut r).await;
        assert_eq!(
            (v["kind"].as_str(), v["version"].as_u64()),
            (Some("update"), Some(4))
        );
        r.task.abort();
    }

    #[tokio::test]
    async fn a_client_asking_to_resume_from_an_old_version_gets_a_snapshot() {
        let hub = hub(5);
        let mut r = start(&hub, None, 16);
        assert_eq!(next(&mut r).await["version"], 5);
        r.input
            .send(Message::Text(r#"{"resume_from": 1}"#.into()))
            .unwrap();
        let v = next(&mut r).await;
        assert_eq!(
            (v["kind"].as_str(), v["version"].as_u64()),
            (Some("snapshot"), Some(5))
        );
        r.task.abort();
    }

    #[tokio::test]
    async fn a_lagging_client_gets_a_snapshot_instead_of_the_backlog() {
        let hub = hub(0);
        // A sink of one frame: the client reads nothing for a while.
        let mut r = start(&hub, None, 1);
        assert_eq!(next(&mut r).await["kind"], "snapshot");
        for v in 0..200 {
            hub.ingest(delta(v, v + 1));
        }
        let mut last = serde_json::Value::Null;
        let mut snapshots = 0;
        while last["version"] != 200 {
            last = next(&mut r).await;
            if last["kind"] == "snapshot" {
                snapshots += 1;
            }
        }
        assert!(snapshots >= 1, "the backlog was conflated into a snapshot");
        r.task.abort();
    }

    #[tokio::test]
    async fn a_bad_frame_closes_with_1008() {
        let hub = hub(0);
        let mut r = start(&hub, None, 16);
        next(&mut r).await;
        r.input.send(Message::Text("not json".into())).unwrap();
        assert_eq!(close_code(&mut r).await, POLICY_VIOLATION);
        assert_eq!(r.task.await.unwrap(), Ended::BadFrame);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_closed_after_the_idle_timeout() {
        let hub = hub(0);
        let mut r = start(&hub, None, 64);
        next(&mut r).await;
        // Paused time runs ahead while everything waits.
        assert_eq!(close_code(&mut r).await, POLICY_VIOLATION);
        assert_eq!(r.task.await.unwrap(), Ended::Idle);
    }

    #[tokio::test]
    async fn shutdown_closes_with_1001() {
        let hub = hub(0);
        let mut r = start(&hub, None, 16);
        next(&mut r).await;
        r.stop.send(true).unwrap();
        assert_eq!(close_code(&mut r).await, GOING_AWAY);
        assert_eq!(r.task.await.unwrap(), Ended::Shutdown);
    }
}
