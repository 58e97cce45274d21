//! The HTTP handlers: check the request's shape, stamp, publish, answer.
//! They never decide game rules.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use shared::arena::Team;
use shared::wire::{ActionAccepted, ActionRequest, JoinRequest, JoinResponse};
use shared::{ActionEnvelope, ActionType, GameKind, Rejection, ServerMessage};

use crate::enrich::{new_event_id, stamp, ClientAddr};
use crate::error::{valid_types, AppError};
use crate::kafka::{Ack, PublishError};
use crate::AppState;

impl From<PublishError> for AppError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Unavailable(why) => AppError::Unavailable(why),
            PublishError::Encode(e) => AppError::Internal(e.to_string()),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(e: PathRejection) -> Self {
        AppError::BadRequest(json!(format!(
            "game id must be a non-negative integer ({})",
            e.body_text()
        )))
    }
}

impl From<BytesRejection> for AppError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest(json!(e.body_text()))
        }
    }
}

async fn publish(state: &AppState, envelope: &ActionEnvelope) -> Result<Ack, AppError> {
    let started = std::time::Instant::now();
    // Only an action whose game's partition is watched here can have its
    // update come back to this bridge: the others would wait in the map
    // until they expire (2 % of the bridge's CPU under wrk, BENCHMARKS.md P1).
    if state.metrics_enabled && state.hub.watches_partition_of(envelope.game_id) {
        state.hub.pending.sent(&envelope.event_id, started);
    }
    match state.publisher.publish(envelope).await {
        Ok(ack) => {
            state.metrics.published.inc();
            state
                .metrics
                .produce_ack
                .observe(started.elapsed().as_secs_f64());
            Ok(ack)
        }
        Err(e) => {
            state.metrics.publish_failed.inc();
            tracing::warn!(error = %e, event_id = %envelope.event_id, "publish failed");
            Err(e.into())
        }
    }
}

/// `POST /api/games/{game_id}/join`
pub async fn join(
    State(state): State<Arc<AppState>>,
    game_id: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
    client: ClientAddr,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JoinResponse>, AppError> {
    let Path(game_id) = game_id?;
    json_content_type(&headers)?;
    let request: JoinRequest = parse_json(&body?)?;
    let name = shared::check_name(&request.name).map_err(|_| {
        AppError::Unprocessable(json!({
            "message": format!("name must be 1 to {} printable characters", shared::MAX_NAME_CHARS),
        }))
    })?;
    // A join retried with its `Idempotency-Key` (after a 503, a lost answer)
    // is the same join: the same action id and the same player, so the
    // engine refuses the copy and nobody gets a second nation or seat.
    let key = idempotency_key(&headers)?;
    let (player_id, action_id) = match key {
        Some(key) => (state.keys.joined_player(game_id, &key), key),
        None => (uuid::Uuid::new_v4().simple().to_string(), new_event_id()),
    };
    let mut envelope = stamp(
        action_id.clone(),
        game_id,
        player_id.clone(),
        ActionType::Join,
        &headers,
        client,
    );
    envelope.name = Some(name.to_string());
    let team = if GameKind::of(game_id) == GameKind::Arena {
        Some(join_arena(&state, &envelope).await?)
    } else {
        publish(&state, &envelope).await?;
        None
    };
    Ok(Json(JoinResponse {
        token: state.keys.sign(game_id, &player_id),
        player_id,
        action_id,
        team,
    }))
}

/// An arena's join waits for the engine's answer, so that a full arena is
/// refused to the player (409 `team_full`) rather than in the stream: the
/// bridge watches the game before publishing, refuses at once when the
/// state it holds is full, and otherwise answers with the team of the
/// engine's step that handled the join. The rules decide, never the bridge.
async fn join_arena(state: &AppState, envelope: &ActionEnvelope) -> Result<Team, AppError> {
    let game_id = envelope.game_id;
    let timeout = state.ws.load_timeout;
    let mut watch = state.hub.watch(game_id);
    let unavailable = || AppError::Unavailable("the arena's state did not load in time".into());
    tokio::time::timeout(timeout, watch.tailing.wait_for(|t| *t))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    let held = tokio::time::timeout(timeout, state.hub.snapshot(game_id))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    let arena = held.game.state.arena.clone().unwrap_or_default();
    // A retried join whose first try was seated: that seat.
    if let Some(team) = arena.fighters.get(&envelope.player_id).and_then(|f| f.team) {
        return Ok(team);
    }
    if let Err(r @ Rejection::TeamFull) =
        shared::arena::check(&arena, &envelope.player_id, ActionType::Join, None)
    {
        return Err(AppError::Refused(r));
    }
    publish(state, envelope).await?;
    let seated = |game: &shared::GameSnapshot| {
        game.state
            .arena
            .as_ref()
            .and_then(|a| a.fighters.get(&envelope.player_id))
            .and_then(|f| f.team)
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, watch.updates.recv()).await {
            Ok(Ok(frame)) => frame,
            // Behind, or the deadline: the state the hub holds decides.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) | Err(_) => {
                let now = state.hub.snapshot(game_id).await.ok();
                if let Some(team) = now.and_then(|s| seated(&s.game)) {
                    return Ok(team);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(AppError::Unavailable(
                        "the arena did not answer the join in time".into(),
                    ));
                }
                continue;
            }
            Ok(Err(_)) => return Err(unavailable()),
        };
        let Ok(ServerMessage::Update(delta)) = serde_json::from_str(frame.text.as_str()) else {
            continue;
        };
        if let Some(refused) = delta
            .rejected
            .iter()
            .find(|r| r.event_id == envelope.event_id)
        {
            return Err(AppError::Refused(refused.reason.clone()));
        }
        if let Some(team) = delta.fighters.get(&envelope.player_id).and_then(|f| f.team) {
            return Ok(team);
        }
    }
}

/// The `Idempotency-Key` header, if any, checked as an action id.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map(str::to_string).unwrap_or_default();
    check_action_id(&key)?;
    Ok(Some(key))
}

/// Refuses an action id that is not 1 to `MAX_ACTION_ID` visible ASCII
/// characters (`400`).
fn check_action_id(key: &str) -> Result<(), AppError> {
    if shared::valid_action_id(key) {
        Ok(())
    } else {
        Err(AppError::BadRequest(json!(format!(
            "an action id (Idempotency-Key or action_id) is 1 to {} visible ASCII characters",
            shared::MAX_ACTION_ID
        ))))
    }
}

/// `POST /api/games/{game_id}/actions`
pub async fn act(
    State(state): State<Arc<AppState>>,
    game_id: Result<Path<u64>, PathRejection>,
    client: ClientAddr,
    request: Request,
) -> Result<(StatusCode, Json<ActionAccepted>), AppError> {
    let Path(game_id) = game_id?;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let player_id = state
        .keys
        .authorize(headers, game_id, &client.0, &state.refused_tokens)
        .map_err(AppError::Token)?;
    json_content_type(headers)?;
    let request: ActionRequest = parse_json(&body_bytes(body).await?)?;
    if request.action_type == ActionType::Join {
        return Err(AppError::Unprocessable(json!({
            "message": "join with POST /api/games/{game_id}/join",
            "valid_types": valid_types(),
        })));
    }
    let header = idempotency_key(headers)?;
    // Each id given is checked; when both are given the header is the id.
    if let Some(key) = &request.action_id {
        check_action_id(key)?;
    }
    let action_id = header.or(request.action_id).unwrap_or_else(new_event_id);
    let envelope = stamp(
        action_id.clone(),
        game_id,
        player_id,
        request.action_type,
        headers,
        client,
    );
    let ack = publish(&state, &envelope).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ActionAccepted {
            action_id,
            partition: ack.partition,
            offset: ack.offset,
        }),
    ))
}

/// Parses a JSON body: syntax errors are 400, shape errors 422 with the valid
/// action types listed.
/// Refuses a body declared as something other than JSON (`415`); a body
/// without a `Content-Type` is taken as JSON, as simple clients send it.
fn json_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType(
            text.chars().take(64).collect::<String>(),
        ))
    }
}

/// A request's body, which the edge has already read whole within its
/// deadline and limit ([`crate::serve::read_body`]). Handlers take the
/// [`Request`] and borrow its headers: the `HeaderMap` extractor would copy
/// them (2 % of the bridge's CPU under wrk, BENCHMARKS.md P1).
async fn body_bytes(body: Body) -> Result<Bytes, AppError> {
    axum::body::to_bytes(body, crate::BODY_LIMIT)
        .await
        .map_err(|e| AppError::BadRequest(json!(format!("could not read the body: {e}"))))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| {
        // Only on the error path: is it bad JSON (400) or the wrong shape (422)?
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            AppError::Unprocessable(json!({
                "message": e.to_string(),
                "valid_types": valid_types(),
            }))
        } else {
            AppError::BadRequest(json!(format!("body is not valid JSON: {e}")))
        }
    })
}

/// `GET /api/games/{game_id}`: the game's whole state (the seed's
/// interactive query): the one this bridge holds for its watchers, else
/// the answer of the engine that owns the game's partition. Never a read
/// of the partition's history.
pub async fn get_game(
    State(state): State<Arc<AppState>>,
    game_id: Result<Path<u64>, PathRejection>,
) -> Result<Response, AppError> {
    let Path(game_id) = game_id?;
    if let Some(held) = state.hub.held(game_id) {
        return Ok(Json(&held.game).into_response());
    }
    match tokio::time::timeout(state.ws.load_timeout, state.hub.query(game_id)).await {
        Ok(Ok(Some(game))) => Ok(Json(game).into_response()),
        Ok(Ok(None)) => Err(AppError::NotFound(format!(
            "game {game_id} has no state yet"
        ))),
        Ok(Err(why)) => Err(AppError::Unavailable(format!(
            "game state unavailable: {why}"
        ))),
        Err(_) => Err(AppError::Unavailable(
            "game state unavailable: no answer in time".into(),
        )),
    }
}

#[derive(Deserialize)]
pub struct WsQuery {
    resume_from: Option<u64>,
}

/// `GET /ws/games/{game_id}`
pub async fn ws(
    State(state): State<Arc<AppState>>,
    game_id: Result<Path<u64>, PathRejection>,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let Path(game_id) = game_id?;
    let upgrade = upgrade.map_err(|e| {
        AppError::BadRequest(json!(format!("{}: open it as a WebSocket", e.body_text())))
    })?;
    let Query(WsQuery { resume_from }) =
        query.map_err(|e| AppError::BadRequest(json!(e.body_text())))?;
    let watch = state.hub.watch(game_id);
    Ok(upgrade
        // Small buffers: most sockets are idle watchers, and tungstenite's
        // 128 KiB defaults would cost that much per player.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let ended = crate::ws::serve_socket(
                sink,
                stream,
                game_id,
                watch,
                state.hub.clone(),
                resume_from,
                state.ws.clone(),
                state.ws_metrics.clone(),
                state.shutdown.clone(),
            )
            .await;
            tracing::debug!(game_id, ?ended, "websocket closed");
        }))
}

/// The seed's GET endpoints: the player is the `Host` header, the game the
/// default one; a short text once Kafka has acknowledged.
pub async fn seed_action(
    state: Arc<AppState>,
    headers: &HeaderMap,
    client: ClientAddr,
    action: ActionType,
) -> Result<&'static str, AppError> {
    let game_id = state.default_game;
    let player = crate::enrich::host(headers);
    let envelope = stamp(new_event_id(), game_id, player, action, headers, client);
    publish(&state, &envelope).await?;
    Ok(match action {
        ActionType::PurchaseSword => "Sword Purchased!\n",
        ActionType::PurchaseShield => "Shield Purchased!\n",
        ActionType::PurchaseHorse => "Horse Purchased!\n",
        ActionType::PurchaseKnife => "Knife Purchased!\n",
        ActionType::UpgradeSword => "Sword Upgraded!\n",
        ActionType::UpgradeShield => "Shield Upgraded!\n",
        _ => "This is the default response!\n",
    })
}

/// `GET /`: the game page for browsers (recording the visit), or the page
/// the query names (`?arena=`, `?view=analytics`: the second build's); the
/// seed's `default` event for everything else.
pub async fn index(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: ClientAddr,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let page = state.page_html(shared::Page::of("/", query.as_deref().unwrap_or("")));
    if wants_html {
        if let Some(page) = page {
            if state.seed_endpoints {
                // The visit is recorded as the seed did, but the page does
                // not depend on it: a broker hiccup must not blank the game.
                let game_id = state.default_game;
                let player = crate::enrich::host(&headers);
                let envelope = stamp(
                    new_event_id(),
                    game_id,
                    player,
                    ActionType::Default,
                    &headers,
                    client,
                );
                let _ = publish(&state, &envelope).await;
            }
            return Ok(Html(page).into_response());
        }
    }
    if state.seed_endpoints {
        return seed_action(state, &headers, client, ActionType::Default)
            .await
            .map(IntoResponse::into_response);
    }
    match page {
        Some(page) => Ok(Html(page).into_response()),
        None => Err(AppError::NotFound(
            "the frontend is not built (run `make frontend`)".into(),
        )),
    }
}

/// `GET /admin`: the operator page (the frontend routes on the path). The
/// page is code, not data: what it shows comes from `/api/admin/...`, which
/// need the admin token. It is the second build's page (`extra/`).
pub async fn admin_page(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    match state.page_html(shared::Page::Admin) {
        Some(page) => Ok(Html(page).into_response()),
        None => Err(AppError::NotFound(
            "the frontend is not built (run `make frontend`)".into(),
        )),
    }
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the broker answers, and the in-process roles (if any)
/// serve (the engine not while it starts, restores, recovers, or after it
/// stopped; the lake exporter not after it failed).
pub async fn readyz(
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, AppError> {
    if !state.publisher.ready().await {
        return Err(AppError::Unavailable("broker unreachable".into()));
    }
    if let Some(Err(why)) = state.ready.as_ref().map(|check| check()) {
        return Err(AppError::Unavailable(format!("not ready: {why}")));
    }
    Ok(Json(json!({"status": "ready"})))
}

/// `GET /api/config`: what the page needs to start.
pub async fn client_config(State(state): State<Arc<AppState>>) -> Json<shared::ClientConfig> {
    Json(shared::ClientConfig {
        default_game: state.default_game,
        partitions: state.partitions,
    })
}

/// Sets the gauges read from the hub.
pub fn refresh_gauges(state: &AppState) {
    let (partitions, games) = state.hub.sizes();
    let m = &state.metrics;
    m.games_partitions_watched.set(partitions as i64);
    m.games_held.set(games as i64);
}

/// `GET /metrics`: every metric of the process (each role it hosts), as
/// OpenMetrics text from `prometheus-client`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    refresh_gauges(&state);
    ops::metrics::metrics_response(&state.metrics.registry)
}

/// `GET /openapi.json`: the whole HTTP surface (the bridge's and what its
/// host documents, [`crate::openapi`]).
pub async fn openapi_json(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
}

/// `GET /openapi.yaml`: the same document (JSON is YAML).
pub async fn openapi_yaml(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        state.openapi.clone(),
    )
}

/// Unknown routes.
pub async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

/// Known routes, wrong method.
pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
