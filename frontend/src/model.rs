//! The client's game session as plain data: confirmed state, pending clicks,
//! prediction and settlement. No signals, no browser: every rule here is an
//! ordinary `#[test]` on native.
//!
//! The flow of one click:
//! 1. [`Session::click`] checks the action with [`shared::check`] against the
//!    *predicted* game (so a second click on "Buy sword" is refused at once)
//!    and records a [`Pending`] with a fresh action id.
//! 2. [`Session::predicted`] replays every pending click on top of the last
//!    confirmed game with [`shared::apply`]: the view shows the outcome at once.
//! 3. The bridge's WebSocket brings [`ServerMessage`]s; [`Session::on_server`]
//!    replaces the confirmed game and settles pending clicks by their ids in
//!    `applied` / `rejected`, or by the game's recent ids when a conflated
//!    snapshot skipped the update that named them.
//! 4. A failed send keeps the click pending and is retried with the *same*
//!    action id ([`Session::retry_due`]), so it can never be applied twice;
//!    a refusal from the bridge rolls it back ([`Session::on_send_refused`]).

use shared::rules::cost;
use shared::{
    apply, check, ActionEnvelope, ActionType, Fit, Game, RejectedAction, Rejection, ServerMessage,
};

/// How long a click the broker acknowledged may stay unexplained before the
/// session stops predicting it and trusts the server's state instead.
pub const LOST_AFTER_MS: f64 = 15_000.0;

/// Where one pending click is on its way to the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum SendState {
    /// The request is in flight.
    Sending,
    /// The last attempt failed on the way (network, 503); retry at this time.
    RetryAt(f64),
    /// Kafka acknowledged it at this time, at this offset of the game's
    /// `actions` partition; waiting for the engine's update.
    Acked(f64, Option<i64>),
}

/// A click the engine has not answered yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The client-chosen action id, reused by every retry.
    pub action_id: String,
    pub action: ActionType,
    /// When the player clicked (ms since the epoch): the prediction's clock.
    pub clicked_at_ms: u64,
    /// `performance.now()` at the click, to measure click-to-confirmed.
    pub clicked_at_perf: f64,
    pub send: SendState,
    /// Failed attempts so far, for the retry backoff.
    pub attempts: u32,
    /// The nation name, on a pending join only.
    pub name: Option<String>,
}

/// How a pending click ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Settled {
    /// The engine applied it.
    Confirmed {
        action_id: String,
        action: ActionType,
        /// Click to confirmation, in ms (performance clock).
        latency_ms: f64,
    },
    /// It was refused and rolled back; `message` is for the player.
    RolledBack {
        action_id: String,
        action: ActionType,
        message: String,
    },
}

/// One nation's row on the in-game leaderboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderRow {
    pub rank: usize,
    pub player_id: String,
    pub name: String,
    pub power: u32,
    pub gold: u64,
    /// This row is the player's own nation.
    pub me: bool,
}

/// What an action button shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionButton {
    pub action: ActionType,
    /// "Buy sword", "Upgrade sword to level 2", "Visit".
    pub label: String,
    /// The gold it costs now, from [`shared::rules::cost`].
    pub cost: Option<u64>,
    /// Why it cannot be done now; `None` when it can.
    pub reason: Option<String>,
    /// A click on this action is still waiting for the engine.
    pub pending: bool,
}

/// The client's view of one game.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Session {
    pub game_id: u64,
    /// Our nation, once joined (or resumed from local storage).
    pub player_id: Option<String>,
    /// The latest game the server sent; `None` until the first message.
    pub confirmed: Option<Game>,
    /// Offset on the game's `actions` partition of the last action the
    /// confirmed game includes.
    pub actions_offset: Option<i64>,
    /// Clicks not yet settled, in click order.
    pub pending: Vec<Pending>,
    /// An update did not follow the confirmed game: ask for a snapshot.
    pub needs_snapshot: bool,
}

impl Session {
    /// A session for `game_id`, possibly resuming a stored nation.
    pub fn new(game_id: u64, player_id: Option<String>) -> Self {
        Session {
            game_id,
            player_id,
            confirmed: None,
            actions_offset: None,
            pending: Vec::new(),
            needs_snapshot: false,
        }
    }

    /// The last version seen from the server (to resume a WebSocket from).
    pub fn version(&self) -> Option<u64> {
        self.confirmed.as_ref().map(|g| g.version)
    }

    /// The confirmed game with every pending click applied on top: what the
    /// player sees. Each pending click is applied with the same rules the
    /// engine uses; one the rules refuse simply changes nothing.
    pub fn predicted(&self) -> Game {
        let mut game = self
            .confirmed
            .clone()
            .unwrap_or_else(|| Game::new(self.game_id));
        let Some(player) = &self.player_id else {
            return game;
        };
        for p in &self.pending {
            apply(&mut game, &envelope(self.game_id, player, p));
        }
        game
    }

    /// Whether our nation exists in the predicted game.
    pub fn joined(&self) -> bool {
        self.player_id
            .as_ref()
            .is_some_and(|id| self.predicted().state.players.contains_key(id))
    }

    /// Records a click if the rules allow it on the predicted game; the
    /// rejection otherwise, so the button's reason can be shown.
    pub fn click(
        &mut self,
        action: ActionType,
        action_id: String,
        now_ms: u64,
        now_perf: f64,
    ) -> Result<(), Rejection> {
        let player = self.player_id.clone().ok_or(Rejection::UnknownPlayer)?;
        check(&self.predicted(), &player, action)?;
        self.pending.push(Pending {
            action_id,
            action,
            clicked_at_ms: now_ms,
            clicked_at_perf: now_perf,
            send: SendState::Sending,
            attempts: 0,
            name: None,
        });
        Ok(())
    }

    /// Records our own join (already accepted by the bridge), so the nation
    /// shows at once, before the engine's update.
    ///
    /// On a fast broker the engine's update can reach the socket before the
    /// join's HTTP answer: when the confirmed game already holds the nation,
    /// the join is settled now instead of waiting for an update that already
    /// came.
    pub fn joining(
        &mut self,
        player_id: String,
        name: String,
        action_id: String,
        now_ms: u64,
        now_perf: f64,
    ) -> Option<Settled> {
        let applied = self
            .confirmed
            .as_ref()
            .is_some_and(|g| g.state.players.contains_key(&player_id));
        self.player_id = Some(player_id);
        if applied {
            return Some(Settled::Confirmed {
                action_id,
                action: ActionType::Join,
                latency_ms: 0.0,
            });
        }
        self.pending.push(Pending {
            action_id,
            action: ActionType::Join,
            clicked_at_ms: now_ms,
            clicked_at_perf: now_perf,
            send: SendState::Acked(now_perf, None),
            attempts: 0,
            name: Some(name),
        });
        None
    }

    /// Kafka acknowledged a click (`202`) at `offset` of the game's
    /// `actions` partition.
    ///
    /// The engine may have handled the click before its answer came back:
    /// a snapshot taken after it (a socket reconnecting while the click was
    /// retried) already shows its outcome, and no later message may name it
    /// in a quiet game. So a click acknowledged at an offset the confirmed
    /// game already includes is settled now.
    pub fn on_acked(
        &mut self,
        action_id: &str,
        now_perf: f64,
        offset: Option<i64>,
    ) -> Vec<Settled> {
        let Some(p) = self.pending.iter_mut().find(|p| p.action_id == action_id) else {
            return Vec::new();
        };
        p.send = SendState::Acked(now_perf, offset);
        self.settle(&[], &[], now_perf)
    }

    /// A send failed on the way (network error, 503): keep the click and
    /// retry it later with the same id. `retry_after_ms` is the server's
    /// `Retry-After` when it gave one.
    pub fn on_send_failed(&mut self, action_id: &str, now_perf: f64, retry_after_ms: Option<f64>) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.action_id == action_id) {
            p.attempts += 1;
            let wait = retry_after_ms.unwrap_or_else(|| backoff_ms(p.attempts, 0.5));
            p.send = SendState::RetryAt(now_perf + wait);
        }
    }

    /// The bridge refused a click for good (a 4xx): roll it back.
    pub fn on_send_refused(&mut self, action_id: &str, message: &str) -> Option<Settled> {
        let at = self.pending.iter().position(|p| p.action_id == action_id)?;
        let p = self.pending.remove(at);
        Some(Settled::RolledBack {
            action_id: p.action_id,
            action: p.action,
            message: format!("{} failed: {message}", action_label(p.action, None)),
        })
    }

    /// The clicks whose retry time has come; they are marked as sending.
    pub fn retry_due(&mut self, now_perf: f64) -> Vec<(String, ActionType)> {
        let mut due = Vec::new();
        for p in &mut self.pending {
            if matches!(p.send, SendState::RetryAt(at) if at <= now_perf) {
                p.send = SendState::Sending;
                due.push((p.action_id.clone(), p.action));
            }
        }
        due
    }

    /// Makes every waiting retry due now (the network just came back).
    pub fn retry_now(&mut self) {
        for p in &mut self.pending {
            if let SendState::RetryAt(at) = &mut p.send {
                *at = f64::MIN;
            }
        }
    }

    /// Takes a message from the server: a snapshot replaces the confirmed
    /// game (unless older), an update applies on top of it if it follows
    /// (else [`Session::needs_snapshot`] is set); then settles the pending
    /// clicks it answers.
    pub fn on_server(&mut self, msg: ServerMessage, now_perf: f64) -> Vec<Settled> {
        let (applied, rejected) = match msg {
            ServerMessage::Snapshot(snap) => {
                if snap.game_id != self.game_id
                    || self
                        .confirmed
                        .as_ref()
                        .is_some_and(|g| g.version > snap.version)
                {
                    return Vec::new();
                }
                self.confirmed = Some(snap.game());
                self.actions_offset = snap.actions_offset;
                self.needs_snapshot = false;
                (Vec::new(), Vec::new())
            }
            ServerMessage::Update(delta) => {
                if delta.game_id != self.game_id {
                    return Vec::new();
                }
                if self.confirmed.is_none() && delta.since > 0 {
                    // Nothing to apply it to: the snapshot comes first.
                    self.needs_snapshot = true;
                    return Vec::new();
                }
                let game = self
                    .confirmed
                    .get_or_insert_with(|| Game::new(delta.game_id));
                match delta.apply_to(game) {
                    Fit::Old => return Vec::new(),
                    Fit::Gap => {
                        self.needs_snapshot = true;
                        return Vec::new();
                    }
                    Fit::Applies => {}
                }
                if delta.actions_offset.is_some() {
                    self.actions_offset = delta.actions_offset;
                }
                (delta.applied, delta.rejected)
            }
        };
        self.settle(&applied, &rejected, now_perf)
    }

    /// Settles the pending clicks named in `applied` or `rejected`, or
    /// acknowledged at an offset the confirmed game already includes.
    fn settle(
        &mut self,
        applied: &[String],
        rejected: &[RejectedAction],
        now_perf: f64,
    ) -> Vec<Settled> {
        let included = self.actions_offset;
        // A join is in any state that holds its nation (its answer carries
        // no offset).
        let joined = self.player_id.as_ref().is_some_and(|me| {
            self.confirmed
                .as_ref()
                .is_some_and(|g| g.state.players.contains_key(me))
        });
        let mut settled = Vec::new();
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            if let Some(r) = rejected.iter().find(|r| r.event_id == p.action_id) {
                settled.push(Settled::RolledBack {
                    message: describe_rejection(p.action, &r.reason),
                    action_id: p.action_id,
                    action: p.action,
                });
            } else if applied.contains(&p.action_id)
                || (p.action == ActionType::Join && joined)
                || matches!(p.send, SendState::Acked(_, Some(at)) if included.is_some_and(|i| at <= i))
            {
                // Named in `applied`, or handled in updates a snapshot
                // stood in for: the state already shows the outcome.
                settled.push(Settled::Confirmed {
                    latency_ms: now_perf - p.clicked_at_perf,
                    action_id: p.action_id,
                    action: p.action,
                });
            } else if matches!(p.send, SendState::Acked(at, _) if now_perf - at > LOST_AFTER_MS) {
                settled.push(Settled::RolledBack {
                    message: format!(
                        "{}: no answer from the game; showing its latest state",
                        action_label(p.action, None)
                    ),
                    action_id: p.action_id,
                    action: p.action,
                });
            } else {
                still.push(p);
            }
        }
        self.pending = still;
        settled
    }

    /// The action buttons for our nation, from the predicted game.
    pub fn buttons(&self) -> Vec<ActionButton> {
        let game = self.predicted();
        let me = self.player_id.as_deref().unwrap_or("");
        let nation = game.state.players.get(me);
        ActionType::ALL
            .into_iter()
            .filter(|a| *a != ActionType::Join)
            .map(|action| {
                let level = match (nation, action.upgrade()) {
                    (Some(n), Some(item)) => Some(n.items.level(item)),
                    _ => None,
                };
                ActionButton {
                    action,
                    label: action_label(action, level),
                    cost: nation.and_then(|n| cost(n, action)),
                    reason: check(&game, me, action).err().map(|r| r.to_string()),
                    pending: self.pending.iter().any(|p| p.action == action),
                }
            })
            .collect()
    }

    /// The game's nations ranked by power, ours marked.
    pub fn leaderboard(&self) -> Vec<LeaderRow> {
        let game = self.predicted();
        let me = self.player_id.as_deref();
        game.ranking()
            .into_iter()
            .enumerate()
            .map(|(i, (id, n))| LeaderRow {
                rank: i + 1,
                player_id: id.to_string(),
                name: n.name.clone(),
                power: n.power,
                gold: n.gold,
                me: Some(id) == me,
            })
            .collect()
    }
}

/// The envelope the engine would see for a pending click (the bridge stamps
/// the real one; only the fields the rules read matter here).
fn envelope(game_id: u64, player: &str, p: &Pending) -> ActionEnvelope {
    ActionEnvelope {
        name: p.name.clone(),
        ..ActionEnvelope::new(
            p.action_id.clone(),
            game_id,
            player,
            p.action,
            p.clicked_at_ms,
        )
    }
}

/// A button's words. `level` is the item's current level, for upgrades.
pub fn action_label(action: ActionType, level: Option<u8>) -> String {
    if let Some(item) = action.purchase() {
        format!("Buy {item}")
    } else if let Some(item) = action.upgrade() {
        match level {
            Some(l) if l > 0 => format!("Upgrade {item} to level {}", l + 1),
            _ => format!("Upgrade {item}"),
        }
    } else if action == ActionType::Join {
        "Join".to_string()
    } else {
        "Visit (earn gold)".to_string()
    }
}

/// How a rejection reads to the player: what failed, and why.
pub fn describe_rejection(action: ActionType, reason: &Rejection) -> String {
    let mut why = reason.to_string();
    if let Some(first) = why.get(..1) {
        why.replace_range(..1, &first.to_uppercase());
    }
    format!("{} was refused. {why}.", action_label(action, None))
}

/// A UUIDv7 in its text form: `ms` in the first 48 bits, the version and
/// variant bits, the rest from `random`.
pub fn uuid_v7(ms: u64, mut random: [u8; 16]) -> String {
    random[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    random[6] = (random[6] & 0x0f) | 0x70;
    random[8] = (random[8] & 0x3f) | 0x80;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// How an HTTP error answer from the bridge is handled.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpFailure {
    /// Try again later with the same action id (`503`, `429`, `5xx`).
    Retry { after_ms: Option<f64> },
    /// The token is no longer valid: forget it and join again.
    Unauthorized(String),
    /// Refused for good; the message is for the player.
    Refused(String),
}

/// Classifies an error answer. `body` is the raw body (an `ErrorBody` when
/// the bridge wrote it) and `retry_after` the `Retry-After` header.
pub fn classify_http_error(status: u16, body: &str, retry_after: Option<&str>) -> HttpFailure {
    let detail = serde_json::from_str::<shared::wire::ErrorBody>(body)
        .ok()
        .map(|b| match b.detail {
            serde_json::Value::String(s) if !s.is_empty() => s,
            serde_json::Value::Null => b.error,
            other => format!("{}: {other}", b.error),
        })
        .unwrap_or_else(|| format!("the server answered {status}"));
    match status {
        401 | 403 => HttpFailure::Unauthorized(detail),
        429 | 500..=599 => HttpFailure::Retry {
            after_ms: retry_after
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map(|s| s * 1000.0),
        },
        _ => HttpFailure::Refused(detail),
    }
}

/// Exponential backoff for reconnects and retries: 250 ms doubling up to
/// 10 s, scaled by `jitter` in `[0, 1)` to between 50 % and 100 %.
pub fn backoff_ms(attempt: u32, jitter: f64) -> f64 {
    let base = 250.0 * f64::from(2u32.saturating_pow(attempt.min(6)));
    base.min(10_000.0) * (0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// The state of the live connection, for the indicator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Connection {
    #[default]
    Connecting,
    Live,
    /// Lost; the next attempt is scheduled.
    Reconnecting,
}

impl Connection {
    /// The indicator's words.
    pub fn label(self) -> &'static str {
        match self {
            Connection::Connecting => "Connecting…",
            Connection::Live => "Live",
            Connection::Reconnecting => "Reconnecting…",
        }
    }

    /// A CSS class / `data-state` value.
    pub fn css(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Live => "live",
            Connection::Reconnecting => "reconnecting",
        }
    }
}

/// The WebSocket path for a game, resuming from `version` when known.
pub fn ws_path(game_id: u64, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("/ws/games/{game_id}?resume_from={v}"),
        None => format!("/ws/games/{game_id}"),
    }
}

/// What a nation name must look like before it is sent.
pub fn validate_name(name: &str) -> Result<String, String> {
    shared::check_name(name).map(str::to_string).map_err(|e| {
        let mut why = format!("{e}.");
        why.replace_range(..1, &why[..1].to_uppercase());
        why
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{GameDelta, GameSnapshot, Item, Nation};

    fn game_with(player: &str, gold: u64, sword: u8) -> Game {
        let mut game = Game::new(1);
        game.version = 5;
        let mut nation = Nation {
            name: format!("{player}land"),
            gold,
            ..Nation::default()
        };
        nation.items.sword = sword;
        nation.power = shared::rules::power(&nation);
        game.state.players.insert(player.to_string(), nation);
        game
    }

    /// An update from the empty game to `game`: it follows any state older
    /// than `game`.
    fn msg(game: &Game, applied: &[&str], rejected: Vec<RejectedAction>) -> ServerMessage {
        ServerMessage::Update(GameDelta {
            game_id: game.game_id,
            since: 0,
            version: game.version,
            nations: game.state.players.clone(),
            applied: applied.iter().map(|s| s.to_string()).collect(),
            rejected,
            ..GameDelta::default()
        })
    }

    fn snap(game: &Game, actions_offset: Option<i64>) -> ServerMessage {
        ServerMessage::Snapshot(GameSnapshot {
            game_id: game.game_id,
            version: game.version,
            state: game.state.clone(),
            actions_offset,
        })
    }

    fn session(gold: u64, sword: u8) -> Session {
        let mut s = Session::new(1, Some("p".into()));
        s.on_server(snap(&game_with("p", gold, sword), None), 0.0);
        s
    }

    fn button(s: &Session, action: ActionType) -> ActionButton {
        s.buttons()
            .into_iter()
            .find(|b| b.action == action)
            .unwrap()
    }

    #[test]
    fn affordable_purchase_is_enabled_with_its_cost() {
        let s = session(100, 0);
        let b = button(&s, ActionType::PurchaseSword);
        assert_eq!(b.reason, None);
        assert_eq!(b.cost, Some(shared::rules::price(Item::Sword)));
        assert_eq!(b.label, "Buy sword");
    }

    #[test]
    fn unaffordable_purchase_is_disabled_with_the_reason() {
        let s = session(30, 0);
        let b = button(&s, ActionType::PurchaseHorse);
        assert_eq!(
            b.reason.as_deref(),
            Some("not enough gold: it costs 80, you have 30")
        );
    }

    #[test]
    fn upgrade_without_the_item_says_so() {
        let s = session(500, 0);
        let b = button(&s, ActionType::UpgradeSword);
        assert_eq!(
            b.reason.as_deref(),
            Some("you need a sword before you can upgrade it")
        );
    }

    #[test]
    fn upgrade_label_and_cost_follow_the_level() {
        let s = session(500, 2);
        let b = button(&s, ActionType::UpgradeSword);
        assert_eq!(b.label, "Upgrade sword to level 3");
        assert_eq!(
            b.cost,
            Some(shared::rules::upgrade_cost(Item::Sword, 2)),
            "the price comes from shared"
        );
        assert_eq!(b.reason, None);
    }

    #[test]
    fn visit_is_always_allowed() {
        let s = session(0, 0);
        assert_eq!(button(&s, ActionType::Default).reason, None);
    }

    #[test]
    fn without_a_nation_every_action_asks_to_join() {
        let s = Session::new(1, None);
        assert!(s
            .buttons()
            .iter()
            .filter(|b| b.action != ActionType::Default)
            .all(|b| b.reason.as_deref() == Some("this game does not know you yet: join first")));
    }

    #[test]
    fn click_is_predicted_at_once() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 10.0)
            .unwrap();
        let me = &s.predicted().state.players["p"];
        assert_eq!(me.gold, 50);
        assert_eq!(me.items.sword, 1);
        assert!(button(&s, ActionType::PurchaseSword).pending);
        // The confirmed state is untouched until the engine answers.
        assert_eq!(s.confirmed.as_ref().unwrap().state.players["p"].gold, 100);
    }

    #[test]
    fn a_second_click_on_the_same_purchase_is_refused_before_sending() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 0.0)
            .unwrap();
        assert_eq!(
            s.click(ActionType::PurchaseSword, "a2".into(), 2, 0.0),
            Err(Rejection::AlreadyOwned { item: Item::Sword })
        );
        assert_eq!(s.pending.len(), 1);
    }

    #[test]
    fn engine_update_confirms_the_click() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 10.0)
            .unwrap();
        let mut after = game_with("p", 50, 1);
        after.version = 6;
        let settled = s.on_server(msg(&after, &["a1"], vec![]), 25.0);
        assert_eq!(
            settled,
            vec![Settled::Confirmed {
                action_id: "a1".into(),
                action: ActionType::PurchaseSword,
                latency_ms: 15.0
            }]
        );
        assert!(s.pending.is_empty());
        assert_eq!(s.predicted().state.players["p"].items.sword, 1);
    }

    #[test]
    fn rejection_rolls_back_with_a_readable_message() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 0.0)
            .unwrap();
        // Meanwhile the gold went elsewhere (another tab bought a horse).
        let mut after = game_with("p", 20, 0);
        after.version = 7;
        let settled = s.on_server(
            msg(
                &after,
                &[],
                vec![RejectedAction {
                    event_id: "a1".into(),
                    player_id: "p".into(),
                    reason: Rejection::NotEnoughGold { need: 50, have: 20 },
                    action: Some(ActionType::PurchaseSword),
                }],
            ),
            5.0,
        );
        assert_eq!(
            settled,
            vec![Settled::RolledBack {
                action_id: "a1".into(),
                action: ActionType::PurchaseSword,
                message: "Buy sword was refused. Not enough gold: it costs 50, you have 20.".into()
            }]
        );
        assert_eq!(s.predicted().state.players["p"].items.sword, 0);
    }

    #[test]
    fn a_snapshot_settles_the_clicks_its_offset_includes() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseKnife, "a1".into(), 1, 0.0)
            .unwrap();
        s.click(ActionType::PurchaseShield, "a2".into(), 1, 0.0)
            .unwrap();
        s.on_acked("a1", 1.0, Some(41));
        s.on_acked("a2", 1.0, Some(42));
        let mut after = game_with("p", 80, 0);
        after.state.players.get_mut("p").unwrap().items.knife = 1;
        after.version = 9;
        let settled = s.on_server(snap(&after, Some(41)), 2.0);
        assert!(
            matches!(&settled[..], [Settled::Confirmed { action_id, .. }] if action_id == "a1")
        );
        assert_eq!(s.pending.len(), 1, "a2 is past what the snapshot includes");
    }

    #[test]
    fn an_answer_after_the_snapshot_that_includes_its_click_settles_it() {
        // Back online: the click is retried and the socket reconnects; the
        // engine handles the click before the snapshot is taken, and the
        // snapshot reaches the page before the POST's answer.
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseKnife, "a1".into(), 1, 0.0)
            .unwrap();
        let mut after = game_with("p", 80, 0);
        after.state.players.get_mut("p").unwrap().items.knife = 1;
        after.version = 6;
        assert!(s.on_server(snap(&after, Some(41)), 2.0).is_empty());
        assert_eq!(s.pending.len(), 1, "not acknowledged yet: not settled");
        let settled = s.on_acked("a1", 3.0, Some(41));
        assert!(
            matches!(&settled[..], [Settled::Confirmed { action_id, .. }] if action_id == "a1")
        );
        assert!(s.pending.is_empty());
        assert_eq!(
            s.predicted().state.players["p"].items.knife,
            1,
            "bought once"
        );
    }

    #[test]
    fn an_answer_past_what_the_game_includes_stays_pending() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseKnife, "a1".into(), 1, 0.0)
            .unwrap();
        s.on_server(snap(&game_with("p", 100, 0), Some(40)), 2.0);
        assert!(s.on_acked("a1", 3.0, Some(41)).is_empty());
        assert_eq!(s.pending.len(), 1);
        assert!(s.on_acked("unknown", 3.0, Some(1)).is_empty());
    }

    #[test]
    fn a_snapshot_holding_our_nation_settles_the_join() {
        let mut s = Session::new(1, None);
        s.joining("p".into(), "Rome".into(), "j1".into(), 1, 1.0);
        let mut after = game_with("p", 100, 0);
        after.version = 3;
        let settled = s.on_server(snap(&after, None), 2.0);
        assert!(matches!(settled[..], [Settled::Confirmed { .. }]));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn an_update_that_does_not_follow_asks_for_a_snapshot() {
        let mut s = session(100, 0);
        let mut later = game_with("p", 10, 0);
        later.version = 9;
        let ServerMessage::Update(delta) = msg(&later, &[], vec![]) else {
            unreachable!()
        };
        let gap = ServerMessage::Update(GameDelta { since: 7, ..delta });
        assert!(s.on_server(gap, 0.0).is_empty());
        assert!(s.needs_snapshot);
        assert_eq!(s.version(), Some(5), "unchanged");
        s.on_server(snap(&later, None), 0.0);
        assert!(!s.needs_snapshot);
        assert_eq!(s.version(), Some(9));
    }

    #[test]
    fn action_ids_are_uuid_v7_carrying_their_time() {
        let id = uuid_v7(0x0123_4567_89ab, [0xff; 16]);
        assert_eq!(id, "01234567-89ab-7fff-bfff-ffffffffffff");
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn join_answered_after_its_update_is_settled_at_once() {
        let mut s = Session::new(1, None);
        let mut after = game_with("p", 100, 0);
        after.version = 3;
        assert!(s.on_server(msg(&after, &["j1"], vec![]), 0.0).is_empty());
        let settled = s.joining("p".into(), "Rome".into(), "j1".into(), 1, 1.0);
        assert!(matches!(settled, Some(Settled::Confirmed { .. })));
        assert!(
            s.pending.is_empty(),
            "nothing left waiting for a second update"
        );
        assert_eq!(s.player_id.as_deref(), Some("p"));
    }

    #[test]
    fn join_answered_before_its_update_waits_for_it() {
        let mut s = Session::new(1, None);
        let settled = s.joining("p".into(), "Rome".into(), "j1".into(), 1, 1.0);
        assert!(settled.is_none());
        assert_eq!(s.pending.len(), 1);
        let mut after = game_with("p", 100, 0);
        after.version = 3;
        let settled = s.on_server(msg(&after, &["j1"], vec![]), 2.0);
        assert!(matches!(settled[..], [Settled::Confirmed { .. }]));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn stale_messages_are_ignored() {
        let mut s = session(100, 0);
        let mut old = game_with("p", 1, 0);
        old.version = 5;
        assert!(s.on_server(msg(&old, &[], vec![]), 0.0).is_empty());
        assert_eq!(s.predicted().state.players["p"].gold, 100);
    }

    #[test]
    fn unrelated_update_keeps_the_click_pending() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 0.0)
            .unwrap();
        let mut other = game_with("p", 100, 0);
        other.version = 6;
        other.state.players.insert("q".into(), Nation::default());
        assert!(s.on_server(msg(&other, &["x"], vec![]), 1.0).is_empty());
        assert_eq!(s.pending.len(), 1);
        assert_eq!(s.predicted().state.players["p"].gold, 50);
    }

    #[test]
    fn failed_send_is_retried_with_the_same_id() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 0.0)
            .unwrap();
        s.on_send_failed("a1", 100.0, Some(1000.0));
        assert!(s.retry_due(500.0).is_empty());
        assert_eq!(
            s.retry_due(1100.0),
            vec![("a1".to_string(), ActionType::PurchaseSword)]
        );
        assert!(s.retry_due(5000.0).is_empty(), "already sending");
    }

    #[test]
    fn back_online_retries_at_once() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 0.0)
            .unwrap();
        s.on_send_failed("a1", 0.0, Some(60_000.0));
        s.retry_now();
        assert_eq!(
            s.retry_due(1.0),
            vec![("a1".to_string(), ActionType::PurchaseSword)]
        );
    }

    #[test]
    fn refused_send_rolls_back() {
        let mut s = session(100, 0);
        s.click(ActionType::PurchaseSword, "a1".into(), 1, 0.0)
            .unwrap();
        let settled = s.on_send_refused("a1", "bad request").unwrap();
        assert!(
            matches!(settled, Settled::RolledBack { ref message, .. } if message == "Buy sword failed: bad request")
        );
        assert_eq!(s.predicted().state.players["p"].gold, 100);
    }

    #[test]
    fn own_join_shows_the_nation_at_once() {
        let mut s = Session::new(1, None);
        s.on_server(snap(&Game::new(1), None), 0.0);
        assert!(!s.joined());
        s.joining("p".into(), "Atlantis".into(), "j1".into(), 1, 0.0);
        assert!(s.joined());
        let board = s.leaderboard();
        assert_eq!(board[0].name, "Atlantis");
        assert!(board[0].me);
    }

    #[test]
    fn leaderboard_ranks_by_power_and_marks_me() {
        let mut g = game_with("p", 10, 1);
        let mut strong = Nation {
            name: "Strong".into(),
            ..Nation::default()
        };
        strong.items.horse = 2;
        strong.power = shared::rules::power(&strong);
        g.state.players.insert("q".into(), strong);
        let mut s = Session::new(1, Some("p".into()));
        s.on_server(snap(&g, None), 0.0);
        let rows = s.leaderboard();
        assert_eq!(rows[0].name, "Strong");
        assert_eq!(rows[1].rank, 2);
        assert!(rows[1].me && !rows[0].me);
    }

    #[test]
    fn http_errors_are_classified() {
        assert_eq!(
            classify_http_error(503, "", Some("2")),
            HttpFailure::Retry {
                after_ms: Some(2000.0)
            }
        );
        assert_eq!(
            classify_http_error(
                401,
                r#"{"error":"unauthorized","detail":"bad token"}"#,
                None
            ),
            HttpFailure::Unauthorized("bad token".into())
        );
        assert_eq!(
            classify_http_error(400, r#"{"error":"bad_request","detail":null}"#, None),
            HttpFailure::Refused("bad_request".into())
        );
        assert_eq!(
            classify_http_error(404, "nope", None),
            HttpFailure::Refused("the server answered 404".into())
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(0, 1.0), 250.0);
        assert_eq!(backoff_ms(1, 1.0), 500.0);
        assert_eq!(backoff_ms(30, 1.0), 10_000.0);
        assert_eq!(backoff_ms(30, 0.0), 5_000.0);
    }

    #[test]
    fn ws_path_resumes_from_the_last_version() {
        assert_eq!(ws_path(3, None), "/ws/games/3");
        assert_eq!(ws_path(3, Some(42)), "/ws/games/3?resume_from=42");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Rome "), Ok("Rome".into()));
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(33)).is_err());
    }
}
