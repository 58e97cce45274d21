//! What travels between browser, bridge, Kafka and engine.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::Rejection;
use std::collections::BTreeMap;

use crate::arena::{ArenaMatch, ArenaState, Fighter};
use crate::state::{Game, GameState, Item, Nation};

/// Version of the [`ActionEnvelope`] layout; it rises with every change a
/// released reader could not read (`shared/schema/released`, checked in
/// `make test`). 2: the arena's action types. The engine reads every version
/// up to its own and sends newer ones to the dead-letter topic instead of
/// guessing.
pub const SCHEMA_VERSION: u32 = 2;

/// Partitions of `actions` and `games` when nobody says otherwise (every
/// role's `PARTITIONS` default: they must agree to place a game alike).
pub const DEFAULT_PARTITIONS: i32 = 12;

/// The partition of a game on both topics: `game_id mod partitions`.
///
/// Every producer sets the partition explicitly with this function, so the
/// engine, the bridge's readers and any outside consumer agree on where a
/// game lives whatever their client's default partitioner is.
pub fn partition_for(game_id: u64, partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (game_id % partitions as u64) as i32
}

/// What a player can do; the names are the seed's `event_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    Join,
    Default,
    PurchaseSword,
    PurchaseShield,
    PurchaseHorse,
    PurchaseKnife,
    UpgradeSword,
    UpgradeShield,
    // Arena: one cell towards row 9.
    MoveUp,
    MoveDown,
    MoveLeft,
    MoveRight,
    // Arena: a grenade towards row 9 (`W`).
    ThrowUp,
    ThrowDown,
    ThrowLeft,
    ThrowRight,
    // Arena: the next round, once one is over.
    Rematch,
}

impl ActionType {
    /// The arena's action types (with `join`).
    pub const ARENA: [ActionType; 10] = [
        ActionType::Join,
        ActionType::MoveUp,
        ActionType::MoveDown,
        ActionType::MoveLeft,
        ActionType::MoveRight,
        ActionType::ThrowUp,
        ActionType::ThrowDown,
        ActionType::ThrowLeft,
        ActionType::ThrowRight,
        ActionType::Rematch,
    ];

    /// An action of the arena only.
    pub fn is_arena(self) -> bool {
        self != ActionType::Join && ActionType::ARENA.contains(&self)
    }

    /// Every nation action type, in the order the UI shows them.
    pub const ALL: [ActionType; 8] = [
        ActionType::Join,
        ActionType::Default,
        ActionType::PurchaseSword,
        ActionType::PurchaseShield,
        ActionType::PurchaseHorse,
        ActionType::PurchaseKnife,
        ActionType::UpgradeSword,
        ActionType::UpgradeShield,
    ];

    /// The wire name (`event_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Join => "join",
            ActionType::Default => "default",
            ActionType::PurchaseSword => "purchase_sword",
            ActionType::PurchaseShield => "purchase_shield",
            ActionType::PurchaseHorse => "purchase_horse",
            ActionType::PurchaseKnife => "purchase_knife",
            ActionType::UpgradeSword => "upgrade_sword",
            ActionType::UpgradeShield => "upgrade_shield",
            ActionType::MoveUp => "move_up",
            ActionType::MoveDown => "move_down",
            ActionType::MoveLeft => "move_left",
            ActionType::MoveRight => "move_right",
            ActionType::ThrowUp => "throw_up",
            ActionType::ThrowDown => "throw_down",
            ActionType::ThrowLeft => "throw_left",
            ActionType::ThrowRight => "throw_right",
            ActionType::Rematch => "rematch",
        }
    }

    /// What a player sends to `POST /api/games/{game_id}/actions`: every
    /// type of either game but `join` (which has a route of its own).
    pub fn playable() -> impl Iterator<Item = ActionType> {
        ActionType::ALL
            .into_iter()
            .chain(ActionType::ARENA)
            .filter(|t| *t != ActionType::Join)
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<ActionType> {
        ActionType::ALL
            .into_iter()
            .chain(ActionType::ARENA)
            .find(|t| t.as_str() == name)
    }

    /// The item a purchase buys, if this is a purchase.
    pub fn purchase(self) -> Option<Item> {
        match self {
            ActionType::PurchaseSword => Some(Item::Sword),
            ActionType::PurchaseShield => Some(Item::Shield),
            ActionType::PurchaseHorse => Some(Item::Horse),
            ActionType::PurchaseKnife => Some(Item::Knife),
            _ => None,
        }
    }

    /// The item an upgrade improves, if this is an upgrade.
    pub fn upgrade(self) -> Option<Item> {
        match self {
            ActionType::UpgradeSword => Some(Item::Sword),
            ActionType::UpgradeShield => Some(Item::Shield),
            _ => None,
        }
    }

    /// The seed's GET path for this action (`/` for `default`), if it has one.
    pub fn seed_path(self) -> Option<&'static str> {
        match self {
            ActionType::Join => None,
            ActionType::Default => Some("/"),
            ActionType::PurchaseSword => Some("/purchase_a_sword"),
            ActionType::PurchaseShield => Some("/purchase_a_shield"),
            ActionType::PurchaseHorse => Some("/purchase_a_horse"),
            ActionType::PurchaseKnife => Some("/purchase_a_knife"),
            ActionType::UpgradeSword => Some("/upgrade_a_sword"),
            ActionType::UpgradeShield => Some("/upgrade_a_shield"),
            _ => None,
        }
    }
}

impl std::fmt::Display for ActionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record on the `actions` topic: one player action, stamped by the bridge.
///
/// Field names keep the seed's (`event_type`, `Host`, `User-Agent`, `Accept`)
/// so the seed's own Spark queries run on these records unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ActionEnvelope {
    /// The action id: the client's `Idempotency-Key` or a UUIDv7.
    pub event_id: String,
    pub game_id: u64,
    pub player_id: String,
    pub event_type: ActionType,
    /// The nation's name, on `join` records only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "Host", default)]
    pub host: String,
    #[serde(rename = "User-Agent", default)]
    pub user_agent: String,
    #[serde(rename = "Accept", default)]
    pub accept: String,
    /// The client's address as the bridge saw it (or from `X-Forwarded-For`
    /// when the peer is a trusted proxy).
    pub client_addr: String,
    /// When the bridge received the request, in ms since the Unix epoch: the
    /// rules' only clock.
    pub received_at_ms: u64,
    pub schema_version: u32,
}

impl ActionEnvelope {
    /// An envelope with what the rules need; the request's stamps (`Host`,
    /// `User-Agent`, `Accept`, client address) empty, the name unset, this
    /// crate's [`SCHEMA_VERSION`]. Set the rest with struct update syntax:
    /// `ActionEnvelope { host: h, ..ActionEnvelope::new(..) }`.
    pub fn new(
        event_id: impl Into<String>,
        game_id: u64,
        player_id: impl Into<String>,
        event_type: ActionType,
        received_at_ms: u64,
    ) -> ActionEnvelope {
        ActionEnvelope {
            event_id: event_id.into(),
            game_id,
            player_id: player_id.into(),
            event_type,
            name: None,
            host: String::new(),
            user_agent: String::new(),
            accept: String::new(),
            client_addr: String::new(),
            received_at_ms,
            schema_version: SCHEMA_VERSION,
        }
    }

    /// The Kafka headers the bridge puts on the record, `(name, value)`:
    /// the routing facts, so a consumer can filter or route without
    /// parsing the JSON (three: each one costs the broker).
    pub fn kafka_headers(&self) -> [(&'static str, &str); 3] {
        [
            ("event_id", &self.event_id),
            ("event_type", self.event_type.as_str()),
            ("player_id", &self.player_id),
        ]
    }
}

/// The longest nation name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a nation name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("give your nation a name")]
    Empty,
    #[error("keep the name to {MAX_NAME_CHARS} characters or fewer")]
    TooLong,
    #[error("a name cannot hold control characters")]
    Control,
}

/// The one name rule, for the page and the bridge alike: trimmed, 1 to
/// [`MAX_NAME_CHARS`] characters, no control characters. The trimmed name.
pub fn check_name(name: &str) -> Result<&str, NameError> {
    let name = name.trim();
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err(NameError::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(NameError::Control)
    } else {
        Ok(name)
    }
}

/// `GET /api/config`: what the page needs to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClientConfig {
    /// The game the join form offers first.
    pub default_game: u64,
    /// Partitions of `actions` and `games`.
    pub partitions: i32,
}

/// An action the rules refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RejectedAction {
    pub event_id: String,
    pub player_id: String,
    pub reason: Rejection,
    /// What was refused, so every watcher can say it ("Cy's shield purchase
    /// refused"), not only the player who sent it. Absent in records
    /// written before it existed, which still decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionType>,
}

/// Version of the `games` record layout ([`GamesRecord`]). 2: a record per
/// nation plus a head per engine step (1 was the whole game per record).
/// 3: the arena's `fighter` and `match` records and rejection reasons.
pub const GAMES_SCHEMA_VERSION: u32 = 3;

/// A record on the compacted `games` topic, on the game's partition.
///
/// Each engine step that changed a game writes, in one transaction, a
/// [`NationRecord`] for every nation the step changed (key
/// `"{game_id}/{player_id}"`) and then one [`GameHead`] (key `"{game_id}"`).
/// Compaction keeps the latest record per key, so the partition holds each
/// nation's latest state and each game's latest head, whatever its history.
///
/// A plain consumer folds the records of its game's partition in offset
/// order: a `nation` record sets `players[player_id] = nation`, a `head`
/// record sets the game's `version` (and tells what the step applied and
/// rejected). Reading `read_committed`, the fold after any head is exactly
/// the engine's state at that head's `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum GamesRecord {
    Nation(NationRecord),
    /// An arena player's latest state (key `"{game_id}/{player_id}"`).
    Fighter(FighterRecord),
    /// An arena's round (key `"{game_id}:match"`).
    Match(MatchRecord),
    Head(GameHead),
}

impl GamesRecord {
    /// The game the record belongs to.
    pub fn game_id(&self) -> u64 {
        match self {
            GamesRecord::Nation(r) => r.game_id,
            GamesRecord::Fighter(r) => r.game_id,
            GamesRecord::Match(r) => r.game_id,
            GamesRecord::Head(r) => r.game_id,
        }
    }

    /// The record's key on `games`.
    pub fn key(&self) -> String {
        match self {
            GamesRecord::Nation(r) => NationRecord::key(r.game_id, &r.player_id),
            GamesRecord::Fighter(r) => NationRecord::key(r.game_id, &r.player_id),
            GamesRecord::Match(r) => MatchRecord::key(r.game_id),
            GamesRecord::Head(r) => GameHead::key(r.game_id),
        }
    }
}

/// One arena player's latest state (key `"{game_id}/{player_id}"`, as a
/// nation's: a game is one kind or the other).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FighterRecord {
    pub game_id: u64,
    pub player_id: String,
    /// The game's version once the step that wrote this record is done.
    pub version: u64,
    pub fighter: Fighter,
}

/// An arena's round: phase, result, score, last burst (key
/// `"{game_id}:match"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MatchRecord {
    pub game_id: u64,
    pub version: u64,
    #[serde(rename = "match")]
    pub arena_match: ArenaMatch,
}

impl MatchRecord {
    /// The record's key on `games`.
    pub fn key(game_id: u64) -> String {
        format!("{game_id}:match")
    }
}

/// One nation's latest state (key `"{game_id}/{player_id}"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NationRecord {
    pub game_id: u64,
    pub player_id: String,
    /// The game's version once the step that wrote this record is done.
    pub version: u64,
    pub nation: Nation,
}

impl NationRecord {
    /// The record's key on `games`.
    pub fn key(game_id: u64, player_id: &str) -> String {
        format!("{game_id}/{player_id}")
    }
}

/// The end of one engine step of one game (key `"{game_id}"`): the version
/// reached, and what the step did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GameHead {
    pub game_id: u64,
    /// The version this step started from.
    pub since: u64,
    /// One more per handled action; strictly increasing per game.
    pub version: u64,
    /// How many entity records ([`NationRecord`], [`FighterRecord`],
    /// [`MatchRecord`]) of this step precede this head.
    pub changed: u32,
    /// How many nations the game has.
    pub players: u64,
    /// Action ids applied in this step.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Actions rejected in this step.
    #[serde(default)]
    pub rejected: Vec<RejectedAction>,
    /// Offset on the game's `actions` partition of the last action this step
    /// includes: offsets stored with the data, so an engine that restarts
    /// after a crash skips what it already handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_offset: Option<i64>,
    /// [`GAMES_SCHEMA_VERSION`].
    pub schema_version: u32,
}

impl GameHead {
    /// The record's key on `games`.
    pub fn key(game_id: u64) -> String {
        game_id.to_string()
    }
}

/// A whole game: the first WebSocket message, the answer to a lagging or
/// resuming client, and `GET /api/games/{game_id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GameSnapshot {
    pub game_id: u64,
    pub version: u64,
    pub state: GameState,
    /// Offset on the game's `actions` partition of the last action the state
    /// includes: an acknowledged action at or below it is in the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_offset: Option<i64>,
}

impl GameSnapshot {
    /// The game this snapshot describes.
    pub fn game(&self) -> Game {
        Game {
            game_id: self.game_id,
            version: self.version,
            state: self.state.clone(),
        }
    }
}

/// What changed in a game from version `since` to `version`: the nations
/// whose state changed (their whole new state), and the actions applied and
/// rejected. Applies on top of any state whose version is in
/// `since..version`; a client holding an older version has missed something
/// and asks for a snapshot (see [`ClientMessage`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GameDelta {
    pub game_id: u64,
    pub since: u64,
    pub version: u64,
    /// New state of every nation changed, by player id (absent when none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nations: BTreeMap<String, Nation>,
    /// Arena: new state of every player changed, by player id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fighters: BTreeMap<String, Fighter>,
    /// Arena: the round, when it changed.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub arena_match: Option<ArenaMatch>,
    #[serde(default)]
    pub applied: Vec<String>,
    /// Absent when empty (most steps): a move's frame stays small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_offset: Option<i64>,
}

/// How a delta meets a state at some version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// It applies: the state's version is in `since..version`.
    Applies,
    /// The state already includes it.
    Old,
    /// It starts after the state's version: something was missed.
    Gap,
}

impl GameDelta {
    /// How this delta meets a state at `version`.
    pub fn fit(&self, version: u64) -> Fit {
        if self.version <= version {
            Fit::Old
        } else if self.since <= version {
            Fit::Applies
        } else {
            Fit::Gap
        }
    }

    /// Applies the delta to `game` if it fits ([`GameDelta::fit`]); what it did.
    pub fn apply_to(&self, game: &mut Game) -> Fit {
        let fit = self.fit(game.version);
        if fit == Fit::Applies {
            self.apply_state(&mut game.state);
            game.version = self.version;
        }
        fit
    }

    /// Writes the delta's records into `state` (no version check).
    pub fn apply_state(&self, state: &mut GameState) {
        for (player, nation) in &self.nations {
            state.players.insert(player.clone(), nation.clone());
        }
        if !self.fighters.is_empty() || self.arena_match.is_some() {
            let arena = state.arena.get_or_insert_with(ArenaState::default);
            for (player, fighter) in &self.fighters {
                arena.fighters.insert(player.clone(), fighter.clone());
            }
            if let Some(m) = &self.arena_match {
                arena.arena_match = m.clone();
            }
        }
    }
}

/// One engine step as a reader of `games` sees it once folded: what the
/// step did, and the game's whole state after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldedStep {
    pub game_id: u64,
    pub version: u64,
    pub state: GameState,
    pub applied: Vec<String>,
    pub rejected: Vec<RejectedAction>,
    pub actions_offset: Option<i64>,
}

impl FoldedStep {
    /// The game after the step.
    pub fn game(&self) -> Game {
        Game {
            game_id: self.game_id,
            version: self.version,
            state: self.state.clone(),
        }
    }
}

/// Folds `games` records into games, as any consumer of the topic does (see
/// [`GamesRecord`]): the engine's restore, `engine replay`, the lake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GamesFold {
    /// Each game's state with the `actions` offset its last head included.
    pub games: BTreeMap<u64, GameSnapshot>,
}

impl GamesFold {
    /// Takes the next record of a partition, in offset order.
    pub fn push(&mut self, record: GamesRecord) {
        match record {
            GamesRecord::Nation(n) => {
                let game = self.entry(n.game_id);
                game.state.players.insert(n.player_id, n.nation);
            }
            GamesRecord::Fighter(f) => {
                let game = self.entry(f.game_id);
                let arena = game.state.arena.get_or_insert_with(ArenaState::default);
                arena.fighters.insert(f.player_id, f.fighter);
            }
            GamesRecord::Match(m) => {
                let game = self.entry(m.game_id);
                let arena = game.state.arena.get_or_insert_with(ArenaState::default);
                arena.arena_match = m.arena_match;
            }
            GamesRecord::Head(h) => {
                let game = self.entry(h.game_id);
                game.version = h.version;
                game.actions_offset = h.actions_offset;
            }
        }
    }

    /// [`GamesFold::push`], and after a head the step it closed with the
    /// game's whole state (a copy: for tests and tools, not restores).
    pub fn push_step(&mut self, record: GamesRecord) -> Option<FoldedStep> {
        let head = match &record {
            GamesRecord::Head(h) => Some((h.applied.clone(), h.rejected.clone())),
            _ => None,
        };
        let game_id = record.game_id();
        self.push(record);
        let (applied, rejected) = head?;
        let game = &self.games[&game_id];
        Some(FoldedStep {
            game_id,
            version: game.version,
            state: game.state.clone(),
            applied,
            rejected,
            actions_offset: game.actions_offset,
        })
    }

    fn entry(&mut self, game_id: u64) -> &mut GameSnapshot {
        self.games.entry(game_id).or_insert_with(|| GameSnapshot {
            game_id,
            ..GameSnapshot::default()
        })
    }
}

/// A message the bridge sends on `/ws/games/{game_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The whole game.
    Snapshot(GameSnapshot),
    /// What changed.
    Update(GameDelta),
}

/// A message a browser may send on `/ws/games/{game_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientMessage {
    /// The last version the client saw; it gets a fresh snapshot if the game
    /// has moved on since.
    pub resume_from: u64,
}

/// `POST /api/games/{game_id}/join` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// 1 to [`MAX_NAME_CHARS`] characters once trimmed, at least one not a
    /// space, none a control character ([`check_name`]).
    #[schemars(length(min = 1, max = MAX_NAME_CHARS), pattern(NAME_PATTERN))]
    pub name: String,
}

/// [`check_name`]'s rule as a regular expression (for the OpenAPI document
/// and other clients): no control character, at least one that is not
/// white space.
pub const NAME_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// The longest client-chosen action id (`Idempotency-Key` or `action_id`).
pub const MAX_ACTION_ID: usize = 128;

/// A client-chosen action id as a regular expression: visible ASCII.
pub const ACTION_ID_PATTERN: &str = "^[!-~]+$";

/// Is `id` a well-formed client-chosen action id: 1 to [`MAX_ACTION_ID`]
/// visible ASCII characters?
pub fn valid_action_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ACTION_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The schema of a playable action type: [`ActionType::playable`]'s names.
fn playable_action_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = ActionType::playable().map(ActionType::as_str).collect();
    schemars::json_schema!({
        "type": "string",
        "enum": names,
        "description": "What to do (every action type but `join`).",
    })
}

/// `POST /api/games/{game_id}/join` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JoinResponse {
    pub player_id: String,
    pub token: String,
    /// The join's own action id, to match it on the `games` stream.
    #[serde(default)]
    pub action_id: String,
    /// Arena: the team the player was seated in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<crate::arena::Team>,
}

/// `POST /api/games/{game_id}/actions` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[serde(rename = "type")]
    #[schemars(schema_with = "playable_action_schema")]
    pub action_type: ActionType,
    /// Optional client-chosen action id, 1 to 128 visible ASCII characters;
    /// null or absent: the `Idempotency-Key` header, else a new UUIDv7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_ACTION_ID), pattern(ACTION_ID_PATTERN))]
    pub action_id: Option<String>,
}

/// `202` answer to an action: Kafka has acknowledged it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ActionAccepted {
    pub action_id: String,
    pub partition: i32,
    pub offset: i64,
}

/// Every HTTP error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// A short machine-readable code (`bad_request`, `unauthorized`, ...).
    pub error: String,
    /// What went wrong, for people; may be a string or structured data.
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_rule() {
        assert_eq!(check_name("  Rome "), Ok("Rome"));
        assert_eq!(check_name("   "), Err(NameError::Empty));
        assert_eq!(check_name(&"x".repeat(33)), Err(NameError::TooLong));
        assert_eq!(check_name(&"é".repeat(32)), Ok("é".repeat(32).as_str()));
        assert_eq!(check_name("Ro\u{7}me"), Err(NameError::Control));
    }

    #[test]
    fn a_rejection_names_its_action_and_older_records_still_decode() {
        let reason = Rejection::NotEnoughGold { need: 40, have: 3 };
        let named = RejectedAction {
            event_id: "e".into(),
            player_id: "c".into(),
            reason: reason.clone(),
            action: Some(ActionType::PurchaseShield),
        };
        let json = serde_json::to_value(&named).unwrap();
        assert_eq!(json["action"], "purchase_shield");
        assert_eq!(
            serde_json::from_value::<RejectedAction>(json).unwrap(),
            named
        );
        // As engines before the field wrote it: no `action`.
        let old = r#"{"event_id":"e","player_id":"c","reason":{"code":"not_enough_gold","need":40,"have":3}}"#;
        let decoded: RejectedAction = serde_json::from_str(old).unwrap();
        assert_eq!(decoded.action, None);
        assert_eq!(decoded.reason, reason);
        // And a record without one is written as before.
        let unnamed = RejectedAction {
            action: None,
            ..decoded
        };
        assert!(serde_json::to_value(&unnamed)
            .unwrap()
            .get("action")
            .is_none());
    }

    fn nation(gold: u64) -> Nation {
        Nation {
            gold,
            ..Nation::default()
        }
    }

    #[test]
    fn a_delta_applies_once_and_only_on_a_version_it_covers() {
        let mut game = Game::new(1);
        game.version = 5;
        let delta = GameDelta {
            game_id: 1,
            since: 4,
            version: 7,
            nations: BTreeMap::from([("p".to_string(), nation(9))]),
            ..GameDelta::default()
        };
        assert_eq!(delta.apply_to(&mut game), Fit::Applies);
        assert_eq!((game.version, game.state.players["p"].gold), (7, 9));
        assert_eq!(delta.apply_to(&mut game), Fit::Old);
        let later = GameDelta {
            since: 8,
            version: 9,
            ..delta
        };
        assert_eq!(later.apply_to(&mut game), Fit::Gap);
        assert_eq!(game.version, 7);
    }

    #[test]
    fn folding_records_gives_the_latest_nations_and_head() {
        let mut fold = GamesFold::default();
        let rec = |p: &str, gold, version| {
            GamesRecord::Nation(NationRecord {
                game_id: 3,
                player_id: p.into(),
                version,
                nation: nation(gold),
            })
        };
        let head = |version, offset| {
            GamesRecord::Head(GameHead {
                game_id: 3,
                version,
                actions_offset: Some(offset),
                ..GameHead::default()
            })
        };
        for r in [
            rec("a", 1, 1),
            head(1, 10),
            rec("b", 2, 2),
            rec("a", 3, 2),
            head(2, 12),
        ] {
            fold.push(r);
        }
        let game = &fold.games[&3];
        assert_eq!((game.version, game.actions_offset), (2, Some(12)));
        assert_eq!(game.state.players["a"].gold, 3);
        assert_eq!(game.state.players.len(), 2);
    }

    #[test]
    fn records_and_messages_are_tagged() {
        let head = serde_json::to_value(GamesRecord::Head(GameHead::default())).unwrap();
        assert_eq!(head["record"], "head");
        let msg = serde_json::to_value(ServerMessage::Update(GameDelta::default())).unwrap();
        assert_eq!(msg["kind"], "update");
        let back: ServerMessage = serde_json::from_value(msg).unwrap();
        assert!(matches!(back, ServerMessage::Update(_)));
    }

    #[test]
    fn an_envelope_from_what_the_rules_need() {
        let e = ActionEnvelope::new("a", 1, "p", ActionType::Join, 5);
        assert_eq!(
            (e.schema_version, e.received_at_ms, e.name, e.host),
            (SCHEMA_VERSION, 5, None, String::new())
        );
    }

    #[test]
    fn kafka_headers_carry_the_routing_facts() {
        let e = ActionEnvelope::new("a1", 1, "p", ActionType::PurchaseSword, 5);
        assert_eq!(
            e.kafka_headers(),
            [
                ("event_id", "a1"),
                ("event_type", "purchase_sword"),
                ("player_id", "p")
            ]
        );
    }
}
