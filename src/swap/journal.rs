//! The journal: every swap recorded step by step in the state directory,
//! so that whichever process comes next can finish or undo it.
//!
//! One JSON file per operation under `ops/`, rewritten whole at each step
//! through a temporary file, fsync and rename (then the directory is
//! fsynced): a crash leaves either the previous step or the new one, never
//! a torn record. Locks are `flock`s on `locks/<container>.lock`, released
//! by the kernel when the holder dies, so a crashed upgrader never blocks
//! the next one.
//!
//! The directory is the controller's alone ([`crate::private_fs`]: 0700,
//! files 0600, no symlink followed, bounded reads of regular files only,
//! op ids checked before they name a file). A record that cannot be read is
//! never skipped silently: [`Journal::scan`] returns it as [`Damaged`], and
//! recovery moves it aside to `damaged/` and says so.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hooks::record::HookRecord;
use crate::manifest::Order;
use crate::private_fs;
use crate::types::{ContainerId, ImageId, OpId};

/// Finished operations kept for `status` and backoff; older ones are pruned.
pub const KEEP_FINISHED: usize = 500;

/// The largest record read back: a real one is a few KiB.
pub const MAX_RECORD: u64 = 256 * 1024;

/// One step of a swap, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The new image is pulled; nothing is touched yet.
    Prepared,
    /// The `pre_upgrade` hook is starting; nothing is touched yet.
    PreUpgrade,
    /// The new container exists under its temporary name.
    Created,
    /// About to ask the engine to stop the old container. The engine
    /// finishes a stop it accepted even if the upgrader dies, so recovery
    /// waits the stop out before it judges the old container.
    Stopping,
    /// The old container is stopped and renamed to its backup name.
    Stopped,
    /// The new container runs under the original name.
    Started,
    /// The new container passed its gate; the `post_upgrade` hook is
    /// starting. Until `committed` the old container is kept.
    PostUpgrade,
    /// The new container failed; the `pre_rollback` hook is starting, the
    /// rollback follows.
    PreRollback,
    /// The gate passed; the backup is removed.
    Committed,
    /// The old container is back under its name.
    RolledBack,
    /// The gate failed with rollback disabled: the new container stays, the
    /// old one is kept stopped under its backup name.
    Failed,
    /// Ended before anything changed (the pull failed, the create was
    /// refused, …): the container is as it was.
    Aborted,
}

impl Step {
    /// True for the steps that end an operation.
    pub fn is_final(self) -> bool {
        matches!(self, Step::Committed | Step::RolledBack | Step::Failed | Step::Aborted)
    }

    /// The name used in the journal and the fault hook.
    pub fn name(self) -> &'static str {
        match self {
            Step::Prepared => "prepared",
            Step::PreUpgrade => "pre_upgrade",
            Step::Created => "created",
            Step::Stopping => "stopping",
            Step::Stopped => "stopped",
            Step::Started => "started",
            Step::PostUpgrade => "post_upgrade",
            Step::PreRollback => "pre_rollback",
            Step::Committed => "committed",
            Step::RolledBack => "rolled_back",
            Step::Failed => "failed",
            Step::Aborted => "aborted",
        }
    }
}

/// How an op stands, as `status`, `/v1/status`, webhook events and
/// metrics name it: its final step, or `in_progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcome {
    /// The new container passed and replaced the old one.
    Committed,
    /// The old container is back.
    RolledBack,
    /// The gate failed with rollback disabled.
    Failed,
    /// Ended before anything changed.
    Aborted,
    /// Not finished (running, or interrupted and waiting for `recover`).
    InProgress,
}

impl OpOutcome {
    /// The name used everywhere an outcome is shown.
    pub fn name(self) -> &'static str {
        match self {
            OpOutcome::Committed => "committed",
            OpOutcome::RolledBack => "rolled_back",
            OpOutcome::Failed => "failed",
            OpOutcome::Aborted => "aborted",
            OpOutcome::InProgress => "in_progress",
        }
    }
}

impl std::fmt::Display for OpOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    pub old_image_id: ImageId,
    /// The image being swapped in.
    pub new_image: String,
    /// Its image id, once pulled.
    pub new_image_id: ImageId,
    /// Whether the old container was running (a stopped target stays stopped).
    pub was_running: bool,
    /// `stop-first` or `start-first`.
    pub order: Order,
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
    /// How long the engine may take to stop the old container (its own
    /// stop timeout, else the engine's 10 s): how long recovery waits out
    /// an interrupted `stopping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_secs: Option<u64>,
    /// Set when the op is the update of a Swarm service, not a container
    /// swap: Swarm replaces the tasks; the op records and watches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceOp>,
    /// What the target's hooks did, in the order they ran (output masked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRecord>,
    /// start-first: the old container's networks (user-defined ones, with
    /// its aliases, links and options), journaled before it is taken off
    /// them so Docker's DNS stops naming it ahead of its stop. Whoever
    /// restores the old container connects it to them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_networks: Vec<LeftNetwork>,
}

/// A network the old container of a start-first swap is taken off, with
/// what connecting it again needs. No addresses: start-first refuses a
/// container with a static IP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftNetwork {
    /// The network's name.
    pub network: String,
    /// The user's aliases there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Legacy links on that network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Driver options of the endpoint.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub driver_opts: std::collections::BTreeMap<String, String>,
    /// Which endpoint gives the default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw_priority: Option<i64>,
}

impl LeftNetwork {
    /// From the endpoint the recreation carries for `network`.
    pub fn new(network: &str, e: &bollard::models::EndpointSettings) -> Self {
        Self {
            network: network.to_string(),
            aliases: e.aliases.clone().unwrap_or_default(),
            links: e.links.clone().unwrap_or_default(),
            driver_opts: e.driver_opts.clone().unwrap_or_default().into_iter().collect(),
            gw_priority: e.gw_priority,
        }
    }

    /// The endpoint to connect with again.
    pub fn endpoint(&self) -> bollard::models::EndpointSettings {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        bollard::models::EndpointSettings {
            aliases: some(&self.aliases),
            links: some(&self.links),
            driver_opts: (!self.driver_opts.is_empty())
                .then(|| self.driver_opts.clone().into_iter().collect()),
            gw_priority: self.gw_priority,
            ..Default::default()
        }
    }
}

/// What recovery needs to judge an interrupted service update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOp {
    /// The service id (`old_id` holds it too, for the journal's readers).
    pub id: String,
    /// `UpdateStatus.StartedAt` before this op's update: a status with
    /// the same start time is an older update's, not this one's.
    pub previous_update: Option<String>,
    /// How long the update may take (see `swarm::rollout::deadline`).
    pub deadline_secs: u64,
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

    /// How the op stands.
    pub fn outcome(&self) -> OpOutcome {
        match self.step() {
            Some(Step::Committed) => OpOutcome::Committed,
            Some(Step::RolledBack) => OpOutcome::RolledBack,
            Some(Step::Failed) => OpOutcome::Failed,
            Some(Step::Aborted) => OpOutcome::Aborted,
            Some(
                Step::Prepared
                | Step::PreUpgrade
                | Step::Created
                | Step::Stopping
                | Step::Stopped
                | Step::Started
                | Step::PostUpgrade
                | Step::PreRollback,
            )
            | None => OpOutcome::InProgress,
        }
    }

    /// True once `step` was recorded.
    pub fn reached(&self, step: Step) -> bool {
        self.steps.iter().any(|s| s.step == step)
    }

    /// Records written before `aborted` existed said `failed` for an op
    /// that ended before any change: read them with today's meaning.
    fn upgrade_legacy(&mut self) {
        let started = self.reached(Step::Started);
        if let Some(last) = self.steps.last_mut().filter(|s| s.step == Step::Failed && !started) {
            last.step = Step::Aborted;
        }
    }
}

/// A journal file that could not be read as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The file.
    pub path: PathBuf,
    /// Why it is unreadable.
    pub reason: String,
}

/// Everything in `ops/`: the readable records, oldest first, and the
/// files that are not.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Readable records, oldest first.
    pub ops: Vec<OpRecord>,
    /// Unreadable files.
    pub damaged: Vec<Damaged>,
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
    /// Opens (creating if needed) the journal in `state_dir`, making it and
    /// its subdirectories private (0700).
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { what: "preparing the state directory", path, source }
        };
        private_fs::ensure_private_dir(state_dir).map_err(io(state_dir))?;
        for sub in ["ops", "locks"] {
            let path = state_dir.join(sub);
            private_fs::ensure_private_subdir(&path).map_err(io(&path))?;
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
        let file = private_fs::open_lock_file(&path).map_err(|source| JournalError::Io {
            what: "opening lock",
            path: path.clone(),
            source,
        })?;
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
        let path = self.record_path(&op.op_id)?;
        let bytes = serde_json::to_vec_pretty(op).map_err(|e| JournalError::Io {
            what: "encoding",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        private_fs::write_atomic(&path, &bytes).map_err(|source| JournalError::Io {
            what: "writing",
            path,
            source,
        })
    }

    /// `ops/<id>.json`, for an id that is a plain name.
    fn record_path(&self, id: &OpId) -> Result<PathBuf, JournalError> {
        let checked = OpId::parse(id.as_str()).map_err(|e| JournalError::Io {
            what: "naming the record of",
            path: PathBuf::from(id.as_str()),
            source: std::io::Error::other(e),
        })?;
        Ok(self.dir.join("ops").join(format!("{checked}.json")))
    }

    /// One op's record, if it exists and is readable.
    pub fn read(&self, id: &OpId) -> Result<Option<OpRecord>, JournalError> {
        let path = self.record_path(id)?;
        if fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        read_record(&path, id.as_str()).map(Some).map_err(|reason| JournalError::Io {
            what: "reading",
            path,
            source: std::io::Error::other(reason),
        })
    }

    /// Every readable op, oldest first; damaged files are logged and left
    /// out. Recovery and `status` use [`Journal::scan`] to report them.
    pub fn ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        let scan = self.scan()?;
        for d in &scan.damaged {
            tracing::warn!(path = %d.path.display(), reason = %d.reason, "unreadable journal record");
        }
        Ok(scan.ops)
    }

    /// Reads every record in `ops/`: the readable ones, oldest first, and
    /// the files that are not records (truncated, garbled, wrong types,
    /// empty, a symlink, a FIFO, oversized, a name that is not an op id or
    /// does not match the id inside).
    pub fn scan(&self) -> Result<Scan, JournalError> {
        let dir = self.dir.join("ops");
        let entries = fs::read_dir(&dir).map_err(|source| JournalError::Io {
            what: "reading",
            path: dir.clone(),
            source,
        })?;
        let mut scan = Scan::default();
        for entry in entries {
            let entry =
                entry.map_err(|source| JournalError::Io { what: "reading", path: dir.clone(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.<id>.json.tmp`: a write a crash interrupted; the rename
            // never happened, so the record it was replacing stands.
            let Some(stem) = name.strip_suffix(".json").filter(|_| !name.starts_with('.')) else { continue };
            let path = entry.path();
            match read_record(&path, stem) {
                Ok(op) => scan.ops.push(op),
                Err(reason) => scan.damaged.push(Damaged { path, reason }),
            }
        }
        scan.ops.sort_by(|a, b| a.started_at().cmp(b.started_at()).then(a.op_id.cmp(&b.op_id)));
        Ok(scan)
    }

    /// The ops whose records were moved aside as damaged, by the id their
    /// file was named for: whatever containers those ops left are this
    /// journal's to resolve.
    pub fn lost_ops(&self) -> Vec<OpId> {
        let Ok(entries) = fs::read_dir(self.dir.join("damaged")) else { return Vec::new() };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                OpId::parse(name.split_once(".json.")?.0).ok()
            })
            .collect()
    }

    /// Moves a damaged file to `damaged/` (never deletes it: it may be all
    /// that is left of an op); returns where it went.
    pub fn quarantine(&self, damaged: &Damaged) -> Result<PathBuf, JournalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { what: "moving aside", path, source }
        };
        let dir = self.dir.join("damaged");
        private_fs::ensure_private_subdir(&dir).map_err(io(&dir))?;
        let name = damaged.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let to = dir.join(format!("{name}.{stamp}"));
        fs::rename(&damaged.path, &to).map_err(io(&damaged.path))?;
        Ok(to)
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
            let path = self.record_path(&op.op_id)?;
            fs::remove_file(&path).map_err(|source| JournalError::Io { what: "pruning", path, source })?;
        }
        Ok(())
    }
}

/// Reads one record: a bounded regular file whose name is the op id it holds.
fn read_record(path: &Path, stem: &str) -> Result<OpRecord, String> {
    let id = OpId::parse(stem)?;
    let bytes = private_fs::read_bounded(path, MAX_RECORD).map_err(|e| e.to_string())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".into());
    }
    let mut op: OpRecord =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a journal record: {e}"))?;
    if op.op_id != id {
        return Err(format!(
            "it holds op `{}`, not `{id}`",
            op.op_id.as_str().chars().take(120).collect::<String>()
        ));
    }
    check_names(&op)?;
    op.upgrade_legacy();
    Ok(op)
}

/// A record names containers for removal only by the tool's own naming:
/// its backup and temporary names must be `CONTAINER--cu-backup-S` and
/// `CONTAINER--cu-new-S` with one plain suffix, so a forged record cannot
/// point them at a user's container.
fn check_names(op: &OpRecord) -> Result<(), String> {
    // A service update makes and removes no container: its record names
    // none, and one that does is not ours.
    if let Some(service) = &op.service {
        if !op.backup_name.is_empty() || !op.temp_name.is_empty() || service.id != op.old_id.as_str() {
            return Err(format!(
                "it records a service update of {:?} but names containers ({:?}, {:?}) or another service",
                op.container, op.backup_name, op.temp_name
            ));
        }
        return Ok(());
    }
    let backup = super::names::parse_name(&op.backup_name);
    let suffix = op.backup_name.rsplit('-').next().unwrap_or_default();
    let own = backup == Some((op.container.as_str(), super::names::Part::Backup)) && !suffix.is_empty();
    if !own || op.temp_name != super::temp_name(&op.container, suffix) {
        return Err(format!(
            "its backup and temporary names ({:?}, {:?}) are not those a swap of {:?} makes",
            op.backup_name, op.temp_name, op.container
        ));
    }
    Ok(())
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
            old_image_id: ImageId::new("sha256:1"),
            new_image: "app:2".into(),
            new_image_id: ImageId::new("sha256:2"),
            was_running: true,
            order: Order::StopFirst,
            backup_name: super::backup_name(container, "x"),
            temp_name: super::temp_name(container, "x"),
            new_id: None,
            steps: Vec::new(),
            reason: None,
            follows: None,
            stop_grace_secs: None,
            hooks: Vec::new(),
            service: None,
            left_networks: Vec::new(),
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
    fn damaged_records_are_reported_not_skipped_and_moved_aside_on_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        journal.record(&mut op("good"), Step::Prepared, None).expect("record");
        let ops_dir = dir.path().join("ops");
        let mut good = serde_json::to_value(op("wrongtype")).expect("json");
        good["steps"] = serde_json::json!("not a list");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("torn", b"{\"op_id\": \"torn\", \"contai".to_vec()),
            ("garbage", b"\x00\xff not json".to_vec()),
            ("empty", Vec::new()),
            ("wrongtype", serde_json::to_vec(&good).expect("json")),
            ("oversized", vec![b' '; usize::try_from(MAX_RECORD).expect("size") + 1]),
            ("mismatch", serde_json::to_vec(&op("other")).expect("json")),
            (
                "forged",
                serde_json::to_vec(&OpRecord { backup_name: "user-db".into(), ..op("forged") })
                    .expect("json"),
            ),
        ];
        for (name, bytes) in &cases {
            fs::write(ops_dir.join(format!("{name}.json")), bytes).expect("write");
        }
        std::os::unix::fs::symlink(dir.path().join("ops/good.json"), ops_dir.join("link.json"))
            .expect("link");
        let made =
            std::process::Command::new("mkfifo").arg(ops_dir.join("fifo.json")).status().expect("mkfifo");
        assert!(made.success());
        fs::write(ops_dir.join(".good.json.tmp"), b"half a write").expect("tmp");

        let scan = journal.scan().expect("scan");
        assert_eq!(scan.ops.iter().map(|o| o.op_id.as_str()).collect::<Vec<_>>(), ["good"]);
        let mut damaged: Vec<String> = scan
            .damaged
            .iter()
            .map(|d| d.path.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        damaged.sort();
        assert_eq!(
            damaged,
            [
                "empty.json",
                "fifo.json",
                "forged.json",
                "garbage.json",
                "link.json",
                "mismatch.json",
                "oversized.json",
                "torn.json",
                "wrongtype.json"
            ]
        );
        for d in &scan.damaged {
            let to = journal.quarantine(d).expect("moved aside");
            assert!(to.starts_with(dir.path().join("damaged")), "{}", to.display());
            assert!(fs::symlink_metadata(&to).is_ok(), "kept, not deleted");
        }
        assert!(journal.scan().expect("rescan").damaged.is_empty());
        assert!(fs::read(dir.path().join("ops/good.json")).is_ok(), "the link's target is untouched");
    }

    #[test]
    fn legacy_failed_before_any_change_reads_as_aborted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let mut early = op("early");
        early.steps = vec![StepRecord { step: Step::Failed, at: now() }];
        journal.write(&early).expect("write");
        let mut kept = op("kept");
        kept.steps = [Step::Prepared, Step::Stopped, Step::Started, Step::Failed]
            .into_iter()
            .map(|step| StepRecord { step, at: now() })
            .collect();
        journal.write(&kept).expect("write");
        assert_eq!(
            journal.read(&OpId::new("early")).expect("read").and_then(|o| o.step()),
            Some(Step::Aborted)
        );
        assert_eq!(
            journal.read(&OpId::new("kept")).expect("read").and_then(|o| o.step()),
            Some(Step::Failed)
        );
    }

    #[test]
    fn the_state_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let journal = Journal::open(&state).expect("open");
        journal.record(&mut op("a"), Step::Prepared, None).expect("record");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("ops")), 0o700);
        assert_eq!(mode(&state.join("ops/a.json")), 0o600);
        let bad = OpRecord { op_id: OpId::new("../escape"), ..op("x") };
        assert!(journal.write(&bad).is_err(), "an op id that is not a plain name never names a file");
        assert!(!dir.path().join("escape.json").exists());
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
