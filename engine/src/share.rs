//! A batch's handling, spread over threads when it is big.
//!
//! Games are independent: an action changes only its own game. So a big
//! batch is split by partition into shares, one per thread: each thread
//! handles its share's records in order against its own games, flushes them
//! into steps and encodes the steps and the ids they remembered. What goes to
//! Kafka is then sent from the loop's thread, in the same transaction, as a
//! single thread would have sent it. Decoding goes first, spread the same
//! way, since a record's game is only known once it is decoded.
//!
//! One thread did all of it before: the engine used 0.9 of a core while the
//! Kafka Streams peer, with two stream threads, used 1.6 (BENCHMARKS.md, P3).
//! A small batch (the latency path, below [`PARALLEL_MIN_RECORDS`]) stays on
//! the loop's thread: starting threads would cost more than it saves.

use std::collections::HashMap;
use std::sync::Arc;

use shared::{partition_for, ActionEnvelope, GameDelta};

use crate::handle::{decode, flush, handle_decoded, GameSlot, Handled, Record, Step, Undo};
use crate::metrics::Tally;
use crate::seen::{SeenId, SeenRecord, SeenRecordKey};
use crate::EngineError;

/// Batches of fewer records are handled on the loop's thread.
pub const PARALLEL_MIN_RECORDS: usize = 2_048;

/// What a share needs to know of the engine's settings.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub partitions: i32,
    pub window_ms: u64,
    /// Largest `games` record (key and value), from the topic's limits.
    pub games_limit: usize,
    /// Compute each step's delta for an in-process listener.
    pub with_delta: bool,
}

/// A batch (or a share of it), handled and encoded, ready to send.
#[derive(Debug, Default)]
pub struct Prepared {
    pub tally: Tally,
    /// The records that go to the dead-letter topic: index in the batch, why.
    pub dead: Vec<(usize, String)>,
    /// One per game touched, by game id.
    pub steps: Vec<Encoded>,
}

/// A game's step, encoded.
#[derive(Debug)]
pub struct Encoded {
    pub game_id: u64,
    /// The code of each action the step rejected.
    pub rejections: Vec<&'static str>,
    /// The `games` records: each changed nation, then the head.
    pub records: Vec<(String, Vec<u8>)>,
    /// The largest of them, key and value.
    pub largest: usize,
    pub delta: Option<GameDelta>,
    /// The `<games>.seen` records of the step, when it fits in
    /// [`Params::games_limit`]; `None`: it does not, and the game's batch is
    /// redone action by action (`Engine::redo_bounded`) before its ids are
    /// written.
    pub seen: Option<SeenOutputs>,
}

/// A game's records for `<games>.seen`: the ids the batch remembered (key,
/// value), and the tombstones of records whose every id left the window.
#[derive(Debug, Default)]
pub struct SeenOutputs {
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    pub tombstones: Vec<Arc<[u8]>>,
}

/// A step's `games` records, keyed: each changed nation (or arena player
/// and round), then the head.
pub fn encode(step: Step) -> Result<Vec<(String, Vec<u8>)>, EngineError> {
    step.records()
        .into_iter()
        .map(|record| Ok((record.key(), serde_json::to_vec(&record)?)))
        .collect()
}

/// The largest record of a step, in bytes (key and value).
pub fn largest(records: &[(String, Vec<u8>)]) -> usize {
    records
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .max()
        .unwrap_or(0)
}

/// Cuts a batch's remembered ids into parts of about `budget` bytes of JSON
/// each (at least one id per part).
pub fn seen_parts(ids: Vec<SeenId>, budget: usize) -> Vec<Vec<SeenId>> {
    let mut parts: Vec<Vec<SeenId>> = Vec::new();
    let mut size = 0;
    for id in ids {
        // Quotes, commas, brackets and up to 20 digits of time.
        let len = id.0.len() + id.1.len() + 30;
        match parts.last_mut() {
            Some(part) if size + len <= budget => part.push(id),
            _ => {
                size = 0;
                parts.push(vec![id]);
            }
        }
        size += len;
    }
    parts
}

/// Takes what `slot` (game `game_id`) remembered and forgot since the last
/// time, as `<games>.seen` records: the ids in one record per `budget`
/// bytes, keyed by the game, the batch's last offset and the part; a
/// tombstone for each record whose every id was forgotten. Notes the new
/// records in the game's memory, to tombstone them in turn.
pub fn seen_outputs(
    slot: &mut GameSlot,
    game_id: u64,
    budget: usize,
) -> Result<SeenOutputs, EngineError> {
    let added = std::mem::take(&mut slot.seen_added);
    let tombstones = std::mem::take(&mut slot.seen_gone);
    let now_ms = slot.seen.now_ms();
    // Unique per game: offsets only grow, and a batch writes once.
    let offset = slot.actions_offset.unwrap_or(-1);
    let mut records = Vec::new();
    for (part, ids) in seen_parts(added, budget).into_iter().enumerate() {
        let key = serde_json::to_vec(&SeenRecordKey {
            game_id,
            offset,
            part: part as u32,
        })?;
        let latest = ids.iter().map(|(_, _, at)| *at).max().unwrap_or(0);
        let value = serde_json::to_vec(&SeenRecord { ids, now_ms })?;
        slot.seen.stored(Arc::from(&key[..]), latest);
        records.push((key, value));
    }
    Ok(SeenOutputs {
        records,
        tombstones,
    })
}

/// The budget of one `<games>.seen` record: half a `games` record.
pub fn seen_budget(games_limit: usize) -> usize {
    (games_limit / 2).max(1)
}

/// Handles `items` (indices into `batch`, with their decoded actions, in
/// batch order) against `games`, keeping in `undo` how to bring back each
/// game as the batch found it; then flushes every game of `games` the batch
/// touched and encodes its step (and its ids, when the step fits).
pub fn prepare(
    games: &mut HashMap<u64, GameSlot>,
    undo: &mut HashMap<u64, Undo>,
    batch: &[Record],
    items: impl IntoIterator<Item = (usize, Result<ActionEnvelope, String>)>,
    params: &Params,
) -> Result<Prepared, EngineError> {
    let mut out = Prepared::default();
    for (i, action) in items {
        let handled = handle_decoded(
            games,
            Some(undo),
            &batch[i],
            action,
            params.partitions,
            params.window_ms,
        );
        out.tally.add(&handled);
        if let Handled::DeadLetter { error } = handled {
            out.dead.push((i, error));
        }
    }
    for step in flush(games) {
        let game_id = step.head.game_id;
        let rejections = step.head.rejected.iter().map(|r| r.reason.code()).collect();
        let delta = params.with_delta.then(|| step.delta());
        let records = encode(step)?;
        let largest = largest(&records);
        let seen = if largest <= params.games_limit {
            let slot = games.get_mut(&game_id).expect("a flushed game is held");
            Some(seen_outputs(
                slot,
                game_id,
                seen_budget(params.games_limit),
            )?)
        } else {
            None
        };
        out.steps.push(Encoded {
            game_id,
            rejections,
            records,
            largest,
            delta,
            seen,
        });
    }
    Ok(out)
}

/// [`prepare`] of the whole `batch`: on the calling thread when it is small
/// or `threads` is 1, else in `threads` shares by partition, each on a
/// thread of its own, with the games they touch moved out of `games` for
/// the while and back after. The result is the same either way: the same
/// steps (by game id), the same dead letters (in batch order).
pub fn prepare_batch(
    games: &mut HashMap<u64, GameSlot>,
    undo: &mut HashMap<u64, Undo>,
    batch: &[Record],
    threads: usize,
    params: &Params,
) -> Result<Prepared, EngineError> {
    if threads <= 1 || batch.len() < PARALLEL_MIN_RECORDS {
        let items = batch
            .iter()
            .enumerate()
            .map(|(i, r)| (i, decode(r.payload.as_deref())));
        return prepare(games, undo, batch, items, params);
    }
    let decoded = decode_all(batch, threads);
    let mut items: Vec<Vec<(usize, Result<ActionEnvelope, String>)>> =
        (0..threads).map(|_| Vec::new()).collect();
    let mut shares: Vec<HashMap<u64, GameSlot>> = (0..threads).map(|_| HashMap::new()).collect();
    for (i, action) in decoded.into_iter().enumerate() {
        let partition = batch[i].partition;
        let share = partition.rem_euclid(threads as i32) as usize;
        if let Ok(a) = &action {
            // A misrouted record touches no game (it is dead-lettered):
            // only a game on the record's own partition moves.
            if partition_for(a.game_id, params.partitions) == partition {
                if let Some(slot) = games.remove(&a.game_id) {
                    shares[share].insert(a.game_id, slot);
                }
            }
        }
        items[share].push((i, action));
    }
    let mut undos: Vec<HashMap<u64, Undo>> = (0..threads).map(|_| HashMap::new()).collect();
    let results: Vec<Result<Prepared, EngineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .iter_mut()
            .zip(undos.iter_mut())
            .zip(items)
            .map(|((share, undo), items)| {
                s.spawn(move || prepare(share, undo, batch, items, params))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(EngineError::Panicked)))
            .collect()
    });
    for share in shares {
        games.extend(share);
    }
    for share in undos {
        undo.extend(share);
    }
    let mut out = Prepared::default();
    for result in results {
        let share = result?;
        out.tally.merge(&share.tally);
        out.dead.extend(share.dead);
        out.steps.extend(share.steps);
    }
    out.dead.sort_by_key(|(i, _)| *i);
    out.steps.sort_by_key(|s| s.game_id);
    Ok(out)
}

/// Decodes every record of `batch`, in `threads` runs side by side.
fn decode_all(batch: &[Record], threads: usize) -> Vec<Result<ActionEnvelope, String>> {
    let run = batch.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(run)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|r| decode(r.payload.as_deref()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("decoding does not panic"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ActionType;

    const N: i32 = 6;

    fn record(i: usize, game_id: u64, player: &str, t: ActionType) -> Record {
        let a = ActionEnvelope::new(format!("a{i}"), game_id, player, t, 1_000 + i as u64);
        Record {
            partition: partition_for(game_id, N),
            offset: i as i64,
            timestamp_ms: None,
            key: None,
            payload: Some(serde_json::to_vec(&a).unwrap()),
        }
    }

    /// A batch over 40 games: joins, purchases until the gold runs out
    /// (rejections), a duplicate id, garbage and a misrouted record.
    fn batch(len: usize) -> Vec<Record> {
        let kinds = [
            ActionType::Default,
            ActionType::PurchaseKnife,
            ActionType::PurchaseSword,
            ActionType::UpgradeShield,
        ];
        let mut batch: Vec<Record> = (0..len)
            .map(|i| {
                let game = (i % 40) as u64;
                let t = if i < 80 {
                    ActionType::Join
                } else {
                    kinds[i % kinds.len()]
                };
                record(i, game, &format!("p{}", i % 80), t)
            })
            .collect();
        batch[100].payload = Some(b"not json".to_vec());
        batch[101] = Record {
            offset: 101,
            ..batch[5].clone()
        };
        batch[102].partition = (batch[102].partition + 1) % N;
        batch
    }

    fn params() -> Params {
        Params {
            partitions: N,
            window_ms: crate::seen::DEFAULT_WINDOW_MS,
            games_limit: 1 << 20,
            with_delta: true,
        }
    }

    /// Every step's records, ids, tombstones and rejections, comparable.
    fn summary(p: &Prepared) -> Vec<String> {
        p.steps
            .iter()
            .map(|s| {
                let seen = s.seen.as_ref().expect("fits");
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?}",
                    s.game_id, s.records, seen.records, seen.tombstones, s.rejections, s.delta
                )
            })
            .collect()
    }

    #[test]
    fn threads_give_what_one_thread_gives() {
        let batch = batch(PARALLEL_MIN_RECORDS + 500);
        let (mut one, mut one_undo) = (HashMap::new(), HashMap::new());
        let alone = prepare_batch(&mut one, &mut one_undo, &batch, 1, &params()).unwrap();
        for threads in [2, 3, 4] {
            let (mut games, mut undo) = (HashMap::new(), HashMap::new());
            let shared = prepare_batch(&mut games, &mut undo, &batch, threads, &params()).unwrap();
            assert_eq!(summary(&shared), summary(&alone), "{threads} threads");
            assert_eq!(shared.dead, alone.dead);
            assert_eq!(shared.tally, alone.tally);
            assert_eq!(games, one, "every game back, as one thread left it");
            assert_eq!(undo.len(), one_undo.len());
        }
        assert_eq!(alone.dead.len(), 2, "garbage and the misrouted record");
        assert_eq!(alone.steps.len(), 40);
        assert!(alone.steps.iter().any(|s| !s.rejections.is_empty()));
    }

    #[test]
    fn a_second_batch_goes_on_from_where_the_first_left_the_games() {
        let all = batch(2 * PARALLEL_MIN_RECORDS + 200);
        let (first, second) = all.split_at(PARALLEL_MIN_RECORDS + 100);
        let run = |threads| {
            let (mut games, mut undo) = (HashMap::new(), HashMap::new());
            prepare_batch(&mut games, &mut undo, first, threads, &params()).unwrap();
            undo.clear();
            let again = prepare_batch(&mut games, &mut undo, second, threads, &params()).unwrap();
            (games, summary(&again))
        };
        assert_eq!(run(2), run(1));
    }

    #[test]
    fn a_batchs_ids_are_cut_into_parts_that_fit() {
        let ids: Vec<SeenId> = (0..100u64)
            .map(|i| ("player".to_string(), format!("id-{i:04}"), i))
            .collect();
        // 6 + 7 + 30 = 43 bytes an id: 10 to a part of 430.
        let parts = seen_parts(ids.clone(), 430);
        assert_eq!(parts.len(), 10);
        assert!(parts.iter().all(|p| p.len() == 10));
        assert_eq!(parts.concat(), ids, "every id once, in order");
        assert_eq!(seen_parts(ids.clone(), usize::MAX).len(), 1);
        // An id over the budget still goes, alone.
        assert_eq!(seen_parts(ids[..3].to_vec(), 1).len(), 3);
        assert!(seen_parts(Vec::new(), 430).is_empty());
    }
}
