//! The blocking rdkafka loop: poll, restore newly assigned partitions,
//! handle, produce, commit outputs and consumed offsets in one transaction.
//!
//! Two ways to cut transactions ([`Config::commit_interval_ms`]):
//! - **per batch** (0): each polled batch is committed before the next poll;
//! - **streaming** (N ms, the default): a transaction stays open across
//!   polls; each polled batch's outputs are produced (and flushed) at once,
//!   and the transaction commits every N ms. Readers at `read_uncommitted`
//!   (the bridge) see an update a few ms after its action; `read_committed`
//!   readers see it at the commit. A commit needs every output of its
//!   transaction acknowledged first: once a transaction is due, the loop
//!   goes on handling actions (their outputs join it) and commits at the
//!   first turn where none is in flight, so the loop does not stand still
//!   while they land; only past min(interval, [`COMMIT_GRACE`]) more does it
//!   wait for them.
//!
//! Transactions take turns between two producers (`Config::txn_producers`):
//! after a commit the coordinator still writes the commit markers, and
//! until it is done it refuses the same producer's next
//! `AddPartitionsToTxn`, which held the next transaction's first outputs
//! back by 20 ms retries. Only one transaction is open at a time, and each
//! commits after the one before it, so the order of commits (and of the
//! offsets they carry) is the order of the batches.
//!
//! A due transaction can commit in the background (`Config::background_commit`):
//! once its outputs are acknowledged, its offsets and `EndTxn` go on a
//! thread of their own while the loop handles the next actions in the next
//! transaction, on the other producer (the loop used to stand still for
//! those three round trips every interval). The next commit, a revocation,
//! an abort and a clean stop first wait for it. If it fails, the
//! transaction after it is aborted too, and the consumer rewinds to the
//! offsets last committed: the next transaction's outputs were computed
//! from games whose steps were never committed. A crash while it is on its
//! way is a crash with two transactions open: `init_transactions` of both
//! producers' ids at the next start, or the broker's transaction timeout,
//! ends them, and the next owner's committed-offset fetch (stable offsets,
//! KIP-447) waits for that.
//!
//! ## Where a transaction begins, commits and aborts
//! All in `EngineContext`: `begin` (the first batch after a commit),
//! `commit` (every `commit_interval_ms`, before an orderly revocation, at a
//! clean stop) and `abort` (any error inside it, a lost assignment). The
//! loop ([`run_blocking`]) sorts errors with [`EngineError::is_fatal`]: an
//! abortable one aborts, rewinds the consumer to the committed offsets,
//! drops every game and restores them from `games` (`Engine::recover`),
//! then goes on after a
//! backoff; a fatal one (fenced, an abort that fails, authorization) ends
//! that set of Kafka clients. When new clients would mend it the engine
//! starts again in place ([`run_blocking`]); otherwise the loop ends with
//! the error, so the process exits non-zero for its supervisor.
//!
//! Rebalance callbacks run inside poll: an orderly revocation commits the
//! open transaction before the partitions go to another member; a lost
//! assignment (session timeout, fenced generation) aborts it, since another
//! member may already own those partitions. Records of a revoked partition
//! that were polled but not handled are dropped (the next owner reads them
//! again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use shared::{partition_for, GameSnapshot, GamesFold, GamesRecord};

use crate::handle::{handle_undoable, pending_step, take_step, GameSlot, Record, Step, Undo};
use crate::metrics::EngineMetrics;
use crate::query::Store;
use crate::seen::{Restoring, Seen};
use crate::share::{
    encode, largest, prepare_batch, seen_budget, seen_outputs, Params, SeenOutputs,
};
use crate::stall::{self, StallWatch};
use crate::{Config, EngineError, Health, Limits, RUNNING, STOP_ABANDON};

/// How long a transaction step may take before the engine gives up.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an abort may take before the engine gives up on its clients
/// and starts again in place ([`EngineContext::abort`]): well below the
/// consumer's `max.poll.interval.ms` (30 s), which the abort's loop does not
/// serve. Measured (RELIABILITY.md, fifteenth session): after a 10 s broker
/// outage the broker's own abort of the timed-out transaction held the
/// epoch bump back past 30 s, the engine left the group on `MAXPOLL`, and
/// its next consumer could not read its offsets while that abort was
/// pending. A new producer's `init_transactions` ends the transaction as
/// well, and a static member's new consumer takes its partitions back with
/// no rebalance.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stall check waits for an offset ([`Engine::watch_for_stall`]).
const STALL_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The producer's `transaction.timeout.ms`: how long the broker lets a
/// transaction stay open before it aborts it (what a crashed engine's
/// readers wait at most when no engine with its id comes back).
pub const TRANSACTION_TIMEOUT_MS: u64 = 10_000;

/// How long a due streaming transaction may wait for a turn with none of
/// its outputs in flight ([`Engine::commit_due`]), at most: past its
/// interval plus the smaller of the interval and this, it commits anyway,
/// waiting for them (under a load that never lets them all land).
const COMMIT_GRACE: Duration = Duration::from_secs(1);

/// The first wait after an abortable error; doubled on each error in a row,
/// up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

/// How far a commit handed to its thread ([`EngineContext::commit`]) got.
enum Progress {
    OffsetsSent,
    Done(Result<(), EngineError>),
}

/// A transaction whose commit runs on a thread of its own.
struct Committing {
    /// Its producer (an index into [`EngineContext::producers`]).
    producer: usize,
    /// `send_offsets_to_transaction` goes to the group coordinator through
    /// librdkafka's coordinator request, which, when the coordinator's node
    /// has died, can wait for its connection forever (measured: fault 4
    /// with the coordinator killed, the loop blocked for the whole test;
    /// RELIABILITY.md). Past this instant without the offsets sent, the
    /// engine starts again in place with new clients ([`EngineError::Hung`]);
    /// the call left behind keeps its producer alive until it returns,
    /// fenced by the new one.
    hung_at: Instant,
    offsets_sent: bool,
    progress: std::sync::mpsc::Receiver<Progress>,
}

impl Committing {
    /// The commit's result, waiting at most `wait` for it (`None`: still on
    /// its way).
    fn wait(&mut self, wait: Duration) -> Option<Result<(), EngineError>> {
        use std::sync::mpsc::RecvTimeoutError;
        let deadline = Instant::now() + wait;
        loop {
            let now = Instant::now();
            let mut left = deadline.saturating_duration_since(now);
            if !self.offsets_sent {
                left = left.min(self.hung_at.saturating_duration_since(now));
            }
            match self.progress.recv_timeout(left) {
                Ok(Progress::OffsetsSent) => self.offsets_sent = true,
                Ok(Progress::Done(result)) => return Some(result),
                Err(RecvTimeoutError::Disconnected) => {
                    return Some(Err(EngineError::Config(
                        "the commit's thread ended without a result".into(),
                    )))
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if !self.offsets_sent && now >= self.hung_at {
                        return Some(Err(EngineError::Hung {
                            call: "send_offsets_to_transaction",
                            secs: TRANSACTION_TIMEOUT_MS / 1000,
                        }));
                    }
                    if now >= deadline {
                        return None;
                    }
                }
            }
        }
    }
}

/// The producer's delivery reports: the first record the broker refused in
/// the open transaction (a transaction with a lost output must abort).
#[derive(Default)]
struct Outputs {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Outputs {}

impl ProducerContext for Outputs {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            // Purged by an abort (the only purge): that transaction is over,
            // and its late reports must not fail the next one (measured:
            // fault 4, a second needless abort of 395 records).
            if matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
            ) {
                return;
            }
            let mut failed = lock(&self.failed);
            if failed.is_none() {
                *failed = Some(format!(
                    "{} partition {}: {e}",
                    msg.topic(),
                    msg.partition()
                ));
            }
        }
    }
}

/// Owns the producer and the open transaction, so that a revocation inside
/// a poll can commit or abort it; records rebalances for the loop to act on
/// after the poll returns.
struct EngineContext {
    /// Transactional producers taking turns, one transaction each
    /// ([`Config::txn_producers`]): `turn` is the one of the open (or next)
    /// transaction; each commit or abort passes the turn on.
    producers: Vec<Arc<BaseProducer<Outputs>>>,
    turn: AtomicUsize,
    actions_topic: String,
    eager_flush: bool,
    /// Commits due in the loop go on in the background
    /// ([`Config::background_commit`]).
    background: bool,
    txn: Mutex<Option<OpenTxn>>,
    /// The transaction whose commit is on its way, on a thread of its own.
    committing: Mutex<Option<Committing>>,
    /// The producer of a transaction whose commit failed: [`Self::abort`]
    /// aborts it.
    uncommitted: Mutex<Option<usize>>,
    events: Mutex<Vec<Event>>,
    /// An error met inside a callback; the loop handles it after the poll.
    failed: Mutex<Option<EngineError>>,
    metrics: EngineMetrics,
    /// The group as the latest statistics showed it ([`crate::stall`]).
    group: Mutex<Option<stall::GroupStats>>,
}

impl ClientContext for EngineContext {
    fn stats_raw(&self, statistics: &[u8]) {
        self.metrics.lag.record("engine", statistics);
        #[derive(serde::Deserialize)]
        struct Stats {
            cgrp: Option<stall::GroupStats>,
        }
        if let Ok(Stats { cgrp: Some(group) }) = serde_json::from_slice::<Stats>(statistics) {
            *lock(&self.group) = Some(group);
        }
    }
}

impl ConsumerContext for EngineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = tpl.elements().iter().map(|e| e.partition()).collect();
            if consumer.assignment_lost() {
                // Another member may own these partitions already: what we
                // handled since the last commit must not be committed.
                tracing::warn!(?parts, "assignment lost: aborting the open transaction");
                if let Err(e) = self.abort() {
                    *lock(&self.failed) = Some(e);
                }
            } else if let Err(e) = self.commit(consumer, false) {
                tracing::error!("commit before revocation: {e}");
                let fatal = self.abort().err();
                *lock(&self.failed) = Some(fatal.unwrap_or(e));
            }
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
    /// The producer of the open transaction, or of the next one.
    fn producer(&self) -> &BaseProducer<Outputs> {
        &self.producers[self.turn.load(Ordering::Relaxed)]
    }

    /// Passes the turn to the next producer, after a transaction ended:
    /// its coordinator is still writing that transaction's markers, and
    /// refuses the same producer's next `AddPartitionsToTxn` until it is
    /// done (`CONCURRENT_TRANSACTIONS`, retried by librdkafka every 20 ms),
    /// which held the next transaction's first outputs back (measured:
    /// `engine/examples/txn_stream.rs`, BENCHMARKS.md P2).
    fn pass_turn(&self) {
        let next = (self.turn.load(Ordering::Relaxed) + 1) % self.producers.len();
        self.turn.store(next, Ordering::Relaxed);
    }

    fn push(&self, event: Event) {
        tracing::info!(?event, "rebalance");
        lock(&self.events).push(event);
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// Begins a transaction unless one is open; the loop then records what
    /// it handles in it.
    fn begin(&self) -> Result<(), EngineError> {
        let mut txn = lock(&self.txn);
        if txn.is_none() {
            // One producer, one transaction at a time: its commit on its way
            // (with a single producer) ends first.
            let turn = self.turn.load(Ordering::Relaxed);
            if lock(&self.committing)
                .as_ref()
                .is_some_and(|c| c.producer == turn)
            {
                self.settle()?;
            }
            self.producer()
                .begin_transaction()
                .map_err(EngineError::kafka("begin transaction"))?;
            *txn = Some(OpenTxn {
                started: Instant::now(),
                offsets: BTreeMap::new(),
                records: 0,
            });
        }
        Ok(())
    }

    /// Commits the open transaction, if any: its outputs and the offsets of
    /// the records it handled. The commit on its way, if any, ends first,
    /// so transactions commit in the order they were cut.
    ///
    /// Once every output is acknowledged, the rest (the offsets, then the
    /// commit itself: three requests to the coordinators) runs on a thread
    /// of its own. With `background`, the loop goes on meanwhile: the next
    /// transaction, on the other producer, takes the next actions, and the
    /// commit's result is collected by [`Self::poll_commit`] or
    /// [`Self::settle`]. Otherwise this waits for it. Either way, a
    /// transaction whose commit failed is left to [`Self::abort`], which
    /// aborts it and whatever transaction came after it.
    fn commit(&self, consumer: &BaseConsumer<Self>, background: bool) -> Result<(), EngineError> {
        self.settle()?;
        let mut slot = lock(&self.txn);
        let Some(txn) = slot.as_ref() else {
            return Ok(());
        };
        let t0 = Instant::now();
        if self.eager_flush {
            self.wait_delivered()?;
        }
        self.delivered()?;
        let delivered = t0.elapsed();
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in &txn.offsets {
            offsets
                .add_partition_offset(&self.actions_topic, partition, Offset::Offset(next))
                .map_err(EngineError::kafka("offsets"))?;
        }
        let group = consumer
            .group_metadata()
            .ok_or(EngineError::NoGroupMetadata)?;
        let turn = self.turn.load(Ordering::Relaxed);
        let producer = self.producers[turn].clone();
        let metrics = self.metrics.clone();
        let (records, open) = (txn.records, t0 - txn.started);
        let (progress, receiver) = std::sync::mpsc::channel();
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("engine-commit".into())
            .spawn(move || {
                let _span = span.entered();
                let finish = || {
                    producer
                        .send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)
                        .map_err(EngineError::kafka("send offsets to transaction"))?;
                    let _ = progress.send(Progress::OffsetsSent);
                    let t1 = Instant::now();
                    producer
                        .commit_transaction(TXN_TIMEOUT)
                        .map_err(EngineError::kafka("commit transaction"))?;
                    metrics.transaction("committed");
                    metrics.commit.observe(t0.elapsed().as_secs_f64());
                    tracing::debug!(
                        records,
                        open_us = open.as_micros() as u64,
                        delivered_us = delivered.as_micros() as u64,
                        send_offsets_us = (t1 - t0 - delivered).as_micros() as u64,
                        commit_us = t1.elapsed().as_micros() as u64,
                        "transaction committed"
                    );
                    Ok(())
                };
                let _ = progress.send(Progress::Done(finish()));
            })
            .map_err(|e| EngineError::Config(format!("a thread for the commit: {e}")))?;
        *slot = None;
        drop(slot);
        *lock(&self.committing) = Some(Committing {
            producer: turn,
            hung_at: Instant::now() + Duration::from_millis(TRANSACTION_TIMEOUT_MS),
            offsets_sent: false,
            progress: receiver,
        });
        self.pass_turn();
        if background {
            Ok(())
        } else {
            self.settle()
        }
    }

    /// Forgets the open transaction and the commit on its way, as a crash
    /// would: closing the consumer (a revocation) then neither commits nor
    /// waits for anything.
    fn forget(&self) {
        lock(&self.txn).take();
        lock(&self.committing).take();
        lock(&self.uncommitted).take();
    }

    /// Waits for the commit on its way, if any, to end; its error, if it
    /// failed (its transaction is then left to [`Self::abort`]).
    fn settle(&self) -> Result<(), EngineError> {
        self.end_commit(TXN_TIMEOUT + Duration::from_secs(5))
    }

    /// Collects the result of the commit on its way, if it has ended,
    /// without waiting.
    fn poll_commit(&self) -> Result<(), EngineError> {
        self.end_commit(Duration::ZERO)
    }

    /// Waits at most `wait` for the commit on its way to end.
    fn end_commit(&self, wait: Duration) -> Result<(), EngineError> {
        let mut slot = lock(&self.committing);
        let Some(committing) = slot.as_mut() else {
            return Ok(());
        };
        let Some(result) = committing.wait(wait) else {
            if wait.is_zero() {
                return Ok(());
            }
            // `commit_transaction` returns by itself within TXN_TIMEOUT.
            *lock(&self.uncommitted) = Some(committing.producer);
            *slot = None;
            return Err(EngineError::Hung {
                call: "commit_transaction",
                secs: wait.as_secs(),
            });
        };
        let producer = committing.producer;
        *slot = None;
        if result.is_err() {
            *lock(&self.uncommitted) = Some(producer);
        }
        result
    }

    /// Aborts the open transaction, if any, and a transaction whose commit
    /// failed: none of their outputs nor offsets will ever be visible to
    /// `read_committed` readers. A commit still on its way ends first (if it
    /// fails, its transaction is aborted too). A failed abort is fatal: the
    /// producer cannot be trusted with another transaction.
    fn abort(&self) -> Result<(), EngineError> {
        if let Err(e) = self.settle() {
            if matches!(e, EngineError::Hung { .. }) {
                // Its producer is still inside the call: a new set of
                // clients ends that transaction (`init_transactions`).
                return Err(e);
            }
            tracing::warn!("the commit on its way failed: {e}");
        }
        let uncommitted = lock(&self.uncommitted).take();
        if let Some(producer) = uncommitted {
            tracing::warn!("aborting the transaction whose commit failed");
            self.metrics.transaction("aborted");
            self.abort_on(producer)?;
        }
        let open = lock(&self.txn).take();
        let turn = self.turn.load(Ordering::Relaxed);
        if let Some(txn) = open {
            tracing::warn!(records = txn.records, "aborting the open transaction");
            self.metrics.transaction("aborted");
            self.abort_on(turn)?;
            self.pass_turn();
        }
        lock(&self.producers[turn].context().failed).take();
        Ok(())
    }

    /// Aborts the transaction of producer `index`.
    fn abort_on(&self, index: usize) -> Result<(), EngineError> {
        let producer = &self.producers[index];
        // Drop what is queued or in flight, and serve the delivery reports
        // while the abort waits for them (a BaseProducer's reports are
        // served only by polling it).
        producer.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + ABORT_TIMEOUT;
        loop {
            // Serve every queued event (a zero-timeout poll serves one, and
            // the abort waits for the queue to empty: measured, the queue
            // grew faster than it was served).
            producer.poll(Duration::from_millis(5));
            match producer.abort_transaction(Duration::from_millis(50)) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && Instant::now() < deadline => {}
                Err(source) => return Err(EngineError::AbortFailed { source }),
            }
        }
        lock(&producer.context().failed).take();
        Ok(())
    }

    /// The first output the broker refused in the open transaction, as an
    /// error (the transaction must abort).
    fn delivered(&self) -> Result<(), EngineError> {
        match lock(&self.producer().context().failed).clone() {
            Some(why) => Err(EngineError::Delivery(why)),
            None => Ok(()),
        }
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
            if self.producer().in_flight_count() == 0 {
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
        let _ = self.producer().flush(Duration::ZERO);
        // Serve every delivery report queued, not one: a zero-timeout poll
        // serves one event, the reports of one partition's batch, and a
        // produce response over the transaction's partitions queues one per
        // partition (up to 24 here); the rest counted as in flight until
        // later turns served them. Stops when a poll serves nothing.
        let mut left = self.producer().in_flight_count();
        while left > 0 {
            self.producer().poll(Duration::ZERO);
            let now = self.producer().in_flight_count();
            if now == left {
                break;
            }
            left = now;
        }
    }
}

/// The engine's mutable loop state.
struct Engine<'a> {
    config: &'a Config,
    limits: Limits,
    health: &'a Health,
    consumer: BaseConsumer<EngineContext>,
    /// Reads `games` partitions back on assignment.
    restorer: BaseConsumer<RestoreContext>,
    /// The games held, the partitions assigned and those not restored yet;
    /// locked while a batch is handled, shared with interactive queries.
    store: Arc<Store>,
    /// Each game touched by the current batch as the batch found it.
    undo: HashMap<u64, Undo>,
    /// Restore the loading partitions without waiting for a record (after a
    /// recovery, or when a query asks for one of their games).
    restore_now: bool,
    batch: Vec<Record>,
    /// The schema registry's id of the `games` schema, when records are
    /// framed (`Config::schema_registry_url`).
    schema_id: Option<u32>,
    /// Threads handling a big batch (`Config::apply_threads`, resolved).
    apply_threads: usize,
}

/// Runs the loop on the calling thread until `stop` leaves [`RUNNING`]. A
/// clean stop commits the open transaction; an abandoned one (the future
/// was dropped) leaves it open, as a crash would.
///
/// When the Kafka clients themselves are beyond repair but a new pair would
/// work (an abort the broker refused, say after the broker itself aborted a
/// transaction that outlived an outage), the engine drops them and starts
/// again in place, as a supervisor would restart the process but seconds
/// sooner: the new producer's `init_transactions` fences the old one and
/// ends whatever transaction it left, and every game is restored from
/// `games`. After [`MAX_RESTARTS`] restarts in a row it gives up.
pub fn run_blocking(
    config: &Config,
    limits: Limits,
    health: &Health,
    store: Arc<Store>,
    stop: &AtomicU8,
) -> Result<(), EngineError> {
    let _span = tracing::info_span!("engine", id = %config.transactional_id).entered();
    let mut restarts = 0;
    let mut stall = StallWatch::new(Instant::now());
    loop {
        let started = Instant::now();
        let result = run_clients(config, limits, health, store.clone(), stop, &mut stall);
        let Err(e) = result else {
            return Ok(());
        };
        if started.elapsed() > RESTARTS_FORGOTTEN_AFTER {
            restarts = 0;
        }
        if !e.restart_helps() || restarts >= MAX_RESTARTS || stop.load(Ordering::SeqCst) != RUNNING
        {
            tracing::error!(error = %e, "the engine cannot go on");
            health.set_fault(format!("stopped: {e}"));
            return Err(e);
        }
        restarts += 1;
        EngineMetrics::register(&config.registry).restarts.inc();
        let wait = FIRST_RESTART_WAIT * 2u32.pow(restarts - 1);
        tracing::error!(
            error = %e,
            restart = restarts,
            wait_ms = wait.as_millis() as u64,
            "new Kafka clients: the engine starts again in place"
        );
        health.set_fault(format!("restarting after: {e}"));
        store.forget_all();
        stall.restarted(Instant::now());
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) != RUNNING {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How many times in a row the engine starts again in place before it
/// gives up (see [`run_blocking`]).
pub const MAX_RESTARTS: u32 = 5;
/// The wait before the first restart in place; doubled for each one in a
/// row.
const FIRST_RESTART_WAIT: Duration = Duration::from_millis(500);
/// A run this long before its error starts the count of restarts afresh.
const RESTARTS_FORGOTTEN_AFTER: Duration = Duration::from_secs(60);

/// One run of the loop with one set of Kafka clients: ends on a clean stop,
/// an abandon, or an error abort-and-rewind cannot mend.
fn run_clients(
    config: &Config,
    limits: Limits,
    health: &Health,
    store: Arc<Store>,
    stop: &AtomicU8,
    stall: &mut StallWatch,
) -> Result<(), EngineError> {
    let mut engine = Engine::new(config, limits, health, store)?;
    tracing::info!(
        actions = %config.actions_topic,
        games = %config.games_topic,
        group = %config.group_id,
        instance = config.group_instance_id.as_deref().unwrap_or("-"),
        commit_interval_ms = config.commit_interval_ms,
        max_update_bytes = limits.games,
        "engine started"
    );
    health.set_ready();
    let abandoned = || stop.load(Ordering::SeqCst) == STOP_ABANDON;
    let mut backoff = FIRST_BACKOFF;
    while stop.load(Ordering::SeqCst) == RUNNING {
        match engine
            .step(&abandoned)
            .and_then(|()| engine.watch_for_stall(stall))
        {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(e) if e.is_fatal() => {
                // Leave the transaction to the broker (or to the next
                // producer's `init_transactions`): closing the consumer
                // must not try to commit it with a producer beyond repair.
                engine.consumer.context().forget();
                return Err(e);
            }
            Err(e) => {
                tracing::error!(error = %e, "aborting, rewinding to the last commit and restoring");
                health.set_fault(e.to_string());
                engine.recover()?;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    if abandoned() {
        // Leave the transaction open, as a crash would: forget it so that
        // closing the consumer (a revocation) does not commit it.
        engine.consumer.context().forget();
        tracing::warn!("engine abandoned");
        return Ok(());
    }
    if let Err(e) = engine.commit(false) {
        engine.consumer.context().abort()?;
        return Err(e);
    }
    tracing::info!("engine stopped");
    Ok(())
}

impl<'a> Engine<'a> {
    fn new(
        config: &'a Config,
        limits: Limits,
        health: &'a Health,
        store: Arc<Store>,
    ) -> Result<Engine<'a>, EngineError> {
        let mut producers = Vec::new();
        for transactional_id in transactional_ids(config) {
            let producer: BaseProducer<Outputs> = config
                .client_with(&[
                    ("transactional.id", &transactional_id),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "0"),
                    (
                        "transaction.timeout.ms",
                        &TRANSACTION_TIMEOUT_MS.to_string(),
                    ),
                    // A batch of records that each fit must fit too:
                    // librdkafka does not split a batch the broker refuses
                    // as too large.
                    ("batch.size", &limits.games.min(limits.dlq).to_string()),
                ])
                .create_with_context(Outputs::default())
                .map_err(EngineError::kafka("producer"))?;
            // Fences a predecessor with the same transactional id and aborts
            // the transaction it left open.
            producer
                .init_transactions(TXN_TIMEOUT)
                .map_err(EngineError::kafka("init transactions"))?;
            producers.push(Arc::new(producer));
        }
        let context = EngineContext {
            producers,
            turn: AtomicUsize::new(0),
            actions_topic: config.actions_topic.clone(),
            // Streaming flushes every batch anyway.
            eager_flush: config.eager_flush || config.commit_interval_ms > 0,
            background: config.background_commit,
            txn: Mutex::new(None),
            committing: Mutex::new(None),
            uncommitted: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            failed: Mutex::new(None),
            metrics: EngineMetrics::register(&config.registry),
            group: Mutex::new(None),
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
                // librdkafka postpones a partition's next fetch by this much
                // once its local queue is full (default 1 s): under load the
                // engine sat idle for it between batches (P3 in
                // BENCHMARKS.md: 1.15-1.35x the Kafka Streams peer at 1 s,
                // 1.81-3.35x at 5 ms).
                ("fetch.queue.backoff.ms", "5"),
                // An empty or failed fetch is retried after 10 ms, not 500.
                ("fetch.error.backoff.ms", "10"),
                // A real-time game: a member that died and does not come
                // back loses its partitions after 10 s, not librdkafka's
                // default 45 s (one that restarts in place with a
                // `group.instance.id` gets them back at once).
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
                // The rebalance timeout: how long the broker holds a join
                // for members that have not rejoined (librdkafka's default
                // is 5 minutes, which a restarted engine could spend
                // waiting on a member that is gone). The loop polls every
                // few ms; a restore is bounded by `restore_stall_ms`.
                ("max.poll.interval.ms", "30000"),
                ("statistics.interval.ms", ops::metrics::STATS_INTERVAL_MS),
            ])
            .set_opt("group.instance.id", config.group_instance_id.as_deref())
            // Where interactive queries for this engine's partitions go: the
            // group's description maps partitions to it (crate::query).
            .set_opt(
                "client.id",
                config
                    .query_url
                    .as_ref()
                    .map(|url| format!("{}{url}", crate::query::CLIENT_ID_PREFIX))
                    .as_deref(),
            )
            .create_with_context(context)
            .map_err(EngineError::kafka("consumer"))?;
        let restorer = restorer(config)?;
        let schema_id = match &config.schema_registry_url {
            Some(url) => Some(register_games_schema(config, url)?),
            None => None,
        };
        consumer
            .subscribe(&[&config.actions_topic])
            .map_err(EngineError::kafka("subscribe"))?;
        Ok(Engine {
            config,
            limits,
            health,
            consumer,
            restorer,
            store,
            undo: HashMap::new(),
            restore_now: false,
            batch: Vec::with_capacity(config.max_batch.min(4096)),
            schema_id,
            apply_threads: config.apply_threads(),
        })
    }

    fn producer(&self) -> &BaseProducer<Outputs> {
        self.consumer.context().producer()
    }

    /// One turn of the loop: poll a batch, restore what was assigned, handle
    /// and produce, commit when due.
    fn step(&mut self, abandoned: &dyn Fn() -> bool) -> Result<(), EngineError> {
        // A commit that failed on its way aborts what came after it too.
        self.consumer.context().poll_commit()?;
        self.collect()?;
        if abandoned() {
            return Ok(());
        }
        // Restored when their first records arrive: by then the consumer's
        // committed-offset fetch (stable offsets, at `read_committed`) has
        // waited for the previous owner's last transaction to complete, so
        // `games` shows what it committed. After a recovery the offsets just
        // read were stable too: restore at once.
        if self.store.take_restore_wanted() {
            self.restore_now = true;
        }
        let loading = !self.store.lock().loading.is_empty();
        if loading && (!self.batch.is_empty() || self.restore_now) {
            self.restore_assigned()?;
        }
        if !self.batch.is_empty() {
            self.process()?;
        } else if self.config.commit_interval_ms > 0 && self.producer().in_flight_count() > 0 {
            self.consumer.context().wake();
        }
        self.consumer.context().delivered()?;
        if self.commit_due() && !abandoned() {
            let background = self.consumer.context().background;
            self.commit(background)?;
        }
        if self.store.lock().loading.is_empty() {
            self.health.set_ready();
        }
        Ok(())
    }

    /// After an abortable error: aborts the open transaction, drops every
    /// game and buffered record, rewinds each assigned partition to its
    /// committed offset, and marks them all for restore from `games`. Any
    /// failure here is fatal: going on without the rewind would skip the
    /// aborted records.
    fn recover(&mut self) -> Result<(), EngineError> {
        self.consumer.context().abort()?;
        {
            let mut held = self.store.lock();
            held.games.clear();
            held.loading.clear();
        }
        self.undo.clear();
        self.batch.clear();
        // A fresh reader for the restore: one that saw a broker die may
        // keep asking it for offsets (measured: fault 4, watermark queries
        // timing out for 40 s after the node's partitions had moved).
        self.restorer = restorer(self.config)?;
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| EngineError::RewindFailed(e.to_string()))?;
        if assignment.count() == 0 {
            return Ok(());
        }
        let committed = self
            .consumer
            .committed_offsets(assignment, TXN_TIMEOUT)
            .map_err(|e| EngineError::RewindFailed(e.to_string()))?;
        for e in committed.elements() {
            let to = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            self.consumer
                .seek(e.topic(), e.partition(), to, TXN_TIMEOUT)
                .map_err(|err| {
                    EngineError::RewindFailed(format!("seek partition {}: {err}", e.partition()))
                })?;
            self.store.lock().loading.insert(e.partition());
        }
        self.restore_now = true;
        tracing::warn!(partitions = ?self.store.lock().loading, "rewound to the last commit");
        self.refresh_limits()
    }

    /// Every [`stall::CHECK_EVERY`], compares the consumed positions with
    /// the partitions' last stable offsets, read by the restore consumer
    /// (see [`crate::stall`]); a stalled partition ends this set of clients.
    fn watch_for_stall(&mut self, watch: &mut StallWatch) -> Result<(), EngineError> {
        let now = Instant::now();
        if !watch.due(now) {
            return Ok(());
        }
        let Ok(assigned) = self.consumer.position() else {
            watch.unknown(now);
            return Ok(());
        };
        let mut at = BTreeMap::new();
        let mut unset = TopicPartitionList::new();
        for e in assigned.elements() {
            match e.offset() {
                Offset::Offset(o) => {
                    at.insert(e.partition(), o);
                }
                _ => {
                    unset.add_partition(e.topic(), e.partition());
                }
            }
        }
        // Nothing consumed yet since the assignment (or a restart): the
        // committed offset is where consumption starts.
        let mut unstarted = Vec::new();
        let mut unreadable = String::new();
        if unset.count() > 0 {
            match self
                .consumer
                .committed_offsets(unset.clone(), STALL_QUERY_TIMEOUT)
            {
                Ok(committed) => {
                    for e in committed.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            at.insert(e.partition(), o);
                        }
                    }
                }
                Err(e) => {
                    unstarted = unset.elements().iter().map(|e| e.partition()).collect();
                    unreadable = e.to_string();
                }
            }
        }
        let group = lock(&self.consumer.context().group).clone();
        let membership = stall::membership(group.as_ref(), &unstarted, &unreadable);
        if let stall::Membership::Waiting(why) = &membership {
            if watch.membership(&membership) {
                tracing::error!(%why, "the consumer is still waiting on its group");
                return Err(EngineError::Unsettled {
                    why: why.clone(),
                    secs: (stall::CHECK_EVERY * (stall::MEMBERSHIP_STRIKES - 1)).as_secs(),
                });
            }
            tracing::warn!(%why, "the consumer is waiting on its group");
        } else {
            watch.membership(&membership);
        }
        let mut ends = BTreeMap::new();
        for &partition in at.keys() {
            match self.restorer.fetch_watermarks(
                &self.config.actions_topic,
                partition,
                STALL_QUERY_TIMEOUT,
            ) {
                Ok((_, end)) => {
                    ends.insert(partition, end);
                }
                Err(e) => {
                    // A reader that saw a broker die may keep asking it: the
                    // next check asks with a new one.
                    tracing::warn!("stall check: end offset of partition {partition}: {e}");
                    self.restorer = restorer(self.config)?;
                    watch.unknown(now);
                    return Ok(());
                }
            }
        }
        if let stall::Membership::NoCoordinator(why) = &membership {
            // Counted only when the cluster answers: with no partition to
            // ask about, ask it about one.
            if ends.is_empty() {
                if let Err(e) = self.restorer.fetch_watermarks(
                    &self.config.actions_topic,
                    0,
                    STALL_QUERY_TIMEOUT,
                ) {
                    tracing::warn!(%why, "stall check: no group coordinator, and the cluster does not answer either: {e}");
                    // The next check asks with a new reader (see above).
                    self.restorer = restorer(self.config)?;
                    watch.unknown(now);
                    return Ok(());
                }
            }
            if watch.coordinator_lost() {
                tracing::error!(%why, "the consumer still has no group coordinator while the cluster answers");
                return Err(EngineError::Unsettled {
                    why: why.clone(),
                    secs: (stall::CHECK_EVERY * (stall::MEMBERSHIP_STRIKES - 1)).as_secs(),
                });
            }
            tracing::warn!(%why, "the consumer has no group coordinator while the cluster answers");
        }
        let stalled = watch.observe(now, &at, &ends);
        if stalled.is_empty() {
            return Ok(());
        }
        tracing::error!(partitions = ?stalled, positions = ?at, ends = ?ends, "the consumer stalled");
        Err(EngineError::Stalled {
            partitions: stalled,
            secs: (stall::CHECK_EVERY * (stall::STRIKES - 1)).as_secs(),
        })
    }

    /// Reads the output topics' record size limits again (a record the
    /// broker refused as too large means they changed), and checks the
    /// partition counts again.
    fn refresh_limits(&mut self) -> Result<(), EngineError> {
        let checked = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EngineError::Config(format!("a runtime for the admin client: {e}")))?
            .block_on(crate::check_topics(self.config));
        match checked {
            // The producer's batches are sized for the old limits: a new
            // producer (a restart) is needed.
            Ok(limits) if limits != self.limits => Err(EngineError::Config(format!(
                "the output topics' record size limits changed ({:?} to {limits:?}): restart the engine to apply them",
                self.limits
            ))),
            Ok(_) => Ok(()),
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                tracing::warn!("re-reading topic limits: {e}");
                Ok(())
            }
        }
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
                let left = interval.saturating_sub(txn.started.elapsed());
                if streaming && left.is_zero() {
                    // Due, waiting for its outputs to land (`commit_due`):
                    // look again in a ms, or as soon as a record comes.
                    Duration::from_millis(1)
                } else {
                    left.min(idle)
                }
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
            let polled = self
                .consumer
                .poll(timeout)
                .map(|r| r.map(|m| Record::of(&m)));
            if let Some(e) = lock(&self.consumer.context().failed).take() {
                return Err(e);
            }
            self.apply_rebalances();
            match polled {
                None => break,
                Some(Ok(msg)) => self.batch.push(msg),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                // A fatal consumer error (e.g. a static member fenced by
                // another with the same `group.instance.id`) ends the
                // consumer for good: the engine must stop and say so, not
                // sit on a dead consumer with `/readyz` green.
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(EngineError::Kafka {
                        context: "consume",
                        source: e,
                    });
                }
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
            let mut held = self.store.lock();
            match event {
                Event::Revoked(parts) => {
                    let parts: HashSet<i32> = parts.into_iter().collect();
                    let n = self.config.partitions;
                    held.games
                        .retain(|id, _| !parts.contains(&partition_for(*id, n)));
                    self.batch.retain(|m| !parts.contains(&m.partition));
                    held.loading.retain(|p| !parts.contains(p));
                    held.assigned.retain(|p| !parts.contains(p));
                }
                Event::Assigned(parts) => {
                    held.loading.extend(parts.iter().copied());
                    held.assigned.extend(parts);
                }
            }
        }
    }

    /// Whether the open transaction should commit now: always when cutting
    /// per batch; when streaming, once it is `commit_interval_ms` old or
    /// holds `max_batch` records, and then at the first turn where none of
    /// its outputs is in flight. The commit waits for every output to be
    /// acknowledged, and the loop handles no action meanwhile: under load
    /// that wait was 25-50 ms at p50 (BENCHMARKS.md, P2), while the outputs
    /// sent between two batches land in a few ms. Past the interval plus
    /// [`COMMIT_GRACE`] (at most the interval again) it commits anyway.
    fn commit_due(&self) -> bool {
        let txn = lock(&self.consumer.context().txn);
        let Some(txn) = txn.as_ref() else {
            return false;
        };
        let interval = Duration::from_millis(self.config.commit_interval_ms);
        let age = txn.started.elapsed();
        if txn.records >= self.config.max_batch || interval.is_zero() {
            return true;
        }
        age >= interval
            && (self.producer().in_flight_count() == 0
                || age >= interval + interval.min(COMMIT_GRACE))
    }

    /// Commits the open transaction; with `background`, the commit may
    /// still be on its way on return ([`EngineContext::commit`]).
    fn commit(&self, background: bool) -> Result<(), EngineError> {
        self.consumer.context().commit(&self.consumer, background)
    }

    /// Loads the games of newly assigned partitions from `games`, completely
    /// or not at all: until it succeeds, the host is not ready and no record
    /// of those partitions is handled (the error rewinds them).
    fn restore_assigned(&mut self) -> Result<(), EngineError> {
        let parts: Vec<i32> = self.store.lock().loading.iter().copied().collect();
        self.health
            .set_fault(format!("restoring partitions {parts:?}"));
        let started = Instant::now();
        let restored = restore(
            &self.restorer,
            &self.config.games_topic,
            &parts,
            self.config.partitions,
            Duration::from_millis(self.config.restore_stall_ms),
        )?;
        tracing::info!(
            ?parts,
            games = restored.len(),
            ms = started.elapsed().as_millis() as u64,
            "restored"
        );
        let mut seen = restore_seen(
            &self.restorer,
            &self.config.seen_topic(),
            &parts,
            Duration::from_millis(self.config.restore_stall_ms),
        )?;
        let mut held = self.store.lock();
        for snapshot in restored.values() {
            let mut slot = GameSlot::from_snapshot(snapshot);
            if let Some(mut ids) = seen.remove(&snapshot.game_id) {
                let now = ids.now_ms();
                // Records whose ids all left the window while the game was
                // away: tombstoned with its next batch.
                slot.seen_gone = ids.advance(now, self.config.dedup_window_ms);
                slot.seen = ids;
            }
            held.games.insert(snapshot.game_id, slot);
        }
        held.loading.clear();
        self.restore_now = false;
        Ok(())
    }

    /// Handles the batch inside the open transaction (beginning one if
    /// needed) and produces its outputs. The store stays locked throughout,
    /// so a query sees the games between batches.
    fn process(&mut self) -> Result<(), EngineError> {
        let started = Instant::now();
        let metrics = self.consumer.context().metrics.clone();
        metrics.batch_size.observe(self.batch.len() as f64);
        self.consumer.context().begin()?;
        let store = self.store.clone();
        let mut held = store.lock();
        let games = &mut held.games;
        let n = self.config.partitions;
        // How old each action is when handled (from the bridge's produce):
        // what a player waits for before the engine even starts on it.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for msg in &self.batch {
            if let Some(at) = msg.timestamp_ms {
                metrics
                    .record_age
                    .observe((now_ms - at).max(0) as f64 / 1000.0);
            }
        }
        let params = Params {
            partitions: n,
            window_ms: self.config.dedup_window_ms,
            games_limit: self.limits.games,
            with_delta: self.config.on_step.is_some(),
        };
        let prepared = prepare_batch(
            games,
            &mut self.undo,
            &self.batch,
            self.apply_threads,
            &params,
        )?;
        metrics.handled(&prepared.tally);
        if let Some(txn) = lock(&self.consumer.context().txn).as_mut() {
            for msg in &self.batch {
                txn.offsets.insert(msg.partition, msg.offset + 1);
            }
            txn.records += self.batch.len();
        }
        for (i, error) in &prepared.dead {
            self.dead_letter(&self.batch[*i], error)?;
        }
        let mut redone = Vec::new();
        for step in prepared.steps {
            for code in step.rejections {
                metrics
                    .rejections
                    .get_or_create(&crate::metrics::CodeLabels { code })
                    .inc();
            }
            match step.seen {
                Some(seen) => {
                    self.send_records(step.game_id, &step.records)?;
                    self.tell(step.delta);
                    self.send_seen(step.game_id, seen)?;
                }
                None => {
                    self.redo_bounded(games, step.game_id, step.largest)?;
                    redone.push(step.game_id);
                }
            }
        }
        for game_id in redone {
            if let Some(slot) = games.get_mut(&game_id) {
                let budget = seen_budget(self.limits.games);
                let seen = seen_outputs(slot, game_id, budget)?;
                self.send_seen(game_id, seen)?;
            }
        }
        self.undo.clear();
        if self.config.commit_interval_ms > 0 {
            // Streaming: the outputs go now, not at the commit.
            self.consumer.context().wake();
        }
        metrics.apply.observe(started.elapsed().as_secs_f64());
        tracing::trace!(records = self.batch.len(), first = ?self.batch.first().map(|m| (m.partition, m.offset)), "handled");
        Ok(())
    }

    /// A game's step of this batch has a record over the size a `games`
    /// record may have (its head names every action of a huge batch): redo
    /// the game's actions of this batch one by one from the state the batch
    /// found, writing a step whenever the next action would not fit, and
    /// dead-lettering (in the same transaction) an action whose step alone
    /// would not fit.
    fn redo_bounded(
        &mut self,
        games: &mut HashMap<u64, GameSlot>,
        game_id: u64,
        too_big: usize,
    ) -> Result<(), EngineError> {
        let limit = self.limits.games;
        tracing::warn!(
            game_id,
            bytes = too_big,
            limit,
            "update too large: redoing the batch action by action"
        );
        let current = games.remove(&game_id).unwrap_or_default();
        let start = match self.undo.remove(&game_id) {
            Some(undo) => undo.restore(current),
            None => GameSlot {
                game: shared::Game::new(game_id),
                ..GameSlot::default()
            },
        };
        games.insert(game_id, start);
        let n = self.config.partitions;
        let window = self.config.dedup_window_ms;
        let batch = std::mem::take(&mut self.batch);
        let result = (|| {
            // Taking an action back goes through its `Undo`: a copy of the
            // slot would copy every id the game remembers, per action.
            let back = |games: &mut HashMap<u64, GameSlot>, undo: Option<Undo>| {
                if let (Some(undo), Some(current)) = (undo, games.remove(&game_id)) {
                    games.insert(game_id, undo.restore(current));
                }
            };
            for msg in batch.iter().filter(|m| decodes_to(m, game_id)) {
                let (_, undo) = handle_undoable(games, msg, n, window);
                let after = encoded_len(&games[&game_id])?;
                if after <= limit {
                    continue;
                }
                back(games, undo);
                if games[&game_id].dirty {
                    // What came before fits: write it, then try this one on
                    // its own.
                    let step = take_step(games.get_mut(&game_id).expect("present"));
                    self.send_step(step)?;
                    let (_, undo) = handle_undoable(games, msg, n, window);
                    let alone = encoded_len(&games[&game_id])?;
                    if alone <= limit {
                        continue;
                    }
                    back(games, undo);
                    self.dead_letter(msg, &too_large(game_id, alone, limit))?;
                } else {
                    self.dead_letter(msg, &too_large(game_id, after, limit))?;
                }
            }
            if games[&game_id].dirty {
                let step = take_step(games.get_mut(&game_id).expect("present"));
                self.send_step(step)?;
            }
            Ok(())
        })();
        self.batch = batch;
        result
    }

    /// Writes what `game_id` remembered and forgot of action ids since the
    /// last time ([`seen_outputs`]) to `<games>.seen`: the ids the batch
    /// remembered in one record (more when they would not fit in one), a
    /// tombstone for each record whose every id was forgotten (so compaction
    /// keeps the topic to the window). One record per game and batch, not
    /// per action.
    fn send_seen(&self, game_id: u64, seen: SeenOutputs) -> Result<(), EngineError> {
        let topic = self.config.seen_topic();
        let partition = partition_for(game_id, self.config.partitions);
        for (key, value) in &seen.records {
            let record = BaseRecord::to(&topic)
                .key(key)
                .payload(value)
                .partition(partition);
            send(self.producer(), record)?;
        }
        for key in &seen.tombstones {
            let record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&topic).key(&key[..]).partition(partition);
            send(self.producer(), record)?;
        }
        Ok(())
    }

    /// Sends one step's records, then tells the step's listener.
    fn send_step(&self, step: Step) -> Result<(), EngineError> {
        let game_id = step.head.game_id;
        let delta = self.config.on_step.as_ref().map(|_| step.delta());
        self.send_records(game_id, &encode(step)?)?;
        self.tell(delta);
        Ok(())
    }

    /// Hands a step just sent to the listener in this process, if any.
    fn tell(&self, delta: Option<shared::GameDelta>) {
        if let (Some(listener), Some(delta)) = (&self.config.on_step, delta) {
            (listener.0)(delta);
        }
    }

    /// Sends one step's records (nations, then the head) on the game's
    /// partition of `games`.
    fn send_records(&self, game_id: u64, records: &[(String, Vec<u8>)]) -> Result<(), EngineError> {
        let partition = partition_for(game_id, self.config.partitions);
        for (key, value) in records {
            // Framed for the schema registry: 5 bytes more, within the
            // room `Limits` keeps for headers.
            let framed = self.schema_id.map(|id| shared::framing::frame(id, value));
            let record = BaseRecord::to(&self.config.games_topic)
                .key(key)
                .payload(framed.as_deref().unwrap_or(value))
                .partition(partition);
            send(self.producer(), record)?;
        }
        Ok(())
    }

    fn dead_letter(&self, msg: &Record, error: &str) -> Result<(), EngineError> {
        self.consumer.context().metrics.dead_letters.inc();
        dead_letter(
            self.producer(),
            &self.config.dlq_topic,
            self.limits.dlq,
            msg,
            error,
        )
    }
}

/// Registers the schema of `games` records with the registry at `url`
/// (waiting up to 30 s for one that is down) and returns its id.
fn register_games_schema(config: &Config, url: &str) -> Result<u32, EngineError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Config(format!("a runtime for the registry client: {e}")))?;
    let id = runtime.block_on(ops::registry::Registry::new(url).register_for(
        &config.games_topic,
        shared::schema::GAMES_RECORD,
        &shared::schema::games_record(),
        Duration::from_secs(30),
    ))?;
    Ok(id)
}

/// Whether an `actions` record decodes to an action of `game_id`.
fn decodes_to(msg: &Record, game_id: u64) -> bool {
    crate::handle::decode(msg.payload.as_deref()).is_ok_and(|a| a.game_id == game_id)
}

/// The largest record of the step `slot` would be written as now.
fn encoded_len(slot: &GameSlot) -> Result<usize, EngineError> {
    Ok(largest(&encode(pending_step(slot))?))
}

fn too_large(game_id: u64, bytes: usize, limit: usize) -> String {
    format!(
        "update too large: applying this action would make game {game_id}'s update {bytes} bytes, over the {limit} bytes a games record may have"
    )
}

/// Sends a record that cannot be handled to the dead-letter topic, with the
/// error and its origin as headers; a value too large for the topic is left
/// out (its size is in a header) rather than failing the transaction.
fn dead_letter(
    producer: &BaseProducer<Outputs>,
    dlq_topic: &str,
    limit: usize,
    msg: &Record,
    error: &str,
) -> Result<(), EngineError> {
    tracing::warn!(
        partition = msg.partition,
        offset = msg.offset,
        "dead letter: {error}"
    );
    let partition = msg.partition.to_string();
    let offset = msg.offset.to_string();
    let key = msg.key.as_deref().unwrap_or_default();
    let value = msg.payload.as_deref().unwrap_or_default();
    // A header over a quarter of the limit is cut (an error text is short).
    let error: String = error.chars().take(limit / 4).collect();
    let omitted = key.len() + value.len() + error.len() + 256 > limit;
    let size = value.len().to_string();
    let mut headers = OwnedHeaders::new()
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
    if omitted {
        headers = headers.insert(Header {
            key: "value.omitted.bytes",
            value: Some(size.as_str()),
        });
    }
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq_topic).headers(headers);
    if !omitted {
        if msg.key.is_some() {
            record = record.key(key);
        }
        if msg.payload.is_some() {
            record = record.payload(value);
        }
    }
    send(producer, record)
}

/// The transactional ids of an engine's producers ([`Config::txn_producers`]):
/// its own, then `<id>.1`. Each start initialises them all, which fences
/// the previous instance's producers and ends the transactions they left.
pub fn transactional_ids(config: &Config) -> Vec<String> {
    let id = &config.transactional_id;
    (0..config.txn_producers.clamp(1, MAX_TXN_PRODUCERS))
        .map(|i| {
            if i == 0 {
                id.clone()
            } else {
                format!("{id}.{i}")
            }
        })
        .collect()
}

/// The most transactional producers an engine takes turns with.
pub const MAX_TXN_PRODUCERS: usize = 2;

/// Sends one record, waiting while librdkafka's queue is full.
fn send<K, P>(
    producer: &BaseProducer<Outputs>,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), EngineError>
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
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!("restore: {reason}")
            }
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
            // Named, so an operator's quotas and logs can tell it apart.
            ("client.id", &format!("{}-restore", config.group_id)),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "10"),
        ])
        .create_with_context(RestoreContext)
        .map_err(EngineError::kafka("restore consumer"))
}

/// Reads `partitions` of `topic` from the beginning to the end offsets
/// taken at the start, calling `f` on each record in offset order per
/// partition. It either reads every partition to its end or fails with
/// [`EngineError::RestoreIncomplete`] once `stall` passes without progress
/// (no record, no position moving): it never returns a partial read as done.
pub(crate) fn read_to_end(
    reader: &BaseConsumer<RestoreContext>,
    topic: &str,
    partitions: &[i32],
    stall: Duration,
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), EngineError> {
    let incomplete = |why: String| EngineError::RestoreIncomplete {
        topic: topic.to_string(),
        partitions: partitions.to_vec(),
        why,
    };
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        let (low, high) = reader
            .fetch_watermarks(topic, p, stall.max(Duration::from_secs(1)))
            .map_err(|e| incomplete(format!("end offset of partition {p}: {e}")))?;
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
    // A partition is done once a record at or past its end was seen, or the
    // position reached it (a transaction marker may be the last offset).
    let mut reached: HashSet<i32> = HashSet::new();
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let mut progress = Instant::now();
    let result = loop {
        if reached.len() == ends.len() {
            break Ok(());
        }
        if progress.elapsed() > stall {
            let left: Vec<i32> = ends
                .keys()
                .filter(|p| !reached.contains(p))
                .copied()
                .collect();
            break Err(incomplete(format!(
                "no progress for {} ms with partitions {left:?} short of their end",
                stall.as_millis()
            )));
        }
        match reader.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                progress = Instant::now();
                f(&msg);
                if ends
                    .get(&msg.partition())
                    .is_some_and(|&h| msg.offset() + 1 >= h)
                {
                    reached.insert(msg.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Ok(at) = reader.position() {
                    mark_reached(&at, p, &ends, &mut reached);
                }
            }
            Some(Err(e)) => tracing::warn!("read {topic}: {e}"),
            None => {
                // Transaction markers hold offsets no record is delivered for.
                if let Ok(at) = reader.position() {
                    for e in at.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            if positions.insert(e.partition(), o) != Some(o) {
                                progress = Instant::now();
                            }
                        }
                        mark_reached(&at, e.partition(), &ends, &mut reached);
                    }
                }
            }
        }
    };
    reader.unassign().map_err(EngineError::kafka("unassign"))?;
    result
}

/// Marks `partition` reached when its position in `at` is at or past its end.
fn mark_reached(
    at: &TopicPartitionList,
    partition: i32,
    ends: &HashMap<i32, i64>,
    reached: &mut HashSet<i32>,
) {
    for e in at.elements().iter().filter(|e| e.partition() == partition) {
        if let Offset::Offset(o) = e.offset() {
            if ends.get(&partition).is_some_and(|&h| o >= h) {
                reached.insert(partition);
            }
        }
    }
}

/// Every game on `partitions` of the `games` topic, folded from its records.
pub(crate) fn restore(
    reader: &BaseConsumer<RestoreContext>,
    games_topic: &str,
    partitions: &[i32],
    n: i32,
    stall: Duration,
) -> Result<BTreeMap<u64, GameSnapshot>, EngineError> {
    let mut fold = GamesFold::default();
    read_to_end(reader, games_topic, partitions, stall, |msg| {
        let Some(payload) = msg.payload() else { return };
        match serde_json::from_slice::<GamesRecord>(shared::framing::json(payload)) {
            Ok(record) => fold.push(record),
            Err(e) => tracing::warn!("undecodable record on {games_topic}: {e}"),
        }
    })?;
    let mut games = fold.games;
    games.retain(|id, _| partitions.contains(&partition_for(*id, n)));
    Ok(games)
}

/// The action ids each game of `partitions` remembers, from `<games>.seen`
/// (records and tombstones, in offset order).
pub(crate) fn restore_seen(
    reader: &BaseConsumer<RestoreContext>,
    topic: &str,
    partitions: &[i32],
    stall: Duration,
) -> Result<HashMap<u64, Seen>, EngineError> {
    let mut restoring = Restoring::default();
    read_to_end(reader, topic, partitions, stall, |msg| {
        let Some(key) = msg.key() else {
            tracing::warn!("a record without a key on {topic}");
            return;
        };
        if let Err(e) = restoring.push(key, msg.payload()) {
            tracing::warn!("{e} on {topic}");
        }
    })?;
    Ok(restoring.finish())
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
