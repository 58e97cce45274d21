//! `localkafka`: a local Apache Kafka broker for a command or in the
//! foreground.
//!
//! - `localkafka run [--data DIR] [--port P] -- CMD ARGS...`: starts a broker
//!   (a temporary folder unless `--data`), runs `CMD` with `KAFKA_BROKERS` set
//!   to it, stops the broker and exits with `CMD`'s status. `make test` runs
//!   the whole test suite this way, on one broker.
//! - `localkafka serve [--data DIR] [--port P]`: starts a broker and keeps it
//!   until SIGINT or SIGTERM (for scripts and benches).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};
use localkafka::{LocalKafka, Spec};

#[derive(Parser)]
#[command(
    name = "localkafka",
    version,
    about = "A local Apache Kafka broker (KRaft, one node)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// Data folder (kept); unset: a temporary folder deleted at the end.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Client port; 0: a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Extra broker settings, `key=value`.
    #[arg(short = 'X')]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command against a fresh broker.
    Run {
        #[command(flatten)]
        broker: BrokerArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Keep a broker in the foreground until SIGINT or SIGTERM.
    Serve {
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

fn start(args: &BrokerArgs) -> anyhow::Result<LocalKafka> {
    let mut spec = match &args.data {
        Some(dir) => Spec::single(dir),
        None => Spec::single(
            std::env::temp_dir().join(format!("localkafka-{}", uuid::Uuid::new_v4().simple())),
        ),
    }
    .port(args.port);
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("expected key=value, got {kv:?}"))?;
        spec = spec.set(k, v);
    }
    let broker = LocalKafka::start(spec)?;
    eprintln!(
        "[localkafka] Apache Kafka (KRaft, 1 node) answered in {:.1} s, {} MiB resident, data in {}",
        broker.started_in().as_secs_f64(),
        broker.rss_bytes().unwrap_or(0) / (1024 * 1024),
        broker.dir().display()
    );
    println!("broker: {}", broker.bootstrap());
    Ok(broker)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run { broker, command } => run(&broker, &command),
        Cmd::Serve { broker } => serve(&broker),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("localkafka: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &BrokerArgs, command: &[String]) -> anyhow::Result<ExitCode> {
    let mut broker = start(args)?;
    let status = Command::new(&command[0])
        .args(&command[1..])
        .env("KAFKA_BROKERS", broker.bootstrap())
        .status();
    eprintln!(
        "[localkafka] stopping the broker ({} MiB resident at the end)",
        broker.rss_bytes().unwrap_or(0) / (1024 * 1024)
    );
    broker.stop();
    if args.data.is_none() {
        let _ = std::fs::remove_dir_all(broker.dir());
    }
    let status = status.map_err(|e| anyhow::anyhow!("run {}: {e}", command[0]))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code.clamp(1, 255) as u8),
        None => ExitCode::from(1),
    })
}

fn serve(args: &BrokerArgs) -> anyhow::Result<ExitCode> {
    let mut broker = start(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    broker.stop();
    if args.data.is_none() {
        let _ = std::fs::remove_dir_all(broker.dir());
    }
    Ok(ExitCode::SUCCESS)
}
