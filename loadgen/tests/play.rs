//! `loadgen play` against a real bridge and engine on Apache Kafka (the test
//! harness's broker): every action is answered `202` and its update is found
//! on the player's WebSocket and at every idle watcher of its game; a missed
//! objective exits with code 1.

use std::process::Command;

use serde_json::Value;

/// Runs the `loadgen` binary with `args`; returns its exit code and stdout.
async fn loadgen(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(&args)
            .output()
            .expect("run loadgen");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .expect("loadgen task")
}

fn args(url: &str, extra: &[&str]) -> Vec<String> {
    // A long drain (it ends as soon as every update is in): a loaded CI
    // machine once held an update back for seconds, which is not a miss.
    let mut v: Vec<String> = [
        "play",
        "--url",
        url,
        "--games",
        "2",
        "--players",
        "6",
        "--drain",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_counts_every_action_and_matches_its_update() {
    let game = tests::game::TestGame::start(None).await;
    let (code, stdout) = loadgen(args(
        &game.base_url,
        &[
            "--rate",
            "100",
            "--duration",
            "3",
            "--warmup",
            "1",
            "--json",
            "--slo",
            "p99=5s",
            "--watchers",
            "8",
            "--window",
            "1",
        ],
    ))
    .await;
    let report: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["intended"], 300, "{report:#}");
    assert_eq!(report["sent"], 300, "{report:#}");
    assert_eq!(report["accepted"], 300, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["unmatched"], 0, "{report:#}");
    assert_eq!(report["matched"], 300, "{report:#}");
    assert_eq!(
        report["applied"].as_u64().expect("applied")
            + report["rejected"].as_u64().expect("rejected"),
        300
    );
    assert!(
        report["applied"].as_u64().expect("applied") > 0,
        "{report:#}"
    );
    assert_eq!(report["ack"]["count"], 300, "{report:#}");
    assert_eq!(report["update"]["count"], 300, "{report:#}");
    let p50 = report["update"]["p50_ms"].as_f64().expect("p50");
    let p99 = report["update"]["p99_ms"].as_f64().expect("p99");
    let ack_p50 = report["ack"]["p50_ms"].as_f64().expect("ack p50");
    assert!(p50 > 0.0 && p50 <= p99, "{report:#}");
    // An update comes after the action's 202 is possible but not before its
    // produce: its median can't beat the ack's by much.
    assert!(p50 + 1.0 >= ack_p50 * 0.5, "{report:#}");
    assert_eq!(report["slo_met"], true, "{report:#}");
    // 8 watchers over 2 games: each action reaches the 4 of its game.
    let w = &report["watchers"];
    assert_eq!(w["count"], 8, "{report:#}");
    assert_eq!(w["expected"], 1200, "{report:#}");
    assert_eq!(w["deliveries"], 1200, "{report:#}");
    assert_eq!(w["missing"], 0, "{report:#}");
    assert_eq!(w["answer_to_update"]["count"], 1200, "{report:#}");
    assert_eq!(w["spread"]["count"], 300, "{report:#}");
    // One window per second of the measured run.
    let windows = report["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 3, "{report:#}");
    let per_window: u64 = windows
        .iter()
        .map(|w| w["update"]["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(per_window, 300, "{report:#}");

    // The table, and an objective no real system meets: exit code 1.
    let (code, stdout) = loadgen(args(
        &game.base_url,
        &[
            "--rate",
            "50",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--slo",
            "p99=1us",
        ],
    ))
    .await;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("update on WebSocket"), "{stdout}");
    assert!(stdout.contains("SLO p99=1us: MISSED"), "{stdout}");
    game.stop().await;
}

/// `--arena`: bots fill one arena (the 5v5 issue's "one person can try a
/// full 5v5"); every action is answered and reaches every bot's socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_arena_fills_an_arena_and_every_player_sees_every_answer() {
    let game = tests::game::TestGame::start(None).await;
    let first = (shared::arena::ARENA_IDS.start + u64::from(uuid::Uuid::new_v4().as_u128() as u32))
        .to_string();
    let mut a = args(&game.base_url, &[]);
    a.truncate(3);
    a.extend(
        [
            "--arena",
            "--games",
            "1",
            "--players",
            "9",
            "--first-game",
            &first,
            "--rate",
            "40",
            "--duration",
            "3",
            "--warmup",
            "1",
            "--drain",
            "60",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let (code, stdout) = loadgen(a).await;
    let report: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["arena"], true);
    assert_eq!(report["accepted"], 120, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["unmatched"], 0, "{report:#}");
    assert_eq!(report["matched"], 120, "{report:#}");
    let state: Value = reqwest::get(format!("{}/api/games/{first}", game.base_url))
        .await
        .expect("GET the arena")
        .json()
        .await
        .expect("JSON");
    let fighters = state["state"]["arena"]["fighters"]
        .as_object()
        .expect("fighters");
    assert_eq!(fighters.len(), 9, "{state:#}");
    game.stop().await;
}
