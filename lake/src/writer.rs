//! The export's writer: a batch the consume loop cuts is finished (its last
//! Parquet pages and footers) and written ([`crate::store::write_batch`]) on
//! a thread of its own, so the loop goes on consuming and decoding while
//! the files are encoded and fsynced (the fsyncs were 25 to 40 ms per batch
//! waited for on the loop's thread, BENCHMARKS.md "Lake").
//!
//! Exactly once still holds (lib.rs): a partition's batches are written in
//! the order they were cut, each only once the one before it is complete
//! (its `etl_meta` file exists), and not at all if that one failed; batches
//! of different partitions are written together, their fsyncs overlapping.
//! The loop learns a batch is in the lake (its records count as exported,
//! its bytes are no longer held) only from [`Writer::try_written`] and
//! [`Writer::wait_written`].

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tracing::warn;

use crate::location::Location;
use crate::store::{write_batch, Manifest};
use crate::tables::{BatchBuilder, Source};
use crate::LakeError;

/// A batch cut by the loop, to be finished and written.
pub struct WriteJob {
    pub batch: BatchBuilder,
    /// Its manifest. For a new batch `files` is filled in from the batch;
    /// for a redone one (`redo`) it is the manifest already in the lake.
    pub manifest: Manifest,
    pub redo: bool,
    /// Bytes the batch counted against the export's cap, given back once
    /// it is written.
    pub held: usize,
}

/// A batch now complete in the lake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub partition: i32,
    pub records: u64,
    /// Parquet bytes written.
    pub bytes: u64,
    /// [`WriteJob::held`], given back.
    pub held: usize,
}

/// The writer thread of one topic's export.
pub struct Writer {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<WriteJob>>,
    written: mpsc::Receiver<crate::Result<Written>>,
    thread: Option<JoinHandle<()>>,
    in_flight: usize,
}

impl Writer {
    /// Starts the thread, writing `source` batches into `lake`.
    pub fn start(lake: Location, source: Source) -> crate::Result<Writer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LakeError::Other(format!("tokio runtime: {e}")))?;
        let (jobs, mut incoming) = tokio::sync::mpsc::unbounded_channel::<WriteJob>();
        let (report, written) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lake-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Each partition's last batch handed over: the next one
                    // waits for it.
                    let mut tails: HashMap<i32, tokio::task::JoinHandle<bool>> = HashMap::new();
                    while let Some(job) = incoming.recv().await {
                        let partition = job.manifest.partition;
                        let before = tails.remove(&partition);
                        let (lake, report) = (lake.clone(), report.clone());
                        let task = tokio::spawn(async move {
                            let before_ok = match before {
                                Some(before) => matches!(before.await, Ok(true)),
                                None => true,
                            };
                            let result = if before_ok {
                                write(job, &lake, source).await
                            } else {
                                Err(LakeError::Other(format!(
                                    "partition {partition}: not written, the batch before it failed"
                                )))
                            };
                            let ok = result.is_ok();
                            let _ = report.send(result);
                            ok
                        });
                        tails.insert(partition, task);
                    }
                    for (_, task) in tails {
                        let _ = task.await;
                    }
                });
            })
            .map_err(|e| LakeError::Other(format!("writer thread: {e}")))?;
        Ok(Writer {
            jobs: Some(jobs),
            written,
            thread: Some(thread),
            in_flight: 0,
        })
    }

    /// Hands a batch over; it is written after the partition's batches
    /// handed over before it.
    pub fn send(&mut self, job: WriteJob) -> crate::Result<()> {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| LakeError::Other("the writer thread is gone".into()))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Batches handed over and not yet reported.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// A batch written (or failed) since the last call, without waiting.
    pub fn try_written(&mut self) -> Option<crate::Result<Written>> {
        let r = self.written.try_recv().ok()?;
        self.in_flight -= 1;
        Some(r)
    }

    /// Waits for the next batch written (or failed); `None` when none is in
    /// flight.
    pub fn wait_written(&mut self) -> Option<crate::Result<Written>> {
        if self.in_flight == 0 {
            return None;
        }
        let r = self
            .written
            .recv()
            .unwrap_or_else(|_| Err(LakeError::Other("the writer thread stopped".into())));
        self.in_flight -= 1;
        Some(r)
    }
}

impl Drop for Writer {
    /// Lets the batches handed over be written, then ends the thread.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the lake writer thread panicked");
            }
        }
    }
}

/// Finishes a batch's files and writes them.
async fn write(job: WriteJob, lake: &Location, source: Source) -> crate::Result<Written> {
    let WriteJob {
        batch,
        mut manifest,
        redo,
        held,
    } = job;
    let records = batch.len() as u64;
    let files = batch.finish(&manifest.info(source))?;
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    if !redo {
        manifest.files = paths;
    } else if paths != manifest.files {
        warn!(topic = %manifest.topic, partition = manifest.partition,
            "a redone batch's files differ from its manifest's (records gone since?)");
    }
    let bytes = write_batch(lake, &manifest, &files).await?;
    Ok(Written {
        partition: manifest.partition,
        records,
        bytes,
        held,
    })
}
