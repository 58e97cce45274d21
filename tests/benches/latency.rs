//! End to end (issue 5): from `POST /api/games/{id}/actions` being answered to
//! the update arriving on a connected WebSocket, at a steady rate; and, in the
//! same run, the broker's own produce-to-consume time as the floor.
//!
//! `cargo build --release -p nation && cargo bench -p tests --bench latency`
//! Env: `BENCH_RATE` (actions/s, default 2000), `BENCH_SECS` (default 30),
//! `BENCH_GAMES` (default 20), `BENCH_NATIONS` (nations added to game 1
//! first, default 0: the popular-game run), `KAFKA_BROKERS` (else an Apache Kafka is
//! started for the run), `BENCH_DIRECT=1` (also read `games` directly, to split engine from
//! bridge), `BENCH_DUMP=file` (id, answer time, latency in µs per action),
//! `BENCH_FLOOR_ONLY=1`.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The floor: produce (acks=all, idempotent, `LINGER_MS` as the bridge's,
/// default 5) -> consume (fetch wait 1 ms) on the same broker at the same
/// rate.
async fn broker_floor(brokers: &str, rate: u64, secs: u64, topic: Option<&str>) -> Vec<Duration> {
    let topic = match topic {
        Some(topic) => topic.to_string(),
        None => {
            let topic = tests::unique("floor");
            tests::create_topics(brokers, &[(&topic, 1, false)])
                .await
                .expect("topic");
            topic
        }
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set(
            "linger.ms",
            std::env::var("LINGER_MS").unwrap_or_else(|_| "5".into()),
        )
        .create()
        .expect("producer");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", tests::unique("floor"))
        .set("fetch.wait.max.ms", "1")
        // Tuned as the engine's consumer and the bridge's reader are.
        .set("fetch.error.backoff.ms", "10")
        .set("fetch.queue.backoff.ms", "5")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let start = Instant::now();
    let total = rate * secs;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(secs + 30);
        while (got.len() as u64) < total && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let sent: u64 = std::str::from_utf8(m.payload().unwrap_or_default())
                    .unwrap()
                    .parse()
                    .unwrap();
                got.push((sent, start.elapsed().as_micros() as u64));
            }
        }
        got
    });
    let warmup = 2 * rate.min(500);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for _ in 0..total {
        tick.tick().await;
        let sent = start.elapsed().as_micros().to_string();
        // send_result enqueues now (an un-awaited `send` would not).
        let _ = producer.send_result(
            FutureRecord::<(), _>::to(&topic)
                .payload(&sent)
                .partition(0),
        );
    }
    let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    got.into_iter()
        .skip(warmup as usize)
        .map(|(sent, recv)| Duration::from_micros(recv.saturating_sub(sent)))
        .collect()
}

#[tokio::main]
async fn main() {
    let rate = common::env("BENCH_RATE", 2000);
    let secs = common::env("BENCH_SECS", 30);
    let games = common::env("BENCH_GAMES", 20);
    let brokers = tests::broker().to_string();
    let bridge = common::BridgeProcess::start(&brokers, 12);
    let floor_topic: Option<&str> = None;
    println!(
        "# end-to-end latency at {rate} actions/s for {secs} s over {games} games ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("broker: Apache Kafka at {brokers}");
    println!(
        "settings: LINGER_MS={} ENGINE_COMMIT_INTERVAL_MS={} ENGINE_EAGER_FLUSH={} GAMES_ISOLATION={}",
        std::env::var("LINGER_MS").unwrap_or_else(|_| "default".into()),
        std::env::var("ENGINE_COMMIT_INTERVAL_MS").unwrap_or_else(|_| "default".into()),
        std::env::var("ENGINE_EAGER_FLUSH").unwrap_or_else(|_| "default".into()),
        std::env::var("GAMES_ISOLATION").unwrap_or_else(|_| "default".into()),
    );
    // As long as the game's run: both test brokers slow down as a
    // partition's log grows (BENCHMARKS.md).
    let floor = broker_floor(&brokers, rate, secs, floor_topic).await;
    println!(
        "broker floor (produce -> consume):            {}",
        common::summary(floor)
    );
    if std::env::var_os("BENCH_FLOOR_ONLY").is_some() {
        return;
    }

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for g in 0..games {
        tokens.push(common::join(&client, &bridge.addr, g + 1).await);
    }
    common::populate_from_env(&client, &brokers, &bridge, 12).await;
    // When each action id's answer came, and when its update arrived.
    let answered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    for g in 0..games {
        let arrived = arrived.clone();
        common::watch(&bridge.addr, g + 1, move |v, now| {
            let mut arrived = arrived.lock().unwrap();
            for id in v["applied"].as_array().into_iter().flatten() {
                arrived
                    .entry(id.as_str().unwrap().to_string())
                    .or_insert(now);
            }
        })
        .await;
    }
    // BENCH_DIRECT=1: also read `games` straight from the broker, as the
    // bridge does, to split the time into engine and bridge.
    let direct = std::env::var_os("BENCH_DIRECT")
        .map(|_| common::DirectReader::start(&brokers, &bridge.games_topic));
    // Warm-up, then the steady run.
    let total = rate * secs;
    let warmup = rate * 2;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut inflight = Vec::new();
    for i in 0..(total + warmup) {
        tick.tick().await;
        let g = i % games;
        let id = format!("a{i}");
        let req = common::action_request(&client, &bridge.addr, g + 1, &tokens[g as usize], &id);
        let answered = answered.clone();
        let measure = i >= warmup;
        inflight.push(tokio::spawn(async move {
            let ok = req
                .send()
                .await
                .map(|r| r.status().as_u16() == 202)
                .unwrap_or(false);
            if ok && measure {
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
    let offered = (total + warmup) as f64 / started.elapsed().as_secs_f64();
    // Let the last updates arrive (poll with a deadline).
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
    let mut before_answer = 0;
    let mut missing = 0;
    let mut dump = std::env::var("BENCH_DUMP")
        .ok()
        .map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("BENCH_DUMP file")));
    for (id, a) in answered.iter() {
        if let (Some(w), Some(r)) = (dump.as_mut(), arrived.get(id)) {
            use std::io::Write;
            let _ = writeln!(
                w,
                "{} {} {}",
                id,
                (*a - started).as_micros(),
                r.saturating_duration_since(*a).as_micros()
            );
        }
        match arrived.get(id) {
            Some(r) if r >= a => lat.push(*r - *a),
            Some(_) => {
                before_answer += 1;
                lat.push(Duration::ZERO)
            }
            None => missing += 1,
        }
    }
    // The same, by when the answer came: shows a broker slowing down.
    let mut windows: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
    for (id, a) in answered.iter() {
        if let Some(r) = arrived.get(id) {
            let window = (*a - started).as_secs() / 10 * 10;
            windows
                .entry(window)
                .or_default()
                .push(r.saturating_duration_since(*a));
        }
    }
    println!(
        "answer -> WebSocket update (bridge+engine):   {}",
        common::summary(lat)
    );
    for (window, lat) in windows {
        println!(
            "  answered {window:>3}-{:<3} s: {}",
            window + 10,
            common::summary(lat)
        );
    }
    if let Some(direct) = direct {
        let direct = direct.finish();
        let engine: Vec<Duration> = answered
            .iter()
            .filter_map(|(id, a)| direct.get(id).map(|d| d.saturating_duration_since(*a)))
            .collect();
        let bridge_part: Vec<Duration> = arrived
            .iter()
            .filter(|(id, _)| answered.contains_key(*id))
            .filter_map(|(id, r)| direct.get(id).map(|d| r.saturating_duration_since(*d)))
            .collect();
        println!(
            "  of which answer -> record on games (engine): {}",
            common::summary(engine)
        );
        println!(
            "  and record on games -> WebSocket (bridge):   {}",
            common::summary(bridge_part)
        );
    }
    println!("offered {offered:.0} actions/s; failed {failed}; updates before the HTTP answer {before_answer}; never seen {missing}");
}
