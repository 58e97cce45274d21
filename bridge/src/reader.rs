//! The Kafka side of the hub: a thread that tails the watched `games`
//! partitions and turns their records into [`GameDelta`]s.
//!
//! A partition is tailed from its end at the moment its first watcher came
//! (never from its beginning: a game's state comes from its owner's
//! snapshot, see [`crate::games`]). A step's records arrive as the engine
//! wrote them: the changed nations (or an arena's players and round), then
//! the game's head; the head closes the delta. A head whose records were
//! not all seen (the tail began in the
//! middle of the step) is a gap.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::{GameDelta, GamesRecord};

use crate::games::{Command, GamesHub, Releases};

/// Starts the reader thread on `consumer`; it stops when `stop` is set.
pub fn spawn(
    hub: Arc<GamesHub>,
    consumer: BaseConsumer<ops::metrics::LagContext>,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel();
    hub.attach(tx);
    std::thread::Builder::new()
        .name("games-reader".into())
        .spawn(move || Reader::new(hub, consumer, topic).run(rx, &stop))
        .expect("spawn the games reader")
}

/// Folds one partition's records into deltas.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Entity records (nations, arena players and rounds) seen per game
    /// since its last head, as a delta without its head.
    open: HashMap<u64, (GameDelta, u32)>,
}

/// What a record completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    Nothing,
    Delta(GameDelta),
    /// A head whose step was not seen whole: (game, version).
    Gap(u64, u64),
}

impl Assembler {
    /// Takes the next record of the partition.
    pub fn push(&mut self, record: GamesRecord) -> Assembled {
        match record {
            GamesRecord::Nation(n) => {
                let open = self.open.entry(n.game_id).or_default();
                open.0.nations.insert(n.player_id, n.nation);
                open.1 += 1;
                Assembled::Nothing
            }
            GamesRecord::Fighter(f) => {
                let open = self.open.entry(f.game_id).or_default();
                open.0.fighters.insert(f.player_id, f.fighter);
                open.1 += 1;
                Assembled::Nothing
            }
            GamesRecord::Match(m) => {
                let open = self.open.entry(m.game_id).or_default();
                open.0.arena_match = Some(m.arena_match);
                open.1 += 1;
                Assembled::Nothing
            }
            GamesRecord::Head(head) => {
                let (open, seen) = self.open.remove(&head.game_id).unwrap_or_default();
                if seen != head.changed {
                    return Assembled::Gap(head.game_id, head.version);
                }
                Assembled::Delta(GameDelta {
                    game_id: head.game_id,
                    since: head.since,
                    version: head.version,
                    applied: head.applied,
                    rejected: head.rejected,
                    actions_offset: head.actions_offset,
                    ..open
                })
            }
        }
    }
}

struct Reader {
    hub: Arc<GamesHub>,
    consumer: BaseConsumer<ops::metrics::LagContext>,
    topic: String,
    /// Tailed partitions and where to resume them after a re-assign.
    assigned: BTreeMap<i32, Offset>,
    assemblers: HashMap<i32, Assembler>,
    releases: Releases,
}

impl Reader {
    fn new(
        hub: Arc<GamesHub>,
        consumer: BaseConsumer<ops::metrics::LagContext>,
        topic: String,
    ) -> Reader {
        Reader {
            hub,
            consumer,
            topic,
            assigned: BTreeMap::new(),
            assemblers: HashMap::new(),
            releases: Releases::default(),
        }
    }

    fn run(mut self, commands: mpsc::Receiver<Command>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let mut changed = false;
            while let Ok(command) = commands.try_recv() {
                changed |= self.command(command);
            }
            changed |= self.drop_released();
            if changed {
                self.reassign();
            }
            if self.assigned.is_empty() {
                // Nothing to read: wait for a command instead of spinning.
                match commands.recv_timeout(Duration::from_millis(100)) {
                    Ok(command) => {
                        if self.command(command) {
                            self.reassign();
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                continue;
            }
            // Drain what is there, then check commands again.
            let mut budget = 1024;
            let mut timeout = Duration::from_millis(5);
            while budget > 0 {
                match self.consumer.poll(timeout) {
                    Some(Ok(msg)) => {
                        budget -= 1;
                        timeout = Duration::ZERO;
                        let partition = msg.partition();
                        self.assigned
                            .insert(partition, Offset::Offset(msg.offset() + 1));
                        let Some(payload) = msg.payload() else {
                            continue; // a tombstone: nothing to show
                        };
                        match serde_json::from_slice::<GamesRecord>(shared::framing::json(payload))
                        {
                            Ok(record) => {
                                match self.assemblers.entry(partition).or_default().push(record) {
                                    Assembled::Nothing => {}
                                    Assembled::Delta(delta) => self.hub.ingest(delta),
                                    Assembled::Gap(game, version) => {
                                        self.hub.ingest_gap(game, version)
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::warn!(partition, offset = msg.offset(), error = %e, "undecodable record on games")
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "games reader");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Applies a command; true when the assignment must change.
    fn command(&mut self, command: Command) -> bool {
        match command {
            Command::Tail(p) => {
                self.releases.keep(p);
                if self.assigned.contains_key(&p) {
                    // Still tailed from before: every delta since is known.
                    self.hub.mark_tailing(p);
                    return false;
                }
                // From the end as it is now: whatever the engine writes after
                // the snapshot that follows is at or past it.
                let end = self
                    .consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(5))
                    .map(|(_, high)| Offset::Offset(high))
                    .unwrap_or_else(|e| {
                        tracing::warn!(partition = p, error = %e, "end offset unavailable; tailing from the end");
                        Offset::End
                    });
                self.assigned.insert(p, end);
                self.assemblers.insert(p, Assembler::default());
                true
            }
            Command::Release(p) => {
                self.releases.release(p, Instant::now());
                false
            }
        }
    }

    fn drop_released(&mut self) -> bool {
        let mut changed = false;
        for p in self.releases.due(Instant::now()) {
            if self.hub.forget(p) {
                self.assigned.remove(&p);
                self.assemblers.remove(&p);
                changed = true;
            }
        }
        changed
    }

    fn reassign(&mut self) {
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in &self.assigned {
            if let Err(e) = tpl.add_partition_offset(&self.topic, *p, *offset) {
                tracing::warn!(partition = p, error = %e, "assignment");
            }
        }
        match self.consumer.assign(&tpl) {
            Ok(()) => {
                for p in self.assigned.keys() {
                    self.hub.mark_tailing(*p);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not assign games partitions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{GameHead, Nation, NationRecord};

    fn nation(game_id: u64, player: &str) -> GamesRecord {
        GamesRecord::Nation(NationRecord {
            game_id,
            player_id: player.into(),
            version: 2,
            nation: Nation::default(),
        })
    }

    fn head(game_id: u64, since: u64, version: u64, changed: u32) -> GamesRecord {
        GamesRecord::Head(GameHead {
            game_id,
            since,
            version,
            changed,
            ..GameHead::default()
        })
    }

    #[test]
    fn a_head_closes_the_delta_of_its_game() {
        let mut a = Assembler::default();
        assert_eq!(a.push(nation(1, "p")), Assembled::Nothing);
        assert_eq!(a.push(nation(2, "q")), Assembled::Nothing);
        assert_eq!(a.push(nation(1, "r")), Assembled::Nothing);
        match a.push(head(1, 0, 2, 2)) {
            Assembled::Delta(d) => {
                assert_eq!((d.game_id, d.since, d.version), (1, 0, 2));
                assert_eq!(d.nations.keys().collect::<Vec<_>>(), ["p", "r"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.push(head(2, 0, 1, 1)), Assembled::Delta(_)));
    }

    #[test]
    fn a_step_seen_in_part_is_a_gap() {
        let mut a = Assembler::default();
        // The tail began after the step's first nation record.
        a.push(nation(1, "r"));
        assert_eq!(a.push(head(1, 4, 6, 2)), Assembled::Gap(1, 6));
        a.push(nation(1, "p"));
        assert!(matches!(a.push(head(1, 6, 7, 1)), Assembled::Delta(_)));
    }
}
