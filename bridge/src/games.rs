//! The `games` side: which partitions this bridge reads, the latest state of
//! each game in them, and the fan-out of updates to watchers.
//!
//! A [`GamesHub`] counts watchers per game and per partition. The first
//! watcher of a partition makes the reader thread assign it (from the start:
//! the topic is compacted, so that is the latest state of every game in it);
//! when the last one leaves, the partition is released after a short linger
//! (so a burst of `GET /api/games/{id}` does not re-read it each time).
//! Each game has a bounded `broadcast` channel: a slow watcher that falls
//! behind gets a `Lagged` and is sent the latest state instead (conflation),
//! so it never delays others and never makes memory grow.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::wire::MessageKind;
use shared::{partition_for, GameUpdate};
use tokio::sync::{broadcast, watch};

/// How many updates a game's channel holds for a watcher that is behind.
const CHANNEL_CAPACITY: usize = 64;
/// How long a partition stays assigned after its last watcher left.
const RELEASE_LINGER: Duration = Duration::from_secs(30);

/// One update, serialised once for every watcher.
#[derive(Debug)]
pub struct Frame {
    pub version: u64,
    /// The update itself (for `GET /api/games/{id}` and snapshots).
    pub update: GameUpdate,
    /// `{"kind": "update", ...}` as sent on the WebSocket.
    pub text: axum::extract::ws::Utf8Bytes,
}

impl Frame {
    /// Serialises `update` once.
    pub fn new(update: GameUpdate) -> Frame {
        let text = message_text(MessageKind::Update, &update);
        Frame {
            version: update.version,
            update,
            text: text.into(),
        }
    }

    /// `{"kind": "snapshot", ...}` for a (re)connecting or lagging watcher.
    pub fn snapshot_text(&self) -> String {
        message_text(MessageKind::Snapshot, &self.update)
    }
}

fn message_text(kind: MessageKind, update: &GameUpdate) -> String {
    // The same JSON as `ServerMessage`, without cloning the update.
    #[derive(serde::Serialize)]
    struct View<'a> {
        kind: MessageKind,
        #[serde(flatten)]
        update: &'a GameUpdate,
    }
    serde_json::to_string(&View { kind, update }).expect("updates serialise")
}

struct GameEntry {
    latest: Option<Arc<Frame>>,
    tx: broadcast::Sender<Arc<Frame>>,
}

struct PartitionEntry {
    watchers: usize,
    loaded: watch::Sender<bool>,
}

#[derive(Default)]
struct HubInner {
    games: HashMap<u64, GameEntry>,
    partitions: HashMap<i32, PartitionEntry>,
}

/// What the hub asks of the reader thread.
#[derive(Debug)]
enum Command {
    Assign(i32),
    Release(i32),
}

/// Watchers, latest states and fan-out. Fed by the reader thread (or, in
/// tests, by [`GamesHub::ingest`]).
pub struct GamesHub {
    inner: Mutex<HubInner>,
    partitions: i32,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

/// A registered watcher of one game; unregisters on drop.
pub struct Watch {
    hub: Arc<GamesHub>,
    game_id: u64,
    partition: i32,
    /// Updates of this game, from the moment of registration.
    pub updates: broadcast::Receiver<Arc<Frame>>,
    /// Becomes true once the partition has been read up to where it was when
    /// assigned: only then is "no state" a real 404.
    pub loaded: watch::Receiver<bool>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unwatch(self.game_id, self.partition);
    }
}

impl GamesHub {
    /// A hub with no reader: updates arrive through [`GamesHub::ingest`] and
    /// every partition counts as loaded (handler tests).
    pub fn detached(partitions: i32) -> Arc<GamesHub> {
        Arc::new(GamesHub {
            inner: Mutex::default(),
            partitions,
            commands: Mutex::new(None),
        })
    }

    /// Registers a watcher of `game_id`; assigns its partition if it is the first.
    pub fn watch(self: &Arc<Self>, game_id: u64) -> Watch {
        let partition = partition_for(game_id, self.partitions);
        let mut inner = self.inner.lock().expect("hub lock");
        let detached = self.commands.lock().expect("hub lock").is_none();
        let entry = inner
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionEntry {
                watchers: 0,
                loaded: watch::channel(detached).0,
            });
        entry.watchers += 1;
        let loaded = entry.loaded.subscribe();
        if entry.watchers == 1 {
            self.send(Command::Assign(partition));
        }
        let updates = inner
            .games
            .entry(game_id)
            .or_insert_with(new_game_entry)
            .tx
            .subscribe();
        Watch {
            hub: self.clone(),
            game_id,
            partition,
            updates,
            loaded,
        }
    }

    fn unwatch(&self, _game_id: u64, partition: i32) {
        let mut inner = self.inner.lock().expect("hub lock");
        if let Some(entry) = inner.partitions.get_mut(&partition) {
            entry.watchers = entry.watchers.saturating_sub(1);
            if entry.watchers == 0 {
                self.send(Command::Release(partition));
            }
        }
    }

    fn send(&self, command: Command) {
        if let Some(tx) = self.commands.lock().expect("hub lock").as_ref() {
            let _ = tx.send(command);
        }
    }

    /// The latest update of a game this bridge holds.
    pub fn latest(&self, game_id: u64) -> Option<Arc<Frame>> {
        self.inner
            .lock()
            .expect("hub lock")
            .games
            .get(&game_id)
            .and_then(|g| g.latest.clone())
    }

    /// Takes one update: keeps it if newer than what we hold, and sends it to
    /// the game's watchers.
    pub fn ingest(&self, update: GameUpdate) {
        let mut inner = self.inner.lock().expect("hub lock");
        let entry = inner
            .games
            .entry(update.game_id)
            .or_insert_with(new_game_entry);
        if entry
            .latest
            .as_ref()
            .is_some_and(|l| l.version >= update.version)
        {
            return;
        }
        let frame = Arc::new(Frame::new(update));
        entry.latest = Some(frame.clone());
        // No receivers is fine: nobody watches this game right now.
        let _ = entry.tx.send(frame);
    }

    /// Number of partitions being read and of games held (for `/metrics`).
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("hub lock");
        (
            inner.partitions.values().filter(|p| p.watchers > 0).count(),
            inner.games.len(),
        )
    }

    fn mark_loaded(&self, partition: i32) {
        if let Some(entry) = self
            .inner
            .lock()
            .expect("hub lock")
            .partitions
            .get(&partition)
        {
            entry.loaded.send_replace(true);
        }
    }

    /// Forgets a released partition's games (only if still unwatched).
    fn forget(&self, partition: i32) -> bool {
        let mut inner = self.inner.lock().expect("hub lock");
        if inner
            .partitions
            .get(&partition)
            .is_some_and(|p| p.watchers > 0)
        {
            return false;
        }
        inner.partitions.remove(&partition);
        let partitions = self.partitions;
        inner.games.retain(|game_id, entry| {
            partition_for(*game_id, partitions) != partition || entry.tx.receiver_count() > 0
        });
        true
    }

    /// Starts the reader thread that consumes the watched `games` partitions.
    /// It stops when `stop` is set.
    pub fn spawn_reader(
        self: &Arc<Self>,
        consumer: BaseConsumer,
        topic: String,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let (tx, rx) = mpsc::channel();
        *self.commands.lock().expect("hub lock") = Some(tx);
        let hub = self.clone();
        std::thread::Builder::new()
            .name("games-reader".into())
            .spawn(move || Reader::new(hub, consumer, topic).run(rx, &stop))
            .expect("spawn the games reader")
    }
}

fn new_game_entry() -> GameEntry {
    GameEntry {
        latest: None,
        tx: broadcast::channel(CHANNEL_CAPACITY).0,
    }
}

/// The reader thread: owns the consumer and the assignment.
struct Reader {
    hub: Arc<GamesHub>,
    consumer: BaseConsumer,
    topic: String,
    /// Assigned partitions and where to resume them after a re-assign.
    assigned: BTreeMap<i32, Offset>,
    /// Partitions still loading, with the high watermark to reach.
    loading: HashMap<i32, i64>,
    /// Released partitions and when to drop them.
    releasing: HashMap<i32, Instant>,
}

impl Reader {
    fn new(hub: Arc<GamesHub>, consumer: BaseConsumer, topic: String) -> Reader {
        Reader {
            hub,
            consumer,
            topic,
            assigned: BTreeMap::new(),
            loading: HashMap::new(),
            releasing: HashMap::new(),
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
            // Drain what is there, then check progress and commands again.
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
                        match msg.payload().map(serde_json::from_slice::<GameUpdate>) {
                            Some(Ok(update)) => self.hub.ingest(update),
                            Some(Err(e)) => {
                                tracing::warn!(partition, offset = msg.offset(), error = %e, "undecodable record on games")
                            }
                            None => {} // a tombstone: nothing to show
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "games reader");
                        break;
                    }
                    None => break,
                }
            }
            self.check_loaded();
        }
    }

    /// Applies a command; true when the assignment must change.
    fn command(&mut self, command: Command) -> bool {
        match command {
            Command::Assign(p) => {
                self.releasing.remove(&p);
                if self.assigned.contains_key(&p) {
                    // Still assigned from before: its state is current.
                    self.hub.mark_loaded(p);
                    return false;
                }
                let high = self
                    .consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(5))
                    .map(|(_, high)| high)
                    .unwrap_or_else(|e| {
                        tracing::warn!(partition = p, error = %e, "watermarks unavailable; treating as empty");
                        0
                    });
                self.assigned.insert(p, Offset::Beginning);
                if high <= 0 {
                    self.hub.mark_loaded(p);
                } else {
                    self.loading.insert(p, high);
                }
                true
            }
            Command::Release(p) => {
                self.releasing.insert(p, Instant::now() + RELEASE_LINGER);
                false
            }
        }
    }

    fn drop_released(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<i32> = self
            .releasing
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        let mut changed = false;
        for p in due {
            self.releasing.remove(&p);
            if self.hub.forget(p) {
                self.assigned.remove(&p);
                self.loading.remove(&p);
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
        if let Err(e) = self.consumer.assign(&tpl) {
            tracing::error!(error = %e, "could not assign games partitions");
        }
    }

    fn check_loaded(&mut self) {
        if self.loading.is_empty() {
            return;
        }
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let done: Vec<i32> = self
            .loading
            .iter()
            .filter(|(p, high)| {
                positions
                    .find_partition(&self.topic, **p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o >= **high),
                        _ => None,
                    })
                    .unwrap_or(false)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in done {
            self.loading.remove(&p);
            self.hub.mark_loaded(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(game_id: u64, version: u64) -> GameUpdate {
        GameUpdate {
            game_id,
            version,
            ..GameUpdate::default()
        }
    }

    #[tokio::test]
    async fn watchers_get_updates_of_their_game_only() {
        let hub = GamesHub::detached(4);
        let mut a = hub.watch(1);
        let mut b = hub.watch(2);
        hub.ingest(update(1, 1));
        assert_eq!(a.updates.recv().await.unwrap().version, 1);
        assert!(b.updates.try_recv().is_err());
    }

    #[tokio::test]
    async fn older_versions_are_ignored() {
        let hub = GamesHub::detached(4);
        hub.ingest(update(1, 5));
        hub.ingest(update(1, 3));
        assert_eq!(hub.latest(1).unwrap().version, 5);
    }

    #[test]
    fn frames_carry_their_kind() {
        let frame = Frame::new(update(3, 9));
        let update: serde_json::Value = serde_json::from_str(&frame.text).unwrap();
        assert_eq!(update["kind"], "update");
        assert_eq!(update["version"], 9);
        let snap: shared::ServerMessage = serde_json::from_str(&frame.snapshot_text()).unwrap();
        assert_eq!(snap.kind, MessageKind::Snapshot);
    }
}
