//! `bridge`: config, tracing and wiring; the rest is the library.
//!
//! Needs `KAFKA_BROKERS`. For the whole game on one machine (a local Apache
//! Kafka, the bridge and the engine) run `make run` (the `nation` binary).

use clap::Parser;

use bridge::Config;

/// As `nation`'s: glibc's malloc cost the bridge a third more CPU per
/// answered action (BENCHMARKS.md, P1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    ops::allocator::apply();
    serve()
}

#[tokio::main]
async fn serve() -> anyhow::Result<()> {
    ops::init_tracing();
    let config = Config::parse();
    if config.brokers.is_none() {
        eprintln!("bridge: KAFKA_BROKERS is unset: set it to your cluster, or run `make run` for a local Apache Kafka");
        std::process::exit(2);
    }
    let listener = tokio::net::TcpListener::bind(&config.bind).await?;
    let addr = listener.local_addr()?;
    println!("Build a Nation is up: open http://{addr}/ in a browser");
    bridge::run(config, listener, ops::cancel_on_signal()).await?;
    Ok(())
}
