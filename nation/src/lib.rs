//! # nation: the roles composed into one process
//!
//! The bridge and the engine are separate crates that do not know each
//! other; this crate puts them in one process (what `make run` starts, and
//! what the cross-crate tests start): topics created by the engine's own
//! rules, the engine's loop on its thread, the leaderboards role (its
//! routes on the bridge's port), its interactive queries served on
//! the bridge's port under `/internal/engine` (advertised to every bridge
//! through the engines' consumer group), its readiness in the bridge's
//! `/readyz`, and one [`ops::CancellationToken`] for the process: a signal
//! or an engine that cannot go on cancels it, every role stops, and the
//! process exits non-zero if the engine failed (never a bridge that answers
//! 202 for actions nobody will apply).
//!
//! With a lake (`--lake` / `LAKE_DIR`, see [`lake_role`]) it also keeps the
//! lake up to date (`lake export` following `actions` and `games`) and
//! serves its reports on `GET /api/analytics/{report}`; a failing exporter
//! turns `/readyz` red and is restarted, the game goes on.

pub mod lake_role;

use std::sync::Arc;

use clap::{ArgAction, Args, Parser};

/// Where the in-process engine's queries are served on the bridge's port.
pub const ENGINE_QUERY_PATH: &str = "/internal/engine";

/// The in-process engine's settings.
#[derive(Args, Clone, Debug)]
pub struct EngineFlags {
    /// Run the engine in this process (off: a bridge only, for engines
    /// running elsewhere).
    #[arg(long, env = "WITH_ENGINE", default_value_t = true, action = ArgAction::Set)]
    pub with_engine: bool,
    /// The in-process engine's transactional id (and `group.instance.id`).
    /// Unset: a fresh one per start (several in-process engines never fence
    /// each other). `make run` sets a stable one, so a restarted game fences
    /// and aborts what its crashed predecessor left open at once.
    #[arg(long, env = "ENGINE_TRANSACTIONAL_ID")]
    pub engine_transactional_id: Option<String>,
    /// The in-process engine's `eager_flush` (see the engine's docs).
    #[arg(long, env = "ENGINE_EAGER_FLUSH", default_value_t = false, action = ArgAction::Set)]
    pub engine_eager_flush: bool,
    /// The in-process engine's `commit_interval_ms`: 0 for one transaction
    /// per batch, N for streaming transactions committed every N ms.
    #[arg(long, env = "ENGINE_COMMIT_INTERVAL_MS", default_value_t = engine::DEFAULT_COMMIT_INTERVAL_MS)]
    pub engine_commit_interval_ms: u64,
    /// The in-process engine's `txn_producers`: transactional producers
    /// taking turns (1 or 2).
    #[arg(long, env = "ENGINE_TXN_PRODUCERS", default_value_t = engine::DEFAULT_TXN_PRODUCERS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=engine::kafka::MAX_TXN_PRODUCERS as u64))]
    pub engine_txn_producers: usize,
    /// The in-process engine's `background_commit`: a due transaction
    /// commits on a thread of its own while the next one takes actions.
    #[arg(long, env = "ENGINE_BACKGROUND_COMMIT", default_value_t = engine::DEFAULT_BACKGROUND_COMMIT, action = ArgAction::Set)]
    pub engine_background_commit: bool,
    /// The in-process engine hands each step to this process's WebSocket
    /// watchers as it sends it to `games`, instead of their waiting for the
    /// bridge to read it back from the broker (what a `read_uncommitted`
    /// reader sees a few ms later; `engine::StepListener` says why it is
    /// safe). Games of partitions this engine does not own still come
    /// through `games`, as do all of them with `false`.
    #[arg(long, env = "LOCAL_UPDATES", default_value_t = true, action = ArgAction::Set)]
    pub local_updates: bool,
    /// Create missing topics at start-up (the engine's rules: see
    /// `engine::create_topics`).
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = ArgAction::Set)]
    pub create_topics: bool,
    /// Run the leaderboards role in this process (boards of the games'
    /// nations and seed 004's campaign on `GAMEPLAY_TOPIC`), its routes on
    /// the bridge's port.
    #[arg(long, env = "WITH_LEADERBOARDS", default_value_t = true, action = ArgAction::Set)]
    pub with_leaderboards: bool,
    /// Campaign definitions for the leaderboards (a JSON array); unset:
    /// seed 004's campaign.
    #[arg(long, env = "CAMPAIGNS_FILE")]
    pub campaigns_file: Option<std::path::PathBuf>,
    /// The spins topic of seed 004's campaign.
    #[arg(long, env = "GAMEPLAY_TOPIC", default_value = "gameplay")]
    pub gameplay_topic: String,
}

/// Everything one game process reads from flags and the environment.
#[derive(Parser, Clone, Debug)]
#[command(name = "nation", version)]
// The bridge's flags already form the group `Config`.
#[group(skip)]
pub struct Config {
    #[command(flatten)]
    pub bridge: bridge::Config,
    #[command(flatten)]
    pub engine: EngineFlags,
    #[command(flatten)]
    pub lake: lake_role::LakeFlags,
}

impl Config {
    /// Every flag at its default, against `brokers`.
    pub fn for_brokers(brokers: impl Into<String>) -> Config {
        let mut config = Config::parse_from(["nation"]);
        config.bridge.brokers = Some(brokers.into());
        config
    }

    /// The in-process engine's configuration.
    pub fn engine_config(&self, brokers: &str) -> engine::Config {
        let b = &self.bridge;
        let e = &self.engine;
        let mut config = engine::Config::new(brokers);
        config.actions_topic = b.actions_topic.clone();
        config.games_topic = b.games_topic.clone();
        config.dlq_topic = format!("{}.dlq", b.actions_topic);
        config.partitions = b.partitions;
        config.create_topics = false; // done before anything starts
        config.group_id = b.engine_group.clone();
        if let Some(id) = &e.engine_transactional_id {
            config.transactional_id = id.clone();
            config.group_instance_id = Some(id.clone());
        }
        config.eager_flush = e.engine_eager_flush;
        config.commit_interval_ms = e.engine_commit_interval_ms;
        config.txn_producers = e.engine_txn_producers;
        config.background_commit = e.engine_background_commit;
        // One `FETCH_WAIT_MAX_MS` for the game's consumers (the engine's of
        // `actions`, the bridge's of `games`, the leaderboards').
        config.fetch_wait_max_ms = b.fetch_wait_max_ms;
        config.extra = b.extra.clone();
        config.schema_registry_url = b.schema_registry_url.clone();
        config
    }

    /// The in-process leaderboards role's configuration: its compacted
    /// topic and transactional id follow the `games` topic (one writer per
    /// game deployment; a restarted process fences its predecessor).
    pub fn leaderboards_config(&self, brokers: &str) -> leaderboards::Config {
        let b = &self.bridge;
        let e = &self.engine;
        let mut config = leaderboards::Config::for_brokers(brokers);
        config.games_topic = b.games_topic.clone();
        config.state_topic = format!("{}.leaderboards", b.games_topic);
        config.transactional_id = format!("leaderboards-{}", b.games_topic);
        config.gameplay_topic = e.gameplay_topic.clone();
        config.campaigns_file = e.campaigns_file.clone();
        config.admin_token = b.admin_token.clone();
        config.fetch_wait_max_ms = b.fetch_wait_max_ms;
        config.extra = b.extra.clone();
        config
    }

    /// The in-process exporter's configuration: the game's topics, follow
    /// mode, batches cut at `LAKE_MAX_AGE_MS`, new partitions looked for
    /// every `LAKE_PARTITION_CHECK_MS`, progress every minute, files
    /// compressed with `LAKE_COMPRESSION`.
    pub fn lake_config(&self, brokers: &str) -> lake::ExportConfig {
        let b = &self.bridge;
        let mut config = lake::ExportConfig::new(brokers);
        config.actions_topic = b.actions_topic.clone();
        config.games_topic = Some(b.games_topic.clone());
        config.mode = lake::Mode::Follow;
        config.roll.max_age = std::time::Duration::from_millis(self.lake.lake_max_age_ms.max(1));
        config.progress_every = std::time::Duration::from_secs(60);
        config.partition_check =
            std::time::Duration::from_millis(self.lake.lake_partition_check_ms.max(1));
        config.extra = b.extra.clone();
        lake::store::set_codec(self.lake.lake_compression);
        config
    }
}

/// Why the process stopped.
#[derive(Debug, thiserror::Error)]
pub enum NationError {
    #[error("no Kafka brokers configured")]
    NoBrokers,
    #[error("engine: {0}")]
    Engine(#[from] engine::EngineError),
    #[error("bridge: {0}")]
    Bridge(#[from] bridge::BridgeError),
    #[error("leaderboards: {0}")]
    Leaderboards(String),
    #[error("lake: {0}")]
    Lake(#[from] lake::LakeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the game's roles on `listener` until `cancel` is cancelled or the
/// engine fails (which cancels it too).
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    cancel: ops::CancellationToken,
) -> Result<(), NationError> {
    let brokers = config
        .bridge
        .brokers
        .clone()
        .ok_or(NationError::NoBrokers)?;
    let mut engine_config = config
        .engine
        .with_engine
        .then(|| config.engine_config(&brokers));
    if let Some(engine_config) = &engine_config {
        // Refuse impossible settings before anything starts.
        engine_config.validate()?;
    }
    if config.engine.create_topics {
        let mut topics = config.engine_config(&brokers);
        topics.create_topics = true;
        engine::create_topics(&topics).await?;
    }
    // One registry for every role of the process: the bridge's `/metrics`
    // shows them all.
    let registry = ops::metrics::Registry::default();
    let mut extras = bridge::Extras {
        registry: Some(registry.clone()),
        ..bridge::Extras::default()
    };
    // Every role's readiness; `/readyz` is red while any says why.
    let mut ready: Vec<bridge::ReadyCheck> = Vec::new();
    let mut engine_task = None;
    if let Some(mut engine_config) = engine_config.take() {
        engine_config.registry = registry.clone();
        if config.engine.local_updates {
            let hub: Arc<std::sync::OnceLock<Arc<bridge::games::GamesHub>>> = Arc::default();
            extras.hub = Some(hub.clone());
            engine_config.on_step = Some(engine::StepListener(Arc::new(move |delta| {
                if let Some(hub) = hub.get() {
                    hub.ingest(delta);
                }
            })));
        }
        let health = engine::Health::default();
        engine_config.query_url = Some(query_url(listener.local_addr()?));
        extras.routes = Some(
            axum::Router::new().nest(ENGINE_QUERY_PATH, engine::query::router(health.store())),
        );
        let health_check = health.clone();
        ready.push(Arc::new(move || {
            health_check.check().map_err(|why| format!("engine: {why}"))
        }));
        let cancel_all = cancel.clone();
        let stop = cancel.clone();
        engine_task = Some(tokio::spawn(async move {
            let result = engine::run_with_health(
                engine_config,
                async move { stop.cancelled().await },
                health,
            )
            .await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "the engine stopped: stopping the process");
                cancel_all.cancel();
            }
            result
        }));
    }
    let mut boards_task = None;
    if config.engine.with_leaderboards {
        let mut boards_config = config.leaderboards_config(&brokers);
        boards_config.registry = registry.clone();
        let handle = leaderboards::Leaderboards::from_config(&boards_config)
            .map_err(|e| NationError::Leaderboards(e.to_string()))?;
        add_routes(&mut extras, leaderboards::router(handle.clone()));
        extras.openapi.push(leaderboards::http::openapi_paths);
        let stop = cancel.clone();
        boards_task = Some(tokio::spawn(async move {
            // The boards are not the game: a failing role is logged, the
            // game goes on (its routes answer from what was built).
            if let Err(e) =
                leaderboards::run(boards_config, handle, async move { stop.cancelled().await })
                    .await
            {
                tracing::error!(error = %e, "the leaderboards role stopped");
            }
        }));
    }
    let mut lake_tasks = Vec::new();
    if let Some(location) = &config.lake.lake {
        let lake = lake::Location::open(location)?;
        let analytics = lake::Analytics::default();
        add_routes(&mut extras, lake::analytics::router(analytics.clone()));
        extras.openapi.push(lake::analytics::openapi_paths);
        let every = std::time::Duration::from_millis(config.lake.lake_refresh_ms.max(1));
        let stop = cancel.clone();
        lake_tasks.push(tokio::spawn(lake::analytics::refresh_loop(
            lake.clone(),
            analytics,
            every,
            async move { stop.cancelled().await },
        )));
        if config.lake.with_lake {
            let health = lake_role::ExporterHealth::default();
            let health_check = health.clone();
            ready.push(Arc::new(move || health_check.check()));
            tracing::info!(lake = %lake.display, "exporting to the lake");
            lake_tasks.push(tokio::spawn(lake_role::run_exporter(
                config.lake_config(&brokers),
                lake,
                health,
                cancel.clone(),
            )));
        }
    }
    if !ready.is_empty() {
        extras.ready = Some(Arc::new(move || ready.iter().try_for_each(|check| check())));
    }
    let served = bridge::run_with(config.bridge, listener, cancel.clone(), extras).await;
    // Whatever ended the bridge ends the other roles too.
    cancel.cancel();
    for task in lake_tasks {
        // The exporter writes its open batches before it returns.
        let _ = task.await;
    }
    if let Some(task) = boards_task {
        let _ = task.await;
    }
    if let Some(task) = engine_task {
        match task.await {
            Ok(result) => result?,
            Err(e) => {
                tracing::error!(error = %e, "engine task failed");
                return Err(engine::EngineError::Panicked.into());
            }
        }
    }
    served?;
    Ok(())
}

/// Merges a role's routes into what the bridge serves.
fn add_routes(extras: &mut bridge::Extras, routes: axum::Router) {
    extras.routes = Some(match extras.routes.take() {
        Some(r) => r.merge(routes),
        None => routes,
    });
}

/// Where bridges reach the in-process engine's queries: the bridge's own
/// address (this host's name when it listens on every interface).
fn query_url(addr: std::net::SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        hostname()
    } else {
        addr.ip().to_string()
    };
    format!("http://{host}:{}{ENGINE_QUERY_PATH}", addr.port())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::reader::{Assembled, Assembler};
    use shared::{
        ArenaMatch, Fighter, FighterRecord, GameHead, MatchRecord, Nation, NationRecord,
        RejectedAction, Rejection,
    };

    /// What the engine hands to this process's watchers is exactly what the
    /// bridge folds the step's `games` records into.
    #[test]
    fn a_step_handed_over_equals_its_records_read_back() {
        let nation = |player: &str, gold| NationRecord {
            game_id: 7,
            player_id: player.into(),
            version: 12,
            nation: Nation {
                gold,
                ..Nation::default()
            },
        };
        let fighter = |player: &str| FighterRecord {
            game_id: 7,
            player_id: player.into(),
            version: 12,
            fighter: Fighter::default(),
        };
        let step = engine::Step {
            nations: vec![nation("a", 3), nation("b", 9)],
            fighters: vec![fighter("c")],
            arena_match: Some(MatchRecord {
                game_id: 7,
                version: 12,
                arena_match: ArenaMatch::default(),
            }),
            head: GameHead {
                game_id: 7,
                since: 9,
                version: 12,
                changed: 4,
                players: 3,
                applied: vec!["e1".into(), "e2".into()],
                rejected: vec![RejectedAction {
                    event_id: "e3".into(),
                    player_id: "a".into(),
                    reason: Rejection::UnknownPlayer,
                    action: None,
                }],
                actions_offset: Some(41),
                ..GameHead::default()
            },
        };
        let handed = step.delta();
        let mut assembler = Assembler::default();
        let mut read = None;
        for record in step.records() {
            if let Assembled::Delta(delta) = assembler.push(record) {
                read = Some(delta);
            }
        }
        assert_eq!(Some(handed), read);
    }

    #[test]
    fn flags_parse_with_the_bridges() {
        let config =
            Config::parse_from(["nation", "--brokers", "b:9092", "--with-engine", "false"]);
        assert_eq!(config.bridge.brokers.as_deref(), Some("b:9092"));
        assert!(!config.engine.with_engine);
        let engine = Config::for_brokers("b:9092").engine_config("b:9092");
        assert_eq!(engine.group_id, "engine");
    }

    #[test]
    fn the_lake_is_off_unless_located_and_follows_the_games_topics() {
        let config = Config::for_brokers("b:9092");
        assert!(config.lake.lake.is_none(), "no lake unless one is named");
        assert!(config.lake.with_lake);
        let config = Config::parse_from([
            "nation",
            "--lake",
            "/tmp/l",
            "--games-topic",
            "g",
            "--lake-max-age-ms",
            "250",
        ]);
        assert_eq!(config.lake.lake.as_deref(), Some("/tmp/l"));
        let export = config.lake_config("b:9092");
        assert_eq!(export.games_topic.as_deref(), Some("g"));
        assert_eq!(export.mode, lake::Mode::Follow);
        assert_eq!(export.roll.max_age, std::time::Duration::from_millis(250));
    }
}
