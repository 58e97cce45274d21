//! What travels between browser, bridge, Kafka and engine.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::Rejection;
use crate::state::{Game, GameState, Item};

/// Version of the [`ActionEnvelope`] layout. The engine sends records with any
/// other version to the dead-letter topic instead of guessing.
pub const SCHEMA_VERSION: u32 = 1;

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
}

impl ActionType {
    /// Every action type, in the order the UI shows them.
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
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<ActionType> {
        ActionType::ALL.into_iter().find(|t| t.as_str() == name)
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
}

/// A record on the compacted `games` topic: the latest state of one game, and
/// what changed since the previous record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GameUpdate {
    pub game_id: u64,
    /// One more per handled action; strictly increasing per game.
    pub version: u64,
    pub state: GameState,
    /// Action ids applied since the previous update of this game.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Actions rejected since the previous update of this game.
    #[serde(default)]
    pub rejected: Vec<RejectedAction>,
    /// Offset on the game's `actions` partition of the last action this update
    /// includes: offsets stored with the data, so an engine that restarts
    /// after a crash skips what it already handled, even on a broker that
    /// shows aborted records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_offset: Option<i64>,
}

impl GameUpdate {
    /// The game this update describes.
    pub fn game(&self) -> Game {
        Game {
            game_id: self.game_id,
            version: self.version,
            state: self.state.clone(),
        }
    }
}

/// Whether a WebSocket message is the full state on (re)connect or a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Snapshot,
    Update,
}

/// A message the bridge sends on `/ws/games/{game_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServerMessage {
    pub kind: MessageKind,
    #[serde(flatten)]
    pub update: GameUpdate,
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
    pub name: String,
}

/// `POST /api/games/{game_id}/join` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JoinResponse {
    pub player_id: String,
    pub token: String,
    /// The join's own action id, to match it on the `games` stream.
    #[serde(default)]
    pub action_id: String,
}

/// `POST /api/games/{game_id}/actions` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[serde(rename = "type")]
    pub action_type: ActionType,
    /// Optional client-chosen action id (or the `Idempotency-Key` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    fn an_envelope_from_what_the_rules_need() {
        let e = ActionEnvelope::new("a", 1, "p", ActionType::Join, 5);
        assert_eq!(
            (e.schema_version, e.received_at_ms, e.name, e.host),
            (SCHEMA_VERSION, 5, None, String::new())
        );
    }
}
