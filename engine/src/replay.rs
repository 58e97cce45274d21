//! Replay: rebuild every game from the `actions` log and compare it with the
//! latest state on `games`.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::Message;
use shared::{GamesFold, GamesRecord};

use crate::handle::{handle, GameSlot};
use crate::kafka::{read_to_end, restorer};
use crate::{Config, EngineError};

/// What [`replay`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records read from `actions`.
    pub actions: u64,
    /// Records that could not be handled (they are on the dead-letter topic).
    pub dead_letters: u64,
    /// Games whose replayed version and state equal the latest on `games`.
    pub agree: usize,
    /// Games that differ, with (replayed version, version on `games`).
    pub disagree: Vec<(u64, u64, u64)>,
    /// Games with actions but no update on `games`.
    pub missing: Vec<u64>,
}

impl ReplayReport {
    /// Every game agrees.
    pub fn ok(&self) -> bool {
        self.disagree.is_empty() && self.missing.is_empty()
    }
}

/// Reads `actions` and `games` from the beginning to their current ends,
/// applies every action with the engine's own handling step and compares.
/// Run it when the engine has caught up, or lagging games show as
/// disagreeing.
pub fn replay(config: &Config) -> Result<ReplayReport, EngineError> {
    let reader = restorer(config)?;
    let stall = std::time::Duration::from_millis(config.restore_stall_ms);
    let partitions = |topic: &str| -> Result<Vec<i32>, EngineError> {
        let md = reader
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(EngineError::kafka("metadata"))?;
        Ok(md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    };
    let mut report = ReplayReport::default();
    let mut games: HashMap<u64, GameSlot> = HashMap::new();
    let action_parts = partitions(&config.actions_topic)?;
    read_to_end(
        &reader,
        &config.actions_topic,
        &action_parts,
        stall,
        |msg| {
            report.actions += 1;
            if let crate::Handled::DeadLetter { .. } = handle(&mut games, msg, config.partitions) {
                report.dead_letters += 1;
            }
        },
    )?;
    let mut fold = GamesFold::default();
    let game_parts = partitions(&config.games_topic)?;
    read_to_end(&reader, &config.games_topic, &game_parts, stall, |msg| {
        if let Some(record) = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<GamesRecord>(shared::framing::json(p)).ok())
        {
            fold.push(record);
        }
    })?;
    let latest = fold.games;
    let mut ids: Vec<u64> = games.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let replayed = &games[&id].game;
        match latest.get(&id) {
            None => report.missing.push(id),
            Some(folded) if folded.game() == *replayed => report.agree += 1,
            Some(update) => report.disagree.push((id, replayed.version, update.version)),
        }
    }
    Ok(report)
}
