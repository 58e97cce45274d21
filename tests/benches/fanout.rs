//! Fan-out (issue 5): many idle WebSocket clients on one bridge; memory per
//! idle client, then update delivery latency to every watcher of a game.
//!
//! `cargo build --release -p bridge && cargo bench -p tests --bench fanout`
//! Env: `BENCH_CLIENTS` (default 10000), `BENCH_GAMES` (default 1000),
//! `BENCH_ROUNDS` (actions per game, default 3).

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let clients = common::env("BENCH_CLIENTS", 10_000);
    let games = common::env("BENCH_GAMES", 1_000);
    let rounds = common::env("BENCH_ROUNDS", 3);
    let brokers = tests::broker().to_string();
    let bridge = common::BridgeProcess::start(&brokers, 12);
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for g in 0..games {
        tokens.push(common::join(&client, &bridge.addr, g + 1).await);
    }
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
    // (game, version, arrival) of every update any client sees.
    let seen: Arc<Mutex<Vec<(u64, u64, Instant)>>> = Arc::default();
    let mut connected = 0u64;
    let t0 = Instant::now();
    for c in 0..clients {
        let game = c % games + 1;
        let seen = seen.clone();
        common::watch(&bridge.addr, game, move |v, now| {
            if v["kind"] == "update" {
                seen.lock().unwrap().push((
                    v["game_id"].as_u64().unwrap(),
                    v["version"].as_u64().unwrap(),
                    now,
                ));
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
            text.contains(&format!("bridge_ws_connected {connected}"))
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
    // Delivery: one action per game per round; time from the HTTP answer to
    // each watcher's update.
    let mut answers: Vec<(u64, Instant)> = Vec::new();
    for round in 0..rounds {
        let mut handles = Vec::new();
        for g in 0..games {
            let req = client
                .post(format!(
                    "http://{}/api/games/{}/actions",
                    bridge.addr,
                    g + 1
                ))
                .bearer_auth(&tokens[g as usize])
                .header("Idempotency-Key", format!("r{round}-g{g}"))
                .header("Content-Type", "application/json")
                .body(r#"{"type":"default"}"#);
            handles.push(tokio::spawn(async move {
                let ok = req
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 202)
                    .unwrap_or(false);
                (g + 1, ok, Instant::now())
            }));
        }
        for h in handles {
            let (g, ok, at) = h.await.unwrap();
            if ok {
                answers.push((g, at));
            }
        }
    }
    let watchers_per_game = clients / games;
    let expected = answers.len() as u64 * watchers_per_game;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.lock().unwrap().len() as u64) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each update's delivery time relative to the latest answer for that game
    // that precedes it (conservative: the answer time is the last one sent).
    let seen = seen.lock().unwrap();
    let mut lat = Vec::new();
    for (game, _version, at) in seen.iter() {
        if let Some((_, answered)) = answers
            .iter()
            .filter(|(g, a)| g == game && a <= at)
            .max_by_key(|(_, a)| *a)
        {
            lat.push(*at - *answered);
        }
    }
    println!(
        "update delivery to all watchers (answer -> arrival): {}",
        common::summary(lat)
    );
    // The bridge's own share: for each update, first to last watcher.
    let mut by_update: std::collections::HashMap<(u64, u64), (Instant, Instant)> =
        std::collections::HashMap::new();
    for (game, version, at) in seen.iter() {
        let e = by_update.entry((*game, *version)).or_insert((*at, *at));
        e.0 = e.0.min(*at);
        e.1 = e.1.max(*at);
    }
    let spread: Vec<Duration> = by_update.values().map(|(a, b)| *b - *a).collect();
    println!(
        "fan-out spread, first to last watcher of an update:   {}",
        common::summary(spread)
    );
    println!(
        "updates received {} of {} expected (conflation may merge an action burst into one update)",
        seen.len(),
        expected
    );
}
