//! [`TestGame`]: the whole game (bridge + engine, in this process) against the
//! test broker, on its own topics and consumer group, on a free port.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;

/// A running game for one test. Dropping it stops the bridge and engine.
pub struct TestGame {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// `127.0.0.1:PORT`
    pub addr: std::net::SocketAddr,
    pub brokers: String,
    pub actions_topic: String,
    pub games_topic: String,
    /// The engines' consumer group (where bridges find each partition's
    /// engine).
    pub engine_group: String,
    pub partitions: i32,
    /// The game the seed endpoints play in.
    pub game_id_default: u64,
    stop: ops::CancellationToken,
    task: Option<JoinHandle<Result<(), nation::NationError>>>,
}

impl TestGame {
    /// Starts bridge and engine (partitions 4, default game 1) serving
    /// `static_dir` at `/`, and waits until the bridge answers `/healthz`.
    pub async fn start(static_dir: Option<PathBuf>) -> TestGame {
        Self::start_with(static_dir, |_| {}).await
    }

    /// Like [`TestGame::start`], with a chance to change the bridge's config.
    pub async fn start_with(
        static_dir: Option<PathBuf>,
        tweak: impl FnOnce(&mut nation::Config),
    ) -> TestGame {
        crate::log_to_test_output();
        let brokers = crate::broker().to_string();
        let mut game = nation::Config::for_brokers(brokers.clone());
        let config = &mut game.bridge;
        config.actions_topic = crate::unique("actions");
        config.games_topic = crate::unique("games");
        config.engine_group = crate::unique("engine");
        config.partitions = 4;
        config.static_dir = static_dir.unwrap_or_else(|| PathBuf::from("/nonexistent"));
        config.extra = vec![("session.timeout.ms".into(), "6000".into())];
        // Tests that want boards turn them on.
        game.engine.with_leaderboards = false;
        tweak(&mut game);
        let config = &game.bridge;
        let brokers = config.brokers.clone().expect("brokers set");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let stop = ops::CancellationToken::new();
        let mut test_game = TestGame {
            base_url: format!("http://{addr}"),
            addr,
            brokers,
            actions_topic: config.actions_topic.clone(),
            games_topic: config.games_topic.clone(),
            engine_group: config.engine_group.clone(),
            partitions: config.partitions,
            game_id_default: config.default_game,
            stop: stop.clone(),
            task: None,
        };
        let task = tokio::spawn(nation::run(game, listener, stop));
        let game = &mut test_game;
        let client = reqwest::Client::new();
        // Ready, not just alive: the producer reaches the broker.
        let url = format!("{}/readyz", game.base_url);
        crate::eventually(
            Duration::from_secs(30),
            "the bridge to answer /readyz",
            || {
                let req = client.get(&url).send();
                async move { req.await.ok().filter(|r| r.status().is_success()) }
            },
        )
        .await;
        game.task = Some(task);
        test_game
    }

    /// `n` players for [`crate::load::Load`], spread over games 1 to
    /// `games`, named `{prefix} {i}`.
    pub async fn seat_players(&self, n: u64, games: u64, prefix: &str) -> Vec<crate::load::Player> {
        let mut players = Vec::new();
        for p in 0..n {
            let game_id = p % games + 1;
            let (_, token) = self.join(game_id, &format!("{prefix} {p}")).await;
            players.push(crate::load::Player {
                base_url: self.base_url.clone(),
                game_id,
                token,
            });
        }
        players
    }

    /// Joins `game_id` as `name`; returns `(player_id, token)`. A 503 (the
    /// first produce to a brand-new topic can outlast the produce timeout)
    /// is retried as the contract tells clients to, within 20 s.
    pub async fn join(&self, game_id: u64, name: &str) -> (String, String) {
        let client = reqwest::Client::new();
        let url = format!("{}/api/games/{game_id}/join", self.base_url);
        let key = uuid::Uuid::new_v4().to_string();
        let key = &key;
        let response: serde_json::Value = crate::eventually(
            Duration::from_secs(20),
            "a join that is not answered 503",
            || {
                let req = client
                    .post(&url)
                    .header("Idempotency-Key", key)
                    .json(&serde_json::json!({ "name": name }))
                    .send();
                async move {
                    let response = req.await.expect("join request");
                    if response.status() == 503 {
                        return None;
                    }
                    Some(
                        response
                            .error_for_status()
                            .expect("join accepted")
                            .json::<serde_json::Value>()
                            .await
                            .expect("join answer is JSON"),
                    )
                }
            },
        )
        .await;
        (
            response["player_id"]
                .as_str()
                .expect("player_id")
                .to_string(),
            response["token"].as_str().expect("token").to_string(),
        )
    }

    /// Performs an action; returns the status and the JSON answer.
    pub async fn act(
        &self,
        game_id: u64,
        token: &str,
        action: &str,
        key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/api/games/{game_id}/actions", self.base_url))
            .bearer_auth(token)
            .json(&serde_json::json!({ "type": action }));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let response = req.send().await.expect("action request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Polls `GET /api/games/{id}` until `pred` holds for the state.
    pub async fn wait_for_state(
        &self,
        game_id: u64,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let client = reqwest::Client::new();
        let url = format!("{}/api/games/{game_id}", self.base_url);
        crate::eventually(Duration::from_secs(30), what, || {
            let req = client.get(&url).send();
            let pred = &pred;
            async move {
                let response = req.await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                let json: serde_json::Value = response.json().await.ok()?;
                pred(&json).then_some(json)
            }
        })
        .await
    }

    /// Stops cleanly and waits for the bridge (and engine) to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }
}

impl Drop for TestGame {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
