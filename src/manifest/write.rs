//! Writing the manifest back: whole or not at all, one writer at a time.
//!
//! The controller may be reading the file (and watching it) while `set`
//! rewrites it, and two `set`s may race. So a write goes to a temporary file
//! beside the manifest and is renamed over it - a reader sees the old text
//! or the new, never half of each - and an update holds an advisory lock on
//! a sibling `.NAME.lock` file from its read to its rename, so a concurrent
//! writer re-reads after it and neither loses the other's edit.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::source::MAX_BYTES;

/// How long [`update`] waits for another writer to finish before giving up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Serialises updates within this process. The file lock alone would do
/// (each update opens its own descriptor), but waiting on a mutex costs no
/// polling.
static UPDATES: Mutex<()> = Mutex::new(());

/// Why an [`update`] did not happen. The file is unchanged in every case
/// but one: a `Write` error from flushing the directory after the rename.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is over the size limit.
    #[error("{} is larger than the limit of {} KiB; a manifest is a short list of targets", .path.display(), MAX_BYTES / 1024)]
    TooLarge {
        /// The manifest.
        path: PathBuf,
    },
    /// The file is not UTF-8.
    #[error("{} is not UTF-8 text (invalid byte at offset {offset})", .path.display())]
    NotUtf8 {
        /// The manifest.
        path: PathBuf,
        /// The first invalid byte.
        offset: usize,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {} to update {}: {source}", .lock.display(), .path.display())]
    Lock {
        /// The manifest.
        path: PathBuf,
        /// The lock file beside it.
        lock: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another writer held the lock for longer than [`LOCK_TIMEOUT`].
    #[error("{} is being updated by another process (it holds {} for more than {}s); try again", .path.display(), .lock.display(), .waited.as_secs())]
    Busy {
        /// The manifest.
        path: PathBuf,
        /// The lock file beside it.
        lock: PathBuf,
        /// How long this update waited.
        waited: Duration,
    },
    /// The edit refused the text.
    #[error(transparent)]
    Edit(E),
    /// The new text could not be written (the message names the step).
    #[error("updating {}: {source}", .path.display())]
    Write {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Reads the manifest at `path`, applies `edit` to its text and writes the
/// result atomically, holding the manifest's lock throughout so concurrent
/// updates (threads or processes) apply one after the other. An edit that
/// returns the text unchanged writes nothing (the file and its mtime stay).
pub fn update<E>(path: &Path, edit: impl FnOnce(&str) -> Result<String, E>) -> Result<(), UpdateError<E>> {
    update_within(path, LOCK_TIMEOUT, false, |text| edit(text.unwrap_or_default()))
}

/// [`update`] for a file that may not exist yet: `edit` gets `None` for a
/// missing file, and the check that it is missing, the edit and the
/// creation all happen under the lock, so a writer that creates it
/// meanwhile is not overwritten unseen.
pub fn update_or_create<E>(
    path: &Path,
    edit: impl FnOnce(Option<&str>) -> Result<String, E>,
) -> Result<(), UpdateError<E>> {
    update_within(path, LOCK_TIMEOUT, true, edit)
}

fn update_within<E>(
    path: &Path,
    timeout: Duration,
    create: bool,
    edit: impl FnOnce(Option<&str>) -> Result<String, E>,
) -> Result<(), UpdateError<E>> {
    // The guarded value is `()`: a panic in another update leaves nothing
    // inconsistent behind, so a poisoned lock is still good.
    let _serial = UPDATES.lock().unwrap_or_else(PoisonError::into_inner);
    let path = resolve(path).map_err(|source| UpdateError::Read { path: path.to_path_buf(), source })?;
    let _lock = lock_beside(&path, timeout)?;
    let text = match read_limited(&path) {
        Ok(text) => Some(text),
        Err(UpdateError::Read { source, .. }) if create && source.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let new = edit(text.as_deref()).map_err(UpdateError::Edit)?;
    if text.as_deref() != Some(new.as_str()) {
        write_atomic(&path, &new).map_err(|source| UpdateError::Write { path: path.clone(), source })?;
    }
    Ok(())
}

/// Replaces the file at `path` with `text` so that readers see the old
/// content or the new, never a mix, even across a crash: write a temporary
/// file in the same directory, fsync it, give it the original's permission
/// bits (and owner and group, where this process may set them), rename it
/// over `path`, fsync the directory. A symlink at `path` is followed: its
/// target is replaced and the link kept.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let path = resolve(path)?;
    let dir = parent(&path);
    let original = match fs::metadata(&path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(context(e, "cannot inspect", &path)),
    };
    let (tmp, mut file) = create_temp(&path, original.is_some())?;
    let guard = RemoveOnDrop(Some(tmp.clone()));
    if let Some(m) = &original {
        file.set_permissions(Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| context(e, "cannot set the permissions of", &tmp))?;
        keep_owner(&file, m);
    }
    file.write_all(text.as_bytes()).map_err(|e| context(e, "cannot write", &tmp))?;
    file.sync_all().map_err(|e| context(e, "cannot flush", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path)
        .map_err(|e| context(e, &format!("cannot rename {} over", tmp.display()), &path))?;
    guard.disarm();
    // The rename is durable only once the directory entry is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| context(e, "cannot flush the directory", dir))
}

/// Gives the new file the original's owner and group. Only root may give a
/// file away, so for anyone else a refusal is expected and the file keeps
/// the writer's ownership, as any editor's save would.
fn keep_owner(file: &File, original: &fs::Metadata) {
    let Ok(mine) = file.metadata() else { return };
    if (mine.uid(), mine.gid()) != (original.uid(), original.gid()) {
        if let Err(e) = std::os::unix::fs::fchown(file, Some(original.uid()), Some(original.gid())) {
            tracing::debug!(error = %e, "manifest owner not kept");
        }
    }
}

/// The file a symlink points to (so the link survives the rename), else `path`.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| context(e, "cannot follow the symlink", path))
        }
        _ => Ok(path.to_path_buf()),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `dir/.NAME.SUFFIX`, hidden beside the manifest.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map_or_else(|| "manifest".into(), |n| n.to_string_lossy());
    parent(path).join(format!(".{name}.{suffix}"))
}

/// Creates a fresh temporary file beside `path`. Private (0600) while the
/// original's bits are not applied yet, else the default mode.
fn create_temp(path: &Path, private: bool) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = sibling(path, &format!("{}-{n}.tmp", std::process::id()));
        let mode = if private { 0o600 } else { 0o666 };
        match OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            // A leftover of a crashed process with a recycled pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(context(e, "cannot create a temporary file", &tmp)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(context(e, "cannot create a temporary file beside", path))
}

/// Removes the temporary file unless the rename consumed it.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Best effort: the error that brought us here is the one to report.
            let _ = fs::remove_file(p);
        }
    }
}

/// Takes the lock file beside `path`, polling up to `timeout` so a stuck
/// writer cannot hang this one. The lock file is never removed: removing it
/// would let two writers lock two different files of the same name.
fn lock_beside<E>(path: &Path, timeout: Duration) -> Result<File, UpdateError<E>> {
    let lock = sibling(path, "lock");
    let fail = |source| UpdateError::Lock { path: path.to_path_buf(), lock: lock.clone(), source };
    // Never through a symlink: one planted beside the manifest would make
    // us create or lock a file elsewhere.
    let file = crate::private_fs::open_lock_file(&lock).map_err(fail)?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(UpdateError::Busy {
                    path: path.to_path_buf(),
                    lock: lock.clone(),
                    waited: started.elapsed(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(fail(e)),
        }
    }
}

/// Reads the manifest text, refusing more than [`MAX_BYTES`] without reading it whole.
fn read_limited<E>(path: &Path) -> Result<String, UpdateError<E>> {
    let read_error = |source| UpdateError::Read { path: path.to_path_buf(), source };
    let mut bytes = Vec::new();
    File::open(path).and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes)).map_err(read_error)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(UpdateError::TooLarge { path: path.to_path_buf() });
    }
    String::from_utf8(bytes)
        .map_err(|e| UpdateError::NotUtf8 { path: path.to_path_buf(), offset: e.utf8_error().valid_up_to() })
}

/// An I/O error that says what was being done to which file.
fn context(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn manifest(n: usize) -> String {
        let mut text = String::from("# shared\nversion: 1\ntargets:\n");
        for i in 0..n {
            text.push_str(&format!("  - container: c{i}   # target {i}\n    image: app:1\n"));
        }
        text
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.yaml");
        fs::write(&path, manifest(1)).expect("write");
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(".m.yaml.lock")).expect("symlink");
        let err = update(&path, |t| Ok::<_, String>(t.replace("app:1", "app:2"))).expect_err("refused");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!elsewhere.exists(), "the lock was created through the link");
        assert_eq!(fs::read_to_string(&path).expect("read"), manifest(1));
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_keeps_permissions_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired-state.yaml");
        fs::write(&path, "old\n").expect("write");
        fs::set_permissions(&path, Permissions::from_mode(0o640)).expect("chmod");
        write_atomic(&path, "new\n").expect("write_atomic");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new\n");
        assert_eq!(fs::metadata(&path).expect("meta").mode() & 0o7777, 0o640);
        assert_eq!(names_in(dir.path()), ["desired-state.yaml"]);
    }

    #[test]
    fn write_atomic_creates_a_missing_file_and_follows_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.yaml");
        write_atomic(&real, "one\n").expect("create");
        assert_eq!(fs::read_to_string(&real).expect("read"), "one\n");
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        write_atomic(&link, "two\n").expect("through link");
        assert!(fs::symlink_metadata(&link).expect("meta").file_type().is_symlink(), "the link is kept");
        assert_eq!(fs::read_to_string(&real).expect("read"), "two\n");
    }

    #[test]
    fn write_atomic_keeps_the_owner_when_it_may() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.yaml");
        fs::write(&path, "old\n").expect("write");
        // Only root may give a file away; anyone else keeps their own.
        let root = fs::metadata(&path).expect("meta").uid() == 0;
        let owner = if root {
            (4321, 4321)
        } else {
            (fs::metadata(&path).expect("meta").uid(), fs::metadata(&path).expect("meta").gid())
        };
        if root {
            std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1)).expect("chown");
        }
        write_atomic(&path, "new\n").expect("write_atomic");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!((meta.uid(), meta.gid()), owner);
    }

    #[test]
    fn write_atomic_into_a_missing_directory_fails_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir").join("m.yaml");
        let err = write_atomic(&path, "x\n").expect_err("missing dir").to_string();
        assert!(err.contains("cannot create a temporary file") && err.contains("no-such-dir"), "{err}");
    }

    #[test]
    fn update_applies_the_edit_and_skips_unchanged_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired-state.yaml");
        fs::write(&path, manifest(2)).expect("write");
        update(&path, |t| crate::manifest::edit::set_image(t, "m", "c1", "app:2")).expect("update");
        let text = fs::read_to_string(&path).expect("read");
        let expected =
            manifest(2).replace("c1   # target 1\n    image: app:1", "c1   # target 1\n    image: app:2");
        assert_eq!(text, expected);
        let before = fs::metadata(&path).expect("meta").modified().expect("mtime");
        std::thread::sleep(Duration::from_millis(20));
        update(&path, |t| Ok::<_, std::convert::Infallible>(t.to_string())).expect("no-op");
        assert_eq!(
            fs::metadata(&path).expect("meta").modified().expect("mtime"),
            before,
            "a no-op does not write"
        );
        assert_eq!(names_in(dir.path()), [".desired-state.yaml.lock", "desired-state.yaml"]);
    }

    #[test]
    fn a_refused_edit_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.yaml");
        fs::write(&path, manifest(1)).expect("write");
        let err =
            update(&path, |t| crate::manifest::edit::set_image(t, "m", "c0", "Bad:1")).expect_err("refused");
        assert!(matches!(err, UpdateError::Edit(_)), "{err}");
        assert!(err.to_string().contains("repository name must be lowercase"), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("read"), manifest(1));
    }

    #[test]
    fn update_refuses_oversized_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.yaml");
        fs::write(&big, "#".repeat(MAX_BYTES as usize + 1)).expect("write");
        let err = update(&big, |t| Ok::<_, std::convert::Infallible>(t.to_string())).expect_err("big");
        assert!(err.to_string().contains("larger than the limit of 1024 KiB"), "{err}");
        let missing = dir.path().join("missing.yaml");
        let err =
            update(&missing, |t| Ok::<_, std::convert::Infallible>(t.to_string())).expect_err("missing");
        assert!(err.to_string().starts_with(&format!("cannot read {}", missing.display())), "{err}");
    }

    #[test]
    fn concurrent_updates_from_threads_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Arc::new(dir.path().join("desired-state.yaml"));
        let n = 12;
        fs::write(&*path, manifest(n)).expect("write");
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let path = Arc::clone(&path);
                std::thread::spawn(move || {
                    update(&path, |t| {
                        crate::manifest::edit::set_image(t, "m", &format!("c{i}"), &format!("app:{}", i + 2))
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread").expect("update");
        }
        let m = crate::manifest::Manifest::load(&path).expect("valid");
        for (i, t) in m.targets.iter().enumerate() {
            assert_eq!(t.want.to_string(), format!("app:{}", i + 2), "target c{i}");
        }
        assert_eq!(names_in(dir.path()), [".desired-state.yaml.lock", "desired-state.yaml"]);
    }

    #[test]
    fn update_waits_for_another_holder_of_the_lock_and_gives_up_after_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.yaml");
        fs::write(&path, "a\n").expect("write");
        // Another process's lock looks exactly like this: its own open file description.
        let held = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join(".m.yaml.lock"))
            .expect("lock file");
        held.lock().expect("lock");
        let err = update_within(&path, Duration::from_millis(100), false, |t: Option<&str>| {
            Ok::<_, std::convert::Infallible>(format!("{}b\n", t.unwrap_or_default()))
        })
        .expect_err("busy");
        assert!(matches!(err, UpdateError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("is being updated by another process"), "{err}");
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                update(&path, |t| Ok::<_, std::convert::Infallible>(format!("{t}c\n")))
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(fs::read_to_string(&path).expect("read"), "a\n", "nothing written while the lock is held");
        held.unlock().expect("unlock");
        waiter.join().expect("thread").expect("update");
        assert_eq!(fs::read_to_string(&path).expect("read"), "a\nc\n");
    }
}
