//! Slow and idle clients (issue 12, item 10): real players' answer -> update
//! latency without, with, and again without an attack of slowloris HTTP
//! connections and idle WebSockets held open against the same bridge.
//!
//! The players are `loadgen play` (issue 14), one run per phase on the same
//! games: an open-model rate, `202 -> update` on the player's WebSocket. The
//! attack is this bench's own (sockets from many loopback source addresses,
//! slowloris heads): an attack is not a load generator's job.
//!
//! `scripts/slow-clients.sh` (raises `ulimit -n`, builds, runs under a local
//! Apache Kafka). Env: `BENCH_RATE` (players' actions/s, default 500),
//! `BENCH_SECS` (per phase, default 20), `BENCH_WARMUP_SECS` (default 15),
//! `BENCH_GAMES` (default 20),
//! `ATTACK_IDLE_WS` (default 10000), `ATTACK_SLOWLORIS` (default 1200: over the per-address limit of 1024),
//! `ATTACK_WS_PER_ADDR` (default 1000: idle sockets per loopback source
//! address, under the bridge's per-address limit), `KAFKA_BROKERS`.
//!
//! The attack runs on its own thread and runtime:
//! - idle WebSockets from 127.0.0.2, 127.0.0.3, ... (`ATTACK_WS_PER_ADDR`
//!   each), on games nobody plays; they answer pings (as a background tab
//!   does) and reconnect if closed;
//! - slowloris connections, all from 127.0.1.1: a request head trickled one
//!   header line every 2 s, never finished; reconnected 100 ms after the
//!   bridge closes them (header timeout), 1 s after it refuses them (429,
//!   per-address limit).

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use loadgen::play::{PlayArgs, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What the attack holds and suffers, for the report.
#[derive(Default)]
struct AttackStats {
    ws_open: AtomicUsize,
    ws_opened: AtomicU64,
    ws_failed: AtomicU64,
    slow_open: AtomicUsize,
    slow_closed_by_server: AtomicU64,
    slow_refused: AtomicU64,
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(to).await
}

/// One idle WebSocket, reconnected whenever it closes, until `stop`.
async fn idle_ws(
    source: Ipv4Addr,
    to: SocketAddr,
    game_id: u64,
    stats: Arc<AttackStats>,
    stop: Arc<AtomicBool>,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    while !stop.load(Ordering::Relaxed) {
        let opened = async {
            let tcp = connect_from(source, to).await.ok()?;
            let url = format!("ws://{to}/ws/games/{game_id}");
            tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
                .await
                .ok()
        }
        .await;
        let Some((mut socket, _)) = opened else {
            stats.ws_failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        stats.ws_opened.fetch_add(1, Ordering::Relaxed);
        stats.ws_open.fetch_add(1, Ordering::Relaxed);
        // Reading answers the server's pings; nothing else is ever sent.
        loop {
            tokio::select! {
                frame = socket.next() => if !matches!(frame, Some(Ok(_))) { break },
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    if stop.load(Ordering::Relaxed) { break }
                }
            }
        }
        stats.ws_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One slowloris connection, reconnected whenever it is closed, until `stop`.
async fn slowloris(to: SocketAddr, stats: Arc<AttackStats>, stop: Arc<AtomicBool>) {
    let source = Ipv4Addr::new(127, 0, 1, 1);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = connect_from(source, to).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if tcp
            .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
            .await
            .is_err()
        {
            continue;
        }
        stats.slow_open.fetch_add(1, Ordering::Relaxed);
        let mut i = 0u64;
        let mut refused = false;
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                read = tcp.read(&mut buf) => {
                    match read {
                        Ok(n) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 429") => {
                            stats.slow_refused.fetch_add(1, Ordering::Relaxed);
                            refused = true;
                        }
                        _ => {
                            stats.slow_closed_by_server.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    break;
                }
                () = tokio::time::sleep(Duration::from_secs(2)) => {
                    if stop.load(Ordering::Relaxed) { break }
                    i += 1;
                    if tcp.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await.is_err() {
                        stats.slow_closed_by_server.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        stats.slow_open.fetch_sub(1, Ordering::Relaxed);
        // As the 429's Retry-After says.
        let pause = if refused { 1000 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Starts the attack on a thread of its own; returns once `idle_ws` sockets
/// are open (or 120 s passed).
fn start_attack(
    to: SocketAddr,
    idle: usize,
    per_addr: usize,
    slow: usize,
    stats: Arc<AttackStats>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let thread_stats = stats.clone();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("attack runtime");
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for i in 0..idle {
                let source = Ipv4Addr::new(127, 0, 0, 2 + (i / per_addr.max(1)) as u8);
                let game_id = 1_000_000 + (i % 1000) as u64;
                tasks.push(tokio::spawn(idle_ws(
                    source,
                    to,
                    game_id,
                    thread_stats.clone(),
                    stop.clone(),
                )));
                // Open them at a modest pace: a handshake flood is another test.
                if i % 200 == 199 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            for _ in 0..slow {
                tasks.push(tokio::spawn(slowloris(
                    to,
                    thread_stats.clone(),
                    stop.clone(),
                )));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.ws_open.load(Ordering::Relaxed) < idle && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    handle
}

/// One phase of real play: `loadgen play` at `rate` actions/s for `secs`
/// over games 1..=`games` (one new player per game each phase).
async fn play(addr: &str, games: u64, rate: u64, secs: u64) -> Report {
    let args = PlayArgs {
        rate: rate as f64,
        duration: secs as f64,
        // The warm-up is a phase of its own.
        warmup: 0.0,
        games,
        first_game: Some(1),
        players: games as usize,
        drain: 10.0,
        quiet: true,
        ..PlayArgs::new(format!("http://{addr}"))
    };
    loadgen::play::run(&args).await.expect("loadgen play")
}

#[tokio::main]
async fn main() {
    let rate = common::env("BENCH_RATE", 500);
    let secs = common::env("BENCH_SECS", 20);
    let games = common::env("BENCH_GAMES", 20);
    let idle = common::env("ATTACK_IDLE_WS", 10_000) as usize;
    let slow = common::env("ATTACK_SLOWLORIS", 1_200) as usize;
    let per_addr = common::env("ATTACK_WS_PER_ADDR", 1_000) as usize;
    let brokers = tests::broker().to_string();
    // The bridge's own per-address limit (the harness lifts it for the
    // fan-out bench): the slowloris connections are to run into it.
    let limit = std::env::var("MAX_CONNECTIONS_PER_ADDR")
        .unwrap_or_else(|_| bridge::serve::DEFAULT_MAX_CONNECTIONS_PER_ADDR.to_string());
    let bridge =
        common::BridgeProcess::start_with(&brokers, 12, &[("MAX_CONNECTIONS_PER_ADDR", &limit)]);
    let to: SocketAddr = bridge.addr.parse().expect("bridge address");
    println!(
        "# slow and idle clients: players at {rate} actions/s over {games} games, {secs} s per phase ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("# attack: {idle} idle WebSockets ({per_addr} per source address), {slow} slowloris connections from one address");
    let client = reqwest::Client::new();
    bridge.wait_ready().await;
    // Warm-up (not counted): the first seconds on a fresh broker are slow
    // (its JIT, the first segments), which made the first phase look worst.
    let warmup = common::env("BENCH_WARMUP_SECS", 15);
    play(&bridge.addr, games, rate, warmup).await;
    // The machine is shared: the load average says how much a phase's
    // figures are worth.
    let report = |name: &str, r: Report, rss: u64| {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let a = &r.answer_to_update;
        println!(
            "{name:<24} n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (202 p99 {:.2} ms); not 202: {}, no update: {}, late: {}; bridge RSS {} MiB; load {}",
            a.count,
            a.p50_ms,
            a.p99_ms,
            a.max_ms,
            r.ack.p99_ms,
            r.errors,
            r.unmatched,
            r.late,
            rss / 1024,
            load.split_whitespace().next().unwrap_or("?")
        );
    };
    let quiet = play(&bridge.addr, games, rate, secs).await;
    report("without attack", quiet, bridge.rss_kib());

    let stats = Arc::new(AttackStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let attack_started = Instant::now();
    let attack = start_attack(to, idle, per_addr, slow, stats.clone(), stop.clone());
    println!(
        "attack up in {:.1} s: {} idle WebSockets open ({} failed attempts), {} slowloris connections open",
        attack_started.elapsed().as_secs_f64(),
        stats.ws_open.load(Ordering::Relaxed),
        stats.ws_failed.load(Ordering::Relaxed),
        stats.slow_open.load(Ordering::Relaxed),
    );
    let attacked = play(&bridge.addr, games, rate, secs).await;
    let rss = bridge.rss_kib();
    report("with attack", attacked, rss);
    println!(
        "during the attack: idle WebSockets open {} (opened {} in all), slowloris open {}, closed by the bridge {}, refused 429 {}",
        stats.ws_open.load(Ordering::Relaxed),
        stats.ws_opened.load(Ordering::Relaxed),
        stats.slow_open.load(Ordering::Relaxed),
        stats.slow_closed_by_server.load(Ordering::Relaxed),
        stats.slow_refused.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = attack.join();
    let after = play(&bridge.addr, games, rate, secs).await;
    report("without attack, again", after, bridge.rss_kib());
    if let Ok(metrics) = client
        .get(format!("http://{}/metrics", bridge.addr))
        .send()
        .await
    {
        let text = metrics.text().await.unwrap_or_default();
        for line in text.lines().filter(|l| l.starts_with("bridge_http_")) {
            println!("  {line}");
        }
    }
}
