//! Where the lake lives: a folder, or an object store URL:
//! - `s3://bucket/prefix`: credentials, region and endpoint from the usual
//!   `AWS_*` variables (e.g. `AWS_ENDPOINT=http://127.0.0.1:9000` and
//!   `AWS_ALLOW_HTTP=true` for an S3-compatible server);
//! - `gs://bucket/prefix` (cargo feature `gcs`, default on): `GOOGLE_*`
//!   variables (`GOOGLE_SERVICE_ACCOUNT`, ...);
//! - `az://container/prefix` (cargo feature `azure`, default on): `AZURE_*`
//!   variables (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//!   ...).

use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::LakeError;

/// The object stores a lake can live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    S3,
    Gcs,
    Azure,
}

impl Scheme {
    /// The URL scheme (`s3`, `gs`, `az`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
        }
    }
}

/// A parsed `--to`/`--from`: a folder, or a bucket (container) and prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Folder(PathBuf),
    Bucket {
        scheme: Scheme,
        bucket: String,
        prefix: String,
    },
}

impl Target {
    /// Parses a location, without touching the network or the disk.
    pub fn parse(location: &str) -> Result<Target, String> {
        if location.is_empty() {
            return Err("empty".into());
        }
        for scheme in [Scheme::S3, Scheme::Gcs, Scheme::Azure] {
            let Some(rest) = location
                .strip_prefix(scheme.as_str())
                .and_then(|r| r.strip_prefix("://"))
            else {
                continue;
            };
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("no bucket in {}://bucket/prefix", scheme.as_str()));
            }
            return Ok(Target::Bucket {
                scheme,
                bucket: bucket.to_string(),
                prefix: prefix.trim_end_matches('/').to_string(),
            });
        }
        if location.contains("://") {
            return Err("only a folder, s3://, gs:// or az://bucket/prefix is supported".into());
        }
        Ok(Target::Folder(PathBuf::from(location)))
    }
}

/// An opened lake root: a store and the prefix inside it.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// What the user wrote, for messages.
    pub display: String,
    /// Where it is, for query engines that list it themselves (`lake query`).
    pub target: Target,
}

impl Location {
    /// Opens a bucket URL or a folder (created if missing).
    pub fn open(location: &str) -> crate::Result<Location> {
        Location::open_with(location, &[])
    }

    /// [`Location::open`] with object-store options on top of the
    /// environment's (`("aws_endpoint", "http://...")`, `("aws_allow_http",
    /// "true")`, `("azure_storage_account_name", "...")`, ...).
    pub fn open_with(location: &str, options: &[(&str, &str)]) -> crate::Result<Location> {
        let bad = |reason: String| LakeError::Location {
            location: location.to_string(),
            reason,
        };
        let target = Target::parse(location).map_err(bad)?;
        let (store, root): (Arc<dyn ObjectStore>, Path) = match &target {
            Target::Bucket {
                scheme,
                bucket,
                prefix,
            } => {
                let store = bucket_store(*scheme, bucket, options).map_err(bad)?;
                let root = Path::parse(prefix).map_err(|e| bad(e.to_string()))?;
                (store, root)
            }
            Target::Folder(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
                // Reads and listings; writes go through `crate::local`
                // (create-if-absent with fsyncs).
                let store =
                    LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(e.to_string()))?;
                (Arc::new(store), Path::default())
            }
        };
        let target = match target {
            // Query engines list the folder by its absolute path.
            Target::Folder(dir) => Target::Folder(dir.canonicalize().unwrap_or(dir)),
            t => t,
        };
        Ok(Location {
            store,
            root,
            display: location.to_string(),
            target,
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

    /// A table's folder as a query engine names it: an absolute path or
    /// `s3://bucket/prefix/table/`, with the trailing slash that makes it a
    /// folder.
    pub fn table_url(&self, table: &str) -> String {
        match &self.target {
            Target::Folder(dir) => format!("{}/{table}/", dir.display()),
            Target::Bucket {
                scheme,
                bucket,
                prefix,
            } if prefix.is_empty() => format!("{}://{bucket}/{table}/", scheme.as_str()),
            Target::Bucket {
                scheme,
                bucket,
                prefix,
            } => format!("{}://{bucket}/{prefix}/{table}/", scheme.as_str()),
        }
    }

    /// For a bucket: its URL (`s3://bucket`) and the store to reach it, for
    /// a query engine's registry; `None` for a folder (engines read local
    /// files themselves).
    pub fn object_store_url(&self) -> Option<(url::Url, Arc<dyn ObjectStore>)> {
        match &self.target {
            Target::Folder(_) => None,
            Target::Bucket { scheme, bucket, .. } => {
                let url = url::Url::parse(&format!("{}://{bucket}", scheme.as_str())).ok()?;
                Some((url, self.store.clone()))
            }
        }
    }
}

/// Builds the store of a bucket from the environment plus `options`.
fn bucket_store(
    scheme: Scheme,
    bucket: &str,
    options: &[(&str, &str)],
) -> Result<Arc<dyn ObjectStore>, String> {
    fn keys<K: std::str::FromStr<Err = object_store::Error>>(
        options: &[(&str, &str)],
    ) -> Result<Vec<(K, String)>, String> {
        options
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.parse().map_err(|e: object_store::Error| e.to_string())?,
                    v.to_string(),
                ))
            })
            .collect()
    }
    match scheme {
        Scheme::S3 => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (k, v) in keys(options)? {
                b = b.with_config(k, v);
            }
            Ok(Arc::new(b.build().map_err(|e| e.to_string())?))
        }
        #[cfg(feature = "gcs")]
        Scheme::Gcs => {
            let mut b =
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            for (k, v) in keys(options)? {
                b = b.with_config(k, v);
            }
            Ok(Arc::new(b.build().map_err(|e| e.to_string())?))
        }
        #[cfg(feature = "azure")]
        Scheme::Azure => {
            let mut b =
                object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(bucket);
            for (k, v) in keys(options)? {
                b = b.with_config(k, v);
            }
            Ok(Arc::new(b.build().map_err(|e| e.to_string())?))
        }
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "this lake binary was built without {}:// support (cargo features `gcs`, `azure`)",
            other.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_locations_are_clear_errors() {
        let e = Location::open("gopher://x").unwrap_err().to_string();
        assert!(e.contains("only a folder, s3://"), "{e}");
        assert!(Location::open("s3:///p").is_err());
        assert!(Location::open("gs://").is_err());
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
        assert_eq!(l.table_url("events"), "s3://bucket/some/prefix/events/");
        let (url, _) = l.object_store_url().unwrap();
        assert_eq!(url.as_str(), "s3://bucket");
    }

    #[test]
    fn bucket_urls_parse_for_every_store() {
        for (url, scheme) in [
            ("s3://b/p/q/", Scheme::S3),
            ("gs://b/p/q", Scheme::Gcs),
            ("az://b/p/q", Scheme::Azure),
        ] {
            assert_eq!(
                Target::parse(url).unwrap(),
                Target::Bucket {
                    scheme,
                    bucket: "b".into(),
                    prefix: "p/q".into()
                },
                "{url}"
            );
        }
        assert!(Target::parse("gs:///p").is_err());
        assert!(Target::parse("az://").is_err());
        assert_eq!(
            Target::parse("rel/dir").unwrap(),
            Target::Folder("rel/dir".into())
        );
    }

    #[test]
    fn gcs_and_azure_locations_build_a_store() {
        let gs =
            Location::open_with("gs://bucket/lake", &[("google_skip_signature", "true")]).unwrap();
        assert_eq!(gs.table_url("events"), "gs://bucket/lake/events/");
        let az = Location::open_with(
            "az://container/lake",
            &[
                ("azure_storage_account_name", "lakeaccount"),
                ("azure_skip_signature", "true"),
            ],
        )
        .unwrap();
        assert_eq!(az.path("events/x").as_ref(), "lake/events/x");
        assert_eq!(az.object_store_url().unwrap().0.as_str(), "az://container");
    }
}
