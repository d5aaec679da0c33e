//! Files in the state directory, handled as the controller's alone.
//!
//! The state directory holds what decides which containers get stopped and
//! removed, and the process holding the Docker socket is root on the host:
//! whoever can plant a file there must not be able to steer it. So every
//! directory is created 0700 and every file 0600; no path is followed
//! through a symlink (`O_NOFOLLOW` on the last component, and files are
//! created exclusively, so a planted link or file is replaced, never
//! written through); and every read is bounded, of a regular file only — a
//! FIFO or `/dev/zero` planted as a record must neither hang nor exhaust
//! memory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) if missing and makes it 0700. A
/// directory with the sticky bit (`/tmp` given as the state directory) is
/// shared by design and left as it is: what matters lives in the private
/// subdirectories made here.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    let mode = meta.permissions().mode();
    if mode & 0o777 != 0o700 && mode & 0o1000 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Like [`ensure_private_dir`] for a directory inside the state directory,
/// where a symlink (planted to point the journal elsewhere) is refused.
pub fn ensure_private_subdir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(io::Error::other("it is a symlink, which is never followed"))
        }
        _ => ensure_private_dir(dir),
    }
}

/// Reads at most `limit` bytes of the regular file at `path`. A symlink, a
/// directory, a FIFO, a device or a file over the limit is an error, and
/// opening never blocks (`O_NONBLOCK`: a FIFO without a writer).
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(libc::ELOOP) => io::Error::other("it is a symlink, which is never followed"),
                _ => e,
            },
        )?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(io::Error::other(format!("{} bytes, over the {limit}-byte limit", meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other(format!("over the {limit}-byte limit")));
    }
    Ok(bytes)
}

/// Opens `path` for writing as a new 0600 file: whatever was there (a
/// stale temporary file, or a symlink planted to redirect the write) is
/// removed first — the link itself, never its target — and the create is
/// exclusive, so no existing file is ever written through.
pub fn create_private(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Opens (creating if needed, 0600) a file to hold a lock on; refuses a
/// symlink.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("it is a symlink, which is never followed"),
            _ => e,
        })
}

/// Writes `bytes` to `path` atomically and durably: a private temporary
/// file beside it (`.NAME.tmp`), fsync, rename over `path`, fsync of the
/// directory. A crash leaves the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("no parent directory"))?;
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = create_private(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_private_and_never_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").expect("victim");
        let path = dir.path().join("record.json");
        std::os::unix::fs::symlink(&victim, dir.path().join(".record.json.tmp")).expect("planted tmp");
        write_atomic(&path, b"{}").expect("write");
        assert_eq!(fs::read(&victim).expect("victim"), b"keep me");
        assert_eq!(fs::read(&path).expect("record"), b"{}");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A symlink at the final path is replaced by the rename, not followed.
        fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(&victim, &path).expect("planted final");
        write_atomic(&path, b"new").expect("write");
        assert_eq!(fs::read(&victim).expect("victim"), b"keep me");
        assert!(!fs::symlink_metadata(&path).expect("meta").file_type().is_symlink());
    }

    #[test]
    fn reads_are_bounded_to_regular_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; 2048]).expect("big");
        assert!(read_bounded(&big, 1024).expect_err("too big").to_string().contains("limit"));
        assert_eq!(read_bounded(&big, 4096).expect("fits").len(), 2048);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&big, &link).expect("link");
        assert!(read_bounded(&link, 4096).expect_err("symlink").to_string().contains("symlink"));

        let zero = read_bounded(Path::new("/dev/zero"), 4096).expect_err("device");
        assert!(zero.to_string().contains("not a regular file"), "{zero}");
        assert!(read_bounded(dir.path(), 4096).is_err(), "a directory");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let err = read_bounded(&fifo, 4096).expect_err("fifo");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn private_dirs_are_0700() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        fs::create_dir(&state).expect("mkdir");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).expect("chmod");
        ensure_private_dir(&state).expect("ensure");
        assert_eq!(fs::metadata(&state).expect("meta").permissions().mode() & 0o777, 0o700);
        ensure_private_subdir(&state.join("ops")).expect("sub");
        assert_eq!(fs::metadata(state.join("ops")).expect("meta").permissions().mode() & 0o777, 0o700);
        std::os::unix::fs::symlink(dir.path(), state.join("locks")).expect("planted");
        assert!(ensure_private_subdir(&state.join("locks")).is_err(), "a symlinked subdir is refused");
    }
}
