//! The global boards beside the game (issue 14): nation power across every
//! game, and seed 004's campaign, read from the leaderboards role
//! (`GET /api/leaderboards/{board}`), refreshed every few seconds. The
//! player's own place is shown highlighted even when far below the top: the
//! top rows, a gap, then the rows around the player (`?around=`).
//!
//! [`shown`] decides what a board lists; it is plain data, tested natively.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Deserialize;

use crate::ctrl::Ctrl;
use crate::net;

/// One row of a board, as the leaderboards role answers it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Row {
    /// 1 is first place.
    pub rank: usize,
    pub player_id: String,
    pub score: f64,
}

/// A page of a board.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Page {
    /// Players on the board.
    pub total: usize,
    pub entries: Vec<Row>,
}

/// A line of a board on screen.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Row {
        row: Row,
        me: bool,
    },
    /// Places left out between the top and the player's neighbourhood.
    Gap,
}

/// The top rows, then, when the player's neighbourhood is below them, a gap
/// and the neighbourhood (each row once, in rank order).
pub fn shown(top: &[Row], around: &[Row], me: Option<&str>) -> Vec<Line> {
    let is_me = |r: &Row| me.is_some_and(|m| m == r.player_id);
    let mut lines: Vec<Line> = top
        .iter()
        .map(|r| Line::Row {
            row: r.clone(),
            me: is_me(r),
        })
        .collect();
    let last_top = top.last().map_or(0, |r| r.rank);
    let below: Vec<&Row> = around.iter().filter(|r| r.rank > last_top).collect();
    if let Some(first) = below.first() {
        if first.rank > last_top + 1 {
            lines.push(Line::Gap);
        }
        lines.extend(below.into_iter().map(|r| Line::Row {
            row: r.clone(),
            me: is_me(r),
        }));
    }
    lines
}

/// A board's score as people read it (ratios keep two decimals).
pub fn score_text(score: f64) -> String {
    if score.fract() == 0.0 {
        format!("{score:.0}")
    } else {
        format!("{score:.2}")
    }
}

/// A board on screen: its id, title, players on it, and lines.
type Shown = (&'static str, &'static str, usize, Vec<Line>);

/// The boards shown, by id, with their titles.
const BOARDS: [(&str, &str); 2] = [
    ("nation-power", "Power, every game"),
    ("spins-best-ratio", "Campaign: best win/stake ratio"),
];

/// How many places from the top each board lists.
const TOP: usize = 5;

/// Fetches a page; `None` when the board is not there (no leaderboards
/// role, or no such board).
async fn page(path: &str) -> Option<Page> {
    let answer = net::request("GET", path, None, None).await.ok()?;
    (answer.status == 200)
        .then(|| serde_json::from_str(&answer.body).ok())
        .flatten()
}

/// The global and campaign boards, refreshed every 5 s.
#[component]
pub fn GlobalBoards(
    /// The app's state (for the player's id).
    ctrl: Ctrl,
) -> impl IntoView {
    let boards: RwSignal<Vec<Shown>> = RwSignal::new(Vec::new());
    let refresh = move || {
        let me = ctrl.session.with_untracked(|s| s.player_id.clone());
        spawn_local(async move {
            let mut fresh = Vec::new();
            for (id, title) in BOARDS {
                let Some(top) = page(&format!("/api/leaderboards/{id}?limit={TOP}")).await else {
                    continue;
                };
                let around = match &me {
                    Some(me) => page(&format!("/api/leaderboards/{id}?around={me}&radius=1"))
                        .await
                        .map(|p| p.entries)
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                fresh.push((
                    id,
                    title,
                    top.total,
                    shown(&top.entries, &around, me.as_deref()),
                ));
            }
            boards.set(fresh);
        });
    };
    refresh();
    set_interval(refresh, Duration::from_secs(5));
    view! {
        <For each=move || boards.get() key=|(id, _, total, lines)| (*id, *total, format!("{lines:?}")) let:board>
            <section class="card board" data-test="global-board" data-board=board.0>
                <h2>{board.1}</h2>
                <p class="place">{format!("{} players", board.2)}</p>
                <ol>
                    {board
                        .3
                        .into_iter()
                        .map(|line| match line {
                            Line::Row { row, me } => {
                                view! {
                                    <li class:me=me data-test="global-row" data-me=me.to_string()>
                                        <span class="rank">{row.rank}</span>
                                        <span class="who">
                                            {if me {
                                                "you".to_string()
                                            } else {
                                                row.player_id.chars().take(8).collect::<String>()
                                            }}
                                        </span>
                                        <span class="pow">{score_text(row.score)}</span>
                                    </li>
                                }
                                    .into_any()
                            }
                            Line::Gap => view! { <li class="gap" aria-hidden="true">"…"</li> }.into_any(),
                        })
                        .collect_view()}
                </ol>
            </section>
        </For>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rank: usize, player: &str) -> Row {
        Row {
            rank,
            player_id: player.to_string(),
            score: 100.0 - rank as f64,
        }
    }

    #[test]
    fn a_player_far_below_the_top_is_shown_after_a_gap() {
        let top = [row(1, "a"), row(2, "b")];
        let around = [row(40, "x"), row(41, "me"), row(42, "y")];
        let lines = shown(&top, &around, Some("me"));
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[2], Line::Gap);
        assert_eq!(
            lines[4],
            Line::Row {
                row: row(41, "me"),
                me: true
            }
        );
    }

    #[test]
    fn a_player_in_the_top_is_highlighted_there_and_not_repeated() {
        let top = [row(1, "a"), row(2, "me"), row(3, "b")];
        let around = [row(1, "a"), row(2, "me"), row(3, "b")];
        let lines = shown(&top, &around, Some("me"));
        assert_eq!(lines.len(), 3);
        assert!(matches!(&lines[1], Line::Row { me: true, .. }));
    }

    #[test]
    fn a_neighbourhood_right_below_the_top_needs_no_gap() {
        let top = [row(1, "a"), row(2, "b")];
        let around = [row(2, "b"), row(3, "me"), row(4, "c")];
        let lines = shown(&top, &around, Some("me"));
        assert!(!lines.contains(&Line::Gap));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn scores_read_as_people_write_them() {
        assert_eq!(score_text(42.0), "42");
        assert_eq!(score_text(1.2345), "1.23");
    }
}
