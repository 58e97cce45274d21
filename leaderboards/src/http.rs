//! The read side: an axum [`router`] the bridge nests.
//!
//! - `GET /api/leaderboards`: every board and how it is defined.
//! - `GET /api/leaderboards/{board}?limit=&cursor=`: a page (keyset: the
//!   cursor names the last row seen, so pages never skip or repeat while
//!   the board moves); `?around={player_id}&radius=`: a player and their
//!   neighbours.
//! - `GET /ws/leaderboards/{board}`: the top N, sent first and again each
//!   time it changes (conflated: a slow reader gets the latest).
//! - `POST /api/admin/leaderboards` (a campaign definition) and
//!   `DELETE /api/admin/leaderboards/{board}`, with `Authorization: Bearer
//!   <ADMIN_TOKEN>`.
//!
//! Their OpenAPI description is [`crate::openapi::openapi_paths`] (re-exported as
//! [`openapi_paths`]).

pub use crate::openapi::openapi_paths;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::wire::ErrorBody;

use crate::board::Row;
use crate::boards::BoardInfo;
use crate::campaign::CampaignDef;
use crate::ranking::RankKey;
use crate::Leaderboards;

/// The largest page.
pub const MAX_LIMIT: usize = 1000;
/// The largest radius around a player.
pub const MAX_RADIUS: usize = 100;

/// A 4xx answer: `{"error", "detail"}` (the bridge's [`ErrorBody`]).
#[derive(Debug)]
pub struct ApiError(StatusCode, &'static str, serde_json::Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.1.into(),
            detail: self.2,
        };
        (self.0, Json(body)).into_response()
    }
}

fn not_found(board: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "unknown_board", json!(board))
}

/// The routes, over `handle`.
pub fn router(handle: Leaderboards) -> Router {
    Router::new()
        .route("/api/leaderboards", get(list))
        .route("/api/leaderboards/{board}", get(board))
        .route("/ws/leaderboards/{board}", get(ws))
        .route("/api/admin/leaderboards", post(upsert))
        .route("/api/admin/leaderboards/{board}", delete(remove))
        .with_state(handle)
}

/// `GET /api/leaderboards`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BoardList {
    pub boards: Vec<BoardListing>,
}

/// A board in `GET /api/leaderboards`: its definition and how full it is.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BoardListing {
    #[serde(flatten)]
    pub info: BoardInfo,
    /// Players on the board (this period).
    pub entries: usize,
    /// Start of the current period (ms since the epoch); null without a
    /// `reset`.
    pub period_start_ms: Option<i64>,
    /// Events that arrived later than the board's grace and did not count.
    pub late: u64,
}

async fn list(State(h): State<Leaderboards>) -> Json<BoardList> {
    let boards = h.read();
    let list = boards
        .infos()
        .into_iter()
        .map(|info| {
            let b = boards.board(&info.id);
            let late = boards.late(&info.id);
            BoardListing {
                entries: b.map(|b| b.len()).unwrap_or(0),
                period_start_ms: b.and_then(|b| b.period()),
                late,
                info,
            }
        })
        .collect();
    Json(BoardList { boards: list })
}

/// Query of `GET /api/leaderboards/{board}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BoardQuery {
    /// Rows in the page: 1 to 1000 (`MAX_LIMIT`; default 10).
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[schemars(pattern(CURSOR_PATTERN))]
    pub cursor: Option<String>,
    /// A player id: answer that player and their neighbours instead.
    pub around: Option<String>,
    /// With `around`: rows either side (default 5; more than 100,
    /// `MAX_RADIUS`, is capped).
    pub radius: Option<usize>,
}

/// A page of a board.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Page {
    pub board: String,
    /// Start of the current period (ms since the epoch); null without a
    /// `reset`.
    pub period_start_ms: Option<i64>,
    /// Players on the board.
    pub total: usize,
    pub entries: Vec<Row>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What [`encode_cursor`] writes (and [`decode_cursor`] reads back), for
/// the OpenAPI document.
pub const CURSOR_PATTERN: &str = r"^[0-9a-f]{16}\.-?[0-9]{1,18}\..*$";

/// `{sort bits hex}.{reached_at_ms}.{player}`.
pub fn encode_cursor(key: &RankKey) -> String {
    format!(
        "{:016x}.{}.{}",
        key.sort.to_bits(),
        key.reached_at_ms,
        key.player
    )
}

pub fn decode_cursor(s: &str) -> Option<RankKey> {
    let mut parts = s.splitn(3, '.');
    let sort = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
    let reached_at_ms = parts.next()?.parse().ok()?;
    let player = parts.next()?.into();
    Some(RankKey {
        sort,
        reached_at_ms,
        player,
    })
}

async fn board(
    State(h): State<Leaderboards>,
    Path(id): Path<String>,
    Query(q): Query<BoardQuery>,
) -> Result<Json<Page>, ApiError> {
    let boards = h.read();
    let b = boards.board(&id).ok_or_else(|| not_found(&id))?;
    if let Some(player) = &q.around {
        let radius = q.radius.unwrap_or(5).min(MAX_RADIUS);
        let entries = b.around(player, radius).ok_or(ApiError(
            StatusCode::NOT_FOUND,
            "player_not_on_board",
            json!(player),
        ))?;
        return Ok(Json(Page {
            board: id,
            period_start_ms: b.period(),
            total: b.len(),
            entries,
            next_cursor: None,
        }));
    }
    let limit = q.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            json!(format!("limit is 1 to {MAX_LIMIT}")),
        ));
    }
    let cursor = match &q.cursor {
        Some(c) => Some(decode_cursor(c).ok_or(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            json!(c),
        ))?),
        None => None,
    };
    let (entries, next) = b.page(limit, cursor.as_ref());
    Ok(Json(Page {
        board: id,
        period_start_ms: b.period(),
        total: b.len(),
        entries,
        next_cursor: next.as_ref().map(encode_cursor),
    }))
}

/// A frame of `/ws/leaderboards/{board}`: the board's top N. Fields in
/// alphabetical order, as the JSON map this replaced wrote them.
#[derive(Debug, Serialize)]
pub struct TopFrame<'a> {
    pub board: &'a str,
    pub entries: Vec<Row>,
    pub period_start_ms: Option<i64>,
    pub total: usize,
    /// Bumped on every change of the board.
    pub version: u64,
    /// The newest event time seen (ms since the epoch).
    pub watermark_ms: i64,
}

/// The top N of `id` as the WebSocket sends it, with the board's version.
fn top_message(h: &Leaderboards, id: &str) -> Option<(u64, String)> {
    let boards = h.read();
    let b = boards.board(id)?;
    let (entries, _) = b.page(boards.top_n(id).max(1), None);
    let frame = TopFrame {
        board: id,
        entries,
        period_start_ms: b.period(),
        total: b.len(),
        version: b.version,
        watermark_ms: b.watermark(),
    };
    Some((b.version, serde_json::to_string(&frame).ok()?))
}

async fn ws(
    State(h): State<Leaderboards>,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if h.read().board(&id).is_none() {
        return Err(not_found(&id));
    }
    Ok(upgrade.on_upgrade(move |socket| push(h, id, socket)))
}

/// Sends the top N now and whenever the board's version moves.
async fn push(h: Leaderboards, id: String, mut socket: WebSocket) {
    let mut changes = h.subscribe();
    let mut sent = None;
    loop {
        if let Some((version, text)) = top_message(&h, &id) {
            if sent != Some(version) {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                sent = Some(version);
            }
        } else {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

fn authorised(h: &Leaderboards, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorised = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            json!("send Authorization: Bearer <ADMIN_TOKEN>"),
        )
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // No credentials is 401 whether or not the routes are on (as the
    // bridge's own admin routes answer); credentials for routes that are
    // off is 403.
    let Some(given) = given else {
        return Err(unauthorised());
    };
    let Some(expected) = &h.admin_token else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            json!("set ADMIN_TOKEN to use the admin routes"),
        ));
    };
    // Compared in constant time: the token's length is not secret.
    let ok = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(unauthorised())
    }
}

async fn upsert(
    State(h): State<Leaderboards>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CampaignDef>), ApiError> {
    authorised(&h, &headers)?;
    let def: CampaignDef = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_definition",
            json!(e.to_string()),
        )
    })?;
    h.write().upsert_campaign(def.clone()).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_definition",
            json!(e.to_string()),
        )
    })?;
    h.notify();
    Ok((StatusCode::CREATED, Json(def)))
}

async fn remove(
    State(h): State<Leaderboards>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorised(&h, &headers)?;
    if h.write().remove_campaign(&id) {
        h.notify();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::seed_campaign;
    use crate::Boards;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn handle() -> Leaderboards {
        let mut boards = Boards::new(seed_campaign("gameplay"), None).expect("boards");
        for i in 0..30i64 {
            let spin = format!(
                r#"{{"playerId":{},"gameId":10,"win":{},"stake":10,"eventTime":"2025-12-01 08:40:00.{:06}"}}"#,
                1000 + i,
                i * 10,
                i
            );
            boards.apply_record("gameplay", 0, i, spin.as_bytes());
        }
        Leaderboards::new(boards, Some("secret".into()))
    }

    async fn get_json(app: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let r = app
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&body).expect("json"))
    }

    #[tokio::test]
    async fn pages_with_a_cursor_and_around_a_player() {
        let app = router(handle());
        let (s, list) = get_json(app.clone(), "/api/leaderboards").await;
        assert_eq!(s, 200);
        assert_eq!(list["boards"][0]["id"], "spins-best-ratio");
        assert_eq!(list["boards"][0]["operator"], "best");
        let (_, p1) = get_json(app.clone(), "/api/leaderboards/spins-best-ratio?limit=10").await;
        assert_eq!(p1["entries"][0]["player_id"], "1029");
        assert_eq!(p1["total"], 30);
        let cursor = p1["next_cursor"].as_str().expect("cursor");
        let (_, p2) = get_json(
            app.clone(),
            &format!("/api/leaderboards/spins-best-ratio?limit=10&cursor={cursor}"),
        )
        .await;
        assert_eq!(p2["entries"][0]["rank"], 11);
        assert_eq!(p2["entries"][0]["player_id"], "1019");
        let (_, around) = get_json(
            app.clone(),
            "/api/leaderboards/spins-best-ratio?around=1010&radius=1",
        )
        .await;
        let ids: Vec<&str> = around["entries"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["player_id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, ["1011", "1010", "1009"]);
        let (s, e) = get_json(app.clone(), "/api/leaderboards/nope").await;
        assert_eq!(s, 404);
        assert_eq!(e["error"], "unknown_board");
        let (s, _) = get_json(app, "/api/leaderboards/spins-best-ratio?cursor=zz").await;
        assert_eq!(s, 400);
    }

    #[tokio::test]
    async fn admin_routes_need_the_token() {
        let h = handle();
        let app = router(h.clone());
        let mut def = seed_campaign("gameplay")[0].clone();
        def.id = "weekly".into();
        def.rules.reset = Some("0 0 0 * * Mon".into());
        let body = serde_json::to_vec(&def).expect("json");
        let post = |token: &str| {
            Request::post("/api/admin/leaderboards")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body.clone()))
                .expect("request")
        };
        let r = app.clone().oneshot(post("wrong")).await.expect("answer");
        assert_eq!(r.status(), 401);
        let bare = || {
            Request::post("/api/admin/leaderboards")
                .body(Body::from(body.clone()))
                .expect("request")
        };
        let r = app.clone().oneshot(bare()).await.expect("answer");
        assert_eq!(r.status(), 401, "no credentials");
        // With the routes off: 401 without credentials, 403 with them.
        let off = router(Leaderboards::new(
            Boards::new(seed_campaign("gameplay"), None).expect("boards"),
            None,
        ));
        let r = off.clone().oneshot(bare()).await.expect("answer");
        assert_eq!(r.status(), 401);
        let r = off.oneshot(post("secret")).await.expect("answer");
        assert_eq!(r.status(), 403);
        let r = app.clone().oneshot(post("secret")).await.expect("answer");
        assert_eq!(r.status(), 201);
        assert!(h.read().board("weekly").is_some());
        let state = h.write().take_state();
        assert!(state.iter().any(|(k, v)| k == "def/weekly" && v.is_some()));
    }
}
