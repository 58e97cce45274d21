//! `lake`: config, tracing and wiring; the work is in the library.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lake::{ExportConfig, Location, Mode, RollPolicy};

/// The Parquet lake: every action exported from Kafka exactly once, and the
/// seed's analytics on it.
#[derive(Parser, Debug)]
#[command(name = "lake", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Export `actions` and the engine's outcomes from `games` to Parquet.
    Export(ExportArgs),
    /// Print seed 002's reports: events by event_type, players by Host.
    Report(ReportArgs),
    /// Run SQL over the tables: events, purchases, outcomes, etl_meta,
    /// buffer_meta, bad_records (Hive columns: date, event_type).
    #[cfg(feature = "query")]
    Query(QueryArgs),
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// A folder or s3://bucket/prefix (AWS_* variables configure S3; gs://
    /// and az:// take GOOGLE_* and AZURE_*).
    #[arg(long)]
    to: String,
    /// Export what is there now, then exit.
    #[arg(long)]
    once: bool,
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    #[arg(long, env = "ACTIONS_TOPIC", default_value = "actions")]
    actions_topic: String,
    #[arg(long, env = "GAMES_TOPIC", default_value = "games")]
    games_topic: String,
    /// Do not export the engine's outcomes.
    #[arg(long)]
    no_outcomes: bool,
    /// Cut a partition's batch at this many records.
    #[arg(long, env = "LAKE_MAX_ROWS", default_value_t = 200_000)]
    max_rows: usize,
    /// ... or at this many bytes of records held.
    #[arg(long, env = "LAKE_MAX_BYTES", default_value_t = 64 << 20)]
    max_bytes: usize,
    /// ... or when its first record is this old (ms).
    #[arg(long, env = "LAKE_MAX_AGE_MS", default_value_t = 30_000)]
    max_age_ms: u64,
    /// Cap on bytes held by all open batches; past it the largest is cut.
    #[arg(long, env = "LAKE_MAX_BUFFERED_BYTES", default_value_t = 256 << 20)]
    max_buffered_bytes: usize,
    /// Seconds between progress lines (records consumed, per second and
    /// written; lag per partition).
    #[arg(long, default_value_t = 5)]
    progress_secs: u64,
    /// Following: how often (ms) to look for partitions added to the topics;
    /// new ones are exported from their start, with no restart.
    #[arg(long, env = "LAKE_PARTITION_CHECK_MS", default_value_t = 10_000)]
    partition_check_ms: u64,
    /// Any librdkafka setting, as kcat takes it: -X key=value.
    #[arg(short = 'X', value_parser = parse_key_value)]
    extra: Vec<(String, String)>,
    /// Serve `/metrics` (consumer lag per partition, ...) on this address.
    #[arg(long, env = "LAKE_METRICS_BIND")]
    metrics_bind: Option<std::net::SocketAddr>,
    /// Ship this process's JSON logs to this topic (created if missing).
    #[arg(long, env = "LOG_TOPIC")]
    log_topic: Option<String>,
    /// The Parquet files' compression (BENCHMARKS.md, "Lake", compares them).
    #[arg(long, env = "LAKE_COMPRESSION", value_enum, default_value_t = lake::store::Codec::Zstd)]
    compression: lake::store::Codec,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// A folder or s3://bucket/prefix.
    #[arg(long)]
    from: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "query")]
#[derive(Args, Debug)]
struct QueryArgs {
    /// A folder or s3:// (gs://, az://) bucket/prefix.
    #[arg(long)]
    from: String,
    /// The SQL, e.g. "SELECT event_type, count(*) FROM events GROUP BY 1".
    /// Quote mixed-case columns: "Host", "User-Agent".
    #[arg(long)]
    sql: String,
    /// Print a JSON array of rows instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn main() -> anyhow::Result<()> {
    ops::init_tracing_to(std::io::stderr);
    match Cli::parse().command {
        Command::Export(args) => export(args),
        Command::Report(args) => report(args),
        #[cfg(feature = "query")]
        Command::Query(args) => query(args),
    }
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    lake::store::set_codec(args.compression);
    let mut config = ExportConfig::new(args.brokers);
    config.actions_topic = args.actions_topic;
    config.games_topic = (!args.no_outcomes).then_some(args.games_topic);
    config.mode = if args.once { Mode::Once } else { Mode::Follow };
    config.roll = RollPolicy {
        max_rows: args.max_rows.max(1),
        max_bytes: args.max_bytes.max(1),
        max_age: Duration::from_millis(args.max_age_ms),
    };
    config.max_buffered_bytes = args.max_buffered_bytes.max(1);
    config.progress_every = Duration::from_secs(args.progress_secs.max(1));
    config.partition_check = Duration::from_millis(args.partition_check_ms.max(1));
    config.extra = args.extra;
    let _shipper = match &args.log_topic {
        Some(topic) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("runtime")?;
            rt.block_on(ops::logs::ensure_topic(
                &config.brokers,
                topic,
                3,
                &config.extra,
            ))?;
            Some(ops::logs::LogShipper::start(
                &config.brokers,
                topic,
                &config.extra,
                ops::logs::DEFAULT_BUFFER,
                &config.registry,
            )?)
        }
        None => None,
    };
    if let Some(addr) = args.metrics_bind {
        serve_metrics(addr, config.registry.clone())?;
    }
    let lake = Location::open(&args.to)?;
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_watch(stop.clone())?;
    let started = std::time::Instant::now();
    let summary = lake::export(&config, &lake, &stop)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "exported {} records in {} batches ({} bytes of Parquet) in {secs:.2} s",
        summary.records, summary.batches, summary.bytes
    );
    Ok(())
}

/// Ctrl-C or SIGTERM sets `stop`: open batches are written, then the
/// process exits.
/// Serves `/metrics` on `addr` from a thread of its own (the export is
/// blocking).
fn serve_metrics(
    addr: std::net::SocketAddr,
    registry: ops::metrics::Registry,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("metrics runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("bind {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics endpoint");
    std::thread::spawn(move || {
        rt.block_on(async move {
            if let Err(e) = axum::serve(listener, ops::metrics::router(registry)).await {
                tracing::error!("metrics endpoint: {e}");
            }
        })
    });
    Ok(())
}

fn spawn_signal_watch(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("cannot watch SIGTERM: {e}");
                        let _ = tokio::signal::ctrl_c().await;
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping: writing open batches");
            stop.store(true, Ordering::SeqCst);
        });
    });
    Ok(())
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    let lake = Location::open_existing(&args.from)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    let report = rt.block_on(lake::report(&lake))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

#[cfg(feature = "query")]
fn query(args: QueryArgs) -> anyhow::Result<()> {
    let lake = Location::open_existing(&args.from)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    let batches = rt.block_on(lake::query::query(&lake, &args.sql))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&lake::query::to_json(&batches)?)?
        );
    } else {
        println!("{}", lake::query::to_table(&batches)?);
    }
    Ok(())
}
