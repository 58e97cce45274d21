//! The blocking rdkafka loop: poll, restore newly assigned partitions,
//! handle, produce, commit outputs and consumed offsets in one transaction.
//!
//! Two ways to cut transactions ([`Config::commit_interval_ms`]):
//! - **per batch** (0, the default): each polled batch is committed before
//!   the next poll;
//! - **streaming** (N ms): a transaction stays open across polls; each polled
//!   batch's outputs are produced (and flushed) at once, and the transaction
//!   commits every N ms. Readers at `read_uncommitted` (the bridge) see an
//!   update a few ms after its action; `read_committed` readers see it at the
//!   commit.
//!
//! Rebalance callbacks run inside poll: a revocation commits the open
//! transaction (outputs and offsets of everything handled so far) before the
//! partitions go to another member, and records of a revoked partition that
//! were polled but not handled are dropped (the next owner reads them again).

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

/// The producer's `transaction.timeout.ms`: how long the broker lets a
/// transaction stay open before it aborts it (what a crashed engine's
/// readers wait at most when no engine with its id comes back).
pub const TRANSACTION_TIMEOUT_MS: u64 = 10_000;

/// A change of assignment seen inside a poll.
#[derive(Debug)]
enum Event {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// The transaction in progress.
struct OpenTxn {
    started: Instant,
    /// The next `actions` offset to consume, per partition handled.
    offsets: BTreeMap<i32, i64>,
    records: usize,
}

/// Owns the producer and the open transaction, so that a revocation inside
/// a poll can commit it; records rebalances for the loop to act on after
/// the poll returns.
struct EngineContext {
    producer: BaseProducer,
    actions_topic: String,
    eager_flush: bool,
    txn: Mutex<Option<OpenTxn>>,
    events: Mutex<Vec<Event>>,
    /// A commit that failed inside a callback; the loop stops with it.
    failed: Mutex<Option<EngineError>>,
}

impl ClientContext for EngineContext {}

impl ConsumerContext for EngineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if let Some(txn) = &*lock(&self.txn) {
                tracing::info!(
                    records = txn.records,
                    "committing the open transaction before revocation"
                );
            }
            if let Err(e) = self.commit(consumer) {
                tracing::error!("commit before revocation: {e}");
                *lock(&self.failed) = Some(e);
            }
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

/// Locks, ignoring poisoning (the data stays consistent: plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EngineContext {
    fn push(&self, event: Event) {
        tracing::info!(?event, "rebalance");
        lock(&self.events).push(event);
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// Waits until every record sent is acknowledged, waking librdkafka's
    /// broker threads every 250 µs: it does not wake them when a partition's
    /// AddPartitionsToTxn completes, so without the wake-ups a transaction's
    /// first records sit ~100 ms until a timer fires (measured:
    /// engine/examples/txn_latency.rs); with them, ~1-3 ms. (A `flush` with a
    /// 1 ms timeout would do it too, but spins through its sub-millisecond
    /// tail: 37 % of the process's CPU under load.)
    fn wait_delivered(&self) -> Result<(), EngineError> {
        let deadline = Instant::now() + TXN_TIMEOUT;
        loop {
            self.wake();
            if self.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EngineError::Kafka {
                    context: "deliver outputs",
                    source: KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut),
                });
            }
            std::thread::sleep(Duration::from_micros(250));
        }
    }

    /// Wakes librdkafka's broker threads (see [`Self::wait_delivered`])
    /// without waiting, and serves delivery reports.
    fn wake(&self) {
        // A zero-timeout flush is one rd_kafka_flush(rk, 0): a wake-up.
        let _ = self.producer.flush(Duration::ZERO);
        self.producer.poll(Duration::ZERO);
    }

    /// Commits the open transaction, if any: its outputs and the offsets of
    /// the records it handled.
    fn commit(&self, consumer: &BaseConsumer<Self>) -> Result<(), EngineError> {
        let Some(txn) = lock(&self.txn).take() else {
            return Ok(());
        };
        if self.eager_flush {
            self.wait_delivered()?;
        }
        let t0 = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for (&partition, &next) in &txn.offsets {
            tpl.add_partition_offset(&self.actions_topic, partition, Offset::Offset(next))
                .map_err(EngineError::kafka("offsets"))?;
        }
        let group = consumer
            .group_metadata()
            .ok_or(EngineError::NoGroupMetadata)?;
        self.producer
            .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)
            .map_err(EngineError::kafka("send offsets to transaction"))?;
        let t1 = Instant::now();
        self.producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(EngineError::kafka("commit transaction"))?;
        tracing::debug!(
            records = txn.records,
            open_us = (t0 - txn.started).as_micros() as u64,
            send_offsets_us = (t1 - t0).as_micros() as u64,
            commit_us = t1.elapsed().as_micros() as u64,
            "transaction committed"
        );
        Ok(())
    }
}

/// The engine's mutable loop state.
struct Engine<'a> {
    config: &'a Config,
    consumer: BaseConsumer<EngineContext>,
    /// Reads `games` partitions back on assignment.
    restorer: BaseConsumer<RestoreContext>,
    games: HashMap<u64, GameSlot>,
    /// Assigned partitions whose games are not loaded yet.
    to_restore: HashSet<i32>,
    batch: Vec<OwnedMessage>,
}

/// Runs the loop on the calling thread until `stop` leaves [`RUNNING`]. A
/// clean stop commits the open transaction; an abandoned one (the future
/// was dropped) leaves it open, as a crash would.
pub fn run_blocking(config: &Config, stop: &AtomicU8) -> Result<(), EngineError> {
    let _span = tracing::info_span!("engine", id = %config.transactional_id).entered();
    let mut engine = Engine::new(config)?;
    tracing::info!(
        actions = %config.actions_topic,
        games = %config.games_topic,
        group = %config.group_id,
        commit_interval_ms = config.commit_interval_ms,
        "engine started"
    );
    let abandoned = || stop.load(Ordering::SeqCst) == STOP_ABANDON;
    while stop.load(Ordering::SeqCst) == RUNNING {
        engine.collect()?;
        if abandoned() {
            break;
        }
        if !engine.batch.is_empty() {
            engine.process()?;
        } else if config.commit_interval_ms > 0 && engine.producer().in_flight_count() > 0 {
            engine.consumer.context().wake();
        }
        if engine.commit_due() && !abandoned() {
            engine.commit()?;
        }
    }
    if abandoned() {
        // Leave the transaction open, as a crash would: forget it so that
        // closing the consumer (a revocation) does not commit it.
        lock(&engine.consumer.context().txn).take();
        tracing::warn!("engine abandoned");
        return Ok(());
    }
    engine.commit()?;
    tracing::info!("engine stopped");
    Ok(())
}

impl<'a> Engine<'a> {
    fn new(config: &'a Config) -> Result<Engine<'a>, EngineError> {
        let producer: BaseProducer = config
            .client_with(&[
                ("transactional.id", &config.transactional_id),
                ("enable.idempotence", "true"),
                ("linger.ms", "0"),
                (
                    "transaction.timeout.ms",
                    &TRANSACTION_TIMEOUT_MS.to_string(),
                ),
            ])
            .create()
            .map_err(EngineError::kafka("producer"))?;
        producer
            .init_transactions(TXN_TIMEOUT)
            .map_err(EngineError::kafka("init transactions"))?;
        let context = EngineContext {
            producer,
            actions_topic: config.actions_topic.clone(),
            // Streaming flushes every batch anyway.
            eager_flush: config.eager_flush || config.commit_interval_ms > 0,
            txn: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            failed: Mutex::new(None),
        };
        let fetch_wait = config.fetch_wait_max_ms.to_string();
        let consumer: BaseConsumer<EngineContext> = config
            .client_with(&[
                ("group.id", &config.group_id),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("isolation.level", "read_committed"),
                ("fetch.wait.max.ms", &fetch_wait),
                // A real-time game: a member that died and does not come
                // back loses its partitions after 10 s, not librdkafka's
                // default 45 s (one that restarts in place with a
                // `group.instance.id` gets them back at once).
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
            ])
            .set_opt("group.instance.id", config.group_instance_id.as_deref())
            .create_with_context(context)
            .map_err(EngineError::kafka("consumer"))?;
        let restorer = restorer(config)?;
        consumer
            .subscribe(&[&config.actions_topic])
            .map_err(EngineError::kafka("subscribe"))?;
        Ok(Engine {
            config,
            consumer,
            restorer,
            games: HashMap::new(),
            to_restore: HashSet::new(),
            batch: Vec::with_capacity(config.max_batch),
        })
    }

    fn producer(&self) -> &BaseProducer {
        &self.consumer.context().producer
    }

    /// How long the first poll may wait: until the open transaction is due,
    /// else 100 ms; 1 ms while a streaming transaction's outputs are in
    /// flight, so that the loop keeps waking librdkafka.
    fn first_poll_timeout(&self) -> Duration {
        let streaming = self.config.commit_interval_ms > 0;
        let idle = if streaming && self.producer().in_flight_count() > 0 {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        match &*lock(&self.consumer.context().txn) {
            Some(txn) => {
                let interval = Duration::from_millis(self.config.commit_interval_ms);
                interval.saturating_sub(txn.started.elapsed()).min(idle)
            }
            None => idle,
        }
    }

    /// Polls the first record (waiting at most [`Self::first_poll_timeout`]),
    /// then drains what is already fetched, up to `max_batch`: small batches
    /// at low load, big ones under load.
    fn collect(&mut self) -> Result<(), EngineError> {
        self.batch.clear();
        let mut timeout = self.first_poll_timeout();
        while self.batch.len() < self.config.max_batch {
            let polled = self.consumer.poll(timeout).map(|r| r.map(|m| m.detach()));
            if let Some(e) = lock(&self.consumer.context().failed).take() {
                return Err(e);
            }
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

    /// Whether the open transaction should commit now: always when cutting
    /// per batch; when streaming, once it is `commit_interval_ms` old or
    /// holds `max_batch` records.
    fn commit_due(&self) -> bool {
        lock(&self.consumer.context().txn)
            .as_ref()
            .is_some_and(|txn| {
                txn.started.elapsed() >= Duration::from_millis(self.config.commit_interval_ms)
                    || txn.records >= self.config.max_batch
            })
    }

    fn commit(&self) -> Result<(), EngineError> {
        self.consumer.context().commit(&self.consumer)
    }

    /// Restores pending partitions, then handles the batch inside the open
    /// transaction (beginning one if needed) and produces its outputs.
    fn process(&mut self) -> Result<(), EngineError> {
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
        let context = self.consumer.context();
        let mut txn = match lock(&context.txn).take() {
            Some(txn) => txn,
            None => {
                context
                    .producer
                    .begin_transaction()
                    .map_err(EngineError::kafka("begin transaction"))?;
                OpenTxn {
                    started: Instant::now(),
                    offsets: BTreeMap::new(),
                    records: 0,
                }
            }
        };
        for msg in &self.batch {
            txn.offsets.insert(msg.partition(), msg.offset() + 1);
            if let Handled::DeadLetter { error } = handle(&mut self.games, msg) {
                dead_letter(&context.producer, &self.config.dlq_topic, msg, &error)?;
            }
        }
        txn.records += self.batch.len();
        *lock(&context.txn) = Some(txn);
        for update in flush(&mut self.games) {
            let key = update.game_id.to_string();
            let value = serde_json::to_vec(&update)?;
            let record = BaseRecord::to(&self.config.games_topic)
                .key(&key)
                .payload(&value)
                .partition(partition_for(update.game_id, self.config.partitions));
            send(self.producer(), record)?;
        }
        if self.config.commit_interval_ms > 0 {
            // Streaming: the outputs go now, not at the commit.
            context.wake();
        }
        tracing::trace!(records = self.batch.len(), first = ?self.batch.first().map(|m| (m.partition(), m.offset())), "handled");
        Ok(())
    }
}

/// Sends a record that cannot be handled to the dead-letter topic, with the
/// error and its origin as headers.
fn dead_letter(
    producer: &BaseProducer,
    dlq_topic: &str,
    msg: &OwnedMessage,
    error: &str,
) -> Result<(), EngineError> {
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
            value: Some(error),
        })
        .insert(Header {
            key: "source.partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "source.offset",
            value: Some(offset.as_str()),
        });
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq_topic).headers(headers);
    if let Some(key) = msg.key() {
        record = record.key(key);
    }
    if let Some(value) = msg.payload() {
        record = record.payload(value);
    }
    send(producer, record)
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

/// The restorer's context: the end of a partition is how a restore knows it
/// is done, not a fault, so it is not logged at ERROR (librdkafka reports it
/// as a "global error"); everything else is, so grepping ERROR finds only
/// real faults.
pub(crate) struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) => tracing::trace!("restore: {reason}"),
            _ => tracing::error!("librdkafka: {error}: {reason}"),
        }
    }
}

impl ConsumerContext for RestoreContext {}

/// A group-less consumer that reads partitions from the beginning to their
/// end: restore on assignment, and replay.
pub(crate) fn restorer(config: &Config) -> Result<BaseConsumer<RestoreContext>, EngineError> {
    config
        .client_with(&[
            ("group.id", &format!("{}-restore", config.group_id)),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "10"),
        ])
        .create_with_context(RestoreContext)
        .map_err(EngineError::kafka("restore consumer"))
}

/// Reads `partitions` of `topic` from the beginning to the high watermarks
/// seen at the start, calling `f` on each record in offset order per
/// partition.
pub(crate) fn read_to_end(
    reader: &BaseConsumer<RestoreContext>,
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
    // A partition is done once a record at or past the watermark was seen,
    // or the position reached it (a transaction marker may be the last
    // offset) and a poll came back empty.
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
    reader: &BaseConsumer<RestoreContext>,
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

/// `ClientConfig::set` when there is a value.
trait SetOpt {
    fn set_opt(&mut self, key: &str, value: Option<&str>) -> &mut Self;
}

impl SetOpt for rdkafka::ClientConfig {
    fn set_opt(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.set(key, value);
        }
        self
    }
}
