//! The game rules: a pure, deterministic [`apply`].
//!
//! See the crate docs for the economy. No clock, no randomness, no I/O: the
//! same envelopes from the same state always give the same game.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::arena::GameKind;
use crate::state::{Game, Item, Nation};
use crate::wire::{ActionEnvelope, ActionType};

/// Gold a new nation starts with.
pub const STARTING_GOLD: u64 = 100;
/// Gold earned by a `default` event (a visit).
pub const VISIT_GOLD: u64 = 10;
/// Extra gold a visit earns per full [`IDLE_INTERVAL_MS`] since the last action.
pub const IDLE_GOLD_PER_INTERVAL: u64 = 1;
/// The idle-income interval.
pub const IDLE_INTERVAL_MS: u64 = 10_000;
/// The most idle income one visit can earn.
pub const MAX_IDLE_GOLD: u64 = 30;
/// The highest level an item can reach.
pub const MAX_LEVEL: u8 = 5;

/// Why the rules refused an action. Sent back to the player as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    #[error("this game does not know you yet: join first")]
    UnknownPlayer,
    #[error("not enough gold: it costs {need}, you have {have}")]
    NotEnoughGold { need: u64, have: u64 },
    #[error("you need a {item} before you can upgrade it")]
    ItemMissing { item: Item },
    #[error("your {item} is already at the maximum level ({max})")]
    MaxLevel { item: Item, max: u8 },
    #[error("you already own a {item}")]
    AlreadyOwned { item: Item },
    #[error("you have already joined this game")]
    AlreadyJoined,
    /// The action's id is older than the window the engine remembers ids
    /// for: it might have been applied already, so it is never applied.
    #[error("this action is too old to be checked for a repeat: send it again as a new click")]
    Expired,
    /// An action of the other kind of game (a purchase in an arena, a move
    /// in a nation game).
    #[error("this action belongs to the other kind of game")]
    WrongGame,
    /// Arena: both teams already have five players.
    #[error("both teams are full (5 players each)")]
    TeamFull,
    /// Arena: an edge, a wall or a player is in the way.
    #[error("something is in the way")]
    Blocked,
    /// Arena: no grenade left.
    #[error("you have no grenades left")]
    NoGrenades,
    /// Arena: the player has no health left this round.
    #[error("you are eliminated until the next round")]
    Eliminated,
    /// Arena: the player acted less than the minimum interval ago.
    #[error("too fast: wait {wait_ms} ms")]
    TooFast { wait_ms: u64 },
    /// Arena: the round is over (a rematch starts the next).
    #[error("the match is over")]
    MatchOver,
    /// Arena: a rematch while the round is on.
    #[error("the match is not over yet")]
    MatchNotOver,
    /// Arena: waiting for a player in each team.
    #[error("the match starts when both teams have a player")]
    NotStarted,
}

impl Rejection {
    /// The wire code (`not_enough_gold`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownPlayer => "unknown_player",
            Rejection::NotEnoughGold { .. } => "not_enough_gold",
            Rejection::ItemMissing { .. } => "item_missing",
            Rejection::MaxLevel { .. } => "max_level",
            Rejection::AlreadyOwned { .. } => "already_owned",
            Rejection::AlreadyJoined => "already_joined",
            Rejection::Expired => "expired",
            Rejection::WrongGame => "wrong_game",
            Rejection::TeamFull => "team_full",
            Rejection::Blocked => "blocked",
            Rejection::NoGrenades => "no_grenades",
            Rejection::Eliminated => "eliminated",
            Rejection::TooFast { .. } => "too_fast",
            Rejection::MatchOver => "match_over",
            Rejection::MatchNotOver => "match_not_over",
            Rejection::NotStarted => "not_started",
        }
    }
}

/// What [`apply`] did with an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The state changed and the version went up.
    Applied,
    /// The state is unchanged but for the version.
    Rejected(Rejection),
}

/// The price of `item` (level 1).
pub fn price(item: Item) -> u64 {
    match item {
        Item::Knife => 20,
        Item::Shield => 40,
        Item::Sword => 50,
        Item::Horse => 80,
    }
}

/// The power one level of `item` adds.
pub fn weight(item: Item) -> u32 {
    match item {
        Item::Knife => 1,
        Item::Shield => 2,
        Item::Sword => 3,
        Item::Horse => 4,
    }
}

/// What upgrading `item` from `level` to `level + 1` costs.
pub fn upgrade_cost(item: Item, level: u8) -> u64 {
    price(item) * (u64::from(level) + 1)
}

/// A nation's power: Σ weight × level.
pub fn power(nation: &Nation) -> u32 {
    Item::ALL
        .into_iter()
        .map(|item| weight(item) * u32::from(nation.items.level(item)))
        .sum()
}

/// Gold a visit at `now_ms` earns a nation that last acted at `last_ms`.
pub fn visit_income(last_ms: u64, now_ms: u64) -> u64 {
    let idle = now_ms.saturating_sub(last_ms) / IDLE_INTERVAL_MS * IDLE_GOLD_PER_INTERVAL;
    VISIT_GOLD + idle.min(MAX_IDLE_GOLD)
}

/// The gold `action` costs this nation, if it costs any (for buttons' labels).
pub fn cost(nation: &Nation, action: ActionType) -> Option<u64> {
    if let Some(item) = action.purchase() {
        Some(price(item))
    } else {
        action
            .upgrade()
            .map(|item| upgrade_cost(item, nation.items.level(item).max(1)))
    }
}

/// Checks whether `player_id` may perform `action` now, without changing
/// anything: the browser uses it to grey out buttons.
pub fn check(game: &Game, player_id: &str, action: ActionType) -> Result<(), Rejection> {
    if action.is_arena() {
        return Err(Rejection::WrongGame);
    }
    let nation = game.state.players.get(player_id);
    match (action, nation) {
        (ActionType::Join, Some(_)) => Err(Rejection::AlreadyJoined),
        (ActionType::Join, None) | (ActionType::Default, _) => Ok(()),
        (_, None) => Err(Rejection::UnknownPlayer),
        (action, Some(nation)) => {
            let need = if let Some(item) = action.purchase() {
                if nation.items.level(item) > 0 {
                    return Err(Rejection::AlreadyOwned { item });
                }
                price(item)
            } else if let Some(item) = action.upgrade() {
                let level = nation.items.level(item);
                if level == 0 {
                    return Err(Rejection::ItemMissing { item });
                }
                if level >= MAX_LEVEL {
                    return Err(Rejection::MaxLevel {
                        item,
                        max: MAX_LEVEL,
                    });
                }
                upgrade_cost(item, level)
            } else {
                0
            };
            if nation.gold < need {
                return Err(Rejection::NotEnoughGold {
                    need,
                    have: nation.gold,
                });
            }
            Ok(())
        }
    }
}

/// What one action did: its outcome and which records it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    pub outcome: Outcome,
    /// Players whose nation (nation game) or fighter (arena) changed.
    pub fighters: Vec<String>,
    /// The arena's round record changed.
    pub match_changed: bool,
}

/// Applies one action to a game of either kind ([`GameKind::of`] its id):
/// the version goes up by one whether the action is applied or rejected;
/// what changed is listed, so the engine writes only that.
pub fn apply_changes(game: &mut Game, action: &ActionEnvelope) -> Effect {
    if GameKind::of(game.game_id) == GameKind::Arena {
        game.version += 1;
        let (result, changes) = crate::arena::apply(game, action);
        return Effect {
            outcome: match result {
                Ok(()) => Outcome::Applied,
                Err(r) => Outcome::Rejected(r),
            },
            fighters: changes.fighters,
            match_changed: changes.match_changed,
        };
    }
    let outcome = apply_nation(game, action);
    let fighters = match outcome {
        Outcome::Applied => vec![action.player_id.clone()],
        Outcome::Rejected(_) => Vec::new(),
    };
    Effect {
        outcome,
        fighters,
        match_changed: false,
    }
}

/// [`apply_changes`], the outcome only.
pub fn apply(game: &mut Game, action: &ActionEnvelope) -> Outcome {
    apply_changes(game, action).outcome
}

/// Applies one action to a nation game: the version goes up by one whether
/// the action is applied or rejected, and only the acting player's nation can
/// change.
///
/// Duplicates are not the rules' business: the engine remembers every action
/// id of the last 24 h (`engine::seen`) and never hands a repeat to `apply`.
fn apply_nation(game: &mut Game, action: &ActionEnvelope) -> Outcome {
    game.version += 1;

    if let Err(rejection) = check(game, &action.player_id, action.event_type) {
        return Outcome::Rejected(rejection);
    }
    let now = action.received_at_ms;
    let players = &mut game.state.players;
    match action.event_type {
        ActionType::Join => {
            let name = action
                .name
                .clone()
                .unwrap_or_else(|| action.player_id.clone());
            players.insert(action.player_id.clone(), new_nation(name, now));
        }
        ActionType::Default => match players.get_mut(&action.player_id) {
            Some(nation) => {
                nation.gold += visit_income(nation.last_action_ms, now);
                nation.last_action_ms = nation.last_action_ms.max(now);
            }
            None => {
                let name = action
                    .name
                    .clone()
                    .unwrap_or_else(|| action.player_id.clone());
                players.insert(action.player_id.clone(), new_nation(name, now));
            }
        },
        other => {
            let nation = players
                .get_mut(&action.player_id)
                .expect("check() accepted the action, so the player exists");
            let (item, need) = match (other.purchase(), other.upgrade()) {
                (Some(item), _) => (item, price(item)),
                (_, Some(item)) => (item, upgrade_cost(item, nation.items.level(item))),
                _ => unreachable!("join and default are handled above"),
            };
            nation.gold -= need;
            *nation.items.level_mut(item) += 1;
            nation.power = power(nation);
            nation.last_action_ms = nation.last_action_ms.max(now);
        }
    }
    Outcome::Applied
}

fn new_nation(name: String, now: u64) -> Nation {
    Nation {
        name,
        gold: STARTING_GOLD,
        last_action_ms: now,
        ..Nation::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SCHEMA_VERSION;
    use proptest::prelude::*;

    fn env(id: &str, player: &str, t: ActionType, at: u64) -> ActionEnvelope {
        ActionEnvelope {
            event_id: id.to_string(),
            game_id: 1,
            player_id: player.to_string(),
            event_type: t,
            name: (t == ActionType::Join).then(|| format!("{player}land")),
            host: "localhost".into(),
            user_agent: "test".into(),
            accept: "*/*".into(),
            client_addr: "127.0.0.1".into(),
            received_at_ms: at,
            schema_version: SCHEMA_VERSION,
        }
    }

    fn joined(player: &str) -> Game {
        let mut game = Game::new(1);
        assert_eq!(
            apply(&mut game, &env("j", player, ActionType::Join, 0)),
            Outcome::Applied
        );
        game
    }

    fn gold(game: &Game, player: &str) -> u64 {
        game.state.players[player].gold
    }

    #[test]
    fn join_creates_a_nation_with_starting_gold() {
        let game = joined("p");
        let nation = &game.state.players["p"];
        assert_eq!(nation.gold, STARTING_GOLD);
        assert_eq!(nation.name, "pland");
        assert_eq!(nation.items, Items::default());
        assert_eq!(game.version, 1);
    }

    use crate::state::Items;

    #[test]
    fn rejects_second_join() {
        let mut game = joined("p");
        let out = apply(&mut game, &env("j2", "p", ActionType::Join, 1));
        assert_eq!(out, Outcome::Rejected(Rejection::AlreadyJoined));
        assert_eq!(game.version, 2);
    }

    #[test]
    fn visit_earns_gold_and_idle_income_is_capped() {
        let mut game = joined("p");
        apply(&mut game, &env("v1", "p", ActionType::Default, 25_000));
        assert_eq!(gold(&game, "p"), STARTING_GOLD + VISIT_GOLD + 2);
        apply(
            &mut game,
            &env("v2", "p", ActionType::Default, 25_000 + 3_600_000),
        );
        assert_eq!(
            gold(&game, "p"),
            STARTING_GOLD + 2 * VISIT_GOLD + 2 + MAX_IDLE_GOLD
        );
    }

    #[test]
    fn visit_from_unknown_player_creates_the_nation() {
        let mut game = Game::new(1);
        let out = apply(
            &mut game,
            &env("v", "user1.comcast.com", ActionType::Default, 5),
        );
        assert_eq!(out, Outcome::Applied);
        assert_eq!(
            game.state.players["user1.comcast.com"].name,
            "user1.comcast.com"
        );
        assert_eq!(gold(&game, "user1.comcast.com"), STARTING_GOLD);
    }

    #[test]
    fn purchase_costs_its_price_and_raises_power() {
        let mut game = joined("p");
        assert_eq!(
            apply(&mut game, &env("s", "p", ActionType::PurchaseSword, 1)),
            Outcome::Applied
        );
        let nation = &game.state.players["p"];
        assert_eq!(nation.gold, STARTING_GOLD - price(Item::Sword));
        assert_eq!(nation.items.sword, 1);
        assert_eq!(nation.power, 3);
    }

    #[test]
    fn rejects_purchase_from_unknown_player() {
        let mut game = Game::new(1);
        let out = apply(&mut game, &env("s", "ghost", ActionType::PurchaseKnife, 1));
        assert_eq!(out, Outcome::Rejected(Rejection::UnknownPlayer));
        assert!(game.state.players.is_empty());
    }

    #[test]
    fn rejects_purchase_without_enough_gold() {
        let mut game = joined("p");
        apply(&mut game, &env("h", "p", ActionType::PurchaseHorse, 1));
        let out = apply(&mut game, &env("s", "p", ActionType::PurchaseSword, 2));
        assert_eq!(
            out,
            Outcome::Rejected(Rejection::NotEnoughGold { need: 50, have: 20 })
        );
        assert_eq!(gold(&game, "p"), 20);
    }

    #[test]
    fn rejects_buying_an_owned_item() {
        let mut game = joined("p");
        apply(&mut game, &env("k1", "p", ActionType::PurchaseKnife, 1));
        let out = apply(&mut game, &env("k2", "p", ActionType::PurchaseKnife, 2));
        assert_eq!(
            out,
            Outcome::Rejected(Rejection::AlreadyOwned { item: Item::Knife })
        );
    }

    #[test]
    fn rejects_upgrade_without_sword() {
        let mut game = joined("p");
        let out = apply(&mut game, &env("u", "p", ActionType::UpgradeSword, 1));
        assert_eq!(
            out,
            Outcome::Rejected(Rejection::ItemMissing { item: Item::Sword })
        );
    }

    #[test]
    fn upgrade_costs_more_per_level_up_to_the_maximum() {
        let mut game = joined("p");
        game.state.players.get_mut("p").unwrap().gold = 10_000;
        apply(&mut game, &env("b", "p", ActionType::PurchaseShield, 1));
        let mut spent = price(Item::Shield);
        for level in 1..MAX_LEVEL {
            let out = apply(
                &mut game,
                &env(&format!("u{level}"), "p", ActionType::UpgradeShield, 2),
            );
            assert_eq!(out, Outcome::Applied);
            spent += upgrade_cost(Item::Shield, level);
        }
        assert_eq!(gold(&game, "p"), 10_000 - spent);
        assert_eq!(game.state.players["p"].items.shield, MAX_LEVEL);
        assert_eq!(game.state.players["p"].power, 2 * u32::from(MAX_LEVEL));
        let out = apply(&mut game, &env("over", "p", ActionType::UpgradeShield, 3));
        assert_eq!(
            out,
            Outcome::Rejected(Rejection::MaxLevel {
                item: Item::Shield,
                max: MAX_LEVEL
            })
        );
    }

    #[test]
    fn rejects_upgrade_without_enough_gold() {
        let mut game = joined("p");
        apply(&mut game, &env("s", "p", ActionType::PurchaseSword, 1));
        let out = apply(&mut game, &env("u", "p", ActionType::UpgradeSword, 2));
        assert_eq!(
            out,
            Outcome::Rejected(Rejection::NotEnoughGold {
                need: 100,
                have: 50
            })
        );
    }

    #[test]
    fn rejection_codes_match_the_contract() {
        let json = serde_json::to_value(Rejection::NotEnoughGold { need: 5, have: 1 }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "not_enough_gold", "need": 5, "have": 1})
        );
        for (r, code) in [
            (Rejection::UnknownPlayer, "unknown_player"),
            (Rejection::ItemMissing { item: Item::Sword }, "item_missing"),
            (
                Rejection::MaxLevel {
                    item: Item::Sword,
                    max: 5,
                },
                "max_level",
            ),
        ] {
            assert_eq!(serde_json::to_value(&r).unwrap()["code"], code);
            assert_eq!(r.code(), code);
        }
    }

    fn arb_action() -> impl Strategy<Value = ActionEnvelope> {
        (
            0usize..40,
            0usize..3,
            0usize..ActionType::ALL.len(),
            0u64..200_000,
        )
            .prop_map(|(id, player, t, at)| {
                env(
                    &format!("a{id}"),
                    &format!("p{player}"),
                    ActionType::ALL[t],
                    at,
                )
            })
    }

    proptest! {
        #[test]
        fn gold_never_negative_and_levels_in_bounds(actions in prop::collection::vec(arb_action(), 0..200)) {
            let mut game = Game::new(1);
            for a in &actions {
                let before: u64 = game.state.players.values().map(|n| n.gold).sum();
                let out = apply(&mut game, a);
                if !matches!(out, Outcome::Applied) {
                    let after: u64 = game.state.players.values().map(|n| n.gold).sum();
                    prop_assert_eq!(before, after);
                }
                for n in game.state.players.values() {
                    for item in Item::ALL {
                        prop_assert!(n.items.level(item) <= MAX_LEVEL);
                    }
                    prop_assert_eq!(n.power, power(n));
                }
            }
        }

        #[test]
        fn only_the_acting_nation_changes(actions in prop::collection::vec(arb_action(), 0..100)) {
            // What makes an update of one nation's change a correct delta.
            let mut game = Game::new(1);
            for a in &actions {
                let before = game.clone();
                apply(&mut game, a);
                prop_assert_eq!(game.version, before.version + 1);
                for (id, nation) in &game.state.players {
                    if *id != a.player_id {
                        prop_assert_eq!(Some(nation), before.state.players.get(id));
                    }
                }
                prop_assert!(game.state.players.len() <= before.state.players.len() + 1);
            }
        }

        #[test]
        fn replaying_the_log_gives_the_same_state(actions in prop::collection::vec(arb_action(), 0..100)) {
            let mut live = Game::new(1);
            for a in &actions {
                apply(&mut live, a);
            }
            // A replay from a serialised snapshot half-way must end in the same state.
            let mut replay = Game::new(1);
            let half = actions.len() / 2;
            for a in &actions[..half] {
                apply(&mut replay, a);
            }
            let json = serde_json::to_string(&replay).unwrap();
            let mut replay: Game = serde_json::from_str(&json).unwrap();
            for a in &actions[half..] {
                apply(&mut replay, a);
            }
            prop_assert_eq!(live, replay);
        }

        #[test]
        fn check_agrees_with_apply(actions in prop::collection::vec(arb_action(), 1..60)) {
            let mut game = Game::new(1);
            for a in &actions {
                let predicted = check(&game, &a.player_id, a.event_type);
                match apply(&mut game, a) {
                    Outcome::Applied => prop_assert!(predicted.is_ok()),
                    Outcome::Rejected(r) => prop_assert_eq!(predicted, Err(r)),
                }
            }
        }
    }
}
