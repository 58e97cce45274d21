//! What the admin routes answer (`/api/admin/abuse`, `/api/admin/summary`),
//! read by the bridge that writes them and by the operator page, and the
//! arithmetic the page does on two summaries (rates, windowed p99).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One source's refused requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SourceStats {
    /// The client address or the `Host`.
    pub source: String,
    pub refused: u64,
    /// Refusals by error code.
    pub codes: BTreeMap<String, u64>,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// `GET /api/admin/abuse`: the worst sources of refused requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AbuseReport {
    /// Worst client addresses first.
    pub clients: Vec<SourceStats>,
    /// Worst `Host` values first.
    pub hosts: Vec<SourceStats>,
    /// Refusal events aggregated since the bridge started reading.
    pub events: u64,
    /// The newest event's time (ms since the Unix epoch).
    pub last_event_ms: u64,
}

/// `GET /api/admin/summary`: totals since start; rates and windowed
/// percentiles come from the difference of two ([`Summary::rate`],
/// [`Summary::e2e_quantile_since`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    /// When it was taken (ms since the Unix epoch).
    pub at_ms: u64,
    /// Actions produced and acknowledged.
    pub actions: f64,
    /// HTTP requests answered.
    pub requests: f64,
    /// Open WebSockets.
    pub ws_clients: f64,
    /// `action_to_update_seconds`: cumulative (upper bound, count) buckets;
    /// the last bound, +Inf, is `null` (JSON has no infinity).
    #[serde(with = "infinite_as_null")]
    #[schemars(with = "Vec<(Option<f64>, f64)>")]
    pub e2e_buckets: Vec<(f64, f64)>,
    /// Consumer lag summed over partitions, per consumer.
    pub lag: BTreeMap<String, f64>,
    /// Refused requests by code.
    pub refusals: BTreeMap<String, f64>,
    /// Actions the rules rejected, by code.
    pub rejections: BTreeMap<String, f64>,
    pub duplicates: f64,
    pub dead_letters: f64,
    /// Requests answered 429 to banned addresses.
    pub banned_requests: f64,
    /// Log lines dropped instead of blocking.
    pub logs_dropped: f64,
}

impl Summary {
    /// Per second between `earlier` and `self` of the counter `pick` reads
    /// (0 when no time passed or the counter went back: a restart).
    pub fn rate(&self, earlier: &Summary, pick: impl Fn(&Summary) -> f64) -> f64 {
        let seconds = self.at_ms.saturating_sub(earlier.at_ms) as f64 / 1000.0;
        let delta = pick(self) - pick(earlier);
        if seconds <= 0.0 || delta < 0.0 {
            0.0
        } else {
            delta / seconds
        }
    }

    /// Refusals and rule rejections, all codes.
    pub fn refused_total(&self) -> f64 {
        self.refusals.values().sum::<f64>() + self.rejections.values().sum::<f64>()
    }

    /// Lag of every consumer together.
    pub fn lag_total(&self) -> f64 {
        self.lag.values().sum()
    }

    /// The `q` quantile (0..1) of the end-to-end latency observed between
    /// `earlier` and `self`, in seconds: the upper bound of the bucket it
    /// falls in. `None` when nothing was observed.
    pub fn e2e_quantile_since(&self, earlier: &Summary, q: f64) -> Option<f64> {
        let before: BTreeMap<u64, f64> = earlier
            .e2e_buckets
            .iter()
            .map(|(le, n)| (le.to_bits(), *n))
            .collect();
        let window: Vec<(f64, f64)> = self
            .e2e_buckets
            .iter()
            .map(|(le, n)| (*le, n - before.get(&le.to_bits()).copied().unwrap_or(0.0)))
            .collect();
        let total = window.last().map(|(_, n)| *n)?;
        if total <= 0.0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * total;
        let mut last_finite = None;
        for (le, n) in &window {
            if le.is_finite() {
                last_finite = Some(*le);
            }
            if *n >= target {
                return if le.is_finite() {
                    Some(*le)
                } else {
                    last_finite
                };
            }
        }
        last_finite
    }
}

/// Histogram buckets with an infinite upper bound written as `null` and
/// read back as +Inf (serde_json would write it as `null` and then refuse
/// to read it).
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(buckets: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        buckets
            .iter()
            .map(|&(le, n)| (le.is_finite().then_some(le), n))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        Ok(Vec::<(Option<f64>, f64)>::deserialize(d)?
            .into_iter()
            .map(|(le, n)| (le.unwrap_or(f64::INFINITY), n))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_with_the_infinite_bucket_reads_back_as_written() {
        // Found by the operator page's browser test: the +Inf bucket was
        // written as `null` and refused when read.
        let s = summary(1, 2.0, &[(0.005, 1.0), (f64::INFINITY, 2.0)]);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("[null,2.0]"), "{json}");
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
    }

    fn summary(at_ms: u64, actions: f64, buckets: &[(f64, f64)]) -> Summary {
        Summary {
            at_ms,
            actions,
            e2e_buckets: buckets.to_vec(),
            ..Summary::default()
        }
    }

    #[test]
    fn rate_is_the_difference_per_second() {
        let a = summary(1_000, 10.0, &[]);
        let b = summary(3_000, 110.0, &[]);
        assert_eq!(b.rate(&a, |s| s.actions), 50.0);
        // A restart (counter back to 0) is not a negative rate.
        assert_eq!(a.rate(&b, |s| s.actions), 0.0);
    }

    #[test]
    fn p99_of_the_window_only() {
        let inf = f64::INFINITY;
        // Before: 100 slow observations (all in the 1 s bucket).
        let a = summary(0, 0.0, &[(0.01, 0.0), (1.0, 100.0), (inf, 100.0)]);
        // Since: 1000 fast ones, 5 of them at 1 s.
        let b = summary(1, 0.0, &[(0.01, 995.0), (1.0, 1100.0), (inf, 1100.0)]);
        assert_eq!(b.e2e_quantile_since(&a, 0.99), Some(0.01));
        assert_eq!(b.e2e_quantile_since(&a, 0.999), Some(1.0));
        assert_eq!(a.e2e_quantile_since(&a, 0.99), None);
    }
}
