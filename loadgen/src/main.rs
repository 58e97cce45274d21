//! `loadgen`: seed 004's spin producer and consumer, and simulated players
//! through the bridge (see the library's docs).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load for Build a Nation.
#[derive(Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seed 004's producer: spin events to a topic.
    Produce(loadgen::produce::ProduceArgs),
    /// Seed 004's consumer: print what arrives on a topic.
    Consume(loadgen::consume::ConsumeArgs),
    /// Simulated players through the bridge, with latency histograms.
    Play(loadgen::play::PlayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    match cli.command {
        Command::Produce(args) => {
            loadgen::produce::run(&args, &mut out).await?;
        }
        Command::Consume(args) => {
            loadgen::consume::run(&args, &mut out).await?;
        }
        Command::Play(args) => {
            let report = loadgen::play::run(&args).await?;
            if args.json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                println!();
            } else {
                loadgen::play::print_table(&report, &mut out)?;
            }
            if !report.slo_met {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
