//! Helpers for `scripts/bench-lake.sh` (figures in BENCHMARKS.md):
//!
//! - `lake_bench produce --topic T --partitions P --n N [--no-headers]`: N
//!   seed-like actions (types and hosts cycling), each with the bridge's
//!   three headers, produced as fast as the broker takes them.
//! - `lake_bench consume --topic T`: the baseline: reads every partition to
//!   its end and decodes each value exactly as `lake export` does (borrowed
//!   from librdkafka, not copied), writing nothing. Tuned for itself: the
//!   fetch sizes it does best with, a 10 ms fetch backoff, no group, no
//!   commits; more librdkafka
//!   settings to try with `LAKE_BENCH_X="key=value,key=value"`. With
//!   `LAKE_BENCH_RUN=N`, messages are taken in runs of up to N, each run
//!   decoded before the next is polled, as `lake export` takes them (the
//!   script measures both and compares with the faster).
//!
//! - `lake_bench floor --topic T [--to DIR]`: the baseline plus the least
//!   any columnar writer of the lake's tables must do (each value into a
//!   column buffer, dictionaries for repeated text, zstd, one file per
//!   partition), written row by row ([`Floor`]).
//!
//! - `lake_bench cpu --n N [--batch B]`: no Kafka: where the exporter's own
//!   time goes (decode, building the tables, Parquet encoding) for N records
//!   in memory, cut into batches of B (default: N/12, as 12 partitions give);
//!   then the same batches built as the exporter builds them (encoded a
//!   chunk at a time as the records come).
//! - `lake_bench columns --n N`: no Kafka: the Parquet encoding time and
//!   bytes of each column of `events` and `buffer_meta` alone, N records
//!   in one batch, encoded 8,192 rows at a time (per-file overhead
//!   included: about 10 ms per column for 1,000,000 records).
//!
//! - `lake_bench refresh --from LAKE`: the analytics' count over a lake
//!   ([`lake::ReportCache`]): a first pass over everything, then three with
//!   nothing new.
//! - `lake_bench grow --topic T [--rounds R] [--max-age-ms A]`
//!   (RELIABILITY.md): a following `lake export` in this process (default
//!   partition check, batches cut at A ms, default 5,000 as in `make run`);
//!   each round adds a partition to T, then produces one action to an old
//!   partition and one to the new one, and prints how long after their acks
//!   each is in the lake.
//!
//! The actions' ids are UUIDv7s of their time, as the bridge and the page
//! stamp them.
//!
//! Each prints its figures on one line.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("columns") {
        return columns(arg("--n").unwrap_or("1000000".into()).parse()?);
    }
    if std::env::args().nth(1).as_deref() == Some("refresh") {
        return refresh(&arg("--from").ok_or_else(|| anyhow::anyhow!("--from"))?);
    }
    if std::env::args().nth(1).as_deref() == Some("cpu") {
        return cpu(
            arg("--n").unwrap_or("1000000".into()).parse()?,
            arg("--batch").unwrap_or("83334".into()).parse()?,
        );
    }
    let brokers = std::env::var("KAFKA_BROKERS")?;
    let topic = arg("--topic").ok_or_else(|| anyhow::anyhow!("--topic"))?;
    match std::env::args().nth(1).as_deref() {
        Some("produce") => {
            let n: u64 = arg("--n").unwrap_or("1000000".into()).parse()?;
            let partitions: i32 = arg("--partitions").unwrap_or("12".into()).parse()?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(tests::create_topics(
                    &brokers,
                    &[(&topic, partitions, false)],
                ))?;
            let headers = !std::env::args().any(|a| a == "--no-headers");
            produce(&brokers, &topic, partitions, n, headers)
        }
        Some("consume") => consume(&brokers, &topic, None),
        Some("grow") => grow(
            &brokers,
            &topic,
            arg("--rounds").unwrap_or("3".into()).parse()?,
            Duration::from_millis(arg("--max-age-ms").unwrap_or("5000".into()).parse()?),
        ),
        Some("floor") => consume(
            &brokers,
            &topic,
            Some(Floor {
                dir: arg("--to").unwrap_or("/tmp/lake-floor".into()).into(),
                codec: std::env::var("LAKE_FLOOR_CODEC")
                    .unwrap_or("zstd".into())
                    .parse()?,
                ..Floor::default()
            }),
        ),
        _ => anyhow::bail!(
            "usage: lake_bench produce|consume|floor|grow --topic T \
             [--n N --partitions P --to DIR --rounds R --max-age-ms A]"
        ),
    }
}

fn envelope(i: u64) -> shared::ActionEnvelope {
    let host = [
        "user1.comcast.com",
        "user2.att.com",
        "user3.verizon.com",
        "user4.spectrum.com",
        "user5.fios.com",
    ][(i % 5) as usize];
    let received_at_ms = 1_796_083_200_000 + i / 100;
    // As the bridge and the page stamp them: a UUIDv7 of the action's time.
    let at = uuid::Timestamp::from_unix(
        uuid::NoContext,
        received_at_ms / 1000,
        (received_at_ms % 1000) as u32 * 1_000_000,
    );
    shared::ActionEnvelope {
        event_id: uuid::Uuid::new_v7(at).to_string(),
        game_id: i % 1000,
        player_id: host.into(),
        event_type: shared::ActionType::ALL[(i % 8) as usize],
        name: None,
        host: host.into(),
        user_agent: "ApacheBench/2.3".into(),
        accept: "*/*".into(),
        client_addr: "127.0.0.1".into(),
        received_at_ms,
        schema_version: shared::SCHEMA_VERSION,
    }
}

/// N seed-like actions as the exporter takes them, offsets 0..N, no Kafka,
/// with the bridge's three headers.
fn records_in_memory(n: u64) -> Vec<lake::records::RawRecord> {
    (0..n)
        .map(|i| {
            let e = envelope(i);
            lake::records::RawRecord {
                offset: i as i64,
                timestamp_ms: Some(1_796_083_200_000 + i as i64 / 100),
                timestamp_type: 0,
                key: Some((i % 1000).to_string().into_bytes()),
                value: Some(serde_json::to_vec(&e).expect("JSON")),
                headers: vec![
                    ("event_id".into(), e.event_id.clone()),
                    ("event_type".into(), e.event_type.as_str().into()),
                    ("player_id".into(), e.player_id.clone()),
                ],
            }
        })
        .collect()
}

fn cpu(n: u64, batch: usize) -> anyhow::Result<()> {
    let records = records_in_memory(n);
    let t = Instant::now();
    let decoded = records
        .iter()
        .filter(|r| lake::records::decode_action(r.value.as_deref()).is_ok())
        .count();
    let decode = t.elapsed();
    let (mut build, mut encode, mut bytes) = (Duration::ZERO, Duration::ZERO, 0);
    let (mut streamed, mut streamed_bytes) = (Duration::ZERO, 0);
    for chunk in records.chunks(batch.max(1)) {
        let info = lake::tables::BatchInfo {
            etl_id: uuid::Uuid::new_v4().to_string(),
            topic: "actions".into(),
            partition: 0,
            first: chunk[0].offset,
            last: chunk[chunk.len() - 1].offset,
            source: lake::tables::Source::Actions,
            mode: "once".into(),
            started_ms: 0,
            ended_ms: 0,
        };
        // As Arrow, then encoded file by file.
        let t = Instant::now();
        let files = lake::tables::build(&info, chunk)?;
        build += t.elapsed();
        let t = Instant::now();
        // As `lake::store::write_batch` does: a `purchases` file is its
        // `events` file's bytes again.
        for f in files.iter().filter(|f| !f.path.starts_with("purchases/")) {
            if let Some(b) = f.arrow() {
                bytes += lake::store::encode(b)?.len();
            }
        }
        encode += t.elapsed();
        drop(files);
        // As `lake export` does: encoded a chunk at a time as records come.
        let t = Instant::now();
        let mut builder = lake::tables::BatchBuilder::new(
            info.source,
            &info.topic,
            info.partition,
            &info.etl_id,
            lake::tables::Output::Parquet(None),
        );
        for r in chunk {
            builder.push(&r.as_ref())?;
        }
        for f in builder.finish(&info)? {
            if f.path.starts_with("purchases/") {
                continue;
            }
            streamed_bytes += match &f.content {
                lake::tables::FileContent::Parquet(b) => b.content_length(),
                lake::tables::FileContent::Arrow(b) => lake::store::encode(b)?.len(),
            };
        }
        streamed += t.elapsed();
    }
    println!(
        "{n} records in batches of {batch}: decode {decode:?} ({decoded} ok), \
         build tables {build:?} (decoding included), encode {encode:?} ({bytes} B); \
         as the exporter does (decode, build and encode a chunk at a time): \
         {streamed:?} ({streamed_bytes} B)"
    );
    Ok(())
}

/// Parquet encoding time of each column alone (the exporter's settings),
/// over every `events` and `buffer_meta` file of N records in one batch.
fn columns(n: u64) -> anyhow::Result<()> {
    let records = records_in_memory(n);
    let info = lake::tables::BatchInfo {
        etl_id: uuid::Uuid::new_v4().to_string(),
        topic: "actions".into(),
        partition: 0,
        first: 0,
        last: n as i64 - 1,
        source: lake::tables::Source::Actions,
        mode: "once".into(),
        started_ms: 0,
        ended_ms: 0,
    };
    let files = lake::tables::build(&info, &records)?;
    let mut costs: std::collections::BTreeMap<String, (Duration, usize)> = Default::default();
    for f in files.iter().filter(|f| !f.path.starts_with("purchases/")) {
        let Some(batch) = f.arrow() else { continue };
        let table = f.path.split('/').next().unwrap_or_default().to_string();
        for (i, field) in batch.schema().fields().iter().enumerate() {
            let one = batch.project(&[i])?;
            let mut total = Duration::ZERO;
            let mut bytes = 0;
            for chunk in 0..one.num_rows().div_ceil(8192) {
                let start = chunk * 8192;
                let part = one.slice(start, 8192.min(one.num_rows() - start));
                let t = Instant::now();
                bytes += lake::store::encode(&part)?.len();
                total += t.elapsed();
            }
            let e = costs
                .entry(format!("{table}.{}", field.name()))
                .or_default();
            e.0 += total;
            e.1 += bytes;
        }
    }
    let mut sorted: Vec<_> = costs.into_iter().collect();
    sorted.sort_by_key(|(_, (d, _))| std::cmp::Reverse(*d));
    for (name, (d, b)) in sorted {
        println!("{name:32} {:8.1} ms {:10} B", d.as_secs_f64() * 1e3, b);
    }
    Ok(())
}

/// With `headers`, each record carries the three headers the bridge puts on
/// every action (`event_id`, `event_type`, `player_id`), as the exporter
/// meets them in `actions`; `--no-headers` gives the records of the
/// benchmarks before the twenty-third session.
fn produce(
    brokers: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    headers: bool,
) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let started = Instant::now();
    for i in 0..n {
        let e = envelope(i);
        let value = serde_json::to_vec(&e)?;
        let key = e.game_id.to_string();
        let mut record = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition(shared::partition_for(e.game_id, partitions));
        if headers {
            record = record.headers(e.kafka_headers().into_iter().fold(
                OwnedHeaders::new_with_capacity(3),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value),
                    })
                },
            ));
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => anyhow::bail!("produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {n} records in {secs:.2} s ({:.0}/s)",
        n as f64 / secs
    );
    Ok(())
}

/// The analytics' refresh over a lake: the first pass (every file), then
/// passes with nothing new.
fn refresh(from: &str) -> anyhow::Result<()> {
    let lake = lake::Location::open(from)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut cache = lake::ReportCache::default();
    for pass in 0..4 {
        let started = Instant::now();
        let report = runtime.block_on(cache.refresh(&lake))?;
        println!(
            "pass {pass}: {:.3} s, {} events in {} files",
            started.elapsed().as_secs_f64(),
            report.events,
            cache.files()
        );
    }
    Ok(())
}

/// A partition added under a following exporter: seconds from an action's
/// ack to its row in the lake, on an old partition and on the new one.
fn grow(brokers: &str, topic: &str, rounds: i32, max_age: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tests::create_topics(brokers, &[(topic, 1, false)]))?;
    let dir = std::env::temp_dir().join(format!("lake-grow-{topic}"));
    std::fs::create_dir_all(&dir)?;
    let lake = lake::Location::open(dir.to_str().expect("utf-8 temp dir"))?;
    let mut config = lake::ExportConfig::new(brokers);
    config.actions_topic = topic.to_string();
    config.games_topic = None;
    config.roll.max_age = max_age;
    println!(
        "lake export following {topic}: partitions checked every {} ms, batches cut at {} ms",
        config.partition_check.as_millis(),
        max_age.as_millis()
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let exporter = scope.spawn(|| lake::export(&config, &lake, &stop));
        let rounds = (1..=rounds).try_for_each(|round| {
            runtime.block_on(tests::add_partitions(brokers, topic, round as usize + 1))?;
            // A new producer: it reads the grown topic's metadata first.
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("linger.ms", "0")
                .create()?;
            for partition in [0, round] {
                let value = serde_json::to_vec(&envelope(round as u64))?;
                producer
                    .send(BaseRecord::<(), _>::to(topic).payload(&value).partition(partition))
                    .map_err(|(e, _)| e)?;
            }
            producer.flush(Duration::from_secs(30))?;
            let acked = Instant::now();
            let mut seen: [Option<f64>; 2] = [None, None];
            while seen.iter().any(Option::is_none) {
                anyhow::ensure!(
                    acked.elapsed() < Duration::from_secs(120),
                    "round {round}: not in the lake after 120 s ({seen:?})"
                );
                let offsets = if dir.join("buffer_meta").exists() {
                    runtime.block_on(lake::report::offsets(&lake, "buffer_meta"))?
                } else {
                    Vec::new()
                };
                let old = offsets.iter().filter(|(p, _)| *p == 0).count() == round as usize;
                let new = offsets.iter().any(|(p, _)| *p == round);
                for (slot, there) in seen.iter_mut().zip([old, new]) {
                    if there && slot.is_none() {
                        *slot = Some(acked.elapsed().as_secs_f64());
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            println!(
                "round {round}: old partition 0 in the lake after {:.2} s, new partition {round} after {:.2} s",
                seen[0].unwrap_or_default(),
                seen[1].unwrap_or_default()
            );
            Ok(())
        });
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let exported = exporter
            .join()
            .map_err(|_| anyhow::anyhow!("the exporter panicked"))?;
        rounds.and(exported.map(|_| ()).map_err(anyhow::Error::from))
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn consume(brokers: &str, topic: &str, mut floor: Option<Floor>) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "lake-bench-baseline")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // As `lake export --once`: its end is one empty fetch, held 10 ms
        // (0.1 s sooner than with 100 ms, thirtieth session).
        .set("fetch.wait.max.ms", "10")
        // Tuned at its best (BENCHMARKS.md, "Lake", ninth session): with
        // librdkafka's 1 s fetch backoff the baseline waited for fetches a
        // third of its time (1.80 s against 1.20 s); small fetches and a
        // small queue are as fast and fault in a quarter of the pages.
        .set("max.partition.fetch.bytes", "2097152")
        .set("fetch.max.bytes", "8388608")
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.queue.backoff.ms", "10");
    // LAKE_BENCH_X="key=value,key=value": librdkafka settings to try on
    // the baseline (as `lake export -X key=value` takes them).
    for kv in std::env::var("LAKE_BENCH_X").unwrap_or_default().split(',') {
        if let Some((k, v)) = kv.split_once('=') {
            config.set(k.trim(), v.trim());
        }
    }
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    let partitions = tpl.count();
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let (mut records, mut bad, mut eofs) = (0u64, 0u64, 0usize);
    let mut bytes = 0usize;
    // LAKE_BENCH_RUN=N: messages taken in runs of up to N that librdkafka
    // has ready, each run decoded, then counted (and, for the floor,
    // written), as `lake export` takes them; default 1, one at a time.
    let run: usize = match std::env::var("LAKE_BENCH_RUN") {
        Ok(n) => n.parse()?,
        Err(_) => 1,
    };
    let mut held = Vec::with_capacity(run);
    let mut kept: Vec<lake::records::Decoded<'static>> = Vec::with_capacity(run);
    while eofs < partitions {
        // Without a timeout first (librdkafka then reads no clock), as
        // `lake export` polls.
        let polled = match consumer.poll(Duration::ZERO) {
            None if held.is_empty() => consumer.poll(Duration::from_millis(100)),
            polled => polled,
        };
        match polled {
            Some(Ok(msg)) => {
                held.push(msg);
                if held.len() < run {
                    continue;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => eofs += 1,
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
        // The same work per record as the exporter before building its
        // columns: borrow it from librdkafka (headers read), decode the
        // value; into a buffer kept from run to run, as the exporter's.
        let mut decoded: Vec<lake::records::Decoded<'_>> =
            lake::records::recycle(std::mem::take(&mut kept));
        decoded.extend(held.iter().map(|msg| {
            let record = lake::records::RecordRef::from_message(msg);
            let view = lake::records::decode_action(record.value);
            (record, view)
        }));
        for (msg, (record, view)) in held.iter().zip(&decoded) {
            match view {
                Ok(view) => {
                    bytes += view.host.len();
                    if let Some(floor) = &mut floor {
                        floor.push(msg.partition(), record, view)?;
                    }
                }
                Err(_) => bad += 1,
            }
            records += 1;
        }
        kept = lake::records::recycle(decoded);
        held.clear();
    }
    let written = floor.map(Floor::finish).transpose()?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(written) = written {
        println!("floor: {written} bytes written to column files");
    }
    println!(
        "consumed and decoded {records} records ({bad} bad, {bytes} host bytes) in {secs:.2} s ({:.0}/s)",
        records as f64 / secs
    );
    Ok(())
}

/// `lake_bench floor --topic T [--to DIR]`: the baseline's consume and
/// decode, plus the least any columnar writer of the lake's tables must do,
/// a row at a time. It was a lower bound for `lake export`'s time until the
/// export built its tables a run of records at a time (BENCHMARKS.md,
/// "Lake", thirtieth session); it is now about as fast:
/// - each of the 28 values of a record (`events` and `buffer_meta`) goes
///   into its column's buffer, the batch's six constants excepted;
/// - text is written with its length, numbers as zigzag deltas;
/// - the eight repeated text columns become a one-byte index into a
///   dictionary, hashed as Parquet's are;
/// - every 8,192 rows of a partition, each column is compressed with zstd
///   level 1 and the lake's hash table size (one reused context;
///   `LAKE_FLOOR_CODEC=lz4` or `none` for the others) and appended to the
///   partition's file in DIR (default `/tmp/lake-floor`);
/// - the files are synced once, at the end.
///
/// There are no Parquet pages, levels, statistics or footers, and no Hive
/// folders, manifests or `etl_meta`.
#[derive(Default)]
struct Floor {
    partitions: Vec<FloorPartition>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    written: usize,
    dir: std::path::PathBuf,
    codec: FloorCodec,
}

/// How the floor compresses a column (`LAKE_FLOOR_CODEC`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum FloorCodec {
    /// zstd level 1, as the lake by default.
    #[default]
    Zstd,
    /// LZ4 blocks (`lz4_flex`, the lake's `--compression lz4`).
    Lz4,
    /// Not compressed.
    None,
}

impl std::str::FromStr for FloorCodec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<FloorCodec> {
        match s {
            "zstd" => Ok(FloorCodec::Zstd),
            "lz4" => Ok(FloorCodec::Lz4),
            "none" => Ok(FloorCodec::None),
            other => anyhow::bail!("LAKE_FLOOR_CODEC={other}: zstd, lz4 or none"),
        }
    }
}

/// One partition's column buffers.
#[derive(Default)]
struct FloorPartition {
    rows: usize,
    columns: Vec<Vec<u8>>,
    dictionaries: Vec<FloorDictionary>,
    last: Vec<i64>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

const FLOOR_COLUMNS: usize = 25;
const FLOOR_DICTIONARIES: usize = 8;

impl FloorPartition {
    fn text(&mut self, column: usize, value: &[u8]) {
        let out = &mut self.columns[column];
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }

    /// The difference from the column's previous value, zigzag LEB128:
    /// offsets and times that grow by little take a byte or two.
    fn number(&mut self, column: usize, value: i64) {
        let delta = value.wrapping_sub(std::mem::replace(&mut self.last[column], value));
        let mut z = ((delta << 1) ^ (delta >> 63)) as u64;
        let out = &mut self.columns[column];
        while z >= 0x80 {
            out.push(z as u8 | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// The index of `value` in the column's dictionary (a hash map, as a
    /// Parquet dictionary is); a value past 255 distinct ones is written
    /// as text instead.
    fn repeated(&mut self, column: usize, dictionary: usize, value: &[u8]) {
        let dict = &mut self.dictionaries[dictionary];
        let index = match dict.get(value) {
            Some(&i) => i,
            None if dict.len() < 255 => {
                let i = dict.len() as u8;
                dict.insert(value.to_vec(), i);
                i
            }
            None => return self.text(column, value),
        };
        self.columns[column].push(index);
    }
}

/// The hasher Parquet's own dictionaries use.
type FloorDictionary = std::collections::HashMap<Vec<u8>, u8, ahash::RandomState>;

impl Floor {
    fn push(
        &mut self,
        partition: i32,
        r: &lake::records::RecordRef<'_>,
        view: &lake::records::ActionView<'_>,
    ) -> anyhow::Result<()> {
        let index = usize::try_from(partition)?;
        if self.partitions.len() <= index {
            self.partitions
                .resize_with(index + 1, FloorPartition::default);
        }
        let p = &mut self.partitions[index];
        if p.columns.is_empty() {
            p.columns = (0..FLOOR_COLUMNS)
                .map(|_| Vec::with_capacity(8192 * 16))
                .collect();
            p.dictionaries = vec![FloorDictionary::default(); FLOOR_DICTIONARIES];
            p.last = vec![0; FLOOR_COLUMNS];
        }
        // events: 13 values (topic, partition and etl id are constants).
        p.text(0, view.event_id.as_bytes());
        p.number(1, view.game_id as i64);
        p.repeated(2, 0, view.player_id.as_bytes());
        p.repeated(3, 1, view.name.as_deref().unwrap_or_default().as_bytes());
        p.repeated(4, 2, view.host.as_bytes());
        p.repeated(5, 3, view.user_agent.as_bytes());
        p.repeated(6, 4, view.accept.as_bytes());
        p.repeated(7, 5, view.client_addr.as_bytes());
        p.number(8, view.received_at_ms as i64);
        p.number(9, view.schema_version as i64);
        p.repeated(
            10,
            6,
            shared::GameKind::of(view.game_id).as_str().as_bytes(),
        );
        p.number(11, r.offset);
        p.number(12, r.timestamp_ms.unwrap_or(-1));
        // buffer_meta: 9 values (etl id, topic and partition constants).
        p.text(13, view.event_id.as_bytes());
        p.text(
            14,
            lake::tables::checksum(r.value.unwrap_or_default())
                .as_ref()
                .as_bytes(),
        );
        for (k, v) in &r.headers {
            let out = &mut p.columns[15];
            out.extend_from_slice(&((k.len() + 1 + v.len()) as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v);
        }
        p.repeated(16, 7, r.key.unwrap_or_default());
        p.number(17, r.offset);
        p.number(18, r.key.map_or(-1, |k| k.len() as i64));
        p.number(19, r.value.map_or(-1, |v| v.len() as i64));
        p.number(20, r.timestamp_ms.unwrap_or(-1));
        p.columns[21].push(r.timestamp_type as u8);
        p.rows += 1;
        if p.rows == 8192 {
            self.written += Self::flush(&mut self.compressor, &self.dir, self.codec, partition, p)?;
        }
        Ok(())
    }

    fn flush(
        compressor: &mut Option<zstd::bulk::Compressor<'static>>,
        dir: &std::path::Path,
        codec: FloorCodec,
        partition: i32,
        p: &mut FloorPartition,
    ) -> anyhow::Result<usize> {
        use std::io::Write as _;
        let compressor = match compressor {
            Some(c) => c,
            None => {
                // As the lake's pages are compressed (`lake::direct`).
                let mut zstd = zstd::bulk::Compressor::new(1)?;
                zstd.set_parameter(zstd::stream::raw::CParameter::HashLog(
                    lake::direct::ZSTD_HASH_LOG,
                ))?;
                compressor.insert(zstd)
            }
        };
        let file = match &mut p.file {
            Some(f) => f,
            None => {
                std::fs::create_dir_all(dir)?;
                p.file.insert(std::io::BufWriter::new(std::fs::File::create(
                    dir.join(partition.to_string()),
                )?))
            }
        };
        let mut written = 0;
        for column in &mut p.columns {
            if column.is_empty() {
                continue;
            }
            let compressed = match codec {
                FloorCodec::Zstd => compressor.compress(column)?,
                FloorCodec::Lz4 => lz4_flex::block::compress(column),
                FloorCodec::None => Vec::new(),
            };
            let out = if codec == FloorCodec::None {
                &column[..]
            } else {
                &compressed[..]
            };
            file.write_all(out)?;
            written += out.len();
            column.clear();
        }
        p.rows = 0;
        Ok(written)
    }

    /// Flushes every partition's last rows; the bytes written.
    fn finish(mut self) -> anyhow::Result<usize> {
        for (partition, p) in self.partitions.iter_mut().enumerate() {
            if p.columns.is_empty() {
                continue;
            }
            self.written += Self::flush(
                &mut self.compressor,
                &self.dir,
                self.codec,
                partition as i32,
                p,
            )?;
            if let Some(file) = p.file.take() {
                file.into_inner()?.sync_all()?;
            }
        }
        Ok(self.written)
    }
}
