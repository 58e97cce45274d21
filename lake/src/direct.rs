//! `events` and `buffer_meta` written as Parquet straight from the records.
//!
//! The other tables go through Arrow arrays and the `parquet` crate's
//! `ArrowWriter`. These two take a row per action, about 28 values, and on
//! that path each value was copied into an Arrow builder, then into the
//! writer's own buffers, then into a page, and each text value of a
//! dictionary column was hashed into the writer's interner
//! (BENCHMARKS.md, "Lake"). Here each value is written once, in its final
//! encoding, into the page being gathered for its column:
//!
//! | column kind | page encoding | built as the rows come |
//! |---|---|---|
//! | [`DeltaStrings`]: ids that share prefixes (UUIDv7s) | `DELTA_BYTE_ARRAY` | prefix and suffix lengths, suffix bytes |
//! | [`DeltaLengthStrings`]: unique text of one length (checksums) | `DELTA_LENGTH_BYTE_ARRAY` | lengths, bytes |
//! | [`StringLists`]: lists of unique text | `PLAIN` | length and bytes |
//! | [`DeltaInts`]: offsets and times, which climb | `DELTA_BINARY_PACKED` | the numbers |
//! | [`DictStrings`], [`DictInts`]: repeated values | `RLE_DICTIONARY`, `PLAIN` once the dictionary passes 1 MiB | an index into the chunk's dictionary |
//! | [`Constant`]: a batch's topic, partition and etl id | `RLE_DICTIONARY` | nothing but a row count |
//!
//! Every [`CHUNK_ROWS`](crate::tables::CHUNK_ROWS) rows each column's page
//! is encoded, then compressed into its column chunk (on the exporter's
//! [`Encoder`] thread, with one codec per thread); every
//! [`ROW_GROUP_ROWS`] rows the chunks become a row group of the file. Page
//! headers, column metadata and the footer are the `parquet` crate's
//! (`SerializedPageWriter`, `SerializedRowGroupWriter::append_column`), as
//! are the RLE and level encoders, so the files are what that crate writes:
//! the same physical and logical types, encodings and bytes, and the Arrow
//! schema in the footer. `DELTA_BINARY_PACKED` is encoded here
//! (`delta_packed`), to the same bytes as the crate's encoder (a test
//! compares them) in less time (BENCHMARKS.md, "Lake", thirty-first
//! session). Statistics (min, max, nulls) are kept per column
//! chunk for the columns whose values can prune a read, as
//! `store::writer_properties` chooses for the other tables; there is no
//! page index.

use std::collections::{HashMap, VecDeque};
use std::io::Read as _;
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use object_store::{PutPayload, PutPayloadMut};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::compression::{create_codec, Codec, CodecOptions};
use parquet::data_type::ByteArray;
use parquet::encodings::levels::LevelEncoder;
use parquet::encodings::rle::RleEncoder;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::SchemaDescriptor;
use parquet::util::bit_util::num_required_bits;

use crate::tables::Encoder;

type Result<T> = std::result::Result<T, parquet::errors::ParquetError>;
type Hasher = ahash::RandomState;

/// Rows per row group (as `store::writer_properties` sets for the others).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// A column's dictionary past this many plain bytes stops growing: its
/// next pages are plain (the `parquet` crate's default limit).
const DICTIONARY_LIMIT: usize = 1024 * 1024;

/// A page as its column encoded it: levels, then values, not yet
/// compressed.
pub struct EncodedPage {
    levels: Vec<u8>,
    values: Bytes,
    /// Whether `values` starts with the page's levels (written there by
    /// the column, so they need not be joined for the codec).
    levels_inside: bool,
    num_values: usize,
    encoding: Encoding,
}

impl EncodedPage {
    fn new(
        levels: Vec<u8>,
        values: impl Into<Bytes>,
        num_values: usize,
        encoding: Encoding,
    ) -> Self {
        EncodedPage {
            levels,
            values: values.into(),
            levels_inside: false,
            num_values,
            encoding,
        }
    }

    /// A page whose `data` is its levels then its values.
    fn with_levels_inside(data: Bytes, num_values: usize, encoding: Encoding) -> Self {
        EncodedPage {
            levels: Vec::new(),
            values: data,
            levels_inside: true,
            num_values,
            encoding,
        }
    }
}

/// What a thread compresses pages with: one codec (one zstd context) for
/// every file it writes, made on its first page ([`with_pages`]).
struct Pages {
    compression: Compression,
    /// The `parquet` crate's codec, for the codecs other than zstd (none
    /// for `UNCOMPRESSED`).
    codec: Option<Box<dyn Codec>>,
    /// zstd with the lake's own parameters.
    zstd: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
    /// zstd's output, reused: a page is copied out at its compressed
    /// size.
    compressed: Vec<u8>,
}

/// A page's hash table for zstd's match finder: 2^11 entries rather than
/// level 1's default for inputs the size of a page (2^13 to 2^14). The
/// lake's pages are mostly ids, checksums and headers whose repeats are
/// near; the smaller table stays in the L1 cache. Measured on a million
/// actions (BENCHMARKS.md, "Lake"): the encoder thread's share of the
/// export fell from 11.9% to 10.2–10.6% and the lake from 44.27 to 43.51 MB.
pub const ZSTD_HASH_LOG: u32 = 11;

/// zstd at `compression`'s level with [`ZSTD_HASH_LOG`], or `None` for
/// the other codecs (the `parquet` crate's, as they are).
fn zstd_compressor(compression: Compression) -> Result<Option<zstd::bulk::Compressor<'static>>> {
    let Compression::ZSTD(level) = compression else {
        return Ok(None);
    };
    let mut zstd = zstd::bulk::Compressor::new(level.compression_level())?;
    zstd.set_parameter(zstd::stream::raw::CParameter::HashLog(ZSTD_HASH_LOG))?;
    Ok(Some(zstd))
}

thread_local! {
    static PAGES: std::cell::RefCell<Option<Pages>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's [`Pages`] for `compression`.
fn with_pages<R>(compression: Compression, f: impl FnOnce(&mut Pages) -> Result<R>) -> Result<R> {
    PAGES.with(|cell| {
        let mut slot = cell.borrow_mut();
        let pages = match &mut *slot {
            Some(pages) if pages.compression == compression => pages,
            _ => {
                // zstd is ours ([`zstd_compressor`]); the other codecs are
                // the `parquet` crate's.
                let zstd = zstd_compressor(compression)?;
                let codec = match zstd {
                    Some(_) => None,
                    None => create_codec(compression, &CodecOptions::default())?,
                };
                slot.insert(Pages {
                    compression,
                    codec,
                    zstd,
                    scratch: Vec::new(),
                    compressed: Vec::new(),
                })
            }
        };
        f(pages)
    })
}

impl Pages {
    /// Compresses `page` as one data page of `chunk`.
    fn data_page(&mut self, chunk: &mut Chunk, page: &EncodedPage) -> Result<()> {
        let size = page.levels.len() + page.values.len();
        let buf = self.compress(&page.levels, &page.values)?;
        chunk.note(page.encoding);
        if !page.levels.is_empty() || page.levels_inside {
            chunk.note(Encoding::RLE);
        }
        chunk.write(CompressedPage::new(
            Page::DataPage {
                buf,
                num_values: page.num_values as u32,
                encoding: page.encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            size,
        ))
    }

    fn compress(&mut self, levels: &[u8], values: &[u8]) -> Result<Bytes> {
        let input = if levels.is_empty() {
            values
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(levels);
            self.scratch.extend_from_slice(values);
            &self.scratch
        };
        if let Some(zstd) = &mut self.zstd {
            self.compressed.clear();
            self.compressed
                .reserve(zstd::zstd_safe::compress_bound(input.len()));
            zstd.compress_to_buffer(input, &mut self.compressed)?;
            return Ok(Bytes::copy_from_slice(&self.compressed));
        }
        Ok(match &mut self.codec {
            Some(codec) => {
                let mut out = Vec::with_capacity(input.len() / 2 + 64);
                codec.compress(input, &mut out)?;
                Bytes::from(out)
            }
            None => Bytes::copy_from_slice(input),
        })
    }
}

/// One column's chunk of the row group being written: its pages, in file
/// order but for the dictionary page, which `Chunk::finish` puts first.
/// Each page is kept as it came from the codec, beside its header: copied
/// once, into the file, when the row group is written.
pub struct Chunk {
    /// Each page's header, then its data.
    pieces: Vec<Bytes>,
    values: i64,
    uncompressed: i64,
    compressed: i64,
    encodings: Vec<Encoding>,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            pieces: Vec::new(),
            values: 0,
            uncompressed: 0,
            compressed: 0,
            encodings: Vec::new(),
        }
    }

    fn note(&mut self, encoding: Encoding) {
        if !self.encodings.contains(&encoding) {
            self.encodings.push(encoding);
        }
    }

    fn write(&mut self, page: CompressedPage) -> Result<()> {
        let (head, data, spec) = page_head(page)?;
        self.pieces.push(head);
        self.pieces.push(data);
        self.values += spec.num_values as i64;
        self.uncompressed += spec.uncompressed_size as i64;
        self.compressed += spec.compressed_size as i64;
        Ok(())
    }

    /// The chunk's pieces (dictionary page first) and what the file writer
    /// needs to append them.
    fn finish(
        self,
        pages: &mut Pages,
        descr: parquet::schema::types::ColumnDescPtr,
        end: ChunkEnd,
        rows: usize,
    ) -> Result<(Pieces, ColumnCloseResult)> {
        let Chunk {
            mut pieces,
            values,
            mut uncompressed,
            mut compressed,
            mut encodings,
        } = self;
        let (dictionary_offset, data_offset) = match end.dictionary {
            Some((plain, entries)) => {
                let buf = pages.compress(&[], &plain)?;
                let (head, data, spec) = page_head(CompressedPage::new(
                    Page::DictionaryPage {
                        buf,
                        num_values: entries,
                        encoding: Encoding::PLAIN,
                        is_sorted: false,
                    },
                    plain.len(),
                ))?;
                uncompressed += spec.uncompressed_size as i64;
                compressed += spec.compressed_size as i64;
                if !encodings.contains(&Encoding::PLAIN) {
                    encodings.push(Encoding::PLAIN);
                }
                let offset = (head.len() + data.len()) as i64;
                pieces.splice(0..0, [head, data]);
                (Some(0), offset)
            }
            None => (None, 0),
        };
        let pieces = Pieces::new(pieces);
        let mut metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(pages.compression)
            .set_encodings(encodings)
            .set_num_values(values)
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(uncompressed)
            .set_data_page_offset(data_offset)
            .set_dictionary_page_offset(dictionary_offset);
        if let Some(statistics) = end.statistics {
            metadata = metadata.set_statistics(statistics);
        }
        let close = ColumnCloseResult {
            bytes_written: pieces.len,
            rows_written: rows as u64,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((pieces, close))
    }
}

/// A page header is at most this long (a data or dictionary page's, with
/// no statistics in it, takes under 40 bytes).
const MAX_PAGE_HEAD: usize = 1024;

/// What the `parquet` crate's page writer writes for a page, kept up to
/// [`MAX_PAGE_HEAD`] bytes: its header, and no more than the start of its
/// data.
#[derive(Default)]
struct HeadSink {
    head: Vec<u8>,
}

impl std::io::Write for HeadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_PAGE_HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A page's header as the `parquet` crate's page writer writes it, its
/// data (not copied) and the writer's account of it.
fn page_head(page: CompressedPage) -> Result<(Bytes, Bytes, PageWriteSpec)> {
    let data = match page.compressed_page() {
        Page::DataPage { buf, .. }
        | Page::DataPageV2 { buf, .. }
        | Page::DictionaryPage { buf, .. } => buf.clone(),
    };
    let mut sink = TrackedWrite::new(HeadSink::default());
    let spec = SerializedPageWriter::new(&mut sink).write_page(page)?;
    let sink = sink.into_inner()?;
    let head = (spec.bytes_written as usize)
        .checked_sub(data.len())
        .and_then(|n| sink.head.get(..n))
        .ok_or_else(|| parquet::errors::ParquetError::General("a page header too long".into()))?;
    Ok((Bytes::copy_from_slice(head), data, spec))
}

/// A column chunk's bytes in pieces.
struct Pieces {
    pieces: Vec<Bytes>,
    len: u64,
}

impl Pieces {
    fn new(pieces: Vec<Bytes>) -> Pieces {
        let len = pieces.iter().map(|p| p.len() as u64).sum();
        Pieces { pieces, len }
    }
}

/// The file as the `parquet` crate's file writer writes it, its column
/// chunks not copied: the writer writes each chunk as [`Blank`] bytes, and
/// the assembly puts the chunk's own pieces in their place. The rest (the
/// magic, the footer) is copied into small blocks.
struct Assembly {
    out: PutPayloadMut,
    /// Bytes the writer has written.
    at: u64,
    /// Chunks to come, in file order.
    splices: VecDeque<Splice>,
}

/// A column chunk at `start` in the file.
struct Splice {
    start: u64,
    len: u64,
    /// Taken when the writer reaches `start`.
    pieces: Option<Vec<Bytes>>,
}

impl Assembly {
    fn new() -> Assembly {
        Assembly {
            out: PutPayloadMut::new(),
            at: 0,
            splices: VecDeque::new(),
        }
    }

    /// The file's bytes at `start`, as many as `chunk` holds, are its.
    fn splice(&mut self, start: u64, chunk: Pieces) {
        self.splices.push_back(Splice {
            start,
            len: chunk.len,
            pieces: Some(chunk.pieces),
        });
    }

    /// The whole file, once the writer is done.
    fn finish(self) -> Result<PutPayload> {
        if let Some(splice) = self.splices.front() {
            return Err(parquet::errors::ParquetError::General(format!(
                "a column chunk at {} was not written (the file ends at {})",
                splice.start, self.at
            )));
        }
        Ok(self.out.freeze())
    }
}

impl std::io::Write for Assembly {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let Some(splice) = self.splices.front_mut() else {
                self.out.extend_from_slice(rest);
                self.at += rest.len() as u64;
                break;
            };
            if self.at < splice.start {
                let n = rest.len().min((splice.start - self.at) as usize);
                self.out.extend_from_slice(&rest[..n]);
                self.at += n as u64;
                rest = &rest[n..];
                continue;
            }
            for piece in splice.pieces.take().into_iter().flatten() {
                self.out.push(piece);
            }
            let end = splice.start + splice.len;
            let n = rest.len().min((end - self.at) as usize);
            self.at += n as u64;
            rest = &rest[n..];
            if self.at == end {
                self.splices.pop_front();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A column chunk's length in zeros: what the file writer copies for it
/// while the [`Assembly`] puts the chunk's pieces in their place.
struct Blank(u64);

impl parquet::file::reader::Length for Blank {
    fn len(&self) -> u64 {
        self.0
    }
}

impl parquet::file::reader::ChunkReader for Blank {
    type T = std::io::Take<std::io::Repeat>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(std::io::repeat(0).take(self.0.saturating_sub(start)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let available = self.0.saturating_sub(start) as usize;
        Ok(vec![0; length.min(available)].into())
    }
}

/// What a column has for the end of its chunk.
#[derive(Default)]
pub struct ChunkEnd {
    /// The dictionary, plain-encoded, and its number of entries.
    dictionary: Option<(Vec<u8>, u32)>,
    statistics: Option<Statistics>,
}

/// A column as the file writer sees it.
pub trait Column {
    /// Encodes the values gathered since the last page (compression and
    /// the page header come after, maybe on another thread).
    fn page(&mut self) -> Result<EncodedPage>;
    /// Ends the chunk: its dictionary and statistics (none by default);
    /// the column starts over.
    fn end_chunk(&mut self) -> ChunkEnd {
        ChunkEnd::default()
    }
}

/// A table's columns, in its schema's order.
pub trait Table {
    /// The Arrow schema the file's footer carries.
    fn schema() -> SchemaRef;
    fn columns(&mut self) -> Vec<&mut dyn Column>;
}

/// A table's Parquet schema and the file writer's settings, made once.
pub struct FileSchema {
    descr: Arc<SchemaDescriptor>,
    props: WriterPropertiesPtr,
}

fn file_schema<T: Table>(cell: &'static SchemaCell) -> Result<&'static FileSchema> {
    cell.get_or_init(|| {
        let schema = T::schema();
        let descr = Arc::new(ArrowSchemaConverter::new().convert(&schema)?);
        let mut props = WriterProperties::builder()
            .set_created_by("build-a-nation lake".into())
            .build();
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        Ok(FileSchema {
            descr,
            props: Arc::new(props),
        })
    })
    .as_ref()
    .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))
}

/// The encoded side of a file: its column chunks and its writer, fed
/// encoded pages by [`ParquetFile`], on the caller's thread or an
/// [`Encoder`]'s.
struct FileState {
    schema: &'static FileSchema,
    compression: Compression,
    chunks: Vec<Chunk>,
    writer: SerializedFileWriter<Assembly>,
}

impl FileState {
    fn new(schema: &'static FileSchema) -> Result<FileState> {
        Ok(FileState {
            schema,
            compression: crate::store::compression(),
            chunks: Self::chunks(schema),
            writer: SerializedFileWriter::new(
                Assembly::new(),
                schema.descr.root_schema_ptr(),
                schema.props.clone(),
            )?,
        })
    }

    fn chunks(schema: &FileSchema) -> Vec<Chunk> {
        (0..schema.descr.num_columns())
            .map(|_| Chunk::new())
            .collect()
    }

    /// One page per column, in the schema's order.
    fn write_pages(&mut self, pages: &[EncodedPage]) -> Result<()> {
        with_pages(self.compression, |codec| {
            for (chunk, page) in self.chunks.iter_mut().zip(pages) {
                codec.data_page(chunk, page)?;
            }
            Ok(())
        })
    }

    /// Ends the row group: each column's chunk with its dictionary and
    /// statistics.
    fn write_group(&mut self, ends: Vec<ChunkEnd>, rows: usize) -> Result<()> {
        let chunks = std::mem::replace(&mut self.chunks, Self::chunks(self.schema));
        let finished = with_pages(self.compression, |codec| {
            chunks
                .into_iter()
                .zip(ends)
                .enumerate()
                .map(|(i, (chunk, end))| {
                    chunk.finish(codec, self.schema.descr.column(i), end, rows)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        // The row group's chunks follow each other from here, spliced in
        // as the writer writes them.
        let mut at = self.writer.bytes_written() as u64;
        let mut blanks = Vec::with_capacity(finished.len());
        for (pieces, close) in finished {
            let len = pieces.len;
            self.writer.inner_mut().splice(at, pieces);
            at += len;
            blanks.push((Blank(len), close));
        }
        let mut group = self.writer.next_row_group()?;
        for (blank, close) in blanks {
            group.append_column(&blank, close)?;
        }
        group.close()?;
        if self.writer.bytes_written() as u64 != at {
            return Err(parquet::errors::ParquetError::General(format!(
                "a row group's chunks end at {}, not {at}",
                self.writer.bytes_written()
            )));
        }
        Ok(())
    }
}

/// Where a [`ParquetFile`]'s encoded pages go.
enum Out {
    Here(Box<FileState>),
    /// To an encoder thread; a failure there is kept for `finish`.
    There(
        Encoder,
        Arc<Mutex<std::result::Result<Box<FileState>, String>>>,
    ),
}

impl Out {
    fn run(
        &mut self,
        job: impl FnOnce(&mut FileState) -> Result<()> + Send + 'static,
    ) -> crate::Result<()> {
        match self {
            Out::Here(state) => Ok(job(state)?),
            Out::There(encoder, state) => {
                let state = state.clone();
                encoder.run(move || {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Ok(file) = &mut *state {
                        if let Err(e) = job(file) {
                            *state = Err(e.to_string());
                        }
                    }
                })
            }
        }
    }

    fn finish(self) -> crate::Result<PutPayload> {
        let into_bytes =
            |state: Box<FileState>| -> Result<PutPayload> { state.writer.into_inner()?.finish() };
        match self {
            Out::Here(state) => Ok(into_bytes(state)?),
            Out::There(encoder, state) => {
                // After the file's pages, in the encoder's order.
                let (done, result) = mpsc::sync_channel(1);
                encoder.run(move || {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    let bytes = match std::mem::replace(&mut *state, Err("finished".into())) {
                        Ok(file) => into_bytes(file).map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    let _ = done.send(bytes);
                })?;
                result
                    .recv()
                    .map_err(|_| crate::LakeError::Other("the encoder thread is gone".into()))?
                    .map_err(|e| crate::LakeError::Other(format!("parquet: {e}")))
            }
        }
    }
}

/// One Parquet file of table `T`, written a page at a time as rows come:
/// the caller pushes each row's values into [`ParquetFile::table`]'s
/// columns and calls [`ParquetFile::row_done`]. Each full page is encoded
/// here; with an [`Encoder`], compressing it and writing it into its
/// column chunk happen on the encoder's thread.
pub struct ParquetFile<T: Table> {
    pub table: T,
    out: Out,
    page_rows: usize,
    group_rows: usize,
    rows: usize,
    max_page_rows: usize,
    max_group_rows: usize,
}

impl<T: Table> ParquetFile<T> {
    /// Rows in the file so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Counts a row the caller pushed into [`ParquetFile::table`]'s columns;
    /// a full page is encoded at once.
    pub fn row_done(&mut self) -> crate::Result<()> {
        self.page_rows += 1;
        self.rows += 1;
        if self.page_rows >= self.max_page_rows {
            self.flush_page()?;
            if self.group_rows >= self.max_group_rows {
                self.flush_group()?;
            }
        }
        Ok(())
    }

    fn flush_page(&mut self) -> crate::Result<()> {
        if self.page_rows == 0 {
            return Ok(());
        }
        let pages = self
            .table
            .columns()
            .into_iter()
            .map(|column| column.page())
            .collect::<Result<Vec<_>>>()?;
        self.out.run(move |file| file.write_pages(&pages))?;
        self.group_rows += self.page_rows;
        self.page_rows = 0;
        Ok(())
    }

    fn flush_group(&mut self) -> crate::Result<()> {
        if self.group_rows == 0 {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.group_rows);
        let ends: Vec<ChunkEnd> = self
            .table
            .columns()
            .into_iter()
            .map(|column| column.end_chunk())
            .collect();
        self.out.run(move |file| file.write_group(ends, rows))
    }

    /// The whole file.
    pub fn finish(mut self) -> crate::Result<PutPayload> {
        self.flush_page()?;
        self.flush_group()?;
        self.out.finish()
    }
}

/// Where a table keeps its [`FileSchema`], made on first use.
pub type SchemaCell = OnceLock<Result<FileSchema>>;

/// An empty file of `table`, with the lake's page and row group sizes,
/// its pages compressed on `encoder`'s thread if given, else on the
/// caller's.
pub fn create<T: Table>(
    table: T,
    cell: &'static SchemaCell,
    encoder: Option<&Encoder>,
) -> crate::Result<ParquetFile<T>> {
    create_sized(
        table,
        cell,
        encoder,
        crate::tables::CHUNK_ROWS,
        ROW_GROUP_ROWS,
    )
}

/// [`create`] with other page and row group sizes (tests).
pub fn create_sized<T: Table>(
    table: T,
    cell: &'static SchemaCell,
    encoder: Option<&Encoder>,
    page_rows: usize,
    group_rows: usize,
) -> crate::Result<ParquetFile<T>> {
    let state = Box::new(FileState::new(file_schema::<T>(cell)?)?);
    Ok(ParquetFile {
        table,
        out: match encoder {
            Some(encoder) => Out::There(encoder.clone(), Arc::new(Mutex::new(Ok(state)))),
            None => Out::Here(state),
        },
        page_rows: 0,
        group_rows: 0,
        rows: 0,
        max_page_rows: page_rows,
        max_group_rows: group_rows,
    })
}

/// A page's buffer, handed on; the next starts at the same size.
fn take_sized(buffer: &mut Vec<u8>) -> Vec<u8> {
    let size = buffer.len();
    std::mem::replace(buffer, Vec::with_capacity(size))
}

/// Definition levels of a nullable column's page: bit width 1.
fn def_levels(defs: &[i16]) -> Vec<u8> {
    let mut encoder = LevelEncoder::v1_streaming(1);
    encoder.put_with_observer(defs, |_, _| {});
    encoder.consume()
}

/// `values` as `DELTA_BINARY_PACKED`.
fn delta_i64(values: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    delta_packed(values, &mut out);
    out
}

fn delta_i32(values: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    delta_packed(values, &mut out);
    out
}

/// A `DELTA_BINARY_PACKED` column's physical type: `INT32` or `INT64`.
trait Packed: Copy {
    /// Values in a miniblock: 32 for `INT32`, 64 for `INT64`, as the
    /// `parquet` crate's `DeltaBitPackEncoder` sizes them.
    const MINIBLOCK: usize;

    fn wide(self) -> i64;

    /// `self - before`, wrapping in the type.
    fn delta(self, before: Self) -> i64;

    /// A delta less the block's least, wrapping in the type, as the
    /// unsigned number packed.
    fn above(delta: i64, least: i64) -> u64;
}

impl Packed for i32 {
    const MINIBLOCK: usize = 32;

    fn wide(self) -> i64 {
        i64::from(self)
    }

    fn delta(self, before: i32) -> i64 {
        i64::from(self.wrapping_sub(before))
    }

    fn above(delta: i64, least: i64) -> u64 {
        u64::from((delta as i32).wrapping_sub(least as i32) as u32)
    }
}

impl Packed for i64 {
    const MINIBLOCK: usize = 64;

    fn wide(self) -> i64 {
        self
    }

    fn delta(self, before: i64) -> i64 {
        self.wrapping_sub(before)
    }

    fn above(delta: i64, least: i64) -> u64 {
        delta.wrapping_sub(least) as u64
    }
}

/// Miniblocks in a `DELTA_BINARY_PACKED` block.
const MINIBLOCKS: usize = 4;

/// `values` appended to `out` as `DELTA_BINARY_PACKED`: the header (block
/// size, miniblocks per block, value count, first value), then per block of
/// deltas the least delta, each miniblock's bit width, and the miniblocks:
/// each delta less the least, packed low bits first and padded with zeros
/// to a whole miniblock. The bytes are the `parquet` crate's
/// `DeltaBitPackEncoder`'s (a test compares them), in less time: a
/// miniblock whose deltas are all the least (offsets that count up by
/// one, times within a millisecond) is its width byte, zero, and nothing
/// else, and the others are packed a word at a time.
fn delta_packed<T: Packed>(values: &[T], out: &mut Vec<u8>) {
    let block = T::MINIBLOCK * MINIBLOCKS;
    let first = values.first().map_or(0, |v| v.wide());
    put_vlq(out, block as u64);
    put_vlq(out, MINIBLOCKS as u64);
    put_vlq(out, values.len() as u64);
    put_vlq(out, zigzag(first));
    let mut deltas = [0i64; 256];
    for (i, chunk) in values
        .get(1..)
        .unwrap_or_default()
        .chunks(block)
        .enumerate()
    {
        // The value before the chunk's first.
        let mut before = values[i * block];
        for (d, &v) in deltas.iter_mut().zip(chunk) {
            *d = v.delta(before);
            before = v;
        }
        let deltas = &deltas[..chunk.len()];
        let least = deltas.iter().copied().min().unwrap_or(0);
        put_vlq(out, zigzag(least));
        let widths = out.len();
        out.extend_from_slice(&[0; MINIBLOCKS]);
        for (m, part) in deltas.chunks(T::MINIBLOCK).enumerate() {
            let most = part.iter().map(|&d| T::above(d, least)).max().unwrap_or(0);
            let bits = 64 - most.leading_zeros();
            out[widths + m] = bits as u8;
            if bits > 0 {
                pack(
                    part.iter().map(|&d| T::above(d, least)),
                    bits,
                    T::MINIBLOCK,
                    out,
                );
            }
        }
    }
}

/// `values`, each `bits` wide (1 to 64), packed low bits first into
/// `slots * bits / 8` bytes: the slots past the values are zeros.
fn pack(values: impl Iterator<Item = u64>, bits: u32, slots: usize, out: &mut Vec<u8>) {
    let end = out.len() + slots * bits as usize / 8;
    let mut word: u128 = 0;
    let mut held = 0;
    for v in values {
        word |= u128::from(v) << held;
        held += bits;
        if held >= 64 {
            out.extend_from_slice(&(word as u64).to_le_bytes());
            word >>= 64;
            held -= 64;
        }
    }
    let tail = (held as usize).div_ceil(8);
    out.extend_from_slice(&(word as u64).to_le_bytes()[..tail]);
    out.resize(end, 0);
}

/// `v` as ULEB128: seven bits a byte, low first.
fn put_vlq(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `v` with its sign as the low bit, for [`put_vlq`].
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Dictionary indices as a `RLE_DICTIONARY` page body: the bit width, then
/// the indices run-length or bit-packed.
fn dictionary_indices(indices: &[u32], entries: usize) -> Vec<u8> {
    let width = num_required_bits(entries.saturating_sub(1) as u64);
    if let Some(&first) = indices.first() {
        if indices.len() >= 8 && indices.iter().all(|&i| i == first) {
            return one_run(width, first, indices.len());
        }
    }
    let mut encoder = RleEncoder::new_from_buf(width, vec![width]);
    for &i in indices {
        encoder.put(i as u64);
    }
    encoder.consume()
}

/// [`dictionary_indices`] of `count` (8 or more) times `index`: one RLE
/// run (its length, then the index in whole bytes), the `parquet` crate's
/// `RleEncoder`'s bytes (a test compares them) without a call per value.
/// A column that holds one value for a page (the agent, the accept header,
/// the client address of a load test; a schema version) is most pages.
fn one_run(width: u8, index: u32, count: usize) -> Vec<u8> {
    let mut out = vec![width];
    put_vlq(&mut out, (count as u64) << 1);
    out.extend_from_slice(&index.to_le_bytes()[..usize::from(width).div_ceil(8)]);
    out
}

/// Appends `bytes` to `buffer`. Values of 4 to 32 bytes (keys, hosts,
/// checksums, the ends of ids) are copied as two overlapping fixed-size
/// pieces the compiler writes as plain loads and stores, not as a call to
/// `memcpy`: a few calls a row for every row of the lake.
pub fn extend_short(buffer: &mut Vec<u8>, bytes: &[u8]) {
    fn pieces<const K: usize>(buffer: &mut Vec<u8>, bytes: &[u8]) {
        let (at, n) = (buffer.len(), bytes.len());
        buffer.extend_from_slice(&[0u8; 32]);
        let head: &[u8; K] = bytes[..K].try_into().unwrap_or(&[0; K]);
        let tail: &[u8; K] = bytes[n - K..].try_into().unwrap_or(&[0; K]);
        buffer[at..at + K].copy_from_slice(head);
        buffer[at + n - K..at + n].copy_from_slice(tail);
        buffer.truncate(at + n);
    }
    match bytes.len() {
        4..=8 => pieces::<4>(buffer, bytes),
        9..=16 => pieces::<8>(buffer, bytes),
        17..=32 => pieces::<16>(buffer, bytes),
        _ => buffer.extend_from_slice(bytes),
    }
}

/// Text written as `DELTA_BYTE_ARRAY`: each value as the length of the
/// prefix it shares with the value before and the rest.
#[derive(Default)]
pub struct DeltaStrings {
    previous: Vec<u8>,
    prefixes: Vec<i32>,
    suffix_lengths: Vec<i32>,
    suffixes: Vec<u8>,
}

impl DeltaStrings {
    pub fn push(&mut self, value: &[u8]) {
        let shared = shared_prefix(&self.previous, value);
        self.prefixes.push(shared as i32);
        self.suffix_lengths.push((value.len() - shared) as i32);
        extend_short(&mut self.suffixes, &value[shared..]);
        self.previous.truncate(shared);
        extend_short(&mut self.previous, &value[shared..]);
    }
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a8, b8) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let mut shared = 0;
    for (x, y) in a8.zip(b8) {
        let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or_default());
        let differ = word(x) ^ word(y);
        if differ != 0 {
            return shared + (differ.trailing_zeros() / 8) as usize;
        }
        shared += 8;
    }
    shared
        + a[shared..n]
            .iter()
            .zip(&b[shared..n])
            .take_while(|(x, y)| x == y)
            .count()
}

impl Column for DeltaStrings {
    fn page(&mut self) -> Result<EncodedPage> {
        let prefixes = delta_i32(&self.prefixes);
        let lengths = delta_i32(&self.suffix_lengths);
        let mut values = Vec::with_capacity(prefixes.len() + lengths.len() + self.suffixes.len());
        values.extend_from_slice(&prefixes);
        values.extend_from_slice(&lengths);
        values.extend_from_slice(&self.suffixes);
        let page = EncodedPage::new(
            Vec::new(),
            values,
            self.prefixes.len(),
            Encoding::DELTA_BYTE_ARRAY,
        );
        // Each page starts with no value before.
        self.previous.clear();
        self.prefixes.clear();
        self.suffix_lengths.clear();
        self.suffixes.clear();
        Ok(page)
    }
}

/// Text written as `DELTA_LENGTH_BYTE_ARRAY`: the values' lengths
/// (`DELTA_BINARY_PACKED`), then their bytes one after the other. For
/// short values of one length (checksums), where `PLAIN`'s length before
/// each value slowed zstd to a third of its speed on the bytes alone and
/// took 10% more space (BENCHMARKS.md, "Lake", thirty-first session).
#[derive(Default)]
pub struct DeltaLengthStrings {
    lengths: Vec<i32>,
    bytes: Vec<u8>,
}

impl DeltaLengthStrings {
    pub fn push(&mut self, value: &[u8]) {
        self.lengths.push(value.len() as i32);
        extend_short(&mut self.bytes, value);
    }
}

impl Column for DeltaLengthStrings {
    fn page(&mut self) -> Result<EncodedPage> {
        let mut values = delta_i32(&self.lengths);
        values.extend_from_slice(&self.bytes);
        let page = EncodedPage::new(
            Vec::new(),
            values,
            self.lengths.len(),
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        );
        self.lengths.clear();
        self.bytes.clear();
        Ok(page)
    }
}

/// Bytes kept free before a list page's values for its levels: the
/// levels of 8,192 rows of three headers take about 3 KiB.
const LEVELS_ROOM: usize = 16 * 1024;

/// A required list of text items, none null, written `PLAIN`
/// (`buffer_meta.headers`): levels say where each row's list starts
/// (repetition 0) and whether it is empty (definition 0) or holds an item
/// (definition 2).
#[derive(Default)]
pub struct StringLists {
    values: Vec<u8>,
    repetition: Vec<i16>,
    definition: Vec<i16>,
    /// Where the item being written started, if one is open.
    open: Option<usize>,
    row_items: usize,
}

impl StringLists {
    /// Opens an item of the current row and gives the buffer its bytes
    /// go into; [`StringLists::close_item`] ends it.
    pub fn open_item(&mut self) -> &mut Vec<u8> {
        self.repetition.push(i16::from(self.row_items > 0));
        self.definition.push(2);
        self.row_items += 1;
        if self.values.is_empty() {
            self.values.resize(LEVELS_ROOM, 0);
        }
        self.open = Some(self.values.len());
        self.values.extend_from_slice(&[0; 4]);
        &mut self.values
    }

    /// Ends the item [`StringLists::open_item`] opened: its length.
    pub fn close_item(&mut self) {
        if let Some(start) = self.open.take() {
            let len = (self.values.len() - start - 4) as u32;
            self.values[start..start + 4].copy_from_slice(&len.to_le_bytes());
        }
    }

    /// Ends the row (an empty list if it had no item).
    pub fn end_row(&mut self) {
        self.close_item();
        if self.row_items == 0 {
            self.repetition.push(0);
            self.definition.push(0);
        }
        self.row_items = 0;
    }
}

impl Column for StringLists {
    fn page(&mut self) -> Result<EncodedPage> {
        let mut repetition = LevelEncoder::v1_streaming(1);
        repetition.put_with_observer(&self.repetition, |_, _| {});
        let mut definition = LevelEncoder::v1_streaming(2);
        definition.put_with_observer(&self.definition, |_, _| {});
        let mut levels = repetition.consume();
        levels.extend_from_slice(&definition.consume());
        let rows = self.repetition.len();
        let mut values = take_sized(&mut self.values);
        // The values follow `LEVELS_ROOM` bytes kept free (from the page's
        // first item): the levels go at the end of that room, and the page
        // is levels then values with no copy of the values (close to 1 MiB
        // of headers a page).
        let room = values.len().min(LEVELS_ROOM);
        let page = if room > 0 && levels.len() <= room {
            let start = room - levels.len();
            values[start..room].copy_from_slice(&levels);
            EncodedPage::with_levels_inside(
                Bytes::from(values).slice(start..),
                rows,
                Encoding::PLAIN,
            )
        } else {
            EncodedPage::new(
                levels,
                Bytes::from(values).slice(room..),
                rows,
                Encoding::PLAIN,
            )
        };
        self.repetition.clear();
        self.definition.clear();
        Ok(page)
    }
}

/// Nulls of a nullable column: its definition levels and count. A page
/// with no null keeps no level per row: its levels are one run.
#[derive(Default)]
struct Nulls {
    nullable: bool,
    /// The page's levels, kept from its first null on.
    definition: Vec<i16>,
    any_null: bool,
    rows: usize,
    count: u64,
}

impl Nulls {
    fn nullable(nullable: bool) -> Nulls {
        Nulls {
            nullable,
            ..Nulls::default()
        }
    }

    /// Notes a value (`true`) or a null.
    fn push(&mut self, present: bool) {
        if !self.nullable {
            return;
        }
        if !present {
            if !self.any_null {
                self.definition.clear();
                self.definition.resize(self.rows, 1);
                self.any_null = true;
            }
            self.definition.push(0);
            self.count += 1;
        } else if self.any_null {
            self.definition.push(1);
        }
        self.rows += 1;
    }

    /// The page's levels, cleared for the next; rows in the page.
    fn page(&mut self) -> Option<(Vec<u8>, usize)> {
        if !self.nullable {
            return None;
        }
        let rows = std::mem::take(&mut self.rows);
        let levels = if std::mem::take(&mut self.any_null) {
            def_levels(&self.definition)
        } else {
            let mut encoder = LevelEncoder::v1_streaming(1);
            encoder.put_n_with_observer(1, rows, |_, _| {});
            encoder.consume()
        };
        self.definition.clear();
        Some((levels, rows))
    }

    /// The chunk's null count, reset.
    fn take(&mut self) -> u64 {
        std::mem::take(&mut self.count)
    }
}

/// 64-bit numbers written as `DELTA_BINARY_PACKED`, with the chunk's min
/// and max (offsets and times).
pub struct DeltaInts {
    values: Vec<i64>,
    nulls: Nulls,
    range: Option<(i64, i64)>,
}

impl DeltaInts {
    pub fn new(nullable: bool) -> DeltaInts {
        DeltaInts {
            values: Vec::new(),
            nulls: Nulls::nullable(nullable),
            range: None,
        }
    }

    pub fn push(&mut self, value: Option<i64>) {
        self.nulls.push(value.is_some());
        if let Some(v) = value {
            self.values.push(v);
            self.range = Some(match self.range {
                Some((lo, hi)) => (lo.min(v), hi.max(v)),
                None => (v, v),
            });
        }
    }
}

impl Column for DeltaInts {
    fn page(&mut self) -> Result<EncodedPage> {
        let values = delta_i64(&self.values);
        let (levels, count) = self
            .nulls
            .page()
            .unwrap_or_else(|| (Vec::new(), self.values.len()));
        self.values.clear();
        Ok(EncodedPage::new(
            levels,
            values,
            count,
            Encoding::DELTA_BINARY_PACKED,
        ))
    }

    fn end_chunk(&mut self) -> ChunkEnd {
        let (min, max) = self.range.take().unzip();
        ChunkEnd {
            dictionary: None,
            statistics: Some(Statistics::int64(
                min,
                max,
                None,
                Some(self.nulls.take()),
                false,
            )),
        }
    }
}

/// A chunk's dictionary entries up to this many are found by comparing
/// each (the value before first), not by hashing: a column's few hosts,
/// agents or event types cost a compare or two per row.
const SCAN_ENTRIES: usize = 16;

/// A value's length and first and last eight bytes: values of 16 bytes or
/// fewer are equal exactly when their tags are; longer ones compare their
/// bytes only when their tags match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tag {
    head: u64,
    tail: u64,
    len: usize,
}

impl Tag {
    fn of(value: &[u8]) -> Tag {
        let word = |bytes: &[u8]| {
            let mut w = [0u8; 8];
            w[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(w)
        };
        let n = value.len();
        let (head, tail) = if n >= 8 {
            (word(&value[..8]), word(&value[n - 8..]))
        } else {
            (word(value), 0)
        };
        Tag { head, tail, len: n }
    }

    /// Whether this value's whole bytes are in its tag.
    fn is_whole(&self) -> bool {
        self.len <= 16
    }
}

/// The values of a dictionary column's page: indices into the chunk's
/// dictionary, or (once it is full) the values themselves.
#[derive(Default)]
struct DictPage {
    indices: Vec<u32>,
    plain: Vec<u8>,
    /// Values in `plain`.
    plain_count: usize,
}

impl DictPage {
    /// The page (plain once the dictionary is full, or with no value but
    /// nulls), emptied for the next; `entries` is the dictionary's size.
    fn encode(&mut self, levels: Vec<u8>, count: usize, entries: usize) -> EncodedPage {
        let page = if self.plain_count > 0 || self.indices.is_empty() {
            let plain = take_sized(&mut self.plain);
            EncodedPage::new(levels, plain, count, Encoding::PLAIN)
        } else {
            let values = dictionary_indices(&self.indices, entries);
            EncodedPage::new(levels, values, count, Encoding::RLE_DICTIONARY)
        };
        self.indices.clear();
        self.plain_count = 0;
        page
    }
}

/// Repeated text: each distinct value once in the chunk's dictionary, each
/// row an index into it; once the dictionary passes 1 MiB,
/// the chunk's next pages are plain.
pub struct DictStrings {
    /// Entries past [`SCAN_ENTRIES`], hashed.
    lookup: HashMap<Box<[u8]>, u32, Hasher>,
    /// Each entry's [`Tag`] (its length among it), compared before its
    /// bytes, and where its bytes start in `dictionary`.
    entries: Vec<(Tag, u32)>,
    last: usize,
    dictionary: Vec<u8>,
    full: bool,
    page: DictPage,
    nulls: Nulls,
    /// The chunk's min and max, when the column keeps statistics.
    statistics: bool,
    range: Option<(Vec<u8>, Vec<u8>)>,
}

impl DictStrings {
    pub fn new(nullable: bool, statistics: bool) -> DictStrings {
        DictStrings {
            lookup: HashMap::default(),
            entries: Vec::new(),
            last: 0,
            dictionary: Vec::new(),
            full: false,
            page: DictPage::default(),
            nulls: Nulls::nullable(nullable),
            statistics,
            range: None,
        }
    }

    pub fn push(&mut self, value: Option<&[u8]>) {
        self.nulls.push(value.is_some());
        let Some(value) = value else { return };
        if self.full {
            self.page
                .plain
                .extend_from_slice(&(value.len() as u32).to_le_bytes());
            self.page.plain.extend_from_slice(value);
            self.page.plain_count += 1;
            self.note(value);
            return;
        }
        let tag = Tag::of(value);
        let index = match self.find(value, tag) {
            Some(i) => i,
            None => {
                let i = self.entries.len() as u32;
                self.dictionary
                    .extend_from_slice(&(value.len() as u32).to_le_bytes());
                self.entries.push((tag, self.dictionary.len() as u32));
                self.dictionary.extend_from_slice(value);
                if self.entries.len() > SCAN_ENTRIES {
                    if self.lookup.is_empty() {
                        for (j, &(tag, at)) in self.entries.iter().enumerate() {
                            let entry = &self.dictionary[at as usize..at as usize + tag.len];
                            self.lookup.insert(entry.into(), j as u32);
                        }
                    } else {
                        self.lookup.insert(value.into(), i);
                    }
                }
                self.note(value);
                i
            }
        };
        self.last = index as usize;
        self.page.indices.push(index);
    }

    fn find(&self, value: &[u8], tag: Tag) -> Option<u32> {
        if self.entries.len() > SCAN_ENTRIES {
            return self.lookup.get(value).copied();
        }
        // Past their tags, long values compare the bytes between their
        // first and last eight.
        let is = |&(entry, at): &(Tag, u32)| {
            entry == tag
                && (tag.is_whole()
                    || self.dictionary[at as usize + 8..at as usize + tag.len - 8]
                        == value[8..tag.len - 8])
        };
        if self.entries.get(self.last).is_some_and(is) {
            return Some(self.last as u32);
        }
        self.entries.iter().position(is).map(|i| i as u32)
    }

    fn note(&mut self, value: &[u8]) {
        if !self.statistics {
            return;
        }
        match &mut self.range {
            Some((lo, hi)) => {
                if value < lo.as_slice() {
                    *lo = value.to_vec();
                } else if value > hi.as_slice() {
                    *hi = value.to_vec();
                }
            }
            None => self.range = Some((value.to_vec(), value.to_vec())),
        }
    }
}

impl Column for DictStrings {
    fn page(&mut self) -> Result<EncodedPage> {
        let (levels, count) = self
            .nulls
            .page()
            .unwrap_or((Vec::new(), self.page.indices.len() + self.page.plain_count));
        let page = self.page.encode(levels, count, self.entries.len());
        self.full = self.dictionary.len() > DICTIONARY_LIMIT;
        Ok(page)
    }

    fn end_chunk(&mut self) -> ChunkEnd {
        let entries = self.entries.len() as u32;
        self.lookup.clear();
        self.entries.clear();
        self.last = 0;
        self.full = false;
        let dictionary = std::mem::take(&mut self.dictionary);
        let nulls = self.nulls.take();
        let statistics = self.statistics.then(|| {
            let (min, max) = self.range.take().unzip();
            Statistics::byte_array(
                min.map(ByteArray::from),
                max.map(ByteArray::from),
                None,
                Some(nulls),
                false,
            )
        });
        ChunkEnd {
            dictionary: (entries > 0).then_some((dictionary, entries)),
            statistics,
        }
    }
}

/// The physical type of a [`DictInts`] column and how its min and max
/// compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKind {
    I32,
    U32,
    I64,
    U64,
}

/// Repeated numbers (game ids, sizes, versions), as [`DictStrings`].
pub struct DictInts {
    kind: IntKind,
    /// Entries past [`SCAN_ENTRIES`], hashed.
    lookup: HashMap<i64, u32, Hasher>,
    entries: Vec<i64>,
    last: usize,
    dictionary: Vec<u8>,
    full: bool,
    page: DictPage,
    range: Option<(i64, i64)>,
}

impl DictInts {
    pub fn new(kind: IntKind) -> DictInts {
        DictInts {
            kind,
            lookup: HashMap::default(),
            entries: Vec::new(),
            last: 0,
            dictionary: Vec::new(),
            full: false,
            page: DictPage::default(),
            range: None,
        }
    }

    fn plain(kind: IntKind, out: &mut Vec<u8>, value: i64) {
        match kind {
            IntKind::I32 | IntKind::U32 => out.extend_from_slice(&(value as i32).to_le_bytes()),
            IntKind::I64 | IntKind::U64 => out.extend_from_slice(&value.to_le_bytes()),
        }
    }

    /// Where `value` sorts (unsigned kinds by their bits as unsigned).
    fn order(&self, value: i64) -> i128 {
        match self.kind {
            IntKind::U32 => i128::from(value as u32),
            IntKind::U64 => i128::from(value as u64),
            IntKind::I32 | IntKind::I64 => i128::from(value),
        }
    }

    /// Pushes a value (unsigned ones as their bits).
    pub fn push(&mut self, value: i64) {
        if self.full {
            self.note(value);
            Self::plain(self.kind, &mut self.page.plain, value);
            self.page.plain_count += 1;
            return;
        }
        let found = if self.entries.get(self.last) == Some(&value) {
            Some(self.last)
        } else if self.entries.len() > SCAN_ENTRIES {
            self.lookup.get(&value).map(|&i| i as usize)
        } else {
            self.entries.iter().position(|&e| e == value)
        };
        let index = match found {
            Some(i) => i,
            None => {
                let i = self.entries.len();
                self.entries.push(value);
                if self.entries.len() > SCAN_ENTRIES {
                    if self.lookup.is_empty() {
                        for (j, &e) in self.entries.iter().enumerate() {
                            self.lookup.insert(e, j as u32);
                        }
                    } else {
                        self.lookup.insert(value, i as u32);
                    }
                }
                Self::plain(self.kind, &mut self.dictionary, value);
                self.note(value);
                i
            }
        };
        self.last = index;
        self.page.indices.push(index as u32);
    }

    /// Widens the chunk's min and max to `value`.
    fn note(&mut self, value: i64) {
        let at = self.order(value);
        self.range = Some(match self.range {
            Some((lo, hi)) if at < self.order(lo) => (value, hi),
            Some((lo, hi)) if at > self.order(hi) => (lo, value),
            Some(range) => range,
            None => (value, value),
        });
    }
}

impl Column for DictInts {
    fn page(&mut self) -> Result<EncodedPage> {
        let count = self.page.indices.len() + self.page.plain_count;
        let page = self.page.encode(Vec::new(), count, self.entries.len());
        self.full = self.dictionary.len() > DICTIONARY_LIMIT;
        Ok(page)
    }

    fn end_chunk(&mut self) -> ChunkEnd {
        let entries = self.entries.len() as u32;
        self.lookup.clear();
        self.entries.clear();
        self.last = 0;
        self.full = false;
        let dictionary = std::mem::take(&mut self.dictionary);
        let (min, max) = self.range.take().unzip();
        let statistics = match self.kind {
            IntKind::I32 | IntKind::U32 => Statistics::int32(
                min.map(|v| v as i32),
                max.map(|v| v as i32),
                None,
                Some(0),
                false,
            ),
            IntKind::I64 | IntKind::U64 => Statistics::int64(min, max, None, Some(0), false),
        };
        ChunkEnd {
            dictionary: (entries > 0).then_some((dictionary, entries)),
            statistics: Some(statistics),
        }
    }
}

/// A column with one value for the whole file (a batch's topic, partition
/// and etl id): a dictionary of one entry and a run of zeros per page.
pub struct Constant {
    plain: Vec<u8>,
    statistics: Statistics,
    rows: usize,
    chunk_rows: usize,
}

impl Constant {
    pub fn text(value: &str) -> Constant {
        let mut plain = Vec::with_capacity(value.len() + 4);
        plain.extend_from_slice(&(value.len() as u32).to_le_bytes());
        plain.extend_from_slice(value.as_bytes());
        let v = Some(ByteArray::from(value.as_bytes().to_vec()));
        Constant {
            plain,
            statistics: Statistics::byte_array(v.clone(), v, None, Some(0), false),
            rows: 0,
            chunk_rows: 0,
        }
    }

    pub fn int32(value: i32) -> Constant {
        Constant {
            plain: value.to_le_bytes().to_vec(),
            statistics: Statistics::int32(Some(value), Some(value), None, Some(0), false),
            rows: 0,
            chunk_rows: 0,
        }
    }

    pub fn push(&mut self) {
        self.rows += 1;
    }
}

impl Column for Constant {
    fn page(&mut self) -> Result<EncodedPage> {
        let mut encoder = RleEncoder::new_from_buf(0, vec![0]);
        let mut left = self.rows;
        while left > 0 && !encoder.is_accumulating_rle(0) {
            encoder.put(0);
            left -= 1;
        }
        if left > 0 {
            encoder.extend_run(left);
        }
        let rows = std::mem::take(&mut self.rows);
        self.chunk_rows += rows;
        Ok(EncodedPage::new(
            Vec::new(),
            encoder.consume(),
            rows,
            Encoding::RLE_DICTIONARY,
        ))
    }

    fn end_chunk(&mut self) -> ChunkEnd {
        let rows = std::mem::take(&mut self.chunk_rows);
        ChunkEnd {
            dictionary: (rows > 0).then(|| (self.plain.clone(), 1)),
            statistics: Some(self.statistics.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type as I64, UInt64Type as U64};
    use arrow_array::Array;
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    struct Sample {
        id: DictInts,
        name: DictStrings,
        at: DeltaInts,
        topic: Constant,
    }

    impl Table for Sample {
        fn schema() -> SchemaRef {
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::UInt64, false),
                Field::new("name", DataType::Utf8, true),
                Field::new("at", DataType::Int64, true),
                Field::new("topic", DataType::Utf8, false),
            ]))
        }

        fn columns(&mut self) -> Vec<&mut dyn Column> {
            vec![&mut self.id, &mut self.name, &mut self.at, &mut self.topic]
        }
    }

    static SAMPLE: SchemaCell = SchemaCell::new();

    /// Row `i`: ids with the top bit set on every 7th, names 40 KiB long
    /// (a page of ten passes the dictionary's limit by the third page),
    /// nulls every 5th.
    fn row(i: u64) -> (u64, Option<String>, Option<i64>) {
        let id = i % 30 + u64::from(i.is_multiple_of(7)) * (1 << 63);
        let name = (!i.is_multiple_of(5)).then(|| format!("{i:0>40960}"));
        let at = (i % 5 != 1).then(|| 1_000 + i as i64 * 3);
        (id, name, at)
    }

    /// A list page's bytes as the codec gets them: levels, then values.
    fn page_input(page: &EncodedPage) -> Vec<u8> {
        let mut input = page.levels.clone();
        input.extend_from_slice(&page.values);
        input
    }

    /// The `parquet` crate's `DELTA_BINARY_PACKED` bytes for `values`.
    fn parquet_delta<T: parquet::data_type::DataType>(values: &[T::T]) -> Vec<u8> {
        use parquet::encodings::encoding::{DeltaBitPackEncoder, Encoder as _};
        let mut encoder = DeltaBitPackEncoder::<T>::new();
        encoder.put(values).unwrap();
        encoder.flush_buffer().unwrap().to_vec()
    }

    #[test]
    fn pages_of_one_index_are_the_rle_encoders_bytes() {
        let encoder = |width: u8, indices: &[u32]| {
            let mut encoder = RleEncoder::new_from_buf(width, vec![width]);
            for &i in indices {
                encoder.put(u64::from(i));
            }
            encoder.consume()
        };
        for entries in [1usize, 2, 5, 200, 256, 257, 70_000] {
            let width = num_required_bits(entries.saturating_sub(1) as u64);
            for count in [8, 9, 63, 64, 65, 1_000, 8_192, 100_000] {
                for index in [0, (entries - 1) as u32] {
                    let indices = vec![index; count];
                    assert_eq!(
                        dictionary_indices(&indices, entries),
                        encoder(width, &indices),
                        "{count} times {index} of {entries}"
                    );
                }
            }
        }
        // Fewer than 8, or not all the same: the encoder's own.
        let mixed = [3, 3, 3, 3, 3, 3, 3, 3, 1];
        assert_eq!(dictionary_indices(&mixed, 4), encoder(2, &mixed));
        assert_eq!(dictionary_indices(&[2; 7], 4), encoder(2, &[2; 7]));
    }

    #[test]
    fn delta_packed_pages_are_the_parquet_crates_byte_for_byte() {
        use parquet::data_type::{Int32Type, Int64Type};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let mut cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![42],
            vec![i64::MIN, i64::MAX, i64::MIN, 0, -1, i64::MAX],
            (0..256).collect(),
            (0..257).collect(),
            (0..1_000).map(|i| 1_700_000_000_000 + i / 7).collect(),
            (0..300)
                .map(|i| if i % 64 == 3 { 1 << 40 } else { i })
                .collect(),
        ];
        for len in [
            1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 511, 512, 513, 4_000,
        ] {
            for spread in [0u32, 1, 5, 17, 33, 63] {
                cases.push(
                    (0..len)
                        .map(|_| rng.random::<i64>() >> spread.min(63))
                        .collect(),
                );
            }
        }
        for values in &cases {
            let mut ours = Vec::new();
            delta_packed(values, &mut ours);
            assert_eq!(
                ours,
                parquet_delta::<Int64Type>(values),
                "64-bit, {} values",
                values.len()
            );
            let narrow: Vec<i32> = values.iter().map(|&v| v as i32).collect();
            let mut ours = Vec::new();
            delta_packed(&narrow, &mut ours);
            assert_eq!(
                ours,
                parquet_delta::<Int32Type>(&narrow),
                "32-bit, {} values",
                values.len()
            );
        }
    }

    #[test]
    fn list_pages_are_their_levels_then_their_values_however_many_items() {
        // Rows of `items` items each (none for 0), one page.
        let page_of = |rows: usize, items: usize| {
            let mut column = StringLists::default();
            let (mut repetition, mut definition, mut values) = (vec![], vec![], vec![]);
            for row in 0..rows {
                for item in 0..items {
                    let text = format!("h{item}={row}");
                    column.open_item().extend_from_slice(text.as_bytes());
                    column.close_item();
                    repetition.push(i16::from(item > 0));
                    definition.push(2);
                    values.extend_from_slice(&(text.len() as u32).to_le_bytes());
                    values.extend_from_slice(text.as_bytes());
                }
                if items == 0 {
                    repetition.push(0);
                    definition.push(0);
                }
                column.end_row();
            }
            let mut rep = LevelEncoder::v1_streaming(1);
            rep.put_with_observer(&repetition, |_, _| {});
            let mut def = LevelEncoder::v1_streaming(2);
            def.put_with_observer(&definition, |_, _| {});
            let mut expected = rep.consume();
            expected.extend_from_slice(&def.consume());
            let levels = expected.len();
            expected.extend_from_slice(&values);
            let page = column.page().unwrap();
            assert_eq!(page.num_values, repetition.len());
            (page, expected, levels)
        };
        // Three headers a row: the levels fit the room kept for them.
        let (page, expected, levels) = page_of(8192, 3);
        assert!(page.levels_inside && levels <= LEVELS_ROOM);
        assert_eq!(page_input(&page), expected);
        // Forty: they do not, and go beside the values.
        let (page, expected, levels) = page_of(8192, 40);
        assert!(!page.levels_inside && levels > LEVELS_ROOM);
        assert_eq!(page_input(&page), expected);
        // No header at all: no value, only levels.
        let (page, expected, _) = page_of(100, 0);
        assert_eq!(page_input(&page), expected);
    }

    #[test]
    fn short_values_are_appended_byte_for_byte_whatever_their_length() {
        let source: Vec<u8> = (0..40u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(1))
            .collect();
        for before in [0, 3, 31] {
            for n in 0..=source.len() {
                let mut buffer = vec![0xAA; before];
                extend_short(&mut buffer, &source[..n]);
                assert_eq!(buffer.len(), before + n, "{n} bytes after {before}");
                assert!(buffer[..before].iter().all(|&b| b == 0xAA));
                assert_eq!(&buffer[before..], &source[..n], "{n} bytes after {before}");
            }
        }
    }

    #[test]
    fn zstd_pages_are_each_their_own_input_whatever_came_before() {
        let compression = Compression::ZSTD(Default::default());
        let ids: Vec<u8> = (0..20_000u64)
            .flat_map(|i| {
                format!("0190{:012x}-{:x}", i * 7919, i.wrapping_mul(0x9e37_79b9)).into_bytes()
            })
            .collect();
        // A large page, then a small one and an empty one, from the same
        // reused output buffer: each decompresses to its own input only.
        for (levels, values) in [
            (&b"levels"[..], &ids[..]),
            (&b""[..], &ids[..100]),
            (&b""[..], &b""[..]),
        ] {
            let page = with_pages(compression, |pages| {
                assert!(
                    pages.zstd.is_some(),
                    "zstd pages go through the lake's compressor"
                );
                assert!(pages.codec.is_none(), "and no second zstd context is made");
                pages.compress(levels, values)
            })
            .unwrap();
            let mut expected = levels.to_vec();
            expected.extend_from_slice(values);
            let back = zstd::bulk::decompress(&page, expected.len().max(1)).unwrap();
            assert_eq!(back, expected);
            assert!(page.len() < expected.len() / 2 || expected.len() < 200);
        }
    }

    #[test]
    fn long_values_with_the_same_ends_get_their_own_entries() {
        let mut column = DictStrings::new(false, false);
        let (a, b): (&[u8], &[u8]) = (
            b"user-agent/1.0 (same) and the same end",
            b"user-agent/1.0 (diff) and the same end",
        );
        assert_eq!(Tag::of(a), Tag::of(b));
        for v in [a, b, a, b, b, a] {
            column.push(Some(v));
        }
        assert_eq!(column.page.indices, vec![0, 1, 0, 1, 1, 0]);
        assert_eq!(column.entries.len(), 2);
    }

    #[test]
    fn shared_prefixes_are_counted_byte_by_byte() {
        let naive = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let base = b"01a22ee6-b000-7d8b-975a-c03ccaa9d5dc".to_vec();
        for cut in 0..=base.len() {
            for change in 0..base.len() {
                let mut other = base.clone();
                other[change] ^= 1;
                let a = &base[..cut];
                assert_eq!(shared_prefix(a, &other), naive(a, &other), "{cut} {change}");
                assert_eq!(shared_prefix(&other, a), naive(&other, a), "{cut} {change}");
            }
            assert_eq!(shared_prefix(&base[..cut], &base), cut);
        }
        assert_eq!(shared_prefix(b"", b"abc"), 0);
    }

    #[test]
    fn short_values_are_equal_exactly_when_their_tags_are() {
        let values: [&[u8]; 9] = [
            b"",
            b"a",
            b"a\0",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghijklmnop",
            b"abcdefghXjklmnop",
            b"abcdefghijklmnoq",
            b"bbcdefghijklmnop",
        ];
        for a in values {
            for b in values {
                assert_eq!(Tag::of(a) == Tag::of(b), a == b, "{a:?} {b:?}");
            }
        }
        // Longer values with the same ends share a tag: their bytes decide.
        let mut d = DictStrings::new(false, false);
        d.push(Some(b"0123456789-A-0123456789"));
        d.push(Some(b"0123456789-B-0123456789"));
        d.push(Some(b"0123456789-A-0123456789"));
        assert_eq!(d.page.indices, [0, 1, 0]);
    }

    #[test]
    fn pages_and_row_groups_read_back_with_their_statistics() {
        let sample = Sample {
            id: DictInts::new(IntKind::U64),
            name: DictStrings::new(true, true),
            at: DeltaInts::new(true),
            topic: Constant::text("actions"),
        };
        let mut file = create_sized(sample, &SAMPLE, None, 10, 25).unwrap();
        for i in 0..60 {
            let (id, name, at) = row(i);
            file.table.id.push(id as i64);
            file.table.name.push(name.as_deref().map(str::as_bytes));
            file.table.at.push(at);
            file.table.topic.push();
            file.row_done().unwrap();
        }
        assert_eq!(file.rows(), 60);
        let bytes = Bytes::from(file.finish().unwrap());

        // A row group ends on a page: at 30 rows, not 25.
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, [30, 30]);
        let first = reader.metadata().row_group(0);
        // Unsigned ids compare as unsigned: the top-bit ones are the max.
        match first.column(0).statistics().unwrap() {
            Statistics::Int64(s) => {
                assert_eq!(*s.min_opt().unwrap() as u64, 1);
                assert_eq!(*s.max_opt().unwrap() as u64, (1 << 63) + 28);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            first.column(1).statistics().unwrap().null_count_opt(),
            Some(6)
        );
        assert_eq!(
            first.column(2).statistics().unwrap().null_count_opt(),
            Some(6)
        );
        // The names' dictionary filled up: later pages are plain.
        let encodings: Vec<Encoding> = first.column(1).encodings().collect();
        assert!(
            encodings.contains(&Encoding::RLE_DICTIONARY),
            "{encodings:?}"
        );
        assert!(encodings.contains(&Encoding::PLAIN), "{encodings:?}");

        let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let mut i = 0;
        for batch in batches {
            assert_eq!(batch.schema(), Sample::schema());
            let ids = batch.column(0).as_primitive::<U64>();
            let names = batch.column(1).as_string::<i32>();
            let ats = batch.column(2).as_primitive::<I64>();
            let topics = batch.column(3).as_string::<i32>();
            for r in 0..batch.num_rows() {
                let (id, name, at) = row(i);
                assert_eq!(ids.value(r), id, "row {i}");
                assert_eq!(names.is_valid(r).then(|| names.value(r)), name.as_deref());
                assert_eq!(ats.is_valid(r).then(|| ats.value(r)), at, "row {i}");
                assert_eq!(topics.value(r), "actions");
                i += 1;
            }
        }
        assert_eq!(i, 60);
    }
}
