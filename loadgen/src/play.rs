//! `loadgen play`: simulated players through the bridge.
//!
//! Each player joins a game (`POST /api/games/{id}/join`), watches it on
//! `/ws/games/{id}` and is picked in turn by one scheduler that starts an
//! action every `1/rate` seconds, whether or not earlier ones were answered
//! (an open model: a slow server cannot slow the load down). Each action
//! carries its own id (`action_id`, a UUIDv7), so its answer is known before
//! it comes: latencies run from the action's *intended* start (when the
//! schedule said it should go, as wrk2 does, so a stalled sender does not
//! hide the stall: coordinated omission) to its `202` and to the first
//! WebSocket message of its player whose `applied` ids or `rejected[].event_id`
//! hold it. Only `kind`, `version`, `applied` and `rejected[].event_id` of
//! a message are read.
//!
//! Counted apart: `dropped` (not sent because `--max-in-flight` were
//! waiting), `late` (sent more than `--late-ms` behind schedule), `errors`
//! (anything but a `202` in the end), `retries` (a `503` or `429` retried
//! with the same action id after its `Retry-After`, as the contract tells
//! clients to: the retried action's latency still runs from its intended
//! start), `unmatched` (a `202` but no update within `--drain`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::slo::{Slo, Target};
use crate::stats::{self, Summary};

/// Flags of `loadgen play`.
#[derive(clap::Args, Clone, Debug)]
pub struct PlayArgs {
    /// The bridge, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub url: String,
    /// Actions per second (intended, all players together).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of measured load (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring (same rate, not recorded).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Games to play in (ids `--first-game` ..).
    #[arg(long, default_value_t = 4)]
    pub games: u64,
    /// The first game id. Default: a random one above 1,000,000, so runs
    /// against the same game server start from fresh games.
    #[arg(long)]
    pub first_game: Option<u64>,
    /// Players, spread over the games in turn.
    #[arg(long, default_value_t = 40)]
    pub players: usize,
    /// Output the report as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Objectives, e.g. `p99=20ms` or `ack.p99=5ms,p99.9=50ms`; exit code 1
    /// when one is missed.
    #[arg(long, value_parser = crate::slo::parse)]
    pub slo: Vec<Vec<Slo>>,
    /// Actions waiting for their `202` beyond which a due action is dropped.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: u64,
    /// An action sent more than this many ms behind schedule counts as late.
    #[arg(long, default_value_t = 5)]
    pub late_ms: u64,
    /// How long to wait for the last updates after the load ends, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Timeout of one HTTP request, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout: f64,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Play arenas (issue 18) instead of nation games: games from the arena
    /// id range, at most 10 players each, bots that move, throw and ask for
    /// rematches; an update counts when *every* player of the arena has it
    /// on its WebSocket.
    #[arg(long)]
    pub arena: bool,
}

/// A player that joined.
#[derive(Clone, Debug)]
struct Player {
    game_id: u64,
    token: String,
}

/// An action sent and not yet seen on its player's WebSocket.
#[derive(Clone, Copy, Debug)]
struct Pending {
    intended: Instant,
    /// When its `202` came (`None` while the request is on its way).
    answered: Option<Instant>,
    player: usize,
    measured: bool,
    /// Sockets that must still see the answer: 1 (the player's own) in a
    /// nation game, every player of the game in an arena.
    left: u32,
}

/// Histograms: the whole measured run and the current second.
struct Latencies {
    ack: Histogram<u64>,
    update: Histogram<u64>,
    /// From the `202` to the update (zero when the update came first).
    answer_update: Histogram<u64>,
    ack_second: Histogram<u64>,
    update_second: Histogram<u64>,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            ack: stats::histogram(),
            update: stats::histogram(),
            answer_update: stats::histogram(),
            ack_second: stats::histogram(),
            update_second: stats::histogram(),
        }
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    late: AtomicU64,
    applied: AtomicU64,
    rejected: AtomicU64,
    in_flight: AtomicU64,
    ws_messages: AtomicU64,
    ws_bytes: AtomicU64,
    ws_closed: AtomicU64,
}

/// What every task shares.
struct Shared {
    pending: Mutex<HashMap<String, Pending>>,
    latencies: Mutex<Latencies>,
    counters: Counters,
    /// Measured counters (actions intended after the warm-up).
    measured: Counters,
    error_kinds: Mutex<BTreeMap<String, u64>>,
    /// Any socket of the game counts (arenas), not just the player's own.
    any_socket: bool,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Shared {
    fn bump(&self, measured: bool, pick: impl Fn(&Counters) -> &AtomicU64) {
        pick(&self.counters).fetch_add(1, Ordering::Relaxed);
        if measured {
            pick(&self.measured).fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_ack(&self, latency: Duration) {
        if let Ok(mut l) = self.latencies.lock() {
            l.ack.saturating_record(micros(latency));
            l.ack_second.saturating_record(micros(latency));
        }
    }

    fn record_update(&self, latency: Duration, since_answer: Duration) {
        if let Ok(mut l) = self.latencies.lock() {
            l.update.saturating_record(micros(latency));
            l.update_second.saturating_record(micros(latency));
            l.answer_update.saturating_record(micros(since_answer));
        }
    }

    /// Notes when `id`'s `202` came, for answer -> update.
    fn answered(&self, id: &str, now: Instant) {
        if let Ok(mut pending) = self.pending.lock() {
            if let Some(p) = pending.get_mut(id) {
                p.answered = Some(now);
            }
        }
    }

    fn error(&self, measured: bool, kind: String) {
        self.bump(measured, |c| &c.errors);
        if let Ok(mut kinds) = self.error_kinds.lock() {
            *kinds.entry(kind).or_default() += 1;
        }
    }

    /// An id in a message on `player`'s socket: its answer, if it is ours.
    fn matched(&self, id: &str, player: usize, applied: bool, now: Instant) {
        let found = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            match pending.get_mut(id) {
                Some(p) if self.any_socket || p.player == player => {
                    p.left = p.left.saturating_sub(1);
                    if p.left == 0 {
                        pending.remove(id)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };
        if let Some(p) = found {
            self.bump(
                p.measured,
                |c| {
                    if applied {
                        &c.applied
                    } else {
                        &c.rejected
                    }
                },
            );
            if p.measured {
                // An update that came before its `202` counts as zero.
                let since_answer = p
                    .answered
                    .map(|a| now.saturating_duration_since(a))
                    .unwrap_or_default();
                self.record_update(now.saturating_duration_since(p.intended), since_answer);
            }
        }
    }
}

/// The final report (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub games: u64,
    pub first_game: u64,
    pub players: usize,
    /// Measured actions (intended after the warm-up).
    pub intended: u64,
    pub sent: u64,
    pub accepted: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// `503`/`429` answers retried with the same action id.
    pub retries: u64,
    pub dropped: u64,
    pub late: u64,
    pub applied: u64,
    pub rejected: u64,
    /// `applied + rejected`: actions whose update reached the WebSocket.
    pub matched: u64,
    /// Accepted but never seen on the WebSocket within the drain.
    pub unmatched: u64,
    pub ws_messages: u64,
    /// Bytes of the WebSocket text frames received (all players).
    pub ws_bytes: u64,
    pub ws_closed: u64,
    /// Arenas (`--arena`) rather than nation games.
    pub arena: bool,
    /// Intended start to the `202`.
    pub ack: Summary,
    /// Intended start to the update on the player's WebSocket (arenas: on
    /// the last of its arena's players' WebSockets).
    pub update: Summary,
    /// From the `202` to the update on the WebSocket (zero when the update
    /// came first): what the bridge and engine add after Kafka's ack.
    pub answer_to_update: Summary,
    /// Achieved rate of the measured part: sent / duration.
    pub achieved_rate: f64,
    /// loadgen's own CPU (user + system) during the load, seconds.
    pub cpu_s: Option<f64>,
    /// Cores loadgen used per 1,000 actions/s.
    pub cpu_cores_per_1000_rps: Option<f64>,
    pub slo: Vec<SloResult>,
    pub slo_met: bool,
}

/// One objective and what was measured.
#[derive(Debug, Serialize)]
pub struct SloResult {
    #[serde(flatten)]
    pub slo: Slo,
    pub measured_ms: Option<f64>,
    pub met: bool,
}

/// The WebSocket address of `url` (`http` -> `ws`).
fn ws_base(url: &str) -> anyhow::Result<String> {
    if let Some(rest) = url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = url.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else {
        bail!("--url must start with http:// or https://, got {url:?}")
    }
}

/// The action a player sends: mostly `default` (earns gold), sometimes a
/// purchase or upgrade (applied or rejected, both are answers).
fn pick_action(rng: &mut impl Rng) -> &'static str {
    const OTHERS: [&str; 6] = [
        "purchase_sword",
        "purchase_shield",
        "purchase_horse",
        "purchase_knife",
        "upgrade_sword",
        "upgrade_shield",
    ];
    if rng.random_range(0..10) < 7 {
        "default"
    } else {
        OTHERS[rng.random_range(0..OTHERS.len())]
    }
}

/// An arena bot's action: mostly moves, some throws, now and then a
/// rematch (refused while the round is on: an answer all the same).
fn pick_arena_action(rng: &mut impl Rng) -> &'static str {
    const MOVES: [&str; 4] = ["move_up", "move_down", "move_left", "move_right"];
    const THROWS: [&str; 4] = ["throw_up", "throw_down", "throw_left", "throw_right"];
    match rng.random_range(0..100) {
        0..80 => MOVES[rng.random_range(0..4)],
        80..95 => THROWS[rng.random_range(0..4)],
        _ => "rematch",
    }
}

/// The intended start of action `i`: `start + i / rate`.
pub fn intended_at(start: Instant, rate: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

async fn join(
    client: &reqwest::Client,
    base: &str,
    game_id: u64,
    name: &str,
) -> anyhow::Result<String> {
    let url = format!("{base}/api/games/{game_id}/join");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Retries carry the same key: the same join, never a second player.
    let key = uuid::Uuid::new_v4().to_string();
    loop {
        let response = client
            .post(&url)
            .header("Idempotency-Key", &key)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => {
                let body: serde_json::Value = r.json().await.context("join answer")?;
                return body["token"]
                    .as_str()
                    .map(str::to_string)
                    .context("join answer without a token");
            }
            Ok(r) if r.status() != 503 && r.status() != 429 => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                bail!("join {url}: {status} {body}");
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(r) => bail!("join {url}: {}", r.status()),
            Err(e) => bail!("join {url}: {e}"),
        }
    }
}

/// Reads `player`'s socket until it closes, matching ids.
async fn watch(
    shared: Arc<Shared>,
    player: usize,
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    while let Some(msg) = socket.next().await {
        let text = match msg {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let now = Instant::now();
        shared.counters.ws_messages.fetch_add(1, Ordering::Relaxed);
        shared
            .counters
            .ws_bytes
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        if let Some(applied) = value.get("applied").and_then(|a| a.as_array()) {
            for id in applied.iter().filter_map(|v| v.as_str()) {
                shared.matched(id, player, true, now);
            }
        }
        if let Some(rejected) = value.get("rejected").and_then(|a| a.as_array()) {
            for id in rejected
                .iter()
                .filter_map(|r| r.get("event_id").and_then(|v| v.as_str()))
            {
                shared.matched(id, player, false, now);
            }
        }
    }
    shared.counters.ws_closed.fetch_add(1, Ordering::Relaxed);
}

/// One action: post it, record its `202`.
#[allow(clippy::too_many_arguments)]
async fn act(
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: String,
    token: String,
    player: usize,
    kind: &'static str,
    intended: Instant,
    measured: bool,
    left: u32,
) {
    let id = uuid::Uuid::now_v7().to_string();
    if let Ok(mut pending) = shared.pending.lock() {
        pending.insert(
            id.clone(),
            Pending {
                intended,
                answered: None,
                player,
                measured,
                left,
            },
        );
    }
    let body = serde_json::json!({ "type": kind, "action_id": id });
    let give_up = Instant::now() + RETRY_FOR;
    let (response, now) = loop {
        let response = client
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        let now = Instant::now();
        let wait = match &response {
            Ok(r) if r.status() == 503 || r.status() == 429 => retry_after(r),
            _ => break (response, now),
        };
        if now + wait > give_up {
            break (response, now);
        }
        shared.bump(measured, |c| &c.retries);
        tokio::time::sleep(wait).await;
    };
    let failed = match response {
        Ok(r) if r.status() == 202 => {
            shared.bump(measured, |c| &c.accepted);
            if measured {
                shared.record_ack(now.saturating_duration_since(intended));
            }
            shared.answered(&id, now);
            // Drain the body so the connection goes back to the pool.
            let _ = r.bytes().await;
            None
        }
        Ok(r) => Some(format!("http {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Some("timeout".to_string()),
        Err(e) if e.is_connect() => Some("connect".to_string()),
        Err(_) => Some("request".to_string()),
    };
    if let Some(kind) = failed {
        if let Ok(mut pending) = shared.pending.lock() {
            pending.remove(&id);
        }
        shared.error(measured, kind);
    }
    shared.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// How long an action is retried on `503`/`429` before it counts as an
/// error.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// The wait a `503`/`429` asks for (`Retry-After` seconds, at most 1 s so a
/// load test keeps its pace; 100 ms when absent).
fn retry_after(r: &reqwest::Response) -> Duration {
    r.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_millis(100), |s| {
            Duration::from_secs(s).min(Duration::from_secs(1))
        })
}

fn ms(h: &Histogram<u64>, q: f64) -> String {
    match stats::quantile_ms(h, q) {
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    }
}

/// Prints a progress line every second until `done`.
async fn progress(
    shared: Arc<Shared>,
    start: Instant,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_sent = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.changed() => return,
        }
        let c = &shared.counters;
        let sent = c.sent.load(Ordering::Relaxed);
        let (ack, update) = match shared.latencies.lock() {
            Ok(mut l) => {
                let line = (
                    format!("{}/{}", ms(&l.ack_second, 0.5), ms(&l.ack_second, 0.99)),
                    format!(
                        "{}/{}",
                        ms(&l.update_second, 0.5),
                        ms(&l.update_second, 0.99)
                    ),
                );
                l.ack_second.reset();
                l.update_second.reset();
                line
            }
            Err(_) => return,
        };
        eprintln!(
            "[{:>5.1}s] {:>6} actions/s  sent {sent}  errors {}  dropped {}  in flight {}  202 p50/p99 {ack} ms  update p50/p99 {update} ms",
            start.elapsed().as_secs_f64(),
            sent - last_sent,
            c.errors.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
            c.in_flight.load(Ordering::Relaxed),
        );
        last_sent = sent;
    }
}

/// Runs the load; the report says whether the objectives were met.
pub async fn run(args: &PlayArgs) -> anyhow::Result<Report> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(args.rate) || !positive(args.duration) || args.warmup < 0.0 {
        bail!("--rate and --duration must be above 0, --warmup at least 0");
    }
    if args.games == 0 || args.players == 0 {
        bail!("--games and --players must be at least 1");
    }
    let base = args.url.trim_end_matches('/').to_string();
    let ws = ws_base(&base)?;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let first_game = args.first_game.unwrap_or_else(|| {
        if args.arena {
            shared::arena::ARENA_IDS.start + rng.random_range(0..1_000_000_000)
        } else {
            rng.random_range(1_000_000..1_000_000_000)
        }
    });
    if args.arena {
        let per_game = args.players.div_ceil(args.games as usize);
        if per_game > 2 * shared::arena::TEAM_SIZE {
            bail!(
                "an arena seats 10 players: --players {} in --games {} is {per_game} per arena",
                args.players,
                args.games
            );
        }
        if shared::GameKind::of(first_game + args.games - 1) != shared::GameKind::Arena
            || shared::GameKind::of(first_game) != shared::GameKind::Arena
        {
            bail!(
                "--first-game with --arena must be in the arena id range {:?}",
                shared::arena::ARENA_IDS
            );
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.request_timeout))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .context("http client")?;
    let shared = Arc::new(Shared {
        pending: Mutex::new(HashMap::new()),
        latencies: Mutex::new(Latencies::new()),
        counters: Counters::default(),
        measured: Counters::default(),
        error_kinds: Mutex::new(BTreeMap::new()),
        any_socket: args.arena,
    });

    // Join and watch: every player, before the clock starts.
    if !args.quiet {
        eprintln!(
            "joining {} players in games {first_game}..{} at {base}",
            args.players,
            first_game + args.games - 1
        );
    }
    let mut players = Vec::with_capacity(args.players);
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..args.players {
        let game_id = first_game + (i as u64 % args.games);
        let client = client.clone();
        let base = base.clone();
        joins.spawn(async move {
            let token = join(&client, &base, game_id, &format!("load{i}")).await?;
            anyhow::Ok((i, Player { game_id, token }))
        });
    }
    let mut joined = Vec::new();
    while let Some(j) = joins.join_next().await {
        joined.push(j.context("join task")??);
    }
    joined.sort_by_key(|(i, _)| *i);
    for (i, player) in joined {
        let url = format!("{ws}/ws/games/{}", player.game_id);
        let (socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("websocket {url}"))?;
        tokio::spawn(watch(shared.clone(), i, socket));
        players.push(player);
    }

    let start = Instant::now() + Duration::from_millis(50);
    let warmup_n = (args.warmup * args.rate).round() as u64;
    let total = warmup_n + (args.duration * args.rate).round() as u64;
    let late = Duration::from_millis(args.late_ms);
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    if !args.quiet {
        eprintln!(
            "{} actions/s for {} s after a {} s warm-up ({total} actions)",
            args.rate, args.duration, args.warmup
        );
        tokio::spawn(progress(shared.clone(), start, done_rx));
    }
    let cpu_start = stats::cpu_seconds();
    let mut measure_start = None;
    let mut cpu_measure_start = cpu_start;
    let urls: Vec<String> = players
        .iter()
        .map(|p| format!("{base}/api/games/{}/actions", p.game_id))
        .collect();
    // Sockets watching each player's game (every player watches its own).
    let mut per_game: HashMap<u64, u32> = HashMap::new();
    for p in &players {
        *per_game.entry(p.game_id).or_default() += 1;
    }
    let watchers: Vec<u32> = players.iter().map(|p| per_game[&p.game_id]).collect();
    for i in 0..total {
        let intended = intended_at(start, args.rate, i);
        tokio::time::sleep_until(intended).await;
        let measured = i >= warmup_n;
        if measured && measure_start.is_none() {
            measure_start = Some(intended);
            cpu_measure_start = stats::cpu_seconds();
        }
        if Instant::now().saturating_duration_since(intended) > late {
            shared.bump(measured, |c| &c.late);
        }
        if shared.counters.in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            shared.bump(measured, |c| &c.dropped);
            continue;
        }
        let player = (i % players.len() as u64) as usize;
        shared.bump(measured, |c| &c.sent);
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(act(
            shared.clone(),
            client.clone(),
            urls[player].clone(),
            players[player].token.clone(),
            player,
            if args.arena {
                pick_arena_action(&mut rng)
            } else {
                pick_action(&mut rng)
            },
            intended,
            measured,
            if args.arena { watchers[player] } else { 1 },
        ));
    }
    let load_end = Instant::now();
    let cpu_end = stats::cpu_seconds();

    // Drain: wait for the last answers and updates.
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    loop {
        let waiting = shared.counters.in_flight.load(Ordering::Relaxed) > 0
            || shared
                .pending
                .lock()
                .map(|p| !p.is_empty())
                .unwrap_or(false);
        if !waiting || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = done_tx.send(true);
    let unmatched = shared
        .pending
        .lock()
        .map(|p| p.values().filter(|p| p.measured).count() as u64)
        .unwrap_or(0);

    let m = &shared.measured;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let measured_secs = measure_start
        .map(|s| load_end.saturating_duration_since(s).as_secs_f64())
        .unwrap_or(0.0)
        .max(args.duration);
    let cpu_s = match (cpu_measure_start, cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let achieved_rate = get(&m.sent) as f64 / args.duration;
    let (ack, update, answer_to_update, slo) = {
        let l = shared
            .latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("a task panicked holding the histograms"))?;
        let slo: Vec<SloResult> = args
            .slo
            .iter()
            .flatten()
            .map(|slo| {
                let h = match slo.target {
                    Target::Ack => &l.ack,
                    Target::Update => &l.update,
                };
                let measured_ms = stats::quantile_ms(h, slo.quantile);
                let met = measured_ms.is_some_and(|v| v <= slo.limit.as_secs_f64() * 1e3);
                SloResult {
                    slo: slo.clone(),
                    measured_ms,
                    met,
                }
            })
            .collect();
        (
            Summary::of(&l.ack),
            Summary::of(&l.update),
            Summary::of(&l.answer_update),
            slo,
        )
    };
    let slo_met = slo.iter().all(|s| s.met);
    let error_kinds = shared
        .error_kinds
        .lock()
        .map(|k| k.clone())
        .unwrap_or_default();
    Ok(Report {
        url: base,
        rate: args.rate,
        duration_s: args.duration,
        warmup_s: args.warmup,
        games: args.games,
        first_game,
        players: args.players,
        intended: total - warmup_n,
        sent: get(&m.sent),
        accepted: get(&m.accepted),
        errors: get(&m.errors),
        error_kinds,
        retries: get(&m.retries),
        dropped: get(&m.dropped),
        late: get(&m.late),
        applied: get(&m.applied),
        rejected: get(&m.rejected),
        matched: get(&m.applied) + get(&m.rejected),
        unmatched,
        ws_messages: get(&shared.counters.ws_messages),
        ws_bytes: get(&shared.counters.ws_bytes),
        ws_closed: get(&shared.counters.ws_closed),
        arena: args.arena,
        ack,
        update,
        answer_to_update,
        achieved_rate,
        cpu_s,
        cpu_cores_per_1000_rps: cpu_s
            .filter(|_| achieved_rate > 0.0)
            .map(|c| c / measured_secs / (achieved_rate / 1000.0)),
        slo,
        slo_met,
    })
}

/// Writes the human report: counts, the latency table, CPU, objectives.
pub fn print_table(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "loadgen play {}: {} actions/s for {} s (after {} s warm-up), {} players in {} {}",
        r.url,
        r.rate,
        r.duration_s,
        r.warmup_s,
        r.players,
        r.games,
        if r.arena { "arenas" } else { "games" }
    )?;
    writeln!(
        out,
        "actions: {} intended, {} sent ({:.1}/s), {} accepted (202), {} errors, {} retried 503/429, {} dropped, {} late",
        r.intended, r.sent, r.achieved_rate, r.accepted, r.errors, r.retries, r.dropped, r.late
    )?;
    for (kind, n) in &r.error_kinds {
        writeln!(out, "  error {kind}: {n}")?;
    }
    writeln!(
        out,
        "updates: {} matched on the WebSocket ({} applied, {} rejected), {} unmatched",
        r.matched, r.applied, r.rejected, r.unmatched
    )?;
    writeln!(
        out,
        "websocket: {} messages, {} bytes ({:.0} bytes per message)",
        r.ws_messages,
        r.ws_bytes,
        r.ws_bytes as f64 / r.ws_messages.max(1) as f64
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "latency from intended start (ms)   count      p50      p90      p99    p99.9      max"
    )?;
    for (name, s) in [
        ("202 (Kafka ack)", &r.ack),
        (
            if r.arena {
                "update on all arena's WebSockets"
            } else {
                "update on WebSocket"
            },
            &r.update,
        ),
    ] {
        writeln!(
            out,
            "{name:<33} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p99_9_ms, s.max_ms
        )?;
    }
    let s = &r.answer_to_update;
    writeln!(
        out,
        "{:<33} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        "from the 202 to the update", s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p99_9_ms, s.max_ms
    )?;
    writeln!(out)?;
    if let (Some(cpu), Some(per)) = (r.cpu_s, r.cpu_cores_per_1000_rps) {
        writeln!(
            out,
            "loadgen CPU: {cpu:.2} s during the measured load = {per:.3} cores per 1,000 actions/s"
        )?;
    }
    for s in &r.slo {
        let measured = s
            .measured_ms
            .map(|v| format!("{v:.2} ms"))
            .unwrap_or_else(|| "nothing measured".into());
        writeln!(
            out,
            "SLO {}: {} ({measured})",
            s.slo.spec,
            if s.met { "met" } else { "MISSED" }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_open_and_evenly_spaced() {
        let start = Instant::now();
        let at = |i| intended_at(start, 500.0, i) - start;
        assert_eq!(at(0), Duration::ZERO);
        assert_eq!(at(1), Duration::from_millis(2));
        assert_eq!(at(500), Duration::from_secs(1));
        assert_eq!(at(5000), Duration::from_secs(10));
    }

    #[test]
    fn websocket_address_follows_the_scheme() {
        assert_eq!(
            ws_base("http://127.0.0.1:8080").expect("ws"),
            "ws://127.0.0.1:8080"
        );
        assert_eq!(ws_base("https://a.b").expect("wss"), "wss://a.b");
        assert!(ws_base("127.0.0.1:8080").is_err());
    }

    fn shared() -> Shared {
        Shared {
            pending: Mutex::new(HashMap::new()),
            latencies: Mutex::new(Latencies::new()),
            counters: Counters::default(),
            measured: Counters::default(),
            error_kinds: Mutex::new(BTreeMap::new()),
            any_socket: false,
        }
    }

    #[test]
    fn an_update_counts_from_the_intended_start_once_and_only_on_its_players_socket() {
        let s = shared();
        let intended = Instant::now();
        s.pending.lock().expect("lock").insert(
            "a1".into(),
            Pending {
                intended,
                answered: None,
                player: 3,
                measured: true,
                left: 1,
            },
        );
        // Another player's socket sees the same update first: not ours.
        s.matched("a1", 2, true, intended + Duration::from_millis(1));
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 0);
        s.answered("a1", intended + Duration::from_millis(4));
        s.matched("a1", 3, true, intended + Duration::from_millis(7));
        s.matched("a1", 3, true, intended + Duration::from_millis(9));
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 1);
        let l = s.latencies.lock().expect("lock");
        assert_eq!(l.update.len(), 1);
        // From its 202 (4 ms) to the update (7 ms).
        assert!(
            (l.answer_update.max() as i64 - 3000).abs() < 10,
            "{}",
            l.answer_update.max()
        );
        assert!(
            (l.update.max() as i64 - 7000).abs() < 10,
            "{}",
            l.update.max()
        );
    }

    #[test]
    fn an_arena_update_counts_when_the_last_of_its_players_has_it() {
        let s = Shared {
            any_socket: true,
            ..shared()
        };
        let intended = Instant::now();
        s.pending.lock().expect("lock").insert(
            "m1".into(),
            Pending {
                intended,
                answered: None,
                player: 0,
                measured: true,
                left: 3,
            },
        );
        for (socket, ms) in [(0, 2), (1, 4)] {
            s.matched("m1", socket, true, intended + Duration::from_millis(ms));
        }
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 0, "one to go");
        s.matched("m1", 2, true, intended + Duration::from_millis(11));
        assert_eq!(s.measured.applied.load(Ordering::Relaxed), 1);
        let l = s.latencies.lock().expect("lock");
        assert!(
            (l.update.max() as i64 - 11_000).abs() < 20,
            "{}",
            l.update.max()
        );
    }
}
