//! Engine memory per nation (BENCHMARKS.md, issue 11):
//! `cargo run --release -p engine --example state_memory [nations]`.
//! Joins `nations` players to one game the way the engine does (the handling
//! step, [`engine::handle::handle`]) and prints the resident memory added per
//! nation: the nation itself plus the join's remembered id (see the
//! `seen_memory` example for an id alone). Beside it, in the same run: the
//! nation's bytes on `games` (its compacted record), the smallest form it
//! could take in memory without an index.

use std::collections::HashMap;

use rdkafka::message::{OwnedMessage, Timestamp};
use shared::{partition_for, ActionEnvelope, ActionType, GamesRecord, NationRecord};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let game_id = 1;
    let records: Vec<OwnedMessage> = (0..n)
        .map(|i| {
            let join = ActionEnvelope {
                name: Some(format!("Nation {i}")),
                ..ActionEnvelope::new(
                    uuid::Uuid::now_v7().to_string(),
                    game_id,
                    uuid::Uuid::new_v4().to_string(),
                    ActionType::Join,
                    1_763_800_000_000 + i,
                )
            };
            OwnedMessage::new(
                Some(serde_json::to_vec(&join).unwrap()),
                None,
                "actions".into(),
                Timestamp::NotAvailable,
                partition_for(game_id, 12),
                i as i64,
                None,
            )
        })
        .collect();
    let mut on_topic = 0;
    let before = resident_bytes();
    let mut games = HashMap::new();
    // In batches of 1,000, as the engine's loop flushes them.
    for batch in records.chunks(1_000) {
        for r in batch {
            engine::handle::handle(&mut games, r, 12);
        }
        let steps = engine::flush(&mut games);
        if on_topic == 0 {
            on_topic = steps[0]
                .nations
                .iter()
                .map(|n: &NationRecord| {
                    serde_json::to_vec(&GamesRecord::Nation(n.clone()))
                        .unwrap()
                        .len()
                })
                .sum::<usize>()
                / batch.len();
        }
    }
    let after = resident_bytes();
    let slot = &games[&game_id];
    assert_eq!(slot.game.state.players.len() as u64, n);
    let per_nation = (after - before) as f64 / n as f64;
    println!(
        "{n} nations in one game: {per_nation:.0} bytes resident per nation (with its join's remembered id); its record on games: {on_topic} bytes; ratio {:.2}",
        per_nation / on_topic as f64
    );
}
