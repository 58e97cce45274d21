//! `make run`'s promise, on Apache Kafka: stop the game (Ctrl-C, then
//! `kill -9` of its whole process group), start it again on the same data
//! folder, and every nation is back as it was and players' saved tokens still
//! work. A second game on the same folder is refused with one clear line.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A `nation` process in its own process group, as a terminal runs `make run`.
struct Nation {
    child: Child,
    base: String,
}

/// Two distinct free ports: the game's and its broker's.
fn two_ports() -> (u16, u16) {
    let a = localkafka::free_port();
    (a, localkafka::free_port_but(&[a]))
}

fn spawn(data: &Path, port: u16, kafka_port: u16, stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nation"))
        .env_remove("KAFKA_BROKERS")
        .env_remove("TOKEN_SECRET")
        .env("NATION_DATA", data)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("KAFKA_PORT", kafka_port.to_string())
        .env("STATIC_DIR", "/nonexistent")
        .env("RUST_LOG", "warn")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start nation")
}

impl Nation {
    async fn start(data: &Path, port: u16, kafka_port: u16) -> Nation {
        let child = spawn(data, port, kafka_port, Stdio::inherit());
        let nation = Nation {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let url = format!("{}/readyz", nation.base);
        poll(Duration::from_secs(120), "the game to be ready", || async {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        nation
    }

    fn signal_group(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} of the process group");
    }

    /// Waits (with a deadline) for the process to end; returns its status.
    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "nation did not stop within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn act(&self, token: &str, kind: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/api/games/1/actions", self.base))
            .bearer_auth(token)
            .json(&json!({ "type": kind }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls the game until `player`'s nation satisfies `ok`.
    async fn nation_where(&self, player: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let url = format!("{}/api/games/1", self.base);
        poll(Duration::from_secs(60), what, || async {
            let game: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            let nation = game["state"]["players"][player].clone();
            ok(&nation).then_some(nation)
        })
        .await
    }
}

impl Drop for Nation {
    fn drop(&mut self) {
        // Already gone after a clean stop: say nothing then.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("nation-persist-{}", uuid::Uuid::new_v4().simple()))
}

fn level(nation: &Value, item: &str) -> u64 {
    nation["items"][item].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nations_and_tokens_survive_ctrl_c_and_kill_9() {
    let data = temp_dir();
    let (port, kafka_port) = two_ports();

    let mut game = Nation::start(&data, port, kafka_port).await;
    let joined: Value = poll(Duration::from_secs(30), "a join", || async {
        let r = reqwest::Client::new()
            .post(format!("{}/api/games/1/join", game.base))
            .json(&json!({"name": "Ada"}))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        r.json().await.ok()
    })
    .await;
    let token = joined["token"].as_str().unwrap().to_string();
    let player = joined["player_id"].as_str().unwrap().to_string();
    assert_eq!(game.act(&token, "purchase_sword").await, 202);
    game.nation_where(&player, "Ada's sword", |n| level(n, "sword") == 1)
        .await;

    // A second game on the same data folder: one clear line, non-zero exit.
    let p2 = localkafka::free_port_but(&[port, kafka_port]);
    let k2 = localkafka::free_port_but(&[port, kafka_port, p2]);
    let second = spawn(&data, p2, k2, Stdio::piped())
        .wait_with_output()
        .unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("in use") && said.lines().count() == 1,
        "{said}"
    );

    // Ctrl-C: SIGINT to the whole foreground group, as a terminal sends it.
    game.signal_group("-INT");
    let status = game.wait(Duration::from_secs(60));
    assert!(status.success(), "Ctrl-C ends cleanly: {status:?}");
    drop(game);

    let game = Nation::start(&data, port, kafka_port).await;
    game.nation_where(&player, "Ada's sword after Ctrl-C", |n| {
        level(n, "sword") == 1
    })
    .await;
    // The token saved before the restart still works.
    assert_eq!(game.act(&token, "purchase_shield").await, 202);
    game.nation_where(&player, "Ada's shield", |n| level(n, "shield") == 1)
        .await;

    // kill -9 of the whole process group: the game and the broker die at once.
    game.signal_group("-KILL");
    drop(game);

    let game = Nation::start(&data, port, kafka_port).await;
    let nation = game
        .nation_where(&player, "Ada after kill -9", |n| level(n, "shield") == 1)
        .await;
    assert_eq!(level(&nation, "sword"), 1);
    assert_eq!(nation["name"], "Ada");
    // The game goes on after the crash: a visit (sword and shield left 10
    // gold, too little for anything else) earns gold.
    let gold = nation["gold"].as_u64().unwrap();
    assert_eq!(game.act(&token, "default").await, 202);
    game.nation_where(&player, "Ada's visit after kill -9", |n| {
        n["gold"].as_u64().unwrap_or(0) > gold
    })
    .await;
    drop(game);
    let _ = std::fs::remove_dir_all(&data);
}
