//! Issue 12, fault 6: two engines and two bridges under load (each its own
//! `nation` process on one broker, one topic set, one engine group). One
//! engine is stopped cleanly, started again, then the other is `kill -9`'d:
//! the partitions move each time, players on both bridges keep seeing
//! updates, and every acknowledged action is in exactly one committed
//! update.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tests::load::{Load, Player};
use tests::process::NationProcess;

const GAMES: u64 = 8;

/// When each (bridge, game) watcher got each update.
type LastUpdate = Arc<Mutex<HashMap<(usize, u64), Vec<Instant>>>>;

async fn watch(bridge: usize, base_url: &str, game_id: u64, last: LastUpdate) {
    let url = format!("{}/ws/games/{game_id}", base_url.replace("http", "ws"));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    tokio::spawn(async move {
        let (_, mut read) = socket.split();
        while let Some(Ok(msg)) = read.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
                let v: serde_json::Value = serde_json::from_str(&text).expect("JSON frame");
                if v["kind"] == "update" {
                    last.lock()
                        .unwrap()
                        .entry((bridge, game_id))
                        .or_default()
                        .push(Instant::now());
                }
            }
        }
    });
}

/// Waits until every watcher got an update more than `settle` after `t`
/// (so play goes on, not just what was in flight); then the longest time
/// any watcher went without an update from `t` on: how long players were
/// blind.
async fn blind_after(last: &LastUpdate, t: Instant, settle: Duration, what: &str) -> Duration {
    tests::eventually(Duration::from_secs(60), what, || {
        let last = last.lock().unwrap();
        let all = (0..2).all(|b| {
            (1..=GAMES).all(|g| {
                last.get(&(b, g))
                    .is_some_and(|u| u.last().is_some_and(|u| *u > t + settle))
            })
        });
        async move { all.then_some(()) }
    })
    .await;
    let last = last.lock().unwrap();
    let mut blind = Duration::ZERO;
    for updates in last.values() {
        let mut previous = t;
        for u in updates.iter().filter(|u| **u > t) {
            blind = blind.max(*u - previous);
            previous = *u;
        }
    }
    blind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_two_bridges_a_clean_stop_then_a_kill_lose_and_double_nothing() {
    let brokers = tests::broker().to_string();
    let games_topic = tests::unique("games");
    let group = tests::unique("engine");
    // Each engine its own stable transactional id (and static membership),
    // as two hosts would have: a restart fences its own predecessor only.
    let env = |engine: Option<&str>| -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("KAFKA_BROKERS", brokers.clone()),
            ("ACTIONS_TOPIC", games_topic.replace("games", "actions")),
            ("GAMES_TOPIC", games_topic.clone()),
            ("ENGINE_GROUP_ID", group.clone()),
            ("PARTITIONS", "4".into()),
            ("TOKEN_SECRET", "failover".into()),
            ("WITH_LEADERBOARDS", "false".into()),
            ("WITH_ENGINE", engine.is_some().to_string()),
        ];
        if let Some(id) = engine {
            env.push(("ENGINE_TRANSACTIONAL_ID", format!("{group}-{id}")));
        }
        env
    };
    // A dead member leaves the group after 6 s instead of 45 s.
    let args = ["-X", "session.timeout.ms=6000"];
    let mut engine_a = NationProcess::start(&env(Some("a")), &args).await;
    let mut engine_b = NationProcess::start(&env(Some("b")), &args).await;
    let bridges = [
        NationProcess::start(&env(None), &args).await,
        NationProcess::start(&env(None), &args).await,
    ];
    let engines_hold_partitions = |n: usize, what: &'static str| {
        let (brokers, group) = (brokers.clone(), group.clone());
        async move {
            tests::eventually(Duration::from_secs(60), what, || {
                let members = tests::stable_members(&brokers, &group);
                async move { (members == Some(n)).then_some(()) }
            })
            .await
        }
    };
    engines_hold_partitions(2, "both engines in the group").await;

    let client = reqwest::Client::new();
    let mut players = Vec::new();
    let last: LastUpdate = Arc::default();
    for game_id in 1..=GAMES {
        let bridge = &bridges[(game_id % 2) as usize];
        let joined: serde_json::Value =
            tests::eventually(Duration::from_secs(20), "a join", || {
                let req = client
                    .post(format!("{}/api/games/{game_id}/join", bridge.base_url))
                    .json(&serde_json::json!({"name": format!("Failover {game_id}")}))
                    .send();
                async move {
                    let r = req.await.ok()?;
                    if r.status() != 200 {
                        return None;
                    }
                    r.json().await.ok()
                }
            })
            .await;
        players.push(Player {
            base_url: bridge.base_url.clone(),
            game_id,
            token: joined["token"].as_str().expect("token").to_string(),
        });
        for (b, bridge) in bridges.iter().enumerate() {
            watch(b, &bridge.base_url, game_id, last.clone()).await;
        }
    }
    let load = Load::start(players, false);
    load.wait_for_more(200, Duration::from_secs(60), "the load to get going")
        .await;
    blind_after(
        &last,
        Instant::now(),
        Duration::ZERO,
        "updates on both bridges",
    )
    .await;

    // One engine stopped cleanly: it commits and leaves the group.
    let stopped_at = Instant::now();
    let status = tokio::task::block_in_place(|| engine_a.stop());
    assert!(status.success(), "a clean stop exits 0: {status}");
    let settle = Duration::from_secs(10);
    let after_stop = blind_after(&last, stopped_at, settle, "updates after the clean stop").await;
    load.wait_for_more(100, Duration::from_secs(60), "play after the clean stop")
        .await;

    // Back to two engines, then one killed.
    engine_a = NationProcess::start(&env(Some("a")), &args).await;
    engines_hold_partitions(2, "both engines again").await;
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| engine_b.kill());
    let after_kill = blind_after(&last, killed_at, settle, "updates after the kill").await;
    load.wait_for_more(100, Duration::from_secs(60), "play after the kill")
        .await;
    let outcome = load.finish().await;

    assert!(
        outcome.wrong.is_empty(),
        "answers other than 202: {:?}",
        outcome.wrong
    );
    let acked: HashSet<String> = outcome.acked.keys().cloned().collect();
    tests::load::applied_exactly_once(&brokers, &games_topic, &acked, Duration::from_secs(90))
        .expect("every acknowledged action in exactly one committed update");
    eprintln!(
        "two engines, two bridges, {GAMES} games: {} actions acknowledged, {} answered 503 on the way; longest a watcher on either bridge went without an update: {} ms from a clean engine stop, {} ms from a kill -9 of the other; none lost, none doubled",
        acked.len(),
        outcome.unavailable,
        after_stop.as_millis(),
        after_kill.as_millis(),
    );
    drop(engine_a);
}
