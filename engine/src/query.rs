//! Interactive queries: a game's whole state, asked of the engine that owns
//! its partition, so that nobody reads `games` from its beginning to show a
//! game (Kafka Streams' interactive queries, with the RPC built in).
//!
//! The engine loop keeps its games in a [`Store`] it locks while it handles
//! a batch; a query locks it between batches, clones one game and answers
//! with the state after the last batch handled (produced, perhaps not yet
//! committed: exactly what `read_uncommitted` readers of `games` see; an
//! aborted batch is redone with the same result, the rules being
//! deterministic).
//!
//! How a bridge finds the owner: the engine names its actions consumer
//! `engine@<query url>` (`client.id`), so the consumer group's description
//! (member client ids and assignments) maps each partition to the URL that
//! answers for it. [`router`] serves `GET /games/{game_id}`:
//! - `200` with a [`GameSnapshot`];
//! - `404` when this engine owns the partition and the game has no state;
//! - `421` when it does not own the partition (ask the group again);
//! - `503` with `Retry-After` while the partition is being restored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use shared::wire::ErrorBody;
use shared::{partition_for, GameSnapshot};

use crate::handle::GameSlot;

/// The prefix of the actions consumer's `client.id` before the query URL.
pub const CLIENT_ID_PREFIX: &str = "engine@";

/// What the engine loop holds, shared with the query handlers.
#[derive(Debug, Default)]
pub struct Held {
    pub(crate) games: HashMap<u64, GameSlot>,
    /// Partitions assigned to this engine.
    pub(crate) assigned: HashSet<i32>,
    /// Assigned partitions whose games are not restored yet.
    pub(crate) loading: HashSet<i32>,
}

/// The engine's games, for its loop and its queries.
#[derive(Debug, Default)]
pub struct Store {
    held: Mutex<Held>,
    /// A query found its partition still loading: restore it now, without
    /// waiting for a record to arrive.
    restore_wanted: AtomicBool,
    /// Partitions of the topics (to place a game).
    partitions: std::sync::atomic::AtomicI32,
}

/// What a query finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Game(GameSnapshot),
    /// This engine owns the game's partition and the game has no state.
    NoSuchGame,
    /// Another engine owns the partition (or none yet).
    NotOwner,
    /// The partition is assigned here but not restored yet.
    Loading,
}

impl Store {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every game and partition: the loop's Kafka clients are gone
    /// and new ones will be assigned (and restore) afresh.
    pub(crate) fn forget_all(&self) {
        *self.lock() = Held::default();
    }

    pub(crate) fn set_partitions(&self, n: i32) {
        self.partitions.store(n, Ordering::Relaxed);
    }

    /// Takes (and clears) a query's request for an immediate restore.
    pub(crate) fn take_restore_wanted(&self) -> bool {
        self.restore_wanted.swap(false, Ordering::Relaxed)
    }

    /// The game's state as of the last batch handled.
    pub fn query(&self, game_id: u64) -> Answer {
        let n = self.partitions.load(Ordering::Relaxed);
        if n < 1 {
            return Answer::NotOwner;
        }
        let partition = partition_for(game_id, n);
        let held = self.lock();
        if !held.assigned.contains(&partition) {
            return Answer::NotOwner;
        }
        if held.loading.contains(&partition) {
            self.restore_wanted.store(true, Ordering::Relaxed);
            return Answer::Loading;
        }
        match held.games.get(&game_id) {
            Some(slot) => Answer::Game(slot.snapshot()),
            None => Answer::NoSuchGame,
        }
    }
}

/// `GET /games/{game_id}` on `store` (see the module docs).
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/games/{game_id}", get(game))
        .with_state(store)
}

async fn game(State(store): State<Arc<Store>>, Path(game_id): Path<String>) -> Response {
    let Ok(game_id) = game_id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the game id is a number",
        );
    };
    // Cloning a large game takes a moment: off the async workers.
    let answer = tokio::task::spawn_blocking(move || store.query(game_id)).await;
    match answer {
        Ok(Answer::Game(snapshot)) => Json(snapshot).into_response(),
        Ok(Answer::NoSuchGame) => error(StatusCode::NOT_FOUND, "not_found", "no such game"),
        Ok(Answer::NotOwner) => error(
            StatusCode::MISDIRECTED_REQUEST,
            "not_owner",
            "this engine does not own the game's partition",
        ),
        Ok(Answer::Loading) => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "loading",
                "the game's partition is being restored",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the query failed",
        ),
    }
}

fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = ErrorBody {
        error: code.to_string(),
        detail: serde_json::Value::String(detail.to_string()),
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Game;

    #[test]
    fn answers_by_ownership_then_loading_then_state() {
        let store = Store::default();
        store.set_partitions(4);
        assert_eq!(store.query(5), Answer::NotOwner);
        store.lock().assigned.insert(1);
        store.lock().loading.insert(1);
        assert_eq!(store.query(5), Answer::Loading);
        assert!(store.take_restore_wanted(), "a query asks for a restore");
        store.lock().loading.clear();
        assert_eq!(store.query(5), Answer::NoSuchGame);
        let mut game = Game::new(5);
        game.version = 3;
        store.lock().games.insert(
            5,
            GameSlot {
                game,
                ..GameSlot::default()
            },
        );
        match store.query(5) {
            Answer::Game(s) => assert_eq!((s.game_id, s.version), (5, 3)),
            other => panic!("{other:?}"),
        }
    }
}
