//! Create-if-absent on a local folder, durably: the bytes go to a staged
//! file beside the target (a hidden `.…staged` name that no reader lists),
//! which is fsynced and then hard-linked to its name. The link fails if the
//! name exists, so an object appears whole or not at all and is never
//! overwritten; the folder is fsynced after the link (and every folder
//! created on the way after its creation), so a file seen after a power cut
//! is a whole file too. (`object_store`'s `LocalFileSystem` does the same
//! link, without the fsyncs, in the version DataFusion is built on.)
//!
//! A file with the same bytes as one already written (a `purchases` file is
//! its `events` file) is a second hard link to it: its bytes are neither
//! written nor stored twice.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` at `dir/relative` unless something is there; `true` if
/// this call created it.
pub fn put_if_absent(dir: &Path, relative: &str, bytes: &[u8]) -> io::Result<bool> {
    let path = dir.join(relative);
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent folder"))?;
    create_dir_all_synced(parent)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let staged = parent.join(format!(".{name}.{}.staged", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = File::create_new(&staged)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        match fs::hard_link(&staged, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&staged);
    let created = result?;
    if created {
        sync_dir(parent)?;
    }
    Ok(created)
}

/// Makes `dir/to` a second name of the existing file `dir/from` (a hard
/// link: no bytes copied or written again) unless something is at `to`;
/// `true` if this call created it. `from` must already be durable (made by
/// [`put_if_absent`]); the folder of `to` is fsynced after the link.
pub fn link_if_absent(dir: &Path, from: &str, to: &str) -> io::Result<bool> {
    let path = dir.join(to);
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent folder"))?;
    create_dir_all_synced(parent)?;
    match fs::hard_link(dir.join(from), &path) {
        Ok(()) => {
            sync_dir(parent)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing ancestors, fsyncing each new folder's
/// parent so the folder itself survives a power cut.
fn create_dir_all_synced(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all_synced(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        // Another writer made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_leaves_no_staged_file_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("lake-local-{}", uuid::Uuid::new_v4()));
        assert!(put_if_absent(&dir, "a/b/c.parquet", b"one").unwrap());
        assert!(!put_if_absent(&dir, "a/b/c.parquet", b"two").unwrap());
        assert_eq!(fs::read(dir.join("a/b/c.parquet")).unwrap(), b"one");
        let names: Vec<_> = fs::read_dir(dir.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["c.parquet"], "no staged file left");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_link_is_a_second_name_made_once_and_never_over_a_file() {
        let dir = std::env::temp_dir().join(format!("lake-local-{}", uuid::Uuid::new_v4()));
        assert!(put_if_absent(&dir, "a/x.parquet", b"rows").unwrap());
        assert!(link_if_absent(&dir, "a/x.parquet", "b/c/x.parquet").unwrap());
        assert_eq!(fs::read(dir.join("b/c/x.parquet")).unwrap(), b"rows");
        assert!(!link_if_absent(&dir, "a/x.parquet", "b/c/x.parquet").unwrap());
        assert!(put_if_absent(&dir, "d/x.parquet", b"other").unwrap());
        assert!(!link_if_absent(&dir, "a/x.parquet", "d/x.parquet").unwrap());
        assert_eq!(fs::read(dir.join("d/x.parquet")).unwrap(), b"other");
        assert!(
            link_if_absent(&dir, "missing.parquet", "e/x.parquet").is_err(),
            "nothing to link"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
