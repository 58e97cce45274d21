//! Handler tests: the router with an in-memory publisher, no network.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge::kafka::MemoryPublisher;
use bridge::{app, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::ActionType;
use tower::ServiceExt;

fn setup() -> (AppState, Arc<MemoryPublisher>) {
    let publisher = Arc::new(MemoryPublisher {
        partitions: 12,
        ..MemoryPublisher::default()
    });
    (AppState::for_tests(publisher.clone()), publisher)
}

async fn send(
    state: &AppState,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

fn post(uri: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post(uri).header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(body.into()).unwrap()
}

async fn join(state: &AppState, game: u64) -> (String, String) {
    let (status, _, body) = send(
        state,
        post(
            &format!("/api/games/{game}/join"),
            None,
            r#"{"name":"Rome"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = json_of(&body);
    (
        body["player_id"].as_str().unwrap().into(),
        body["token"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn join_publishes_a_join_with_the_name() {
    let (state, published) = setup();
    let (player, _) = join(&state, 3).await;
    let records = published.published.lock().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event_type, ActionType::Join);
    assert_eq!(records[0].player_id, player);
    assert_eq!(records[0].name.as_deref(), Some("Rome"));
    assert_eq!(records[0].game_id, 3);
}

#[tokio::test]
async fn action_is_stamped_and_answered_202() {
    let (state, published) = setup();
    let (player, token) = join(&state, 5).await;
    let request = Request::post("/api/games/5/actions")
        .header("authorization", format!("Bearer {token}"))
        .header("host", "user1.comcast.com")
        .header("user-agent", "ApacheBench/2.3")
        .header("accept", "*/*")
        .body(Body::from(r#"{"type":"purchase_sword"}"#))
        .unwrap();
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let body = json_of(&body);
    assert_eq!(body["partition"], 5);
    let records = published.published.lock().unwrap();
    let record = &records[1];
    assert_eq!(record.event_type, ActionType::PurchaseSword);
    assert_eq!(record.player_id, player);
    assert_eq!(record.host, "user1.comcast.com");
    assert_eq!(record.user_agent, "ApacheBench/2.3");
    assert_eq!(record.accept, "*/*");
    assert_eq!(record.event_id, body["action_id"].as_str().unwrap());
    assert_eq!(
        uuid::Uuid::parse_str(&record.event_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(record.schema_version, shared::SCHEMA_VERSION);
    assert!(record.received_at_ms > 1_700_000_000_000);
}

#[tokio::test]
async fn idempotency_key_header_and_body_field_become_the_action_id() {
    let (state, _) = setup();
    let (_, token) = join(&state, 1).await;
    let request = Request::post("/api/games/1/actions")
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", "click-42")
        .body(Body::from(r#"{"type":"default"}"#))
        .unwrap();
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(json_of(&body)["action_id"], "click-42");
    let (_, _, body) = send(
        &state,
        post(
            "/api/games/1/actions",
            Some(&token),
            r#"{"type":"default","action_id":"click-43"}"#,
        ),
    )
    .await;
    assert_eq!(json_of(&body)["action_id"], "click-43");
    // Both given: the header is the id, and the body's must be well formed
    // too (schemathesis found it was not checked).
    for (body_id, status, id) in [
        ("click-44", StatusCode::ACCEPTED, Some("click-45")),
        ("\\u00d7", StatusCode::BAD_REQUEST, None),
    ] {
        let request = Request::post("/api/games/1/actions")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "click-45")
            .body(Body::from(format!(
                r#"{{"type":"default","action_id":"{body_id}"}}"#
            )))
            .unwrap();
        let (got, _, body) = send(&state, request).await;
        assert_eq!(got, status, "{body_id}");
        if let Some(id) = id {
            assert_eq!(json_of(&body)["action_id"], id);
        }
    }
}

#[tokio::test]
async fn tokens_are_checked() {
    let (state, published) = setup();
    let (_, token) = join(&state, 1).await;
    let kid = state.keys.current_key_id().to_string();
    let cases = [
        (None, "unauthorized"),
        (Some("v1.1.someone.forged".to_string()), "unauthorized"),
        (Some(token.replacen(".1.", ".2.", 1)), "unauthorized"),
        (Some(token.replace(&kid, "AAAAAAAA")), "unknown_token_key"),
    ];
    for (token, code) in cases {
        let (status, _, body) = send(
            &state,
            post(
                "/api/games/1/actions",
                token.as_deref(),
                r#"{"type":"default"}"#,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(json_of(&body)["error"], code, "{token:?}");
        assert!(json_of(&body)["detail"].is_string());
    }
    let (status, _, body) = send(
        &state,
        post(
            "/api/games/2/actions",
            Some(&token),
            r#"{"type":"default"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json_of(&body)["error"], "forbidden");
    assert_eq!(
        published.published.lock().unwrap().len(),
        1,
        "only the join was published"
    );
    // Every refusal was counted against the (in-process) client.
    assert_eq!(state.refused_tokens.of_client("unknown"), 5);
}

#[tokio::test]
async fn expired_tokens_get_a_clear_401() {
    let (mut state, published) = setup();
    state.keys = bridge::auth::TokenKeys::new(b"secret".to_vec()).ttl_s(60);
    let now = bridge::auth::now_s();
    let expired = state.keys.sign_at(1, "p", now - 61);
    let (status, _, body) = send(
        &state,
        post(
            "/api/games/1/actions",
            Some(&expired),
            r#"{"type":"default"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&body)["error"], "token_expired");
    let fresh = state.keys.sign_at(1, "p", now);
    let (status, _, _) = send(
        &state,
        post(
            "/api/games/1/actions",
            Some(&fresh),
            r#"{"type":"default"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(published.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_rotated_secret_keeps_players_in() {
    let (mut state, _) = setup();
    state.keys = bridge::auth::TokenKeys::new(b"old".to_vec());
    let (_, old_token) = join(&state, 1).await;
    // Restarted with a new secret, the old one kept as previous.
    let mut config = bridge::Config::for_brokers("unused:9092");
    config.token_secret = Some("new".into());
    config.token_previous_secrets = vec!["old".into()];
    state.keys = bridge::token_keys(&config);
    let (_, new_token) = join(&state, 1).await;
    assert_ne!(old_token, new_token);
    for token in [&old_token, &new_token] {
        let (status, _, _) = send(
            &state,
            post("/api/games/1/actions", Some(token), r#"{"type":"default"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    // The old secret dropped: its tokens are refused as of an unknown key.
    config.token_previous_secrets.clear();
    state.keys = bridge::token_keys(&config);
    let (status, _, body) = send(
        &state,
        post(
            "/api/games/1/actions",
            Some(&old_token),
            r#"{"type":"default"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&body)["error"], "unknown_token_key");
}

#[tokio::test]
async fn refused_tokens_show_on_metrics() {
    let (state, _) = setup();
    for _ in 0..3 {
        let (status, _, _) = send(
            &state,
            post("/api/games/1/actions", Some("x"), r#"{"type":"default"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, body) = send(
        &state,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("bridge_tokens_refused_total{reason=\"malformed_token\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("bridge_refusals_total{code=\"unauthorized\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_bodies_get_json_errors() {
    let (state, _) = setup();
    let (_, token) = join(&state, 1).await;
    let big = format!(r#"{{"type":"default","pad":"{}"}}"#, "x".repeat(17 * 1024));
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        ("{not json".into(), StatusCode::BAD_REQUEST, "bad_request"),
        (
            r#"{"type":"fly"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
        ),
        (
            r#"{"type":7}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
        ),
        (
            r#"{}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
        ),
        (
            r#"{"type":"join"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
        ),
        (
            r#"{"type":"default","action_id":""}"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (body, expected, code) in cases {
        let (status, _, answer) = send(
            &state,
            post("/api/games/1/actions", Some(&token), body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body:.60}");
        let answer = json_of(&answer);
        assert_eq!(answer["error"], code);
        assert!(answer.get("detail").is_some());
        if code == "invalid_action" {
            assert!(answer["detail"]["valid_types"]
                .as_array()
                .unwrap()
                .contains(&json!("purchase_sword")));
        }
    }
    let (status, _, _) = send(&state, post("/api/games/1/join", None, r#"{"name":""}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, body) =
        send(&state, post("/api/games/abc/join", None, r#"{"name":"x"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&body)["error"], "bad_request");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let (state, _) = setup();
    let (status, _, body) = send(
        &state,
        Request::get("/no/such/thing").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&body)["error"], "not_found");
    let (status, _, body) = send(
        &state,
        Request::delete("/api/games/1/actions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json_of(&body)["error"], "method_not_allowed");
}

#[tokio::test]
async fn seed_endpoints_use_the_host_as_player_in_the_default_game() {
    let (state, published) = setup();
    for (path, event, text) in [
        ("/", ActionType::Default, "This is the default response!\n"),
        (
            "/purchase_a_sword",
            ActionType::PurchaseSword,
            "Sword Purchased!\n",
        ),
        (
            "/purchase_a_shield",
            ActionType::PurchaseShield,
            "Shield Purchased!\n",
        ),
        (
            "/purchase_a_horse",
            ActionType::PurchaseHorse,
            "Horse Purchased!\n",
        ),
        (
            "/purchase_a_knife",
            ActionType::PurchaseKnife,
            "Knife Purchased!\n",
        ),
        (
            "/upgrade_a_sword",
            ActionType::UpgradeSword,
            "Sword Upgraded!\n",
        ),
        (
            "/upgrade_a_shield",
            ActionType::UpgradeShield,
            "Shield Upgraded!\n",
        ),
    ] {
        let request = Request::get(path)
            .header("host", "user3.verizon.com")
            .header("accept", "*/*")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&state, request).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(String::from_utf8(body).unwrap(), text);
        let records = published.published.lock().unwrap();
        let last = records.last().unwrap();
        assert_eq!(last.event_type, event);
        assert_eq!(last.player_id, "user3.verizon.com");
        assert_eq!(last.game_id, 1);
    }
}

/// Issue 19: the arena, analytics and operator pages are the second build's
/// (`extra/index.html`), so the game page's wasm carries none of them.
#[tokio::test]
async fn each_page_gets_its_builds_html() {
    let (mut state, _) = setup();
    state.seed_endpoints = false;
    let dist = std::env::temp_dir().join(format!("pages-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dist.join("extra")).unwrap();
    std::fs::write(dist.join("index.html"), "the game").unwrap();
    std::fs::write(dist.join("extra").join("index.html"), "the extra pages").unwrap();
    state.static_dir = dist.clone();
    let arena = shared::arena::ARENA_IDS.start + 7;
    for (uri, page) in [
        ("/".to_string(), "the game"),
        ("/?game=3".to_string(), "the game"),
        ("/?arena=3".to_string(), "the game"),
        (format!("/?arena={arena}"), "the extra pages"),
        ("/?view=analytics".to_string(), "the extra pages"),
        ("/admin".to_string(), "the extra pages"),
    ] {
        let request = Request::get(uri.as_str())
            .header("accept", "text/html")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&state, request).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(String::from_utf8(body).unwrap(), page, "{uri}");
    }
    std::fs::remove_dir_all(dist).unwrap();
}

#[tokio::test]
async fn seed_endpoints_can_be_turned_off() {
    let (mut state, published) = setup();
    state.seed_endpoints = false;
    let (status, _, _) = send(
        &state,
        Request::get("/purchase_a_sword")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(published.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn broker_down_is_503_with_retry_after() {
    let (state, published) = setup();
    let (_, token) = join(&state, 1).await;
    published.down.store(true, Ordering::SeqCst);
    let (status, headers, body) = send(
        &state,
        post(
            "/api/games/1/actions",
            Some(&token),
            r#"{"type":"default"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(json_of(&body)["error"], "unavailable");
    let (status, _, _) = send(&state, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = send(
        &state,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn game_state_query_answers_404_then_the_owners_answer() {
    let (mut state, _) = setup();
    let (status, _, body) = send(
        &state,
        Request::get("/api/games/9").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&body)["error"], "not_found");
    // The engine that owns the game now has it.
    let source = bridge::games::MemorySource::default();
    source.0.lock().unwrap().insert(
        9,
        shared::GameSnapshot {
            game_id: 9,
            version: 4,
            ..Default::default()
        },
    );
    state.hub = bridge::games::GamesHub::detached(12, std::sync::Arc::new(source));
    let (status, _, body) = send(
        &state,
        Request::get("/api/games/9").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["version"], 4);
}

#[tokio::test]
async fn openapi_lists_every_contract_route() {
    let (state, _) = setup();
    for served in ["/openapi.yaml", "/openapi.json"] {
        let (status, _, body) =
            send(&state, Request::get(served).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let doc = json_of(&body);
        assert_eq!(doc["openapi"], "3.1.0");
        for route in [
            "/api/games/{game_id}/join",
            "/api/games/{game_id}/actions",
            "/api/games/{game_id}",
            "/ws/games/{game_id}",
            "/purchase_a_sword",
            "/healthz",
            "/readyz",
        ] {
            assert!(
                doc["paths"][route].is_object(),
                "{route} missing from {served}"
            );
        }
    }
}

#[tokio::test]
async fn an_eleventh_arena_player_is_refused_409_team_full_and_nothing_is_published() {
    let publisher = Arc::new(MemoryPublisher {
        partitions: 12,
        ..MemoryPublisher::default()
    });
    let arena_id = shared::arena::ARENA_IDS.start + 1;
    let mut full = shared::Game::new(arena_id);
    for i in 0..10 {
        let join = shared::ActionEnvelope::new(
            format!("j{i}"),
            arena_id,
            format!("p{i}"),
            ActionType::Join,
            1_000,
        );
        shared::apply(&mut full, &join);
    }
    let source = bridge::games::MemorySource::default();
    source.0.lock().unwrap().insert(
        arena_id,
        shared::GameSnapshot {
            game_id: arena_id,
            version: full.version,
            state: full.state,
            actions_offset: Some(9),
        },
    );
    let state = AppState {
        hub: bridge::games::GamesHub::detached(12, Arc::new(source)),
        ..AppState::for_tests(publisher.clone())
    };
    let (status, _, body) = send(
        &state,
        post(
            &format!("/api/games/{arena_id}/join"),
            None,
            r#"{"name":"Late"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let body = json_of(&body);
    assert_eq!(body["error"], "team_full");
    assert_eq!(body["detail"]["reason"]["code"], "team_full");
    assert!(publisher.published.lock().unwrap().is_empty());
}
