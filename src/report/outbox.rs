//! The durable outbox: op events waiting for the webhook, one file each in
//! `STATE_DIR/outbox/`, so a restart or a self-upgrade (the new controller
//! shares the state volume) delivers what the old process could not.
//!
//! An event is written here before the op counts as reported, and removed
//! only after the receiver acknowledged it: delivery is at least once, and
//! the op id (the file name, the body's `op_id`, the `Idempotency-Key`
//! header) lets the receiver drop a repeat.
//!
//! The directory is the controller's alone (DESIGN.md §12): 0700, files
//! 0600 written atomically (temp, fsync, rename, fsync of the directory),
//! opened without following symlinks, read with a size limit, names
//! checked. A damaged file is reported and set aside, never skipped
//! silently or retried forever.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::OpEvent;
use crate::private_fs::{self, read_bounded};
use crate::swap::journal::OpRecord;
use crate::types::OpId;

/// The directory under the state directory.
const DIR: &str = "outbox";
/// Op ids already put in the outbox (or older than the first start): the
/// ops of the journal that are not news.
const LEDGER: &str = "enqueued";
/// The marker older versions wrote: the newest op they queued.
const LEGACY_MARKER: &str = "reported";
/// An event is well under 4 KiB; anything much larger is not ours.
const MAX_EVENT_BYTES: u64 = 64 * 1024;
/// The ledger holds at most the journal's finished ops (500) ids.
const MAX_LEDGER_BYTES: u64 = 1024 * 1024;
/// Events kept while the receiver is away; beyond, the oldest go (with an
/// error naming them) so a receiver gone for good cannot fill the disk.
pub const MAX_PENDING: usize = 1000;
/// The most refusal ids a caller of [`Outbox::enqueue_refusals`] keeps.
pub const MAX_TOLD: usize = 4096;

/// Why the outbox could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct OutboxError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError {
    let path = path.to_path_buf();
    move |source| OutboxError { what, path, source }
}

/// The outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens `STATE_DIR/outbox`, creating it 0700, refusing a symlink.
    pub fn open(state_dir: &Path) -> Result<Self, OutboxError> {
        let dir = state_dir.join(DIR);
        private_fs::ensure_private_subdir(&dir).map_err(err("opening", &dir))?;
        Ok(Self { dir })
    }

    /// Queues the events of `refusals` (a pass's signature refusals, see
    /// [`OpEvent::refusal`]) that `told` does not hold yet, each naming
    /// `git_commit`, and remembers them in `told`; how many were new. Past
    /// [`MAX_TOLD`] remembered, `told` starts over (a refusal still
    /// standing is then told once more, with the same op id).
    pub fn enqueue_refusals(
        &self,
        refusals: &[crate::plan::SignatureRefusal],
        git_commit: Option<&str>,
        told: &mut BTreeSet<String>,
    ) -> Result<usize, OutboxError> {
        let now = std::time::SystemTime::now();
        let news: Vec<OpEvent> = refusals
            .iter()
            .map(|r| OpEvent { git_commit: git_commit.map(str::to_string), ..OpEvent::refusal(r, now) })
            .filter(|e| !told.contains(&e.op_id))
            .collect();
        if news.is_empty() {
            return Ok(0);
        }
        for event in &news {
            self.put(event)?;
        }
        self.evict_beyond(MAX_PENDING)?;
        if told.len() + news.len() > MAX_TOLD {
            told.clear();
        }
        told.extend(news.iter().map(|e| e.op_id.clone()));
        Ok(news.len())
    }

    /// Writes `event` durably (replacing an older copy of the same op).
    pub fn put(&self, event: &OpEvent) -> Result<(), OutboxError> {
        let path = self.event_path(&event.op_id)?;
        let bytes = serde_json::to_vec(event).map_err(|e| err("encoding", &path)(e.into()))?;
        private_fs::write_atomic(&path, &bytes).map_err(err("writing", &path))
    }

    /// Every waiting event, oldest op end first. Damaged files are set
    /// aside as `*.damaged` and reported.
    pub fn pending(&self) -> Result<Vec<OpEvent>, OutboxError> {
        let mut pending = Vec::new();
        for path in self.event_files()? {
            match read_bounded(&path, MAX_EVENT_BYTES).map(|b| serde_json::from_slice::<OpEvent>(&b)) {
                Ok(Ok(event)) if self.event_path(&event.op_id).ok().as_ref() == Some(&path) => {
                    pending.push(event)
                }
                Ok(Ok(_)) => self.set_aside(&path, "its op id does not match its name"),
                Ok(Err(e)) => self.set_aside(&path, &e.to_string()),
                Err(e) => self.set_aside(&path, &e.to_string()),
            }
        }
        pending.sort_by(|a, b| (&a.ended_at, &a.op_id).cmp(&(&b.ended_at, &b.op_id)));
        Ok(pending)
    }

    /// How many events wait (without reading them).
    pub fn len(&self) -> Result<usize, OutboxError> {
        Ok(self.event_files()?.len())
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// The receiver acknowledged `op_id`: forget it.
    pub fn remove(&self, op_id: &str) -> Result<(), OutboxError> {
        let path = self.event_path(op_id)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("removing", &path)(e)),
        }
    }

    /// At start, before any pass: on a first start (no ledger), records
    /// what the journal holds as seen, so only ops that end from now on
    /// (and, after an older version, those it had not queued) are news.
    pub fn init_ledger(&self, journal: &[OpRecord]) -> Result<(), OutboxError> {
        if self.read_ledger()?.is_some() {
            return Ok(());
        }
        let finished: Vec<&OpRecord> = journal.iter().filter(|op| op.is_finished()).collect();
        let seen = self.first_ledger(&finished);
        self.write_ledger(seen.iter().map(String::as_str))
    }

    /// Puts every finished op of `journal` that is news — not in the
    /// ledger — into the outbox (when `deliver`), then records them in the
    /// ledger. The event is durable before the ledger says so: a crash in
    /// between sends it twice, never zero times. Returns the events put.
    pub fn enqueue_news(&self, journal: &[OpRecord], deliver: bool) -> Result<Vec<OpEvent>, OutboxError> {
        self.enqueue_news_from(journal, deliver, None)
    }

    /// [`Self::enqueue_news`], each event naming `git_commit`: the Git
    /// commit the manifest came from (`run --git`).
    pub fn enqueue_news_from(
        &self,
        journal: &[OpRecord],
        deliver: bool,
        git_commit: Option<&str>,
    ) -> Result<Vec<OpEvent>, OutboxError> {
        let finished: Vec<&OpRecord> = journal.iter().filter(|op| op.is_finished()).collect();
        // Without a ledger (it was removed, or init_ledger was not
        // called): as on a first start.
        let ledger = match self.read_ledger()? {
            Some(ledger) => ledger,
            None => self.first_ledger(&finished),
        };
        let news: Vec<OpEvent> = finished
            .iter()
            .filter(|op| !ledger.contains(op.op_id.as_str()))
            .map(|op| OpEvent { git_commit: git_commit.map(str::to_string), ..OpEvent::from_op(op) })
            .collect();
        if deliver {
            for event in &news {
                self.put(event)?;
            }
            self.evict_beyond(MAX_PENDING)?;
        }
        // Bounded by the journal: ids it pruned are no longer news anyway.
        self.write_ledger(finished.iter().map(|op| op.op_id.as_str()))?;
        Ok(news)
    }

    fn write_ledger<'i>(&self, ids: impl Iterator<Item = &'i str>) -> Result<(), OutboxError> {
        let ids: BTreeSet<&str> = ids.collect();
        let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
        let path = self.dir.join(LEDGER);
        private_fs::write_atomic(&path, text.as_bytes()).map_err(err("writing", &path))
    }

    /// Without a ledger: on a first start nothing in the journal is news
    /// (older history was never promised to anyone); after an older
    /// version, the ops after the last one it queued are.
    fn first_ledger(&self, finished: &[&OpRecord]) -> BTreeSet<String> {
        let legacy = self.dir.parent().map(|state| state.join(LEGACY_MARKER));
        let marker = legacy.and_then(|p| read_bounded(&p, 1024).ok());
        let marker = marker.map(|b| String::from_utf8_lossy(&b).trim().to_string());
        let upto = match marker.and_then(|m| finished.iter().position(|op| op.op_id.as_str() == m)) {
            Some(i) => i + 1,
            None => finished.len(),
        };
        finished[..upto].iter().map(|op| op.op_id.to_string()).collect()
    }

    fn read_ledger(&self) -> Result<Option<BTreeSet<String>>, OutboxError> {
        let path = self.dir.join(LEDGER);
        match read_bounded(&path, MAX_LEDGER_BYTES) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).lines().map(str::to_string).collect())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("reading", &path)(e)),
        }
    }

    /// Drops the oldest events beyond `max`, naming each.
    fn evict_beyond(&self, max: usize) -> Result<(), OutboxError> {
        if self.len()? <= max {
            return Ok(());
        }
        let pending = self.pending()?;
        for event in &pending[..pending.len().saturating_sub(max)] {
            tracing::error!(op_id = %event.op_id, max, "outbox full: the oldest undelivered event is dropped");
            self.remove(&event.op_id)?;
        }
        Ok(())
    }

    fn event_files(&self) -> Result<Vec<PathBuf>, OutboxError> {
        let entries = fs::read_dir(&self.dir).map_err(err("reading", &self.dir))?;
        Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.ends_with(".json") && !name.starts_with('.')
            })
            .collect())
    }

    fn event_path(&self, op_id: &str) -> Result<PathBuf, OutboxError> {
        if OpId::parse(op_id).is_err() {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("invalid op id {op_id:?}"));
            return Err(err("naming an event in", &self.dir)(e));
        }
        Ok(self.dir.join(format!("{op_id}.json")))
    }

    fn set_aside(&self, path: &Path, why: &str) {
        tracing::error!(path = %path.display(), error = why, "damaged outbox event set aside; it will not be delivered");
        let aside = path.with_extension("damaged");
        if let Err(e) = fs::rename(path, &aside) {
            tracing::error!(path = %path.display(), error = %e, "cannot set the damaged event aside");
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(err("syncing", dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;
    use crate::swap::journal::{Step, StepRecord};
    use crate::types::OpId;

    fn op(id: &str, step: Step) -> OpRecord {
        let at = "2026-01-01T00:00:00.000Z";
        OpRecord {
            op_id: OpId::new(id),
            steps: vec![
                StepRecord { step: Step::Prepared, at: at.into() },
                StepRecord { step, at: at.into() },
            ],
            ..OpRecord::sample("web")
        }
    }

    fn ids(events: &[OpEvent]) -> Vec<&str> {
        events.iter().map(|e| e.op_id.as_str()).collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn events_survive_a_reopen_until_removed_and_are_private() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let event = OpEvent::from_op(&op("op-1", Step::Committed));
        outbox.put(&event).expect("put");
        outbox.put(&event).expect("a second put of the same op replaces it");

        let reopened = Outbox::open(state.path()).expect("reopen");
        assert_eq!(reopened.pending().expect("pending"), [event]);
        assert_eq!(mode(&state.path().join("outbox")), 0o700);
        assert_eq!(mode(&state.path().join("outbox/op-1.json")), 0o600);
        reopened.remove("op-1").expect("remove");
        reopened.remove("op-1").expect("removing twice is not an error");
        assert!(reopened.is_empty().expect("len"));
    }

    #[test]
    fn finished_ops_are_news_once_and_history_before_the_first_start_is_not() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let mut journal = vec![op("old", Step::Committed)];
        outbox.init_ledger(&journal).expect("first start");
        journal.push(op("first-pass", Step::Committed));
        assert_eq!(
            ids(&outbox.enqueue_news(&journal, true).expect("first")),
            ["first-pass"],
            "old history is not news"
        );
        outbox.remove("first-pass").expect("delivered");
        outbox.init_ledger(&journal).expect("a restart keeps the ledger");

        journal.push(op("running", Step::Started));
        journal.push(op("new", Step::RolledBack));
        assert_eq!(ids(&outbox.enqueue_news(&journal, true).expect("second")), ["new"]);
        assert!(outbox.enqueue_news(&journal, true).expect("third").is_empty(), "news once");
        journal[1] = op("running", Step::Committed);
        assert_eq!(ids(&outbox.enqueue_news(&journal, true).expect("fourth")), ["running"]);
        assert_eq!(ids(&outbox.pending().expect("pending")), ["new", "running"]);

        // Without a webhook, ops are seen but not kept for delivery.
        journal.push(op("unsent", Step::Committed));
        assert_eq!(ids(&outbox.enqueue_news(&journal, false).expect("fifth")), ["unsent"]);
        assert_eq!(outbox.len().expect("len"), 2);
    }

    #[test]
    fn after_an_older_version_the_ops_it_did_not_queue_are_news() {
        let state = tempfile::tempdir().expect("tempdir");
        fs::write(state.path().join("reported"), "b\n").expect("legacy marker");
        let outbox = Outbox::open(state.path()).expect("open");
        let journal = [op("a", Step::Committed), op("b", Step::Committed), op("c", Step::Failed)];
        outbox.init_ledger(&journal).expect("init");
        assert_eq!(ids(&outbox.enqueue_news(&journal, true).expect("news")), ["c"]);
    }

    #[test]
    fn symlinks_are_not_followed_and_damaged_events_are_set_aside() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let target = state.path().join("elsewhere.json");
        let event = OpEvent::from_op(&op("op-1", Step::Committed));
        fs::write(&target, serde_json::to_vec(&event).expect("json")).expect("write");
        symlink(&target, state.path().join("outbox/op-1.json")).expect("symlink");
        fs::write(state.path().join("outbox/op-2.json"), "{not json").expect("write");
        assert!(outbox.pending().expect("pending").is_empty());
        assert!(state.path().join("outbox/op-2.damaged").exists(), "set aside, not deleted");
        assert!(outbox.is_empty().expect("len"), "not retried forever");

        // A temp file planted as a symlink is replaced, not written through.
        symlink(&target, state.path().join("outbox/.op-3.json.tmp")).expect("symlink");
        outbox.put(&OpEvent::from_op(&op("op-3", Step::Committed))).expect("put");
        assert_eq!(fs::read(&target).expect("read"), serde_json::to_vec(&event).expect("json"));

        let bad = OpEvent { op_id: "../escape".into(), ..event };
        assert!(outbox.put(&bad).is_err(), "an id naming another directory is refused");
        let outside = state.path().join("elsewhere-dir");
        fs::create_dir(&outside).expect("dir");
        let linked = tempfile::tempdir().expect("tempdir");
        symlink(&outside, linked.path().join("outbox")).expect("symlink");
        assert!(Outbox::open(linked.path()).is_err(), "a symlinked outbox is refused");
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_events() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        for (i, at) in
            ["2026-01-01T00:00:03Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"].iter().enumerate()
        {
            let event = OpEvent {
                ended_at: (*at).into(),
                ..OpEvent::from_op(&op(&format!("op-{i}"), Step::Committed))
            };
            outbox.put(&event).expect("put");
        }
        outbox.evict_beyond(2).expect("evict");
        assert_eq!(
            ids(&outbox.pending().expect("pending")),
            ["op-2", "op-0"],
            "oldest end first; op-1 dropped"
        );
    }
}
