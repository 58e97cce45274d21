//! `leaderboards`: the role on its own, with its routes on `LEADERBOARDS_BIND`
//! (the `nation` binary nests the same router into the bridge).

use clap::Parser;

/// Live leaderboards computed from Kafka.
#[derive(Parser)]
#[command(name = "leaderboards", version)]
struct Cli {
    #[command(flatten)]
    config: leaderboards::Config,
    /// Where the read routes (and `/metrics`) listen.
    #[arg(long, env = "LEADERBOARDS_BIND", default_value = "127.0.0.1:8090")]
    bind: String,
    /// Ship this process's JSON logs to this topic (created if missing).
    #[arg(long, env = "LOG_TOPIC")]
    log_topic: Option<String>,
    /// Lines the log buffer holds while Kafka is slow (then dropped, counted).
    #[arg(long, env = "LOG_BUFFER", default_value_t = ops::logs::DEFAULT_BUFFER)]
    log_buffer: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ops::init_tracing();
    let cli = Cli::parse();
    let registry = cli.config.registry.clone();
    let _shipper = match &cli.log_topic {
        Some(topic) => {
            let (brokers, extra) = (&cli.config.brokers, &cli.config.extra);
            ops::logs::ensure_topic(brokers, topic, 3, extra).await?;
            Some(ops::logs::LogShipper::start(
                brokers,
                topic,
                extra,
                cli.log_buffer,
                &registry,
            )?)
        }
        None => None,
    };
    let handle = leaderboards::Leaderboards::from_config(&cli.config)?;
    let listener = tokio::net::TcpListener::bind(&cli.bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "leaderboards listening");
    let http = registry.http();
    let app = leaderboards::router(handle.clone())
        .merge(ops::metrics::router(registry))
        .layer(axum::middleware::from_fn_with_state(
            http,
            ops::metrics::track_http,
        ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let mut stop = stop_rx;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await
    });
    let result = leaderboards::run(cli.config, handle, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(result?)
}
