//! The OpenAPI document a `nation` serves describes the routes it serves:
//! with the leaderboards and a lake, their paths join the bridge's; without
//! them, it is the checked-in `bridge/openapi.json`.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tests::game::TestGame;

/// The paths the leaderboards and the lake's analytics add.
const EXTRA_PATHS: [&str; 7] = [
    "/api/leaderboards",
    "/api/leaderboards/{board}",
    "/ws/leaderboards/{board}",
    "/api/admin/leaderboards",
    "/api/admin/leaderboards/{board}",
    "/api/analytics",
    "/api/analytics/{report}",
];

async fn document(game: &TestGame) -> Value {
    let response = reqwest::get(format!("{}/openapi.json", game.base_url))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("a JSON document")
}

/// Every documented path and method answers from a route, not the
/// bridge's fallbacks (404 `no such route`, 405), with plausible
/// parameters; the leaderboards' and analytics' answers are statuses their
/// operation documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nation_with_boards_and_a_lake_documents_and_routes_them() {
    let lake_dir = std::env::temp_dir().join(tests::unique("openapi-lake"));
    let lake = lake_dir.to_string_lossy().into_owned();
    let game = TestGame::start_with(None, |c| {
        c.engine.with_leaderboards = true;
        c.lake.lake = Some(lake.clone());
        // Reports only: the document does not depend on the exporter.
        c.lake.with_lake = false;
        c.lake.lake_refresh_ms = 200;
        // Unset, the admin routes answer 403 `admin_disabled`.
        c.bridge.admin_token = Some("openapi-admin".into());
    })
    .await;
    let doc = document(&game).await;
    let paths = doc["paths"].as_object().expect("paths");
    for path in EXTRA_PATHS {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let own: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bridge/openapi.json"
        ))
        .expect("bridge/openapi.json"),
    )
    .expect("json");
    let own = own["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), own.len() + EXTRA_PATHS.len());
    assert!(own.keys().all(|p| paths.contains_key(p)));
    for schema in [
        "Page",
        "BoardList",
        "CampaignDef",
        "ReportRows",
        "ReportList",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} has no schema"
        );
    }

    let client = reqwest::Client::new();
    for (path, item) in paths {
        let uri = path
            .replace("{game_id}", "1")
            .replace("{board}", "spins-best-ratio")
            .replace("{report}", "by_host");
        for (method, key) in [
            (Method::GET, "get"),
            (Method::POST, "post"),
            (Method::DELETE, "delete"),
            (Method::PUT, "put"),
            (Method::PATCH, "patch"),
        ] {
            let Some(operation) = item.get(key) else {
                continue;
            };
            let response = client
                .request(method.clone(), format!("{}{uri}", game.base_url))
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no such route"),
                "{method} {path} is documented but not routed: {status} {body}"
            );
            if EXTRA_PATHS.contains(&path.as_str()) {
                assert!(
                    operation["responses"][status.as_str()].is_object(),
                    "{method} {path} answered {status}, which it does not document: {body}"
                );
                assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            }
        }
    }

    // The statuses the document promises, as the routes answer them.
    let url = |path: &str| format!("{}{path}", game.base_url);
    let status = |r: reqwest::Response| r.status();
    let delete = |token: Option<&str>| {
        let request = client.delete(url("/api/admin/leaderboards/no-such-board"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    assert_eq!(status(delete(None).send().await.unwrap()), 401);
    assert_eq!(status(delete(Some("wrong")).send().await.unwrap()), 401);
    assert_eq!(
        status(delete(Some("openapi-admin")).send().await.unwrap()),
        404
    );
    let post = client
        .post(url("/api/admin/leaderboards"))
        .bearer_auth("openapi-admin")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(status(post), 422);
    for (path, expected) in [
        ("/api/leaderboards/spins-best-ratio?limit=0", 400),
        ("/api/leaderboards/spins-best-ratio?limit=x", 400),
        ("/api/leaderboards/spins-best-ratio?cursor=zz", 400),
        ("/api/leaderboards/no-such-board", 404),
        ("/api/analytics/by_weather", 404),
        ("/api/analytics/by_host?limit=-1", 400),
    ] {
        let response = client.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), expected, "GET {path}");
    }
    let analytics: Value =
        tests::eventually(Duration::from_secs(30), "the lake's first count", || {
            let request = client.get(url("/api/analytics/by_host")).send();
            async move {
                let response = request.await.ok()?;
                (response.status() == StatusCode::OK)
                    .then_some(response.json::<Value>().await.ok()?)
            }
        })
        .await;
    assert_eq!(
        analytics["columns"],
        serde_json::json!(["Host", "number_of_player"])
    );

    // The WebSocket: 101 and a frame for a board, 404 for none.
    let ws = format!("ws://{}/ws/leaderboards/spins-best-ratio", game.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(ws)
        .await
        .expect("a WebSocket");
    assert_eq!(response.status(), 101);
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a first frame")
        .expect("open")
        .expect("a frame");
    let frame: Value = serde_json::from_str(frame.to_text().expect("text")).expect("json");
    for key in [
        "board",
        "version",
        "period_start_ms",
        "watermark_ms",
        "total",
        "entries",
    ] {
        assert!(frame.get(key).is_some(), "{key} missing from {frame}");
    }
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws/leaderboards/no-such-board",
        game.addr
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("an unknown board's socket: {other:?}"),
    }
    drop(socket);
    game.stop().await;
    let _ = std::fs::remove_dir_all(lake_dir);
}

/// A nation with neither boards nor a lake serves the bridge's own
/// document, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nation_without_roles_serves_the_bridge_document() {
    let game = TestGame::start(None).await;
    let served = reqwest::get(format!("{}/openapi.json", game.base_url))
        .await
        .expect("GET /openapi.json")
        .text()
        .await
        .expect("text");
    let own = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bridge/openapi.json"
    ))
    .expect("bridge/openapi.json");
    assert!(
        served == own,
        "the served document is not bridge/openapi.json"
    );
    game.stop().await;
}
