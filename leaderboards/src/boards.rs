//! [`Boards`]: every board of the role, fed record by record, and what it
//! writes to (and rebuilds from) the compacted `leaderboards` topic.
//!
//! Exactly once: the next offset of every input partition is kept *with the
//! boards* (`offsets/{topic}/{partition}` records, in the same Kafka
//! transaction as the entries they produced), so a restart resumes where the
//! written boards end, and a record below it (a redelivery) is skipped.
//!
//! State records (key -> JSON value; a tombstone removes):
//! - `def/{board}`: a campaign definition added through the admin API;
//! - `board/{board}`: `{"period", "watermark"}`;
//! - `entry/{board}/{player}`: `{"period", "entry"}`;
//! - `seen/{board}/{chunk}`: `[[event_time_ms, "id"], ...]`, the event ids a
//!   transaction's records brought (at most [`crate::board::MAX_CHUNK_IDS`]
//!   per chunk), so a duplicate produced again after a restart is still
//!   refused. A chunk is tombstoned once its newest event time is older than
//!   the board's grace (its events would be refused as late anyway): live
//!   chunks hold the ids of the last `grace_ms` of event time (10 s by
//!   default), plus at most one transaction's worth;
//! - `nation/{game}/{player}`: the last nation version seen ([`Seen`]);
//! - `offsets/{topic}/{partition}`: the next offset to read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::arena;
use crate::board::{Applied, Board, Entry, Rules};
use crate::campaign::{CampaignDef, DefError, Metric};
use crate::nation::{self, Seen};

/// How a board is defined, as `GET /api/leaderboards` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BoardInfo {
    pub id: String,
    pub title: String,
    pub source: String,
    pub metric: String,
    #[serde(flatten)]
    pub rules: Rules,
    pub top_n: usize,
    /// Added through the admin API (persisted as `def/{id}`).
    pub dynamic: bool,
}

/// A state record to write: key and value (`None`: tombstone).
pub type StateRecord = (String, Option<Vec<u8>>);

#[derive(Serialize, Deserialize)]
struct BoardMeta {
    period: Option<i64>,
    watermark: i64,
}

#[derive(Serialize, Deserialize)]
struct EntryRecord {
    period: Option<i64>,
    entry: Entry,
}

/// Every board, the campaign definitions and the input offsets.
#[derive(Debug, Default)]
pub struct Boards {
    /// Campaign definitions by id.
    campaigns: BTreeMap<String, (CampaignDef, bool)>,
    /// The topic of nation records, when nation boards are on.
    games_topic: Option<String>,
    boards: HashMap<String, Board>,
    nations: nation::Tracker,
    /// Next offset of each input partition.
    offsets: BTreeMap<(String, i32), i64>,
    dirty_defs: BTreeSet<String>,
    dirty_boards: BTreeSet<String>,
    dirty_nations: BTreeSet<(u64, String)>,
    dirty_offsets: BTreeSet<(String, i32)>,
    /// State keys to delete on the next write (a replaced or removed board's).
    tombstones: Vec<String>,
    /// Records refused as late, per board (for `/api/leaderboards`).
    late: HashMap<String, u64>,
}

fn json<T: Serialize>(v: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(v).ok()
}

impl Boards {
    /// Boards for `campaigns`, plus the nation boards when `games_topic` is set.
    pub fn new(
        campaigns: Vec<CampaignDef>,
        games_topic: Option<String>,
    ) -> Result<Boards, DefError> {
        let mut b = Boards {
            games_topic,
            ..Boards::default()
        };
        for def in campaigns {
            b.add(def, false)?;
        }
        if b.games_topic.is_some() {
            for id in [nation::POWER, nation::GOLD_SPENT, nation::PURCHASES] {
                b.boards.insert(id.into(), Board::new(nation::rules(id))?);
            }
            b.boards
                .insert(arena::ELIMINATIONS.into(), Board::new(arena::rules())?);
        }
        Ok(b)
    }

    fn add(&mut self, def: CampaignDef, dynamic: bool) -> Result<(), DefError> {
        def.validate()?;
        let board = Board::new(def.rules.clone())?;
        self.boards.insert(def.id.clone(), board);
        self.campaigns.insert(def.id.clone(), (def, dynamic));
        Ok(())
    }

    /// Adds or replaces a campaign (admin API); a replaced board starts empty.
    pub fn upsert_campaign(&mut self, def: CampaignDef) -> Result<(), DefError> {
        let id = def.id.clone();
        def.validate()?;
        self.forget_board(&id);
        self.add(def, true)?;
        self.dirty_defs.insert(id.clone());
        self.dirty_boards.insert(id);
        Ok(())
    }

    /// Removes a campaign; false if there was none.
    pub fn remove_campaign(&mut self, id: &str) -> bool {
        if self.campaigns.remove(id).is_none() {
            return false;
        }
        self.forget_board(id);
        self.dirty_defs.insert(id.to_string());
        true
    }

    /// Drops board `id` and queues tombstones for its written state, so a
    /// rebuild does not bring its entries back.
    fn forget_board(&mut self, id: &str) {
        if let Some(old) = self.boards.remove(id) {
            let (rows, _) = old.page(usize::MAX, None);
            self.tombstones.extend(
                rows.into_iter()
                    .map(|r| format!("entry/{id}/{}", r.player_id)),
            );
            self.tombstones.push(format!("board/{id}"));
            self.tombstones.extend(
                old.live_chunks()
                    .into_iter()
                    .map(|n| format!("seen/{id}/{n}")),
            );
        }
        self.dirty_boards.remove(id);
    }

    /// Topics the boards read.
    pub fn sources(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self
            .campaigns
            .values()
            .map(|(d, _)| d.source.clone())
            .collect();
        s.extend(self.games_topic.clone());
        s
    }

    /// The next offset to read on `topic`/`partition`, if any was kept.
    pub fn offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(&(topic.to_string(), partition)).copied()
    }

    /// Applies one input record; returns the boards that changed. A record
    /// below the kept offset (a redelivery) changes nothing.
    pub fn apply_record(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        value: &[u8],
    ) -> Vec<String> {
        let key = (topic.to_string(), partition);
        if self.offsets.get(&key).is_some_and(|next| offset < *next) {
            return Vec::new();
        }
        self.offsets.insert(key.clone(), offset + 1);
        self.dirty_offsets.insert(key);
        let mut changed = Vec::new();
        let mut spin_events: HashMap<Metric, Option<crate::board::ScoreEvent>> = HashMap::new();
        for (id, (def, _)) in &self.campaigns {
            if def.source != topic {
                continue;
            }
            let ev = spin_events
                .entry(def.metric)
                .or_insert_with(|| crate::campaign::score_event(def.metric, value));
            let (Some(ev), Some(board)) = (ev.as_ref(), self.boards.get_mut(id)) else {
                continue;
            };
            match board.apply(ev) {
                Applied::Changed => changed.push(id.clone()),
                Applied::Late => *self.late.entry(id.clone()).or_default() += 1,
                _ => {}
            }
            self.dirty_boards.insert(id.clone());
        }
        if self.games_topic.as_deref() == Some(topic) {
            if let Some(record) = nation::parse(value) {
                let key = (record.game_id, record.player_id.clone());
                for (id, ev) in self.nations.events(&record) {
                    let board = match self.boards.entry(id.clone()) {
                        std::collections::hash_map::Entry::Occupied(b) => b.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            match Board::new(nation::rules(&id)) {
                                Ok(b) => v.insert(b),
                                Err(_) => continue,
                            }
                        }
                    };
                    if board.apply(&ev) == Applied::Changed {
                        changed.push(id.clone());
                    }
                    self.dirty_boards.insert(id);
                }
                self.dirty_nations.insert(key);
            } else if let Some(ev) = arena::parse(value).as_ref().and_then(arena::event) {
                let id = arena::ELIMINATIONS.to_string();
                let board = match self.boards.entry(id.clone()) {
                    std::collections::hash_map::Entry::Occupied(b) => Some(b.into_mut()),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        Board::new(arena::rules()).ok().map(|b| v.insert(b))
                    }
                };
                if let Some(board) = board {
                    if board.apply(&ev) == Applied::Changed {
                        changed.push(id.clone());
                    }
                    self.dirty_boards.insert(id);
                }
            }
        }
        changed
    }

    /// The state records of everything changed since the last call.
    pub fn take_state(&mut self) -> Vec<StateRecord> {
        let mut out: Vec<StateRecord> = std::mem::take(&mut self.tombstones)
            .into_iter()
            .map(|k| (k, None))
            .collect();
        for id in std::mem::take(&mut self.dirty_defs) {
            let value = self
                .campaigns
                .get(&id)
                .filter(|(_, dynamic)| *dynamic)
                .and_then(|(d, _)| json(d));
            out.push((format!("def/{id}"), value));
        }
        for id in std::mem::take(&mut self.dirty_boards) {
            let Some(board) = self.boards.get_mut(&id) else {
                continue;
            };
            let meta = BoardMeta {
                period: board.period(),
                watermark: board.watermark(),
            };
            out.push((format!("board/{id}"), json(&meta)));
            let period = board.period();
            for (player, entry) in board.take_dirty() {
                let value = entry.and_then(|entry| json(&EntryRecord { period, entry }));
                out.push((format!("entry/{id}/{player}"), value));
            }
            let seen = board.take_seen();
            for n in seen.removed {
                out.push((format!("seen/{id}/{n}"), None));
            }
            for (n, ids) in seen.written {
                out.push((format!("seen/{id}/{n}"), json(&ids)));
            }
        }
        for (game, player) in std::mem::take(&mut self.dirty_nations) {
            let value = self
                .nations
                .seen
                .get(&(game, player.clone()))
                .and_then(json);
            out.push((format!("nation/{game}/{player}"), value));
        }
        for (topic, partition) in std::mem::take(&mut self.dirty_offsets) {
            let next = self.offsets.get(&(topic.clone(), partition)).copied();
            out.push((
                format!("offsets/{topic}/{partition}"),
                next.and_then(|n| json(&n)),
            ));
        }
        out
    }

    /// Rebuilds from the latest value of every state key (compacted topic
    /// read to its end). Unknown keys and values are skipped.
    pub fn restore(&mut self, records: &BTreeMap<String, Option<Vec<u8>>>) {
        let live = records
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.as_str(), v.as_slice())));
        let (mut metas, mut entries, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in live {
            let Some((kind, rest)) = key.split_once('/') else {
                continue;
            };
            match kind {
                "def" => {
                    if let Ok(def) = serde_json::from_slice::<CampaignDef>(value) {
                        let _ = self.add(def, true);
                    }
                }
                "board" => metas.push((rest, value)),
                "entry" => entries.push((rest, value)),
                "seen" => seen.push((rest, value)),
                "nation" => {
                    let parsed = rest
                        .split_once('/')
                        .and_then(|(g, p)| Some((g.parse::<u64>().ok()?, p)));
                    if let (Some((game, player)), Ok(seen)) =
                        (parsed, serde_json::from_slice::<Seen>(value))
                    {
                        self.nations.seen.insert((game, player.to_string()), seen);
                    }
                }
                "offsets" => {
                    let parsed = rest
                        .rsplit_once('/')
                        .and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?)));
                    if let (Some((topic, partition)), Ok(next)) =
                        (parsed, serde_json::from_slice::<i64>(value))
                    {
                        self.offsets.insert((topic.to_string(), partition), next);
                    }
                }
                _ => {}
            }
        }
        let mut periods = HashMap::new();
        for (id, value) in metas {
            if let Ok(meta) = serde_json::from_slice::<BoardMeta>(value) {
                periods.insert(id.to_string(), meta);
            }
        }
        for (rest, value) in entries {
            let Some((id, player)) = rest.split_once('/') else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<EntryRecord>(value) else {
                continue;
            };
            let meta = periods.get(id);
            if meta.is_some_and(|m| m.period != record.period) {
                continue;
            }
            let Some(board) = self.board_to_restore(id) else {
                continue;
            };
            let watermark = meta.map(|m| m.watermark).unwrap_or(i64::MIN);
            board.restore(record.period, watermark, player, Some(record.entry));
        }
        // After the entries: a board's ids are kept against its watermark.
        for (rest, value) in seen {
            let parsed = rest
                .rsplit_once('/')
                .and_then(|(id, n)| Some((id, n.parse::<u64>().ok()?)));
            let (Some((id, chunk)), Ok(ids)) =
                (parsed, serde_json::from_slice::<Vec<(i64, String)>>(value))
            else {
                continue;
            };
            let watermark = periods.get(id).map(|m| m.watermark).unwrap_or(i64::MIN);
            let Some(board) = self.board_to_restore(id) else {
                continue;
            };
            board.restore_seen(watermark, chunk, ids);
            // A chunk found stale is tombstoned with the next write.
            self.dirty_boards.insert(id.to_string());
        }
    }

    /// Board `id` for a rebuild: a known board, or a per-game power board
    /// (those are made as games appear).
    fn board_to_restore(&mut self, id: &str) -> Option<&mut Board> {
        match self.boards.entry(id.to_string()) {
            std::collections::hash_map::Entry::Occupied(b) => Some(b.into_mut()),
            std::collections::hash_map::Entry::Vacant(v)
                if id.starts_with(nation::POWER_GAME_PREFIX) =>
            {
                Board::new(nation::rules(id)).ok().map(|b| v.insert(b))
            }
            std::collections::hash_map::Entry::Vacant(_) => None,
        }
    }

    /// The board `id`.
    pub fn board(&self, id: &str) -> Option<&Board> {
        self.boards.get(id)
    }

    /// Every board's definition, by id.
    pub fn infos(&self) -> Vec<BoardInfo> {
        let mut out: Vec<BoardInfo> = self
            .campaigns
            .values()
            .map(|(d, dynamic)| BoardInfo {
                id: d.id.clone(),
                title: d.title.clone(),
                source: d.source.clone(),
                metric: serde_json::to_value(d.metric)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                rules: d.rules.clone(),
                top_n: d.top_n,
                dynamic: *dynamic,
            })
            .collect();
        if let Some(games) = &self.games_topic {
            let mut ids: Vec<&String> = self
                .boards
                .keys()
                .filter(|id| id.starts_with("nation-"))
                .collect();
            ids.sort();
            for id in ids {
                let metric = if id.as_str() == nation::GOLD_SPENT {
                    "gold_spent"
                } else if id.as_str() == nation::PURCHASES {
                    "purchases"
                } else {
                    "power"
                };
                out.push(BoardInfo {
                    id: id.clone(),
                    title: id.replace('-', " "),
                    source: games.clone(),
                    metric: metric.into(),
                    rules: nation::rules(id),
                    top_n: 10,
                    dynamic: false,
                });
            }
            out.push(BoardInfo {
                id: arena::ELIMINATIONS.into(),
                title: "arena eliminations".into(),
                source: games.clone(),
                metric: "eliminations".into(),
                rules: arena::rules(),
                top_n: 10,
                dynamic: false,
            });
        }
        out
    }

    /// Rows a board pushes over its WebSocket.
    pub fn top_n(&self, id: &str) -> usize {
        self.campaigns.get(id).map(|(d, _)| d.top_n).unwrap_or(10)
    }

    /// Events refused as late on board `id`.
    pub fn late(&self, id: &str) -> u64 {
        self.late.get(id).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::seed_campaign;

    fn spin(player: i64, win: i64, stake: i64, time: &str) -> Vec<u8> {
        format!(r#"{{"playerId":{player},"gameId":10,"win":{win},"stake":{stake},"eventTime":"{time}"}}"#).into_bytes()
    }

    fn top(b: &Boards, id: &str) -> Vec<(String, f64)> {
        b.board(id)
            .expect("board")
            .page(10, None)
            .0
            .into_iter()
            .map(|r| (r.player_id, r.score))
            .collect()
    }

    #[test]
    fn a_redelivered_or_duplicated_record_does_not_change_a_board() {
        let mut total = seed_campaign("gameplay")[0].clone();
        total.id = "total-win".into();
        total.metric = Metric::Win;
        total.rules.operator = crate::board::Operator::Incr;
        let mut b = Boards::new(vec![total], None).expect("boards");
        let r = spin(101, 200, 10, "2025-12-01 08:40:00.000001");
        assert_eq!(b.apply_record("gameplay", 0, 0, &r), ["total-win"]);
        // Redelivered (same offset) and duplicated (same spin, new offset).
        assert!(b.apply_record("gameplay", 0, 0, &r).is_empty());
        assert!(b.apply_record("gameplay", 1, 7, &r).is_empty());
        assert_eq!(top(&b, "total-win"), [("101".into(), 200.0)]);
        b.apply_record(
            "gameplay",
            0,
            1,
            &spin(101, 100, 10, "2025-12-01 08:40:00.000002"),
        );
        assert_eq!(top(&b, "total-win"), [("101".into(), 300.0)]);
    }

    fn total_win() -> CampaignDef {
        let mut total = seed_campaign("gameplay")[0].clone();
        total.id = "total-win".into();
        total.metric = Metric::Win;
        total.rules.operator = crate::board::Operator::Incr;
        total
    }

    #[test]
    fn a_duplicate_after_a_rebuild_is_still_refused_and_old_ids_are_deleted() {
        let mut b = Boards::new(vec![total_win()], None).expect("boards");
        let first = spin(101, 200, 10, "2025-12-01 08:40:00.000001");
        b.apply_record("gameplay", 0, 0, &first);
        let mut state: BTreeMap<String, Option<Vec<u8>>> = b.take_state().into_iter().collect();
        assert!(state.get("seen/total-win/0").is_some_and(|v| v.is_some()));
        let mut rebuilt = Boards::new(vec![total_win()], None).expect("boards");
        rebuilt.restore(&state);
        // The same spin produced again (a new offset, another partition).
        assert!(rebuilt.apply_record("gameplay", 1, 0, &first).is_empty());
        assert_eq!(top(&rebuilt, "total-win"), [("101".into(), 200.0)]);
        // Eleven seconds later the first spin's chunk left the 10 s grace:
        // it is tombstoned, the new one written.
        let later = spin(102, 100, 10, "2025-12-01 08:40:11.000000");
        rebuilt.apply_record("gameplay", 1, 1, &later);
        let written = rebuilt.take_state();
        assert!(written.contains(&("seen/total-win/0".into(), None)));
        assert!(written
            .iter()
            .any(|(k, v)| k == "seen/total-win/1" && v.is_some()));
        state.extend(written);
        let live = state
            .iter()
            .filter(|(k, v)| k.starts_with("seen/") && v.is_some())
            .count();
        assert_eq!(live, 1);
    }

    #[test]
    fn a_replaced_campaign_does_not_come_back_with_its_old_entries() {
        let mut b = Boards::new(Vec::new(), None).expect("boards");
        let def = seed_campaign("gameplay")[0].clone();
        b.upsert_campaign(def.clone()).expect("added");
        b.apply_record(
            "gameplay",
            0,
            0,
            &spin(101, 200, 10, "2025-12-01 08:40:00.000001"),
        );
        let mut state: BTreeMap<String, Option<Vec<u8>>> = b.take_state().into_iter().collect();
        assert!(state
            .get("entry/spins-best-ratio/101")
            .is_some_and(|v| v.is_some()));
        b.upsert_campaign(def.clone()).expect("replaced");
        state.extend(b.take_state());
        assert_eq!(state.get("entry/spins-best-ratio/101"), Some(&None));
        let mut rebuilt = Boards::new(Vec::new(), None).expect("boards");
        rebuilt.restore(&state);
        assert!(rebuilt
            .board("spins-best-ratio")
            .expect("the def comes back")
            .is_empty());
        assert!(b.remove_campaign("spins-best-ratio"));
        state.extend(b.take_state());
        let mut rebuilt = Boards::new(Vec::new(), None).expect("boards");
        rebuilt.restore(&state);
        assert!(rebuilt.board("spins-best-ratio").is_none());
    }

    #[test]
    fn the_written_state_rebuilds_the_same_boards() {
        let mut b = Boards::new(seed_campaign("gameplay"), Some("games".into())).expect("boards");
        let mut state = BTreeMap::new();
        for i in 0..50i64 {
            let t = format!("2025-12-01 08:40:{:02}.000000", i % 60);
            b.apply_record(
                "gameplay",
                (i % 3) as i32,
                i,
                &spin(100 + i % 11, (i * 37) % 500, 10 + i, &t),
            );
            if i % 7 == 0 {
                state.extend(b.take_state());
            }
        }
        let nation = br#"{"record":"nation","game_id":4,"player_id":"p","version":2,"nation":{"items":{"sword":2},"power":6,"last_action_ms":1764578400000}}"#;
        b.apply_record("games", 0, 0, nation);
        state.extend(b.take_state());
        let mut rebuilt =
            Boards::new(seed_campaign("gameplay"), Some("games".into())).expect("boards");
        rebuilt.restore(&state);
        for id in [
            "spins-best-ratio",
            "spins-best-ratio-5m",
            "nation-power",
            "nation-power-game-4",
            "nation-gold-spent",
        ] {
            assert_eq!(top(&rebuilt, id), top(&b, id), "{id}");
            assert!(!top(&b, id).is_empty(), "{id}");
        }
        assert_eq!(rebuilt.offset("gameplay", 1), Some(50));
        // After the rebuild, a redelivered record is still skipped.
        assert!(rebuilt.apply_record("games", 0, 0, nation).is_empty());
    }
}
