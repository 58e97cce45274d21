//! The engine's apply rate for arena actions against nation actions, in the
//! same run, exactly once (transactions), on Apache Kafka (issue 18).
//!
//! Pre-fills two `actions` topics with `BENCH_ACTIONS` (default 200,000)
//! records each: nation actions across 1,000 nation games (the throughput
//! bench's mix) and arena actions across 1,000 arenas of 10 players (joins,
//! then moves, throws and rematches, each player acting every 200 ms of
//! stamps, so the rate limit does not refuse them). Then runs one engine per
//! topic, each with its own group and `games` topic, and clocks it from its
//! first committed offset until its committed offsets reach the end.
//!
//! The broker: `KAFKA_BROKERS`, else an Apache Kafka started by `localkafka`.
//! `cargo bench -p engine --bench arena_rate`

use std::time::{Duration, Instant};

use localkafka::LocalKafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shared::{partition_for, ActionEnvelope, ActionType};

const GAMES: u64 = 1_000;
const PARTITIONS: i32 = 12;

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Nation action `i` (the throughput bench's mix).
fn nation(i: u64) -> ActionEnvelope {
    let game_id = i % GAMES;
    let round = i / GAMES;
    let event_type = match round % 8 {
        0 if round == 0 => ActionType::Join,
        0..=3 => ActionType::Default,
        4 => ActionType::PurchaseKnife,
        5 => ActionType::PurchaseShield,
        6 => ActionType::UpgradeShield,
        _ => ActionType::PurchaseSword,
    };
    ActionEnvelope {
        name: Some("bench".into()),
        ..ActionEnvelope::new(
            format!("n-{i}"),
            game_id,
            format!("p-{}", game_id % 7),
            event_type,
            1_700_000_000_000 + i * 10,
        )
    }
}

/// Arena action `i`: round r of every arena has player r % 10 act; the
/// first ten rounds are the joins.
fn arena(i: u64) -> ActionEnvelope {
    let game_id = shared::arena::ARENA_IDS.start + i % GAMES;
    let round = i / GAMES;
    let player = round % 10;
    const PLAY: [ActionType; 10] = [
        ActionType::MoveDown,
        ActionType::MoveRight,
        ActionType::MoveUp,
        ActionType::MoveLeft,
        ActionType::MoveDown,
        ActionType::ThrowDown,
        ActionType::MoveRight,
        ActionType::ThrowUp,
        ActionType::MoveLeft,
        ActionType::Rematch,
    ];
    let event_type = if round < 10 {
        ActionType::Join
    } else {
        PLAY[((round / 10) % 10) as usize]
    };
    ActionEnvelope {
        name: Some(format!("bot{player}")),
        // 20 ms of stamps per round: each player acts every 200 ms.
        ..ActionEnvelope::new(
            format!("a-{i}"),
            game_id,
            format!("bot{player}"),
            event_type,
            1_700_000_000_000 + round * 20,
        )
    }
}

fn prefill(brokers: &str, topic: &str, n: u64, make: fn(u64) -> ActionEnvelope) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for i in 0..n {
        let a = make(i);
        let key = a.game_id.to_string();
        let value = serde_json::to_vec(&a).expect("encode");
        let mut record = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition(partition_for(a.game_id, PARTITIONS));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

fn committed(consumer: &BaseConsumer, topic: &str) -> i64 {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .map(|c| {
            c.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs an engine on `topic` until its group has committed `n`; returns
/// (actions handled while clocked, wall seconds, CPU seconds).
fn run_engine(rt: &tokio::runtime::Runtime, config: engine::Config, n: u64) -> (f64, f64, f64) {
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .create()
        .expect("watcher");
    let topic = config.actions_topic.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(engine::run(config, async {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(180);
    let o0 = loop {
        let done = committed(&watcher, &topic);
        if done > 0 {
            break done;
        }
        assert!(Instant::now() < deadline, "no offset committed");
        std::thread::sleep(Duration::from_millis(5));
    };
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut progressed = (o0, Instant::now());
    loop {
        let done = committed(&watcher, &topic);
        if done >= n as i64 {
            break;
        }
        if done > progressed.0 {
            progressed = (done, Instant::now());
        }
        assert!(
            progressed.1.elapsed() < Duration::from_secs(120),
            "stuck at {done} of {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = (
        n as f64 - o0 as f64,
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - c0,
    );
    let _ = tx.send(());
    rt.block_on(task).expect("engine task").expect("engine");
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("BENCH_ACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let (_broker, brokers) =
        LocalKafka::from_env_or_temporary().unwrap_or_else(|e| panic!("no broker: {e}"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut results = Vec::new();
    for (kind, make) in [
        ("nation", nation as fn(u64) -> ActionEnvelope),
        ("arena", arena),
    ] {
        let mut config = engine::Config::new(&brokers);
        config.actions_topic = format!("bench-{kind}-actions-{id}");
        config.games_topic = format!("bench-{kind}-games-{id}");
        config.dlq_topic = format!("bench-{kind}-dlq-{id}");
        config.group_id = format!("bench-{kind}-engine-{id}");
        config.partitions = PARTITIONS;
        config.eager_flush = true;
        config.commit_interval_ms = 0;
        config.extra = vec![("session.timeout.ms".into(), "6000".into())];
        rt.block_on(engine::create_topics(&config)).expect("topics");
        let t = Instant::now();
        prefill(&brokers, &config.actions_topic, n, make);
        println!(
            "{kind}: prefilled {n} actions across {GAMES} games in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let (handled, wall, cpu) = run_engine(&rt, config, n);
        let rate = handled / wall;
        println!(
            "{kind}: engine (transactions) {rate:.0} actions/s, {wall:.2} s wall, {cpu:.2} s CPU ({:.0} actions per CPU-second)",
            handled / cpu
        );
        results.push(rate);
    }
    println!("arena / nation apply rate: {:.2}", results[1] / results[0]);
}
