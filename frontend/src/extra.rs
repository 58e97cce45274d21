//! The pages other than the game's: the arena (`/?arena=<id>`), the analytics
//! page (`/?view=analytics`) and the operator page (`/admin`). They are a
//! second wasm (`src/bin/frontend-extra.rs`, served from `/extra/`), so the
//! game page loads none of their code.

use leptos::prelude::*;
use shared::Page;

/// The page this URL names; a URL of the game page is sent back to it (same
/// query), as the bridge would have served the game build for it.
#[component]
pub fn ExtraApp() -> impl IntoView {
    match crate::net::page() {
        Page::Analytics => view! { <crate::analytics::AnalyticsPage /> }.into_any(),
        Page::Arena(game_id) => view! { <crate::arena::ArenaPage game_id=game_id /> }.into_any(),
        Page::Admin => view! { <crate::admin::AdminPage /> }.into_any(),
        Page::Game => {
            crate::net::replace_with(&format!("/{}", crate::net::search()));
            ().into_any()
        }
    }
}
