//! The broker's settings: a KRaft node that is its own controller, tuned for
//! one machine.

use std::path::Path;

use crate::Spec;

/// Settings every local node gets. Internal topics have one replica and a
/// min ISR of 1 (one machine); fewer internal partitions make the group and
/// transaction coordinators load faster; a new group's first rebalance does
/// not wait (`group.initial.rebalance.delay.ms=0`); request threads sized
/// for the cores the node shares with the game ([`request_threads`]).
pub fn one_machine() -> Vec<(&'static str, String)> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let (io, network) = request_threads(cores);
    vec![
        ("num.io.threads", io.to_string()),
        ("num.network.threads", network.to_string()),
        ("offsets.topic.replication.factor", "1".into()),
        ("offsets.topic.num.partitions", "12".into()),
        ("transaction.state.log.replication.factor", "1".into()),
        ("transaction.state.log.min.isr", "1".into()),
        ("transaction.state.log.num.partitions", "12".into()),
        (
            "share.coordinator.state.topic.replication.factor",
            "1".into(),
        ),
        ("share.coordinator.state.topic.min.isr", "1".into()),
        ("group.initial.rebalance.delay.ms", "0".into()),
        ("num.partitions", "1".into()),
        ("default.replication.factor", "1".into()),
        ("auto.create.topics.enable", "true".into()),
    ]
}

/// The broker's request threads on a machine of `cores`: `(I/O, network)`.
/// Apache Kafka's defaults, 8 I/O and 3 network threads, are sized for a
/// server of its own. A local node shares its cores with the game, the
/// engine and the load tools, and more runnable threads than cores only
/// queue for them: on 2 cores, 2 and 2 gave a lower answer → update p99
/// than the defaults in 5 of 6 alternating pairs, and 1 and 1 no better
/// than 2 and 2 (BENCHMARKS.md, "The broker's threads and heap"). So one I/O thread
/// per core, between 2 and the default 8, and as many network threads,
/// between 2 and the default 3.
pub fn request_threads(cores: usize) -> (usize, usize) {
    (cores.clamp(2, 8), cores.clamp(2, 3))
}

/// What a cluster of `n` replicates: internal topics on every node (up to
/// 3), a min ISR of 2 when there are at least 3.
pub fn replicated(n: u32) -> Vec<(String, String)> {
    let rf = n.min(3).to_string();
    let isr = if n >= 3 { "2" } else { "1" }.to_string();
    vec![
        ("offsets.topic.replication.factor".into(), rf.clone()),
        (
            "transaction.state.log.replication.factor".into(),
            rf.clone(),
        ),
        ("transaction.state.log.min.isr".into(), isr.clone()),
        (
            "share.coordinator.state.topic.replication.factor".into(),
            rf.clone(),
        ),
        ("share.coordinator.state.topic.min.isr".into(), isr.clone()),
        ("default.replication.factor".into(), rf),
        ("min.insync.replicas".into(), isr),
    ]
}

/// `server.properties` for `spec`, with topics in `data`.
pub fn render(spec: &Spec, data: &Path) -> String {
    let voters = if spec.voters.is_empty() {
        format!("{}@127.0.0.1:{}", spec.node_id, spec.controller_port)
    } else {
        spec.voters.clone()
    };
    let mut lines = vec![
        "# Written by localkafka at every start; edits are overwritten.".to_string(),
        "process.roles=broker,controller".into(),
        format!("node.id={}", spec.node_id),
        format!("controller.quorum.voters={voters}"),
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
            spec.port, spec.controller_port
        ),
        format!("advertised.listeners=PLAINTEXT://127.0.0.1:{}", spec.port),
        "controller.listener.names=CONTROLLER".into(),
        "inter.broker.listener.name=PLAINTEXT".into(),
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into(),
        format!("log.dirs={}", data.display()),
    ];
    let mut settings: Vec<(String, String)> = one_machine()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (k, v) in &spec.extra {
        settings.retain(|(key, _)| key != k);
        settings.push((k.clone(), v.clone()));
    }
    lines.extend(settings.into_iter().map(|(k, v)| format!("{k}={v}")));
    lines.join("\n") + "\n"
}

/// The client and controller ports a folder's last start used, so a node
/// restarted with port 0 comes back where its clients expect it.
pub fn saved_ports(dir: &Path) -> Option<(u16, u16)> {
    let text = std::fs::read_to_string(dir.join("server.properties")).ok()?;
    let listeners = text.lines().find_map(|l| l.strip_prefix("listeners="))?;
    let port_of = |name: &str| -> Option<u16> {
        listeners
            .split(',')
            .find(|l| l.starts_with(name))?
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    };
    Some((port_of("PLAINTEXT://")?, port_of("CONTROLLER://")?))
}

/// A log4j2 configuration sending the broker's log to `file`, rolled at 10 MiB.
pub fn log4j(file: &Path) -> String {
    format!(
        "status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {file}
appender.file.filePattern = {file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
",
        file = file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_settings_replace_the_defaults() {
        let mut spec = Spec::single("/tmp/x").set("num.partitions", "3");
        spec.port = 9092;
        spec.controller_port = 9093;
        let text = render(&spec, Path::new("/tmp/x/data"));
        assert!(text.contains("num.partitions=3\n"));
        assert!(!text.contains("num.partitions=1\n"));
        assert!(text.contains("controller.quorum.voters=1@127.0.0.1:9093\n"));
    }

    #[test]
    fn request_threads_follow_the_cores_up_to_kafkas_defaults() {
        assert_eq!(request_threads(1), (2, 2));
        assert_eq!(request_threads(2), (2, 2));
        assert_eq!(request_threads(4), (4, 3));
        assert_eq!(request_threads(64), (8, 3));
        let text = render(&Spec::single("/tmp/x"), Path::new("/tmp/x/data"));
        assert_eq!(text.matches("num.io.threads=").count(), 1);
        let spec = Spec::single("/tmp/x").set("num.io.threads", "16");
        let text = render(&spec, Path::new("/tmp/x/data"));
        assert!(text.contains("num.io.threads=16\n"), "{text}");
        assert_eq!(text.matches("num.io.threads=").count(), 1);
    }

    #[test]
    fn cluster_ids_never_look_like_a_flag() {
        for _ in 0..2_000 {
            let id = crate::new_cluster_id();
            assert!(!id.starts_with('-'), "{id}");
            assert_eq!(id.len(), 22);
        }
    }

    #[test]
    fn ports_of_the_last_start_are_found_again() {
        let dir = std::env::temp_dir().join(format!("lk-props-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut spec = Spec::single(&dir);
        spec.port = 19092;
        spec.controller_port = 19093;
        std::fs::write(dir.join("server.properties"), render(&spec, &dir)).unwrap();
        assert_eq!(saved_ports(&dir), Some((19092, 19093)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
