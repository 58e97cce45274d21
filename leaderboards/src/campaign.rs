//! Campaign boards: their definitions (a JSON file, plus the admin API) and
//! how a source record becomes a [`ScoreEvent`].
//!
//! A definition names a source topic, a metric, and the board's [`Rules`].
//! Seed 004's campaign ships as the ready example ([`seed_campaign`]): the
//! best win/stake ratio per player on `gameplay`, over the whole campaign and
//! over its last five minutes.

use std::hash::{Hash, Hasher};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::board::{default_grace_ms, Operator, Order, Rules, ScoreEvent};

/// What a board scores from a `gameplay` spin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `win / stake` (a spin with no stake counts 0).
    WinStakeRatio,
    Win,
    Stake,
    /// 1 per spin (with `incr`: spins played).
    Spins,
}

/// One campaign board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CampaignDef {
    /// URL-safe id: `[a-z0-9-]`, 1 to 64 characters.
    #[schemars(length(min = 1, max = 64), pattern("^[a-z0-9-]{1,64}$"))]
    pub id: String,
    pub title: String,
    /// The topic of spin events (seed 004's shape).
    #[serde(default = "default_source")]
    pub source: String,
    pub metric: Metric,
    #[serde(flatten)]
    pub rules: Rules,
    /// Rows pushed over `/ws/leaderboards/{board}`.
    #[serde(default = "default_top_n")]
    pub top_n: usize,
}

fn default_source() -> String {
    "gameplay".into()
}

fn default_top_n() -> usize {
    10
}

/// Why a definition is refused.
#[derive(Debug, thiserror::Error)]
pub enum DefError {
    #[error("a board id is 1 to 64 of a-z, 0-9 and '-': {0:?}")]
    Id(String),
    #[error(transparent)]
    Rules(#[from] crate::board::RulesError),
    #[error("cannot read the campaigns file {0}: {1}")]
    File(String, String),
}

impl CampaignDef {
    /// Checks the id and the rules (cron, window).
    pub fn validate(&self) -> Result<(), DefError> {
        let ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(DefError::Id(self.id.clone()));
        }
        crate::board::Board::new(self.rules.clone())?;
        Ok(())
    }
}

/// Seed 004's campaign: best win/stake ratio per player on `gameplay`, over
/// the whole campaign and over the last five minutes.
pub fn seed_campaign(source: &str) -> Vec<CampaignDef> {
    let rules = Rules {
        operator: Operator::Best,
        order: Order::Desc,
        start_ms: None,
        end_ms: None,
        reset: None,
        window_ms: None,
        grace_ms: default_grace_ms(),
    };
    vec![
        CampaignDef {
            id: "spins-best-ratio".into(),
            title: "Best win/stake ratio".into(),
            source: source.into(),
            metric: Metric::WinStakeRatio,
            rules: rules.clone(),
            top_n: 10,
        },
        CampaignDef {
            id: "spins-best-ratio-5m".into(),
            title: "Best win/stake ratio, last 5 minutes".into(),
            source: source.into(),
            metric: Metric::WinStakeRatio,
            rules: Rules {
                window_ms: Some(5 * 60_000),
                ..rules
            },
            top_n: 10,
        },
    ]
}

/// Reads a JSON array of [`CampaignDef`] from `path`.
pub fn load(path: &std::path::Path) -> Result<Vec<CampaignDef>, DefError> {
    let file = |e: String| DefError::File(path.display().to_string(), e);
    let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
    let defs: Vec<CampaignDef> = serde_json::from_str(&text).map_err(|e| file(e.to_string()))?;
    for def in &defs {
        def.validate()?;
    }
    Ok(defs)
}

/// Seed 004's spin, as read (unknown fields ignored).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpinRecord {
    pub player_id: i64,
    pub game_id: i64,
    pub win: i64,
    pub stake: i64,
    pub event_time: String,
}

/// `eventTime` (`%Y-%m-%d %H:%M:%S%.f`, UTC, or RFC 3339) in ms.
pub fn event_time_ms(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_millis())
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis())
        })
}

/// A spin's identity for deduplication: its content (player, game, win,
/// stake and a microsecond event time identify a spin; the same record
/// produced twice is one spin).
pub fn spin_id(value: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    format!("spin-{:016x}-{}", h.finish(), value.len())
}

/// The score `metric` takes from a spin record; `None` if the record is not
/// a spin.
pub fn score_event(metric: Metric, value: &[u8]) -> Option<ScoreEvent> {
    let spin: SpinRecord = serde_json::from_slice(value).ok()?;
    let time_ms = event_time_ms(&spin.event_time)?;
    let value_of = match metric {
        Metric::WinStakeRatio if spin.stake > 0 => spin.win as f64 / spin.stake as f64,
        Metric::WinStakeRatio => 0.0,
        Metric::Win => spin.win as f64,
        Metric::Stake => spin.stake as f64,
        Metric::Spins => 1.0,
    };
    Some(ScoreEvent {
        id: spin_id(value),
        player: spin.player_id.to_string(),
        value: value_of,
        time_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_becomes_a_ratio_at_its_event_time() {
        let raw = br#"{"playerId":101,"gameId":12,"win":250,"stake":20,"eventTime":"2025-12-01 08:40:00.123456","extra":1}"#;
        let ev = score_event(Metric::WinStakeRatio, raw).expect("a spin");
        assert_eq!(ev.player, "101");
        assert_eq!(ev.value, 12.5);
        assert_eq!(ev.time_ms, 1_764_578_400_123);
        assert_eq!(ev.id, score_event(Metric::Win, raw).expect("spin").id);
        assert!(score_event(Metric::Win, b"{}").is_none());
    }

    #[test]
    fn the_seed_campaign_is_valid_and_round_trips_as_a_file() {
        let defs = seed_campaign("gameplay");
        for d in &defs {
            d.validate().expect("valid");
        }
        let path = std::env::temp_dir().join(format!("campaigns-{}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_string(&defs).expect("json")).expect("write");
        assert_eq!(load(&path).expect("load"), defs);
        let _ = std::fs::remove_file(&path);
        let mut bad = defs[0].clone();
        bad.id = "Bad Id".into();
        assert!(bad.validate().is_err());
        bad.id = "ok".into();
        bad.rules.reset = Some("every tuesday".into());
        assert!(bad.validate().is_err());
    }
}
