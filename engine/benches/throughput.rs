//! Engine throughput against a real broker: pre-fills `actions` with
//! `BENCH_ACTIONS` (default 1,000,000) records across 1,000 games, then
//! measures in the same run, on the same topic:
//! 1. the baseline: a plain consumer that only reads and decodes them;
//! 2. the engine with transactions, until its committed offsets reach the end;
//! 3. the peer: a Kafka Streams application doing the same job with
//!    `exactly_once_v2` (`benches/streams-peer`, built here with Maven when
//!    its jar is missing or older than its sources), measured the same way;
//!    then checks that both left the same final state for a few games.
//!
//! Prints actions/s and the CPU seconds of whoever did the work: this process
//! for the baseline and the engine, the JVM for the peer. The broker runs in
//! its own process and is counted apart (when this bench started it). The
//! broker: `KAFKA_BROKERS`, else an Apache Kafka started by `localkafka`.
//!
//! Knobs: `BENCH_MAX_BATCH`, `BENCH_EAGER_FLUSH` (default true: the broker
//! is Apache Kafka) and `BENCH_COMMIT_INTERVAL_MS` (default 0) set the
//! engine's `max_batch`, `eager_flush` and `commit_interval_ms`;
//! `BENCH_ENGINE_SETTINGS` (space-separated `key=value` librdkafka settings,
//! the engine's `-X`);
//! `STREAMS_PEER_SETTINGS` (space-separated `key=value` Streams settings on
//! top of the peer's defaults below); `STREAMS_PEER_JVM_OPTS`.
//!
//! `cargo bench -p engine --bench throughput`

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use localkafka::LocalKafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use shared::{
    partition_for, ActionEnvelope, ActionType, Game, GamesFold, GamesRecord, SCHEMA_VERSION,
};

/// The allocator the engine ships with (`nation` and `engine` binaries):
/// the bench measures the engine as it runs, and the baseline beside it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GAMES: u64 = 1_000;
const PARTITIONS: i32 = 12;
/// Games whose final states the engine and the peer must agree on (on
/// partitions 0, 1, 3, 10 and 11).
const CHECKED_GAMES: [u64; 5] = [0, 1, 250, 503, 999];
/// The peer's Streams settings unless `STREAMS_PEER_SETTINGS` overrides them:
/// its best measured here (see benches/streams-peer/README.md).
const PEER_SETTINGS: &str = "num.stream.threads=2 commit.interval.ms=1000 max.poll.records=10000";
/// The peer's JVM options unless `STREAMS_PEER_JVM_OPTS` overrides them.
const PEER_JVM_OPTS: &str = "-Xms512m -Xmx1g -XX:+UseG1GC";

/// CPU seconds (user + system) process `pid` ("self" for this one) has used
/// so far; 0 once it is gone.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

/// Writes `n` actions, keyed by game id on partition game id mod 12 (as the
/// bridge does).
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
        // Tuned like the engine: no 1 s pause once the local queue is full.
        .set("fetch.queue.backoff.ms", "5")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let (t0, c0) = (Instant::now(), cpu_seconds("self"));
    let mut seen = 0;
    while seen < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let a: ActionEnvelope =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("decode");
            std::hint::black_box(a);
            seen += 1;
        }
    }
    (t0.elapsed().as_secs_f64(), cpu_seconds("self") - c0)
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

/// One measured stage.
struct Stage {
    /// Actions handled while the clock ran.
    handled: f64,
    wall: f64,
    /// CPU seconds of the process doing the work.
    cpu: f64,
    /// CPU seconds of the broker, when this bench started it.
    broker_cpu: Option<f64>,
}

impl Stage {
    fn rate(&self) -> f64 {
        self.handled / self.wall
    }

    fn per_cpu_second(&self) -> f64 {
        self.handled / self.cpu
    }

    fn describe(&self) -> String {
        let broker = self
            .broker_cpu
            .map(|c| format!("; broker {c:.2} s CPU = {:.2} cores", c / self.wall))
            .unwrap_or_default();
        format!(
            "{:.0} actions/s, {:.2} s wall, {:.2} s CPU = {:.2} cores ({:.0} actions per CPU-second){broker}",
            self.rate(),
            self.wall,
            self.cpu,
            self.cpu / self.wall,
            self.per_cpu_second(),
        )
    }
}

/// Reads a group's committed offsets on the actions topic. Made (and
/// connected) before its worker starts, so the worker's first commit is seen
/// at once.
struct Watcher {
    consumer: BaseConsumer,
    group: String,
    topic: String,
}

impl Watcher {
    fn new(brokers: &str, group: &str, topic: &str) -> Watcher {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .create()
            .expect("watcher");
        let watcher = Watcher {
            consumer,
            group: group.to_string(),
            topic: topic.to_string(),
        };
        assert_eq!(watcher.committed(), 0, "{group} is new");
        watcher
    }

    fn committed(&self) -> i64 {
        committed(&self.consumer, &self.topic)
    }

    /// Clocks the group from its first committed offset (joining the group
    /// and loading state is not throughput) until its committed offsets
    /// reach `n`. `cpu` reads the worker's CPU seconds; `alive` fails when
    /// the worker is gone.
    fn measure(
        &self,
        n: u64,
        cpu: impl Fn() -> f64,
        broker_pid: Option<u32>,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Stage {
        let group = &self.group;
        let broker_cpu = || broker_pid.map(|pid| cpu_seconds(&pid.to_string()));
        let deadline = Instant::now() + Duration::from_secs(180);
        let o0 = loop {
            let done = self.committed();
            if done > 0 {
                break done;
            }
            alive().unwrap_or_else(|e| panic!("{e}"));
            assert!(Instant::now() < deadline, "{group}: no offset committed");
            std::thread::sleep(Duration::from_millis(5));
        };
        let (t0, c0, b0) = (Instant::now(), cpu(), broker_cpu());
        let (mut last, mut progressed) = (o0, Instant::now());
        loop {
            let done = self.committed();
            if done >= n as i64 {
                break;
            }
            if done > last {
                (last, progressed) = (done, Instant::now());
            }
            alive().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                progressed.elapsed() < Duration::from_secs(120),
                "{group}: stuck at {done} of {n} committed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Stage {
            handled: n as f64 - o0 as f64,
            wall: t0.elapsed().as_secs_f64(),
            cpu: cpu() - c0,
            broker_cpu: broker_cpu().zip(b0).map(|(b1, b0)| b1 - b0),
        }
    }
}

/// The peer's folder, `benches/streams-peer`.
fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/streams-peer")
}

/// The newest modification time of `path` and everything under it.
fn newest(path: &Path) -> SystemTime {
    let own = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let children = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| newest(&e.path()));
    children.fold(own, SystemTime::max)
}

/// Builds the peer with Maven unless its jar is newer than its sources;
/// returns its class path.
fn build_peer() -> String {
    let dir = peer_dir();
    let target = dir.join("target");
    let jar = target.join("streams-peer.jar");
    let built = std::fs::metadata(&jar).and_then(|m| m.modified()).ok();
    let sources = newest(&dir.join("pom.xml")).max(newest(&dir.join("src")));
    if built.is_none_or(|b| b < sources) {
        let t = Instant::now();
        // Stale jars of an older pom.xml would stay on the class path.
        let _ = std::fs::remove_dir_all(target.join("libs"));
        let status = Command::new("mvn")
            .args(["-q", "-B", "package"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| panic!("run mvn (apt-get install maven): {e}"));
        assert!(status.success(), "mvn package in {} failed", dir.display());
        println!(
            "streams peer: built with Maven in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    format!("{}:{}/*", jar.display(), target.join("libs").display())
}

/// A number or flag from the environment.
fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// A setting from the environment, else `default`.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// How a topic holds the games' states.
#[derive(Clone, Copy)]
enum Shape {
    /// The engine's `games`: a record per nation plus a head per step,
    /// folded as any consumer of `games` folds them.
    Records,
    /// The peer's: the whole game in each record, the last one wins.
    WholeGame,
}

/// Latest state per game among `games`, as written to `topic` (committed
/// records only), read from the beginning to the end of their partitions.
fn final_states(brokers: &str, topic: &str, shape: Shape, games: &[u64]) -> HashMap<u64, Game> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-final-states")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    let partitions: HashSet<i32> = games
        .iter()
        .map(|&g| partition_for(g, PARTITIONS))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    reader.assign(&tpl).expect("assign");
    let mut fold = GamesFold::default();
    let mut whole: HashMap<u64, Game> = HashMap::new();
    let mut unreadable = 0u64;
    let mut at_end = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < partitions.len() && Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                match shape {
                    Shape::Records => {
                        if let Ok(record) = serde_json::from_slice::<GamesRecord>(payload) {
                            fold.push(record);
                        }
                    }
                    Shape::WholeGame => match serde_json::from_slice::<Game>(payload) {
                        Ok(game) => {
                            whole.insert(game.game_id, game);
                        }
                        Err(e) => {
                            unreadable += 1;
                            if unreadable == 1 {
                                println!(
                                    "  {topic}: a record that is not a game ({e}): {}",
                                    String::from_utf8_lossy(&payload[..payload.len().min(300)])
                                );
                            }
                        }
                    },
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    let folded = fold
        .games
        .into_iter()
        .map(|(id, snapshot)| (id, snapshot.game()));
    folded
        .chain(whole)
        .filter(|(id, _)| games.contains(id))
        .collect()
}

/// Prints whether the engine's and the peer's final states agree on
/// [`CHECKED_GAMES`] (version and the whole state: gold, items, power,
/// recent ids of every nation).
fn compare(engine: &HashMap<u64, Game>, peer: &HashMap<u64, Game>) -> bool {
    let mut agree = true;
    for g in CHECKED_GAMES {
        match (engine.get(&g), peer.get(&g)) {
            (Some(e), Some(p)) if e == p => {}
            (e, p) => {
                agree = false;
                let show = |x: Option<&Game>| {
                    x.map(|x| {
                        let nations: Vec<String> = x
                            .state
                            .players
                            .iter()
                            .map(|(id, n)| format!("{id}: {} gold {:?}", n.gold, n.items))
                            .collect();
                        format!("version {} [{}]", x.version, nations.join(", "))
                    })
                    .unwrap_or_else(|| "missing".into())
                };
                println!("  game {g}: engine {} / peer {}", show(e), show(p));
            }
        }
    }
    let sample = engine.get(&CHECKED_GAMES[0]);
    println!(
        "final states of games {CHECKED_GAMES:?}: {} (e.g. game {}: version {}, gold {:?})",
        if agree {
            "engine and peer agree"
        } else {
            "DISAGREE"
        },
        CHECKED_GAMES[0],
        sample.map(|g| g.version).unwrap_or(0),
        sample
            .map(|g| g.state.players.values().map(|n| n.gold).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    agree
}

fn main() {
    // As the shipped binaries run (their allocator settings).
    ops::allocator::apply();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = env_parse("BENCH_ACTIONS").unwrap_or(1_000_000);
    let classpath = build_peer();
    let (broker, brokers) =
        LocalKafka::from_env_or_temporary().unwrap_or_else(|e| panic!("no broker: {e}"));
    let broker_pid = broker.as_ref().and_then(LocalKafka::pid);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut config = engine::Config::new(&brokers);
    config.actions_topic = format!("bench-actions-{id}");
    config.games_topic = format!("bench-games-{id}");
    config.dlq_topic = format!("bench-dlq-{id}");
    config.group_id = format!("bench-engine-{id}");
    config.partitions = PARTITIONS;
    if let Some(b) = env_parse("BENCH_MAX_BATCH") {
        config.max_batch = b;
    }
    // The broker is Apache Kafka (tansu is retired): the engine's docs say
    // to turn eager flushes on against it.
    config.eager_flush = env_parse("BENCH_EAGER_FLUSH").unwrap_or(true);
    config.commit_interval_ms = env_parse("BENCH_COMMIT_INTERVAL_MS").unwrap_or(0);
    config.extra = vec![("session.timeout.ms".into(), "6000".into())];
    // Extra librdkafka settings for the engine, as its `-X key=value`.
    for pair in setting("BENCH_ENGINE_SETTINGS", "").split_whitespace() {
        let (k, v) = pair
            .split_once('=')
            .expect("BENCH_ENGINE_SETTINGS: key=value ...");
        config.extra.push((k.into(), v.into()));
    }
    // The peer's output topic: created like `games` (12 partitions, compacted).
    let mut peer_topics = config.clone();
    peer_topics.games_topic = format!("bench-games-streams-{id}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(engine::create_topics(&config)).expect("topics");
    rt.block_on(engine::create_topics(&peer_topics))
        .expect("peer topics");

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

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let engine_settings = format!(
        "max_batch {}, eager_flush {}, commit_interval_ms {}",
        config.max_batch, config.eager_flush, config.commit_interval_ms
    );
    let (actions, games, group) = (
        config.actions_topic.clone(),
        config.games_topic.clone(),
        config.group_id.clone(),
    );
    let watcher = Watcher::new(&brokers, &group, &actions);
    let engine_task = rt.spawn(engine::run(config, async {
        let _ = rx.await;
    }));
    let engine = watcher.measure(n, || cpu_seconds("self"), broker_pid, || Ok(()));
    let _ = tx.send(());
    rt.block_on(engine_task)
        .expect("engine task")
        .expect("engine");
    println!(
        "engine (transactions, {engine_settings}): {}",
        engine.describe()
    );
    println!(
        "ratio engine/baseline: {:.2} by wall time, {:.2} by CPU",
        engine.rate() / base_rate,
        engine.per_cpu_second() / (n as f64 / bc)
    );

    // The peer, on the same topic with its own application id (= group).
    let settings = setting("STREAMS_PEER_SETTINGS", PEER_SETTINGS);
    let jvm_opts = setting("STREAMS_PEER_JVM_OPTS", PEER_JVM_OPTS);
    let app_id = format!("bench-streams-{id}");
    let work = std::env::temp_dir().join(&app_id);
    std::fs::create_dir_all(&work).expect("peer folder");
    let log = work.join("peer.log");
    let log_file = std::fs::File::create(&log).expect("peer log");
    let java = localkafka::java().unwrap_or_else(|e| panic!("{e}"));
    let watcher = Watcher::new(&brokers, &app_id, &actions);
    let mut peer = KillOnDrop(
        Command::new(java)
            .args(jvm_opts.split_whitespace())
            .args(["-cp", &classpath, "nation.peer.StreamsPeer"])
            .args(["--brokers", &brokers, "--input", &actions])
            .args(["--output", &peer_topics.games_topic])
            .args(["--application-id", &app_id])
            .arg(format!("state.dir={}", work.join("state").display()))
            .args(settings.split_whitespace())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("peer log"))
            .stderr(log_file)
            .spawn()
            .expect("start the streams peer"),
    );
    let pid = peer.0.id().to_string();
    let streams = watcher.measure(
        n,
        || cpu_seconds(&pid),
        broker_pid,
        || match peer.0.try_wait() {
            Ok(None) => Ok(()),
            status => Err(format!(
                "the streams peer exited ({status:?}); its log: {}",
                log.display()
            )),
        },
    );
    println!(
        "streams peer (Kafka Streams 4.2.2, exactly_once_v2, {settings}; JVM {jvm_opts}): {}",
        streams.describe()
    );
    println!(
        "ratio engine/streams: {:.2} by wall time, {:.2} by CPU",
        engine.rate() / streams.rate(),
        engine.per_cpu_second() / streams.per_cpu_second()
    );

    let engine_states = final_states(&brokers, &games, Shape::Records, &CHECKED_GAMES);
    let peer_states = final_states(
        &brokers,
        &peer_topics.games_topic,
        Shape::WholeGame,
        &CHECKED_GAMES,
    );
    let agree = compare(&engine_states, &peer_states);
    drop(peer);
    let _ = std::fs::remove_dir_all(&work);
    drop(broker);
    assert!(agree, "the engine and the streams peer disagree");
}

/// Kills (SIGKILL) and reaps the child when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
