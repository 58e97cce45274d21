//! A batch of records to the lake's tables, as Arrow record batches. Pure:
//! no I/O, no clock (the batch's times come in [`BatchInfo`]), so a redone
//! batch gives the same rows and the same file names.
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Int32Builder, Int64Builder, Int8Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::naming::{date_of_day, date_of_ms, day_of_ms, file_name};
use crate::records::{decode_action, decode_outcome, ActionView, RawRecord};

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
    let name = file_name(&info.topic, info.partition, info.first, info.last);
    let mut files = Vec::new();
    let mut bad: Vec<(&RawRecord, String)> = Vec::new();
    let mut msg_ids: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(records.len());
    // Decoded once; rows are grouped by (day, event_type) without copying.
    let views: Vec<Result<ActionView<'_>, String>> = match info.source {
        Source::Actions => records
            .iter()
            .map(|r| decode_action(r.value.as_deref()))
            .collect(),
        Source::Games => Vec::new(),
    };
    match info.source {
        Source::Actions => {
            let mut groups: BTreeMap<(i64, &str), Vec<usize>> = BTreeMap::new();
            for (i, view) in views.iter().enumerate() {
                match view {
                    Ok(view) => {
                        msg_ids.push(Some(Cow::Borrowed(view.event_id.as_ref())));
                        groups
                            .entry((
                                day_of_ms(view.received_at_ms as i64),
                                view.event_type.as_ref(),
                            ))
                            .or_default()
                            .push(i);
                    }
                    Err(e) => {
                        msg_ids.push(None);
                        bad.push((&records[i], e.clone()));
                    }
                }
            }
            for ((day, event_type), rows) in &groups {
                let folder = format!("date={}/event_type={event_type}", date_of_day(*day));
                let batch = events_batch(info, records, &views, rows)?;
                if views[rows[0]].as_ref().is_ok_and(|v| v.is_purchase()) {
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
        }
        Source::Games => {
            let mut groups: BTreeMap<String, Vec<&RawRecord>> = BTreeMap::new();
            for r in records {
                match decode_outcome(r.value.as_deref()) {
                    Ok(Some(view)) => {
                        msg_ids.push(Some(Cow::Owned(format!(
                            "{}@{}",
                            view.game_id, view.version
                        ))));
                        groups
                            .entry(date_of_ms(r.timestamp_ms.unwrap_or(0)))
                            .or_default()
                            .push(r);
                    }
                    Ok(None) => msg_ids.push(None),
                    Err(e) => {
                        msg_ids.push(None);
                        bad.push((r, e));
                    }
                }
            }
            for (date, rows) in &groups {
                let batch = outcomes_batch(info, rows)?;
                if batch.num_rows() > 0 {
                    files.push(TableFile {
                        path: format!("outcomes/date={date}/{name}"),
                        batch,
                    });
                }
            }
        }
    }
    if !bad.is_empty() {
        files.push(TableFile {
            path: format!("bad_records/{name}"),
            batch: bad_batch(info, &bad)?,
        });
    }
    files.push(TableFile {
        path: format!("buffer_meta/{name}"),
        batch: buffer_meta_batch(info, records, &msg_ids)?,
    });
    files.push(TableFile {
        path: format!("etl_meta/{name}"),
        batch: etl_meta_batch(info, records.len())?,
    });
    Ok(files)
}

/// The Kafka columns shared by several tables.
struct KafkaColumns {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
}

impl KafkaColumns {
    fn new(rows: usize, topic: &str) -> Self {
        KafkaColumns {
            topic: StringBuilder::with_capacity(rows, rows * topic.len()),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
            timestamp: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
        }
    }
    fn push(&mut self, info: &BatchInfo, r: &RawRecord) {
        self.topic.append_value(&info.topic);
        self.partition.append_value(info.partition);
        self.offset.append_value(r.offset);
        self.timestamp.append_option(r.timestamp_ms);
    }
    fn finish(mut self, into: &mut Vec<ArrayRef>) {
        into.push(Arc::new(self.topic.finish()));
        into.push(Arc::new(self.partition.finish()));
        into.push(Arc::new(self.offset.finish()));
        into.push(Arc::new(self.timestamp.finish()));
    }
}

fn constant(value: &str, n: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(n, n * value.len());
    for _ in 0..n {
        b.append_value(value);
    }
    Arc::new(b.finish())
}

fn events_batch(
    info: &BatchInfo,
    records: &[RawRecord],
    views: &[Result<ActionView<'_>, String>],
    rows: &[usize],
) -> crate::Result<RecordBatch> {
    let n = rows.len();
    // Sized from the first row, so the builders rarely grow.
    let first = rows.first().and_then(|&i| views[i].as_ref().ok());
    let text = |f: fn(&ActionView<'_>) -> usize| {
        StringBuilder::with_capacity(n, n * first.map_or(16, f).max(1) + 64)
    };
    let mut event_id = text(|v| v.event_id.len());
    let mut game_id = UInt64Builder::with_capacity(n);
    let mut player_id = text(|v| v.player_id.len() + 4);
    let mut name = StringBuilder::with_capacity(n, 0);
    let mut host = text(|v| v.host.len() + 4);
    let mut user_agent = text(|v| v.user_agent.len());
    let mut accept = text(|v| v.accept.len());
    let mut client_addr = text(|v| v.client_addr.len() + 4);
    let mut received_at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut schema_version = UInt32Builder::with_capacity(n);
    let mut kind = StringBuilder::with_capacity(n, n * 6);
    let mut kafka = KafkaColumns::new(n, &info.topic);
    for (r, v) in rows
        .iter()
        .filter_map(|&i| Some((&records[i], views[i].as_ref().ok()?)))
    {
        event_id.append_value(&v.event_id);
        game_id.append_value(v.game_id);
        player_id.append_value(&v.player_id);
        name.append_option(v.name.as_deref());
        host.append_value(&v.host);
        user_agent.append_value(&v.user_agent);
        accept.append_value(&v.accept);
        client_addr.append_value(&v.client_addr);
        received_at.append_value(v.received_at_ms as i64);
        schema_version.append_value(v.schema_version);
        kind.append_value(shared::GameKind::of(v.game_id).as_str());
        kafka.push(info, r);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(game_id.finish()),
        Arc::new(player_id.finish()),
        Arc::new(name.finish()),
        Arc::new(host.finish()),
        Arc::new(user_agent.finish()),
        Arc::new(accept.finish()),
        Arc::new(client_addr.finish()),
        Arc::new(received_at.finish()),
        Arc::new(schema_version.finish()),
        Arc::new(kind.finish()),
    ];
    kafka.finish(&mut columns);
    columns.push(constant(&info.etl_id, n));
    Ok(RecordBatch::try_new(events_schema(), columns)?)
}

fn outcomes_batch(info: &BatchInfo, rows: &[&RawRecord]) -> crate::Result<RecordBatch> {
    let mut event_id = StringBuilder::new();
    let mut game_id = UInt64Builder::new();
    let mut version = UInt64Builder::new();
    let mut outcome = StringBuilder::new();
    let mut player_id = StringBuilder::new();
    let mut reason_code = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut kafka = KafkaColumns::new(0, "");
    let mut n = 0;
    for r in rows {
        // Decoded once already to sort it into its folder: cannot fail here.
        let Ok(Some(view)) = decode_outcome(r.value.as_deref()) else {
            continue;
        };
        for id in &view.applied {
            event_id.append_value(id);
            game_id.append_value(view.game_id);
            version.append_value(view.version);
            outcome.append_value("applied");
            player_id.append_null();
            reason_code.append_null();
            reason.append_null();
            kafka.push(info, r);
            n += 1;
        }
        for rej in &view.rejected {
            event_id.append_value(&rej.event_id);
            game_id.append_value(view.game_id);
            version.append_value(view.version);
            outcome.append_value("rejected");
            player_id.append_value(&rej.player_id);
            reason_code.append_option(rej.reason.get("code").and_then(|c| c.as_str()));
            reason.append_value(rej.reason.to_string());
            kafka.push(info, r);
            n += 1;
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(game_id.finish()),
        Arc::new(version.finish()),
        Arc::new(outcome.finish()),
        Arc::new(player_id.finish()),
        Arc::new(reason_code.finish()),
        Arc::new(reason.finish()),
    ];
    kafka.finish(&mut columns);
    columns.push(constant(&info.etl_id, n));
    Ok(RecordBatch::try_new(outcomes_schema(), columns)?)
}

fn bad_batch(info: &BatchInfo, bad: &[(&RawRecord, String)]) -> crate::Result<RecordBatch> {
    let mut error = StringBuilder::new();
    let mut value = StringBuilder::new();
    let mut kafka = KafkaColumns::new(0, "");
    for (r, e) in bad {
        error.append_value(e);
        value.append_option(r.value.as_deref().map(String::from_utf8_lossy));
        kafka.push(info, r);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(error.finish()), Arc::new(value.finish())];
    kafka.finish(&mut columns);
    columns.push(constant(&info.etl_id, bad.len()));
    Ok(RecordBatch::try_new(bad_records_schema(), columns)?)
}

fn buffer_meta_batch(
    info: &BatchInfo,
    records: &[RawRecord],
    msg_ids: &[Option<Cow<'_, str>>],
) -> crate::Result<RecordBatch> {
    let n = records.len();
    let mut msg_id = StringBuilder::with_capacity(n, n * 36);
    let mut checksum = StringBuilder::with_capacity(n, n * 8);
    let mut headers = ListBuilder::with_capacity(StringBuilder::new(), n);
    let mut key = StringBuilder::with_capacity(n, n * 4);
    let mut offset = Int64Builder::with_capacity(n);
    let mut partition = Int32Builder::with_capacity(n);
    let mut key_size = Int32Builder::with_capacity(n);
    let mut value_size = Int32Builder::with_capacity(n);
    let mut timestamp = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut timestamp_type = Int8Builder::with_capacity(n);
    for (r, id) in records.iter().zip(msg_ids) {
        match id {
            Some(id) => msg_id.append_value(id),
            None => msg_id.append_value(format!("{}+{}+{}", info.topic, info.partition, r.offset)),
        }
        checksum.append_value(hex32(crc32fast::hash(
            r.value.as_deref().unwrap_or_default(),
        )));
        for (k, v) in &r.headers {
            headers.values().append_value(format!("{k}={v}"));
        }
        headers.append(true);
        key.append_option(r.key.as_deref().map(String::from_utf8_lossy));
        offset.append_value(r.offset);
        partition.append_value(info.partition);
        key_size.append_value(r.key.as_ref().map_or(-1, |k| k.len() as i32));
        value_size.append_value(r.value.as_ref().map_or(-1, |v| v.len() as i32));
        timestamp.append_option(r.timestamp_ms);
        timestamp_type.append_value(r.timestamp_type);
    }
    let columns: Vec<ArrayRef> = vec![
        constant(&info.etl_id, n),
        Arc::new(msg_id.finish()),
        Arc::new(checksum.finish()),
        Arc::new(headers.finish()),
        Arc::new(key.finish()),
        Arc::new(offset.finish()),
        Arc::new(partition.finish()),
        Arc::new(key_size.finish()),
        Arc::new(value_size.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(timestamp_type.finish()),
        constant(&info.topic, n),
    ];
    Ok(RecordBatch::try_new(buffer_meta_schema(), columns)?)
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
