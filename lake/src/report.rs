//! Reading the lake back: seed 002's reports, and the Kafka coordinates of
//! every row (what the exactly-once tests check).
//!
//! The report needs no query engine: `event_type` comes from the Hive
//! folder and a file's row count from its footer, so only the `Host`
//! column is decoded.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::RecordBatch;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::Serialize;

use crate::location::Location;
use crate::naming::{hive_value, parse_manifest_name, LOG_DIR};
use crate::store::{read_manifest, Manifest};
use crate::LakeError;

/// Seed 002's analytics: events by `event_type`, players (events) by
/// `Host`, most first (ties by name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub events: u64,
    pub by_event_type: Vec<(String, u64)>,
    pub by_host: Vec<(String, u64)>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "events: {}", self.events)?;
        writeln!(f)?;
        table(f, ("event_type", "event_count"), &self.by_event_type)?;
        writeln!(f)?;
        table(f, ("Host", "number_of_player"), &self.by_host)
    }
}

/// A Spark `show()`-like table.
fn table(
    f: &mut std::fmt::Formatter<'_>,
    head: (&str, &str),
    rows: &[(String, u64)],
) -> std::fmt::Result {
    let w0 = rows
        .iter()
        .map(|r| r.0.len())
        .chain([head.0.len()])
        .max()
        .unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.to_string().len())
        .chain([head.1.len()])
        .max()
        .unwrap_or(0);
    let line = format!("+{}+{}+", "-".repeat(w0), "-".repeat(w1));
    writeln!(f, "{line}")?;
    writeln!(f, "|{:>w0$}|{:>w1$}|", head.0, head.1)?;
    writeln!(f, "{line}")?;
    for (k, v) in rows {
        writeln!(f, "|{k:>w0$}|{v:>w1$}|")?;
    }
    writeln!(f, "{line}")
}

fn sorted(map: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The `.parquet` files of a table, in name order.
pub async fn table_files(lake: &Location, table: &str) -> crate::Result<Vec<String>> {
    let prefix = lake.path(table);
    let metas: Vec<_> = lake.store.list(Some(&prefix)).try_collect().await?;
    let mut files: Vec<String> = metas
        .iter()
        .map(|m| lake.relative(&m.location))
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    files.sort();
    Ok(files)
}

async fn read(lake: &Location, relative: &str) -> crate::Result<Bytes> {
    Ok(lake.store.get(&lake.path(relative)).await?.bytes().await?)
}

/// Reads only `columns` of a Parquet file.
fn read_columns(bytes: Bytes, columns: &[&str]) -> crate::Result<Vec<RecordBatch>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// What one `events` file adds to the report. Files are immutable once
/// visible (create-if-absent), so a file counted once never needs reading
/// again: [`ReportCache`] keeps running totals.
#[derive(Debug, Default)]
struct FileCounts {
    event_type: String,
    rows: u64,
    hosts: HashMap<String, u64>,
}

async fn count_file(lake: &Location, file: &str) -> crate::Result<FileCounts> {
    let event_type = hive_value(file, "event_type")
        .ok_or_else(|| LakeError::Other(format!("{file}: no event_type= folder")))?
        .to_string();
    let bytes = read(lake, file).await?;
    let mut counts = FileCounts {
        event_type,
        ..FileCounts::default()
    };
    for batch in read_columns(bytes, &["Host"])? {
        counts.rows += batch.num_rows() as u64;
        let hosts = batch
            .column_by_name("Host")
            .ok_or_else(|| LakeError::Other(format!("{file}: no Host column")))?
            .as_string_opt::<i32>()
            .ok_or_else(|| LakeError::Other(format!("{file}: Host is not text")))?;
        for host in hosts.iter().flatten() {
            match counts.hosts.get_mut(host) {
                Some(n) => *n += 1,
                None => {
                    counts.hosts.insert(host.to_string(), 1);
                }
            }
        }
    }
    Ok(counts)
}

/// Seed 002's report kept up to date incrementally, from the batch log: per
/// partition it remembers the last batch it counted, and each refresh reads
/// only the batches after it (their manifests, then their `events` files).
/// Its memory is one entry per partition, whatever the lake's history, and
/// a refresh with nothing new lists the log's folders (only the new
/// manifests' names on object stores, which list after a given name), not
/// every file of `events`. A batch whose files are still being written is
/// counted once they all exist (only a partition's newest batch can be
/// unfinished; in older ones a missing file was deleted, and is skipped).
#[derive(Debug, Default)]
pub struct ReportCache {
    /// Per partition log folder: the manifest of the last counted batch.
    cursors: HashMap<Path, Path>,
    by_type: HashMap<String, u64>,
    by_host: HashMap<String, u64>,
    events: u64,
    files: usize,
}

impl ReportCache {
    /// Counts the batches written since the last refresh; returns the report.
    pub async fn refresh(&mut self, lake: &Location) -> crate::Result<Report> {
        for dir in partition_logs(lake).await? {
            let listed: Vec<ObjectMeta> = match self.cursors.get(&dir) {
                Some(cursor) => {
                    lake.store
                        .list_with_offset(Some(&dir), cursor)
                        .try_collect()
                        .await?
                }
                None => lake.store.list(Some(&dir)).try_collect().await?,
            };
            let mut manifests: Vec<Path> = listed
                .into_iter()
                .map(|m| m.location)
                .filter(|p| p.filename().and_then(parse_manifest_name).is_some())
                .collect();
            manifests.sort();
            // Only the newest batch can be unfinished: the exporter writes a
            // partition's next manifest once every file of the one before
            // exists. A file missing from an older batch was deleted since
            // (a retention, by hand): what is left of it is counted.
            let newest = manifests.last().cloned();
            // Read a few batches at a time, taken in order.
            let mut batches = futures_util::stream::iter(manifests)
                .map(|path| {
                    let unfinished = Some(&path) == newest.as_ref();
                    async move {
                        let manifest = read_manifest(lake, &path).await?;
                        let counts = count_batch(lake, &manifest, unfinished).await?;
                        Ok::<_, LakeError>((path, counts))
                    }
                })
                .buffered(READ_AHEAD);
            while let Some((path, batch)) = batches.try_next().await? {
                let Some(batch) = batch else {
                    break;
                };
                for counts in batch {
                    *self.by_type.entry(counts.event_type).or_default() += counts.rows;
                    for (host, n) in counts.hosts {
                        *self.by_host.entry(host).or_default() += n;
                    }
                    self.events += counts.rows;
                    self.files += 1;
                }
                self.cursors.insert(dir.clone(), path);
            }
        }
        Ok(self.report())
    }

    /// The report over what has been counted.
    pub fn report(&self) -> Report {
        Report {
            events: self.events,
            by_event_type: sorted(self.by_type.clone()),
            by_host: sorted(self.by_host.clone()),
        }
    }

    /// How many `events` files have been counted.
    pub fn files(&self) -> usize {
        self.files
    }
}

/// Batches of a partition read at once by [`ReportCache::refresh`].
const READ_AHEAD: usize = 8;

/// Every partition's folder of the batch log (`_lake/log/<topic>/<partition>`).
async fn partition_logs(lake: &Location) -> crate::Result<Vec<Path>> {
    let topics = lake
        .store
        .list_with_delimiter(Some(&lake.path(LOG_DIR)))
        .await?;
    let mut dirs = Vec::new();
    for topic in topics.common_prefixes {
        dirs.extend(
            lake.store
                .list_with_delimiter(Some(&topic))
                .await?
                .common_prefixes,
        );
    }
    dirs.sort();
    Ok(dirs)
}

/// The `events` files of a batch, counted. A missing file makes it `None`
/// when the batch may be `unfinished` (none of its files is counted until
/// all are there); otherwise the file was deleted, and is skipped.
async fn count_batch(
    lake: &Location,
    manifest: &Manifest,
    unfinished: bool,
) -> crate::Result<Option<Vec<FileCounts>>> {
    let mut batch = Vec::new();
    for file in manifest.files.iter().filter(|f| f.starts_with("events/")) {
        match count_file(lake, file).await {
            Ok(counts) => batch.push(counts),
            Err(LakeError::Store(object_store::Error::NotFound { .. })) if unfinished => {
                return Ok(None)
            }
            Err(LakeError::Store(object_store::Error::NotFound { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(batch))
}

/// Seed 002's report over the lake's `events`.
pub async fn report(lake: &Location) -> crate::Result<Report> {
    ReportCache::default().refresh(lake).await
}

/// Every `(partition, offset)` in a table, read from its Kafka columns
/// (`kafka_partition`/`kafka_offset`, or `partition`/`offset` in
/// `buffer_meta`), for exactly-once checks.
pub async fn offsets(lake: &Location, table: &str) -> crate::Result<Vec<(i32, i64)>> {
    let (pc, oc) = if table == "buffer_meta" {
        ("partition", "offset")
    } else {
        ("kafka_partition", "kafka_offset")
    };
    let mut out = Vec::new();
    for file in table_files(lake, table).await? {
        for batch in read_columns(read(lake, &file).await?, &[pc, oc])? {
            let missing = || LakeError::Other(format!("{file}: no {pc}/{oc} columns"));
            let ps = batch.column_by_name(pc).ok_or_else(missing)?;
            let os = batch.column_by_name(oc).ok_or_else(missing)?;
            let ps = ps.as_primitive_opt::<Int32Type>().ok_or_else(missing)?;
            let os = os.as_primitive_opt::<Int64Type>().ok_or_else(missing)?;
            for i in 0..ps.len() {
                out.push((ps.value(i), os.value(i)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a batch of actions (`hosts[i]` sends a `default`) at `first`.
    async fn write_actions(lake: &Location, first: i64, hosts: &[&str]) {
        use crate::records::RawRecord;
        use crate::tables::{build, BatchInfo, Source};
        let records: Vec<RawRecord> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let e = shared::ActionEnvelope {
                    event_id: format!("e{first}-{i}"),
                    game_id: 1,
                    player_id: host.to_string(),
                    event_type: shared::ActionType::Default,
                    name: None,
                    host: host.to_string(),
                    user_agent: "test".into(),
                    accept: "*/*".into(),
                    client_addr: "127.0.0.1".into(),
                    received_at_ms: 1_796_083_200_000,
                    schema_version: 1,
                };
                RawRecord {
                    offset: first + i as i64,
                    timestamp_ms: Some(1_796_083_200_000),
                    timestamp_type: 0,
                    key: None,
                    value: Some(serde_json::to_vec(&e).unwrap()),
                    headers: vec![],
                }
            })
            .collect();
        let last = first + hosts.len() as i64 - 1;
        let info = BatchInfo {
            etl_id: format!("etl-{first}"),
            topic: "actions".into(),
            partition: 0,
            first,
            last,
            source: Source::Actions,
            mode: "once".into(),
            started_ms: 0,
            ended_ms: 0,
        };
        let files = build(&info, &records).unwrap();
        let manifest = crate::store::Manifest {
            etl_id: info.etl_id.clone(),
            topic: "actions".into(),
            partition: 0,
            first_offset: first,
            last_offset: last,
            records: records.len() as u64,
            mode: "once".into(),
            timestamp_start_ms: 0,
            timestamp_end_ms: 0,
            files: files.iter().map(|f| f.path.clone()).collect(),
        };
        crate::store::write_batch(lake, &manifest, &files)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_cache_reads_each_file_once_and_adds_new_ones() {
        let dir = std::env::temp_dir().join(format!("lake-{}", uuid::Uuid::new_v4()));
        let lake = Location::open(dir.to_str().unwrap()).unwrap();
        let mut cache = ReportCache::default();
        assert_eq!(cache.refresh(&lake).await.unwrap(), Report::default());
        write_actions(&lake, 0, &["a", "b", "a"]).await;
        let r = cache.refresh(&lake).await.unwrap();
        assert_eq!(r.events, 3);
        assert_eq!(r.by_host, vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(cache.files(), 1);
        write_actions(&lake, 3, &["b", "b"]).await;
        let r = cache.refresh(&lake).await.unwrap();
        assert_eq!(r.events, 5);
        assert_eq!(r.by_event_type, vec![("default".into(), 5)]);
        assert_eq!(r.by_host, vec![("b".into(), 3), ("a".into(), 2)]);
        assert_eq!(cache.files(), 2);
        assert_eq!(r, report(&lake).await.unwrap(), "same as a full count");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A lake of two one-action batches (hosts `a`, then `b`) with the
    /// `events` file of the batch at `missing` (0 or 1) moved aside; the
    /// closure puts it back.
    async fn two_batches_one_file_aside(
        missing: i64,
    ) -> (std::path::PathBuf, Location, impl FnOnce()) {
        let dir = std::env::temp_dir().join(format!("lake-{}", uuid::Uuid::new_v4()));
        let lake = Location::open(dir.to_str().unwrap()).unwrap();
        write_actions(&lake, 0, &["a"]).await;
        write_actions(&lake, 1, &["b"]).await;
        let name = crate::naming::file_name("actions", 0, missing, missing);
        let file = table_files(&lake, "events")
            .await
            .unwrap()
            .into_iter()
            .find(|f| f.ends_with(&name))
            .expect("the batch's events file");
        let (events, aside) = (dir.join(file), dir.join("aside.parquet"));
        std::fs::rename(&events, &aside).unwrap();
        (dir, lake, move || std::fs::rename(&aside, &events).unwrap())
    }

    #[tokio::test]
    async fn a_batch_still_being_written_is_counted_once_it_is_whole() {
        // The newest batch's `events` file is not there yet: a writer
        // between its manifest and its files.
        let (dir, lake, put_back) = two_batches_one_file_aside(1).await;
        let mut cache = ReportCache::default();
        let r = cache.refresh(&lake).await.unwrap();
        assert_eq!(r.events, 1, "the newest batch waits for its files");
        put_back();
        let r = cache.refresh(&lake).await.unwrap();
        assert_eq!(r.events, 2);
        assert_eq!(r.by_host, vec![("a".into(), 1), ("b".into(), 1)]);
        let r = cache.refresh(&lake).await.unwrap();
        assert_eq!(r.events, 2, "nothing counted twice");
        assert_eq!(cache.files(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_deleted_from_an_older_batch_does_not_stop_the_count() {
        let (dir, lake, _never_back) = two_batches_one_file_aside(0).await;
        let r = ReportCache::default().refresh(&lake).await.unwrap();
        assert_eq!(r.events, 1);
        assert_eq!(r.by_host, vec![("b".into(), 1)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reports_print_like_spark_most_first() {
        let r = Report {
            events: 3,
            by_event_type: sorted(HashMap::from([
                ("default".into(), 1),
                ("purchase_sword".into(), 2),
            ])),
            by_host: sorted(HashMap::from([
                ("b".into(), 1),
                ("a".into(), 1),
                ("c".into(), 1),
            ])),
        };
        let text = r.to_string();
        assert!(text.starts_with("events: 3\n"), "{text}");
        assert!(
            text.contains("|purchase_sword|          2|\n|       default|          1|"),
            "{text}"
        );
        let a = text.find("|   a|").unwrap();
        let b = text.find("|   b|").unwrap();
        assert!(a < b, "ties sort by name:\n{text}");
    }
}
