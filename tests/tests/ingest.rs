//! The bridge against a real broker: what it produces is read back with a
//! real consumer; a stopped broker gives a quick 503.

use std::time::{Duration, Instant};

use rdkafka::message::Headers;
use rdkafka::Message;
use tests::game::TestGame;

fn header<'a>(msg: &'a rdkafka::message::OwnedMessage, key: &str) -> Option<&'a str> {
    msg.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[tokio::test]
async fn produced_actions_carry_every_enrichment_field_and_the_game_partition() {
    let game = TestGame::start(None).await;
    let game_id = 7;
    let (player, token) = game.join(game_id, "Carthage").await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/games/{game_id}/actions", game.base_url))
        .bearer_auth(&token)
        .header("User-Agent", "wrk/4.2")
        .header("Accept", "application/json")
        .json(&serde_json::json!({"type": "purchase_knife"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: serde_json::Value = response.json().await.unwrap();
    let expected_partition = shared::partition_for(game_id, game.partitions);
    assert_eq!(accepted["partition"], expected_partition);

    let action_id = accepted["action_id"].as_str().unwrap().to_string();
    let records = tests::consume(
        &game.brokers,
        &game.actions_topic,
        Duration::from_secs(30),
        |seen| {
            seen.iter()
                .any(|m| tests::json(m)["event_id"] == action_id.as_str())
        },
    )
    .unwrap();
    let record = records
        .iter()
        .find(|m| tests::json(m)["event_id"] == action_id.as_str())
        .unwrap();
    assert_eq!(record.partition(), expected_partition);
    assert_eq!(record.offset(), accepted["offset"].as_i64().unwrap());
    assert_eq!(record.key(), Some(game_id.to_string().as_bytes()));
    let value = tests::json(record);
    assert_eq!(value["event_type"], "purchase_knife");
    assert_eq!(value["game_id"], game_id);
    assert_eq!(value["player_id"], player.as_str());
    assert_eq!(value["Host"], game.addr.to_string());
    assert_eq!(value["User-Agent"], "wrk/4.2");
    assert_eq!(value["Accept"], "application/json");
    assert_eq!(value["client_addr"], "127.0.0.1");
    assert_eq!(value["schema_version"], shared::SCHEMA_VERSION);
    let received = value["received_at_ms"].as_u64().unwrap();
    let now = bridge::enrich::now_ms();
    assert!(
        received <= now && now - received < 60_000,
        "received_at_ms {received} is not recent"
    );
    assert_eq!(
        uuid::Uuid::parse_str(&action_id).unwrap().get_version_num(),
        7
    );
    assert_eq!(header(record, "event_id"), Some(action_id.as_str()));
    assert_eq!(header(record, "event_type"), Some("purchase_knife"));
    assert_eq!(header(record, "player_id"), Some(player.as_str()));
    // The join came first, with the name.
    let join = records
        .iter()
        .map(tests::json)
        .find(|v| v["event_type"] == "join" && v["player_id"] == player.as_str())
        .expect("the join record");
    assert_eq!(join["name"], "Carthage");
    game.stop().await;
}

#[tokio::test]
async fn a_retried_action_with_the_same_key_is_applied_once() {
    let game = TestGame::start(None).await;
    let (player, token) = game.join(2, "Sparta").await;
    for _ in 0..3 {
        let (status, body) = game.act(2, &token, "purchase_sword", Some("click-1")).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["action_id"], "click-1");
    }
    // A later, different action proves the engine got past the retries.
    let (status, _) = game.act(2, &token, "purchase_knife", Some("click-2")).await;
    assert_eq!(status, 202);
    let state = game
        .wait_for_state(2, "the knife purchase", |s| {
            s["state"]["players"][player.as_str()]["items"]["knife"] == 1
        })
        .await;
    let nation = &state["state"]["players"][player.as_str()];
    assert_eq!(nation["items"]["sword"], 1);
    assert_eq!(nation["gold"], 100 - 50 - 20, "the sword was paid once");
    // join + sword + knife: three handled actions, the two retries changed nothing.
    assert_eq!(state["version"], 3);
    let records = tests::consume(
        &game.brokers,
        &game.actions_topic,
        Duration::from_secs(30),
        |seen| {
            seen.iter()
                .filter(|m| tests::json(m)["event_id"] == "click-1")
                .count()
                == 3
        },
    )
    .unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|m| tests::json(m)["event_id"] == "click-1")
            .count(),
        3
    );
    game.stop().await;
}

#[tokio::test]
async fn seed_get_endpoints_play_the_default_game_as_the_host() {
    let game = TestGame::start(None).await;
    let client = reqwest::Client::new();
    for path in ["/", "/purchase_a_sword", "/purchase_a_shield"] {
        let response = client
            .get(format!("{}{path}", game.base_url))
            .header("Host", "user1.comcast.com")
            .header("User-Agent", "ApacheBench/2.3")
            .header("Accept", "*/*")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let state = game
        .wait_for_state(game.game_id_default, "the seed player's shield", |s| {
            s["state"]["players"]["user1.comcast.com"]["items"]["shield"] == 1
        })
        .await;
    let nation = &state["state"]["players"]["user1.comcast.com"];
    assert_eq!(nation["items"]["sword"], 1);
    assert_eq!(nation["gold"], 100 - 50 - 40);
    game.stop().await;
}

#[tokio::test]
async fn auth_and_bad_input_are_refused_before_kafka() {
    let game = TestGame::start(None).await;
    let (_, token) = game.join(1, "Athens").await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/games/1/actions", game.base_url);
    let other = format!("{}/api/games/2/actions", game.base_url);
    let visit = serde_json::to_vec(&serde_json::json!({"type": "default"})).unwrap();
    // (url, bearer token, body, expected status)
    let cases: [(&str, Option<&str>, Vec<u8>, u16); 5] = [
        (&url, None, visit.clone(), 401),
        (&url, Some("v1.1.x.y"), visit.clone(), 401),
        (&other, Some(&token), visit.clone(), 403),
        (&url, Some(&token), vec![b'x'; 20_000], 413),
        (&url, Some(&token), b"{oops".to_vec(), 400),
    ];
    for (url, bearer, body, expected) in cases {
        let mut req = client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(bearer) = bearer {
            req = req.bearer_auth(bearer);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert_eq!(status, expected, "POST {url} with token {bearer:?}");
    }
    let response = client
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"type": "teleport"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_action");
    assert!(body["detail"]["valid_types"].as_array().unwrap().len() >= 7);
    // The process is still up.
    let health = client
        .get(format!("{}/healthz", game.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    game.stop().await;
}

#[tokio::test]
async fn a_stopped_broker_gives_503_with_retry_after_within_two_seconds() {
    let mut broker = tests::LocalKafka::temporary().unwrap();
    let bootstrap = broker.bootstrap().to_string();
    let game = TestGame::start_with(None, |c| {
        c.bridge.brokers = Some(bootstrap);
        c.engine.with_engine = false;
    })
    .await;
    let (_, token) = game.join(1, "Troy").await;
    let (status, _) = game.act(1, &token, "default", None).await;
    assert_eq!(status, 202);
    broker.kill();
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/api/games/1/actions", game.base_url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"type": "default"}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(took < Duration::from_millis(2500), "503 took {took:?}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    let ready = reqwest::get(format!("{}/readyz", game.base_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    game.stop().await;
}
