//! Slow and idle clients (issue 12, item 10): real players' answer -> update
//! latency without, with, and again without an attack of slowloris HTTP
//! connections and idle WebSockets held open against the same bridge.
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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
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

/// One phase of real play: `rate` actions/s for `secs` over the players'
/// games; answer -> update latencies of the actions answered 202.
async fn play(
    client: &reqwest::Client,
    addr: &str,
    tokens: &[String],
    arrived: &Arc<Mutex<HashMap<String, Instant>>>,
    phase: &str,
    rate: u64,
    secs: u64,
) -> (Vec<Duration>, u64, u64) {
    let games = tokens.len() as u64;
    let answered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = Vec::new();
    for i in 0..rate * secs {
        tick.tick().await;
        let g = i % games;
        let id = format!("{phase}-{i}");
        let req = common::action_request(client, addr, g + 1, &tokens[g as usize], &id);
        let answered = answered.clone();
        inflight.push(tokio::spawn(async move {
            let ok = req
                .send()
                .await
                .map(|r| r.status().as_u16() == 202)
                .unwrap_or(false);
            if ok {
                answered.lock().unwrap().insert(id, Instant::now());
            }
            ok
        }));
    }
    let mut failed = 0;
    for t in inflight {
        if !t.await.unwrap_or(false) {
            failed += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = {
            let a = answered.lock().unwrap();
            let r = arrived.lock().unwrap();
            a.keys().all(|k| r.contains_key(k))
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = answered.lock().unwrap();
    let arrived = arrived.lock().unwrap();
    let mut lat = Vec::new();
    let mut missing = 0;
    for (id, a) in answered.iter() {
        match arrived.get(id) {
            Some(r) => lat.push(r.saturating_duration_since(*a)),
            None => missing += 1,
        }
    }
    (lat, failed, missing)
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
    let bridge = common::BridgeProcess::start(&brokers, 12);
    let to: SocketAddr = bridge.addr.parse().expect("bridge address");
    println!(
        "# slow and idle clients: players at {rate} actions/s over {games} games, {secs} s per phase ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("# attack: {idle} idle WebSockets ({per_addr} per source address), {slow} slowloris connections from one address");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for g in 0..games {
        tokens.push(common::join(&client, &bridge.addr, g + 1).await);
    }
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    for g in 0..games {
        let arrived = arrived.clone();
        common::watch(&bridge.addr, g + 1, move |v, now| {
            let mut arrived = arrived.lock().unwrap();
            for id in v["applied"].as_array().into_iter().flatten() {
                arrived
                    .entry(id.as_str().unwrap_or_default().to_string())
                    .or_insert(now);
            }
        })
        .await;
    }
    // Warm-up (not counted): the first seconds on a fresh broker are slow
    // (its JIT, the first segments), which made the first phase look worst.
    let warmup = common::env("BENCH_WARMUP_SECS", 15);
    play(
        &client,
        &bridge.addr,
        &tokens,
        &arrived,
        "warm",
        rate,
        warmup,
    )
    .await;
    // The machine is shared: the load average says how much a phase's
    // figures are worth.
    let report = |name: &str, (lat, failed, missing): (Vec<Duration>, u64, u64), rss: u64| {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "{name:<24} {}; not 202: {failed}, no update: {missing}; bridge RSS {} MiB; load {}",
            common::summary(lat),
            rss / 1024,
            load.split_whitespace().next().unwrap_or("?")
        );
    };
    let quiet = play(
        &client,
        &bridge.addr,
        &tokens,
        &arrived,
        "before",
        rate,
        secs,
    )
    .await;
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
    let attacked = play(
        &client,
        &bridge.addr,
        &tokens,
        &arrived,
        "attack",
        rate,
        secs,
    )
    .await;
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
    let after = play(
        &client,
        &bridge.addr,
        &tokens,
        &arrived,
        "after",
        rate,
        secs,
    )
    .await;
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
