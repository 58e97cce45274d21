//! `lake export`: consume, cut into batches, write; resume from the lake.
//!
//! One loop per source topic (`actions`, and `games` for outcomes), each on
//! its own thread with its own consumer: assigned partitions (no consumer
//! group offsets), positioned from the lake's batch log
//! ([`crate::store::partition_state`]); following, partitions added to the
//! topic later are found ([`ExportConfig::partition_check`]) and assigned
//! the same way. Records are taken in runs of up to 64 (`POLL_RUN`) that
//! librdkafka has ready, decoded, and built into their partitions' open
//! [`BatchBuilder`]s table by table (columns, not records, are held; a run
//! is split where a batch is cut) until the batch is cut by the
//! [`crate::RollPolicy`],
//! the shared byte cap, the end of the partition (`--once`) or a stop; then
//! the batch is handed to the topic's [`Writer`] thread, which finishes its
//! files ([`BatchBuilder::finish`]) and writes them
//! ([`crate::store::write_batch`]) while the loop goes on consuming; a
//! partition's next batch is written only after the one before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::config::{ExportConfig, Mode};
use crate::location::Location;
use crate::records::{decode_action, recycle, Decoded, RecordRef};
use crate::store::{partition_state, Manifest};
use crate::tables::{BatchBuilder, Encoder, Output, Source};
use crate::writer::{WriteJob, Writer, Written};
use crate::LakeError;

/// Chunks ([`crate::tables::CHUNK_ROWS`] rows of a file) that may wait for
/// the encoder thread before the consume loop waits for it.
const ENCODER_QUEUE: usize = 32;

/// Most messages taken from the consumer in one run: each run's `actions`
/// values are decoded together, then built into the tables table by table.
const POLL_RUN: usize = 64;

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records written to the lake (all topics).
    pub records: u64,
    /// Batches written.
    pub batches: u64,
    /// Parquet bytes written.
    pub bytes: u64,
}

impl ExportSummary {
    fn add(&mut self, other: &ExportSummary) {
        self.records += other.records;
        self.batches += other.batches;
        self.bytes += other.bytes;
    }
}

/// Exports `actions` (and `games`, when configured) into `lake` until `stop`
/// is set, or, with [`Mode::Once`], until every partition is exported up
/// to its end as of now.
pub fn export(
    config: &ExportConfig,
    lake: &Location,
    stop: &AtomicBool,
) -> crate::Result<ExportSummary> {
    let mut sources = vec![(config.actions_topic.clone(), Source::Actions)];
    if let Some(games) = &config.games_topic {
        sources.push((games.clone(), Source::Games));
    }
    let sweep = match &lake.target {
        crate::location::Target::Folder(dir) => sweep_staged_files(dir.clone()),
        crate::location::Target::Bucket { .. } => None,
    };
    let share = config.max_buffered_bytes / sources.len();
    let results: Vec<crate::Result<ExportSummary>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|(topic, source)| {
                scope.spawn(move || {
                    let result = TopicExport::new(config, lake, topic, *source, share, stop)
                        .and_then(|export| match export {
                            Some(mut e) => e.run(stop),
                            None => Ok(ExportSummary::default()),
                        });
                    if result.is_err() {
                        // One topic failing stops the other: one process, one fate.
                        stop.store(true, Ordering::SeqCst);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LakeError::Other("export thread panicked".into())))
            })
            .collect()
    });
    // `--once` also waits for the sweep (it ran beside the export).
    if let (Some(sweep), Mode::Once) = (sweep, config.mode) {
        let _ = sweep.join();
    }
    let mut total = ExportSummary::default();
    for r in results {
        total.add(&r?);
    }
    Ok(total)
}

/// Deletes, on a thread of its own, the staged files that writes killed
/// midway left in a folder lake ([`crate::local::sweep_staged`]): the
/// walk takes as long as the lake is big, and the export need not wait.
fn sweep_staged_files(dir: std::path::PathBuf) -> Option<std::thread::JoinHandle<()>> {
    let sweep = move || match crate::local::sweep_staged(&dir, crate::local::STAGED_MAX_AGE) {
        Ok(0) => {}
        Ok(n) => info!(
            files = n,
            "deleted the staged files of writes that never finished"
        ),
        Err(e) => warn!(lake = %dir.display(), "sweeping staged files: {e}"),
    };
    std::thread::Builder::new()
        .name("lake-sweep".into())
        .spawn(sweep)
        .inspect_err(|e| warn!("sweeping staged files: no thread: {e}"))
        .ok()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Logs librdkafka's errors, except the end-of-partition events `--once`
/// asks for (they are not errors here).
struct LakeContext {
    lag: ops::metrics::ConsumerLag,
}

impl ClientContext for LakeContext {
    fn stats_raw(&self, statistics: &[u8]) {
        self.lag.record("lake", statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            warn!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for LakeContext {}

/// One partition's open batch.
struct OpenBatch {
    partition: i32,
    batch: BatchBuilder,
    /// Bytes of the records taken in (as [`RecordRef::size`] counts them).
    bytes: usize,
    opened: Option<Instant>,
    started_ms: i64,
    /// The next offset this partition expects (records below it are old).
    next: Option<i64>,
    /// A batch the lake has a manifest for but not all files: redone first,
    /// with exactly its range.
    redo: Option<Manifest>,
    /// `--once`: the partition reached its end and is finished.
    done: bool,
}

/// The export of one topic.
struct TopicExport<'a> {
    consumer: BaseConsumer<LakeContext>,
    lake: &'a Location,
    /// Reads the lake's batch log (object stores are async).
    runtime: tokio::runtime::Runtime,
    /// Apart from the consumer, so a message borrowed from it can be pushed.
    batches: Batches<'a>,
}

/// One topic's open batches and what writing them needs.
struct Batches<'a> {
    config: &'a ExportConfig,
    topic: String,
    source: Source,
    cap: usize,
    parts: Vec<OpenBatch>,
    index: HashMap<i32, usize>,
    /// Bytes of the open batches and of the batches the writer has not
    /// written yet: what the cap bounds.
    held: usize,
    /// Encodes the open batches' Parquet chunks (as [`Output::Parquet`]).
    output: Output,
    writer: Writer,
    /// Batches written (the writer's reports).
    summary: ExportSummary,
    /// Records taken into batches in this run, written or not yet.
    consumed: u64,
    /// The allocation [`Batches::push_held`] decodes each run into, kept
    /// from run to run: a fresh one for every run made glibc's malloc
    /// consolidate its free lists each time (BENCHMARKS.md, "Lake",
    /// thirtieth session).
    decoded: Vec<Decoded<'static>>,
}

impl<'a> TopicExport<'a> {
    /// Connects, reads the lake's state and assigns the partitions; `None`
    /// when the topic does not exist in `--once` mode (nothing to export).
    fn new(
        config: &'a ExportConfig,
        lake: &'a Location,
        topic: &str,
        source: Source,
        cap: usize,
        stop: &AtomicBool,
    ) -> crate::Result<Option<TopicExport<'a>>> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("group.id", "lake-export")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // How long the broker holds a fetch with nothing new. `--once`
            // ends when every partition has said it is at its end, which
            // takes one such fetch: 10 ms instead of 100 ended a
            // 1,000,000-record export 0.1 s sooner, and the baseline
            // consume as much (BENCHMARKS.md, "Lake", thirtieth session).
            // A follower waits longer between empty fetches.
            .set(
                "fetch.wait.max.ms",
                if config.mode == Mode::Once {
                    "10"
                } else {
                    "100"
                },
            )
            // What librdkafka prefetches, for all partitions together (one
            // consumer queue): fetches of 2 MiB per partition and 8 MiB in
            // all, at most 4 MiB queued. Once the queue is full it postpones
            // the next fetch by `fetch.queue.backoff.ms` (default 1 s, which
            // left a catch-up export idle a third of its time). Measured on
            // one core, 1,000,000 records (BENCHMARKS.md, "Lake", ninth
            // session): as fast as 64 MiB fetches with a 10 ms backoff, with
            // a peak of 275 MiB instead of 640 and half the page faults.
            .set("max.partition.fetch.bytes", "2097152")
            .set("fetch.max.bytes", "8388608")
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.queue.backoff.ms", "10")
            .set("statistics.interval.ms", ops::metrics::STATS_INTERVAL_MS);
        for (k, v) in &config.extra {
            cc.set(k, v);
        }
        let consumer: BaseConsumer<LakeContext> = cc.create_with_context(LakeContext {
            lag: config.registry.consumer_lag(),
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LakeError::Other(format!("tokio runtime: {e}")))?;
        let Some(partitions) = wait_for_topic(&consumer, topic, config.mode, source, stop)? else {
            return Ok(None);
        };
        let output = Output::Parquet(Some(Encoder::start(ENCODER_QUEUE)?));
        let mut tpl = TopicPartitionList::new();
        let mut parts = Vec::new();
        let mut index = HashMap::new();
        for p in partitions {
            let (offset, open) = open_partition(&runtime, lake, topic, p, source, &output)?;
            tpl.add_partition_offset(topic, p, offset)?;
            index.insert(p, parts.len());
            parts.push(open);
        }
        consumer.assign(&tpl)?;
        info!(topic, partitions = parts.len(), lake = %lake.display, "exporting");
        Ok(Some(TopicExport {
            consumer,
            lake,
            runtime,
            batches: Batches {
                config,
                topic: topic.to_string(),
                source,
                cap,
                parts,
                index,
                held: 0,
                output,
                writer: Writer::start(lake.clone(), source)?,
                summary: ExportSummary::default(),
                consumed: 0,
                decoded: Vec::with_capacity(POLL_RUN),
            },
        }))
    }

    fn run(&mut self, stop: &AtomicBool) -> crate::Result<ExportSummary> {
        let b = &mut self.batches;
        let once = b.config.mode == Mode::Once;
        let mut last_age_check = Instant::now();
        let mut last_progress = (Instant::now(), 0u64);
        let mut last_partition_check = Instant::now();
        // The clock is read every so many records, not for each one (it
        // was 5% of the export's time, BENCHMARKS.md).
        let mut unclocked = 0u32;
        let mut held = Vec::with_capacity(POLL_RUN);
        loop {
            if stop.load(Ordering::SeqCst) {
                // A clean stop writes what it holds; a redo batch still short
                // of its range is left for the next start.
                for i in 0..b.parts.len() {
                    if b.parts[i].redo.is_none() {
                        b.cut(i)?;
                    }
                }
                break;
            }
            if once && b.parts.iter().all(|p| p.done) {
                break;
            }
            b.collect()?;
            // Messages are taken in runs (BENCHMARKS.md, "Lake", thirtieth
            // session): up to `POLL_RUN` that librdkafka has ready, the
            // first waited for, then pushed together. Each poll tries
            // without a timeout first: librdkafka then reads no clock.
            let mut event = None;
            while held.len() < POLL_RUN {
                let polled = match self.consumer.poll(Duration::ZERO) {
                    None if held.is_empty() => self.consumer.poll(Duration::from_millis(100)),
                    polled => polled,
                };
                match polled {
                    Some(Ok(msg)) => {
                        unclocked += 1;
                        held.push(msg);
                    }
                    Some(Err(e)) => {
                        event = Some(e);
                        break;
                    }
                    None => {
                        unclocked = u32::MAX;
                        break;
                    }
                }
            }
            b.push_held(&held)?;
            held.clear();
            match event {
                Some(KafkaError::PartitionEOF(p)) => {
                    unclocked = u32::MAX;
                    if let Some(&i) = b.index.get(&p) {
                        if once && !b.parts[i].done {
                            if b.parts[i].redo.is_some() && !b.parts[i].batch.is_empty() {
                                warn!(topic = %b.topic, partition = p,
                                    "the end came before the redone batch's last offset");
                            }
                            b.cut(i)?;
                            b.parts[i].done = true;
                        }
                    }
                }
                Some(e) => warn!(topic = %b.topic, "consumer: {e}"),
                None => {}
            }
            if unclocked < 256 {
                continue;
            }
            unclocked = 0;
            if last_age_check.elapsed() >= Duration::from_millis(50) {
                last_age_check = Instant::now();
                for i in 0..b.parts.len() {
                    let p = &b.parts[i];
                    let age = p.opened.map_or(Duration::ZERO, |t| t.elapsed());
                    if p.redo.is_none() && b.config.roll.due(p.batch.len(), p.bytes, age) {
                        b.cut(i)?;
                    }
                }
            }
            if last_progress.0.elapsed() >= b.config.progress_every {
                b.progress(&self.consumer, last_progress);
                last_progress = (Instant::now(), b.consumed);
            }
            if !once && last_partition_check.elapsed() >= b.config.partition_check {
                last_partition_check = Instant::now();
                b.follow_new_partitions(&self.consumer, self.lake, &self.runtime)?;
            }
        }
        // Every batch handed over is written before the export says done.
        while let Some(written) = b.writer.wait_written() {
            b.account(written?);
        }
        info!(topic = %b.topic, records = b.summary.records, batches = b.summary.batches,
            bytes = b.summary.bytes, "export finished");
        Ok(b.summary.clone())
    }
}

impl Batches<'_> {
    /// Following: assigns the partitions added to the topic since the
    /// export started, each from where the lake has it (its start, for a
    /// new one), so a topic that grows is exported with no restart. The
    /// partitions already assigned keep their positions. A failed look is
    /// only logged: the next one tries again.
    fn follow_new_partitions(
        &mut self,
        consumer: &BaseConsumer<LakeContext>,
        lake: &Location,
        runtime: &tokio::runtime::Runtime,
    ) -> crate::Result<()> {
        let metadata = match consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(5)) {
            Ok(metadata) => metadata,
            Err(e) => {
                warn!(topic = %self.topic, "looking for new partitions: {e}");
                return Ok(());
            }
        };
        let added: Vec<i32> = topic_partitions(&metadata, &self.topic)
            .into_iter()
            .filter(|p| !self.index.contains_key(p))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        // All or none: a partition whose state could not be read is looked
        // for again at the next check, with the others.
        let opened = added
            .iter()
            .map(|&p| open_partition(runtime, lake, &self.topic, p, self.source, &self.output))
            .collect::<crate::Result<Vec<_>>>();
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                warn!(topic = %self.topic, partitions = ?added, "reading new partitions' state: {e}");
                return Ok(());
            }
        };
        let mut tpl = TopicPartitionList::new();
        for (&p, (offset, open)) in added.iter().zip(opened) {
            tpl.add_partition_offset(&self.topic, p, offset)?;
            self.index.insert(p, self.parts.len());
            self.parts.push(open);
        }
        consumer.incremental_assign(&tpl)?;
        info!(topic = %self.topic, partitions = ?added, "the topic grew: exporting its new partitions");
        Ok(())
    }

    /// Pushes messages polled in a row, each to its partition's batch.
    /// `actions` values are decoded for the whole run first, then each
    /// partition's stretch of it goes in table by table
    /// ([`BatchBuilder::push_actions`]).
    fn push_held(&mut self, held: &[BorrowedMessage<'_>]) -> crate::Result<()> {
        let mut start = 0;
        let mut decoded: Vec<Decoded<'_>> = recycle(std::mem::take(&mut self.decoded));
        if self.source == Source::Actions {
            decoded.extend(held.iter().map(|m| {
                let r = RecordRef::from_message(m);
                let view = decode_action(r.value);
                (r, view)
            }));
        }
        for stretch in held.chunk_by(|a, b| a.partition() == b.partition()) {
            let end = start + stretch.len();
            if let Some(&i) = self.index.get(&stretch[0].partition()) {
                match self.source {
                    Source::Actions => self.push_run(
                        i,
                        &decoded[start..end],
                        |(r, _)| r,
                        BatchBuilder::push_actions,
                    )?,
                    Source::Games => {
                        let records: Vec<_> = stretch.iter().map(RecordRef::from_message).collect();
                        self.push_run(
                            i,
                            &records,
                            |r| r,
                            |batch, run| run.iter().try_for_each(|r| batch.push(r)),
                        )?;
                    }
                }
            }
            start = end;
        }
        self.decoded = recycle(decoded);
        Ok(())
    }

    /// Adds records of partition `i`, in offset order, to its batch,
    /// cutting as the rules say (`add` puts a stretch of them in the
    /// batch). The age limit is checked by the caller's clock, not per
    /// record.
    fn push_run<'r, T: 'r>(
        &mut self,
        i: usize,
        mut run: &[T],
        record: impl Fn(&T) -> &RecordRef<'r>,
        add: impl Fn(&mut BatchBuilder, &[T]) -> crate::Result<()>,
    ) -> crate::Result<()> {
        while let Some(first) = run.first() {
            let p = &self.parts[i];
            if p.done {
                return Ok(());
            }
            if let Some(next) = p.next {
                if record(first).offset < next {
                    run = &run[run.iter().take_while(|t| record(t).offset < next).count()..];
                    continue;
                }
            }
            if let Some(m) = &p.redo {
                if record(first).offset > m.last_offset {
                    self.cut(i)?;
                    continue;
                }
            }
            let p = &mut self.parts[i];
            if p.batch.is_empty() {
                p.opened = Some(Instant::now());
                p.started_ms = now_ms();
            }
            // The records up to the first that makes a cut due.
            let (mut take, mut bytes, mut due) = (0, 0, false);
            for t in run {
                let r = record(t);
                take += 1;
                bytes += r.size();
                due = match &p.redo {
                    Some(m) => r.offset >= m.last_offset,
                    None => {
                        self.config
                            .roll
                            .due(p.batch.len() + take, p.bytes + bytes, Duration::ZERO)
                    }
                };
                if due {
                    break;
                }
            }
            self.consumed += take as u64;
            p.bytes += bytes;
            self.held += bytes;
            add(&mut p.batch, &run[..take])?;
            run = &run[take..];
            if due {
                self.cut(i)?;
            }
            // Memory stays bounded whatever the partition count: past the
            // cap the loop waits for the writer, or, with nothing in
            // flight, cuts the largest open batch early.
            while self.held > self.cap {
                if let Some(written) = self.writer.wait_written() {
                    self.account(written?);
                } else if let Some(largest) = (0..self.parts.len())
                    .filter(|&j| self.parts[j].redo.is_none() && self.parts[j].bytes > 0)
                    .max_by_key(|&j| self.parts[j].bytes)
                {
                    self.cut(largest)?;
                } else {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Takes in the writer's reports so far, without waiting; a failed
    /// write fails the export.
    fn collect(&mut self) -> crate::Result<()> {
        while let Some(written) = self.writer.try_written() {
            self.account(written?);
        }
        Ok(())
    }

    /// A batch is in the lake: its records count, its bytes are free.
    fn account(&mut self, w: Written) {
        self.held -= w.held;
        self.summary.records += w.records;
        self.summary.batches += 1;
        self.summary.bytes += w.bytes;
    }

    /// Hands partition `i`'s open batch, if any, to the writer.
    fn cut(&mut self, i: usize) -> crate::Result<()> {
        let p = &mut self.parts[i];
        let Some((first, last)) = p.batch.range() else {
            return Ok(());
        };
        let fresh = BatchBuilder::new(
            self.source,
            &self.topic,
            p.partition,
            &uuid::Uuid::new_v4().to_string(),
            self.output.clone(),
        );
        let batch = std::mem::replace(&mut p.batch, fresh);
        let held = std::mem::take(&mut p.bytes);
        p.opened = None;
        let (manifest, redo) = match p.redo.take() {
            Some(m) => (m, true),
            None => (
                Manifest {
                    etl_id: batch.etl_id().to_string(),
                    topic: self.topic.clone(),
                    partition: p.partition,
                    first_offset: first,
                    last_offset: last,
                    records: batch.len() as u64,
                    mode: self.config.mode.as_str().to_string(),
                    timestamp_start_ms: p.started_ms,
                    timestamp_end_ms: now_ms(),
                    // Filled in by the writer from the finished batch.
                    files: Vec::new(),
                },
                false,
            ),
        };
        p.next = Some(manifest.last_offset.max(last) + 1);
        self.writer.send(WriteJob {
            batch,
            manifest,
            redo,
            held,
        })
    }

    /// Logs the records consumed (and per second since the last line),
    /// those written to the lake, those consumed but not written yet (open
    /// batches and the writer's queue), and each partition's lag: records
    /// on the broker not consumed yet.
    fn progress(
        &self,
        consumer: &BaseConsumer<LakeContext>,
        (since, consumed_then): (Instant, u64),
    ) {
        let secs = since.elapsed().as_secs_f64().max(1e-3);
        let rate = (self.consumed - consumed_then) as f64 / secs;
        let lags: Vec<String> = self
            .parts
            .iter()
            .map(|p| {
                let lag = consumer
                    .fetch_watermarks(&self.topic, p.partition, Duration::from_millis(500))
                    .map(|(low, high)| {
                        let next = p
                            .batch
                            .range()
                            .map(|(_, last)| last + 1)
                            .or(p.next)
                            .unwrap_or(low)
                            .max(low);
                        (high - next).max(0).to_string()
                    })
                    .unwrap_or_else(|_| "?".into());
                format!("{}:{lag}", p.partition)
            })
            .collect();
        let unwritten = self.consumed.saturating_sub(self.summary.records);
        info!(topic = %self.topic, consumed = self.consumed, per_second = rate as u64,
            written = self.summary.records, unwritten, lag = %lags.join(" "), "progress");
    }
}

/// Reads partition `p`'s state from the lake and opens its first batch:
/// a batch cut short is redone with its range and etl id, else a new one
/// starts after the last complete batch. Returns where to consume from.
fn open_partition(
    runtime: &tokio::runtime::Runtime,
    lake: &Location,
    topic: &str,
    p: i32,
    source: Source,
    output: &Output,
) -> crate::Result<(Offset, OpenBatch)> {
    let state = runtime.block_on(partition_state(lake, topic, p))?;
    let offset = state.next_offset.map_or(Offset::Beginning, Offset::Offset);
    if let Some(m) = &state.redo {
        warn!(
            topic,
            partition = p,
            first = m.first_offset,
            last = m.last_offset,
            "the last batch was cut short: redoing it"
        );
    }
    // A redone batch keeps its etl id (its rows are the same).
    let etl_id = state
        .redo
        .as_ref()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |m| m.etl_id.clone());
    let open = OpenBatch {
        partition: p,
        batch: BatchBuilder::new(source, topic, p, &etl_id, output.clone()),
        bytes: 0,
        opened: None,
        started_ms: 0,
        next: state.next_offset,
        redo: state.redo,
        done: false,
    };
    Ok((offset, open))
}

/// The partitions of `topic` in `metadata` (none if it has an error).
fn topic_partitions(metadata: &rdkafka::metadata::Metadata, topic: &str) -> Vec<i32> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect()
}

/// The topic's partitions. `--once`: a missing `actions` topic is an error,
/// a missing `games` topic means no outcomes yet (`None`). Following: waits
/// for the topic to appear (`None` if stopped first).
fn wait_for_topic(
    consumer: &BaseConsumer<LakeContext>,
    topic: &str,
    mode: Mode,
    source: Source,
    stop: &AtomicBool,
) -> crate::Result<Option<Vec<i32>>> {
    let mut warned = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = topic_partitions(&metadata, topic);
        if !partitions.is_empty() {
            return Ok(Some(partitions));
        }
        match (mode, source) {
            (Mode::Once, Source::Actions) => {
                return Err(LakeError::Other(format!("topic {topic} does not exist")))
            }
            (Mode::Once, Source::Games) => {
                warn!(topic, "no such topic: no outcomes exported");
                return Ok(None);
            }
            (Mode::Follow, _) => {
                if !warned {
                    warn!(topic, "waiting for the topic to exist");
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
