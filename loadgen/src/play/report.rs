//! The report of `loadgen play`: what `--json` prints as is, and the table
//! printed otherwise.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::slo::Slo;
use crate::stats::Summary;

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
    /// Updates that reached the player's WebSocket before their `202` (the
    /// engine's record read before the bridge's ack came back): 0 ms in
    /// `answer_to_update`.
    pub update_before_answer: u64,
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
    /// The same two, per `--window` seconds of the measured run (by the
    /// actions' intended start): shows a server slowing down as it goes.
    pub windows: Vec<Window>,
    /// Idle WebSocket clients (`--watchers`) that only receive.
    pub watchers: Watchers,
    /// Achieved rate of the measured part: sent / duration.
    pub achieved_rate: f64,
    /// loadgen's own CPU (user + system) during the load, seconds.
    pub cpu_s: Option<f64>,
    /// Cores loadgen used per 1,000 actions/s.
    pub cpu_cores_per_1000_rps: Option<f64>,
    pub slo: Vec<SloResult>,
    pub slo_met: bool,
    /// Every measured action's times, when asked for
    /// ([`super::PlayArgs::keep_actions`]): for a caller that correlates
    /// them with what it measures itself (a consumer of `games` beside the
    /// bridge). Not in the JSON.
    #[serde(skip)]
    pub actions: Vec<ActionRecord>,
}

/// One window of the measured run.
#[derive(Debug, Serialize)]
pub struct Window {
    /// Seconds after the measured run's start (intended starts).
    pub from_s: f64,
    pub to_s: f64,
    pub update: Summary,
    pub answer_to_update: Summary,
}

/// What the idle watchers (`--watchers`) received.
#[derive(Debug, Default, Serialize)]
pub struct Watchers {
    /// Idle WebSocket clients, spread over the games in turn.
    pub count: usize,
    /// Arrivals expected: each measured action answered `202` times the
    /// watchers of its game.
    pub expected: u64,
    /// Arrivals of measured actions at a watcher.
    pub deliveries: u64,
    /// Expected but not there within the drain.
    pub missing: u64,
    pub messages: u64,
    pub bytes: u64,
    pub closed: u64,
    /// Intended start to the arrival at each watcher.
    pub update: Summary,
    /// From the `202` to the arrival at each watcher (zero when the update
    /// came first): the P4 delivery figure.
    pub answer_to_update: Summary,
    /// From the first to the last watcher of an action: what the fan-out
    /// itself adds.
    pub spread: Summary,
}

/// One measured action's times (`std` instants, comparable with the
/// caller's own).
#[derive(Clone, Debug)]
pub struct ActionRecord {
    /// The `action_id` it was sent with (its `event_id` on `games`).
    pub id: String,
    pub game_id: u64,
    pub intended: std::time::Instant,
    /// Its `202`; `None` when it failed or none came in time.
    pub answered: Option<std::time::Instant>,
    /// Its update on the player's WebSocket; `None` when none came.
    pub update: Option<std::time::Instant>,
}

/// One objective and what was measured.
#[derive(Debug, Serialize)]
pub struct SloResult {
    #[serde(flatten)]
    pub slo: Slo,
    pub measured_ms: Option<f64>,
    pub met: bool,
}

fn row(out: &mut impl Write, name: &str, s: &Summary) -> std::io::Result<()> {
    writeln!(
        out,
        "{name:<33} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p99_9_ms, s.max_ms
    )
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
        "updates: {} matched on the WebSocket ({} applied, {} rejected), {} unmatched, {} before their 202",
        r.matched, r.applied, r.rejected, r.unmatched, r.update_before_answer
    )?;
    writeln!(
        out,
        "websocket: {} messages, {} bytes ({:.0} bytes per message)",
        r.ws_messages,
        r.ws_bytes,
        r.ws_bytes as f64 / r.ws_messages.max(1) as f64
    )?;
    let w = &r.watchers;
    if w.count > 0 {
        writeln!(
            out,
            "watchers: {} idle WebSockets, {} of {} deliveries ({} missing), {} messages, {} bytes, {} closed",
            w.count, w.deliveries, w.expected, w.missing, w.messages, w.bytes, w.closed
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "latency from intended start (ms)   count      p50      p90      p99    p99.9      max"
    )?;
    row(out, "202 (Kafka ack)", &r.ack)?;
    row(
        out,
        if r.arena {
            "update on all arena's WebSockets"
        } else {
            "update on WebSocket"
        },
        &r.update,
    )?;
    row(out, "from the 202 to the update", &r.answer_to_update)?;
    if w.count > 0 {
        row(out, "update at each watcher", &w.update)?;
        row(out, "from the 202 to each watcher", &w.answer_to_update)?;
        row(out, "first to last watcher", &w.spread)?;
    }
    if r.windows.len() > 1 {
        writeln!(out)?;
        writeln!(
            out,
            "per window (intended start)        update p50/p99 ms   202 -> update p50/p99 ms"
        )?;
        for w in &r.windows {
            writeln!(
                out,
                "  {:>5.0}-{:<5.0} s {:>8} actions {:>8.2} {:>8.2}   {:>8.2} {:>8.2}",
                w.from_s,
                w.to_s,
                w.update.count,
                w.update.p50_ms,
                w.update.p99_ms,
                w.answer_to_update.p50_ms,
                w.answer_to_update.p99_ms
            )?;
        }
    }
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
