//! The benchmark baseline: a minimal axum handler that produces a fixed
//! payload with the bridge's producer settings and awaits the ack. Nothing
//! else: no parsing, no auth, no enrichment.
//!
//! `KAFKA_BROKERS=... BIND=127.0.0.1:9000 TOPIC=bench cargo run --release -p bridge --example baseline`

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use rdkafka::producer::{FutureProducer, FutureRecord};

struct Baseline {
    producer: FutureProducer,
    topic: String,
    payload: Vec<u8>,
}

async fn produce(State(state): State<Arc<Baseline>>) -> StatusCode {
    let record = FutureRecord::to(&state.topic)
        .key("1")
        .payload(&state.payload)
        .partition(1);
    match state.producer.send(record, Duration::ZERO).await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS")?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:9000".into());
    let topic = std::env::var("TOPIC").unwrap_or_else(|_| "actions".into());
    let linger: u32 = std::env::var("LINGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let producer: FutureProducer =
        bridge::kafka::producer_config(&brokers, &[], linger, Duration::from_millis(1500))
            .create()?;
    // The same size as a real envelope, so the broker does the same work.
    let payload = br#"{"event_id":"01a203bb-9ac4-7120-9e55-cd104cb4d421","game_id":1,"player_id":"52609bc175714bec9a53bbf8fea1e334","event_type":"purchase_sword","Host":"127.0.0.1:8080","User-Agent":"wrk","Accept":"*/*","client_addr":"127.0.0.1","received_at_ms":1763800000000,"schema_version":1}"#.to_vec();
    let state = Arc::new(Baseline {
        producer,
        topic,
        payload,
    });
    let app = Router::new()
        .route("/produce", post(produce).get(produce))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("baseline listening on {bind}");
    axum::serve(listener, app).await?;
    Ok(())
}
