//! Score event -> board pushed over the WebSocket, at a fixed spin rate.
//!
//! Starts the role and its routes in this process against `KAFKA_BROKERS`
//! (or a broker of its own), on fresh topics, with a board every spin
//! changes (`spins`, `incr`: spins played). A producer sends seed 004's
//! spins at `RATE` per second (default 5,000) for `SECS` (default 10), each
//! stamped with its send time as `eventTime`; a WebSocket client on the
//! board takes every push's `watermark_ms` (the newest event time applied)
//! and counts, for each spin newly covered, now - its event time (ms).
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
    tokio::spawn(async move { axum::serve(listener, leaderboards::router(handle.clone())).await });
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/leaderboards/spins"))
            .await
            .expect("websocket");

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let sent_times = times.clone();
    let total = rate * secs;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs + 30);
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
            hist.saturating_record((now - times[covered]).max(1) as u64);
            covered += 1;
        }
    }
    produce.await.expect("producer");
    let q = |q: f64| hist.value_at_quantile(q);
    println!(
        "{rate} spins/s for {secs} s: {covered} of {total} spins pushed in {pushes} pushes; event -> push ms: p50 {} p90 {} p99 {} p99.9 {} max {}",
        q(0.5), q(0.9), q(0.99), q(0.999), hist.max()
    );
    let _ = std::fs::remove_file(file);
}
