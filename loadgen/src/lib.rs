//! # loadgen: load for Build a Nation
//!
//! Three commands (the binary `loadgen`):
//! - `loadgen produce` / `loadgen consume`: seed 004's spin-event producer and
//!   consumer, same flags and defaults (`-t -b -l -e -m -x -p`), to any topic.
//! - `loadgen play --url <bridge>`: simulated players that join games over
//!   the bridge's HTTP API, watch them over WebSockets and act at a fixed
//!   open-model rate; latencies are measured from each action's *intended*
//!   start (coordinated omission corrected, as wrk2 does); `--watchers N`
//!   adds idle WebSocket clients whose deliveries are measured too (the
//!   fan-out). The end-to-end benches in `tests/benches` call it as a library.
//!
//! # Layout
//! - [`spin`]: the seed's event and its generator (pure: the random source
//!   and the clock are arguments).
//! - [`produce`], [`consume`]: the seed's two Kafka commands.
//! - [`slo`]: `--slo p99=20ms` objectives, parsed and checked.
//! - [`stats`]: HdrHistogram summaries and loadgen's own CPU time.
//! - [`play`]: the simulated players, the idle watchers and their report.

pub mod consume;
pub mod play;
pub mod produce;
pub mod slo;
pub mod spin;
pub mod stats;

/// Parses `key=value` (extra librdkafka settings, `-X key=value` as kcat does).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}
