//! The arena's board from the `games` topic's fighter records (issue 18).
//!
//! A fighter record is `{"record":"fighter","game_id":u64,"player_id":str,
//! "version":u64,"fighter":{"name","team","kills","last_ms",...}}`; every
//! other record is ignored. Each one with kills feeds
//! `arena-eliminations`: the opponents a player eliminated in their arena
//! (`set`: the count only grows, and player ids are unique across games).

use serde::Deserialize;

use crate::board::{Operator, Order, Rules, ScoreEvent};

/// The eliminations board.
pub const ELIMINATIONS: &str = "arena-eliminations";

/// The part of an arena player the board reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct FighterState {
    pub kills: u64,
    pub last_ms: i64,
}

/// A `games` record of kind `fighter`.
#[derive(Clone, Debug, Deserialize)]
pub struct FighterRecord {
    pub game_id: u64,
    pub player_id: String,
    pub version: u64,
    pub fighter: FighterState,
}

#[derive(Deserialize)]
struct Tag {
    record: Option<String>,
}

/// A fighter record, if `value` is one.
pub fn parse(value: &[u8]) -> Option<FighterRecord> {
    let value = shared::framing::json(value);
    let tag: Tag = serde_json::from_slice(value).ok()?;
    if tag.record.as_deref() != Some("fighter") {
        return None;
    }
    serde_json::from_slice(value).ok()
}

/// The board's rules.
pub fn rules() -> Rules {
    Rules {
        operator: Operator::Set,
        order: Order::Desc,
        start_ms: None,
        end_ms: None,
        reset: None,
        window_ms: None,
        grace_ms: 24 * 3_600_000,
    }
}

/// The event a record feeds, if the player eliminated anyone.
pub fn event(record: &FighterRecord) -> Option<ScoreEvent> {
    (record.fighter.kills > 0).then(|| ScoreEvent {
        id: format!(
            "{ELIMINATIONS}/{}/{}/{}",
            record.game_id, record.player_id, record.version
        ),
        player: record.player_id.clone(),
        value: record.fighter.kills as f64,
        time_ms: record.fighter.last_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fighter_with_kills_feeds_the_board_and_others_are_ignored() {
        let value = br#"{"record":"fighter","game_id":1000000000001,"player_id":"p","version":9,
            "fighter":{"name":"p","team":"a","seat":1,"x":0,"y":9,"hp":3,"grenades":2,"kills":2,"last_ms":5}}"#;
        let record = parse(value).expect("a fighter");
        let ev = event(&record).expect("an event");
        assert_eq!((ev.player.as_str(), ev.value, ev.time_ms), ("p", 2.0, 5));
        assert!(parse(br#"{"record":"nation","game_id":1}"#).is_none());
        let none = br#"{"record":"fighter","game_id":1,"player_id":"p","version":1,"fighter":{"kills":0}}"#;
        assert!(event(&parse(none).expect("a fighter")).is_none());
    }
}
