//! Finishing or undoing swaps a crash interrupted.
//!
//! The invariant, after `recover` at any point of any swap: exactly one
//! container carries the target's name, from the old or the new image, in
//! the state the old one was in (running or not), and no backup or
//! temporary container of a finished op is left. Recovery keys on container
//! ids recorded in the journal — never on what names happen to say — and
//! trusts Docker over the journal: a crash can fall between a Docker call
//! and the record of it.

mod orphans;

use std::time::{Duration, SystemTime};

use super::journal::{Journal, OpRecord, Step};
use super::{SwapError, OP_LABEL};
use crate::engine::{ContainerDetails, Engine, EngineError};
use crate::observe::ObservedContainer;

/// What recovery did with one op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The op, as now journaled.
    pub op: OpRecord,
    /// What was done, in words.
    pub action: String,
}

/// Which way an interrupted op is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The old container still exists: give it its name back (and its
    /// running state); the new one is removed.
    RestoreOld,
    /// The old container is gone — the commit removed it — so the new one
    /// is the target: make sure it has the name and runs.
    KeepNew,
    /// Neither exists: nothing can be restored; record the loss loudly.
    Lost,
}

/// The pure decision: only whether each container still exists matters.
pub fn decide(old_exists: bool, new_exists: bool) -> Decision {
    match (old_exists, new_exists) {
        (true, _) => Decision::RestoreOld,
        (false, true) => Decision::KeepNew,
        (false, false) => Decision::Lost,
    }
}

/// What a recovery did, and what it could not do.
#[derive(Debug, Default)]
pub struct Recovery {
    /// What was finished, undone or cleaned up.
    pub done: Vec<Recovered>,
    /// What needs attention: ops that could not be finished (they stay in
    /// the journal and the next recovery tries again) and damaged journal
    /// records (moved aside to `damaged/`).
    pub problems: Vec<SwapError>,
}

/// How long a restored or kept container must stay up before recovery
/// calls it done: a container that dies at once is not "restored".
const SETTLE: Duration = Duration::from_secs(1);
/// Beyond the stop timeout, how long an accepted stop may take to show.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Finishes every unfinished container op in the journal, then removes
/// leftovers of finished ones and resolves leftovers whose record is lost.
/// Ops whose lock another live process holds are in progress and skipped.
/// Service ops are Swarm's to finish (`swarm::recover_services`); a pass
/// runs both (`reconcile::recover`).
pub async fn recover(engine: &Engine, journal: &Journal) -> Result<Recovery, SwapError> {
    recover_except(engine, journal, |_| false).await
}

/// Like [`recover`], leaving alone the ops `skip` names (the controller
/// cannot undo a swap whose new container is itself: a helper does).
/// `Err` only when the journal or the engine cannot be read at all.
pub async fn recover_except(
    engine: &Engine,
    journal: &Journal,
    skip: impl Fn(&OpRecord) -> bool,
) -> Result<Recovery, SwapError> {
    let scan = journal.scan()?;
    let mut recovery = Recovery::default();
    for damaged in &scan.damaged {
        let moved_to = journal.quarantine(damaged).map_err(|e| e.to_string());
        tracing::error!(path = %damaged.path.display(), reason = %damaged.reason, "damaged journal record");
        recovery.problems.push(SwapError::DamagedRecord {
            path: damaged.path.clone(),
            reason: damaged.reason.clone(),
            moved_to,
        });
    }
    for op in scan.ops.iter().filter(|op| !op.is_finished() && op.service.is_none() && !skip(op)) {
        let Ok(_lock) = journal.lock(&op.container) else {
            tracing::info!(op_id = %op.op_id, container = %op.container, "op in progress elsewhere; left alone");
            continue;
        };
        // Re-read under the lock: the holder may have finished it meanwhile.
        let Some(op) = journal.read(&op.op_id)?.filter(|o| !o.is_finished()) else { continue };
        match finish(engine, journal, op).await {
            Ok(done) => recovery.done.push(done),
            Err(e) => recovery.problems.push(e),
        }
    }
    let containers = engine.list_containers().await.map_err(|e| SwapError::unchanged("(all)", e))?;
    let ops = journal.ops()?;
    recovery.done.extend(sweep(engine, &ops, &containers).await);
    let (done, problems) = orphans::resolve(engine, journal, &ops, &containers).await;
    recovery.done.extend(done);
    recovery.problems.extend(problems);
    Ok(recovery)
}

async fn finish(engine: &Engine, journal: &Journal, mut op: OpRecord) -> Result<Recovered, SwapError> {
    let stuck = |op: &mut OpRecord, reason: String| {
        op.reason = Some(reason.clone());
        if let Err(e) = journal.write(op) {
            tracing::error!(error = %e, "journaling why recovery failed");
        }
        SwapError::Stuck { container: op.container.clone(), op_id: op.op_id.clone(), reason }
    };
    let step = op.step().map_or("nothing", |s| s.name());
    wait_out_stop(engine, &op).await;
    let old =
        engine.inspect_container(op.old_id.as_str()).await.map_err(|e| stuck(&mut op, e.to_string()))?;
    let new = new_container(engine, &op).await.map_err(|e| stuck(&mut op, e.to_string()))?;
    match decide(old.is_some(), new.is_some()) {
        Decision::RestoreOld => {
            let restored = match restore_old(engine, &op).await {
                Ok(()) => verify(engine, &op, op.old_id.as_str()).await,
                Err(e) => Err(e),
            };
            restored.map_err(|e| {
                stuck(&mut op, format!("interrupted after `{step}`; restoring the old container failed: {e}"))
            })?;
            // Killed during `pre_upgrade`: the old container was never
            // touched, so the op ended before any change.
            if op.step() == Some(Step::PreUpgrade) {
                let reason = "interrupted during the pre_upgrade hook; nothing had changed".to_string();
                journal.record(&mut op, Step::Aborted, Some(reason))?;
                return Ok(Recovered { action: "closed the op: nothing had changed".into(), op });
            }
            let reason = format!("interrupted after `{step}`; recovery restored the old container");
            journal.record(&mut op, Step::RolledBack, Some(reason))?;
            Ok(Recovered { action: "restored the old container".into(), op })
        }
        Decision::KeepNew => {
            let id = new.and_then(|n| n.id).unwrap_or_default();
            let kept = match keep_new(engine, &op, &id).await {
                Ok(()) => verify(engine, &op, &id).await,
                Err(e) => Err(e),
            };
            kept.map_err(|e| {
                stuck(&mut op, format!("interrupted after `{step}`; keeping the new container failed: {e}"))
            })?;
            let reason = format!(
                "interrupted after `{step}`; the old container was already removed, the new one is kept"
            );
            journal.record(&mut op, Step::Committed, Some(reason))?;
            Ok(Recovered { action: "kept the new container".into(), op })
        }
        Decision::Lost => {
            let reason =
                format!("interrupted after `{step}`; neither the old nor the new container exists any more");
            journal.record(&mut op, Step::Failed, Some(reason.clone()))?;
            Err(SwapError::Stuck { container: op.container.clone(), op_id: op.op_id.clone(), reason })
        }
    }
}

/// An op interrupted between asking the engine to stop the old container
/// and recording that it stopped: the engine finishes an accepted stop even
/// though its caller died, so judging the old container "running" now
/// would be undone a moment later. Waits until it is not running, or until
/// its stop timeout (plus a margin) has passed since the intent — then the
/// stop was never sent.
async fn wait_out_stop(engine: &Engine, op: &OpRecord) {
    if op.step() != Some(Step::Stopping) {
        return;
    }
    let since = op
        .steps
        .last()
        .and_then(|s| humantime::parse_rfc3339(&s.at).ok())
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .unwrap_or_default();
    let grace = Duration::from_secs(op.stop_grace_secs.unwrap_or(10)) + STOP_MARGIN;
    let Some(left) = grace.checked_sub(since) else { return };
    tracing::info!(op_id = %op.op_id, wait_s = left.as_secs(), "waiting out an interrupted stop");
    let deadline = tokio::time::Instant::now() + left;
    while tokio::time::Instant::now() < deadline {
        match engine.inspect_container(op.old_id.as_str()).await {
            Ok(Some(c)) if c.state.as_ref().and_then(|s| s.running).unwrap_or(false) => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that the container that now carries the op's name is `id` and,
/// when the old one was running, that it still runs after [`SETTLE`].
pub(crate) async fn verify(engine: &Engine, op: &OpRecord, id: &str) -> Result<(), String> {
    if op.was_running {
        tokio::time::sleep(SETTLE).await;
    }
    let c = engine
        .inspect_container(&op.container)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no container carries the name {} afterwards", op.container))?;
    if c.id.as_deref() != Some(id) {
        return Err(format!("another container carries the name {} afterwards", op.container));
    }
    let state = c.state.unwrap_or_default();
    if op.was_running && !state.running.unwrap_or(false) {
        return Err(format!(
            "{} did not stay running (status {}, exit code {})",
            op.container,
            state.status.map(|s| s.to_string()).unwrap_or_default(),
            state.exit_code.unwrap_or_default()
        ));
    }
    Ok(())
}

/// The op's new container: by recorded id, else by its temporary name (a
/// crash can fall between create and its journal record) — and only if it
/// is provably this op's ([`owned_by`]): a forged id in a record must never
/// name a user's container for removal.
async fn new_container(engine: &Engine, op: &OpRecord) -> Result<Option<ContainerDetails>, EngineError> {
    if let Some(id) = &op.new_id {
        if let Some(c) = engine.inspect_container(id.as_str()).await?.filter(|c| owned_by(c, op)) {
            return Ok(Some(c));
        }
    }
    let by_name = engine.inspect_container(&op.temp_name).await?;
    Ok(by_name.filter(|c| owned_by(c, op)))
}

/// True when `c` is the new container of `op`: never the old one, and it
/// carries the op's label or the op's temporary name.
fn owned_by(c: &ContainerDetails, op: &OpRecord) -> bool {
    let labelled = c
        .config
        .as_ref()
        .and_then(|cfg| cfg.labels.as_ref())
        .and_then(|l| l.get(OP_LABEL))
        .is_some_and(|v| v == op.op_id.as_str());
    let temp = c.name.as_deref().map(|n| n.trim_start_matches('/')) == Some(op.temp_name.as_str());
    c.id.as_deref() != Some(op.old_id.as_str()) && (labelled || temp)
}

/// Removes the op's new container, if there is one.
pub(crate) async fn remove_new(engine: &Engine, op: &OpRecord) -> Result<(), String> {
    if let Some(new) = new_container(engine, op).await.map_err(|e| e.to_string())? {
        let id = new.id.unwrap_or_default();
        engine.remove(&id).await.map_err(|e| format!("removing the new container: {e}"))?;
    }
    Ok(())
}

/// Removes the op's new container (by id, and by temporary name), gives the
/// old container its name back and restarts it if it was running.
pub async fn restore_old(engine: &Engine, op: &OpRecord) -> Result<(), String> {
    remove_new(engine, op).await?;
    let old = op.old_id.as_str();
    let current = engine.inspect_container(old).await.map_err(|e| e.to_string())?;
    let name = current.as_ref().and_then(|c| c.name.as_deref()).map(|n| n.trim_start_matches('/'));
    if name != Some(op.container.as_str()) {
        engine
            .rename(old, &op.container)
            .await
            .map_err(|e| format!("renaming the old container back: {e}"))?;
    }
    rejoin_left_networks(engine, op, current.as_ref()).await?;
    if op.was_running {
        engine.start(old).await.map_err(|e| format!("starting the old container: {e}"))?;
    }
    Ok(())
}

/// Connects the old container of a start-first op again to the networks
/// it was taken off (with its aliases), those it is not on now.
async fn rejoin_left_networks(
    engine: &Engine,
    op: &OpRecord,
    current: Option<&ContainerDetails>,
) -> Result<(), String> {
    let on = current.and_then(|c| c.network_settings.as_ref()).and_then(|n| n.networks.as_ref());
    for left in op.left_networks.iter().filter(|l| !on.is_some_and(|on| on.contains_key(&l.network))) {
        engine
            .connect_network(&left.network, &op.old_id, left.endpoint())
            .await
            .map_err(|e| format!("connecting the old container to network {} again: {e}", left.network))?;
    }
    Ok(())
}

/// Makes sure the new container carries the name and runs as the old did.
async fn keep_new(engine: &Engine, op: &OpRecord, id: &str) -> Result<(), String> {
    let details = engine.inspect_container(id).await.map_err(|e| e.to_string())?;
    let name = details.as_ref().and_then(|c| c.name.as_deref()).map(|n| n.trim_start_matches('/'));
    if name != Some(op.container.as_str()) {
        engine.rename(id, &op.container).await.map_err(|e| format!("renaming the new container: {e}"))?;
    }
    if op.was_running {
        engine.start(id).await.map_err(|e| format!("starting the new container: {e}"))?;
    }
    Ok(())
}

/// Removes what finished ops left behind: the backup of a committed op (the
/// old container), the new container of a rolled-back or aborted op. A
/// failed op (rollback disabled) keeps its backup on purpose. Only a
/// container with the op's backup or temporary name is considered, and the
/// old one only by its recorded id.
async fn sweep(engine: &Engine, ops: &[OpRecord], containers: &[ObservedContainer]) -> Vec<Recovered> {
    if !containers.iter().any(|c| super::swapped_name(&c.name).is_some()) {
        return Vec::new();
    }
    let mut swept = Vec::new();
    for op in ops.iter().filter(|op| op.is_finished()) {
        for c in containers.iter().filter(|c| c.name == op.backup_name || c.name == op.temp_name) {
            let is_old = c.id == op.old_id;
            let remove = match op.step() {
                Some(Step::Committed) => is_old && c.name == op.backup_name,
                Some(Step::RolledBack | Step::Aborted) => !is_old && c.name == op.temp_name,
                _ => false,
            };
            if !remove {
                continue;
            }
            if let Err(e) = engine.remove(c.id.as_str()).await {
                tracing::warn!(container = %c.name, error = %e, "leftover not removed");
                continue;
            }
            swept.push(Recovered { action: format!("removed leftover {}", c.name), op: op.clone() });
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_container_wins_whenever_it_still_exists() {
        assert_eq!(decide(true, true), Decision::RestoreOld);
        assert_eq!(decide(true, false), Decision::RestoreOld);
        assert_eq!(decide(false, true), Decision::KeepNew);
        assert_eq!(decide(false, false), Decision::Lost);
    }
}
