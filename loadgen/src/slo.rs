//! `--slo p99=20ms`: service-level objectives on the measured latencies.
//!
//! A key is a percentile (`p50`, `p90`, `p99`, `p99.9`, `max`) of the
//! end-to-end latency (intended start to the update on the WebSocket), or
//! the same prefixed with `ack.` for the latency to the `202`, or with
//! `watchers.` for the arrival at each idle watcher (`--watchers`). Several
//! objectives may be given, comma-separated or with `--slo` repeated.

use std::time::Duration;

use serde::Serialize;

/// Which latency an objective bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Intended start to the `202` (Kafka's ack).
    Ack,
    /// Intended start to the update (applied or rejected) on the WebSocket.
    Update,
    /// Intended start to the update's arrival at each idle watcher.
    Watchers,
}

/// One objective: `quantile` of `target` at most `limit`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Slo {
    /// The text as given, for the report.
    pub spec: String,
    pub target: Target,
    /// 0.0..=1.0; 1.0 is the maximum.
    pub quantile: f64,
    #[serde(serialize_with = "as_ms")]
    pub limit: Duration,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// Parses `p99=20ms[,ack.p50=5ms...]`.
pub fn parse(s: &str) -> Result<Vec<Slo>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_one)
        .collect()
}

fn parse_one(spec: &str) -> Result<Slo, String> {
    let (key, value) = spec
        .split_once('=')
        .ok_or_else(|| format!("expected key=duration (p99=20ms), got {spec:?}"))?;
    let key = key.trim();
    let (target, key) = if let Some(rest) = key.strip_prefix("ack.") {
        (Target::Ack, rest)
    } else if let Some(rest) = key.strip_prefix("watchers.") {
        (Target::Watchers, rest)
    } else {
        (Target::Update, key)
    };
    let quantile = match key {
        "max" => 1.0,
        p => {
            let n: f64 = p
                .strip_prefix('p')
                .and_then(|n| n.parse().ok())
                .filter(|n: &f64| *n > 0.0 && *n <= 100.0)
                .ok_or_else(|| {
                    format!("unknown percentile {p:?}: use p50, p90, p99, p99.9 or max")
                })?;
            n / 100.0
        }
    };
    Ok(Slo {
        spec: spec.to_string(),
        target,
        quantile,
        limit: parse_duration(value.trim())?,
    })
}

/// `20ms`, `1.5s`, `500us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} needs a unit (us, ms, s)"))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("bad number in {s:?}"))?;
    let secs = match unit {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (us, ms, s)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percentiles_targets_and_units() {
        let slos =
            parse("p99=20ms, ack.p50=500us,max=1.5s,p99.9=30ms,watchers.p99=50ms").expect("parse");
        assert_eq!(slos.len(), 5);
        assert_eq!(slos[4].target, Target::Watchers);
        assert_eq!(slos[4].quantile, 0.99);
        assert_eq!(slos[0].target, Target::Update);
        assert_eq!(slos[0].quantile, 0.99);
        assert_eq!(slos[0].limit, Duration::from_millis(20));
        assert_eq!(slos[1].target, Target::Ack);
        assert_eq!(slos[1].limit, Duration::from_micros(500));
        assert_eq!(slos[2].quantile, 1.0);
        assert_eq!(slos[2].limit, Duration::from_millis(1500));
        assert!((slos[3].quantile - 0.999).abs() < 1e-12);
    }

    #[test]
    fn refuses_unknown_keys_and_units() {
        assert!(parse("p99").is_err());
        assert!(parse("q99=1ms").is_err());
        assert!(parse("p99=1h").is_err());
        assert!(parse("p99=20").is_err());
        assert!(parse("p0=1ms").is_err());
    }
}
