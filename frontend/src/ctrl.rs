//! The glue between signals, the network and [`Session`]: joining, clicking,
//! sending with retries, and the live WebSocket with reconnect and resume.
//!
//! [`Ctrl`] is `Copy` (it holds only signals) so every component can take it.
//! The socket itself is not `Send`, so it lives in a thread-local; a
//! generation counter makes callbacks of a replaced socket harmless.

use std::cell::RefCell;
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::wire::{ActionRequest, JoinRequest, JoinResponse};
use shared::{ActionType, ServerMessage};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use crate::feed::Feed;
use crate::model::{
    backoff_ms, classify_http_error, ws_path, Connection, HttpFailure, SendState, Session, Settled,
};
use crate::net::{self, StoredNation};

/// A message for the player in the status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    /// An error (rolled back, refused) rather than information.
    pub error: bool,
}

/// How the last click on one button ended, shown next to that button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ButtonNote {
    /// The engine applied it (`seq` tells one confirmation from the next).
    Done(u64),
    /// Refused or rolled back, with the reason in words.
    Refused(String),
}

/// The app's reactive state.
#[derive(Clone, Copy)]
pub struct Ctrl {
    pub session: RwSignal<Session>,
    pub conn: RwSignal<Connection>,
    pub notice: RwSignal<Option<Notice>>,
    /// The bearer token of our nation in the current game.
    pub token: RwSignal<Option<String>>,
    /// The game chosen by default (`/api/config`), for the join form.
    pub default_game: RwSignal<u64>,
    /// A join request is in flight.
    pub joining: RwSignal<bool>,
    /// The live feed of this game.
    pub feed: RwSignal<Feed>,
    /// How the last click of each action ended, for the note by its button.
    pub notes: RwSignal<Vec<(ActionType, ButtonNote)>>,
}

struct Socket {
    ws: web_sys::WebSocket,
    // Kept alive as long as the socket; dropped with it.
    _handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

thread_local! {
    static SOCKET: RefCell<Option<Socket>> = const { RefCell::new(None) };
    static GENERATION: RefCell<u64> = const { RefCell::new(0) };
    static ATTEMPTS: RefCell<u32> = const { RefCell::new(0) };
}

/// Closes the current socket, if any, without letting its handlers run.
fn drop_socket() {
    SOCKET.with(|s| {
        if let Some(old) = s.borrow_mut().take() {
            // Detach first: a dropped handler must never be called.
            old.ws.set_onopen(None);
            old.ws.set_onmessage(None);
            old.ws.set_onclose(None);
            let _ = old.ws.close();
        }
    });
}

fn generation() -> u64 {
    GENERATION.with(|g| *g.borrow())
}

impl Ctrl {
    /// Fresh signals; nothing connected yet.
    pub fn new() -> Self {
        Ctrl {
            session: RwSignal::new(Session::default()),
            conn: RwSignal::new(Connection::Connecting),
            notice: RwSignal::new(None),
            token: RwSignal::new(None),
            default_game: RwSignal::new(1),
            joining: RwSignal::new(false),
            feed: RwSignal::new(Feed::default()),
            notes: RwSignal::new(Vec::new()),
        }
    }

    /// Loads the default game, resumes a stored nation, connects, and starts
    /// the retry loop. Marks the page interactive when the form is ready.
    pub fn start(self) {
        spawn_local(async move {
            let body = match net::early_config().await {
                Some(body) => Some(body),
                None => match net::request("GET", "/api/config", None, None).await {
                    Ok(a) if a.status == 200 => Some(a.body),
                    _ => None,
                },
            };
            let game = body
                .and_then(|b| serde_json::from_str::<shared::ClientConfig>(&b).ok())
                .map_or(1, |c| c.default_game);
            // An invite link (`/?game=7`) names the game.
            let game = net::query_game().unwrap_or(game);
            self.default_game.set(game);
            self.open_game(game);
            net::publish("banInteractiveMs", net::perf_now());
        });
        set_interval(move || self.retry_due(), Duration::from_millis(200));
        self.watch_network();
    }

    /// Phones drop off the network and come back: on `offline` the socket is
    /// closed at once (the indicator tells the truth, not a stale "Live");
    /// on `online` it reconnects without waiting for the backoff, and the
    /// pending clicks are retried now.
    fn watch_network(self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let offline = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            drop_socket();
            self.conn.set(Connection::Reconnecting);
            self.schedule_reconnect(generation());
        });
        let online = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            ATTEMPTS.with(|a| *a.borrow_mut() = 0);
            if self.conn.get_untracked() != Connection::Live {
                self.connect();
            }
            self.session.update(|s| s.retry_now());
            self.retry_due();
        });
        let _ =
            window.add_event_listener_with_callback("offline", offline.as_ref().unchecked_ref());
        let _ = window.add_event_listener_with_callback("online", online.as_ref().unchecked_ref());
        // They live as long as the page.
        offline.forget();
        online.forget();
    }

    /// Switches to `game_id`: resumes its stored nation, reconnects.
    pub fn open_game(self, game_id: u64) {
        let stored = net::load_nation(game_id);
        self.token.set(stored.as_ref().map(|s| s.token.clone()));
        self.session
            .set(Session::new(game_id, stored.map(|s| s.player_id)));
        self.feed.update(Feed::clear);
        self.notes.set(Vec::new());
        ATTEMPTS.with(|a| *a.borrow_mut() = 0);
        self.connect();
    }

    /// Joins `game_id` as `name`.
    pub fn join(self, game_id: u64, name: String) {
        if self.session.with_untracked(|s| s.game_id) != game_id {
            self.open_game(game_id);
        }
        self.joining.set(true);
        self.notice.set(None);
        spawn_local(async move {
            let body = serde_json::to_string(&JoinRequest { name: name.clone() }).ok();
            let answer = net::join(game_id, body).await;
            self.joining.set(false);
            let answer = match answer {
                Ok(a) => a,
                Err(e) => return self.error(format!("Could not join: {e}. Try again.")),
            };
            if answer.status != 200 {
                let why = match classify_http_error(
                    answer.status,
                    &answer.body,
                    answer.retry_after.as_deref(),
                ) {
                    HttpFailure::Retry { .. } => "the game is busy, try again in a moment".into(),
                    HttpFailure::Unauthorized(m) | HttpFailure::Refused(m) => m,
                };
                return self.error(format!("Could not join: {why}"));
            }
            let Ok(resp) = serde_json::from_str::<JoinResponse>(&answer.body) else {
                return self.error("Could not join: unexpected answer".into());
            };
            net::save_nation(
                game_id,
                &StoredNation {
                    player_id: resp.player_id.clone(),
                    token: resp.token.clone(),
                    name: name.clone(),
                },
            );
            self.token.set(Some(resp.token));
            let mut settled = None;
            self.session.update(|s| {
                settled = s.joining(
                    resp.player_id,
                    name,
                    resp.action_id,
                    net::now_ms(),
                    net::perf_now(),
                )
            });
            self.settle(settled.into_iter().collect());
        });
    }

    /// Leaves the current nation on this device (the join form shows again).
    pub fn leave(self) {
        let game = self.session.with_untracked(|s| s.game_id);
        net::forget_nation(game);
        self.token.set(None);
        self.session.update(|s| {
            s.player_id = None;
            s.pending.clear();
        });
    }

    /// A click on an action button: predict at once, then send.
    pub fn act(self, action: ActionType) {
        let id = net::new_action_id();
        let mut refused = None;
        self.session.update(|s| {
            refused = s
                .click(action, id.clone(), net::now_ms(), net::perf_now())
                .err()
        });
        self.set_note(action, None);
        match refused {
            Some(r) => {
                let text = crate::model::describe_rejection(action, &r);
                self.set_note(action, Some(ButtonNote::Refused(text.clone())));
                self.error(text)
            }
            None => {
                self.notice.set(None);
                self.send(id, action);
            }
        }
    }

    fn send(self, action_id: String, action: ActionType) {
        let Some(token) = self.token.get_untracked() else {
            return;
        };
        let game = self.session.with_untracked(|s| s.game_id);
        spawn_local(async move {
            let body = serde_json::to_string(&ActionRequest {
                action_type: action,
                action_id: Some(action_id.clone()),
            })
            .ok();
            let path = format!("/api/games/{game}/actions");
            let answer = net::request("POST", &path, Some(&token), body).await;
            let now = net::perf_now();
            match answer {
                Ok(a) if (200..300).contains(&a.status) => {
                    let clicked = self.session.with_untracked(|s| {
                        s.pending
                            .iter()
                            .find(|p| p.action_id == action_id)
                            .map(|p| p.clicked_at_perf)
                    });
                    if let Some(at) = clicked {
                        net::record_latency("banAckLatencies", now - at);
                    }
                    let offset = serde_json::from_str::<shared::wire::ActionAccepted>(&a.body)
                        .ok()
                        .map(|accepted| accepted.offset);
                    let mut settled = Vec::new();
                    self.session
                        .update(|s| settled = s.on_acked(&action_id, now, offset));
                    self.settle(settled);
                }
                Ok(a) => match classify_http_error(a.status, &a.body, a.retry_after.as_deref()) {
                    HttpFailure::Retry { after_ms } => self
                        .session
                        .update(|s| s.on_send_failed(&action_id, now, after_ms)),
                    HttpFailure::Refused(m) => self.refused(&action_id, &m),
                    HttpFailure::Unauthorized(m) => {
                        self.refused(&action_id, &m);
                        self.leave();
                    }
                },
                Err(_) => self
                    .session
                    .update(|s| s.on_send_failed(&action_id, now, None)),
            }
        });
    }

    fn refused(self, action_id: &str, message: &str) {
        let mut settled = None;
        self.session
            .update(|s| settled = s.on_send_refused(action_id, message));
        if let Some(s) = settled {
            self.settle(vec![s]);
        }
    }

    fn retry_due(self) {
        let now = net::perf_now();
        // Look before writing: a write would wake every view each tick.
        let any_due = self.session.with_untracked(|s| {
            s.pending
                .iter()
                .any(|p| matches!(p.send, SendState::RetryAt(at) if at <= now))
        });
        if !any_due {
            return;
        }
        let due = self
            .session
            .try_update(|s| s.retry_due(now))
            .unwrap_or_default();
        for (id, action) in due {
            self.send(id, action);
        }
    }

    fn error(self, text: String) {
        self.notice.set(Some(Notice { text, error: true }));
    }

    /// The note by `action`'s button (`None` clears it).
    fn set_note(self, action: ActionType, note: Option<ButtonNote>) {
        self.notes.update(|notes| {
            notes.retain(|(a, _)| *a != action);
            if let Some(n) = note {
                notes.push((action, n));
            }
        });
    }

    fn settle(self, settled: Vec<Settled>) {
        for s in settled {
            match s {
                Settled::Confirmed {
                    latency_ms, action, ..
                } => {
                    net::record_latency("banLatencies", latency_ms);
                    if action != ActionType::Join {
                        let seq = net::perf_now() as u64;
                        self.set_note(action, Some(ButtonNote::Done(seq)));
                    }
                }
                Settled::RolledBack {
                    message, action, ..
                } => {
                    self.set_note(action, Some(ButtonNote::Refused(message.clone())));
                    self.error(message)
                }
            }
        }
    }

    fn on_message(self, text: &str) {
        let Ok(msg) = serde_json::from_str::<ServerMessage>(text) else {
            return;
        };
        let now = net::perf_now();
        let rejected = match &msg {
            ServerMessage::Update(delta) => delta.rejected.clone(),
            ServerMessage::Snapshot(_) => Vec::new(),
        };
        let mut settled = Vec::new();
        let mut resync = None;
        let mut lines = Vec::new();
        self.session.update(|s| {
            let old = s.confirmed.clone();
            let own: Vec<(String, ActionType)> = s
                .pending
                .iter()
                .map(|p| (p.action_id.clone(), p.action))
                .collect();
            settled = s.on_server(msg, now);
            if std::mem::take(&mut s.needs_snapshot) {
                resync = Some(s.version().unwrap_or(0));
            }
            if let Some(new) = s.confirmed.as_ref().filter(|n| old.as_ref() != Some(*n)) {
                let me = s.player_id.as_deref();
                lines = crate::feed::changes(old.as_ref(), new, &rejected, &own, me);
            }
        });
        if !lines.is_empty() {
            self.feed.update(|f| f.push(lines));
        }
        self.settle(settled);
        if let Some(version) = resync {
            // A gap: the bridge answers with the whole game.
            SOCKET.with(|s| {
                if let Some(socket) = s.borrow().as_ref() {
                    let text = format!("{{\"resume_from\":{version}}}");
                    let _ = socket.ws.send_with_str(&text);
                }
            });
        }
    }

    /// Opens the WebSocket for the current game, resuming from the last
    /// version seen; on close, reconnects with backoff.
    fn connect(self) {
        let gen = GENERATION.with(|g| {
            *g.borrow_mut() += 1;
            *g.borrow()
        });
        drop_socket();
        let (game, version) = self.session.with_untracked(|s| (s.game_id, s.version()));
        let Ok(ws) = web_sys::WebSocket::new(&net::ws_url(&ws_path(game, version))) else {
            self.schedule_reconnect(gen);
            return;
        };
        self.conn.set(if version.is_some() {
            Connection::Reconnecting
        } else {
            Connection::Connecting
        });
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if generation() == gen {
                ATTEMPTS.with(|a| *a.borrow_mut() = 0);
                self.conn.set(Connection::Live);
            }
        });
        let on_message = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
            if generation() != gen {
                return;
            }
            if let Some(text) = e
                .dyn_ref::<web_sys::MessageEvent>()
                .and_then(|m| m.data().as_string())
            {
                self.on_message(&text);
            }
        });
        let on_close = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if generation() == gen {
                self.conn.set(Connection::Reconnecting);
                self.schedule_reconnect(gen);
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        SOCKET.with(|s| {
            *s.borrow_mut() = Some(Socket {
                ws,
                _handlers: vec![on_open, on_message, on_close],
            })
        });
    }

    fn schedule_reconnect(self, gen: u64) {
        let attempt = ATTEMPTS.with(|a| {
            let mut a = a.borrow_mut();
            *a += 1;
            *a
        });
        let wait = backoff_ms(attempt - 1, net::jitter());
        set_timeout(
            move || {
                if generation() == gen {
                    self.connect();
                }
            },
            Duration::from_millis(wait as u64),
        );
    }
}

impl Default for Ctrl {
    fn default() -> Self {
        Self::new()
    }
}
