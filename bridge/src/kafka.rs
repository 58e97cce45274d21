//! Kafka behind a small trait: the bridge publishes envelopes and learns
//! where Kafka put them. Tests swap in [`MemoryPublisher`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The real thing: an idempotent rdkafka producer with `acks=all`.
pub struct KafkaPublisher {
    producer: FutureProducer,
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
            producer: config.create()?,
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
        // The routing facts as headers too, so a consumer can filter or route
        // without parsing the JSON (three: each one costs the broker).
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "event_id",
                value: Some(envelope.event_id.as_str()),
            })
            .insert(Header {
                key: "event_type",
                value: Some(envelope.event_type.as_str()),
            })
            .insert(Header {
                key: "player_id",
                value: Some(envelope.player_id.as_str()),
            });
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .partition(partition)
            .headers(headers);
        // No queue timeout: a full local queue is a 503 now, not a hang.
        let sent = match self.producer.send_result(record) {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(PublishError::Unavailable("local queue full".into()))
            }
            Err((e, _)) => Err(unavailable(e)),
        };
        let timeout = self.timeout + Duration::from_millis(400);
        Box::pin(async move {
            let delivery = sent?;
            match tokio::time::timeout(timeout, delivery).await {
                Ok(Ok(Ok(d))) => Ok(Ack {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Ok(Err((e, _)))) => Err(unavailable(e)),
                Ok(Err(_canceled)) => Err(PublishError::Unavailable("producer closed".into())),
                Err(_) => Err(PublishError::Unavailable("no ack in time".into())),
            }
        })
    }

    fn ready(&self) -> BoxFuture<'static, bool> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                producer
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
        if let Err(e) = self.producer.flush(timeout) {
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
