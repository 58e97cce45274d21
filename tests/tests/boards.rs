//! The leaderboards role inside the game process (`nation`): the boards of
//! Build a Nation follow the engine's `games` records, live.

use std::time::Duration;

use tests::game::TestGame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_moves_its_nation_up_the_game_and_global_boards() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,leaderboards=info")
        .with_test_writer()
        .try_init();
    let game = TestGame::start_with(None, |c| c.engine.with_leaderboards = true).await;
    let game_id = 3;
    let (_, _) = game.join(game_id, "Sparta").await;
    let (athens, token) = game.join(game_id, "Athens").await;
    let (status, _) = game.act(game_id, &token, "purchase_horse", None).await;
    assert_eq!(status, 202);
    let client = reqwest::Client::new();
    for board in [
        format!("nation-power-game-{game_id}"),
        "nation-power".to_string(),
    ] {
        let url = format!("{}/api/leaderboards/{board}?limit=10", game.base_url);
        let page: serde_json::Value =
            tests::eventually(Duration::from_secs(60), "Athens first on the board", || {
                let req = client.get(&url).send();
                let athens = athens.clone();
                async move {
                    let page: serde_json::Value = req.await.ok()?.json().await.ok()?;
                    (page["entries"][0]["player_id"] == athens.as_str()).then_some(page)
                }
            })
            .await;
        // A horse is power 4.
        assert_eq!(page["entries"][0]["score"], 4.0, "{page}");
        assert_eq!(page["total"], 2, "{page}");
    }
    let list: serde_json::Value = client
        .get(format!("{}/api/leaderboards", game.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["boards"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["id"] == "nation-gold-spent")),
        "{list}"
    );
    // The boards' routes are the bridge's as much as its own: counted on
    // `/metrics` under their route pattern.
    let metrics = client
        .get(format!("{}/metrics", game.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for route in ["/api/leaderboards", "/api/leaderboards/:board"] {
        assert!(
            metrics.contains(&format!(
                "http_requests_total{{method=\"GET\",route=\"{route}\",status=\"200\"}}"
            )),
            "{route} not counted:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("route="))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    game.stop().await;
}
