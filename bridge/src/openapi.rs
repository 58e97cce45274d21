//! The OpenAPI document of the bridge's HTTP surface, generated from the
//! types the handlers read and answer (`shared::wire`'s request and answer
//! types, through schemars and aide), not written by hand: a field, a limit
//! or a pattern changed in a type changes the document with it. Served as
//! `/openapi.json` and `/openapi.yaml` (the same JSON text: JSON is YAML);
//! the checked-in `bridge/openapi.json` is for readers and client
//! generators, and a test fails when it drifts (regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p bridge openapi`).
//!
//! What the types cannot say (status codes, headers, security, what a route
//! is for) is said here, once per route, beside the same path names the
//! router uses ([`crate::app`]).
//!
//! A host that adds routes ([`crate::Extras::routes`]) documents them with
//! [`crate::Extras::openapi`]: functions ([`HostPaths`]) called while the
//! document is built, so the schemas they name join the same components.
//! The helpers that describe a route live in `ops::openapi`, so a role
//! documents its routes without depending on the bridge.

use std::sync::OnceLock;

use aide::openapi::{Info, OpenApi, PathItem, ReferenceOr, SchemaObject, SecurityScheme};
use aide::transform::TransformOperation;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::Json;
use indexmap::IndexMap;
pub use ops::openapi::{
    delete, error_response, get, json_response, plain, post, text_error, HostPaths,
};
use schemars::JsonSchema;
use serde::Deserialize;
use shared::wire::{ActionAccepted, ActionRequest, JoinRequest, JoinResponse};
use shared::{ActionType, ClientConfig, GameSnapshot};

/// The path of every route that takes a game id.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)] // read by schemars only
struct GamePath {
    /// The game's id: any unsigned 64-bit integer.
    #[schemars(range(min = 0, max = u64::MAX))]
    game_id: u64,
}

/// The WebSocket route's query.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)] // read by schemars only
struct WsParams {
    /// The last version the client saw: no snapshot when it is current.
    #[schemars(range(min = 0, max = u64::MAX))]
    resume_from: Option<u64>,
}

/// `GET /api/admin/abuse`'s query.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)] // read by schemars only
struct AbuseParams {
    /// Sources listed per table (default 20; more is capped).
    #[schemars(range(min = 0, max = u32::MAX))]
    limit: Option<u32>,
}

/// `/healthz` and `/readyz` when all is well.
#[derive(serde::Serialize, JsonSchema)]
#[allow(dead_code)] // read by schemars only
struct Status {
    /// `ok` (alive) or `ready`.
    status: String,
}

const DESCRIPTION: &str = "The HTTP and WebSocket edge of Build a Nation. Every action is \
produced to the Kafka topic `actions` (key = game id, partition = game_id mod partitions) \
and answered only after Kafka's ack. Game state comes back from the compacted `games` topic. \
Errors are `{\"error\": \"<code>\", \"detail\": ...}`; 503 carries `Retry-After`. Record \
schemas: shared/schema/*.schema.json. Guards on every route: a request head not received \
within `HEADER_TIMEOUT_MS` (10 s) closes the connection; a body not received within \
`BODY_TIMEOUT_MS` (10 s) is a 408 `body_timeout`; more than `MAX_CONNECTIONS_PER_ADDR` (1024) \
open connections from one address: the next one is answered 429 `too_many_connections` \
(with Retry-After) and closed.";

const BEARER: &str = "The token from /join: `v2.<kid>.<game_id>.<player_id>.<expires>.<hmac>` \
(`kid` names the signing secret, `expires` is Unix seconds; default lifetime 30 days, \
`TOKEN_TTL_S`). A refused token is a 401 whose `error` is `token_expired` (join again), \
`unknown_token_key` (signed by a secret no longer configured: join again) or `unauthorized` \
(missing, malformed or forged); a token of another game is a 403 `forbidden`. Refusals \
are counted by code on `/metrics` and, per client address and Host, in the abuse table \
(`/api/admin/abuse`). An address with `BAN_AFTER` (100) refused requests within \
`BAN_WINDOW_MS` (10 s) is answered `429` `too_many_refusals` with `Retry-After` for `BAN_MS` \
(60 s); valid requests never count.";

/// The bridge's own document (what `bridge/openapi.json` holds).
pub fn document() -> OpenApi {
    document_with(&[])
}

/// The document of a bridge whose host adds the routes `extra` documents.
///
/// # Panics
/// When a host documents a path the document already has (the router's
/// merge would refuse the same route too).
pub fn document_with(extra: &[HostPaths]) -> OpenApi {
    aide::generate::extract_schemas(true);
    let mut api = OpenApi {
        info: Info {
            title: "Build a Nation bridge".into(),
            version: "2".into(),
            description: Some(DESCRIPTION.into()),
            ..Info::default()
        },
        ..OpenApi::default()
    };
    let mut paths: Vec<(String, PathItem)> = vec![
        post("/api/games/{game_id}/join", |op| {
            errors(
                op.summary(
                    "Join a game; the engine creates the nation (or seats the arena player).",
                )
                .description(
                    "Game ids 1000000000000 to 1999999999999 are 5v5 arenas, every other \
                         id a nation game. An arena's join waits for the engine's answer: 200 \
                         with the `team` the player was seated in (the one with fewer \
                         players), or 409 `team_full` when both teams have five.",
                )
                .input::<Path<GamePath>>()
                .input::<Json<JoinRequest>>()
                .response_with::<200, Json<JoinResponse>, _>(|r| {
                    r.description("Joined (Kafka acknowledged the join).")
                })
                .with(idempotency_key),
                &[400, 408, 409, 413, 415, 422],
            )
        }),
        post("/api/games/{game_id}/actions", |op| {
            let op = op
                .summary("Perform an action; answered after Kafka's ack.")
                .input::<Path<GamePath>>()
                .input::<Json<ActionRequest>>()
                .security_requirement("bearer")
                .response_with::<202, Json<ActionAccepted>, _>(|r| {
                    r.description("Kafka acknowledged the action.")
                })
                .with(idempotency_key);
            let op = errors(op, &[400, 403, 408, 413, 415, 422]);
            error_response(op, 401, "No valid token: `error` is `unauthorized` (missing, malformed, forged), `token_expired` or `unknown_token_key` (join again).")
        }),
        get("/api/games/{game_id}", |op| {
            errors(
                op.summary("The game's whole state.")
                    .description(
                        "An interactive query answered by the engine that owns the \
                             game's partition, or by this bridge's copy for its watchers; \
                             never a read of the partition's history.",
                    )
                    .input::<Path<GamePath>>()
                    .response_with::<200, Json<GameSnapshot>, _>(|r| {
                        r.description("The game's snapshot.")
                    }),
                &[400, 404],
            )
        }),
        get("/ws/games/{game_id}", |op| {
            let op = op
                .summary("WebSocket of the game's changes.")
                .description(
                    "Server frames are JSON (shared/schema/server_message.schema.json): \
                         a `snapshot` first (skipped when `resume_from` is the current \
                         version), then `update`s, each following the last and carrying only \
                         the nations that changed. A client that falls behind, or sends \
                         `{\"resume_from\": <version>}`, gets a snapshot; anything else it \
                         sends closes the socket with 1008. The server pings; silence closes \
                         the socket.",
                )
                .input::<Path<GamePath>>()
                .input::<Query<WsParams>>();
            let op = plain(op, 101, "Switching protocols.", None);
            error_response(op, 400, "Not a WebSocket handshake, or a bad game id.")
        }),
        get("/api/config", |op| {
            op.summary("What the page needs to start.")
                .response::<200, Json<ClientConfig>>()
        }),
        get("/healthz", |op| {
            op.summary("Liveness.").response::<200, Json<Status>>()
        }),
        get("/readyz", |op| {
            unavailable(
                op.summary("Ready: the broker answers and every role in the process serves.")
                    .response::<200, Json<Status>>(),
            )
        }),
        get("/metrics", |op| {
            plain(
                op.summary("Metrics of every role of the process (prometheus-client)."),
                200,
                "OpenMetrics text.",
                Some("application/openmetrics-text"),
            )
        }),
        get("/admin", |op| {
            plain(
                op.summary(
                    "The operator page (the game page's code; its data needs the admin token).",
                ),
                200,
                "HTML.",
                Some("text/html"),
            )
        }),
        get("/api/admin/abuse", |op| {
            let op = op
                .summary("The worst sources of refused requests, per client address and per Host, read from the logs topic.")
                .input::<Query<AbuseParams>>()
                .security_requirement("admin")
                .response_with::<200, Json<shared::admin::AbuseReport>, _>(|r| {
                    r.description("The abuse table.")
                });
            errors(op, &[400, 401, 403])
        }),
        get("/api/admin/summary", |op| {
            let op = op
                .summary("The operator page's data, digested from the metrics (totals; the page takes rates).")
                .security_requirement("admin")
                .response_with::<200, Json<shared::admin::Summary>, _>(|r| {
                    r.description("The summary.")
                });
            errors(op, &[401, 403])
        }),
        get("/openapi.json", |op| {
            plain(
                op.summary("This document."),
                200,
                "OpenAPI 3.1",
                Some("application/json"),
            )
        }),
        get("/openapi.yaml", |op| {
            plain(
                op.summary("This document (JSON is YAML)."),
                200,
                "OpenAPI 3.1",
                Some("application/yaml"),
            )
        }),
    ];
    for action in ActionType::ALL {
        let Some(seed) = action.seed_path() else {
            continue;
        };
        let summary = if seed == "/" {
            "The game page for browsers (Accept text/html), else the seed's `default` event."
                .to_string()
        } else {
            format!(
                "Seed endpoint: a `{}` by the player named by the Host header, in DEFAULT_GAME.",
                action.as_str()
            )
        };
        paths.push(get(seed, |op| {
            unavailable(plain(
                op.summary(&summary),
                200,
                "After Kafka's ack: the seed's text (or the page).",
                Some("text/plain"),
            ))
        }));
    }
    let own = paths.len();
    for host in extra {
        paths.extend(host());
    }
    let mut all = aide::openapi::Paths::default();
    for (i, (route, item)) in paths.into_iter().enumerate() {
        let before = all.paths.insert(route.clone(), ReferenceOr::Item(item));
        assert!(
            before.is_none() || i < own,
            "{route} is documented twice (by the bridge and its host, or by two hosts)"
        );
    }
    api.paths = Some(all);
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "bearer".into(),
        ReferenceOr::Item(SecurityScheme::Http {
            scheme: "bearer".into(),
            bearer_format: None,
            description: Some(BEARER.into()),
            extensions: IndexMap::default(),
        }),
    );
    components.security_schemes.insert(
        "admin".into(),
        ReferenceOr::Item(SecurityScheme::Http {
            scheme: "bearer".into(),
            bearer_format: None,
            description: Some(
                "`Authorization: Bearer <ADMIN_TOKEN>`; unset ADMIN_TOKEN: 403.".into(),
            ),
            extensions: IndexMap::default(),
        }),
    );
    aide::generate::in_context(|ctx| {
        for (name, schema) in ctx.schema.take_definitions(true) {
            let json_schema = schema
                .try_into()
                .expect("schemars writes schemas as objects");
            components.schemas.insert(
                name,
                SchemaObject {
                    json_schema,
                    example: None,
                    external_docs: None,
                },
            );
        }
    });
    aide::generate::reset_context();
    api
}

/// The document as pretty JSON, newline-terminated (what is served and
/// checked in).
pub fn document_json() -> String {
    document_json_with(&[])
}

/// [`document_with`] as pretty JSON, newline-terminated.
pub fn document_json_with(extra: &[HostPaths]) -> String {
    let mut text = serde_json::to_string_pretty(&document_with(extra))
        .expect("an OpenAPI document serialises");
    text.push('\n');
    text
}

/// The text `/openapi.json` serves (built once per process when there is
/// nothing to add: every handler test's state shares it).
pub fn served(extra: &[HostPaths]) -> Bytes {
    static OWN: OnceLock<Bytes> = OnceLock::new();
    if extra.is_empty() {
        OWN.get_or_init(|| Bytes::from(document_json())).clone()
    } else {
        Bytes::from(document_json_with(extra))
    }
}

/// The `Idempotency-Key` header of an action.
fn idempotency_key(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let mut op = op;
    let parameter = serde_json::json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "The action id; a retried request with the same key is the same action \
            (a join's key also fixes the player it creates, so a retried join never makes a \
            second nation or takes a second seat). When an action's body has an `action_id` \
            too, this header is the id (both must be well formed).",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": shared::MAX_ACTION_ID,
            "pattern": shared::wire::ACTION_ID_PATTERN,
        },
    });
    op.inner_mut().parameters.push(ReferenceOr::Item(
        serde_json::from_value(parameter).expect("a well-formed header parameter"),
    ));
    op
}

/// A client error with the JSON error body, for each status.
fn errors<'t>(op: TransformOperation<'t>, statuses: &[u16]) -> TransformOperation<'t> {
    let mut op = unavailable(op);
    for status in statuses {
        op = error_response(op, *status, "A client error.");
    }
    op
}

/// `503`: Kafka did not acknowledge in time (or the process is not ready).
pub fn unavailable(op: TransformOperation<'_>) -> TransformOperation<'_> {
    error_response(
        op,
        503,
        "Kafka did not acknowledge in time (or the process is not ready); retry with the same action id.",
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    #[test]
    fn checked_in_document_matches_the_types() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = super::document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write openapi.json");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "bridge/openapi.json drifted from the types; run UPDATE_OPENAPI=1 cargo test -p bridge openapi"
        );
    }

    /// A bridge with nothing added serves the checked-in document, byte for
    /// byte.
    #[tokio::test]
    async fn a_bridge_alone_serves_the_checked_in_document() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let on_disk = std::fs::read_to_string(&path).expect("bridge/openapi.json");
        let app = crate::app(crate::AppState::for_tests(std::sync::Arc::new(
            crate::kafka::MemoryPublisher::default(),
        )));
        for uri in ["/openapi.json", "/openapi.yaml"] {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), 1 << 22)
                .await
                .unwrap();
            assert!(
                body == on_disk.as_bytes(),
                "{uri} is not bridge/openapi.json"
            );
        }
    }

    /// What a host documents joins the paths, and its schemas the
    /// components (the shared error body once).
    #[test]
    fn a_host_documents_its_routes() {
        #[derive(serde::Serialize, schemars::JsonSchema)]
        struct HostAnswer {
            n: u32,
        }
        fn host() -> Vec<(String, aide::openapi::PathItem)> {
            vec![super::delete("/api/host/{id}", |op| {
                let op = op.response::<200, axum::Json<HostAnswer>>();
                let op = super::error_response(op, 404, "Unknown.");
                super::text_error(op, 404, "Or axum's.")
            })]
        }
        let doc = serde_json::to_value(super::document_with(&[host])).unwrap();
        let own = serde_json::to_value(super::document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), own["paths"].as_object().unwrap().len() + 1);
        let responses = &doc["paths"]["/api/host/{id}"]["delete"]["responses"];
        assert_eq!(
            responses["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/HostAnswer"
        );
        assert!(responses["404"]["content"]["text/plain"].is_object());
        assert_eq!(
            responses["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(doc["components"]["schemas"]["HostAnswer"].is_object());
    }

    #[test]
    #[should_panic(expected = "documented twice")]
    fn a_host_cannot_document_a_bridge_route() {
        fn host() -> Vec<(String, aide::openapi::PathItem)> {
            vec![super::get("/healthz", |op| op)]
        }
        super::document_with(&[host]);
    }

    #[test]
    fn bodies_carry_the_rules_of_the_types() {
        let doc: serde_json::Value = serde_json::from_str(&super::document_json()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let name = &schemas["JoinRequest"]["properties"]["name"];
        assert_eq!(name["maxLength"], shared::MAX_NAME_CHARS);
        assert_eq!(name["pattern"], shared::wire::NAME_PATTERN);
        assert_eq!(schemas["JoinRequest"]["additionalProperties"], false);
        let kinds = schemas["ActionRequest"]["properties"]["type"]["enum"]
            .as_array()
            .unwrap();
        assert!(!kinds.iter().any(|k| k == "join"), "join has its own route");
        assert_eq!(kinds.len(), shared::ActionType::playable().count());
    }

    /// Every documented route and method is served (not the 404 or 405
    /// fallbacks): the document cannot promise a route the router lacks.
    #[tokio::test]
    async fn every_documented_route_is_routed() {
        let doc = super::document();
        let app = crate::app(crate::AppState::for_tests(std::sync::Arc::new(
            crate::kafka::MemoryPublisher::default(),
        )));
        for (route, item) in doc.paths.unwrap().paths {
            let aide::openapi::ReferenceOr::Item(item) = item else {
                panic!("{route}: a reference");
            };
            let uri = route.replace("{game_id}", "7");
            for (method, present) in [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
            ] {
                if !present {
                    continue;
                }
                let response = app
                    .clone()
                    .oneshot(
                        Request::builder()
                            .method(method.clone())
                            .uri(&uri)
                            .body(Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let body = String::from_utf8_lossy(&body);
                assert!(
                    status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no such route"),
                    "{method} {route} is documented but not routed: {status} {body}"
                );
            }
        }
    }
}
