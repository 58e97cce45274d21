//! Writing the lake: Parquet encoding, create-if-absent puts, manifests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use arrow_array::RecordBatch;
use futures_util::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::location::{Location, Target};
use crate::naming::{log_dir, manifest_path, parse_manifest_name};
use crate::tables::{BatchInfo, FileContent, Source, TableFile};
use crate::LakeError;

/// A batch's manifest: written before its files, so a restart knows exactly
/// which range to redo and with which etl id and times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub etl_id: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: u64,
    pub mode: String,
    pub timestamp_start_ms: i64,
    pub timestamp_end_ms: i64,
    /// Paths under the lake's root, `etl_meta/...` last.
    pub files: Vec<String>,
}

impl Manifest {
    /// The [`BatchInfo`] this manifest describes.
    pub fn info(&self, source: Source) -> BatchInfo {
        BatchInfo {
            etl_id: self.etl_id.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            first: self.first_offset,
            last: self.last_offset,
            source,
            mode: self.mode.clone(),
            started_ms: self.timestamp_start_ms,
            ended_ms: self.timestamp_end_ms,
        }
    }
}

/// The compression codec of the lake's Parquet files. Every one of them is
/// read by Spark, DuckDB and pyarrow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    /// zstd level 1: the smallest files.
    #[default]
    Zstd,
    /// Snappy (Spark's default): larger files, less CPU.
    Snappy,
    /// LZ4 (the raw framing Parquet now names `LZ4_RAW`).
    Lz4,
    /// No compression.
    None,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::Zstd => Compression::ZSTD(ZstdLevel::default()),
            Codec::Snappy => Compression::SNAPPY,
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::None => Compression::UNCOMPRESSED,
        }
    }
}

static CODEC: OnceLock<Codec> = OnceLock::new();

/// Chooses the codec for every file this process writes; only the first
/// call counts, and it must come before the first file (else the default,
/// [`Codec::Zstd`], is kept). Returns the codec in force.
pub fn set_codec(codec: Codec) -> Codec {
    *CODEC.get_or_init(|| codec)
}

/// The codec in force ([`set_codec`]).
pub(crate) fn compression() -> Compression {
    CODEC.get_or_init(Codec::default).compression()
}

/// The lake's Parquet settings (the codec of [`set_codec`], zstd level 1 by
/// default; dictionaries for repeated text, deltas for offsets and times),
/// built once.
pub fn writer_properties() -> WriterProperties {
    static PROPS: OnceLock<WriterProperties> = OnceLock::new();
    PROPS
        .get_or_init(|| {
            let codec = *CODEC.get_or_init(Codec::default);
            let mut props = WriterProperties::builder()
                .set_compression(codec.compression())
                .set_max_row_group_row_count(Some(128 * 1024))
                // A page per chunk of rows (tables::CHUNK_ROWS): an open
                // batch holds its rows encoded and compressed, not as
                // pending dictionary indices (8 bytes per value) until a
                // page of 20,000 rows (BENCHMARKS.md, "Lake").
                .set_data_page_row_count_limit(crate::tables::CHUNK_ROWS)
                .set_created_by("build-a-nation lake".into());
            // Unique per row: a dictionary is built only to be thrown away,
            // and the min/max of random ids prunes nothing (two comparisons
            // per value).
            for column in ["event_id", "msg_id", "checksum"] {
                props = props
                    .set_column_dictionary_enabled(ColumnPath::from(column), false)
                    .set_column_statistics_enabled(
                        ColumnPath::from(column),
                        EnabledStatistics::None,
                    );
            }
            // Text whose min/max prunes nothing here: the values of every
            // file span the same few hosts, agents and players. Kept for
            // the constant columns (etl id, topic) and `kind`, which do.
            for column in [
                "player_id",
                "name",
                "Host",
                "User-Agent",
                "Accept",
                "client_addr",
                "key",
            ] {
                props = props.set_column_statistics_enabled(
                    ColumnPath::from(column),
                    EnabledStatistics::None,
                );
            }
            // The record's headers (`name=value`; the bridge puts the event
            // id, type and player on every action): a third of the values
            // unique, so a dictionary fills up and is dropped in every row
            // group, and min/max prunes nothing.
            let headers = ColumnPath::new(vec!["headers".into(), "list".into(), "item".into()]);
            props = props
                .set_column_dictionary_enabled(headers.clone(), false)
                .set_column_statistics_enabled(headers, EnabledStatistics::None);
            // Action ids are UUIDv7s (the bridge and the page draw them):
            // within a partition, ids of the same second share their
            // leading time digits, which DELTA_BYTE_ARRAY stores once
            // (measured: half the encoding time of plain + zstd, 13 %
            // fewer bytes; BENCHMARKS.md, "Lake"). Spark reads it since
            // 3.0. Checksums stay plain: a standalone
            // DELTA_LENGTH_BYTE_ARRAY column fails Spark's vectorized
            // reader before 3.4 (SPARK-40128).
            for column in ["event_id", "msg_id"] {
                props =
                    props.set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BYTE_ARRAY);
            }
            // Offsets and times climb: deltas pack them in a few bits each.
            for column in [
                "kafka_offset",
                "offset",
                "received_at",
                "kafka_timestamp",
                "timestamp",
            ] {
                props = props
                    .set_column_dictionary_enabled(ColumnPath::from(column), false)
                    .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
            }
            props.build()
        })
        .clone()
}

/// Encodes a record batch as one Parquet file ([`writer_properties`]).
pub fn encode(batch: &RecordBatch) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(writer_properties()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Fault injection for crash tests: with `LAKE_FAULT_ABORT_AFTER_PUTS=n`
/// the process aborts (as `kill -9` would stop it) right after its n-th put.
fn fault_check() {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static PUTS: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("LAKE_FAULT_ABORT_AFTER_PUTS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(limit) = limit {
        if PUTS.fetch_add(1, Ordering::SeqCst) + 1 >= *limit {
            eprintln!("lake: LAKE_FAULT_ABORT_AFTER_PUTS={limit} reached, aborting");
            std::process::abort();
        }
    }
}

/// Puts `bytes` at `relative` unless something is there already; `true` if
/// this call created it. The object appears whole or not at all.
pub async fn put_if_absent(
    lake: &Location,
    relative: &str,
    bytes: impl Into<PutPayload>,
) -> crate::Result<bool> {
    let result = start_put(lake, relative, bytes.into()).await;
    fault_check();
    result
}

/// Starts a create-if-absent put. On a folder the write (and its fsyncs)
/// starts at once on a blocking thread, before the future is polled, so the
/// caller can encode the next file meanwhile and several fsyncs overlap.
fn start_put(
    lake: &Location,
    relative: &str,
    bytes: PutPayload,
) -> futures_util::future::BoxFuture<'static, crate::Result<bool>> {
    use futures_util::FutureExt;
    match &lake.target {
        Target::Folder(dir) => {
            let (dir, relative) = (dir.clone(), relative.to_string());
            let display = lake.display.clone();
            let handle = tokio::task::spawn_blocking(move || {
                crate::local::put_if_absent(&dir, &relative, bytes.as_ref())
                    .map_err(|e| LakeError::Other(format!("put {relative} in {display}: {e}")))
            });
            async move {
                handle
                    .await
                    .map_err(|e| LakeError::Other(format!("put: {e}")))?
            }
            .boxed()
        }
        Target::Bucket { .. } => {
            let (store, path) = (lake.store.clone(), lake.path(relative));
            async move {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                match store.put_opts(&path, bytes, opts).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            .boxed()
        }
    }
}

/// Writes a batch: its manifest, then its data files (together: each is
/// written as soon as it is encoded, while the next one is encoded; on a
/// folder, a file with the same bytes as the one before it is a hard link
/// to it, made once that one exists), then its `etl_meta` row, the last
/// file, once all others exist. Files already
/// present are left as they are (they hold the same rows). Returns the
/// bytes written.
pub async fn write_batch(
    lake: &Location,
    manifest: &Manifest,
    files: &[TableFile],
) -> crate::Result<u64> {
    let path = manifest_path(
        &manifest.topic,
        manifest.partition,
        manifest.first_offset,
        manifest.last_offset,
    );
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| LakeError::Other(e.to_string()))?;
    put_if_absent(lake, &path, json).await?;
    let Some((last, data)) = files.split_last() else {
        return Ok(0);
    };
    let mut bytes = 0;
    let mut puts: Vec<futures_util::future::BoxFuture<'static, crate::Result<()>>> =
        Vec::with_capacity(data.len());
    let mut previous: Option<(&RecordBatch, PutPayload)> = None;
    let mut last_put: Option<(&str, PutPayload)> = None;
    for file in data {
        let encoded = match &file.content {
            // Encoded while the batch was open (the exporter).
            FileContent::Parquet(encoded) => encoded.clone(),
            // `purchases` shares the arrays of the `events` file before it:
            // encoded once.
            FileContent::Arrow(batch) => {
                let encoded = match &previous {
                    Some((p, encoded)) if same_arrays(p, batch) => encoded.clone(),
                    _ => PutPayload::from(encode(batch)?),
                };
                previous = Some((batch, encoded.clone()));
                encoded
            }
        };
        bytes += encoded.content_length() as u64;
        match &last_put {
            // On a folder, a file with the bytes of the one put before it
            // (`purchases` after its `events` file) is linked to that one
            // as soon as it is there.
            Some((from, before))
                if matches!(lake.target, Target::Folder(_)) && same_bytes(before, &encoded) =>
            {
                let (lake, from, to) = (lake.clone(), from.to_string(), file.path.clone());
                let Some(put) = puts.pop() else {
                    return Err(LakeError::Other(format!("link {to}: no put before it")));
                };
                puts.push(Box::pin(async move {
                    put.await?;
                    link_if_absent(&lake, &from, &to).await?;
                    fault_check();
                    Ok(())
                }));
            }
            _ => {
                let put = start_put(lake, &file.path, encoded.clone());
                puts.push(Box::pin(async move {
                    put.await?;
                    fault_check();
                    Ok(())
                }));
                last_put = Some((&file.path, encoded));
            }
        }
    }
    for put in puts {
        put.await?;
    }
    let encoded = match &last.content {
        FileContent::Parquet(encoded) => encoded.clone(),
        FileContent::Arrow(batch) => PutPayload::from(encode(batch)?),
    };
    bytes += encoded.content_length() as u64;
    put_if_absent(lake, &last.path, encoded).await?;
    Ok(bytes)
}

/// Whether two encoded files are the same pieces (not just equal bytes).
fn same_bytes(a: &PutPayload, b: &PutPayload) -> bool {
    let (a, b) = (a.as_ref(), b.as_ref());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.as_ptr() == y.as_ptr() && x.len() == y.len())
}

/// On a folder: makes `to` a hard link to the existing `from` unless
/// something is at `to` ([`crate::local::link_if_absent`]).
async fn link_if_absent(lake: &Location, from: &str, to: &str) -> crate::Result<bool> {
    let Target::Folder(dir) = &lake.target else {
        return Err(LakeError::Other(format!("link {to}: not a folder lake")));
    };
    let (dir, from, to) = (dir.clone(), from.to_string(), to.to_string());
    let display = lake.display.clone();
    tokio::task::spawn_blocking(move || {
        crate::local::link_if_absent(&dir, &from, &to)
            .map_err(|e| LakeError::Other(format!("link {to} to {from} in {display}: {e}")))
    })
    .await
    .map_err(|e| LakeError::Other(format!("link: {e}")))?
}

/// Whether two batches are the same arrays (not just equal ones).
fn same_arrays(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.num_columns() == b.num_columns()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(x, y)| std::sync::Arc::ptr_eq(x, y))
}

/// Reads a batch's manifest.
pub async fn read_manifest(
    lake: &Location,
    path: &object_store::path::Path,
) -> crate::Result<Manifest> {
    let bytes = lake.store.get(path).await?.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| LakeError::Manifest {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// What the lake holds for one partition: where to resume, and the batch to
/// redo if the last one was cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// The next offset to export.
    pub next_offset: Option<i64>,
    /// The last batch, if some of its files are missing.
    pub redo: Option<Manifest>,
}

/// Reads a partition's batch log: the highest manifest decides.
pub async fn partition_state(
    lake: &Location,
    topic: &str,
    partition: i32,
) -> crate::Result<PartitionState> {
    let dir = lake.path(&log_dir(topic, partition));
    let metas: Vec<_> = lake.store.list(Some(&dir)).try_collect().await?;
    let newest = metas
        .iter()
        .filter_map(|m| Some((parse_manifest_name(m.location.filename()?)?, m)))
        .max_by_key(|(range, _)| *range);
    let Some((_, meta)) = newest else {
        return Ok(PartitionState {
            next_offset: None,
            redo: None,
        });
    };
    let manifest = read_manifest(lake, &meta.location).await?;
    let mut complete = true;
    for file in &manifest.files {
        match lake.store.head(&lake.path(file)).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                complete = false;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(PartitionState {
        next_offset: Some(if complete {
            manifest.last_offset + 1
        } else {
            manifest.first_offset
        }),
        redo: (!complete).then_some(manifest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(first: i64, last: i64, files: Vec<String>) -> Manifest {
        Manifest {
            etl_id: "x".into(),
            topic: "t".into(),
            partition: 0,
            first_offset: first,
            last_offset: last,
            records: (last - first + 1) as u64,
            mode: "once".into(),
            timestamp_start_ms: 0,
            timestamp_end_ms: 0,
            files,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn on_a_folder_a_file_with_the_bytes_before_it_is_a_second_link() {
        let dir = std::env::temp_dir().join(format!("lake-{}", uuid::Uuid::new_v4()));
        let lake = Location::open(dir.to_str().unwrap()).unwrap();
        let file = |path: &str, bytes: &bytes::Bytes| TableFile {
            path: path.into(),
            content: FileContent::Parquet(bytes.clone().into()),
        };
        let (rows, other) = (
            bytes::Bytes::from_static(b"rows"),
            bytes::Bytes::from(b"rows".to_vec()),
        );
        let files = vec![
            file("events/t=a/f", &rows),
            file("purchases/t=a/f", &rows),
            // Equal bytes, not the same buffer: written, not linked.
            file("events/t=b/f", &other),
            file("etl_meta/f", &rows),
        ];
        let paths = files.iter().map(|f| f.path.clone()).collect();
        let written = rt()
            .block_on(write_batch(&lake, &manifest(0, 9, paths), &files))
            .unwrap();
        assert_eq!(written, 16, "bytes as if each file were written");
        use std::os::unix::fs::MetadataExt;
        let meta = |p: &str| std::fs::metadata(dir.join(p)).unwrap();
        assert_eq!(meta("purchases/t=a/f").ino(), meta("events/t=a/f").ino());
        assert_eq!(meta("events/t=a/f").nlink(), 2);
        assert_eq!(meta("events/t=b/f").nlink(), 1);
        assert_eq!(std::fs::read(dir.join("purchases/t=a/f")).unwrap(), b"rows");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn create_if_absent_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("lake-{}", uuid::Uuid::new_v4()));
        let lake = Location::open(dir.to_str().unwrap()).unwrap();
        rt().block_on(async {
            assert!(put_if_absent(&lake, "a/b.txt", b"one".to_vec())
                .await
                .unwrap());
            assert!(!put_if_absent(&lake, "a/b.txt", b"two".to_vec())
                .await
                .unwrap());
        });
        assert_eq!(std::fs::read(dir.join("a/b.txt")).unwrap(), b"one");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn resumes_after_a_complete_batch_and_redoes_an_incomplete_one() {
        let dir = std::env::temp_dir().join(format!("lake-{}", uuid::Uuid::new_v4()));
        let lake = Location::open(dir.to_str().unwrap()).unwrap();
        rt().block_on(async {
            let empty = partition_state(&lake, "t", 0).await.unwrap();
            assert_eq!(empty.next_offset, None);
            let put = |m: Manifest| {
                let lake = lake.clone();
                async move {
                    let path = manifest_path("t", 0, m.first_offset, m.last_offset);
                    put_if_absent(&lake, &path, serde_json::to_vec(&m).unwrap())
                        .await
                        .unwrap();
                }
            };
            put(manifest(0, 9, vec!["f1".into()])).await;
            put_if_absent(&lake, "f1", vec![1]).await.unwrap();
            let s = partition_state(&lake, "t", 0).await.unwrap();
            assert_eq!((s.next_offset, s.redo), (Some(10), None));

            // Offsets sort numerically, not as text.
            put(manifest(10, 100, vec!["f2".into(), "f3".into()])).await;
            put_if_absent(&lake, "f2", vec![1]).await.unwrap();
            let s = partition_state(&lake, "t", 0).await.unwrap();
            assert_eq!(s.next_offset, Some(10));
            assert_eq!(s.redo.unwrap().last_offset, 100);

            put_if_absent(&lake, "f3", vec![1]).await.unwrap();
            let s = partition_state(&lake, "t", 0).await.unwrap();
            assert_eq!((s.next_offset, s.redo), (Some(101), None));
        });
        std::fs::remove_dir_all(dir).unwrap();
    }
}
