//! Kafka behind a small trait: the bridge publishes envelopes and learns
//! where Kafka put them. Tests swap in [`MemoryPublisher`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use shared::{partition_for, ActionEnvelope};

/// Where Kafka stored a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

/// Why a publish did not get an ack.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The local queue is full, the broker is unreachable, or the ack did not
    /// come in time: a 503, the client retries with the same action id.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("could not encode the action: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Publishes actions and answers once they are acknowledged.
pub trait Publisher: Send + Sync + 'static {
    /// Produces `envelope` to its game's partition; resolves with the ack.
    fn publish(&self, envelope: &ActionEnvelope) -> BoxFuture<'static, Result<Ack, PublishError>>;
    /// Whether the broker answers now (for `/readyz`).
    fn ready(&self) -> BoxFuture<'static, bool>;
    /// Waits for in-flight records before exit.
    fn flush(&self, timeout: Duration);
}

/// The common librdkafka settings of every client of ours, plus `-X` extras.
pub fn client_config(brokers: &str, extra: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in extra {
        config.set(k, v);
    }
    config
}

/// The producer settings of the bridge (and of its benchmark baseline):
/// `acks=all`, idempotent, `linger.ms` as measured, a bounded delivery time.
pub fn producer_config(
    brokers: &str,
    extra: &[(String, String)],
    linger_ms: u32,
    timeout: Duration,
) -> ClientConfig {
    let mut config = client_config(brokers, &[]);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "none")
        .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
        .set("socket.connection.setup.timeout.ms", "1000")
        .set("queue.buffering.max.messages", "200000");
    for (k, v) in extra {
        config.set(k, v);
    }
    config
}

/// The real thing: an idempotent rdkafka producer with `acks=all`,
/// replaced by a new one when it stops delivering ([`Renewal`]).
pub struct KafkaPublisher {
    /// Read (never cloned) for each send, so that a replaced producer's
    /// last owner is the renewal, which drops it off the runtime.
    producer: Arc<RwLock<FutureProducer>>,
    renewal: Arc<Renewal>,
    topic: Arc<str>,
    partitions: i32,
    timeout: Duration,
    /// The registry id of the `actions` schema, when records are framed.
    schema_id: Option<u32>,
}

impl KafkaPublisher {
    /// Creates the producer. `linger_ms` was chosen by measurement (see
    /// BENCHMARKS.md); `timeout` bounds how long a request waits for an ack.
    pub fn new(
        brokers: &str,
        extra: &[(String, String)],
        topic: &str,
        partitions: i32,
        linger_ms: u32,
        timeout: Duration,
    ) -> Result<KafkaPublisher, KafkaError> {
        let config = producer_config(brokers, extra, linger_ms, timeout);
        Ok(KafkaPublisher {
            producer: Arc::new(RwLock::new(config.create()?)),
            renewal: Arc::new(Renewal::new(config)),
            topic: topic.into(),
            partitions,
            schema_id: None,
            timeout,
        })
    }
}

fn unavailable(e: KafkaError) -> PublishError {
    PublishError::Unavailable(e.to_string())
}

/// How long a producer may go without one delivery, while actions fail,
/// before it is replaced by a new one.
pub const RENEW_AFTER: Duration = Duration::from_secs(10);

/// Replaces a producer that has stopped delivering. Measured
/// (RELIABILITY.md, sixteenth session): after a 10 s broker outage under
/// load, once in 13 runs, the bridge's producer timed every record out for
/// the whole minute after the broker was back, while the engine's new
/// clients worked at once. A new producer (a new producer id, fresh
/// metadata) costs nothing that was acknowledged: the records the old one
/// held were answered 503, and players retry them with the same action id,
/// which the engine applies once.
struct Renewal {
    config: ClientConfig,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last delivery, or of the last
    /// renewal (a new producer gets its own [`RENEW_AFTER`]).
    last_good_ms: AtomicU64,
    renewing: AtomicBool,
}

impl Renewal {
    fn new(config: ClientConfig) -> Renewal {
        Renewal {
            config,
            epoch: Instant::now(),
            last_good_ms: AtomicU64::new(0),
            renewing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn delivered(&self) {
        self.last_good_ms
            .fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    /// Called on a failed delivery: replaces the producer, on a blocking
    /// thread, when nothing was delivered for [`RENEW_AFTER`].
    fn failed(self: &Arc<Self>, slot: &Arc<RwLock<FutureProducer>>) {
        let now = self.now_ms();
        if !renewal_due(self.last_good_ms.load(Ordering::Relaxed), now)
            || self.renewing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.last_good_ms.fetch_max(now, Ordering::Relaxed);
        let (renewal, slot) = (self.clone(), slot.clone());
        tokio::task::spawn_blocking(move || {
            match renewal.config.create::<FutureProducer>() {
                Ok(new) => {
                    let old = std::mem::replace(
                        &mut *slot.write().unwrap_or_else(|e| e.into_inner()),
                        new,
                    );
                    tracing::warn!(
                        after_s = RENEW_AFTER.as_secs(),
                        "the producer delivered nothing while actions failed: replaced by a new one"
                    );
                    // Purges what it still holds (those actions were
                    // answered 503) and waits for its threads: here, off
                    // the runtime's workers.
                    drop(old);
                }
                Err(e) => tracing::warn!(error = %e, "could not create a new producer"),
            }
            renewal.renewing.store(false, Ordering::Release);
        });
    }
}

/// Whether a producer whose last delivery (or renewal) was at
/// `last_good_ms` is due for a new one at `now_ms`.
fn renewal_due(last_good_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(last_good_ms) >= RENEW_AFTER.as_millis() as u64
}

impl KafkaPublisher {
    /// Frames every record with the schema registry id `schema_id` (the
    /// Confluent wire format, [`shared::framing`]).
    pub fn framed_with(mut self, schema_id: u32) -> KafkaPublisher {
        self.schema_id = Some(schema_id);
        self
    }
}

impl Publisher for KafkaPublisher {
    fn publish(&self, envelope: &ActionEnvelope) -> BoxFuture<'static, Result<Ack, PublishError>> {
        let payload = match shared::framing::to_vec(self.schema_id, envelope) {
            Ok(p) => p,
            Err(e) => return Box::pin(async move { Err(PublishError::Encode(e)) }),
        };
        let key = envelope.game_id.to_string();
        let partition = partition_for(envelope.game_id, self.partitions);
        let headers = envelope.kafka_headers().into_iter().fold(
            OwnedHeaders::new_with_capacity(3),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            },
        );
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .partition(partition)
            .headers(headers);
        // No queue timeout: a full local queue is a 503 now, not a hang.
        let sent = match self
            .producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .send_result(record)
        {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(PublishError::Unavailable("local queue full".into()))
            }
            Err((e, _)) => Err(unavailable(e)),
        };
        let timeout = self.timeout + Duration::from_millis(400);
        let (renewal, slot) = (self.renewal.clone(), self.producer.clone());
        Box::pin(async move {
            let delivery = sent?;
            let result = match tokio::time::timeout(timeout, delivery).await {
                Ok(Ok(Ok(d))) => Ok(Ack {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Ok(Err((e, _)))) => Err(unavailable(e)),
                Ok(Err(_canceled)) => Err(PublishError::Unavailable("producer closed".into())),
                Err(_) => Err(PublishError::Unavailable("no ack in time".into())),
            };
            match &result {
                Ok(_) => renewal.delivered(),
                Err(_) => renewal.failed(&slot),
            }
            result
        })
    }

    fn ready(&self) -> BoxFuture<'static, bool> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                producer
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .client()
                    .fetch_metadata(Some(&topic), Timeout::After(Duration::from_millis(1500)))
                    .map(|m| {
                        m.topics()
                            .iter()
                            .any(|t| t.error().is_none() && !t.partitions().is_empty())
                    })
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false)
        })
    }

    fn flush(&self, timeout: Duration) {
        let flushed = self
            .producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .flush(timeout);
        if let Err(e) = flushed {
            tracing::warn!(error = %e, "producer flush incomplete at shutdown");
        }
    }
}

/// An in-memory publisher for handler tests: keeps what it was given.
#[derive(Default)]
pub struct MemoryPublisher {
    /// Every envelope published, in order.
    pub published: Mutex<Vec<ActionEnvelope>>,
    /// When set, every publish fails as if the broker were down.
    pub down: std::sync::atomic::AtomicBool,
    pub partitions: i32,
}

impl Publisher for MemoryPublisher {
    fn publish(&self, envelope: &ActionEnvelope) -> BoxFuture<'static, Result<Ack, PublishError>> {
        let result = if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(PublishError::Unavailable("memory publisher is down".into()))
        } else {
            let mut published = self.published.lock().expect("lock");
            published.push(envelope.clone());
            Ok(Ack {
                partition: partition_for(envelope.game_id, self.partitions.max(1)),
                offset: published.len() as i64 - 1,
            })
        };
        Box::pin(async move { result })
    }

    fn ready(&self) -> BoxFuture<'static, bool> {
        let up = !self.down.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { up })
    }

    fn flush(&self, _: Duration) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_is_renewed_only_after_a_whole_quiet_spell() {
        let after = RENEW_AFTER.as_millis() as u64;
        assert!(!renewal_due(0, 0));
        assert!(!renewal_due(5_000, 5_000 + after - 1));
        assert!(renewal_due(5_000, 5_000 + after));
        // A clock read before the last delivery was recorded: not due.
        assert!(!renewal_due(9_000, 8_000));
    }

    #[tokio::test]
    async fn a_failure_after_a_quiet_spell_renews_once_and_restarts_the_spell() {
        let config = producer_config("127.0.0.1:1", &[], 1, Duration::from_millis(100));
        let slot = Arc::new(RwLock::new(config.create::<FutureProducer>().unwrap()));
        // A publisher whose last delivery was longer ago than RENEW_AFTER.
        let renewal = Arc::new(Renewal {
            epoch: Instant::now() - RENEW_AFTER - Duration::from_secs(1),
            ..Renewal::new(config)
        });
        let handle = |slot: &Arc<RwLock<FutureProducer>>| {
            slot.read().unwrap().client().native_ptr() as usize
        };
        let before = handle(&slot);
        renewal.failed(&slot);
        let started = renewal.last_good_ms.load(Ordering::Relaxed);
        assert!(
            started >= RENEW_AFTER.as_millis() as u64,
            "the spell restarts at the renewal"
        );
        // A second failure right after finds the spell restarted: no renewal.
        renewal.failed(&slot);
        let deadline = Instant::now() + Duration::from_secs(10);
        while renewal.renewing.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the renewal never finished");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(renewal.last_good_ms.load(Ordering::Relaxed), started);
        assert_ne!(handle(&slot), before, "the producer was not replaced");
    }
}
