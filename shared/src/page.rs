//! Which page a URL asks for. The game page and the other pages (arena,
//! analytics, operator) are two builds of the frontend (issue 19: the game
//! page's wasm stays small); the bridge serves the right one's HTML and each
//! build mounts the page this names, so both decide alike.

use crate::arena::GameKind;

/// A page of the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/`: the join form and the nation view (the game build).
    Game,
    /// `/?view=analytics`: the lake's reports.
    Analytics,
    /// `/?arena=<id>` with an arena's id: that arena.
    Arena(u64),
    /// `/admin`: the operator page.
    Admin,
}

impl Page {
    /// The page for a path (`/admin`) and a query string (`?arena=7`, the
    /// leading `?` optional).
    pub fn of(path: &str, search: &str) -> Page {
        if path.trim_end_matches('/') == "/admin" {
            return Page::Admin;
        }
        let mut pairs = search.trim_start_matches('?').split('&');
        if pairs.clone().any(|pair| pair == "view=analytics") {
            return Page::Analytics;
        }
        pairs
            .find_map(|pair| pair.strip_prefix("arena="))
            .and_then(|v| v.parse().ok())
            .filter(|id| GameKind::of(*id) == GameKind::Arena)
            .map_or(Page::Game, Page::Arena)
    }

    /// Whether the page is in the second build (served from `/extra/`).
    pub fn is_extra(self) -> bool {
        self != Page::Game
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_page() {
        let arena = crate::arena::ARENA_IDS.start;
        assert_eq!(Page::of("/", ""), Page::Game);
        assert_eq!(Page::of("/", "?game=3"), Page::Game);
        assert_eq!(Page::of("/admin", ""), Page::Admin);
        assert_eq!(Page::of("/admin/", "?x=1"), Page::Admin);
        assert_eq!(Page::of("/", "?game=3&view=analytics"), Page::Analytics);
        assert_eq!(
            Page::of("/", &format!("?arena={arena}")),
            Page::Arena(arena)
        );
    }

    #[test]
    fn a_number_outside_the_arenas_is_the_game_page() {
        assert_eq!(Page::of("/", "?arena=3"), Page::Game);
        assert_eq!(Page::of("/", "?arena="), Page::Game);
        assert_eq!(Page::of("/", "?arena=x"), Page::Game);
        assert!(!Page::Game.is_extra());
        assert!(Page::Admin.is_extra());
    }
}
