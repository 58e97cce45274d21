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
//! before the first refresh: 503 with `Retry-After`. The answers are typed
//! ([`ReportList`], [`ReportRows`]) and the routes documented for the
//! bridge's OpenAPI document by [`openapi_paths`].

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ops::openapi::{error_response, get as documented_get, text_error};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::wire::ErrorBody;

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
    let body = ErrorBody {
        error: code.into(),
        detail,
    };
    (status, Json(body)).into_response()
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

/// A report `GET /api/analytics` lists. Fields in alphabetical order, as
/// the JSON map this replaced wrote them.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportInfo {
    /// The column heads of its rows.
    pub columns: [&'static str; 2],
    /// Its name, for `GET /api/analytics/{report}`.
    pub report: &'static str,
}

/// `GET /api/analytics`'s answer: the reports there are, and the totals.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportList {
    /// The last refresh's error (the figures are the last good ones); null
    /// when it worked.
    pub error: Option<String>,
    /// Events counted in the lake.
    pub events: u64,
    /// When the figures were counted (ms since the epoch).
    pub refreshed_at_ms: i64,
    pub reports: Vec<ReportInfo>,
}

/// `GET /api/analytics/{report}`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportRows {
    /// The column heads of `rows`.
    pub columns: [&'static str; 2],
    /// The last refresh's error (the rows are the last good ones); null
    /// when it worked.
    pub error: Option<String>,
    /// Events counted in the lake.
    pub events: u64,
    /// When the rows were counted (ms since the epoch).
    pub refreshed_at_ms: i64,
    pub report: &'static str,
    /// `[key, count]`, the largest count first.
    pub rows: Vec<(String, u64)>,
}

/// The `detail` of a 404 `unknown_report`.
#[derive(Debug, Serialize)]
struct UnknownReport<'a> {
    known: Vec<&'static str>,
    report: &'a str,
}

/// `GET /api/analytics`: the reports there are, and the totals.
async fn list(State(analytics): State<Analytics>) -> Response {
    let Some(s) = analytics.latest() else {
        return not_ready();
    };
    let reports = REPORTS
        .iter()
        .map(|&(report, columns)| ReportInfo { columns, report })
        .collect();
    Json(ReportList {
        error: s.error,
        events: s.report.events,
        refreshed_at_ms: s.refreshed_at_ms,
        reports,
    })
    .into_response()
}

/// Query of `GET /api/analytics/{report}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReportQuery {
    /// At most this many rows (the largest first); all when absent.
    pub limit: Option<usize>,
}

/// The path of `GET /api/analytics/{report}`.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)] // read by schemars only
struct ReportPath {
    /// `by_event_type` or `by_host` (`GET /api/analytics` lists them).
    report: String,
}

/// `GET /api/analytics/{report}`.
async fn one(
    State(analytics): State<Analytics>,
    Path(name): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Response {
    let Some(&(report, columns)) = REPORTS.iter().find(|(n, _)| *n == name) else {
        let detail = UnknownReport {
            known: REPORTS.iter().map(|(n, _)| *n).collect(),
            report: &name,
        };
        return error(
            StatusCode::NOT_FOUND,
            "unknown_report",
            serde_json::to_value(detail).unwrap_or_default(),
        );
    };
    let Some(s) = analytics.latest() else {
        return not_ready();
    };
    let rows = match report {
        "by_event_type" => &s.report.by_event_type,
        _ => &s.report.by_host,
    };
    let limit = query.limit.unwrap_or(usize::MAX);
    Json(ReportRows {
        columns,
        error: s.error,
        events: s.report.events,
        refreshed_at_ms: s.refreshed_at_ms,
        report,
        rows: rows.iter().take(limit).cloned().collect(),
    })
    .into_response()
}

const NOT_READY: &str = "`not_ready`: the lake's reports are being counted for the first time.";

/// The analytics routes ([`router`]), for the bridge's OpenAPI document
/// (`bridge::Extras::openapi`).
pub fn openapi_paths() -> Vec<(String, aide::openapi::PathItem)> {
    vec![
        documented_get("/api/analytics", |op| {
            let op = op
                .summary("The lake's reports and its event count.")
                .description(
                    "Answered from the last background count of the lake (never waits for \
                     it).",
                )
                .response_with::<200, Json<ReportList>, _>(|r| r.description("The reports."));
            error_response(op, 503, NOT_READY)
        }),
        documented_get("/api/analytics/{report}", |op| {
            let op = op
                .summary("A report's rows (`lake report`'s table), the largest first.")
                .input::<Path<ReportPath>>()
                .input::<Query<ReportQuery>>()
                .response_with::<200, Json<ReportRows>, _>(|r| r.description("The rows."));
            let op = text_error(
                op,
                400,
                "A query that does not parse (`limit` not a non-negative integer): axum's \
                 text answer.",
            );
            let op = error_response(
                op,
                404,
                "`unknown_report`; `detail` is `{\"report\", \"known\"}`.",
            );
            error_response(op, 503, NOT_READY)
        }),
    ]
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

    /// Every documented route and method is one the router serves.
    #[tokio::test]
    async fn every_documented_route_is_routed() {
        let analytics = Analytics::default();
        analytics.record(Ok(report()), 1);
        let paths = openapi_paths();
        assert_eq!(paths.len(), 2);
        for (route, item) in paths {
            assert!(item.get.is_some(), "{route}: GET only");
            let uri = route.replace("{report}", "by_host");
            let (status, _, _) = get_json(router(analytics.clone()), &uri).await;
            assert_eq!(status, StatusCode::OK, "GET {route}");
        }
    }

    #[test]
    fn the_document_lists_the_routes() {
        let doc = bridge::openapi::document_with(&[openapi_paths]);
        let doc = serde_json::to_value(&doc).unwrap();
        let one = &doc["paths"]["/api/analytics/{report}"]["get"];
        for status in ["200", "400", "404", "503"] {
            assert!(one["responses"][status].is_object(), "{status}");
        }
        assert!(one["responses"]["503"]["headers"]["Retry-After"].is_object());
        let rows = &doc["components"]["schemas"]["ReportRows"]["properties"];
        assert_eq!(rows["rows"]["items"]["maxItems"], 2, "[key, count] pairs");
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
