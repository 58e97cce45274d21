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
fn private_broker_stops_and_restarts_with_its_data() {
    let mut broker = tests::LocalKafka::temporary().unwrap();
    let bootstrap = broker.bootstrap().to_string();
    assert!(std::net::TcpStream::connect(&bootstrap).is_ok());
    let topic = tests::unique("harness-restart");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(tests::create_topics(&bootstrap, &[(&topic, 1, false)]))
        .unwrap();
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    producer
        .send(rdkafka::producer::BaseRecord::<str, str>::to(&topic).payload("{\"kept\":true}"))
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    drop(producer);

    broker.stop();
    assert_eq!(
        std::net::TcpStream::connect(&bootstrap)
            .map_err(|e| e.kind())
            .err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "nothing listens on the stopped broker's port"
    );
    assert!(!broker.is_running());

    // Same folder, same port: the record is still there.
    broker.restart().unwrap();
    assert_eq!(broker.bootstrap(), bootstrap);
    let seen = tests::consume(&bootstrap, &topic, Duration::from_secs(30), |s| {
        !s.is_empty()
    })
    .unwrap();
    assert_eq!(tests::json(&seen[0])["kept"], true);

    // A second owner of the same folder is refused with a clear error.
    let second = tests::LocalKafka::start(broker.spec().clone());
    let err = second.err().expect("a second broker on the same folder");
    assert!(err.to_string().contains("in use"), "{err}");

    // The folder remembers the version that last started on it; a newer
    // one's folder is refused with what to do, before any JVM starts (an
    // older broker cannot read a newer one's metadata log).
    let dir = broker.spec().dir.clone();
    let runs = localkafka::version::of_folder(&dir).expect("a stamp after a start");
    assert_eq!(
        Some(runs.clone()),
        localkafka::version::of_jars(&localkafka::libs_dir())
    );
    broker.stop();
    std::fs::write(dir.join(localkafka::version::STAMP), "99.0.0\n").unwrap();
    let err = broker.restart().expect_err("a newer folder is refused");
    let text = err.to_string();
    assert!(
        text.contains("written by Apache Kafka 99.0.0")
            && text.contains(&format!("checkout's {runs} cannot read"))
            && text.contains("-Dkafka.version=99.0.0"),
        "{text}"
    );
    assert!(!broker.is_running());
}
