//! How long one transaction takes on a broker: begin, produce one record,
//! commit. `KAFKA_BROKERS=host:port cargo run --release -p engine --example txn_latency`
//! (without KAFKA_BROKERS: a local Apache Kafka started by `localkafka`).

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn main() -> anyhow::Result<()> {
    let (_local, brokers) = localkafka::LocalKafka::from_env_or_temporary()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &brokers)
        .set(
            "transactional.id",
            format!("txn-latency-{}", std::process::id()),
        )
        .set("linger.ms", "0");
    for kv in std::env::var("X")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').expect("k=v");
        config.set(k, v);
    }
    let producer: BaseProducer = config.create()?;
    producer.init_transactions(Duration::from_secs(10))?;
    let mut times = Vec::new();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for i in 0..n {
        let t = Instant::now();
        producer.begin_transaction()?;
        producer
            .send(
                BaseRecord::to("txn-latency")
                    .key("k")
                    .payload(&format!("{i}"))
                    .partition(0),
            )
            .map_err(|(e, _)| e)?;
        if std::env::var_os("KICK").is_some() {
            // Each flush wakes the broker threads; librdkafka does not wake
            // them when a partition's AddPartitionsToTxn completes.
            while producer.in_flight_count() > 0 {
                let _ = producer.flush(Duration::from_millis(1));
            }
        }
        let sent = t.elapsed();
        producer.commit_transaction(Duration::from_secs(10))?;
        times.push((sent, t.elapsed()));
    }
    let mut commits: Vec<Duration> = times.iter().map(|(s, t)| *t - *s).collect();
    commits.sort_unstable();
    println!(
        "commit p50 {:?} p90 {:?} max {:?}",
        commits[commits.len() / 2],
        commits[commits.len() * 9 / 10],
        commits[commits.len() - 1]
    );
    for (i, (sent, total)) in times
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= n - 5 || i % (n / 10).max(1) == 0)
    {
        print!("#{i} ");
        println!("begin+send(+flush) {sent:?}  total with commit {total:?}");
    }
    Ok(())
}
