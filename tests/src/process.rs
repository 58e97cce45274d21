//! [`NationProcess`]: the `nation` binary (what `make run` starts) as a
//! process of its own, so a test can stop it cleanly (SIGTERM) or `kill -9`
//! it. The binary is the one `cargo test --workspace` builds beside the
//! tests (`make test`); run `cargo build -p nation` first when running one
//! test file alone.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nation` binary of this build.
pub fn nation_binary() -> PathBuf {
    let root = localkafka::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("nation");
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p nation (make test builds it)",
        bin.display()
    );
    bin
}

/// A running `nation` process; killed when dropped.
pub struct NationProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
}

impl NationProcess {
    /// Starts `nation` on a free port with `env` (topics, group, roles...;
    /// an empty value unsets the variable) and `args`, and waits (up to 60 s) for its `/readyz`.
    pub async fn start(env: &[(&str, String)], args: &[&str]) -> NationProcess {
        Self::start_on(crate::free_port(), env, args).await
    }

    /// [`NationProcess::start`] on a given port, in a process group of its
    /// own (as a terminal runs `make run`: [`kill_group`](Self::kill_group)
    /// takes its local broker down with it).
    pub async fn start_on(port: u16, env: &[(&str, String)], args: &[&str]) -> NationProcess {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(nation_binary());
        command.process_group(0);
        command
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("STATIC_DIR", "/nonexistent")
            .env("RUST_LOG", "warn")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // An empty value removes the variable (`KAFKA_BROKERS` unset: the
        // game starts its own broker, as `make run` does).
        for (k, v) in env {
            if v.is_empty() {
                command.env_remove(k);
            } else {
                command.env(k, v);
            }
        }
        let child = command.spawn().expect("start nation");
        let process = NationProcess {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let url = format!("{}/readyz", process.base_url);
        let client = reqwest::Client::new();
        crate::eventually(Duration::from_secs(120), "nation to be ready", || {
            let req = client.get(&url).send();
            async move { req.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        process
    }

    /// SIGTERM, then waits (up to 30 s) for the process to end; its exit
    /// status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "nation did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: a crash, nothing flushed, nothing committed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -9` of the whole process group: the game and the broker it
    /// started, as a crashed machine or `kill -9 -- -<pgid>` would.
    pub fn kill_group(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for NationProcess {
    fn drop(&mut self) {
        self.kill_group();
    }
}
