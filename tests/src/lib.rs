//! # tests: the harness for tests against Apache Kafka
//!
//! Any crate's tests (and benchmarks) can use it:
//! - [`broker()`]: the shared Apache Kafka of this test run. `KAFKA_BROKERS`
//!   when set (`make test` starts one broker for the whole run with
//!   `localkafka run`); otherwise one started for this test binary. No broker
//!   means a loud failure, never a skip.
//! - [`LocalKafka::temporary`]: a private broker a test can stop, kill and
//!   restart (503s, crash and outage tests); [`Cluster`] for several nodes.
//! - [`create_topics`], [`unique`]: each test makes its own topics, so tests
//!   run in parallel.
//! - [`consume`]: read records back with a real consumer, polling with a
//!   deadline.
//!
//! - [`game::TestGame`]: bridge + engine in this process against the
//!   broker, on their own topics, on a free port.
//! - [`process::NationProcess`]: the `nation` binary as a process of its own,
//!   for tests that stop or `kill -9` a role.
//! - [`load::Load`]: players that retry as the contract says, and the
//!   check that every acknowledged action is applied exactly once.
//!
//! The cross-crate tests themselves live in `tests/tests/*.rs`.

pub mod game;
pub mod load;
pub mod process;
pub mod registry;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

pub use localkafka::{free_port, Cluster, LocalKafka};

/// The bootstrap address of this test binary's shared broker: `KAFKA_BROKERS`
/// if set (`make test` starts one Apache Kafka for the whole run and exports
/// it), else an Apache Kafka started once for this binary in a temporary
/// folder. Panics with a clear message when no broker can be had: a broker
/// test never skips.
/// Sends this process's logs to the test's output (`RUST_LOG`, `warn` by
/// default), so that a failing test shows what the game logged. Idempotent.
pub fn log_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    static LOCAL: OnceLock<LocalKafka> = OnceLock::new();
    BROKER.get_or_init(|| match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => {
            let local = LocalKafka::temporary()
                .unwrap_or_else(|e| panic!("broker-backed test cannot get a broker: {e}"));
            let bootstrap = local.bootstrap().to_string();
            // A static is never dropped: the broker's watchdog stops it when
            // this test process exits.
            let _ = LOCAL.set(local);
            bootstrap
        }
    })
}

/// How many members `group` has once it is stable; `None` while it
/// rebalances (or cannot be described).
pub fn stable_members(brokers: &str, group: &str) -> Option<usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .ok()?;
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .ok()?;
    let g = list.groups().first()?;
    if g.state() != "Stable" {
        return None;
    }
    Some(g.members().len())
}

/// A name no other test uses: `{name}-{uuid}`.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates topics with the AdminClient: `(name, partitions, compacted)`.
pub async fn create_topics(brokers: &str, topics: &[(&str, i32, bool)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions, compacted)| {
            let topic = NewTopic::new(name, *partitions, TopicReplication::Fixed(1));
            if *compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics(&new, &opts)
        .await
        .context("create topics")?
    {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Grows `topic` to `total` partitions with the AdminClient, then waits
/// (30 s at most) until the broker's metadata lists them all, so a client
/// started afterwards sees the new partitions.
pub async fn add_partitions(brokers: &str, topic: &str, total: usize) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_partitions(&[NewPartitions::new(topic, total)], &opts)
        .await
        .context("create partitions")?
    {
        if let Err((topic, code)) = result {
            bail!("grow {topic} to {total} partitions: {code}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .context("metadata")?;
        let seen = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if seen >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{topic} still lists {seen} partitions of {total} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads every partition of `topic` from the beginning until `done` says the
/// records seen are enough, or `timeout` passes (then it fails with what it
/// saw). Uses a plain assigned consumer, no group, `read_committed`.
pub fn consume(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl FnMut(&[OwnedMessage]) -> bool,
) -> anyhow::Result<Vec<OwnedMessage>> {
    consume_at("read_committed", brokers, topic, timeout, done)
}

/// [`consume`] at the given `isolation.level`: `read_uncommitted` also sees
/// records of open (and aborted) transactions.
pub fn consume_at(
    isolation: &str,
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[OwnedMessage]) -> bool,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("metadata")?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    if tpl.count() == 0 {
        bail!("topic {topic} has no partitions");
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        if done(&seen) {
            return Ok(seen);
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?} reading {topic}: saw {} records; {}",
                seen.len(),
                where_reading(&consumer, brokers, topic, &tpl, &seen)
            );
        }
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            seen.push(msg.context("consume")?.detach());
        }
    }
}

/// Why a read may have stopped short, per partition: the records seen, the
/// reader's position, the end a `read_uncommitted` reader sees (the high
/// watermark) and the one a `read_committed` reader sees (the last stable
/// offset), and the leader in a fresh client's metadata. Tells a reader
/// that is stuck from data that was never written or a transaction left
/// open.
fn where_reading(
    consumer: &BaseConsumer,
    brokers: &str,
    topic: &str,
    tpl: &TopicPartitionList,
    seen: &[OwnedMessage],
) -> String {
    let ends = |isolation: &str| -> Option<BaseConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("isolation.level", isolation)
            .create()
            .ok()
    };
    let (uncommitted, committed) = (ends("read_uncommitted"), ends("read_committed"));
    let leaders: HashMap<i32, i32> = committed
        .as_ref()
        .and_then(|c| c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok())
        .map(|m| {
            m.topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| (p.id(), p.leader())))
                .collect()
        })
        .unwrap_or_default();
    let positions = consumer.position().ok();
    let mut parts = Vec::new();
    for e in tpl.elements() {
        let p = e.partition();
        let count = seen.iter().filter(|m| m.partition() == p).count();
        let at = positions
            .as_ref()
            .and_then(|l| l.find_partition(topic, p))
            .map(|e| format!("{:?}", e.offset()))
            .unwrap_or_else(|| "?".into());
        let end = |c: &Option<BaseConsumer>| {
            c.as_ref()
                .map(
                    |c| match c.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                        Ok((_, high)) => high.to_string(),
                        Err(e) => format!("({e})"),
                    },
                )
                .unwrap_or_else(|| "?".into())
        };
        parts.push(format!(
            "partition {p}: {count} seen, position {at}, high watermark {}, last stable {}, leader {}",
            end(&uncommitted),
            end(&committed),
            leaders.get(&p).map_or("?".into(), |l| l.to_string())
        ));
    }
    parts.join("; ")
}

/// The record's value as JSON.
pub fn json(msg: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(msg.payload().unwrap_or_default()).expect("record value is JSON")
}

/// Polls `f` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `n` joins of `game_id` (players `player-000000`, ...) straight onto
/// its partition of `actions_topic`, as the bridge would produce them: a
/// crowded game without thousands of HTTP joins.
pub async fn produce_joins(
    brokers: &str,
    actions_topic: &str,
    partitions: i32,
    game_id: u64,
    n: u64,
) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let partition = shared::partition_for(game_id, partitions);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let sends = (0..n).map(|i| {
        let producer = producer.clone();
        async move {
            let envelope = shared::ActionEnvelope {
                name: Some(format!("Nation {i}")),
                ..shared::ActionEnvelope::new(
                    uuid::Uuid::now_v7().to_string(),
                    game_id,
                    format!("player-{i:06}"),
                    shared::ActionType::Join,
                    now,
                )
            };
            let payload = serde_json::to_vec(&envelope).expect("an envelope serialises");
            producer
                .send(
                    FutureRecord::to(actions_topic)
                        .key(&game_id.to_string())
                        .payload(&payload)
                        .partition(partition),
                    Duration::from_secs(60),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("join produced");
        }
    });
    futures_util::future::join_all(sends).await;
}
