//! # shared: the pure heart of Build a Nation
//!
//! Wire types and game rules, compiled both into the servers (native) and into
//! the browser (wasm32). Nothing here does I/O, reads a clock or draws a random
//! number: time and ids arrive inside the [`ActionEnvelope`] stamped by the
//! bridge, so the engine, a replay of the log and the browser's prediction all
//! reach the same state from the same actions.
//!
//! ## Layout
//! - [`wire`]: what travels: [`ActionType`], [`ActionEnvelope`] (records on
//!   `actions`), [`GamesRecord`] (records on `games`: a record per nation and
//!   a head per step), the HTTP bodies, the WebSocket messages
//!   ([`GameSnapshot`], [`GameDelta`]) and [`partition_for`].
//! - [`state`]: [`Game`], [`GameState`], [`Nation`], [`Items`], [`Item`].
//! - [`admin`]: what the admin routes answer (the abuse table, the
//!   operator page's summary) and the page's arithmetic on it.
//! - [`rules`]: [`apply`], [`apply_changes`], [`check`], [`Rejection`] and
//!   the economy below; [`apply`] hands arena games to [`arena`].
//! - [`arena`]: the 5v5 arena's rules (board, moves, grenades, rounds) and
//!   [`GameKind`]: ids in [`arena::ARENA_IDS`] are arenas.
//! - [`page`]: [`Page`], which page of the frontend a URL asks for (the
//!   bridge serves that build's HTML; the build mounts that page).
//! - [`schema`]: JSON Schemas generated from the types; checked in under
//!   `shared/schema/` and compared by a test so they never drift.
//!
//! ## The economy
//! | what | rule |
//! |---|---|
//! | `join` | creates the nation with [`STARTING_GOLD`] (100) gold and no items; joining twice is rejected (`already_joined`) |
//! | `default` (a visit) | earns [`VISIT_GOLD`] (10) gold, plus 1 gold for every full 10 s since the nation last acted, at most [`MAX_IDLE_GOLD`] (30) more. A visit from a player the game does not know yet creates the nation first (the seed's clients never joined: their `Host` is the player) |
//! | `purchase_<item>` | costs the item's price: knife 20, shield 40, sword 50, horse 80; sets the item to level 1. Buying an item already owned is rejected (`already_owned`) |
//! | `upgrade_sword`, `upgrade_shield` | needs the item (`item_missing`), costs price × next level (sword 2 costs 100, sword 3 costs 150, ...), up to level [`MAX_LEVEL`] (5, then `max_level`) |
//! | power | Σ weight × level with weights knife 1, shield 2, sword 3, horse 4 |
//! | not enough gold | `not_enough_gold` with `need` and `have`; gold never goes negative |
//! | unknown player | any action but `join` and `default` from a player the game does not know: `unknown_player` |
//!
//! Every action handled (applied or rejected) raises the game's version by
//! one, and only the acting player's nation can change: an update carries
//! just that nation. Duplicates never reach the rules: the engine remembers
//! every action id for 24 h and refuses older ones as `expired`.
//!
//! [`STARTING_GOLD`]: rules::STARTING_GOLD
//! [`VISIT_GOLD`]: rules::VISIT_GOLD
//! [`MAX_IDLE_GOLD`]: rules::MAX_IDLE_GOLD
//! [`MAX_LEVEL`]: rules::MAX_LEVEL

pub mod admin;
pub mod arena;
pub mod framing;
pub mod page;
pub mod rules;
pub mod schema;
pub mod state;
pub mod wire;

pub use arena::{ArenaMatch, ArenaState, Fighter, GameKind, Team};
pub use page::Page;
pub use rules::{apply, apply_changes, check, Effect, Outcome, Rejection};
pub use state::{Game, GameState, Item, Items, Nation};
pub use wire::{
    check_name, partition_for, valid_action_id, ActionEnvelope, ActionType, ClientConfig,
    FighterRecord, Fit, FoldedStep, GameDelta, GameHead, GameSnapshot, GamesFold, GamesRecord,
    MatchRecord, NameError, NationRecord, RejectedAction, ServerMessage, DEFAULT_PARTITIONS,
    GAMES_SCHEMA_VERSION, MAX_ACTION_ID, MAX_NAME_CHARS, SCHEMA_VERSION,
};
