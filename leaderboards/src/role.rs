//! The Kafka loop: read the sources, apply, write the changed state and the
//! input offsets in one transaction to the compacted topic, then tell the
//! readers. On start it rebuilds every board from that topic.
//!
//! Runs on a thread of its own (librdkafka's calls block); [`crate::run`]
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
pub async fn create_state_topic(config: &Config) -> Result<(), Error> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client(config).create()?;
    let topic = NewTopic::new(
        &config.state_topic,
        1,
        TopicReplication::Fixed(config.replication),
    )
    .set("cleanup.policy", "compact");
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

/// The loop, on its own thread, until `stop`.
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
    let consumer: BaseConsumer<LagContext> = client(&config)
        .set("group.id", format!("{}-input", config.transactional_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .set("statistics.interval.ms", ops::metrics::STATS_INTERVAL_MS)
        .create_with_context(LagContext::new("leaderboards", lag))?;
    let mut sources = handle.read().sources();
    assign(&consumer, &handle, &sources)?;
    handle.ready.store(true, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let now_sources = handle.read().sources();
        if now_sources != sources {
            sources = now_sources;
            assign(&consumer, &handle, &sources)?;
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
        applied.inc_by(batch.len() as u64);
        let records = {
            let mut boards = handle.write();
            for msg in &batch {
                if let Some(value) = msg.payload() {
                    boards.apply_record(msg.topic(), msg.partition(), msg.offset(), value);
                } else {
                    boards.apply_record(msg.topic(), msg.partition(), msg.offset(), b"");
                }
            }
            boards.take_state()
        };
        if records.is_empty() {
            continue;
        }
        // Readers already see the applied boards (HTTP reads the same
        // memory), so the pushes go now, not after the commit. If the commit
        // fails the role stops, and the next one rebuilds from the committed
        // state and applies the same records again with the same result.
        handle.notify();
        producer.begin_transaction()?;
        let sent = send_all(&producer, &config.state_topic, &records)
            .and_then(|()| wait_delivered(&producer))
            .and_then(|()| Ok(producer.commit_transaction(Duration::from_secs(30))?));
        if let Err(e) = sent {
            let _ = producer.abort_transaction(Duration::from_secs(10));
            return Err(e);
        }
    }
    Ok(())
}
