//! Logs into Kafka, as seed 000 shipped syslog with fluent-bit: every
//! process can send its structured (JSON) logs to a `logs` topic.
//!
//! [`crate::init_tracing`] installs a JSON layer whose lines go to the
//! process's [`LogShipper`], once one is started ([`LogShipper::start`],
//! when `LOG_TOPIC` is set). Until then, and after it stops, the layer is
//! off and costs nothing but a flag check per event.
//!
//! The game never waits for the logs: a line goes into a bounded buffer
//! (`try_send`); when the buffer is full (Kafka slow or away) the line is
//! dropped and counted (`logs_dropped_total{reason="buffer"}`), and so is a
//! line librdkafka's own queue refuses (`reason="kafka_queue"`). One thread
//! drains the buffer into a producer.
//!
//! What is shipped: `INFO` and above, among them the `refusal` target's
//! events (the bridge's refused requests, which the abuse table reads),
//! never librdkafka's own logs (a broker that is away must not feed itself).
//! Nothing below `INFO`, so that DEBUG call sites stay off for free.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

use crate::metrics::Registry;

/// The target of refused-request events (the abuse table's input).
pub const REFUSAL_TARGET: &str = "refusal";

/// Default capacity of the buffer between the game and the shipping thread.
pub const DEFAULT_BUFFER: usize = 10_000;

/// Whether a shipper is running: the layer's filter.
static ON: AtomicBool = AtomicBool::new(false);

/// Where the layer's lines go: the running shipper's buffer, with the
/// shipper's number (a shipper that stops clears only its own).
static SINK: Mutex<Option<(u64, Sink)>> = Mutex::new(None);

/// Numbers shippers.
static NEXT: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
struct Sink {
    tx: SyncSender<Vec<u8>>,
    counters: Counters,
}

/// Labels of dropped lines.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `buffer` (the bounded buffer was full) or `kafka_queue`.
    pub reason: &'static str,
}

/// The shipper's counters.
#[derive(Clone, Default)]
pub struct Counters {
    /// Lines handed to the producer.
    pub shipped: Counter,
    /// Lines dropped instead of blocking, by reason.
    pub dropped: Family<DropLabels, Counter>,
}

/// Whether an event goes to Kafka (given a shipper runs).
pub fn shipped(meta: &Metadata<'_>) -> bool {
    if !ON.load(Ordering::Relaxed) {
        return false;
    }
    let target = meta.target();
    if target.starts_with("rdkafka") || target.starts_with("ops::logs") {
        return false;
    }
    *meta.level() <= tracing::Level::INFO
}

/// The layer's writer: one formatted line per `write`, handed to the buffer.
#[derive(Clone, Copy, Default)]
pub struct KafkaWriter;

impl<'a> MakeWriter<'a> for KafkaWriter {
    type Writer = KafkaWriter;

    fn make_writer(&'a self) -> Self::Writer {
        KafkaWriter
    }
}

impl io::Write for KafkaWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = buf.strip_suffix(b"\n").unwrap_or(buf);
        if line.is_empty() {
            return Ok(buf.len());
        }
        let sink = SINK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(_, sink)| sink.clone());
        if let Some(sink) = sink {
            match sink.tx.try_send(line.to_vec()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    sink.counters
                        .dropped
                        .get_or_create(&DropLabels { reason: "buffer" })
                        .inc();
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The running shipper; dropping it (or [`LogShipper::stop`]) flushes
/// what is buffered (for up to 2 s) and turns the layer off.
pub struct LogShipper {
    id: u64,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Its counters (also registered in the registry it was given).
    pub counters: Counters,
}

/// Why shipping could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl LogShipper {
    /// Starts shipping this process's logs to `topic` on `brokers`, through
    /// a buffer of `buffer` lines, counting into `registry`. A shipper
    /// started later replaces this one as the layer's destination.
    pub fn start(
        brokers: &str,
        topic: &str,
        extra: &[(String, String)],
        buffer: usize,
        registry: &Registry,
    ) -> Result<LogShipper, LogsError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "50")
            .set("compression.type", "lz4")
            // A line is worth little: never retry for long, never block.
            .set("message.timeout.ms", "30000")
            .set("queue.buffering.max.messages", "100000");
        for (k, v) in extra {
            config.set(k, v);
        }
        let producer: BaseProducer = config.create()?;
        let counters = Counters::default();
        registry.register(
            "logs_shipped",
            "Log lines handed to the Kafka producer (LOG_TOPIC)",
            counters.shipped.clone(),
        );
        registry.register(
            "logs_dropped",
            "Log lines dropped instead of blocking, by reason",
            counters.dropped.clone(),
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(buffer.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let counters = counters.clone();
            let topic = topic.to_string();
            std::thread::Builder::new()
                .name("log-shipper".into())
                .spawn(move || ship(producer, &topic, rx, &counters, &stop))?
        };
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        *SINK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((
            id,
            Sink {
                tx,
                counters: counters.clone(),
            },
        ));
        ON.store(true, Ordering::Relaxed);
        Ok(LogShipper {
            id,
            stop,
            thread: Some(thread),
            counters,
        })
    }

    /// Stops shipping: what is buffered is sent (for up to 2 s).
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            {
                let mut sink = SINK
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if sink.as_ref().is_some_and(|(id, _)| *id == self.id) {
                    *sink = None;
                    ON.store(false, Ordering::Relaxed);
                }
            }
            self.stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

impl Drop for LogShipper {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    extra: &[(String, String)],
) -> Result<(), LogsError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::types::RDKafkaErrorCode;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in extra {
        config.set(k, v);
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = config.create()?;
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(-1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&[new], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(LogsError::Kafka(rdkafka::error::KafkaError::AdminOp(code)))
            }
        }
    }
    Ok(())
}

fn ship(
    producer: BaseProducer,
    topic: &str,
    rx: Receiver<Vec<u8>>,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let send = |line: Vec<u8>| {
        let record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).payload(&line[..]);
        match producer.send(record) {
            Ok(()) => {
                counters.shipped.inc();
            }
            Err(_) => {
                counters
                    .dropped
                    .get_or_create(&DropLabels {
                        reason: "kafka_queue",
                    })
                    .inc();
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                send(line);
                // Drain what is waiting before serving the producer.
                while let Ok(line) = rx.try_recv() {
                    send(line);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        producer.poll(Duration::ZERO);
    }
    while let Ok(line) = rx.try_recv() {
        send(line);
    }
    let _ = producer.flush(Duration::from_secs(2));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_blocking() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(2);
        let counters = Counters::default();
        *SINK.lock().unwrap() = Some((
            0,
            Sink {
                tx,
                counters: counters.clone(),
            },
        ));
        let mut writer = KafkaWriter;
        for _ in 0..5 {
            io::Write::write_all(&mut writer, b"{\"a\":1}\n").unwrap();
        }
        *SINK.lock().unwrap() = None;
        assert_eq!(
            counters
                .dropped
                .get_or_create(&DropLabels { reason: "buffer" })
                .get(),
            3
        );
    }
}
