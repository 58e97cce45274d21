//! Seed 004's campaign on Apache Kafka: seed 004's producer (`-l -e 1000
//! -m 0 -x 1`) feeds the role; the campaign's top 10 (over HTTP and pushed
//! over the WebSocket) equals the ranking computed here from the produced
//! events; duplicated spins do not change an `incr` board; a restarted role
//! rebuilds the same boards from the compacted topic alone; a spin produced
//! again after a restart (or to a second instance) is not counted twice.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use leaderboards::board::Operator;
use leaderboards::campaign::{seed_campaign, Metric};
use leaderboards::{Config, Leaderboards};
use loadgen::spin::Spin;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running role and its routes on a free port.
struct Role {
    handle: Leaderboards,
    base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), leaderboards::Error>>,
}

async fn start(config: Config) -> Role {
    let handle = Leaderboards::from_config(&config).expect("boards");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(leaderboards::run(config, handle.clone(), async move {
        let _ = stopped.await;
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = leaderboards::router(handle.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let h = handle.clone();
    tests::eventually(Duration::from_secs(60), "the boards to be rebuilt", || {
        let ready = h.is_ready();
        async move { ready.then_some(()) }
    })
    .await;
    Role {
        handle,
        base,
        stop,
        task,
    }
}

impl Role {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("join")
            .expect("the role ends cleanly");
    }
}

fn time_ms(spin: &Spin) -> i64 {
    chrono::NaiveDateTime::parse_from_str(&spin.event_time, "%Y-%m-%d %H:%M:%S%.f")
        .expect("seed time format")
        .and_utc()
        .timestamp_millis()
}

/// The best win/stake ratio per player, ranked: ratio (desc), then who
/// reached it first (ms), then player id.
fn expected_best_ratio(spins: &[Spin]) -> Vec<(String, f64)> {
    let mut best: HashMap<i32, (f64, i64)> = HashMap::new();
    for s in spins {
        let ratio = s.win as f64 / s.stake as f64;
        let t = time_ms(s);
        let e = best.entry(s.player_id).or_insert((ratio, t));
        if ratio > e.0 || (ratio == e.0 && t < e.1) {
            *e = (ratio, t);
        }
    }
    let mut rows: Vec<(String, f64, i64)> = best
        .into_iter()
        .map(|(p, (r, t))| (p.to_string(), r, t))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    rows.into_iter().take(10).map(|(p, r, _)| (p, r)).collect()
}

fn totals(spins: &[Spin]) -> HashMap<String, f64> {
    let mut t = HashMap::new();
    for s in spins {
        *t.entry(s.player_id.to_string()).or_insert(0.0) += s.win as f64;
    }
    t
}

fn rows(page: &Value) -> Vec<(String, f64)> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|r| {
            (
                r["player_id"].as_str().expect("id").to_string(),
                r["score"].as_f64().expect("score"),
            )
        })
        .collect()
}

/// Same players in the same order, same scores (JSON numbers parse to within
/// an ulp, so compared at 1e-12 relative).
fn same(a: &[(String, f64)], b: &[(String, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((pa, sa), (pb, sb))| pa == pb && (sa - sb).abs() <= 1e-12 * sa.abs().max(1.0))
}

async fn top(base: &str, board: &str, limit: usize) -> Value {
    reqwest::get(format!("{base}/api/leaderboards/{board}?limit={limit}"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// Waits until the role has read every partition of `topic` to its end.
async fn caught_up(handle: &Leaderboards, topic: &str) {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", tests::broker())
        .create()
        .expect("consumer");
    let mut highs = Vec::new();
    for p in 0..4 {
        highs.push(
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1,
        );
    }
    tests::eventually(
        Duration::from_secs(60),
        "the role to read every record",
        || {
            let done =
                (0..4).all(|p| handle.read().offset(topic, p).unwrap_or(0) >= highs[p as usize]);
            async move { done.then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_producer_feeds_the_campaign_exactly_once_and_a_restart_rebuilds_it() {
    let brokers = tests::broker().to_string();
    let gameplay = tests::unique("gameplay");
    let state = tests::unique("leaderboards");
    tests::create_topics(&brokers, &[(&gameplay, 4, false)])
        .await
        .expect("topics");
    let mut defs = seed_campaign(&gameplay);
    let mut total = defs[0].clone();
    total.id = "total-win".into();
    total.metric = Metric::Win;
    total.rules.operator = Operator::Incr;
    defs.push(total);
    let file = std::env::temp_dir().join(format!("{}.json", tests::unique("campaigns")));
    std::fs::write(&file, serde_json::to_vec(&defs).expect("json")).expect("write");
    let mut config = Config::for_brokers(brokers.clone());
    config.state_topic = state.clone();
    config.campaigns_file = Some(file.clone());
    config.transactional_id = tests::unique("leaderboards");
    let role = start(config.clone()).await;

    let ws_url = format!(
        "{}/ws/leaderboards/spins-best-ratio",
        role.base.replace("http://", "ws://")
    );
    let (socket, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("websocket");
    let pushed = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let last = pushed.clone();
    tokio::spawn(async move {
        let mut socket = socket;
        while let Some(Ok(msg)) = socket.next().await {
            if let Ok(text) = msg.into_text() {
                if let Ok(v) = serde_json::from_str::<Value>(text.as_str()) {
                    *last.lock().expect("lock") = v;
                }
            }
        }
    });

    // Seed 004's producer: -l -e 1000 -m 0 -x 1.
    let args = loadgen::produce::ProduceArgs {
        topic: gameplay.clone(),
        bootstrap: brokers.clone(),
        looping: true,
        events: 1000,
        min_delay_ms: 0,
        max_delay_ms: 1,
        print_every: 100,
        extra: Vec::new(),
    };
    let spins = loadgen::produce::run(&args, &mut Vec::new())
        .await
        .expect("produce");
    assert_eq!(spins.len(), 1000);
    let expected = expected_best_ratio(&spins);
    assert_eq!(expected.len(), 10);
    caught_up(&role.handle, &gameplay).await;
    let got = rows(&top(&role.base, "spins-best-ratio", 10).await);
    assert!(same(&got, &expected), "{got:?}\n{expected:?}");
    let want_totals = totals(&spins);
    let got_totals: HashMap<String, f64> = rows(&top(&role.base, "total-win", 100).await)
        .into_iter()
        .collect();
    assert_eq!(got_totals, want_totals);
    tests::eventually(
        Duration::from_secs(30),
        "the WebSocket to push the top 10",
        || {
            let v = pushed.lock().expect("lock").clone();
            let ok = v.get("entries").is_some() && same(&rows(&v), &expected);
            async move { ok.then_some(()) }
        },
    )
    .await;

    // The same spins produced again: nothing changes.
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    for s in spins.iter().step_by(50) {
        let key = s.key();
        let value = s.to_json();
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&gameplay)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("duplicate delivered");
    }
    caught_up(&role.handle, &gameplay).await;
    let after: HashMap<String, f64> = rows(&top(&role.base, "total-win", 100).await)
        .into_iter()
        .collect();
    assert_eq!(after, want_totals, "duplicated spins counted twice");
    let unchanged = rows(&top(&role.base, "spins-best-ratio", 10).await);
    assert!(same(&unchanged, &expected), "{unchanged:?}\n{expected:?}");
    let offsets: Vec<Option<i64>> = (0..4)
        .map(|p| role.handle.read().offset(&gameplay, p))
        .collect();
    role.stop().await;

    // A new role rebuilds the same boards from the compacted topic alone.
    config.transactional_id = tests::unique("leaderboards");
    let again = start(config).await;
    let rebuilt_top = rows(&top(&again.base, "spins-best-ratio", 10).await);
    assert!(
        same(&rebuilt_top, &expected),
        "{rebuilt_top:?}\n{expected:?}"
    );
    let rebuilt: HashMap<String, f64> = rows(&top(&again.base, "total-win", 100).await)
        .into_iter()
        .collect();
    assert_eq!(rebuilt, want_totals);
    // And it resumes after the last record read: nothing is counted again.
    let resumed: Vec<Option<i64>> = (0..4)
        .map(|p| again.handle.read().offset(&gameplay, p))
        .collect();
    assert_eq!(resumed, offsets);
    again.stop().await;
    let _ = std::fs::remove_file(file);
}

/// Produces `spins` to `topic` (seed 004's key and value), each delivered.
async fn produce(brokers: &str, topic: &str, spins: &[Spin]) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for s in spins {
        let (key, value) = (s.key(), s.to_json());
        producer
            .send(
                rdkafka::producer::FutureRecord::to(topic)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spin_produced_again_after_a_restart_is_not_counted_twice() {
    use rand::SeedableRng;
    let brokers = tests::broker().to_string();
    let gameplay = tests::unique("gameplay");
    tests::create_topics(&brokers, &[(&gameplay, 4, false)])
        .await
        .expect("topics");
    // Every spin counts on `total-win` (incr) and `spins` (incr, 1 each);
    // a grace of ten minutes, so a duplicate is refused as a duplicate, not
    // as late, however long the restart takes.
    let mut total = seed_campaign(&gameplay)[0].clone();
    total.id = "total-win".into();
    total.metric = Metric::Win;
    total.rules.operator = Operator::Incr;
    total.rules.grace_ms = 600_000;
    let mut count = total.clone();
    count.id = "spins".into();
    count.metric = Metric::Spins;
    let file = std::env::temp_dir().join(format!("{}.json", tests::unique("campaigns")));
    std::fs::write(&file, serde_json::to_vec(&[total, count]).expect("json")).expect("write");
    let mut config = Config::for_brokers(brokers.clone());
    config.state_topic = tests::unique("leaderboards");
    config.campaigns_file = Some(file.clone());
    config.transactional_id = tests::unique("leaderboards");

    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let start_ms = chrono::Utc::now();
    let spins: Vec<Spin> = (0..40)
        .map(|i| loadgen::spin::generate(&mut rng, start_ms + chrono::Duration::milliseconds(i)))
        .collect();
    let role = start(config.clone()).await;
    produce(&brokers, &gameplay, &spins).await;
    caught_up(&role.handle, &gameplay).await;
    let want_totals = totals(&spins);
    let board = |base: String, id: &'static str| async move {
        rows(&top(&base, id, 100).await)
            .into_iter()
            .collect::<HashMap<String, f64>>()
    };
    assert_eq!(board(role.base.clone(), "total-win").await, want_totals);
    role.stop().await;

    // A new instance (same transactional id: a restart) rebuilds from the
    // compacted topic alone; then the first ten spins are produced again
    // (new offsets, as a producer's retry would): the boards do not move; a
    // new spin after them still counts.
    let again = start(config.clone()).await;
    assert_eq!(board(again.base.clone(), "total-win").await, want_totals);
    let before_spins = board(again.base.clone(), "spins").await;
    let version = |h: &Leaderboards| h.read().board("total-win").expect("board").version;
    let before_version = version(&again.handle);
    produce(&brokers, &gameplay, &spins[..10]).await;
    caught_up(&again.handle, &gameplay).await;
    assert_eq!(
        board(again.base.clone(), "total-win").await,
        want_totals,
        "a spin produced again after the restart counted twice"
    );
    assert_eq!(board(again.base.clone(), "spins").await, before_spins);
    assert_eq!(version(&again.handle), before_version, "the board changed");
    let listing: Value = reqwest::get(format!("{}/api/leaderboards", again.base))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let late = listing["boards"]
        .as_array()
        .expect("boards")
        .iter()
        .map(|b| b["late"].as_u64().expect("late"))
        .sum::<u64>();
    assert_eq!(late, 0, "refused as late, not as duplicates");
    let marker = loadgen::spin::generate(&mut rng, chrono::Utc::now());
    produce(&brokers, &gameplay, std::slice::from_ref(&marker)).await;
    caught_up(&again.handle, &gameplay).await;
    let mut with_marker = want_totals.clone();
    *with_marker
        .entry(marker.player_id.to_string())
        .or_insert(0.0) += marker.win as f64;
    assert_eq!(board(again.base.clone(), "total-win").await, with_marker);
    again.stop().await;

    // A second instance (its own transactional id) rebuilding after the
    // duplicates refuses them too.
    config.transactional_id = tests::unique("leaderboards");
    let third = start(config).await;
    produce(&brokers, &gameplay, &spins[10..20]).await;
    caught_up(&third.handle, &gameplay).await;
    assert_eq!(board(third.base.clone(), "total-win").await, with_marker);
    third.stop().await;
    let _ = std::fs::remove_file(file);
}
