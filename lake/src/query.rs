//! `lake query`: any SQL over the lake's tables, with DataFusion.
//!
//! Every table is registered as a Hive-partitioned listing table over its
//! folder, with the schema the exporter writes ([`crate::tables`]), so a
//! table with no files yet is an empty table, not an error, and engines
//! prune by `date` and `event_type` from the folder names alone.
//!
//! | table | Hive columns |
//! |---|---|
//! | `events`, `purchases` | `date`, `event_type` |
//! | `outcomes` | `date` |
//! | `etl_meta`, `buffer_meta`, `bad_records` | |

use arrow_schema::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use crate::location::Location;
use crate::tables;
use crate::LakeError;

/// A table of the lake: its folder name, the schema of its files and its
/// Hive partition columns.
pub struct TableDef {
    pub name: &'static str,
    pub schema: fn() -> SchemaRef,
    pub partitions: &'static [&'static str],
}

/// Every table `lake export` writes.
pub const TABLES: [TableDef; 6] = [
    TableDef {
        name: "events",
        schema: tables::events_schema,
        partitions: &["date", "event_type"],
    },
    TableDef {
        name: "purchases",
        schema: tables::events_schema,
        partitions: &["date", "event_type"],
    },
    TableDef {
        name: "outcomes",
        schema: tables::outcomes_schema,
        partitions: &["date"],
    },
    TableDef {
        name: "etl_meta",
        schema: tables::etl_meta_schema,
        partitions: &[],
    },
    TableDef {
        name: "buffer_meta",
        schema: tables::buffer_meta_schema,
        partitions: &[],
    },
    TableDef {
        name: "bad_records",
        schema: tables::bad_records_schema,
        partitions: &[],
    },
];

impl From<datafusion::error::DataFusionError> for LakeError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        LakeError::Query(e.to_string())
    }
}

/// A DataFusion session with every table of `lake` registered.
pub async fn session(lake: &Location) -> crate::Result<SessionContext> {
    // Column names such as `Host` and `User-Agent` keep their case in SQL
    // only when quoted; identifiers are not folded for the Hive columns.
    let config = SessionConfig::new().with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    if let Some((url, store)) = lake.object_store_url() {
        ctx.runtime_env().register_object_store(&url, store);
    }
    for table in &TABLES {
        let schema = (table.schema)();
        let partitions = table
            .partitions
            .iter()
            .map(|c| (c.to_string(), DataType::Utf8))
            .collect();
        let options = ParquetReadOptions::default()
            .schema(&schema)
            .table_partition_cols(partitions);
        ctx.register_parquet(table.name, lake.table_url(table.name), options)
            .await?;
    }
    Ok(ctx)
}

/// Runs `sql` over `lake`'s tables.
pub async fn query(lake: &Location, sql: &str) -> crate::Result<Vec<RecordBatch>> {
    let ctx = session(lake).await?;
    let frame = ctx.sql(sql).await?;
    Ok(frame.collect().await?)
}

/// The batches as a text table (DuckDB/psql style borders).
pub fn to_table(batches: &[RecordBatch]) -> crate::Result<String> {
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

/// The batches as a JSON array of row objects (`null`s kept).
pub fn to_json(batches: &[RecordBatch]) -> crate::Result<serde_json::Value> {
    use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
    let mut out = Vec::new();
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(&mut out);
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    if out.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out).map_err(|e| LakeError::Other(format!("JSON rows: {e}")))
}

/// The registered tables' names (for `--help` and errors).
pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}
