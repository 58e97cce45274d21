//! The operator page (`/admin`) in headless Chromium, against a game that
//! ships its logs to Kafka: it asks for the admin token, says when a token
//! is refused, then draws live charts from `/api/admin/summary` and the
//! abuse table read back from the `logs` topic, in both themes, with no
//! axe violation and no sideways scroll on a phone.
//!
//! One test in this binary: log shipping is per process (the tracing layer
//! is global), as in `abuse.rs`.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::browser::*;
use tests::game::TestGame;

const ADMIN: &str = "admin-secret-for-the-page-test";

/// `[data-test=name]`'s rows that contain `text`, as a script for `wait_for`.
fn row_with(table: &str, text: &str) -> String {
    format!(
        "return [...document.querySelectorAll('[data-test=\"{table}\"] tbody tr')].some(r => r.textContent.includes({}))",
        json!(text)
    )
}

/// The latest value a chart's caption shows.
async fn caption_value(browser: &Browser, chart: &str) -> f64 {
    let caption = browser
        .js(&format!(
            "const c = document.querySelector('[data-test=\"chart-{chart}\"] figcaption'); return c ? c.textContent : ''"
        ))
        .await;
    caption
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_page_asks_for_the_token_then_draws_live_charts_and_the_abuse_table() {
    ops::init_tracing();
    let logs = tests::unique("logs");
    let game = TestGame::start_with(Some(dist_dir()), |c| {
        c.bridge.log_topic = Some(logs.clone());
        c.bridge.admin_token = Some(ADMIN.into());
    })
    .await;
    let game_id = game.game_id_default;
    let (_, token) = game.join(game_id, "Carthage").await;
    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver, Viewport::Desktop).await;
    browser.goto(&format!("{}/admin", game.base_url)).await;
    browser
        .wait_text("admin-status", "enter the admin token")
        .await;

    // A wrong token is refused, and the page says so.
    browser
        .type_into("admin-token", "not-the-token\u{E007}")
        .await;
    browser
        .wait_text("admin-status", "the admin token was refused")
        .await;
    // The right one: live.
    browser
        .type_into("admin-token", &format!("{ADMIN}\u{E007}"))
        .await;
    browser.wait_text("admin-status", "live").await;

    // Forged tokens from 127.0.0.2 with their own Host reach the abuse
    // table through the logs topic.
    let attacker = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let actions = format!("{}/api/games/{game_id}/actions", game.base_url);
    for i in 0..20 {
        let status = attacker
            .post(&actions)
            .header("Host", "forger.example")
            .bearer_auth(format!("forged-{i}"))
            .json(&json!({"type": "default"}))
            .send()
            .await
            .expect("forged request")
            .status();
        assert_eq!(status, 401);
    }
    browser
        .wait_for(
            "127.0.0.2 in the abuse table",
            &row_with("abuse-clients", "127.0.0.2"),
        )
        .await;
    browser
        .wait_for(
            "forger.example in the abuse table",
            &row_with("abuse-hosts", "forger.example"),
        )
        .await;

    // Actions while the page polls: the actions/s chart rises above 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    while caption_value(&browser, "actions/s").await <= 0.0 {
        assert!(
            Instant::now() < deadline,
            "the actions/s chart stayed at 0 for 60 s of play"
        );
        for _ in 0..5 {
            assert_eq!(game.act(game_id, &token, "default", None).await.0, 202);
        }
    }
    let points = browser
        .js("return document.querySelector('[data-test=\"chart-actions/s\"] polyline').getAttribute('points')")
        .await;
    assert!(
        points
            .as_str()
            .is_some_and(|p| p.split_whitespace().count() >= 2),
        "a line of at least two points: {points}"
    );
    browser.quit().await;

    // Both themes on a phone (a fresh profile each: the token is typed
    // again): accessible, no sideways scroll.
    for dark in [false, true] {
        let browser = Browser::open(&driver, Viewport::Phone).await;
        browser.emulate_theme(dark, true).await;
        browser.goto(&format!("{}/admin", game.base_url)).await;
        browser
            .wait_text("admin-status", "enter the admin token")
            .await;
        browser
            .type_into("admin-token", &format!("{ADMIN}\u{E007}"))
            .await;
        browser.wait_text("admin-status", "live").await;
        browser
            .wait_for("the abuse table", &row_with("abuse-clients", "127.0.0.2"))
            .await;
        assert_eq!(
            browser.axe_violations().await,
            Value::Array(vec![]),
            "axe on the operator page, dark {dark}"
        );
        browser
            .assert_no_horizontal_overflow(&format!("operator page, phone, dark {dark}"))
            .await;
        browser.quit().await;
    }
    game.stop().await;
}
