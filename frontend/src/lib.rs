//! # frontend: Build a Nation in the browser
//!
//! A Leptos CSR app, built by trunk and served by the bridge at `/`. It
//! predicts every click with `shared`'s rules, so the game feels instant, and
//! lets the engine's updates on the WebSocket confirm or roll back.
//!
//! ## Layout
//! - [`model`]: plain data and rules of the client (pending clicks,
//!   prediction, settlement, buttons, leaderboard, error wording, backoff);
//!   compiles and is tested on native.
//! - [`ctrl`]: signals and the network: join, send with retries (same action
//!   id), the WebSocket with reconnect and resume.
//! - [`net`]: `fetch`, local storage, action ids, clocks (web-sys wrappers).
//! - [`feed`]: the live feed, derived by diffing confirmed games.
//! - [`art`]: the item pictures (inline SVG per item and level).
//! - [`invite`]: the invite link and the ranking at a glance.
//! - [`boards`]: the global and campaign boards (the leaderboards role),
//!   the player's place highlighted even far from the top.
//! - [`analytics`]: the analytics page (`/?view=analytics`): the lake's
//!   reports as SVG bar charts, polled.
//! - [`arena`]: the 5v5 arena's page (`/?arena=<id>`): board, keys, pad,
//!   prediction with the arena rules.
//! - [`app`]: the components; [`App`] is the game page (`src/main.rs`).
//! - [`extra`]: [`ExtraApp`], the arena, analytics and operator pages: a
//!   second binary (`src/bin/frontend-extra.rs`, trunk build of
//!   `frontend/extra.html` into `dist/extra/`), so the game page's wasm
//!   carries none of them (issue 19's transfer budget).
//! - [`admin`]: the operator page (`/admin`): live charts and the abuse table.

pub mod admin;
pub mod analytics;
pub mod app;
pub mod arena;
pub mod art;
pub mod boards;
pub mod ctrl;
pub mod extra;
pub mod feed;
pub mod invite;
pub mod model;
pub mod net;

pub use app::App;
pub use extra::ExtraApp;
