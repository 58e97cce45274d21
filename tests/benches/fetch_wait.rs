//! `FETCH_WAIT_MAX_MS` of the game's consumers (the engine's of `actions`,
//! the bridge's of `games`), re-decided on Apache Kafka.
//!
//! The stand-in brokers answered a waiting fetch only when its wait expired,
//! so the game polled with a 1 ms wait. Apache Kafka parks a fetch and
//! answers it as soon as a record is appended, so a long wait should cost no
//! latency, and a short one makes every idle consumer send about a thousand
//! fetches a second, each paid for by the broker (its CPU and its garbage).
//!
//! For each wait in `BENCH_WAITS`, in turn, `BENCH_ROUNDS` times (after one
//! warm-up round that is not counted), a fresh `nation` process (bridge,
//! engine, leaderboards, lake exporter: `make run`'s set) on topics of its
//! own, alone on the bench's broker:
//! - **idle**: the broker's CPU over `BENCH_IDLE_SECS` while the game idles;
//! - **low**: `loadgen play` at `BENCH_LOW_RATE` actions/s: the 202 → update
//!   latency where a parked fetch matters most (records come one by one);
//! - **load**: `loadgen play` at `BENCH_RATE` actions/s (P2's rate), with
//!   the broker's CPU per 1,000 actions.
//!
//! `cargo build --release -p nation && cargo bench -p tests --bench fetch_wait`
//! Env: `BENCH_WAITS` (default `1,100,500`), `BENCH_ROUNDS` (3),
//! `BENCH_SECS` (10), `BENCH_IDLE_SECS` (10), `BENCH_RATE` (2000),
//! `BENCH_LOW_RATE` (50). The bench starts its own broker (it reads that
//! broker's CPU time), so `KAFKA_BROKERS` is ignored.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use loadgen::play::{PlayArgs, Report};

/// `loadgen play`'s flags, parsed as the command line would give them.
#[derive(Parser)]
struct Play {
    #[command(flatten)]
    args: PlayArgs,
}

fn play_args(url: &str, rate: u64, secs: u64, first_game: u64) -> PlayArgs {
    let (rate, secs, first_game) = (rate.to_string(), secs.to_string(), first_game.to_string());
    Play::parse_from([
        "play",
        "--url",
        url,
        "--rate",
        &rate,
        "--duration",
        &secs,
        "--warmup",
        "2",
        "--games",
        "20",
        "--first-game",
        &first_game,
        "--players",
        "200",
        "--quiet",
    ])
    .args
}

/// CPU time (user + system) of process `pid`, from `/proc`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the broker's /proc");
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ: 100 on every Linux the project runs on (`getconf CLK_TCK`).
    Duration::from_millis(ticks * 10)
}

/// One round's figures for one wait.
#[derive(Default)]
struct Figures {
    idle_cpu_ms_per_s: Vec<f64>,
    low_p50: Vec<f64>,
    low_p99: Vec<f64>,
    load_p50: Vec<f64>,
    load_p99: Vec<f64>,
    load_cpu_ms_per_1000: Vec<f64>,
}

fn summary(r: &Report) -> String {
    format!(
        "202->update p50 {:>6.2} p99 {:>7.2} ms ({} of {} matched, {} errors)",
        r.answer_to_update.p50_ms, r.answer_to_update.p99_ms, r.matched, r.intended, r.errors
    )
}

#[tokio::main]
async fn main() {
    let waits: Vec<String> = std::env::var("BENCH_WAITS")
        .unwrap_or_else(|_| "1,100,500".into())
        .split(',')
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let rounds = common::env("BENCH_ROUNDS", 3);
    let secs = common::env("BENCH_SECS", 10);
    let idle_secs = common::env("BENCH_IDLE_SECS", 10);
    let rate = common::env("BENCH_RATE", 2000);
    let low_rate = common::env("BENCH_LOW_RATE", 50);
    let broker = localkafka::LocalKafka::temporary().expect("a local Apache Kafka");
    let brokers = broker.bootstrap().to_string();
    let broker_pid = broker.pid().expect("the broker's pid");
    println!(
        "# FETCH_WAIT_MAX_MS {waits:?}: idle {idle_secs} s, {low_rate} and {rate} actions/s for {secs} s, {rounds} rounds ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("broker: Apache Kafka at {brokers} (pid {broker_pid})");
    let mut figures: BTreeMap<usize, Figures> = BTreeMap::new();
    let mut next_game = 1;
    for round in 0..=rounds {
        for (i, wait) in waits.iter().enumerate() {
            let game = common::BridgeProcess::start_with(
                &brokers,
                12,
                &[("FETCH_WAIT_MAX_MS", wait.as_str())],
            );
            let url = format!("http://{}", game.addr);
            game.wait_ready().await;
            // Idle: nothing but the game's own consumers and timers.
            let (t0, c0) = (Instant::now(), cpu_time(broker_pid));
            tokio::time::sleep(Duration::from_secs(idle_secs)).await;
            let idle =
                (cpu_time(broker_pid) - c0).as_secs_f64() * 1000.0 / t0.elapsed().as_secs_f64();
            let low = loadgen::play::run(&play_args(&url, low_rate, secs, next_game))
                .await
                .expect("loadgen play (low rate)");
            next_game += 100;
            let c0 = cpu_time(broker_pid);
            let load = loadgen::play::run(&play_args(&url, rate, secs, next_game))
                .await
                .expect("loadgen play (P2 rate)");
            next_game += 100;
            let per_1000 = (cpu_time(broker_pid) - c0).as_secs_f64() * 1000.0
                / (load.intended as f64 / 1000.0);
            drop(game);
            let label = if round == 0 {
                "warm-up".to_string()
            } else {
                format!("round {round}")
            };
            println!("{label}, FETCH_WAIT_MAX_MS={wait}:");
            println!("  idle: broker CPU {idle:.1} ms/s");
            println!("  {low_rate}/s: {}", summary(&low));
            println!(
                "  {rate}/s: {}; broker CPU {per_1000:.0} ms per 1,000 actions",
                summary(&load)
            );
            if round == 0 {
                continue;
            }
            let f = figures.entry(i).or_default();
            f.idle_cpu_ms_per_s.push(idle);
            f.low_p50.push(low.answer_to_update.p50_ms);
            f.low_p99.push(low.answer_to_update.p99_ms);
            f.load_p50.push(load.answer_to_update.p50_ms);
            f.load_p99.push(load.answer_to_update.p99_ms);
            f.load_cpu_ms_per_1000.push(per_1000);
        }
    }
    println!();
    println!(
        "| FETCH_WAIT_MAX_MS | idle: broker CPU ms/s | {low_rate}/s: 202 -> update p50 / p99 ms | {rate}/s: 202 -> update p50 / p99 ms | {rate}/s: broker CPU ms per 1,000 actions |"
    );
    println!("|---|---|---|---|---|");
    for (i, f) in figures {
        println!(
            "| {} | {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} |",
            waits[i],
            common::median(f.idle_cpu_ms_per_s),
            common::median(f.low_p50),
            common::median(f.low_p99),
            common::median(f.load_p50),
            common::median(f.load_p99),
            common::median(f.load_cpu_ms_per_1000),
        );
    }
    println!("(medians over {rounds} rounds)");
}
