//! The engine's own watch for a consumer that stopped fetching.
//!
//! Measured on a three-node cluster with one node killed (fault 4 in
//! RELIABILITY.md): once, the engine applied nothing for 90 s with records
//! waiting and no error from librdkafka, while the surviving nodes timed
//! its requests out. Nothing inside the client says so, so the engine asks
//! from outside: every [`CHECK_EVERY`] it compares where it has consumed to
//! on each assigned partition with that partition's last stable offset (read
//! by another client). A partition behind its end whose position has not
//! moved over [`STRIKES`] checks in a row is stalled, and the engine starts
//! again in place with new clients (`EngineError::Stalled`).
//!
//! Moving positions never count, so a backlog being worked through, a
//! restore or a rewind is not a stall; a check whose offsets could not be
//! read counts for nothing either way (a whole-cluster outage is not ours to
//! mend by restarting). The watch outlives a restart: a partition still at
//! the position it stalled at after new clients is not a client's fault (a
//! transaction marker at the end of a topic some other producer writes
//! transactionally, say), so it is not counted again until it moves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the positions are compared with the partitions' ends.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Checks in a row a lagging partition must not move for to be stalled: a
/// restart comes 20 to 30 s into a stall.
pub(crate) const STRIKES: u32 = 3;

/// The state of the watch between checks.
#[derive(Debug)]
pub(crate) struct StallWatch {
    next_check: Instant,
    /// The positions of the partitions that were behind at the last check,
    /// and for how many checks in a row each has sat there.
    behind: BTreeMap<i32, (i64, u32)>,
    /// Positions already reported stalled once: not counted again.
    forgiven: BTreeMap<i32, i64>,
}

impl StallWatch {
    pub(crate) fn new(now: Instant) -> StallWatch {
        StallWatch {
            next_check: now + CHECK_EVERY,
            behind: BTreeMap::new(),
            forgiven: BTreeMap::new(),
        }
    }

    /// Whether a check is due.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next_check
    }

    /// New clients start: the count starts again, and the partitions that
    /// stalled are not counted again at the positions they stalled at.
    pub(crate) fn restarted(&mut self, now: Instant) {
        self.next_check = now + CHECK_EVERY;
        for (partition, (at, strikes)) in std::mem::take(&mut self.behind) {
            if strikes >= STRIKES {
                self.forgiven.insert(partition, at);
            }
        }
    }

    /// A check that could not read the offsets: the next one comes a full
    /// interval later, and what was seen before is kept.
    pub(crate) fn unknown(&mut self, now: Instant) {
        self.next_check = now + CHECK_EVERY;
    }

    /// Records a check: `positions` where the engine has consumed to, and
    /// `ends` each partition's last stable offset. Returns the partitions
    /// stalled (behind, and at the same position for [`STRIKES`] checks).
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        positions: &BTreeMap<i32, i64>,
        ends: &BTreeMap<i32, i64>,
    ) -> Vec<i32> {
        self.next_check = now + CHECK_EVERY;
        let mut behind = BTreeMap::new();
        for (&partition, &end) in ends {
            let Some(&at) = positions.get(&partition) else {
                continue;
            };
            if self.forgiven.get(&partition).is_some_and(|&f| f == at) {
                continue;
            }
            self.forgiven.remove(&partition);
            if at >= end {
                continue;
            }
            let strikes = match self.behind.get(&partition) {
                Some(&(before, strikes)) if before == at => strikes + 1,
                _ => 1,
            };
            behind.insert(partition, (at, strikes));
        }
        self.behind = behind;
        self.behind
            .iter()
            .filter(|(_, &(_, strikes))| strikes >= STRIKES)
            .map(|(&p, _)| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_partition_behind_that_never_moves_is_stalled_after_three_checks() {
        let t = Instant::now();
        let mut watch = StallWatch::new(t);
        assert!(!watch.due(t));
        assert!(watch.due(t + CHECK_EVERY));
        let (at, ends) = (map(&[(0, 10), (1, 5)]), map(&[(0, 12), (1, 5)]));
        assert!(watch.observe(t, &at, &ends).is_empty());
        assert!(watch.observe(t, &at, &ends).is_empty());
        assert_eq!(watch.observe(t, &at, &ends), vec![0]);
    }

    #[test]
    fn a_backlog_being_worked_through_is_not_a_stall() {
        let t = Instant::now();
        let mut watch = StallWatch::new(t);
        let ends = map(&[(0, 1_000)]);
        for at in [100, 200, 300, 400, 500] {
            assert!(watch.observe(t, &map(&[(0, at)]), &ends).is_empty());
        }
    }

    #[test]
    fn caught_up_or_unknown_partitions_start_the_count_again() {
        let t = Instant::now();
        let mut watch = StallWatch::new(t);
        let ends = map(&[(0, 12)]);
        watch.observe(t, &map(&[(0, 10)]), &ends);
        watch.observe(t, &map(&[(0, 10)]), &ends);
        // Caught up (the end was an aborted transaction's marker, say).
        watch.observe(t, &map(&[(0, 10)]), &map(&[(0, 10)]));
        assert!(watch.observe(t, &map(&[(0, 10)]), &ends).is_empty());
        // A check that could not read the offsets keeps the count.
        watch.unknown(t);
        assert!(watch.observe(t, &map(&[(0, 10)]), &ends).is_empty());
        assert_eq!(watch.observe(t, &map(&[(0, 10)]), &ends), vec![0]);
        // A partition no longer assigned (no position) is not watched.
        assert!(watch.observe(t, &map(&[]), &ends).is_empty());
    }

    #[test]
    fn a_stall_new_clients_did_not_mend_is_reported_once() {
        let t = Instant::now();
        let mut watch = StallWatch::new(t);
        let (at, ends) = (map(&[(0, 10)]), map(&[(0, 12)]));
        for _ in 0..STRIKES {
            watch.observe(t, &at, &ends);
        }
        watch.restarted(t);
        assert!(!watch.due(t));
        for _ in 0..2 * STRIKES {
            assert!(watch.observe(t, &at, &ends).is_empty());
        }
        // Once it moves, it is watched again.
        let (at, ends) = (map(&[(0, 11)]), map(&[(0, 20)]));
        for _ in 1..STRIKES {
            assert!(watch.observe(t, &at, &ends).is_empty());
        }
        assert_eq!(watch.observe(t, &at, &ends), vec![0]);
    }
}
