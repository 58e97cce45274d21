//! `lake export` serves `/metrics` (`LAKE_METRICS_BIND`): it parses with a
//! Prometheus text-format parser and its lag per partition falls to 0 once
//! a burst is exported.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exports_lag_per_partition_falls_to_zero_after_a_burst() {
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, 2, false)])
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("lake-metrics");
    let bind = format!("127.0.0.1:{port}");
    let _exporter = follow(&actions, &dir, &["--metrics-bind", &bind]);
    produce_actions(&producer(), &actions, 2, 0, 300).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let lags = tests::eventually(
        Duration::from_secs(60),
        "the lake's lag on both partitions at 0",
        || {
            let request = client.get(&url).send();
            let actions = actions.clone();
            async move {
                let text = request.await.ok()?.text().await.ok()?;
                let scrape =
                    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
                        .expect("/metrics parses");
                let lags: Vec<f64> = scrape
                    .samples
                    .iter()
                    .filter(|s| {
                        s.metric == "kafka_consumer_lag"
                            && s.labels.get("consumer") == Some("lake")
                            && s.labels.get("topic") == Some(actions.as_str())
                    })
                    .map(|s| match s.value {
                        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => {
                            v
                        }
                        _ => -1.0,
                    })
                    .collect();
                (lags.len() == 2 && lags.iter().all(|v| *v == 0.0)).then_some(lags)
            }
        },
    )
    .await;
    assert_eq!(lags, vec![0.0, 0.0]);
    let _ = std::fs::remove_dir_all(&dir);
}
