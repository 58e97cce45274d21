//! Names of the lake's objects. Pure: unit-tested below.
//!
//! A data file is `<topic>+<partition>+<first>+<last>.parquet` (Kafka
//! Connect's S3 sink style; `+` never appears in a topic name), the offsets
//! zero-padded to 20 digits so names sort by offset. A batch's manifest is
//! `_lake/log/<topic>/<partition>/<first>-<last>.json`. Engines skip folders
//! starting with `_`.

/// Width of a zero-padded offset in names: `i64::MAX` has 19 digits.
const OFFSET_WIDTH: usize = 20;

/// The folder of the batch log.
pub const LOG_DIR: &str = "_lake/log";

/// A data file's name for a batch of `topic`/`partition` covering
/// `[first, last]`.
pub fn file_name(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}+{partition}+{first:0OFFSET_WIDTH$}+{last:0OFFSET_WIDTH$}.parquet")
}

/// The folder holding the manifests of one partition.
pub fn log_dir(topic: &str, partition: i32) -> String {
    format!("{LOG_DIR}/{topic}/{partition}")
}

/// A batch's manifest path.
pub fn manifest_path(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!(
        "{}/{first:0OFFSET_WIDTH$}-{last:0OFFSET_WIDTH$}.json",
        log_dir(topic, partition)
    )
}

/// Parses a manifest's file name (`<first>-<last>.json`) back to its range.
pub fn parse_manifest_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(".json")?;
    let (first, last) = stem.split_once('-')?;
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some((first, last))
}

/// Parses a data file's name back to `(topic, partition, first, last)`.
pub fn parse_file_name(name: &str) -> Option<(String, i32, i64, i64)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.rsplitn(4, '+');
    let last = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_string();
    Some((topic, partition, first, last))
}

/// The value of a Hive folder `key=value` in `path`, if any.
pub fn hive_value<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    path.split('/')
        .find_map(|segment| segment.strip_prefix(key)?.strip_prefix('='))
}

/// Whether `value` is safe as a Hive folder value: it becomes part of a path,
/// so a record can never choose where its rows land beyond its own folder.
pub fn is_safe_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `YYYY-MM-DD` (UTC) of a time in ms since the Unix epoch; days before 1970
/// clamp to 1970-01-01.
pub fn date_of_ms(ms: i64) -> String {
    date_of_day(day_of_ms(ms))
}

/// Days since 1970-01-01 (UTC) of a time in ms; before 1970 is day 0.
pub fn day_of_ms(ms: i64) -> i64 {
    ms.max(0) / 86_400_000
}

/// `YYYY-MM-DD` of a day number from [`day_of_ms`].
pub fn date_of_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_topic_partition_and_range_and_parse_back() {
        let name = file_name("actions-x.y_z", 7, 42, 1041);
        assert_eq!(
            name,
            "actions-x.y_z+7+00000000000000000042+00000000000000001041.parquet"
        );
        assert_eq!(
            parse_file_name(&name),
            Some(("actions-x.y_z".to_string(), 7, 42, 1041))
        );
    }

    #[test]
    fn file_names_sort_by_offset() {
        let a = file_name("t", 0, 9, 9);
        let b = file_name("t", 0, 10, 12);
        assert!(a < b);
    }

    #[test]
    fn manifest_names_parse_back_and_reject_junk() {
        let path = manifest_path("actions", 3, 5, 9);
        assert_eq!(
            path,
            "_lake/log/actions/3/00000000000000000005-00000000000000000009.json"
        );
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(parse_manifest_name(name), Some((5, 9)));
        assert_eq!(parse_manifest_name("9-5.json"), None);
        assert_eq!(parse_manifest_name("x-5.json"), None);
        assert_eq!(parse_manifest_name("5-9.json#1"), None);
    }

    #[test]
    fn hive_values_are_found_in_paths() {
        let p = "lake/events/date=2026-12-01/event_type=default/a.parquet";
        assert_eq!(hive_value(p, "event_type"), Some("default"));
        assert_eq!(hive_value(p, "date"), Some("2026-12-01"));
        assert_eq!(hive_value(p, "host"), None);
    }

    #[test]
    fn unsafe_folder_values_are_refused() {
        assert!(is_safe_value("purchase_sword"));
        assert!(!is_safe_value("../x"));
        assert!(!is_safe_value("a/b"));
        assert!(!is_safe_value(""));
        assert!(!is_safe_value("Default"));
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_of_ms(0), "1970-01-01");
        assert_eq!(date_of_ms(-5), "1970-01-01");
        assert_eq!(date_of_ms(951_782_400_000), "2000-02-29");
        assert_eq!(date_of_ms(1_763_800_000_000), "2025-11-22");
        assert_eq!(date_of_ms(1_796_083_199_999), "2026-11-30");
        assert_eq!(date_of_ms(1_796_083_200_000), "2026-12-01");
    }
}
