"""Reads a lake folder written by `lake export` with pyarrow and with DuckDB,
and prints what each found as JSON (the Rust test compares it with
`lake report`). Spark-style Hive folders: event_type and date come from the
folder names."""

import json
import sys

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def ranked(pairs):
    """[[name, count], ...] most first, ties by name (as `lake report`)."""
    return [[k, int(v)] for k, v in sorted(pairs, key=lambda kv: (-kv[1], kv[0]))]


def with_pyarrow(root):
    events = ds.dataset(f"{root}/events", format="parquet", partitioning="hive").to_table()
    purchases = ds.dataset(f"{root}/purchases", format="parquet", partitioning="hive")
    etl = ds.dataset(f"{root}/etl_meta", format="parquet").to_table()
    meta = ds.dataset(f"{root}/buffer_meta", format="parquet").to_table()
    by_type = events.group_by("event_type").aggregate([("event_type", "count")])
    by_host = events.group_by("Host").aggregate([("Host", "count")])
    offsets = {
        (p, o)
        for p, o in zip(
            events.column("kafka_partition").to_pylist(),
            events.column("kafka_offset").to_pylist(),
        )
    }
    return {
        "events": events.num_rows,
        "purchases": purchases.count_rows(),
        "distinct_offsets": len(offsets),
        "by_event_type": ranked(
            zip(by_type.column("event_type").to_pylist(), by_type.column("event_type_count").to_pylist())
        ),
        "by_host": ranked(zip(by_host.column("Host").to_pylist(), by_host.column("Host_count").to_pylist())),
        "etl_batches": etl.num_rows,
        "codecs": codecs(events_files(root)),
        "distinct_event_ids": len(set(events.column("event_id").to_pylist())),
        "distinct_msg_ids": len(set(meta.column("msg_id").to_pylist())),
        "hex_checksums": sum(1 for c in meta.column("checksum").to_pylist() if is_hex8(c)),
        "seq_headers": sum(
            1
            for key, headers in zip(meta.column("key").to_pylist(), meta.column("headers").to_pylist())
            if headers == [f"seq={key}"]
        ),
        "encodings": {
            column: encodings(events_files(root) + meta_files(root), column)
            for column in ["event_id", "msg_id", "checksum"]
        },
    }


def is_hex8(text):
    return len(text) == 8 and all(c in "0123456789abcdef" for c in text)


def meta_files(root):
    return ds.dataset(f"{root}/buffer_meta", format="parquet").files


def encodings(files, column):
    """The encodings of `column`'s chunks in `files`, sorted."""
    return sorted(
        {e for chunk in column_chunks(files) if chunk.path_in_schema == column for e in chunk.encodings}
    )


def column_chunks(files):
    """Every column chunk's metadata in `files`."""
    for path in files:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                yield group.column(c)


def events_files(root):
    return ds.dataset(f"{root}/events", format="parquet", partitioning="hive").files


def codecs(files):
    """The compression codecs of every column chunk of `files`, sorted."""
    return sorted({chunk.compression for chunk in column_chunks(files)})


def with_duckdb(root):
    con = duckdb.connect()
    events = f"read_parquet('{root}/events/*/*/*.parquet', hive_partitioning = true)"
    purchases = f"read_parquet('{root}/purchases/*/*/*.parquet', hive_partitioning = true)"
    meta = f"read_parquet('{root}/buffer_meta/*.parquet')"
    one = lambda sql: con.execute(sql).fetchone()[0]
    return {
        "events": one(f"SELECT COUNT(*) FROM {events}"),
        "purchases": one(f"SELECT COUNT(*) FROM {purchases}"),
        "distinct_offsets": one(
            f"SELECT COUNT(*) FROM (SELECT DISTINCT kafka_partition, kafka_offset FROM {events})"
        ),
        "by_event_type": ranked(
            con.execute(f"SELECT event_type, COUNT(*) FROM {events} GROUP BY event_type").fetchall()
        ),
        "by_host": ranked(con.execute(f'SELECT "Host", COUNT(*) FROM {events} GROUP BY "Host"').fetchall()),
        "etl_batches": one(f"SELECT COUNT(*) FROM read_parquet('{root}/etl_meta/*.parquet')"),
        "distinct_event_ids": one(f"SELECT COUNT(DISTINCT event_id) FROM {events}"),
        "distinct_msg_ids": one(f"SELECT COUNT(DISTINCT msg_id) FROM {meta}"),
        "hex_checksums": one(
            f"SELECT COUNT(*) FROM {meta} WHERE regexp_full_match(checksum, '[0-9a-f]{{8}}')"
        ),
        "seq_headers": one(f"SELECT COUNT(*) FROM {meta} WHERE headers = ['seq=' || key]"),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_lake.py <lake folder>")
    root = sys.argv[1].rstrip("/")
    print(json.dumps({"pyarrow": with_pyarrow(root), "duckdb": with_duckdb(root)}))


if __name__ == "__main__":
    main()
