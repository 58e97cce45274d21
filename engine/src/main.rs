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
    /// Defaults to a fresh `engine-<uuid>`. A stable id also makes the engine
    /// a static group member (`group.instance.id`): a restart fences its
    /// predecessor and takes its partitions back at once.
    #[arg(long, env = "ENGINE_TRANSACTIONAL_ID")]
    transactional_id: Option<String>,
    /// `fetch.wait.max.ms` of the actions consumer.
    #[arg(long, env = "FETCH_WAIT_MAX_MS")]
    fetch_wait_max_ms: Option<u32>,
    /// Most records per transaction.
    #[arg(long, env = "ENGINE_MAX_BATCH")]
    max_batch: Option<usize>,
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

impl Args {
    fn config(&self) -> engine::Config {
        let mut config = engine::Config::new(&self.brokers);
        config.actions_topic = self.actions_topic.clone();
        config.games_topic = self.games_topic.clone();
        config.dlq_topic = self.dlq_topic.clone();
        config.partitions = self.partitions;
        config.group_id = self.group_id.clone();
        if let Some(id) = &self.transactional_id {
            config.transactional_id = id.clone();
            // A stable id: restarted in place, so a static member too.
            config.group_instance_id = Some(id.clone());
        }
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
    let args = Args::parse();
    let config = args.config();
    match args.command.unwrap_or(Command::Run) {
        Command::Run => engine::run(config, engine::shutdown_signal())
            .await
            .context("engine")?,
        Command::Replay => {
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
