//! # leaderboards: live boards computed from the authoritative streams
//!
//! A role of its own: it reads seed 004's spins (`gameplay`, campaign
//! boards) and the nations of `games` (Build a Nation boards), applies each
//! record exactly once, and writes the boards to a compacted topic in the
//! same transaction as its input offsets, so a restart (or a second
//! instance) rebuilds them. Readers get `GET /api/leaderboards`,
//! `GET /api/leaderboards/{board}` (keyset pages, around a player) and
//! `/ws/leaderboards/{board}` (the top N, pushed on change).
//!
//! # Layout
//! - [`ranking`]: the ordered structure (blocked sorted list with ranks).
//! - [`board`]: one board's deterministic core: operators, order, ties,
//!   duplicates, grace, periods (cron), sliding windows.
//! - [`campaign`]: campaign definitions (file, admin API), seed 004's
//!   campaign, spins to score events.
//! - [`nation`]: Build a Nation boards from `games` nation records.
//! - [`arena`]: the arena's eliminations board from fighter records.
//! - [`boards`]: every board, and the state records they write and rebuild from.
//! - [`role`]: the Kafka loop (transactions, rebuild).
//! - [`http`]: the axum [`router`] to nest into the bridge.
//!
//! Compose with [`run`] (the role) and [`router`] (the reads), sharing one
//! [`Leaderboards`] handle.

pub mod arena;
pub mod board;
pub mod boards;
pub mod campaign;
pub mod http;
pub mod nation;
pub mod openapi;
pub mod ranking;
pub mod role;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use boards::Boards;
pub use http::router;

/// The role's configuration (flags mirror environment variables).
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    #[arg(long = "brokers", env = "KAFKA_BROKERS")]
    pub brokers: String,
    /// The compacted topic the boards are written to.
    #[arg(long, env = "LEADERBOARDS_TOPIC", default_value = "leaderboards")]
    pub state_topic: String,
    /// Campaign definitions (a JSON array); unset: seed 004's campaign on
    /// `--gameplay-topic`.
    #[arg(long, env = "CAMPAIGNS_FILE")]
    pub campaigns_file: Option<PathBuf>,
    /// The spins topic of the default campaign.
    #[arg(long, env = "GAMEPLAY_TOPIC", default_value = "gameplay")]
    pub gameplay_topic: String,
    /// The topic of nation records (Build a Nation boards); empty: none.
    #[arg(
        long = "leaderboards-games-topic",
        env = "LEADERBOARDS_GAMES_TOPIC",
        default_value = ""
    )]
    pub games_topic: String,
    /// Transactional id: one writer at a time (a second instance fences the first).
    #[arg(
        long,
        env = "LEADERBOARDS_TRANSACTIONAL_ID",
        default_value = "leaderboards"
    )]
    pub transactional_id: String,
    /// Token for the admin routes; unset: they are refused.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Replication of the state topic when created.
    #[arg(long, env = "LEADERBOARDS_REPLICATION", default_value_t = 1)]
    pub replication: i32,
    /// `fetch.wait.max.ms` of the input consumer. Apache Kafka answers a
    /// parked fetch as soon as a record is appended, so this bounds only an
    /// idle wait; a short one costs the broker a fetch per wait while idle
    /// (BENCHMARKS.md, "FETCH_WAIT_MAX_MS").
    #[arg(long, env = "FETCH_WAIT_MAX_MS", default_value_t = role::DEFAULT_FETCH_WAIT_MAX_MS)]
    pub fetch_wait_max_ms: u32,
    /// Extra librdkafka settings: `-X key=value`.
    #[arg(short = 'X', value_parser = parse_key_value)]
    pub extra: Vec<(String, String)>,
    /// Where the role's metrics go (the host process's registry).
    #[arg(skip)]
    pub registry: ops::metrics::Registry,
    /// The least time between the starts of two state transactions. Pushes
    /// do not wait for commits, so this only bounds how much applied state
    /// is uncommitted; fewer transactions leave the broker more CPU (see
    /// BENCHMARKS.md, issue 14).
    #[arg(skip = role::COMMIT_INTERVAL)]
    pub commit_interval: std::time::Duration,
}

impl Config {
    /// Defaults for tests and embedding.
    pub fn for_brokers(brokers: impl Into<String>) -> Config {
        Config {
            brokers: brokers.into(),
            state_topic: "leaderboards".into(),
            campaigns_file: None,
            gameplay_topic: "gameplay".into(),
            games_topic: String::new(),
            transactional_id: "leaderboards".into(),
            admin_token: None,
            replication: 1,
            fetch_wait_max_ms: role::DEFAULT_FETCH_WAIT_MAX_MS,
            extra: Vec::new(),
            registry: ops::metrics::Registry::default(),
            commit_interval: role::COMMIT_INTERVAL,
        }
    }

    /// The campaigns: the file's, or seed 004's.
    pub fn campaigns(&self) -> Result<Vec<campaign::CampaignDef>, Error> {
        match &self.campaigns_file {
            Some(path) => Ok(campaign::load(path)?),
            None => Ok(campaign::seed_campaign(&self.gameplay_topic)),
        }
    }
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// Errors of the role.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Definition(#[from] campaign::DefError),
    #[error(transparent)]
    Rules(#[from] board::RulesError),
    #[error("rebuilding the boards: {0}")]
    Restore(String),
    #[error("the leaderboards thread panicked")]
    Panicked,
}

/// The boards shared by the role (writer) and the routes (readers).
#[derive(Clone)]
pub struct Leaderboards {
    boards: Arc<RwLock<Boards>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    admin_token: Option<Arc<str>>,
    /// True once the boards were rebuilt and the sources assigned.
    pub ready: Arc<AtomicBool>,
}

impl Leaderboards {
    pub fn new(boards: Boards, admin_token: Option<String>) -> Leaderboards {
        Leaderboards {
            boards: Arc::new(RwLock::new(boards)),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
            admin_token: admin_token.filter(|t| !t.is_empty()).map(Into::into),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// For `config`: its campaigns and, when set, the nation boards.
    pub fn from_config(config: &Config) -> Result<Leaderboards, Error> {
        let games = Some(config.games_topic.clone()).filter(|t| !t.is_empty());
        let boards = Boards::new(config.campaigns()?, games)?;
        Ok(Leaderboards::new(boards, config.admin_token.clone()))
    }

    /// Reads the boards (never held across an `.await`).
    pub fn read(&self) -> RwLockReadGuard<'_, Boards> {
        self.boards.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Boards> {
        self.boards.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the WebSockets that boards may have changed.
    pub fn notify(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Sets the loop's stop flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs the role until `shutdown` resolves or the loop fails.
pub async fn run(
    config: Config,
    handle: Leaderboards,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    role::create_state_topic(&config).await?;
    let stop = Arc::new(AtomicBool::new(false));
    // Dropped (its runtime shutting down, a test failing) without a
    // shutdown: the loop stops too, instead of keeping the runtime's drop
    // waiting forever on its thread.
    let _guard = StopOnDrop(stop.clone());
    let thread_stop = stop.clone();
    let mut task =
        tokio::task::spawn_blocking(move || role::run_blocking(config, handle, thread_stop));
    tokio::select! {
        result = &mut task => return result.map_err(|_| Error::Panicked)?,
        () = shutdown => {}
    }
    stop.store(true, Ordering::Relaxed);
    task.await.map_err(|_| Error::Panicked)?
}
