//! The blocking rdkafka loop: poll a batch, restore newly assigned
//! partitions, handle, produce, commit in one transaction.
//!
//! No transaction stays open across a poll: rebalance callbacks run inside
//! poll, so a batch is always committed (or abandoned) before the next one
//! is collected, and records of a partition revoked while collecting are
//! dropped from the batch (the next owner reads them again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use shared::{partition_for, GameUpdate};

use crate::handle::{flush, handle, GameSlot, Handled};
use crate::{Config, EngineError, RUNNING, STOP_ABANDON};

/// How long a transaction step may take before the engine gives up.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A change of assignment seen inside a poll.
#[derive(Debug)]
enum Event {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Records rebalances for the loop to act on after the poll returns.
#[derive(Default)]
struct EngineContext {
    events: Mutex<Vec<Event>>,
}

impl ClientContext for EngineContext {}

impl ConsumerContext for EngineContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = tpl.elements().iter().map(|e| e.partition()).collect();
            self.push(Event::Revoked(parts));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = tpl.elements().iter().map(|e| e.partition()).collect();
                self.push(Event::Assigned(parts));
            }
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl EngineContext {
    fn push(&self, event: Event) {
        tracing::info!(?event, "rebalance");
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The engine's mutable loop state.
struct Engine<'a> {
    config: &'a Config,
    consumer: BaseConsumer<EngineContext>,
    producer: BaseProducer,
    /// Reads `games` partitions back on assignment.
    restorer: BaseConsumer,
    games: HashMap<u64, GameSlot>,
    /// Assigned partitions whose games are not loaded yet.
    to_restore: HashSet<i32>,
    batch: Vec<OwnedMessage>,
}

/// Runs the loop on the calling thread until `stop` leaves [`RUNNING`].
pub fn run_blocking(config: &Config, stop: &AtomicU8) -> Result<(), EngineError> {
    let mut engine = Engine::new(config)?;
    tracing::info!(
        actions = %config.actions_topic,
        games = %config.games_topic,
        group = %config.group_id,
        "engine started"
    );
    while stop.load(Ordering::SeqCst) == RUNNING {
        engine.collect()?;
        if engine.batch.is_empty() {
            continue;
        }
        if stop.load(Ordering::SeqCst) == STOP_ABANDON {
            break;
        }
        engine.process(stop)?;
    }
    tracing::info!("engine stopped");
    Ok(())
}

impl<'a> Engine<'a> {
    fn new(config: &'a Config) -> Result<Engine<'a>, EngineError> {
        let fetch_wait = config.fetch_wait_max_ms.to_string();
        let consumer: BaseConsumer<EngineContext> = config
            .client_with(&[
                ("group.id", &config.group_id),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("isolation.level", "read_committed"),
                ("fetch.wait.max.ms", &fetch_wait),
            ])
            .create_with_context(EngineContext::default())
            .map_err(EngineError::kafka("consumer"))?;
        let producer: BaseProducer = config
            .client_with(&[
                ("transactional.id", &config.transactional_id),
                ("enable.idempotence", "true"),
                ("linger.ms", "0"),
                ("transaction.timeout.ms", "10000"),
            ])
            .create()
            .map_err(EngineError::kafka("producer"))?;
        producer
            .init_transactions(TXN_TIMEOUT)
            .map_err(EngineError::kafka("init transactions"))?;
        let restorer = restorer(config)?;
        consumer
            .subscribe(&[&config.actions_topic])
            .map_err(EngineError::kafka("subscribe"))?;
        Ok(Engine {
            config,
            consumer,
            producer,
            restorer,
            games: HashMap::new(),
            to_restore: HashSet::new(),
            batch: Vec::with_capacity(config.max_batch),
        })
    }

    /// Polls the first record with a short timeout, then drains what is
    /// already fetched, up to `max_batch`: small batches at low load, big
    /// ones under load.
    fn collect(&mut self) -> Result<(), EngineError> {
        self.batch.clear();
        let mut timeout = Duration::from_millis(100);
        while self.batch.len() < self.config.max_batch {
            let polled = self.consumer.poll(timeout).map(|r| r.map(|m| m.detach()));
            self.apply_rebalances();
            match polled {
                None => break,
                Some(Ok(msg)) => self.batch.push(msg),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::warn!("consume: {e}");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        Ok(())
    }

    /// Acts on rebalances seen in the last poll: a revoked partition's games
    /// and buffered records are dropped; an assigned one is restored before
    /// its next record is handled.
    fn apply_rebalances(&mut self) {
        for event in self.consumer.context().take() {
            match event {
                Event::Revoked(parts) => {
                    let parts: HashSet<i32> = parts.into_iter().collect();
                    let n = self.config.partitions;
                    self.games
                        .retain(|id, _| !parts.contains(&partition_for(*id, n)));
                    self.batch.retain(|m| !parts.contains(&m.partition()));
                    self.to_restore.retain(|p| !parts.contains(p));
                }
                Event::Assigned(parts) => self.to_restore.extend(parts),
            }
        }
    }

    /// Restores pending partitions, handles the batch and commits outputs and
    /// offsets in one transaction.
    fn process(&mut self, stop: &AtomicU8) -> Result<(), EngineError> {
        if !self.to_restore.is_empty() {
            let parts: Vec<i32> = self.to_restore.drain().collect();
            let restored = restore(
                &self.restorer,
                &self.config.games_topic,
                &parts,
                self.config.partitions,
            )?;
            tracing::info!(?parts, games = restored.len(), "restored");
            for update in restored.values() {
                self.games
                    .insert(update.game_id, GameSlot::from_update(update));
            }
        }
        let t0 = Instant::now();
        self.producer
            .begin_transaction()
            .map_err(EngineError::kafka("begin transaction"))?;
        let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
        for msg in &self.batch {
            next_offsets.insert(msg.partition(), msg.offset() + 1);
            if let Handled::DeadLetter { error } = handle(&mut self.games, msg) {
                tracing::warn!(
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "dead letter: {error}"
                );
                let partition = msg.partition().to_string();
                let offset = msg.offset().to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "error",
                        value: Some(error.as_str()),
                    })
                    .insert(Header {
                        key: "source.partition",
                        value: Some(partition.as_str()),
                    })
                    .insert(Header {
                        key: "source.offset",
                        value: Some(offset.as_str()),
                    });
                let mut record: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&self.config.dlq_topic).headers(headers);
                if let Some(key) = msg.key() {
                    record = record.key(key);
                }
                if let Some(value) = msg.payload() {
                    record = record.payload(value);
                }
                send(&self.producer, record)?;
            }
        }
        for update in flush(&mut self.games) {
            let key = update.game_id.to_string();
            let value = serde_json::to_vec(&update)?;
            let record = BaseRecord::to(&self.config.games_topic)
                .key(&key)
                .payload(&value)
                .partition(partition_for(update.game_id, self.config.partitions));
            send(&self.producer, record)?;
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in next_offsets {
            tpl.add_partition_offset(&self.config.actions_topic, partition, Offset::Offset(next))
                .map_err(EngineError::kafka("offsets"))?;
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or(EngineError::NoGroupMetadata)?;
        // librdkafka does not wake its broker threads when a partition's
        // AddPartitionsToTxn completes, so the batch sits ~100 ms until a
        // timer fires (measured: engine/examples/txn_latency.rs). Each flush
        // call wakes them; 1 ms steps bring a transaction to ~3 ms. Opt-in:
        // see `Config::eager_flush`.
        if self.config.eager_flush {
            while self.producer.in_flight_count() > 0 {
                let _ = self.producer.flush(Duration::from_millis(1));
            }
        }
        let t1 = Instant::now();
        self.producer
            .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)
            .map_err(EngineError::kafka("send offsets to transaction"))?;
        let t2 = Instant::now();
        if stop.load(Ordering::SeqCst) == STOP_ABANDON {
            // Dropped without a clean shutdown: leave the transaction open,
            // as a crash would.
            return Ok(());
        }
        self.producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(EngineError::kafka("commit transaction"))?;
        tracing::debug!(
            records = self.batch.len(),
            produce_us = (t1 - t0).as_micros() as u64,
            send_offsets_us = (t2 - t1).as_micros() as u64,
            commit_us = t2.elapsed().as_micros() as u64,
            "batch committed"
        );
        Ok(())
    }
}

/// Sends one record, waiting while librdkafka's queue is full.
fn send<K, P>(producer: &BaseProducer, mut record: BaseRecord<'_, K, P>) -> Result<(), EngineError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(5));
                record = back;
            }
            Err((e, _)) => return Err(EngineError::kafka("produce")(e)),
        }
    }
}

/// A group-less consumer that reads partitions from the beginning to their
/// end: restore on assignment, and replay.
pub(crate) fn restorer(config: &Config) -> Result<BaseConsumer, EngineError> {
    config
        .client_with(&[
            ("group.id", &format!("{}-restore", config.group_id)),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "10"),
        ])
        .create()
        .map_err(EngineError::kafka("restore consumer"))
}

/// Reads `partitions` of `topic` from the beginning to the high watermarks
/// seen at the start, calling `f` on each record in offset order per
/// partition.
pub(crate) fn read_to_end(
    reader: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), EngineError> {
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        let (low, high) = reader
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(EngineError::kafka("watermarks"))?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(EngineError::kafka("assign"))?;
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    reader.assign(&tpl).map_err(EngineError::kafka("assign"))?;
    // The watermark is a lower bound (tansu may report the start of the last
    // batch): a partition is done once it reached it and a poll came back
    // empty.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reached: HashSet<i32> = HashSet::new();
    loop {
        if Instant::now() > deadline {
            tracing::warn!(?ends, "gave up reading {topic} to its end");
            break;
        }
        let all_reached = reached.len() == ends.len();
        let timeout = Duration::from_millis(if all_reached { 30 } else { 100 });
        match reader.poll(timeout) {
            Some(Ok(msg)) => {
                f(&msg);
                if ends
                    .get(&msg.partition())
                    .is_some_and(|&h| msg.offset() + 1 >= h)
                {
                    reached.insert(msg.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::warn!("read {topic}: {e}"),
            None if all_reached => break,
            None => {
                // Transaction markers hold offsets no record is delivered for.
                if let Ok(positions) = reader.position() {
                    for e in positions.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            if ends.get(&e.partition()).is_some_and(|&h| o >= h) {
                                reached.insert(e.partition());
                            }
                        }
                    }
                }
            }
        }
    }
    reader.unassign().map_err(EngineError::kafka("unassign"))?;
    Ok(())
}

/// The latest update of every game on `partitions` of the `games` topic.
pub(crate) fn restore(
    reader: &BaseConsumer,
    games_topic: &str,
    partitions: &[i32],
    n: i32,
) -> Result<HashMap<u64, GameUpdate>, EngineError> {
    let mut latest: HashMap<u64, GameUpdate> = HashMap::new();
    read_to_end(reader, games_topic, partitions, |msg| {
        let Some(payload) = msg.payload() else { return };
        match serde_json::from_slice::<GameUpdate>(payload) {
            Ok(update) if partitions.contains(&partition_for(update.game_id, n)) => {
                latest.insert(update.game_id, update);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("undecodable update on {games_topic}: {e}"),
        }
    })?;
    Ok(latest)
}
