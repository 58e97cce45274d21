//! Headless Chromium for the browser tests: chromedriver (W3C WebDriver
//! over HTTP, spoken with `reqwest`) and a session's helpers. Shared by the
//! test binaries that drive the game's pages (`browser.rs`, `admin.rs`);
//! each uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a wait in the page may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The trunk build, or a clear failure.
pub fn dist_dir() -> PathBuf {
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist");
    assert!(
        dist.join("index.html").exists(),
        "{} is missing: build the frontend first with `cargo fetch && trunk build --release` \
         from the workspace root (`make frontend`)",
        dist.join("index.html").display()
    );
    dist
}

/// chromedriver on a free port; killed when dropped.
pub struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    pub async fn start() -> Chromedriver {
        let port = tests::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install chromium-driver)");
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let status = format!("{}/status", driver.url);
        tests::eventually(DEADLINE, "chromedriver to be ready", || {
            let req = client.get(&status).send();
            async move {
                let v: Value = req.await.ok()?.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        driver
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The viewport a session emulates.
#[derive(Clone, Copy)]
pub enum Viewport {
    Desktop,
    /// 360×640, touch, like a small phone.
    Phone,
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _profile: TempDir,
}

/// A fresh Chromium profile directory, removed afterwards.
pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    pub async fn open(driver: &Chromedriver, viewport: Viewport) -> Browser {
        let profile = TempDir(std::env::temp_dir().join(tests::unique("chromium-profile")));
        std::fs::create_dir_all(&profile.0).expect("profile dir");
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.0.display()),
        ];
        let mut options = json!({ "binary": "/usr/bin/chromium" });
        match viewport {
            Viewport::Desktop => args.push("--window-size=1280,900".into()),
            Viewport::Phone => {
                options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": 360, "height": 640, "pixelRatio": 2.0, "touch": true },
                    "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel) Mobile"
                });
            }
        }
        options["args"] = json!(args);
        let http = reqwest::Client::new();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
        }}});
        let resp: Value = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .expect("new session request")
            .json()
            .await
            .expect("new session answer");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {resp}"))
            .to_string();
        Browser {
            http,
            session: format!("{}/session/{session}", driver.url),
            _profile: profile,
        }
    }

    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let req = self.http.request(method, format!("{}{path}", self.session));
        let req = if body.is_null() { req } else { req.json(&body) };
        let v: Value = req
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver answer");
        if v["value"]["error"].is_string() {
            panic!("webdriver {path} failed: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments` available) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// The element with `data-test="name"`.
    pub async fn find(&self, name: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": format!("[data-test=\"{name}\"]") }),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element reference")
            .to_string()
    }

    pub async fn click(&self, name: &str) {
        let el = self.find(name).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            json!({}),
        )
        .await;
    }

    pub async fn type_into(&self, name: &str, text: &str) {
        let el = self.find(name).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/clear"),
            json!({}),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The text of `[data-test=name]`, or `null` when absent.
    pub async fn text(&self, name: &str) -> Value {
        self.js(&format!(
            "const e = document.querySelector('[data-test=\"{name}\"]'); return e ? e.textContent.trim() : null;"
        ))
        .await
    }

    /// Polls `script` until it returns something truthy; returns it.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let v = self.js(script).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText").await;
                panic!("timed out after {DEADLINE:?} waiting for {what}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `[data-test=name]` reads `expected`.
    pub async fn wait_text(&self, name: &str, expected: &str) {
        self.wait_for(
            &format!("{name} to read {expected:?}"),
            &format!(
                "const e = document.querySelector('[data-test=\"{name}\"]'); return !!e && e.textContent.trim() === {};",
                json!(expected)
            ),
        )
        .await;
    }

    /// Cuts the page off the network (or restores it) through the DevTools
    /// protocol: open WebSockets close, new requests fail.
    pub async fn set_offline(&self, offline: bool) {
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            json!({ "cmd": "Network.enable", "params": {} }),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            json!({ "cmd": "Network.emulateNetworkConditions", "params": {
                "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1
            }}),
        )
        .await;
    }

    pub async fn screenshot(&self, file: &str) -> PathBuf {
        let b64 = self
            .cmd(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = decode_base64(b64.as_str().expect("screenshot is base64"));
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(file);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Runs `script` through the DevTools protocol (`Network.enable` etc.).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            json!({ "cmd": cmd, "params": params }),
        )
        .await
    }

    /// Light or dark, as `prefers-color-scheme` says; motion reduced when
    /// `reduce_motion` (the accessibility checks look at settled colours).
    pub async fn emulate_theme(&self, dark: bool, reduce_motion: bool) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [
                { "name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" } },
                { "name": "prefers-reduced-motion", "value": if reduce_motion { "reduce" } else { "no-preference" } },
            ]}),
        )
        .await;
    }

    /// The viewport's CSS size (a phone when narrower than 600 px).
    pub async fn set_size(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
        )
        .await;
    }

    /// Presses `key` (a WebDriver key code such as `\u{E004}` for Tab, or
    /// plain characters) on the keyboard.
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({ "type": "keyDown", "value": c.to_string() }),
                    json!({ "type": "keyUp", "value": c.to_string() }),
                ]
            })
            .collect();
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await;
    }

    /// The `data-test` of the focused element ("" when none has one).
    pub async fn focused(&self) -> String {
        self.js("const e = document.activeElement; return (e && e.dataset && e.dataset.test) || ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Tabs until the element `[data-test=name]` has the focus (at most 40
    /// presses), and checks the focus is visible (an outline).
    pub async fn tab_to(&self, name: &str) {
        for _ in 0..40 {
            if self.focused().await == name {
                let outline = self
                    .js("const s = getComputedStyle(document.activeElement); return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2")
                    .await;
                assert_eq!(outline, json!(true), "{name} shows its keyboard focus");
                return;
            }
            self.keys("\u{E004}").await;
        }
        panic!("Tab never reached {name}");
    }

    /// axe-core's WCAG 2.x A and AA violations on the current page.
    pub async fn axe_violations(&self) -> Value {
        let axe = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../.tools/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&axe).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; install it with `scripts/setup.sh all`",
                axe.display()
            )
        });
        // Colours are checked once settled: a theme switched a moment ago
        // may still be fading its backgrounds (CSS transitions).
        self.wait_for(
            "CSS transitions to settle before axe",
            "return document.getAnimations().every(a => !(a instanceof CSSTransition) || a.playState !== 'running')",
        )
        .await;
        self.js(&format!("{source}\n;return typeof axe")).await;
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            json!({ "script": "const done = arguments[arguments.length - 1]; \
                axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } }) \
                  .then(r => done(r.violations.map(v => ({ id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary) })))) \
                  .catch(e => done('axe failed: ' + e));",
                "args": [] }),
        )
        .await
    }

    /// Whether the page scrolls sideways: `[scrollWidth, clientWidth]`.
    pub async fn assert_no_horizontal_overflow(&self, what: &str) {
        let scroll = self
            .js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth, document.body.scrollWidth]")
            .await;
        assert!(
            scroll[0].as_u64() <= scroll[1].as_u64() && scroll[2].as_u64() <= scroll[1].as_u64(),
            "{what}: no horizontal scroll, got [scrollWidth, clientWidth, body] = {scroll}"
        );
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

pub fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (d << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}
