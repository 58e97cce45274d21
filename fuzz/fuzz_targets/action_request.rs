//! `POST /api/games/{game_id}/actions` through the bridge's real router (an
//! in-memory publisher, no network): the first input byte picks the
//! `Content-Type` and whether an `Idempotency-Key` header is sent (taken from
//! the next bytes), the rest is the body.
//!
//! Oracle: never a panic, never a 5xx, every refusal is a JSON
//! `{"error", "detail"}` body, and an accepted action is published once with
//! the game and player of the token.

#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge::kafka::MemoryPublisher;
use bridge::{app, AppState};

use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    /// Built once: building the router per input cost more than the request.
    router: axum::Router,
    publisher: Arc<MemoryPublisher>,
    token: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let publisher = Arc::new(MemoryPublisher {
            partitions: 12,
            ..MemoryPublisher::default()
        });
        let state = AppState::for_tests(publisher.clone());
        let token = state.keys.sign(5, "fuzz-player");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Fixture {
            runtime,
            router: app(state),
            publisher,
            token,
        }
    })
}

const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    None,
    Some("application/problem+json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let mut builder = Request::post("/api/games/5/actions")
        .header("authorization", format!("Bearer {}", f.token));
    if let Some(content_type) = CONTENT_TYPES[usize::from(control & 3)] {
        builder = builder.header("content-type", content_type);
    }
    let mut body = rest;
    if control & 4 != 0 {
        // An Idempotency-Key of the next (up to 16) bytes, when they make a
        // lawful header value.
        let n = usize::from(control >> 4).min(rest.len());
        if let Ok(value) = axum::http::HeaderValue::from_bytes(&rest[..n]) {
            builder = builder.header("idempotency-key", value);
        }
        body = &rest[n..];
    }
    let request = builder.body(Body::from(body.to_vec())).expect("a request");
    let (status, answer) = f.runtime.block_on(async {
        let response = f
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .expect("an in-memory body")
            .to_bytes();
        (status, answer)
    });
    assert!(!status.is_server_error(), "{status}: {answer:?}");
    let json: serde_json::Value = serde_json::from_slice(&answer).expect("a JSON answer");
    let mut published = f.publisher.published.lock().expect("not poisoned");
    if status == StatusCode::ACCEPTED {
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].game_id, 5);
        assert_eq!(published[0].player_id, "fuzz-player");
        assert_eq!(json["action_id"], published[0].event_id.as_str());
    } else {
        assert!(status.is_client_error(), "{status}");
        assert!(json["error"].is_string(), "{json}");
        assert!(published.is_empty());
    }
    // Memory stays flat over a long run.
    published.clear();
});
