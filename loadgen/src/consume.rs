//! `loadgen consume`: seed 004's consumer (`runConsumer.py`): prints what
//! arrives on a topic, to check what was produced.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

/// Flags of `loadgen consume` (the seed's `-t` and `-b`, plus a few to end).
#[derive(clap::Args, Clone, Debug)]
pub struct ConsumeArgs {
    /// Topic to read.
    #[arg(short = 't', long = "topic", default_value = "gameplay")]
    pub topic: String,
    /// Bootstrap servers.
    #[arg(
        short = 'b',
        long = "bootstrap",
        env = "KAFKA_BROKERS",
        default_value = "localhost:9092"
    )]
    pub bootstrap: String,
    /// Consumer group (default: a fresh one, reading from the beginning).
    #[arg(short = 'g', long = "group")]
    pub group: Option<String>,
    /// Print every n-th record (the first is always printed).
    #[arg(short = 'p', long = "print-every", default_value_t = 1)]
    pub print_every: u64,
    /// Stop after this many records (default: run until Ctrl-C).
    #[arg(short = 'n', long = "count")]
    pub count: Option<u64>,
    /// Stop when nothing arrived for this many ms.
    #[arg(long = "idle-exit-ms")]
    pub idle_exit_ms: Option<u64>,
    /// Extra librdkafka settings: `-X key=value`.
    #[arg(short = 'X', value_parser = crate::parse_key_value)]
    pub extra: Vec<(String, String)>,
}

/// Runs the consumer; returns how many records it read.
pub async fn run(args: &ConsumeArgs, out: &mut impl Write) -> anyhow::Result<u64> {
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("loadgen-consume-{}", uuid::Uuid::new_v4().simple()));
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in &args.extra {
        config.set(k, v);
    }
    let consumer: StreamConsumer = config.create().context("kafka consumer")?;
    consumer.subscribe(&[&args.topic]).context("subscribe")?;
    writeln!(out, "consuming {} (group {group})", args.topic)?;
    out.flush()?;
    let mut read = 0u64;
    let mut last = Instant::now();
    loop {
        if args.count.is_some_and(|n| read >= n) {
            break;
        }
        let wait = Duration::from_millis(200);
        let msg = match tokio::time::timeout(wait, consumer.recv()).await {
            Err(_) => {
                if args
                    .idle_exit_ms
                    .is_some_and(|ms| last.elapsed() >= Duration::from_millis(ms))
                {
                    break;
                }
                continue;
            }
            Ok(msg) => msg.context("consume")?,
        };
        last = Instant::now();
        read += 1;
        if read == 1 || (args.print_every > 0 && read.is_multiple_of(args.print_every)) {
            let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default();
            let value = msg
                .payload()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            writeln!(
                out,
                "{read}: partition {} offset {} key={key} {value}",
                msg.partition(),
                msg.offset()
            )?;
            out.flush()?;
        }
    }
    writeln!(out, "consumed {read} records from {}", args.topic)?;
    Ok(read)
}
