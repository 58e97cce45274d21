//! The global boards beside the game (issue 14): nation power across every
//! game, and seed 004's campaign, from the leaderboards role. Each board's
//! top N arrives live on `/ws/leaderboards/{board}` (pushed whenever the
//! board changes); when the player is not among the pushed rows, their
//! neighbourhood is asked for (`GET /api/leaderboards/{board}?around=`), so
//! their own place is shown highlighted even far below the top: the top
//! rows, a gap, then the rows around the player.
//!
//! [`BoardState`] (what the page knows of a board, and when to ask for the
//! neighbourhood) and [`shown`] (what a board lists) are plain data, tested
//! natively; `watch` is the network; [`GlobalBoards`] only reads.

use std::cell::RefCell;
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::ctrl::Ctrl;
use crate::model::backoff_ms;
use crate::net;

/// One row of a board, as the leaderboards role answers it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Row {
    /// 1 is first place.
    pub rank: usize,
    pub player_id: String,
    pub score: f64,
}

/// A page of a board (`GET`), or a frame of its WebSocket (the top N).
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

/// The boards shown, by id, with their titles.
const BOARDS: [(&str, &str); 2] = [
    ("nation-power", "Power, every game"),
    ("spins-best-ratio", "Campaign: best win/stake ratio"),
];

/// How many places from the top each board lists.
pub const TOP: usize = 5;

/// Rows either side of the player in their neighbourhood.
pub const RADIUS: usize = 1;

/// What the page knows of one board: the latest pushed top N and the
/// player's neighbourhood, and whether asking for it is under way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BoardState {
    /// Players on the board.
    pub total: usize,
    /// The top N as last pushed (more rows than [`TOP`]).
    pub top: Vec<Row>,
    /// The player's neighbourhood, when the push leaves them out.
    pub around: Vec<Row>,
    /// A neighbourhood request is under way.
    asking: bool,
    /// The board changed while it was: ask again when it answers.
    stale: bool,
}

impl BoardState {
    /// Takes a pushed top N; true when the player's neighbourhood should
    /// be asked for now (see [`BoardState::want_around`]).
    pub fn on_top(&mut self, frame: Page, me: Option<&str>) -> bool {
        self.total = frame.total;
        self.top = frame.entries;
        self.want_around(me)
    }

    /// True when a neighbourhood request should start now: the player is
    /// not in the pushed rows and none is under way (then it is asked for
    /// again once that one answers, since the board moved meanwhile).
    pub fn want_around(&mut self, me: Option<&str>) -> bool {
        let Some(me) = me else { return false };
        if self.top.iter().any(|r| r.player_id == me) {
            return false;
        }
        if self.asking {
            self.stale = true;
            return false;
        }
        self.asking = true;
        true
    }

    /// Takes a neighbourhood answer (empty when the player is not on the
    /// board); true when another request should follow.
    pub fn on_around(&mut self, rows: Vec<Row>, me: Option<&str>) -> bool {
        self.around = rows;
        self.asking = false;
        std::mem::take(&mut self.stale) && self.want_around(me)
    }

    /// The lines on screen: the top [`TOP`], then the player's neighbourhood
    /// (from the pushed rows when they hold the player, else as asked for).
    pub fn lines(&self, me: Option<&str>) -> Vec<Line> {
        let top = &self.top[..self.top.len().min(TOP)];
        let mine = me.and_then(|m| self.top.iter().position(|r| r.player_id == m));
        let around = match mine {
            Some(i) => &self.top[i.saturating_sub(RADIUS)..(i + RADIUS + 1).min(self.top.len())],
            None if me.is_some() => &self.around[..],
            None => &[],
        };
        shown(top, around, me)
    }
}

/// A board's socket and its handlers (kept alive as long as it).
type Socket = (web_sys::WebSocket, Vec<Closure<dyn FnMut(web_sys::Event)>>);

thread_local! {
    /// One socket per entry of [`BOARDS`].
    static SOCKETS: RefCell<Vec<Option<Socket>>> = RefCell::new(BOARDS.iter().map(|_| None).collect());
}

/// Asks for the player's neighbourhood on board `id` until the answers
/// catch up with the pushes (a second apart at most once per answer).
fn ask_around(id: &'static str, board: RwSignal<Option<BoardState>>, me: String) {
    spawn_local(async move {
        let path = format!("/api/leaderboards/{id}?around={me}&radius={RADIUS}");
        let rows = match net::request("GET", &path, None, None).await {
            Ok(a) if a.status == 200 => serde_json::from_str::<Page>(&a.body)
                .map(|p| p.entries)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut again = false;
        board.update(|b| {
            if let Some(b) = b {
                again = b.on_around(rows, Some(&me));
            }
        });
        if again {
            set_timeout(move || ask_around(id, board, me), Duration::from_secs(1));
        }
    });
}

/// Keeps board `BOARDS[index]` live: opens its WebSocket, takes each push,
/// asks for the player's neighbourhood when a push leaves them out, and
/// reconnects with backoff when the socket closes (no leaderboards role
/// answers it: the board stays hidden).
fn watch(index: usize, board: RwSignal<Option<BoardState>>, ctrl: Ctrl, attempt: u32) {
    let id = BOARDS[index].0;
    let retry = move || {
        let wait = backoff_ms(attempt, net::jitter());
        set_timeout(
            move || watch(index, board, ctrl, attempt + 1),
            Duration::from_millis(wait as u64),
        );
    };
    let Ok(ws) = web_sys::WebSocket::new(&net::ws_url(&format!("/ws/leaderboards/{id}"))) else {
        return retry();
    };
    let on_message = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
        let Some(frame) = e
            .dyn_ref::<web_sys::MessageEvent>()
            .and_then(|m| m.data().as_string())
            .and_then(|text| serde_json::from_str::<Page>(&text).ok())
        else {
            return;
        };
        let me = ctrl.session.with_untracked(|s| s.player_id.clone());
        let mut ask = false;
        board.update(|b| {
            ask = b
                .get_or_insert_with(BoardState::default)
                .on_top(frame, me.as_deref())
        });
        if let (true, Some(me)) = (ask, me) {
            ask_around(id, board, me);
        }
    });
    // Replaced from a timeout, never from inside its own handler.
    let on_close = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        retry();
    });
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    SOCKETS.with(|s| s.borrow_mut()[index] = Some((ws, vec![on_message, on_close])));
}

/// The global and campaign boards, live; each shows once its first push
/// arrived.
#[component]
pub fn GlobalBoards(
    /// The app's state (for the player's id).
    ctrl: Ctrl,
) -> impl IntoView {
    let boards: Vec<RwSignal<Option<BoardState>>> =
        BOARDS.iter().map(|_| RwSignal::new(None)).collect();
    for (index, board) in boards.iter().enumerate() {
        watch(index, *board, ctrl, 0);
    }
    // The player's id alone, so that game updates do not re-run what
    // depends on it.
    let me = Memo::new(move |_| ctrl.session.with(|s| s.player_id.clone()));
    // A player who joins after the first push: their place is asked for
    // at once, not at the board's next change.
    let watched = boards.clone();
    Effect::new(move |_| {
        let me = me.get();
        for (index, board) in watched.iter().enumerate() {
            let mut ask = false;
            board.update_untracked(|b| {
                if let Some(b) = b {
                    ask = b.want_around(me.as_deref());
                }
            });
            if let (true, Some(me)) = (ask, me.clone()) {
                ask_around(BOARDS[index].0, *board, me);
            }
        }
    });
    boards
        .into_iter()
        .zip(BOARDS)
        .map(|(board, (id, title))| view! { <BoardCard id=id title=title board=board me=me /> })
        .collect_view()
}

/// One board: its title, how many players, and its lines, the player's own
/// row highlighted.
#[component]
fn BoardCard(
    /// The board's id (`data-board`).
    id: &'static str,
    /// What the board ranks, in words.
    title: &'static str,
    /// What the page knows of it (`None` before its first push).
    board: RwSignal<Option<BoardState>>,
    /// The player's id, once they joined.
    me: Memo<Option<String>>,
) -> impl IntoView {
    let lines = move || {
        me.with(|me| {
            board.with(|b| {
                b.as_ref()
                    .map(|b| b.lines(me.as_deref()))
                    .unwrap_or_default()
            })
        })
    };
    view! {
        <Show when=move || board.with(Option::is_some)>
            <section class="card board" data-test="global-board" data-board=id>
                <h2>{title}</h2>
                <p class="place">
                    {move || format!("{} players", board.with(|b| b.as_ref().map_or(0, |b| b.total)))}
                </p>
                <ol>
                    {move || {
                        lines()
                            .into_iter()
                            .map(|line| match line {
                                Line::Row { row, me } => {
                                    view! {
                                        <li
                                            class:me=me
                                            data-test="global-row"
                                            data-me=me.to_string()
                                            aria-current=me.then_some("true")
                                        >
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
                            .collect_view()
                    }}
                </ol>
            </section>
        </Show>
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

    fn page(rows: Vec<Row>) -> Page {
        Page {
            total: 50,
            entries: rows,
        }
    }

    #[test]
    fn a_push_without_the_player_asks_for_their_neighbourhood_once() {
        let mut b = BoardState::default();
        let top: Vec<Row> = (1..=10).map(|r| row(r, &format!("p{r}"))).collect();
        assert!(b.on_top(page(top.clone()), Some("me")));
        // Pushes while it is asked for: one more request, after the answer.
        assert!(!b.on_top(page(top.clone()), Some("me")));
        assert!(!b.on_top(page(top), Some("me")));
        let around = vec![row(40, "x"), row(41, "me"), row(42, "y")];
        assert!(b.on_around(around.clone(), Some("me")));
        assert!(!b.on_around(around, Some("me")));
        let lines = b.lines(Some("me"));
        assert_eq!(lines.len(), TOP + 1 + 3);
        assert_eq!(lines[TOP], Line::Gap);
        assert!(matches!(&lines[TOP + 2], Line::Row { me: true, row } if row.rank == 41));
    }

    #[test]
    fn a_player_in_the_pushed_rows_needs_no_request() {
        let mut b = BoardState::default();
        let top: Vec<Row> = (1..=10)
            .map(|r| row(r, if r == 8 { "me" } else { "p" }))
            .collect();
        assert!(!b.on_top(page(top), Some("me")));
        // Below the top five: a gap, then ranks 7 to 9 from the push.
        let lines = b.lines(Some("me"));
        assert_eq!(lines[TOP], Line::Gap);
        let ranks: Vec<usize> = lines[TOP + 1..]
            .iter()
            .map(|l| match l {
                Line::Row { row, .. } => row.rank,
                Line::Gap => 0,
            })
            .collect();
        assert_eq!(ranks, vec![7, 8, 9]);
    }

    #[test]
    fn without_a_player_the_board_shows_its_top_only() {
        let mut b = BoardState::default();
        let top: Vec<Row> = (1..=10).map(|r| row(r, "p")).collect();
        assert!(!b.on_top(page(top), None));
        assert_eq!(b.lines(None).len(), TOP);
    }

    #[test]
    fn scores_read_as_people_write_them() {
        assert_eq!(score_text(42.0), "42");
        assert_eq!(score_text(1.2345), "1.23");
    }
}
