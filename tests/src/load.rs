//! [`Load`]: players acting as the contract tells clients to, for the fault
//! tests: one `default` action at a time, each retried with the same action
//! id (`Idempotency-Key`) on `503` (and, where a test allows it, on a
//! refused connection) until it is acknowledged. What they saw is kept, so
//! a test can then check that every acknowledged action is in exactly one
//! committed update ([`applied_exactly_once`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use shared::GamesRecord;
use tokio::task::JoinHandle;

/// One player of the load: where it plays and with which token.
#[derive(Clone, Debug)]
pub struct Player {
    /// `http://host:port` of the bridge it talks to.
    pub base_url: String,
    pub game_id: u64,
    pub token: String,
}

/// What the players saw.
#[derive(Default)]
struct Seen {
    /// Action id → when its 202 came.
    acked: Mutex<HashMap<String, Instant>>,
    /// 503s with `Retry-After`.
    unavailable: AtomicU64,
    /// Connections refused or reset (a process that is down).
    unreachable: AtomicU64,
    /// Anything else, with the action id.
    wrong: Mutex<Vec<String>>,
    slowest_ms: AtomicU64,
}

/// What a finished load saw.
#[derive(Debug)]
pub struct Outcome {
    pub acked: HashMap<String, Instant>,
    pub unavailable: u64,
    pub unreachable: u64,
    /// Answers that are neither 202 nor 503 with `Retry-After` (nor, when
    /// allowed, a refused connection).
    pub wrong: Vec<String>,
    /// The slowest single answer.
    pub slowest: Duration,
}

/// Players acting until [`Load::finish`].
pub struct Load {
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts one task per player. `tolerate_unreachable`: a refused
    /// connection is retried (a test that kills the process serving them)
    /// instead of counted as wrong.
    pub fn start(players: Vec<Player>, tolerate_unreachable: bool) -> Load {
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = players
            .into_iter()
            .enumerate()
            .map(|(i, player)| {
                tokio::spawn(play(
                    player,
                    format!("{}-p{i}", uuid::Uuid::new_v4().simple()),
                    seen.clone(),
                    stop.clone(),
                    tolerate_unreachable,
                ))
            })
            .collect();
        Load { seen, stop, tasks }
    }

    /// Actions acknowledged so far.
    pub fn acked(&self) -> usize {
        self.seen.acked.lock().unwrap().len()
    }

    /// 503s answered so far.
    pub fn unavailable(&self) -> u64 {
        self.seen.unavailable.load(Ordering::Relaxed)
    }

    /// The first acknowledgement after `t`, if any yet.
    pub fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.seen
            .acked
            .lock()
            .unwrap()
            .values()
            .filter(|a| **a > t)
            .min()
            .copied()
    }

    /// Waits (up to `timeout`) until `n` more actions are acknowledged.
    pub async fn wait_for_more(&self, n: usize, timeout: Duration, what: &str) {
        let target = self.acked() + n;
        crate::eventually(timeout, what, || {
            let done = self.acked() >= target;
            async move { done.then_some(()) }
        })
        .await;
    }

    /// Stops the players (each finishes the action it is on) and returns
    /// what they saw.
    pub async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a player's loop");
        }
        let seen = self.seen;
        let acked = seen.acked.lock().unwrap().clone();
        let wrong = seen.wrong.lock().unwrap().clone();
        Outcome {
            acked,
            unavailable: seen.unavailable.load(Ordering::Relaxed),
            unreachable: seen.unreachable.load(Ordering::Relaxed),
            wrong,
            slowest: Duration::from_millis(seen.slowest_ms.load(Ordering::Relaxed)),
        }
    }
}

async fn play(
    player: Player,
    prefix: String,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    tolerate_unreachable: bool,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client");
    let url = format!("{}/api/games/{}/actions", player.base_url, player.game_id);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("{prefix}-a{n}");
        loop {
            let started = Instant::now();
            let answer = client
                .post(&url)
                .bearer_auth(&player.token)
                .header("Idempotency-Key", &id)
                .json(&serde_json::json!({"type": "default"}))
                .send()
                .await;
            seen.slowest_ms
                .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            match answer {
                Ok(r) if r.status() == 202 => {
                    seen.acked.lock().unwrap().insert(id, Instant::now());
                    break;
                }
                Ok(r) if r.status() == 503 && r.headers().contains_key("retry-after") => {
                    seen.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if tolerate_unreachable && (e.is_connect() || e.is_request()) => {
                    seen.unreachable.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => {
                    seen.wrong
                        .lock()
                        .unwrap()
                        .push(format!("{id}: {}", r.status()));
                    break;
                }
                Err(e) => {
                    seen.wrong.lock().unwrap().push(format!("{id}: {e}"));
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) {
                // Never acknowledged: not counted (it may still be applied,
                // once).
                break;
            }
            // Retry-After says 1 s; a player would wait it. The tests
            // retry sooner to time recoveries closely.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads the committed heads of `games_topic` until every id in `acked` is
/// applied (or `timeout`), and fails if one is missing or any action is
/// applied twice.
pub fn applied_exactly_once(
    brokers: &str,
    games_topic: &str,
    acked: &HashSet<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    // Each record is decoded once, as it arrives.
    let mut applied: HashMap<String, u32> = HashMap::new();
    let mut decoded = 0;
    let mut missing = acked.len();
    let read = crate::consume(brokers, games_topic, timeout, |records| {
        for r in &records[decoded..] {
            if let Ok(GamesRecord::Head(head)) =
                serde_json::from_slice(r.payload().unwrap_or_default())
            {
                for id in head.applied {
                    if acked.contains(&id) && !applied.contains_key(&id) {
                        missing -= 1;
                    }
                    *applied.entry(id).or_default() += 1;
                }
            }
        }
        decoded = records.len();
        missing == 0
    });
    if let Err(e) = read {
        let mut missing: Vec<&String> = acked
            .iter()
            .filter(|id| !applied.contains_key(*id))
            .collect();
        missing.sort();
        anyhow::bail!(
            "{e}; {} of {} acknowledged actions not in a committed update, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(10)]
        );
    }
    let doubled: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    anyhow::ensure!(doubled.is_empty(), "applied twice: {doubled:?}");
    Ok(())
}
