//! The game's state: every player's nation.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The four items a nation can own.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    Sword,
    Shield,
    Horse,
    Knife,
}

impl Item {
    /// Every item, in display order.
    pub const ALL: [Item; 4] = [Item::Sword, Item::Shield, Item::Horse, Item::Knife];

    /// The item's name as used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Item::Sword => "sword",
            Item::Shield => "shield",
            Item::Horse => "horse",
            Item::Knife => "knife",
        }
    }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Item levels; 0 means not owned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Items {
    pub sword: u8,
    pub shield: u8,
    pub horse: u8,
    pub knife: u8,
}

impl Items {
    /// The level of `item` (0 = not owned).
    pub fn level(&self, item: Item) -> u8 {
        match item {
            Item::Sword => self.sword,
            Item::Shield => self.shield,
            Item::Horse => self.horse,
            Item::Knife => self.knife,
        }
    }

    /// A mutable handle on the level of `item`.
    pub fn level_mut(&mut self, item: Item) -> &mut u8 {
        match item {
            Item::Sword => &mut self.sword,
            Item::Shield => &mut self.shield,
            Item::Horse => &mut self.horse,
            Item::Knife => &mut self.knife,
        }
    }
}

/// One player's nation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Nation {
    /// The name the player chose (or their `Host` for the seed's clients).
    pub name: String,
    pub gold: u64,
    pub items: Items,
    /// Σ weight × level; stored so consumers need not know the weights.
    pub power: u32,
    /// Receive time of the nation's last applied action: idle income is
    /// counted from here, with the bridge's clock, never the engine's.
    #[serde(default)]
    pub last_action_ms: u64,
}

/// Everything the rules need to decide the next action of one game.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GameState {
    /// Nations by player id; a BTreeMap so serialisation is deterministic.
    pub players: BTreeMap<String, Nation>,
    /// The arena's players and round, in an arena game
    /// ([`crate::arena::GameKind::of`]); absent in a nation game.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arena: Option<crate::arena::ArenaState>,
}

/// A game: its id, its version (one more per handled action) and its state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Game {
    pub game_id: u64,
    pub version: u64,
    pub state: GameState,
}

impl Game {
    /// A game nobody has played yet.
    pub fn new(game_id: u64) -> Self {
        Game {
            game_id,
            version: 0,
            state: GameState::default(),
        }
    }

    /// Players ranked by power (then gold, then name): the in-game leaderboard.
    pub fn ranking(&self) -> Vec<(&str, &Nation)> {
        let mut ranked: Vec<(&str, &Nation)> = self
            .state
            .players
            .iter()
            .map(|(id, n)| (id.as_str(), n))
            .collect();
        ranked.sort_by(|a, b| {
            b.1.power
                .cmp(&a.1.power)
                .then(b.1.gold.cmp(&a.1.gold))
                .then(a.1.name.cmp(&b.1.name))
        });
        ranked
    }
}
