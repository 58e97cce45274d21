//! # localkafka: Apache Kafka's own broker, run on this machine
//!
//! The one helper behind `make run`, `make test`, the test harness and the
//! benches: it formats a KRaft storage folder (once), starts a combined
//! broker + controller with one-machine settings, waits until the broker
//! answers metadata requests, and stops it cleanly.
//!
//! The broker's jars come from Maven Central through the checked-in
//! `kafka/pom.xml` (pinned version), resolved by `scripts/setup.sh` into
//! `.tools/kafka/libs/` (or `KAFKA_LIBS`). Java is `$JAVA_HOME/bin/java` or
//! `java` on `PATH`.
//!
//! ## Layout of a data folder
//! - `server.properties`: written on every start from the [`Spec`];
//! - `log4j2.properties`, `broker.log`: the broker's own log (rolled at 10 MiB);
//! - `data/`: the KRaft metadata and the topics (`log.dirs`);
//! - `broker.pid`: the JVM's pid while it runs;
//! - `localkafka.lock`: held while a [`LocalKafka`] owns the folder, so a
//!   second one on the same folder fails with a clear message.
//!
//! ## Process tree
//! The JVM runs in a session of its own under a tiny `sh` watchdog that
//! (1) ignores SIGINT and SIGTERM, so a Ctrl-C in a terminal (or a SIGTERM
//! to the process group) reaches the game first and the broker stops last,
//! on the owner's word (SIGUSR1); (2) stops the broker when the process that
//! started it is gone, so a crashed test or `make run` killed alone leaves
//! nothing behind. The JVM has `PR_SET_PDEATHSIG`=SIGKILL (`setpriv`): `kill
//! -9` of the watchdog's process group kills the broker with it.
//!
//! ## Modules
//! - [`props`]: the broker's settings;
//! - this file: [`Spec`], [`LocalKafka`] (start, stop, kill, restart), [`Cluster`].

pub mod props;
pub mod version;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

/// Why a broker could not be had. Each message is one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Java is missing (no {0}): run `make setup`, or install Java 17 (`apt-get install openjdk-17-jre-headless`)")]
    NoJava(String),
    #[error("Apache Kafka's jars are missing in {0}: run `make setup` (scripts/setup.sh resolves kafka/pom.xml)")]
    NoJars(PathBuf),
    #[error("port {0} is taken: stop what uses it, or pick another port (KAFKA_PORT=...)")]
    PortTaken(u16),
    #[error("{0} is in use by another broker (a second `make run` on the same data?): stop that one first, or use another folder")]
    Locked(PathBuf),
    #[error("formatting {dir} failed: {detail}")]
    Format { dir: PathBuf, detail: String },
    #[error("{dir} holds data written by Apache Kafka {wrote}, which this checkout's {runs} cannot read (kafka/pom.xml says why it is pinned): keep it on its version with `{keep}`, or move the folder aside to start afresh without its nations")]
    NewerData {
        dir: PathBuf,
        wrote: String,
        runs: String,
        keep: String,
    },
    #[error("the broker exited while starting: {0} (full log: {1})")]
    Exited(String, PathBuf),
    #[error("the broker did not answer within {0:?} (log: {1})")]
    Timeout(Duration, PathBuf),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("a Kafka tool failed: {0}")]
    Tool(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io(what, e)
}

/// Where Kafka's jars are: `KAFKA_LIBS`, else `.tools/kafka/libs` of this
/// workspace.
pub fn libs_dir() -> PathBuf {
    match std::env::var_os("KAFKA_LIBS") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join(".tools/kafka/libs"),
    }
}

/// The workspace root (this crate's parent folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent folder")
        .to_path_buf()
}

/// The `java` to run: `$JAVA_HOME/bin/java`, else `java` from `PATH`.
pub fn java() -> Result<PathBuf, Error> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let bin = PathBuf::from(home).join("bin/java");
        if bin.is_file() {
            return Ok(bin);
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("java"))
        .find(|bin| bin.is_file())
        .ok_or_else(|| Error::NoJava("java on PATH or in $JAVA_HOME".into()))
}

/// Runs one of Kafka's own command-line tools (`class`, e.g.
/// `kafka.admin.ConfigCommand`) with `args`; its standard output, or an error
/// with what it printed when it fails.
pub fn kafka_tool(class: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(java()?)
        .arg("-cp")
        .arg(format!("{}/*", libs_dir().display()))
        .arg(class)
        .args(args)
        .output()
        .map_err(io(format!("run {class}")))?;
    if !out.status.success() {
        return Err(Error::Tool(format!(
            "{class} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// A free loopback port that is none of `taken` (two calls of
/// [`free_port`] may return the same port).
pub fn free_port_but(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if !taken.contains(&port) {
            return port;
        }
    }
}

/// One node of a cluster (or a single-node broker).
#[derive(Clone, Debug)]
pub struct Spec {
    /// The node's data folder (see the crate docs for its layout).
    pub dir: PathBuf,
    /// Client port; 0 picks a free one at the first start (kept on restarts).
    pub port: u16,
    /// Controller port; 0 picks a free one.
    pub controller_port: u16,
    /// This node's id.
    pub node_id: u32,
    /// `id@host:port,...` of every controller; empty: this node alone.
    pub voters: String,
    /// The cluster id every node of a cluster formats with; empty: a new one.
    pub cluster_id: String,
    /// Maximum heap, MiB.
    pub heap_mb: u32,
    /// Settings on top of [`props::one_machine`].
    pub extra: Vec<(String, String)>,
    /// How long to wait for the broker to answer.
    pub start_timeout: Duration,
}

impl Spec {
    /// A single-node broker keeping its data in `dir`, on free ports.
    pub fn single(dir: impl Into<PathBuf>) -> Spec {
        Spec {
            dir: dir.into(),
            port: 0,
            controller_port: 0,
            node_id: 1,
            voters: String::new(),
            cluster_id: String::new(),
            heap_mb: 1024,
            extra: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }

    /// With this client port (0: free).
    pub fn port(mut self, port: u16) -> Spec {
        self.port = port;
        self
    }

    /// With a setting on top of the one-machine ones.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Spec {
        self.extra.push((key.into(), value.into()));
        self
    }
}

/// The G1 settings Apache Kafka's own start scripts use.
const DEFAULT_GC_OPTS: &str = "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent";

/// The JVM's options. As with Kafka's own scripts, `KAFKA_HEAP_OPTS`
/// replaces the heap settings and `KAFKA_JVM_PERFORMANCE_OPTS` the collector
/// settings (e.g. `-XX:+UseZGC`). The collector logs its pauses (and the
/// safepoints) to `gc.log` in the data folder, three files of 10 MB at most:
/// the first place to look when a produce or a fetch stalls.
fn jvm_opts(spec: &Spec, log4j: &Path) -> String {
    let heap = std::env::var("KAFKA_HEAP_OPTS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| format!("-Xms256m -Xmx{}m", spec.heap_mb));
    let gc = std::env::var("KAFKA_JVM_PERFORMANCE_OPTS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_GC_OPTS.to_string());
    format!(
        "{heap} {gc} -Djava.awt.headless=true -Dlog4j2.configurationFile={} \
         -Xlog:gc*,safepoint:file={}:time,uptime,level,tags:filecount=3,filesize=10M",
        log4j.display(),
        spec.dir.join("gc.log").display()
    )
}

/// A running broker (one node). Stopped cleanly on drop.
pub struct LocalKafka {
    spec: Spec,
    watchdog: Option<Child>,
    /// Held while we own the folder (released on drop, and by the kernel if
    /// this process dies).
    lock: File,
    bootstrap: String,
    started_in: Duration,
    temporary: bool,
}

impl LocalKafka {
    /// The broker a bench or example measures against: `KAFKA_BROKERS` when
    /// set and not empty (no broker started: `None`), else a
    /// [`LocalKafka::temporary`], returned so the caller keeps it alive.
    pub fn from_env_or_temporary() -> Result<(Option<LocalKafka>, String), Error> {
        match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) if !brokers.trim().is_empty() => Ok((None, brokers)),
            _ => {
                let local = LocalKafka::temporary()?;
                let brokers = local.bootstrap().to_string();
                Ok((Some(local), brokers))
            }
        }
    }

    /// A single-node broker in a new temporary folder on free ports, deleted
    /// when it is dropped: what tests and benches use.
    pub fn temporary() -> Result<LocalKafka, Error> {
        let dir =
            std::env::temp_dir().join(format!("localkafka-{}", uuid::Uuid::new_v4().simple()));
        let mut broker = LocalKafka::start(Spec::single(dir))?;
        broker.temporary = true;
        Ok(broker)
    }

    /// Formats `spec.dir` if it is new, starts the broker and waits until it
    /// answers a metadata request with itself in it.
    pub fn start(mut spec: Spec) -> Result<LocalKafka, Error> {
        let java = java()?;
        let libs = libs_dir();
        if !has_kafka_jar(&libs) {
            return Err(Error::NoJars(libs));
        }
        std::fs::create_dir_all(&spec.dir).map_err(io(format!("create {}", spec.dir.display())))?;
        let lock_path = spec.dir.join("localkafka.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("open {}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(Error::Locked(spec.dir.clone()));
        }
        // A JVM from a start whose owner was killed may still be on its way
        // out (its watchdog notices within half a second): wait for it.
        wait_for_previous(&spec.dir);
        let saved = props::saved_ports(&spec.dir);
        if spec.port == 0 {
            spec.port = saved.map(|s| s.0).unwrap_or_else(free_port);
        }
        if spec.controller_port == 0 {
            spec.controller_port = saved
                .map(|s| s.1)
                .filter(|&p| p != spec.port)
                .unwrap_or_else(|| free_port_but(&[spec.port]));
        }
        for port in [spec.port, spec.controller_port] {
            // A predecessor killed a moment ago may hold its ports while the
            // kernel tears it down: give it a few seconds.
            let deadline = Instant::now() + Duration::from_secs(5);
            while TcpListener::bind(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    return Err(Error::PortTaken(port));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let data = spec.dir.join("data");
        let runs = version::of_jars(&libs).unwrap_or_else(|| "?".into());
        if let Some(wrote) = version::of_folder(&spec.dir) {
            if data.join("meta.properties").is_file()
                && version::compare(&wrote, &runs) == std::cmp::Ordering::Greater
            {
                return Err(Error::NewerData {
                    dir: spec.dir.clone(),
                    keep: version::keep_command(&wrote),
                    wrote,
                    runs,
                });
            }
        }
        let properties = spec.dir.join("server.properties");
        std::fs::write(&properties, props::render(&spec, &data))
            .map_err(io(format!("write {}", properties.display())))?;
        let log4j = spec.dir.join("log4j2.properties");
        std::fs::write(&log4j, props::log4j(&spec.dir.join("broker.log")))
            .map_err(io(format!("write {}", log4j.display())))?;
        let classpath = format!("{}/*", libs.display());
        if !data.join("meta.properties").is_file() {
            format_storage(&java, &classpath, &spec, &properties)?;
        }

        let t0 = Instant::now();
        let log_path = spec.dir.join("broker.log");
        let stdout_path = spec.dir.join("broker.stdout");
        let log_start = std::fs::metadata(&stdout_path)
            .map(|m| m.len())
            .unwrap_or(0);
        let broker_log_start = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let pidfile = spec.dir.join("broker.pid");
        let _ = std::fs::remove_file(&pidfile);
        // The watchdog (see the crate docs). The JVM runs in a session of
        // its own, so a Ctrl-C or a SIGTERM sent to the caller's process
        // group does not reach it (the game stops first; we stop the broker
        // after); `--pdeathsig KILL` kills it with its watchdog, so `kill -9`
        // of the group takes the broker down too. The watchdog itself
        // ignores INT and TERM and stops the broker on USR1.
        let script = r#"trap '' INT
trap ':' TERM HUP
setsid setpriv --pdeathsig KILL -- "$JAVA" $JVM_OPTS -cp "$CLASSPATH" kafka.Kafka "$PROPERTIES" >>"$STDOUT" 2>&1 &
j=$!
echo $j > "$PIDFILE"
trap 'kill -TERM $j 2>/dev/null; wait $j; exit 0' USR1
while kill -0 "$OWNER" 2>/dev/null && kill -0 $j 2>/dev/null; do sleep 0.5 & wait $!; done
kill -TERM $j 2>/dev/null; wait $j"#;
        let jvm_opts = jvm_opts(&spec, &log4j);
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("JAVA", &java)
            .env("JVM_OPTS", jvm_opts)
            .env("CLASSPATH", &classpath)
            .env("PROPERTIES", &properties)
            .env("STDOUT", &stdout_path)
            .env("PIDFILE", &pidfile)
            .env("OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("start the broker's watchdog (sh)"))?;
        let bootstrap = format!("127.0.0.1:{}", spec.port);
        let mut broker = LocalKafka {
            spec,
            watchdog: Some(watchdog),
            lock,
            bootstrap,
            started_in: Duration::ZERO,
            temporary: false,
        };
        match broker.wait_ready(t0, &log_path, &stdout_path, log_start) {
            Ok(()) => {}
            // A folder from before the stamp, written by a newer broker.
            Err(Error::Exited(..))
                if version::newer_data_in(&tail(&log_path, broker_log_start)) =>
            {
                return Err(Error::NewerData {
                    dir: broker.spec.dir.clone(),
                    wrote: format!(
                        "later than {runs} (4.4.0, if `make run` wrote it before 2026-12-03)"
                    ),
                    keep: version::keep_command("4.4.0"),
                    runs,
                });
            }
            Err(e) => return Err(e),
        }
        broker.started_in = t0.elapsed();
        version::stamp(&broker.spec.dir, &runs).map_err(io(format!(
            "write {}",
            broker.spec.dir.join(version::STAMP).display()
        )))?;
        Ok(broker)
    }

    fn wait_ready(
        &mut self,
        t0: Instant,
        log_path: &Path,
        stdout_path: &Path,
        log_start: u64,
    ) -> Result<(), Error> {
        let addr: SocketAddr = self.bootstrap.parse().expect("loopback address");
        let deadline = t0 + self.spec.start_timeout;
        loop {
            if let Some(child) = self.watchdog.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.watchdog = None;
                    return Err(Error::Exited(
                        why_it_failed(log_path, stdout_path, log_start),
                        log_path.to_path_buf(),
                    ));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && answers(&self.bootstrap, self.spec.node_id)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(Error::Timeout(
                    self.spec.start_timeout,
                    log_path.to_path_buf(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The node's `node.id`, as metadata names it.
    pub fn node_id(&self) -> i32 {
        self.spec.node_id as i32
    }

    /// The node's data folder.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// The spec it runs with, ports filled in (to restart it the same way).
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// From launch to answering metadata requests (storage formatting excluded).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The JVM's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.spec.dir.join("broker.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The JVM's resident memory, bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Whether the JVM is running.
    pub fn is_running(&self) -> bool {
        self.pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// A clean stop: SIGTERM (controlled shutdown), waiting up to 30 s, then
    /// SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut watchdog) = self.watchdog.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-USR1", &watchdog.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = watchdog.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.is_running() {
            self.signal_jvm("-KILL");
        }
        let _ = watchdog.kill();
        let _ = watchdog.wait();
        self.wait_jvm_gone();
    }

    /// `kill -9` of the JVM: a real crash (no controlled shutdown, unflushed
    /// page cache survives, the process is simply gone).
    pub fn kill(&mut self) {
        self.signal_jvm("-KILL");
        self.wait_jvm_gone();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    /// Starts the same node again (same folder, same ports) after a
    /// [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        let _ = self.lock.unlock();
        let mut fresh = LocalKafka::start(self.spec.clone())?;
        self.watchdog = fresh.watchdog.take();
        std::mem::swap(&mut self.lock, &mut fresh.lock);
        self.started_in = fresh.started_in;
        // `fresh` now holds no process and our old (unlocked) file: its
        // drop stops nothing and deletes nothing.
        Ok(())
    }

    fn signal_jvm(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    fn wait_jvm_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalKafka {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            // A failing test: what the broker said is part of its story
            // (CI keeps the output, not the folder).
            eprintln!("{}", self.notable_log_lines(40));
        }
        if self.temporary {
            if std::thread::panicking() {
                // Kept for the failure's post-mortem: the whole broker log
                // and the transaction and group logs on disk.
                eprintln!("broker folder kept: {}", self.spec.dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.spec.dir);
            }
        }
    }
}

impl LocalKafka {
    /// The broker's warnings, errors and starts and stops, the last `n` of
    /// them, for a failure report.
    pub fn notable_log_lines(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.spec.dir.join("broker.log")).unwrap_or_default();
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("] WARN ")
                    || l.contains("] ERROR ")
                    || l.contains("] FATAL ")
                    || l.contains("Kafka Server started")
                    || l.contains("[KafkaRaftServer nodeId=")
                    || l.contains("shut down completed (kafka.server.BrokerServer)")
            })
            .collect();
        let from = notable.len().saturating_sub(n);
        format!(
            "[localkafka] node {} ({}): the last {} notable lines of its log:\n{}",
            self.spec.node_id,
            self.bootstrap,
            notable.len() - from,
            notable[from..].join("\n")
        )
    }
}

/// Several nodes of one cluster on this machine, each a combined broker +
/// controller with its own folder and ports: a real broker loss is a `kill`
/// of one of them.
pub struct Cluster {
    pub nodes: Vec<LocalKafka>,
    root: PathBuf,
}

impl Cluster {
    /// `n` nodes in a new temporary folder, started together (the quorum
    /// needs a majority before any broker answers). Settings in `extra` go
    /// to every node.
    pub fn temporary(n: u32, extra: &[(&str, &str)]) -> Result<Cluster, Error> {
        let root = std::env::temp_dir().join(format!(
            "localkafka-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let cluster_id = new_cluster_id();
        let mut taken = Vec::new();
        let nodes: Vec<(u32, u16, u16)> = (1..=n)
            .map(|id| {
                let port = free_port_but(&taken);
                taken.push(port);
                let cport = free_port_but(&taken);
                taken.push(cport);
                (id, port, cport)
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|(id, _, c)| format!("{id}@127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let specs: Vec<Spec> = nodes
            .iter()
            .map(|(id, port, cport)| {
                let mut spec = Spec::single(root.join(format!("node-{id}")));
                spec.node_id = *id;
                spec.port = *port;
                spec.controller_port = *cport;
                spec.voters = voters.clone();
                spec.cluster_id = cluster_id.clone();
                spec.heap_mb = 768;
                spec.extra = props::replicated(n)
                    .into_iter()
                    .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect();
                spec
            })
            .collect();
        // Each start waits for its own broker, which needs a quorum: start
        // them from threads so they come up together.
        let handles: Vec<_> = specs
            .into_iter()
            .map(|spec| std::thread::spawn(move || LocalKafka::start(spec)))
            .collect();
        let mut started = Vec::new();
        for handle in handles {
            started.push(handle.join().expect("start thread")?);
        }
        Ok(Cluster {
            nodes: started,
            root,
        })
    }

    /// Every node's client address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.bootstrap().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A new cluster id: 16 random bytes, URL-safe base64 without padding, as
/// Kafka's `Uuid` prints them.
pub fn new_cluster_id() -> String {
    use base64::Engine;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        // One id in 64 starts with '-', which `StorageTool` would read as a flag.
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn has_kafka_jar(libs: &Path) -> bool {
    std::fs::read_dir(libs)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-"))
        })
        .unwrap_or(false)
}

fn format_storage(
    java: &Path,
    classpath: &str,
    spec: &Spec,
    properties: &Path,
) -> Result<(), Error> {
    let cluster_id = if spec.cluster_id.is_empty() {
        new_cluster_id()
    } else {
        spec.cluster_id.clone()
    };
    let out = Command::new(java)
        .args([
            "-Xmx256m",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
        ])
        .arg(&cluster_id)
        .arg("-c")
        .arg(properties)
        .output()
        .map_err(io("run kafka.tools.StorageTool"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        return Err(Error::Format {
            dir: spec.dir.clone(),
            detail: text
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string(),
        });
    }
    Ok(())
}

/// A previous JVM on this folder still alive (its owner was killed a moment
/// ago): give its watchdog time to stop it, then kill it.
fn wait_for_previous(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join("broker.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("kafka.Kafka") && c.contains(&dir.display().to_string()))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Whether the broker answers metadata with itself (registered and unfenced).
fn answers(bootstrap: &str, node_id: u32) -> bool {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create::<BaseConsumer>()
    else {
        return false;
    };
    consumer
        .fetch_metadata(None, Duration::from_secs(2))
        .map(|m| m.brokers().iter().any(|b| b.id() as u32 == node_id))
        .unwrap_or(false)
}

/// The most telling lines of a failed start: the log's errors, else the end
/// of the JVM's own output.
/// What `path` holds from byte `from` on (empty if unreadable).
fn tail(path: &Path, from: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let _ = f.seek(SeekFrom::Start(from));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

fn why_it_failed(log: &Path, stdout: &Path, stdout_start: u64) -> String {
    let log_text = tail(log, 0);
    let errors: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains("FATAL"))
        .collect();
    if let Some(last) = errors.last() {
        return last.trim().to_string();
    }
    let out = tail(stdout, stdout_start);
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}
