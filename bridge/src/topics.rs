//! Creating missing topics at start-up: `actions`, and `games` compacted.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// Why topics could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("create {0}: {1}")]
    Create(String, RDKafkaErrorCode),
}

/// Creates `actions` (`partitions`, kept forever) and `games` (same
/// partitions, compacted) if missing, replicated as the engine creates them
/// ([`engine::durability`]); existing topics are left alone.
pub async fn ensure(
    brokers: &str,
    extra: &[(String, String)],
    actions: &str,
    games: &str,
    partitions: i32,
) -> Result<(), TopicsError> {
    let admin: AdminClient<DefaultClientContext> =
        crate::kafka::client_config(brokers, extra).create()?;
    let nodes = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?
        .brokers()
        .len();
    let (rf, min_isr) = engine::durability(nodes);
    let min_isr = min_isr.to_string();
    let topics = [
        NewTopic::new(actions, partitions, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", &min_isr)
            .set("retention.ms", "-1"),
        engine::games_topic(games, partitions, rf, &min_isr),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(topic) => tracing::info!(
                topic,
                replication_factor = rf,
                min_insync_replicas = %min_isr,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicsError::Create(topic, code)),
        }
    }
    Ok(())
}
