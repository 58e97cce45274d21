//! [`Board`]: one leaderboard's state, a deterministic core (no clock, no
//! I/O: event times arrive with the events, as in quinn-proto).
//!
//! A [`ScoreEvent`] carries an id, a player, a value and its event time. The
//! board applies it with its [`Operator`] (`best`, `set`, `incr`, `decr`):
//! - **Duplicates**: an id seen before changes nothing. Ids are kept while
//!   their event time is within the grace of the newest event time seen
//!   (the watermark); older events are refused as late, so a duplicate is
//!   always caught. The ids are persisted too ([`Board::take_seen`],
//!   [`Board::restore_seen`]), in chunks that live exactly as long as their
//!   ids, so a duplicate straddling a restart is still caught.
//! - **Late and out-of-order** events: accepted in any order while within
//!   `grace_ms` of the watermark; order does not change the result
//!   (`best`/`incr`/`decr` commute, `set` keeps the latest event time).
//! - **Periods**: with a cron `reset`, an event of a newer period clears the
//!   board first; an event of an older period is late.
//! - **Sliding window**: with `window_ms`, a player's score folds only
//!   their events within the window before the watermark.
//! - **Ties**: score, then who reached it first, then player id
//!   ([`RankKey`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ranking::{RankKey, Ranking};

/// How a new value combines with a player's score (Nakama's operators).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Keep the better of the two (higher on a descending board).
    Best,
    /// Replace (the event with the latest event time wins).
    Set,
    /// Add.
    Incr,
    /// Subtract.
    Decr,
}

/// Sort order: `desc` ranks the highest score first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

/// What a board ranks by, besides its source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rules {
    pub operator: Operator,
    #[serde(default)]
    pub order: Order,
    /// Events before this time (ms since the epoch) do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// Events at or after this time do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// A cron schedule (seconds first, UTC: `0 0 * * * *` is hourly) that
    /// starts a new period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<String>,
    /// Only events of the last `window_ms` before the newest event count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<i64>,
    /// How far behind the newest event time an event may arrive.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: i64,
}

/// Ten seconds of grace for late events.
pub fn default_grace_ms() -> i64 {
    10_000
}

/// A score to apply: `id` identifies it for deduplication.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreEvent {
    pub id: String,
    pub player: String,
    pub value: f64,
    pub time_ms: i64,
}

/// What [`Board::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The board changed.
    Changed,
    /// Counted, but no rank or score moved.
    Unchanged,
    /// The id was seen before.
    Duplicate,
    /// Older than the grace allows, or of a past period.
    Late,
    /// Outside the board's start and end.
    OutOfRange,
}

/// Errors in a board's rules.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("bad cron schedule {0:?}: {1}")]
    Cron(String, String),
    #[error("{0}")]
    Invalid(&'static str),
}

/// At most this many ids in one persisted chunk (a chunk of spin ids is
/// then about 90 KB of JSON, far below a Kafka record's 1 MB).
pub const MAX_CHUNK_IDS: usize = 2048;

/// What [`Board::take_seen`] hands over to persist.
#[derive(Debug, Default, PartialEq)]
pub struct SeenChanges {
    /// New chunks: number and `(event time, id)` pairs.
    pub written: Vec<(u64, Vec<(i64, String)>)>,
    /// Chunks to delete.
    pub removed: Vec<u64>,
}

/// One player's standing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub score: f64,
    /// When the player reached this score (event time, ms).
    pub reached_at_ms: i64,
    /// Windowed boards: the player's events in the window, `(time, value)`,
    /// by time.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub window: VecDeque<(i64, f64)>,
}

/// A row of a board as readers see it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Row {
    /// 1 is first place.
    pub rank: usize,
    pub player_id: String,
    pub score: f64,
    pub reached_at_ms: i64,
}

/// A board's state.
#[derive(Debug)]
pub struct Board {
    rules: Rules,
    schedule: Option<cron::Schedule>,
    /// Start of the current period (ms; `i64::MIN` without a reset).
    period: i64,
    /// The newest event time seen.
    watermark: i64,
    entries: HashMap<Arc<str>, Entry>,
    ranking: Ranking,
    /// Ids seen, with their event time, while within the grace.
    seen: HashMap<String, i64>,
    /// The same ids by event time, to forget them in order.
    seen_by_time: BTreeMap<i64, Vec<String>>,
    /// Windowed boards: when each player's oldest event leaves the window.
    expiries: BTreeMap<i64, Vec<Arc<str>>>,
    /// Ids seen since the last [`Board::take_seen`] (to persist as a new
    /// chunk), with their event time.
    unsaved: Vec<(i64, String)>,
    /// Persisted chunks of ids by the newest event time they hold: a chunk
    /// is dropped (tombstoned) once that time leaves the grace, when every
    /// id in it is forgotten.
    chunks_by_time: BTreeMap<i64, Vec<u64>>,
    /// The next chunk's number (numbers are never reused while a chunk of
    /// that number may be live).
    next_chunk: u64,
    /// Chunks whose ids were all forgotten: to tombstone.
    stale_chunks: Vec<u64>,
    /// Bumped on every change (readers and pushers compare it).
    pub version: u64,
    /// Players changed since [`Board::take_dirty`] (to persist).
    dirty: Vec<Arc<str>>,
}

impl Board {
    pub fn new(rules: Rules) -> Result<Board, RulesError> {
        let schedule = match &rules.reset {
            Some(cron) => Some(
                cron::Schedule::from_str(cron)
                    .map_err(|e| RulesError::Cron(cron.clone(), e.to_string()))?,
            ),
            None => None,
        };
        if rules.grace_ms < 0 || rules.window_ms.is_some_and(|w| w <= 0) {
            return Err(RulesError::Invalid(
                "grace_ms must be at least 0 and window_ms above 0",
            ));
        }
        Ok(Board {
            rules,
            schedule,
            period: i64::MIN,
            watermark: i64::MIN,
            entries: HashMap::new(),
            ranking: Ranking::new(),
            seen: HashMap::new(),
            seen_by_time: BTreeMap::new(),
            expiries: BTreeMap::new(),
            unsaved: Vec::new(),
            chunks_by_time: BTreeMap::new(),
            next_chunk: 0,
            stale_chunks: Vec::new(),
            version: 0,
            dirty: Vec::new(),
        })
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Start of the current period (ms), `None` before the first event or
    /// without a reset schedule.
    pub fn period(&self) -> Option<i64> {
        (self.period != i64::MIN).then_some(self.period)
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The period that holds `time_ms`: the last reset at or before it.
    pub fn period_of(&self, time_ms: i64) -> i64 {
        let Some(schedule) = &self.schedule else {
            return i64::MIN;
        };
        let Some(after) = DateTime::<Utc>::from_timestamp_millis(time_ms.saturating_add(1)) else {
            return i64::MIN;
        };
        schedule
            .after(&after)
            .next_back()
            .map(|t| t.timestamp_millis())
            .unwrap_or(i64::MIN)
    }

    fn key(&self, player: &Arc<str>, e: &Entry) -> RankKey {
        RankKey {
            sort: match self.rules.order {
                Order::Desc => -e.score,
                Order::Asc => e.score,
            },
            reached_at_ms: e.reached_at_ms,
            player: player.clone(),
        }
    }

    /// Is `a` a better score than `b` on this board?
    fn better(&self, a: f64, b: f64) -> bool {
        match self.rules.order {
            Order::Desc => a > b,
            Order::Asc => a < b,
        }
    }

    /// Clears the board for the period starting at `period`.
    fn new_period(&mut self, period: i64) {
        for player in self.entries.keys() {
            self.dirty.push(player.clone());
        }
        self.entries.clear();
        self.ranking.clear();
        self.expiries.clear();
        self.period = period;
        self.version += 1;
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: &ScoreEvent) -> Applied {
        if self.rules.start_ms.is_some_and(|s| ev.time_ms < s)
            || self.rules.end_ms.is_some_and(|e| ev.time_ms >= e)
        {
            return Applied::OutOfRange;
        }
        if self.watermark != i64::MIN
            && ev.time_ms < self.watermark.saturating_sub(self.rules.grace_ms)
        {
            return Applied::Late;
        }
        let period = self.period_of(ev.time_ms);
        if self.schedule.is_some() && period < self.period {
            return Applied::Late;
        }
        if self.seen.contains_key(&ev.id) {
            return Applied::Duplicate;
        }
        let mut changed = false;
        if self.schedule.is_some() && period > self.period {
            self.new_period(period);
            changed = true;
        }
        self.remember(ev.time_ms, ev.id.clone());
        self.unsaved.push((ev.time_ms, ev.id.clone()));
        if ev.time_ms > self.watermark {
            self.watermark = ev.time_ms;
            self.forget_old_ids();
            changed |= self.expire();
        }
        let player: Arc<str> = match self.entries.get_key_value(ev.player.as_str()) {
            Some((k, _)) => k.clone(),
            None => ev.player.as_str().into(),
        };
        let old = self.entries.get(&player).cloned();
        let new = match self.rules.window_ms {
            Some(window) => {
                let mut e = old.clone().unwrap_or(Entry {
                    score: 0.0,
                    reached_at_ms: ev.time_ms,
                    window: VecDeque::new(),
                });
                if ev.time_ms <= self.watermark - window {
                    return if changed {
                        Applied::Changed
                    } else {
                        Applied::Unchanged
                    };
                }
                let at = e.window.partition_point(|(t, _)| *t <= ev.time_ms);
                e.window.insert(at, (ev.time_ms, ev.value));
                if let Some((first, _)) = e.window.front() {
                    self.expiries
                        .entry(first + window)
                        .or_default()
                        .push(player.clone());
                }
                Some(self.fold(e))
            }
            None => Some(self.combine(old.as_ref(), ev)),
        };
        changed |= self.replace(&player, old, new);
        if changed {
            self.version += 1;
            Applied::Changed
        } else {
            Applied::Unchanged
        }
    }

    fn remember(&mut self, time_ms: i64, id: String) {
        self.seen_by_time
            .entry(time_ms)
            .or_default()
            .push(id.clone());
        self.seen.insert(id, time_ms);
    }

    /// The oldest event time still within the grace.
    fn grace_floor(&self) -> i64 {
        self.watermark.saturating_sub(self.rules.grace_ms)
    }

    /// Forgets ids older than the grace (their events are refused as late
    /// anyway), oldest first, and the persisted chunks that held only those.
    fn forget_old_ids(&mut self) {
        let floor = self.grace_floor();
        while let Some(entry) = self.seen_by_time.first_entry() {
            if *entry.key() >= floor {
                break;
            }
            for id in entry.remove() {
                self.seen.remove(&id);
            }
        }
        while let Some(entry) = self.chunks_by_time.first_entry() {
            if *entry.key() >= floor {
                break;
            }
            self.stale_chunks.extend(entry.remove());
        }
        // Nobody taking the ids (a board used on its own): keep the list
        // within twice the live ids, amortised.
        if self.unsaved.len() > 2 * self.seen.len() + MAX_CHUNK_IDS {
            self.unsaved.retain(|(t, _)| *t >= floor);
        }
    }

    /// The ids seen since the last call, as new chunks to write (number and
    /// `(event time, id)` pairs, at most [`MAX_CHUNK_IDS`] each), and the
    /// chunks to delete (every id in them left the grace).
    pub fn take_seen(&mut self) -> SeenChanges {
        let floor = self.grace_floor();
        let mut ids = std::mem::take(&mut self.unsaved);
        ids.retain(|(t, _)| *t >= floor);
        let mut written = Vec::new();
        for chunk in ids.chunks(MAX_CHUNK_IDS) {
            let n = self.next_chunk;
            self.next_chunk += 1;
            let newest = chunk.iter().map(|(t, _)| *t).max().unwrap_or(i64::MIN);
            self.chunks_by_time.entry(newest).or_default().push(n);
            written.push((n, chunk.to_vec()));
        }
        SeenChanges {
            written,
            removed: std::mem::take(&mut self.stale_chunks),
        }
    }

    /// Every chunk number that may be live in the written state.
    pub fn live_chunks(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.chunks_by_time.values().flatten().copied().collect();
        all.extend(&self.stale_chunks);
        all
    }

    /// Restores a persisted chunk of ids (a rebuild), once the board's
    /// `watermark` is known: ids older than the grace are not kept, and a
    /// chunk holding only those is queued for deletion.
    pub fn restore_seen(&mut self, watermark: i64, chunk: u64, ids: Vec<(i64, String)>) {
        self.watermark = self.watermark.max(watermark);
        self.next_chunk = self.next_chunk.max(chunk + 1);
        let floor = self.grace_floor();
        let newest = ids.iter().map(|(t, _)| *t).max().unwrap_or(i64::MIN);
        if newest < floor {
            self.stale_chunks.push(chunk);
            return;
        }
        self.chunks_by_time.entry(newest).or_default().push(chunk);
        for (t, id) in ids {
            if t >= floor {
                self.remember(t, id);
            }
        }
    }

    /// The unwindowed operators.
    fn combine(&self, old: Option<&Entry>, ev: &ScoreEvent) -> Entry {
        let fresh = |score| Entry {
            score,
            reached_at_ms: ev.time_ms,
            window: VecDeque::new(),
        };
        let Some(old) = old else {
            return fresh(match self.rules.operator {
                Operator::Decr => -ev.value,
                _ => ev.value,
            });
        };
        match self.rules.operator {
            Operator::Best if self.better(ev.value, old.score) => fresh(ev.value),
            // The same best reached earlier (an out-of-order event): earlier wins.
            Operator::Best if ev.value == old.score && ev.time_ms < old.reached_at_ms => {
                fresh(ev.value)
            }
            Operator::Best => old.clone(),
            Operator::Set if ev.time_ms >= old.reached_at_ms => fresh(ev.value),
            Operator::Set => old.clone(),
            Operator::Incr | Operator::Decr => {
                let sign = if self.rules.operator == Operator::Incr {
                    1.0
                } else {
                    -1.0
                };
                Entry {
                    score: old.score + sign * ev.value,
                    reached_at_ms: old.reached_at_ms.max(ev.time_ms),
                    window: VecDeque::new(),
                }
            }
        }
    }

    /// A windowed entry's score from its events in the window.
    fn fold(&self, mut e: Entry) -> Entry {
        if let Some(window) = self.rules.window_ms {
            let floor = self.watermark - window;
            while e.window.front().is_some_and(|(t, _)| *t <= floor) {
                e.window.pop_front();
            }
        }
        let mut score = 0.0;
        let mut reached = i64::MIN;
        for (i, (t, v)) in e.window.iter().enumerate() {
            match self.rules.operator {
                Operator::Best => {
                    if i == 0 || self.better(*v, score) {
                        score = *v;
                        reached = *t;
                    }
                }
                Operator::Set => {
                    score = *v;
                    reached = *t;
                }
                Operator::Incr => {
                    score += v;
                    reached = *t;
                }
                Operator::Decr => {
                    score -= v;
                    reached = *t;
                }
            }
        }
        Entry {
            score,
            reached_at_ms: reached,
            window: e.window,
        }
    }

    /// Drops windowed events that left the window; true if a score moved.
    fn expire(&mut self) -> bool {
        let Some(window) = self.rules.window_ms else {
            return false;
        };
        let floor = self.watermark - window;
        let mut changed = false;
        while let Some(entry) = self.expiries.first_entry() {
            if *entry.key() > self.watermark {
                break;
            }
            for player in entry.remove() {
                let Some(old) = self.entries.get(&player).cloned() else {
                    continue;
                };
                if old.window.front().is_none_or(|(t, _)| *t > floor) {
                    continue;
                }
                let e = self.fold(old.clone());
                if let Some((first, _)) = e.window.front() {
                    self.expiries
                        .entry(first + window)
                        .or_default()
                        .push(player.clone());
                }
                let new = (!e.window.is_empty()).then_some(e);
                changed |= self.replace(&player, Some(old), new);
            }
        }
        changed
    }

    /// Puts `new` in place of `old`; true if the score or rank moved.
    fn replace(&mut self, player: &Arc<str>, old: Option<Entry>, new: Option<Entry>) -> bool {
        let same_rank = match (&old, &new) {
            (Some(o), Some(n)) => o.score == n.score && o.reached_at_ms == n.reached_at_ms,
            (None, None) => true,
            _ => false,
        };
        if old == new {
            return false;
        }
        if let Some(o) = &old {
            let key = self.key(player, o);
            self.ranking.remove(&key);
        }
        match new {
            Some(n) => {
                let key = self.key(player, &n);
                self.ranking.insert(key);
                self.entries.insert(player.clone(), n);
            }
            None => {
                self.entries.remove(player);
            }
        }
        self.dirty.push(player.clone());
        !same_rank
    }

    /// Restores a persisted entry (a rebuild from the compacted topic).
    pub fn restore(
        &mut self,
        period: Option<i64>,
        watermark: i64,
        player: &str,
        entry: Option<Entry>,
    ) {
        let period = period.unwrap_or(i64::MIN);
        if period > self.period {
            self.entries.clear();
            self.ranking.clear();
            self.expiries.clear();
            self.period = period;
        }
        if period < self.period {
            return;
        }
        self.watermark = self.watermark.max(watermark);
        let player: Arc<str> = player.into();
        let old = self.entries.get(&player).cloned();
        if let (Some(window), Some(e)) = (self.rules.window_ms, &entry) {
            if let Some((first, _)) = e.window.front() {
                self.expiries
                    .entry(first + window)
                    .or_default()
                    .push(player.clone());
            }
        }
        self.replace(&player, old, entry);
        self.dirty.clear();
        self.version += 1;
    }

    /// Players changed since the last call, with their entry (`None`: gone).
    pub fn take_dirty(&mut self) -> Vec<(Arc<str>, Option<Entry>)> {
        let mut players = std::mem::take(&mut self.dirty);
        players.sort();
        players.dedup();
        players
            .into_iter()
            .map(|p| {
                let e = self.entries.get(&p).cloned();
                (p, e)
            })
            .collect()
    }

    fn row(&self, rank: usize, key: &RankKey) -> Row {
        let score = self
            .entries
            .get(&key.player)
            .map(|e| e.score)
            .unwrap_or(f64::NAN);
        Row {
            rank: rank + 1,
            player_id: key.player.to_string(),
            score,
            reached_at_ms: key.reached_at_ms,
        }
    }

    /// Up to `limit` rows after `cursor` (keyset paging), or from the top.
    pub fn page(&self, limit: usize, cursor: Option<&RankKey>) -> (Vec<Row>, Option<RankKey>) {
        let from = cursor.map(|c| self.ranking.index_after(c)).unwrap_or(0);
        let keys = self.ranking.range(from, limit);
        let next = (from + keys.len() < self.ranking.len() && !keys.is_empty())
            .then(|| keys[keys.len() - 1].clone());
        let rows = keys
            .iter()
            .enumerate()
            .map(|(i, k)| self.row(from + i, k))
            .collect();
        (rows, next)
    }

    /// The player's row with up to `radius` rows on each side; `None` if the
    /// player is not on the board.
    pub fn around(&self, player: &str, radius: usize) -> Option<Vec<Row>> {
        let (p, e) = self.entries.get_key_value(player)?;
        let rank = self.ranking.rank(&self.key(p, e))?;
        let from = rank.saturating_sub(radius);
        let keys = self.ranking.range(from, rank - from + radius + 1);
        Some(
            keys.iter()
                .enumerate()
                .map(|(i, k)| self.row(from + i, k))
                .collect(),
        )
    }

    /// A player's entry.
    pub fn entry(&self, player: &str) -> Option<&Entry> {
        self.entries.get(player)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(operator: Operator) -> Rules {
        Rules {
            operator,
            order: Order::Desc,
            start_ms: None,
            end_ms: None,
            reset: None,
            window_ms: None,
            grace_ms: 10_000,
        }
    }

    fn ev(id: &str, player: &str, value: f64, time_ms: i64) -> ScoreEvent {
        ScoreEvent {
            id: id.into(),
            player: player.into(),
            value,
            time_ms,
        }
    }

    fn top(b: &Board) -> Vec<(String, f64)> {
        b.page(100, None)
            .0
            .into_iter()
            .map(|r| (r.player_id, r.score))
            .collect()
    }

    #[test]
    fn best_keeps_the_best_and_ties_go_to_who_reached_it_first() {
        let mut b = Board::new(rules(Operator::Best)).expect("board");
        b.apply(&ev("1", "a", 5.0, 1000));
        b.apply(&ev("2", "b", 5.0, 900));
        b.apply(&ev("3", "a", 3.0, 1100));
        b.apply(&ev("4", "c", 5.0, 900));
        assert_eq!(
            top(&b),
            [("b".into(), 5.0), ("c".into(), 5.0), ("a".into(), 5.0)]
        );
    }

    #[test]
    fn a_duplicated_event_does_not_change_an_incr_board() {
        let mut b = Board::new(rules(Operator::Incr)).expect("board");
        assert_eq!(b.apply(&ev("1", "a", 5.0, 1000)), Applied::Changed);
        let version = b.version;
        let before = top(&b);
        assert_eq!(b.apply(&ev("1", "a", 5.0, 1000)), Applied::Duplicate);
        assert_eq!(top(&b), before);
        assert_eq!(b.version, version);
        assert_eq!(b.apply(&ev("2", "a", 5.0, 1001)), Applied::Changed);
        assert_eq!(top(&b), [("a".into(), 10.0)]);
    }

    #[test]
    fn persisted_ids_refuse_a_duplicate_after_a_restore_until_they_leave_the_grace() {
        let mut b = Board::new(rules(Operator::Incr)).expect("board");
        b.apply(&ev("1", "a", 5.0, 1000));
        b.apply(&ev("2", "a", 5.0, 4000));
        let seen = b.take_seen();
        assert_eq!(
            seen.written,
            [(0, vec![(1000, "1".into()), (4000, "2".into())])]
        );
        let mut again = Board::new(rules(Operator::Incr)).expect("board");
        again.restore(None, b.watermark(), "a", b.entry("a").cloned());
        for (n, ids) in seen.written {
            again.restore_seen(b.watermark(), n, ids);
        }
        assert_eq!(again.apply(&ev("1", "a", 5.0, 1000)), Applied::Duplicate);
        assert_eq!(again.apply(&ev("3", "a", 1.0, 4500)), Applied::Changed);
        let next = again.take_seen();
        assert_eq!(next.written, [(1, vec![(4500, "3".into())])]);
        assert!(next.removed.is_empty());
        // Chunk 0's newest id (4000) leaves the grace at a watermark past 14,000.
        again.apply(&ev("4", "a", 1.0, 14_001));
        assert_eq!(again.take_seen().removed, [0]);
        // A chunk already stale when read back is queued for deletion.
        let mut late = Board::new(rules(Operator::Incr)).expect("board");
        late.restore_seen(20_000, 7, vec![(1000, "1".into())]);
        assert_eq!(late.take_seen().removed, [7]);
        assert_eq!(late.apply(&ev("8", "b", 1.0, 20_000)), Applied::Changed);
        assert_eq!(late.take_seen().written[0].0, 8);
    }

    #[test]
    fn set_decr_and_ascending_order() {
        let mut b = Board::new(Rules {
            order: Order::Asc,
            ..rules(Operator::Set)
        })
        .expect("board");
        b.apply(&ev("1", "a", 5.0, 1000));
        b.apply(&ev("2", "a", 9.0, 900)); // older: ignored by set
        b.apply(&ev("3", "b", 7.0, 1000));
        assert_eq!(top(&b), [("a".into(), 5.0), ("b".into(), 7.0)]);
        let mut d = Board::new(rules(Operator::Decr)).expect("board");
        d.apply(&ev("1", "a", 5.0, 1000));
        d.apply(&ev("2", "a", 2.0, 1001));
        assert_eq!(top(&d), [("a".into(), -7.0)]);
    }

    #[test]
    fn late_events_beyond_the_grace_and_out_of_range_are_refused() {
        let mut b = Board::new(Rules {
            start_ms: Some(500),
            end_ms: Some(100_000),
            grace_ms: 1000,
            ..rules(Operator::Incr)
        })
        .expect("board");
        assert_eq!(b.apply(&ev("1", "a", 1.0, 5000)), Applied::Changed);
        assert_eq!(b.apply(&ev("2", "a", 1.0, 4200)), Applied::Changed);
        assert_eq!(b.apply(&ev("3", "a", 1.0, 3999)), Applied::Late);
        assert_eq!(b.apply(&ev("4", "a", 1.0, 100)), Applied::OutOfRange);
        assert_eq!(b.apply(&ev("5", "a", 1.0, 100_000)), Applied::OutOfRange);
        assert_eq!(top(&b), [("a".into(), 2.0)]);
    }

    #[test]
    fn a_cron_reset_starts_a_new_period() {
        // Every minute, on the minute.
        let mut b = Board::new(Rules {
            reset: Some("0 * * * * *".into()),
            ..rules(Operator::Incr)
        })
        .expect("board");
        let minute = 60_000;
        let t0 = 1_764_578_400_000; // 2025-12-01 08:40:00 UTC
        assert_eq!(b.period_of(t0 + 59_999), t0);
        assert_eq!(b.period_of(t0 + minute), t0 + minute);
        b.apply(&ev("1", "a", 5.0, t0 + 10));
        b.apply(&ev("2", "b", 3.0, t0 + 20));
        assert_eq!(b.period(), Some(t0));
        assert_eq!(
            b.apply(&ev("3", "b", 1.0, t0 + minute + 5)),
            Applied::Changed
        );
        assert_eq!(b.period(), Some(t0 + minute));
        assert_eq!(top(&b), [("b".into(), 1.0)]);
        // An event of the past period, even within the grace, is late.
        assert_eq!(b.apply(&ev("4", "a", 9.0, t0 + minute - 5)), Applied::Late);
        // The cleared players are reported for persistence.
        let dirty = b.take_dirty();
        assert!(dirty.iter().any(|(p, e)| &**p == "a" && e.is_none()));
    }

    #[test]
    fn a_sliding_window_forgets_old_events() {
        let mut b = Board::new(Rules {
            window_ms: Some(1000),
            ..rules(Operator::Best)
        })
        .expect("board");
        b.apply(&ev("1", "a", 9.0, 1000));
        b.apply(&ev("2", "b", 5.0, 1500));
        assert_eq!(top(&b), [("a".into(), 9.0), ("b".into(), 5.0)]);
        b.apply(&ev("3", "b", 4.0, 2100));
        // a's only event (1000) left the window (2100 - 1000).
        assert_eq!(top(&b), [("b".into(), 5.0)]);
        b.apply(&ev("4", "c", 1.0, 2600));
        assert_eq!(top(&b), [("b".into(), 4.0), ("c".into(), 1.0)]);
    }

    #[test]
    fn pages_follow_the_cursor_and_around_centres_on_the_player() {
        let mut b = Board::new(rules(Operator::Best)).expect("board");
        for i in 0..25 {
            b.apply(&ev(&i.to_string(), &format!("p{i:02}"), f64::from(i), 1000));
        }
        let (first, cursor) = b.page(10, None);
        assert_eq!(first[0].player_id, "p24");
        assert_eq!(first[9].rank, 10);
        let (second, _) = b.page(10, cursor.as_ref());
        assert_eq!(second[0].rank, 11);
        assert_eq!(second[0].player_id, "p14");
        let (last, end) = b.page(10, b.page(20, None).1.as_ref());
        assert_eq!(last.len(), 5);
        assert!(end.is_none());
        let around = b.around("p10", 2).expect("on the board");
        let names: Vec<&str> = around.iter().map(|r| r.player_id.as_str()).collect();
        assert_eq!(names, ["p12", "p11", "p10", "p09", "p08"]);
        assert_eq!(around[2].rank, 15);
        assert_eq!(b.around("p24", 2).expect("top").len(), 3);
        assert!(b.around("nobody", 2).is_none());
    }
}
