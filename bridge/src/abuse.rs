//! The abuse table: refused requests aggregated per client address and per
//! `Host` from the `logs` topic, the way seed 000's ksqlDB query counted
//! SSH attack attempts per host. Every bridge ships its `refusal` events
//! to `logs` ([`crate::guard`], [`ops::logs`]); every bridge reads them
//! all back into its [`AbuseTable`], so `GET /api/admin/abuse` on any of
//! them lists the worst sources of the whole deployment.
//!
//! - [`AbuseTable`]: the pure aggregate (bounded; time comes with each
//!   event), unit-tested with plain lines.
//! - [`spawn_reader`]: the Kafka side, a thread tailing every partition of
//!   the logs topic from [`LOOKBACK`] ago.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::metrics::BridgeMetrics;

/// How far back a starting reader reads the logs topic.
pub const LOOKBACK: Duration = Duration::from_secs(15 * 60);
/// The most addresses (and hosts) the table holds; past it the source with
/// the fewest refusals gives way.
pub const CAPACITY: usize = 10_000;
/// The longest key kept (a `Host` is the client's to choose).
const MAX_KEY: usize = 128;

pub use shared::admin::{AbuseReport, SourceStats};

/// A refusal event as the log shipper writes it (a flattened JSON line).
#[derive(Deserialize)]
struct RefusalLine {
    target: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    code: String,
}

/// Refusals per client address and per `Host`.
#[derive(Debug, Default)]
pub struct AbuseTable {
    clients: HashMap<String, SourceStats>,
    hosts: HashMap<String, SourceStats>,
    events: u64,
    last_event_ms: u64,
}

impl AbuseTable {
    /// Takes one line of the logs topic, written at `at_ms`; true when it
    /// was a refusal.
    pub fn ingest(&mut self, line: &[u8], at_ms: u64) -> bool {
        // Most lines are not refusals: skip them before parsing.
        if !contains(line, b"\"refusal\"") {
            return false;
        }
        let Ok(event) = serde_json::from_slice::<RefusalLine>(line) else {
            return false;
        };
        if event.target != ops::logs::REFUSAL_TARGET {
            return false;
        }
        self.events += 1;
        self.last_event_ms = self.last_event_ms.max(at_ms);
        count(&mut self.clients, &event.client, &event.code, at_ms);
        count(&mut self.hosts, &event.host, &event.code, at_ms);
        true
    }

    /// The `n` worst clients and hosts.
    pub fn worst(&self, n: usize) -> AbuseReport {
        AbuseReport {
            clients: top(&self.clients, n),
            hosts: top(&self.hosts, n),
            events: self.events,
            last_event_ms: self.last_event_ms,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn count(table: &mut HashMap<String, SourceStats>, key: &str, code: &str, at_ms: u64) {
    let key: String = key.chars().take(MAX_KEY).collect();
    if !table.contains_key(&key) && table.len() >= CAPACITY {
        let fewest = table
            .values()
            .min_by_key(|s| (s.refused, s.last_ms))
            .map(|s| s.source.clone());
        if let Some(fewest) = fewest {
            table.remove(&fewest);
        }
    }
    let stats = table.entry(key.clone()).or_insert_with(|| SourceStats {
        source: key,
        first_ms: at_ms,
        ..SourceStats::default()
    });
    stats.refused += 1;
    stats.last_ms = stats.last_ms.max(at_ms);
    stats.first_ms = stats.first_ms.min(at_ms);
    let code: String = code.chars().take(MAX_KEY).collect();
    *stats.codes.entry(code).or_default() += 1;
}

fn top(table: &HashMap<String, SourceStats>, n: usize) -> Vec<SourceStats> {
    let mut all: Vec<&SourceStats> = table.values().collect();
    all.sort_by(|a, b| {
        b.refused
            .cmp(&a.refused)
            .then_with(|| a.source.cmp(&b.source))
    });
    all.into_iter().take(n).cloned().collect()
}

/// The table shared between its reader and the admin route.
pub type SharedTable = Arc<Mutex<AbuseTable>>;

/// Tails every partition of `topic` from [`LOOKBACK`] ago into `table`
/// until `stop`. Waits for the topic to exist.
pub fn spawn_reader(
    consumer: BaseConsumer<ops::metrics::LagContext>,
    topic: String,
    table: SharedTable,
    metrics: BridgeMetrics,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("abuse-reader".into())
        .spawn(move || read(consumer, &topic, &table, &metrics, &stop))
}

fn read(
    consumer: BaseConsumer<ops::metrics::LagContext>,
    topic: &str,
    table: &SharedTable,
    metrics: &BridgeMetrics,
    stop: &AtomicBool,
) {
    // Assign every partition, from LOOKBACK ago.
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match assign(&consumer, topic) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, topic, "logs topic not readable yet"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tracing::info!(topic, "abuse table reading the logs topic");
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut timeout = Duration::from_millis(100);
        while batch.len() < 1024 {
            match consumer.poll(timeout) {
                Some(Ok(msg)) => {
                    let at = msg.timestamp().to_millis().unwrap_or(0).max(0) as u64;
                    if let Some(payload) = msg.payload() {
                        batch.push((payload.to_vec(), at));
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "logs topic");
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        let mut table = table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (line, at) in batch {
            if table.ingest(&line, at) {
                metrics.abuse_events.inc();
            }
        }
    }
}

/// Assigns every partition of `topic` from [`LOOKBACK`] ago; false while
/// the topic has no partitions.
fn assign(
    consumer: &BaseConsumer<ops::metrics::LagContext>,
    topic: &str,
) -> Result<bool, rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(false);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(false);
    }
    let since = crate::enrich::now_ms().saturating_sub(LOOKBACK.as_millis() as u64);
    let mut times = TopicPartitionList::new();
    for p in t.partitions() {
        times.add_partition_offset(topic, p.id(), Offset::Offset(since as i64))?;
    }
    let offsets = consumer.offsets_for_times(times, Duration::from_secs(5))?;
    let mut tpl = TopicPartitionList::new();
    for e in offsets.elements() {
        // No record since then: start at the end.
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => Offset::Offset(o),
            _ => Offset::End,
        };
        tpl.add_partition_offset(topic, e.partition(), offset)?;
    }
    consumer.assign(&tpl)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(client: &str, host: &str, code: &str) -> Vec<u8> {
        serde_json::json!({
            "timestamp": "2026-12-01T00:00:00Z", "level": "INFO", "message": "refused",
            "client": client, "host": host, "code": code, "status": 401, "route": "/x",
            "target": "refusal"
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn counts_refusals_per_client_and_per_host_worst_first() {
        let mut table = AbuseTable::default();
        for _ in 0..3 {
            assert!(table.ingest(&line("10.0.0.9", "evil", "unauthorized"), 5));
        }
        assert!(table.ingest(&line("10.0.0.9", "evil", "bad_request"), 7));
        assert!(table.ingest(&line("10.0.0.1", "nice", "unauthorized"), 6));
        assert!(!table.ingest(br#"{"target":"bridge","message":"hello"}"#, 8));
        assert!(!table.ingest(b"not json \"refusal\"", 8));
        let report = table.worst(10);
        assert_eq!(report.events, 5);
        assert_eq!(report.last_event_ms, 7);
        assert_eq!(report.clients[0].source, "10.0.0.9");
        assert_eq!(report.clients[0].refused, 4);
        assert_eq!(report.clients[0].codes["bad_request"], 1);
        assert_eq!(report.clients[0].first_ms, 5);
        assert_eq!(report.clients[0].last_ms, 7);
        assert_eq!(report.hosts[1].source, "nice");
        assert_eq!(table.worst(1).clients.len(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = AbuseTable::default();
        for _ in 0..5 {
            table.ingest(&line("attacker", "h", "unauthorized"), 1);
        }
        for i in 0..CAPACITY + 50 {
            table.ingest(&line(&format!("passer-{i}"), "h", "unauthorized"), 2);
        }
        assert_eq!(table.clients.len(), CAPACITY);
        assert_eq!(table.worst(1).clients[0].source, "attacker");
    }
}
