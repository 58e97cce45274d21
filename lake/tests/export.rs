//! `lake export` against Apache Kafka: exactly once through crashes, bad
//! records, and the lake's files read back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rand::Rng;

/// The must-show: SIGKILL the exporter at random points while
/// actions flow, restart it, and find every offset exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    const PARTITIONS: i32 = 3;
    const TOTAL: u64 = 12_000;
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, PARTITIONS, false)])
        .await
        .unwrap();
    let dir = temp_dir("lake-sigkill");

    // Actions flow in bursts for the whole test...
    let producing = {
        let actions = actions.clone();
        tokio::spawn(async move {
            let producer = producer();
            let mut base = 0;
            while base < TOTAL {
                let n = 400.min(TOTAL - base);
                produce_actions(&producer, &actions, PARTITIONS, base, n).await;
                base += n;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // ...while the exporter is started and killed with SIGKILL after a
    // random time, again and again, with small batches so kills land
    // everywhere: before, between and after the objects of a batch.
    let mut kills = 0;
    let mut rng = rand::rng();
    while !producing.is_finished() || kills < 6 {
        let mut child = std::process::Command::new(lake_bin())
            .args([
                "export",
                "--no-outcomes",
                "--max-rows",
                "300",
                "--max-age-ms",
                "100",
            ])
            .arg("--to")
            .arg(&dir)
            .args(["--actions-topic", &actions])
            .env("KAFKA_BROKERS", tests::broker())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start lake export");
        let alive_for = Duration::from_millis(rng.random_range(300..1500));
        tokio::time::sleep(alive_for).await;
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        let status = child.wait().expect("reap");
        assert!(!status.success(), "the exporter was killed, not finished");
        kills += 1;
    }
    producing.await.unwrap();

    // A last run exports what is left.
    let out = export_once(&actions, &dir, &[], &[]);
    assert_ok(&out, "the final export");

    let counts = counts_for(TOTAL, PARTITIONS);
    assert_exactly_once(&offsets(&dir, "buffer_meta").await, &counts, "buffer_meta");
    assert_exactly_once(&offsets(&dir, "events").await, &counts, "events");
    assert!(kills >= 6, "killed {kills} times");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A crash after a batch's manifest and some of its files: the next start
/// redoes exactly that batch and writes only what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_is_redone_with_the_same_files() {
    const PARTITIONS: i32 = 2;
    const TOTAL: u64 = 800;
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, PARTITIONS, false)])
        .await
        .unwrap();
    produce_actions(&producer(), &actions, PARTITIONS, 0, TOTAL).await;
    let dir = temp_dir("lake-redo");

    // A batch of 100 here is 10 puts (its manifest, 4 event type folders, 3
    // of them purchases, buffer_meta, etl_meta): abort inside the 2nd batch,
    // then (after redoing it) inside the 4th.
    for abort_after in ["15", "27"] {
        let out = export_once(
            &actions,
            &dir,
            &["--max-rows", "100"],
            &[("LAKE_FAULT_ABORT_AFTER_PUTS", abort_after)],
        );
        assert!(!out.status.success(), "the fault aborts the export");
        assert!(String::from_utf8_lossy(&out.stderr).contains("aborting"));
    }
    let before = offsets(&dir, "buffer_meta").await.len();
    assert!(
        before > 0 && before < TOTAL as usize,
        "some batches written: {before}"
    );

    // A staged file as a write killed long ago leaves one: the next export
    // deletes it.
    let dead = dir.join("buffer_meta/.dead.parquet.0123.staged");
    std::fs::write(&dead, b"half a file").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&dead)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    let out = export_once(&actions, &dir, &["--max-rows", "100"], &[]);
    assert_ok(&out, "the export after the crashes");
    assert!(!dead.exists(), "the dead write's staged file is swept");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redoing"),
        "the cut batch is redone:\n{stderr}"
    );

    let counts = counts_for(TOTAL, PARTITIONS);
    assert_exactly_once(&offsets(&dir, "buffer_meta").await, &counts, "buffer_meta");
    assert_exactly_once(&offsets(&dir, "events").await, &counts, "events");
    // Batches are cut at exactly 100 records, though records are taken
    // from the consumer in runs that straddle the cuts.
    let mut batches = std::collections::BTreeMap::<i32, Vec<i64>>::new();
    for entry in std::fs::read_dir(dir.join("buffer_meta")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue; // staged by a write the fault aborted
        }
        let (_, partition, first, last) = lake::naming::parse_file_name(&name)
            .unwrap_or_else(|| panic!("{name} is not a batch's file"));
        batches.entry(partition).or_default().push(last - first + 1);
    }
    for (partition, count) in &counts {
        let mut sizes = batches.remove(partition).unwrap_or_default();
        sizes.sort_unstable();
        let mut expected = vec![100; (*count / 100) as usize];
        if count % 100 > 0 {
            expected.insert(0, count % 100);
        }
        assert_eq!(sizes, expected, "batch sizes of partition {partition}");
    }
    let purchases = offsets(&dir, "purchases").await.len();
    assert_eq!(
        purchases as u64,
        TOTAL / 8 * 6,
        "6 of 8 types are purchases/upgrades"
    );

    // Nothing new: a further run writes nothing and changes nothing.
    let out = export_once(&actions, &dir, &[], &[]);
    assert_ok(&out, "an export with nothing new");
    assert!(String::from_utf8_lossy(&out.stdout).contains("exported 0 records"));
    assert_exactly_once(
        &offsets(&dir, "buffer_meta").await,
        &counts,
        "buffer_meta again",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records that are not actions go to `bad_records`; the export goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_kept_aside_and_never_stop_the_export() {
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, 1, false)])
        .await
        .unwrap();
    let mut values: Vec<Vec<u8>> = (0..10)
        .map(|i| serde_json::to_vec(&envelope(i)).unwrap())
        .collect();
    values[3] = b"not json".to_vec();
    let mut escape = serde_json::to_value(envelope(7)).unwrap();
    escape["event_type"] = "../../escape".into();
    values[7] = serde_json::to_vec(&escape).unwrap();
    produce_values(&producer(), &actions, 1, 0, values).await;
    let dir = temp_dir("lake-bad");
    let out = export_once(&actions, &dir, &[], &[]);
    assert_ok(&out, "export with bad records");
    let mut bad = offsets(&dir, "bad_records").await;
    bad.sort();
    assert_eq!(bad, vec![(0, 3), (0, 7)]);
    assert_eq!(offsets(&dir, "events").await.len(), 8);
    assert_eq!(offsets(&dir, "buffer_meta").await.len(), 10);
    assert!(!dir.join("escape").exists() && !dir.parent().unwrap().join("escape").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same files read by pyarrow and DuckDB (the project's venv) agree
/// with `lake report`, whichever compression `--compression` chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_and_duckdb_read_the_lake() {
    const TOTAL: u64 = 1_000;
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, 4, false)])
        .await
        .unwrap();
    produce_actions(&producer(), &actions, 4, 0, TOTAL).await;
    for codec in ["zstd", "snappy", "lz4"] {
        let dir = temp_dir(&format!("lake-py-{codec}"));
        assert_ok(
            &export_once(
                &actions,
                &dir,
                &["--max-rows", "300", "--compression", codec],
                &[],
            ),
            "export",
        );

        let ours = report_json(&dir);
        assert_eq!(ours["events"], TOTAL, "{codec}");

        let started = Instant::now();
        let check = std::process::Command::new(venv_bin("python"))
            .arg(workspace_root().join("lake/python/check_lake.py"))
            .arg(&dir)
            .output()
            .expect("run the venv's python");
        assert_ok(&check, "check_lake.py");
        let theirs: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
        for reader in ["pyarrow", "duckdb"] {
            let r = &theirs[reader];
            assert_eq!(r["events"], TOTAL, "{codec}, {reader}: {r}");
            assert_eq!(r["distinct_offsets"], TOTAL, "{codec}, {reader}: {r}");
            assert_eq!(r["purchases"], TOTAL / 8 * 6, "{codec}, {reader}: {r}");
            assert_eq!(
                r["by_event_type"], ours["by_event_type"],
                "{codec}, {reader}"
            );
            assert_eq!(r["by_host"], ours["by_host"], "{codec}, {reader}");
            assert_eq!(r["etl_batches"], theirs["pyarrow"]["etl_batches"]);
            // The ids (in their delta encoding) and the checksums read back.
            assert_eq!(r["distinct_event_ids"], TOTAL, "{codec}, {reader}: {r}");
            assert_eq!(r["distinct_msg_ids"], TOTAL, "{codec}, {reader}: {r}");
            assert_eq!(r["hex_checksums"], TOTAL, "{codec}, {reader}: {r}");
            // Each record's header, as `name=value` (plain, no statistics).
            assert_eq!(r["seq_headers"], TOTAL, "{codec}, {reader}: {r}");
        }
        let encodings = &theirs["pyarrow"]["encodings"];
        for (column, encoding) in [
            ("event_id", "DELTA_BYTE_ARRAY"),
            ("msg_id", "DELTA_BYTE_ARRAY"),
        ] {
            assert!(
                encodings[column]
                    .as_array()
                    .is_some_and(|e| e.contains(&serde_json::json!(encoding))),
                "{codec}: {column} written as {encoding}: {encodings}"
            );
        }
        let want = match codec {
            // Parquet's LZ4_RAW, which pyarrow calls LZ4.
            "lz4" => "LZ4".to_string(),
            other => other.to_uppercase(),
        };
        assert_eq!(
            theirs["pyarrow"]["codecs"],
            serde_json::json!([want]),
            "every column chunk in {codec}"
        );
        eprintln!("{codec}: python readers took {:?}", started.elapsed());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Many partitions, a small cap on the bytes all open batches may hold:
/// batches are cut early (memory stays bounded), and still every offset is
/// there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_cap_cuts_batches_early_across_many_partitions() {
    const PARTITIONS: i32 = 24;
    const TOTAL: u64 = 2_400;
    const CAP: usize = 40_000;
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, PARTITIONS, false)])
        .await
        .unwrap();
    produce_actions(&producer(), &actions, PARTITIONS, 0, TOTAL).await;
    let dir = temp_dir("lake-cap");
    let out = export_once(
        &actions,
        &dir,
        &[
            "--max-buffered-bytes",
            &CAP.to_string(),
            "--max-rows",
            "1000000",
        ],
        &[],
    );
    assert_ok(&out, "export under a small cap");
    let counts = counts_for(TOTAL, PARTITIONS);
    assert_exactly_once(&offsets(&dir, "buffer_meta").await, &counts, "buffer_meta");
    // Each record holds well over 200 bytes, so the cap forces at least
    // TOTAL * 200 / CAP cuts beyond one batch per partition.
    let batches = std::fs::read_dir(dir.join("etl_meta")).unwrap().count();
    assert!(
        batches >= (TOTAL as usize * 200) / CAP,
        "only {batches} batches: the cap did not cut early"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Following: batches are cut by age while the exporter runs, and SIGTERM
/// writes what is open and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_cuts_by_age_and_stops_cleanly_on_sigterm() {
    let actions = tests::unique("lake-actions");
    tests::create_topics(tests::broker(), &[(&actions, 2, false)])
        .await
        .unwrap();
    let dir = temp_dir("lake-follow");
    let exporter = follow(&actions, &dir, &[]);
    produce_actions(&producer(), &actions, 2, 0, 300).await;
    until_rows(&dir, "buffer_meta", 300, "300 rows in the lake").await;
    let (status, stdout) = exporter.stop().await;
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(stdout.contains("exported 300 records"), "{stdout}");
    assert_exactly_once(
        &offsets(&dir, "buffer_meta").await,
        &counts_for(300, 2),
        "buffer_meta",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Following: partitions added to `actions` while the exporter runs are
/// found and exported from their start, with no restart, and the partition
/// it already had goes on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_exports_partitions_added_while_it_runs() {
    let actions = tests::unique("lake-grow");
    tests::create_topics(tests::broker(), &[(&actions, 1, false)])
        .await
        .unwrap();
    let dir = temp_dir("lake-grow");
    let exporter = follow(&actions, &dir, &["--partition-check-ms", "200"]);
    produce_actions(&producer(), &actions, 1, 0, 100).await;
    until_rows(&dir, "buffer_meta", 100, "100 rows of one partition").await;
    tests::add_partitions(tests::broker(), &actions, 3)
        .await
        .unwrap();
    // Actions 100..400 spread over the three partitions.
    produce_actions(&producer(), &actions, 3, 100, 300).await;
    until_rows(&dir, "buffer_meta", 400, "400 rows over three partitions").await;
    let (status, stdout) = exporter.stop().await;
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(stdout.contains("exported 400 records"), "{stdout}");
    let mut expected = counts_for(100, 1);
    for i in 100..400 {
        *expected.entry(shared::partition_for(i, 3)).or_insert(0) += 1;
    }
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_exactly_once(
        &offsets(&dir, "buffer_meta").await,
        &expected,
        "buffer_meta",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
