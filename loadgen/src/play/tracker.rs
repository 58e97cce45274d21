//! What the players' tasks, their sockets and the idle watchers share: the
//! actions on their way, the counters and the histograms. Matching an id seen
//! on a socket to its action is here, with no network and no clock of its
//! own (each call says when), so it is tested with plain calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::time::Instant;

use super::report::ActionRecord;
use crate::stats;

/// An action sent and not yet seen on every socket that must see it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    pub game_id: u64,
    pub intended: Instant,
    /// When its `202` came (`None` while the request is on its way).
    pub answered: Option<Instant>,
    pub player: usize,
    pub measured: bool,
    /// The measured window it belongs to (by intended start).
    pub window: usize,
    /// Player sockets that must still see the answer: 1 (the player's own)
    /// in a nation game, every player of the game in an arena.
    pub left: u32,
    /// When the last of those player sockets saw it.
    pub update: Option<Instant>,
    /// Idle watchers (`--watchers`) of its game that have not seen it yet.
    pub watchers_left: u32,
    /// When the first watcher saw it (for the spread, first to last).
    pub first_watcher: Option<Instant>,
}

impl Pending {
    /// A new action, before it is sent.
    pub fn new(game_id: u64, intended: Instant, player: usize, left: u32) -> Pending {
        Pending {
            game_id,
            intended,
            answered: None,
            player,
            measured: false,
            window: 0,
            left,
            update: None,
            watchers_left: 0,
            first_watcher: None,
        }
    }

    /// Seen by every socket that must see it, and answered (so its record
    /// has its `202` even when an update came first).
    fn done(&self) -> bool {
        self.left == 0 && self.watchers_left == 0 && self.answered.is_some()
    }
}

/// Update and `202` -> update histograms of one window of the measured run.
pub(super) struct WindowLatencies {
    pub update: Histogram<u64>,
    pub answer_update: Histogram<u64>,
}

/// Histograms: the whole measured run, the current second, the windows.
pub(super) struct Latencies {
    pub ack: Histogram<u64>,
    pub update: Histogram<u64>,
    /// From the `202` to the update (zero when the update came first).
    pub answer_update: Histogram<u64>,
    pub ack_second: Histogram<u64>,
    pub update_second: Histogram<u64>,
    /// Intended start to the arrival at each idle watcher.
    pub watcher: Histogram<u64>,
    /// The `202` to the arrival at each idle watcher (zero when first).
    pub watcher_answer: Histogram<u64>,
    /// First to last watcher of one action.
    pub watcher_spread: Histogram<u64>,
    pub windows: Vec<WindowLatencies>,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            ack: stats::histogram(),
            update: stats::histogram(),
            answer_update: stats::histogram(),
            ack_second: stats::histogram(),
            update_second: stats::histogram(),
            watcher: stats::histogram(),
            watcher_answer: stats::histogram(),
            watcher_spread: stats::histogram(),
            windows: Vec::new(),
        }
    }

    fn window(&mut self, i: usize) -> &mut WindowLatencies {
        while self.windows.len() <= i {
            self.windows.push(WindowLatencies {
                update: stats::histogram(),
                answer_update: stats::histogram(),
            });
        }
        &mut self.windows[i]
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub dropped: AtomicU64,
    pub late: AtomicU64,
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
    /// Updates on the player's socket that came before their `202`.
    pub before_answer: AtomicU64,
    pub in_flight: AtomicU64,
    pub ws_messages: AtomicU64,
    pub ws_bytes: AtomicU64,
    pub ws_closed: AtomicU64,
    /// Arrivals of measured actions at idle watchers.
    pub watcher_deliveries: AtomicU64,
    pub watcher_messages: AtomicU64,
    pub watcher_bytes: AtomicU64,
    pub watchers_closed: AtomicU64,
}

/// What every task shares.
pub(super) struct Shared {
    pub pending: Mutex<HashMap<String, Pending>>,
    pub latencies: Mutex<Latencies>,
    pub counters: Counters,
    /// Measured counters (actions intended after the warm-up).
    pub measured: Counters,
    pub error_kinds: Mutex<BTreeMap<String, u64>>,
    /// Any socket of the game counts (arenas), not just the player's own.
    pub any_socket: bool,
    /// Every measured action's times, when the caller asked for them
    /// ([`super::PlayArgs::keep_actions`]).
    pub actions: Option<Mutex<Vec<ActionRecord>>>,
}

/// The ids a WebSocket frame answers: `applied` and `rejected[].event_id`
/// (nothing else of the frame is read).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Frame {
    #[serde(default)]
    applied: Option<Vec<String>>,
    #[serde(default)]
    rejected: Option<Vec<RejectedId>>,
}

#[derive(Debug, Deserialize)]
struct RejectedId {
    #[serde(default)]
    event_id: Option<String>,
}

impl Frame {
    /// Parses a text frame; `None` when it is not JSON of that shape.
    pub fn parse(text: &str) -> Option<Frame> {
        serde_json::from_str(text).ok()
    }

    /// `(id, applied)` for every id the frame answers.
    pub fn ids(&self) -> impl Iterator<Item = (&str, bool)> {
        let applied = self.applied.iter().flatten().map(|id| (id.as_str(), true));
        let rejected = self
            .rejected
            .iter()
            .flatten()
            .filter_map(|r| r.event_id.as_deref())
            .map(|id| (id, false));
        applied.chain(rejected)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// `now` since `answered`, zero when the update came before the `202`.
fn since_answer(answered: Option<Instant>, now: Instant) -> Duration {
    answered
        .map(|a| now.saturating_duration_since(a))
        .unwrap_or_default()
}

impl Shared {
    pub fn new(any_socket: bool, keep_actions: bool) -> Shared {
        Shared {
            pending: Mutex::new(HashMap::new()),
            latencies: Mutex::new(Latencies::new()),
            counters: Counters::default(),
            measured: Counters::default(),
            error_kinds: Mutex::new(BTreeMap::new()),
            any_socket,
            actions: keep_actions.then(|| Mutex::new(Vec::new())),
        }
    }

    pub fn bump(&self, measured: bool, pick: impl Fn(&Counters) -> &AtomicU64) {
        pick(&self.counters).fetch_add(1, Ordering::Relaxed);
        if measured {
            pick(&self.measured).fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_ack(&self, latency: Duration) {
        if let Ok(mut l) = self.latencies.lock() {
            l.ack.saturating_record(micros(latency));
            l.ack_second.saturating_record(micros(latency));
        }
    }

    /// Notes when `id`'s `202` came, for answer -> update.
    pub fn answered(&self, id: &str, now: Instant) {
        if let Ok(mut pending) = self.pending.lock() {
            if let Some(p) = pending.get_mut(id) {
                p.answered = Some(now);
            }
            self.finish_if_done(&mut pending, id);
        }
    }

    pub fn error(&self, measured: bool, kind: String) {
        self.bump(measured, |c| &c.errors);
        if let Ok(mut kinds) = self.error_kinds.lock() {
            *kinds.entry(kind).or_default() += 1;
        }
    }

    /// Forgets an action that failed (no `202`).
    pub fn forget(&self, id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(id);
        }
    }

    /// Keeps a measured action's times, if the caller asked for them.
    fn keep(&self, id: String, p: &Pending) {
        if let (true, Some(actions)) = (p.measured, &self.actions) {
            if let Ok(mut actions) = actions.lock() {
                actions.push(ActionRecord {
                    id,
                    game_id: p.game_id,
                    intended: p.intended.into_std(),
                    answered: p.answered.map(Instant::into_std),
                    update: p.update.map(Instant::into_std),
                });
            }
        }
    }

    /// Removes `id` when every socket that must see it has.
    fn finish_if_done(&self, pending: &mut HashMap<String, Pending>, id: &str) {
        if pending.get(id).is_some_and(Pending::done) {
            if let Some((id, p)) = pending.remove_entry(id) {
                self.keep(id, &p);
            }
        }
    }

    /// An id in a message on `player`'s socket: its answer, if it is ours.
    pub fn matched(&self, id: &str, player: usize, applied: bool, now: Instant) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some(p) = pending.get_mut(id) else {
            return;
        };
        if p.left == 0 || !(self.any_socket || p.player == player) {
            return;
        }
        p.left -= 1;
        if p.left > 0 {
            return;
        }
        p.update = Some(now);
        let p = *p;
        self.finish_if_done(&mut pending, id);
        drop(pending);
        self.bump(
            p.measured,
            |c| if applied { &c.applied } else { &c.rejected },
        );
        if p.answered.is_none() {
            self.bump(p.measured, |c| &c.before_answer);
        }
        if p.measured {
            let latency = micros(now.saturating_duration_since(p.intended));
            // An update that came before its `202` counts as zero.
            let from_answer = micros(since_answer(p.answered, now));
            if let Ok(mut l) = self.latencies.lock() {
                l.update.saturating_record(latency);
                l.update_second.saturating_record(latency);
                l.answer_update.saturating_record(from_answer);
                let w = l.window(p.window);
                w.update.saturating_record(latency);
                w.answer_update.saturating_record(from_answer);
            }
        }
    }

    /// An id in a message on an idle watcher's socket.
    pub fn watcher_saw(&self, id: &str, now: Instant) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some(p) = pending.get_mut(id) else {
            return;
        };
        if p.watchers_left == 0 {
            return;
        }
        p.watchers_left -= 1;
        let first = *p.first_watcher.get_or_insert(now);
        let p = *p;
        self.finish_if_done(&mut pending, id);
        drop(pending);
        if !p.measured {
            return;
        }
        self.measured
            .watcher_deliveries
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.latencies.lock() {
            l.watcher
                .saturating_record(micros(now.saturating_duration_since(p.intended)));
            l.watcher_answer
                .saturating_record(micros(since_answer(p.answered, now)));
            if p.watchers_left == 0 {
                l.watcher_spread
                    .saturating_record(micros(now.saturating_duration_since(first)));
            }
        }
    }

    /// After the drain: `(unmatched, watcher deliveries missing)` of the
    /// measured actions still waiting; their records are kept.
    pub fn close(&self) -> (u64, u64) {
        let Ok(mut pending) = self.pending.lock() else {
            return (0, 0);
        };
        let mut unmatched = 0;
        let mut missing = 0;
        for (id, p) in pending.drain() {
            if p.measured {
                unmatched += u64::from(p.left > 0);
                missing += u64::from(p.watchers_left);
                self.keep(id, &p);
            }
        }
        (unmatched, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(intended: Instant, player: usize, left: u32, watchers: u32) -> Pending {
        Pending {
            measured: true,
            watchers_left: watchers,
            ..Pending::new(7, intended, player, left)
        }
    }

    fn near(us: u64, want: u64) -> bool {
        us.abs_diff(want) < 20
    }

    #[test]
    fn an_update_counts_from_the_intended_start_once_and_only_on_its_players_socket() {
        let s = Shared::new(false, false);
        let intended = Instant::now();
        s.pending
            .lock()
            .expect("lock")
            .insert("a1".into(), pending(intended, 3, 1, 0));
        // Another player's socket sees the same update first: not ours.
        s.matched("a1", 2, true, intended + Duration::from_millis(1));
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 0);
        s.answered("a1", intended + Duration::from_millis(4));
        s.matched("a1", 3, true, intended + Duration::from_millis(7));
        s.matched("a1", 3, true, intended + Duration::from_millis(9));
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 1);
        assert!(s.pending.lock().expect("lock").is_empty());
        let l = s.latencies.lock().expect("lock");
        assert_eq!(l.update.len(), 1);
        // From its 202 (4 ms) to the update (7 ms).
        assert!(
            near(l.answer_update.max(), 3000),
            "{}",
            l.answer_update.max()
        );
        assert!(near(l.update.max(), 7000), "{}", l.update.max());
        assert_eq!(l.windows.len(), 1);
        assert_eq!(l.windows[0].update.len(), 1);
    }

    #[test]
    fn an_arena_update_counts_when_the_last_of_its_players_has_it() {
        let s = Shared::new(true, false);
        let intended = Instant::now();
        s.pending
            .lock()
            .expect("lock")
            .insert("m1".into(), pending(intended, 0, 3, 0));
        s.answered("m1", intended + Duration::from_millis(1));
        for (socket, ms) in [(0, 2), (1, 4)] {
            s.matched("m1", socket, true, intended + Duration::from_millis(ms));
        }
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 0, "one to go");
        s.matched("m1", 2, true, intended + Duration::from_millis(11));
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 1);
        let l = s.latencies.lock().expect("lock");
        assert!(near(l.update.max(), 11_000), "{}", l.update.max());
    }

    #[test]
    fn every_watcher_of_the_game_counts_once_with_the_spread_first_to_last() {
        let s = Shared::new(false, true);
        let intended = Instant::now();
        s.pending
            .lock()
            .expect("lock")
            .insert("w1".into(), pending(intended, 0, 1, 3));
        // The first watcher has it before the 202: zero from the answer.
        s.watcher_saw("w1", intended + Duration::from_millis(2));
        s.answered("w1", intended + Duration::from_millis(3));
        s.matched("w1", 0, false, intended + Duration::from_millis(4));
        // The player has it, but two watchers have not: still waiting.
        assert_eq!(s.pending.lock().expect("lock").len(), 1);
        s.watcher_saw("w1", intended + Duration::from_millis(5));
        s.watcher_saw("w1", intended + Duration::from_millis(9));
        // A fourth arrival (a watcher seeing it twice) changes nothing.
        s.watcher_saw("w1", intended + Duration::from_millis(12));
        assert!(s.pending.lock().expect("lock").is_empty());
        assert_eq!(s.measured.before_answer.load(Ordering::Relaxed), 0);
        assert_eq!(s.measured.rejected.load(Ordering::Relaxed), 1);
        assert_eq!(s.measured.watcher_deliveries.load(Ordering::Relaxed), 3);
        {
            let l = s.latencies.lock().expect("lock");
            assert_eq!(l.watcher.len(), 3);
            assert!(near(l.watcher.max(), 9000), "{}", l.watcher.max());
            assert!(
                near(l.watcher_answer.min(), 1),
                "{}",
                l.watcher_answer.min()
            );
            assert!(
                near(l.watcher_answer.max(), 6000),
                "{}",
                l.watcher_answer.max()
            );
            assert_eq!(l.watcher_spread.len(), 1);
            assert!(
                near(l.watcher_spread.max(), 7000),
                "{}",
                l.watcher_spread.max()
            );
        }
        let actions = s.actions.as_ref().expect("kept").lock().expect("lock");
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].id, "w1");
        assert_eq!(
            actions[0].update.map(|u| u - intended.into_std()),
            Some(Duration::from_millis(4))
        );
    }

    #[test]
    fn an_update_before_its_202_counts_zero_and_its_record_waits_for_the_202() {
        let s = Shared::new(false, true);
        let intended = Instant::now();
        s.pending
            .lock()
            .expect("lock")
            .insert("b1".into(), pending(intended, 0, 1, 0));
        s.matched("b1", 0, true, intended + Duration::from_millis(3));
        assert_eq!(s.measured.before_answer.load(Ordering::Relaxed), 1);
        assert_eq!(
            s.pending.lock().expect("lock").len(),
            1,
            "waits for its 202"
        );
        s.answered("b1", intended + Duration::from_millis(5));
        assert!(s.pending.lock().expect("lock").is_empty());
        let actions = s.actions.as_ref().expect("kept").lock().expect("lock");
        let a = &actions[0];
        assert!(a.update < a.answered, "{a:?}");
        let l = s.latencies.lock().expect("lock");
        assert!(near(l.answer_update.max(), 1), "{}", l.answer_update.max());
    }

    #[test]
    fn what_never_came_is_counted_at_the_close() {
        let s = Shared::new(false, true);
        let intended = Instant::now();
        {
            let mut p = s.pending.lock().expect("lock");
            p.insert("u1".into(), pending(intended, 0, 1, 10));
            p.insert("u2".into(), pending(intended, 1, 1, 10));
        }
        s.answered("u1", intended);
        s.matched("u1", 0, true, intended + Duration::from_millis(1));
        s.watcher_saw("u1", intended + Duration::from_millis(1));
        s.watcher_saw("u2", intended + Duration::from_millis(1));
        assert_eq!(s.close(), (1, 18));
        assert_eq!(
            s.actions
                .as_ref()
                .expect("kept")
                .lock()
                .expect("lock")
                .len(),
            2
        );
    }

    #[test]
    fn a_frame_answers_its_applied_and_rejected_ids() {
        let f = Frame::parse(
            r#"{"kind":"update","version":3,"state":{"players":{}},"applied":["a","b"],
                "rejected":[{"event_id":"c","reason":{"code":"max_level"}},{"player_id":"x"}]}"#,
        )
        .expect("frame");
        let ids: Vec<_> = f.ids().collect();
        assert_eq!(ids, [("a", true), ("b", true), ("c", false)]);
        let none = Frame::parse(r#"{"kind":"snapshot","applied":null}"#).expect("frame");
        assert_eq!(none.ids().count(), 0);
        assert!(Frame::parse("not json").is_none());
    }
}
