//! The harness itself works: a broker is there, topics can be made, records
//! round-trip.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rdkafka::Message;

#[tokio::test]
async fn broker_round_trip_on_own_topic() {
    let brokers = tests::broker();
    let topic = tests::unique("harness");
    tests::create_topics(brokers, &[(&topic, 3, false)])
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key("7")
                .payload("{\"hello\":1}")
                .partition(shared::partition_for(7, 3)),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(delivery.partition, 1);
    let seen = tests::consume(brokers, &topic, Duration::from_secs(20), |s| !s.is_empty()).unwrap();
    assert_eq!(seen[0].partition(), 1);
    assert_eq!(tests::json(&seen[0])["hello"], 1);
}

#[test]
fn private_broker_stops() {
    let mut broker = tests::TansuBroker::start().unwrap();
    assert!(std::net::TcpStream::connect(&broker.bootstrap).is_ok());
    broker.stop();
    assert!(std::net::TcpStream::connect(&broker.bootstrap).is_err());
}
