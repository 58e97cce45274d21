//! The engine binary: config from flags and env, tracing, wiring.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Build a Nation's authoritative game server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    #[arg(long, env = "ACTIONS_TOPIC", default_value = "actions")]
    actions_topic: String,
    #[arg(long, env = "GAMES_TOPIC", default_value = "games")]
    games_topic: String,
    #[arg(long, env = "DLQ_TOPIC", default_value = "actions.dlq")]
    dlq_topic: String,
    /// Partitions of `actions` and `games` (topic creation, game placement).
    #[arg(long, env = "PARTITIONS", default_value_t = 12)]
    partitions: i32,
    #[arg(long, env = "ENGINE_GROUP_ID", default_value = "engine")]
    group_id: String,
    /// This engine instance's stable name, unique among the group's
    /// instances. Defaults to `<host name>-<n>`, n the lowest slot no other
    /// engine of the group holds on this host (a lock file): stable across
    /// restarts in place, distinct for `docker compose up --scale engine=2`
    /// (one host name per container) and for several engines on one host.
    #[arg(long, env = "ENGINE_INSTANCE_ID")]
    instance_id: Option<String>,
    /// The transactional id; defaults to `<group>-<instance id>`. With it the
    /// engine is a static group member (`group.instance.id`, the same
    /// value): a restart fences its predecessor, aborts the transaction it
    /// left open and takes its partitions back at once.
    #[arg(long, env = "ENGINE_TRANSACTIONAL_ID")]
    transactional_id: Option<String>,
    /// Serve `/healthz`, `/readyz` and interactive queries
    /// (`/games/{game_id}`, what bridges ask for a game's state) on this
    /// address (e.g. 0.0.0.0:8081).
    #[arg(long, env = "ENGINE_HEALTH_ADDR")]
    health_addr: Option<std::net::SocketAddr>,
    /// The URL bridges reach this engine's queries at, advertised through the
    /// consumer group. Default: `http://<ENGINE_HEALTH_ADDR>`, with this
    /// host's name for an unspecified (0.0.0.0) address.
    #[arg(long, env = "ENGINE_QUERY_URL")]
    query_url: Option<String>,
    /// How long an action id is remembered: a retry within it changes
    /// nothing; an id older than it is refused as `expired`.
    #[arg(long, env = "ENGINE_DEDUP_WINDOW_MS", default_value_t = engine::seen::DEFAULT_WINDOW_MS)]
    dedup_window_ms: u64,
    /// How long a restore may go without progress before it is retried.
    #[arg(long, env = "ENGINE_RESTORE_STALL_MS", default_value_t = 10_000)]
    restore_stall_ms: u64,
    /// `fetch.wait.max.ms` of the actions consumer.
    #[arg(long, env = "FETCH_WAIT_MAX_MS")]
    fetch_wait_max_ms: Option<u32>,
    /// Most records per transaction.
    #[arg(long, env = "ENGINE_MAX_BATCH")]
    max_batch: Option<usize>,
    /// Ship this process's JSON logs to this topic (created if missing).
    #[arg(long, env = "LOG_TOPIC")]
    log_topic: Option<String>,
    /// Lines the log buffer holds while Kafka is slow (then dropped, counted).
    #[arg(long, env = "LOG_BUFFER", default_value_t = ops::logs::DEFAULT_BUFFER)]
    log_buffer: usize,
    /// Do not create missing topics.
    #[arg(long)]
    no_create_topics: bool,
    /// Wake librdkafka before each commit (~3 ms transactions instead of
    /// ~100 ms); for Apache Kafka, see `Config::eager_flush`.
    #[arg(long, env = "ENGINE_EAGER_FLUSH", default_value_t = false, action = clap::ArgAction::Set)]
    eager_flush: bool,
    /// Streaming transactions committed every N ms (0: one per batch); see
    /// `Config::commit_interval_ms`.
    #[arg(long, env = "ENGINE_COMMIT_INTERVAL_MS", default_value_t = engine::DEFAULT_COMMIT_INTERVAL_MS)]
    commit_interval_ms: u64,
    /// Extra librdkafka setting, as kcat: `-X key=value` (repeatable).
    #[arg(short = 'X', value_parser = parse_kv)]
    extra: Vec<(String, String)>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the engine (the default).
    Run,
    /// Rebuild every game from `actions` and compare with `games`; exits 1 if
    /// any game disagrees.
    Replay,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// This host's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The lowest slot `n` of `group` on this host that no other engine holds,
/// and its lock (held for the life of the process; the kernel releases it
/// when the process dies, even by `kill -9`).
fn claim_slot(group: &str) -> anyhow::Result<(u32, std::fs::File)> {
    let dir = std::env::temp_dir().join("build-a-nation-engines");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    for n in 0..1024 {
        let path = dir.join(format!("{group}.{n}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        if file.try_lock().is_ok() {
            return Ok((n, file));
        }
    }
    anyhow::bail!("no free engine slot in {}", dir.display())
}

impl Args {
    /// The instance id and, when it was chosen here, the lock that keeps it
    /// ours.
    fn instance(&self) -> anyhow::Result<(String, Option<std::fs::File>)> {
        if let Some(id) = &self.instance_id {
            return Ok((id.clone(), None));
        }
        let (slot, lock) = claim_slot(&self.group_id)?;
        Ok((format!("{}-{slot}", host_name()), Some(lock)))
    }

    fn config(&self, instance: &str) -> engine::Config {
        let mut config = engine::Config::new(&self.brokers);
        config.actions_topic = self.actions_topic.clone();
        config.games_topic = self.games_topic.clone();
        config.dlq_topic = self.dlq_topic.clone();
        config.partitions = self.partitions;
        config.group_id = self.group_id.clone();
        let id = self
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("{}-{instance}", self.group_id));
        config.transactional_id = id.clone();
        // A stable id: restarted in place, so a static member too.
        config.group_instance_id = Some(id);
        config.restore_stall_ms = self.restore_stall_ms;
        config.dedup_window_ms = self.dedup_window_ms;
        if let Some(ms) = self.fetch_wait_max_ms {
            config.fetch_wait_max_ms = ms;
        }
        if let Some(n) = self.max_batch {
            config.max_batch = n;
        }
        config.create_topics = !self.no_create_topics;
        config.extra = self.extra.clone();
        config.eager_flush = self.eager_flush;
        config.commit_interval_ms = self.commit_interval_ms;
        config
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    engine::init_tracing();
    let mut args = Args::parse();
    match args.command.take().unwrap_or(Command::Run) {
        Command::Run => {
            let (instance, _slot) = args.instance()?;
            let config = args.config(&instance);
            tracing::info!(instance, transactional_id = %config.transactional_id, "engine instance");
            let mut config = config;
            let _shipper = match &args.log_topic {
                Some(topic) => {
                    ops::logs::ensure_topic(&args.brokers, topic, 3, &args.extra).await?;
                    Some(ops::logs::LogShipper::start(
                        &args.brokers,
                        topic,
                        &args.extra,
                        args.log_buffer,
                        &config.registry,
                    )?)
                }
                None => None,
            };
            let health = engine::Health::default();
            if let Some(addr) = args.health_addr {
                let bound = serve_health(addr, health.clone(), config.registry.clone()).await?;
                config.query_url = Some(args.query_url.clone().unwrap_or_else(|| {
                    if bound.ip().is_unspecified() {
                        format!("http://{}:{}", host_name(), bound.port())
                    } else {
                        format!("http://{bound}")
                    }
                }));
            }
            engine::run_with_health(config, engine::shutdown_signal(), health)
                .await
                .context("engine")?
        }
        Command::Replay => {
            let config = args.config("replay");
            let report = tokio::task::spawn_blocking(move || engine::replay(&config))
                .await
                .context("replay thread")?
                .context("replay")?;
            println!(
                "actions: {}, dead letters: {}, games agreeing: {}, disagreeing: {}, missing from games: {}",
                report.actions,
                report.dead_letters,
                report.agree,
                report.disagree.len(),
                report.missing.len()
            );
            for (game, replayed, stored) in &report.disagree {
                println!("game {game}: replayed version {replayed}, games topic version {stored}");
            }
            for game in &report.missing {
                println!("game {game}: no update on the games topic");
            }
            if !report.ok() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Serves `/healthz` (the process is up), `/readyz` (the engine serves:
/// 503 with the reason while it starts, restores or recovers, or after it
/// stopped), `/metrics` and the interactive queries
/// ([`engine::query::router`]) on `addr`, on a task of its own; the
/// address bound.
async fn serve_health(
    addr: std::net::SocketAddr,
    health: engine::Health,
    registry: ops::metrics::Registry,
) -> anyhow::Result<std::net::SocketAddr> {
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Json;
    let queries = engine::query::router(health.store());
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    match health.check() {
                        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json::json!({"error": "not_ready", "detail": why})),
                        ),
                    }
                }
            }),
        )
        .merge(queries)
        .merge(ops::metrics::router(registry));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "health and query endpoints");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("health endpoints: {e}");
        }
    });
    Ok(addr)
}
