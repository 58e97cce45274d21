//! # ops: what every role's process needs
//!
//! Every binary of the workspace (`nation`, `bridge`, `engine`, `lake`, ...)
//! logs the same way ([`init_tracing`]) and stops the same way: one
//! [`CancellationToken`] per process, cancelled by ctrl-c or SIGTERM
//! ([`cancel_on_signal`]) or by a role that cannot go on, and every role
//! of the process stops when it is cancelled.
//!
//! ## Layout
//! - [`metrics`]: the process's metrics [`metrics::Registry`] and
//!   `/metrics`, per-route HTTP metrics, consumer lag per partition.
//! - [`logs`]: JSON logs shipped to a Kafka topic (`LOG_TOPIC`) through a
//!   bounded buffer that drops and counts rather than blocking.

pub mod allocator;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod registry;

pub use tokio_util::sync::CancellationToken;

/// The default `fetch.wait.max.ms` (`FETCH_WAIT_MAX_MS`) of every role's
/// real-time consumers: the engine's of `actions`, the bridge's of `games`,
/// the leaderboards'. Apache Kafka parks a fetch that finds nothing new and
/// answers it as soon as a record is appended, so the wait costs no latency
/// and bounds only an idle fetch; a 1 ms wait (chosen for the stand-in
/// brokers, which answered only when the wait expired) made each idle
/// consumer send about 700 fetches a second, ten times the broker's CPU of
/// an idle game (BENCHMARKS.md, "FETCH_WAIT_MAX_MS").
pub const FETCH_WAIT_MAX_MS: u32 = 100;

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// The process's token, cancelled on ctrl-c or SIGTERM.
pub fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        cancel.cancel();
    });
    token
}

/// The stdout filter when `RUST_LOG` is unset: `info`, but refused
/// requests (one event each, a flood's worth) only go to the `logs` topic.
pub const DEFAULT_LOG_FILTER: &str = "info,refusal=warn";

/// Logging: `tracing` to stdout, filtered by `RUST_LOG` (default
/// [`DEFAULT_LOG_FILTER`]), and JSON lines to the `logs` topic once a
/// [`logs::LogShipper`] runs. Safe to call twice (tests): the second call
/// does nothing.
pub fn init_tracing() {
    init_tracing_to(std::io::stdout);
}

/// [`init_tracing`], with the human-readable lines written to `writer`
/// (the lake writes them to stderr).
pub fn init_tracing_to<W>(writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let stdout = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        );
    let kafka = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(logs::KafkaWriter)
        .with_filter(
            tracing_subscriber::filter::dynamic_filter_fn(|meta, _| logs::shipped(meta))
                // Nothing below INFO is ever shipped: saying so keeps the
                // process's maximum level at what the other layer wants, so
                // DEBUG and TRACE call sites (a span per HTTP request, the
                // HTTP stack's own) stay off at a static check, not asked
                // for at every call.
                .with_max_level_hint(tracing_subscriber::filter::LevelFilter::INFO),
        );
    let _ = tracing_subscriber::registry()
        .with(stdout)
        .with(kafka)
        .try_init();
}
