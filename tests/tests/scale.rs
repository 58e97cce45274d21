//! A popular game: 10,000 nations in one game. An update costs what
//! changed, not the game; a late watcher's snapshot is the engine's state.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use shared::{GameSnapshot, ServerMessage};
use tests::game::TestGame;
use tokio_tungstenite::tungstenite::Message;

const NATIONS: usize = 10_000;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(game: &TestGame, game_id: u64) -> Socket {
    let url = format!("ws://{}/ws/games/{game_id}", game.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

/// The next text frame, raw, within 60 s.
async fn next_text(socket: &mut Socket) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame")
        {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_nation_game_sends_small_updates_and_whole_snapshots() {
    let game = TestGame::start(None).await;
    let game_id = 7;
    tests::produce_joins(
        &game.brokers,
        &game.actions_topic,
        game.partitions,
        game_id,
        NATIONS as u64,
    )
    .await;
    game.wait_for_state(game_id, "10,000 nations", |s| {
        s["state"]["players"]
            .as_object()
            .is_some_and(|p| p.len() == NATIONS)
    })
    .await;

    let mut watcher = connect(&game, game_id).await;
    let first = next_text(&mut watcher).await;
    let ServerMessage::Snapshot(mut folded) = serde_json::from_str(&first).unwrap() else {
        panic!("a snapshot first");
    };
    assert_eq!(folded.state.players.len(), NATIONS);

    let (player, token) = game.join(game_id, "Late Empire").await;
    let (status, _) = game.act(game_id, &token, "purchase_knife", None).await;
    assert_eq!(status, 202);
    // Every update until the knife shows: one nation's change each.
    loop {
        let text = next_text(&mut watcher).await;
        let message: ServerMessage = serde_json::from_str(&text).unwrap();
        let ServerMessage::Update(delta) = message else {
            panic!("only updates after the snapshot");
        };
        assert!(
            text.len() < 2048,
            "an update of one nation in a game of {NATIONS} is {} bytes",
            text.len()
        );
        let mut g = folded.game();
        assert_eq!(delta.apply_to(&mut g), shared::Fit::Applies);
        folded = GameSnapshot {
            game_id,
            version: g.version,
            state: g.state,
            actions_offset: delta.actions_offset,
        };
        if folded.state.players[&player].items.knife == 1 {
            break;
        }
    }

    // The engine's own answer (its interactive query on the bridge's port).
    let engine: GameSnapshot =
        reqwest::get(format!("{}/internal/engine/games/{game_id}", game.base_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(engine.state.players.len(), NATIONS + 1);
    assert_eq!(
        (folded.version, &folded.state),
        (engine.version, &engine.state),
        "snapshot + updates = the engine's state"
    );
    let mut late = connect(&game, game_id).await;
    let snapshot: Value = serde_json::from_str(&next_text(&mut late).await).unwrap();
    assert_eq!(snapshot["kind"], "snapshot");
    let snapshot: GameSnapshot = serde_json::from_value(snapshot).unwrap();
    assert_eq!(
        (snapshot.version, &snapshot.state),
        (engine.version, &engine.state),
        "a late watcher's snapshot is the engine's state"
    );
    game.stop().await;
}
