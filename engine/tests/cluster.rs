//! Topics on a three-node Apache Kafka cluster: replicated three times with
//! `min.insync.replicas` 2, so one node lost stops no partition (before: 20
//! of 60 games answered 503 while a node was down).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_survive_the_loss_of_one_node_of_three() {
    let mut cluster = localkafka::Cluster::temporary(3, &[]).expect("a three-node cluster");
    let brokers = cluster.bootstrap();
    let mut config = engine::Config::new(&brokers);
    config.partitions = 12;
    engine::create_topics(&config).await.unwrap();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    // A new topic reaches every node's metadata a moment after its creation.
    let names = ["actions", "games", "actions.dlq"];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metadata = loop {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        let complete = names.iter().all(|n| {
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == *n && !t.partitions().is_empty())
        });
        if complete {
            break metadata;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the topics never showed in the metadata"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for name in names {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("topic {name} created"));
        for p in topic.partitions() {
            assert_eq!(
                p.replicas().len(),
                3,
                "{name}/{} replicated three times",
                p.id()
            );
        }
    }
    // A node can answer for a topic before the topic's configuration has
    // reached it (seen once: `min.insync.replicas` read as ""): read until
    // every key asked about is there, with a deadline.
    let keys = [
        (0, "min.insync.replicas"),
        (0, "retention.ms"),
        (1, "min.insync.replicas"),
        (1, "cleanup.policy"),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let described = loop {
        let described = admin
            .describe_configs(
                &[
                    ResourceSpecifier::Topic("actions"),
                    ResourceSpecifier::Topic("games"),
                ],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        let complete = keys.iter().all(|&(i, key)| {
            described[i]
                .as_ref()
                .is_ok_and(|c| c.get(key).and_then(|e| e.value.as_ref()).is_some())
        });
        if complete {
            break described;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the topics' configuration never showed: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let value = |i: usize, key: &str| {
        described[i]
            .as_ref()
            .unwrap()
            .get(key)
            .and_then(|e| e.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(value(0, "min.insync.replicas"), "2");
    assert_eq!(
        value(0, "retention.ms"),
        "-1",
        "actions are kept for replay and the lake"
    );
    assert_eq!(value(1, "min.insync.replicas"), "2");
    assert_eq!(value(1, "cleanup.policy"), "compact");

    // One node killed: every partition of `actions` still takes a write
    // acknowledged by all in-sync replicas.
    cluster.nodes[2].kill();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let sends = (0..12).map(|p| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to("actions")
                        .key("k")
                        .payload("{}")
                        .partition(p),
                    Duration::from_secs(60),
                )
                .await
                .map_err(|(e, _)| format!("partition {p}: {e}"))
        }
    });
    let results = futures_util::future::join_all(sends).await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "writes refused with a node down: {failed:?}"
    );
    producer.flush(Duration::from_secs(10)).unwrap();
}
