//! What `lake export` is told: where from, where to, and when to cut a batch.

use std::time::Duration;

/// Whether the exporter follows the topics or exports what is there and stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Runs until stopped.
    Follow,
    /// `--once`: exports every partition up to its end as of now, then exits.
    Once,
}

impl Mode {
    /// The name kept in `etl_meta.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Follow => "follow",
            Mode::Once => "once",
        }
    }
}

/// When a partition's open batch becomes files. A batch is cut when any
/// limit is reached; all three are configurable (`--max-rows`,
/// `--max-bytes`, `--max-age-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollPolicy {
    pub max_rows: usize,
    /// Bytes of records held (keys, values, headers).
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy {
            max_rows: 200_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(30),
        }
    }
}

impl RollPolicy {
    /// Whether a batch of `rows` records holding `bytes`, opened `age` ago,
    /// is due. Time is an argument, so this is tested without a clock.
    pub fn due(&self, rows: usize, bytes: usize, age: Duration) -> bool {
        rows > 0 && (rows >= self.max_rows || bytes >= self.max_bytes || age >= self.max_age)
    }
}

/// Everything `lake export` needs.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    pub brokers: String,
    pub actions_topic: String,
    /// `None`: do not export outcomes.
    pub games_topic: Option<String>,
    pub mode: Mode,
    pub roll: RollPolicy,
    /// Cap on the bytes held by all open batches together: past it the
    /// largest batch is cut early, so memory stays bounded whatever the
    /// partition count.
    pub max_buffered_bytes: usize,
    /// How often progress (records/s, lag per partition) is logged.
    pub progress_every: Duration,
    /// Following: how often the topic is checked for partitions added
    /// since the export started (they are exported from their start).
    pub partition_check: Duration,
    /// Extra librdkafka settings (`-X key=value`).
    pub extra: Vec<(String, String)>,
    /// Where the export's metrics go (consumer lag per partition).
    pub registry: ops::metrics::Registry,
}

impl ExportConfig {
    /// Defaults for `brokers`: topics `actions` and `games`, follow mode.
    pub fn new(brokers: impl Into<String>) -> ExportConfig {
        ExportConfig {
            brokers: brokers.into(),
            actions_topic: "actions".into(),
            games_topic: Some("games".into()),
            mode: Mode::Follow,
            roll: RollPolicy::default(),
            max_buffered_bytes: 256 << 20,
            progress_every: Duration::from_secs(5),
            partition_check: Duration::from_secs(10),
            extra: Vec::new(),
            registry: ops::metrics::Registry::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_batch_is_never_due() {
        let p = RollPolicy::default();
        assert!(!p.due(0, 0, Duration::from_secs(3600)));
    }

    #[test]
    fn each_limit_alone_cuts_a_batch() {
        let p = RollPolicy {
            max_rows: 10,
            max_bytes: 1000,
            max_age: Duration::from_secs(5),
        };
        assert!(!p.due(9, 999, Duration::from_millis(4999)));
        assert!(p.due(10, 1, Duration::ZERO));
        assert!(p.due(1, 1000, Duration::ZERO));
        assert!(p.due(1, 1, Duration::from_secs(5)));
    }
}
