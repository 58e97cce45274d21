//! Score event -> board pushed over the WebSocket, at a fixed spin rate.
//!
//! Starts the role and its routes in this process against `KAFKA_BROKERS`
//! (or a broker of its own), on fresh topics, with a board every spin
//! changes (`spins`, `incr`: spins played). A producer sends seed 004's
//! spins at `RATE` per second (default 5,000) for `SECS` (default 10), each
//! stamped with its send time as `eventTime`; a WebSocket client on the
//! board takes every push's `watermark_ms` (the newest event time applied)
//! and counts, for each spin newly covered, now - its event time (ms).
//! The role is ready (rebuilt, sources assigned) before the first spin, and
//! the first `WARMUP` seconds (default 2) of spins are sent at the same rate
//! but not recorded (connections, metadata, first fetches).
//! Baseline in the same run: a plain `read_committed` consumer of the same
//! topic (the role's fetch settings, `X` included) records event time ->
//! record in hand, the part of the latency the broker and the clients set.
//! `X="key=value ..."` passes librdkafka settings to the role (its `-X`).
//! `cargo bench -p leaderboards --bench push`.

use std::time::Duration;

use futures_util::StreamExt;
use leaderboards::board::Operator;
use leaderboards::campaign::{seed_campaign, Metric};
use leaderboards::{Config, Leaderboards};
use rand::SeedableRng;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env("RATE", 5000);
    let secs = env("SECS", 10);
    let warmup = env("WARMUP", 2);
    let brokers = tests::broker().to_string();
    let gameplay = tests::unique("gameplay");
    tests::create_topics(&brokers, &[(&gameplay, 4, false)])
        .await
        .expect("topics");
    let mut def = seed_campaign(&gameplay)[0].clone();
    def.id = "spins".into();
    def.metric = Metric::Spins;
    def.rules.operator = Operator::Incr;
    let file = std::env::temp_dir().join(format!("{}.json", tests::unique("push")));
    std::fs::write(&file, serde_json::to_vec(&vec![def]).expect("json")).expect("write");
    let mut config = Config::for_brokers(brokers.clone());
    config.state_topic = tests::unique("leaderboards");
    config.transactional_id = tests::unique("leaderboards");
    config.campaigns_file = Some(file.clone());
    config.commit_interval = Duration::from_millis(env("COMMIT_MS", 50));
    let config_extra: Vec<(String, String)> = std::env::var("X")
        .unwrap_or_default()
        .split_whitespace()
        .map(|kv| leaderboards::parse_key_value(kv).expect("X: key=value ..."))
        .collect();
    config.extra = config_extra.clone();
    let handle = Leaderboards::from_config(&config).expect("boards");
    tokio::spawn(leaderboards::run(
        config,
        handle.clone(),
        std::future::pending(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let routes = leaderboards::router(handle.clone());
    tokio::spawn(async move { axum::serve(listener, routes).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !handle.is_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the role was not ready in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/leaderboards/spins"))
            .await
            .expect("websocket");

    let baseline = {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &brokers)
            .set("group.id", tests::unique("baseline"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "5")
            .set("auto.offset.reset", "earliest");
        for (k, v) in &config_extra {
            c.set(k, v);
        }
        let consumer: rdkafka::consumer::BaseConsumer = c.create().expect("baseline consumer");
        let mut partitions = rdkafka::TopicPartitionList::new();
        for p in 0..4 {
            partitions
                .add_partition_offset(&gameplay, p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        rdkafka::consumer::Consumer::assign(&consumer, &partitions).expect("assign");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let skip_until = chrono::Utc::now().timestamp_millis() + 1000 * warmup as i64;
        let thread = std::thread::spawn(move || {
            use rdkafka::Message;
            let mut hist =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000, 3).expect("histogram");
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let now = chrono::Utc::now().timestamp_millis();
                let time = msg
                    .payload()
                    .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                    .and_then(|v| leaderboards::campaign::event_time_ms(v["eventTime"].as_str()?));
                if let Some(t) = time.filter(|t| *t >= skip_until) {
                    hist.saturating_record((now - t).max(1) as u64);
                }
            }
            hist
        });
        (stop, thread)
    };

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let sent_times = times.clone();
    let skipped = (rate * warmup) as usize;
    let total = rate * (warmup + secs);
    let produce = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let start = tokio::time::Instant::now();
        for i in 0..total {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate as f64)).await;
            let now = chrono::Utc::now();
            let spin = loadgen::spin::generate(&mut rng, now);
            sent_times
                .lock()
                .expect("lock")
                .push(now.timestamp_millis());
            let (key, value) = (spin.key(), spin.to_json());
            while let Err((e, _)) =
                producer.send_result(FutureRecord::to(&gameplay).key(&key).payload(&value))
            {
                eprintln!("queue: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let _ = producer.flush(Duration::from_secs(10));
    });

    let mut hist =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000, 3).expect("histogram");
    let mut covered = 0usize;
    let mut pushes = 0u64;
    let mut socket = socket;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(warmup + secs + 30);
    while covered < total as usize {
        let msg = match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(msg))) => msg,
            _ => break,
        };
        let now = chrono::Utc::now().timestamp_millis();
        let Ok(text) = msg.into_text() else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        let Some(watermark) = v["watermark_ms"].as_i64() else {
            continue;
        };
        pushes += 1;
        let times = times.lock().expect("lock");
        // Spins in send order; event times never go back by more than a ms.
        while covered < times.len() && times[covered] <= watermark {
            if covered >= skipped {
                hist.saturating_record((now - times[covered]).max(1) as u64);
            }
            covered += 1;
        }
    }
    produce.await.expect("producer");
    let q = |q: f64| hist.value_at_quantile(q);
    println!(
        "{}commit {} ms, {rate} spins/s for {secs} s after {warmup} s: {covered} of {total} spins pushed in {pushes} pushes; event -> push ms: p50 {} p90 {} p99 {} p99.9 {} max {}",
        std::env::var("X").map(|x| format!("[{x}] ")).unwrap_or_default(),
        env("COMMIT_MS", 50),
        q(0.5), q(0.9), q(0.99), q(0.999), hist.max()
    );
    baseline.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let base = baseline.1.join().expect("baseline thread");
    let b = |q: f64| base.value_at_quantile(q);
    println!(
        "  baseline (plain consumer, event -> record): {} records; ms: p50 {} p90 {} p99 {} p99.9 {} max {}",
        base.len(), b(0.5), b(0.9), b(0.99), b(0.999), base.max()
    );
    let _ = std::fs::remove_file(file);
}
