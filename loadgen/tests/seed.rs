//! `loadgen produce` and `loadgen consume` against Apache Kafka: the seed's
//! loop (`-l -e N -m 0 -x 1`) delivers N events of the seed's shape, keyed by
//! player, and the consumer reads back exactly those.

use std::process::Command;

use loadgen::spin::{self, Spin};

fn loadgen(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env("KAFKA_BROKERS", tests::broker())
        .output()
        .expect("run loadgen");
    assert!(
        out.status.success(),
        "loadgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn produce_loop_then_consume_reads_back_every_event() {
    let topic = tests::unique("gameplay");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(tests::create_topics(tests::broker(), &[(&topic, 4, false)]))
        .expect("topic");
    let printed = loadgen(&[
        "produce", "-t", &topic, "-l", "-e", "200", "-m", "0", "-x", "1", "-p", "50",
    ]);
    // The first and every 50th are printed, then a summary.
    assert_eq!(
        printed.lines().filter(|l| l.starts_with("event ")).count(),
        5,
        "{printed}"
    );
    assert!(
        printed.contains(&format!("produced 200 events to {topic}")),
        "{printed}"
    );

    let records = tests::consume(
        tests::broker(),
        &topic,
        std::time::Duration::from_secs(30),
        |seen| seen.len() >= 200,
    )
    .expect("read back");
    assert_eq!(records.len(), 200);
    for r in &records {
        use rdkafka::Message;
        let spin: Spin = serde_json::from_slice(r.payload().expect("value")).expect("a spin");
        assert_eq!(r.key().expect("key"), spin.player_id.to_string().as_bytes());
        assert!(spin::PLAYERS.contains(&spin.player_id));
        assert!(spin::GAMES.contains(&spin.game_id));
    }

    let consumed = loadgen(&["consume", "-t", &topic, "-n", "200", "-p", "100"]);
    assert!(
        consumed.contains(&format!("consumed 200 records from {topic}")),
        "{consumed}"
    );
    assert_eq!(
        consumed.lines().filter(|l| l.contains(" key=")).count(),
        3,
        "{consumed}"
    );
}
