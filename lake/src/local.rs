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
//!
//! On Linux a staged file of [`DIRECT_MIN`] bytes or more is written with
//! `O_DIRECT`, from an aligned buffer, straight to the disk: not copied
//! into the page cache first, which cost the exporter more CPU than the
//! disk write itself (BENCHMARKS.md, "Lake", twenty-eighth session). A file
//! system that refuses direct I/O gets the bytes through the page cache
//! instead; `LAKE_DIRECT_IO=false` always does.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Staged files from this size are written with direct I/O; smaller ones
/// (manifests, `etl_meta`, a rare event type's file) through the page cache.
pub const DIRECT_MIN: usize = 64 * 1024;

/// How a staged file's bytes went to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// `O_DIRECT`, from an aligned buffer.
    Direct,
    /// Through the page cache.
    Buffered,
}

/// Whether staged files may use direct I/O (`LAKE_DIRECT_IO`, default true).
fn direct_io() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("LAKE_DIRECT_IO").as_deref(),
            Ok("false" | "0" | "no" | "off")
        )
    })
}

/// Writes `pieces`, one after the other, at `dir/relative` unless
/// something is there; `true` if this call created it.
pub fn put_if_absent(dir: &Path, relative: &str, pieces: &[Bytes]) -> io::Result<bool> {
    put(dir, relative, pieces, direct_io()).map(|(created, _)| created)
}

/// [`put_if_absent`], with direct I/O allowed or not; also says how the
/// bytes were written.
fn put(dir: &Path, relative: &str, pieces: &[Bytes], direct: bool) -> io::Result<(bool, Written)> {
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
        let written = write_staged(&staged, pieces, direct)?;
        match fs::hard_link(&staged, &path) {
            Ok(()) => Ok((true, written)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((false, written)),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&staged);
    let (created, written) = result?;
    if created {
        sync_dir(parent)?;
    }
    Ok((created, written))
}

/// A staged file this old is a dead write's: a live write links or
/// deletes its staged file as soon as the bytes are on the disk.
pub const STAGED_MAX_AGE: Duration = Duration::from_secs(600);

/// Whether `name` is a staged file's ([`put_if_absent`]).
fn is_staged(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".staged")
}

/// Deletes the staged files under `dir` last modified at least
/// `older_than` ago: what a process killed in the middle of a write left
/// (no reader lists them, but nothing else would delete them). Walks every
/// folder under `dir`, so the exporter runs it on a thread of its own; a
/// folder that cannot be read is skipped. Returns how many were deleted.
pub fn sweep_staged(dir: &Path, older_than: Duration) -> io::Result<usize> {
    let now = SystemTime::now();
    let mut swept = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if folder == dir => return Err(e),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            // Not followed: a link to a folder is not walked.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(entry.path());
                continue;
            }
            if !kind.is_file() || !is_staged(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age >= older_than));
            if old && fs::remove_file(entry.path()).is_ok() {
                swept += 1;
            }
        }
    }
    Ok(swept)
}

/// Writes and fsyncs a new file: with direct I/O when allowed, large
/// enough and taken by the file system, else through the page cache.
fn write_staged(path: &Path, pieces: &[Bytes], direct: bool) -> io::Result<Written> {
    #[cfg(target_os = "linux")]
    if direct && pieces.iter().map(Bytes::len).sum::<usize>() >= DIRECT_MIN {
        match direct::write(path, pieces) {
            Ok(()) => return Ok(Written::Direct),
            // Refused (EINVAL: no direct I/O on this file system, or not
            // at this alignment): written again through the page cache.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let _ = fs::remove_file(path);
            }
            Err(e) => return Err(e),
        }
    }
    let _ = direct;
    let mut file = File::create_new(path)?;
    for piece in pieces {
        file.write_all(piece)?;
    }
    file.sync_all()?;
    Ok(Written::Buffered)
}

#[cfg(target_os = "linux")]
mod direct {
    use std::fs::OpenOptions;
    use std::io::{self, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::sync::{Mutex, PoisonError};

    use bytes::Bytes;

    /// Offsets, lengths and buffer addresses of direct writes are multiples
    /// of this (a 512-byte or 4 KiB logical block alike).
    const ALIGN: usize = 4096;
    /// Bytes copied into the aligned buffer and written at a time.
    const CHUNK: usize = 256 * 1024;

    /// Aligned buffers not in use, shared by the writing threads (a
    /// folder's puts run on many blocking threads at once; a buffer per
    /// thread was fresh memory to fault in for each).
    static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// Writes `pieces` to a new file at `path` with `O_DIRECT`: copied into
    /// an aligned buffer a chunk at a time, the last chunk padded with
    /// zeros to a whole block, then the file cut back to its length and
    /// fsynced.
    pub fn write(path: &Path, pieces: &[Bytes]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        let mut buffer = BUFFERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| vec![0; CHUNK + ALIGN]);
        let result = write_aligned(&mut file, pieces, &mut buffer);
        BUFFERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
        let len = result?;
        file.set_len(len as u64)?;
        file.sync_all()
    }

    /// Writes `pieces` through the aligned part of `buffer`; returns their
    /// length.
    fn write_aligned(
        file: &mut std::fs::File,
        pieces: &[Bytes],
        buffer: &mut [u8],
    ) -> io::Result<usize> {
        let start = buffer.as_ptr().align_offset(ALIGN);
        let aligned = buffer
            .get_mut(start..start + CHUNK)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let (mut filled, mut len) = (0, 0);
        for piece in pieces {
            let mut rest: &[u8] = piece;
            while !rest.is_empty() {
                let n = rest.len().min(CHUNK - filled);
                aligned[filled..filled + n].copy_from_slice(&rest[..n]);
                (filled, len, rest) = (filled + n, len + n, &rest[n..]);
                if filled == CHUNK {
                    file.write_all(aligned)?;
                    filled = 0;
                }
            }
        }
        if filled > 0 {
            let whole = filled.next_multiple_of(ALIGN);
            aligned[filled..whole].fill(0);
            file.write_all(&aligned[..whole])?;
        }
        Ok(len)
    }
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
        let one = |text: &'static [u8]| [Bytes::from_static(text)];
        assert!(put_if_absent(&dir, "a/b/c.parquet", &one(b"one")).unwrap());
        assert!(!put_if_absent(&dir, "a/b/c.parquet", &one(b"two")).unwrap());
        assert_eq!(fs::read(dir.join("a/b/c.parquet")).unwrap(), b"one");
        let names: Vec<_> = fs::read_dir(dir.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["c.parquet"], "no staged file left");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn old_staged_files_are_swept_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("lake-sweep-{}", uuid::Uuid::new_v4()));
        let folder = dir.join("events/date=2026-12-05/event_type=default");
        fs::create_dir_all(&folder).unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let file = |name: &str, modified: SystemTime| {
            let f = File::create(folder.join(name)).unwrap();
            f.set_modified(modified).unwrap();
        };
        file(".a.parquet.0123.staged", hour_ago); // a dead write's
        file(".b.parquet.4567.staged", SystemTime::now()); // a live one's
        file("a.parquet", hour_ago);
        file(".hidden", hour_ago);
        fs::write(dir.join(".c.json.89ab.staged"), b"{}").unwrap();
        File::options()
            .write(true)
            .open(dir.join(".c.json.89ab.staged"))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();

        assert_eq!(sweep_staged(&dir, STAGED_MAX_AGE).unwrap(), 2);
        let mut left: Vec<_> = fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".b.parquet.4567.staged", ".hidden", "a.parquet"]);
        assert!(!dir.join(".c.json.89ab.staged").exists());
        assert_eq!(
            sweep_staged(&dir, STAGED_MAX_AGE).unwrap(),
            0,
            "nothing twice"
        );
        assert!(sweep_staged(&dir.join("missing"), STAGED_MAX_AGE).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    /// Whether the file system under `dir` takes `O_DIRECT` at all.
    fn takes_direct_io(dir: &Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let probe = dir.join("probe");
        let opened = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok();
        let _ = fs::remove_file(probe);
        opened
    }

    #[test]
    fn direct_and_buffered_writes_hold_the_same_bytes_whatever_the_length() {
        let dir = std::env::temp_dir().join(format!("lake-local-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        let direct_ok = takes_direct_io(&dir);
        let lengths = [
            0,
            100,
            DIRECT_MIN - 1,
            DIRECT_MIN,
            DIRECT_MIN + 1,
            (1 << 20) - 1,
            1 << 20,
            (1 << 20) + 4097,
            3 << 20,
        ];
        for len in lengths {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4093) as u8).collect();
            // In pieces of many lengths, some across the aligned buffer's
            // chunks, some empty.
            let whole = Bytes::from(bytes.clone());
            let mut pieces = Vec::new();
            let (mut at, mut step) = (0, 1);
            while at < len {
                let end = (at + step).min(len);
                pieces.push(whole.slice(at..end));
                pieces.push(Bytes::new());
                (at, step) = (end, step * 3 + 1);
            }
            for direct in [true, false] {
                let name = format!("t/{len}-{direct}.parquet");
                let (created, written) = put(&dir, &name, &pieces, direct).unwrap();
                assert!(created);
                let expected = if direct && len >= DIRECT_MIN && direct_ok {
                    Written::Direct
                } else {
                    Written::Buffered
                };
                assert_eq!(written, expected, "{len} bytes, direct allowed: {direct}");
                assert_eq!(fs::read(dir.join(&name)).unwrap(), bytes, "{len} bytes");
            }
        }
        let names: Vec<_> = fs::read_dir(dir.join("t"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".staged"))
            .collect();
        assert!(names.is_empty(), "staged files left: {names:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_link_is_a_second_name_made_once_and_never_over_a_file() {
        let dir = std::env::temp_dir().join(format!("lake-local-{}", uuid::Uuid::new_v4()));
        assert!(put_if_absent(&dir, "a/x.parquet", &[Bytes::from_static(b"rows")]).unwrap());
        assert!(link_if_absent(&dir, "a/x.parquet", "b/c/x.parquet").unwrap());
        assert_eq!(fs::read(dir.join("b/c/x.parquet")).unwrap(), b"rows");
        assert!(!link_if_absent(&dir, "a/x.parquet", "b/c/x.parquet").unwrap());
        assert!(put_if_absent(&dir, "d/x.parquet", &[Bytes::from_static(b"other")]).unwrap());
        assert!(!link_if_absent(&dir, "a/x.parquet", "d/x.parquet").unwrap());
        assert_eq!(fs::read(dir.join("d/x.parquet")).unwrap(), b"other");
        assert!(
            link_if_absent(&dir, "missing.parquet", "e/x.parquet").is_err(),
            "nothing to link"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
