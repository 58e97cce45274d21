//! The engine binary as a real process: `kill -9` while it streams, then an
//! immediate restart under the same instance id. Every acknowledged action
//! ends up in exactly one committed update, and `read_committed` readers see
//! new updates again long before the dead engine's transaction would time
//! out (the restart fences it and aborts what it left open).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use shared::{
    apply, partition_for, ActionEnvelope, ActionType, FoldedStep, Game, GameHead, GamesFold,
    GamesRecord, NationRecord, SCHEMA_VERSION,
};

const PARTITIONS: i32 = 4;
const GAMES: u64 = 8;

/// `KAFKA_BROKERS` (as `make test` sets it), else an Apache Kafka started for
/// this test binary. A broker test never skips.
fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    static LOCAL: OnceLock<localkafka::LocalKafka> = OnceLock::new();
    BROKER.get_or_init(|| match std::env::var("KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => {
            let local = localkafka::LocalKafka::temporary()
                .unwrap_or_else(|e| panic!("broker-backed test cannot get a broker: {e}"));
            let bootstrap = local.bootstrap().to_string();
            let _ = LOCAL.set(local);
            bootstrap
        }
    })
}

struct Names {
    actions: String,
    games: String,
    dlq: String,
    group: String,
}

impl Names {
    fn new() -> Names {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Names {
            actions: format!("actions-{id}"),
            games: format!("games-{id}"),
            dlq: format!("dlq-{id}"),
            group: format!("engine-{id}"),
        }
    }

    /// The engine binary, streaming with 1 s transactions, as instance `a`.
    fn spawn(&self) -> Child {
        self.spawn_as("a", &[], &[])
    }

    /// The engine binary as `instance`, with `env` and `args` on top.
    fn spawn_as(&self, instance: &str, env: &[(&str, &str)], args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .env("KAFKA_BROKERS", broker())
            .env("ACTIONS_TOPIC", &self.actions)
            .env("GAMES_TOPIC", &self.games)
            .env("DLQ_TOPIC", &self.dlq)
            .env("PARTITIONS", PARTITIONS.to_string())
            .env("ENGINE_GROUP_ID", &self.group)
            .env("ENGINE_INSTANCE_ID", instance)
            .env("ENGINE_COMMIT_INTERVAL_MS", "1000")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the engine binary")
    }

    /// Creates the topics as the engine would, before anyone asks for them
    /// (a metadata request may auto-create a topic with the broker's default
    /// partition count).
    async fn create(&self) {
        let mut config = engine::Config::new(broker());
        config.actions_topic = self.actions.clone();
        config.games_topic = self.games.clone();
        config.dlq_topic = self.dlq.clone();
        config.partitions = PARTITIONS;
        engine::create_topics(&config).await.unwrap();
    }
}

fn action(i: u64) -> ActionEnvelope {
    let game_id = i % GAMES;
    ActionEnvelope {
        event_id: format!("a{i}"),
        game_id,
        player_id: "pat".into(),
        event_type: if i < GAMES {
            ActionType::Join
        } else {
            ActionType::Default
        },
        name: Some("pat".into()),
        host: "pat".into(),
        user_agent: "test".into(),
        accept: "*/*".into(),
        client_addr: "127.0.0.1".into(),
        received_at_ms: 1_000 + i * 1_000,
        schema_version: SCHEMA_VERSION,
    }
}

/// Reads `games` at `read_committed` on a thread, noting when each update
/// arrived, until `stop`.
fn committed_reader(
    topic: String,
    seen: Arc<Mutex<Vec<(Instant, FoldedStep)>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    reader_at("read_committed", topic, seen, stop)
}

/// [`committed_reader`] at an `isolation.level`.
fn reader_at(
    isolation: &'static str,
    topic: String,
    seen: Arc<Mutex<Vec<(Instant, FoldedStep)>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker())
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut fold = GamesFold::default();
        while !stop.load(Ordering::SeqCst) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let record: GamesRecord = serde_json::from_slice(m.payload().unwrap()).unwrap();
                if let Some(step) = fold.push_step(record) {
                    seen.lock().unwrap().push((Instant::now(), step));
                }
            }
        }
    })
}

/// Polls `f` every 20 ms until it holds, or panics after `timeout`.
async fn until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_streaming_engine_process_loses_and_doubles_nothing() {
    let names = Names::new();
    names.create().await;
    let mut engine = names.spawn();
    let producer = producer();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let send = |i: u64| send_one(&producer, &names.actions, action(i));
    let mut i = 0;
    let reader = committed_reader(names.games.clone(), seen.clone(), stop_reader.clone());
    // What the bridge shows by default: `read_uncommitted`, so it also sees
    // the open (and then aborted) transaction of the killed engine.
    let shown = Arc::new(Mutex::new(Vec::new()));
    let peek = reader_at(
        "read_uncommitted",
        names.games.clone(),
        shown.clone(),
        stop_reader.clone(),
    );
    // A steady flow; the kill lands while a 1 s transaction is open.
    while i < 400 {
        send(i).await;
        i += 1;
    }
    until(
        Duration::from_secs(60),
        "committed updates from the first engine",
        || !seen.lock().unwrap().is_empty(),
    )
    .await;
    for _ in 0..100 {
        send(i).await;
        i += 1;
    }
    engine.kill().expect("kill -9");
    engine.wait().unwrap();
    let killed = Instant::now();
    let mut engine = names.spawn();
    // Actions after the kill, and the time until a committed update
    // includes one of them.
    let first_after = i;
    for _ in 0..200 {
        send(i).await;
        i += 1;
    }
    let after: std::collections::HashSet<String> =
        (first_after..i).map(|j| format!("a{j}")).collect();
    until(
        Duration::from_secs(60),
        "a committed update after the kill",
        || {
            seen.lock()
                .unwrap()
                .iter()
                .any(|(_, u)| u.applied.iter().any(|id| after.contains(id)))
        },
    )
    .await;
    let blind = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(_, u)| u.applied.iter().any(|id| after.contains(id)))
        .map(|(at, _)| at.duration_since(killed))
        .unwrap();
    println!(
        "kill -9 to the next committed update: {} ms",
        blind.as_millis()
    );
    // The restart, not the 10 s transaction timeout, ended the dead
    // engine's transaction.
    assert!(
        blind < Duration::from_millis(engine::kafka::TRANSACTION_TIMEOUT_MS),
        "read_committed readers were blind {blind:?}"
    );

    // Exactly once: every acknowledged action in one committed update, and
    // each game as a replay of its actions.
    let mut expected: HashMap<u64, Game> = HashMap::new();
    for j in 0..i {
        let a = action(j);
        apply(
            expected
                .entry(a.game_id)
                .or_insert_with(|| Game::new(a.game_id)),
            &a,
        );
    }
    until(Duration::from_secs(60), "every action committed", || {
        let seen = seen.lock().unwrap();
        let mut latest: HashMap<u64, u64> = HashMap::new();
        for (_, u) in seen.iter() {
            latest.insert(u.game_id, u.version);
        }
        expected
            .iter()
            .all(|(id, g)| latest.get(id) == Some(&g.version))
    })
    .await;
    engine.kill().unwrap();
    engine.wait().unwrap();
    stop_reader.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    peek.join().unwrap();
    // No state ever shown, committed or not, differs from the true state at
    // its version (the replay of the game's actions): the successor produced
    // the aborted versions again, identical, so a watcher that keeps the
    // highest version it saw (the bridge's hub, the page) never steps back
    // and converges on the committed state.
    let mut truth: HashMap<(u64, u64), Game> = HashMap::new();
    let mut replayed: HashMap<u64, Game> = HashMap::new();
    for j in 0..i {
        let a = action(j);
        let g = replayed
            .entry(a.game_id)
            .or_insert_with(|| Game::new(a.game_id));
        apply(g, &a);
        truth.insert((a.game_id, g.version), g.clone());
    }
    let shown = shown.lock().unwrap();
    assert!(shown.len() >= seen.lock().unwrap().len());
    for (_, u) in shown.iter().chain(seen.lock().unwrap().iter()) {
        assert_eq!(
            u.game(),
            truth[&(u.game_id, u.version)],
            "game {} at version {} shows its true state",
            u.game_id,
            u.version
        );
    }
    let seen = seen.lock().unwrap();
    let mut applied: Vec<&String> = seen.iter().flat_map(|(_, u)| &u.applied).collect();
    let n = applied.len();
    applied.sort_unstable();
    applied.dedup();
    assert_eq!(applied.len(), n, "no action in two committed updates");
    assert_eq!(n as u64, i, "every acknowledged action applied");
    let mut latest: HashMap<u64, &FoldedStep> = HashMap::new();
    for (_, u) in seen.iter() {
        latest.insert(u.game_id, u);
    }
    for (id, game) in &expected {
        assert_eq!(
            latest[id].game(),
            *game,
            "game {id} is the replay of its actions"
        );
    }
}

/// The updates `seen` so far, latest per game.
fn latest_of(seen: &Mutex<Vec<(Instant, FoldedStep)>>) -> HashMap<u64, FoldedStep> {
    let mut latest = HashMap::new();
    for (_, u) in seen.lock().unwrap().iter() {
        latest.insert(u.game_id, u.clone());
    }
    latest
}

/// An idempotent producer for the tests' actions.
fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Sends one action to its game's partition of `topic`, waiting for Kafka's
/// acknowledgement.
async fn send_one(producer: &FutureProducer, topic: &str, a: ActionEnvelope) {
    let key = a.game_id.to_string();
    let payload = serde_json::to_vec(&a).unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .key(&key)
                .payload(&payload)
                .partition(partition_for(a.game_id, PARTITIONS)),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("acknowledged");
}

/// Sends `actions`, each acknowledged before the next.
async fn send_all(names: &Names, actions: &[ActionEnvelope]) {
    let producer = producer();
    for a in actions {
        send_one(&producer, &names.actions, a.clone()).await;
    }
}

/// Sends a signal to a process.
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// An engine frozen (SIGSTOP) past its session timeout while its streaming
/// transaction is open loses its assignment; a second engine takes the
/// partitions; the first, resumed, must abort what it held, not commit it.
/// Every action is then in exactly one committed update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_lost_its_assignment_aborts_and_nothing_is_doubled() {
    let names = Names::new();
    names.create().await;
    let slow = [("ENGINE_COMMIT_INTERVAL_MS", "5000")];
    let session = [
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=500",
    ];
    let mut a = names.spawn_as("a", &slow, &session);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = committed_reader(names.games.clone(), seen.clone(), stop_reader.clone());
    let first: Vec<ActionEnvelope> = (0..200).map(action).collect();
    send_all(&names, &first).await;
    until(Duration::from_secs(60), "a's first commit", || {
        latest_of(&seen).len() == GAMES as usize
    })
    .await;
    // Handled by a inside its open transaction, then a freezes.
    let second: Vec<ActionEnvelope> = (200..300).map(action).collect();
    let produced = Arc::new(Mutex::new(Vec::new()));
    let peek = reader_at(
        "read_uncommitted",
        names.games.clone(),
        produced.clone(),
        stop_reader.clone(),
    );
    send_all(&names, &second).await;
    until(
        Duration::from_secs(60),
        "a's uncommitted updates of them",
        || {
            let l = latest_of(&produced);
            (0..GAMES).all(|g| {
                l.get(&g)
                    .is_some_and(|u| u.version >= expected_version(g, 300))
            })
        },
    )
    .await;
    assert!(
        latest_of(&seen)
            .values()
            .all(|u| u.version < expected_version(u.game_id, 300)),
        "still in a's open transaction"
    );
    signal(&a, "-STOP");
    let mut b = names.spawn_as("b", &slow, &session);
    // b gets the partitions once a's session times out, and commits.
    let third: Vec<ActionEnvelope> = (300..400).map(action).collect();
    send_all(&names, &third).await;
    until(
        Duration::from_secs(60),
        "b's commit of everything so far",
        || {
            let l = latest_of(&seen);
            (300..400).all(|i| {
                let a = action(i);
                l.get(&a.game_id)
                    .is_some_and(|u| u.version >= expected_version(a.game_id, 400))
            })
        },
    )
    .await;
    signal(&a, "-CONT");
    let fourth: Vec<ActionEnvelope> = (400..500).map(action).collect();
    send_all(&names, &fourth).await;
    until(Duration::from_secs(60), "every action committed", || {
        let l = latest_of(&seen);
        (0..GAMES).all(|g| {
            l.get(&g)
                .is_some_and(|u| u.version >= expected_version(g, 500))
        })
    })
    .await;
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    stop_reader.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    peek.join().unwrap();
    let seen = seen.lock().unwrap();
    let mut applied: Vec<&String> = seen.iter().flat_map(|(_, u)| &u.applied).collect();
    let n = applied.len();
    applied.sort_unstable();
    applied.dedup();
    assert_eq!(applied.len(), n, "no action in two committed updates");
    assert_eq!(n, 500, "every acknowledged action applied");
    let mut expected: HashMap<u64, Game> = HashMap::new();
    for j in 0..500 {
        let a = action(j);
        apply(
            expected
                .entry(a.game_id)
                .or_insert_with(|| Game::new(a.game_id)),
            &a,
        );
    }
    let latest: HashMap<u64, &FoldedStep> = seen.iter().map(|(_, u)| (u.game_id, u)).collect();
    for (id, game) in &expected {
        assert_eq!(
            latest[id].game(),
            *game,
            "game {id} is the replay of its actions"
        );
    }
}

/// A game's version after actions `0..n` of [`action`].
fn expected_version(game: u64, n: u64) -> u64 {
    (0..n).filter(|i| i % GAMES == game).count() as u64
}

/// `GET path` on `addr`: the status code and the body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((status, body))
}

/// Sets or removes a consumer byte-rate quota on a client id, with Kafka's
/// own `ConfigCommand`.
fn quota(client_id: &str, bytes_per_s: Option<u64>) {
    let config = bytes_per_s.map(|b| format!("consumer_byte_rate={b}"));
    let mut args = vec![
        "--bootstrap-server",
        broker(),
        "--alter",
        "--entity-type",
        "clients",
        "--entity-name",
        client_id,
    ];
    match &config {
        Some(c) => args.extend(["--add-config", c.as_str()]),
        None => args.extend(["--delete-config", "consumer_byte_rate"]),
    }
    // `kafka.admin.ConfigCommand` in 4.2 (it moved to `org.apache.kafka.tools` in 4.3).
    localkafka::kafka_tool("kafka.admin.ConfigCommand", &args).expect("set the quota");
}

/// A restore from `games` that cannot finish (the broker throttles the
/// restore consumer to a trickle): the engine does not take the partition,
/// `/readyz` says why with a 503, and no action is applied on a partial
/// state. Once the throttle is lifted, the restore completes and the action
/// is applied on the whole state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_cannot_finish_takes_nothing_and_says_not_ready() {
    let names = Names::new();
    names.create().await;
    // History on game 0's partition: 3,000 updates of about 1 KiB, the last
    // one the state to restore.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("linger.ms", "5")
        // Queued in version order, written in that order: the last head on
        // the partition must be the latest version (awaiting each step's
        // records one by one, concurrently, let a step's head land after
        // later ones, and the state to restore was then an old version).
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut game = Game::new(0);
    let join = ActionEnvelope {
        name: Some("p".repeat(900)),
        ..action(0)
    };
    apply(&mut game, &join);
    let mut deliveries = Vec::new();
    for v in 0..3_000u64 {
        game.version = v + 1;
        // A step of the player's nation: its record, then the head.
        let nation = GamesRecord::Nation(NationRecord {
            game_id: 0,
            player_id: join.player_id.clone(),
            version: game.version,
            nation: game.state.players[&join.player_id].clone(),
        });
        let head = GamesRecord::Head(GameHead {
            game_id: 0,
            since: v,
            version: game.version,
            changed: 1,
            players: 1,
            ..GameHead::default()
        });
        let records = [
            (
                format!("0/{}", join.player_id),
                serde_json::to_vec(&nation).unwrap(),
            ),
            ("0".to_string(), serde_json::to_vec(&head).unwrap()),
        ];
        for (key, payload) in &records {
            let delivery = producer
                .send_result(
                    FutureRecord::to(&names.games)
                        .key(key)
                        .payload(payload)
                        .partition(0),
                )
                .map_err(|(e, _)| e)
                .expect("history queued");
            deliveries.push(delivery);
        }
    }
    for delivery in futures_util::future::join_all(deliveries).await {
        delivery
            .expect("delivery reported")
            .map_err(|(e, _)| e)
            .expect("history written");
    }
    let restorer = format!("{}-restore", names.group);
    quota(&restorer, Some(2_048));
    let health = format!("127.0.0.1:{}", localkafka::free_port());
    let mut engine = names.spawn_as(
        "a",
        &[
            ("ENGINE_RESTORE_STALL_MS", "1000"),
            ("ENGINE_HEALTH_ADDR", &health),
        ],
        &[],
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = committed_reader(names.games.clone(), seen.clone(), stop_reader.clone());
    let visit = ActionEnvelope {
        event_id: "visit".into(),
        event_type: ActionType::Default,
        received_at_ms: 900_000,
        ..action(0)
    };
    send_all(&names, std::slice::from_ref(&visit)).await;
    let mut why = String::new();
    until(
        Duration::from_secs(60),
        "/readyz to say the restore is stuck",
        || match http_get(&health, "/readyz") {
            Some((503, body)) if body.contains("restore") && body.contains("did not complete") => {
                why = body;
                true
            }
            _ => false,
        },
    )
    .await;
    println!("not ready: {why}");
    assert!(
        !latest_of(&seen)
            .values()
            .any(|u| u.applied.contains(&"visit".to_string())),
        "nothing applied on a partial restore"
    );
    quota(&restorer, None);
    until(
        Duration::from_secs(90),
        "the visit, on the whole state",
        || {
            latest_of(&seen)
                .get(&0)
                .is_some_and(|u| u.applied.contains(&"visit".to_string()))
        },
    )
    .await;
    let u = latest_of(&seen)[&0].clone();
    assert_eq!(
        u.version, 3_001,
        "applied on the latest of the 3,000 updates"
    );
    let mut want = game.clone();
    apply(&mut want, &visit);
    assert_eq!(u.game(), want);
    until(Duration::from_secs(30), "/readyz to say ready", || {
        http_get(&health, "/readyz").is_some_and(|(status, _)| status == 200)
    })
    .await;
    let _ = engine.kill();
    let _ = engine.wait();
    stop_reader.store(true, Ordering::SeqCst);
    reader.join().unwrap();
}
