//! The bridge's metrics, registered into the process's
//! [`ops::metrics::Registry`]: actions produced and the produce ack
//! latency, refusals by code, bans and rate limits, the `games` reader's
//! lag, and the end-to-end latency from an action's arrival to its update
//! coming back from `games` ([`PendingActions`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ops::metrics::{ConsumerLag, HttpMetrics, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

/// Labels of a refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The `error` code of the answer (`unauthorized`, `bad_request`, ...).
    pub code: String,
}

/// Labels of a refused token.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Everything the bridge counts. Cheap to clone: every clone counts into
/// the same series.
#[derive(Clone)]
pub struct BridgeMetrics {
    pub registry: Registry,
    pub http: HttpMetrics,
    pub published: Counter,
    pub publish_failed: Counter,
    /// From the produce call to Kafka's ack.
    pub produce_ack: Histogram,
    /// Refused requests (4xx the client caused), by code.
    pub refusals: Family<CodeLabels, Counter>,
    /// Requests answered 429 because their address is banned.
    pub banned_requests: Counter,
    /// Addresses banned (fail2ban) since start.
    pub bans: Counter,
    /// Requests over the plain rate limit, by `per` (`address`, `token`).
    pub rate_limited: Family<CodeLabels, Counter>,
    /// Refusal events read from the logs topic into the abuse table.
    pub abuse_events: Counter,
    pub games_partitions_watched: Gauge,
    pub games_held: Gauge,
    /// Consumer lag of the `games` reader and the abuse table's reader.
    pub lag: ConsumerLag,
}

impl BridgeMetrics {
    /// The bridge's metrics in `registry` (registered the first time).
    pub fn register(registry: &Registry) -> BridgeMetrics {
        // Sets this one uses first: `once` does not nest.
        let http = registry.http();
        let lag = registry.consumer_lag();
        registry.once("bridge", |r| BridgeMetrics::register_new(r, http, lag))
    }

    fn register_new(registry: &Registry, http: HttpMetrics, lag: ConsumerLag) -> BridgeMetrics {
        let m = BridgeMetrics {
            registry: registry.clone(),
            http,
            published: Counter::default(),
            publish_failed: Counter::default(),
            produce_ack: ops::metrics::seconds_histogram(),
            refusals: Family::default(),
            banned_requests: Counter::default(),
            bans: Counter::default(),
            rate_limited: Family::default(),
            abuse_events: Counter::default(),
            games_partitions_watched: Gauge::default(),
            games_held: Gauge::default(),
            lag,
        };
        registry.register(
            "bridge_actions_published",
            "Actions produced to `actions` and acknowledged",
            m.published.clone(),
        );
        registry.register(
            "bridge_publish_failures",
            "Actions Kafka did not acknowledge in time (answered 503)",
            m.publish_failed.clone(),
        );
        registry.register_with_unit(
            "bridge_produce_ack",
            "From producing an action to Kafka's acknowledgement",
            Unit::Seconds,
            m.produce_ack.clone(),
        );
        registry.register(
            "bridge_refusals",
            "Requests refused with a 4xx the client caused, by error code",
            m.refusals.clone(),
        );
        registry.register(
            "bridge_banned_requests",
            "Requests answered 429 because their address piled up refusals",
            m.banned_requests.clone(),
        );
        registry.register(
            "bridge_bans",
            "Addresses banned for piling up refusals",
            m.bans.clone(),
        );
        registry.register(
            "bridge_rate_limited",
            "Requests over the plain rate limit, by what was limited",
            m.rate_limited.clone(),
        );
        registry.register(
            "bridge_abuse_events",
            "Refusal events read from the logs topic into the abuse table",
            m.abuse_events.clone(),
        );
        registry.register(
            "bridge_games_partitions_watched",
            "`games` partitions tailed for watchers",
            m.games_partitions_watched.clone(),
        );
        registry.register(
            "bridge_games_held",
            "Games whose state this bridge holds",
            m.games_held.clone(),
        );
        m
    }

    /// Registers the WebSocket counters.
    pub fn register_ws(&self, ws: &crate::ws::WsMetrics) {
        let r = &self.registry;
        r.register("bridge_ws_clients", "Open WebSockets", ws.connected.clone());
        r.register(
            "bridge_ws_bad_frames",
            "Client frames outside the protocol (socket closed)",
            ws.bad_frames.clone(),
        );
        r.register(
            "bridge_ws_conflated",
            "Times a watcher fell behind and got one snapshot instead of the updates it missed",
            ws.lagged.clone(),
        );
        r.register(
            "bridge_ws_stalled",
            "Sockets dropped because a send took too long",
            ws.stalled.clone(),
        );
    }

    /// Registers the connection guards' counters.
    pub fn register_connections(&self, c: &crate::serve::Connections) {
        let r = &self.registry;
        r.register(
            "bridge_http_connections_accepted",
            "TCP connections accepted",
            c.accepted.clone(),
        );
        r.register(
            "bridge_http_connections_refused",
            "Connections over the per-address limit (429, closed)",
            c.refused.clone(),
        );
        r.register(
            "bridge_http_header_timeouts",
            "Connections closed for a request head too slow",
            c.header_timeouts.clone(),
        );
        r.register(
            "bridge_http_body_timeouts",
            "Requests answered 408 for a body too slow",
            c.body_timeouts.clone(),
        );
    }

    /// Registers the refused-token totals.
    pub fn register_tokens(&self, t: &crate::auth::RefusedTokens) {
        self.registry.register(
            "bridge_tokens_refused",
            "Player tokens refused, by reason",
            t.by_reason.clone(),
        );
    }
}

/// How long an action waits for its update before it is forgotten.
pub const PENDING_TTL: Duration = Duration::from_secs(60);
/// The most actions remembered.
pub const PENDING_CAP: usize = 100_000;

/// Actions this bridge produced, by id, until their update comes back from
/// `games` (then `action_to_update_seconds` observes the time between):
/// both ends are timed on this bridge's clock. Only games watched here come
/// back; the rest are forgotten after [`PENDING_TTL`] or past
/// [`PENDING_CAP`].
pub struct PendingActions {
    inner: Mutex<PendingInner>,
    /// From the request's arrival to its update read from `games`.
    pub e2e: Histogram,
}

/// Ids are kept as a 64-bit hash: remembering an action allocates nothing
/// (a collision, one in 2^64, would time one action against another's
/// arrival).
#[derive(Default)]
struct PendingInner {
    at: HashMap<u64, Instant>,
    order: VecDeque<(Instant, u64)>,
}

/// The key an action id is remembered by.
fn id_key(id: &str) -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(Default::default);
    KEYS.hash_one(id)
}

impl Default for PendingActions {
    fn default() -> Self {
        PendingActions {
            inner: Mutex::default(),
            e2e: ops::metrics::seconds_histogram(),
        }
    }
}

impl PendingActions {
    /// Registers `action_to_update_seconds`.
    pub fn register(&self, registry: &Registry) {
        registry.register_with_unit(
            "action_to_update",
            "From an action's arrival at the bridge to its update read back from `games`",
            Unit::Seconds,
            self.e2e.clone(),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers that action `id` arrived at `now`.
    pub fn sent(&self, id: &str, now: Instant) {
        let mut inner = self.lock();
        while let Some((at, _)) = inner.order.front() {
            if now.saturating_duration_since(*at) < PENDING_TTL && inner.order.len() < PENDING_CAP {
                break;
            }
            if let Some((at, old)) = inner.order.pop_front() {
                if inner.at.get(&old) == Some(&at) {
                    inner.at.remove(&old);
                }
            }
        }
        let key = id_key(id);
        inner.at.insert(key, now);
        inner.order.push_back((now, key));
    }

    /// The update of these actions was read at `now`: observes each one
    /// remembered, and forgets it.
    pub fn seen<'a>(&self, ids: impl IntoIterator<Item = &'a str>, now: Instant) {
        let mut inner = self.lock();
        if inner.at.is_empty() {
            return;
        }
        for id in ids {
            if let Some(at) = inner.at.remove(&id_key(id)) {
                self.e2e
                    .observe(now.saturating_duration_since(at).as_secs_f64());
            }
        }
    }

    /// Actions remembered.
    pub fn len(&self) -> usize {
        self.lock().at.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_read_back_observes_its_action_once() {
        let registry = Registry::default();
        let pending = PendingActions::default();
        pending.register(&registry);
        let t0 = Instant::now();
        pending.sent("a", t0);
        pending.sent("b", t0);
        pending.seen(["a", "zz"], t0 + Duration::from_millis(30));
        pending.seen(["a"], t0 + Duration::from_millis(40));
        assert_eq!(pending.len(), 1);
        let text = registry.render();
        assert!(text.contains("action_to_update_seconds_count 1"), "{text}");
    }

    #[test]
    fn old_actions_are_forgotten() {
        let pending = PendingActions::default();
        let t0 = Instant::now();
        pending.sent("old", t0);
        pending.sent("new", t0 + PENDING_TTL + Duration::from_secs(1));
        assert_eq!(pending.len(), 1);
    }
}
