//! `/metrics` of the game process (bridge, engine and leaderboards in one
//! registry) parses with a Prometheus text-format parser, and the consumer
//! lag of every partition each role reads falls to 0 after a burst.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use tests::game::TestGame;

/// The samples of `/metrics`, parsed by `prometheus-parse`.
async fn scrape(client: &reqwest::Client, base_url: &str) -> prometheus_parse::Scrape {
    let response = client
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(content_type.contains("openmetrics-text"), "{content_type}");
    let text = response.text().await.expect("metrics text");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("/metrics parses")
}

fn value(sample: &prometheus_parse::Sample) -> f64 {
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
        prometheus_parse::Value::Summary(_) => 0.0,
    }
}

/// Lag per (consumer, topic, partition).
fn lags(scrape: &prometheus_parse::Scrape) -> BTreeMap<(String, String, String), f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "kafka_consumer_lag")
        .map(|s| {
            let label = |n: &str| s.labels.get(n).unwrap_or("").to_string();
            (
                (label("consumer"), label("topic"), label("partition")),
                value(s),
            )
        })
        .collect()
}

fn total(scrape: &prometheus_parse::Scrape, metric: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_parse_and_every_consumers_lag_falls_to_zero_after_a_burst() {
    let game = TestGame::start_with(None, |c| c.engine.with_leaderboards = true).await;
    let client = reqwest::Client::new();
    let game_id = 5;
    // A watcher, so the bridge's reader tails the game's `games` partition.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/games/{game_id}", game.addr))
            .await
            .expect("websocket");
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.next()).await;

    // The burst: joins and actions in several games.
    let mut tokens = Vec::new();
    for g in [game_id, 6, 7, 8] {
        for i in 0..3 {
            let (_, token) = game.join(g, &format!("Nation {g}-{i}")).await;
            tokens.push((g, token));
        }
    }
    let sends = tokens.iter().cycle().take(400).map(|(g, token)| {
        let request = client
            .post(format!("{}/api/games/{g}/actions", game.base_url))
            .bearer_auth(token)
            .json(&serde_json::json!({"type": "default"}))
            .send();
        async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(
        statuses.iter().all(|s| *s == 202),
        "every action of the burst accepted: {statuses:?}"
    );

    // Every consumer reports its partitions, and each lag falls to 0.
    let wanted = ["engine", "bridge_games", "leaderboards"];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let scrape = scrape(&client, &game.base_url).await;
        let lags = lags(&scrape);
        let present = wanted
            .iter()
            .all(|c| lags.keys().any(|(consumer, _, _)| consumer == c));
        if present && lags.values().all(|v| *v == 0.0) {
            break (scrape, lags);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every consumer's lag per partition at 0 within 60 s: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (scrape, lags) = scraped;
    // The engine reads every partition of `actions`.
    let engine_parts = lags
        .keys()
        .filter(|(c, t, _)| c == "engine" && *t == game.actions_topic)
        .count();
    assert_eq!(engine_parts, game.partitions as usize, "{lags:?}");
    assert!(
        total(&scrape, "bridge_actions_published_total") >= 412.0,
        "bridge_actions_published_total: {}",
        total(&scrape, "bridge_actions_published_total")
    );
    assert!(
        total(&scrape, "engine_actions_total") >= 412.0,
        "engine_actions_total: {}",
        total(&scrape, "engine_actions_total")
    );
    assert!(
        total(&scrape, "engine_batch_size") >= 1.0,
        "engine_batch_size: {}",
        total(&scrape, "engine_batch_size")
    );
    assert!(
        total(&scrape, "engine_transactions_total") >= 1.0,
        "engine_transactions_total: {}",
        total(&scrape, "engine_transactions_total")
    );
    assert!(
        total(&scrape, "http_requests_total") >= 412.0,
        "http_requests_total: {}",
        total(&scrape, "http_requests_total")
    );
    assert!(
        total(&scrape, "bridge_ws_clients") >= 1.0,
        "bridge_ws_clients: {}",
        total(&scrape, "bridge_ws_clients")
    );
    assert!(
        total(&scrape, "bridge_produce_ack_seconds") >= 412.0,
        "bridge_produce_ack_seconds: {}",
        total(&scrape, "bridge_produce_ack_seconds")
    );
    // The watched game's actions came back on `games`: end to end timed.
    assert!(
        total(&scrape, "action_to_update_seconds") >= 1.0,
        "action_to_update_seconds: {}",
        total(&scrape, "action_to_update_seconds")
    );
    drop(socket);
    game.stop().await;
}
