//! `nation`: the whole game in one process, what `make run` starts.
//!
//! With `KAFKA_BROKERS` unset it first starts Apache Kafka's own broker
//! (`localkafka`) with its data in `NATION_DATA/kafka` (default
//! `.data/kafka`), keeps the player-token secret beside it, then runs the
//! bridge with the engine in-process against it. Stop it with Ctrl-C (the
//! game stops first, then the broker) or `kill -9` of the process group:
//! either way the next start finds every nation as it was.
//!
//! With `KAFKA_BROKERS` set it runs the bridge and the engine against that
//! cluster.
//!
//! Given a lake (`LAKE_DIR`; `make run` sets `NATION_DATA/lake`) it keeps it
//! up to date (unless `WITH_LAKE=false`) and serves its reports on
//! `/api/analytics/{report}`.

/// mimalloc, not glibc's malloc: under `wrk` glibc's took a fifth of the
/// bridge's CPU, with its arena locks contended between the runtime's
/// workers and librdkafka's threads; with mimalloc the bridge's CPU per
/// answered action fell from 48-59 us to 34-37 us (BENCHMARKS.md, P1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use localkafka::{LocalKafka, Spec};

/// Build a Nation: the whole game (local Apache Kafka, bridge, engine,
/// leaderboards, lake exporter).
#[derive(Parser)]
#[command(name = "nation", version)]
struct Cli {
    /// Where the local broker keeps its data and the token secret lives.
    #[arg(long, env = "NATION_DATA", default_value = ".data")]
    data_dir: PathBuf,
    /// The local broker's client port (used when `KAFKA_BROKERS` is unset).
    #[arg(long, env = "KAFKA_PORT", default_value_t = 9092)]
    kafka_port: u16,
    #[command(flatten)]
    game: nation::Config,
}

/// The engine's transactional id when none is given: stable, so a restarted
/// game fences its crashed predecessor and aborts its open transaction at
/// once instead of waiting for `transaction.timeout.ms`.
const STABLE_TRANSACTIONAL_ID: &str = "nation-engine";

fn main() -> ExitCode {
    ops::allocator::apply();
    ops::init_tracing();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make run: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut game = cli.game;
    let config = &mut game.bridge;
    // The game's port first: failing here costs no broker start.
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} ({e}): stop what uses it, or set BIND=127.0.0.1:<port>",
                config.bind
            )
        })?;

    let mut broker = None;
    if config.brokers.is_none() {
        let data = absolute(&cli.data_dir);
        std::fs::create_dir_all(&data)?;
        if config.token_secret.is_none() {
            config.token_secret = Some(token_secret(&data)?);
        }
        let spec = Spec::single(data.join("kafka")).port(cli.kafka_port);
        println!(
            "starting Apache Kafka (data in {})...",
            data.join("kafka").display()
        );
        let local = tokio::task::spawn_blocking(move || LocalKafka::start(spec)).await??;
        println!("broker: {}", local.bootstrap());
        println!(
            "data: {} (players' tokens stay valid across restarts; wipe everything: make wipe)",
            data.display()
        );
        println!(
            "Apache Kafka answered in {:.1} s, {} MiB resident",
            local.started_in().as_secs_f64(),
            local.rss_bytes().unwrap_or(0) / (1024 * 1024)
        );
        config.brokers = Some(local.bootstrap().to_string());
        broker = Some(local);
    }
    if let Some(lake) = &game.lake.lake {
        let verb = if game.lake.with_lake {
            "kept up to date"
        } else {
            "read only"
        };
        println!(
            "lake: {lake} ({verb}; `lake report --from {lake}`, /api/analytics/by_event_type)"
        );
    }
    if game.engine.engine_transactional_id.is_none() {
        game.engine.engine_transactional_id = Some(STABLE_TRANSACTIONAL_ID.to_string());
    }
    println!(
        "Build a Nation is up: open http://{}/ in a browser",
        listener.local_addr()?
    );
    let _ = std::io::stdout().flush();
    let served = nation::run(game, listener, ops::cancel_on_signal()).await;
    if let Some(mut broker) = broker {
        println!("stopping Apache Kafka...");
        tokio::task::spawn_blocking(move || broker.stop()).await?;
    }
    served?;
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The secret that signs player tokens, kept in `data/token-secret` (made
/// once, readable by its owner only) so saved tokens survive restarts.
fn token_secret(data: &Path) -> anyhow::Result<String> {
    use base64::Engine;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data.join("token-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_string();
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    let bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(secret)
}
