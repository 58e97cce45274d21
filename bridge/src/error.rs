//! [`AppError`]: every way a request can fail, as `{"error", "detail"}` JSON.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use shared::wire::ErrorBody;
use shared::ActionType;

/// A request that failed. User mistakes are 4xx with a detail; internal
/// failures are 5xx and leak nothing to the client: their cause goes to the
/// log instead ([`log_cause`]). Logging refusals is the trace layer's job.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bad request: {0}")]
    BadRequest(Value),
    #[error("invalid action: {0}")]
    Unprocessable(Value),
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// A missing or refused player token: 401, or 403 for another game's.
    #[error("token refused: {0}")]
    Token(crate::auth::TokenError),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// Kafka did not acknowledge in time, the local queue is full, or the
    /// process is not ready (its engine starting, a state not loaded).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The game refused the request for a reason of its rules (an arena
    /// whose teams are full): 409 with the rules' code.
    #[error("refused by the game: {0}")]
    Refused(shared::Rejection),
}

/// The `error` code of an answer, left in its extensions for the
/// middleware that counts and logs refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// The valid `type` values, listed in errors about them.
pub fn valid_types() -> Vec<&'static str> {
    ActionType::playable().map(ActionType::as_str).collect()
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str, Value) {
        match self {
            AppError::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request", d.clone()),
            AppError::Unprocessable(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_action",
                d.clone(),
            ),
            AppError::Unauthorized(d) => (StatusCode::UNAUTHORIZED, "unauthorized", json!(d)),
            AppError::Token(e @ crate::auth::TokenError::OtherGame(_)) => {
                (StatusCode::FORBIDDEN, e.http_code(), json!(e.detail()))
            }
            AppError::Token(e) => (StatusCode::UNAUTHORIZED, e.http_code(), json!(e.detail())),
            AppError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", json!(d)),
            AppError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", json!(d)),
            AppError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                json!("this route does not accept that method"),
            ),
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                json!("bodies are limited to 16 KiB"),
            ),
            AppError::UnsupportedMediaType(got) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                json!(format!("send the body as application/json, not {got}")),
            ),
            AppError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                json!(
                    "the game's log did not acknowledge the action; retry with the same action id"
                ),
            ),
            AppError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                json!("something went wrong on our side"),
            ),
            AppError::Refused(r) => (
                StatusCode::CONFLICT,
                r.code(),
                json!({"message": r.to_string(), "reason": r}),
            ),
        }
    }
}

/// When a 5xx cause was last logged (ms since the epoch), and how many were
/// left out since: during an outage every request fails the same way, so
/// the log gets one line a second with the count of those skipped, not one
/// per request.
static LAST_CAUSE_LOGGED_MS: AtomicU64 = AtomicU64::new(0);
static CAUSES_LEFT_OUT: AtomicU64 = AtomicU64::new(0);

/// Logs why a request got a 5xx (the client only sees a generic detail), at
/// most once a second.
fn log_cause(status: StatusCode, error: &AppError) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = LAST_CAUSE_LOGGED_MS.load(Ordering::Relaxed);
    if now_ms < last.saturating_add(1_000)
        || LAST_CAUSE_LOGGED_MS
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        CAUSES_LEFT_OUT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let left_out = CAUSES_LEFT_OUT.swap(0, Ordering::Relaxed);
    tracing::warn!(
        status = status.as_u16(),
        cause = %error,
        skipped = left_out,
        "answered with a server error"
    );
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, error, detail) = self.parts();
        if status.is_server_error() {
            log_cause(status, &self);
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: error.to_string(),
                detail,
            }),
        )
            .into_response();
        response.extensions_mut().insert(ErrorCode(error));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
