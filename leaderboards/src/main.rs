//! `leaderboards`: the role on its own, with its routes on `LEADERBOARDS_BIND`
//! (the `nation` binary nests the same router into the bridge).

use clap::Parser;

/// Live leaderboards computed from Kafka.
#[derive(Parser)]
#[command(name = "leaderboards", version)]
struct Cli {
    #[command(flatten)]
    config: leaderboards::Config,
    /// Where the read routes listen.
    #[arg(long, env = "LEADERBOARDS_BIND", default_value = "127.0.0.1:8090")]
    bind: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let handle = leaderboards::Leaderboards::from_config(&cli.config)?;
    let listener = tokio::net::TcpListener::bind(&cli.bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "leaderboards listening");
    let app = leaderboards::router(handle.clone());
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
