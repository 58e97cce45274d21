//! Refused requests: counted, logged for the abuse table, and banned when
//! an address piles them up (as fail2ban would); a plain rate limit per
//! address and per token, off by default.
//!
//! - [`Fail2Ban`]: an address with [`GuardSettings::ban_after`] refusals
//!   within [`GuardSettings::ban_window`] is answered `429` with
//!   `Retry-After` for [`GuardSettings::ban_for`]. Only refusals count
//!   (bad or forged tokens, another game's token, malformed bodies, ...):
//!   a load test with valid requests from one address is never slowed.
//! - [`RateLimit`]: token buckets per address and per player token
//!   (`RATE_LIMIT_PER_ADDR`, `RATE_LIMIT_PER_TOKEN`, requests per second;
//!   0 is off, the default).
//! - [`guard_at`]: the guard, one part of [`crate::edge`]. Each refusal is
//!   one `refusal` event (client, Host, code, status, route) that the log
//!   shipper sends to the `logs` topic, where [`crate::abuse`] aggregates
//!   it.
//!
//! Time is an argument (ms since the Unix epoch) everywhere it decides
//! something.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::enrich::{client_addr, TrustedProxies};
use crate::error::ErrorCode;
use crate::metrics::{BridgeMetrics, CodeLabels};

/// Default of [`GuardSettings::ban_after`].
pub const DEFAULT_BAN_AFTER: u32 = 100;
/// Default of [`GuardSettings::ban_window`].
pub const DEFAULT_BAN_WINDOW: Duration = Duration::from_secs(10);
/// Default of [`GuardSettings::ban_for`].
pub const DEFAULT_BAN_FOR: Duration = Duration::from_secs(60);
/// The most addresses [`Fail2Ban`] and [`RateLimit`] track; past it, the
/// entries that decide nothing any more are dropped first.
pub const TABLE_CAPACITY: usize = 100_000;

/// The guard's knobs (flags in [`crate::Config`]).
#[derive(Clone, Debug)]
pub struct GuardSettings {
    /// Refusals within [`Self::ban_window`] that ban an address; 0: never.
    pub ban_after: u32,
    pub ban_window: Duration,
    /// How long a ban lasts.
    pub ban_for: Duration,
    /// Requests per second allowed per address (bursts of as many); 0: off.
    pub rate_per_addr: u32,
    /// Requests per second allowed per player token; 0: off.
    pub rate_per_token: u32,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            ban_after: DEFAULT_BAN_AFTER,
            ban_window: DEFAULT_BAN_WINDOW,
            ban_for: DEFAULT_BAN_FOR,
            rate_per_addr: 0,
            rate_per_token: 0,
        }
    }
}

/// One address's recent refusals.
#[derive(Clone, Copy, Debug, Default)]
struct Strikes {
    window_start_ms: u64,
    count: u32,
    banned_until_ms: u64,
}

/// Bans addresses that pile up refusals.
#[derive(Debug)]
pub struct Fail2Ban {
    after: u32,
    window_ms: u64,
    ban_ms: u64,
    table: Mutex<HashMap<String, Strikes>>,
    /// The latest time any ban lasts to: before it, look in the table;
    /// after it, nobody is banned and no lock is taken (honest traffic
    /// never waits on the table).
    horizon_ms: AtomicU64,
}

impl Fail2Ban {
    /// A table enforcing `settings`.
    pub fn new(settings: &GuardSettings) -> Fail2Ban {
        Fail2Ban {
            after: settings.ban_after,
            window_ms: settings.ban_window.as_millis() as u64,
            ban_ms: settings.ban_for.as_millis() as u64,
            table: Mutex::new(HashMap::new()),
            horizon_ms: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Strikes>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds `client` stays banned after `now_ms`, if it is banned.
    pub fn banned(&self, client: &str, now_ms: u64) -> Option<u64> {
        if now_ms >= self.horizon_ms.load(Ordering::Relaxed) {
            return None;
        }
        let until = self.lock().get(client)?.banned_until_ms;
        (until > now_ms).then(|| (until - now_ms).div_ceil(1000).max(1))
    }

    /// Counts one refusal of `client` at `now_ms`; true when it bans it.
    pub fn refused(&self, client: &str, now_ms: u64) -> bool {
        if self.after == 0 {
            return false;
        }
        let mut table = self.lock();
        if table.len() >= TABLE_CAPACITY && !table.contains_key(client) {
            let window = self.window_ms;
            table.retain(|_, s| {
                s.banned_until_ms > now_ms || now_ms.saturating_sub(s.window_start_ms) < window
            });
            if table.len() >= TABLE_CAPACITY {
                // Everyone is recent: forget the ones not banned.
                table.retain(|_, s| s.banned_until_ms > now_ms);
            }
        }
        let strikes = table.entry(client.to_string()).or_default();
        if now_ms.saturating_sub(strikes.window_start_ms) >= self.window_ms {
            strikes.window_start_ms = now_ms;
            strikes.count = 0;
        }
        strikes.count = strikes.count.saturating_add(1);
        if strikes.count >= self.after && strikes.banned_until_ms <= now_ms {
            strikes.banned_until_ms = now_ms + self.ban_ms;
            self.horizon_ms
                .fetch_max(strikes.banned_until_ms, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// One key's token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// A token bucket per key: `rate` requests per second, bursts of `rate`.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    table: Mutex<HashMap<String, Bucket>>,
}

impl RateLimit {
    /// `rate` requests per second per key (must be above 0).
    pub fn new(rate: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate.max(1)),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may make one more request at `now_ms` (taking it).
    pub fn allow(&self, key: &str, now_ms: u64) -> bool {
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.len() >= TABLE_CAPACITY && !table.contains_key(key) {
            // A bucket idle for a second is full again: it decides nothing.
            table.retain(|_, b| now_ms.saturating_sub(b.last_ms) < 1000);
        }
        let bucket = table.entry(key.to_string()).or_insert(Bucket {
            tokens: self.rate,
            last_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.last_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the middleware shares.
#[derive(Clone)]
pub struct Guard {
    pub bans: Arc<Fail2Ban>,
    pub per_addr: Option<Arc<RateLimit>>,
    pub per_token: Option<Arc<RateLimit>>,
    pub metrics: BridgeMetrics,
    /// Where the client address comes from (as [`crate::enrich::ClientAddr`]).
    pub trusted: TrustedProxies,
}

impl Guard {
    /// A guard enforcing `settings`, counting into `metrics`.
    pub fn new(settings: &GuardSettings, metrics: BridgeMetrics, trusted: TrustedProxies) -> Guard {
        Guard {
            bans: Arc::new(Fail2Ban::new(settings)),
            per_addr: (settings.rate_per_addr > 0)
                .then(|| Arc::new(RateLimit::new(settings.rate_per_addr))),
            per_token: (settings.rate_per_token > 0)
                .then(|| Arc::new(RateLimit::new(settings.rate_per_token))),
            metrics,
            trusted,
        }
    }
}

/// Whether an answer is a refusal the client caused (what the abuse table
/// and the bans count). 404 is not: a missing page or a game without state
/// yet happens to honest clients.
pub fn is_refusal(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        400 | 401 | 403 | 405 | 408 | 411 | 413 | 414 | 415 | 422 | 429 | 431
    )
}

/// The longest `Host` logged.
const MAX_LOGGED_HOST: usize = 128;

fn logged_host(host: &HeaderValue) -> String {
    String::from_utf8_lossy(host.as_bytes())
        .chars()
        .take(MAX_LOGGED_HOST)
        .collect()
}

fn too_many(code: &'static str, detail: &'static str, retry_after_s: u64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": code, "detail": detail})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response.extensions_mut().insert(ErrorCode(code));
    response
}

/// The guard around `inner` (the rest of the request's way, see
/// [`crate::edge`]): refuses banned addresses and requests over the rate
/// limits, then counts, logs and strikes every refusal the handlers make.
/// `route` is the request's route label, `now_ms` the time.
pub async fn guard_at<F, Fut>(
    guard: &Guard,
    request: Request,
    route: &'static str,
    now_ms: u64,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let client = client_addr(peer, request.headers(), &guard.trusted.0);
    if let Some(retry) = guard.bans.banned(&client, now_ms) {
        guard.metrics.banned_requests.inc();
        return too_many(
            "too_many_refusals",
            "too many refused requests from your address: wait and retry",
            retry,
        );
    }
    // Kept as the header (a reference count), made text only for a refusal.
    let host = request.headers().get(header::HOST).cloned();
    let mut limited = None;
    if let Some(limit) = &guard.per_addr {
        if !limit.allow(&client, now_ms) {
            limited = Some("address");
        }
    }
    if limited.is_none() {
        if let (Some(limit), Some(token)) = (
            &guard.per_token,
            request.headers().get(header::AUTHORIZATION),
        ) {
            if !limit.allow(&String::from_utf8_lossy(token.as_bytes()), now_ms) {
                limited = Some("token");
            }
        }
    }
    let response = match limited {
        Some(what) => {
            guard
                .metrics
                .rate_limited
                .get_or_create(&CodeLabels {
                    code: what.to_string(),
                })
                .inc();
            too_many("rate_limited", "too many requests: slow down", 1)
        }
        None => inner(request).await,
    };
    let status = response.status();
    if is_refusal(status) {
        let code = response
            .extensions()
            .get::<ErrorCode>()
            .map_or_else(|| status.as_u16().to_string(), |c| c.0.to_string());
        guard
            .metrics
            .refusals
            .get_or_create(&CodeLabels { code: code.clone() })
            .inc();
        let host = host.map_or_else(String::new, |h| logged_host(&h));
        tracing::info!(
            target: ops::logs::REFUSAL_TARGET,
            client = %client,
            host = %host,
            code = %code,
            status = status.as_u16(),
            route = %route,
            "refused"
        );
        if guard.bans.refused(&client, now_ms) {
            guard.metrics.bans.inc();
            tracing::warn!(client = %client, "banned for piling up refused requests");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(after: u32) -> GuardSettings {
        GuardSettings {
            ban_after: after,
            ban_window: Duration::from_secs(10),
            ban_for: Duration::from_secs(60),
            ..GuardSettings::default()
        }
    }

    #[test]
    fn bans_an_address_that_piles_up_refusals_in_the_window() {
        let bans = Fail2Ban::new(&settings(3));
        let t = 1_000_000;
        assert!(!bans.refused("a", t));
        assert!(!bans.refused("a", t + 1));
        assert_eq!(bans.banned("a", t + 2), None);
        assert!(bans.refused("a", t + 2));
        assert_eq!(bans.banned("a", t + 3), Some(60));
        assert_eq!(bans.banned("b", t + 3), None);
        // The ban ends.
        assert_eq!(bans.banned("a", t + 2 + 60_000), None);
    }

    #[test]
    fn refusals_spread_over_windows_do_not_ban() {
        let bans = Fail2Ban::new(&settings(3));
        let t = 1_000_000;
        for i in 0..10 {
            assert!(!bans.refused("a", t + i * 6_000));
        }
        assert_eq!(bans.banned("a", t + 60_000), None);
    }

    #[test]
    fn zero_never_bans() {
        let bans = Fail2Ban::new(&settings(0));
        for i in 0..1000 {
            assert!(!bans.refused("a", i));
        }
    }

    #[test]
    fn rate_limit_allows_the_rate_and_refills() {
        let limit = RateLimit::new(5);
        let t = 1_000_000;
        let allowed = (0..10).filter(|_| limit.allow("a", t)).count();
        assert_eq!(allowed, 5);
        assert!(limit.allow("b", t));
        assert!(!limit.allow("a", t + 100));
        assert!(limit.allow("a", t + 200));
    }
}
