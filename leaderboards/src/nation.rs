//! Build a Nation boards from the `games` topic's nation records.
//!
//! A nation record is `{"record":"nation","game_id":u64,"player_id":str,
//! "version":u64,"nation":{"name","gold","items":{"sword","shield","horse",
//! "knife"},"power","last_action_ms"}}`; other `record` values (the
//! per-game `head`) and unknown fields are ignored. Each record newer than the
//! last one seen for its nation (by `version`) feeds:
//! - `nation-power-game-{game_id}`: power, per game (`set`);
//! - `nation-power`: power across games (`set`; player ids are unique);
//! - `nation-gold-spent`: gold spent on items (`incr`; from the item levels
//!   gained, priced by `shared::rules`, so gold earned in the same record
//!   does not hide it);
//! - `nation-purchases`: purchases and upgrades (`incr`; levels gained).
//!
//! A record seen again (redelivered, or an older version) feeds nothing.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shared::Item;

use crate::board::{Operator, Order, Rules, ScoreEvent};

/// The global power board.
pub const POWER: &str = "nation-power";
/// Gold spent on items, across games.
pub const GOLD_SPENT: &str = "nation-gold-spent";
/// Purchases and upgrades, across games.
pub const PURCHASES: &str = "nation-purchases";
/// Per-game power boards: this prefix and the game id.
pub const POWER_GAME_PREFIX: &str = "nation-power-game-";

/// Item levels (0 = not owned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Levels {
    pub sword: u8,
    pub shield: u8,
    pub horse: u8,
    pub knife: u8,
}

impl Levels {
    fn level(&self, item: Item) -> u8 {
        match item {
            Item::Sword => self.sword,
            Item::Shield => self.shield,
            Item::Horse => self.horse,
            Item::Knife => self.knife,
        }
    }
}

/// The part of a nation the boards read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NationState {
    pub gold: u64,
    pub items: Levels,
    pub power: u64,
    pub last_action_ms: i64,
}

/// A `games` record of kind `nation`.
#[derive(Clone, Debug, Deserialize)]
pub struct NationRecord {
    pub game_id: u64,
    pub player_id: String,
    pub version: u64,
    pub nation: NationState,
}

#[derive(Deserialize)]
struct Tag {
    record: Option<String>,
}

/// A nation record, if `value` is one.
pub fn parse(value: &[u8]) -> Option<NationRecord> {
    let value = shared::framing::json(value);
    let tag: Tag = serde_json::from_slice(value).ok()?;
    if tag.record.as_deref() != Some("nation") {
        return None;
    }
    serde_json::from_slice(value).ok()
}

/// What the boards last saw of a nation (persisted with the boards).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub version: u64,
    pub items: Levels,
}

/// Gold that going from `old` to `new` levels cost: each level bought at its
/// price in `shared::rules` (level 1 is the purchase, then upgrades).
pub fn gold_spent(old: &Levels, new: &Levels) -> u64 {
    Item::ALL
        .into_iter()
        .map(|item| {
            (old.level(item)..new.level(item).max(old.level(item)))
                .map(|l| shared::rules::upgrade_cost(item, l))
                .sum::<u64>()
        })
        .sum()
}

/// Levels gained from `old` to `new`.
pub fn levels_gained(old: &Levels, new: &Levels) -> u64 {
    Item::ALL
        .into_iter()
        .map(|item| u64::from(new.level(item).saturating_sub(old.level(item))))
        .sum()
}

/// The rules of a nation board.
pub fn rules(board: &str) -> Rules {
    let operator = if board == GOLD_SPENT || board == PURCHASES {
        Operator::Incr
    } else {
        Operator::Set
    };
    Rules {
        operator,
        order: Order::Desc,
        start_ms: None,
        end_ms: None,
        reset: None,
        window_ms: None,
        // Records of one game arrive in order; games interleave by minutes
        // at most when a partition lags: a day of grace.
        grace_ms: 24 * 3_600_000,
    }
}

/// The last version seen of each nation, and the events a record feeds.
#[derive(Debug, Default)]
pub struct Tracker {
    pub seen: HashMap<(u64, String), Seen>,
}

impl Tracker {
    /// The `(board, event)` pairs `record` feeds; empty if it was seen.
    pub fn events(&mut self, record: &NationRecord) -> Vec<(String, ScoreEvent)> {
        let key = (record.game_id, record.player_id.clone());
        let old = self.seen.get(&key).copied();
        if old.is_some_and(|s| s.version >= record.version) {
            return Vec::new();
        }
        let new = Seen {
            version: record.version,
            items: record.nation.items,
        };
        self.seen.insert(key, new);
        let old_items = old.map(|s| s.items).unwrap_or_default();
        let id = |board: &str| {
            format!(
                "{board}/{}/{}/{}",
                record.game_id, record.player_id, record.version
            )
        };
        let event = |board: &str, value: f64| ScoreEvent {
            id: id(board),
            player: record.player_id.clone(),
            value,
            time_ms: record.nation.last_action_ms,
        };
        let power = record.nation.power as f64;
        let game_board = format!("{POWER_GAME_PREFIX}{}", record.game_id);
        let mut out = vec![
            (game_board.clone(), event(&game_board, power)),
            (POWER.to_string(), event(POWER, power)),
        ];
        let spent = gold_spent(&old_items, &record.nation.items);
        if spent > 0 {
            out.push((GOLD_SPENT.to_string(), event(GOLD_SPENT, spent as f64)));
        }
        let bought = levels_gained(&old_items, &record.nation.items);
        if bought > 0 {
            out.push((PURCHASES.to_string(), event(PURCHASES, bought as f64)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::Board;

    fn record(
        game: u64,
        player: &str,
        version: u64,
        items: serde_json::Value,
        power: u64,
        t: i64,
    ) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "record": "nation", "game_id": game, "player_id": player, "version": version,
            "nation": {"name": player, "gold": 5, "items": items, "power": power,
                       "last_action_ms": t, "future_field": true},
            "also_unknown": 1
        }))
        .expect("json")
    }

    #[test]
    fn parses_nation_records_and_ignores_heads_and_other_shapes() {
        let r = parse(&record(
            3,
            "p1",
            7,
            serde_json::json!({"sword": 1}),
            3,
            1000,
        ))
        .expect("nation");
        assert_eq!((r.game_id, r.player_id.as_str(), r.version), (3, "p1", 7));
        assert_eq!(r.nation.items.sword, 1);
        assert!(parse(br#"{"record":"head","game_id":3,"since":0,"version":7}"#).is_none());
        assert!(parse(br#"{"game_id":1,"version":42,"state":{}}"#).is_none());
        assert!(parse(b"not json").is_none());
    }

    #[test]
    fn gold_spent_prices_each_level_bought() {
        let none = Levels::default();
        let sword1 = Levels { sword: 1, ..none };
        let sword3 = Levels { sword: 3, ..none };
        let p = shared::rules::price(Item::Sword);
        assert_eq!(gold_spent(&none, &sword1), p);
        assert_eq!(gold_spent(&sword1, &sword3), 2 * p + 3 * p);
        assert_eq!(gold_spent(&sword3, &sword1), 0);
        assert_eq!(levels_gained(&none, &sword3), 3);
    }

    #[test]
    fn records_feed_the_boards_once_per_version() {
        let mut tracker = Tracker::default();
        let mut boards: HashMap<String, Board> = HashMap::new();
        let mut feed = |tracker: &mut Tracker, raw: Vec<u8>| {
            let r = parse(&raw).expect("nation");
            for (board, ev) in tracker.events(&r) {
                boards
                    .entry(board.clone())
                    .or_insert_with(|| Board::new(rules(&board)).expect("board"))
                    .apply(&ev);
            }
        };
        feed(
            &mut tracker,
            record(1, "a", 1, serde_json::json!({}), 0, 1000),
        );
        feed(
            &mut tracker,
            record(1, "a", 2, serde_json::json!({"sword": 1}), 3, 1100),
        );
        feed(
            &mut tracker,
            record(1, "a", 2, serde_json::json!({"sword": 1}), 3, 1100),
        ); // redelivered
        feed(
            &mut tracker,
            record(1, "a", 1, serde_json::json!({}), 0, 1000),
        ); // older
        feed(
            &mut tracker,
            record(
                2,
                "b",
                5,
                serde_json::json!({"horse": 2, "knife": 1}),
                9,
                1200,
            ),
        );
        let top =
            |tracker: &Tracker, boards: &HashMap<String, Board>, id: &str| -> Vec<(String, f64)> {
                let _ = tracker;
                boards[id]
                    .page(10, None)
                    .0
                    .into_iter()
                    .map(|r| (r.player_id, r.score))
                    .collect()
            };
        assert_eq!(
            top(&tracker, &boards, POWER),
            [("b".into(), 9.0), ("a".into(), 3.0)]
        );
        assert_eq!(
            top(&tracker, &boards, "nation-power-game-1"),
            [("a".into(), 3.0)]
        );
        let horse = shared::rules::price(Item::Horse);
        let knife = shared::rules::price(Item::Knife);
        let sword = shared::rules::price(Item::Sword);
        assert_eq!(
            top(&tracker, &boards, GOLD_SPENT),
            [
                ("b".into(), (horse * 3 + knife) as f64),
                ("a".into(), sword as f64)
            ]
        );
        assert_eq!(
            top(&tracker, &boards, PURCHASES),
            [("b".into(), 3.0), ("a".into(), 1.0)]
        );
    }
}
