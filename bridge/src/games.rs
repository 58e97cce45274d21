//! The watcher hub: who watches which game, each watched game's state, and
//! the fan-out of its updates.
//!
//! A game's state comes from two places, neither of them the start of a
//! partition:
//! - its **first snapshot** from a [`SnapshotSource`]: the engine that owns
//!   the game's partition answers an interactive query
//!   ([`crate::owners::EngineQueries`]);
//! - its **deltas** ([`GameDelta`]) from the [`crate::reader`], which tails
//!   the watched `games` partitions from where they ended when the first
//!   watcher came (so every delta after the snapshot is seen).
//!
//! Each delta is serialised once and sent to every watcher through a bounded
//! `broadcast` channel: a watcher that falls behind gets a `Lagged` and is
//! sent a snapshot instead (conflation), so it never delays others and never
//! makes memory grow. A delta that does not follow the state held (a gap:
//! the reader came in the middle of a step) drops the state; the next
//! snapshot asked for reloads it.
//!
//! Partitions are released [`RELEASE_LINGER`] after their last watcher left;
//! when is decided by [`Releases`], a pure function of the time it is given.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use shared::{partition_for, Fit, GameDelta, GameSnapshot, ServerMessage};
use tokio::sync::{broadcast, watch};

/// How many updates a game's channel holds for a watcher that is behind.
const CHANNEL_CAPACITY: usize = 64;
/// How long a partition stays read after its last watcher left.
pub const RELEASE_LINGER: Duration = Duration::from_secs(30);
/// Deltas kept for a game whose snapshot is still on its way.
const PENDING_CAP: usize = 1024;

/// Where a game's whole state comes from.
pub trait SnapshotSource: Send + Sync {
    /// The game's state; `Ok(None)` when the game has none yet.
    fn snapshot(&self, game_id: u64) -> BoxFuture<'static, Result<Option<GameSnapshot>, String>>;
}

/// A source that knows only what it was given (handler tests).
#[derive(Default)]
pub struct MemorySource(pub Mutex<HashMap<u64, GameSnapshot>>);

impl SnapshotSource for MemorySource {
    fn snapshot(&self, game_id: u64) -> BoxFuture<'static, Result<Option<GameSnapshot>, String>> {
        let found = self
            .0
            .lock()
            .expect("memory source lock")
            .get(&game_id)
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// One delta, serialised once for every watcher.
#[derive(Debug)]
pub struct Frame {
    pub since: u64,
    pub version: u64,
    /// `{"kind": "update", ...}` as sent on the WebSocket.
    pub text: axum::extract::ws::Utf8Bytes,
}

/// A snapshot, serialised once for every watcher that needs it.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    /// `{"kind": "snapshot", ...}`.
    pub text: axum::extract::ws::Utf8Bytes,
    pub game: GameSnapshot,
}

impl Snapshot {
    fn new(game: GameSnapshot) -> Snapshot {
        let message = ServerMessage::Snapshot(game);
        let text = serde_json::to_string(&message).expect("snapshots serialise");
        let ServerMessage::Snapshot(game) = message else {
            unreachable!("built as a snapshot")
        };
        Snapshot {
            version: game.version,
            text: text.into(),
            game,
        }
    }
}

struct GameEntry {
    /// The state held; `None` until a snapshot came, or after a gap.
    state: Option<GameSnapshot>,
    /// The serialised state, while its version is current.
    cached: Option<Arc<Snapshot>>,
    /// Deltas seen while the state was `None`, applied when it comes.
    pending: Vec<GameDelta>,
    /// The highest version taken from either feed (the reader, the engine
    /// in this process): a delta at or below it was taken already.
    latest: u64,
    tx: broadcast::Sender<Arc<Frame>>,
    /// One snapshot load at a time per game.
    load: Arc<tokio::sync::Mutex<()>>,
}

impl GameEntry {
    fn new() -> GameEntry {
        GameEntry {
            state: None,
            cached: None,
            pending: Vec::new(),
            latest: 0,
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            load: Arc::default(),
        }
    }

    /// Applies `delta` to the state held; false on a gap (the state is
    /// dropped).
    fn apply(&mut self, delta: &GameDelta) -> bool {
        let Some(state) = &mut self.state else {
            return true;
        };
        match delta.fit(state.version) {
            Fit::Old => true,
            Fit::Applies => {
                delta.apply_state(&mut state.state);
                state.version = delta.version;
                if delta.actions_offset.is_some() {
                    state.actions_offset = delta.actions_offset;
                }
                true
            }
            Fit::Gap => {
                self.state = None;
                self.cached = None;
                false
            }
        }
    }
}

struct PartitionEntry {
    watchers: usize,
    tailing: watch::Sender<bool>,
}

#[derive(Default)]
struct HubInner {
    games: HashMap<u64, GameEntry>,
    partitions: HashMap<i32, PartitionEntry>,
}

/// What the hub asks of the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start tailing a partition (from its current end).
    Tail(i32),
    /// Its last watcher left: release it after the linger.
    Release(i32),
}

/// Watchers, states and fan-out. Fed by the reader (or, in tests, by
/// [`GamesHub::ingest`]).
pub struct GamesHub {
    inner: Mutex<HubInner>,
    partitions: i32,
    source: Arc<dyn SnapshotSource>,
    commands: Mutex<Option<std::sync::mpsc::Sender<Command>>>,
    /// Watchers per partition, as `inner` counts them, readable without
    /// its lock: [`GamesHub::watches_partition_of`] is asked once per action.
    watched: Box<[AtomicU32]>,
    /// Actions produced here, waiting for their update (the end-to-end
    /// latency metric).
    pub pending: Arc<crate::metrics::PendingActions>,
}

/// A registered watcher of one game; unregisters on drop.
pub struct Watch {
    hub: Arc<GamesHub>,
    game_id: u64,
    partition: i32,
    /// Deltas of this game, from the moment of registration.
    pub updates: broadcast::Receiver<Arc<Frame>>,
    /// Becomes true once the reader tails the game's partition: from then
    /// on every delta after a snapshot reaches `updates`.
    pub tailing: watch::Receiver<bool>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unwatch(self.partition);
    }
}

impl Watch {
    pub fn game_id(&self) -> u64 {
        self.game_id
    }
}

impl GamesHub {
    /// A hub with no reader: deltas arrive through [`GamesHub::ingest`] and
    /// every partition counts as tailed (handler tests).
    pub fn detached(partitions: i32, source: Arc<dyn SnapshotSource>) -> Arc<GamesHub> {
        Arc::new(GamesHub {
            inner: Mutex::default(),
            partitions,
            source,
            commands: Mutex::new(None),
            watched: (0..partitions.max(0)).map(|_| AtomicU32::new(0)).collect(),
            pending: Arc::default(),
        })
    }

    /// Connects the reader: the hub sends it [`Command`]s.
    pub fn attach(&self, commands: std::sync::mpsc::Sender<Command>) {
        *self.commands.lock().expect("hub lock") = Some(commands);
    }

    /// Partitions of `games`.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Registers a watcher of `game_id`; tails its partition if it is the first.
    pub fn watch(self: &Arc<Self>, game_id: u64) -> Watch {
        let partition = partition_for(game_id, self.partitions);
        let detached = self.commands.lock().expect("hub lock").is_none();
        let mut inner = self.inner.lock().expect("hub lock");
        let entry = inner
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionEntry {
                watchers: 0,
                tailing: watch::channel(detached).0,
            });
        entry.watchers += 1;
        self.count_watchers(partition, entry.watchers);
        let tailing = entry.tailing.subscribe();
        if entry.watchers == 1 {
            self.send(Command::Tail(partition));
        }
        let updates = inner
            .games
            .entry(game_id)
            .or_insert_with(GameEntry::new)
            .tx
            .subscribe();
        Watch {
            hub: self.clone(),
            game_id,
            partition,
            updates,
            tailing,
        }
    }

    fn unwatch(&self, partition: i32) {
        let mut inner = self.inner.lock().expect("hub lock");
        if let Some(entry) = inner.partitions.get_mut(&partition) {
            entry.watchers = entry.watchers.saturating_sub(1);
            self.count_watchers(partition, entry.watchers);
            if entry.watchers == 0 {
                self.send(Command::Release(partition));
            }
        }
    }

    /// Mirrors a partition's watcher count (called under `inner`'s lock).
    fn count_watchers(&self, partition: i32, watchers: usize) {
        if let Some(count) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.watched.get(p))
        {
            count.store(
                u32::try_from(watchers).unwrap_or(u32::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Whether someone here watches a game of `game_id`'s partition: only
    /// then can the game's updates come back to this bridge (the partitions
    /// it tails). Lock-free: asked for every action produced.
    pub fn watches_partition_of(&self, game_id: u64) -> bool {
        usize::try_from(partition_for(game_id, self.partitions))
            .ok()
            .and_then(|p| self.watched.get(p))
            .is_some_and(|count| count.load(Ordering::Relaxed) > 0)
    }

    fn send(&self, command: Command) {
        if let Some(tx) = self.commands.lock().expect("hub lock").as_ref() {
            let _ = tx.send(command);
        }
    }

    /// The watched game's whole state: the one held, else one loaded from
    /// the source (one load at a time per game; deltas that came meanwhile
    /// are applied on top).
    pub async fn snapshot(&self, game_id: u64) -> Result<Arc<Snapshot>, String> {
        let load = {
            let mut inner = self.inner.lock().expect("hub lock");
            let entry = inner.games.entry(game_id).or_insert_with(GameEntry::new);
            if let Some(cached) = current(entry) {
                return Ok(cached);
            }
            entry.load.clone()
        };
        let _loading = load.lock().await;
        {
            let mut inner = self.inner.lock().expect("hub lock");
            if let Some(cached) = inner.games.get_mut(&game_id).and_then(current) {
                return Ok(cached);
            }
        }
        let loaded = self
            .source
            .snapshot(game_id)
            .await?
            .unwrap_or(GameSnapshot {
                game_id,
                ..GameSnapshot::default()
            });
        let mut inner = self.inner.lock().expect("hub lock");
        let entry = inner.games.entry(game_id).or_insert_with(GameEntry::new);
        entry.state = Some(loaded);
        for delta in std::mem::take(&mut entry.pending) {
            entry.apply(&delta);
        }
        match current(entry) {
            Some(cached) => Ok(cached),
            // A pending delta left a gap: what the source answered is
            // already behind; the caller asks again.
            None => Err(format!("game {game_id} moved on while loading")),
        }
    }

    /// The game's state if this bridge holds it (no load).
    pub fn held(&self, game_id: u64) -> Option<Arc<Snapshot>> {
        let mut inner = self.inner.lock().expect("hub lock");
        inner.games.get_mut(&game_id).and_then(current)
    }

    /// The source's answer for a game, without watching it.
    pub async fn query(&self, game_id: u64) -> Result<Option<GameSnapshot>, String> {
        self.source.snapshot(game_id).await
    }

    /// Takes one delta, from the reader or from the engine in this process
    /// (which hands each step over as it sends it, before the reader can
    /// have it: see `engine::StepListener`): applies it to the state held
    /// and sends it to the game's watchers. A delta taken already from the
    /// other feed, and deltas of games nobody here watches, are dropped.
    pub fn ingest(&self, delta: GameDelta) {
        self.pending.seen(
            delta
                .applied
                .iter()
                .map(String::as_str)
                .chain(delta.rejected.iter().map(|r| r.event_id.as_str())),
            Instant::now(),
        );
        let mut inner = self.inner.lock().expect("hub lock");
        let Some(entry) = inner.games.get_mut(&delta.game_id) else {
            return;
        };
        if delta.version <= entry.latest {
            return;
        }
        entry.latest = delta.version;
        if entry.state.is_none() {
            if entry.pending.len() >= PENDING_CAP {
                entry.pending.clear();
            }
            entry.pending.push(delta.clone());
        } else if !entry.apply(&delta) {
            tracing::debug!(
                game_id = delta.game_id,
                since = delta.since,
                "gap in the game's deltas: its state reloads"
            );
        }
        if entry.tx.receiver_count() == 0 {
            return;
        }
        let (since, version) = (delta.since, delta.version);
        let text = serde_json::to_string(&ServerMessage::Update(delta)).expect("deltas serialise");
        // No receivers is fine: nobody watches this game right now.
        let _ = entry.tx.send(Arc::new(Frame {
            since,
            version,
            text: text.into(),
        }));
    }

    /// The reader came in the middle of a step of `game_id`: what it saw of
    /// the step is incomplete, so the state held cannot be trusted.
    pub fn ingest_gap(&self, game_id: u64, version: u64) {
        let mut inner = self.inner.lock().expect("hub lock");
        if let Some(entry) = inner.games.get_mut(&game_id) {
            if version <= entry.latest {
                // The engine in this process handed the step over whole.
                return;
            }
            entry.state = None;
            entry.cached = None;
            entry.pending.clear();
            let _ = entry.tx.send(Arc::new(Frame {
                since: u64::MAX,
                version,
                text: axum::extract::ws::Utf8Bytes::from_static(""),
            }));
        }
    }

    /// The reader tails `partition` now.
    pub fn mark_tailing(&self, partition: i32) {
        if let Some(entry) = self
            .inner
            .lock()
            .expect("hub lock")
            .partitions
            .get(&partition)
        {
            entry.tailing.send_replace(true);
        }
    }

    /// Forgets a released partition's games, if it is still unwatched; false
    /// when a watcher came back meanwhile.
    pub fn forget(&self, partition: i32) -> bool {
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

    /// Number of partitions tailed for watchers and of games held (for
    /// `/metrics`).
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("hub lock");
        (
            inner.partitions.values().filter(|p| p.watchers > 0).count(),
            inner.games.len(),
        )
    }
}

/// The entry's serialised state, refreshed if the state moved on.
fn current(entry: &mut GameEntry) -> Option<Arc<Snapshot>> {
    let state = entry.state.as_ref()?;
    match &entry.cached {
        Some(cached) if cached.version == state.version => Some(cached.clone()),
        _ => {
            let cached = Arc::new(Snapshot::new(state.clone()));
            entry.cached = Some(cached.clone());
            Some(cached)
        }
    }
}

/// When released partitions are let go: a pure schedule, given the time.
#[derive(Debug, Default)]
pub struct Releases {
    due: HashMap<i32, Instant>,
}

impl Releases {
    /// `partition` lost its last watcher at `now`.
    pub fn release(&mut self, partition: i32, now: Instant) {
        self.due.insert(partition, now + RELEASE_LINGER);
    }

    /// `partition` is watched again: keep it.
    pub fn keep(&mut self, partition: i32) {
        self.due.remove(&partition);
    }

    /// The partitions whose linger is over at `now` (removed from the
    /// schedule), in order.
    pub fn due(&mut self, now: Instant) -> Vec<i32> {
        let mut due: Vec<i32> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        due.sort_unstable();
        for p in &due {
            self.due.remove(p);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Nation;
    use std::collections::BTreeMap;

    fn delta(game_id: u64, since: u64, version: u64, player: &str, gold: u64) -> GameDelta {
        GameDelta {
            game_id,
            since,
            version,
            nations: BTreeMap::from([(
                player.to_string(),
                Nation {
                    gold,
                    ..Nation::default()
                },
            )]),
            ..GameDelta::default()
        }
    }

    fn hub_with(games: &[(u64, u64)]) -> Arc<GamesHub> {
        let source = MemorySource::default();
        for &(id, version) in games {
            source.0.lock().unwrap().insert(
                id,
                GameSnapshot {
                    game_id: id,
                    version,
                    ..GameSnapshot::default()
                },
            );
        }
        GamesHub::detached(4, Arc::new(source))
    }

    #[tokio::test]
    async fn watchers_get_deltas_of_their_game_only() {
        let hub = hub_with(&[]);
        let mut a = hub.watch(1);
        let mut b = hub.watch(2);
        hub.ingest(delta(1, 0, 1, "p", 5));
        let frame = a.updates.recv().await.unwrap();
        assert_eq!((frame.since, frame.version), (0, 1));
        let sent: serde_json::Value = serde_json::from_str(&frame.text).unwrap();
        assert_eq!(sent["kind"], "update");
        assert_eq!(sent["nations"]["p"]["gold"], 5);
        assert!(b.updates.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_snapshot_comes_from_the_source_with_later_deltas_on_top() {
        let hub = hub_with(&[(1, 4)]);
        let _w = hub.watch(1);
        // Arrives before the snapshot is asked for: kept, then applied.
        hub.ingest(delta(1, 4, 6, "p", 7));
        let snap = hub.snapshot(1).await.unwrap();
        assert_eq!(snap.version, 6);
        assert_eq!(snap.game.state.players["p"].gold, 7);
        let sent: serde_json::Value = serde_json::from_str(&snap.text).unwrap();
        assert_eq!(sent["kind"], "snapshot");
        // Old deltas change nothing; new ones move the state held.
        hub.ingest(delta(1, 2, 5, "p", 1));
        hub.ingest(delta(1, 6, 7, "q", 2));
        let held = hub.held(1).unwrap();
        assert_eq!(held.version, 7);
        assert_eq!(held.game.state.players["p"].gold, 7);
        assert_eq!(held.game.state.players.len(), 2);
    }

    #[tokio::test]
    async fn a_gap_drops_the_state_until_the_next_snapshot() {
        let hub = hub_with(&[(1, 3)]);
        let _w = hub.watch(1);
        hub.snapshot(1).await.unwrap();
        hub.ingest(delta(1, 9, 10, "p", 1));
        assert!(hub.held(1).is_none(), "a gap: the state is unknown");
        assert_eq!(hub.snapshot(1).await.unwrap().version, 3, "reloaded");
    }

    #[tokio::test]
    async fn an_unknown_game_is_an_empty_one() {
        let hub = hub_with(&[]);
        let _w = hub.watch(3);
        let snap = hub.snapshot(3).await.unwrap();
        assert_eq!((snap.game.game_id, snap.version), (3, 0));
    }

    #[tokio::test]
    async fn a_step_from_both_feeds_reaches_watchers_once() {
        let hub = hub_with(&[(1, 0)]);
        let mut w = hub.watch(1);
        hub.snapshot(1).await.unwrap();
        // The engine in this process hands the step over; the reader then
        // reads the same step back from `games`, or only its end (a gap).
        hub.ingest(delta(1, 0, 2, "p", 5));
        hub.ingest(delta(1, 0, 2, "p", 5));
        hub.ingest_gap(1, 2);
        hub.ingest(delta(1, 1, 2, "p", 5));
        hub.ingest(delta(1, 2, 3, "p", 6));
        let first = w.updates.recv().await.unwrap();
        let second = w.updates.recv().await.unwrap();
        assert_eq!(
            [(first.since, first.version), (second.since, second.version)],
            [(0, 2), (2, 3)]
        );
        assert!(w.updates.try_recv().is_err(), "nothing twice");
        assert_eq!(hub.held(1).unwrap().game.state.players["p"].gold, 6);
    }

    #[test]
    fn knows_without_its_lock_which_partitions_are_watched() {
        let hub = hub_with(&[]);
        assert!(!hub.watches_partition_of(1));
        let first = hub.watch(1);
        let second = hub.watch(5);
        // Games 1 and 5 share partition 1 of 4; game 2 is in partition 2.
        assert!(hub.watches_partition_of(1) && hub.watches_partition_of(9));
        assert!(!hub.watches_partition_of(2));
        drop(first);
        assert!(hub.watches_partition_of(1), "game 5 is still watched");
        drop(second);
        assert!(!hub.watches_partition_of(1));
    }

    #[test]
    fn deltas_of_unwatched_games_are_not_kept() {
        let hub = hub_with(&[]);
        hub.ingest(delta(1, 0, 1, "p", 5));
        assert_eq!(hub.sizes(), (0, 0));
    }

    #[test]
    fn releases_fall_due_after_the_linger_unless_kept() {
        let t0 = Instant::now();
        let mut r = Releases::default();
        r.release(1, t0);
        r.release(2, t0);
        r.keep(2);
        assert!(r
            .due(t0 + RELEASE_LINGER - Duration::from_millis(1))
            .is_empty());
        assert_eq!(r.due(t0 + RELEASE_LINGER), vec![1]);
        assert!(r.due(t0 + RELEASE_LINGER * 2).is_empty(), "once");
    }
}
