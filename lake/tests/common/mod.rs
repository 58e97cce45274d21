//! Helpers for the lake's tests: produce actions, run the `lake` binary,
//! check offsets. Every test makes its own topics and folders.

#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The `lake` binary built for these tests.
pub fn lake_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lake")
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lake/ has a parent")
        .to_path_buf()
}

/// The lake venv's python (`LAKE_PYTHON`, else `.tools/lake-venv`); fails
/// loudly when scripts/setup.sh has not made it.
pub fn venv_bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("LAKE_VENV") {
        Some(v) => PathBuf::from(v),
        None => workspace_root().join(".tools/lake-venv"),
    };
    let bin = dir.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it makes the lake's venv)",
        bin.display()
    );
    bin
}

/// A fresh temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(tests::unique(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The test's action with index `i`: types and hosts cycle, partition
/// `i mod partitions`.
pub fn envelope(i: u64) -> shared::ActionEnvelope {
    let types = shared::ActionType::ALL;
    shared::ActionEnvelope {
        event_id: format!("evt-{i}"),
        game_id: i,
        player_id: format!("user{}.test", i % 5),
        event_type: types[(i % types.len() as u64) as usize],
        name: None,
        host: format!("user{}.test", i % 5),
        user_agent: "lake-test".into(),
        accept: "*/*".into(),
        client_addr: "127.0.0.1".into(),
        received_at_ms: 1_796_083_200_000 + i,
        schema_version: shared::SCHEMA_VERSION,
    }
}

/// A producer for the test broker.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", tests::broker())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `values` to `topic`, record `i` on partition `i mod
/// partitions` (value index + `base`), and waits for every ack.
pub async fn produce_values(
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
    base: u64,
    values: Vec<Vec<u8>>,
) {
    // Enqueued in order (send_result enqueues at once), so offsets follow
    // the values' order within each partition.
    let mut pending = Vec::with_capacity(values.len());
    for (n, value) in values.iter().enumerate() {
        let i = base + n as u64;
        let key = i.to_string();
        // A header per record, as the bridge puts them on every action:
        // `buffer_meta.headers` has `seq=<key>` to read back.
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(value)
            .partition(shared::partition_for(i, partitions))
            .headers(OwnedHeaders::new().insert(Header {
                key: "seq",
                value: Some(key.as_str()),
            }));
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for p in pending {
        p.await
            .expect("delivery report")
            .map_err(|(e, _)| e)
            .expect("produce acknowledged");
    }
}

/// Produces actions `base..base + n`.
pub async fn produce_actions(
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
    base: u64,
    n: u64,
) {
    let values = (base..base + n)
        .map(|i| serde_json::to_vec(&envelope(i)).expect("JSON"))
        .collect();
    produce_values(producer, topic, partitions, base, values).await;
}

/// Runs `lake export --once` into `to` for `actions` (no outcomes), with
/// extra arguments and environment.
pub fn export_once(actions: &str, to: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(lake_bin());
    cmd.args(["export", "--once", "--no-outcomes", "--to"])
        .arg(to)
        .args(["--actions-topic", actions])
        .args(args)
        .env("KAFKA_BROKERS", tests::broker())
        .env("RUST_LOG", "info,rdkafka=warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run lake export")
}

/// Asserts `output` succeeded, showing its stderr if not.
pub fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `lake report --json` over the lake at `dir`, asserted to succeed.
pub fn report_json(dir: &Path) -> serde_json::Value {
    let report = std::process::Command::new(lake_bin())
        .args(["report", "--json", "--from"])
        .arg(dir)
        .output()
        .unwrap();
    assert_ok(&report, "lake report --json");
    serde_json::from_slice(&report.stdout).unwrap()
}

/// Every `(partition, offset)` of `table` in the lake at `dir`.
pub async fn offsets(dir: &Path, table: &str) -> Vec<(i32, i64)> {
    let lake = lake::Location::open(dir.to_str().expect("utf-8 path")).expect("open lake");
    lake::report::offsets(&lake, table)
        .await
        .expect("read offsets")
}

/// Asserts that `seen` holds every offset `0..count[p]` of each partition
/// exactly once: no gap, no duplicate.
pub fn assert_exactly_once(seen: &[(i32, i64)], counts: &BTreeMap<i32, i64>, what: &str) {
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for &(p, o) in seen {
        by_partition.entry(p).or_default().push(o);
    }
    for (p, &count) in counts {
        let mut offsets = by_partition.remove(p).unwrap_or_default();
        offsets.sort_unstable();
        let dups = offsets.windows(2).filter(|w| w[0] == w[1]).count();
        offsets.dedup();
        let expected: Vec<i64> = (0..count).collect();
        assert_eq!(
            dups, 0,
            "{what}: partition {p} has {dups} duplicated offsets"
        );
        assert_eq!(
            offsets.len(),
            expected.len(),
            "{what}: partition {p} has {} distinct offsets, expected {count}",
            offsets.len()
        );
        assert_eq!(offsets, expected, "{what}: partition {p} has gaps");
    }
    assert!(
        by_partition.is_empty(),
        "{what}: rows from unexpected partitions {:?}",
        by_partition.keys()
    );
}

/// How many records `n` actions put on each of `partitions` partitions.
pub fn counts_for(n: u64, partitions: i32) -> BTreeMap<i32, i64> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        *counts
            .entry(shared::partition_for(i, partitions))
            .or_insert(0) += 1;
    }
    counts
}

/// A `lake export` following `actions` into a folder; killed (SIGKILL) if
/// the test ends, or fails, before [`Follower::stop`].
pub struct Follower(Option<std::process::Child>);

/// Starts `lake export` following `actions` into `dir`: no outcomes,
/// batches cut at 200 ms, then `args`.
pub fn follow(actions: &str, dir: &Path, args: &[&str]) -> Follower {
    let child = Command::new(lake_bin())
        .args(["export", "--no-outcomes", "--max-age-ms", "200", "--to"])
        .arg(dir)
        .args(["--actions-topic", actions])
        .args(args)
        .env("KAFKA_BROKERS", tests::broker())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start lake export");
    Follower(Some(child))
}

impl Follower {
    /// Stops it with SIGTERM (a clean stop) and waits: its exit status and
    /// what it printed.
    pub async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.0.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        tokio::task::spawn_blocking(move || {
            let status = child.wait().expect("wait for lake export");
            let mut stdout = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().expect("piped"), &mut stdout)
                .expect("read its stdout");
            (status, stdout)
        })
        .await
        .expect("join")
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls (30 s at most) until `table` of the lake at `dir` holds exactly
/// `n` rows; `what` names the wait in the failure.
pub async fn until_rows(dir: &Path, table: &str, n: usize, what: &str) {
    tests::eventually(Duration::from_secs(30), what, || async move {
        if !dir.join(table).exists() {
            return None;
        }
        (offsets(dir, table).await.len() == n).then_some(())
    })
    .await
}
