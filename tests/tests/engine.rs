//! The engine against a real broker: updates on `games`, duplicates, a crash
//! in the middle of a stream, two engines sharing partitions, dead letters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use shared::{
    apply, partition_for, ActionEnvelope, ActionType, FoldedStep, Game, GamesFold, GamesRecord,
    SCHEMA_VERSION,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(40);

/// Topics and group of one test.
struct Setup {
    actions: String,
    games: String,
    dlq: String,
    group: String,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            actions: tests::unique("actions"),
            games: tests::unique("games"),
            dlq: tests::unique("dlq"),
            group: tests::unique("engine"),
        }
    }

    fn config(&self, max_batch: usize) -> engine::Config {
        let mut c = engine::Config::new(tests::broker());
        c.actions_topic = self.actions.clone();
        c.games_topic = self.games.clone();
        c.dlq_topic = self.dlq.clone();
        c.partitions = PARTITIONS;
        c.group_id = self.group.clone();
        c.max_batch = max_batch;
        c.extra = vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
        ];
        c
    }

    /// The engine's replay of this test's `actions` against its `games`.
    async fn replay(&self) -> engine::ReplayReport {
        let config = self.config(20);
        tokio::task::spawn_blocking(move || engine::replay(&config))
            .await
            .unwrap()
            .unwrap()
    }

    /// Creates the topics the way the engine would, so producers can start
    /// before the engine.
    async fn create(&self) {
        engine::create_topics(&self.config(1)).await.unwrap();
    }

    /// Every committed step on `games` (folded), once `done` is satisfied.
    fn updates(&self, what: &str, done: impl FnMut(&[FoldedStep]) -> bool) -> Vec<FoldedStep> {
        self.updates_at("read_committed", what, done)
    }

    /// [`Setup::updates`] at an `isolation.level`.
    fn updates_at(
        &self,
        isolation: &str,
        what: &str,
        mut done: impl FnMut(&[FoldedStep]) -> bool,
    ) -> Vec<FoldedStep> {
        // Folded once each: `done` runs after every record.
        let mut fold = GamesFold::default();
        let mut read = 0;
        let mut updates: Vec<FoldedStep> = Vec::new();
        let msgs = tests::consume_at(isolation, tests::broker(), &self.games, WAIT, |msgs| {
            for m in &msgs[read..] {
                updates.extend(fold.push_step(decode(m)));
            }
            read = msgs.len();
            done(&updates)
        })
        .unwrap_or_else(|e| {
            let mut versions: Vec<(u64, u64)> = latest(&updates)
                .values()
                .map(|u| (u.game_id, u.version))
                .collect();
            versions.sort_unstable();
            panic!("{what}: {e:#}; latest (game, version): {versions:?}")
        });
        for m in &msgs {
            let record = decode(m);
            let (game_id, key) = match &record {
                GamesRecord::Head(h) => (h.game_id, h.game_id.to_string()),
                GamesRecord::Nation(n) => (n.game_id, format!("{}/{}", n.game_id, n.player_id)),
                other => (other.game_id(), other.key()),
            };
            assert_eq!(m.partition(), partition_for(game_id, PARTITIONS));
            assert_eq!(m.key(), Some(key.as_bytes()));
        }
        updates
    }
}

fn decode(m: &OwnedMessage) -> GamesRecord {
    serde_json::from_slice(m.payload().unwrap()).unwrap()
}

/// The latest update of each game.
fn latest(updates: &[FoldedStep]) -> HashMap<u64, &FoldedStep> {
    let mut map = HashMap::new();
    for u in updates {
        map.insert(u.game_id, u);
    }
    map
}

/// Every game in `expected` has reached its version.
fn reached(updates: &[FoldedStep], expected: &HashMap<u64, Game>) -> bool {
    let l = latest(updates);
    expected
        .iter()
        .all(|(id, g)| l.get(id).is_some_and(|u| u.version >= g.version))
}

/// Every game in `expected` is, in its latest update, as `expected` has it:
/// every action applied once.
fn assert_every_action_once(updates: &[FoldedStep], expected: &HashMap<u64, Game>) {
    let l = latest(updates);
    for (id, game) in expected {
        assert_eq!(l[id].game(), *game, "game {id} has every action once");
    }
}

/// The value on the first line of rendered `metrics` that `line` picks.
fn metric(metrics: &str, line: impl Fn(&str) -> bool) -> u64 {
    metrics
        .lines()
        .find(|l| line(l))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no such metric in {metrics}"))
}

/// Runs an engine on a task; send on the sender for a clean shutdown, abort
/// the task for a crash.
fn start(config: engine::Config) -> (JoinHandle<()>, oneshot::Sender<()>) {
    tests::log_to_test_output();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        engine::run(config, async {
            let _ = rx.await;
        })
        .await
        .expect("engine ran");
    });
    (task, tx)
}

/// Runs an engine on a task whose result is the engine's.
fn start_fallible(
    config: engine::Config,
) -> (
    JoinHandle<Result<(), engine::EngineError>>,
    oneshot::Sender<()>,
) {
    tests::log_to_test_output();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(engine::run(config, async {
        let _ = rx.await;
    }));
    (task, tx)
}

fn action(id: &str, game_id: u64, player: &str, t: ActionType, at_ms: u64) -> ActionEnvelope {
    ActionEnvelope {
        name: Some(player.to_string()),
        host: player.to_string(),
        user_agent: "test".into(),
        accept: "*/*".into(),
        client_addr: "127.0.0.1".into(),
        ..ActionEnvelope::new(id, game_id, player, t, at_ms)
    }
}

/// `n` actions over games 0 to 7: each game's join, then `default`s in
/// turn, ids `{prefix}{i}`, a second apart.
fn joins_then_visits(prefix: &str, n: u64) -> Vec<ActionEnvelope> {
    (0..n)
        .map(|i| {
            let g = i % 8;
            let ty = if i < 8 {
                ActionType::Join
            } else {
                ActionType::Default
            };
            action(
                &format!("{prefix}{i}"),
                g,
                &format!("p{g}"),
                ty,
                1_000 + i * 1_000,
            )
        })
        .collect()
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", tests::broker())
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

async fn send_raw(p: &FutureProducer, topic: &str, game_id: u64, payload: &[u8]) {
    let key = game_id.to_string();
    p.send(
        FutureRecord::to(topic)
            .key(&key)
            .payload(payload)
            .partition(partition_for(game_id, PARTITIONS)),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .expect("produce an action");
}

/// Produces `actions` and returns what each game must look like after them.
async fn send_all(
    p: &FutureProducer,
    topic: &str,
    actions: &[ActionEnvelope],
    expected: &mut HashMap<u64, Game>,
) {
    let sends = actions.iter().map(|a| async move {
        let payload = serde_json::to_vec(a).unwrap();
        send_raw(p, topic, a.game_id, &payload).await;
    });
    futures_util::future::join_all(sends).await;
    for a in actions {
        let g = expected
            .entry(a.game_id)
            .or_insert_with(|| Game::new(a.game_id));
        apply(g, a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_upgrades_and_rejections_arrive_on_games() {
    let s = Setup::new();
    s.create().await;
    let (task, stop) = start(s.config(100));
    let p = producer();
    let game = 5;
    let mut t = 1_000_000;
    let mut next = |id: &str, player: &str, ty| {
        t += 300_000; // five idle minutes: every visit earns 40 gold
        action(id, game, player, ty, t)
    };
    let mut actions = vec![
        next("ghost", "nobody", ActionType::PurchaseSword),
        next("join", "ann", ActionType::Join),
        next("sword", "ann", ActionType::PurchaseSword),
        next("poor", "ann", ActionType::PurchaseHorse),
        next("missing", "ann", ActionType::UpgradeShield),
    ];
    for i in 0..20 {
        actions.push(next(&format!("visit{i}"), "ann", ActionType::Default));
    }
    for level in 2..=5 {
        actions.push(next(&format!("up{level}"), "ann", ActionType::UpgradeSword));
    }
    actions.push(next("too-far", "ann", ActionType::UpgradeSword));
    let mut expected = HashMap::new();
    // One by one, so the updates come in several transactions.
    for a in &actions {
        send_all(&p, &s.actions, std::slice::from_ref(a), &mut expected).await;
    }
    let updates = s.updates("all actions handled", |u| reached(u, &expected));
    let mut last = 0;
    let mut applied = Vec::new();
    let mut rejected = HashMap::new();
    for u in &updates {
        assert!(u.version > last, "versions strictly increase");
        last = u.version;
        applied.extend(u.applied.iter().cloned());
        for r in &u.rejected {
            rejected.insert(r.event_id.clone(), r.reason.code());
        }
    }
    assert_eq!(last, actions.len() as u64);
    assert_eq!(rejected["ghost"], "unknown_player");
    assert_eq!(rejected["poor"], "not_enough_gold");
    assert_eq!(rejected["missing"], "item_missing");
    assert_eq!(rejected["too-far"], "max_level");
    assert!(applied.contains(&"sword".to_string()) && applied.contains(&"up5".to_string()));
    let l = latest(&updates);
    assert_eq!(l[&game].game(), expected[&game]);
    assert_eq!(l[&game].state.players["ann"].items.sword, 5);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_action_id_twice_is_applied_once() {
    let s = Setup::new();
    s.create().await;
    let (task, stop) = start(s.config(100));
    let p = producer();
    let join = action("join-1", 2, "bo", ActionType::Join, 1_000);
    let buy = action("buy-1", 2, "bo", ActionType::PurchaseKnife, 2_000);
    let mut expected = HashMap::new();
    for a in [&join, &buy, &buy, &join] {
        send_all(&p, &s.actions, std::slice::from_ref(a), &mut expected).await;
    }
    let marker = action("marker", 2, "bo", ActionType::Default, 3_000);
    send_all(&p, &s.actions, std::slice::from_ref(&marker), &mut expected).await;
    let updates = s.updates("the marker", |u| {
        u.iter().any(|u| u.applied.contains(&"marker".to_string()))
    });
    let applied: Vec<&String> = updates.iter().flat_map(|u| &u.applied).collect();
    assert_eq!(applied, vec!["join-1", "buy-1", "marker"]);
    let l = latest(&updates);
    assert_eq!(l[&2].version, 3);
    assert_eq!(l[&2].state.players["bo"].gold, 100 - 20 + 10);
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// An engine abandoned mid-stream (its loop stops between or inside
/// transactions, leaving one open, as a crash would) and a new instance with
/// its transactional id: every action applied once. A real `kill -9` of an
/// engine process is in `engine/tests/process.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_engine_mid_stream_applies_every_action_exactly_once() {
    let s = Setup::new();
    s.create().await;
    let p = producer();
    let stream = joins_then_visits("a", 1_600);
    let mut expected = HashMap::new();
    // Small batches: many transactions, so the crash lands between and
    // inside them.
    let first_config = s.config(20);
    let (first, _first_stop) = start(first_config.clone());
    send_all(&p, &s.actions, &stream[..800], &mut expected).await;
    s.updates("the first engine at work", |u| u.len() >= 10);
    first.abort();
    let _ = first.await;
    // A restarted instance keeps its transactional id: its producer fences
    // and aborts the transaction the crashed one left open.
    let mut restarted = s.config(20);
    restarted.transactional_id = first_config.transactional_id.clone();
    let (second, stop) = start(restarted);
    send_all(&p, &s.actions, &stream[800..], &mut expected).await;
    let updates = s.updates("every action handled", |u| reached(u, &expected));
    assert_every_action_once(&updates, &expected);
    stop.send(()).unwrap();
    second.await.unwrap();
    let report = s.replay().await;
    assert!(report.ok(), "replay agrees with games: {report:?}");
    assert_eq!(report.agree, 8, "every game agrees");
    assert_eq!(report.actions, 1_600);
}

/// A producer with the engine's transactional id fences the engine's own
/// (what Apache Kafka's coordinator does too when it fails over or ends a
/// transaction that outlived an outage: "fenced by a newer instance" with
/// no other engine anywhere). The engine starts again in place with new
/// clients, restores, and every action is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_engine_starts_again_in_place_and_applies_every_action_once() {
    let s = Setup::new();
    s.create().await;
    let p = producer();
    let stream = joins_then_visits("f", 1_200);
    let mut expected = HashMap::new();
    let config = s.config(20);
    let transactional_id = config.transactional_id.clone();
    let registry = config.registry.clone();
    let (engine, stop) = start_fallible(config);
    send_all(&p, &s.actions, &stream[..600], &mut expected).await;
    s.updates("the engine at work", |u| u.len() >= 10);
    // The fence: a new producer epoch for the engine's transactional id.
    tokio::task::spawn_blocking(move || {
        let twin: rdkafka::producer::BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", tests::broker())
            .set("transactional.id", &transactional_id)
            .create()
            .expect("a producer with the engine's transactional id");
        rdkafka::producer::Producer::init_transactions(&twin, Duration::from_secs(30))
            .expect("the twin fences the engine");
    })
    .await
    .unwrap();
    send_all(&p, &s.actions, &stream[600..], &mut expected).await;
    let updates = s.updates("every action handled after the fence", |u| {
        reached(u, &expected)
    });
    assert_every_action_once(&updates, &expected);
    assert!(
        !engine.is_finished(),
        "the fenced engine went on in place instead of stopping"
    );
    let metrics = registry.render();
    assert!(
        metrics.contains("engine_restarts_total 1"),
        "one restart in place counted: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("engine_restarts"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    stop.send(()).unwrap();
    engine
        .await
        .unwrap()
        .expect("the engine stops cleanly after its restart in place");
    let report = s.replay().await;
    assert!(report.ok(), "replay agrees with games: {report:?}");
    assert_eq!(report.actions, 1_200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_partitions_and_hand_over_games() {
    hand_over(false).await;
}

/// Streaming transactions stay open across polls: a revocation must commit
/// the open one before the partitions move, or the new owner would apply
/// its actions again (or lose them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_engines_hand_over_games_exactly_once() {
    hand_over(true).await;
}

/// Engine a alone, then a and b sharing the partitions, then b alone, with
/// actions flowing through both hand-overs; every action is in the final
/// states once and in exactly one committed update. Streaming engines here
/// commit only when partitions move or they stop, so the hand-over itself is
/// what keeps each action once.
async fn hand_over(streaming: bool) {
    let s = Setup::new();
    s.create().await;
    let p = Arc::new(producer());
    let round = |r: u64| -> Vec<ActionEnvelope> {
        (0..8u64)
            .map(|g| {
                let ty = if r == 0 {
                    ActionType::Join
                } else {
                    ActionType::Default
                };
                action(&format!("r{r}g{g}"), g, "pat", ty, 1_000 + r * 20_000)
            })
            .collect()
    };
    let config = || {
        if streaming {
            let mut c = s.config(1_000_000);
            // The longest interval allowed (half the transaction timeout):
            // the hand-overs below happen well within it, so what they
            // commit is committed by the revoke, not by the interval.
            c.commit_interval_ms = engine::kafka::TRANSACTION_TIMEOUT_MS / 2;
            c
        } else {
            s.config(100)
        }
    };
    let members = |n: usize| {
        let group = s.group.clone();
        async move {
            let what = format!("{n} engine(s) holding the partitions");
            tests::eventually(WAIT, &what, move || {
                let group = group.clone();
                async move {
                    tokio::task::spawn_blocking(move || members_with_partitions(&group))
                        .await
                        .unwrap()
                        .filter(|&m| m == n)
                }
            })
            .await
        }
    };
    // Streaming engines' progress shows before their commits.
    let isolation = if streaming {
        "read_uncommitted"
    } else {
        "read_committed"
    };
    let mut expected = HashMap::new();
    let (a, stop_a) = start(config());
    send_all(&p, &s.actions, &round(0), &mut expected).await;
    s.updates_at(isolation, "round 0 on engine a", |u| reached(u, &expected));
    // A steady flow of rounds (pacing the load, not synchronising) until
    // told to stop, so that transactions are open when partitions move.
    let (stop_flow, mut flow_stopped) = oneshot::channel::<()>();
    let sent = Arc::new(AtomicU64::new(1));
    let flow = tokio::spawn({
        let (p, actions, sent) = (p.clone(), s.actions.clone(), sent.clone());
        async move {
            let mut expected = expected;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut r = 1;
            while flow_stopped.try_recv().is_err() {
                tick.tick().await;
                send_all(&p, &actions, &round(r), &mut expected).await;
                r += 1;
                sent.store(r, Ordering::SeqCst);
            }
            (expected, r)
        }
    });
    let (b, stop_b) = start(config());
    members(2).await;
    // Both at work: 20 more rounds go to the two of them, and every game
    // (on either engine's partitions) shows the last of them.
    let target = sent.load(Ordering::SeqCst) + 20;
    let handled = |u: &[FoldedStep]| {
        (0..8).all(|g| {
            let id = format!("r{target}g{g}");
            u.iter().any(|u| u.applied.contains(&id))
        })
    };
    s.updates_at(isolation, "rounds handled by two engines", handled);
    stop_a.send(()).unwrap();
    a.await.unwrap();
    stop_flow.send(()).unwrap();
    let (expected, rounds) = flow.await.unwrap();
    let mut b = Some((b, stop_b));
    if streaming {
        // b commits what it holds when it stops.
        let mut want: Vec<(u64, u64)> = expected.iter().map(|(id, g)| (*id, g.version)).collect();
        want.sort_unstable();
        let what = format!("every round produced by b (want {want:?})");
        s.updates_at(isolation, &what, |u| reached(u, &expected));
        stop(b.take()).await;
    }
    let updates = s.updates("every round on engine b alone", |u| reached(u, &expected));
    let l = latest(&updates);
    for (id, game) in &expected {
        assert_eq!(l[id].game(), *game, "game {id} handed over intact");
    }
    let mut applied: Vec<&str> = updates
        .iter()
        .flat_map(|u| u.applied.iter().map(String::as_str))
        .collect();
    applied.sort_unstable();
    let mut sent: Vec<String> = (0..rounds)
        .flat_map(|r| round(r).into_iter().map(|a| a.event_id))
        .collect();
    sent.sort_unstable();
    assert_eq!(applied, sent, "each action in exactly one committed update");
    stop(b.take()).await;
}

/// Stops an engine cleanly, if there is one.
async fn stop(engine: Option<(JoinHandle<()>, oneshot::Sender<()>)>) {
    if let Some((task, stop)) = engine {
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}

/// How many members `group` has once it is stable (the split itself is left
/// to the range assignor: with two members each gets half the partitions).
fn members_with_partitions(group: &str) -> Option<usize> {
    tests::stable_members(tests::broker(), group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_record_goes_to_dead_letter_and_processing_continues() {
    let s = Setup::new();
    s.create().await;
    let (task, stop) = start(s.config(100));
    let p = producer();
    send_raw(&p, &s.actions, 3, b"{not json").await;
    let mut future = action("future", 3, "cy", ActionType::Join, 1_000);
    future.schema_version = SCHEMA_VERSION + 1;
    send_raw(&p, &s.actions, 3, &serde_json::to_vec(&future).unwrap()).await;
    let mut expected = HashMap::new();
    let join = action("join", 3, "cy", ActionType::Join, 2_000);
    send_all(&p, &s.actions, std::slice::from_ref(&join), &mut expected).await;
    let updates = s.updates("the join after the garbage", |u| reached(u, &expected));
    assert_eq!(latest(&updates)[&3].game(), expected[&3]);
    let dead = tests::consume(tests::broker(), &s.dlq, WAIT, |m| m.len() >= 2).unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload(), Some(&b"{not json"[..]));
    assert_eq!(dead[0].key(), Some(&b"3"[..]));
    let headers = dead[0].headers().expect("dead letters carry headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    assert!(
        header("error").contains("undecodable"),
        "{}",
        header("error")
    );
    assert_eq!(
        header("source.partition"),
        partition_for(3, PARTITIONS).to_string()
    );
    assert_eq!(header("source.offset"), "0");
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// The dead letters of `s` once `done` says there are enough, with their
/// `error` header.
fn dead_letters(s: &Setup, done: impl Fn(&[OwnedMessage]) -> bool) -> Vec<(OwnedMessage, String)> {
    let dead = tests::consume(tests::broker(), &s.dlq, WAIT, |m| done(m)).unwrap();
    dead.into_iter()
        .map(|m| {
            let error = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "error").and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            (m, error)
        })
        .collect()
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", tests::broker())
        .create()
        .unwrap()
}

/// Creates the topics of `s` with `games` records limited to `max_bytes`.
async fn create_with_games_limit(s: &Setup, max_bytes: usize) {
    let max = max_bytes.to_string();
    let topics = [
        NewTopic::new(&s.actions, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(&s.games, PARTITIONS, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max),
        NewTopic::new(&s.dlq, 1, TopicReplication::Fixed(1)),
    ];
    for r in admin()
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// 300 joins to one game whose `games` records may hold 16,384 bytes (the
/// measured fault: the engine stopped and 222 acknowledged joins were lost),
/// then 2,000 rejections in one batch: every action is either in exactly one
/// committed update or on the dead-letter topic with the reason; no record
/// is over the limit; the engine goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_updates_dead_letter_the_overflowing_action_and_lose_none() {
    let s = Setup::new();
    create_with_games_limit(&s, 16_384).await;
    let p = producer();
    let game = 4;
    // Every tenth join carries a name too long for a record (written
    // straight to the topic: the bridge would refuse it): its nation record
    // alone would not fit.
    let joins: Vec<ActionEnvelope> = (0..300u64)
        .map(|i| ActionEnvelope {
            name: i.is_multiple_of(10).then(|| "x".repeat(20_000)),
            ..action(
                &format!("j{i}"),
                game,
                &format!("player-{i:03}"),
                ActionType::Join,
                1_000 + i,
            )
        })
        .collect();
    // The rejections all sit in the first batch: a huge `rejected` list.
    let ghosts: Vec<ActionEnvelope> = (0..2_000u64)
        .map(|i| {
            action(
                &format!("g{i}"),
                8,
                "ghost",
                ActionType::UpgradeSword,
                1_000 + i,
            )
        })
        .collect();
    let mut ignored = HashMap::new();
    send_all(&p, &s.actions, &ghosts, &mut ignored).await;
    send_all(&p, &s.actions, &joins, &mut ignored).await;
    let (task, stop) = start(s.config(20_000));

    // Every ghost rejected exactly once, across updates that each fit.
    let updates = s.updates("every rejection", |u| {
        u.iter()
            .filter(|u| u.game_id == 8)
            .map(|u| u.rejected.len())
            .sum::<usize>()
            >= 2_000
    });
    let mut rejected: Vec<&str> = updates
        .iter()
        .filter(|u| u.game_id == 8)
        .flat_map(|u| u.rejected.iter().map(|r| r.event_id.as_str()))
        .collect();
    let updates_of_8 = updates.iter().filter(|u| u.game_id == 8).count();
    assert!(updates_of_8 > 1, "2,000 rejections cannot fit one record");
    rejected.sort_unstable();
    rejected.dedup();
    assert_eq!(rejected.len(), 2_000, "each rejection once");

    // Each join is applied or dead-lettered, never both, never lost. A
    // sentinel behind them on the same partition: once it is committed, so
    // is every decision before it.
    let sentinel = action("sentinel", 12, "sentinel", ActionType::Join, 500_000);
    send_raw(&p, &s.actions, 12, &serde_json::to_vec(&sentinel).unwrap()).await;
    let updates = s.updates("the sentinel", |u| latest(u).contains_key(&12));
    let players = latest(&updates)[&game].state.players.clone();
    let dead = dead_letters(&s, |m| m.len() + players.len() >= 300);
    assert_eq!(players.len(), 270, "every join that fits was applied");
    assert_eq!(players.len() + dead.len(), 300, "none lost, none doubled");
    for (m, error) in &dead {
        let a: ActionEnvelope = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert!(
            !players.contains_key(&a.player_id),
            "{} both applied and dead",
            a.player_id
        );
        assert!(error.contains("update too large"), "{error}");
    }
    let games_records = tests::consume(tests::broker(), &s.games, WAIT, |m| {
        m.len() >= updates.len()
    })
    .unwrap();
    assert!(games_records
        .iter()
        .all(|m| m.payload().map_or(0, |p| p.len()) <= 16_384));

    // The engine goes on: a visit by a nation that fits is applied.
    let someone = players.keys().next().unwrap().clone();
    let visit = action("visit", game, &someone, ActionType::Default, 900_000);
    let version = latest(&updates)[&game].version;
    send_raw(&p, &s.actions, game, &serde_json::to_vec(&visit).unwrap()).await;
    s.updates("the visit after the overflow", |u| {
        latest(u)
            .get(&game)
            .is_some_and(|g| g.version > version && g.applied.contains(&"visit".to_string()))
    });
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// The broker refuses an output in the middle of a streaming transaction
/// (the `games` record limit is lowered while the engine runs, so its own
/// check still passes): the transaction aborts and the engine stops, since
/// its producer was sized for the old limit; restarted, it redoes the batch
/// from the last commit. Nothing acknowledged is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_output_aborts_the_transaction_and_loses_nothing() {
    let s = Setup::new();
    create_with_games_limit(&s, 1_000_000).await;
    let p = producer();
    let config = s.config(20_000);
    let (task, _stop) = start_fallible(config.clone());
    let game = 1;
    let mut expected = HashMap::new();
    let first: Vec<ActionEnvelope> = (0..30u64)
        .map(|i| {
            action(
                &format!("a{i}"),
                game,
                &format!("p{i:02}"),
                ActionType::Join,
                1_000 + i,
            )
        })
        .collect();
    send_all(&p, &s.actions, &first, &mut expected).await;
    s.updates("the first joins", |u| reached(u, &expected));
    // Lower the limit under the next joins' nation records (their names
    // are long: written straight to the topic, the bridge would refuse
    // them), over what the first ones took.
    let limit = "1500".to_string();
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&s.games)).set("max.message.bytes", &limit);
    for r in admin()
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    // Every other one too long for the lowered limit.
    let long = |i: u64| i.is_multiple_of(2).then(|| "n".repeat(3_000));
    let more: Vec<ActionEnvelope> = (30..60u64)
        .flat_map(|i| {
            [
                ActionEnvelope {
                    name: long(i),
                    ..action(
                        &format!("a{i}"),
                        game,
                        &format!("p{i:02}"),
                        ActionType::Join,
                        1_000 + i,
                    )
                },
                ActionEnvelope {
                    name: long(i),
                    ..action(
                        &format!("b{i}"),
                        2,
                        &format!("q{i:02}"),
                        ActionType::Join,
                        1_000 + i,
                    )
                },
            ]
        })
        .collect();
    let mut ignored = HashMap::new();
    send_all(&p, &s.actions, &more, &mut ignored).await;
    let err = tokio::time::timeout(WAIT, task)
        .await
        .expect("the engine stops")
        .unwrap()
        .expect_err("an engine whose output was refused stops");
    assert!(err.to_string().contains("limits changed"), "{err}");
    // Restarted with the same transactional id, it goes on from the last
    // commit, under the new limit.
    let (task, stop) = start(config);
    let sentinels = [
        action("s5", 5, "s", ActionType::Join, 500_000),
        action("s6", 6, "s", ActionType::Join, 500_000),
    ];
    send_all(&p, &s.actions, &sentinels, &mut ignored).await;
    let updates = s.updates("the sentinels", |u| {
        let l = latest(u);
        l.contains_key(&5) && l.contains_key(&6)
    });
    let l = latest(&updates);
    let (one, two) = (&l[&game].state.players, &l[&2].state.players);
    let dead = dead_letters(&s, |m| m.len() + one.len() + two.len() >= 90);
    assert!(!dead.is_empty(), "the lowered limit refused a join");
    assert!(
        dead.iter().all(|(_, e)| e.contains("update too large")),
        "{:?}",
        dead.iter().map(|d| &d.1).collect::<Vec<_>>()
    );
    let dead_of = |g: u64| {
        dead.iter()
            .filter(|(m, _)| {
                serde_json::from_slice::<ActionEnvelope>(m.payload().unwrap())
                    .unwrap()
                    .game_id
                    == g
            })
            .count()
    };
    assert_eq!(
        one.len() + dead_of(game),
        60,
        "game 1: none lost, none doubled"
    );
    assert_eq!(
        two.len() + dead_of(2),
        30,
        "game 2: none lost, none doubled"
    );
    for id in 0..30u64 {
        assert!(
            one.contains_key(&format!("p{id:02}")),
            "committed before the fault"
        );
    }
    // Exactly once: each applied id appears in one committed update.
    let mut applied: Vec<&String> = updates.iter().flat_map(|u| &u.applied).collect();
    let n = applied.len();
    applied.sort_unstable();
    applied.dedup();
    assert_eq!(applied.len(), n, "no id applied twice");
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// A record on a partition other than its game's (another partitioner, a
/// changed count) is dead-lettered with the reason, never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misrouted_action_goes_to_the_dead_letter_topic() {
    let s = Setup::new();
    s.create().await;
    let (task, stop) = start(s.config(100));
    let p = producer();
    let stray = action("stray", 6, "eve", ActionType::Join, 1_000);
    p.send(
        FutureRecord::to(&s.actions)
            .key("6")
            .payload(&serde_json::to_vec(&stray).unwrap())
            .partition(1),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
    let mut expected = HashMap::new();
    let join = action("join", 5, "ann", ActionType::Join, 2_000);
    send_all(&p, &s.actions, std::slice::from_ref(&join), &mut expected).await;
    let dead = dead_letters(&s, |m| !m.is_empty());
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .1
            .contains("misrouted: game 6 belongs on partition 2 of 4"),
        "{}",
        dead[0].1
    );
    let updates = s.updates("the join after the stray", |u| reached(u, &expected));
    assert!(
        updates.iter().all(|u| u.game_id != 6),
        "the stray was not applied"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Topics with another partition count than `PARTITIONS`: the engine
/// refuses to start, and says how to fix it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_topics_with_another_partition_count() {
    let s = Setup::new();
    s.create().await;
    let mut config = s.config(100);
    config.partitions = 12;
    config.create_topics = false;
    let err = engine::run(config, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            engine::EngineError::PartitionCount {
                found: 4,
                expected: 12,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_fatal());
    assert!(err.to_string().contains("set PARTITIONS=4"), "{err}");
}

/// The contract: an action id seen before never changes anything again. A
/// retried purchase sent after 1,000 other actions of its game and after the
/// engine restarted (its memory of ids restored from `<games>.seen`) changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_1000_actions_and_a_restart_changes_nothing() {
    let s = Setup::new();
    s.create().await;
    let p = producer();
    let config = s.config(100);
    let (task, stop) = start(config.clone());
    let game = 7;
    let mut expected = HashMap::new();
    let mut t = 1_000;
    let mut first = vec![
        action("join", game, "pat", ActionType::Join, t),
        action("knife", game, "pat", ActionType::PurchaseKnife, t + 1),
    ];
    for i in 0..1_000u64 {
        t += 1_000;
        first.push(action(
            &format!("v{i}"),
            game,
            "pat",
            ActionType::Default,
            t,
        ));
    }
    send_all(&p, &s.actions, &first, &mut expected).await;
    s.updates("1,002 actions", |u| reached(u, &expected));
    stop.send(()).unwrap();
    task.await.unwrap();

    let (task, stop) = start(config);
    let retry = action("knife", game, "pat", ActionType::PurchaseKnife, t + 1_000);
    send_raw(&p, &s.actions, game, &serde_json::to_vec(&retry).unwrap()).await;
    let sentinel = action("after", game, "pat", ActionType::Default, t + 2_000);
    let mut after = expected.clone();
    send_all(&p, &s.actions, std::slice::from_ref(&sentinel), &mut after).await;
    let updates = s.updates("the sentinel after the retry", |u| {
        u.iter().any(|u| u.applied.contains(&"after".to_string()))
    });
    let l = latest(&updates);
    assert_eq!(l[&game].game(), after[&game], "the retry changed nothing");
    assert_eq!(l[&game].state.players["pat"].items.knife, 1);
    assert!(
        updates
            .iter()
            .all(|u| u.applied.iter().filter(|id| *id == "knife").count() <= 1)
            && updates
                .iter()
                .flat_map(|u| &u.applied)
                .filter(|id| *id == "knife")
                .count()
                == 1,
        "applied once"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Every way a streaming transaction can commit (in the background while
/// the next one takes actions, or waited for; with one producer or two)
/// applies every action once, with many commits: a commit every 20 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_mode_applies_every_action_once() {
    for (producers, background) in [(1, true), (2, false), (2, true)] {
        let s = Setup::new();
        s.create().await;
        let p = producer();
        let stream = joins_then_visits(&format!("m{producers}{background}"), 800);
        let mut expected = HashMap::new();
        let mut config = s.config(20);
        config.commit_interval_ms = 20;
        config.txn_producers = producers;
        config.background_commit = background;
        let registry = config.registry.clone();
        let (engine, stop) = start(config);
        send_all(&p, &s.actions, &stream, &mut expected).await;
        let updates = s.updates(
            &format!("{producers} producer(s), background {background}: every action"),
            |u| reached(u, &expected),
        );
        assert_every_action_once(&updates, &expected);
        stop.send(()).unwrap();
        engine.await.unwrap();
        let metrics = registry.render();
        let committed = metric(&metrics, |l| {
            l.starts_with("engine_transactions_total{") && l.contains("committed")
        });
        assert!(
            committed >= 2,
            "{producers} producer(s), background {background}: {committed} commits"
        );
        assert!(
            !metrics.contains("outcome=\"aborted\""),
            "nothing aborted: {metrics}"
        );
        let report = s.replay().await;
        assert!(report.ok(), "replay agrees with games: {report:?}");
        assert_eq!(report.actions, 800);
    }
}

/// A backlog the engine finds at start comes as one big batch, handled by
/// several threads (`Config::apply_threads`, `engine::share`): every action
/// is applied once, and a replay of `actions` agrees with `games`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_shared_across_threads_applies_every_action_once() {
    let s = Setup::new();
    s.create().await;
    let p = producer();
    let stream = joins_then_visits("backlog", 6_000);
    let mut expected = HashMap::new();
    send_all(&p, &s.actions, &stream, &mut expected).await;
    let mut config = s.config(100_000);
    config.apply_threads = 3;
    let registry = config.registry.clone();
    let (engine, stop) = start(config);
    let updates = s.updates("every action of the backlog", |u| reached(u, &expected));
    assert_every_action_once(&updates, &expected);
    stop.send(()).unwrap();
    engine.await.unwrap();
    let metrics = registry.render();
    let batches = metric(&metrics, |l| l.starts_with("engine_batch_size_count"));
    // Buckets are powers of two: a batch over 2,048 records was shared.
    assert_eq!(engine::share::PARALLEL_MIN_RECORDS, 2_048);
    let small = metric(&metrics, |l| {
        l.starts_with("engine_batch_size_bucket{le=\"2048.0\"}")
    });
    assert!(
        small < batches,
        "a batch big enough to be shared across threads: {metrics}"
    );
    let report = s.replay().await;
    assert!(report.ok(), "replay agrees with games: {report:?}");
    assert_eq!(report.actions, 6_000);
}

/// The ids an engine remembers go to `<games>.seen` as one record per game
/// and batch, not one per action; a record is tombstoned once every id in
/// it left the window. After a restart from those records, a retry within
/// the window changes nothing and one older than it is refused as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_ids_take_a_record_per_batch_and_leave_with_the_window() {
    use engine::seen::{SeenRecord, SeenRecordKey};
    const WINDOW_MS: u64 = 10_000;
    const N: u64 = 200;
    let s = Setup::new();
    s.create().await;
    let mut config = s.config(100);
    config.dedup_window_ms = WINDOW_MS;
    let seen_topic = config.seen_topic();
    let game = 3;
    let p = producer();
    // Written before the engine starts, so its batches are full ones.
    // UUIDv7 ids carry their own time: an old one is known old even once
    // forgotten.
    let id = |i: u64| {
        let ms = 1_000 + i * 150;
        format!("{:08x}-{:04x}-7000-8000-{i:012x}", ms >> 16, ms & 0xffff)
    };
    let mut actions = vec![action(&id(0), game, "kim", ActionType::Join, 1_000)];
    for i in 1..N {
        actions.push(action(
            &id(i),
            game,
            "kim",
            ActionType::Default,
            1_000 + i * 150,
        ));
    }
    let last_ms = 1_000 + (N - 1) * 150;
    let mut expected = HashMap::new();
    send_all(&p, &s.actions, &actions, &mut expected).await;
    let (task, stop) = start(config.clone());
    s.updates("every action", |u| reached(u, &expected));

    // Every id in exactly one record; some records already tombstoned.
    let mut written: HashMap<Vec<u8>, SeenRecord> = HashMap::new();
    let mut tombstoned: Vec<Vec<u8>> = Vec::new();
    tests::consume(tests::broker(), &seen_topic, WAIT, |msgs| {
        written.clear();
        tombstoned.clear();
        for m in msgs {
            let key = m.key().expect("a key").to_vec();
            match m.payload() {
                Some(v) => {
                    written.insert(key, serde_json::from_slice(v).expect("a seen record"));
                }
                None => tombstoned.push(key),
            }
        }
        written.values().map(|r| r.ids.len()).sum::<usize>() == N as usize && !tombstoned.is_empty()
    })
    .expect("the seen records and a tombstone");
    assert!(
        written.len() as u64 * 5 <= N,
        "{} records for {N} actions",
        written.len()
    );
    for key in written.keys() {
        let k: SeenRecordKey = serde_json::from_slice(key).expect("a record key");
        assert_eq!(k.game_id, game);
    }
    for key in &tombstoned {
        let record = written.get(key).expect("a tombstone follows its record");
        assert!(
            record.ids.iter().all(|(_, _, at)| at + WINDOW_MS < last_ms),
            "only records whose every id left the window are tombstoned"
        );
    }
    stop.send(()).unwrap();
    task.await.unwrap();

    // Restarted from those records: a recent id is a duplicate, an old one
    // expired, a new one applies.
    let (task, stop) = start(config);
    let recent = action(&id(N - 1), game, "kim", ActionType::Default, last_ms + 100);
    let old = action(&id(3), game, "kim", ActionType::Default, last_ms + 200);
    let sentinel = action("after", game, "kim", ActionType::Default, last_ms + 300);
    for a in [&recent, &old, &sentinel] {
        send_raw(&p, &s.actions, game, &serde_json::to_vec(a).unwrap()).await;
    }
    let updates = s.updates("the sentinel", |u| {
        u.iter().any(|u| u.applied.contains(&"after".to_string()))
    });
    let applied: Vec<&String> = updates.iter().flat_map(|u| &u.applied).collect();
    assert_eq!(
        applied.len(),
        N as usize + 1,
        "each id applied once, then the sentinel"
    );
    assert_eq!(applied.last().map(|s| s.as_str()), Some("after"));
    let rejected: Vec<_> = updates.iter().flat_map(|u| &u.rejected).collect();
    assert!(
        rejected
            .iter()
            .any(|r| r.event_id == id(3) && r.reason == shared::Rejection::Expired),
        "the old retry is refused as expired: {rejected:?}"
    );
    assert!(
        rejected.iter().all(|r| r.event_id != id(N - 1)),
        "the recent retry is a duplicate, not a rejection"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}
