//! Leftovers whose journal record is lost: a `NAME--cu-backup-…` or
//! `NAME--cu-new-…` container that no readable record names, of an op whose
//! record this journal moved aside as damaged (the file keeps the op's id
//! in its name). Leftovers of ops no record of this journal ever named —
//! another state directory's swaps, in progress or not — are not ours.
//!
//! They are resolved by the rule recovery uses for any op — Docker's state
//! wins: if the old container (the backup) exists it is given its name
//! back and the new one is removed; otherwise the new one is kept. A record
//! is rebuilt from what Docker shows and journaled like any other op, so
//! the outcome is on record. Only a container that carries this tool's op
//! label with the matching suffix is ever removed; a backup is never
//! removed, only restored.

use std::collections::{BTreeMap, HashSet};

use super::{finish, Recovered};
use crate::engine::Engine;
use crate::observe::ObservedContainer;
use crate::swap::journal::{Journal, OpRecord, Step};
use crate::swap::scaffold::{parse_name, Part};
use crate::swap::{backup_name, temp_name, SwapError, OP_LABEL};
use crate::types::{ContainerId, ImageId, OpId};

/// One lost op's containers, found by name.
#[derive(Default)]
struct Group<'a> {
    backup: Option<&'a ObservedContainer>,
    temp: Option<&'a ObservedContainer>,
}

/// Resolves every group of leftovers that no record in `ops` names.
pub(super) async fn resolve(
    engine: &Engine,
    journal: &Journal,
    ops: &[OpRecord],
    containers: &[ObservedContainer],
) -> (Vec<Recovered>, Vec<SwapError>) {
    let mut done = Vec::new();
    let mut problems = Vec::new();
    let lost: HashSet<String> = journal.lost_ops().iter().map(OpId::suffix).collect();
    if lost.is_empty() {
        return (done, problems);
    }
    for ((base, suffix), group) in groups(ops, containers).into_iter().filter(|((_, s), _)| lost.contains(s))
    {
        // A swap that began after the journal was read holds this lock and
        // has a record; resolving its containers would break it.
        let Ok(_lock) = journal.lock(&base) else { continue };
        match journal.ops() {
            Ok(now) if !names_known(&now, &base, &suffix) => {}
            _ => continue,
        }
        match rebuild(engine, &base, &suffix, &group, containers).await {
            Ok(op) => match record_and_finish(engine, journal, op).await {
                Ok(r) => done.push(r),
                Err(e) => problems.push(e),
            },
            Err(reason) => problems.push(SwapError::Stuck {
                container: base.clone(),
                op_id: OpId::new(format!("lost-{suffix}")),
                reason,
            }),
        }
    }
    (done, problems)
}

/// Leftover names no record knows, grouped by (container, op suffix).
fn groups<'a>(
    ops: &[OpRecord],
    containers: &'a [ObservedContainer],
) -> BTreeMap<(String, String), Group<'a>> {
    let known: HashSet<&str> =
        ops.iter().flat_map(|op| [op.backup_name.as_str(), op.temp_name.as_str()]).collect();
    let mut groups: BTreeMap<(String, String), Group<'a>> = BTreeMap::new();
    for c in containers.iter().filter(|c| !known.contains(c.name.as_str())) {
        let Some((base, part)) = parse_name(&c.name) else { continue };
        let suffix = c.name.rsplit('-').next().unwrap_or_default();
        let group = groups.entry((base.to_string(), suffix.to_string())).or_default();
        match part {
            Part::Backup => group.backup = Some(c),
            Part::New => group.temp = Some(c),
            Part::Helper => {}
        }
    }
    groups.retain(|(_, suffix), g| !suffix.is_empty() && (g.backup.is_some() || g.temp.is_some()));
    groups
}

fn names_known(ops: &[OpRecord], base: &str, suffix: &str) -> bool {
    let (b, t) = (backup_name(base, suffix), temp_name(base, suffix));
    ops.iter().any(|op| op.backup_name == b || op.temp_name == t)
}

/// The op label's id when it belongs to the op of `suffix`.
fn labelled_op(c: &ObservedContainer, suffix: &str) -> Option<OpId> {
    let id = OpId::parse(c.labels.get(OP_LABEL)?).ok()?;
    (id.suffix() == suffix).then_some(id)
}

/// A record for the lost op, from Docker's state: the backup is the old
/// container; the new one is the temporary container or the container
/// carrying the name with this op's label.
async fn rebuild(
    engine: &Engine,
    base: &str,
    suffix: &str,
    group: &Group<'_>,
    containers: &[ObservedContainer],
) -> Result<OpRecord, String> {
    let new = match group.temp {
        Some(temp) => Some(temp),
        None => containers.iter().find(|c| c.name == base && labelled_op(c, suffix).is_some()),
    };
    let new_op = new.and_then(|n| labelled_op(n, suffix));
    if new.is_some() && new_op.is_none() {
        return Err(format!(
            "{base}--cu-new-{suffix} has no journal record and does not carry this tool's op label; left as it is"
        ));
    }
    let was_running = match (group.backup, new) {
        (Some(b), Some(n)) => was_running(engine, &b.id, &n.id).await,
        _ => true,
    };
    let op_id = new_op.unwrap_or_else(OpId::generate);
    let describe = |c: Option<&ObservedContainer>| c.map(|c| c.image.clone()).unwrap_or_default();
    Ok(OpRecord {
        op_id,
        container: base.to_string(),
        // A backup that is gone is looked up by its name: not found.
        old_id: group.backup.map_or_else(|| ContainerId::new(backup_name(base, suffix)), |b| b.id.clone()),
        old_image: describe(group.backup),
        old_image_id: group.backup.map_or_else(|| ImageId::new(""), |b| b.image_id.clone()),
        new_image: describe(new),
        new_image_id: new.map_or_else(|| ImageId::new(""), |n| n.image_id.clone()),
        was_running,
        order: crate::manifest::Order::StopFirst,
        backup_name: backup_name(base, suffix),
        temp_name: temp_name(base, suffix),
        new_id: new.map(|n| n.id.clone()),
        steps: Vec::new(),
        reason: None,
        follows: None,
        stop_grace_secs: None,
        hooks: Vec::new(),
        left_networks: Vec::new(),
        service: None,
    })
}

/// Whether the old container was running when the lost op began: the new
/// container is created before the old one is stopped, so a backup that
/// stopped after the new one was created was stopped by the swap.
async fn was_running(engine: &Engine, backup: &ContainerId, new: &ContainerId) -> bool {
    let (Ok(Some(b)), Ok(Some(n))) =
        (engine.inspect_container(backup.as_str()).await, engine.inspect_container(new.as_str()).await)
    else {
        return true;
    };
    let finished = b.state.and_then(|s| s.finished_at).and_then(|t| humantime::parse_rfc3339_weak(&t).ok());
    let created = n.created.and_then(|t| humantime::parse_rfc3339_weak(&t).ok());
    match (finished, created) {
        (Some(f), Some(c)) => f >= c,
        _ => true,
    }
}

async fn record_and_finish(
    engine: &Engine,
    journal: &Journal,
    mut op: OpRecord,
) -> Result<Recovered, SwapError> {
    const LOST: &str = "journal record lost, rebuilt from Docker's state";
    journal.record(&mut op, Step::Prepared, Some(LOST.into()))?;
    let mut recovered = finish(engine, journal, op).await?;
    recovered.action = format!("journal record lost; {}", recovered.action);
    let reason = recovered.op.reason.take().unwrap_or_default();
    recovered.op.reason = Some(format!("{LOST}; {reason}"));
    journal.write(&recovered.op)?;
    Ok(recovered)
}
