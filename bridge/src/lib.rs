//! # bridge: the edge between players and Kafka
//!
//! Every player action arrives here over HTTP, is stamped (Host, User-Agent,
//! Accept, client address, receive time, a UUIDv7 id) and produced to the
//! `actions` topic; the answer waits for Kafka's ack. Game state comes back
//! from the `games` partitions the connected players need and is pushed over
//! WebSockets. Handlers never decide game rules: the engine does.
//!
//! ## Layout
//! - [`config`]: [`Config`], flags mirroring the environment.
//! - [`routes`]: the handlers; [`app()`] wires them into a router.
//! - [`enrich`]: stamping envelopes, the client address behind trusted proxies.
//! - [`auth`]: HMAC-signed player tokens.
//! - [`kafka`]: the [`kafka::Publisher`] trait, its rdkafka implementation and
//!   an in-memory one for handler tests.
//! - [`games`]: the [`games::GamesHub`]: watched partitions, latest state per
//!   game, bounded fan-out with conflation.
//! - [`ws`]: the WebSocket loop, generic over `Sink`/`Stream`.
//! - [`serve`]: serving the router with header and body read timeouts and a
//!   per-address connection limit.
//! - [`topics`]: creating missing topics at start-up.
//! - [`error`]: [`AppError`], every failure as `{"error", "detail"}`.
//!
//! [`run`] starts everything from a [`Config`] on a listener it is given (tests
//! bind port 0) and stops on the shutdown future: WebSockets get a close
//! frame, the producer is flushed, the `games` reader and the in-process
//! engine (if any) stop.

pub mod auth;
pub mod config;
pub mod enrich;
pub mod error;
pub mod games;
pub mod kafka;
pub mod routes;
pub mod serve;
pub mod topics;
pub mod ws;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use rdkafka::consumer::BaseConsumer;
use shared::ActionType;
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use config::Config;
pub use error::AppError;

use crate::auth::{RefusedTokens, TokenKeys};
use crate::enrich::{ClientAddr, TrustedProxies};
use crate::games::GamesHub;
use crate::kafka::{KafkaPublisher, Publisher};
use crate::serve::{Connections, ServeSettings};
use crate::ws::{WsMetrics, WsSettings};

/// The largest request body accepted (bigger is a 413).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Counters of the HTTP side, for `/metrics`.
#[derive(Default, Debug)]
pub struct Metrics {
    pub published: AtomicU64,
    pub publish_failed: AtomicU64,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub publisher: Arc<dyn Publisher>,
    pub hub: Arc<GamesHub>,
    pub keys: TokenKeys,
    /// Refused player tokens, counted per client address (`/metrics`).
    pub refused_tokens: Arc<RefusedTokens>,
    pub default_game: u64,
    pub partitions: i32,
    pub seed_endpoints: bool,
    pub static_dir: PathBuf,
    pub trusted_proxies: TrustedProxies,
    pub metrics: Arc<Metrics>,
    pub ws_metrics: Arc<WsMetrics>,
    pub ws: WsSettings,
    /// Open connections per address and the HTTP guards' settings.
    pub connections: Arc<Connections>,
    /// Flips to true on shutdown: open sockets send a close frame.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The in-process engine's readiness, when this process hosts one.
    pub engine_health: Option<engine::Health>,
}

impl AppState {
    /// A state for handler tests: the given publisher, a detached hub, random
    /// keys, game 1, 12 partitions, seed endpoints on, no static files.
    pub fn for_tests(publisher: Arc<dyn Publisher>) -> AppState {
        AppState {
            publisher,
            hub: GamesHub::detached(12),
            keys: TokenKeys::random(),
            refused_tokens: Arc::default(),
            default_game: 1,
            partitions: 12,
            seed_endpoints: true,
            static_dir: PathBuf::from("/nonexistent"),
            trusted_proxies: TrustedProxies::default(),
            metrics: Arc::default(),
            ws_metrics: Arc::default(),
            ws: WsSettings::default(),
            connections: Connections::new(ServeSettings::default()),
            shutdown: tokio::sync::watch::channel(false).1,
            engine_health: None,
        }
    }

    /// The built game page, if there is one.
    pub fn index_html(&self) -> Option<String> {
        std::fs::read_to_string(self.static_dir.join("index.html")).ok()
    }
}

/// The router: every route of the public contract.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(routes::index))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.yaml", get(routes::openapi))
        .route("/api/config", get(routes::client_config))
        .route("/api/games/{game_id}", get(routes::get_game))
        .route("/api/games/{game_id}/join", post(routes::join))
        .route("/api/games/{game_id}/actions", post(routes::act))
        .route("/ws/games/{game_id}", get(routes::ws));
    if state.seed_endpoints {
        for action in ActionType::ALL {
            let Some(path) = action.seed_path().filter(|p| *p != "/") else {
                continue;
            };
            router = router.route(
                path,
                get(
                    move |axum::extract::State(state): axum::extract::State<AppState>,
                          headers: axum::http::HeaderMap,
                          client: ClientAddr| {
                        routes::seed_action(state, headers, client, action)
                    },
                ),
            );
        }
    }
    // ServeDir answers 500 to a path the file system refuses (a name too
    // long, say): for a client that is a file that is not there.
    let assets = tower::ServiceBuilder::new()
        .map_response(|response: axum::http::Response<_>| {
            if response.status().is_server_error() {
                crate::error::AppError::NotFound("no such file".into()).into_response()
            } else {
                response.map(axum::body::Body::new)
            }
        })
        .service(ServeDir::new(&state.static_dir).fallback(get(routes::not_found)));
    router
        .fallback_service(assets)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.connections.clone(),
            serve::body_deadline,
        ))
        .layer(Extension(state.trusted_proxies.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

/// Errors that stop the bridge from starting.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("no Kafka brokers configured")]
    NoBrokers,
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topics: {0}")]
    Topics(String),
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
    #[error("engine: {0}")]
    Engine(#[from] engine::EngineError),
}

/// Starts the bridge (and the engine too when `config.with_engine`) on
/// `listener` and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BridgeError> {
    let brokers = config.brokers.clone().ok_or(BridgeError::NoBrokers)?;
    let engine_config = config.with_engine.then(|| engine_config(&config, &brokers));
    if let Some(engine_config) = &engine_config {
        // Refuse impossible settings before anything starts.
        engine_config.validate()?;
    }
    if config.create_topics {
        topics::ensure(
            &brokers,
            &config.extra,
            &config.actions_topic,
            &config.games_topic,
            config.partitions,
        )
        .await
        .map_err(|e| BridgeError::Topics(e.to_string()))?;
    }
    let publisher = KafkaPublisher::new(
        &brokers,
        &config.extra,
        &config.actions_topic,
        config.partitions,
        config.linger_ms,
        Duration::from_millis(config.produce_timeout_ms),
    )?;
    let publisher: Arc<dyn Publisher> = Arc::new(publisher);

    let hub = GamesHub::detached(config.partitions);
    let reader_consumer: BaseConsumer = kafka::client_config(&brokers, &[])
        .set(
            "group.id",
            format!("bridge-reader-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", &config.games_isolation)
        .set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string())
        .set("fetch.error.backoff.ms", "10")
        .set_extra(&config.extra)
        .create()?;
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = hub.spawn_reader(
        reader_consumer,
        config.games_topic.clone(),
        stop_reader.clone(),
    );

    let (engine_stop_tx, engine_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // An engine that stops on its own (a fatal error) stops the process:
    // answering 202 for actions no one applies would be a lie.
    let (engine_down_tx, engine_down_rx) = tokio::sync::oneshot::channel::<()>();
    let engine_health = engine_config.as_ref().map(|_| engine::Health::default());
    let engine = engine_config.map(|engine_config| {
        let health = engine_health.clone().unwrap_or_default();
        tokio::spawn(async move {
            let result = engine::run_with_health(
                engine_config,
                async move {
                    let _ = engine_stop_rx.await;
                },
                health,
            )
            .await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "the engine stopped: shutting the bridge down");
                let _ = engine_down_tx.send(());
            }
            result
        })
    });
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            Ok(()) = engine_down_rx => {}
        }
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let keys = token_keys(&config);
    let connections = Connections::new(config.serve_settings());
    let state = AppState {
        publisher: publisher.clone(),
        hub,
        keys,
        refused_tokens: Arc::default(),
        default_game: config.default_game,
        partitions: config.partitions,
        seed_endpoints: config.seed_endpoints,
        static_dir: config.static_dir.clone(),
        trusted_proxies: TrustedProxies(Arc::new(config.trusted_proxies.clone())),
        metrics: Arc::default(),
        ws_metrics: Arc::default(),
        ws: WsSettings::default(),
        connections: connections.clone(),
        shutdown: shutdown_rx,
        engine_health,
    };
    tracing::info!(addr = %listener.local_addr()?, "bridge listening");
    let served = serve::serve(listener, app(state), connections, async move {
        shutdown.await;
        tracing::info!("shutting down: closing sockets, flushing the producer");
        let _ = shutdown_tx.send(true);
    })
    .await;

    let flushing = publisher.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5))).await;
    stop_reader.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    let mut engine_failed = None;
    if let Some(engine) = engine {
        let _ = engine_stop_tx.send(());
        match engine.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => engine_failed = Some(e),
            Err(e) => {
                tracing::error!(error = %e, "engine task failed");
                engine_failed = Some(engine::EngineError::Panicked);
            }
        }
    }
    served?;
    match engine_failed {
        Some(e) => Err(BridgeError::Engine(e)),
        None => Ok(()),
    }
}

/// The token keys a configuration names: `TOKEN_SECRET` signs (a random one
/// per start when unset), `TOKEN_PREVIOUS_SECRETS` still verify.
pub fn token_keys(config: &Config) -> TokenKeys {
    let previous = config
        .token_previous_secrets
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec());
    let keys = match &config.token_secret {
        Some(secret) => TokenKeys::with_previous(secret.as_bytes().to_vec(), previous),
        None => {
            let random: [u8; 32] = rand::random();
            TokenKeys::with_previous(random.to_vec(), previous)
        }
    };
    keys.ttl_s(config.token_ttl_s)
        .accept_v1(config.token_accept_v1)
}

/// The in-process engine's configuration, from the bridge's.
fn engine_config(config: &Config, brokers: &str) -> engine::Config {
    let mut engine_config = engine::Config::new(brokers);
    engine_config.actions_topic = config.actions_topic.clone();
    engine_config.games_topic = config.games_topic.clone();
    engine_config.dlq_topic = format!("{}.dlq", config.actions_topic);
    engine_config.partitions = config.partitions;
    engine_config.create_topics = config.create_topics;
    engine_config.group_id = config.engine_group.clone();
    if let Some(id) = &config.engine_transactional_id {
        engine_config.transactional_id = id.clone();
        engine_config.group_instance_id = Some(id.clone());
    }
    engine_config.eager_flush = config.engine_eager_flush;
    engine_config.commit_interval_ms = config.engine_commit_interval_ms;
    engine_config.extra = config.extra.clone();
    engine_config
}

/// `ClientConfig::set` for a list of pairs.
trait SetExtra {
    fn set_extra(&mut self, extra: &[(String, String)]) -> &mut Self;
}

impl SetExtra for rdkafka::ClientConfig {
    fn set_extra(&mut self, extra: &[(String, String)]) -> &mut Self {
        for (k, v) in extra {
            self.set(k, v);
        }
        self
    }
}

pub use engine::shutdown_signal;
