//! The arena page (issue 18): the board in SVG, the players with team
//! colours and grenades left, walls and bursts; arrow keys move and W/A/S/D
//! throw on a desktop, an on-screen pad and four throw buttons on a phone.
//!
//! The player's own actions are predicted at once with `shared`'s arena
//! rules ([`ArenaModel::predicted`]) and reconciled with the engine's
//! versions: each update replaces the confirmed state, and the actions it
//! settled (applied or refused) leave the pending list. [`ArenaModel`] is a
//! plain struct, tested on native; the component only wires it to signals,
//! the keyboard, the WebSocket and `fetch`.

use std::cell::RefCell;

use leptos::prelude::*;
use shared::arena::{self, ArenaState, Fighter, Phase, Team};
use shared::wire::{JoinRequest, JoinResponse};
use shared::{ActionEnvelope, ActionType, Fit, Game, ServerMessage};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use crate::model::validate_name;
use crate::net::{self, StoredNation};

/// The shortest gap the page leaves between two of its player's actions:
/// a little over the rules' [`arena::MIN_INTERVAL_MS`], so the bridge's
/// stamps rarely come closer than the rules allow.
pub const CLIENT_INTERVAL_MS: u64 = arena::MIN_INTERVAL_MS + 50;

/// An action sent and not yet settled by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMove {
    pub action_id: String,
    pub action: ActionType,
    /// The page's clock when it was sent (the prediction's stamp).
    pub at_ms: u64,
}

/// The page's state: the engine's latest arena and what is still on its way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArenaModel {
    pub game_id: u64,
    pub player_id: Option<String>,
    /// The engine's state, as the WebSocket last told it.
    pub confirmed: Option<Game>,
    pub pending: Vec<PendingMove>,
    /// The last refusal of one of the player's actions, for the status line.
    pub refused: Option<String>,
    /// When the page last sent an action (its own rate limit).
    pub last_sent_ms: u64,
}

impl ArenaModel {
    /// A page on `game_id`, for `player_id` if it joined before.
    pub fn new(game_id: u64, player_id: Option<String>) -> ArenaModel {
        ArenaModel {
            game_id,
            player_id,
            ..ArenaModel::default()
        }
    }

    /// The confirmed state with the pending actions applied by the same
    /// rules as the engine's: what the page draws.
    pub fn predicted(&self) -> ArenaState {
        let Some(game) = &self.confirmed else {
            return ArenaState::default();
        };
        let mut game = game.clone();
        if let Some(player) = &self.player_id {
            // Stamped from the server's own last stamp for the player, one
            // interval apart: the page's clock may be off the bridge's.
            let base = game
                .state
                .arena
                .as_ref()
                .and_then(|a| a.fighters.get(player))
                .map_or(0, |f| f.last_ms);
            for (k, p) in self.pending.iter().enumerate() {
                let at = base + (k as u64 + 1) * arena::MIN_INTERVAL_MS;
                let action =
                    ActionEnvelope::new(p.action_id.clone(), game.game_id, player, p.action, at);
                shared::apply(&mut game, &action);
            }
        }
        game.state.arena.unwrap_or_default()
    }

    /// The player's own fighter, predicted.
    pub fn me(&self) -> Option<Fighter> {
        let player = self.player_id.as_ref()?;
        self.predicted().fighters.get(player).cloned()
    }

    /// A key or a button: the action to send now, if the rules (predicted)
    /// and the page's pace allow it. A refused one is not sent: the status
    /// line says why.
    pub fn press(
        &mut self,
        action: ActionType,
        action_id: String,
        now_ms: u64,
    ) -> Result<Option<PendingMove>, String> {
        let Some(player) = self.player_id.clone() else {
            return Err("join the arena first".into());
        };
        if now_ms < self.last_sent_ms + CLIENT_INTERVAL_MS {
            return Ok(None);
        }
        let state = self.predicted();
        arena::check(&state, &player, action, None).map_err(|r| r.to_string())?;
        let pending = PendingMove {
            action_id,
            action,
            at_ms: now_ms,
        };
        self.last_sent_ms = now_ms;
        self.pending.push(pending.clone());
        Ok(Some(pending))
    }

    /// A message from the WebSocket; `false` when it does not follow the
    /// state held (a gap: reconnect for a snapshot).
    pub fn on_server(&mut self, msg: ServerMessage) -> bool {
        match msg {
            ServerMessage::Snapshot(s) => {
                self.confirmed = Some(s.game());
                // A snapshot does not say which actions it includes: the
                // pending ones older than a few seconds are dropped.
                true
            }
            ServerMessage::Update(delta) => {
                let Some(game) = &mut self.confirmed else {
                    return false;
                };
                if delta.apply_to(game) == Fit::Gap {
                    return false;
                }
                self.pending
                    .retain(|p| !delta.applied.contains(&p.action_id));
                for r in &delta.rejected {
                    if let Some(i) = self.pending.iter().position(|p| p.action_id == r.event_id) {
                        let p = self.pending.remove(i);
                        self.refused = Some(format!("{}: {}", p.action, r.reason));
                    }
                }
                true
            }
        }
    }

    /// Drops pending actions sent before `before_ms` (lost, or settled in
    /// a snapshot): the prediction never drifts for long.
    pub fn expire(&mut self, before_ms: u64) {
        self.pending.retain(|p| p.at_ms >= before_ms);
    }

    /// The score line: round, wins, phase or result.
    pub fn score_line(&self) -> String {
        let s = self.predicted();
        let m = &s.arena_match;
        let state = match m.phase {
            Phase::Lobby => "waiting for a player in each team".to_string(),
            Phase::Playing => format!(
                "A {} standing · B {} standing",
                s.standing(Team::A),
                s.standing(Team::B)
            ),
            Phase::Over => match m.winner {
                Some(t) => format!("team {} wins the round", t.label()),
                None => "a draw".to_string(),
            },
        };
        format!(
            "Round {} · A {} – {} B · {state}",
            m.round.max(1),
            m.wins_a,
            m.wins_b
        )
    }
}

/// The action a key stands for: arrows move, W/A/S/D throw.
pub fn key_action(key: &str) -> Option<ActionType> {
    Some(match key {
        "ArrowUp" => ActionType::MoveUp,
        "ArrowDown" => ActionType::MoveDown,
        "ArrowLeft" => ActionType::MoveLeft,
        "ArrowRight" => ActionType::MoveRight,
        "w" | "W" => ActionType::ThrowUp,
        "s" | "S" => ActionType::ThrowDown,
        "a" | "A" => ActionType::ThrowLeft,
        "d" | "D" => ActionType::ThrowRight,
        _ => return None,
    })
}

/// A new arena id, for the home page's "new arena" button.
pub fn new_arena_id(random: u64) -> u64 {
    arena::ARENA_IDS.start + random % 1_000_000_000
}

/// The home page's way into a new arena: a link in the header (an arena's
/// number typed in the game field of the join form opens that arena).
#[component]
pub fn ArenaEntry() -> impl IntoView {
    let fresh = move |ev: leptos::ev::MouseEvent| {
        ev.prevent_default();
        let id = new_arena_id((net::jitter() * 1e9) as u64);
        net::go_to(&format!("/?arena={id}"));
    };
    view! {
        <a class="arena-link" href="/?arena=" data-test="new-arena" style="color:inherit;text-decoration:underline"
            aria-label="Start a new 5v5 arena" on:click=fresh>"5v5 arena"</a>
    }
}

/// Pixels per cell in the SVG's coordinates.
const CELL: u32 = 40;

/// The SVG `y` of row `y` (row 9 at the top).
fn top(y: u8) -> u32 {
    u32::from(arena::HEIGHT - 1 - y) * CELL
}

/// The open socket and its handlers (which must live as long as it).
type OpenSocket = (web_sys::WebSocket, Vec<Closure<dyn FnMut(web_sys::Event)>>);
/// The page's keyboard handler.
type KeyHandler = Closure<dyn FnMut(web_sys::KeyboardEvent)>;

thread_local! {
    static SOCKET: RefCell<Option<OpenSocket>> = const { RefCell::new(None) };
    static KEYS: RefCell<Option<KeyHandler>> = const { RefCell::new(None) };
    /// An action pressed before the page's pace allowed it.
    static QUEUED: RefCell<Option<ActionType>> = const { RefCell::new(None) };
}

/// The arena page.
#[component]
pub fn ArenaPage(
    /// The arena's game id (from `/?arena=`).
    game_id: u64,
) -> impl IntoView {
    let stored = net::load_nation(game_id);
    let token = RwSignal::new(stored.as_ref().map(|s| s.token.clone()));
    let model = RwSignal::new(ArenaModel::new(game_id, stored.map(|s| s.player_id)));
    let live = RwSignal::new(false);
    let name = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);

    connect(game_id, model, live);
    set_interval(
        move || model.update(|m| m.expire(net::now_ms().saturating_sub(5_000))),
        std::time::Duration::from_secs(1),
    );

    let send = move |action: ActionType| send_action(token, model, game_id, action);

    // Arrow keys and W/A/S/D, for the whole page.
    if let Some(window) = web_sys::window() {
        let on_key =
            Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |e: web_sys::KeyboardEvent| {
                let typing = e
                    .target()
                    .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
                    .is_some();
                if typing {
                    return;
                }
                if let Some(action) = key_action(&e.key()) {
                    e.prevent_default();
                    send(action);
                }
            });
        let _ = window.add_event_listener_with_callback("keydown", on_key.as_ref().unchecked_ref());
        KEYS.with(|k| *k.borrow_mut() = Some(on_key));
    }

    let join = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = match validate_name(&name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return problem.set(Some(e)),
        };
        problem.set(None);
        join_arena(
            JoinSignals {
                token,
                model,
                problem,
            },
            game_id,
            n,
            0,
        );
    };

    let joined = move || {
        model.with(|m| {
            m.player_id
                .as_ref()
                .is_some_and(|p| m.predicted().fighters.contains_key(p))
        })
    };
    let phase = move || model.with(|m| m.predicted().arena_match.phase);

    view! {
        <header class="top">
            <h1>"Arena " {game_id}</h1>
            <p class="conn" data-test="conn" data-state=move || if live.get() { "live" } else { "connecting" }>
                {move || if live.get() { "Live" } else { "Connecting…" }}
            </p>
        </header>
        <main class="arena">
            <p class="score" data-test="score" aria-live="polite">{move || model.with(ArenaModel::score_line)}</p>
            {move || model.with(|m| m.refused.clone()).map(|r| view! { <p class="notice" data-test="notice" role="alert">{r}</p> })}
            <Board model=model />
            <Show when=move || !joined() && token.with(Option::is_none)>
                <form class="card join" on:submit=join data-test="arena-join">
                    <label for="arena-name">"Your name"</label>
                    <input id="arena-name" data-test="arena-name" maxlength="32"
                        prop:value=move || name.get()
                        on:input=move |e| name.set(event_target_value(&e)) />
                    <button type="submit" data-test="arena-join-button">"Join the arena"</button>
                    {move || problem.get().map(|p| view! { <p class="notice error" data-test="join-problem">{p}</p> })}
                </form>
            </Show>
            <Show when=joined>
                <Pad send=send />
                <Show when=move || phase() == Phase::Over>
                    <button class="rematch" data-test="rematch" on:click=move |_| send(ActionType::Rematch)>"Rematch"</button>
                </Show>
                <p class="me" data-test="me">{move || model.with(|m| m.me().map(|f| format!(
                    "You: team {} · health {} · grenades {} · eliminations {}",
                    f.team.unwrap_or(Team::A).label(), f.hp, f.grenades, f.kills)).unwrap_or_default())}</p>
            </Show>
            <Lobby model=model />
            <p class="help">"Arrow keys move, W/A/S/D throw a grenade. " <a href="/">"Back to Build a Nation"</a></p>
        </main>
    }
}

/// The board: cells, walls, players, the last burst.
#[component]
fn Board(
    /// The page's state.
    model: RwSignal<ArenaModel>,
) -> impl IntoView {
    let w = u32::from(arena::WIDTH) * CELL;
    let h = u32::from(arena::HEIGHT) * CELL;
    let walls = arena::WALLS
        .iter()
        .map(|&(x, y)| {
            view! { <rect class="wall" x=u32::from(x) * CELL y=top(y) width=CELL height=CELL fill="#555" /> }
        })
        .collect_view();
    view! {
        <svg class="board" data-test="board" viewBox=format!("0 0 {w} {h}") width="100%" style="max-width:360px;touch-action:none" role="img" aria-label="The arena board">
            <rect x="0" y="0" width=w height=h fill="#eee" />
            {walls}
            {move || model.with(|m| {
                let s = m.predicted();
                let me = m.player_id.clone();
                let burst = s.arena_match.burst.map(|b| {
                    let x = u32::from(b.x.saturating_sub(1)) * CELL;
                    let y = top((b.y + 1).min(arena::HEIGHT - 1));
                    view! {
                        <rect class="burst" data-test="burst" x=x y=y width=CELL * 3 height=CELL * 3
                            fill="orange" fill-opacity="0.35" />
                    }
                });
                let players = s.fighters.iter().filter(|(_, f)| f.standing()).map(|(id, f)| {
                    let colour = match f.team { Some(Team::B) => "#c0392b", _ => "#2c6fbb" };
                    let mine = me.as_deref() == Some(id.as_str());
                    let cx = u32::from(f.x) * CELL + CELL / 2;
                    let cy = top(f.y) + CELL / 2;
                    let label = format!("{}{}-{}", f.team.unwrap_or(Team::A).label(), f.seat, f.grenades);
                    view! {
                        <g data-test=if mine { "me-on-board" } else { "player" } data-x=f.x data-y=f.y data-hp=f.hp>
                            <circle cx=cx cy=cy r=CELL / 2 - 3 fill=colour
                                stroke=if mine { "gold" } else { "none" } stroke-width="3"
                                fill-opacity=0.4 + 0.2 * f64::from(f.hp) />
                            <text x=cx y=cy + 4 font-size="11" text-anchor="middle" fill="white">{label}</text>
                        </g>
                    }
                }).collect_view();
                view! { {burst} {players} }
            })}
        </svg>
    }
}

/// The touch pad and the four throw buttons.
#[component]
fn Pad<F>(
    /// Sends an action.
    send: F,
) -> impl IntoView
where
    F: Fn(ActionType) + Copy + Send + Sync + 'static,
{
    let button = move |action: ActionType, label: &'static str, test: &'static str| {
        view! {
            <button class="pad-button" data-test=test aria-label=action.as_str()
                style="min-width:48px;min-height:48px;font-size:20px"
                on:click=move |_| send(action)>{label}</button>
        }
    };
    view! {
        <div class="pad" data-test="pad" style="display:flex;gap:16px;justify-content:center;flex-wrap:wrap">
            <div class="moves" style="display:grid;grid-template-columns:repeat(3,52px);gap:4px">
                <span></span>{button(ActionType::MoveUp, "↑", "move-up")}<span></span>
                {button(ActionType::MoveLeft, "←", "move-left")}<span></span>{button(ActionType::MoveRight, "→", "move-right")}
                <span></span>{button(ActionType::MoveDown, "↓", "move-down")}<span></span>
            </div>
            <div class="throws" style="display:grid;grid-template-columns:repeat(3,52px);gap:4px">
                <span></span>{button(ActionType::ThrowUp, "W", "throw-up")}<span></span>
                {button(ActionType::ThrowLeft, "A", "throw-left")}<span></span>{button(ActionType::ThrowRight, "D", "throw-right")}
                <span></span>{button(ActionType::ThrowDown, "S", "throw-down")}<span></span>
            </div>
        </div>
    }
}

/// Who is in each team (the lobby, and the roster during a round).
#[component]
fn Lobby(
    /// The page's state.
    model: RwSignal<ArenaModel>,
) -> impl IntoView {
    let roster = move |team: Team| {
        model.with(|m| {
            let s = m.predicted();
            let mut names: Vec<(u8, String, u8)> = s
                .fighters
                .values()
                .filter(|f| f.team == Some(team))
                .map(|f| (f.seat, f.name.clone(), f.hp))
                .collect();
            names.sort();
            names
                .into_iter()
                .map(|(seat, name, hp)| {
                    view! { <li>{format!("{}{seat} {name}{}", team.label(), if hp == 0 { " (out)" } else { "" })}</li> }
                })
                .collect_view()
        })
    };
    view! {
        <div class="lobby" data-test="lobby" style="display:flex;gap:24px">
            <div><h3>"Team A"</h3><ul data-test="team-a">{move || roster(Team::A)}</ul></div>
            <div><h3>"Team B"</h3><ul data-test="team-b">{move || roster(Team::B)}</ul></div>
        </div>
    }
}

/// A key or a button: predicted and sent at once if the page's pace allows,
/// else kept (the latest one only) and sent as soon as it does, so a key
/// pressed a moment too early is not lost and held keys do not pile up.
fn send_action(
    token: RwSignal<Option<String>>,
    model: RwSignal<ArenaModel>,
    game_id: u64,
    action: ActionType,
) {
    let Some(tok) = token.get_untracked() else {
        return;
    };
    let mut out = Ok(None);
    model.update(|m| out = m.press(action, net::new_action_id(), net::now_ms()));
    match out {
        Ok(Some(p)) => {
            model.update(|m| m.refused = None);
            leptos::task::spawn_local(async move {
                let body = serde_json::json!({"type": p.action, "action_id": p.action_id});
                let answer = net::request(
                    "POST",
                    &format!("/api/games/{game_id}/actions"),
                    Some(&tok),
                    Some(body.to_string()),
                )
                .await;
                if !matches!(answer, Ok(ref a) if a.status == 202) {
                    model.update(|m| {
                        m.pending.retain(|x| x.action_id != p.action_id);
                        m.refused = Some(format!("{} was not sent, try again", p.action));
                    });
                }
            });
        }
        Ok(None) => {
            let wait = model.with_untracked(|m| {
                (m.last_sent_ms + CLIENT_INTERVAL_MS).saturating_sub(net::now_ms())
            });
            let first = QUEUED.with(|q| q.borrow_mut().replace(action).is_none());
            if first {
                set_timeout(
                    move || {
                        if let Some(a) = QUEUED.with(|q| q.borrow_mut().take()) {
                            send_action(token, model, game_id, a);
                        }
                    },
                    std::time::Duration::from_millis(wait.max(1)),
                );
            }
        }
        Err(why) => model.update(|m| m.refused = Some(why)),
    }
}

/// The signals a join writes.
#[derive(Clone, Copy)]
struct JoinSignals {
    token: RwSignal<Option<String>>,
    model: RwSignal<ArenaModel>,
    problem: RwSignal<Option<String>>,
}

/// The most times a join answered 503 is tried again, a second apart (the
/// arena's state may still be loading on a fresh server).
const JOIN_ATTEMPTS: u32 = 15;

/// Joins `game_id` as `name`; a 503 is tried again after a second.
fn join_arena(s: JoinSignals, game_id: u64, name: String, attempt: u32) {
    leptos::task::spawn_local(async move {
        let body = serde_json::to_string(&JoinRequest { name: name.clone() }).ok();
        let answer = net::join(game_id, body).await;
        match answer {
            Ok(a) if a.status == 200 => {
                let Ok(resp) = serde_json::from_str::<JoinResponse>(&a.body) else {
                    return s.problem.set(Some("unexpected answer".into()));
                };
                net::save_nation(
                    game_id,
                    &StoredNation {
                        player_id: resp.player_id.clone(),
                        token: resp.token.clone(),
                        name,
                    },
                );
                s.problem.set(None);
                s.token.set(Some(resp.token));
                s.model.update(|m| {
                    m.player_id = Some(resp.player_id);
                    m.last_sent_ms = net::now_ms();
                });
            }
            Ok(a) if a.status == 503 && attempt + 1 < JOIN_ATTEMPTS => {
                s.problem
                    .set(Some("the arena is busy, trying again…".into()));
                set_timeout(
                    move || join_arena(s, game_id, name, attempt + 1),
                    std::time::Duration::from_secs(1),
                );
            }
            Ok(a) => {
                let detail = serde_json::from_str::<serde_json::Value>(&a.body)
                    .ok()
                    .and_then(|v| v["detail"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("the arena answered {}", a.status));
                s.problem.set(Some(detail));
            }
            Err(e) => s.problem.set(Some(format!("could not join: {e}"))),
        }
    });
}

/// Opens the arena's WebSocket; reconnects a second after it closes or
/// after a gap (for a fresh snapshot).
fn connect(game_id: u64, model: RwSignal<ArenaModel>, live: RwSignal<bool>) {
    let Ok(ws) = web_sys::WebSocket::new(&net::ws_url(&format!("/ws/games/{game_id}"))) else {
        return retry(game_id, model, live);
    };
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| live.set(true));
    let on_message = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
        let Some(text) = e
            .dyn_ref::<web_sys::MessageEvent>()
            .and_then(|m| m.data().as_string())
        else {
            return;
        };
        let Ok(msg) = serde_json::from_str::<ServerMessage>(&text) else {
            return;
        };
        let mut fits = true;
        model.update(|m| fits = m.on_server(msg));
        if !fits {
            SOCKET.with(|s| {
                if let Some((ws, _)) = s.borrow().as_ref() {
                    let _ = ws.close();
                }
            });
        }
    });
    let on_close = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        live.set(false);
        retry(game_id, model, live);
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    SOCKET.with(|s| *s.borrow_mut() = Some((ws, vec![on_open, on_message, on_close])));
}

fn retry(game_id: u64, model: RwSignal<ArenaModel>, live: RwSignal<bool>) {
    set_timeout(
        move || connect(game_id, model, live),
        std::time::Duration::from_secs(1),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{GameDelta, GameSnapshot, RejectedAction, Rejection};

    const ID: u64 = arena::ARENA_IDS.start + 9;

    fn started() -> Game {
        let mut game = Game::new(ID);
        for p in ["me", "you"] {
            let join = ActionEnvelope {
                name: Some(p.into()),
                ..ActionEnvelope::new(format!("j-{p}"), ID, p, ActionType::Join, 1_000)
            };
            shared::apply(&mut game, &join);
        }
        game
    }

    fn model() -> ArenaModel {
        let mut m = ArenaModel::new(ID, Some("me".into()));
        let game = started();
        m.on_server(ServerMessage::Snapshot(GameSnapshot {
            game_id: ID,
            version: game.version,
            state: game.state,
            actions_offset: None,
        }));
        m
    }

    #[test]
    fn a_move_is_predicted_at_once_and_settled_by_the_update() {
        let mut m = model();
        let sent = m
            .press(ActionType::MoveRight, "m1".into(), 5_000)
            .unwrap()
            .unwrap();
        assert_eq!(m.me().map(|f| (f.x, f.y)), Some((1, 9)), "predicted");
        // The engine's version, with the move applied.
        let mut server = m.confirmed.clone().unwrap();
        let since = server.version;
        shared::apply(
            &mut server,
            &ActionEnvelope::new("m1", ID, "me", sent.action, 5_010),
        );
        let arena = server.state.arena.clone().unwrap();
        m.on_server(ServerMessage::Update(GameDelta {
            game_id: ID,
            since,
            version: server.version,
            fighters: [("me".to_string(), arena.fighters["me"].clone())].into(),
            applied: vec!["m1".into()],
            ..GameDelta::default()
        }));
        assert!(m.pending.is_empty());
        assert_eq!(m.me().map(|f| (f.x, f.y)), Some((1, 9)), "confirmed");
    }

    #[test]
    fn a_refused_move_rolls_back_and_says_why() {
        let mut m = model();
        m.press(ActionType::MoveDown, "m1".into(), 5_000).unwrap();
        assert_eq!(m.me().map(|f| f.y), Some(8));
        let v = m.confirmed.as_ref().unwrap().version;
        m.on_server(ServerMessage::Update(GameDelta {
            game_id: ID,
            since: v,
            version: v + 1,
            rejected: vec![RejectedAction {
                event_id: "m1".into(),
                player_id: "me".into(),
                reason: Rejection::TooFast { wait_ms: 10 },
                action: Some(ActionType::MoveDown),
            }],
            ..GameDelta::default()
        }));
        assert_eq!(m.me().map(|f| f.y), Some(9), "rolled back");
        assert!(m.refused.as_deref().unwrap_or("").contains("too fast"));
    }

    #[test]
    fn the_page_paces_itself_and_refuses_what_the_rules_refuse() {
        let mut m = model();
        assert!(m
            .press(ActionType::MoveRight, "a".into(), 5_000)
            .unwrap()
            .is_some());
        assert!(
            m.press(ActionType::MoveRight, "b".into(), 5_050)
                .unwrap()
                .is_none(),
            "paced"
        );
        assert!(
            m.press(ActionType::MoveUp, "c".into(), 6_000).is_err(),
            "the top edge"
        );
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(key_action("ArrowLeft"), Some(ActionType::MoveLeft));
        assert_eq!(key_action("w"), Some(ActionType::ThrowUp));
        assert_eq!(key_action("D"), Some(ActionType::ThrowRight));
        assert_eq!(key_action("x"), None);
        assert!(arena::ARENA_IDS.contains(&new_arena_id(u64::MAX)));
    }
}
