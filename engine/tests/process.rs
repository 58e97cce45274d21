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
use shared::{apply, partition_for, ActionEnvelope, ActionType, Game, GameUpdate, SCHEMA_VERSION};

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
        Command::new(env!("CARGO_BIN_EXE_engine"))
            .env("KAFKA_BROKERS", broker())
            .env("ACTIONS_TOPIC", &self.actions)
            .env("GAMES_TOPIC", &self.games)
            .env("DLQ_TOPIC", &self.dlq)
            .env("PARTITIONS", PARTITIONS.to_string())
            .env("ENGINE_GROUP_ID", &self.group)
            .env("ENGINE_INSTANCE_ID", "a")
            .env("ENGINE_COMMIT_INTERVAL_MS", "1000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the engine binary")
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
    seen: Arc<Mutex<Vec<(Instant, GameUpdate)>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker())
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        while !stop.load(Ordering::SeqCst) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let u: GameUpdate = serde_json::from_slice(m.payload().unwrap()).unwrap();
                seen.lock().unwrap().push((Instant::now(), u));
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
    // Created as the engine would, before anyone asks for them (a metadata
    // request may auto-create a topic with the broker's default count).
    let mut config = engine::Config::new(broker());
    config.actions_topic = names.actions.clone();
    config.games_topic = names.games.clone();
    config.dlq_topic = names.dlq.clone();
    config.partitions = PARTITIONS;
    engine::create_topics(&config).await.unwrap();
    let mut engine = names.spawn();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let send = |i: u64| {
        let producer = producer.clone();
        let topic = names.actions.clone();
        async move {
            let a = action(i);
            let key = a.game_id.to_string();
            let payload = serde_json::to_vec(&a).unwrap();
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&payload)
                        .partition(partition_for(a.game_id, PARTITIONS)),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("acknowledged");
        }
    };
    let mut i = 0;
    let reader = committed_reader(names.games.clone(), seen.clone(), stop_reader.clone());
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
    let seen = seen.lock().unwrap();
    let mut applied: Vec<&String> = seen.iter().flat_map(|(_, u)| &u.applied).collect();
    let n = applied.len();
    applied.sort_unstable();
    applied.dedup();
    assert_eq!(applied.len(), n, "no action in two committed updates");
    assert_eq!(n as u64, i, "every acknowledged action applied");
    let mut latest: HashMap<u64, &GameUpdate> = HashMap::new();
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
