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
//! Memory: one entry per (player, id) of the window. The maps are
//! persistent (`imbl`), so the engine's copy of a game as a batch found it
//! costs O(1). The engine persists each entry on the `<games>.seen` topic
//! (compacted; a tombstone when the entry leaves the window) in the same
//! transaction as the update, and restores it with the game.

use std::sync::Arc;

use imbl::{HashMap, OrdSet};

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

/// The timestamp of a UUIDv7 in its canonical text form.
fn uuid_v7_ms(id: &str) -> Option<u64> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if hex.as_bytes()[12] != b'7' {
        return None;
    }
    u64::from_str_radix(&hex[..12], 16).ok()
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
    /// `player \0 id` to its time; the key is shared with `by_time`.
    at: HashMap<Arc<str>, u64>,
    by_time: OrdSet<(u64, Arc<str>)>,
    /// The latest stamp seen in this game.
    now_ms: u64,
}

/// One entry's key: the player and the id, joined by a NUL. Player ids never
/// hold one (the bridge draws them as hex), so the first NUL splits them.
fn key(player: &str, id: &str) -> String {
    let mut k = String::with_capacity(player.len() + 1 + id.len());
    k.push_str(player);
    k.push('\0');
    k.push_str(id);
    k
}

fn split(key: &str) -> (String, String) {
    let (player, id) = key.split_once('\0').unwrap_or((key, ""));
    (player.to_string(), id.to_string())
}

impl Seen {
    /// Judges `player`'s action `id` stamped `received_at_ms`.
    pub fn check(&self, player: &str, id: &str, received_at_ms: u64, window_ms: u64) -> Verdict {
        if self.at.contains_key(key(player, id).as_str()) {
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
        let k: Arc<str> = Arc::from(key(player, id));
        if let Some(old) = self.at.insert(k.clone(), at) {
            self.by_time.remove(&(old, k.clone()));
        }
        self.by_time.insert((at, k));
    }

    /// Forgets one id (a tombstone read back on restore).
    pub fn forget(&mut self, player: &str, id: &str) {
        let k = key(player, id);
        if let Some((k, at)) = self.at.remove_with_key(k.as_str()) {
            self.by_time.remove(&(at, k));
        }
    }

    /// Moves "now" to `stamp_ms` (if later) and forgets the ids that fell
    /// out of the window; returns them as (player, id).
    pub fn advance(&mut self, stamp_ms: u64, window_ms: u64) -> Vec<(String, String)> {
        self.now_ms = self.now_ms.max(stamp_ms);
        let mut gone = Vec::new();
        while let Some((at, k)) = self.by_time.get_min().cloned() {
            if at.saturating_add(window_ms) >= self.now_ms {
                break;
            }
            self.by_time.remove_min();
            self.at.remove(&*k);
            gone.push(split(&k));
        }
        gone
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

/// A record of the `<games>.seen` topic: the key names the entry, the value
/// its time (`None`: a tombstone, the entry left the window).
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
        // An id claiming the far future counts as its stamp.
        assert_eq!(
            id_time_ms(&id, t - 10 * FUTURE_SLACK_MS),
            t - 10 * FUTURE_SLACK_MS
        );
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
        let gone = seen.advance(1_000 + w + 1, w);
        assert!(gone.contains(&("p".to_string(), "a".to_string())));
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

    #[test]
    fn a_copy_costs_nothing_and_diverges() {
        let mut seen = Seen::default();
        for i in 0..10_000u64 {
            seen.remember("p", &format!("a{i}"), i);
        }
        let before = seen.clone();
        seen.remember("p", "new", 20_000);
        assert_eq!(before.len(), 10_000);
        assert_eq!(seen.len(), 10_001);
    }
}
