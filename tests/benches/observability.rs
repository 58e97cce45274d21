//! The cost of metrics and log shipping on P2 (issue 15), side by side in
//! one run. Two `nation` processes of the same release build (bridge and
//! engine each) on one broker, on topics of their own:
//! - **on**: metrics on (the default) and every log line shipped to a
//!   `LOG_TOPIC`;
//! - **off**: `METRICS_ENABLED=false` and no `LOG_TOPIC`.
//!
//! `loadgen play` drives both at the same open-model rate at the same time,
//! for `BENCH_ROUNDS` rounds of `BENCH_SECS` seconds, on fresh games each
//! round. A round gives a paired ratio (on / off) of the P2 figure, from the
//! `202` to the update on the player's WebSocket, at p50 and p99: a noisy
//! neighbour slows both processes of a round alike, so the ratio keeps what
//! separate runs lose in their spread. The goal is on / off ≤ 1.05.
//!
//! `cargo build --release -p nation && cargo bench -p tests --bench observability`
//! Env: `BENCH_RATE` (actions/s per process, default 500), `BENCH_SECS`
//! (default 10), `BENCH_ROUNDS` (default 6), `KAFKA_BROKERS` (else an Apache
//! Kafka is started for the run).

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use loadgen::play::{PlayArgs, Report};

/// `loadgen play` against one process, quietly, on games from `first_game`.
fn args(url: String, rate: f64, secs: f64, first_game: u64) -> PlayArgs {
    PlayArgs {
        rate,
        duration: secs,
        first_game: Some(first_game),
        quiet: true,
        ..PlayArgs::new(url)
    }
}

/// The geometric mean of ratios.
fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn line(r: &Report) -> String {
    format!(
        "202 p50 {:>6.2} p99 {:>7.2} | 202->update p50 {:>6.2} p99 {:>7.2} ms | {} of {} matched, {} errors",
        r.ack.p50_ms,
        r.ack.p99_ms,
        r.answer_to_update.p50_ms,
        r.answer_to_update.p99_ms,
        r.matched,
        r.intended,
        r.errors
    )
}

#[tokio::main]
async fn main() {
    let rate = common::env("BENCH_RATE", 500) as f64;
    let secs = common::env("BENCH_SECS", 10) as f64;
    let rounds = common::env("BENCH_ROUNDS", 6);
    let brokers = tests::broker().to_string();
    let logs = tests::unique("logs");
    let on = common::BridgeProcess::start_with(
        &brokers,
        12,
        &[("METRICS_ENABLED", "true"), ("LOG_TOPIC", &logs)],
    );
    let off = common::BridgeProcess::start_with(&brokers, 12, &[("METRICS_ENABLED", "false")]);
    println!(
        "# P2 with and without metrics and log shipping, side by side: {rate} actions/s each, {rounds} rounds of {secs} s ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "broker: Apache Kafka at {brokers}; on: http://{} (LOG_TOPIC {logs}); off: http://{}",
        on.addr, off.addr
    );
    // Both engines assigned and restored before anything is timed.
    on.wait_ready().await;
    off.wait_ready().await;
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    // Round 0 warms both up (connections, JIT-free but cold caches, the
    // first transactions) and is not counted.
    for round in 0..=rounds {
        let first_game = 1 + round * 10;
        let a = args(format!("http://{}", on.addr), rate, secs, first_game);
        let b = args(format!("http://{}", off.addr), rate, secs, first_game);
        let (ra, rb) = tokio::join!(loadgen::play::run(&a), loadgen::play::run(&b));
        let (ra, rb) = (
            ra.expect("loadgen play (on)"),
            rb.expect("loadgen play (off)"),
        );
        let r50 = ra.answer_to_update.p50_ms / rb.answer_to_update.p50_ms;
        let r99 = ra.answer_to_update.p99_ms / rb.answer_to_update.p99_ms;
        if round == 0 {
            println!(
                "warm-up round: on {} / off {} matched",
                ra.matched, rb.matched
            );
            continue;
        }
        println!("round {round}:");
        println!("  on:  {}", line(&ra));
        println!("  off: {}", line(&rb));
        println!("  on / off: p50 {r50:.3}, p99 {r99:.3}");
        if ra.matched < ra.intended || rb.matched < rb.intended {
            println!("  (some actions unmatched: this round's figures are suspect)");
        }
        if r50.is_finite() && r99.is_finite() {
            p50.push(r50);
            p99.push(r99);
        }
    }
    println!(
        "on / off over {} rounds: p50 median {:.3} (geometric mean {:.3}, range {:.3}-{:.3}); p99 median {:.3} (geometric mean {:.3}, range {:.3}-{:.3}); goal <= 1.05",
        p50.len(),
        common::median(p50.clone()),
        geomean(&p50),
        p50.iter().copied().fold(f64::INFINITY, f64::min),
        p50.iter().copied().fold(0.0, f64::max),
        common::median(p99.clone()),
        geomean(&p99),
        p99.iter().copied().fold(f64::INFINITY, f64::min),
        p99.iter().copied().fold(0.0, f64::max),
    );
}
