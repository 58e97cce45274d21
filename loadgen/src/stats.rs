//! Latency summaries from HdrHistograms (microseconds), and loadgen's own CPU
//! time (so its figures can be trusted: a loaded load generator lies).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded: one minute, in microseconds.
const MAX_US: u64 = 60_000_000;

/// A histogram of microseconds, 1 µs to 60 s, three significant digits.
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// The figures the report prints, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Summary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e3,
        }
    }
}

/// The value at `quantile` (1.0 = max) in ms, `None` when nothing was recorded.
pub fn quantile_ms(h: &Histogram<u64>, quantile: f64) -> Option<f64> {
    if h.is_empty() {
        return None;
    }
    let us = if quantile >= 1.0 {
        h.max()
    } else {
        h.value_at_quantile(quantile)
    };
    Some(us as f64 / 1e3)
}

/// This process's user + system CPU seconds so far (Linux `/proc/self/stat`,
/// all threads; `None` elsewhere).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12th and 13th here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in USER_HZ, 100 on every mainstream architecture.
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_in_milliseconds() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).expect("in range");
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(quantile_ms(&histogram(), 0.99), None);
    }

    #[test]
    fn reads_its_own_cpu_time() {
        let before = cpu_seconds().expect("linux /proc");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds().expect("linux /proc") >= before);
    }
}
