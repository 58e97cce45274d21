//! The benchmark baseline: a minimal axum handler that produces a fixed
//! payload to one partition and awaits the ack (`acks=all`, idempotent).
//! Nothing else: no parsing, no auth, no enrichment.
//!
//! A baseline is tuned at its best, not at the bridge's settings: `linger.ms`
//! and any other librdkafka setting come from the environment, and the
//! defaults are the ones measured best on Apache Kafka (see
//! `scripts/bench-bridge.sh`).
//!
//! ```text
//! KAFKA_BROKERS=... BIND=127.0.0.1:9000 TOPIC=actions \
//!   LINGER_MS=1 PRODUCER_X="batch.num.messages=10000" \
//!   cargo run --release -p bridge --example baseline
//! ```
//!
//! - `LINGER_MS`: the producer's `linger.ms` (default 1).
//! - `PRODUCER_X`: extra librdkafka settings, `key=value` separated by commas,
//!   as `-X` does for the bridge. `acks` and `enable.idempotence` cannot be
//!   changed: the comparison is with an `acks=all`, idempotent producer.
//! - `PARTITION`: the partition produced to (default 1).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The same allocator as the bridge under test (`nation`), so the
/// comparison is one of work, not of allocators. Measured: 14-16 us of the
/// baseline's CPU per request against 17-19 with glibc's malloc, at the
/// same rate (BENCHMARKS.md, P1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `linger.ms` measured best for this handler on Apache Kafka 4.x (one
/// partition, `wrk -t1 -c256`, 2 cores).
const BEST_LINGER_MS: u32 = 1;

struct Baseline {
    producer: FutureProducer,
    topic: String,
    partition: i32,
    payload: Vec<u8>,
}

async fn produce(State(state): State<Arc<Baseline>>) -> StatusCode {
    let record = FutureRecord::to(&state.topic)
        .key("1")
        .payload(&state.payload)
        .partition(state.partition);
    match state.producer.send(record, Duration::ZERO).await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `k=v,k=v` into pairs; `acks` and `enable.idempotence` are refused.
fn parse_extra(spec: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut extra = Vec::new();
    for kv in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = bridge::config::parse_key_value(kv).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            k != "acks" && k != "enable.idempotence",
            "{k} is fixed: the baseline is an acks=all, idempotent producer"
        );
        extra.push((k, v));
    }
    Ok(extra)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS")?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:9000".into());
    let topic = std::env::var("TOPIC").unwrap_or_else(|_| "actions".into());
    let partition: i32 = match std::env::var("PARTITION") {
        Ok(p) => p.parse()?,
        Err(_) => 1,
    };
    let linger: u32 = match std::env::var("LINGER_MS") {
        Ok(l) => l.parse()?,
        Err(_) => BEST_LINGER_MS,
    };
    let extra = parse_extra(&std::env::var("PRODUCER_X").unwrap_or_default())?;
    let producer: FutureProducer =
        bridge::kafka::producer_config(&brokers, &extra, linger, Duration::from_millis(1500))
            .create()?;
    // The same size as a real envelope, so the broker does the same work.
    let payload = br#"{"event_id":"01a203bb-9ac4-7120-9e55-cd104cb4d421","game_id":1,"player_id":"52609bc175714bec9a53bbf8fea1e334","event_type":"purchase_sword","Host":"127.0.0.1:8080","User-Agent":"wrk","Accept":"*/*","client_addr":"127.0.0.1","received_at_ms":1763800000000,"schema_version":1}"#.to_vec();
    let state = Arc::new(Baseline {
        producer,
        topic,
        partition,
        payload,
    });
    let app = Router::new()
        .route("/produce", post(produce).get(produce))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let settings: Vec<String> = extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "baseline listening on {bind}: linger.ms={linger} {}",
        settings.join(" ")
    );
    axum::serve(listener, app).await?;
    Ok(())
}
