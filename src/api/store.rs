//! The manifest file as the API changes it: one read-modify-write at a
//! time, replaced atomically so the watcher and a crash only ever see the
//! old file or the new one.

use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use super::error::ApiError;
use crate::manifest::write::{self, UpdateError};

/// The manifest file, and a queue for the API's writes to it.
#[derive(Debug)]
pub(super) struct Store {
    path: PathBuf,
    // `write::update` already serialises writers (a process-wide mutex and a
    // lock file, so `set` from the CLI is covered too). Queueing here as
    // well keeps waiting requests off the blocking thread pool, and keeps
    // a burst of API writes from running into the lock file's timeout,
    // which is meant for another process holding it.
    queue: Mutex<()>,
}

impl Store {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, queue: Mutex::new(()) }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file, lets `edit` compute the new text (and a value for the
    /// caller) from it, and writes that text atomically. `edit` runs on a
    /// blocking thread under the manifest's lock; an error from it writes
    /// nothing.
    pub(super) async fn update<F, T>(&self, edit: F) -> Result<T, ApiError>
    where
        F: FnOnce(&str) -> Result<(String, T), ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let _queued = self.queue.lock().await;
        let path = self.path.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut value = None;
            write::update(&path, |current| {
                let (text, v) = edit(current)?;
                value = Some(v);
                Ok(text)
            })
            .map_err(from_update)?;
            // `update` returned Ok, so the edit ran and succeeded.
            value.ok_or_else(|| ApiError::Store("the manifest edit did not run".into()))
        });
        task.await.map_err(|e| ApiError::Store(format!("the manifest update task failed: {e}")))?
    }
}

/// Sorts a failed update by whose problem it is.
fn from_update(e: UpdateError<ApiError>) -> ApiError {
    match e {
        UpdateError::Edit(e) => e,
        e @ UpdateError::Busy { .. } => ApiError::Busy(e.to_string()),
        e @ (UpdateError::TooLarge { .. } | UpdateError::NotUtf8 { .. }) => {
            ApiError::CurrentUnreadable(e.to_string())
        }
        e @ (UpdateError::Read { .. } | UpdateError::Lock { .. } | UpdateError::Write { .. }) => {
            ApiError::Store(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn update_replaces_the_file_keeps_its_permissions_and_returns_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.yaml");
        fs::write(&path, "old\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let store = Store::new(path.clone());
        let n = store.update(|old| Ok((format!("{old}new\n"), 7))).await.expect("update");
        assert_eq!(n, 7);
        assert_eq!(fs::read_to_string(&path).expect("read"), "old\nnew\n");
        assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o640);
        assert_eq!(files(dir.path()), ["m.yaml"], "temporary files left behind");
    }

    #[tokio::test]
    async fn failed_edit_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.yaml");
        fs::write(&path, "old\n").expect("write");
        let store = Store::new(path.clone());
        let err = store.update(|_| Err::<(String, ()), _>(ApiError::Busy("no".into()))).await;
        assert!(matches!(err, Err(ApiError::Busy(_))), "{err:?}");
        assert_eq!(fs::read_to_string(&path).expect("read"), "old\n");
        assert_eq!(files(dir.path()), ["m.yaml"]);
    }

    #[tokio::test]
    async fn missing_file_is_a_server_error_not_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("absent.yaml"));
        let err = store.update(|_| Ok(("version: 1\n".to_string(), ()))).await;
        assert!(matches!(err, Err(ApiError::Store(_))), "{err:?}");
        assert!(files(dir.path()).is_empty());
    }
}
