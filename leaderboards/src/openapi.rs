//! The leaderboards' routes in the bridge's OpenAPI document
//! ([`openapi_paths`], passed by the host in `bridge::Extras::openapi`).
//!
//! The shapes come from the types themselves ([`crate::board::Row`],
//! [`crate::boards::BoardInfo`], [`crate::campaign::CampaignDef`] derive
//! their schemas).

use aide::openapi::PathItem;
use aide::transform::TransformOperation;
use axum::extract::{Path, Query};
use axum::Json;
use ops::openapi::{delete, error_response, get, plain, post, text_error};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::campaign::CampaignDef;
use crate::http::{BoardList, BoardQuery, Page, MAX_LIMIT, MAX_RADIUS};

/// The path of the routes that name a board.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)] // read by schemars only
struct BoardPath {
    /// The board's id (`GET /api/leaderboards` lists them).
    board: String,
}

const ADMIN: &str = "Admin token: `Authorization: Bearer <ADMIN_TOKEN>` (the bridge's \
ADMIN_TOKEN). Checked before anything else.";

/// The admin routes' refusals, as `authorised` answers them.
fn admin(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let op = op.security_requirement("admin");
    let op = error_response(
        op,
        401,
        "`unauthorized`: no `Authorization: Bearer` header, or not the admin token.",
    );
    error_response(
        op,
        403,
        "`admin_disabled`: ADMIN_TOKEN is unset (or empty), so the admin routes are off.",
    )
}

/// The leaderboards' routes ([`crate::router`]), for the bridge's document.
pub fn openapi_paths() -> Vec<(String, PathItem)> {
    vec![
        get("/api/leaderboards", |op| {
            op.summary("Every board, how it is defined and how full it is.")
                .response_with::<200, Json<BoardList>, _>(|r| r.description("The boards."))
        }),
        get("/api/leaderboards/{board}", |op| {
            let op = op
                .summary("A page of a board, or a player and their neighbours.")
                .description(&format!(
                    "Keyset pages: `limit` rows (default 10, 1 to {MAX_LIMIT}) after \
                     `cursor` (the previous page's `next_cursor`), so pages never skip or \
                     repeat while the board moves. With `around` (a player id): that \
                     player and `radius` rows either side (default 5, at most \
                     {MAX_RADIUS}; more is capped); `limit` and `cursor` are then ignored."
                ))
                .input::<Path<BoardPath>>()
                .input::<Query<BoardQuery>>()
                .response_with::<200, Json<Page>, _>(|r| r.description("The rows."));
            let op = error_response(
                op,
                400,
                &format!(
                    "`bad_limit` (`limit` 0 or over {MAX_LIMIT}) or `bad_cursor` (not a \
                     `next_cursor`)."
                ),
            );
            let op = text_error(
                op,
                400,
                "A query that does not parse (`limit` or `radius` not a non-negative \
                 integer) is axum's text answer.",
            );
            error_response(
                op,
                404,
                "`unknown_board`, or `player_not_on_board` (with `around`).",
            )
        }),
        get("/ws/leaderboards/{board}", |op| {
            let op = op
                .summary("WebSocket of a board's top N.")
                .description(
                    "Server frames are JSON text, \
                     `{\"board\", \"version\", \"period_start_ms\", \"watermark_ms\", \
                     \"total\", \"entries\"}` (`entries`: the top N rows, as in a page): \
                     one now and one each time the board changes (conflated: a slow reader \
                     gets the latest). The socket closes when the board is removed; what \
                     the client sends is ignored (but a close).",
                )
                .input::<Path<BoardPath>>();
            let op = plain(op, 101, "Switching protocols.", None);
            let op = text_error(op, 400, "Not a WebSocket handshake.");
            error_response(op, 404, "`unknown_board`.")
        }),
        post("/api/admin/leaderboards", |op| {
            let op = op
                .summary("Add a campaign board, or replace one of the same id.")
                .description(ADMIN)
                .input::<Json<CampaignDef>>()
                .response_with::<201, Json<CampaignDef>, _>(|r| {
                    r.description("Added; its rows start from the next event.")
                });
            let op = admin(op);
            let op = text_error(op, 413, "A body over the bridge's 16 KiB limit.");
            error_response(
                op,
                422,
                "`bad_definition`: not a definition (the body is read as JSON whatever \
                 its Content-Type), a bad id, cron `reset` or window.",
            )
        }),
        delete("/api/admin/leaderboards/{board}", |op| {
            let op = op
                .summary("Remove a campaign board and its rows.")
                .description(ADMIN)
                .input::<Path<BoardPath>>();
            let op = plain(op, 204, "Removed.", None);
            let op = admin(op);
            error_response(
                op,
                404,
                "`unknown_board`: no campaign of that id (the game's own boards cannot \
                 be removed).",
            )
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::seed_campaign;
    use crate::Boards;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    fn boards() -> Boards {
        let mut boards =
            Boards::new(seed_campaign("gameplay"), Some("games".into())).expect("boards");
        let spin = r#"{"playerId":7,"gameId":10,"win":20,"stake":10,"eventTime":"2025-12-01 08:40:00.000001"}"#;
        boards.apply_record("gameplay", 0, 0, spin.as_bytes());
        boards
    }

    /// Every documented route and method is one the router serves: with a
    /// board that exists, nothing answers the router's bare 404 or 405.
    #[tokio::test]
    async fn every_documented_route_is_routed() {
        let app = crate::router(crate::Leaderboards::new(boards(), Some("secret".into())));
        let paths = openapi_paths();
        assert_eq!(paths.len(), 5);
        for (route, item) in paths {
            let uri = route.replace("{board}", "spins-best-ratio");
            for (method, present) in [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::DELETE, item.delete.is_some()),
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
                            .expect("request"),
                    )
                    .await
                    .expect("answer");
                let status = response.status();
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {route} is documented but not routed: {status}"
                );
            }
        }
    }

    #[test]
    fn the_document_lists_the_routes_with_their_refusals() {
        let doc = bridge::openapi::document_with(&[openapi_paths]);
        let doc = serde_json::to_value(&doc).expect("json");
        let post = &doc["paths"]["/api/admin/leaderboards"]["post"];
        assert_eq!(post["security"][0]["admin"], serde_json::json!([]));
        for status in ["201", "401", "403", "413", "422"] {
            assert!(post["responses"][status].is_object(), "POST {status}");
        }
        let page = &doc["paths"]["/api/leaderboards/{board}"]["get"]["responses"]["400"];
        assert!(page["content"]["application/json"].is_object());
        assert!(page["content"]["text/plain"].is_object());
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["CampaignDef"]["properties"]["id"]["pattern"],
            "^[a-z0-9-]{1,64}$"
        );
        assert!(schemas["Row"].is_object());
        let query = &schemas["BoardQuery"]["properties"];
        let limit = &query["limit"]["description"];
        assert!(limit
            .as_str()
            .is_some_and(|d| d.contains(&MAX_LIMIT.to_string())));
        assert_eq!(query["limit"]["maximum"], MAX_LIMIT);
        assert_eq!(query["cursor"]["pattern"], crate::http::CURSOR_PATTERN);
        // The definition is flattened into the listing, beside its counts.
        let listing = &schemas["BoardListing"]["properties"];
        assert!(listing["operator"].is_object() && listing["late"].is_object());
    }
}
