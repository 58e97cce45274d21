//! `bridge`: config, tracing and wiring; the rest is the library.
//!
//! With `KAFKA_BROKERS` unset it hosts an embedded in-memory Kafka-protocol
//! broker (librdkafka's mock cluster) and runs the engine beside it, so one
//! process serves the whole game.

use clap::Parser;

use bridge::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    engine::init_tracing();
    let mut config = Config::parse();

    // Held until the end of main: the embedded broker lives as long as we do.
    let _embedded = match &config.brokers {
        Some(_) => None,
        None => {
            let cluster = rdkafka::mocking::MockCluster::new(1)?;
            for topic in [
                config.actions_topic.clone(),
                config.games_topic.clone(),
                format!("{}.dlq", config.actions_topic),
            ] {
                cluster.create_topic(&topic, config.partitions, 1)?;
            }
            let bootstrap = cluster.bootstrap_servers();
            tracing::warn!(
                "======================================================================"
            );
            tracing::warn!(
                "KAFKA_BROKERS is unset: running an EMBEDDED IN-MEMORY Kafka-protocol broker"
            );
            tracing::warn!("  bootstrap address: {bootstrap}  (any Kafka client can look inside)");
            tracing::warn!("  all game data is lost when this process stops");
            tracing::warn!("  for a real cluster: KAFKA_BROKERS=host:9092 make run");
            tracing::warn!(
                "======================================================================"
            );
            println!("embedded broker: {bootstrap}");
            config.brokers = Some(bootstrap);
            config.create_topics = false;
            config.with_engine = true;
            // The mock cluster does not enforce transactions, so streaming
            // ones have no crash caveat here: updates reach the players a
            // few ms after their action (BENCHMARKS.md).
            config.engine_eager_flush = true;
            config.engine_commit_interval_ms = 100;
            config.games_isolation = "read_uncommitted".to_string();
            Some(cluster)
        }
    };

    let listener = tokio::net::TcpListener::bind(&config.bind).await?;
    let addr = listener.local_addr()?;
    println!("Build a Nation is up: open http://{addr}/ in a browser");
    bridge::run(config, listener, bridge::shutdown_signal()).await?;
    Ok(())
}
