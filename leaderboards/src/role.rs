//! The Kafka loop: read the sources, apply, tell the readers; beside it a
//! committer writes the changed state (event ids seen included) and the
//! input offsets in one transaction to the compacted topic. On start it
//! rebuilds every board from that topic.
//!
//! Runs on threads of its own (librdkafka's calls block); [`crate::run`]
//! starts it and stops it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use ops::metrics::LagContext;

use crate::{Config, Error, Leaderboards};

fn client(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers);
    for (k, v) in &config.extra {
        c.set(k, v);
    }
    c
}

/// Creates the compacted state topic when missing (one partition: the state
/// is one ordered log).
///
/// Compaction never touches the active segment, so segments close at 64 MiB
/// (not 1 GiB) to keep what a rebuild reads near the live state; deleted
/// keys (the dedup chunks, some twenty a second under load) keep their
/// tombstone an hour, not a day. A topic that already exists keeps its
/// settings.
pub async fn create_state_topic(config: &Config) -> Result<(), Error> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client(config).create()?;
    let topic = NewTopic::new(
        &config.state_topic,
        1,
        TopicReplication::Fixed(config.replication),
    )
    .set("cleanup.policy", "compact")
    .set("segment.bytes", "67108864")
    .set("delete.retention.ms", "3600000");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&[topic], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(Error::Kafka(KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

/// Reads the state topic to its end (committed records only).
fn read_state(config: &Config) -> Result<BTreeMap<String, Option<Vec<u8>>>, Error> {
    let consumer: BaseConsumer = client(config)
        .set("group.id", format!("{}-restore", config.transactional_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    // A topic created a moment ago may have no leader yet: ask again
    // for a while before giving up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let high = loop {
        match consumer.fetch_watermarks(&config.state_topic, 0, Duration::from_secs(5)) {
            Ok((_, high)) => break high,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "state topic not ready yet");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut state = BTreeMap::new();
    if high == 0 {
        return Ok(state);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&config.state_topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                if let Some(key) = msg.key() {
                    state.insert(
                        String::from_utf8_lossy(key).into_owned(),
                        msg.payload().map(<[u8]>::to_vec),
                    );
                }
                if msg.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // Transaction markers may sit at the end: the position passed them.
                let pos = consumer.position()?;
                let done = pos
                    .elements()
                    .iter()
                    .all(|e| matches!(e.offset(), Offset::Offset(o) if o >= high));
                if done {
                    break;
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
        if Instant::now() > deadline {
            return Err(Error::Restore(format!(
                "{} not read to its end in 120 s",
                config.state_topic
            )));
        }
    }
    Ok(state)
}

/// (Re)assigns every partition of the sources, at the kept offsets.
fn assign(
    consumer: &BaseConsumer<LagContext>,
    handle: &Leaderboards,
    sources: &BTreeSet<String>,
) -> Result<(), Error> {
    let mut tpl = TopicPartitionList::new();
    for topic in sources {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let offset = handle
                    .read()
                    .offset(topic, p.id())
                    .map(Offset::Offset)
                    .unwrap_or(Offset::Beginning);
                tpl.add_partition_offset(topic, p.id(), offset)?;
            }
        }
    }
    consumer.assign(&tpl)?;
    Ok(())
}

fn send_all(
    producer: &BaseProducer,
    topic: &str,
    records: &[crate::boards::StateRecord],
) -> Result<(), Error> {
    for (key, value) in records {
        loop {
            let mut record = BaseRecord::<String, Vec<u8>>::to(topic).key(key);
            if let Some(v) = value {
                record = record.payload(v);
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Waits until every record of the open transaction is delivered, waking
/// librdkafka's broker threads: without it `commit_transaction` waits for
/// their own wake-up, about 100 ms per transaction (as the engine found:
/// its `eager_flush`).
fn wait_delivered(producer: &BaseProducer) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A zero-timeout flush is one rd_kafka_flush(rk, 0): a wake-up.
        let _ = producer.flush(Duration::ZERO);
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Kafka(KafkaError::Flush(
                RDKafkaErrorCode::MessageTimedOut,
            )));
        }
        std::thread::sleep(Duration::from_micros(250));
    }
}

/// The default least time between two state transactions' starts.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(50);

/// How long the committer waits for a change before looking again (admin
/// changes to campaigns arrive without a record to wake it).
const COMMIT_IDLE: Duration = Duration::from_millis(100);

/// The consumer's settings; `fetch.wait.max.ms` comes from the config and
/// `-X` settings given in the config override them all.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("isolation.level", "read_committed"),
];

/// The input consumer's default `fetch.wait.max.ms`: see
/// [`crate::Config::fetch_wait_max_ms`].
pub const DEFAULT_FETCH_WAIT_MAX_MS: u32 = ops::FETCH_WAIT_MAX_MS;

/// The loop, on its own thread, until `stop`.
///
/// Two threads: this one reads, applies and tells the readers; a committer
/// writes what changed (with the input offsets) in one transaction at a
/// time, taking everything applied since its last transaction. A slow
/// commit so delays only the next commit, never the pushes: when the
/// committer is busy the applied changes wait in the boards (dirty) and go
/// out together in its next transaction.
pub fn run_blocking(
    config: Config,
    handle: Leaderboards,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    let state = read_state(&config)?;
    handle.write().restore(&state);
    let restored = state.len();
    handle.notify();
    tracing::info!(records = restored, topic = %config.state_topic, "leaderboards rebuilt");
    let producer: BaseProducer = client(&config)
        .set("transactional.id", &config.transactional_id)
        .set("linger.ms", "1")
        .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    let lag = config.registry.consumer_lag();
    let applied = config.registry.once("leaderboards", |r| {
        let applied = prometheus_client::metrics::counter::Counter::<u64>::default();
        r.register(
            "leaderboards_records",
            "Source records applied to the boards",
            applied.clone(),
        );
        applied
    });
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}-input", config.transactional_id))
        .set("statistics.interval.ms", ops::metrics::STATS_INTERVAL_MS);
    for (k, v) in CONSUMER_DEFAULTS {
        consumer_config.set(*k, *v);
    }
    consumer_config.set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string());
    for (k, v) in &config.extra {
        consumer_config.set(k, v);
    }
    let consumer: BaseConsumer<LagContext> =
        consumer_config.create_with_context(LagContext::new("leaderboards", lag))?;
    let mut sources = handle.read().sources();
    assign(&consumer, &handle, &sources)?;
    handle.ready.store(true, Ordering::Relaxed);
    // One pending wake-up is enough: the committer takes every change.
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::scope(|scope| {
        let committer = scope.spawn(|| {
            let result = commit_loop(&config, &producer, &handle, woken);
            if result.is_err() {
                // The reader stops too: the role fails as one.
                stop.store(true, Ordering::Relaxed);
            }
            result
        });
        let read = read_loop(&consumer, &handle, &stop, &mut sources, &applied, &wake);
        // Closing the channel lets the committer write what is left and end.
        drop(wake);
        let committed = committer.join().map_err(|_| Error::Panicked)?;
        read.and(committed)
    })
}

/// Reads, applies and tells the readers, until `stop`.
fn read_loop(
    consumer: &BaseConsumer<LagContext>,
    handle: &Leaderboards,
    stop: &AtomicBool,
    sources: &mut BTreeSet<String>,
    applied: &prometheus_client::metrics::counter::Counter<u64>,
    wake: &std::sync::mpsc::SyncSender<()>,
) -> Result<(), Error> {
    while !stop.load(Ordering::Relaxed) {
        let now_sources = handle.read().sources();
        if now_sources != *sources {
            *sources = now_sources;
            assign(consumer, handle, sources)?;
        }
        // A batch: the first record (waiting up to 100 ms), then whatever is
        // already fetched, at most 2,000 records: low latency when quiet,
        // large transactions under load.
        let mut batch = Vec::new();
        let mut wait = Duration::from_millis(100);
        while batch.len() < 2000 {
            match consumer.poll(wait) {
                Some(Ok(msg)) => batch.push(msg.detach()),
                Some(Err(e)) => tracing::warn!(error = %e, "leaderboards input"),
                None => break,
            }
            wait = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        applied.inc_by(batch.len() as u64);
        let changed = {
            let mut boards = handle.write();
            let mut changed = false;
            for msg in &batch {
                let value = msg.payload().unwrap_or(b"");
                changed |= !boards
                    .apply_record(msg.topic(), msg.partition(), msg.offset(), value)
                    .is_empty();
            }
            changed
        };
        // Readers already see the applied boards (HTTP reads the same
        // memory), so the pushes go now, not after the commit. If a commit
        // fails the role stops, and the next one rebuilds from the committed
        // state and applies the same records again with the same result.
        if changed {
            handle.notify();
        }
        let _ = wake.try_send(());
    }
    Ok(())
}

/// Writes the changed state and the offsets, one transaction at a time,
/// until the reader closes `woken` (then once more, so a clean stop leaves
/// every applied record committed).
fn commit_loop(
    config: &Config,
    producer: &BaseProducer,
    handle: &Leaderboards,
    woken: std::sync::mpsc::Receiver<()>,
) -> Result<(), Error> {
    let mut next_start = Instant::now();
    loop {
        let last = match woken.recv_timeout(COMMIT_IDLE) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => true,
        };
        if !last {
            // Changes arriving meanwhile join this transaction.
            let now = Instant::now();
            if now < next_start {
                std::thread::sleep(next_start - now);
            }
        }
        next_start = Instant::now() + config.commit_interval;
        let records = handle.write().take_state();
        if !records.is_empty() {
            producer.begin_transaction()?;
            let sent = send_all(producer, &config.state_topic, &records)
                .and_then(|()| wait_delivered(producer))
                .and_then(|()| Ok(producer.commit_transaction(Duration::from_secs(30))?));
            if let Err(e) = sent {
                let _ = producer.abort_transaction(Duration::from_secs(10));
                return Err(e);
            }
        }
        if last {
            return Ok(());
        }
    }
}
