//! The deployment file is valid: `docker-compose config` accepts it, and it
//! runs what the contract says (Kafka in KRaft mode, topics, bridge, engine).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn docker_compose_file_is_accepted_by_docker_compose_config() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("docker-compose")
        .current_dir(&root)
        .args(["-f", "docker-compose.yml", "config"])
        .output()
        .expect("docker-compose is installed by scripts/setup.sh (apt package docker-compose)");
    assert!(
        output.status.success(),
        "docker-compose config rejected the file:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "apache/kafka",
        "KAFKA_PROCESS_ROLES",
        "cleanup.policy=compact",
        "engine",
        "bridge",
        "KAFKA_BROKERS",
    ] {
        assert!(
            config.contains(needle),
            "{needle} missing from the compose config"
        );
    }
}
