//! What the WebSocket benchmarks share: a release `nation` process (bridge
//! and engine) against the harness's broker, on its own topics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A bridge process; killed on drop.
pub struct BridgeProcess {
    child: Child,
    pub addr: String,
    /// The `games` topic it reads (for a direct consumer beside it).
    pub games_topic: String,
    /// The `actions` topic it writes.
    pub actions_topic: String,
}

impl BridgeProcess {
    /// Waits (up to 120 s) until `/readyz` answers 200: the engine assigned
    /// and restored, so nothing is timed before the game is ready.
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let ready = format!("http://{}/readyz", self.addr);
        tests::eventually(
            std::time::Duration::from_secs(120),
            "the game ready",
            || {
                let req = client.get(&ready).send();
                async move { req.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
            },
        )
        .await;
    }

    /// Builds nothing: expects `target/release/nation` (the bench scripts
    /// build it), or the build named by `NATION_BIN`. Starts it (bridge and engine), waits for `/healthz`.
    pub fn start(brokers: &str, partitions: i32) -> BridgeProcess {
        BridgeProcess::start_with(brokers, partitions, &[])
    }

    /// The same, with more environment for the process (`env` last, so it
    /// overrides).
    pub fn start_with(brokers: &str, partitions: i32, env: &[(&str, &str)]) -> BridgeProcess {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        // `NATION_BIN`: another build (two builds side by side).
        let bin = std::env::var_os("NATION_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(target).join("release/nation"));
        assert!(
            bin.exists(),
            "build it first: cargo build --release -p nation (or set NATION_BIN to a build)"
        );
        let port = tests::free_port();
        let addr = format!("127.0.0.1:{port}");
        let games_topic = tests::unique("games");
        let actions_topic = tests::unique("actions");
        let child = Command::new(bin)
            .env("KAFKA_BROKERS", brokers)
            .env("BIND", &addr)
            .env("PARTITIONS", partitions.to_string())
            .env("ACTIONS_TOPIC", &actions_topic)
            .env("GAMES_TOPIC", &games_topic)
            .env("ENGINE_GROUP_ID", tests::unique("engine"))
            // Two processes in one bench must not fence each other.
            .env("ENGINE_TRANSACTIONAL_ID", tests::unique("engine-txn"))
            .env("TOKEN_SECRET", "bench")
            // Every bench client comes from 127.0.0.1: the per-address
            // connection limit (slowloris protection) would refuse the
            // fan-out bench's 10,000 WebSockets with 429s.
            .env(
                "MAX_CONNECTIONS_PER_ADDR",
                std::env::var("MAX_CONNECTIONS_PER_ADDR").unwrap_or_else(|_| "1000000".into()),
            )
            .env(
                "RUST_LOG",
                std::env::var("BENCH_BRIDGE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .args(["-X", "session.timeout.ms=6000"])
            // BENCH_X="k=v,k=v": more librdkafka settings to try.
            .args(
                std::env::var("BENCH_X")
                    .unwrap_or_default()
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .flat_map(|kv| ["-X".to_string(), kv.to_string()]),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(if std::env::var_os("BENCH_BRIDGE_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start the game process");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "bridge did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        BridgeProcess {
            child,
            addr,
            games_topic,
            actions_topic,
        }
    }

    /// Resident memory of the bridge process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// p-th percentile of sorted durations.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `p50 / p99 / max` in ms.
pub fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        pct(&v, 0.50).as_secs_f64() * 1e3,
        pct(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    )
}

/// Joins `game_id`; returns the token.
pub async fn join(client: &reqwest::Client, addr: &str, game_id: u64) -> String {
    let v: serde_json::Value = client
        .post(format!("http://{addr}/api/games/{game_id}/join"))
        .json(&serde_json::json!({"name": format!("bench{game_id}")}))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("join json");
    v["token"].as_str().expect("token").to_string()
}

/// `POST /api/games/{game_id}/actions` of a visit (`default`), with `id` as
/// its idempotency key.
pub fn action_request(
    client: &reqwest::Client,
    addr: &str,
    game_id: u64,
    token: &str,
    id: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("http://{addr}/api/games/{game_id}/actions"))
        .bearer_auth(token)
        .header("Idempotency-Key", id)
        .header("Content-Type", "application/json")
        .body(r#"{"type":"default"}"#)
}

/// `BENCH_NATIONS` (default 0): makes game 1 a game of that many nations
/// before the measured run (joins produced straight to `actions`, then a
/// poll of `GET /api/games/1` until the engine has them all), so a bench
/// shows whether its figure holds in a popular game.
pub async fn populate_from_env(
    client: &reqwest::Client,
    brokers: &str,
    bridge: &BridgeProcess,
    partitions: i32,
) {
    let nations = env("BENCH_NATIONS", 0);
    if nations == 0 {
        return;
    }
    let t0 = Instant::now();
    tests::produce_joins(brokers, &bridge.actions_topic, partitions, 1, nations).await;
    let url = format!("http://{}/api/games/1", bridge.addr);
    tests::eventually(Duration::from_secs(300), "game 1 populated", || {
        let req = client.get(&url).send();
        async move {
            let v: serde_json::Value = req.await.ok()?.json().await.ok()?;
            let players = v["state"]["players"].as_object()?.len() as u64;
            (players >= nations).then_some(())
        }
    })
    .await;
    println!(
        "game 1 has {nations} more nations (joined and applied in {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
}

/// `BENCH_WARMUP_SECS` (default `default_secs`) of `loadgen play` at
/// `rate` on `games` games of their own (from game 1,000,000), not
/// measured: a fresh broker's JVM compiles its hot paths in its first
/// minute (BENCHMARKS.md, P2 and P4).
pub async fn warm_up(addr: &str, rate: u64, games: u64, players: usize, default_secs: u64) {
    let secs = env("BENCH_WARMUP_SECS", default_secs);
    if secs == 0 {
        return;
    }
    let warm = loadgen::play::PlayArgs {
        rate: rate as f64,
        duration: secs as f64,
        games,
        first_game: Some(1_000_000),
        players,
        quiet: true,
        ..loadgen::play::PlayArgs::new(format!("http://{addr}"))
    };
    let r = loadgen::play::run(&warm)
        .await
        .expect("loadgen play (warm-up)");
    println!(
        "warm-up: {secs} s at {rate}/s on {games} other games, not measured (202 -> update p50 {:.2} / p99 {:.2} ms)",
        r.answer_to_update.p50_ms, r.answer_to_update.p99_ms
    );
}

/// A numeric knob from the environment.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Connects a WebSocket watcher of `game_id` and hands every JSON frame, with
/// its arrival time, to `on_frame` on a task of its own.
pub async fn watch(
    addr: &str,
    game_id: u64,
    mut on_frame: impl FnMut(serde_json::Value, Instant) + Send + 'static,
) {
    use futures_util::StreamExt;
    let url = format!("ws://{addr}/ws/games/{game_id}");
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    tokio::spawn(async move {
        let (_, mut read) = socket.split();
        while let Some(Ok(msg)) = read.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
                let now = Instant::now();
                on_frame(serde_json::from_str(&text).expect("JSON frame"), now);
            }
        }
    });
}

/// A consumer of `games` beside the bridge, reading as the bridge does
/// (fetch wait 1 ms, `read_uncommitted`): when each action id first appears
/// in an update's `applied` or `rejected[].event_id` on the broker. The baseline for what the bridge
/// adds on top of the engine.
pub struct DirectReader {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl DirectReader {
    /// Reads every partition of `topic` from its end.
    pub fn start(brokers: &str, topic: &str) -> DirectReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", tests::unique("direct"))
            .set("fetch.wait.max.ms", "1")
            .set("isolation.level", "read_uncommitted")
            .set("enable.auto.commit", "false")
            .create()
            .expect("direct consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("games metadata");
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::End)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                        let now = Instant::now();
                        let v: serde_json::Value =
                            serde_json::from_slice(m.payload().unwrap_or_default())
                                .expect("JSON update");
                        let mut seen = seen.lock().unwrap();
                        let applied = v["applied"].as_array().into_iter().flatten();
                        let rejected = v["rejected"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|r| &r["event_id"]);
                        for id in applied.chain(rejected).filter_map(|id| id.as_str()) {
                            seen.entry(id.to_string()).or_insert(now);
                        }
                    }
                }
            }
        });
        DirectReader { seen, stop, thread }
    }

    /// Stops reading; what was seen.
    pub fn finish(self) -> HashMap<String, Instant> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
