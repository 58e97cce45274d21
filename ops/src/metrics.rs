//! Metrics: one [`Registry`] per process, exposed as Prometheus text by
//! `prometheus-client` (never formatted by hand).
//!
//! Each role registers its own metrics into the registry its host gives it
//! (the `nation` process gives every role it runs the same one, so one
//! `/metrics` shows them all); tests start several roles in one process,
//! each with a registry of its own, so nothing here is global.
//!
//! - [`Registry`]: the shared registry, its [`Registry::render`] and
//!   [`router`] (`GET /metrics`).
//! - [`HttpMetrics`] and [`track_http`]: per-route request counts and
//!   latency histograms, an axum middleware.
//! - [`ConsumerLag`] and [`LagContext`]: consumer lag per partition from
//!   librdkafka's statistics (`statistics.interval.ms`), for every consumer.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;

pub use prometheus_client;

/// How often librdkafka reports statistics (and so consumer lag), in ms:
/// set it as `statistics.interval.ms` on every consumer using a
/// [`LagContext`].
pub const STATS_INTERVAL_MS: &str = "1000";

/// The OpenMetrics content type `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metrics: cheap to clone, every clone the same registry.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<prometheus_client::registry::Registry>>,
    /// Metric sets registered once per registry ([`Registry::once`]).
    sets: Arc<Mutex<HashMap<&'static str, Box<dyn Any + Send + Sync>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    /// Registers `metric` under `name` (counters get `_total` appended).
    pub fn register<M>(&self, name: &str, help: &str, metric: M)
    where
        M: prometheus_client::registry::Metric,
    {
        self.lock().register(name, help, metric);
    }

    /// Registers `metric` under `name` with a unit suffix (`_seconds`).
    pub fn register_with_unit<M>(&self, name: &str, help: &str, unit: Unit, metric: M)
    where
        M: prometheus_client::registry::Metric,
    {
        self.lock().register_with_unit(name, help, unit, metric);
    }

    /// Everything registered, as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.lock());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, prometheus_client::registry::Registry> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metric set named `key`, registered by `register` the first time
    /// it is asked for: a role started twice in one process (a restarted
    /// engine, two roles sharing [`HttpMetrics`]) counts into the same
    /// series instead of writing a family twice. `register` must not call
    /// `once` itself (take the sets it uses before).
    pub fn once<T, F>(&self, key: &'static str, register: F) -> T
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce(&Registry) -> T,
    {
        let mut sets = self
            .sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(set) = sets.get(key).and_then(|s| s.downcast_ref::<T>()) {
            return set.clone();
        }
        let set = register(self);
        sets.insert(key, Box::new(set.clone()));
        set
    }

    /// The registry's [`ConsumerLag`] (one `kafka_consumer_lag` family for
    /// every consumer of the process).
    pub fn consumer_lag(&self) -> ConsumerLag {
        self.once("kafka_consumer_lag", ConsumerLag::register)
    }

    /// The registry's [`HttpMetrics`].
    pub fn http(&self) -> HttpMetrics {
        self.once("http", HttpMetrics::register)
    }
}

/// `GET /metrics` for `registry`.
pub fn router(registry: Registry) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move { metrics_response(&registry) }
        }),
    )
}

/// The `/metrics` answer for `registry`.
pub fn metrics_response(registry: &Registry) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], registry.render()).into_response()
}

/// Latency buckets in seconds: 100 µs to ~13 s, doubling.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Size buckets: 1 to 16,384, doubling.
pub fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

/// A family of latency histograms.
pub type SecondsFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A new [`SecondsFamily`].
pub fn seconds_family<L: Clone + std::hash::Hash + Eq>() -> SecondsFamily<L> {
    Family::new_with_constructor(seconds_histogram)
}

/// Labels of one route's requests. Static strings: counting a request
/// allocates nothing ([`method_label`], [`route_label`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    /// The route's pattern ([`route_label`]).
    pub route: &'static str,
}

/// Labels of one route's answers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

/// Per-route request counts and latencies.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<StatusLabels, Counter>,
    duration: SecondsFamily<RouteLabels>,
}

impl HttpMetrics {
    /// Registers `http_requests_total` and `http_request_duration_seconds`.
    pub fn register(registry: &Registry) -> HttpMetrics {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: seconds_family(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to the response head, by route",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        metrics
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &'static str, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&StatusLabels {
                method,
                route,
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
    }
}

/// Axum middleware (`from_fn_with_state`) recording [`HttpMetrics`]; put it
/// with `Router::layer` so the matched route is known.
pub async fn track_http(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = route_label(&request);
    let response = next.run(request).await;
    metrics.observe(
        method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The method label of a request: the standard methods by name, any other
/// `other` (a client cannot grow the series).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Route labels, made once per route pattern.
static ROUTE_LABELS: std::sync::LazyLock<std::sync::RwLock<HashMap<String, &'static str>>> =
    std::sync::LazyLock::new(Default::default);

/// The route label of a request: its pattern with `{param}` written
/// `:param` (braces are legal in a label value, but simple text parsers
/// trip on them), `unmatched` when no route matched. Never the raw path,
/// so a scan cannot grow the series. Each pattern's label is made once and
/// kept for the life of the process (the router's patterns are a fixed,
/// small set): a request's label is a lookup, not a new string.
pub fn route_label(request: &Request) -> &'static str {
    let Some(path) = request.extensions().get::<MatchedPath>() else {
        return "unmatched";
    };
    let pattern = path.as_str();
    let known = ROUTE_LABELS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(pattern)
        .copied();
    if let Some(label) = known {
        return label;
    }
    let mut labels = ROUTE_LABELS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    labels.entry(pattern.to_string()).or_insert_with(|| {
        let label = pattern
            .split('/')
            .map(
                |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => format!(":{name}"),
                    None => part.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        Box::leak(label.into_boxed_str())
    })
}

/// Labels of one consumed partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    /// Which consumer: `engine`, `bridge_games`, `lake`, `leaderboards`, ...
    pub consumer: String,
    pub topic: String,
    pub partition: i32,
}

/// `kafka_consumer_lag`: records behind the partition's end, per consumer
/// and partition, as librdkafka last reported it.
#[derive(Clone, Default)]
pub struct ConsumerLag {
    lag: Family<LagLabels, Gauge>,
}

impl ConsumerLag {
    /// Registers `kafka_consumer_lag`.
    pub fn register(registry: &Registry) -> ConsumerLag {
        let lag = ConsumerLag::default();
        registry.register(
            "kafka_consumer_lag",
            "Records between a consumer's position and the partition's end (last stable offset when reading committed)",
            lag.lag.clone(),
        );
        lag
    }

    /// Records the lag of every partition `consumer` fetches, from
    /// librdkafka's statistics JSON: the partition's last stable offset (its
    /// end for a `read_committed` reader; for any reader, the end of what is
    /// committed) minus the consumer's position (the next offset it hands to
    /// the application, else its committed offset). librdkafka's own
    /// `consumer_lag` counts from the committed offset only, so it says
    /// nothing of consumers that keep their offsets elsewhere (the
    /// engine's are in its transactions, the lake's in the lake, the
    /// bridge reads from the end) — hence this (only the fields needed are read, so a
    /// librdkafka that adds or drops others does not blank the lag).
    /// Partitions no longer wanted are removed, so a revoked partition's
    /// last lag does not stay on the page.
    pub fn record(&self, consumer: &str, stats_json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<RawStats>(stats_json) else {
            return;
        };
        for (topic, t) in stats.topics {
            for p in t.partitions.into_values() {
                if p.partition < 0 {
                    continue;
                }
                let labels = LagLabels {
                    consumer: consumer.to_string(),
                    topic: topic.clone(),
                    partition: p.partition,
                };
                if !p.desired {
                    self.lag.remove(&labels);
                } else if let Some(lag) = p.lag() {
                    self.lag.get_or_create(&labels).set(lag);
                }
            }
        }
    }

    /// The lag last recorded for one partition.
    pub fn get(&self, consumer: &str, topic: &str, partition: i32) -> Option<i64> {
        let labels = LagLabels {
            consumer: consumer.to_string(),
            topic: topic.to_string(),
            partition,
        };
        self.lag.get(&labels).map(|g| g.get())
    }
}

/// A consumer context that records [`ConsumerLag`] from librdkafka's
/// statistics, for consumers without a context of their own.
#[derive(Clone)]
pub struct LagContext {
    /// The `consumer` label.
    pub consumer: String,
    pub lag: ConsumerLag,
}

impl LagContext {
    /// A context recording as `consumer` into `lag`.
    pub fn new(consumer: impl Into<String>, lag: ConsumerLag) -> LagContext {
        LagContext {
            consumer: consumer.into(),
            lag,
        }
    }
}

impl ClientContext for LagContext {
    fn stats_raw(&self, statistics: &[u8]) {
        self.lag.record(&self.consumer, statistics);
    }
}

/// What [`ConsumerLag::record`] reads of librdkafka's statistics.
#[derive(serde::Deserialize)]
struct RawStats {
    #[serde(default)]
    topics: HashMap<String, RawTopic>,
}

#[derive(serde::Deserialize)]
struct RawTopic {
    #[serde(default)]
    partitions: HashMap<String, RawPartition>,
}

#[derive(serde::Deserialize)]
struct RawPartition {
    partition: i32,
    #[serde(default)]
    desired: bool,
    #[serde(default = "unknown")]
    app_offset: i64,
    #[serde(default = "unknown")]
    committed_offset: i64,
    #[serde(default = "unknown")]
    lo_offset: i64,
    #[serde(default = "unknown")]
    hi_offset: i64,
    #[serde(default = "unknown")]
    ls_offset: i64,
}

impl RawPartition {
    /// Records between the position and the end; `None` while unknown.
    fn lag(&self) -> Option<i64> {
        let end = if self.ls_offset >= 0 {
            self.ls_offset
        } else {
            self.hi_offset
        };
        if end < 0 {
            return None;
        }
        let position = [self.app_offset, self.committed_offset]
            .into_iter()
            .find(|o| *o >= 0);
        match position {
            Some(position) => Some((end - position).max(0)),
            // Nothing read yet from an empty partition: nothing behind.
            None if self.lo_offset >= 0 && self.lo_offset >= end => Some(0),
            None => None,
        }
    }
}

/// librdkafka's "not known" offset.
fn unknown() -> i64 {
    -1001
}

impl ConsumerContext for LagContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_route_counts_and_histograms() {
        let registry = Registry::default();
        let http = HttpMetrics::register(&registry);
        http.observe("GET", "/api/games/:game_id", 200, 0.002);
        http.observe("GET", "/api/games/:game_id", 200, 0.004);
        let text = registry.render();
        assert!(
            text.contains(
                "http_requests_total{method=\"GET\",route=\"/api/games/:game_id\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("http_request_duration_seconds_count{method=\"GET\",route=\"/api/games/:game_id\"} 2"), "{text}");
    }

    /// Through a router: the pattern, with `:param`, made once (the same
    /// static string each time); an unrouted path is `unmatched`.
    #[tokio::test]
    async fn a_request_is_counted_under_its_route_pattern() {
        use tower::ServiceExt;
        let registry = Registry::default();
        let http = HttpMetrics::register(&registry);
        let labels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = labels.clone();
        let app = axum::Router::new()
            .route(
                "/api/games/{game_id}",
                axum::routing::get(|| async { "ok" }),
            )
            .layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    seen.lock()
                        .expect("labels")
                        .push(route_label(&request).as_ptr() as usize);
                    next.run(request)
                },
            ))
            .layer(axum::middleware::from_fn_with_state(http, track_http));
        for uri in ["/api/games/7", "/api/games/8", "/nowhere"] {
            let request = axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .expect("request");
            app.clone().oneshot(request).await.expect("answer");
        }
        let text = registry.render();
        assert!(
            text.contains(
                "http_requests_total{method=\"GET\",route=\"/api/games/:game_id\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"
            ),
            "{text}"
        );
        let labels = labels.lock().expect("labels");
        assert_eq!(labels.len(), 3, "the inner layer sees every request");
        assert_eq!(labels[0], labels[1], "one label string per pattern");
        assert_eq!(
            method_label(&axum::http::Method::from_bytes(b"BREW").expect("a method")),
            "other"
        );
    }

    #[test]
    fn records_lag_of_fetched_partitions_only() {
        let registry = Registry::default();
        let lag = ConsumerLag::register(&registry);
        let stats = serde_json::json!({
            "name": "c", "type": "consumer", "brokers": {},
            "topics": {"actions": {"topic": "actions", "partitions": {
                "0": partition(0, true, 7),
                "1": partition(1, false, 3),
                "-1": partition(-1, false, 0)
            }}}
        })
        .to_string();
        lag.record("engine", stats.as_bytes());
        assert_eq!(lag.get("engine", "actions", 0), Some(7));
        assert_eq!(lag.get("engine", "actions", 1), None);
        assert!(registry.render().contains(
            "kafka_consumer_lag{consumer=\"engine\",topic=\"actions\",partition=\"0\"} 7"
        ));
    }

    fn partition(p: i32, desired: bool, lag: i64) -> serde_json::Value {
        let state = if desired { "active" } else { "none" };
        serde_json::json!({
            "partition": p, "desired": desired, "fetch_state": state,
            "consumer_lag": -1, "lo_offset": 0, "hi_offset": 10 + lag, "ls_offset": 10 + lag,
            "app_offset": 10, "committed_offset": -1001
        })
    }
}
