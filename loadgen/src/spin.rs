//! Seed 004's spin event: one spin of a slot game, published to `gameplay`
//! keyed by the player id.
//!
//! The generator keeps the seed's ranges: players 100–110, games 10–15, a
//! stake of 10–300 and, about one spin in three, a win of 100–500.

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Player ids the seed draws from.
pub const PLAYERS: RangeInclusive<i32> = 100..=110;
/// Game ids the seed draws from.
pub const GAMES: RangeInclusive<i32> = 10..=15;
/// The stake of a spin.
pub const STAKES: RangeInclusive<i32> = 10..=300;
/// The amount of a winning spin.
pub const WINS: RangeInclusive<i64> = 100..=500;
/// One spin in this many wins (the seed's `randint(..) % winModulu == 0`).
pub const WIN_ONE_IN: u32 = 3;
/// The seed's `eventTime` format (`%Y-%m-%d %H:%M:%S.%f`, UTC).
pub const EVENT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// One spin, as the seed serialises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spin {
    pub player_id: i32,
    pub game_id: i32,
    pub win: i64,
    pub stake: i32,
    /// UTC, `2026-12-01 08:40:00.123456`.
    pub event_time: String,
}

impl Spin {
    /// The Kafka key: the player id as a decimal string.
    pub fn key(&self) -> String {
        self.player_id.to_string()
    }

    /// The Kafka value: the event as JSON.
    pub fn to_json(&self) -> String {
        // A struct of plain fields always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A new spin at `now`, drawn from `rng`.
pub fn generate(rng: &mut impl Rng, now: DateTime<Utc>) -> Spin {
    let player_id = rng.random_range(PLAYERS);
    let game_id = rng.random_range(GAMES);
    let stake = rng.random_range(STAKES);
    let win = if rng.random_range(0..WIN_ONE_IN) == 0 {
        rng.random_range(WINS)
    } else {
        0
    };
    Spin {
        player_id,
        game_id,
        win,
        stake,
        event_time: now.format(EVENT_TIME_FORMAT).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn spins_stay_in_the_seeds_ranges_and_win_about_one_in_three() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let now = DateTime::from_timestamp(1_764_578_400, 123_456_000).expect("time");
        let spins: Vec<Spin> = (0..3000).map(|_| generate(&mut rng, now)).collect();
        for s in &spins {
            assert!(PLAYERS.contains(&s.player_id));
            assert!(GAMES.contains(&s.game_id));
            assert!(STAKES.contains(&s.stake));
            assert!(s.win == 0 || WINS.contains(&s.win));
            assert_eq!(s.event_time, "2025-12-01 08:40:00.123456");
        }
        let wins = spins.iter().filter(|s| s.win > 0).count();
        assert!((800..1200).contains(&wins), "{wins} wins in 3000 spins");
    }

    #[test]
    fn the_event_has_the_seeds_field_names_and_key() {
        let spin = Spin {
            player_id: 101,
            game_id: 12,
            win: 250,
            stake: 20,
            event_time: "2026-12-01 08:40:00.000001".into(),
        };
        let json: serde_json::Value = serde_json::from_str(&spin.to_json()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"playerId": 101, "gameId": 12, "win": 250, "stake": 20,
                               "eventTime": "2026-12-01 08:40:00.000001"})
        );
        assert_eq!(spin.key(), "101");
    }
}
