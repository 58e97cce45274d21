//! A batch of records to the lake's tables, as Arrow record batches. Pure:
//! no I/O, no clock (the batch's times come in [`BatchInfo`]), so a redone
//! batch gives the same rows and the same file names. [`BatchBuilder`]
//! takes the records one at a time as they are consumed; [`build`] does the
//! same over records in memory.
//!
//! | table | rows | Hive folders |
//! |---|---|---|
//! | `events` | every decodable action, every field the bridge stamped, the game's `kind` (`nation` or `arena`), plus the Kafka coordinates | `date=`, `event_type=` |
//! | `purchases` | the purchase and upgrade actions (seed 002's `filtered_writes`) | `date=`, `event_type=` |
//! | `outcomes` | what the engine did with each action: applied, or rejected with the reason | `date=` |
//! | `buffer_meta` | one row per record, decodable or not (seed 001) | |
//! | `etl_meta` | one row per batch (seed 001) | |
//! | `bad_records` | records that could not be decoded, with the error | |
//!
//! The Hive columns (`date`, `event_type`) live in folder names only, as
//! Spark writes them; pyarrow, DuckDB and Spark add them back when reading.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    ArrayBuilder, Int32Builder, Int64Builder, Int8Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::naming::{date_of_day, day_of_ms, file_name};
use crate::records::{
    decode_action, decode_outcome, ActionView, OutcomeView, RawRecord, RecordRef,
};

/// Which topic a batch comes from decides the tables it feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Actions,
    Games,
}

/// A batch's identity and times (kept in its manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub etl_id: String,
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    pub source: Source,
    pub mode: String,
    /// When the batch's first record was consumed and when it was cut (ms).
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// One Parquet file to write: its path under the lake's root and its rows.
#[derive(Debug)]
pub struct TableFile {
    pub path: String,
    pub batch: RecordBatch,
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn kafka_fields() -> [Field; 4] {
    [
        Field::new("kafka_topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_timestamp", utc_ms(), true),
    ]
}

/// `events` and `purchases` (without their Hive columns).
pub fn events_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let mut fields = vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("game_id", DataType::UInt64, false),
            Field::new("player_id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("Host", DataType::Utf8, false),
            Field::new("User-Agent", DataType::Utf8, false),
            Field::new("Accept", DataType::Utf8, false),
            Field::new("client_addr", DataType::Utf8, false),
            Field::new("received_at", utc_ms(), false),
            Field::new("schema_version", DataType::UInt32, false),
            // `nation` or `arena` (shared::GameKind, from the game id).
            Field::new("kind", DataType::Utf8, false),
        ];
        fields.extend(kafka_fields());
        fields.push(Field::new("etl_id", DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    })
    .clone()
}

/// `outcomes` (without its Hive column).
pub fn outcomes_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let mut fields = vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("game_id", DataType::UInt64, false),
            Field::new("game_version", DataType::UInt64, false),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("player_id", DataType::Utf8, true),
            Field::new("reason_code", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, true),
        ];
        fields.extend(kafka_fields());
        fields.push(Field::new("etl_id", DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    })
    .clone()
}

/// Seed 001's `buffer_meta`, one row per record. `partition` is an int32
/// (the seed's uint8 would cap a topic at 256 partitions) and the key and
/// value sizes int32 (a value can pass the seed's int16).
pub fn buffer_meta_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("etl_id", DataType::Utf8, false),
            Field::new("msg_id", DataType::Utf8, false),
            Field::new("checksum", DataType::Utf8, false),
            Field::new(
                "headers",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                false,
            ),
            Field::new("key", DataType::Utf8, true),
            Field::new("offset", DataType::Int64, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("serialized_key_size", DataType::Int32, false),
            Field::new("serialized_value_size", DataType::Int32, false),
            Field::new("timestamp", utc_ms(), true),
            Field::new("timestamp_type", DataType::Int8, false),
            Field::new("topic", DataType::Utf8, false),
        ]))
    })
    .clone()
}

/// Seed 001's `etl_meta`, one row per batch, plus the batch's range.
pub fn etl_meta_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("etl_id", DataType::Utf8, false),
            Field::new("service", DataType::Utf8, false),
            Field::new("mode", DataType::Utf8, false),
            Field::new("timestamp_start", utc_ms(), false),
            Field::new("timestamp_end", utc_ms(), false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("first_offset", DataType::Int64, false),
            Field::new("last_offset", DataType::Int64, false),
            Field::new("records", DataType::Int64, false),
        ]))
    })
    .clone()
}

/// `bad_records`: what could not be decoded, and why.
pub fn bad_records_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let mut fields = vec![
            Field::new("error", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ];
        fields.extend(kafka_fields());
        fields.push(Field::new("etl_id", DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    })
    .clone()
}

/// Builds every file of a batch, in a fixed order; the `etl_meta` file comes
/// last, so its presence marks a batch whose files were all written.
pub fn build(info: &BatchInfo, records: &[RawRecord]) -> crate::Result<Vec<TableFile>> {
    let mut batch = BatchBuilder::new(info.source, &info.topic, info.partition);
    for r in records {
        batch.push(&r.as_ref());
    }
    batch.finish(info)
}

/// A batch being built, a record at a time: each record is decoded once,
/// as it arrives, into the columns of its table files; nothing else of it
/// is kept (but for undecodable records, kept whole for `bad_records`).
/// [`BatchBuilder::finish`] gives the same files as [`build`] over the same
/// records.
pub struct BatchBuilder {
    source: Source,
    topic: String,
    partition: i32,
    records: usize,
    first: i64,
    last: i64,
    /// `actions`: one group per (day, event_type), in arrival order.
    events: Vec<EventGroup>,
    /// `games`: one group per day of the record's Kafka timestamp.
    outcomes: Vec<OutcomeGroup>,
    bad: Vec<(RawRecord, String)>,
    meta: MetaColumns,
}

impl BatchBuilder {
    /// An empty batch of `topic`/`partition`, feeding `source`'s tables.
    pub fn new(source: Source, topic: &str, partition: i32) -> BatchBuilder {
        BatchBuilder {
            source,
            topic: topic.to_string(),
            partition,
            records: 0,
            first: 0,
            last: 0,
            events: Vec::new(),
            outcomes: Vec::new(),
            bad: Vec::new(),
            meta: MetaColumns::default(),
        }
    }

    /// Records taken in.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The first and last offsets taken in, if any.
    pub fn range(&self) -> Option<(i64, i64)> {
        (self.records > 0).then_some((self.first, self.last))
    }

    /// Decodes `r` into the batch's columns.
    pub fn push(&mut self, r: &RecordRef<'_>) {
        if self.records == 0 {
            self.first = r.offset;
        }
        self.last = r.offset;
        self.records += 1;
        match self.source {
            Source::Actions => match decode_action(r.value) {
                Ok(view) => {
                    let day = day_of_ms(view.received_at_ms as i64);
                    let group = match self
                        .events
                        .iter()
                        .position(|g| g.day == day && g.event_type == view.event_type)
                    {
                        Some(i) => i,
                        None => {
                            self.events.push(EventGroup {
                                day,
                                event_type: view.event_type.to_string(),
                                purchase: view.is_purchase(),
                                columns: EventColumns::default(),
                            });
                            self.events.len() - 1
                        }
                    };
                    self.events[group].columns.push(&view, r);
                    self.meta
                        .push(r, Some(&view.event_id), &self.topic, self.partition);
                }
                Err(e) => {
                    self.meta.push(r, None, &self.topic, self.partition);
                    self.bad.push((r.to_owned(), e));
                }
            },
            Source::Games => match decode_outcome(r.value) {
                Ok(Some(view)) => {
                    let id = format!("{}@{}", view.game_id, view.version);
                    self.meta.push(r, Some(&id), &self.topic, self.partition);
                    let day = day_of_ms(r.timestamp_ms.unwrap_or(0));
                    let group = match self.outcomes.iter().position(|g| g.day == day) {
                        Some(i) => i,
                        None => {
                            self.outcomes.push(OutcomeGroup {
                                day,
                                columns: OutcomeColumns::default(),
                            });
                            self.outcomes.len() - 1
                        }
                    };
                    self.outcomes[group].columns.push(&view, r);
                }
                Ok(None) => self.meta.push(r, None, &self.topic, self.partition),
                Err(e) => {
                    self.meta.push(r, None, &self.topic, self.partition);
                    self.bad.push((r.to_owned(), e));
                }
            },
        }
    }

    /// Every file of the batch, in a fixed order (folders sorted); the
    /// `etl_meta` file comes last, so its presence marks a batch whose files
    /// were all written. `info` names the files and fills the constant
    /// columns (etl id, topic, partition).
    pub fn finish(self, info: &BatchInfo) -> crate::Result<Vec<TableFile>> {
        let name = file_name(&info.topic, info.partition, info.first, info.last);
        let mut files = Vec::new();
        let mut events = self.events;
        events.sort_by(|a, b| (a.day, &a.event_type).cmp(&(b.day, &b.event_type)));
        for group in events {
            let folder = format!(
                "date={}/event_type={}",
                date_of_day(group.day),
                group.event_type
            );
            let batch = group.columns.finish(info)?;
            if group.purchase {
                files.push(TableFile {
                    path: format!("events/{folder}/{name}"),
                    batch: batch.clone(),
                });
                files.push(TableFile {
                    path: format!("purchases/{folder}/{name}"),
                    batch,
                });
            } else {
                files.push(TableFile {
                    path: format!("events/{folder}/{name}"),
                    batch,
                });
            }
        }
        let mut outcomes = self.outcomes;
        outcomes.sort_by_key(|g| g.day);
        for group in outcomes {
            if group.columns.rows > 0 {
                files.push(TableFile {
                    path: format!("outcomes/date={}/{name}", date_of_day(group.day)),
                    batch: group.columns.finish(info)?,
                });
            }
        }
        if !self.bad.is_empty() {
            files.push(TableFile {
                path: format!("bad_records/{name}"),
                batch: bad_batch(info, &self.bad)?,
            });
        }
        files.push(TableFile {
            path: format!("buffer_meta/{name}"),
            batch: self.meta.finish(info, self.records)?,
        });
        files.push(TableFile {
            path: format!("etl_meta/{name}"),
            batch: etl_meta_batch(info, self.records)?,
        });
        Ok(files)
    }
}

/// The `events` (and `purchases`) rows of one (day, event_type).
struct EventGroup {
    day: i64,
    event_type: String,
    purchase: bool,
    columns: EventColumns,
}

/// `events` columns but the constant ones (topic, partition, etl id), which
/// [`EventColumns::finish`] adds.
#[derive(Default)]
struct EventColumns {
    event_id: StringBuilder,
    game_id: UInt64Builder,
    player_id: StringBuilder,
    name: StringBuilder,
    host: StringBuilder,
    user_agent: StringBuilder,
    accept: StringBuilder,
    client_addr: StringBuilder,
    received_at: TimestampMillisecondBuilder,
    schema_version: UInt32Builder,
    kind: StringBuilder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
}

impl EventColumns {
    fn push(&mut self, v: &ActionView<'_>, r: &RecordRef<'_>) {
        self.event_id.append_value(&v.event_id);
        self.game_id.append_value(v.game_id);
        self.player_id.append_value(&v.player_id);
        self.name.append_option(v.name.as_deref());
        self.host.append_value(&v.host);
        self.user_agent.append_value(&v.user_agent);
        self.accept.append_value(&v.accept);
        self.client_addr.append_value(&v.client_addr);
        self.received_at.append_value(v.received_at_ms as i64);
        self.schema_version.append_value(v.schema_version);
        self.kind
            .append_value(shared::GameKind::of(v.game_id).as_str());
        self.offset.append_value(r.offset);
        self.timestamp.append_option(r.timestamp_ms);
    }

    fn finish(mut self, info: &BatchInfo) -> crate::Result<RecordBatch> {
        let n = self.offset.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.game_id.finish()),
            Arc::new(self.player_id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.accept.finish()),
            Arc::new(self.client_addr.finish()),
            Arc::new(self.received_at.finish().with_timezone("UTC")),
            Arc::new(self.schema_version.finish()),
            Arc::new(self.kind.finish()),
            constant(&info.topic, n),
            Arc::new(Int32Array::from_value(info.partition, n)),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            constant(&info.etl_id, n),
        ];
        Ok(RecordBatch::try_new(events_schema(), columns)?)
    }
}

/// The `outcomes` rows of one day.
struct OutcomeGroup {
    day: i64,
    columns: OutcomeColumns,
}

/// `outcomes` columns but the constant ones.
#[derive(Default)]
struct OutcomeColumns {
    rows: usize,
    event_id: StringBuilder,
    game_id: UInt64Builder,
    version: UInt64Builder,
    outcome: StringBuilder,
    player_id: StringBuilder,
    reason_code: StringBuilder,
    reason: StringBuilder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
}

impl OutcomeColumns {
    /// One row per applied and per rejected action of the update.
    fn push(&mut self, view: &OutcomeView<'_>, r: &RecordRef<'_>) {
        for id in &view.applied {
            self.event_id.append_value(id);
            self.game_id.append_value(view.game_id);
            self.version.append_value(view.version);
            self.outcome.append_value("applied");
            self.player_id.append_null();
            self.reason_code.append_null();
            self.reason.append_null();
            self.offset.append_value(r.offset);
            self.timestamp.append_option(r.timestamp_ms);
            self.rows += 1;
        }
        for rej in &view.rejected {
            self.event_id.append_value(&rej.event_id);
            self.game_id.append_value(view.game_id);
            self.version.append_value(view.version);
            self.outcome.append_value("rejected");
            self.player_id.append_value(&rej.player_id);
            self.reason_code
                .append_option(rej.reason.get("code").and_then(|c| c.as_str()));
            self.reason.append_value(rej.reason.to_string());
            self.offset.append_value(r.offset);
            self.timestamp.append_option(r.timestamp_ms);
            self.rows += 1;
        }
    }

    fn finish(mut self, info: &BatchInfo) -> crate::Result<RecordBatch> {
        let n = self.rows;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.game_id.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.player_id.finish()),
            Arc::new(self.reason_code.finish()),
            Arc::new(self.reason.finish()),
            constant(&info.topic, n),
            Arc::new(Int32Array::from_value(info.partition, n)),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            constant(&info.etl_id, n),
        ];
        Ok(RecordBatch::try_new(outcomes_schema(), columns)?)
    }
}

/// `buffer_meta` columns but the constant ones, a row per record.
#[derive(Default)]
struct MetaColumns {
    msg_id: StringBuilder,
    checksum: StringBuilder,
    headers: ListBuilder<StringBuilder>,
    key: StringBuilder,
    offset: Int64Builder,
    key_size: Int32Builder,
    value_size: Int32Builder,
    timestamp: TimestampMillisecondBuilder,
    timestamp_type: Int8Builder,
}

impl MetaColumns {
    /// `msg_id`: the event id, or `topic+partition+offset` for a record
    /// without one.
    fn push(&mut self, r: &RecordRef<'_>, msg_id: Option<&str>, topic: &str, partition: i32) {
        match msg_id {
            Some(id) => self.msg_id.append_value(id),
            None => self
                .msg_id
                .append_value(format!("{topic}+{partition}+{}", r.offset)),
        }
        self.checksum
            .append_value(hex32(crc32fast::hash(r.value.unwrap_or_default())));
        for (k, v) in r.headers.iter() {
            self.headers.values().append_value(format!("{k}={v}"));
        }
        self.headers.append(true);
        self.key.append_option(r.key.map(String::from_utf8_lossy));
        self.offset.append_value(r.offset);
        self.key_size
            .append_value(r.key.map_or(-1, |k| k.len() as i32));
        self.value_size
            .append_value(r.value.map_or(-1, |v| v.len() as i32));
        self.timestamp.append_option(r.timestamp_ms);
        self.timestamp_type.append_value(r.timestamp_type);
    }

    fn finish(mut self, info: &BatchInfo, n: usize) -> crate::Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            constant(&info.etl_id, n),
            Arc::new(self.msg_id.finish()),
            Arc::new(self.checksum.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(Int32Array::from_value(info.partition, n)),
            Arc::new(self.key_size.finish()),
            Arc::new(self.value_size.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            Arc::new(self.timestamp_type.finish()),
            constant(&info.topic, n),
        ];
        Ok(RecordBatch::try_new(buffer_meta_schema(), columns)?)
    }
}

/// `n` copies of `value`, built at once.
fn constant(value: &str, n: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(n, n * value.len());
    for _ in 0..n {
        b.append_value(value);
    }
    Arc::new(b.finish())
}

fn bad_batch(info: &BatchInfo, bad: &[(RawRecord, String)]) -> crate::Result<RecordBatch> {
    let mut error = StringBuilder::new();
    let mut value = StringBuilder::new();
    let mut offset = Int64Builder::new();
    let mut timestamp = TimestampMillisecondBuilder::new();
    for (r, e) in bad {
        error.append_value(e);
        value.append_option(r.value.as_deref().map(String::from_utf8_lossy));
        offset.append_value(r.offset);
        timestamp.append_option(r.timestamp_ms);
    }
    let n = bad.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(error.finish()),
        Arc::new(value.finish()),
        constant(&info.topic, n),
        Arc::new(Int32Array::from_value(info.partition, n)),
        Arc::new(offset.finish()),
        Arc::new(timestamp.finish().with_timezone("UTC")),
        constant(&info.etl_id, n),
    ];
    Ok(RecordBatch::try_new(bad_records_schema(), columns)?)
}

/// `n` as 8 lower-case hex digits, without allocating.
fn hex32(n: u32) -> impl AsRef<str> {
    struct Hex([u8; 8]);
    impl AsRef<str> for Hex {
        fn as_ref(&self) -> &str {
            std::str::from_utf8(&self.0).unwrap_or_default()
        }
    }
    let mut out = [0u8; 8];
    for (i, b) in out.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((n >> (28 - 4 * i)) & 0xf) as usize];
    }
    Hex(out)
}

fn etl_meta_batch(info: &BatchInfo, records: usize) -> crate::Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        constant(&info.etl_id, 1),
        constant("lake export", 1),
        constant(&info.mode, 1),
        Arc::new(
            arrow_array::TimestampMillisecondArray::from(vec![info.started_ms])
                .with_timezone("UTC"),
        ),
        Arc::new(
            arrow_array::TimestampMillisecondArray::from(vec![info.ended_ms]).with_timezone("UTC"),
        ),
        constant(&info.topic, 1),
        Arc::new(arrow_array::Int32Array::from(vec![info.partition])),
        Arc::new(arrow_array::Int64Array::from(vec![info.first])),
        Arc::new(arrow_array::Int64Array::from(vec![info.last])),
        Arc::new(arrow_array::Int64Array::from(vec![records as i64])),
    ];
    Ok(RecordBatch::try_new(etl_meta_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;

    fn action(offset: i64, event_type: shared::ActionType, host: &str) -> RawRecord {
        let e = shared::ActionEnvelope {
            event_id: format!("e{offset}"),
            game_id: 1,
            player_id: host.into(),
            event_type,
            name: None,
            host: host.into(),
            user_agent: "ApacheBench/2.3".into(),
            accept: "*/*".into(),
            client_addr: "127.0.0.1".into(),
            received_at_ms: 1_796_083_200_000,
            schema_version: 1,
        };
        RawRecord {
            offset,
            timestamp_ms: Some(1_796_083_200_001),
            timestamp_type: 0,
            key: Some(b"1".to_vec()),
            value: Some(serde_json::to_vec(&e).unwrap()),
            headers: vec![],
        }
    }

    fn info(source: Source, first: i64, last: i64) -> BatchInfo {
        BatchInfo {
            etl_id: "etl-1".into(),
            topic: "actions".into(),
            partition: 1,
            first,
            last,
            source,
            mode: "once".into(),
            started_ms: 1,
            ended_ms: 2,
        }
    }

    fn offsets(batch: &RecordBatch, column: &str) -> Vec<i64> {
        batch
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn actions_split_by_date_and_type_and_purchases_are_filtered() {
        use shared::ActionType::*;
        let records = vec![
            action(10, Default, "a"),
            action(11, PurchaseSword, "a"),
            action(12, Default, "b"),
            action(13, UpgradeSword, "a"),
        ];
        let files = build(&info(Source::Actions, 10, 13), &records).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let name = "actions+1+00000000000000000010+00000000000000000013.parquet";
        assert_eq!(
            paths,
            vec![
                format!("events/date=2026-12-01/event_type=default/{name}"),
                format!("events/date=2026-12-01/event_type=purchase_sword/{name}"),
                format!("purchases/date=2026-12-01/event_type=purchase_sword/{name}"),
                format!("events/date=2026-12-01/event_type=upgrade_sword/{name}"),
                format!("purchases/date=2026-12-01/event_type=upgrade_sword/{name}"),
                format!("buffer_meta/{name}"),
                format!("etl_meta/{name}"),
            ]
        );
        assert_eq!(offsets(&files[0].batch, "kafka_offset"), vec![10, 12]);
        assert_eq!(offsets(&files[5].batch, "offset"), vec![10, 11, 12, 13]);
        let hosts = files[0]
            .batch
            .column_by_name("Host")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(hosts.value(1), "b");
        assert_eq!(files.last().unwrap().batch.num_rows(), 1);
    }

    #[test]
    fn events_carry_the_games_kind() {
        let mut arena = action(21, shared::ActionType::MoveUp, "a");
        let mut e: shared::ActionEnvelope =
            serde_json::from_slice(arena.value.as_deref().unwrap()).unwrap();
        e.game_id = shared::arena::ARENA_IDS.start;
        arena.value = Some(serde_json::to_vec(&e).unwrap());
        let records = vec![action(20, shared::ActionType::Default, "a"), arena];
        let files = build(&info(Source::Actions, 20, 21), &records).unwrap();
        let kinds: Vec<(String, String)> = files
            .iter()
            .filter(|f| f.path.starts_with("events/"))
            .map(|f| {
                let kind = f.batch.column_by_name("kind").unwrap().as_string::<i32>();
                (f.path.clone(), kind.value(0).to_string())
            })
            .collect();
        assert!(kinds[0].0.contains("event_type=default") && kinds[0].1 == "nation");
        assert!(kinds[1].0.contains("event_type=move_up") && kinds[1].1 == "arena");
    }

    #[test]
    fn undecodable_records_go_to_bad_records_and_still_to_buffer_meta() {
        let mut junk = action(5, shared::ActionType::Default, "a");
        junk.value = Some(b"{oops".to_vec());
        let records = vec![action(4, shared::ActionType::Default, "a"), junk];
        let files = build(&info(Source::Actions, 4, 5), &records).unwrap();
        let bad = files
            .iter()
            .find(|f| f.path.starts_with("bad_records/"))
            .unwrap();
        assert_eq!(offsets(&bad.batch, "kafka_offset"), vec![5]);
        let meta = files
            .iter()
            .find(|f| f.path.starts_with("buffer_meta/"))
            .unwrap();
        assert_eq!(offsets(&meta.batch, "offset"), vec![4, 5]);
        let ids = meta
            .batch
            .column_by_name("msg_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), "e4");
        assert_eq!(ids.value(1), "actions+1+5");
    }

    #[test]
    fn game_updates_become_one_outcome_row_per_action() {
        let update = shared::GamesRecord::Head(shared::GameHead {
            game_id: 1,
            version: 4,
            applied: vec!["a1".into()],
            rejected: vec![shared::RejectedAction {
                event_id: "r1".into(),
                player_id: "p".into(),
                reason: shared::Rejection::NotEnoughGold { need: 50, have: 10 },
                action: None,
            }],
            ..Default::default()
        });
        let record = RawRecord {
            offset: 3,
            timestamp_ms: Some(1_796_083_200_000),
            timestamp_type: 0,
            key: None,
            value: Some(serde_json::to_vec(&update).unwrap()),
            headers: vec![],
        };
        let files = build(&info(Source::Games, 3, 3), &[record]).unwrap();
        let outcomes = &files[0];
        assert!(outcomes.path.starts_with("outcomes/date=2026-12-01/"));
        let b = &outcomes.batch;
        let col = |name| b.column_by_name(name).unwrap().as_string::<i32>().clone();
        assert_eq!(col("event_id").value(0), "a1");
        assert_eq!(col("outcome").value(0), "applied");
        assert_eq!(col("outcome").value(1), "rejected");
        assert_eq!(col("reason_code").value(1), "not_enough_gold");
        assert!(col("reason").value(1).contains("\"need\":50"));
    }

    #[test]
    fn checksums_are_eight_hex_digits() {
        assert_eq!(hex32(0).as_ref(), "00000000");
        assert_eq!(hex32(0xdeadbeef).as_ref(), "deadbeef");
        assert_eq!(
            hex32(0x0102_0a0f).as_ref(),
            format!("{:08x}", 0x0102_0a0fu32)
        );
    }

    #[test]
    fn the_same_records_give_the_same_files() {
        let records = vec![action(0, shared::ActionType::PurchaseKnife, "a")];
        let a = build(&info(Source::Actions, 0, 0), &records).unwrap();
        let b = build(&info(Source::Actions, 0, 0), &records).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.path, y.path);
            assert_eq!(x.batch, y.batch);
        }
    }
}
