//! The invite link and the player's place: small pure helpers for the view.
//!
//! A link `https://host/?game=7` opens game 7's join form; the page reads the
//! number back with [`game_from_query`].

use crate::model::LeaderRow;

/// How many nations the ranking shows at a glance.
pub const TOP: usize = 5;

/// The game a page's query string (`location.search`) asks for, if any.
pub fn game_from_query(search: &str) -> Option<u64> {
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|pair| pair.strip_prefix("game="))
        .and_then(|v| v.parse().ok())
}

/// The link that invites a friend to `game_id` on the page's `origin`.
pub fn invite_url(origin: &str, game_id: u64) -> String {
    format!("{}/?game={game_id}", origin.trim_end_matches('/'))
}

/// The rows shown at a glance: the top [`TOP`], and the player's own row
/// after them when it is not among them.
pub fn at_a_glance(rows: &[LeaderRow]) -> Vec<LeaderRow> {
    let mut shown: Vec<LeaderRow> = rows.iter().take(TOP).cloned().collect();
    if let Some(me) = rows.iter().skip(TOP).find(|r| r.me) {
        shown.push(me.clone());
    }
    shown
}

/// "You are 3rd of 7" (None before the player's nation exists).
pub fn my_place(rows: &[LeaderRow]) -> Option<String> {
    let me = rows.iter().find(|r| r.me)?;
    let suffix = match (me.rank % 10, me.rank % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    Some(format!("You are {}{suffix} of {}", me.rank, rows.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, me: usize) -> Vec<LeaderRow> {
        (1..=n)
            .map(|rank| LeaderRow {
                rank,
                player_id: format!("p{rank}"),
                name: format!("N{rank}"),
                power: (100 - rank) as u32,
                gold: 0,
                me: rank == me,
            })
            .collect()
    }

    #[test]
    fn the_query_names_the_game() {
        assert_eq!(game_from_query("?game=7"), Some(7));
        assert_eq!(game_from_query("?x=1&game=12"), Some(12));
        assert_eq!(game_from_query("?game=abc"), None);
        assert_eq!(game_from_query(""), None);
    }

    #[test]
    fn the_invite_link_points_at_the_game() {
        assert_eq!(invite_url("http://h:8080", 3), "http://h:8080/?game=3");
        let url = invite_url("http://h/", 3);
        assert_eq!(url, "http://h/?game=3");
        assert_eq!(
            game_from_query(url.split_once('?').map_or("", |(_, q)| q)),
            Some(3)
        );
    }

    #[test]
    fn the_top_five_and_me() {
        let shown = at_a_glance(&rows(9, 8));
        assert_eq!(shown.len(), TOP + 1);
        assert_eq!(shown.last().map(|r| r.rank), Some(8));
        assert_eq!(at_a_glance(&rows(9, 2)).len(), TOP, "already among the top");
    }

    #[test]
    fn my_place_in_words() {
        assert_eq!(my_place(&rows(7, 3)).as_deref(), Some("You are 3rd of 7"));
        assert_eq!(
            my_place(&rows(12, 11)).as_deref(),
            Some("You are 11th of 12")
        );
        assert_eq!(
            my_place(&rows(22, 22)).as_deref(),
            Some("You are 22nd of 22")
        );
        assert_eq!(my_place(&rows(3, 0)), None);
    }
}
