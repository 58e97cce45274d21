//! `loadgen produce`: seed 004's producer (`runProducer.py`), same flags and
//! defaults. Without `-l` it asks before each event, as the seed does; with
//! `-l` it sends `-e` events, waiting a random `-m`..=`-x` ms between them,
//! and prints the first and every `-p`-th. It waits for every delivery and
//! fails when one is refused.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::spin::{self, Spin};

/// Flags of `loadgen produce` (the seed's names).
#[derive(clap::Args, Clone, Debug)]
pub struct ProduceArgs {
    /// Topic to publish to.
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
    /// Loop: send `-e` events without asking.
    #[arg(short = 'l', long = "loop")]
    pub looping: bool,
    /// Number of events in a loop.
    #[arg(short = 'e', long = "events", default_value_t = 10)]
    pub events: u64,
    /// Minimum delay between events, ms.
    #[arg(short = 'm', long = "min-delay", default_value_t = 500)]
    pub min_delay_ms: u64,
    /// Maximum delay between events, ms.
    #[arg(short = 'x', long = "max-delay", default_value_t = 1000)]
    pub max_delay_ms: u64,
    /// Print every n-th event (the first is always printed).
    #[arg(short = 'p', long = "print-every", default_value_t = 100)]
    pub print_every: u64,
    /// Extra librdkafka settings: `-X key=value`.
    #[arg(short = 'X', value_parser = crate::parse_key_value)]
    pub extra: Vec<(String, String)>,
}

/// An idempotent producer (`acks=all`) for `bootstrap`.
fn producer(args: &ProduceArgs) -> anyhow::Result<FutureProducer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for (k, v) in &args.extra {
        config.set(k, v);
    }
    config.create().context("kafka producer")
}

/// Runs the producer; returns the spins delivered, in order sent.
pub async fn run(args: &ProduceArgs, out: &mut impl Write) -> anyhow::Result<Vec<Spin>> {
    if args.min_delay_ms > args.max_delay_ms {
        bail!("-m {} is above -x {}", args.min_delay_ms, args.max_delay_ms);
    }
    let producer = producer(args)?;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut sent = Vec::new();
    let mut deliveries = Vec::new();
    if args.looping {
        for i in 0..args.events {
            let spin = spin::generate(&mut rng, chrono::Utc::now());
            if i == 0 || (args.print_every > 0 && (i + 1).is_multiple_of(args.print_every)) {
                writeln!(
                    out,
                    "event {}: key={} {}",
                    i + 1,
                    spin.key(),
                    spin.to_json()
                )?;
            }
            deliveries.push(send(&producer, &args.topic, &spin)?);
            sent.push(spin);
            if i + 1 < args.events {
                let delay = rng.random_range(args.min_delay_ms..=args.max_delay_ms);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
            }
        }
    } else {
        let stdin = std::io::stdin();
        loop {
            write!(out, "Produce an event? [Y/n]: ")?;
            out.flush()?;
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                break;
            }
            if !matches!(line.trim(), "" | "y" | "Y") {
                break;
            }
            let spin = spin::generate(&mut rng, chrono::Utc::now());
            send(&producer, &args.topic, &spin)?
                .await
                .context("delivery")?
                .map_err(|(e, _)| anyhow::anyhow!("delivery refused: {e}"))?;
            writeln!(out, "key={} {}", spin.key(), spin.to_json())?;
            sent.push(spin);
        }
    }
    for delivery in deliveries {
        delivery
            .await
            .context("delivery")?
            .map_err(|(e, _)| anyhow::anyhow!("delivery refused: {e}"))?;
    }
    producer
        .flush(Duration::from_secs(10))
        .context("flush the producer")?;
    writeln!(out, "produced {} events to {}", sent.len(), args.topic)?;
    Ok(sent)
}

fn send(
    producer: &FutureProducer,
    topic: &str,
    spin: &Spin,
) -> anyhow::Result<rdkafka::producer::DeliveryFuture> {
    let key = spin.key();
    let value = spin.to_json();
    producer
        .send_result(FutureRecord::to(topic).key(&key).payload(&value))
        .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))
}
