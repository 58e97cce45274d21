//! The abuse table and the bans, on Apache Kafka: a flood of forged tokens
//! from one address is answered `429` while another address plays
//! normally; many fast valid requests from one address never see a `429`;
//! the flood shows in `GET /api/admin/abuse`, read back from the `logs`
//! topic the refusals were shipped to.
//!
//! One test in this binary: log shipping is per process (the tracing
//! layer is global), so every check shares one game and one logs topic.
//! Addresses: the bridge listens on 127.0.0.1; clients bind other loopback
//! addresses (127.0.0.2, ...) as their source.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tests::game::TestGame;

const ADMIN: &str = "admin-secret-for-the-abuse-test";

fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<IpAddr>().expect("an address"))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_forged_tokens_is_banned_shows_in_the_abuse_table_and_honest_traffic_is_not_slowed(
) {
    ops::init_tracing();
    let logs = tests::unique("logs");
    let game = TestGame::start_with(None, |c| {
        c.bridge.log_topic = Some(logs.clone());
        c.bridge.admin_token = Some(ADMIN.into());
    })
    .await;
    let game_id = 4;
    let actions = format!("{}/api/games/{game_id}/actions", game.base_url);

    // An honest player on 127.0.0.3.
    let (_, token) = game.join(game_id, "Honest").await;
    let honest = client_from("127.0.0.3");

    // The flood: 300 forged tokens from 127.0.0.2, with its own Host.
    let attacker = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..300 {
        let response = attacker
            .post(&actions)
            .header("Host", "evil.example")
            .bearer_auth(format!("forged-{i}"))
            .json(&serde_json::json!({"type": "default"}))
            .send()
            .await
            .expect("flood request");
        let status = response.status().as_u16();
        if status == 429 && retry_after.is_none() {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: serde_json::Value = response.json().await.expect("JSON 429");
            assert_eq!(body["error"], "too_many_refusals", "{body}");
        }
        statuses.push(status);
        // Meanwhile the honest address plays.
        if i % 30 == 0 {
            let response = honest
                .post(&actions)
                .bearer_auth(&token)
                .json(&serde_json::json!({"type": "default"}))
                .send()
                .await
                .expect("honest request");
            assert_eq!(response.status(), 202, "the honest player is served");
        }
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let banned = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused, 100, "100 refusals in 10 s ban the address");
    assert_eq!(banned, 200, "then every request is a 429: {statuses:?}");
    assert!(
        retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "{retry_after:?}"
    );

    // Many fast valid requests from one address (as `wrk` sends them):
    // never a 429. A 503 (Kafka slower to ack than the produce timeout, on
    // this shared machine) is retried with the same key, as clients do; it
    // is not the limiter, and the retry is the same action.
    let loader = client_from("127.0.0.4");
    let loaded: Vec<Vec<u16>> = futures_util::stream::iter(0..2000)
        .map(|i| {
            let loader = loader.clone();
            let actions = actions.clone();
            let token = token.clone();
            async move {
                let key = format!("abuse-load-{i}");
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut answers = Vec::new();
                loop {
                    let status = loader
                        .post(&actions)
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&serde_json::json!({"type": "default"}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    answers.push(status);
                    if status != 503 || Instant::now() > deadline {
                        break answers;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let slowed: Vec<&Vec<u16>> = loaded.iter().filter(|a| a.contains(&429)).collect();
    assert!(
        slowed.is_empty(),
        "valid requests from one address are never slowed: {slowed:?}"
    );
    let failed: Vec<&Vec<u16>> = loaded.iter().filter(|a| a.last() != Some(&202)).collect();
    assert!(
        failed.is_empty(),
        "every valid request is taken: {failed:?}"
    );
    let retried = loaded.iter().filter(|a| a.len() > 1).count();
    eprintln!("{retried} of 2000 valid requests were retried after a 503");

    // The flood shows in the abuse table (from the logs topic).
    let admin = reqwest::Client::new();
    let started = Instant::now();
    let report: serde_json::Value = tests::eventually(
        Duration::from_secs(30),
        "the flood in the abuse table",
        || {
            let request = admin
                .get(format!("{}/api/admin/abuse?limit=5", game.base_url))
                .bearer_auth(ADMIN)
                .send();
            async move {
                let report: serde_json::Value = request.await.ok()?.json().await.ok()?;
                let top = &report["clients"][0];
                (top["source"] == "127.0.0.2" && top["refused"].as_u64()? >= 100).then_some(report)
            }
        },
    )
    .await;
    eprintln!("abuse table fresh after {:?}", started.elapsed());
    assert_eq!(report["hosts"][0]["source"], "evil.example", "{report}");
    assert_eq!(
        report["clients"][0]["codes"]["unauthorized"], 100,
        "{report}"
    );
    // The honest addresses are not among the refused.
    let clients = report["clients"].as_array().expect("clients");
    assert!(
        clients
            .iter()
            .all(|c| c["source"] != "127.0.0.3" && c["source"] != "127.0.0.4"),
        "{report}"
    );
    // Admin token required.
    let refused = admin
        .get(format!("{}/api/admin/abuse", game.base_url))
        .send()
        .await
        .expect("abuse without token");
    assert_eq!(refused.status(), 401);
    game.stop().await;
}
