//! Seed 002's must-show: its exact `ab` session against the seed endpoints
//! of a running game (bridge + engine on Apache Kafka), then `lake export
//! --once` and `lake report` give the seed's counts, and so does the game's
//! own lake (its in-process exporter) on `GET /api/analytics/{report}`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The seed's session, verbatim but for the address: (requests, Host, path).
const SESSION: [(u32, &str, &str); 11] = [
    (10, "user1.comcast.com", "/"),
    (10, "user1.comcast.com", "/purchase_a_sword"),
    (7, "user2.att.com", "/"),
    (15, "user2.att.com", "/purchase_a_shield"),
    (15, "user3.verizon.com", "/purchase_a_sword"),
    (5, "user3.verizon.com", "/upgrade_a_sword"),
    (5, "user1.comcast.com", "/upgrade_a_sword"),
    (7, "user2.att.com", "/upgrade_a_shield"),
    (20, "user4.spectrum.com", "/purchase_a_knife"),
    (20, "user4.spectrum.com", "/"),
    (14, "user5.fios.com", "/purchase_a_shield"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_ab_session_then_export_and_report() {
    // The game keeps its own lake too (the exporter beside the game, as in
    // `make run`), and serves its reports on /api/analytics.
    let served_lake = temp_dir("lake-served");
    let served = served_lake.to_string_lossy().into_owned();
    let game = tests::game::TestGame::start_with(None, |config| {
        config.lake.lake = Some(served);
        config.lake.lake_max_age_ms = 200;
        config.lake.lake_refresh_ms = 100;
    })
    .await;
    for (n, host, path) in SESSION {
        let url = format!("{}{path}", game.base_url);
        let out = tokio::task::spawn_blocking(move || {
            Command::new("ab")
                .args(["-n", &n.to_string(), "-H", &format!("Host: {host}"), &url])
                .output()
                .expect("ab is installed (scripts/setup.sh)")
        })
        .await
        .unwrap();
        assert_ok(&out, "ab");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Complete requests:      {n}"))
                && !text.contains("Non-2xx responses")
                && text.contains("Failed requests:        0"),
            "every request answered 200:\n{text}"
        );
    }
    // The engine has handled all 128 (each one raises the game's version).
    game.wait_for_state(game.game_id_default, "version 128", |s| {
        s["version"].as_u64() >= Some(128)
    })
    .await;

    let dir = temp_dir("lake-seed");
    let export = |dir: &std::path::Path| {
        Command::new(lake_bin())
            .args(["export", "--once", "--to"])
            .arg(dir)
            .env("KAFKA_BROKERS", &game.brokers)
            .env("ACTIONS_TOPIC", &game.actions_topic)
            .env("GAMES_TOPIC", &game.games_topic)
            .output()
            .expect("run lake export")
    };
    assert_ok(&export(&dir), "lake export --once");

    let text = Command::new(lake_bin())
        .args(["report", "--from"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_ok(&text, "lake report");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    eprintln!("{text}");
    let report = report_json(&dir);
    assert_eq!(report["events"], 128, "{text}");
    assert_eq!(
        report["by_event_type"],
        serde_json::json!([
            ["default", 37],
            ["purchase_shield", 29],
            ["purchase_sword", 25],
            ["purchase_knife", 20],
            ["upgrade_sword", 10],
            ["upgrade_shield", 7]
        ]),
        "{text}"
    );
    assert_eq!(
        report["by_host"],
        serde_json::json!([
            ["user4.spectrum.com", 40],
            ["user2.att.com", 29],
            ["user1.comcast.com", 25],
            ["user3.verizon.com", 20],
            ["user5.fios.com", 14]
        ]),
        "{text}"
    );
    assert!(text.contains("events: 128"), "{text}");
    assert!(
        text.contains("|user4.spectrum.com|              40|"),
        "{text}"
    );

    // The same two tables from the game's own lake, over HTTP, as the
    // in-process exporter catches up.
    let client = reqwest::Client::new();
    let analytics = |report: &'static str| {
        let url = format!("{}/api/analytics/{report}", game.base_url);
        let client = client.clone();
        async move {
            let response = client.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())?;
            response.json::<serde_json::Value>().await.ok()
        }
    };
    let served_types = tests::eventually(
        Duration::from_secs(30),
        "128 events on /api/analytics/by_event_type",
        || async {
            analytics("by_event_type")
                .await
                .filter(|r| r["events"] == 128)
        },
    )
    .await;
    assert_eq!(served_types["rows"], report["by_event_type"]);
    assert_eq!(
        served_types["columns"],
        serde_json::json!(["event_type", "event_count"])
    );
    let served_hosts = analytics("by_host").await.expect("by_host");
    assert_eq!(served_hosts["rows"], report["by_host"]);
    let unknown = client
        .get(format!("{}/api/analytics/by_weather", game.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let unknown: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(unknown["error"], "unknown_report", "{unknown}");
    let ready = client
        .get(format!("{}/readyz", game.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "the exporter is running");

    // Outcomes: every action applied or rejected, each exactly once. The
    // engine commits its transactions on its own clock, so export again
    // until the last one is visible.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ids = loop {
        let ids = outcome_ids(&dir);
        if ids.len() >= 128 || tokio::time::Instant::now() > deadline {
            break ids;
        }
        assert_ok(&export(&dir), "lake export --once again");
    };
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), 128, "one outcome per action");
    assert_eq!(unique.len(), 128, "no action has two outcomes");
    game.stop().await;

    // The in-process exporter stopped cleanly with the game, its batches
    // written: every action of the session once in its lake.
    let partitions = offsets(&served_lake, "events").await;
    assert_eq!(
        partitions.len(),
        128,
        "the game's lake holds every action once"
    );
    let mut unique = partitions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 128);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&served_lake);
}

/// The `event_id` of every outcome row, read with the venv's DuckDB.
fn outcome_ids(dir: &std::path::Path) -> Vec<String> {
    if !dir.join("outcomes").exists() {
        return Vec::new();
    }
    let out = Command::new(venv_bin("python"))
        .args([
            "-c",
            "import duckdb,sys,json;print(json.dumps([r[0] for r in duckdb.sql(\
             f\"SELECT event_id FROM read_parquet('{sys.argv[1]}/outcomes/*/*.parquet')\").fetchall()]))",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert_ok(&out, "read outcomes");
    serde_json::from_slice(&out.stdout).unwrap()
}
