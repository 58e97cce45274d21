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
//! hold it. Only `applied` and `rejected[].event_id` of a message are read.
//!
//! `--watchers N` adds N idle WebSocket clients, spread over the games in
//! turn, that only receive (spectators, background tabs: the fan-out): each
//! action's arrival at every watcher of its game has histograms of its own.
//!
//! Counted apart: `dropped` (not sent because `--max-in-flight` were
//! waiting), `late` (sent more than `--late-ms` behind schedule), `errors`
//! (anything but a `202` in the end), `retries` (a `503` or `429` retried
//! with the same action id after its `Retry-After`, as the contract tells
//! clients to: the retried action's latency still runs from its intended
//! start), `unmatched` (a `202` but no update within `--drain`).
//!
//! A library caller can stop between the steps of [`run`] ([`Session`]): the
//! fan-out bench measures the bridge's memory once the watchers are in and
//! before the load starts.
//!
//! # Layout
//! - this file: the flags, the session (join, watch, play) and the sockets;
//! - `tracker`: matching ids seen on sockets to actions, the counters and
//!   histograms (no network, no clock of its own);
//! - `report`: the report and its table.

mod report;
mod tracker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub use self::report::{print_table, ActionRecord, Report, SloResult, Watchers, Window};
use self::tracker::{Frame, Pending, Shared};
use crate::slo::Target;
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
    /// Idle WebSocket clients, spread over the games in turn, that only
    /// receive: each action's arrival at every watcher of its game is
    /// measured (the fan-out).
    #[arg(long, default_value_t = 0)]
    pub watchers: usize,
    /// Watchers connecting at once.
    #[arg(long, default_value_t = 64)]
    pub watcher_connects: usize,
    /// Per-window latencies of the measured run every this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub window: f64,
    /// Output the report as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Objectives, e.g. `p99=20ms` or `ack.p99=5ms,p99.9=50ms` or
    /// `watchers.p99=50ms`; exit code 1 when one is missed.
    #[arg(long, value_parser = crate::slo::parse)]
    pub slo: Vec<Vec<crate::slo::Slo>>,
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
    /// Library callers only: keep every measured action's times in
    /// [`Report::actions`].
    #[arg(skip)]
    pub keep_actions: bool,
}

impl PlayArgs {
    /// The command line's defaults against `url`, for library callers
    /// (`PlayArgs { rate: 500.0, ..PlayArgs::new(url) }`).
    pub fn new(url: impl Into<String>) -> PlayArgs {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            play: PlayArgs,
        }
        let url: String = url.into();
        Cli::parse_from(["loadgen", "--url", url.as_str()]).play
    }
}

/// A player that joined.
#[derive(Clone, Debug)]
struct Player {
    game_id: u64,
    token: String,
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

/// Reads a socket until it closes: `player`'s own (`Some`), matching its
/// ids, or an idle watcher's (`None`).
async fn read_socket(
    shared: Arc<Shared>,
    player: Option<usize>,
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    let (messages, bytes, closed) = {
        let c = &shared.counters;
        match player {
            Some(_) => (&c.ws_messages, &c.ws_bytes, &c.ws_closed),
            None => (&c.watcher_messages, &c.watcher_bytes, &c.watchers_closed),
        }
    };
    while let Some(msg) = socket.next().await {
        let text = match msg {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let now = Instant::now();
        messages.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        let Some(frame) = Frame::parse(text.as_str()) else {
            continue;
        };
        for (id, applied) in frame.ids() {
            match player {
                Some(player) => shared.matched(id, player, applied, now),
                None => shared.watcher_saw(id, now),
            }
        }
    }
    closed.fetch_add(1, Ordering::Relaxed);
}

/// One action: post it, record its `202`.
async fn act(
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: String,
    token: String,
    kind: &'static str,
    pending: Pending,
) {
    let id = uuid::Uuid::now_v7().to_string();
    let (intended, measured) = (pending.intended, pending.measured);
    if let Ok(mut p) = shared.pending.lock() {
        p.insert(id.clone(), pending);
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
        // The innermost cause names what failed (a reset, a connection
        // closed before the answer...): a short, bounded set of texts.
        Err(e) => Some(format!("request: {}", innermost(&e))),
    };
    if let Some(kind) = failed {
        shared.forget(&id);
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

/// Validates the flags that do not depend on the server.
fn check(args: &PlayArgs) -> anyhow::Result<()> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(args.rate) || !positive(args.duration) || args.warmup < 0.0 {
        bail!("--rate and --duration must be above 0, --warmup at least 0");
    }
    if !positive(args.window) {
        bail!("--window must be above 0");
    }
    if args.games == 0 || args.players == 0 || args.watcher_connects == 0 {
        bail!("--games, --players and --watcher-connects must be at least 1");
    }
    Ok(())
}

/// A run of `loadgen play` between its steps: the players joined and
/// watching ([`Session::join`]), then the idle watchers
/// ([`Session::connect_watchers`]), then the load ([`Session::play`]).
pub struct Session {
    args: PlayArgs,
    base: String,
    ws: String,
    first_game: u64,
    client: reqwest::Client,
    shared: Arc<Shared>,
    players: Vec<Player>,
    /// Watchers per game id (`--watchers` spread in turn).
    watchers: HashMap<u64, u32>,
    /// Every socket's reading task; dropped (so closed) when the run ends.
    sockets: JoinSet<()>,
    rng: rand::rngs::StdRng,
}

impl Session {
    /// Checks the flags, joins every player and opens its WebSocket.
    pub async fn join(args: &PlayArgs) -> anyhow::Result<Session> {
        check(args)?;
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
        let shared = Arc::new(Shared::new(args.arena, args.keep_actions));
        if !args.quiet {
            eprintln!(
                "joining {} players in games {first_game}..{} at {base}",
                args.players,
                first_game + args.games - 1
            );
        }
        let mut joins = JoinSet::new();
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
        let mut sockets = JoinSet::new();
        let mut players = Vec::with_capacity(args.players);
        for (i, player) in joined {
            let url = format!("{ws}/ws/games/{}", player.game_id);
            let (socket, _) = tokio_tungstenite::connect_async(&url)
                .await
                .with_context(|| format!("websocket {url}"))?;
            sockets.spawn(read_socket(shared.clone(), Some(i), socket));
            players.push(player);
        }
        Ok(Session {
            args: args.clone(),
            base,
            ws,
            first_game,
            client,
            shared,
            players,
            watchers: HashMap::new(),
            sockets,
            rng,
        })
    }

    /// The first game id played (`--first-game`, or the random one drawn).
    pub fn first_game(&self) -> u64 {
        self.first_game
    }

    /// WebSockets open now (players' and watchers'), as loadgen counts them.
    pub fn sockets_open(&self) -> usize {
        self.sockets.len()
    }

    /// Opens the `--watchers` idle WebSockets (`--watcher-connects` at a
    /// time); does nothing the second time.
    pub async fn connect_watchers(&mut self) -> anyhow::Result<()> {
        if self.args.watchers == 0 || !self.watchers.is_empty() {
            return Ok(());
        }
        if !self.args.quiet {
            eprintln!(
                "connecting {} idle watchers over {} games",
                self.args.watchers, self.args.games
            );
        }
        let (ws, first, games) = (self.ws.clone(), self.first_game, self.args.games);
        let mut connects = futures_util::stream::iter(0..self.args.watchers)
            .map(|w| {
                let game_id = first + (w as u64 % games);
                let url = format!("{ws}/ws/games/{game_id}");
                async move {
                    let (socket, _) = tokio_tungstenite::connect_async(&url)
                        .await
                        .with_context(|| format!("watcher websocket {url}"))?;
                    anyhow::Ok((game_id, socket))
                }
            })
            .buffer_unordered(self.args.watcher_connects);
        while let Some(connected) = connects.next().await {
            let (game_id, socket) = connected?;
            *self.watchers.entry(game_id).or_default() += 1;
            self.sockets
                .spawn(read_socket(self.shared.clone(), None, socket));
        }
        Ok(())
    }

    /// Runs the load (connecting the watchers first if not done yet); the
    /// report says whether the objectives were met. Closes every socket.
    pub async fn play(mut self) -> anyhow::Result<Report> {
        self.connect_watchers().await?;
        let args = &self.args;
        let shared = &self.shared;
        let start = Instant::now() + Duration::from_millis(50);
        let warmup_n = (args.warmup * args.rate).round() as u64;
        let total = warmup_n + (args.duration * args.rate).round() as u64;
        let measure_from = intended_at(start, args.rate, warmup_n);
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
        let urls: Vec<String> = self
            .players
            .iter()
            .map(|p| format!("{}/api/games/{}/actions", self.base, p.game_id))
            .collect();
        // Players' sockets on each player's game (every player watches its own).
        let mut per_game: HashMap<u64, u32> = HashMap::new();
        for p in &self.players {
            *per_game.entry(p.game_id).or_default() += 1;
        }
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
            let player = (i % self.players.len() as u64) as usize;
            let game_id = self.players[player].game_id;
            shared.bump(measured, |c| &c.sent);
            shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
            let left = if args.arena { per_game[&game_id] } else { 1 };
            let pending = Pending {
                measured,
                window: (intended
                    .saturating_duration_since(measure_from)
                    .as_secs_f64()
                    / args.window) as usize,
                watchers_left: self.watchers.get(&game_id).copied().unwrap_or(0),
                ..Pending::new(game_id, intended, player, left)
            };
            let kind = if args.arena {
                pick_arena_action(&mut self.rng)
            } else {
                pick_action(&mut self.rng)
            };
            tokio::spawn(act(
                shared.clone(),
                self.client.clone(),
                urls[player].clone(),
                self.players[player].token.clone(),
                kind,
                pending,
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
        let (unmatched, watchers_missing) = shared.close();
        // Every socket closes here (their tasks end with the set).
        self.sockets.shutdown().await;

        let m = &shared.measured;
        let c = &shared.counters;
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
                    Target::Watchers => &l.watcher,
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
        let windows = l
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window {
                from_s: i as f64 * args.window,
                to_s: ((i + 1) as f64 * args.window).min(args.duration),
                update: Summary::of(&w.update),
                answer_to_update: Summary::of(&w.answer_update),
            })
            .collect();
        let deliveries = get(&m.watcher_deliveries);
        let watchers = Watchers {
            count: self.watchers.values().map(|&n| n as usize).sum(),
            expected: deliveries + watchers_missing,
            deliveries,
            missing: watchers_missing,
            messages: get(&c.watcher_messages),
            bytes: get(&c.watcher_bytes),
            closed: get(&c.watchers_closed),
            update: Summary::of(&l.watcher),
            answer_to_update: Summary::of(&l.watcher_answer),
            spread: Summary::of(&l.watcher_spread),
        };
        let slo_met = slo.iter().all(|s| s.met);
        let error_kinds = shared
            .error_kinds
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default();
        let actions = shared
            .actions
            .as_ref()
            .and_then(|a| a.lock().ok().map(|mut a| std::mem::take(&mut *a)))
            .unwrap_or_default();
        Ok(Report {
            url: self.base.clone(),
            rate: args.rate,
            duration_s: args.duration,
            warmup_s: args.warmup,
            games: args.games,
            first_game: self.first_game,
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
            update_before_answer: get(&m.before_answer),
            ws_messages: get(&c.ws_messages),
            ws_bytes: get(&c.ws_bytes),
            ws_closed: get(&c.ws_closed),
            arena: args.arena,
            ack: Summary::of(&l.ack),
            update: Summary::of(&l.update),
            answer_to_update: Summary::of(&l.answer_update),
            windows,
            watchers,
            achieved_rate,
            cpu_s,
            cpu_cores_per_1000_rps: cpu_s
                .filter(|_| achieved_rate > 0.0)
                .map(|c| c / measured_secs / (achieved_rate / 1000.0)),
            slo,
            slo_met,
            actions,
        })
    }
}

/// Runs the load: joins, watchers, play ([`Session`]'s steps in a row).
pub async fn run(args: &PlayArgs) -> anyhow::Result<Report> {
    let mut session = Session::join(args).await?;
    session.connect_watchers().await?;
    session.play().await
}

/// The last error in `e`'s source chain, as text.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_failed_request_is_named_by_its_innermost_cause() {
        let reset = Wrapped("connection reset by peer", None);
        let chain = Wrapped(
            "error sending request",
            Some(Box::new(Wrapped("client error", Some(Box::new(reset))))),
        );
        assert_eq!(innermost(&chain), "connection reset by peer");
        assert_eq!(innermost(&Wrapped("alone", None)), "alone");
    }

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

    #[test]
    fn library_callers_get_the_command_lines_defaults() {
        let args = PlayArgs::new("http://127.0.0.1:1");
        assert_eq!(args.url, "http://127.0.0.1:1");
        assert_eq!(args.rate, 100.0);
        assert_eq!((args.games, args.players, args.watchers), (4, 40, 0));
        assert!(!args.keep_actions);
        assert!(check(&args).is_ok());
        assert!(check(&PlayArgs {
            window: 0.0,
            ..args
        })
        .is_err());
    }
}
