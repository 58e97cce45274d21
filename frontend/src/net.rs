//! The browser's edges: `fetch`, local storage, action ids and the clocks.
//!
//! Thin wrappers over `web-sys`, so the components stay free of `JsValue`
//! plumbing. Everything that decides anything lives in [`crate::model`].

use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// An HTTP answer, whatever its status.
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
    /// The `Retry-After` header, on 503s.
    pub retry_after: Option<String>,
}

fn window() -> web_sys::Window {
    web_sys::window().expect("the app runs in a browser window")
}

fn js_err(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| "network error".to_string())
}

/// Sends a request to the bridge (same origin). `Err` means it never got an
/// answer (offline, connection refused): worth retrying.
pub async fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<HttpAnswer, String> {
    request_keyed(method, path, token, body, None).await
}

thread_local! {
    /// The idempotency key of each game's join in progress.
    static JOIN_KEYS: std::cell::RefCell<std::collections::HashMap<u64, String>> =
        Default::default();
}

/// `POST /api/games/{game_id}/join` with `body`. Every try of a join (a
/// retry after a 503, a second click after a lost answer) carries the same
/// `Idempotency-Key` until one gets a final answer (anything but no answer,
/// 408, 429 or 503), so the bridge makes it the same player: never a second
/// nation or arena seat.
pub async fn join(game_id: u64, body: Option<String>) -> Result<HttpAnswer, String> {
    let key = JOIN_KEYS.with(|k| {
        k.borrow_mut()
            .entry(game_id)
            .or_insert_with(new_action_id)
            .clone()
    });
    let answer = request_keyed(
        "POST",
        &format!("/api/games/{game_id}/join"),
        None,
        body,
        Some(&key),
    )
    .await;
    if answer
        .as_ref()
        .is_ok_and(|a| !matches!(a.status, 408 | 429 | 503))
    {
        JOIN_KEYS.with(|k| k.borrow_mut().remove(&game_id));
    }
    answer
}

/// [`request`] with an `Idempotency-Key`.
async fn request_keyed(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
    key: Option<&str>,
) -> Result<HttpAnswer, String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(js_err)?;
    if let Some(key) = key {
        headers.set("Idempotency-Key", key).map_err(js_err)?;
    }
    if let Some(body) = body {
        headers
            .set("Content-Type", "application/json")
            .map_err(js_err)?;
        init.set_body(&JsValue::from_str(&body));
    }
    if let Some(token) = token {
        headers
            .set("Authorization", &format!("Bearer {token}"))
            .map_err(js_err)?;
    }
    init.set_headers(&headers);
    let req = web_sys::Request::new_with_str_and_init(path, &init).map_err(js_err)?;
    let resp: web_sys::Response = JsFuture::from(window().fetch_with_request(&req))
        .await
        .map_err(js_err)?
        .dyn_into()
        .map_err(js_err)?;
    let text = JsFuture::from(resp.text().map_err(js_err)?)
        .await
        .map_err(js_err)?
        .as_string()
        .unwrap_or_default();
    Ok(HttpAnswer {
        status: resp.status(),
        body: text,
        retry_after: resp.headers().get("Retry-After").ok().flatten(),
    })
}

/// What is kept in local storage per game, so a reload resumes the nation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNation {
    pub player_id: String,
    pub token: String,
    pub name: String,
}

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

fn nation_key(game_id: u64) -> String {
    format!("build-a-nation.game.{game_id}")
}

/// The nation stored for `game_id`, if any.
pub fn load_nation(game_id: u64) -> Option<StoredNation> {
    let raw = storage()?.get_item(&nation_key(game_id)).ok()??;
    serde_json::from_str(&raw).ok()
}

/// Remembers the nation of `game_id` (best effort: private mode may refuse).
pub fn save_nation(game_id: u64, nation: &StoredNation) {
    if let (Some(s), Ok(raw)) = (storage(), serde_json::to_string(nation)) {
        let _ = s.set_item(&nation_key(game_id), &raw);
    }
}

/// Forgets the nation of `game_id` (its token no longer works).
pub fn forget_nation(game_id: u64) {
    if let Some(s) = storage() {
        let _ = s.remove_item(&nation_key(game_id));
    }
}

/// A fresh action id: a UUIDv7 (the time the engine remembers it by, then
/// random bits), the random bits from `crypto.getRandomValues` where there is
/// one, else from `Math.random` (plain http on a LAN address).
pub fn new_action_id() -> String {
    let mut bytes = [0u8; 16];
    let filled = js_sys::Reflect::get(&window(), &"crypto".into())
        .ok()
        .filter(|c| !c.is_undefined())
        .and_then(|crypto| {
            let f = js_sys::Reflect::get(&crypto, &"getRandomValues".into()).ok()?;
            let f = f.dyn_ref::<js_sys::Function>()?;
            let array = js_sys::Uint8Array::new_with_length(16);
            f.call1(&crypto, &array).ok()?;
            array.copy_to(&mut bytes);
            Some(())
        });
    if filled.is_none() {
        for b in &mut bytes {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    crate::model::uuid_v7(now_ms(), bytes)
}

/// Milliseconds since the epoch (the prediction's clock).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// `performance.now()`: ms since navigation, for latencies.
pub fn perf_now() -> f64 {
    window().performance().map(|p| p.now()).unwrap_or(0.0)
}

/// A random number in `[0, 1)`, for backoff jitter.
pub fn jitter() -> f64 {
    js_sys::Math::random()
}

/// The WebSocket URL for `path` on this page's origin.
pub fn ws_url(path: &str) -> String {
    let loc = window().location();
    let scheme = if loc.protocol().ok().as_deref() == Some("https:") {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{}{path}", loc.host().unwrap_or_default())
}

/// Publishes a figure on `window` (e.g. `banInteractiveMs`) for the browser
/// test and the benchmark script to read.
pub fn publish(name: &str, value: f64) {
    let _ = js_sys::Reflect::set(&window(), &name.into(), &value.into());
}

/// Appends a latency to the array `window[name]`: `banLatencies` (click to
/// confirmed by the engine) and `banAckLatencies` (click to Kafka's ack).
pub fn record_latency(name: &str, ms: f64) {
    let w = window();
    let arr = js_sys::Reflect::get(&w, &name.into())
        .ok()
        .and_then(|v| v.dyn_into::<js_sys::Array>().ok())
        .unwrap_or_else(|| {
            let a = js_sys::Array::new();
            let _ = js_sys::Reflect::set(&w, &name.into(), &a);
            a
        });
    arr.push(&ms.into());
}

/// The game an invite link names (`/?game=7`), if any.
pub fn query_game() -> Option<u64> {
    crate::invite::game_from_query(&window().location().search().ok()?)
}

/// This page's query string (`?arena=7`), empty if none.
pub fn search() -> String {
    window().location().search().unwrap_or_default()
}

/// The page this URL asks for ([`shared::Page::of`]).
pub fn page() -> shared::Page {
    let path = window().location().pathname().unwrap_or_default();
    shared::Page::of(&path, &search())
}

/// Loads `path` in place of this page (not kept in the history).
pub fn replace_with(path: &str) {
    let _ = window().location().replace(path);
}

/// Navigates to `path` on this origin.
pub fn go_to(path: &str) {
    let _ = window().location().set_href(path);
}

/// This page's origin (`http://host:port`), for the invite link.
pub fn origin() -> String {
    window().location().origin().unwrap_or_default()
}

/// Copies `text` to the clipboard; `false` when the browser refuses (no
/// clipboard on plain http from another host, say).
pub async fn copy_text(text: &str) -> bool {
    let Ok(nav) = js_sys::Reflect::get(&window(), &"navigator".into()) else {
        return false;
    };
    let Some(clip) = js_sys::Reflect::get(&nav, &"clipboard".into())
        .ok()
        .filter(|c| !c.is_undefined())
    else {
        return false;
    };
    let Some(write) = js_sys::Reflect::get(&clip, &"writeText".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
    else {
        return false;
    };
    let Ok(promise) = write.call1(&clip, &text.into()) else {
        return false;
    };
    match promise.dyn_into::<js_sys::Promise>() {
        Ok(p) => JsFuture::from(p).await.is_ok(),
        Err(_) => false,
    }
}

/// The answer to `GET /api/config` that `index.html` asked for while the
/// wasm downloaded (`window.banConfig`, a promise of the body or `null`);
/// `None` when there is none, so the caller asks itself.
pub async fn early_config() -> Option<String> {
    let w = window();
    let p = js_sys::Reflect::get(&w, &"banConfig".into()).ok()?;
    let _ = js_sys::Reflect::delete_property(&w, &"banConfig".into());
    let p = p.dyn_into::<js_sys::Promise>().ok()?;
    JsFuture::from(p).await.ok()?.as_string()
}
