//! # engine: the authoritative game server, exactly once
//!
//! Consumes `actions` in a consumer group, applies [`shared::apply`] to each
//! game's state and produces what changed to the compacted `games` topic: a
//! record per nation the step changed (in an arena: per player, and the
//! round when it changed) and a head per game ([`shared::GamesRecord`]), so
//! a record costs what changed, not the game. Both kinds of game
//! ([`shared::GameKind`], fixed by the id) share every path below.
//! Outputs and the consumed offsets commit together in Kafka transactions
//! (one per polled batch, or streaming ones committed every
//! `commit_interval_ms` and before partitions move), and every head also
//! carries the `actions` offset it includes, so a crash never loses an
//! action nor applies one twice. The games it holds answer interactive
//! queries ([`query`]): bridges ask the owner for a game's whole state
//! instead of reading a partition's history.
//!
//! ## Layout
//! - [`handle`]: the pure handling step ([`handle::handle`], [`handle::flush`])
//!   over plain types, unit-tested without a broker.
//! - [`kafka`]: the blocking rdkafka loop: batches, transactions, restore on
//!   assignment, dead letters.
//! - [`metrics`]: batch sizes, apply and commit latency, transactions,
//!   outcomes and rejections by code, dead letters, consumer lag.
//! - [`query`]: the games held, shared with interactive queries
//!   (`GET /games/{game_id}`), and how bridges find the owner.
//! - [`seen`]: every action id of the last 24 h, per player.
//! - [`replay`]: rebuilds every game from the `actions` log and compares it
//!   with the state folded from `games`.
//! - [`run`]: the async entry point used by `main.rs` and the `nation`
//!   binary.
//!
//! ## What happens when
//! Each line: what the engine does; what a player sees; what an operator
//! sees. The tests named inject the fault on Apache Kafka
//! (`tests/tests/engine.rs`, `engine/tests/process.rs`).
//! - **An output is refused or a produce fails mid-transaction** (a record
//!   over `max.message.bytes`, a broker error): the transaction is aborted,
//!   the consumer rewinds to the committed offsets, every game is restored
//!   from `games`, and the batch is redone after a backoff (100 ms doubling
//!   to 5 s); if the topic's limits changed, the engine exits to get a
//!   producer sized for them. Player: the update comes a little later,
//!   never twice, never lost. Operator: `ERROR aborting, rewinding to the
//!   last commit and restoring`, `/readyz` 503 until the restore is done
//!   (test `a_refused_output_aborts_the_transaction_and_loses_nothing`).
//! - **A game's update would not fit a record**: the batch's actions for that
//!   game are redone one by one; an update is written whenever the next
//!   action would not fit, and an action whose update alone would not fit
//!   goes to the dead-letter topic with `error: update too large ...`, in
//!   the same transaction. Player: that click is never confirmed (the page
//!   rolls it back after its timeout); everything else goes on. Operator:
//!   `WARN update too large`, the dead letter
//!   (test `oversized_updates_dead_letter_the_overflowing_action_and_lose_none`).
//! - **A restore cannot finish** (broker slow or away): the partitions are
//!   not taken; no record of theirs is handled; the restore is retried from
//!   the start after `ENGINE_RESTORE_STALL_MS` without progress. Player: the
//!   games of those partitions wait. Operator: `ERROR ... restore of games
//!   partitions [..] did not complete: no progress for ..`, `/readyz` 503
//!   with that reason (test `a_restore_that_cannot_finish_takes_nothing_and_says_not_ready`).
//! - **The assignment is lost** (session timeout, a frozen process): the
//!   open transaction is aborted, never committed; a producer fenced
//!   meanwhile ends the process non-zero. Player: nothing; the new owner
//!   redoes the work. Operator: `WARN assignment lost`, or the exit
//!   (test `an_engine_that_lost_its_assignment_aborts_and_nothing_is_doubled`).
//! - **A record is on another partition than its game's**: dead-lettered
//!   with `misrouted: game G belongs on partition P of N`; a topic whose
//!   partition count differs from `PARTITIONS` stops the engine at start
//!   with how to fix it (tests `a_misrouted_action_goes_to_the_dead_letter_topic`,
//!   `refuses_topics_with_another_partition_count`).
//! - **A commit interval not well below the transaction timeout**: refused
//!   at start (`ENGINE_COMMIT_INTERVAL_MS=.. is too long`).
//! - **`kill -9`, then a restart**: the stable instance id (`ENGINE_INSTANCE_ID`,
//!   default `<host>-<slot>`) gives the same transactional id, which fences
//!   the dead process and aborts its open transaction at once, and the same
//!   static `group.instance.id`, which takes its partitions back without a
//!   rebalance. Player: updates pause about 2 s. Operator: the restart
//!   (test `kill_9_of_a_streaming_engine_process_loses_and_doubles_nothing`).
//! - **Fenced, unauthorised, an abort or rewind that fails**: fatal; the
//!   loop ends with the error and the process exits non-zero (the bridge's
//!   in-process engine takes the bridge down with it, so it never answers
//!   202 for actions nobody applies). Operator: `ERROR the engine cannot go
//!   on`, the exit status.
//!
//! ## Why the bridge may read `games` uncommitted
//! The bridge reads `games` at `read_uncommitted` (`GAMES_ISOLATION`), so a
//! player sees an update a few ms after the engine produced it, not at the
//! commit. An aborted transaction's updates are then seen before they are
//! undone, and that is safe because the engine is deterministic: whoever
//! takes over redoes the same actions, in the same partition order, from the
//! committed state, so every version it writes again has the very same state
//! (an action is dead-lettered for size only when its update alone cannot
//! fit, which depends on the state alone). The hub and the page keep the
//! highest version they saw, so nothing steps back and both converge on the
//! committed state. The kill -9 test checks every update a `read_uncommitted`
//! reader saw against the replay of the actions at its version.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub mod handle;
pub mod kafka;
pub mod metrics;
pub mod query;
pub mod replay;
pub mod seen;
pub mod share;
mod stall;

pub use handle::{flush, GameSlot, Handled, Step};

/// Takes each step, as a [`shared::GameDelta`], right after the engine
/// handed its records to the producer, on the engine's thread (so it must
/// be quick: the bridge's hub serialises it once and queues it for its
/// watchers).
///
/// What it sees is what a `read_uncommitted` reader of `games` reads a few
/// milliseconds later, without the round trip through the broker: a step of
/// a transaction that then aborts is seen too. That is safe for the same
/// reason `read_uncommitted` is: the engine is deterministic and versions
/// count actions, so whoever replays the aborted actions writes the same
/// versions with the same states again.
#[derive(Clone)]
pub struct StepListener(pub Arc<dyn Fn(shared::GameDelta) + Send + Sync>);

impl std::fmt::Debug for StepListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepListener")
    }
}
pub use query::{Answer, Store};
pub use replay::{replay, ReplayReport};

/// Streaming transactions committed every 100 ms: the default, measured on
/// Apache Kafka (BENCHMARKS.md, "Settings"). An update is produced as its
/// batch is handled and committed within 100 ms; one transaction per batch
/// (0) put p50 at 312 ms for `read_committed` readers at 2,000 actions/s, and
/// 20 ms commits cost more than they gave. A crashed engine's open
/// transaction is aborted when an engine with the same transactional id
/// starts, or after `transaction.timeout.ms` (10 s).
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 100;

/// Two transactional producers taking turns ([`Config::txn_producers`]):
/// measured with `engine/examples/txn_stream.rs` on Apache Kafka 4.4, 500
/// records/s committed every 100 ms, a record's wait for its delivery
/// report at p99 went from 26-150 ms with one producer to 8-12 ms with two.
pub const DEFAULT_TXN_PRODUCERS: usize = 2;

/// Commits in the background ([`Config::background_commit`]): it lowered
/// P2's tail (BENCHMARKS.md, P2, seventeenth session). It was off while the
/// broker was Apache Kafka 4.4, whose coordinator dropped the markers of a
/// commit meeting a partition with no leader (a restart of a single node),
/// which a commit in flight more of the time met more often; the broker is
/// now pinned to 4.2.2, which keeps them (RELIABILITY.md, eighteenth
/// session; `tests/tests/markers.rs`).
pub const DEFAULT_BACKGROUND_COMMIT: bool = true;

/// The actions consumer's `fetch.wait.max.ms`: see [`ops::FETCH_WAIT_MAX_MS`].
pub const DEFAULT_FETCH_WAIT_MAX_MS: u32 = ops::FETCH_WAIT_MAX_MS;

/// Most records per batch (and per streaming transaction): BENCHMARKS.md, P3.
pub const DEFAULT_MAX_BATCH: usize = 100_000;

/// How long a restore may go without progress before it is retried.
pub const DEFAULT_RESTORE_STALL_MS: u64 = 10_000;

/// Everything the engine needs to know: clap's flags and environment
/// variables (the engine binary flattens it into its command line), or
/// [`Config::new`] and field updates in code. The fields the process derives
/// at start (its transactional id, its query URL) are not flags of their own
/// here: the binary sets them.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Kafka bootstrap servers (`bootstrap.servers`).
    #[arg(long = "brokers", env = "KAFKA_BROKERS")]
    pub brokers: String,
    #[arg(long, env = "ACTIONS_TOPIC", default_value = "actions")]
    pub actions_topic: String,
    /// The compacted state topic; also the engine's state store.
    #[arg(long, env = "GAMES_TOPIC", default_value = "games")]
    pub games_topic: String,
    /// Where records that cannot be decoded go, with the error as a header.
    #[arg(long, env = "DLQ_TOPIC", default_value = "actions.dlq")]
    pub dlq_topic: String,
    /// Partitions of `actions` and `games`: used to create them and to place
    /// a game with [`shared::partition_for`].
    #[arg(long, env = "PARTITIONS", default_value_t = shared::DEFAULT_PARTITIONS)]
    pub partitions: i32,
    #[arg(long = "group-id", env = "ENGINE_GROUP_ID", default_value = "engine")]
    pub group_id: String,
    /// Unique per engine instance unless you want fencing of a previous one
    /// with the same id. The binary sets it (`ENGINE_TRANSACTIONAL_ID`, or
    /// `<group>-<instance id>`); [`Config::new`] picks a fresh one.
    #[arg(skip)]
    pub transactional_id: String,
    /// `group.instance.id`: a static group member. A restarted engine with
    /// the same id takes its partitions back at once, instead of waiting for
    /// the dead member's session to time out (players saw nothing for 41 s).
    /// Set it, with a stable [`transactional_id`](Self::transactional_id),
    /// for an engine that is restarted in place (`make run`, one engine per
    /// host or pod).
    #[arg(skip)]
    pub group_instance_id: Option<String>,
    /// `fetch.wait.max.ms` of the actions consumer. Apache Kafka answers a
    /// waiting fetch as soon as a record arrives, so this only bounds how long
    /// an idle fetch waits (BENCHMARKS.md, "Settings").
    #[arg(long, env = "FETCH_WAIT_MAX_MS", default_value_t = DEFAULT_FETCH_WAIT_MAX_MS)]
    pub fetch_wait_max_ms: u32,
    /// Most records per transaction.
    #[arg(long, env = "ENGINE_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Create the three topics at start-up if missing (`--no-create-topics`:
    /// do not).
    #[arg(long = "no-create-topics", action = clap::ArgAction::SetFalse)]
    pub create_topics: bool,
    /// `-X key=value` passthrough to librdkafka (consumer and producer), as
    /// kcat does (repeatable).
    #[arg(short = 'X', value_parser = parse_kv)]
    pub extra: Vec<(String, String)>,
    /// Where the engine's metrics go (the host process's registry, served
    /// on `/metrics`).
    #[arg(skip)]
    pub registry: ops::metrics::Registry,
    /// Who in this process takes each step as the engine hands it to Kafka
    /// (the bridge's watcher hub, when the two share a process: see
    /// [`StepListener`]). `None`: nobody; updates reach watchers only
    /// through `games`.
    #[arg(skip)]
    pub on_step: Option<StepListener>,
    /// With one transaction per batch (`commit_interval_ms` 0): wake
    /// librdkafka's broker threads before committing, so a transaction takes
    /// a few ms instead of ~100 ms (librdkafka does not wake them after
    /// `AddPartitionsToTxn`). Streaming transactions always do.
    #[arg(long, env = "ENGINE_EAGER_FLUSH", default_value_t = false, action = clap::ArgAction::Set)]
    pub eager_flush: bool,
    /// 0: one transaction per polled batch. N > 0: streaming transactions,
    /// open across polls and committed every N ms (at the first turn after
    /// N ms with none of their outputs in flight, at the latest after
    /// N + min(N, 1 s); and before partitions are revoked), whose outputs are sent as each batch is handled, so
    /// `read_uncommitted` readers (the bridge with `GAMES_ISOLATION`) see an
    /// update within a few ms while `read_committed` ones see it at the
    /// commit. Implies `eager_flush`. Default [`DEFAULT_COMMIT_INTERVAL_MS`].
    #[arg(long, env = "ENGINE_COMMIT_INTERVAL_MS", default_value_t = DEFAULT_COMMIT_INTERVAL_MS)]
    pub commit_interval_ms: u64,
    /// How many transactional producers take turns, one transaction each
    /// (1 or 2; the second's transactional id is `<id>.1`). With two, the
    /// transaction after a commit does not wait for the coordinator to
    /// finish the commit's markers: on Apache Kafka 4.4 its first outputs
    /// waited in `CONCURRENT_TRANSACTIONS` retries (BENCHMARKS.md, P2).
    /// Default [`DEFAULT_TXN_PRODUCERS`].
    #[arg(long, env = "ENGINE_TXN_PRODUCERS", default_value_t = DEFAULT_TXN_PRODUCERS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=kafka::MAX_TXN_PRODUCERS as u64))]
    pub txn_producers: usize,
    /// A due streaming transaction's commit (its offsets and `EndTxn`, once
    /// its outputs are acknowledged) runs on a thread of its own while the
    /// loop goes on with the next transaction on the other producer; the
    /// next commit waits for it, so commits keep their order, and if it
    /// fails, the transaction after it is aborted too. `false`: the loop
    /// waits for each commit. Default [`DEFAULT_BACKGROUND_COMMIT`].
    #[arg(long, env = "ENGINE_BACKGROUND_COMMIT", default_value_t = DEFAULT_BACKGROUND_COMMIT, action = clap::ArgAction::Set)]
    pub background_commit: bool,
    /// Threads that handle a big batch (of at least
    /// [`share::PARALLEL_MIN_RECORDS`] records), each taking the games of
    /// some partitions ([`share`]); smaller batches stay on the loop's
    /// thread. 0: as many as the cores this process may use.
    #[arg(long, env = "ENGINE_APPLY_THREADS", default_value_t = 0)]
    pub apply_threads: usize,
    /// How long a restore of assigned partitions from `games` may go without
    /// progress before it is abandoned and retried (the partitions are not
    /// taken meanwhile, and the host is not ready). A restore is never
    /// cut short while it progresses.
    #[arg(long, env = "ENGINE_RESTORE_STALL_MS", default_value_t = DEFAULT_RESTORE_STALL_MS)]
    pub restore_stall_ms: u64,
    /// A Confluent-compatible schema registry: the engine registers the
    /// schema of `games` records under `<games topic>-GamesRecord`
    /// (TopicRecordNameStrategy) and writes them in the Confluent wire
    /// format (magic byte 0, schema id, JSON). Unset: plain JSON. It reads
    /// `actions` records framed or not either way.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// How long an action id is remembered ([`seen`]): a retry within it is
    /// a duplicate, an id older than it is refused as `expired`.
    #[arg(long, env = "ENGINE_DEDUP_WINDOW_MS", default_value_t = seen::DEFAULT_WINDOW_MS)]
    pub dedup_window_ms: u64,
    /// The compacted topic of remembered action ids; `None`:
    /// `<games_topic>.seen`.
    #[arg(long, env = "SEEN_TOPIC")]
    pub seen_topic: Option<String>,
    /// The URL where this engine answers interactive queries
    /// ([`query::router`]), advertised to bridges through the consumer
    /// group (`client.id`). `None`: not advertised. The binary derives it
    /// from its health address unless `ENGINE_QUERY_URL` says otherwise.
    #[arg(long = "query-url", env = "ENGINE_QUERY_URL")]
    pub query_url: Option<String>,
}

/// `key=value`, as `-X` takes it.
fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

impl Config {
    /// Refuses settings that cannot work: a streaming commit interval that is
    /// not well below the transaction timeout (at most half of it) would
    /// have the broker abort the engine's own open transactions.
    pub fn validate(&self) -> Result<(), EngineError> {
        let timeout = self.transaction_timeout_ms()?;
        let limit = timeout / 2;
        if self.commit_interval_ms > limit {
            return Err(EngineError::Config(format!(
                "ENGINE_COMMIT_INTERVAL_MS={} is too long: transactions time out after {timeout} ms, so commit at least every {limit} ms",
                self.commit_interval_ms,
            )));
        }
        if self.partitions < 1 {
            return Err(EngineError::Config(format!(
                "PARTITIONS={} must be at least 1",
                self.partitions
            )));
        }
        Ok(())
    }

    /// The producer's `transaction.timeout.ms`: [`kafka::TRANSACTION_TIMEOUT_MS`]
    /// unless `-X transaction.timeout.ms=...` says otherwise.
    pub fn transaction_timeout_ms(&self) -> Result<u64, EngineError> {
        match self
            .extra
            .iter()
            .rev()
            .find(|(k, _)| k == "transaction.timeout.ms")
        {
            None => Ok(kafka::TRANSACTION_TIMEOUT_MS),
            Some((_, v)) => v.parse().map_err(|_| {
                EngineError::Config(format!("transaction.timeout.ms={v} is not a number of ms"))
            }),
        }
    }

    /// The defaults: topics `actions`, `games`, `actions.dlq`, 12 partitions,
    /// group `engine`, a fresh transactional id, 1 ms fetch wait, streaming
    /// transactions every [`DEFAULT_COMMIT_INTERVAL_MS`], batches of
    /// up to 100,000 records (see BENCHMARKS.md, P3), topics created.
    pub fn new(brokers: impl Into<String>) -> Config {
        Config {
            brokers: brokers.into(),
            actions_topic: "actions".to_string(),
            games_topic: "games".to_string(),
            dlq_topic: "actions.dlq".to_string(),
            partitions: shared::DEFAULT_PARTITIONS,
            group_id: "engine".to_string(),
            transactional_id: format!("engine-{}", uuid::Uuid::new_v4()),
            group_instance_id: None,
            fetch_wait_max_ms: DEFAULT_FETCH_WAIT_MAX_MS,
            max_batch: DEFAULT_MAX_BATCH,
            create_topics: true,
            extra: Vec::new(),
            registry: ops::metrics::Registry::default(),
            on_step: None,
            eager_flush: false,
            commit_interval_ms: DEFAULT_COMMIT_INTERVAL_MS,
            txn_producers: DEFAULT_TXN_PRODUCERS,
            background_commit: DEFAULT_BACKGROUND_COMMIT,
            apply_threads: 0,
            restore_stall_ms: DEFAULT_RESTORE_STALL_MS,
            dedup_window_ms: seen::DEFAULT_WINDOW_MS,
            seen_topic: None,
            query_url: None,
            schema_registry_url: None,
        }
    }

    /// [`apply_threads`](Self::apply_threads) resolved: 0 is the cores this
    /// process may use (at least 1).
    pub fn apply_threads(&self) -> usize {
        match self.apply_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The topic of remembered action ids.
    pub fn seen_topic(&self) -> String {
        self.seen_topic
            .clone()
            .unwrap_or_else(|| format!("{}.seen", self.games_topic))
    }

    /// The producer's `message.max.bytes` (librdkafka's default unless `-X`
    /// sets it): no record it sends may be larger.
    fn producer_max_bytes(&self) -> usize {
        self.extra
            .iter()
            .rev()
            .find(|(k, _)| k == "message.max.bytes")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// A librdkafka config with the brokers and the `extra` settings.
    pub(crate) fn client(&self) -> ClientConfig {
        self.client_with(&[])
    }

    /// A librdkafka config: brokers, then `defaults`, then `extra` (so `-X`
    /// overrides the engine's own choices).
    pub(crate) fn client_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            cfg.set(*k, *v);
        }
        for (k, v) in &self.extra {
            cfg.set(k, v);
        }
        cfg
    }
}

/// Why the engine stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("encode an update: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the consumer has no group metadata to commit offsets with")]
    NoGroupMetadata,
    #[error("the engine thread panicked")]
    Panicked,
    #[error("configuration: {0}")]
    Config(String),
    #[error("topic {topic} has {found} partitions but PARTITIONS={expected}: games would move between engines; set PARTITIONS={found}, or create the topics anew with {expected} partitions")]
    PartitionCount {
        topic: String,
        found: i32,
        expected: i32,
    },
    #[error("an output was not delivered: {0}")]
    Delivery(String),
    #[error("restore of {topic} partitions {partitions:?} did not complete: {why}")]
    RestoreIncomplete {
        topic: String,
        partitions: Vec<i32>,
        why: String,
    },
    #[error("abort transaction: {source}")]
    AbortFailed {
        #[source]
        source: KafkaError,
    },
    #[error("rewind to the committed offsets: {0}")]
    RewindFailed(String),
    #[error("the consumer stalled: partitions {partitions:?} behind their ends, not moving for {secs} s")]
    Stalled { partitions: Vec<i32>, secs: u64 },
    #[error("the consumer waited on its group for {secs} s: {why}")]
    Unsettled { why: String, secs: u64 },
    /// A librdkafka call that did not return in time (the engine's loop
    /// leaves it behind with its clients: see `kafka::EngineContext::commit`).
    #[error("librdkafka's {call} did not return within {secs} s")]
    Hung { call: &'static str, secs: u64 },
    #[error("{0}")]
    Registry(#[from] ops::registry::RegistryError),
}

impl EngineError {
    pub(crate) fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> EngineError {
        move |source| EngineError::Kafka { context, source }
    }

    /// Whether the engine must stop (and its supervisor restart it) rather
    /// than abort the transaction, rewind and go on: the producer is fenced
    /// by a newer instance or in a fatal state, it is not authorised, the
    /// configuration or topics are wrong, or an abort or a rewind failed.
    pub fn is_fatal(&self) -> bool {
        match self {
            EngineError::Kafka { source, .. } => fatal_kafka(source),
            EngineError::Config(_)
            | EngineError::PartitionCount { .. }
            | EngineError::CreateTopic { .. }
            | EngineError::Panicked
            | EngineError::AbortFailed { .. }
            | EngineError::RewindFailed(_)
            | EngineError::Stalled { .. }
            | EngineError::Unsettled { .. }
            | EngineError::Hung { .. }
            | EngineError::Registry(_) => true,
            EngineError::Encode(_)
            | EngineError::NoGroupMetadata
            | EngineError::Delivery(_)
            | EngineError::RestoreIncomplete { .. } => false,
        }
    }
}

impl EngineError {
    /// Whether new Kafka clients in the same process would get past this
    /// fatal error ([`kafka::run_blocking`] starts again in place): yes for
    /// a producer in a fatal state, a refused abort or a failed rewind; no
    /// when the engine is wrong (configuration, topics, a panic), not
    /// authorised, or its static member was replaced by another instance.
    ///
    /// A fenced producer starts again too: on Apache Kafka a coordinator
    /// that fails over, or ends a transaction that outlived an outage, bumps
    /// the producer epoch and the producer reports "fenced by a newer
    /// instance" with no other instance anywhere (measured: fault 4 in
    /// RELIABILITY.md). A real twin is ruled out elsewhere: the `engine`
    /// binary claims its instance slot with a lock and is a static member
    /// (a twin's consumer is fenced, which is final here), and
    /// [`kafka::MAX_RESTARTS`] bounds the rest.
    pub fn restart_helps(&self) -> bool {
        match self {
            EngineError::Kafka { source, .. } | EngineError::AbortFailed { source } => {
                !replaced_or_refused(source)
            }
            EngineError::RewindFailed(_)
            | EngineError::Stalled { .. }
            | EngineError::Unsettled { .. }
            | EngineError::Hung { .. } => true,
            // A registry that is down may be back; one that refuses the
            // schema (incompatible, invalid) will refuse it again.
            EngineError::Registry(e) => e.is_transient(),
            EngineError::Config(_)
            | EngineError::PartitionCount { .. }
            | EngineError::CreateTopic { .. }
            | EngineError::Panicked => false,
            EngineError::Encode(_)
            | EngineError::NoGroupMetadata
            | EngineError::Delivery(_)
            | EngineError::RestoreIncomplete { .. } => true,
        }
    }
}

/// Another static member took this engine's place, or the cluster refuses
/// it.
fn replaced_or_refused(e: &KafkaError) -> bool {
    if let KafkaError::MessageConsumptionFatal(_) = e {
        return true;
    }
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::TransactionalIdAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::InvalidTransactionTimeout
                | C::UnsupportedVersion
        )
    )
}

/// librdkafka errors after which no transaction of this producer can work.
fn fatal_kafka(e: &KafkaError) -> bool {
    if let KafkaError::MessageConsumptionFatal(_) = e {
        return true;
    }
    if let KafkaError::Transaction(t) = e {
        if t.is_fatal() {
            return true;
        }
        if t.txn_requires_abort() || t.is_retriable() {
            return false;
        }
    }
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::Fenced
                | C::ProducerFenced
                | C::InvalidProducerEpoch
                | C::TransactionalIdAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::InvalidTransactionTimeout
                | C::UnsupportedVersion
        )
    )
}

/// The largest record the engine may write to `games` and to the
/// dead-letter topic: the topic's `max.message.bytes` and the producer's
/// `message.max.bytes`, less room for the batch and record headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub games: usize,
    pub dlq: usize,
}

/// Room for a record batch's and a record's own headers.
const RECORD_OVERHEAD: usize = 512;

/// Whether the engine can serve now, for its host's `/readyz`: not while it
/// starts, restores assigned partitions, recovers from an aborted
/// transaction, or after it stopped on a fatal error.
///
/// It also carries the engine's [`Store`], for the host's interactive
/// queries ([`query::router`]).
#[derive(Clone, Debug)]
pub struct Health {
    status: Arc<Mutex<Option<String>>>,
    store: Arc<Store>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            status: Arc::new(Mutex::new(Some("starting".to_string()))),
            store: Arc::default(),
        }
    }
}

impl Health {
    /// `Ok` when ready; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        match &*self.status.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    /// The games the engine holds, for interactive queries.
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    pub(crate) fn set_ready(&self) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn set_fault(&self, why: String) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }
}

/// The loop's stop signal: keep running, finish and commit, or stop without
/// committing (the future was dropped: behave like a crash).
pub(crate) const RUNNING: u8 = 0;
pub(crate) const STOP_CLEAN: u8 = 1;
pub(crate) const STOP_ABANDON: u8 = 2;

/// Sets the stop flag to "abandon" when the [`run`] future is dropped.
struct AbandonOnDrop(Arc<AtomicU8>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, STOP_ABANDON, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Runs the engine until `shutdown` resolves (then the current batch is
/// committed and the producer closed) or a fatal error. The rdkafka loop runs
/// on its own thread; dropping this future stops it soon, without committing
/// the transaction in flight.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    run_with_health(config, shutdown, Health::default()).await
}

/// [`run`], reporting readiness to `health` (the host's `/readyz`).
pub async fn run_with_health(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    health: Health,
) -> Result<(), EngineError> {
    let result = run_inner(config, shutdown, &health).await;
    if let Err(e) = &result {
        health.set_fault(format!("stopped: {e}"));
    }
    result
}

async fn run_inner(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    health: &Health,
) -> Result<(), EngineError> {
    config.validate()?;
    if config.create_topics {
        create_topics(&config).await?;
    }
    let limits = check_topics(&config).await?;
    let stop = Arc::new(AtomicU8::new(RUNNING));
    let _guard = AbandonOnDrop(stop.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let loop_stop = stop.clone();
    let loop_health = health.clone();
    std::thread::Builder::new()
        .name("engine-loop".to_string())
        .spawn(move || {
            let store = loop_health.store();
            store.set_partitions(config.partitions);
            let _ = tx.send(kafka::run_blocking(
                &config,
                limits,
                &loop_health,
                store,
                &loop_stop,
            ));
        })
        .expect("spawn the engine thread");
    let mut rx = rx;
    tokio::select! {
        result = &mut rx => return result.unwrap_or(Err(EngineError::Panicked)),
        () = shutdown => {
            stop.store(STOP_CLEAN, Ordering::SeqCst);
        }
    }
    rx.await.unwrap_or(Err(EngineError::Panicked))
}

/// Refuses topics the engine cannot run on (a partition count other than
/// `PARTITIONS` would move games between engines), and reads how large a
/// record each output topic takes.
pub async fn check_topics(config: &Config) -> Result<Limits, EngineError> {
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(EngineError::kafka("admin client"))?;
    // A topic created a moment ago may not be in every broker's metadata
    // yet: wait a little for it to appear, never for a wrong count.
    let names = [
        config.actions_topic.clone(),
        config.games_topic.clone(),
        config.seen_topic(),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(EngineError::kafka("metadata"))?;
        let counts: Vec<(&String, i32)> = names
            .iter()
            .map(|name| {
                let topic = metadata.topics().iter().find(|t| t.name() == name.as_str());
                (name, topic.map_or(0, |t| t.partitions().len() as i32))
            })
            .collect();
        let missing = counts.iter().any(|(_, found)| *found == 0);
        if missing && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if let Some((name, found)) = counts.into_iter().find(|(_, f)| *f != config.partitions) {
            return Err(EngineError::PartitionCount {
                topic: name.clone(),
                found,
                expected: config.partitions,
            });
        }
        for name in &names {
            let replicas = metadata
                .topics()
                .iter()
                .find(|t| t.name() == name.as_str())
                .and_then(|t| t.partitions().first())
                .map_or(0, |p| p.replicas().len());
            tracing::info!(
                topic = %name,
                partitions = config.partitions,
                replicas,
                "topic in use"
            );
        }
        break;
    }
    let specs = [
        ResourceSpecifier::Topic(&config.games_topic),
        ResourceSpecifier::Topic(&config.dlq_topic),
    ];
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin
        .describe_configs(&specs, &opts)
        .await
        .map_err(EngineError::kafka("describe topics"))?;
    let producer_max = config.producer_max_bytes();
    let mut limit = [producer_max; 2];
    for (slot, resource) in limit.iter_mut().zip(described) {
        // A dead-letter topic that does not exist yet takes the default.
        let Ok(resource) = resource else { continue };
        if let Some(max) = resource
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<usize>().ok())
        {
            *slot = max.min(producer_max);
        }
    }
    Ok(Limits {
        games: limit[0].saturating_sub(RECORD_OVERHEAD),
        dlq: limit[1].saturating_sub(RECORD_OVERHEAD),
    })
}

/// How topics are created on a cluster of `brokers`: replication factor
/// min(3, brokers) and `min.insync.replicas` min(2, replication factor), so
/// that one broker lost stops nothing and an acknowledged write is on two.
pub fn durability(brokers: usize) -> (i32, i32) {
    let rf = brokers.clamp(1, 3) as i32;
    (rf, rf.min(2))
}

/// `games` as it is created: compacted, and compacted in time: segments roll
/// every hour or 64 MiB (the broker's defaults, 7 days or 1 GiB, leave a
/// partition's whole recent history uncompacted) and a log is cleaned once a
/// tenth of it is superseded, so a restore reads about the state, not the
/// history.
pub fn games_topic<'a>(name: &'a str, partitions: i32, rf: i32, min_isr: &'a str) -> NewTopic<'a> {
    NewTopic::new(name, partitions, TopicReplication::Fixed(rf))
        .set("min.insync.replicas", min_isr)
        .set("cleanup.policy", "compact")
        .set("segment.ms", "3600000")
        .set("segment.bytes", "67108864")
        .set("min.cleanable.dirty.ratio", "0.1")
}

/// Creates `actions` (kept forever: it is the log `replay` and the lake's
/// export rebuild everything from), `games` (compacted) and the dead-letter
/// topic if missing, replicated per [`durability`].
pub async fn create_topics(config: &Config) -> Result<(), EngineError> {
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(EngineError::kafka("admin client"))?;
    let brokers = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(EngineError::kafka("metadata"))?
        .brokers()
        .len();
    let (rf, min_isr) = durability(brokers);
    let min_isr = min_isr.to_string();
    let seen_topic = config.seen_topic();
    let topics = [
        NewTopic::new(
            &config.actions_topic,
            config.partitions,
            TopicReplication::Fixed(rf),
        )
        .set("min.insync.replicas", &min_isr)
        .set("retention.ms", "-1"),
        games_topic(&config.games_topic, config.partitions, rf, &min_isr),
        NewTopic::new(&config.dlq_topic, 1, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", &min_isr)
            .set("retention.ms", "-1"),
        // One entry per remembered action id, a tombstone when it leaves
        // the window: compacted hourly so a restore reads about the window.
        NewTopic::new(&seen_topic, config.partitions, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", &min_isr)
            .set("cleanup.policy", "compact")
            .set("segment.ms", "3600000")
            .set("delete.retention.ms", "3600000"),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(EngineError::kafka("create topics"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(
                topic,
                replication_factor = rf,
                min_insync_replicas = %min_isr,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(EngineError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

pub use ops::{init_tracing, shutdown_signal};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_default_commit_interval() {
        Config::new("127.0.0.1:1").validate().unwrap();
    }

    #[tokio::test]
    async fn refuses_a_commit_interval_near_the_transaction_timeout_before_touching_kafka() {
        let mut config = Config::new("127.0.0.1:1");
        config.commit_interval_ms = 60_000;
        // No broker listens at 127.0.0.1:1: a refusal must come first.
        let started = std::time::Instant::now();
        let err = run(config, std::future::pending()).await.unwrap_err();
        assert!(matches!(err, EngineError::Config(_)), "{err}");
        assert!(
            err.to_string().contains("ENGINE_COMMIT_INTERVAL_MS=60000"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        let mut config = Config::new("127.0.0.1:1");
        config.commit_interval_ms = kafka::TRANSACTION_TIMEOUT_MS / 2 + 1;
        assert!(config.validate().is_err());
        config.commit_interval_ms = kafka::TRANSACTION_TIMEOUT_MS / 2;
        assert!(config.validate().is_ok());
        // A longer transaction timeout given with -X allows a longer interval.
        config.commit_interval_ms = 60_000;
        config.extra = vec![("transaction.timeout.ms".into(), "300000".into())];
        assert!(config.validate().is_ok());
    }

    /// The flags' defaults are [`Config::new`]'s: one set of defaults,
    /// whichever way the engine is configured.
    #[test]
    fn flags_default_to_the_same_config_as_new() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let flags = Cli::try_parse_from(["engine", "--brokers", "b:9092", "-X", "a=b"])
            .expect("parse")
            .config;
        let new = Config::new("b:9092");
        assert_eq!(flags.brokers, new.brokers);
        assert_eq!(
            (&flags.actions_topic, &flags.games_topic, &flags.dlq_topic),
            (&new.actions_topic, &new.games_topic, &new.dlq_topic)
        );
        assert_eq!(flags.partitions, new.partitions);
        assert_eq!(flags.group_id, new.group_id);
        assert_eq!(flags.fetch_wait_max_ms, new.fetch_wait_max_ms);
        assert_eq!(flags.max_batch, new.max_batch);
        assert_eq!(flags.create_topics, new.create_topics);
        assert_eq!(flags.eager_flush, new.eager_flush);
        assert_eq!(flags.commit_interval_ms, new.commit_interval_ms);
        assert_eq!(flags.txn_producers, new.txn_producers);
        assert_eq!(flags.restore_stall_ms, new.restore_stall_ms);
        assert_eq!(flags.dedup_window_ms, new.dedup_window_ms);
        assert_eq!(flags.extra, vec![("a".to_string(), "b".to_string())]);
        let off = Cli::try_parse_from(["engine", "--brokers", "b", "--no-create-topics"])
            .expect("parse")
            .config;
        assert!(!off.create_topics);
    }

    /// A fenced static member's consumer is dead for good: the engine
    /// stops (and its process exits non-zero) rather than stay up idle.
    #[test]
    fn a_fatal_consumer_error_is_fatal() {
        let fenced = EngineError::Kafka {
            context: "consume",
            source: KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId),
        };
        assert!(fenced.is_fatal());
        let passing = EngineError::Kafka {
            context: "consume",
            source: KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure),
        };
        assert!(!passing.is_fatal());
        assert!(
            !fenced.restart_helps(),
            "a new consumer would fence the member that replaced this one"
        );
    }

    /// What new Kafka clients mend (a refused abort or a fenced producer:
    /// the broker ended the transaction itself, or its coordinator moved)
    /// and what they cannot (authorisation, a wrong configuration).
    #[test]
    fn a_refused_abort_or_fenced_producer_restarts_in_place() {
        let refused = EngineError::AbortFailed {
            source: KafkaError::Flush(RDKafkaErrorCode::InvalidTransactionalState),
        };
        assert!(refused.is_fatal());
        assert!(refused.restart_helps());
        let fenced = EngineError::Kafka {
            context: "commit transaction",
            source: KafkaError::Flush(RDKafkaErrorCode::ProducerFenced),
        };
        assert!(fenced.is_fatal());
        assert!(fenced.restart_helps());
        let refused = EngineError::Kafka {
            context: "init transactions",
            source: KafkaError::Flush(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        };
        assert!(!refused.restart_helps());
        assert!(!EngineError::Config("bad".into()).restart_helps());
        assert!(EngineError::RewindFailed("seek".into()).restart_helps());
    }
}
