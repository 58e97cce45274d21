//! The admin routes (`Authorization: Bearer <ADMIN_TOKEN>`): the abuse
//! table and a JSON digest of `/metrics` for the operator page.
//!
//! - `GET /api/admin/abuse?limit=N`: the worst sources of refused requests
//!   ([`crate::abuse::AbuseReport`]).
//! - `GET /api/admin/summary`: [`Summary`], what the operator page charts,
//!   digested from this process's own metrics text (every role it hosts)
//!   with a Prometheus text-format parser.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::abuse::AbuseReport;
use crate::error::AppError;
use crate::AppState;

/// The most sources `GET /api/admin/abuse` lists.
pub const MAX_LIMIT: usize = 1000;

/// Checks the admin bearer token (constant time).
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    // No credentials at all: 401 (say what to send), whether or not the
    // routes are on; credentials while the routes are off: 403.
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AppError::Unauthorized(
            "send Authorization: Bearer <ADMIN_TOKEN>",
        ))?;
    let Some(expected) = &state.admin_token else {
        return Err(AppError::Forbidden(
            "the admin routes are off: set ADMIN_TOKEN",
        ));
    };
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AppError::Unauthorized(
            "send Authorization: Bearer <ADMIN_TOKEN>",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests: the comparison time says nothing about b.
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `?limit=`
#[derive(Deserialize)]
pub struct AbuseQuery {
    limit: Option<usize>,
}

/// `GET /api/admin/abuse`
pub async fn abuse(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<AbuseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AbuseReport>, AppError> {
    authorize(&state, &headers)?;
    let Query(query) = query.map_err(|e| AppError::BadRequest(json!(e.body_text())))?;
    let limit = query.limit.unwrap_or(20).min(MAX_LIMIT);
    let report = state
        .abuse
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .worst(limit);
    Ok(Json(report))
}

pub use shared::admin::Summary;

/// `GET /api/admin/summary`
pub async fn summary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Summary>, AppError> {
    authorize(&state, &headers)?;
    crate::routes::refresh_gauges(&state);
    let text = state.metrics.registry.render();
    Ok(Json(digest(&text, crate::enrich::now_ms())))
}

/// Digests metrics text into a [`Summary`].
pub fn digest(text: &str, at_ms: u64) -> Summary {
    let mut summary = Summary {
        at_ms,
        ..Summary::default()
    };
    let lines = text
        .lines()
        .filter(|l| *l != "# EOF")
        .map(|l| Ok(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return summary;
    };
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for sample in &scrape.samples {
        let label = |name: &str| sample.labels.get(name).unwrap_or("").to_string();
        let name = sample.metric.as_str();
        match (&sample.value, name) {
            (prometheus_parse::Value::Histogram(hist), "action_to_update_seconds") => {
                for b in hist {
                    let e = buckets
                        .entry(b.less_than.to_bits())
                        .or_insert((b.less_than, 0.0));
                    e.1 += b.count;
                }
            }
            (value, _) => {
                let v = scalar(value);
                match name {
                    "bridge_actions_published_total" | "bridge_actions_published" => {
                        summary.actions += v
                    }
                    "http_requests_total" | "http_requests" => summary.requests += v,
                    "bridge_ws_clients" => summary.ws_clients += v,
                    "kafka_consumer_lag" => *summary.lag.entry(label("consumer")).or_default() += v,
                    "bridge_refusals_total" | "bridge_refusals" => {
                        *summary.refusals.entry(label("code")).or_default() += v
                    }
                    "engine_rejections_total" | "engine_rejections" => {
                        *summary.rejections.entry(label("code")).or_default() += v
                    }
                    "engine_duplicates_total" | "engine_duplicates" => summary.duplicates += v,
                    "engine_dead_letters_total" | "engine_dead_letters" => {
                        summary.dead_letters += v
                    }
                    "bridge_banned_requests_total" | "bridge_banned_requests" => {
                        summary.banned_requests += v
                    }
                    "logs_dropped_total" | "logs_dropped" => summary.logs_dropped += v,
                    _ => {}
                }
            }
        }
    }
    let mut e2e: Vec<(f64, f64)> = buckets.into_values().collect();
    e2e.sort_by(|a, b| a.0.total_cmp(&b.0));
    summary.e2e_buckets = e2e;
    summary
}

fn scalar(value: &prometheus_parse::Value) -> f64 {
    match value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ops::metrics::Registry;

    #[test]
    fn digests_the_registry_text() {
        let registry = Registry::default();
        let m = crate::metrics::BridgeMetrics::register(&registry);
        let pending = crate::metrics::PendingActions::default();
        pending.register(&registry);
        m.published.inc_by(7);
        m.refusals
            .get_or_create(&crate::metrics::CodeLabels {
                code: "unauthorized".into(),
            })
            .inc_by(3);
        pending.e2e.observe(0.003);
        let s = digest(&registry.render(), 5);
        assert_eq!(s.actions, 7.0);
        assert_eq!(s.refusals["unauthorized"], 3.0);
        assert!(
            s.e2e_buckets
                .iter()
                .any(|(le, n)| *le >= 0.003 && *n == 1.0),
            "{s:?}"
        );
    }

    #[test]
    fn no_credentials_is_401_whether_or_not_the_routes_are_on() {
        let mut state = crate::AppState::for_tests(std::sync::Arc::new(
            crate::kafka::MemoryPublisher::default(),
        ));
        let bearer = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                axum::http::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
            h
        };
        let none = HeaderMap::new();
        assert!(matches!(
            authorize(&state, &none),
            Err(AppError::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(&state, &bearer("wrong")),
            Err(AppError::Unauthorized(_))
        ));
        assert!(authorize(&state, &bearer("admin-for-tests")).is_ok());
        state.admin_token = None;
        assert!(matches!(
            authorize(&state, &none),
            Err(AppError::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(&state, &bearer("anything")),
            Err(AppError::Forbidden(_))
        ));
    }
}
