//! Engine throughput against a real broker: pre-fills `actions` with
//! `BENCH_ACTIONS` (default 1,000,000) records across 1,000 games, then
//! measures in the same run
//! 1. the baseline: a plain consumer that only reads and decodes them;
//! 2. the engine with transactions, until its committed offsets reach the end.
//!
//! Prints actions/s and the CPU seconds this process used (the broker runs in
//! its own process and is not counted). `KAFKA_BROKERS` or a tansu started
//! from `.venv/bin/tansu`.
//!
//! `cargo bench -p engine --bench throughput`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use shared::{partition_for, ActionEnvelope, ActionType, SCHEMA_VERSION};

const GAMES: u64 = 1_000;
const PARTITIONS: i32 = 12;

/// CPU seconds (user + system) this process has used so far.
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
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

fn start_tansu() -> (Child, String) {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/tansu");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("no broker: set KAFKA_BROKERS or install tansu ({e})"));
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

fn action(i: u64) -> ActionEnvelope {
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
        event_id: format!("a-{i}"),
        game_id,
        player_id: format!("p-{}", game_id % 7),
        event_type,
        name: None,
        host: "bench".into(),
        user_agent: "bench".into(),
        accept: "*/*".into(),
        client_addr: "127.0.0.1".into(),
        received_at_ms: 1_700_000_000_000 + i * 10,
        schema_version: SCHEMA_VERSION,
    }
}

fn prefill(brokers: &str, topic: &str, n: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for i in 0..n {
        let a = action(i);
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

fn baseline(brokers: &str, topic: &str, n: u64) -> (f64, f64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-baseline")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut seen = 0;
    while seen < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let a: ActionEnvelope =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("decode");
            std::hint::black_box(a);
            seen += 1;
        }
    }
    (t0.elapsed().as_secs_f64(), cpu_seconds() - c0)
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("BENCH_ACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (_tansu, brokers) = match std::env::var("KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => (None, b),
        _ => {
            let (child, addr) = start_tansu();
            (Some(KillOnDrop(child)), addr)
        }
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut config = engine::Config::new(&brokers);
    config.actions_topic = format!("bench-actions-{id}");
    config.games_topic = format!("bench-games-{id}");
    config.dlq_topic = format!("bench-dlq-{id}");
    config.group_id = format!("bench-engine-{id}");
    config.partitions = PARTITIONS;
    if let Some(b) = std::env::var("BENCH_MAX_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.max_batch = b;
    }
    config.extra = vec![("session.timeout.ms".into(), "6000".into())];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(engine::create_topics(&config)).expect("topics");

    let t = Instant::now();
    prefill(&brokers, &config.actions_topic, n);
    println!(
        "prefill: {n} actions across {GAMES} games in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let (bw, bc) = baseline(&brokers, &config.actions_topic, n);
    let base_rate = n as f64 / bw;
    println!(
        "baseline (read + decode): {base_rate:.0} actions/s, {bw:.2} s wall, {bc:.2} s CPU ({:.0} actions per CPU-second)",
        n as f64 / bc
    );

    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &config.group_id)
        .create()
        .expect("watcher");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let max_batch = config.max_batch;
    let topic = config.actions_topic.clone();
    let engine = rt.spawn(engine::run(config, async {
        let _ = rx.await;
    }));
    // Clock from the first committed offset: the group join (about
    // session.timeout.ms / 2 on tansu) is not throughput.
    while committed(&watcher, &topic) <= 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (t0, c0, o0) = (Instant::now(), cpu_seconds(), committed(&watcher, &topic));
    loop {
        let done = committed(&watcher, &topic);
        if done >= n as i64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ew, ec) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let handled = n as f64 - o0 as f64;
    let rate = handled / ew;
    let _ = tx.send(());
    rt.block_on(engine).expect("engine task").expect("engine");
    println!(
        "engine (transactions, max_batch {max_batch}): {rate:.0} actions/s, {ew:.2} s wall, {ec:.2} s CPU = {:.2} cores ({:.0} actions per CPU-second)",
        ec / ew,
        handled / ec
    );
    println!(
        "ratio engine/baseline: {:.2} by wall time, {:.2} by CPU",
        rate / base_rate,
        (handled / ec) / (n as f64 / bc)
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
