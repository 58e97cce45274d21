//! `lake query`: SQL (DataFusion) over the files an export wrote, through
//! the binary and the library; its answers agree with `lake report` and
//! with the Kafka coordinates written.

mod common;

use std::process::Command;

use common::*;

/// Runs `lake query --json` and returns its rows.
fn query_json(dir: &std::path::Path, sql: &str) -> Vec<serde_json::Value> {
    let out = Command::new(lake_bin())
        .args(["query", "--json", "--sql", sql, "--from"])
        .arg(dir)
        .output()
        .expect("run lake query");
    assert_ok(&out, sql);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("JSON rows")
        .as_array()
        .expect("an array")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_every_table_agrees_with_the_report() {
    const PARTITIONS: i32 = 3;
    const TOTAL: u64 = 1_600;
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, PARTITIONS, false)])
        .await
        .unwrap();
    produce_actions(&producer(), &actions, PARTITIONS, 0, TOTAL).await;
    let dir = temp_dir("lake-query");
    assert_ok(
        &export_once(&actions, &dir, &["--max-rows", "500"], &[]),
        "export",
    );

    // Seed 002's first table, in SQL, with the Hive column from the folders.
    let by_type = query_json(
        &dir,
        "SELECT event_type, count(*) AS event_count FROM events \
         GROUP BY event_type ORDER BY event_count DESC, event_type",
    );
    let report = report_json(&dir);
    let as_pairs: Vec<serde_json::Value> = by_type
        .iter()
        .map(|r| serde_json::json!([r["event_type"], r["event_count"]]))
        .collect();
    assert_eq!(serde_json::Value::Array(as_pairs), report["by_event_type"]);

    // The second, on a quoted mixed-case column.
    let by_host = query_json(
        &dir,
        r#"SELECT "Host", count(*) AS n FROM events GROUP BY "Host" ORDER BY n DESC, "Host""#,
    );
    assert_eq!(by_host.len(), 5);
    assert_eq!(by_host[0]["n"], TOTAL / 5);

    // Every table is registered; the meta tables agree with the events.
    let counts = query_json(
        &dir,
        "SELECT (SELECT count(*) FROM events) AS events, \
                (SELECT count(DISTINCT kafka_partition * 1000000 + kafka_offset) FROM events) AS distinct_offsets, \
                (SELECT count(*) FROM purchases) AS purchases, \
                (SELECT count(*) FROM buffer_meta) AS buffer_meta, \
                (SELECT sum(records) FROM etl_meta) AS etl_records, \
                (SELECT count(*) FROM outcomes) AS outcomes, \
                (SELECT count(*) FROM bad_records) AS bad_records, \
                (SELECT count(DISTINCT date) FROM events) AS dates",
    );
    let c = &counts[0];
    assert_eq!(c["events"], TOTAL, "{c}");
    assert_eq!(c["distinct_offsets"], TOTAL, "{c}");
    assert_eq!(c["purchases"], TOTAL / 8 * 6, "{c}");
    assert_eq!(c["buffer_meta"], TOTAL, "{c}");
    assert_eq!(c["etl_records"], TOTAL, "{c}");
    assert_eq!(c["outcomes"], 0, "no outcomes exported: an empty table");
    assert_eq!(c["bad_records"], 0, "{c}");
    assert_eq!(c["dates"], 1, "{c}");

    // Partition pruning by a Hive column still gives the right rows.
    let swords = query_json(
        &dir,
        "SELECT count(*) AS n FROM purchases WHERE event_type = 'purchase_sword' AND date >= '2026-01-01'",
    );
    assert_eq!(swords[0]["n"], TOTAL / 8);

    // The library: the same session, and a text table for people.
    let lake = lake::Location::open(dir.to_str().unwrap()).unwrap();
    let batches = lake::query::query(&lake, "SELECT max(kafka_offset) AS m FROM events")
        .await
        .unwrap();
    let table = lake::query::to_table(&batches).unwrap();
    assert!(table.contains("| m "), "{table}");
    let text = Command::new(lake_bin())
        .args([
            "query",
            "--sql",
            "SELECT count(*) AS n FROM events",
            "--from",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_ok(&text, "lake query (table)");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("| {TOTAL} |")), "{text}");

    // A bad query is a clear error, not a panic.
    let bad = Command::new(lake_bin())
        .args(["query", "--sql", "SELECT nope FROM events", "--from"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
