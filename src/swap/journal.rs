//! The journal: every swap recorded step by step in the state directory,
//! so that whichever process comes next can finish or undo it.
//!
//! One JSON file per operation under `ops/`, rewritten whole at each step
//! through a temporary file, fsync and rename (then the directory is
//! fsynced): a crash leaves either the previous step or the new one, never
//! a torn record. Locks are `flock`s on `locks/<container>.lock`, released
//! by the kernel when the holder dies, so a crashed upgrader never blocks
//! the next one.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::{ContainerId, OpId};

/// Finished operations kept for `status` and backoff; older ones are pruned.
pub const KEEP_FINISHED: usize = 500;

/// One step of a swap, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The new image is pulled; nothing is touched yet.
    Prepared,
    /// The new container exists under its temporary name.
    Created,
    /// The old container is stopped and renamed to its backup name.
    Stopped,
    /// The new container runs under the original name.
    Started,
    /// The gate passed; the backup is removed.
    Committed,
    /// The old container is back under its name.
    RolledBack,
    /// Ended without a swap (an error before anything changed), or the gate
    /// failed with rollback disabled.
    Failed,
}

impl Step {
    /// True for the steps that end an operation.
    pub fn is_final(self) -> bool {
        matches!(self, Step::Committed | Step::RolledBack | Step::Failed)
    }

    /// The name used in the journal and the fault hook.
    pub fn name(self) -> &'static str {
        match self {
            Step::Prepared => "prepared",
            Step::Created => "created",
            Step::Stopped => "stopped",
            Step::Started => "started",
            Step::Committed => "committed",
            Step::RolledBack => "rolled_back",
            Step::Failed => "failed",
        }
    }
}

/// When a step was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// RFC 3339 UTC time.
    pub at: String,
}

/// Everything needed to finish or undo one swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// The operation.
    pub op_id: OpId,
    /// The container's name (what the operator calls the target).
    pub container: String,
    /// The container being replaced.
    pub old_id: ContainerId,
    /// Its image reference.
    pub old_image: String,
    /// The image id it ran.
    pub old_image_id: String,
    /// The image being swapped in.
    pub new_image: String,
    /// Its image id, once pulled.
    pub new_image_id: String,
    /// Whether the old container was running (a stopped target stays stopped).
    pub was_running: bool,
    /// `stop-first` or `start-first`.
    pub order: String,
    /// The old container's name while it is the backup.
    pub backup_name: String,
    /// The new container's name until it takes over.
    pub temp_name: String,
    /// The new container, once created.
    pub new_id: Option<ContainerId>,
    /// Steps so far.
    pub steps: Vec<StepRecord>,
    /// Why it rolled back or failed.
    pub reason: Option<String>,
    /// Set when the op recreated the container, on its own image, to
    /// follow the container whose network it shares (`container:NAME`)
    /// after that one was swapped: the name of that container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
}

impl OpRecord {
    /// The latest step.
    pub fn step(&self) -> Option<Step> {
        self.steps.last().map(|s| s.step)
    }

    /// True once the operation has ended.
    pub fn is_finished(&self) -> bool {
        self.step().is_some_and(Step::is_final)
    }

    /// When it started (the first step's time).
    pub fn started_at(&self) -> &str {
        self.steps.first().map_or("", |s| s.at.as_str())
    }

    /// When it ended or last moved.
    pub fn updated_at(&self) -> &str {
        self.steps.last().map_or("", |s| s.at.as_str())
    }
}

/// A journal failure: the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A filesystem operation failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another upgrader holds the container's lock.
    #[error("another container-upgrader is working on {0} (lock held); try again when it has finished")]
    Busy(String),
}

/// The state directory's journal.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// Holds a container's lock until dropped.
#[derive(Debug)]
pub struct TargetLock {
    _file: File,
}

impl Journal {
    /// Opens (creating if needed) the journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        for sub in ["ops", "locks"] {
            let path = state_dir.join(sub);
            fs::create_dir_all(&path).map_err(|source| JournalError::Io {
                what: "creating the state directory",
                path,
                source,
            })?;
        }
        Ok(Self { dir: state_dir.to_path_buf() })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the lock for `container`, or says who holds it.
    pub fn lock(&self, container: &str) -> Result<TargetLock, JournalError> {
        let path = self.dir.join("locks").join(format!("{}.lock", safe_name(container)));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| JournalError::Io { what: "opening lock", path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(TargetLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(JournalError::Busy(container.to_string())),
            Err(TryLockError::Error(source)) => Err(JournalError::Io { what: "locking", path, source }),
        }
    }

    /// Appends `step` (and `reason`) to `op` and writes it durably.
    pub fn record(&self, op: &mut OpRecord, step: Step, reason: Option<String>) -> Result<(), JournalError> {
        op.steps.push(StepRecord { step, at: now() });
        if reason.is_some() {
            op.reason = reason;
        }
        self.write(op)?;
        tracing::info!(op_id = %op.op_id, container = %op.container, step = step.name(), "journal");
        fault_hook(step, op);
        Ok(())
    }

    /// Rewrites an op as it is (used by recovery to add what it learned).
    pub fn write(&self, op: &OpRecord) -> Result<(), JournalError> {
        let ops = self.dir.join("ops");
        let path = ops.join(format!("{}.json", op.op_id));
        let tmp = ops.join(format!(".{}.json.tmp", op.op_id));
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { what, path, source }
        };
        let bytes = serde_json::to_vec_pretty(op).map_err(|e| JournalError::Io {
            what: "encoding",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut file = File::create(&tmp).map_err(io("creating", &tmp))?;
        file.write_all(&bytes).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("renaming into place", &path))?;
        File::open(&ops).and_then(|d| d.sync_all()).map_err(io("syncing", &ops))?;
        Ok(())
    }

    /// Every readable op, oldest first. A damaged file is skipped with a
    /// warning: one bad record must not stop recovery of the others.
    pub fn ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        let dir = self.dir.join("ops");
        let entries = fs::read_dir(&dir).map_err(|source| JournalError::Io {
            what: "reading",
            path: dir.clone(),
            source,
        })?;
        let mut ops: Vec<OpRecord> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| match fs::read(&p).map(|b| serde_json::from_slice::<OpRecord>(&b)) {
                Ok(Ok(op)) => Some(op),
                Ok(Err(e)) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping unreadable journal record");
                    None
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping unreadable journal record");
                    None
                }
            })
            .collect();
        ops.sort_by(|a, b| a.started_at().cmp(b.started_at()).then(a.op_id.cmp(&b.op_id)));
        Ok(ops)
    }

    /// Ops that have not ended.
    pub fn unfinished(&self) -> Result<Vec<OpRecord>, JournalError> {
        Ok(self.ops()?.into_iter().filter(|op| !op.is_finished()).collect())
    }

    /// Deletes the oldest finished ops beyond [`KEEP_FINISHED`].
    pub fn prune(&self) -> Result<(), JournalError> {
        let finished: Vec<OpRecord> = self.ops()?.into_iter().filter(OpRecord::is_finished).collect();
        let excess = finished.len().saturating_sub(KEEP_FINISHED);
        for op in &finished[..excess] {
            let path = self.dir.join("ops").join(format!("{}.json", op.op_id));
            fs::remove_file(&path).map_err(|source| JournalError::Io { what: "pruning", path, source })?;
        }
        Ok(())
    }
}

/// RFC 3339 UTC, millisecond precision.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A container name is already `[a-zA-Z0-9_.-]`; anything else is replaced
/// so a lock path can never leave the locks directory.
fn safe_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' }).collect()
}

/// Test-only: with the `fault-injection` feature, setting
/// `CONTAINER_UPGRADER_FAULT_PAUSE_AFTER=<step>` makes the process announce
/// the step on stderr and stop dead right after recording it, so a test can
/// SIGKILL it at exactly that point. With `CONTAINER_UPGRADER_FAULT_PAUSE_MS`
/// it pauses that long and goes on instead (to change the world under it).
#[cfg(feature = "fault-injection")]
fn fault_hook(step: Step, op: &OpRecord) {
    if std::env::var("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER").is_ok_and(|s| s == step.name()) {
        eprintln!("fault-injection: paused after {} (op {})", step.name(), op.op_id);
        let pause = std::env::var("CONTAINER_UPGRADER_FAULT_PAUSE_MS").ok().and_then(|ms| ms.parse().ok());
        match pause {
            // Blocks a runtime thread on purpose: the whole swap must halt.
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
fn fault_hook(_: Step, _: &OpRecord) {}

#[cfg(test)]
impl OpRecord {
    /// A stop-first op on `container` from `app:1` to `app:2`, with no
    /// steps yet: tests set what they care about on top.
    pub(crate) fn sample(container: &str) -> OpRecord {
        OpRecord {
            op_id: OpId::new("op"),
            container: container.into(),
            old_id: ContainerId::new("old"),
            old_image: "app:1".into(),
            old_image_id: "sha256:1".into(),
            new_image: "app:2".into(),
            new_image_id: "sha256:2".into(),
            was_running: true,
            order: "stop-first".into(),
            backup_name: super::backup_name(container, "x"),
            temp_name: super::temp_name(container, "x"),
            new_id: None,
            steps: Vec::new(),
            reason: None,
            follows: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str) -> OpRecord {
        OpRecord { op_id: OpId::new(id), ..OpRecord::sample("web") }
    }

    #[test]
    fn records_written_before_follows_existed_still_read() {
        let plain = serde_json::to_string(&op("a")).expect("json");
        assert!(!plain.contains("follows"), "written only when set: {plain}");
        let back: OpRecord = serde_json::from_str(&plain).expect("reads");
        assert_eq!(back.follows, None);
        let following = OpRecord { follows: Some("vpn".into()), ..op("b") };
        let back: OpRecord =
            serde_json::from_str(&serde_json::to_string(&following).expect("json")).expect("reads");
        assert_eq!(back, following);
    }

    #[test]
    fn steps_are_durable_and_read_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let mut a = op("a");
        journal.record(&mut a, Step::Prepared, None).expect("prepared");
        journal.record(&mut a, Step::Stopped, None).expect("stopped");
        let mut b = op("b");
        journal.record(&mut b, Step::Prepared, None).expect("prepared");
        journal.record(&mut b, Step::RolledBack, Some("exited with code 3".into())).expect("rolled back");

        let reopened = Journal::open(dir.path()).expect("reopen");
        let ops = reopened.ops().expect("ops");
        assert_eq!(ops.iter().map(|o| o.op_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(ops[0].step(), Some(Step::Stopped));
        assert_eq!(ops[1].reason.as_deref(), Some("exited with code 3"));
        let unfinished = reopened.unfinished().expect("unfinished");
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].op_id.as_str(), "a");
    }

    #[test]
    fn a_damaged_record_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        journal.record(&mut op("good"), Step::Prepared, None).expect("record");
        fs::write(dir.path().join("ops/torn.json"), b"{\"op_id\": \"torn\", \"contai").expect("write");
        let ops = journal.ops().expect("ops");
        assert_eq!(ops.len(), 1);
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let held = journal.lock("web").expect("first lock");
        let err = journal.lock("web").expect_err("second lock");
        assert!(err.to_string().contains("another container-upgrader is working on web"), "{err}");
        assert!(journal.lock("db").is_ok(), "locks are per container");
        drop(held);
        assert!(journal.lock("web").is_ok());
    }

    #[test]
    fn lock_names_cannot_escape_the_directory() {
        assert_eq!(safe_name("../../etc/passwd"), ".._.._etc_passwd");
    }

    #[test]
    fn prune_keeps_unfinished_and_the_newest_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        for i in 0..(KEEP_FINISHED + 3) {
            let mut o = op(&format!("op-{i:04}"));
            o.steps.push(StepRecord { step: Step::Prepared, at: format!("2026-01-01T00:00:{i:04}Z") });
            o.steps.push(StepRecord { step: Step::Committed, at: format!("2026-01-01T00:00:{i:04}Z") });
            journal.write(&o).expect("write");
        }
        journal.record(&mut op("zz-open"), Step::Prepared, None).expect("open op");
        journal.prune().expect("prune");
        let ops = journal.ops().expect("ops");
        assert_eq!(ops.len(), KEEP_FINISHED + 1);
        assert!(ops.iter().all(|o| o.op_id.as_str() != "op-0000"), "oldest pruned");
        assert!(ops.iter().any(|o| o.op_id.as_str() == "zz-open"), "unfinished kept");
    }
}
