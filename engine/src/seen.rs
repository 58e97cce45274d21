//! Duplicates refused whatever the delay: the action ids each player of a
//! game has used, remembered for a window (24 h by default).
//!
//! An action's time is its id's own time when the id is a UUIDv7 (the page
//! and the bridge draw v7 ids), else when the engine first met it (its
//! `received_at_ms` stamp). Within the window an id seen before is a
//! duplicate and changes nothing; an id older than the window is refused
//! with `expired`, never applied (it may have been applied before and
//! forgotten since). "Now" is the latest stamp the game has seen, never a
//! clock, so a replay of `actions` decides the same.
//!
//! Memory: one entry per (player, id) of the window, in plain maps (a hash
//! map and an ordered set by time). They are never copied on the way: what
//! a batch changed is journalled ([`Journal`]), so the engine brings a game
//! back as the batch found it at the cost of the batch, not of the window.
//! The engine persists the ids on the `<games>.seen` topic
//! (compacted) in the same transaction as the update: one record per game
//! and batch listing the ids the batch remembered ([`SeenRecordKey`],
//! [`SeenRecord`]), and a tombstone for a record once every id in it has
//! left the window. It restores them with the game ([`Restoring`]). Earlier
//! engines wrote one record per id ([`SeenKey`]): those are still read, and
//! tombstoned the same way.

use std::sync::Arc;

use std::collections::{BTreeSet, HashMap};

/// How long an action id is remembered: 24 hours.
pub const DEFAULT_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// How far past its stamp an id's own time may claim to be (a fast client
/// clock); later claims count as the stamp, so no id can buy itself a
/// longer memory.
const FUTURE_SLACK_MS: u64 = 60_000;

/// The time an action id stands for: a UUIDv7's milliseconds (at most
/// [`FUTURE_SLACK_MS`] past `received_at_ms`), else `received_at_ms`.
pub fn id_time_ms(event_id: &str, received_at_ms: u64) -> u64 {
    uuid_v7_ms(event_id)
        .filter(|&t| t <= received_at_ms.saturating_add(FUTURE_SLACK_MS))
        .unwrap_or(received_at_ms)
}

/// The timestamp of a UUIDv7 in its text form: 32 hex digits, dashes
/// anywhere between them, the 13th digit a 7. Read in place: this runs once
/// per action.
fn uuid_v7_ms(id: &str) -> Option<u64> {
    let mut digits = 0u32;
    let mut value = 0u128;
    for b in id.bytes() {
        if b == b'-' {
            continue;
        }
        let digit = (b as char).to_digit(16)?;
        if digits == 32 {
            return None;
        }
        value = value << 4 | u128::from(digit);
        digits += 1;
    }
    if digits != 32 || (value >> 76) & 0xf != 7 {
        return None;
    }
    Some((value >> 80) as u64)
}

/// What [`Seen::check`] says of an action id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen within the window: handle it, then [`Seen::remember`] it at
    /// this time.
    New(u64),
    /// Seen before: nothing changes.
    Duplicate,
    /// Older than the window: refuse it.
    Expired,
}

/// The ids one game remembers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Each remembered (player, id), by [`key`], to its time.
    at: HashMap<Key, u64>,
    by_time: BTreeSet<(u64, Key)>,
    /// The latest stamp seen in this game.
    now_ms: u64,
    /// The `<games>.seen` records holding the ids remembered, by the time of
    /// their latest id: a record is tombstoned once that time leaves the
    /// window.
    records: BTreeSet<(u64, Arc<[u8]>)>,
}

/// An entry's key: the 128-bit XXH3 of the player and the id (the player's
/// length first, so two pairs never hash the same bytes). Sixteen bytes
/// however long the id, and no allocation. Two pairs of one game share a
/// key with odds of about n² / 2¹²⁹ for n ids in the window: 10⁻²¹ for a
/// billion.
type Key = u128;

fn key(player: &str, id: &str) -> Key {
    let len = (player.len() as u64).to_le_bytes();
    let mut buf = [0u8; 256];
    let total = len.len() + player.len() + id.len();
    if total <= buf.len() {
        buf[..8].copy_from_slice(&len);
        buf[8..8 + player.len()].copy_from_slice(player.as_bytes());
        buf[8 + player.len()..total].copy_from_slice(id.as_bytes());
        xxhash_rust::xxh3::xxh3_128(&buf[..total])
    } else {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&len);
        h.update(player.as_bytes());
        h.update(id.as_bytes());
        h.digest128()
    }
}

impl Seen {
    /// Judges `player`'s action `id` stamped `received_at_ms`.
    pub fn check(&self, player: &str, id: &str, received_at_ms: u64, window_ms: u64) -> Verdict {
        if self.at.contains_key(&key(player, id)) {
            return Verdict::Duplicate;
        }
        let at = id_time_ms(id, received_at_ms);
        let now = received_at_ms.max(self.now_ms);
        if at.saturating_add(window_ms) < now {
            Verdict::Expired
        } else {
            Verdict::New(at)
        }
    }

    /// Remembers `player`'s `id` at time `at`.
    pub fn remember(&mut self, player: &str, id: &str, at: u64) {
        self.remember_noting(player, id, at, None);
    }

    /// [`Seen::remember`], noting the change in `journal`.
    pub fn remember_noting(
        &mut self,
        player: &str,
        id: &str,
        at: u64,
        journal: Option<&mut Journal>,
    ) {
        let k = key(player, id);
        let before = self.at.insert(k, at);
        if let Some(old) = before {
            self.by_time.remove(&(old, k));
        }
        self.by_time.insert((at, k));
        if let Some(journal) = journal {
            journal.ops.push(Op::Remembered { key: k, before });
        }
    }

    /// Notes that the `<games>.seen` record keyed `key` holds ids whose
    /// latest time is `latest_ms`.
    pub fn stored(&mut self, key: Arc<[u8]>, latest_ms: u64) {
        self.records.insert((latest_ms, key));
    }

    /// Moves "now" to `stamp_ms` (if later) and forgets the ids that fell
    /// out of the window; returns the keys of the `<games>.seen` records
    /// whose every id is forgotten now (to be tombstoned).
    pub fn advance(&mut self, stamp_ms: u64, window_ms: u64) -> Vec<Arc<[u8]>> {
        self.advance_noting(stamp_ms, window_ms, None)
    }

    /// [`Seen::advance`], noting the changes in `journal`.
    pub fn advance_noting(
        &mut self,
        stamp_ms: u64,
        window_ms: u64,
        mut journal: Option<&mut Journal>,
    ) -> Vec<Arc<[u8]>> {
        self.now_ms = self.now_ms.max(stamp_ms);
        let expired = |at: u64, now: u64| at.saturating_add(window_ms) < now;
        while let Some((at, k)) = self.by_time.first().copied() {
            if !expired(at, self.now_ms) {
                break;
            }
            self.by_time.pop_first();
            self.at.remove(&k);
            if let Some(journal) = journal.as_deref_mut() {
                journal.ops.push(Op::Forgot { at, key: k });
            }
        }
        let mut gone = Vec::new();
        while let Some((at, k)) = self.records.first().cloned() {
            if !expired(at, self.now_ms) {
                break;
            }
            self.records.pop_first();
            if let Some(journal) = journal.as_deref_mut() {
                journal.ops.push(Op::Dropped {
                    latest: at,
                    key: k.clone(),
                });
            }
            gone.push(k);
        }
        gone
    }

    /// Takes back every change `journal` noted, latest first: the ids as
    /// they were when it began ([`Journal::of`]).
    pub fn undo(&mut self, journal: Journal) {
        for op in journal.ops.into_iter().rev() {
            match op {
                Op::Remembered { key, before } => {
                    if let Some(at) = self.at.remove(&key) {
                        self.by_time.remove(&(at, key));
                    }
                    if let Some(at) = before {
                        self.at.insert(key, at);
                        self.by_time.insert((at, key));
                    }
                }
                Op::Forgot { at, key } => {
                    self.at.insert(key, at);
                    self.by_time.insert((at, key));
                }
                Op::Dropped { latest, key } => {
                    self.records.insert((latest, key));
                }
            }
        }
        self.now_ms = journal.now_ms;
    }

    /// Whether `player`'s `id` is remembered.
    pub fn contains(&self, player: &str, id: &str) -> bool {
        self.at.contains_key(&key(player, id))
    }

    /// How many `<games>.seen` records hold the ids remembered.
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The latest stamp seen.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// The key of a `<games>.seen` record: the game, the offset on its `actions`
/// partition of the last action of the batch that wrote it, and which part
/// of that batch's ids it holds (a batch's ids are cut to fit a record).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeenRecordKey {
    pub game_id: u64,
    pub offset: i64,
    pub part: u32,
}

/// A `<games>.seen` record's value: ids remembered, as (player, id, time),
/// and the game's latest stamp when it was written. `None` (a tombstone):
/// every id of the record left the window.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeenRecord {
    pub ids: Vec<SeenId>,
    pub now_ms: u64,
}

/// The record earlier engines wrote per id: the key
/// names the entry, the value ([`SeenValue`]) its time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeenKey {
    pub game_id: u64,
    pub player_id: String,
    pub event_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeenValue {
    pub at_ms: u64,
    /// The game's latest stamp when it was written.
    pub now_ms: u64,
}

/// What a batch did to one game's [`Seen`], so it can be taken back
/// ([`Seen::undo`]) without a copy of the ids made before: a copy would
/// cost as much as the window holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    now_ms: u64,
    ops: Vec<Op>,
}

impl Journal {
    /// A journal of the changes to `seen` from now on.
    pub fn of(seen: &Seen) -> Journal {
        Journal {
            now_ms: seen.now_ms,
            ops: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    /// An id remembered; `before`: its former time, if it had one.
    Remembered { key: Key, before: Option<u64> },
    /// An id forgotten.
    Forgot { at: u64, key: Key },
    /// A record dropped (to be tombstoned).
    Dropped { latest: u64, key: Arc<[u8]> },
}

/// A `<games>.seen` key of either layout.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AnyKey {
    Record(SeenRecordKey),
    Entry(SeenKey),
}

/// The records of `<games>.seen` as read back, in offset order, by game;
/// [`Restoring::finish`] gives each game's [`Seen`].
#[derive(Debug, Default)]
pub struct Restoring {
    games: std::collections::HashMap<u64, GameRecords>,
    read: u64,
}

/// One id remembered, as a record holds it: (player, id, time).
pub type SeenId = (String, String, u64);

/// One game's live records by key: when each was read, and its ids.
#[derive(Debug, Default)]
struct GameRecords {
    live: std::collections::HashMap<Arc<[u8]>, (u64, Vec<SeenId>)>,
    now_ms: u64,
}

impl Restoring {
    /// One record read (`value` `None`: a tombstone). An undecodable one
    /// is an error and changes nothing.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let any: AnyKey =
            serde_json::from_slice(key).map_err(|e| format!("undecodable key: {e}"))?;
        let game_id = match &any {
            AnyKey::Record(k) => k.game_id,
            AnyKey::Entry(k) => k.game_id,
        };
        let Some(value) = value else {
            if let Some(game) = self.games.get_mut(&game_id) {
                game.live.remove(key);
            }
            return Ok(());
        };
        let undecodable = |e: serde_json::Error| format!("undecodable value: {e}");
        let (ids, now_ms) = match any {
            AnyKey::Record(_) => {
                let record: SeenRecord = serde_json::from_slice(value).map_err(undecodable)?;
                (record.ids, record.now_ms)
            }
            AnyKey::Entry(k) => {
                let v: SeenValue = serde_json::from_slice(value).map_err(undecodable)?;
                (vec![(k.player_id, k.event_id, v.at_ms)], v.now_ms)
            }
        };
        self.read += 1;
        let game = self.games.entry(game_id).or_default();
        game.now_ms = game.now_ms.max(now_ms);
        game.live.insert(Arc::from(key), (self.read, ids));
        Ok(())
    }

    /// Each game's ids from its records still live, later records winning,
    /// "now" the latest stamp any of its records carried. Nothing is
    /// forgotten yet: the caller advances with its window.
    pub fn finish(self) -> std::collections::HashMap<u64, Seen> {
        self.games
            .into_iter()
            .map(|(game_id, game)| {
                let mut records: Vec<_> = game.live.into_iter().collect();
                records.sort_by_key(|(_, (read, _))| *read);
                let mut seen = Seen {
                    now_ms: game.now_ms,
                    ..Seen::default()
                };
                for (key, (_, ids)) in records {
                    let mut latest = 0;
                    for (player, id, at) in ids {
                        seen.remember(&player, &id, at);
                        latest = latest.max(at);
                    }
                    seen.stored(key, latest);
                }
                (game_id, seen)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 60 * 60 * 1000;

    #[test]
    fn reads_a_uuid_v7s_time_and_ignores_other_ids() {
        let id = uuid::Uuid::now_v7().to_string();
        let t = uuid_v7_ms(&id).unwrap();
        assert!(t > 1_700_000_000_000);
        assert_eq!(id_time_ms(&id, t + 5), t);
        assert_eq!(id_time_ms("retry-1", 42), 42);
        assert_eq!(id_time_ms(&uuid::Uuid::new_v4().to_string(), 42), 42);
        // The digits count, not where the dashes are, nor the case.
        let simple = id.replace('-', "");
        assert_eq!(uuid_v7_ms(&simple.to_uppercase()), Some(t));
        assert_eq!(
            uuid_v7_ms(&format!("-{}-{}", &simple[..3], &simple[3..])),
            Some(t)
        );
        assert_eq!(uuid_v7_ms(&format!("{simple}0")), None, "33 digits");
        assert_eq!(uuid_v7_ms(&simple[1..]), None, "31 digits");
        assert_eq!(uuid_v7_ms(&format!("{}g", &simple[1..])), None, "not hex");
        assert_eq!(uuid_v7_ms(&format!("{}\u{e9}", &simple[1..])), None);
        assert_eq!(
            uuid_v7_ms("00000000-0064-7000-8000-000000000000"),
            Some(100)
        );
        // An id claiming the far future counts as its stamp.
        assert_eq!(
            id_time_ms(&id, t - 10 * FUTURE_SLACK_MS),
            t - 10 * FUTURE_SLACK_MS
        );
    }

    #[test]
    fn keys_tell_apart_where_the_player_ends_and_take_long_ids() {
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_eq!(key("p", "a"), key("p", "a"));
        let long = "x".repeat(1_000);
        assert_eq!(key("p", &long), key("p", &long.clone()));
        assert_ne!(key("p", &long), key("q", &long));
        let mut seen = Seen::default();
        seen.remember("p", &long, 1);
        assert!(seen.contains("p", &long) && !seen.contains("p", &long[1..]));
    }

    #[test]
    fn an_id_is_a_duplicate_for_the_whole_window_then_expired() {
        let mut seen = Seen::default();
        let w = DEFAULT_WINDOW_MS;
        assert_eq!(seen.check("p", "a", 1_000, w), Verdict::New(1_000));
        seen.remember("p", "a", 1_000);
        seen.advance(1_000, w);
        // Other actions move time on; within the window it stays a duplicate.
        for i in 0..1_000u64 {
            let stamp = 1_000 + i * (w / 2_000);
            seen.remember("q", &format!("x{i}"), stamp);
            seen.advance(stamp, w);
        }
        assert_eq!(seen.check("p", "a", 1_000 + 23 * H, w), Verdict::Duplicate);
        assert_eq!(
            seen.check("q", "a", 2_000, w),
            Verdict::New(2_000),
            "ids are per player"
        );
        // Past the window it is forgotten, and a retry is refused, not applied.
        seen.advance(1_000 + w + 1, w);
        assert!(!seen.contains("p", "a"));
        assert_eq!(
            seen.check("p", "a", 1_000 + w + 1, w),
            Verdict::New(1_000 + w + 1)
        );
        let v7 = uuid::Uuid::now_v7().to_string();
        let t = uuid_v7_ms(&v7).unwrap();
        assert_eq!(seen.check("p", &v7, t + w + 1, w), Verdict::Expired);
    }

    #[test]
    fn a_late_stamp_cannot_sneak_under_a_later_now() {
        let mut seen = Seen::default();
        let w = 10;
        seen.remember("p", "a", 100);
        seen.advance(200, w);
        // Forgotten; a retry stamped earlier than "now" by a slower bridge
        // is still judged against "now": refused, not applied again.
        assert_eq!(seen.check("p", "a", 105, w), Verdict::Expired);
        let v7 = format!(
            "{:08x}-{:04x}-7000-8000-000000000000",
            100u64 >> 16,
            100u64 & 0xffff
        );
        assert_eq!(uuid_v7_ms(&v7), Some(100));
        assert_eq!(seen.check("p", &v7, 105, w), Verdict::Expired);
    }

    fn record_key(game_id: u64, offset: i64) -> Vec<u8> {
        serde_json::to_vec(&SeenRecordKey {
            game_id,
            offset,
            part: 0,
        })
        .unwrap()
    }

    fn record(ids: &[(&str, &str, u64)], now_ms: u64) -> Vec<u8> {
        let ids = ids
            .iter()
            .map(|(p, i, t)| (p.to_string(), i.to_string(), *t))
            .collect();
        serde_json::to_vec(&SeenRecord { ids, now_ms }).unwrap()
    }

    #[test]
    fn a_record_is_tombstoned_once_its_latest_id_leaves_the_window() {
        let w = 10;
        let mut seen = Seen::default();
        seen.remember("p", "a", 100);
        seen.remember("p", "b", 105);
        let key: Arc<[u8]> = Arc::from(record_key(1, 7));
        seen.stored(key.clone(), 105);
        assert!(seen.advance(111, w).is_empty(), "b is still remembered");
        assert!(!seen.contains("p", "a") && seen.contains("p", "b"));
        assert_eq!(seen.advance(116, w), vec![key]);
        assert!(!seen.contains("p", "b"));
        assert_eq!(seen.records(), 0);
        assert!(seen.advance(200, w).is_empty(), "tombstoned once");
    }

    #[test]
    fn restores_both_layouts_with_tombstones_and_later_records_winning() {
        let mut restoring = Restoring::default();
        // An earlier engine's per-id records: one then forgotten.
        let old = |id: &str| {
            serde_json::to_vec(&SeenKey {
                game_id: 1,
                player_id: "p".into(),
                event_id: id.into(),
            })
            .unwrap()
        };
        let old_value = |at_ms| {
            serde_json::to_vec(&SeenValue {
                at_ms,
                now_ms: at_ms,
            })
            .unwrap()
        };
        restoring.push(&old("x"), Some(&old_value(50))).unwrap();
        restoring.push(&old("y"), Some(&old_value(60))).unwrap();
        restoring.push(&old("y"), None).unwrap();
        // This engine's records: two batches of game 1, one of game 2, the
        // second batch remembering "x" again later.
        restoring
            .push(
                &record_key(1, 10),
                Some(&record(&[("p", "a", 70), ("q", "b", 80)], 80)),
            )
            .unwrap();
        restoring
            .push(&record_key(1, 20), Some(&record(&[("p", "x", 90)], 95)))
            .unwrap();
        restoring
            .push(&record_key(2, 11), Some(&record(&[("p", "a", 1)], 1)))
            .unwrap();
        restoring.push(&record_key(2, 11), None).unwrap();
        assert!(restoring.push(b"not json", Some(b"{}")).is_err());
        assert!(restoring.push(&record_key(1, 30), Some(b"[")).is_err());

        let mut games = restoring.finish();
        let mut one = games.remove(&1).unwrap();
        assert_eq!(one.now_ms(), 95);
        assert_eq!(one.len(), 3, "x, a, b; y was tombstoned");
        assert!(one.contains("p", "x") && one.contains("p", "a") && one.contains("q", "b"));
        assert_eq!(one.records(), 3, "the old x record and two batches");
        // x was remembered again at 90: the old record goes at 50's expiry
        // without forgetting it.
        assert_eq!(one.advance(100, 45), vec![Arc::from(old("x"))]);
        assert!(one.contains("p", "x"));
        let gone = one.advance(200, 45);
        assert_eq!(gone.len(), 2);
        assert!(one.is_empty());
        let two = games.remove(&2).unwrap_or_default();
        assert!(two.is_empty(), "its only record was tombstoned");
    }
}
