//! Fan-out (issue 5): many idle WebSocket clients on one bridge; memory per
//! idle client, then update delivery latency to every watcher of a game.
//!
//! `cargo build --release -p nation && cargo bench -p tests --bench fanout`
//! Env: `BENCH_CLIENTS` (default 10000), `BENCH_GAMES` (default 1000),
//! `BENCH_RATE` (actions/s, default 1000, so 10,000 deliveries/s),
//! `BENCH_SECS` (default 10), `BENCH_NATIONS` (nations added to game 1
//! first, default 0: the popular-game run), `KAFKA_BROKERS` (else an Apache Kafka is
//! started for the run).

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let clients = common::env("BENCH_CLIENTS", 10_000);
    let games = common::env("BENCH_GAMES", 1_000);
    let rate = common::env("BENCH_RATE", 1000);
    let secs = common::env("BENCH_SECS", 10);
    let brokers = tests::broker().to_string();
    let bridge = common::BridgeProcess::start(&brokers, 12);
    println!("broker: Apache Kafka at {brokers}");
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for g in 0..games {
        tokens.push(common::join(&client, &bridge.addr, g + 1).await);
    }
    common::populate_from_env(&client, &brokers, &bridge, 12).await;
    // Every game has state before the clients come.
    for g in 0..games {
        let url = format!("http://{}/api/games/{}", bridge.addr, g + 1);
        tests::eventually(Duration::from_secs(60), "game state", || {
            let req = client.get(&url).send();
            async move { req.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }
    let rss_before = bridge.rss_kib();
    // Every (action id, arrival) any client sees in an update's `applied`.
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut connected = 0u64;
    let t0 = Instant::now();
    for c in 0..clients {
        let game = c % games + 1;
        let seen = seen.clone();
        common::watch(&bridge.addr, game, move |v, now| {
            if v["kind"] == "update" {
                let mut seen = seen.lock().unwrap();
                for id in v["applied"].as_array().into_iter().flatten() {
                    seen.push((id.as_str().unwrap_or_default().to_string(), now));
                }
            }
        })
        .await;
        connected += 1;
    }
    // Wait until every snapshot is out and memory settles: a few metrics reads.
    tests::eventually(Duration::from_secs(60), "all clients connected", || {
        let url = format!("http://{}/metrics", bridge.addr);
        let req = client.get(url).send();
        async move {
            let text = req.await.ok()?.text().await.ok()?;
            text.contains(&format!("bridge_ws_clients {connected}"))
                .then_some(())
        }
    })
    .await;
    let rss_after = bridge.rss_kib();
    println!("# fan-out: {connected} idle WebSocket clients over {games} games on one bridge (connect took {:.1} s)", t0.elapsed().as_secs_f64());
    println!(
        "bridge RSS {rss_before} KiB -> {rss_after} KiB: {:.1} KiB per idle client",
        (rss_after.saturating_sub(rss_before)) as f64 / connected as f64
    );
    // Delivery: a steady `rate` of actions, round-robin over the games; the
    // time from each HTTP answer to the update reaching each watcher.
    // The baseline, same run: one plain consumer of `games` beside the
    // bridge (the engine's path without the fan-out).
    let direct = common::DirectReader::start(&brokers, &bridge.games_topic);
    let total = rate * secs;
    let answers: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut handles = Vec::new();
    for i in 0..total {
        tick.tick().await;
        let g = i % games;
        let id = format!("f{i}");
        let req = common::action_request(&client, &bridge.addr, g + 1, &tokens[g as usize], &id);
        let answers = answers.clone();
        handles.push(tokio::spawn(async move {
            if req.send().await.is_ok_and(|r| r.status().as_u16() == 202) {
                answers.lock().unwrap().insert(id, Instant::now());
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let watchers_per_game = clients / games;
    let expected = answers.lock().unwrap().len() as u64 * watchers_per_game;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.lock().unwrap().len() as u64) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap();
    let answers = answers.lock().unwrap();
    let mut lat = Vec::new();
    let mut by_action: HashMap<&str, (Instant, Instant)> = HashMap::new();
    for (id, at) in seen.iter() {
        if let Some(answered) = answers.get(id) {
            lat.push(at.saturating_duration_since(*answered));
        }
        let e = by_action.entry(id.as_str()).or_insert((*at, *at));
        e.0 = e.0.min(*at);
        e.1 = e.1.max(*at);
    }
    let direct = direct.finish();
    let baseline: Vec<Duration> = answers
        .iter()
        .filter_map(|(id, a)| direct.get(id).map(|d| d.saturating_duration_since(*a)))
        .collect();
    println!(
        "baseline, answer -> record on games (one consumer, no fan-out):  {}",
        common::summary(baseline)
    );
    println!(
        "update delivery at {rate} actions/s to {watchers_per_game} watchers each (answer -> arrival): {}",
        common::summary(lat)
    );
    // The bridge's own share: for each action, first to last watcher.
    let spread: Vec<Duration> = by_action.values().map(|(a, b)| *b - *a).collect();
    println!(
        "fan-out spread, first to last watcher of an update:   {}",
        common::summary(spread)
    );
    println!("deliveries {} of {} expected", seen.len(), expected);
}
