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
//! - [`games`]: the [`games::GamesHub`]: watchers, each watched game's
//!   state (a snapshot from its engine, then deltas), bounded fan-out with
//!   conflation, release scheduling.
//! - [`reader`]: the Kafka side of the hub: tails watched `games`
//!   partitions from their end and assembles each step's records into a
//!   delta.
//! - [`owners`]: interactive queries: which engine owns a partition (from
//!   the engines' consumer group) and its answer for a game.
//! - [`ws`]: the WebSocket loop, generic over `Sink`/`Stream`.
//! - [`serve`]: serving the router with header and body read timeouts and a
//!   per-address connection limit.
//! - [`error`]: [`AppError`], every failure as `{"error", "detail"}`.
//! - [`metrics`]: [`metrics::BridgeMetrics`] in the process's registry
//!   (`/metrics`), and the action -> update latency.
//! - [`edge`]: every request's way to its handler, one layer: HTTP
//!   metrics, the guard, the body's deadline.
//! - [`guard`]: refused requests counted, logged (for the abuse table) and
//!   banned when an address piles them up; plain rate limits.
//! - [`abuse`]: the abuse table, read back from the `logs` topic.
//! - [`admin`]: `/api/admin/abuse` and `/api/admin/summary` (admin token).
//!
//! [`run`] starts everything from a [`Config`] on a listener it is given (tests
//! bind port 0) and stops when its cancellation token is cancelled:
//! WebSockets get a close frame, the producer is flushed, the `games` reader
//! stops. The bridge does not run an engine: a host process may add one
//! (the `nation` binary does) through [`Extras`].

pub mod abuse;
pub mod admin;
pub mod auth;
pub mod config;
pub mod edge;
pub mod enrich;
pub mod error;
pub mod games;
pub mod guard;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod owners;
pub mod reader;
pub mod routes;
pub mod serve;
pub mod ws;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use rdkafka::consumer::BaseConsumer;
use shared::ActionType;
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use config::Config;
pub use error::AppError;

use crate::abuse::SharedTable;
use crate::auth::{RefusedTokens, TokenKeys};
use crate::enrich::{ClientAddr, TrustedProxies};
use crate::games::GamesHub;
use crate::guard::Guard;
use crate::kafka::{KafkaPublisher, Publisher};
use crate::metrics::BridgeMetrics;
use crate::serve::{Connections, ServeSettings};
use crate::ws::{WsMetrics, WsSettings};
use ops::metrics::LagContext;

/// The largest request body accepted (bigger is a 413).
pub const BODY_LIMIT: usize = 16 * 1024;

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
    /// Every metric of the bridge, in the process's registry.
    pub metrics: BridgeMetrics,
    /// Per-route metrics and the action -> update latency are recorded.
    pub metrics_enabled: bool,
    pub ws_metrics: Arc<WsMetrics>,
    /// Bans and rate limits.
    pub guard: Guard,
    /// The abuse table read from the logs topic.
    pub abuse: SharedTable,
    /// `ADMIN_TOKEN`; unset: admin routes refused.
    pub admin_token: Option<Arc<str>>,
    pub ws: WsSettings,
    /// Open connections per address and the HTTP guards' settings.
    pub connections: Arc<Connections>,
    /// Flips to true on shutdown: open sockets send a close frame.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// What the host process adds to `/readyz` (its in-process engine).
    pub ready: Option<ReadyCheck>,
    /// The OpenAPI document `/openapi.json` serves: the bridge's own
    /// ([`openapi::served`]), plus the routes its host documents
    /// ([`Extras::openapi`]), built once at start-up.
    pub openapi: axum::body::Bytes,
}

/// An extra readiness check: `Err(why)` turns `/readyz` 503.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What a process hosting the bridge adds to it (the `nation` binary: its
/// in-process engine's queries and readiness).
#[derive(Clone, Default)]
pub struct Extras {
    /// Routes merged into the app.
    pub routes: Option<Router>,
    /// Checked by `/readyz`.
    pub ready: Option<ReadyCheck>,
    /// The process's metrics (every role it hosts registers there, so the
    /// bridge's `/metrics` shows them all); unset: a registry of its own.
    pub registry: Option<ops::metrics::Registry>,
    /// The documentation of `routes`, merged into `/openapi.json` (each
    /// role documents its own routes: `leaderboards::http::openapi_paths`,
    /// `lake::analytics::openapi_paths`); empty: the bridge's own document,
    /// the checked-in `bridge/openapi.json`.
    pub openapi: Vec<openapi::HostPaths>,
    /// Given the watcher hub once it exists, for a role of the same process
    /// that feeds it (the in-process engine hands over each step as it
    /// sends it: [`GamesHub::ingest`]).
    pub hub: Option<Arc<std::sync::OnceLock<Arc<GamesHub>>>>,
}

impl AppState {
    /// A state for handler tests: the given publisher, a detached hub, random
    /// keys, game 1, 12 partitions, seed endpoints on, no static files, no
    /// bans, admin token `admin-for-tests`.
    pub fn for_tests(publisher: Arc<dyn Publisher>) -> AppState {
        let registry = ops::metrics::Registry::default();
        let metrics = BridgeMetrics::register(&registry);
        let ws_metrics = Arc::new(WsMetrics::default());
        metrics.register_ws(&ws_metrics);
        let refused_tokens = Arc::new(RefusedTokens::default());
        metrics.register_tokens(&refused_tokens);
        let connections = Connections::new(ServeSettings::default());
        metrics.register_connections(&connections);
        // No bans: handler tests and the fuzz targets send many refused
        // requests from one (unknown) address and each must get its own
        // answer; the bans are tested on their own (guard, tests/abuse.rs).
        let guard = Guard::new(
            &guard::GuardSettings {
                ban_after: 0,
                ..guard::GuardSettings::default()
            },
            metrics.clone(),
            TrustedProxies::default(),
        );
        AppState {
            publisher,
            hub: GamesHub::detached(12, Arc::new(games::MemorySource::default())),
            keys: TokenKeys::random(),
            refused_tokens,
            default_game: 1,
            partitions: 12,
            seed_endpoints: true,
            static_dir: PathBuf::from("/nonexistent"),
            trusted_proxies: TrustedProxies::default(),
            metrics,
            metrics_enabled: true,
            ws_metrics,
            guard,
            abuse: SharedTable::default(),
            admin_token: Some(Arc::from("admin-for-tests")),
            ws: WsSettings::default(),
            connections,
            shutdown: tokio::sync::watch::channel(false).1,
            ready: None,
            openapi: openapi::served(&[]),
        }
    }

    /// The built game page, if there is one.
    pub fn index_html(&self) -> Option<String> {
        std::fs::read_to_string(self.static_dir.join("index.html")).ok()
    }

    /// The built page of `page`: the game's, or the second build's
    /// (`extra/index.html`: arena, analytics, operator) so the game page's
    /// wasm carries none of them.
    pub fn page_html(&self, page: shared::Page) -> Option<String> {
        if page.is_extra() {
            std::fs::read_to_string(self.static_dir.join("extra").join("index.html")).ok()
        } else {
            self.index_html()
        }
    }
}

/// The router: every route of the public contract.
pub fn app(state: AppState) -> Router {
    app_with(state, None)
}

/// [`app`] with a host's routes ([`Extras::routes`]) merged in under the
/// same guards, body limits, per-route metrics and tracing as the bridge's
/// own (found: the leaderboards' and analytics' requests went uncounted).
pub fn app_with(state: AppState, extra: Option<Router>) -> Router {
    let mut router = Router::new()
        .route("/", get(routes::index))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi_json))
        .route("/openapi.yaml", get(routes::openapi_yaml))
        .route("/api/config", get(routes::client_config))
        .route("/api/games/{game_id}", get(routes::get_game))
        .route("/api/games/{game_id}/join", post(routes::join))
        .route("/api/games/{game_id}/actions", post(routes::act))
        .route("/admin", get(routes::admin_page))
        .route("/api/admin/abuse", get(admin::abuse))
        .route("/api/admin/summary", get(admin::summary))
        .route("/ws/games/{game_id}", get(routes::ws));
    if state.seed_endpoints {
        for action in ActionType::ALL {
            let Some(path) = action.seed_path().filter(|p| *p != "/") else {
                continue;
            };
            router = router.route(
                path,
                get(
                    move |axum::extract::State(state): axum::extract::State<Arc<AppState>>,
                          client: ClientAddr,
                          request: axum::extract::Request| async move {
                        routes::seed_action(state, request.headers(), client, action).await
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
        // The trunk build writes a `.br` and a `.gz` beside each asset
        // (Trunk.toml's post-build hook): a browser that accepts brotli gets
        // it (the wasm: 35 % of its bytes), else gzip (42 %), at no CPU cost
        // per request.
        .service(
            ServeDir::new(&state.static_dir)
                .precompressed_br()
                .precompressed_gzip()
                .fallback(get(routes::not_found)),
        );
    let edge = edge::Edge {
        guard: state.guard.clone(),
        connections: state.connections.clone(),
        http: state.metrics_enabled.then(|| state.metrics.http.clone()),
        trusted: state.trusted_proxies.clone(),
    };
    let router = router
        .fallback_service(assets)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // One Arc for every request's handler and middleware: cloning the
        // state itself (some twenty reference counts, the static dir's
        // path) per request cost 13 % of the bridge's CPU under wrk
        // (perf, BENCHMARKS.md "Observability").
        .with_state(Arc::new(state));
    let router = match extra {
        Some(extra) => router.merge(extra),
        None => router,
    }
    // One layer, so one boxed service per route (`edge`): the metrics, the
    // guard outside the body guards (their 408 and 413 are refusals too),
    // the body's deadline, then the body limit for the extractors.
    .layer(
        tower::ServiceBuilder::new()
            .layer(edge::EdgeLayer(Arc::new(edge)))
            .layer(DefaultBodyLimit::max(BODY_LIMIT)),
    );
    // Request spans are debug-level: with the default filter they would
    // be built and dropped unseen, at a layer's cost per request.
    if tracing::enabled!(target: "tower_http::trace", Level::DEBUG) {
        router.layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
    } else {
        router
    }
}

/// Errors that stop the bridge from starting.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("no Kafka brokers configured")]
    NoBrokers,
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
    #[error("logs: {0}")]
    Logs(#[from] ops::logs::LogsError),
    #[error("{0}")]
    Registry(#[from] ops::registry::RegistryError),
}

/// How long start-up waits for a schema registry that is down or busy.
const REGISTRY_PATIENCE: Duration = Duration::from_secs(30);

/// Starts the bridge on `listener` and serves until `cancel` is cancelled.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    cancel: ops::CancellationToken,
) -> Result<(), BridgeError> {
    run_with(config, listener, cancel, Extras::default()).await
}

/// [`run`], with what the host process adds.
pub async fn run_with(
    config: Config,
    listener: tokio::net::TcpListener,
    cancel: ops::CancellationToken,
    extras: Extras,
) -> Result<(), BridgeError> {
    let brokers = config.brokers.clone().ok_or(BridgeError::NoBrokers)?;
    let registry = extras.registry.clone().unwrap_or_default();
    let metrics = BridgeMetrics::register(&registry);
    let stats_interval = if config.metrics_enabled {
        ops::metrics::STATS_INTERVAL_MS
    } else {
        "0"
    };
    let _shipper = match &config.log_topic {
        Some(topic) => {
            ops::logs::ensure_topic(&brokers, topic, 3, &config.extra).await?;
            Some(ops::logs::LogShipper::start(
                &brokers,
                topic,
                &config.extra,
                config.log_buffer,
                &registry,
            )?)
        }
        None => None,
    };
    let publisher = KafkaPublisher::new(
        &brokers,
        &config.extra,
        &config.actions_topic,
        config.partitions,
        config.linger_ms,
        Duration::from_millis(config.produce_timeout_ms),
    )?;
    let publisher = match &config.schema_registry_url {
        Some(url) => {
            let id = ops::registry::Registry::new(url)
                .register_for(
                    &config.actions_topic,
                    shared::schema::ACTION_ENVELOPE,
                    &shared::schema::action_envelope(),
                    REGISTRY_PATIENCE,
                )
                .await?;
            publisher.framed_with(id)
        }
        None => publisher,
    };
    let publisher: Arc<dyn Publisher> = Arc::new(publisher);

    let owners_client: BaseConsumer = kafka::client_config(&brokers, &[])
        .set("client.id", "bridge-owners")
        .set_extra(&config.extra)
        .create()?;
    let owners = owners::Owners::new(owners_client, &config.engine_group, &config.actions_topic);
    let source = Arc::new(owners::EngineQueries::new(owners, config.partitions));
    let hub = GamesHub::detached(config.partitions, source);
    hub.pending.register(&registry);
    if let Some(slot) = &extras.hub {
        let _ = slot.set(hub.clone());
    }
    let reader_consumer: BaseConsumer<LagContext> = kafka::client_config(&brokers, &[])
        .set("statistics.interval.ms", stats_interval)
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
        .create_with_context(LagContext::new("bridge_games", metrics.lag.clone()))?;
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = reader::spawn(
        hub.clone(),
        reader_consumer,
        config.games_topic.clone(),
        stop_reader.clone(),
    );

    let abuse = SharedTable::default();
    let abuse_reader = match &config.log_topic {
        Some(topic) => {
            let consumer: BaseConsumer<LagContext> = kafka::client_config(&brokers, &[])
                .set(
                    "group.id",
                    format!("bridge-abuse-{}", uuid::Uuid::new_v4().simple()),
                )
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("fetch.wait.max.ms", "50")
                .set("statistics.interval.ms", stats_interval)
                .set_extra(&config.extra)
                .create_with_context(LagContext::new("bridge_abuse", metrics.lag.clone()))?;
            Some(abuse::spawn_reader(
                consumer,
                topic.clone(),
                abuse.clone(),
                metrics.clone(),
                stop_reader.clone(),
            )?)
        }
        None => None,
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let keys = token_keys(&config);
    let connections = Connections::new(config.serve_settings());
    metrics.register_connections(&connections);
    let ws_metrics = Arc::new(WsMetrics::default());
    metrics.register_ws(&ws_metrics);
    let refused_tokens = Arc::new(RefusedTokens::default());
    metrics.register_tokens(&refused_tokens);
    let trusted_proxies = TrustedProxies(Arc::new(config.trusted_proxies.clone()));
    let guard = Guard::new(
        &config.guard_settings(),
        metrics.clone(),
        trusted_proxies.clone(),
    );
    let state = AppState {
        publisher: publisher.clone(),
        hub,
        keys,
        refused_tokens,
        default_game: config.default_game,
        partitions: config.partitions,
        seed_endpoints: config.seed_endpoints,
        static_dir: config.static_dir.clone(),
        trusted_proxies,
        metrics,
        metrics_enabled: config.metrics_enabled,
        ws_metrics,
        guard,
        abuse,
        admin_token: config.admin_token.as_deref().map(Arc::from),
        ws: WsSettings::default(),
        connections: connections.clone(),
        shutdown: shutdown_rx,
        ready: extras.ready,
        openapi: openapi::served(&extras.openapi),
    };
    tracing::info!(addr = %listener.local_addr()?, "bridge listening");
    let router = app_with(state, extras.routes);
    let served = serve::serve(listener, router, connections, async move {
        cancel.cancelled().await;
        tracing::info!("shutting down: closing sockets, flushing the producer");
        let _ = shutdown_tx.send(true);
    })
    .await;

    let flushing = publisher.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5))).await;
    stop_reader.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = reader.join();
        if let Some(abuse_reader) = abuse_reader {
            let _ = abuse_reader.join();
        }
    })
    .await;
    served?;
    Ok(())
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

pub use ops::shutdown_signal;
