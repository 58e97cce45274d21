//! Fan-out (issue 5, P4): many idle WebSocket clients on one bridge; memory
//! per idle client, then update delivery latency to every watcher of a game.
//!
//! The load and its measurement are `loadgen play` (issue 14) with
//! `--watchers`: one player per game acts at an open-model rate, and the
//! idle watchers, spread over the games, only receive; loadgen measures
//! each action's arrival at every watcher of its game (from its `202`, the
//! P4 figure, and from its intended start) and the spread from the first
//! to the last watcher. The bridge's memory is read between loadgen's steps:
//! once the players are in, and once the watchers are.
//!
//! `cargo build --release -p nation && cargo bench -p tests --bench fanout`
//! Env: `BENCH_CLIENTS` (idle watchers, default 10000), `BENCH_GAMES`
//! (default 1000), `BENCH_RATE` (actions/s, default 1000, so 10,000
//! deliveries/s), `BENCH_SECS` (default 10), `BENCH_NATIONS` (nations added
//! to game 1 first, default 0: the popular-game run), `KAFKA_BROKERS` (else
//! an Apache Kafka is started for the run), `BENCH_WARMUP_SECS` (default 60:
//! the same rate on 100 games of their own first, not measured; a fresh
//! broker's JVM is still compiling its hot paths, as in the latency bench).

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::time::{Duration, Instant};

use loadgen::play::{PlayArgs, Session};

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
    bridge.wait_ready().await;
    // 60 s: after 30, a fresh broker was still compiling (its C2 threads
    // took a tenth of the machine) and the delivery p99 was 87.6 ms against
    // 10.6 ms after 60 (BENCHMARKS.md, P4, twenty-second session).
    common::warm_up(&bridge.addr, rate, 100, 100, 60).await;
    let args = PlayArgs {
        rate: rate as f64,
        duration: secs as f64,
        games,
        // Games 1.. (BENCH_NATIONS fills game 1): the process is fresh.
        first_game: Some(1),
        // One player per game, as many as games: each watches its own game
        // too, but only the idle watchers count as the fan-out.
        players: games as usize,
        watchers: clients as usize,
        drain: 30.0,
        quiet: true,
        // For the same-run baseline below.
        keep_actions: true,
        ..PlayArgs::new(format!("http://{}", bridge.addr))
    };
    let mut session = Session::join(&args).await.expect("loadgen play: join");
    common::populate_from_env(&client, &brokers, &bridge, 12).await;
    // Every game has state before the watchers come.
    for g in 0..games {
        let url = format!("http://{}/api/games/{}", bridge.addr, g + 1);
        tests::eventually(Duration::from_secs(60), "game state", || {
            let req = client.get(&url).send();
            async move { req.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }
    let rss_before = bridge.rss_kib();
    let t0 = Instant::now();
    session
        .connect_watchers()
        .await
        .expect("loadgen play: watchers");
    let connect_s = t0.elapsed().as_secs_f64();
    // Wait until every snapshot is out and memory settles: a few metrics reads.
    let open = session.sockets_open();
    tests::eventually(Duration::from_secs(60), "all clients connected", || {
        let url = format!("http://{}/metrics", bridge.addr);
        let req = client.get(url).send();
        async move {
            let text = req.await.ok()?.text().await.ok()?;
            text.contains(&format!("bridge_ws_clients {open}"))
                .then_some(())
        }
    })
    .await;
    let rss_after = bridge.rss_kib();
    println!(
        "# fan-out: {clients} idle WebSocket clients over {games} games on one bridge, loadgen play --watchers (connect took {connect_s:.1} s)"
    );
    println!(
        "bridge RSS {rss_before} KiB -> {rss_after} KiB: {:.1} KiB per idle client",
        (rss_after.saturating_sub(rss_before)) as f64 / clients as f64
    );
    // The baseline, same run: one plain consumer of `games` beside the
    // bridge (the engine's path without the fan-out).
    let direct = common::DirectReader::start(&brokers, &bridge.games_topic);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let report = session.play().await.expect("loadgen play");
    let direct = direct.finish();
    println!(
        "load average before the load: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    loadgen::play::print_table(&report, &mut std::io::stdout()).expect("stdout");
    let baseline: Vec<Duration> = report
        .actions
        .iter()
        .filter_map(|a| Some(direct.get(&a.id)?.saturating_duration_since(a.answered?)))
        .collect();
    let w = &report.watchers;
    println!(
        "baseline, answer -> record on games (one consumer, no fan-out):  {}",
        common::summary(baseline)
    );
    println!(
        "P4 update delivery at {rate} actions/s to {} watchers each (answer -> arrival): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        clients / games,
        w.answer_to_update.p50_ms,
        w.answer_to_update.p99_ms,
        w.answer_to_update.max_ms,
        w.answer_to_update.count
    );
    println!(
        "fan-out spread, first to last watcher of an update: p50 {:.2} ms, p99 {:.2} ms",
        w.spread.p50_ms, w.spread.p99_ms
    );
    println!("deliveries {} of {} expected", w.deliveries, w.expected);
}
