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

use std::fmt::Write as _;
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};

use arrow_array::builder::{
    ArrayBuilder, Int32Builder, Int64Builder, Int8Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;

use crate::direct::{
    Column, Constant, DeltaInts, DeltaLengthStrings, DeltaStrings, DictInts, DictStrings, IntKind,
    ParquetFile, SchemaCell, StringLists,
};
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
/// last, so its presence marks a batch whose files were all written. The
/// files hold Arrow batches ([`Output::Arrow`]).
pub fn build(info: &BatchInfo, records: &[RawRecord]) -> crate::Result<Vec<TableFile>> {
    let mut batch = BatchBuilder::new(
        info.source,
        &info.topic,
        info.partition,
        &info.etl_id,
        Output::Arrow,
    );
    for r in records {
        batch.push(&r.as_ref())?;
    }
    batch.finish(info)
}

/// Rows a file's columns gather before they become one Arrow chunk (and,
/// with [`Output::Parquet`], Parquet pages). Each chunk's builders are
/// sized once, from the chunks before, instead of growing by doubling
/// (`realloc` copies and fresh pages were 15% of the export), and an open
/// batch holds encoded pages rather than a whole batch of columns
/// (BENCHMARKS.md, "Lake").
pub const CHUNK_ROWS: usize = 8192;

/// Rows of a file's first chunk: most (day, event_type) groups are small
/// in a small batch, so a group's builders start at this and only a group
/// that fills a chunk gets [`CHUNK_ROWS`] next.
const FIRST_CHUNK_ROWS: usize = 1024;

/// What [`BatchBuilder::finish`] gives the files of a batch as.
#[derive(Clone, Debug)]
pub enum Output {
    /// Arrow record batches: for readers in memory and tests ([`build`]).
    Arrow,
    /// Parquet, encoded a chunk at a time while the batch is open, so
    /// cutting a batch has little left to encode: on the caller's thread
    /// (`None`) or on an [`Encoder`]'s (the exporter). `events` and
    /// `buffer_meta` are encoded as the rows come ([`crate::direct`]; the
    /// encoder compresses their pages), the other tables through Arrow
    /// chunks and the `parquet` crate's `ArrowWriter`.
    Parquet(Option<Encoder>),
}

/// A thread that encodes the Parquet chunks of every batch handed to it,
/// in order (Arrow chunks, and the pages [`crate::direct`] encodes, to
/// compress), so the consume loop does less: on one core it works while
/// the loop waits for Kafka, on two alongside. Its queue is bounded: a
/// loop ahead of it waits. The thread ends when the last handle is
/// dropped.
#[derive(Clone)]
pub struct Encoder {
    tasks: mpsc::SyncSender<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

impl Encoder {
    /// Starts the thread; at most `queue` chunks wait for it.
    pub fn start(queue: usize) -> crate::Result<Encoder> {
        let (tasks, incoming) = mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(queue);
        std::thread::Builder::new()
            .name("lake-encoder".into())
            .spawn(move || {
                for task in incoming {
                    task();
                }
            })
            .map_err(|e| crate::LakeError::Other(format!("encoder thread: {e}")))?;
        Ok(Encoder { tasks })
    }

    pub(crate) fn run(&self, task: impl FnOnce() + Send + 'static) -> crate::Result<()> {
        self.tasks
            .send(Box::new(task))
            .map_err(|_| crate::LakeError::Other("the encoder thread is gone".into()))
    }
}

/// A file being encoded on an [`Encoder`]'s thread.
enum Encoding {
    Writing(Box<ArrowWriter<Vec<u8>>>),
    Failed(String),
    Finished,
}

/// A file's content: rows, or rows already encoded.
#[derive(Clone, Debug)]
pub enum FileContent {
    Arrow(RecordBatch),
    /// A whole Parquet file ([`crate::store::encode`]'s settings), in
    /// pieces (a directly written file's pages are not copied into one
    /// buffer).
    Parquet(object_store::PutPayload),
}

/// One file to write: its path under the lake's root and its content.
#[derive(Clone, Debug)]
pub struct TableFile {
    pub path: String,
    pub content: FileContent,
}

impl TableFile {
    /// The rows, when the file was built as Arrow ([`Output::Arrow`]).
    pub fn arrow(&self) -> Option<&RecordBatch> {
        match &self.content {
            FileContent::Arrow(batch) => Some(batch),
            FileContent::Parquet(_) => None,
        }
    }
}

/// Where one file's chunks go as they are cut.
enum FileSink {
    Arrow(SchemaRef, Vec<RecordBatch>),
    Parquet(Box<ArrowWriter<Vec<u8>>>),
    Encoder(Encoder, Arc<Mutex<Encoding>>),
}

impl FileSink {
    fn new(output: &Output, schema: SchemaRef) -> crate::Result<FileSink> {
        let parquet = |schema| -> crate::Result<Box<ArrowWriter<Vec<u8>>>> {
            Ok(Box::new(ArrowWriter::try_new(
                Vec::new(),
                schema,
                Some(crate::store::writer_properties()),
            )?))
        };
        Ok(match output {
            Output::Arrow => FileSink::Arrow(schema, Vec::new()),
            Output::Parquet(None) => FileSink::Parquet(parquet(schema)?),
            Output::Parquet(Some(encoder)) => FileSink::Encoder(
                encoder.clone(),
                Arc::new(Mutex::new(Encoding::Writing(parquet(schema)?))),
            ),
        })
    }

    fn write(&mut self, chunk: RecordBatch) -> crate::Result<()> {
        match self {
            FileSink::Arrow(_, chunks) => chunks.push(chunk),
            FileSink::Parquet(writer) => writer.write(&chunk)?,
            FileSink::Encoder(encoder, file) => {
                let file = file.clone();
                encoder.run(move || {
                    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Encoding::Writing(writer) = &mut *file {
                        if let Err(e) = writer.write(&chunk) {
                            *file = Encoding::Failed(e.to_string());
                        }
                    }
                })?;
            }
        }
        Ok(())
    }

    fn finish(self) -> crate::Result<FileContent> {
        Ok(match self {
            FileSink::Arrow(schema, mut chunks) => FileContent::Arrow(match chunks.len() {
                0 => RecordBatch::new_empty(schema),
                1 => chunks.remove(0),
                _ => arrow_select::concat::concat_batches(&schema, &chunks)?,
            }),
            FileSink::Parquet(writer) => FileContent::Parquet(writer.into_inner()?.into()),
            FileSink::Encoder(encoder, file) => {
                // After the file's chunks, in the encoder's order.
                let (done, result) = mpsc::sync_channel(1);
                encoder.run(move || {
                    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                    let bytes = match std::mem::replace(&mut *file, Encoding::Finished) {
                        Encoding::Writing(writer) => writer
                            .into_inner()
                            .map(object_store::PutPayload::from)
                            .map_err(|e| e.to_string()),
                        Encoding::Failed(e) => Err(e),
                        Encoding::Finished => Err("finished twice".into()),
                    };
                    let _ = done.send(bytes);
                })?;
                let bytes = result
                    .recv()
                    .map_err(|_| crate::LakeError::Other("the encoder thread is gone".into()))?
                    .map_err(|e| crate::LakeError::Other(format!("parquet: {e}")))?;
                FileContent::Parquet(bytes)
            }
        })
    }
}

/// A batch's constant columns (etl id, topic, partition), built once at
/// the longest length a chunk asked for; a chunk takes a slice (no copy).
struct Constants {
    etl_id: String,
    topic: String,
    partition: i32,
    built: Option<(ArrayRef, ArrayRef, ArrayRef)>,
}

impl Constants {
    fn new(etl_id: &str, topic: &str, partition: i32) -> Constants {
        Constants {
            etl_id: etl_id.to_string(),
            topic: topic.to_string(),
            partition,
            built: None,
        }
    }

    /// `(etl_id, topic, partition)` for `n` rows.
    fn take(&mut self, n: usize) -> (ArrayRef, ArrayRef, ArrayRef) {
        let (etl_id, topic, partition) = match &self.built {
            Some(built) if built.0.len() >= n => built,
            _ => self.built.insert((
                constant(&self.etl_id, n),
                constant(&self.topic, n),
                Arc::new(Int32Array::from_value(self.partition, n)),
            )),
        };
        (etl_id.slice(0, n), topic.slice(0, n), partition.slice(0, n))
    }
}

/// Bytes per row each string column of a table took in the chunks so far
/// (the largest seen), to size the next chunk's builders.
#[derive(Clone, Copy, Debug)]
struct StringSizes<const N: usize>([usize; N]);

impl<const N: usize> Default for StringSizes<N> {
    fn default() -> Self {
        // A guess for the first chunk: a UUID and a host name fit.
        StringSizes([40; N])
    }
}

impl<const N: usize> StringSizes<N> {
    fn builder(&self, column: usize, rows: usize) -> StringBuilder {
        StringBuilder::with_capacity(rows, rows * self.0[column])
    }

    fn learn(&mut self, column: usize, b: &StringBuilder) {
        self.learn_per_row(column, b.len(), b.values_slice().len());
    }

    /// Learns `amount` over `rows` rows for `column`: bytes, or (for a
    /// list's items) a count.
    fn learn_per_row(&mut self, column: usize, rows: usize, amount: usize) {
        self.0[column] = self.0[column].max(amount.div_ceil(rows.max(1)));
    }
}

/// A batch being built, a record at a time: each record is decoded once,
/// as it arrives, into the columns of its table files, which become Arrow
/// chunks every [`CHUNK_ROWS`] rows (and, with [`Output::Parquet`], Parquet
/// pages at once); nothing else of a record is kept (but for undecodable
/// records, kept whole for `bad_records`). [`BatchBuilder::finish`] gives
/// the same rows as [`build`] over the same records.
pub struct BatchBuilder {
    source: Source,
    topic: String,
    partition: i32,
    etl_id: String,
    output: Output,
    records: usize,
    first: i64,
    last: i64,
    constants: Constants,
    /// `actions`: one group per (day, event_type), in arrival order.
    events: Vec<EventGroup>,
    event_sizes: StringSizes<EVENT_STRINGS>,
    /// `games`: one group per day of the record's Kafka timestamp.
    outcomes: Vec<OutcomeGroup>,
    bad: Vec<(RawRecord, String)>,
    meta: MetaColumns,
    meta_sizes: StringSizes<META_STRINGS>,
    meta_sink: Option<FileSink>,
    /// With [`Output::Parquet`]: `buffer_meta` written page by page
    /// ([`crate::direct`]) instead of through `meta`.
    meta_file: Option<Box<ParquetFile<MetaPages>>>,
}

impl BatchBuilder {
    /// An empty batch of `topic`/`partition`, feeding `source`'s tables.
    /// `etl_id` fills the files' `etl_id` column as the rows come (a redone
    /// batch passes its manifest's).
    pub fn new(
        source: Source,
        topic: &str,
        partition: i32,
        etl_id: &str,
        output: Output,
    ) -> BatchBuilder {
        let meta_sizes = StringSizes::default();
        // Unused when `buffer_meta` is written directly.
        let meta_rows = match output {
            Output::Arrow => FIRST_CHUNK_ROWS,
            Output::Parquet(_) => 0,
        };
        BatchBuilder {
            source,
            topic: topic.to_string(),
            partition,
            etl_id: etl_id.to_string(),
            output,
            records: 0,
            first: 0,
            last: 0,
            constants: Constants::new(etl_id, topic, partition),
            events: Vec::new(),
            event_sizes: StringSizes::default(),
            outcomes: Vec::new(),
            bad: Vec::new(),
            meta: MetaColumns::with_capacity(meta_rows, &meta_sizes),
            meta_sizes,
            meta_sink: None,
            meta_file: None,
        }
    }

    /// Whether `events` and `buffer_meta` are written straight to Parquet.
    fn direct(&self) -> bool {
        matches!(self.output, Output::Parquet(_))
    }

    /// The encoder thread of [`Output::Parquet`], if any.
    fn encoder(&self) -> Option<&Encoder> {
        match &self.output {
            Output::Parquet(encoder) => encoder.as_ref(),
            Output::Arrow => None,
        }
    }

    /// A `buffer_meta` row for `r` (`msg_id` as [`MetaColumns::push`]).
    fn push_meta(&mut self, r: &RecordRef<'_>, msg_id: Option<&str>) -> crate::Result<()> {
        if !self.direct() {
            self.meta.push(r, msg_id, &self.topic, self.partition);
            if self.meta.len() >= CHUNK_ROWS {
                self.flush_meta(true)?;
            }
            return Ok(());
        }
        let file = match self.meta_file.take() {
            Some(file) => file,
            None => Box::new(crate::direct::create(
                MetaPages::new(&self.topic, self.partition, &self.etl_id),
                &META_SCHEMA,
                self.encoder(),
            )?),
        };
        let file = self.meta_file.insert(file);
        file.table.push(r, msg_id, &self.topic, self.partition);
        file.row_done()?;
        Ok(())
    }

    /// The etl id its files carry.
    pub fn etl_id(&self) -> &str {
        &self.etl_id
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

    /// Decodes `r` into the batch's columns. An error is an encoding one
    /// (with [`Output::Parquet`]), never a bad record.
    pub fn push(&mut self, r: &RecordRef<'_>) -> crate::Result<()> {
        self.take_range(r.offset, r.offset, 1);
        match self.source {
            Source::Actions => {
                let decoded = decode_action(r.value);
                self.push_meta(r, decoded.as_ref().ok().map(|v| &*v.event_id))?;
                match decoded {
                    Ok(view) => self.push_event(r, &view),
                    Err(e) => {
                        self.bad.push((r.to_owned(), e));
                        Ok(())
                    }
                }
            }
            Source::Games => self.push_outcome(r),
        }
    }

    /// A run of `actions` records of this batch's partition, in offset
    /// order, each with its value decoded ([`decode_action`]): the same
    /// rows as [`BatchBuilder::push`] of each, built table by table: the
    /// run's `buffer_meta` rows, then its `events` rows. Each table's
    /// pages and dictionaries then stay in the caches for the run instead
    /// of taking turns with the other's, and with the decoder's, for every
    /// record (BENCHMARKS.md, "Lake", thirtieth session).
    pub fn push_actions(
        &mut self,
        run: &[(RecordRef<'_>, Result<ActionView<'_>, String>)],
    ) -> crate::Result<()> {
        let (Some((first, _)), Some((last, _))) = (run.first(), run.last()) else {
            return Ok(());
        };
        if self.source != Source::Actions {
            return Err(crate::LakeError::Other(format!(
                "actions pushed to a batch of {}",
                self.topic
            )));
        }
        self.take_range(first.offset, last.offset, run.len());
        for (r, decoded) in run {
            self.push_meta(r, decoded.as_ref().ok().map(|v| &*v.event_id))?;
        }
        for (r, decoded) in run {
            match decoded {
                Ok(view) => self.push_event(r, view)?,
                Err(e) => self.bad.push((r.to_owned(), e.clone())),
            }
        }
        Ok(())
    }

    /// Counts `records` more, from `first` to `last`.
    fn take_range(&mut self, first: i64, last: i64, records: usize) {
        if self.records == 0 {
            self.first = first;
        }
        self.last = last;
        self.records += records;
    }

    /// The `events` row of a decoded action, in its (day, event_type)
    /// group.
    fn push_event(&mut self, r: &RecordRef<'_>, view: &ActionView<'_>) -> crate::Result<()> {
        let day = day_of_ms(view.received_at_ms as i64);
        let group = match self
            .events
            .iter()
            .position(|g| g.day == day && g.event_type == view.event_type)
        {
            Some(i) => i,
            None => {
                let rows = if self.direct() {
                    EventRows::Parquet(Box::new(crate::direct::create(
                        EventPages::new(&self.topic, self.partition, &self.etl_id),
                        &EVENT_SCHEMA,
                        self.encoder(),
                    )?))
                } else {
                    EventRows::Arrow {
                        columns: Box::new(EventColumns::with_capacity(
                            FIRST_CHUNK_ROWS,
                            &self.event_sizes,
                        )),
                        sink: FileSink::new(&self.output, events_schema())?,
                    }
                };
                self.events.push(EventGroup {
                    day,
                    event_type: view.event_type.to_string(),
                    purchase: view.is_purchase(),
                    rows,
                });
                self.events.len() - 1
            }
        };
        let g = &mut self.events[group];
        match &mut g.rows {
            EventRows::Arrow { columns, .. } => {
                columns.push(view, r);
                if columns.len() >= CHUNK_ROWS {
                    g.flush(&mut self.constants, &mut self.event_sizes, true)?;
                }
            }
            EventRows::Parquet(file) => {
                file.table.push(view, r);
                file.row_done()?;
            }
        }
        Ok(())
    }

    /// A `games` record: its `buffer_meta` row, and its `outcomes` rows.
    fn push_outcome(&mut self, r: &RecordRef<'_>) -> crate::Result<()> {
        match decode_outcome(r.value) {
            Ok(Some(view)) => {
                let id = format!("{}@{}", view.game_id, view.version);
                self.push_meta(r, Some(&id))?;
                let day = day_of_ms(r.timestamp_ms.unwrap_or(0));
                let group = match self.outcomes.iter().position(|g| g.day == day) {
                    Some(i) => i,
                    None => {
                        self.outcomes.push(OutcomeGroup {
                            day,
                            rows: 0,
                            columns: OutcomeColumns::default(),
                            sink: FileSink::new(&self.output, outcomes_schema())?,
                        });
                        self.outcomes.len() - 1
                    }
                };
                let g = &mut self.outcomes[group];
                g.columns.push(&view, r);
                if g.columns.rows >= CHUNK_ROWS {
                    g.flush(&mut self.constants)?;
                }
                Ok(())
            }
            Ok(None) => self.push_meta(r, None),
            Err(e) => {
                self.push_meta(r, None)?;
                self.bad.push((r.to_owned(), e));
                Ok(())
            }
        }
    }

    /// Cuts the `buffer_meta` rows gathered so far into a chunk.
    fn flush_meta(&mut self, refill: bool) -> crate::Result<()> {
        if self.meta.len() == 0 {
            return Ok(());
        }
        let chunk = self
            .meta
            .finish(&mut self.constants, &mut self.meta_sizes)?;
        if refill {
            self.meta = MetaColumns::with_capacity(CHUNK_ROWS, &self.meta_sizes);
        }
        let sink = match &mut self.meta_sink {
            Some(sink) => sink,
            None => self
                .meta_sink
                .insert(FileSink::new(&self.output, buffer_meta_schema())?),
        };
        sink.write(chunk)
    }

    /// Every file of the batch, in a fixed order (folders sorted); the
    /// `etl_meta` file comes last, so its presence marks a batch whose files
    /// were all written. `info` names the files and gives the batch's range
    /// and times; its etl id must be the one the batch was opened with.
    pub fn finish(mut self, info: &BatchInfo) -> crate::Result<Vec<TableFile>> {
        if info.etl_id != self.etl_id
            || info.topic != self.topic
            || info.partition != self.partition
        {
            return Err(crate::LakeError::Other(format!(
                "batch {}/{} opened as etl {} finished as {}/{} etl {}",
                self.topic, self.partition, self.etl_id, info.topic, info.partition, info.etl_id
            )));
        }
        let name = file_name(&info.topic, info.partition, info.first, info.last);
        let mut files = Vec::new();
        let mut events = std::mem::take(&mut self.events);
        events.sort_by(|a, b| (a.day, &a.event_type).cmp(&(b.day, &b.event_type)));
        for mut group in events {
            group.flush(&mut self.constants, &mut self.event_sizes, false)?;
            let folder = format!(
                "date={}/event_type={}",
                date_of_day(group.day),
                group.event_type
            );
            let content = match group.rows {
                EventRows::Arrow { sink, .. } => sink.finish()?,
                EventRows::Parquet(file) => FileContent::Parquet(file.finish()?),
            };
            if group.purchase {
                files.push(TableFile {
                    path: format!("events/{folder}/{name}"),
                    content: content.clone(),
                });
                files.push(TableFile {
                    path: format!("purchases/{folder}/{name}"),
                    content,
                });
            } else {
                files.push(TableFile {
                    path: format!("events/{folder}/{name}"),
                    content,
                });
            }
        }
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.sort_by_key(|g| g.day);
        for mut group in outcomes {
            group.flush(&mut self.constants)?;
            if group.rows > 0 {
                files.push(TableFile {
                    path: format!("outcomes/date={}/{name}", date_of_day(group.day)),
                    content: group.sink.finish()?,
                });
            }
        }
        if !self.bad.is_empty() {
            files.push(TableFile {
                path: format!("bad_records/{name}"),
                content: FileContent::Arrow(bad_batch(info, &self.bad)?),
            });
        }
        self.flush_meta(false)?;
        let meta = match (self.meta_file.take(), self.meta_sink.take()) {
            (Some(file), _) => FileContent::Parquet(file.finish()?),
            (None, Some(sink)) => sink.finish()?,
            (None, None) => FileContent::Arrow(RecordBatch::new_empty(buffer_meta_schema())),
        };
        files.push(TableFile {
            path: format!("buffer_meta/{name}"),
            content: meta,
        });
        files.push(TableFile {
            path: format!("etl_meta/{name}"),
            content: FileContent::Arrow(etl_meta_batch(info, self.records)?),
        });
        Ok(files)
    }
}

/// The `events` (and `purchases`) rows of one (day, event_type).
struct EventGroup {
    day: i64,
    event_type: String,
    purchase: bool,
    rows: EventRows,
}

/// Where an [`EventGroup`]'s rows go.
enum EventRows {
    /// Arrow chunks ([`Output::Arrow`]): the chunk being gathered, and
    /// where it goes when cut.
    Arrow {
        columns: Box<EventColumns>,
        sink: FileSink,
    },
    /// Parquet pages, written as the rows come ([`Output::Parquet`]).
    Parquet(Box<ParquetFile<EventPages>>),
}

impl EventGroup {
    /// Cuts the rows gathered so far into a chunk; `refill` sizes the
    /// builders for the next one.
    fn flush(
        &mut self,
        constants: &mut Constants,
        sizes: &mut StringSizes<EVENT_STRINGS>,
        refill: bool,
    ) -> crate::Result<()> {
        let EventRows::Arrow { columns, sink } = &mut self.rows else {
            return Ok(());
        };
        if columns.len() == 0 {
            return Ok(());
        }
        let chunk = columns.finish(constants, sizes)?;
        if refill {
            **columns = EventColumns::with_capacity(CHUNK_ROWS, sizes);
        }
        sink.write(chunk)
    }
}

/// The string columns of [`EventColumns`], in [`StringSizes`] order.
const EVENT_STRINGS: usize = 8;

/// `events` columns but the constant ones (topic, partition, etl id), which
/// [`EventColumns::finish`] adds.
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
    fn with_capacity(rows: usize, s: &StringSizes<EVENT_STRINGS>) -> EventColumns {
        EventColumns {
            event_id: s.builder(0, rows),
            game_id: UInt64Builder::with_capacity(rows),
            player_id: s.builder(1, rows),
            name: s.builder(2, rows),
            host: s.builder(3, rows),
            user_agent: s.builder(4, rows),
            accept: s.builder(5, rows),
            client_addr: s.builder(6, rows),
            received_at: TimestampMillisecondBuilder::with_capacity(rows),
            schema_version: UInt32Builder::with_capacity(rows),
            kind: s.builder(7, rows),
            offset: Int64Builder::with_capacity(rows),
            timestamp: TimestampMillisecondBuilder::with_capacity(rows),
        }
    }

    fn len(&self) -> usize {
        self.offset.len()
    }

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

    /// The rows so far as an `events` chunk; the builders are left empty.
    fn finish(
        &mut self,
        constants: &mut Constants,
        s: &mut StringSizes<EVENT_STRINGS>,
    ) -> crate::Result<RecordBatch> {
        let n = self.len();
        for (i, b) in [
            &self.event_id,
            &self.player_id,
            &self.name,
            &self.host,
            &self.user_agent,
            &self.accept,
            &self.client_addr,
            &self.kind,
        ]
        .into_iter()
        .enumerate()
        {
            s.learn(i, b);
        }
        let (etl_id, topic, partition) = constants.take(n);
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
            topic,
            partition,
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            etl_id,
        ];
        Ok(RecordBatch::try_new(events_schema(), columns)?)
    }
}

static EVENT_SCHEMA: SchemaCell = SchemaCell::new();
static META_SCHEMA: SchemaCell = SchemaCell::new();

/// `events` as [`crate::direct`] columns, in [`events_schema`]'s order:
/// what [`EventColumns`] builds, encoded as the rows come.
struct EventPages {
    event_id: DeltaStrings,
    game_id: DictInts,
    player_id: DictStrings,
    name: DictStrings,
    host: DictStrings,
    user_agent: DictStrings,
    accept: DictStrings,
    client_addr: DictStrings,
    received_at: DeltaInts,
    schema_version: DictInts,
    kind: DictStrings,
    topic: Constant,
    partition: Constant,
    offset: DeltaInts,
    timestamp: DeltaInts,
    etl_id: Constant,
}

impl EventPages {
    fn new(topic: &str, partition: i32, etl_id: &str) -> EventPages {
        // Min and max where they can prune a read (as
        // `store::writer_properties` for the other tables).
        let text = || DictStrings::new(false, false);
        EventPages {
            event_id: DeltaStrings::default(),
            game_id: DictInts::new(IntKind::U64),
            player_id: text(),
            name: DictStrings::new(true, false),
            host: text(),
            user_agent: text(),
            accept: text(),
            client_addr: text(),
            received_at: DeltaInts::new(false),
            schema_version: DictInts::new(IntKind::U32),
            kind: DictStrings::new(false, true),
            topic: Constant::text(topic),
            partition: Constant::int32(partition),
            offset: DeltaInts::new(false),
            timestamp: DeltaInts::new(true),
            etl_id: Constant::text(etl_id),
        }
    }

    fn push(&mut self, v: &ActionView<'_>, r: &RecordRef<'_>) {
        self.event_id.push(v.event_id.as_bytes());
        self.game_id.push(v.game_id as i64);
        self.player_id.push(Some(v.player_id.as_bytes()));
        self.name.push(v.name.as_deref().map(str::as_bytes));
        self.host.push(Some(v.host.as_bytes()));
        self.user_agent.push(Some(v.user_agent.as_bytes()));
        self.accept.push(Some(v.accept.as_bytes()));
        self.client_addr.push(Some(v.client_addr.as_bytes()));
        self.received_at.push(Some(v.received_at_ms as i64));
        self.schema_version.push(i64::from(v.schema_version));
        self.kind
            .push(Some(shared::GameKind::of(v.game_id).as_str().as_bytes()));
        self.topic.push();
        self.partition.push();
        self.offset.push(Some(r.offset));
        self.timestamp.push(r.timestamp_ms);
        self.etl_id.push();
    }
}

impl crate::direct::Table for EventPages {
    fn schema() -> SchemaRef {
        events_schema()
    }

    fn columns(&mut self) -> Vec<&mut dyn Column> {
        vec![
            &mut self.event_id,
            &mut self.game_id,
            &mut self.player_id,
            &mut self.name,
            &mut self.host,
            &mut self.user_agent,
            &mut self.accept,
            &mut self.client_addr,
            &mut self.received_at,
            &mut self.schema_version,
            &mut self.kind,
            &mut self.topic,
            &mut self.partition,
            &mut self.offset,
            &mut self.timestamp,
            &mut self.etl_id,
        ]
    }
}

/// `buffer_meta` as [`crate::direct`] columns, in [`buffer_meta_schema`]'s
/// order: what [`MetaColumns`] builds, encoded as the rows come.
struct MetaPages {
    etl_id: Constant,
    msg_id: DeltaStrings,
    checksum: DeltaLengthStrings,
    headers: StringLists,
    key: DictStrings,
    offset: DeltaInts,
    partition: Constant,
    key_size: DictInts,
    value_size: DictInts,
    timestamp: DeltaInts,
    timestamp_type: DictInts,
    topic: Constant,
}

impl MetaPages {
    fn new(topic: &str, partition: i32, etl_id: &str) -> MetaPages {
        MetaPages {
            etl_id: Constant::text(etl_id),
            msg_id: DeltaStrings::default(),
            checksum: DeltaLengthStrings::default(),
            headers: StringLists::default(),
            key: DictStrings::new(true, false),
            offset: DeltaInts::new(false),
            partition: Constant::int32(partition),
            key_size: DictInts::new(IntKind::I32),
            value_size: DictInts::new(IntKind::I32),
            timestamp: DeltaInts::new(true),
            timestamp_type: DictInts::new(IntKind::I32),
            topic: Constant::text(topic),
        }
    }

    /// As [`MetaColumns::push`].
    fn push(&mut self, r: &RecordRef<'_>, msg_id: Option<&str>, topic: &str, partition: i32) {
        self.etl_id.push();
        match msg_id {
            Some(id) => self.msg_id.push(id.as_bytes()),
            None => self
                .msg_id
                .push(format!("{topic}+{partition}+{}", r.offset).as_bytes()),
        }
        self.checksum
            .push(checksum(r.value.unwrap_or_default()).as_ref().as_bytes());
        for (k, v) in &r.headers {
            let item = self.headers.open_item();
            crate::direct::extend_short(item, k.as_bytes());
            item.push(b'=');
            if is_text(v) {
                crate::direct::extend_short(item, v);
            } else {
                item.extend_from_slice(String::from_utf8_lossy(v).as_bytes());
            }
            self.headers.close_item();
        }
        self.headers.end_row();
        match r.key {
            None => self.key.push(None),
            Some(key) if is_text(key) => self.key.push(Some(key)),
            Some(key) => self.key.push(Some(String::from_utf8_lossy(key).as_bytes())),
        }
        self.offset.push(Some(r.offset));
        self.partition.push();
        self.key_size.push(r.key.map_or(-1, |k| k.len() as i64));
        self.value_size.push(r.value.map_or(-1, |v| v.len() as i64));
        self.timestamp.push(r.timestamp_ms);
        self.timestamp_type.push(i64::from(r.timestamp_type));
        self.topic.push();
    }
}

impl crate::direct::Table for MetaPages {
    fn schema() -> SchemaRef {
        buffer_meta_schema()
    }

    fn columns(&mut self) -> Vec<&mut dyn Column> {
        vec![
            &mut self.etl_id,
            &mut self.msg_id,
            &mut self.checksum,
            &mut self.headers,
            &mut self.key,
            &mut self.offset,
            &mut self.partition,
            &mut self.key_size,
            &mut self.value_size,
            &mut self.timestamp,
            &mut self.timestamp_type,
            &mut self.topic,
        ]
    }
}

/// The `outcomes` rows of one day.
struct OutcomeGroup {
    day: i64,
    /// Rows in all chunks.
    rows: usize,
    columns: OutcomeColumns,
    sink: FileSink,
}

impl OutcomeGroup {
    fn flush(&mut self, constants: &mut Constants) -> crate::Result<()> {
        if self.columns.rows == 0 {
            return Ok(());
        }
        self.rows += self.columns.rows;
        let chunk = std::mem::take(&mut self.columns).finish(constants)?;
        self.sink.write(chunk)
    }
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

    fn finish(mut self, constants: &mut Constants) -> crate::Result<RecordBatch> {
        let (etl_id, topic, partition) = constants.take(self.rows);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.game_id.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.player_id.finish()),
            Arc::new(self.reason_code.finish()),
            Arc::new(self.reason.finish()),
            topic,
            partition,
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            etl_id,
        ];
        Ok(RecordBatch::try_new(outcomes_schema(), columns)?)
    }
}

/// The sizes [`MetaColumns`] learns, in [`StringSizes`] order: `msg_id`
/// and `key` bytes, then the headers' bytes and items per record (the
/// bridge's three headers are about 100 bytes a record; from 1 KiB, their
/// column grew by ten doublings per chunk).
const META_STRINGS: usize = 4;

/// `buffer_meta` columns but the constant ones, a row per record.
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
    fn with_capacity(rows: usize, s: &StringSizes<META_STRINGS>) -> MetaColumns {
        MetaColumns {
            msg_id: s.builder(0, rows),
            checksum: StringBuilder::with_capacity(rows, rows * 8),
            headers: ListBuilder::with_capacity(
                StringBuilder::with_capacity(rows * s.0[3], rows * s.0[2]),
                rows,
            ),
            key: s.builder(1, rows),
            offset: Int64Builder::with_capacity(rows),
            key_size: Int32Builder::with_capacity(rows),
            value_size: Int32Builder::with_capacity(rows),
            timestamp: TimestampMillisecondBuilder::with_capacity(rows),
            timestamp_type: Int8Builder::with_capacity(rows),
        }
    }

    fn len(&self) -> usize {
        self.offset.len()
    }

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
            .append_value(checksum(r.value.unwrap_or_default()));
        for (k, v) in &r.headers {
            // `name=value` (the value as lossy UTF-8), written into the
            // column's buffer, which cannot fail: no string per header
            // (the bridge puts three on every action).
            let item = self.headers.values();
            let _ = item.write_str(k);
            let _ = item.write_char('=');
            let _ = match std::str::from_utf8(v) {
                Ok(v) => item.write_str(v),
                Err(_) => item.write_str(&String::from_utf8_lossy(v)),
            };
            item.append_value("");
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

    /// The rows so far as a `buffer_meta` chunk; the builders are left empty.
    fn finish(
        &mut self,
        constants: &mut Constants,
        s: &mut StringSizes<META_STRINGS>,
    ) -> crate::Result<RecordBatch> {
        s.learn(0, &self.msg_id);
        s.learn(1, &self.key);
        let items = self.headers.values_ref();
        s.learn_per_row(2, self.len(), items.values_slice().len());
        s.learn_per_row(3, self.len(), items.len());
        let (etl_id, topic, partition) = constants.take(self.len());
        let columns: Vec<ArrayRef> = vec![
            etl_id,
            Arc::new(self.msg_id.finish()),
            Arc::new(self.checksum.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.offset.finish()),
            partition,
            Arc::new(self.key_size.finish()),
            Arc::new(self.value_size.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            Arc::new(self.timestamp_type.finish()),
            topic,
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

/// Whether `bytes` are UTF-8 as they are; ASCII, the usual case, is
/// checked a word at a time with no call.
fn is_text(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// `buffer_meta.checksum` of a record's value: its CRC-32 as 8 lower-case
/// hex digits, without allocating.
pub fn checksum(value: &[u8]) -> impl AsRef<str> {
    hex32(crc32fast::hash(value))
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
        assert_eq!(
            offsets(files[0].arrow().unwrap(), "kafka_offset"),
            vec![10, 12]
        );
        assert_eq!(
            offsets(files[5].arrow().unwrap(), "offset"),
            vec![10, 11, 12, 13]
        );
        let hosts = files[0]
            .arrow()
            .unwrap()
            .column_by_name("Host")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(hosts.value(1), "b");
        assert_eq!(files.last().unwrap().arrow().unwrap().num_rows(), 1);
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
                let kind = f
                    .arrow()
                    .unwrap()
                    .column_by_name("kind")
                    .unwrap()
                    .as_string::<i32>();
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
        assert_eq!(offsets(bad.arrow().unwrap(), "kafka_offset"), vec![5]);
        let meta = files
            .iter()
            .find(|f| f.path.starts_with("buffer_meta/"))
            .unwrap();
        assert_eq!(offsets(meta.arrow().unwrap(), "offset"), vec![4, 5]);
        let ids = meta
            .arrow()
            .unwrap()
            .column_by_name("msg_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), "e4");
        assert_eq!(ids.value(1), "actions+1+5");
    }

    #[test]
    fn headers_become_name_value_items_across_chunks() {
        let info = info(Source::Actions, 0, CHUNK_ROWS as i64 + 9);
        let mut batch =
            BatchBuilder::new(Source::Actions, "actions", 1, &info.etl_id, Output::Arrow);
        let bad_utf8: &[u8] = b"a\xffb";
        for offset in 0..=info.last {
            let raw = action(offset, shared::ActionType::Default, "a");
            let id = offset.to_string();
            let mut r = raw.as_ref();
            r.headers = smallvec::smallvec![("seq", id.as_bytes()), ("raw", bad_utf8)];
            if offset % 3 == 0 {
                // Records with fewer headers, or none, in between.
                r.headers.truncate((offset % 2) as usize);
            }
            batch.push(&r).unwrap();
        }
        let files = batch.finish(&info).unwrap();
        let meta = files
            .iter()
            .find(|f| f.path.starts_with("buffer_meta/"))
            .unwrap()
            .arrow()
            .unwrap();
        let headers = meta.column_by_name("headers").unwrap().as_list::<i32>();
        assert_eq!(meta.num_rows(), CHUNK_ROWS + 10);
        for row in [0, 1, 2, 3, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 9] {
            let items = headers.value(row);
            let items: Vec<&str> = items.as_string::<i32>().iter().flatten().collect();
            let want: Vec<String> = match (row % 3, row % 2) {
                (0, 0) => vec![],
                (0, _) => vec![format!("seq={row}")],
                _ => vec![format!("seq={row}"), "raw=a\u{FFFD}b".to_string()],
            };
            assert_eq!(items, want, "row {row}");
        }
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
        let b = outcomes.arrow().unwrap();
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

    /// Reads a Parquet file back into one batch.
    fn read(content: &FileContent) -> RecordBatch {
        let FileContent::Parquet(payload) = content else {
            panic!("not Parquet");
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(payload.clone()),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    /// Several pages' worth of actions, a partial last one, and a purchase
    /// group; nulls in every nullable column; headers none or some;
    /// undecodable records; player ids enough to fill a dictionary (its
    /// next pages plain), game ids past a scanned one.
    fn mixed_actions() -> Vec<RawRecord> {
        use shared::ActionType::*;
        let n = 2 * CHUNK_ROWS as i64 + 300;
        (0..n)
            .map(|i| {
                let t = if i % 3 == 0 { PurchaseSword } else { Default };
                let mut r = action(i, t, ["a", "bb", "ccc"][(i % 3) as usize]);
                let mut e: shared::ActionEnvelope =
                    serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
                e.player_id = format!("player-{i:0>120}");
                e.game_id = (i % 40) as u64 + u64::from(i % 7 == 0) * (1 << 63);
                e.name = (i % 4 == 0).then(|| format!("nation {}", i % 9));
                e.received_at_ms += (i * 37 % 1000) as u64;
                r.value = Some(serde_json::to_vec(&e).unwrap());
                if i % 5 == 0 {
                    r.timestamp_ms = None;
                    r.timestamp_type = -1;
                }
                if i % 6 == 0 {
                    r.key = None;
                }
                if i % 2 == 0 {
                    r.headers = vec![
                        ("event_id".into(), e.event_id.clone()),
                        ("odd".into(), "\u{fffd}é=".into()),
                    ];
                }
                if i % 997 == 0 {
                    r.value = Some(b"not an action".to_vec());
                }
                r
            })
            .collect()
    }

    #[test]
    fn runs_of_actions_give_the_files_one_push_per_record_gives() {
        let records = mixed_actions();
        let refs: Vec<RecordRef<'_>> = records.iter().map(RawRecord::as_ref).collect();
        let info = info(Source::Actions, 0, records.len() as i64 - 1);
        for output in [Output::Arrow, Output::Parquet(None)] {
            let new = || {
                BatchBuilder::new(
                    info.source,
                    &info.topic,
                    info.partition,
                    &info.etl_id,
                    output.clone(),
                )
            };
            let mut each = new();
            for r in &refs {
                each.push(r).unwrap();
            }
            // Runs of every size, across page boundaries.
            let mut runs = new();
            let mut rest = &refs[..];
            for size in [1, 7, 64, 300, 2, CHUNK_ROWS + 1].into_iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (run, next) = rest.split_at(size.min(rest.len()));
                let run: Vec<_> = run
                    .iter()
                    .map(|r| (r.clone(), decode_action(r.value)))
                    .collect();
                runs.push_actions(&run).unwrap();
                rest = next;
            }
            assert_eq!(runs.len(), records.len());
            assert_eq!(runs.range(), each.range());
            let (each, runs) = (each.finish(&info).unwrap(), runs.finish(&info).unwrap());
            assert!(each.iter().any(|f| f.path.starts_with("bad_records/")));
            assert_eq!(each.len(), runs.len());
            for (a, b) in each.iter().zip(&runs) {
                assert_eq!(a.path, b.path);
                match (&a.content, &b.content) {
                    (FileContent::Parquet(a), FileContent::Parquet(b)) => {
                        assert_eq!(bytes::Bytes::from(a.clone()), bytes::Bytes::from(b.clone()))
                    }
                    (FileContent::Arrow(x), FileContent::Arrow(y)) => {
                        assert_eq!(x, y, "{}", a.path)
                    }
                    _ => panic!("{}: one file Arrow, the other Parquet", a.path),
                }
            }
        }
    }

    #[test]
    fn actions_pushed_to_a_games_batch_are_an_error() {
        let r = action(0, shared::ActionType::Default, "a");
        let mut batch = BatchBuilder::new(Source::Games, "games", 0, "etl-0", Output::Arrow);
        let run = [(r.as_ref(), decode_action(r.value.as_deref()))];
        assert!(batch.push_actions(&run).is_err());
        assert!(batch.is_empty());
    }

    #[test]
    fn files_encoded_chunk_by_chunk_hold_the_rows_built_as_arrow() {
        let records = mixed_actions();
        let n = records.len() as i64;
        let info = info(Source::Actions, 0, n - 1);
        let arrow = build(&info, &records).unwrap();
        // Pages compressed on the caller's thread, then on an encoder's.
        for encoder in [None, Some(Encoder::start(4).unwrap())] {
            let mut batch = BatchBuilder::new(
                info.source,
                &info.topic,
                info.partition,
                &info.etl_id,
                Output::Parquet(encoder),
            );
            for r in &records {
                batch.push(&r.as_ref()).unwrap();
            }
            let parquet = batch.finish(&info).unwrap();
            assert_eq!(arrow.len(), parquet.len());
            for (a, p) in arrow.iter().zip(&parquet) {
                assert_eq!(a.path, p.path);
                let rows = match &p.content {
                    FileContent::Parquet(_) => read(&p.content),
                    FileContent::Arrow(b) => b.clone(),
                };
                assert_eq!(a.arrow().unwrap(), &rows, "{}", a.path);
            }
        }
    }

    #[test]
    fn a_batch_finished_under_another_etl_id_is_an_error() {
        let mut batch = BatchBuilder::new(Source::Actions, "actions", 1, "etl-0", Output::Arrow);
        batch
            .push(&action(0, shared::ActionType::Default, "a").as_ref())
            .unwrap();
        assert!(batch.finish(&info(Source::Actions, 0, 0)).is_err());
    }

    #[test]
    fn the_same_records_give_the_same_files() {
        let records = vec![action(0, shared::ActionType::PurchaseKnife, "a")];
        let a = build(&info(Source::Actions, 0, 0), &records).unwrap();
        let b = build(&info(Source::Actions, 0, 0), &records).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.path, y.path);
            assert_eq!(x.arrow(), y.arrow());
        }
    }
}
