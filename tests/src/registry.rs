//! A real schema registry for a test: Apicurio Registry (installed by
//! `scripts/setup.sh` through `scripts/registry/registry.sh`), started on a
//! free port with in-memory storage and stopped when dropped. It speaks
//! Confluent's REST API under [`SchemaRegistry::url`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// A running registry; killed when dropped.
pub struct SchemaRegistry {
    child: Child,
    url: String,
    log: PathBuf,
}

/// The repository's root (the `tests` crate is one folder down).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

impl SchemaRegistry {
    /// Starts a registry and waits until it answers (its JVM takes a few
    /// seconds). Panics when it cannot: a registry test never skips.
    pub async fn start() -> SchemaRegistry {
        let port = crate::free_port();
        let script = repo_root().join("scripts/registry/registry.sh");
        let log = std::env::temp_dir().join(format!("{}.log", crate::unique("registry")));
        let out = std::fs::File::create(&log).expect("a log file for the registry");
        let child = Command::new("bash")
            .arg(&script)
            .arg("run")
            .arg(port.to_string())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let mut registry = SchemaRegistry {
            child,
            url: format!("http://127.0.0.1:{port}/apis/ccompat/v7"),
            log,
        };
        let client = reqwest::Client::new();
        let subjects = format!("{}/subjects", registry.url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(answer) = client.get(&subjects).send().await {
                if answer.status().is_success() {
                    return registry;
                }
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!(
                    "the schema registry exited ({status}); is it installed (`bash scripts/registry/registry.sh install`)? Its output:\n{}",
                    registry.output()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the schema registry did not answer on {subjects} within 120 s; its output:\n{}",
                registry.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The end of what the registry printed.
    fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_string()
    }

    /// Confluent's REST API, e.g. for `SCHEMA_REGISTRY_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
