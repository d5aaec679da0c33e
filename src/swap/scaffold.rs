//! The containers an op builds around the one it upgrades, and how to tell
//! them from the operator's own.
//!
//! A swap creates the new container under a temporary name and renames the
//! old one to a backup name; a self-upgrade also starts a helper. All of
//! them are copies of a real container, labels included, so a `selector:
//! {label: …}` matches them exactly as it matches the container they stand
//! for. They are never targets: "upgrading" a backup destroys the rollback
//! point, and swapping a temporary or a helper fights the op that owns it.
//! Three marks recognise them, any one sufficient:
//!
//! - the name: `NAME--cu-backup-SUFFIX`, `NAME--cu-new-SUFFIX` or
//!   `NAME--cu-helper-SUFFIX`, where SUFFIX is an op id's name-safe suffix
//!   ([`OpId::suffix`](crate::types::OpId::suffix): up to 12 lowercase
//!   letters and digits). Only that exact shape is reserved: a container of
//!   the operator's may well have `--cu-` elsewhere in its name.
//! - the helper label ([`HELPER_LABEL`]), whatever its value;
//! - the journal, which records which container played which part in each
//!   op, and so still knows a backup that someone renamed.

use std::collections::{BTreeMap, HashMap};

use super::journal::{OpRecord, Step};
use crate::types::ContainerId;

pub use super::names::{
    backup_name, helper_name, marked, parse_name, swapped_name, temp_name, Part, HELPER_LABEL,
};

/// Recognises the containers ops made. The default value knows them by
/// their marks only; [`Scaffolding::from_journal`] adds the journal's
/// record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scaffolding {
    /// Containers an op used as its backup or new container, with the name
    /// of the container each stood in for.
    by_id: HashMap<ContainerId, String>,
}

impl Scaffolding {
    /// Learns from the journal which containers served ops as backups or
    /// new containers (see [`scaffold_ids`]).
    pub fn from_journal<'a>(ops: impl IntoIterator<Item = &'a OpRecord>) -> Self {
        let by_id = ops
            .into_iter()
            .flat_map(|op| scaffold_ids(op).into_iter().map(|id| (id.clone(), op.container.clone())))
            .collect();
        Self { by_id }
    }

    /// True when the container `id`, now named `name` with `labels`, is an
    /// op's scaffolding, never a target. A container the journal knows
    /// that carries again the very name it stood in for has been put back
    /// by hand (a backup restored after a failed upgrade): it is the
    /// operator's container again.
    pub fn contains(&self, id: &ContainerId, name: &str, labels: &BTreeMap<String, String>) -> bool {
        marked(name, labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            || self.by_id.get(id).is_some_and(|stood_for| stood_for != name)
    }
}

/// The containers of `op` that are not (or no longer, or not yet) the
/// container under the target's name: the ones the op made or retired.
fn scaffold_ids(op: &OpRecord) -> Vec<&ContainerId> {
    let started = op.steps.iter().any(|s| s.step == Step::Started);
    let (old, new) = (Some(&op.old_id), op.new_id.as_ref());
    let ids = match op.step() {
        // Nothing created yet: the old container is the target.
        None | Some(Step::Prepared | Step::PreUpgrade) => [None, None],
        // The new one waits under its temporary name (the old one, even
        // while it stops, still carries the target's name).
        Some(Step::Created | Step::Stopping) => [new, None],
        // Both aside: the old as backup, the new under its temporary name.
        Some(Step::Stopped) => [old, new],
        // The new one has the name; the old is the backup.
        Some(Step::Started | Step::PostUpgrade | Step::Committed) => [old, None],
        // About to roll back: as before the failure (start-first fails
        // its new container under the temporary name).
        Some(Step::PreRollback) if started => [old, None],
        Some(Step::PreRollback) => [new, None],
        // The old one is back, or never left; the new one is (or was)
        // thrown away.
        Some(Step::RolledBack | Step::Aborted) => [new, None],
        // Failed after the new one took over (rollback disabled): the old
        // is the kept backup. Failed before: the new one was thrown away.
        Some(Step::Failed) if started => [old, None],
        Some(Step::Failed) => [new, None],
    };
    ids.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swap::journal::StepRecord;
    use crate::types::OpId;

    #[test]
    fn names_an_op_gives_are_read_back_with_the_container_they_stand_for() {
        let suffix = OpId::generate().suffix();
        assert_eq!(parse_name(&backup_name("web", &suffix)), Some(("web", Part::Backup)));
        assert_eq!(parse_name(&temp_name("my-app", &suffix)), Some(("my-app", Part::New)));
        assert_eq!(parse_name(&helper_name("ctl", &suffix)), Some(("ctl", Part::Helper)));
        assert_eq!(swapped_name(&backup_name("web", "1a2b")), Some("web"));
        assert_eq!(swapped_name(&helper_name("ctl", "1a2b")), None, "a helper stands for no swap");
        // A backup of a leftover temporary still stands for that name.
        assert_eq!(parse_name("web--cu-new-1--cu-backup-2"), Some(("web--cu-new-1", Part::Backup)));
    }

    #[test]
    fn operator_names_that_merely_contain_the_mark_are_not_reserved() {
        for name in [
            "web-sidecar",
            "web--cu-",
            "--cu-backup-1a2b",
            "web--cu-restore-1a2b",
            "web--cu-backup",
            "web--cu-backup-Nightly",
            "web--cu-backup-2024-01-01",
            "web--cu-new-0123456789abc",
            "web--cu-backup-1a2b.old",
        ] {
            assert_eq!(parse_name(name), None, "{name}");
        }
    }

    #[test]
    fn marked_by_name_or_helper_label() {
        let none = std::iter::empty();
        assert!(marked("web--cu-backup-1a2b", none.clone()));
        assert!(!marked("web", none));
        assert!(marked("anything", [(HELPER_LABEL, "ctl")].into_iter()));
        assert!(!marked("web", [("tier", "front")].into_iter()));
    }

    fn op(container: &str, steps: &[Step]) -> OpRecord {
        OpRecord {
            op_id: OpId::new("op-1"),
            new_id: Some(ContainerId::new("new")),
            backup_name: backup_name(container, "1"),
            temp_name: temp_name(container, "1"),
            steps: steps.iter().map(|&step| StepRecord { step, at: String::new() }).collect(),
            reason: None,
            ..OpRecord::sample(container)
        }
    }

    #[test]
    fn the_journal_names_the_containers_set_aside_at_each_step() {
        use Step::*;
        let cases: &[(&[Step], &[&str])] = &[
            (&[Prepared], &[]),
            (&[Prepared, Created], &["new"]),
            (&[Prepared, Created, Stopped], &["old", "new"]),
            (&[Prepared, Created, Stopped, Started], &["old"]),
            (&[Prepared, Created, Stopped, Started, Committed], &["old"]),
            (&[Prepared, Created, Stopped, Started, RolledBack], &["new"]),
            (&[Prepared, Created, Stopped, Started, Failed], &["old"]),
            (&[Prepared, Created, Failed], &["new"]),
        ];
        for (steps, want) in cases {
            let record = op("web", steps);
            let got: Vec<&str> = scaffold_ids(&record).into_iter().map(ContainerId::as_str).collect();
            assert_eq!(&got, want, "{steps:?}");
        }
    }

    #[test]
    fn a_renamed_backup_is_still_known_but_one_put_back_under_its_name_is_the_operators() {
        let ops = [op("web", &[Step::Prepared, Step::Created, Step::Stopped, Step::Started, Step::Failed])];
        let known = Scaffolding::from_journal(&ops);
        let old = ContainerId::new("old");
        let labels = BTreeMap::from([("tier".to_string(), "front".to_string())]);
        assert!(known.contains(&old, "web-previous", &labels), "renamed by hand, still the backup");
        assert!(!known.contains(&old, "web", &labels), "restored by hand under its own name");
        assert!(!known.contains(&ContainerId::new("new"), "web", &labels), "the new container is the target");
        assert!(!Scaffolding::default().contains(&old, "web-previous", &labels), "no journal, no record");
    }
}
