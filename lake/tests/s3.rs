//! The lake on a real S3-compatible server: moto's server (from the
//! project's venv, scripts/setup.sh), started on a free port with its own
//! state. Create-if-absent, a crash and its redo, and `lake report`, all
//! over S3, and `lake query` on it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use object_store::ObjectStoreExt;

/// A moto S3 server for one test, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    async fn start() -> S3Server {
        let port = tests::free_port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let url = server.endpoint.clone();
        tests::eventually(Duration::from_secs(30), "moto_server to answer", || {
            let req = client.get(&url).send();
            async move { req.await.ok() }
        })
        .await;
        server
    }

    /// Creates a bucket (moto accepts the unsigned request).
    async fn bucket(&self, name: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }

    /// Object-store options for this server; as `AWS_*` variables (upper
    /// case) they configure the `lake` binary the same way.
    fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_exactly_once_to_s3_through_a_crash() {
    const PARTITIONS: i32 = 2;
    const TOTAL: u64 = 600;
    let s3 = S3Server::start().await;
    s3.bucket("lake").await;
    let options = s3.options();
    let opts: Vec<(&str, &str)> = options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let upper: Vec<(String, &str)> = opts.iter().map(|(k, v)| (k.to_uppercase(), *v)).collect();
    let env: Vec<(&str, &str)> = upper.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let location = "s3://lake/nation";
    let lake = lake::Location::open_with(location, &opts).unwrap();

    // The server honours create-if-absent (If-None-Match: *).
    assert!(lake::store::put_if_absent(&lake, "probe", b"one".to_vec())
        .await
        .unwrap());
    assert!(!lake::store::put_if_absent(&lake, "probe", b"two".to_vec())
        .await
        .unwrap());
    lake.store.delete(&lake.path("probe")).await.unwrap();

    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, PARTITIONS, false)])
        .await
        .unwrap();
    produce_actions(&producer(), &actions, PARTITIONS, 0, TOTAL).await;

    let mut crash_env = env.clone();
    crash_env.push(("LAKE_FAULT_ABORT_AFTER_PUTS", "15"));
    let to = std::path::Path::new(location);
    let out = export_once(&actions, to, &["--max-rows", "100"], &crash_env);
    assert!(!out.status.success(), "the fault aborts the export");
    let out = export_once(&actions, to, &["--max-rows", "100"], &env);
    assert_ok(&out, "export to S3 after a crash");
    assert!(String::from_utf8_lossy(&out.stderr).contains("redoing"));

    let counts = counts_for(TOTAL, PARTITIONS);
    let read = |table: &'static str| {
        let lake = lake.clone();
        async move { lake::report::offsets(&lake, table).await.unwrap() }
    };
    assert_exactly_once(&read("buffer_meta").await, &counts, "buffer_meta on S3");
    assert_exactly_once(&read("events").await, &counts, "events on S3");

    let mut report = Command::new(lake_bin());
    report.args(["report", "--json", "--from", location]);
    for (k, v) in &env {
        report.env(k, v);
    }
    let report = report.output().unwrap();
    assert_ok(&report, "lake report from S3");
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["events"], TOTAL);
    assert_eq!(report["by_host"].as_array().unwrap().len(), 5);

    // SQL over the same bucket (DataFusion reads through the same store).
    let mut query = Command::new(lake_bin());
    query.args(["query", "--json", "--from", location, "--sql"]);
    query.arg("SELECT count(*) AS n, count(DISTINCT event_type) AS types FROM events");
    for (k, v) in &env {
        query.env(k, v);
    }
    let query = query.output().unwrap();
    assert_ok(&query, "lake query over S3");
    let rows: serde_json::Value = serde_json::from_slice(&query.stdout).unwrap();
    assert_eq!(rows[0]["n"], TOTAL, "{rows}");
    assert_eq!(rows[0]["types"], 8, "{rows}");
}
