//! `GET /api/analytics/{report}`: `lake report`'s tables as JSON, for a
//! process that hosts the bridge (the `nation` binary merges [`router`]).
//!
//! Requests never wait for the lake: [`refresh_loop`] recounts in the
//! background ([`ReportCache`]: only files written since the last pass are
//! read) and handlers answer from the last [`Snapshot`].
//!
//! | report | rows |
//! |---|---|
//! | `by_event_type` | `[event_type, event_count]`, most first |
//! | `by_host` | `[Host, number_of_player]`, most first |
//!
//! Answer: `{"report", "columns", "rows", "events", "refreshed_at_ms",
//! "error"}` (`error`: the last refresh failed; the rows are the last good
//! ones). Unknown report: 404 `{"error": "unknown_report", "detail"}`;
//! before the first refresh: 503 with `Retry-After`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::location::Location;
use crate::report::{Report, ReportCache};

/// The reports served, with their columns (as `lake report` heads them).
pub const REPORTS: [(&str, [&str; 2]); 2] = [
    ("by_event_type", ["event_type", "event_count"]),
    ("by_host", ["Host", "number_of_player"]),
];

/// What the handlers answer from: the last report counted.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub report: Arc<Report>,
    pub refreshed_at_ms: i64,
    /// The last refresh's error, if it failed (the report is the last good).
    pub error: Option<String>,
}

/// The handle shared by the refresher and the routes.
#[derive(Clone, Debug, Default)]
pub struct Analytics {
    latest: Arc<RwLock<Option<Snapshot>>>,
}

impl Analytics {
    /// The last snapshot, `None` before the first refresh.
    pub fn latest(&self) -> Option<Snapshot> {
        self.latest.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Records a refresh's result at `now_ms`.
    pub fn record(&self, result: crate::Result<Report>, now_ms: i64) {
        let Ok(mut latest) = self.latest.write() else {
            return;
        };
        match result {
            Ok(report) => {
                *latest = Some(Snapshot {
                    report: Arc::new(report),
                    refreshed_at_ms: now_ms,
                    error: None,
                })
            }
            Err(e) => {
                let mut snapshot = latest.take().unwrap_or_default();
                snapshot.error = Some(e.to_string());
                *latest = Some(snapshot);
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Recounts `lake` every `every` until `stop` resolves. A failed pass is
/// logged and kept in the snapshot; the next pass tries again.
pub async fn refresh_loop(
    lake: Location,
    analytics: Analytics,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut cache = ReportCache::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let result = cache.refresh(&lake).await;
        if let Err(e) = &result {
            tracing::warn!(lake = %lake.display, error = %e, "analytics refresh failed");
        }
        analytics.record(result, now_ms());
    }
}

/// The routes, over `analytics`.
pub fn router(analytics: Analytics) -> Router {
    Router::new()
        .route("/api/analytics", get(list))
        .route("/api/analytics/{report}", get(one))
        .with_state(analytics)
}

fn error(status: StatusCode, code: &str, detail: serde_json::Value) -> Response {
    (status, Json(json!({"error": code, "detail": detail}))).into_response()
}

fn not_ready() -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        json!("the lake's reports are being counted for the first time"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// `GET /api/analytics`: the reports there are, and the totals.
async fn list(State(analytics): State<Analytics>) -> Response {
    let Some(s) = analytics.latest() else {
        return not_ready();
    };
    let reports: Vec<_> = REPORTS
        .iter()
        .map(|(name, columns)| json!({"report": name, "columns": columns}))
        .collect();
    Json(json!({
        "reports": reports,
        "events": s.report.events,
        "refreshed_at_ms": s.refreshed_at_ms,
        "error": s.error,
    }))
    .into_response()
}

/// Query of `GET /api/analytics/{report}`.
#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    /// At most this many rows (the largest first); all when absent.
    pub limit: Option<usize>,
}

/// `GET /api/analytics/{report}`.
async fn one(
    State(analytics): State<Analytics>,
    Path(name): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Response {
    let Some(&(name, columns)) = REPORTS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = REPORTS.iter().map(|(n, _)| *n).collect();
        return error(
            StatusCode::NOT_FOUND,
            "unknown_report",
            json!({"report": name, "known": known}),
        );
    };
    let Some(s) = analytics.latest() else {
        return not_ready();
    };
    let rows = match name {
        "by_event_type" => &s.report.by_event_type,
        _ => &s.report.by_host,
    };
    let limit = query.limit.unwrap_or(usize::MAX);
    let rows: Vec<_> = rows.iter().take(limit).collect();
    Json(json!({
        "report": name,
        "columns": columns,
        "rows": rows,
        "events": s.report.events,
        "refreshed_at_ms": s.refreshed_at_ms,
        "error": s.error,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_json(app: Router, uri: &str) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    fn report() -> Report {
        Report {
            events: 5,
            by_event_type: vec![("default".into(), 3), ("purchase_sword".into(), 2)],
            by_host: vec![("a".into(), 4), ("b".into(), 1)],
        }
    }

    #[tokio::test]
    async fn serves_the_last_report_as_json() {
        let analytics = Analytics::default();
        analytics.record(Ok(report()), 1234);
        let (status, _, body) = get_json(router(analytics.clone()), "/api/analytics/by_host").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["rows"], json!([["a", 4], ["b", 1]]));
        assert_eq!(body["columns"], json!(["Host", "number_of_player"]));
        assert_eq!(body["events"], 5);
        assert_eq!(body["refreshed_at_ms"], 1234);
        assert!(body["error"].is_null());
        let (_, _, body) = get_json(
            router(analytics.clone()),
            "/api/analytics/by_event_type?limit=1",
        )
        .await;
        assert_eq!(body["rows"], json!([["default", 3]]));
        let (status, _, body) = get_json(router(analytics), "/api/analytics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["reports"][0]["report"], "by_event_type");
    }

    #[tokio::test]
    async fn an_unknown_report_is_a_json_404() {
        let analytics = Analytics::default();
        analytics.record(Ok(report()), 1);
        let (status, _, body) = get_json(router(analytics), "/api/analytics/by_weather").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "unknown_report");
        assert_eq!(body["detail"]["report"], "by_weather");
        assert_eq!(body["detail"]["known"], json!(["by_event_type", "by_host"]));
    }

    #[tokio::test]
    async fn before_the_first_count_it_is_503_with_retry_after() {
        let (status, retry, body) =
            get_json(router(Analytics::default()), "/api/analytics/by_host").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"], "not_ready");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_good_rows_and_says_why() {
        let analytics = Analytics::default();
        analytics.record(Ok(report()), 1);
        analytics.record(Err(crate::LakeError::Other("disk on fire".into())), 2);
        let (status, _, body) = get_json(router(analytics), "/api/analytics/by_host").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["rows"], json!([["a", 4], ["b", 1]]));
        assert_eq!(body["refreshed_at_ms"], 1);
        assert!(body["error"].as_str().unwrap().contains("disk on fire"));
    }
}
