//! Where the lake lives: a folder, or `s3://bucket/prefix` (credentials,
//! region and endpoint from the usual `AWS_*` variables, e.g.
//! `AWS_ENDPOINT=http://127.0.0.1:9000` and `AWS_ALLOW_HTTP=true` for an
//! S3-compatible server).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::LakeError;

/// An opened lake root: a store and the prefix inside it.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// What the user wrote, for messages.
    pub display: String,
}

impl Location {
    /// Opens `s3://bucket/prefix` or a folder (created if missing).
    pub fn open(location: &str) -> crate::Result<Location> {
        Location::open_with(location, &[])
    }

    /// [`Location::open`] with object-store options on top of the `AWS_*`
    /// variables (`("aws_endpoint", "http://...")`, `("aws_allow_http",
    /// "true")`, ...).
    pub fn open_with(location: &str, options: &[(&str, &str)]) -> crate::Result<Location> {
        let bad = |reason: String| LakeError::Location {
            location: location.to_string(),
            reason,
        };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket in s3://bucket/prefix".into()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in options {
                let key = key
                    .parse()
                    .map_err(|e: object_store::Error| bad(e.to_string()))?;
                builder = builder.with_config(key, *value);
            }
            let store = builder.build().map_err(|e| bad(e.to_string()))?;
            let root = Path::parse(prefix).map_err(|e| bad(e.to_string()))?;
            return Ok(Location {
                store: Arc::new(store),
                root,
                display: location.to_string(),
            });
        }
        if location.contains("://") {
            return Err(bad(
                "only a folder or s3://bucket/prefix is supported".into()
            ));
        }
        if location.is_empty() {
            return Err(bad("empty".into()));
        }
        std::fs::create_dir_all(location).map_err(|e| bad(e.to_string()))?;
        // fsync before the rename/link, so a file seen after a power cut is
        // a whole file too.
        let store = LocalFileSystem::new_with_prefix(location)
            .map_err(|e| bad(e.to_string()))?
            .with_fsync(true);
        Ok(Location {
            store: Arc::new(store),
            root: Path::default(),
            display: location.to_string(),
        })
    }

    /// Opens a lake to read: like [`Location::open`], but a folder must exist.
    pub fn open_existing(location: &str) -> crate::Result<Location> {
        if !location.contains("://") && !std::path::Path::new(location).is_dir() {
            return Err(LakeError::Location {
                location: location.to_string(),
                reason: "no such folder".into(),
            });
        }
        Location::open(location)
    }

    /// The store path of `relative` (slash-separated) under the root.
    pub fn path(&self, relative: &str) -> Path {
        let relative = Path::from(relative);
        let mut parts: Vec<_> = self.root.parts().collect();
        parts.extend(relative.parts());
        Path::from_iter(parts)
    }

    /// `path` relative to the root, slash-separated.
    pub fn relative(&self, path: &Path) -> String {
        path.prefix_match(&self.root)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| path.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_locations_are_clear_errors() {
        let e = Location::open("gopher://x").unwrap_err().to_string();
        assert!(e.contains("only a folder or s3://"), "{e}");
        assert!(Location::open("s3:///p").is_err());
        assert!(Location::open("").is_err());
    }

    #[test]
    fn s3_locations_keep_their_prefix() {
        let l = Location::open("s3://bucket/some/prefix").unwrap();
        assert_eq!(
            l.path("events/a.parquet").as_ref(),
            "some/prefix/events/a.parquet"
        );
        assert_eq!(l.relative(&l.path("events/a.parquet")), "events/a.parquet");
    }
}
