//! WebSockets against a real broker and real sockets: fan-out per game,
//! snapshots and resume, isolation from slow and misbehaving clients.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tests::game::TestGame;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(game: &TestGame, game_id: u64, query: &str) -> Socket {
    let url = format!("ws://{}/ws/games/{game_id}{query}", game.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

/// The next JSON text frame (pings are skipped), within `timeout`.
async fn next_json(socket: &mut Socket, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Frames until one satisfies `pred`; returns all seen.
async fn until(socket: &mut Socket, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next_json(socket, Duration::from_secs(30)).await;
        let done = pred(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
}

/// A player's nation in a frame: a snapshot's state or an update's changed
/// nations.
fn nation_of<'a>(v: &'a Value, player: &str) -> &'a Value {
    match v["kind"].as_str() {
        Some("update") => &v["nations"][player],
        _ => &v["state"]["players"][player],
    }
}

fn has_player(v: &Value, player: &str) -> bool {
    !nation_of(v, player).is_null()
}

#[tokio::test]
async fn two_watchers_get_the_game_in_version_order_and_others_nothing() {
    let game = TestGame::start(None).await;
    // Games 1 and 5 share a partition (4 partitions): isolation is per game.
    let mut a = connect(&game, 1, "").await;
    let mut b = connect(&game, 1, "").await;
    let mut other = connect(&game, 5, "").await;
    for s in [&mut a, &mut b, &mut other] {
        let first = next_json(s, Duration::from_secs(20)).await;
        assert_eq!(first["kind"], "snapshot");
    }
    let (player, token) = game.join(1, "Babylon").await;
    game.act(1, &token, "purchase_sword", None).await;
    game.act(1, &token, "purchase_knife", None).await;
    for s in [&mut a, &mut b] {
        let frames = until(s, |v| nation_of(v, &player)["items"]["knife"] == 1).await;
        let versions: Vec<u64> = frames
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "versions in order: {versions:?}"
        );
        assert!(frames
            .iter()
            .all(|v| v["game_id"] == 1 && v["kind"] == "update"));
    }
    // The other game's watcher: the first frame after its snapshot is its own.
    let (other_player, _) = game.join(5, "Nineveh").await;
    let first = next_json(&mut other, Duration::from_secs(30)).await;
    assert_eq!(first["game_id"], 5, "a watcher of game 5 got {first}");
    assert!(has_player(&first, &other_player));
    game.stop().await;
}

#[tokio::test]
async fn late_joiners_get_a_snapshot_and_resumers_only_what_is_newer() {
    let game = TestGame::start(None).await;
    let (player, token) = game.join(3, "Ur").await;
    game.act(3, &token, "purchase_horse", None).await;
    let state = game
        .wait_for_state(3, "the horse", |s| {
            s["state"]["players"][player.as_str()]["items"]["horse"] == 1
        })
        .await;
    let version = state["version"].as_u64().unwrap();

    let mut late = connect(&game, 3, "").await;
    let snapshot = next_json(&mut late, Duration::from_secs(20)).await;
    assert_eq!(snapshot["kind"], "snapshot");
    assert_eq!(snapshot["version"], version);
    assert_eq!(
        snapshot["state"]["players"][player.as_str()]["items"]["horse"],
        1
    );

    // Resuming at the current version: no snapshot, the next frame is newer.
    let mut resumed = connect(&game, 3, &format!("?resume_from={version}")).await;
    game.act(3, &token, "default", None).await;
    let next = next_json(&mut resumed, Duration::from_secs(20)).await;
    assert_eq!(next["kind"], "update");
    assert!(next["version"].as_u64().unwrap() > version);

    // Resuming from an old version by message: a fresh snapshot.
    let mut old = connect(&game, 3, &format!("?resume_from={version}")).await;
    old.send(Message::Text("{\"resume_from\": 0}".into()))
        .await
        .unwrap();
    let snap = next_json(&mut old, Duration::from_secs(20)).await;
    assert_eq!(snap["kind"], "snapshot");
    assert!(snap["version"].as_u64().unwrap() > version);
    game.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_delay_the_others() {
    let game = TestGame::start(None).await;
    let (player, token) = game.join(2, "Uruk").await;
    let mut fast = connect(&game, 2, "").await;
    next_json(&mut fast, Duration::from_secs(20)).await;
    // Connected and never read from again.
    let _stalled = connect(&game, 2, "").await;
    let mut latencies = Vec::new();
    for i in 0..40 {
        let sent = Instant::now();
        let (status, _) = game
            .act(2, &token, "default", Some(&format!("visit-{i}")))
            .await;
        assert_eq!(status, 202);
        let frames = until(&mut fast, |v| {
            v["applied"]
                .as_array()
                .is_some_and(|a| a.iter().any(|id| id == &format!("visit-{i}")))
        })
        .await;
        assert!(!frames.is_empty());
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    println!("with a stalled watcher: action->update p50 {p50:?}, max {max:?}");
    assert!(
        max < Duration::from_secs(5),
        "the fast client was held up: max {max:?}"
    );
    let state = game
        .wait_for_state(2, "all visits", |s| {
            s["state"]["players"][player.as_str()]["gold"].as_u64() >= Some(100 + 40 * 10)
        })
        .await;
    assert!(state["version"].as_u64().unwrap() >= 41);
    game.stop().await;
}

#[tokio::test]
async fn malformed_frames_close_only_that_socket() {
    let game = TestGame::start(None).await;
    let mut good = connect(&game, 4, "").await;
    next_json(&mut good, Duration::from_secs(20)).await;
    for bad in [
        Message::Text("not json".into()),
        Message::Text("{\"hello\": 1}".into()),
        Message::Text(format!("{{\"resume_from\": 1, \"pad\": \"{}\"}}", "x".repeat(4096)).into()),
        Message::Binary(vec![1, 2, 3].into()),
    ] {
        let mut rude = connect(&game, 4, "").await;
        next_json(&mut rude, Duration::from_secs(20)).await;
        rude.send(bad.clone()).await.unwrap();
        let close = loop {
            match tokio::time::timeout(Duration::from_secs(10), rude.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame for {bad:?}, got {other:?}"),
            }
        };
        assert_eq!(
            close.expect("close frame").code,
            CloseCode::Policy,
            "{bad:?}"
        );
    }
    let metrics = reqwest::get(format!("{}/metrics", game.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bridge_ws_bad_frames_total 4"),
        "{metrics}"
    );
    // The well-behaved socket still gets updates.
    let (player, _) = game.join(4, "Akkad").await;
    let frames = until(&mut good, |v| has_player(v, &player)).await;
    assert_eq!(frames.last().unwrap()["game_id"], 4);
    game.stop().await;
}

/// `make run`'s and docker-compose's setting: a streaming engine keeps its
/// transaction open, and the bridge reading `read_uncommitted` shows the
/// update at once; `read_committed` readers see it when the engine commits.
#[tokio::test]
async fn uncommitted_updates_of_a_streaming_engine_reach_players_at_once() {
    let game = TestGame::start_with(None, |c| {
        // Commits only at the stop (within the test): a long interval needs
        // a transaction timeout at least twice as long.
        c.engine.engine_commit_interval_ms = 60_000;
        c.bridge.extra = vec![("transaction.timeout.ms".into(), "300000".into())];
        c.bridge.games_isolation = "read_uncommitted".to_string();
    })
    .await;
    let mut socket = connect(&game, 3, "").await;
    next_json(&mut socket, Duration::from_secs(20)).await;
    let (player, token) = game.join(3, "Akkad").await;
    game.act(3, &token, "purchase_horse", None).await;
    until(&mut socket, |v| {
        nation_of(v, &player)["items"]["horse"] == 1
    })
    .await;
    let (brokers, topic) = (game.brokers.clone(), game.games_topic.clone());
    let committed = tokio::task::spawn_blocking(move || {
        tests::consume(&brokers, &topic, Duration::from_secs(2), |m| !m.is_empty())
    })
    .await
    .unwrap();
    assert!(
        committed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("timed out")),
        "nothing is committed yet: the transaction is open ({:?})",
        committed.map(|m| m.len())
    );
    let (brokers, topic) = (game.brokers.clone(), game.games_topic.clone());
    // A clean stop commits it.
    game.stop().await;
    let committed = tokio::task::spawn_blocking(move || {
        tests::consume(&brokers, &topic, Duration::from_secs(30), |m| {
            m.iter().any(|m| {
                let record = tests::json(m);
                record["record"] == "nation"
                    && record["player_id"] == player.as_str()
                    && record["nation"]["items"]["horse"] == 1
            })
        })
    })
    .await
    .unwrap();
    assert!(committed.is_ok(), "committed at the stop: {committed:?}");
}

/// Several bridges at once, each reading what its own clients need: a
/// player acts through one, a watcher of another sees it, and both answer
/// state queries.
#[tokio::test]
async fn two_bridges_serve_the_same_game() {
    let a = TestGame::start_with(None, |c| c.bridge.token_secret = Some("shared".into())).await;
    let (actions, games, group, partitions) = (
        a.actions_topic.clone(),
        a.games_topic.clone(),
        a.engine_group.clone(),
        a.partitions,
    );
    // b: no engine of its own, same topics and token secret.
    let b = TestGame::start_with(None, |c| {
        c.bridge.actions_topic = actions;
        c.bridge.games_topic = games;
        c.bridge.engine_group = group;
        c.bridge.partitions = partitions;
        c.engine.with_engine = false;
        c.bridge.token_secret = Some("shared".into());
    })
    .await;
    let mut on_b = connect(&b, 6, "").await;
    let mut on_a = connect(&a, 6, "").await;
    for s in [&mut on_b, &mut on_a] {
        assert_eq!(
            next_json(s, Duration::from_secs(20)).await["kind"],
            "snapshot"
        );
    }
    let (player, token) = a.join(6, "Lagash").await;
    let (status, _) = b.act(6, &token, "purchase_shield", None).await;
    assert_eq!(status, 202, "a token from one bridge works on another");
    for s in [&mut on_b, &mut on_a] {
        until(s, |v| nation_of(v, &player)["items"]["shield"] == 1).await;
    }
    for bridge in [&a, &b] {
        bridge
            .wait_for_state(6, "the shield in the state query", |s| {
                s["state"]["players"][player.as_str()]["items"]["shield"] == 1
            })
            .await;
    }
    b.stop().await;
    a.stop().await;
}
