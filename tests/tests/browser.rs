//! The game in a real browser: Debian's headless Chromium, driven through
//! chromedriver (W3C WebDriver over HTTP, spoken here with `reqwest`), against
//! the bridge and engine running in this process on the test broker, serving
//! the trunk build in `dist/` (`trunk build --release` first; `make test`
//! does it).
//!
//! Every wait polls with a deadline; nothing sleeps to synchronise. Timings
//! are never asserted here: `scripts/bench-frontend.sh` runs the ignored
//! `bench_frontend` below, which only prints figures.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::browser::*;
use tests::game::TestGame;

/// Joins through the form as `name`, and waits for the engine to confirm.
async fn join_through_the_form(browser: &Browser, game: &TestGame, name: &str) {
    browser.goto(&format!("{}/", game.base_url)).await;
    browser
        .wait_for(
            "the join form with the default game preselected",
            &format!(
                "const e = document.querySelector('[data-test=\"game-input\"]'); return !!e && e.value === '{}';",
                game.game_id_default
            ),
        )
        .await;
    browser.type_into("name-input", name).await;
    browser.click("join-button").await;
    browser.wait_text("nation-name", name).await;
    browser.wait_text("gold", "100").await;
    wait_settled(browser).await;
}

/// Waits until no click is pending (the engine has answered them all).
async fn wait_settled(browser: &Browser) {
    browser
        .wait_for(
            "every pending click to be settled by the engine",
            "const e = document.querySelector('[data-test=\"nation\"]'); return !!e && e.dataset.pending === 'false' && e.dataset.version !== '';",
        )
        .await;
}

/// The whole story, at one viewport.
async fn play(viewport: Viewport, screenshot: Option<&str>) {
    let dist = dist_dir();
    let game = TestGame::start(Some(dist)).await;
    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver, viewport).await;
    let game_id = game.game_id_default;

    // Join; the engine's update confirms the nation.
    join_through_the_form(&browser, &game, "Rome").await;
    browser
        .wait_for(
            "the live indicator",
            "const e = document.querySelector('[data-test=\"conn\"]'); return !!e && e.dataset.state === 'live';",
        )
        .await;

    // Buy a sword: gold and sword change, and the engine confirms.
    let version_before: u64 = browser
        .js("return document.querySelector('[data-test=\"nation\"]').dataset.version")
        .await
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a confirmed version");
    browser.click("action-purchase_sword").await;
    browser.wait_text("gold", "50").await;
    browser.wait_text("item-sword", "Lv 1").await;
    wait_settled(&browser).await;
    let version_after: u64 = browser
        .js("return document.querySelector('[data-test=\"nation\"]').dataset.version")
        .await
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a confirmed version");
    assert!(
        version_after > version_before,
        "the purchase was confirmed by a newer update"
    );
    let rome = nation_with_item(&game, game_id, "Rome", "sword").await;
    assert_eq!(rome["gold"], 50);

    // An upgrade it cannot afford: disabled, with the reason from `shared`.
    let upgrade_disabled = browser
        .js("return document.querySelector('[data-test=\"action-upgrade_sword\"]').disabled")
        .await;
    assert_eq!(upgrade_disabled, json!(true));
    browser.click("action-upgrade_sword").await; // does nothing
    let reason = browser.text("reason-upgrade_sword").await;
    assert_eq!(
        reason,
        json!(shared::Rejection::NotEnoughGold {
            need: shared::rules::upgrade_cost(shared::Item::Sword, 1),
            have: 50
        }
        .to_string())
    );
    assert_eq!(browser.text("item-sword").await, json!("Lv 1"));

    // Another player's purchase shows up without a reload.
    let (_, token) = game.join(game_id, "Carthage").await;
    game.wait_for_state(game_id, "Carthage to exist", |s| {
        s["state"]["players"]
            .as_object()
            .is_some_and(|p| p.values().any(|n| n["name"] == "Carthage"))
    })
    .await;
    let (status, _) = game.act(game_id, &token, "purchase_horse", None).await;
    assert_eq!(status, 202);
    browser
        .wait_for(
            "Carthage's horse (power 4) on the leaderboard",
            "const e = document.querySelector('[data-test=\"leader-row\"][data-name=\"Carthage\"]'); return !!e && e.dataset.power === '4';",
        )
        .await;
    let first = browser
        .js("return document.querySelector('[data-test=\"leader-row\"]').dataset.name")
        .await;
    assert_eq!(first, json!("Carthage"), "ranked by power: 4 beats 3");

    // A reload resumes the same nation from local storage.
    browser.goto(&format!("{}/", game.base_url)).await;
    browser.wait_text("nation-name", "Rome").await;
    browser.wait_text("gold", "50").await;

    if let Viewport::Phone = viewport {
        let scroll = browser
            .js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            .await;
        assert!(
            scroll[0].as_u64() <= scroll[1].as_u64(),
            "no horizontal scroll at 360 px: {scroll}"
        );
        let small = browser
            .js("return [...document.querySelectorAll('button, input')].filter(e => { const r = e.getBoundingClientRect(); return r.height < 44 || r.width < 44; }).map(e => e.outerHTML.slice(0, 80))")
            .await;
        assert_eq!(small, json!([]), "touch targets at least 44 px");
    }
    let unlabelled = browser
        .js("return [...document.querySelectorAll('button, input')].filter(e => !e.getAttribute('aria-label')).map(e => e.outerHTML.slice(0, 80))")
        .await;
    assert_eq!(unlabelled, json!([]), "every control has an aria-label");

    if let Some(file) = screenshot {
        let path = browser.screenshot(file).await;
        eprintln!("screenshot: {}", path.display());
    }
    browser.quit().await;
    game.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_join_buy_refuse_and_sees_others_in_chromium() {
    play(Viewport::Desktop, Some("browser-desktop.png")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_on_a_phone_sized_viewport() {
    play(Viewport::Phone, Some("browser-phone-360x640.png")).await;
}

/// A flaky connection: offline, a click is kept pending and retried with the
/// same action id; back online, the socket reconnects and resumes, and the
/// purchase is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_going_offline_and_applies_the_retried_click_once() {
    let game = TestGame::start(Some(dist_dir())).await;
    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver, Viewport::Desktop).await;
    join_through_the_form(&browser, &game, "Venice").await;
    browser
        .wait_for(
            "the live indicator",
            "const e = document.querySelector('[data-test=\"conn\"]'); return !!e && e.dataset.state === 'live';",
        )
        .await;

    browser.set_offline(true).await;
    browser
        .wait_for(
            "the indicator to show the lost connection",
            "const e = document.querySelector('[data-test=\"conn\"]'); return !!e && e.dataset.state !== 'live';",
        )
        .await;
    browser.click("action-purchase_knife").await;
    // Predicted at once, and pending while the network is away.
    browser.wait_text("gold", "80").await;
    browser.wait_text("item-knife", "Lv 1").await;
    let pending = browser
        .js("return document.querySelector('[data-test=\"nation\"]').dataset.pending")
        .await;
    assert_eq!(pending, json!("true"));
    let now: Value = reqwest::get(format!(
        "{}/api/games/{}",
        game.base_url, game.game_id_default
    ))
    .await
    .expect("GET the game")
    .json()
    .await
    .expect("game JSON");
    assert!(
        now["state"]["players"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n["items"]["knife"] == 0),
        "the click has not reached the bridge while offline: {now}"
    );

    browser.set_offline(false).await;
    browser
        .wait_for(
            "the socket to reconnect",
            "const e = document.querySelector('[data-test=\"conn\"]'); return !!e && e.dataset.state === 'live';",
        )
        .await;
    wait_settled(&browser).await;
    assert_eq!(browser.text("gold").await, json!("80"));
    let venice = nation_with_item(&game, game.game_id_default, "Venice", "knife").await;
    assert_eq!(venice["gold"], 80, "bought once, paid once");
    browser.quit().await;
    game.stop().await;
}

/// Prints the page's time to interactive and click-to-confirmed latencies.
/// Run by `scripts/bench-frontend.sh`; asserts nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by scripts/bench-frontend.sh"]
async fn bench_frontend() {
    let clicks: usize = std::env::var("BENCH_CLICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let game = TestGame::start(Some(dist_dir())).await;
    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver, Viewport::Desktop).await;

    // Warm up (broker producer start-up, first compile of the wasm), then
    // measure fresh loads, first with the HTTP cache, then without.
    join_through_the_form(&browser, &game, "Bench").await;
    let mut interactive = interactive_times(&browser, &game).await;
    // The same without the HTTP cache: every load fetches the wasm again.
    browser
        .cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            json!({ "cmd": "Network.setCacheDisabled", "params": { "cacheDisabled": true } }),
        )
        .await;
    let mut uncached = interactive_times(&browser, &game).await;
    browser
        .js("window.banLatencies = []; window.banAckLatencies = []; return 0")
        .await;
    for i in 0..clicks {
        browser.click("action-default").await;
        browser
            .wait_for(
                "the visit to be confirmed",
                &format!("return (window.banLatencies || []).length >= {}", i + 1),
            )
            .await;
    }
    let mut lat = numbers(&browser.js("return window.banLatencies").await);
    lat.sort_by(f64::total_cmp);
    let mut ack = numbers(&browser.js("return window.banAckLatencies").await);
    ack.sort_by(f64::total_cmp);
    interactive.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "interactive_ms median={:.0} max={:.0} (n={})",
        pct(&interactive, 0.5),
        interactive.last().unwrap(),
        interactive.len()
    );
    uncached.sort_by(f64::total_cmp);
    println!(
        "interactive_no_http_cache_ms median={:.0} max={:.0} (n={})",
        pct(&uncached, 0.5),
        uncached.last().unwrap(),
        uncached.len()
    );
    println!(
        "click_to_confirmed_ms p50={:.1} p90={:.1} p99={:.1} max={:.1} (n={})",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat.last().unwrap(),
        lat.len()
    );
    if !ack.is_empty() {
        println!(
            "click_to_kafka_ack_ms p50={:.1} p90={:.1} p99={:.1} max={:.1} (n={})",
            pct(&ack, 0.5),
            pct(&ack, 0.9),
            pct(&ack, 0.99),
            ack.last().unwrap(),
            ack.len()
        );
    }
    // A phone, as the Lighthouse-like profile: 150 ms round trip,
    // 1.6 Mbit/s down, 750 kbit/s up, CPU slowed 4×, no HTTP cache, a new
    // player (nothing stored): when is the join form usable?
    browser.cdp("Network.enable", json!({})).await;
    browser
        .cdp(
            "Network.emulateNetworkConditions",
            json!({ "offline": false, "latency": 150,
                    "downloadThroughput": 1_600_000 / 8, "uploadThroughput": 750_000 / 8 }),
        )
        .await;
    browser
        .cdp("Emulation.setCPUThrottlingRate", json!({ "rate": 4 }))
        .await;
    let mut phone = Vec::new();
    for _ in 0..3 {
        browser.js("localStorage.clear(); return 0").await;
        browser.goto(&format!("{}/", game.base_url)).await;
        let v = browser
            .wait_for(
                "the join form to be usable",
                "return !!document.querySelector('[data-test=\"join-button\"]') && window.banInteractiveMs",
            )
            .await;
        phone.push(v.as_f64().unwrap());
    }
    phone.sort_by(f64::total_cmp);
    println!(
        "phone_profile_usable_ms runs={:?} median={:.0}",
        phone.iter().map(|v| v.round()).collect::<Vec<_>>(),
        pct(&phone, 0.5)
    );
    browser.quit().await;
    game.stop().await;
}

/// Ten fresh loads of the page: the page's own time to interactive for each.
async fn interactive_times(browser: &Browser, game: &TestGame) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..10 {
        browser.goto(&format!("{}/", game.base_url)).await;
        let v = browser
            .wait_for(
                "the page to be interactive",
                "return window.banInteractiveMs",
            )
            .await;
        times.push(v.as_f64().unwrap());
        wait_settled(browser).await;
    }
    times
}

/// Waits until the engine's state shows the nation called `name` owning
/// `item`, and returns that nation.
async fn nation_with_item(game: &TestGame, game_id: u64, name: &str, item: &str) -> Value {
    let state = game
        .wait_for_state(game_id, &format!("{name} to own a {item}"), |s| {
            s["state"]["players"].as_object().is_some_and(|p| {
                p.values()
                    .any(|n| n["name"] == name && n["items"][item] == 1)
            })
        })
        .await;
    state["state"]["players"]
        .as_object()
        .and_then(|p| p.values().find(|n| n["name"] == name))
        .cloned()
        .expect("the nation")
}

/// The numbers in a JSON array (a page's latency log).
fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(Value::as_f64)
        .collect()
}

/// The level a picture shows (`data-level` of `[data-test=art-ITEM]` and of
/// the SVG inside it).
async fn art_level(browser: &Browser, item: &str) -> Value {
    browser
        .js(&format!(
            "const e = document.querySelector('[data-test=\"art-{item}\"]'); const s = e && e.querySelector('svg'); return e && s ? [e.dataset.level, s.dataset.level] : null;"
        ))
        .await
}

/// Waits for a feed line reading `text` whose `data-mine` is `mine`.
async fn wait_feed(browser: &Browser, text: &str, mine: bool) {
    browser
        .wait_for(
            &format!("the feed line {text:?} (mine: {mine})"),
            &format!(
                "return [...document.querySelectorAll('[data-test=\"feed-line\"]')].some(l => l.textContent.trim() === {} && l.dataset.mine === '{mine}')",
                json!(text)
            ),
        )
        .await;
}

/// The player's page and a rival's: pictures follow purchases and upgrades,
/// both feeds tell them (the player's own lines marked), and a click the
/// engine refuses shows its reason next to its own button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_feed_and_refusals_in_the_players_and_a_rivals_page() {
    let game = TestGame::start(Some(dist_dir())).await;
    let driver = Chromedriver::start().await;
    let rome = Browser::open(&driver, Viewport::Desktop).await;
    let rival = Browser::open(&driver, Viewport::Desktop).await;
    join_through_the_form(&rome, &game, "Rome").await;
    join_through_the_form(&rival, &game, "Carthage").await;
    wait_feed(&rome, "Carthage joined the game", false).await;

    // A refused click: the page's "Buy knife" cannot reach the bridge
    // (blocked), meanwhile the same nation buys the knife elsewhere; when the
    // page's retry arrives the engine refuses it, and the reason shows next
    // to the button.
    let token = rome
        .js(&format!(
            "return JSON.parse(localStorage.getItem('build-a-nation.game.{}')).token",
            game.game_id_default
        ))
        .await
        .as_str()
        .expect("the stored token")
        .to_string();
    rome.cdp("Network.enable", json!({})).await;
    rome.cdp("Network.setBlockedURLs", json!({ "urls": ["*/actions*"] }))
        .await;
    rome.click("action-purchase_knife").await;
    assert_eq!(art_level(&rome, "knife").await, json!(["1", "1"]));
    // On its way: the button says so (pending look, aria-busy) and the gold
    // counter shows the change.
    let busy = rome
        .js("const b = document.querySelector('[data-test=\"action-purchase_knife\"]'); return [b.classList.contains('pending'), b.getAttribute('aria-busy')]")
        .await;
    assert_eq!(busy, json!([true, "true"]));
    rome.wait_text("gold-delta", "−20").await;
    let (status, _) = game
        .act(game.game_id_default, &token, "purchase_knife", None)
        .await;
    assert_eq!(status, 202);
    // The page's confirmed state now holds the knife bought elsewhere.
    wait_feed(&rome, "You (Rome) bought a knife", true).await;
    wait_feed(&rival, "Rome bought a knife", false).await;
    rome.cdp("Network.setBlockedURLs", json!({ "urls": [] }))
        .await;
    let why = shared::Rejection::AlreadyOwned {
        item: shared::Item::Knife,
    };
    // The wording of frontend::model::describe_rejection.
    let expected = "Buy knife was refused. You already own a knife.";
    rome.wait_text("refused-purchase_knife", expected).await;
    // Next to its own button: inside the same `.action` block.
    let beside = rome
        .js("const n = document.querySelector('[data-test=\"refused-purchase_knife\"]'); return n.closest('.action').querySelector('button').dataset.test")
        .await;
    assert_eq!(beside, json!("action-purchase_knife"));
    wait_feed(
        &rome,
        &format!("Your (Rome) knife purchase refused: {why}"),
        true,
    )
    .await;
    // The rival's page names the refused action too: the update carries it
    // (the rival never sent it), and its reason in the third person.
    wait_feed(
        &rival,
        "Rome's knife purchase refused: they already own a knife",
        false,
    )
    .await;
    // Rolled back to the server's truth: one knife, paid once.
    assert_eq!(art_level(&rome, "knife").await, json!(["1", "1"]));
    wait_settled(&rome).await;
    // Newest first: the refusal is on top of Rome's feed.
    rome.wait_for(
        "the refusal on top of the feed",
        "const l = document.querySelector('[data-test=\"feed-line\"]'); return !!l && l.dataset.mine === 'true' && l.textContent.includes('refused')",
    )
    .await;
    let top = rome
        .js("return document.querySelector('[data-test=\"feed-line\"]').textContent.trim()")
        .await;
    assert_eq!(
        top,
        json!(format!("Your (Rome) knife purchase refused: {why}"))
    );

    // Not owned: the dashed outline (level 0).
    assert_eq!(art_level(&rome, "sword").await, json!(["0", "0"]));
    assert_eq!(browser_svg_dashed(&rome, "sword").await, json!(true));

    // Buy a sword: the picture changes at once, the engine confirms.
    rome.click("action-purchase_sword").await;
    assert_eq!(art_level(&rome, "sword").await, json!(["1", "1"]));
    let pop = rome
        .js("return getComputedStyle(document.querySelector('[data-test=\"art-sword\"]')).animationName")
        .await;
    assert_eq!(pop, json!("pop"), "a new item pops in (motion not reduced)");
    wait_settled(&rome).await;
    rome.wait_text("done-purchase_sword", "Done: confirmed by the game")
        .await;
    wait_feed(&rome, "You (Rome) bought a sword", true).await;
    wait_feed(&rival, "Rome bought a sword", false).await;
    assert_eq!(browser_svg_dashed(&rome, "sword").await, json!(false));

    // Visits until the upgrade is affordable, then upgrade: level 2.
    for _ in 0..12 {
        let affordable = rome
            .js("return !document.querySelector('[data-test=\"action-upgrade_sword\"]').disabled")
            .await;
        if affordable == json!(true) {
            break;
        }
        rome.click("action-default").await;
        wait_settled(&rome).await;
    }
    rome.click("action-upgrade_sword").await;
    assert_eq!(art_level(&rome, "sword").await, json!(["2", "2"]));
    wait_settled(&rome).await;
    wait_feed(&rome, "You (Rome) upgraded the sword to level 2", true).await;
    wait_feed(&rival, "Rome upgraded the sword to level 2", false).await;
    // The rival's own page shows its own pictures, not Rome's.
    assert_eq!(art_level(&rival, "sword").await, json!(["0", "0"]));

    rome.quit().await;
    rival.quit().await;
    game.stop().await;
}

/// Whether the picture of `item` is drawn as the dashed "not owned" outline.
async fn browser_svg_dashed(browser: &Browser, item: &str) -> Value {
    browser
        .js(&format!(
            "return !!document.querySelector('[data-test=\"art-{item}\"] svg [stroke-dasharray]')"
        ))
        .await
}

/// Both themes at 360×640 and 1280×800 (and 320×568, 1920×1080):
/// screenshots in `artifacts/`, no horizontal scrolling, and axe-core finds no WCAG A/AA violation on the
/// join page and the nation page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_themes_at_phone_and_desktop_sizes_pass_axe_without_overflow() {
    let game = TestGame::start(Some(dist_dir())).await;
    let driver = Chromedriver::start().await;
    for dark in [false, true] {
        let theme = if dark { "dark" } else { "light" };
        let browser = Browser::open(&driver, Viewport::Desktop).await;
        // Motion reduced: axe judges settled colours, not a frame of a fade.
        browser.emulate_theme(dark, true).await;
        browser.set_size(360, 640).await;
        browser.goto(&format!("{}/", game.base_url)).await;
        browser
            .wait_for(
                "the join form",
                "return !!document.querySelector('[data-test=\"join-button\"]')",
            )
            .await;
        let bg = browser
            .js("return getComputedStyle(document.body).backgroundColor")
            .await;
        let expected_bg = if dark {
            "rgb(16, 20, 28)"
        } else {
            "rgb(245, 243, 238)"
        };
        assert_eq!(bg, json!(expected_bg), "the {theme} theme is applied");
        assert_eq!(
            browser.axe_violations().await,
            json!([]),
            "axe on the join page, {theme}"
        );
        browser
            .assert_no_horizontal_overflow(&format!("join page, 360 px, {theme}"))
            .await;
        browser
            .screenshot(&format!("join-360x640-{theme}.png"))
            .await;

        join_through_the_form(&browser, &game, &format!("Look {theme}")).await;
        browser.click("action-purchase_sword").await;
        wait_settled(&browser).await;
        browser
            .wait_for(
                "the sword's confirmation",
                "return !!document.querySelector('[data-test=\"done-purchase_sword\"]')",
            )
            .await;
        let motion = browser
            .js("return getComputedStyle(document.querySelector('[data-test=\"art-sword\"]')).animationName")
            .await;
        assert_eq!(
            motion,
            json!("none"),
            "prefers-reduced-motion: no animation"
        );
        for (w, h) in [(320, 568), (360, 640), (1280, 800), (1920, 1080)] {
            browser.set_size(w, h).await;
            browser
                .wait_for(
                    "the new size",
                    &format!("return document.documentElement.clientWidth === {w}"),
                )
                .await;
            browser
                .assert_no_horizontal_overflow(&format!("nation page, {w}x{h}, {theme}"))
                .await;
            assert_eq!(
                browser.axe_violations().await,
                json!([]),
                "axe on the nation page, {w}x{h}, {theme}"
            );
            let path = browser
                .screenshot(&format!("nation-{w}x{h}-{theme}.png"))
                .await;
            assert!(std::fs::metadata(&path).expect("the screenshot").len() > 1000);
        }
        browser.quit().await;
    }
    game.stop().await;
}

/// Keyboard only: Tab to the name, type it, Enter joins; Tab to "Buy sword",
/// Enter buys it. Every stop shows its focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_buys_a_sword_with_the_keyboard_only() {
    let game = TestGame::start(Some(dist_dir())).await;
    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver, Viewport::Desktop).await;
    browser.goto(&format!("{}/", game.base_url)).await;
    browser
        .wait_for(
            "the join form with the default game",
            &format!(
                "const e = document.querySelector('[data-test=\"game-input\"]'); return !!e && e.value === '{}';",
                game.game_id_default
            ),
        )
        .await;
    browser.tab_to("name-input").await;
    browser.keys("Kyiv\u{E007}").await;
    browser.wait_text("nation-name", "Kyiv").await;
    wait_settled(&browser).await;
    browser.tab_to("action-purchase_sword").await;
    browser.keys("\u{E007}").await;
    browser.wait_text("item-sword", "Lv 1").await;
    wait_settled(&browser).await;
    assert_eq!(art_level(&browser, "sword").await, json!(["1", "1"]));
    assert_eq!(browser.text("gold").await, json!("50"));

    // The wasm crossed the network gzipped (the build's `.gz` beside it).
    let index = std::fs::read_to_string(dist_dir().join("index.html")).expect("index.html");
    let wasm = index
        .split('"')
        .find(|p| p.ends_with("_bg.wasm"))
        .expect("the wasm's name in index.html");
    let resp = reqwest::Client::new()
        .get(format!("{}{wasm}", game.base_url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET the wasm");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip"),
        "the wasm is served gzipped"
    );
    browser.quit().await;
    game.stop().await;
}

/// Issue 14: the global and campaign boards beside the game, live from the
/// leaderboards role in the same process. Twelve rivals out-power the
/// player, so their place (13th or lower) is below the pushed top 10: the power
/// board shows its top five, a gap, and the player's neighbourhood with
/// their own row highlighted; the campaign board shows the spins produced
/// to its `gameplay` topic. Both pass axe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_boards_show_the_players_place_far_below_the_top() {
    let gameplay = tests::unique("gameplay");
    let brokers = tests::broker().to_string();
    tests::create_topics(&brokers, &[(&gameplay, 1, false)])
        .await
        .expect("the gameplay topic");
    let topic = gameplay.clone();
    let game = TestGame::start_with(Some(dist_dir()), move |c| {
        c.engine.with_leaderboards = true;
        c.engine.gameplay_topic = topic;
    })
    .await;
    // Seed 004's spins: players 101 to 103, best ratios 5, 3 and 1 (event
    // times in order: none is late).
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    // Seed 004's event shape (loadgen::spin::Spin), keyed by player id.
    let produce = |player: u32, win: u32, stake: u32, micros: usize| {
        let producer = producer.clone();
        let topic = gameplay.clone();
        async move {
            let spin = json!({
                "playerId": player,
                "gameId": 10,
                "win": win,
                "stake": stake,
                "eventTime": format!("2026-12-01 08:40:00.{micros:06}"),
            });
            producer
                .send(
                    rdkafka::producer::FutureRecord::to(&topic)
                        .key(&player.to_string())
                        .payload(&spin.to_string()),
                    Duration::from_secs(10),
                )
                .await
                .expect("a spin produced");
        }
    };
    for (i, (player, win)) in [(101, 500), (102, 300), (103, 100)].into_iter().enumerate() {
        produce(player, win, 100, i + 1).await;
    }
    // Twelve rivals with a sword each (power above a bare nation's).
    for i in 0..12 {
        let (_, token) = game.join(game.game_id_default, &format!("Rival {i}")).await;
        let (status, _) = game
            .act(game.game_id_default, &token, "purchase_sword", None)
            .await;
        assert_eq!(status, 202);
    }
    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver, Viewport::Desktop).await;
    join_through_the_form(&browser, &game, "Carthage").await;
    let power = "[data-test=\"global-board\"][data-board=\"nation-power\"]";
    let seen = browser
        .wait_for(
            "the player's row, last, after the top five and a gap",
            &format!(
                "const rows = [...document.querySelectorAll('{power} li')]; \
                 const me = rows.find(r => r.dataset.me === 'true'); \
                 if (!me || rows.length < 7) return null; \
                 return [rows.slice(0, 5).every(r => r.dataset.me === 'false'), rows[5].classList.contains('gap'), \
                         me.classList.contains('me'), me.getAttribute('aria-current'), \
                         me.querySelector('.rank').textContent, me.querySelector('.who').textContent, \
                         document.querySelector('{power} .place').textContent];"
            ),
        )
        .await;
    // Last, below every rival (the game may hold other nations too).
    let rank: usize = seen[4]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("a rank");
    assert!(rank > 12, "the player is below the twelve rivals: {seen}");
    assert_eq!(
        seen,
        json!([
            true,
            true,
            true,
            "true",
            rank.to_string(),
            "you",
            format!("{rank} players")
        ]),
        "top five, a gap, the player's own row highlighted, last"
    );
    // The campaign board, pushed live: its three spinners, best first.
    let campaign = "[data-test=\"global-board\"][data-board=\"spins-best-ratio\"]";
    let rows = browser
        .wait_for(
            "the campaign board's three players",
            &format!(
                "const rows = [...document.querySelectorAll('{campaign} [data-test=\"global-row\"]')]; \
                 return rows.length === 3 ? rows.map(r => r.querySelector('.who').textContent + ' ' + r.querySelector('.pow').textContent) : null;"
            ),
        )
        .await;
    assert_eq!(rows, json!(["101 5", "102 3", "103 1"]));
    // Live: a spin that beats the top is pushed without a reload.
    produce(104, 450, 50, 4).await;
    browser
        .wait_for(
            "the new leader pushed to the campaign board",
            &format!(
                "const r = document.querySelector('{campaign} [data-test=\"global-row\"]'); return !!r && r.textContent.includes('104');"
            ),
        )
        .await;
    for dark in [false, true] {
        browser.emulate_theme(dark, true).await;
        assert_eq!(
            browser.axe_violations().await,
            json!([]),
            "axe on the nation page with both boards (dark: {dark})"
        );
    }
    browser.quit().await;
    game.stop().await;
}

/// Opens `/?arena={id}`, joins through the arena's form as `name`, and
/// waits for the player on the board.
async fn join_arena(browser: &Browser, game: &TestGame, arena_id: u64, name: &str) {
    browser
        .goto(&format!("{}/?arena={arena_id}", game.base_url))
        .await;
    browser
        .wait_for(
            "the arena's join form",
            "return !!document.querySelector('[data-test=\"arena-name\"]')",
        )
        .await;
    browser.type_into("arena-name", name).await;
    browser.click("arena-join-button").await;
    browser
        .wait_for(
            "the player on the board",
            "return !!document.querySelector('[data-test=\"me-on-board\"]')",
        )
        .await;
}

/// A JS expression: a standing player drawn at `(x, y)` on this page.
fn player_at(x: u8, y: u8) -> String {
    format!(
        "return !!document.querySelector('[data-test=\"board\"] g[data-x=\"{x}\"][data-y=\"{y}\"]')"
    )
}

/// Two browsers in one arena (issue 18): a desktop one moves with the arrow
/// keys and throws with S, a phone-sized one (360×640, touch) taps the pad;
/// each sees the other's moves and the burst live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_in_one_arena_see_each_others_moves_and_bursts() {
    let game = TestGame::start(Some(dist_dir())).await;
    let driver = Chromedriver::start().await;
    let desktop = Browser::open(&driver, Viewport::Desktop).await;
    let phone = Browser::open(&driver, Viewport::Phone).await;
    let arena_id =
        shared::arena::ARENA_IDS.start + u64::from(uuid::Uuid::new_v4().as_u128() as u32);
    join_arena(&desktop, &game, arena_id, "Ann").await; // A1 at (0, 9)
    join_arena(&phone, &game, arena_id, "Bob").await; // B1 at (0, 0)
    for b in [&desktop, &phone] {
        b.wait_for(
            "the round to start",
            "const e = document.querySelector('[data-test=\"score\"]'); return !!e && e.textContent.includes('standing');",
        )
        .await;
    }

    // Desktop: the right arrow; both pages show Ann at (1, 9).
    desktop.keys("\u{E014}").await;
    desktop
        .wait_for("Ann moved on her page", &player_at(1, 9))
        .await;
    phone
        .wait_for("Ann's move on Bob's page", &player_at(1, 9))
        .await;

    // Desktop: S throws down column 1; the grenade bursts before the wall.
    desktop.keys("s").await;
    phone
        .wait_for(
            "the burst and Ann's grenades on Bob's page",
            "return !!document.querySelector('[data-test=\"burst\"]') && document.querySelector('[data-test=\"board\"]').textContent.includes('A1-4')",
        )
        .await;

    // Phone: a tap on the pad's up arrow; the desktop sees Bob at (0, 1).
    phone.click("move-up").await;
    desktop
        .wait_for("Bob's tap on Ann's page", &player_at(0, 1))
        .await;
    phone
        .assert_no_horizontal_overflow("the arena at 360x640")
        .await;
    let shot = phone.screenshot("arena-phone-360x640.png").await;
    assert!(shot.exists());
    desktop.quit().await;
    phone.quit().await;
    game.stop().await;
}

/// A flood from one browser (issue 18): a script in Ann's page fires 60
/// moves at once with her token, as a cheating client would. The rules
/// refuse what comes faster than one move per 100 ms of stamps (`too_fast`),
/// so the flood moves Ann a few squares at most; Bob, on a phone, taps the
/// pad meanwhile and both pages show his move as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_browser_is_rate_limited_and_its_rival_plays_on() {
    let game = TestGame::start(Some(dist_dir())).await;
    let driver = Chromedriver::start().await;
    let ann = Browser::open(&driver, Viewport::Desktop).await;
    let bob = Browser::open(&driver, Viewport::Phone).await;
    let arena_id =
        shared::arena::ARENA_IDS.start + u64::from(uuid::Uuid::new_v4().as_u128() as u32);
    join_arena(&ann, &game, arena_id, "Ann").await; // A1 at (0, 9)
    join_arena(&bob, &game, arena_id, "Bob").await; // B1 at (0, 0)
    for b in [&ann, &bob] {
        b.wait_for(
            "the round to start",
            "const e = document.querySelector('[data-test=\"score\"]'); return !!e && e.textContent.includes('standing');",
        )
        .await;
    }

    // The flood: 60 moves right, all sent at once from Ann's page.
    let ids = ann
        .js(&format!(
            "const me = JSON.parse(localStorage.getItem('build-a-nation.game.{arena_id}')); \
             const ids = [...Array(60).keys()].map(() => crypto.randomUUID()); \
             const t0 = performance.now(); \
             Promise.all(ids.map(id => fetch('/api/games/{arena_id}/actions', {{ \
               method: 'POST', \
               headers: {{'Content-Type': 'application/json', 'Authorization': 'Bearer ' + me.token}}, \
               body: JSON.stringify({{type: 'move_right', action_id: id}}) \
             }}).then(r => r.status))) \
               .then(s => window.__flood_done = {{statuses: s, ms: performance.now() - t0}}); \
             return ids;"
        ))
        .await;
    let ids: std::collections::HashSet<String> = ids
        .as_array()
        .expect("the flood's ids")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    assert_eq!(ids.len(), 60);
    // Bob plays on meanwhile: a tap up, seen on both pages.
    let tapped = Instant::now();
    bob.click("move-up").await;
    ann.wait_for("Bob's tap on Ann's page during the flood", &player_at(0, 1))
        .await;
    bob.wait_for("Bob's own move confirmed", &player_at(0, 1))
        .await;
    eprintln!(
        "a rival's tap seen on the flooding page after {} ms",
        tapped.elapsed().as_millis()
    );
    // Every flood request was taken (202: refusing is the rules' job).
    let done = ann
        .wait_for("the flood answered", "return window.__flood_done || null")
        .await;
    assert!(
        done["statuses"]
            .as_array()
            .is_some_and(|s| s.len() == 60 && s.iter().all(|s| s == 202)),
        "{done}"
    );
    let flood_ms = done["ms"].as_f64().expect("ms") as u64;
    // The engine handled all of it: at most one move per 100 ms of stamps
    // applied, the rest refused `too_fast` (or `blocked` at the edge).
    let (brokers, topic) = (game.brokers.clone(), game.games_topic.clone());
    let (applied, refused) = tokio::task::spawn_blocking(move || {
        let count = |seen: &[rdkafka::message::OwnedMessage]| {
            let (mut applied, mut refused) = (0u64, Vec::new());
            for v in seen
                .iter()
                .map(tests::json)
                .filter(|v| v["record"] == "head")
            {
                for a in v["applied"].as_array().into_iter().flatten() {
                    applied += u64::from(ids.contains(a.as_str().unwrap_or("")));
                }
                for r in v["rejected"].as_array().into_iter().flatten() {
                    if ids.contains(r["event_id"].as_str().unwrap_or("")) {
                        refused.push(r["reason"]["code"].as_str().unwrap_or("").to_string());
                    }
                }
            }
            (applied, refused)
        };
        let records = tests::consume(&brokers, &topic, Duration::from_secs(30), |seen| {
            let (a, r) = count(seen);
            a + r.len() as u64 >= 60
        })
        .expect("the flood's outcomes on games");
        count(&records)
    })
    .await
    .unwrap();
    assert_eq!(applied + refused.len() as u64, 60);
    assert!(
        applied <= 2 + flood_ms / shared::arena::MIN_INTERVAL_MS,
        "{applied} of 60 applied in a flood of {flood_ms} ms"
    );
    assert!(
        refused.iter().all(|c| c == "too_fast" || c == "blocked"),
        "{refused:?}"
    );
    assert!(refused.iter().any(|c| c == "too_fast"), "{refused:?}");
    ann.quit().await;
    bob.quit().await;
    game.stop().await;
}

/// A script that is true once the bar `label` of `chart` shows `value`.
fn bar_shows(chart: &str, label: &str, value: u64) -> String {
    format!(
        "const bar = [...document.querySelectorAll('[data-test=\"{chart}\"] [data-test=\"bar\"]')] \
           .find(b => b.dataset.label === '{label}'); \
         return !!bar && bar.dataset.value === '{value}';"
    )
}

/// The analytics page (`/?view=analytics`): the game's own lake (its
/// in-process exporter) drawn as two bar charts that follow new actions
/// without a reload, in both themes with no axe violation and no sideways
/// scroll on a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analytics_page_draws_the_lakes_reports_live() {
    let lake_dir = std::env::temp_dir().join(tests::unique("lake-page"));
    let lake = lake_dir.to_string_lossy().into_owned();
    let game = TestGame::start_with(Some(dist_dir()), |config| {
        config.lake.lake = Some(lake);
        config.lake.lake_max_age_ms = 200;
        config.lake.lake_refresh_ms = 200;
    })
    .await;
    let game_id = game.game_id_default;
    let (_, token) = game.join(game_id, "Carthage").await;
    for _ in 0..3 {
        assert_eq!(game.act(game_id, &token, "default", None).await.0, 202);
    }
    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver, Viewport::Desktop).await;
    browser
        .goto(&format!("{}/?view=analytics", game.base_url))
        .await;
    // Three actions, and the page's own load: `GET /` is the seed's
    // `default` event for browsers too (it serves the page and counts the
    // visit).
    browser
        .wait_for(
            "4 visits on the event_type chart",
            &bar_shows("chart-by_event_type", "default", 4),
        )
        .await;
    browser
        .wait_for(
            "the join on the event_type chart",
            &bar_shows("chart-by_event_type", "join", 1),
        )
        .await;
    let hosts = browser
        .js("return document.querySelectorAll('[data-test=\"chart-by_host\"] [data-test=\"bar\"]').length")
        .await;
    assert_eq!(hosts, json!(1), "one Host sent every action");

    // Live: two more visits reach the chart by polling, without a reload.
    browser.js("window.__same_page = true; return true").await;
    for _ in 0..2 {
        assert_eq!(game.act(game_id, &token, "default", None).await.0, 202);
    }
    browser
        .wait_for(
            "6 visits on the event_type chart, by polling",
            &bar_shows("chart-by_event_type", "default", 6),
        )
        .await;
    assert_eq!(
        browser.js("return window.__same_page === true").await,
        json!(true),
        "updated in place"
    );
    browser.quit().await;

    for dark in [false, true] {
        let browser = Browser::open(&driver, Viewport::Desktop).await;
        browser.emulate_theme(dark, true).await;
        browser.set_size(360, 640).await;
        browser
            .goto(&format!("{}/?view=analytics", game.base_url))
            .await;
        browser
            .wait_for(
                "the charts",
                "return document.querySelectorAll('[data-test=\"bar\"]').length >= 3",
            )
            .await;
        assert_eq!(
            browser.axe_violations().await,
            json!([]),
            "axe on the analytics page, dark {dark}"
        );
        browser
            .assert_no_horizontal_overflow(&format!("analytics page, 360 px, dark {dark}"))
            .await;
        browser.quit().await;
    }
    game.stop().await;
    let _ = std::fs::remove_dir_all(&lake_dir);
}
