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
//!
//! The same checks watch the group membership, which no position shows: a
//! consumer whose group coordinator answers but which has not settled into
//! an assignment (its join held by the broker), or which holds partitions
//! whose committed offsets cannot be read (librdkafka retries an
//! `UNSTABLE_OFFSET_COMMIT` forever, at debug level), consumes nothing and
//! says nothing. Measured once in fault 3 (RELIABILITY.md): 60 s silent
//! after a restart in place. Waiting for [`MEMBERSHIP_STRIKES`] checks in a
//! row, longer than the engine's rebalance timeout, ends the clients too
//! (once per episode: it is watched again once it settles);
//! each waiting check is logged with librdkafka's view of the group.
//!
//! A consumer that has lost its group coordinator (librdkafka's group state
//! other than `up`) while the cluster answers the same check's offset
//! queries is waiting too: on a three-node cluster the coordinator moves
//! within seconds of its node dying, so [`MEMBERSHIP_STRIKES`] such checks
//! in a row end the clients as well (once per episode). Each such check is
//! logged. A check whose queries fail counts for nothing, as before.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the positions are compared with the partitions' ends.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Checks in a row a lagging partition must not move for to be stalled: a
/// restart comes 20 to 30 s into a stall.
pub(crate) const STRIKES: u32 = 3;
/// Checks in a row the group membership may be waiting before the clients
/// are replaced: 30 to 40 s, longer than the engine consumer's rebalance
/// timeout (`max.poll.interval.ms`, 30 s), after which the broker completes
/// any join by itself.
pub(crate) const MEMBERSHIP_STRIKES: u32 = 4;

/// Where the consumer stands with its group at a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Membership {
    /// Assigned (possibly nothing, when members outnumber partitions), with
    /// a start offset for every partition.
    Settled,
    /// The coordinator answers, yet the consumer is not settled: why.
    Waiting(String),
    /// No group coordinator known or connected: why. Counted only when the
    /// cluster answers the same check ([`StallWatch::coordinator_lost`]).
    NoCoordinator(String),
    /// Nothing is known yet: a check that counts for nothing either way.
    Unknown,
}

/// The group as librdkafka's statistics show it (the `cgrp` object).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct GroupStats {
    /// The coordinator connection: `up` once it is known and connected.
    pub state: String,
    /// The membership: `steady` once an assignment is in place.
    pub join_state: String,
    /// How long the group has been in `state`, ms.
    #[serde(default)]
    pub stateage: i64,
    /// Since the last rebalance, ms.
    #[serde(default)]
    pub rebalance_age: i64,
    #[serde(default)]
    pub rebalance_reason: String,
    #[serde(default)]
    pub assignment_size: i64,
}

/// Judges the membership from the latest statistics and the assigned
/// partitions whose start offset could not be read (`unstarted`, with the
/// error).
pub(crate) fn membership(group: Option<&GroupStats>, unstarted: &[i32], error: &str) -> Membership {
    let Some(group) = group else {
        return Membership::Unknown;
    };
    if group.state != "up" {
        return Membership::NoCoordinator(format!(
            "group state {} for {} ms ({} partitions assigned)",
            group.state, group.stateage, group.assignment_size
        ));
    }
    if group.join_state != "steady" {
        return Membership::Waiting(format!(
            "join state {} ({} ms since the last rebalance: {}; {} partitions assigned)",
            group.join_state, group.rebalance_age, group.rebalance_reason, group.assignment_size
        ));
    }
    if !unstarted.is_empty() {
        return Membership::Waiting(format!(
            "partitions {unstarted:?} assigned, their committed offsets unreadable: {error}"
        ));
    }
    Membership::Settled
}

/// The state of the watch between checks.
#[derive(Debug)]
pub(crate) struct StallWatch {
    next_check: Instant,
    /// The positions of the partitions that were behind at the last check,
    /// and for how many checks in a row each has sat there.
    behind: BTreeMap<i32, (i64, u32)>,
    /// Positions already reported stalled once: not counted again.
    forgiven: BTreeMap<i32, i64>,
    /// Checks in a row the membership was waiting.
    waiting: u32,
    /// New clients came for a waiting membership: until it settles, it is
    /// not counted again (another producer's open transaction holding our
    /// offsets, say, is not mended by more restarts).
    waiting_forgiven: bool,
    /// Checks in a row without a group coordinator while the cluster
    /// answered.
    no_coordinator: u32,
    /// New clients came for a lost coordinator: until one is found again,
    /// not counted again.
    coordinator_forgiven: bool,
}

impl StallWatch {
    pub(crate) fn new(now: Instant) -> StallWatch {
        StallWatch {
            next_check: now + CHECK_EVERY,
            behind: BTreeMap::new(),
            forgiven: BTreeMap::new(),
            waiting: 0,
            waiting_forgiven: false,
            no_coordinator: 0,
            coordinator_forgiven: false,
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
        if self.waiting >= MEMBERSHIP_STRIKES {
            self.waiting_forgiven = true;
        }
        self.waiting = 0;
        if self.no_coordinator >= MEMBERSHIP_STRIKES {
            self.coordinator_forgiven = true;
        }
        self.no_coordinator = 0;
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

    /// Records the membership at a check; true once it has been waiting for
    /// [`MEMBERSHIP_STRIKES`] checks in a row.
    pub(crate) fn membership(&mut self, membership: &Membership) -> bool {
        match membership {
            Membership::Settled => {
                self.waiting = 0;
                self.waiting_forgiven = false;
                self.no_coordinator = 0;
                self.coordinator_forgiven = false;
            }
            Membership::Waiting(_) => {
                self.waiting += 1;
                self.no_coordinator = 0;
                self.coordinator_forgiven = false;
            }
            Membership::NoCoordinator(_) | Membership::Unknown => {}
        }
        !self.waiting_forgiven && self.waiting >= MEMBERSHIP_STRIKES
    }

    /// Records a check without a group coordinator at which the cluster
    /// answered; true once that has held for [`MEMBERSHIP_STRIKES`] checks
    /// in a row (and new clients have not been tried for it yet).
    pub(crate) fn coordinator_lost(&mut self) -> bool {
        self.no_coordinator += 1;
        !self.coordinator_forgiven && self.no_coordinator >= MEMBERSHIP_STRIKES
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

    fn group(state: &str, join_state: &str) -> GroupStats {
        GroupStats {
            state: state.into(),
            join_state: join_state.into(),
            ..GroupStats::default()
        }
    }

    #[test]
    fn a_membership_waiting_longer_than_the_rebalance_timeout_ends_the_clients() {
        let t = Instant::now();
        let mut watch = StallWatch::new(t);
        let held = membership(Some(&group("up", "wait-join")), &[], "");
        assert!(matches!(held, Membership::Waiting(ref why) if why.contains("wait-join")));
        for _ in 1..MEMBERSHIP_STRIKES {
            assert!(!watch.membership(&held));
        }
        // An unreachable coordinator neither counts nor forgives here.
        let down = membership(Some(&group("query-coord", "init")), &[], "");
        assert!(matches!(down, Membership::NoCoordinator(ref why) if why.contains("query-coord")));
        assert!(!watch.membership(&down));
        assert!(watch.membership(&held));
        // New clients that find it still waiting do not start again: once
        // is what new clients can do.
        watch.restarted(t);
        for _ in 0..2 * MEMBERSHIP_STRIKES {
            assert!(!watch.membership(&held));
        }
        // Once it settles, it is watched again.
        assert!(!watch.membership(&Membership::Settled));
        for _ in 1..MEMBERSHIP_STRIKES {
            assert!(!watch.membership(&held));
        }
        assert!(watch.membership(&held));
    }

    /// A coordinator lost while the cluster answers ends the clients after
    /// the same number of checks as a held join, once per episode.
    #[test]
    fn a_coordinator_lost_while_the_cluster_answers_ends_the_clients_once() {
        let t = Instant::now();
        let mut watch = StallWatch::new(t);
        for _ in 1..MEMBERSHIP_STRIKES {
            assert!(!watch.coordinator_lost());
        }
        assert!(watch.coordinator_lost());
        // New clients without a coordinator either: not again.
        watch.restarted(t);
        for _ in 0..2 * MEMBERSHIP_STRIKES {
            assert!(!watch.coordinator_lost());
        }
        // Found again, then lost: watched again.
        assert!(!watch.membership(&Membership::Settled));
        for _ in 1..MEMBERSHIP_STRIKES {
            assert!(!watch.coordinator_lost());
        }
        // A check with the coordinator back starts the count afresh.
        assert!(!watch.membership(&membership(Some(&group("up", "wait-join")), &[], "")));
        for _ in 1..MEMBERSHIP_STRIKES {
            assert!(!watch.coordinator_lost());
        }
        assert!(watch.coordinator_lost());
    }

    #[test]
    fn assigned_partitions_without_a_readable_start_are_waiting() {
        let steady = group("up", "steady");
        assert_eq!(membership(Some(&steady), &[], ""), Membership::Settled);
        assert_eq!(membership(None, &[1], "timed out"), Membership::Unknown);
        let waiting = membership(Some(&steady), &[1, 3], "timed out");
        assert!(matches!(waiting, Membership::Waiting(ref why) if why.contains("[1, 3]")));
        let mut watch = StallWatch::new(Instant::now());
        for _ in 1..MEMBERSHIP_STRIKES {
            assert!(!watch.membership(&waiting));
        }
        // Settling starts the count again.
        assert!(!watch.membership(&Membership::Settled));
        assert!(!watch.membership(&waiting));
    }

    #[test]
    fn the_group_statistics_are_read_from_librdkafka_json() {
        let json = r#"{"state":"up","stateage":1203,"join_state":"wait-join","rebalance_age":4100,"rebalance_cnt":2,"rebalance_reason":"group rejoin","assignment_size":0}"#;
        let g: GroupStats = serde_json::from_str(json).unwrap();
        assert_eq!(g.join_state, "wait-join");
        assert_eq!(g.rebalance_age, 4100);
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
