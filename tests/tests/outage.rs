//! Issue 12, fault 3: the broker stopped for 10 s under load, then started.
//! While it is down every action is answered `503` with `Retry-After` (never
//! a hang, never a 500); players retry with the same action id, as the
//! contract tells them; once it is back the game answers again, and every
//! acknowledged action is in exactly one committed update.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tests::game::TestGame;
use tests::load::Load;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_stopped_for_ten_seconds_under_load_loses_nothing_acknowledged() {
    let mut broker = tests::LocalKafka::temporary().expect("a broker of its own");
    let bootstrap = broker.bootstrap().to_string();
    let game = TestGame::start_with(None, |c| {
        c.bridge.brokers = Some(bootstrap.clone());
        // librdkafka's own debug output, for a failure to explain itself
        // (`F4_DEBUG=cgrp,eos`, as in fault 4; RELIABILITY.md).
        if let Ok(d) = std::env::var("F4_DEBUG") {
            c.bridge.extra.push(("debug".into(), d));
        }
    })
    .await;
    let players = game.seat_players(8, 4, "Outage").await;
    let load = Load::start(players, false);
    load.wait_for_more(100, Duration::from_secs(30), "the load to get going")
        .await;

    // The fault: a clean stop, 10 s down (the scenario's length, not a
    // wait for something), then a start on the same data.
    tokio::task::block_in_place(|| broker.stop());
    // Answers in flight while it shut down cleanly may still be 202s.
    let before = load.acked();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = load.acked() - before;
    let unavailable_during = load.unavailable();
    tokio::task::block_in_place(|| broker.restart()).expect("the broker starts again");
    let up_at = Instant::now();
    let first_after = tests::eventually(Duration::from_secs(60), "a 202 after the restart", || {
        let first = load.first_ack_after(up_at);
        async move { first }
    })
    .await;
    load.wait_for_more(100, Duration::from_secs(60), "play to go on")
        .await;
    let outcome = load.finish().await;

    assert!(
        outcome.wrong.is_empty(),
        "answers other than 202 or 503 with Retry-After: {:?}",
        outcome.wrong
    );
    assert!(
        unavailable_during > 0,
        "the stopped broker was never reported as 503"
    );
    assert!(
        outcome.slowest < Duration::from_secs(10),
        "an answer took {:?}: a hang",
        outcome.slowest
    );
    assert_eq!(
        during, 0,
        "an action acknowledged while the broker was down"
    );
    let acked: HashSet<String> = outcome.acked.keys().cloned().collect();
    tests::load::applied_exactly_once(
        &game.brokers,
        &game.games_topic,
        &acked,
        Duration::from_secs(60),
    )
    .expect("every acknowledged action in exactly one committed update");
    eprintln!(
        "broker down 10 s under load: {} actions acknowledged ({before} before the stop, none while down), {unavailable_during} answers 503 while down, slowest answer {} ms; broker start -> first 202: {} ms (stop -> first 202: {} ms); none lost, none doubled",
        acked.len(),
        outcome.slowest.as_millis(),
        (first_after - up_at).as_millis(),
        (first_after - down_at).as_millis(),
    );
    game.stop().await;
}
