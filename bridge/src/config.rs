//! The bridge's configuration: flags that mirror environment variables.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// Everything the bridge reads from flags and the environment, parsed once in
/// `main` and passed down.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "bridge",
    version,
    about = "Build a Nation: the HTTP/WebSocket edge to Kafka (and, in dev, the whole game)"
)]
pub struct Config {
    /// Kafka bootstrap servers. Required by the `bridge` binary; the `nation`
    /// binary (`make run`) starts a local Apache Kafka when it is unset.
    #[arg(long = "brokers", env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    #[arg(long, env = "ACTIONS_TOPIC", default_value = "actions")]
    pub actions_topic: String,
    #[arg(long, env = "GAMES_TOPIC", default_value = "games")]
    pub games_topic: String,
    /// A Confluent-compatible schema registry (`http://registry:8081`, or
    /// Apicurio's `http://host:port/apis/ccompat/v7`). Set: the bridge
    /// registers the schema of `actions` records under
    /// `<actions topic>-ActionEnvelope` (TopicRecordNameStrategy) at start-up
    /// and writes each record in the Confluent wire format (magic byte 0,
    /// the schema id, the JSON). Unset: plain JSON. Readers take both.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// Partitions of both topics, used when creating them (and to pick a game's
    /// partition: `game_id mod partitions`).
    #[arg(long, env = "PARTITIONS", default_value_t = shared::DEFAULT_PARTITIONS)]
    pub partitions: i32,
    /// The game the seed's GET endpoints play in.
    #[arg(long, env = "DEFAULT_GAME", default_value_t = 1)]
    pub default_game: u64,
    /// Where the built frontend is (trunk's `dist/`).
    #[arg(long, env = "STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,
    /// Secret that signs player tokens. Unset: a random one per start (dev);
    /// set it in production so tokens survive restarts and work on every bridge.
    #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Previous token secrets (comma-separated): their tokens are still
    /// accepted, new ones are signed with `TOKEN_SECRET`. To rotate: add the
    /// new secret here on every bridge, then make it `TOKEN_SECRET` and move
    /// the old one here; drop the old one once its tokens have expired.
    #[arg(
        long,
        env = "TOKEN_PREVIOUS_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub token_previous_secrets: Vec<String>,
    /// How long a new player token is valid, in seconds (default 30 days).
    #[arg(long, env = "TOKEN_TTL_S", default_value_t = crate::auth::DEFAULT_TOKEN_TTL_S)]
    pub token_ttl_s: u64,
    /// Accept first-format (`v1`, no expiry) tokens while the secret that
    /// signed them is configured.
    #[arg(long, env = "TOKEN_ACCEPT_V1", default_value_t = true, action = ArgAction::Set)]
    pub token_accept_v1: bool,
    /// How long a client may take to send a request head (ms); also how long
    /// an idle keep-alive connection stays open. Slowloris guard.
    #[arg(long, env = "HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// How long a client may take to send a whole request body (ms): `408`.
    #[arg(long, env = "BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Open connections (WebSockets included) allowed per client address;
    /// one more is answered `429` and closed. Trusted proxies are exempt.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDR", default_value_t = crate::serve::DEFAULT_MAX_CONNECTIONS_PER_ADDR)]
    pub max_connections_per_addr: usize,
    /// Serve the seed's classic GET endpoints (`/purchase_a_sword`, ...).
    #[arg(long, env = "SEED_ENDPOINTS", default_value_t = true, action = ArgAction::Set)]
    pub seed_endpoints: bool,
    /// Peers whose `X-Forwarded-For` is believed (comma-separated IPs).
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
    /// The engines' consumer group: its description tells which engine
    /// owns which partition, and so whom to ask for a game's state.
    #[arg(long, env = "ENGINE_GROUP_ID", default_value = "engine")]
    pub engine_group: String,
    /// `isolation.level` of the `games` reader. `read_committed` shows an
    /// update once its transaction commits; `read_uncommitted` as soon as the
    /// engine produced it, which is what a streaming engine
    /// (`ENGINE_COMMIT_INTERVAL_MS`) needs to be fast. Safe because the
    /// engine is deterministic: if a transaction aborts, the engine that
    /// takes over produces the same versions with the same states again.
    ///
    /// Default `read_uncommitted`, with the engine's streaming transactions:
    /// measured on Apache Kafka at 2,000 actions/s, an update reaches the
    /// WebSocket at p50 4 ms instead of 312 ms (`read_committed`, one
    /// transaction per batch); BENCHMARKS.md.
    #[arg(long, env = "GAMES_ISOLATION", default_value = "read_uncommitted",
          value_parser = ["read_committed", "read_uncommitted"])]
    pub games_isolation: String,
    /// The producer's `linger.ms`: 1 ms, measured on Apache Kafka
    /// (BENCHMARKS.md, P1 and P2, twenty-third session). It is the only
    /// setting that meets both goals: a closed-loop client of 256
    /// connections gets 0.86 of a tuned bare producer at 1 ms, 0.49 at
    /// 5 ms (capped by the wait); at 2,000 actions/s from players, answer ->
    /// update p99 was 13-17 ms at 1 ms and 5-14 ms at 5 ms (goal 20), and
    /// what a player waits for from the click, p50, 2 ms less at 1 ms. At 5
    /// ms that wait's p99 was lower (fewer, fuller produce requests leave
    /// this machine's 2 cores to the broker and the engine).
    #[arg(long, env = "LINGER_MS", default_value_t = 1)]
    pub linger_ms: u32,
    /// How long a produce may wait for Kafka's ack before the request gets a
    /// 503 (the record may still land later: clients retry with the same id).
    #[arg(long, env = "PRODUCE_TIMEOUT_MS", default_value_t = 1500)]
    pub produce_timeout_ms: u64,
    /// `fetch.wait.max.ms` of the `games` reader (and, in `nation`, of the
    /// in-process engine's and leaderboards' consumers): Apache Kafka answers
    /// a parked fetch as soon as a record is appended, so this bounds only an
    /// idle wait (see `ops::FETCH_WAIT_MAX_MS`).
    #[arg(long, env = "FETCH_WAIT_MAX_MS", default_value_t = ops::FETCH_WAIT_MAX_MS)]
    pub fetch_wait_max_ms: u32,
    /// Token of the admin routes (`/api/admin/...`, the operator page's
    /// data, campaign changes): `Authorization: Bearer <ADMIN_TOKEN>`.
    /// Unset: they are refused.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Ship this process's JSON logs to this topic (created if missing),
    /// and read the refused requests there into the abuse table
    /// (`GET /api/admin/abuse`). Unset: no shipping, an empty table.
    #[arg(long, env = "LOG_TOPIC")]
    pub log_topic: Option<String>,
    /// Lines the log buffer holds while Kafka is slow; past it lines are
    /// dropped and counted (`logs_dropped_total`), never waited for.
    #[arg(long, env = "LOG_BUFFER", default_value_t = ops::logs::DEFAULT_BUFFER)]
    pub log_buffer: usize,
    /// Per-route request metrics and the action -> update latency (off:
    /// the benchmark's baseline; counters stay).
    #[arg(long, env = "METRICS_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub metrics_enabled: bool,
    /// Refused requests (bad or forged tokens, malformed bodies, ...) from
    /// one address within `BAN_WINDOW_MS` that get it banned: `429` with
    /// `Retry-After` for `BAN_MS`. 0: never. Valid requests never count.
    #[arg(long, env = "BAN_AFTER", default_value_t = crate::guard::DEFAULT_BAN_AFTER)]
    pub ban_after: u32,
    #[arg(long, env = "BAN_WINDOW_MS", default_value_t = crate::guard::DEFAULT_BAN_WINDOW.as_millis() as u64)]
    pub ban_window_ms: u64,
    #[arg(long, env = "BAN_MS", default_value_t = crate::guard::DEFAULT_BAN_FOR.as_millis() as u64)]
    pub ban_ms: u64,
    /// Requests per second allowed per client address (0: no limit, the
    /// default; trusted proxies' clients are limited by their own address).
    #[arg(long, env = "RATE_LIMIT_PER_ADDR", default_value_t = 0)]
    pub rate_limit_per_addr: u32,
    /// Requests per second allowed per player token (0: no limit).
    #[arg(long, env = "RATE_LIMIT_PER_TOKEN", default_value_t = 0)]
    pub rate_limit_per_token: u32,
    /// Extra librdkafka settings for every client, as kcat does: `-X key=value`.
    #[arg(short = 'X', value_parser = parse_key_value)]
    pub extra: Vec<(String, String)>,
}

impl Config {
    /// The HTTP guards' settings.
    pub fn serve_settings(&self) -> crate::serve::ServeSettings {
        crate::serve::ServeSettings {
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.body_timeout_ms),
            max_connections_per_addr: self.max_connections_per_addr,
            unlimited: self.trusted_proxies.clone(),
            body_limit: crate::BODY_LIMIT,
        }
    }

    /// The refusal guard's settings.
    pub fn guard_settings(&self) -> crate::guard::GuardSettings {
        crate::guard::GuardSettings {
            ban_after: self.ban_after,
            ban_window: std::time::Duration::from_millis(self.ban_window_ms),
            ban_for: std::time::Duration::from_millis(self.ban_ms),
            rate_per_addr: self.rate_limit_per_addr,
            rate_per_token: self.rate_limit_per_token,
        }
    }

    /// Defaults for tests and embedding: every flag at its default.
    pub fn for_brokers(brokers: impl Into<String>) -> Config {
        let mut config = Config::parse_from(["bridge"]);
        config.brokers = Some(brokers.into());
        config
    }
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}
