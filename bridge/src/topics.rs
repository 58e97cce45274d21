//! Creating missing topics at start-up, as the engine creates them
//! ([`engine::create_topics`]: one place decides partitions, replication,
//! retention and compaction for every role).

/// Creates `actions` and `games` (with `partitions`), and the engine's
/// dead-letter and remembered-ids topics beside them, if missing; existing
/// topics are left alone.
pub async fn ensure(
    brokers: &str,
    extra: &[(String, String)],
    actions: &str,
    games: &str,
    partitions: i32,
) -> Result<(), engine::EngineError> {
    let mut config = engine::Config::new(brokers);
    config.actions_topic = actions.to_string();
    config.games_topic = games.to_string();
    config.dlq_topic = format!("{actions}.dlq");
    config.partitions = partitions;
    config.extra = extra.to_vec();
    engine::create_topics(&config).await
}
