//! How long a streaming engine's outputs wait for the broker: records sent
//! at a steady rate inside transactions committed every `INTERVAL_MS`, with
//! the consumed offsets in each, by one transactional producer or by two
//! taking turns (`PRODUCERS=2`). Prints each record's send -> delivery
//! report time (what a `read_uncommitted` reader waits) and the commits'.
//!
//! `KAFKA_BROKERS=host:port cargo run --release -p engine --example txn_stream`
//! (without KAFKA_BROKERS: a local Apache Kafka started by `localkafka`).
//! Env: `PRODUCERS` (1), `RATE` (records/s, 500), `SECS` (20),
//! `INTERVAL_MS` (100), `PARTITIONS` (4).
//!
//! Why two: right after a commit the transaction coordinator is still
//! writing the commit markers, and the next transaction's first
//! `AddPartitionsToTxn` is refused with `CONCURRENT_TRANSACTIONS`
//! (librdkafka retries every 20 ms); the next transaction's records wait
//! for it. A second producer's transaction has no such wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

#[derive(Clone, Default)]
struct Timing {
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    waited: Arc<Mutex<Vec<Duration>>>,
}

impl ClientContext for Timing {}

impl ProducerContext for Timing {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<u64>) {
        if result.is_ok() {
            if let Some(at) = self.sent.lock().unwrap().remove(&id) {
                self.waited.lock().unwrap().push(at.elapsed());
            }
        }
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let (_local, brokers) = localkafka::LocalKafka::from_env_or_temporary()?;
    let producers = env("PRODUCERS", 1).clamp(1, 2) as usize;
    let rate = env("RATE", 500);
    let secs = env("SECS", 20);
    let interval = Duration::from_millis(env("INTERVAL_MS", 100));
    let partitions = env("PARTITIONS", 4) as i32;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("txn-stream-{run}");
    let source = format!("txn-stream-src-{run}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(admin.create_topics(
            &[
                NewTopic::new(&topic, partitions, TopicReplication::Fixed(1)),
                NewTopic::new(&source, partitions, TopicReplication::Fixed(1)),
            ],
            &AdminOptions::new(),
        ))?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("txn-stream-{run}"))
        .create()?;
    let group = consumer
        .group_metadata()
        .ok_or_else(|| anyhow::anyhow!("no group metadata"))?;
    let timing = Timing::default();
    let mut all = Vec::new();
    for i in 0..producers {
        let p: BaseProducer<Timing> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("transactional.id", format!("txn-stream-{run}-{i}"))
            .set("linger.ms", "0")
            .create_with_context(timing.clone())?;
        p.init_transactions(Duration::from_secs(30))?;
        all.push(p);
    }
    let wake = |p: &BaseProducer<Timing>| {
        let _ = p.flush(Duration::ZERO);
        p.poll(Duration::ZERO);
    };
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let payload = vec![b'x'; 300];
    let mut commits = Vec::new();
    let mut cur = 0;
    let mut opened: Option<Instant> = None;
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    let start = Instant::now();
    let mut next = start;
    let mut id = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let p = &all[cur];
        if opened.is_none() {
            p.begin_transaction()?;
            opened = Some(Instant::now());
        }
        let part = (id % partitions as u64) as i32;
        timing.sent.lock().unwrap().insert(id, Instant::now());
        p.send(
            BaseRecord::with_opaque_to(&topic, Box::new(id))
                .partition(part)
                .key("k")
                .payload(&payload[..]),
        )
        .map_err(|(e, _)| e)?;
        *offsets.entry(part).or_default() += 1;
        id += 1;
        wake(p);
        next += gap;
        while Instant::now() < next {
            wake(p);
            std::thread::sleep(Duration::from_micros(250));
        }
        if opened.is_some_and(|t| t.elapsed() >= interval) {
            let t0 = Instant::now();
            while p.in_flight_count() > 0 {
                wake(p);
                std::thread::sleep(Duration::from_micros(250));
            }
            let mut tpl = TopicPartitionList::new();
            for (&part, &o) in &offsets {
                tpl.add_partition_offset(&source, part, Offset::Offset(o))?;
            }
            p.send_offsets_to_transaction(&tpl, &group, Duration::from_secs(30))?;
            p.commit_transaction(Duration::from_secs(30))?;
            commits.push(t0.elapsed());
            opened = None;
            cur = (cur + 1) % producers;
        }
    }
    for p in &all {
        p.flush(Duration::from_secs(10))?;
    }
    let mut waited = timing.waited.lock().unwrap().clone();
    waited.sort();
    commits.sort();
    println!(
        "producers={producers} rate={rate}/s interval={}ms records={} delivered p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ms; commit (drain+offsets+commit) p50 {:.2} p99 {:.2} ms over {} commits",
        interval.as_millis(),
        waited.len(),
        pct(&waited, 0.5),
        pct(&waited, 0.9),
        pct(&waited, 0.99),
        pct(&waited, 1.0),
        pct(&commits, 0.5),
        pct(&commits, 0.99),
        commits.len()
    );
    Ok(())
}
