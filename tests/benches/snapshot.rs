//! The core at scale (issue 11): what a player waits for grows neither with
//! the game's size nor with its partition's history.
//!
//! `cargo build --release -p nation && cargo bench -p tests --bench snapshot`
//! Env: `BENCH_NATIONS` (default 10000, one game), `BENCH_HISTORY_MIB`
//! (default 1024: bytes written to the game's `games` partition before
//! anyone watches), `BENCH_TRIES` (default 200), `KAFKA_BROKERS` (else an
//! Apache Kafka is started for the run).
//!
//! Prints, with the baseline measured in the same run:
//! - bytes of the WebSocket update for one nation's purchase, against the
//!   whole game (the snapshot: what every update carried before);
//! - `GET /api/games/{id}` and a new watcher's first snapshot, p50/p99,
//!   against reading the game's partition from its beginning (what the
//!   bridge did before to show a game).

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shared::{partition_for, GameHead, GamesRecord};
use tokio_tungstenite::tungstenite::Message;

const PARTITIONS: i32 = 12;

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer")
}

/// About `mib` MiB of another game's steps on `game_id`'s partition of
/// `games`, each under its own key (nothing for compaction to remove).
async fn history(brokers: &str, topic: &str, game_id: u64, mib: u64) {
    let producer = producer(brokers);
    let partition = partition_for(game_id, PARTITIONS);
    let other = game_id + PARTITIONS as u64;
    let applied: Vec<String> = (0..100).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let one = serde_json::to_vec(&GamesRecord::Head(GameHead {
        game_id: other,
        applied: applied.clone(),
        ..GameHead::default()
    }))
    .unwrap()
    .len() as u64;
    let n = mib * 1024 * 1024 / one;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let sends = chunk.iter().map(|&i| {
            let producer = producer.clone();
            let value = serde_json::to_vec(&GamesRecord::Head(GameHead {
                game_id: other,
                since: i,
                version: i + 1,
                applied: applied.clone(),
                schema_version: shared::GAMES_SCHEMA_VERSION,
                ..GameHead::default()
            }))
            .unwrap();
            async move {
                producer
                    .send(
                        FutureRecord::to(topic)
                            .key(&format!("history-{i}"))
                            .payload(&value)
                            .partition(partition),
                        Duration::from_secs(120),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("history produced");
            }
        });
        futures_util::future::join_all(sends).await;
    }
    println!(
        "history: {n} records, {} MiB on partition {partition}, written in {:.1} s",
        n * one / (1024 * 1024),
        started.elapsed().as_secs_f64()
    );
}

/// The baseline: the partition read from its beginning to its end.
fn read_partition(brokers: &str, topic: &str, partition: i32) -> (Duration, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", tests::unique("baseline"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    let started = Instant::now();
    consumer.assign(&tpl).unwrap();
    let mut bytes = 0u64;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                bytes += m.payload_len() as u64;
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    (started.elapsed(), bytes)
}

/// Time from starting a connect to the first (snapshot) frame, and its size.
async fn first_snapshot(addr: &str, game_id: u64) -> (Duration, usize) {
    let started = Instant::now();
    let url = format!("ws://{addr}/ws/games/{game_id}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    loop {
        match socket.next().await.expect("open").expect("frame") {
            Message::Text(text) => return (started.elapsed(), text.len()),
            _ => continue,
        }
    }
}

#[tokio::main]
async fn main() {
    let nations = common::env("BENCH_NATIONS", 10_000);
    let history_mib = common::env("BENCH_HISTORY_MIB", 1024);
    let tries = common::env("BENCH_TRIES", 200) as usize;
    let brokers = tests::broker().to_string();
    let game = common::BridgeProcess::start(&brokers, PARTITIONS);
    println!("broker: Apache Kafka at {brokers}");
    let game_id = 5;
    let client = reqwest::Client::new();
    let state_url = format!("http://{}/api/games/{game_id}", game.addr);
    // The topics exist once the process answers; then the nations.
    tests::eventually(Duration::from_secs(60), "the game process", || {
        let req = client.get(format!("http://{}/readyz", game.addr)).send();
        async move { req.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    tests::produce_joins(&brokers, &game.actions_topic, PARTITIONS, game_id, nations).await;
    tests::eventually(Duration::from_secs(120), "every nation", || {
        let req = client.get(&state_url).send();
        async move {
            let v: serde_json::Value = req.await.ok()?.json().await.ok()?;
            (v["state"]["players"].as_object()?.len() as u64 == nations).then_some(())
        }
    })
    .await;
    history(&brokers, &game.games_topic, game_id, history_mib).await;

    // Baseline first, so the partition's pages are as warm for it as for
    // the queries after.
    let (replay, bytes) = read_partition(
        &brokers,
        &game.games_topic,
        partition_for(game_id, PARTITIONS),
    );
    println!(
        "baseline: reading the partition from its beginning ({} MiB): {:.1} ms",
        bytes / (1024 * 1024),
        replay.as_secs_f64() * 1e3
    );

    let mut gets = Vec::with_capacity(tries);
    for _ in 0..tries {
        let started = Instant::now();
        let body = client
            .get(&state_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        gets.push(started.elapsed());
        assert!(body.len() > 100 * nations as usize / 2);
    }
    println!(
        "GET /api/games/{{id}} (asks the engine): {}",
        common::summary(gets.clone())
    );

    let mut firsts = Vec::with_capacity(tries);
    let mut snapshot_bytes = 0;
    for _ in 0..tries {
        let (took, len) = first_snapshot(&game.addr, game_id).await;
        firsts.push(took);
        snapshot_bytes = len;
    }
    println!(
        "first snapshot after connect ({} KiB): {}",
        snapshot_bytes / 1024,
        common::summary(firsts.clone())
    );
    gets.sort();
    firsts.sort();
    let p99 = |v: &[Duration]| common::pct(v, 0.99);
    println!(
        "p99 / baseline: GET {:.3}, first snapshot {:.3}",
        p99(&gets).as_secs_f64() / replay.as_secs_f64(),
        p99(&firsts).as_secs_f64() / replay.as_secs_f64()
    );

    // One nation's change, as its watchers receive it.
    let url = format!("ws://{}/ws/games/{game_id}", game.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let token = common::join(&client, &game.addr, game_id).await;
    let sent = client
        .post(format!("{state_url}/actions"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"type": "purchase_knife"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let mut update_bytes = Vec::new();
    while update_bytes.len() < 2 {
        if let Message::Text(text) = socket.next().await.expect("open").expect("frame") {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["kind"] == "update" {
                update_bytes.push(text.len());
            }
        }
    }
    println!(
        "bytes per update of one nation (join, then a purchase) in a game of {} nations: {:?}; the whole game (what each update carried before): {} bytes; ratio {:.5}",
        nations + 1,
        update_bytes,
        snapshot_bytes,
        update_bytes[1] as f64 / snapshot_bytes as f64
    );
    println!("game process RSS: {} MiB", game.rss_kib() / 1024);
}
