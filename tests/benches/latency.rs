//! End to end (issue 5, P2): from `POST /api/games/{id}/actions` being
//! answered to the update arriving on the player's WebSocket, at a steady
//! rate; and, in the same run, the broker's own produce-to-consume time as
//! the floor.
//!
//! The load and its measurement are `loadgen play` (issue 14): simulated
//! players, an open-model rate, latencies from each action's intended start
//! (coordinated omission corrected) to its `202` and to its update, and
//! `202 -> update`, the P2 figure. This prints loadgen's table, then the
//! floor.
//!
//! `cargo build --release -p nation && cargo bench -p tests --bench latency`
//! Env: `BENCH_RATE` (actions/s, default 2000), `BENCH_SECS` (default 30),
//! `BENCH_GAMES` (default 20), `BENCH_PLAYERS` (default one per game),
//! `NATION_BIN` (another build of `nation`, for two builds side by side),
//! `BENCH_NATIONS` (nations added to game 1 first, default 0: the
//! popular-game run), `KAFKA_BROKERS` (else an Apache Kafka is started for
//! the run), `BENCH_DIRECT=1` (also read `games` directly, to split engine
//! from bridge), `BENCH_DUMP=file` (id, answer time, latency in µs per
//! action), `BENCH_FLOOR_ONLY=1`, `BENCH_WARMUP_SECS` (default 30: the
//! same load on other games before anything is measured; a fresh broker's
//! JVM compiles its hot paths in its first minute, and a floor measured cold
//! had p99s of 170-430 ms against 7 ms warm, BENCHMARKS.md P2),
//! `BENCH_LOADED_FLOOR_RATE` (default 200 records/s; 0: none): a second
//! floor, measured during the game's load at that rate on a topic of its
//! own, for what a bare produce -> consume gets from the same broker and
//! cores while the game runs (on 2 cores the game's load alone moves it).

#[path = "common/mod.rs"]
#[allow(dead_code)] // each bench uses part of it
mod common;

use std::time::{Duration, Instant};

use loadgen::play::{PlayArgs, Report};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The floor: produce (acks=all, idempotent, `LINGER_MS` as the bridge's,
/// default 1) -> consume (fetch wait 1 ms) on the same broker at the same
/// rate.
async fn broker_floor(brokers: &str, rate: u64, secs: u64, topic: Option<&str>) -> Vec<Duration> {
    let topic = match topic {
        Some(topic) => topic.to_string(),
        None => {
            let topic = tests::unique("floor");
            tests::create_topics(brokers, &[(&topic, 1, false)])
                .await
                .expect("topic");
            topic
        }
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set(
            "linger.ms",
            std::env::var("LINGER_MS").unwrap_or_else(|_| "1".into()),
        )
        .create()
        .expect("producer");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", tests::unique("floor"))
        .set("fetch.wait.max.ms", "1")
        // Tuned as the engine's consumer and the bridge's reader are.
        .set("fetch.error.backoff.ms", "10")
        .set("fetch.queue.backoff.ms", "5")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let start = Instant::now();
    let total = rate * secs;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(secs + 30);
        while (got.len() as u64) < total && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let sent: u64 = std::str::from_utf8(m.payload().unwrap_or_default())
                    .unwrap()
                    .parse()
                    .unwrap();
                got.push((sent, start.elapsed().as_micros() as u64));
            }
        }
        got
    });
    let warmup = 2 * rate.min(500);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for _ in 0..total {
        tick.tick().await;
        let sent = start.elapsed().as_micros().to_string();
        // send_result enqueues now (an un-awaited `send` would not).
        let _ = producer.send_result(
            FutureRecord::<(), _>::to(&topic)
                .payload(&sent)
                .partition(0),
        );
    }
    let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    got.into_iter()
        .skip(warmup as usize)
        .map(|(sent, recv)| Duration::from_micros(recv.saturating_sub(sent)))
        .collect()
}

/// `BENCH_DUMP`: one line per measured action answered `202`: its id, when
/// the answer came (µs after the first intended start) and answer ->
/// update (µs; empty when no update came).
fn dump(path: &str, report: &Report) {
    use std::io::Write;
    let Some(start) = report.actions.iter().map(|a| a.intended).min() else {
        return;
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).expect("BENCH_DUMP file"));
    for a in &report.actions {
        let Some(answered) = a.answered else { continue };
        let latency = a
            .update
            .map(|u| {
                u.saturating_duration_since(answered)
                    .as_micros()
                    .to_string()
            })
            .unwrap_or_default();
        let _ = writeln!(w, "{} {} {latency}", a.id, (answered - start).as_micros());
    }
}

#[tokio::main]
async fn main() {
    let rate = common::env("BENCH_RATE", 2000);
    let secs = common::env("BENCH_SECS", 30);
    let games = common::env("BENCH_GAMES", 20);
    let players = common::env("BENCH_PLAYERS", games) as usize;
    let brokers = tests::broker().to_string();
    let bridge = common::BridgeProcess::start(&brokers, 12);
    let floor_topic: Option<&str> = None;
    println!(
        "# end-to-end latency at {rate} actions/s for {secs} s over {games} games, {players} players, loadgen play ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("broker: Apache Kafka at {brokers}");
    println!(
        "settings: LINGER_MS={} ENGINE_COMMIT_INTERVAL_MS={} ENGINE_EAGER_FLUSH={} GAMES_ISOLATION={}",
        std::env::var("LINGER_MS").unwrap_or_else(|_| "default".into()),
        std::env::var("ENGINE_COMMIT_INTERVAL_MS").unwrap_or_else(|_| "default".into()),
        std::env::var("ENGINE_EAGER_FLUSH").unwrap_or_else(|_| "default".into()),
        std::env::var("GAMES_ISOLATION").unwrap_or_else(|_| "default".into()),
    );
    // The engine assigned and restored before anything is timed.
    let client = reqwest::Client::new();
    bridge.wait_ready().await;
    // Warm-up, not measured: the broker's JVM and the game at the rate, on
    // games of their own.
    common::warm_up(&bridge.addr, rate, games, players, 30).await;
    // As long as the game's run: both test brokers slow down as a
    // partition's log grows (BENCHMARKS.md).
    let floor = broker_floor(&brokers, rate, secs, floor_topic).await;
    let floor = common::summary(floor);
    println!("broker floor (produce -> consume):            {floor}");
    if std::env::var_os("BENCH_FLOOR_ONLY").is_some() {
        return;
    }

    common::populate_from_env(&client, &brokers, &bridge, 12).await;
    // BENCH_DIRECT=1: also read `games` straight from the broker, as the
    // bridge does, to split the time into engine and bridge.
    let direct = std::env::var_os("BENCH_DIRECT")
        .map(|_| common::DirectReader::start(&brokers, &bridge.games_topic));
    let dump_to = std::env::var("BENCH_DUMP").ok();
    let args = PlayArgs {
        rate: rate as f64,
        duration: secs as f64,
        games,
        // Games 1.. (BENCH_NATIONS fills game 1): the process is fresh.
        first_game: Some(1),
        players,
        drain: 10.0,
        quiet: true,
        keep_actions: direct.is_some() || dump_to.is_some(),
        ..PlayArgs::new(format!("http://{}", bridge.addr))
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loaded_rate = common::env("BENCH_LOADED_FLOOR_RATE", 200);
    let (report, loaded_floor) = tokio::join!(loadgen::play::run(&args), async {
        if loaded_rate == 0 {
            return None;
        }
        Some(common::summary(
            broker_floor(&brokers, loaded_rate, secs, None).await,
        ))
    });
    let report = report.expect("loadgen play");
    println!(
        "load average before the load: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    loadgen::play::print_table(&report, &mut std::io::stdout()).expect("stdout");
    let a = &report.answer_to_update;
    println!(
        "P2 answer -> WebSocket update (bridge+engine): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        a.p50_ms, a.p99_ms, a.max_ms, a.count
    );
    println!("broker floor, same run (produce -> consume):  {floor}");
    if let Some(loaded) = loaded_floor {
        println!("broker floor during the load ({loaded_rate}/s):     {loaded}");
    }
    if let Some(direct) = direct {
        let direct = direct.finish();
        let mut engine = Vec::new();
        let mut bridge_part = Vec::new();
        for action in &report.actions {
            let (Some(answered), Some(on_games)) = (action.answered, direct.get(&action.id)) else {
                continue;
            };
            engine.push(on_games.saturating_duration_since(answered));
            if let Some(update) = action.update {
                bridge_part.push(update.saturating_duration_since(*on_games));
            }
        }
        println!(
            "  of which answer -> record on games (engine): {}",
            common::summary(engine)
        );
        println!(
            "  and record on games -> WebSocket (bridge):   {}",
            common::summary(bridge_part)
        );
    }
    if let Some(path) = dump_to {
        dump(&path, &report);
    }
}
