//! The 5v5 arena end to end on Apache Kafka (issue 18): joins and teams,
//! moves and throws over WebSockets, a match played to its end, the rate
//! limit, `engine replay` rebuilding the arena equal to the live one, and
//! the arena in the lake (its actions with their kind) and on the
//! eliminations board.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tests::game::TestGame;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A fresh arena id for each test (the kind comes from the id range).
fn arena_id() -> u64 {
    shared::arena::ARENA_IDS.start + u64::from(uuid::Uuid::new_v4().as_u128() as u32)
}

async fn connect(game: &TestGame, game_id: u64) -> Socket {
    let url = format!("ws://{}/ws/games/{game_id}", game.addr);
    let mut socket = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0;
    let (first, _) = next_frame(&mut socket, Duration::from_secs(30)).await;
    assert_eq!(first["kind"], "snapshot");
    socket
}

/// The next JSON text frame and its size in bytes, within `timeout`.
async fn next_frame(socket: &mut Socket, timeout: Duration) -> (Value, usize) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(text) => {
                return (serde_json::from_str(&text).expect("JSON frame"), text.len())
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Frames until one satisfies `pred`; that one and its size.
async fn until(socket: &mut Socket, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no frame with {what} in 30 s");
        let (v, len) = next_frame(socket, left).await;
        if pred(&v) {
            return (v, len);
        }
    }
}

/// A player's arena state in a frame (a snapshot's or an update's).
fn fighter<'a>(v: &'a Value, player: &str) -> &'a Value {
    match v["kind"].as_str() {
        Some("update") => &v["fighters"][player],
        _ => &v["state"]["arena"]["fighters"][player],
    }
}

/// The round in a frame, if it carries it.
fn round(v: &Value) -> &Value {
    match v["kind"].as_str() {
        Some("update") => &v["match"],
        _ => &v["state"]["arena"]["match"],
    }
}

fn rejected_code(v: &Value, action_id: &str) -> Option<String> {
    v["rejected"].as_array()?.iter().find_map(|r| {
        (r["event_id"] == action_id).then(|| r["reason"]["code"].as_str().unwrap_or("").to_string())
    })
}

/// `POST /join`: the status and the answer. A 503 is retried with the same
/// `Idempotency-Key`, as the contract tells clients to.
async fn join(game: &TestGame, game_id: u64, name: &str) -> (u16, Value) {
    join_with_key(game, game_id, name, &uuid::Uuid::new_v4().to_string()).await
}

async fn join_with_key(game: &TestGame, game_id: u64, name: &str, key: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}/api/games/{game_id}/join", game.base_url);
    tests::eventually(Duration::from_secs(30), "a join not answered 503", || {
        let req = client
            .post(&url)
            .header("Idempotency-Key", key)
            .json(&json!({ "name": name }))
            .send();
        async move {
            let response = req.await.expect("join request");
            let status = response.status().as_u16();
            (status != 503).then_some(())?;
            Some((status, response.json().await.unwrap_or(Value::Null)))
        }
    })
    .await
}

/// One player: id, token.
struct Player {
    id: String,
    token: String,
}

async fn seat(game: &TestGame, game_id: u64, name: &str) -> (Player, String) {
    let (status, body) = join(game, game_id, name).await;
    assert_eq!(status, 200, "join answered {body}");
    let player = Player {
        id: body["player_id"].as_str().expect("player_id").into(),
        token: body["token"].as_str().expect("token").into(),
    };
    (player, body["team"].as_str().expect("a team").to_string())
}

/// Sends `action` with a fresh id; returns the id.
async fn act(game: &TestGame, game_id: u64, player: &Player, action: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let (status, body) = game.act(game_id, &player.token, action, Some(&id)).await;
    assert_eq!(status, 202, "{action} answered {body}");
    id
}

/// Sends `action` and waits on `socket` for the step that handled it.
/// The rate limit counts the bridge's stamps, so the next action leaves at
/// least 120 ms after this one's 202 (its stamp is older than the answer):
/// pacing, not synchronisation; the wait below is what synchronises.
async fn step(
    game: &TestGame,
    game_id: u64,
    player: &Player,
    action: &str,
    socket: &mut Socket,
) -> (Value, usize) {
    let id = act(game, game_id, player, action).await;
    let pace = tokio::time::sleep(Duration::from_millis(120));
    let found = until(socket, &format!("{action} handled"), |v| {
        v["applied"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(id)))
            || rejected_code(v, &id).is_some()
    })
    .await;
    pace.await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_fill_the_smaller_team_and_the_eleventh_is_refused() {
    let game = TestGame::start(None).await;
    let id = arena_id();
    let mut teams = Vec::new();
    for i in 0..10 {
        let (_, team) = seat(&game, id, &format!("p{i}")).await;
        teams.push(team);
    }
    assert_eq!(teams.iter().filter(|t| *t == "a").count(), 5, "{teams:?}");
    assert_eq!(teams.iter().filter(|t| *t == "b").count(), 5, "{teams:?}");
    assert_eq!(teams[..2], ["a", "b"], "the smaller team each time");
    let (status, body) = join(&game, id, "late").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "team_full");
    assert!(body["detail"]["message"].is_string());
    let state = game
        .wait_for_state(id, "ten players", |s| {
            s["state"]["arena"]["fighters"]
                .as_object()
                .is_some_and(|f| f.len() == 10)
        })
        .await;
    assert_eq!(state["state"]["arena"]["match"]["phase"], "playing");
    // A nation game next door is untouched by the arena's rules.
    let (nation_status, nation) = join(&game, 1, "Rome").await;
    assert_eq!(nation_status, 200);
    assert!(nation.get("team").is_none());
    game.stop().await;
}

/// A join sent again with its `Idempotency-Key` (a 503, a lost answer) is
/// the same join: the same player and seat in an arena, the same nation in
/// a nation game; never a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_retried_with_its_key_is_the_same_player() {
    let game = TestGame::start(None).await;
    let id = arena_id();
    let (_, first) = join_with_key(&game, id, "Ann", "ann-join-1").await;
    let (status, again) = join_with_key(&game, id, "Ann", "ann-join-1").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["player_id"], first["player_id"]);
    assert_eq!(again["team"], first["team"]);
    let (_, bob) = join_with_key(&game, id, "Bob", "bob-join-1").await;
    assert_ne!(bob["player_id"], first["player_id"]);
    assert_ne!(bob["team"], first["team"], "Bob fills the other team");
    let state = game
        .wait_for_state(id, "Bob seated", |s| {
            s["state"]["arena"]["fighters"].as_object().map(|f| f.len()) == Some(2)
        })
        .await;
    assert_eq!(
        state["state"]["arena"]["fighters"]
            .as_object()
            .unwrap()
            .len(),
        2
    );

    let nation_game = 7;
    let (status, first) = join_with_key(&game, nation_game, "Rome", "rome-join-1").await;
    assert_eq!(status, 200);
    let (_, again) = join_with_key(&game, nation_game, "Rome", "rome-join-1").await;
    assert_eq!(again["player_id"], first["player_id"]);
    let (status, carthage) = join_with_key(&game, nation_game, "Carthage", "carthage-1").await;
    assert_eq!(status, 200);
    let state = game
        .wait_for_state(nation_game, "Carthage's nation", |s| {
            s["state"]["players"]
                .get(carthage["player_id"].as_str().unwrap())
                .is_some()
        })
        .await;
    assert_eq!(
        state["state"]["players"].as_object().unwrap().len(),
        2,
        "one Rome, one Carthage: {state}"
    );
    game.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_played_to_its_end_over_websockets_then_replayed() {
    let lake_dir = std::env::temp_dir().join(tests::unique("arena-lake"));
    let lake = lake_dir.to_string_lossy().into_owned();
    let game = TestGame::start_with(None, |c| {
        c.engine.with_leaderboards = true;
        c.lake.lake = Some(lake.clone());
        c.lake.lake_max_age_ms = 200;
    })
    .await;
    let id = arena_id();
    let (ann, team_a) = seat(&game, id, "ann").await;
    let (bob, team_b) = seat(&game, id, "bob").await;
    assert_eq!((team_a.as_str(), team_b.as_str()), ("a", "b"));
    let mut mine = connect(&game, id).await;
    let mut theirs = connect(&game, id).await;

    // Ann moves right: both sockets see it, in one small frame.
    let (frame, bytes) = step(&game, id, &ann, "move_right", &mut mine).await;
    assert_eq!(fighter(&frame, &ann.id)["x"], 1);
    assert!(bytes <= 300, "a move's frame is {bytes} bytes: {frame}");
    // BENCHMARKS.md quotes this line (`-- --nocapture`).
    println!("a move's WebSocket frame: {bytes} bytes");
    let (seen, _) = until(&mut theirs, "ann's move", |v| fighter(v, &ann.id)["x"] == 1).await;
    assert!(seen["fighters"].get(&bob.id).is_none(), "only what changed");

    // A wall: refused `blocked`, nothing moves.
    let (frame, _) = step(&game, id, &ann, "move_up", &mut mine).await;
    assert_eq!(
        frame["rejected"][0]["reason"]["code"], "blocked",
        "row 9 is the top: {frame}"
    );

    // Ann to column 4 (free top to bottom), Bob up it to (4, 4).
    for _ in 0..3 {
        step(&game, id, &ann, "move_right", &mut mine).await;
    }
    for _ in 0..4 {
        step(&game, id, &bob, "move_right", &mut mine).await;
    }
    for _ in 0..4 {
        step(&game, id, &bob, "move_up", &mut mine).await;
    }
    // Three grenades down column 4 burst at (4, 5), next to Bob.
    for hp in [2, 1, 0] {
        let (frame, _) = step(&game, id, &ann, "throw_down", &mut mine).await;
        assert_eq!(fighter(&frame, &bob.id)["hp"], hp, "{frame}");
        assert_eq!(round(&frame)["burst"]["y"], 5, "{frame}");
    }
    let (over, _) = until(&mut theirs, "the end of the round", |v| {
        round(v)["phase"] == "over"
    })
    .await;
    assert_eq!(round(&over)["winner"], "a");
    assert_eq!(round(&over)["end"], "eliminated");
    assert_eq!(fighter(&over, &ann.id)["kills"], 1);
    assert_eq!(fighter(&over, &ann.id)["grenades"], 2);

    // A finished round accepts no move; a rematch starts the next.
    let (frame, _) = step(&game, id, &ann, "move_left", &mut mine).await;
    assert_eq!(frame["rejected"][0]["reason"]["code"], "match_over");
    let (frame, _) = step(&game, id, &bob, "rematch", &mut mine).await;
    assert_eq!(round(&frame)["round"], 2);
    assert_eq!(round(&frame)["phase"], "playing");
    assert_eq!(round(&frame)["wins_a"], 1);
    assert_eq!(fighter(&frame, &bob.id)["hp"], 3);

    // GET agrees with the sockets, and a replay of `actions` with `games`.
    let live = game
        .wait_for_state(id, "round 2", |s| {
            s["state"]["arena"]["match"]["round"] == 2
        })
        .await;
    assert_eq!(live["state"]["arena"]["fighters"][&ann.id]["y"], 9);
    let mut config = engine::Config::new(game.brokers.clone());
    config.actions_topic = game.actions_topic.clone();
    config.games_topic = game.games_topic.clone();
    config.partitions = game.partitions;
    let report = tokio::task::spawn_blocking(move || engine::replay(&config))
        .await
        .expect("replay thread")
        .expect("replay");
    assert!(report.ok(), "replay agrees with games: {report:?}");
    assert_eq!(report.agree, 1);

    // The eliminations board: Ann, one.
    let board = format!(
        "{}/api/leaderboards/{}?limit=10",
        game.base_url,
        leaderboards_board()
    );
    let page = tests::eventually(
        Duration::from_secs(30),
        "Ann on the eliminations board",
        || {
            let req = reqwest::get(board.clone());
            let ann = ann.id.clone();
            async move {
                let page: Value = req.await.ok()?.json().await.ok()?;
                (page["entries"][0]["player_id"] == ann.as_str()).then_some(page)
            }
        },
    )
    .await;
    assert_eq!(page["entries"][0]["score"], 1.0, "{page}");

    // The lake: the arena's actions, all of kind `arena`: 18 moves, throws
    // and the rematch (refused ones included) besides the joins (a join
    // answered 503 and retried is a record of its own).
    let location = lake::Location::open(&lake).expect("the lake folder");
    let sql = format!(
        "SELECT kind, count(*) AS n FROM events WHERE game_id = {id} AND event_type <> 'join' GROUP BY kind"
    );
    let rows = tests::eventually(
        Duration::from_secs(60),
        "the arena's actions in the lake",
        || {
            let (location, sql) = (location.clone(), sql.clone());
            async move {
                let batches = lake::query::query(&location, &sql).await.ok()?;
                let rows = lake::query::to_json(&batches).ok()?;
                (rows
                    .as_array()?
                    .iter()
                    .map(|r| r["n"].as_u64().unwrap_or(0))
                    .sum::<u64>()
                    >= 18)
                    .then_some(rows)
            }
        },
    )
    .await;
    assert_eq!(rows, json!([{"kind": "arena", "n": 18}]));
    game.stop().await;
    let _ = std::fs::remove_dir_all(&lake_dir);
}

/// The arena's board of eliminations.
fn leaderboards_board() -> &'static str {
    "arena-eliminations"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_moves_is_rate_limited_by_the_rules() {
    let game = TestGame::start(None).await;
    let id = arena_id();
    let (ann, _) = seat(&game, id, "ann").await;
    let (bob, _) = seat(&game, id, "bob").await;
    let mut watcher = connect(&game, id).await;
    // Fifty moves as fast as the bridge takes them, down and up.
    let sending = Instant::now();
    let mut flood = std::collections::HashSet::new();
    for i in 0..50 {
        let action = if i % 2 == 0 { "move_down" } else { "move_up" };
        flood.insert(act(&game, id, &ann, action).await);
    }
    let sent_ms = sending.elapsed().as_millis() as u64;
    // Bob, paced, is served as usual meanwhile.
    let (frame, _) = step(&game, id, &bob, "move_right", &mut watcher).await;
    assert_eq!(fighter(&frame, &bob.id)["x"], 1, "{frame}");
    // Every flood action handled: count the outcomes from a fresh reader of
    // the whole stream (the watcher may have seen some before bob's step).
    let (mut applied, mut too_fast) = (0u64, 0u64);
    let mut fast_only = 0u64;
    let records = tests::consume(
        &game.brokers,
        &game.games_topic,
        Duration::from_secs(30),
        |seen| {
            let handled = seen
                .iter()
                .map(tests::json)
                .filter(|v| v["record"] == "head")
                .map(|v| {
                    let a = v["applied"].as_array().map_or(0, |a| {
                        a.iter()
                            .filter(|x| flood.contains(x.as_str().unwrap_or("")))
                            .count()
                    });
                    let r = v["rejected"].as_array().map_or(0, |r| {
                        r.iter()
                            .filter(|x| flood.contains(x["event_id"].as_str().unwrap_or("")))
                            .count()
                    });
                    a + r
                })
                .sum::<usize>();
            handled >= flood.len()
        },
    )
    .expect("the flood's heads");
    for v in records
        .iter()
        .map(tests::json)
        .filter(|v| v["record"] == "head")
    {
        applied += v["applied"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|x| flood.contains(x.as_str().unwrap_or("")))
                .count() as u64
        });
        too_fast += v["rejected"].as_array().map_or(0, |r| {
            r.iter()
                .filter(|x| {
                    flood.contains(x["event_id"].as_str().unwrap_or(""))
                        && (x["reason"]["code"] == "too_fast" || x["reason"]["code"] == "blocked")
                })
                .count() as u64
        });
    }
    // A move up that is not too fast can still meet the top edge.
    assert_eq!(
        applied + too_fast,
        50,
        "every refusal is too_fast or blocked"
    );
    for v in records
        .iter()
        .map(tests::json)
        .filter(|v| v["record"] == "head")
    {
        fast_only += v["rejected"].as_array().map_or(0, |r| {
            r.iter()
                .filter(|x| x["reason"]["code"] == "too_fast")
                .count() as u64
        });
    }
    assert!(fast_only > 0, "some of the flood is refused too_fast");
    assert!(
        applied <= 2 + sent_ms / shared::arena::MIN_INTERVAL_MS,
        "{applied} of the flood applied in {sent_ms} ms"
    );
    game.stop().await;
}
