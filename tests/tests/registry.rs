//! Issue 15: with a schema registry configured (`SCHEMA_REGISTRY_URL`),
//! the bridge and the engine register their schemas under the
//! TopicRecordNameStrategy, write every record in Confluent's wire format,
//! and everything downstream still plays: the engine reads framed actions,
//! the bridge and the leaderboards framed `games` records; Confluent's own
//! Python deserializer reads both topics through a real registry
//! (Apicurio Registry, `scripts/registry/`).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use serde_json::Value;
use tests::game::TestGame;
use tests::registry::{repo_root, SchemaRegistry};

/// The registry's id for the latest schema under `subject`, and the schema.
async fn latest(registry: &str, subject: &str) -> (u32, Value) {
    let url = format!("{registry}/subjects/{subject}/versions/latest");
    let answer: Value = reqwest::get(&url)
        .await
        .expect("registry answers")
        .json()
        .await
        .expect("JSON");
    let id = answer["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{url}: {answer}"));
    let schema = serde_json::from_str(answer["schema"].as_str().expect("schema")).expect("JSON");
    (id as u32, schema)
}

/// Each record's schema id and JSON value, by (partition, offset).
fn framed(records: &[OwnedMessage]) -> BTreeMap<(i32, i64), (u32, Value)> {
    records
        .iter()
        .filter_map(|m| Some(((m.partition(), m.offset()), m.payload()?)))
        .map(|(at, bytes)| {
            assert_eq!(bytes[0], 0, "magic byte 0 at {at:?}");
            let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
            let value = serde_json::from_slice(&bytes[5..]).expect("JSON after the header");
            (at, (id, value))
        })
        .collect()
}

/// What Confluent's `JSONDeserializer` reads from `topic`, by (partition,
/// offset).
fn confluent_reads(
    brokers: &str,
    topic: &str,
    registry: &str,
    count: usize,
) -> BTreeMap<(i32, i64), (u32, Value)> {
    let root = repo_root();
    let out = std::process::Command::new(root.join(".tools/registry-venv/bin/python"))
        .arg(root.join("scripts/registry/decode.py"))
        .args([brokers, topic, registry, &count.to_string()])
        .output()
        .expect("run the registry venv's Python (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "decode.py {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let at = (
                v["partition"].as_i64().unwrap() as i32,
                v["offset"].as_i64().unwrap(),
            );
            (
                at,
                (v["schema_id"].as_u64().unwrap() as u32, v["value"].clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_schema_registry_records_are_framed_and_confluents_deserializer_reads_them() {
    tests::log_to_test_output();
    let registry = SchemaRegistry::start().await;
    let url = registry.url().to_string();
    let game = TestGame::start_with(None, |c| {
        c.bridge.schema_registry_url = Some(url.clone());
        c.engine.with_leaderboards = true;
    })
    .await;
    let game_id = 5;
    let (_, _) = game.join(game_id, "Sparta").await;
    let (athens, token) = game.join(game_id, "Athens").await;
    let (status, ack) = game.act(game_id, &token, "purchase_horse", None).await;
    assert_eq!(status, 202, "{ack}");
    let bought = ack["action_id"].as_str().expect("action_id").to_string();

    // The engine read the framed action; the bridge reads its framed update.
    let state = game
        .wait_for_state(game_id, "the horse bought", |s| {
            s["state"]["players"][&athens]["items"]["horse"] == 1
        })
        .await;
    assert_eq!(state["state"]["players"].as_object().unwrap().len(), 2);
    // The leaderboards read the framed `games` records too.
    let board = format!(
        "{}/api/leaderboards/nation-power-game-{game_id}?limit=10",
        game.base_url
    );
    tests::eventually(Duration::from_secs(60), "Athens first on the board", || {
        let req = reqwest::get(board.clone());
        let athens = athens.clone();
        async move {
            let page: Value = req.await.ok()?.json().await.ok()?;
            (page["entries"][0]["player_id"] == athens.as_str()).then_some(())
        }
    })
    .await;

    // Registered under the TopicRecordNameStrategy, as our own schemas.
    let (actions_id, actions_schema) =
        latest(&url, &format!("{}-ActionEnvelope", game.actions_topic)).await;
    let (games_id, games_schema) = latest(&url, &format!("{}-GamesRecord", game.games_topic)).await;
    assert_eq!(
        actions_schema,
        serde_json::from_str::<Value>(&shared::schema::action_envelope()).unwrap()
    );
    assert_eq!(
        games_schema,
        serde_json::from_str::<Value>(&shared::schema::games_record()).unwrap()
    );

    // Every record framed with its topic's schema id.
    let brokers = game.brokers.clone();
    let (actions_topic, games_topic) = (game.actions_topic.clone(), game.games_topic.clone());
    let raw_actions = {
        let (brokers, topic) = (brokers.clone(), actions_topic.clone());
        tokio::task::spawn_blocking(move || {
            tests::consume(&brokers, &topic, Duration::from_secs(30), |seen| {
                seen.len() >= 3
            })
        })
        .await
        .unwrap()
        .expect("the three actions")
    };
    let actions = framed(&raw_actions);
    assert_eq!(actions.len(), 3);
    assert!(actions.values().all(|(id, _)| *id == actions_id));
    assert!(actions
        .values()
        .any(|(_, v)| v["event_id"] == bought.as_str()));
    let raw_games = {
        let (brokers, topic, bought) = (brokers.clone(), games_topic.clone(), bought.clone());
        tokio::task::spawn_blocking(move || {
            tests::consume(&brokers, &topic, Duration::from_secs(30), |seen| {
                seen.iter().any(|m| {
                    m.payload().is_some_and(|p| {
                        let v: Value =
                            serde_json::from_slice(shared::framing::json(p)).unwrap_or_default();
                        v["applied"]
                            .as_array()
                            .is_some_and(|a| a.contains(&Value::from(bought.as_str())))
                    })
                })
            })
        })
        .await
        .unwrap()
        .expect("the update applying the purchase")
    };
    let games = framed(&raw_games);
    assert!(games.values().all(|(id, _)| *id == games_id));
    assert!(games.values().any(|(_, v)| v["record"] == "head"));
    assert!(games.values().any(|(_, v)| v["record"] == "nation"));

    // Confluent's deserializer reads the same values, validated against the
    // schemas it fetched from the registry by the ids in the records.
    let (n_actions, n_games) = (actions.len(), games.len());
    let decoded = tokio::task::spawn_blocking(move || {
        (
            confluent_reads(&brokers, &actions_topic, &url, n_actions),
            confluent_reads(&brokers, &games_topic, &url, n_games),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        decoded.0, actions,
        "actions as Confluent's deserializer reads them"
    );
    assert_eq!(
        decoded.1, games,
        "games as Confluent's deserializer reads them"
    );
    game.stop().await;
    drop(registry);
}
