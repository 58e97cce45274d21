//! The engine binary: config from flags and env, tracing, wiring.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// As `nation`'s, whose engine it is: with mimalloc P2's answer -> update
/// p50 / p99 went from 2.2 / 44.7 ms to 1.1 / 35.7 ms (BENCHMARKS.md, P1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Build a Nation's authoritative game server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The engine's own settings (topics, batches, transactions, -X ...).
    #[command(flatten)]
    config: engine::Config,
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
    /// address (e.g. 0.0.0.0:8081). The advertised query URL is
    /// `ENGINE_QUERY_URL`, or `http://<this address>` with this host's name
    /// for an unspecified (0.0.0.0) address.
    #[arg(long, env = "ENGINE_HEALTH_ADDR")]
    health_addr: Option<std::net::SocketAddr>,
    /// Ship this process's JSON logs to this topic (created if missing).
    #[arg(long, env = "LOG_TOPIC")]
    log_topic: Option<String>,
    /// Lines the log buffer holds while Kafka is slow (then dropped, counted).
    #[arg(long, env = "LOG_BUFFER", default_value_t = ops::logs::DEFAULT_BUFFER)]
    log_buffer: usize,
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
        let (slot, lock) = claim_slot(&self.config.group_id)?;
        Ok((format!("{}-{slot}", host_name()), Some(lock)))
    }

    /// The configuration of this instance: its transactional id (and
    /// static membership) from the flags or the instance id.
    fn config(&self, instance: &str) -> engine::Config {
        let mut config = self.config.clone();
        let id = self
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("{}-{instance}", config.group_id));
        config.transactional_id = id.clone();
        // A stable id: restarted in place, so a static member too.
        config.group_instance_id = Some(id);
        config
    }
}

fn main() -> anyhow::Result<()> {
    ops::allocator::apply();
    serve()
}

#[tokio::main]
async fn serve() -> anyhow::Result<()> {
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
                    ops::logs::ensure_topic(&args.config.brokers, topic, 3, &args.config.extra)
                        .await?;
                    Some(ops::logs::LogShipper::start(
                        &args.config.brokers,
                        topic,
                        &args.config.extra,
                        args.log_buffer,
                        &config.registry,
                    )?)
                }
                None => None,
            };
            let health = engine::Health::default();
            if let Some(addr) = args.health_addr {
                let bound = serve_health(addr, health.clone(), config.registry.clone()).await?;
                config.query_url = Some(config.query_url.take().unwrap_or_else(|| {
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
