//! Issue 12, fault 2: `kill -9` of `make run`'s whole process group (the
//! game and the Apache Kafka it started) under load, then the same command
//! again on the same data folder: no acknowledged action lost, none applied
//! twice, and the time until the game answers again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tests::load::{Load, Player};
use tests::process::NationProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_whole_game_under_load_loses_and_doubles_nothing() {
    let data = std::env::temp_dir().join(format!("crash-{}", uuid::Uuid::new_v4().simple()));
    let port = tests::free_port();
    let kafka_port = localkafka::free_port_but(&[port]);
    // `make run` with KAFKA_BROKERS unset: its own broker, data on disk.
    let env = vec![
        ("NATION_DATA", data.display().to_string()),
        ("KAFKA_PORT", kafka_port.to_string()),
        ("WITH_LEADERBOARDS", "false".to_string()),
    ];
    let start = || async {
        let mut command_env = env.clone();
        command_env.push(("KAFKA_BROKERS", String::new()));
        NationProcess::start_on(port, &command_env, &[]).await
    };
    let mut game = start().await;
    let client = reqwest::Client::new();
    let mut players = Vec::new();
    for p in 0..8u64 {
        let game_id = p % 4 + 1;
        let joined: serde_json::Value =
            tests::eventually(Duration::from_secs(30), "a join", || {
                let req = client
                    .post(format!("{}/api/games/{game_id}/join", game.base_url))
                    .json(&serde_json::json!({"name": format!("Crash {p}")}))
                    .send();
                async move {
                    let r = req.await.ok()?;
                    (r.status() == 200).then_some(())?;
                    r.json().await.ok()
                }
            })
            .await;
        players.push(Player {
            base_url: game.base_url.clone(),
            game_id,
            token: joined["token"].as_str().expect("token").to_string(),
        });
    }
    let load = Load::start(players, true);
    load.wait_for_more(300, Duration::from_secs(60), "the load to get going")
        .await;

    tokio::task::block_in_place(|| game.kill_group());
    let killed_at = Instant::now();
    game = start().await;
    let ready_in = killed_at.elapsed();
    let first = tests::eventually(Duration::from_secs(60), "a 202 after the restart", || {
        let first = load.first_ack_after(killed_at);
        async move { first }
    })
    .await;
    load.wait_for_more(300, Duration::from_secs(60), "play after the restart")
        .await;
    let outcome = load.finish().await;

    assert!(
        outcome.wrong.is_empty(),
        "answers other than 202, 503 or a refused connection: {:?}",
        outcome.wrong
    );
    let acked: HashSet<String> = outcome.acked.keys().cloned().collect();
    let brokers = format!("127.0.0.1:{kafka_port}");
    tests::load::applied_exactly_once(&brokers, "games", &acked, Duration::from_secs(90))
        .expect("every acknowledged action in exactly one committed update");
    eprintln!(
        "kill -9 of the game's process group under load: {} actions acknowledged, none lost, none doubled; restarted and ready in {} ms; kill -> first 202 {} ms ({} refused connections and {} 503s retried)",
        acked.len(),
        ready_in.as_millis(),
        (first - killed_at).as_millis(),
        outcome.unreachable,
        outcome.unavailable,
    );
    drop(game);
    let _ = std::fs::remove_dir_all(&data);
}
