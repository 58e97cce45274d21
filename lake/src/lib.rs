//! # lake: every action exported to Parquet exactly once, and the seed's analytics on it
//!
//! `lake export` reads `actions` (and the engine's outcomes from `games`) and
//! writes Hive-style Parquet tables to a folder or an object store;
//! `lake report` prints seed 002's two tables from them. Spark, DuckDB and
//! pyarrow read the files unchanged.
//!
//! ## Exactly once, offsets with the data
//! Each Kafka partition is cut into *batches* of consecutive offsets
//! `[first, last]`. A batch is written in this order, each object with
//! create-if-absent (a hard link from a fsynced staged file on a folder,
//! `If-None-Match: *` on S3), so every object appears whole or not at all:
//! 1. its *manifest* `_lake/log/<topic>/<partition>/<first>-<last>.json`
//!    (the range, the etl id, the times and the list of files);
//! 2. its data files, each named `<topic>+<partition>+<first>+<last>.parquet`
//!    with the batch's range, in the tables' Hive folders (on a folder, a
//!    `purchases` file is a hard link to its `events` file, made once that
//!    one exists: a second name, created if absent like the others);
//! 3. its `etl_meta` row.
//!
//! A partition's next manifest is written only after every file of the
//! previous one exists. On start the exporter reads, per partition, the
//! manifest with the highest range: if all its files exist it resumes at
//! `last + 1`; if not (a crash between 1 and 3) it reads exactly
//! `[first, last]` again and writes the missing files, with the same names and
//! the same rows (the rows are a function of the records and the manifest).
//! No consumer group offset is used. So after a `kill -9` at any point and a
//! restart, every offset is in the tables once: none is skipped (the resume
//! point is after a complete batch only) and none twice (a batch's files have
//! one name each, and a redone batch writes the same names).
//!
//! ## Layout
//! - [`config`]: [`ExportConfig`], [`RollPolicy`] (when a batch is cut).
//! - [`location`]: `--to`/`--from` (a folder, `s3://`, `gs://` or `az://`) to an
//!   [`object_store::ObjectStore`].
//! - [`naming`]: file, folder and manifest names, and parsing them back.
//! - [`records`]: [`records::RecordRef`] (a Kafka record, borrowed),
//!   [`records::RawRecord`] (owned) and the lenient views of `actions` and
//!   `games` values.
//! - [`tables`]: a batch of records to the tables' Arrow batches or Parquet
//!   files (pure), built a record at a time ([`tables::BatchBuilder`]).
//! - [`direct`]: `events` and `buffer_meta` written as Parquet straight
//!   from the records, a page at a time, without Arrow in between.
//! - [`store`]: Parquet encoding, create-if-absent puts, manifests.
//! - [`local`]: create-if-absent on a folder, with fsyncs.
//! - [`mod@export`]: the consume, cut, write loop and recovery.
//! - [`writer`]: the thread that finishes and writes the batches the loop
//!   cuts, a partition's in order.
//! - [`mod@report`]: reads the tables back: seed 002's reports (incrementally,
//!   [`report::ReportCache`]), offsets for checks.
//! - [`analytics`]: `GET /api/analytics/{report}` (an axum router a host
//!   process merges) answered from a background refresh.
//! - `query` (cargo feature `query`, default on): `lake query`, any SQL over
//!   the tables (DataFusion).

pub mod analytics;
pub mod config;
pub mod direct;
pub mod export;
pub mod local;
pub mod location;
pub mod naming;
#[cfg(feature = "query")]
pub mod query;
pub mod records;
pub mod report;
pub mod store;
pub mod tables;
pub mod writer;

pub use analytics::Analytics;
pub use config::{ExportConfig, Mode, RollPolicy};
pub use export::{export, ExportSummary};
pub use location::Location;
pub use report::{report, Report, ReportCache};

/// Everything that can go wrong in the lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("bad location {location:?}: {reason}")]
    Location { location: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("query: {0}")]
    Query(String),
    #[error("{0}")]
    Other(String),
}

/// The lake's result type.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;
