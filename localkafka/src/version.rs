//! Which Apache Kafka wrote a data folder. A broker cannot read the metadata
//! log of a newer one (4.2.2 on a folder 4.4.0 wrote stops at start-up with
//! "Can't read version 4 of BrokerEndpoint"), so a folder remembers the
//! version of its last successful start, and a start on older jars is
//! refused with what to do instead of a JVM stack trace.

use std::cmp::Ordering;
use std::path::Path;

/// The file beside the broker's data that names the version of the folder's
/// last successful start.
pub const STAMP: &str = "kafka.version";

/// The version the jars in `libs` are, from `kafka_2.13-<version>.jar`.
pub fn of_jars(libs: &Path) -> Option<String> {
    std::fs::read_dir(libs).ok()?.find_map(|entry| {
        let name = entry.ok()?.file_name().to_string_lossy().into_owned();
        Some(
            name.strip_prefix("kafka_2.13-")?
                .strip_suffix(".jar")?
                .to_string(),
        )
    })
}

/// The version `dir`'s stamp names, if it has one.
pub fn of_folder(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(STAMP)).ok()?;
    let version = text.trim();
    (!version.is_empty()).then(|| version.to_string())
}

/// Records that `version` started on `dir`.
pub fn stamp(dir: &Path, version: &str) -> std::io::Result<()> {
    if of_folder(dir).as_deref() == Some(version) {
        return Ok(());
    }
    std::fs::write(dir.join(STAMP), format!("{version}\n"))
}

/// Dotted versions in numeric order (`4.10.0` after `4.4.0`); a part that
/// is not a number (`4.3.0-rc1`'s last) compares by its leading digits.
pub fn compare(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|p| {
                let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap_or(0)
            })
            .collect()
    };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

/// Whether a failed start's log says the metadata log holds records of a
/// newer version than the broker reads (a folder from before the stamp).
pub fn newer_data_in(log: &str) -> bool {
    log.lines().any(|l| {
        l.contains("UnsupportedVersionException")
            && (l.contains("Can't read version") || l.contains("metadata.version"))
    })
}

/// The shell command that resolves `version`'s jars beside the pinned ones
/// and runs `make run` on them.
pub fn keep_command(version: &str) -> String {
    format!(
        "(cd kafka && mvn -q dependency:copy-dependencies -Dkafka.version={version} \
         -DoutputDirectory=../.tools/kafka-{version}/libs) && \
         KAFKA_LIBS=.tools/kafka-{version}/libs make run"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(compare("4.4.0", "4.2.2"), Ordering::Greater);
        assert_eq!(compare("4.10.0", "4.4.0"), Ordering::Greater);
        assert_eq!(compare("4.2.2", "4.2.2"), Ordering::Equal);
        assert_eq!(compare("4.2", "4.2.0"), Ordering::Equal);
        assert_eq!(compare("3.9.1", "4.0.0"), Ordering::Less);
        assert_eq!(compare("4.3.0-rc1", "4.2.2"), Ordering::Greater);
    }

    #[test]
    fn a_newer_metadata_log_is_recognised_in_the_broker_log() {
        let line = "Caused by: org.apache.kafka.common.errors.UnsupportedVersionException: \
                    Can't read version 4 of BrokerEndpoint";
        assert!(newer_data_in(&format!("INFO starting\n{line}\n")));
        assert!(!newer_data_in(
            "ERROR Encountered fatal fault: caught exception\nCaused by: java.io.IOException: No space left on device"
        ));
    }

    #[test]
    fn the_stamp_names_the_last_version() {
        let dir = std::env::temp_dir().join(format!("stamp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(of_folder(&dir), None);
        stamp(&dir, "4.2.2").unwrap();
        assert_eq!(of_folder(&dir).as_deref(), Some("4.2.2"));
        stamp(&dir, "4.3.0").unwrap();
        assert_eq!(of_folder(&dir).as_deref(), Some("4.3.0"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_jars_name_their_version() {
        let dir = std::env::temp_dir().join(format!("jars-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kafka-clients-4.2.2.jar"), "").unwrap();
        assert_eq!(of_jars(&dir), None);
        std::fs::write(dir.join("kafka_2.13-4.2.2.jar"), "").unwrap();
        assert_eq!(of_jars(&dir).as_deref(), Some("4.2.2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
