//! Finishing or undoing swaps a crash interrupted.
//!
//! The invariant, after `recover` at any point of any swap: exactly one
//! container carries the target's name, from the old or the new image, in
//! the state the old one was in (running or not), and no backup or
//! temporary container of a finished op is left. Recovery keys on container
//! ids recorded in the journal — never on what names happen to say — and
//! trusts Docker over the journal: a crash can fall between a Docker call
//! and the record of it.

use super::journal::{Journal, OpRecord, Step};
use super::SwapError;
use crate::engine::{ContainerDetails, Engine, EngineError};

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

/// Finishes every unfinished op in the journal, then removes leftovers of
/// finished ones. Ops whose lock another live process holds are in progress
/// and skipped.
pub async fn recover(engine: &Engine, journal: &Journal) -> Result<Vec<Recovered>, SwapError> {
    recover_except(engine, journal, |_| false).await
}

/// Like [`recover`], leaving alone the ops `skip` names (the controller
/// cannot undo a swap whose new container is itself: a helper does).
pub async fn recover_except(
    engine: &Engine,
    journal: &Journal,
    skip: impl Fn(&OpRecord) -> bool,
) -> Result<Vec<Recovered>, SwapError> {
    let mut done = Vec::new();
    for op in journal.unfinished()?.into_iter().filter(|op| !skip(op)) {
        let Ok(_lock) = journal.lock(&op.container) else {
            tracing::info!(op_id = %op.op_id, container = %op.container, "op in progress elsewhere; left alone");
            continue;
        };
        // Re-read under the lock: the holder may have finished it meanwhile.
        let Some(op) = journal.unfinished()?.into_iter().find(|o| o.op_id == op.op_id) else { continue };
        done.push(finish(engine, journal, op).await?);
    }
    done.extend(sweep(engine, journal).await?);
    Ok(done)
}

async fn finish(engine: &Engine, journal: &Journal, mut op: OpRecord) -> Result<Recovered, SwapError> {
    let stuck = |op: &OpRecord, reason: String| SwapError::Stuck {
        container: op.container.clone(),
        op_id: op.op_id.to_string(),
        reason,
    };
    let step = op.step().map_or("nothing", |s| s.name());
    let old = engine.inspect_container(op.old_id.as_str()).await.map_err(|e| stuck(&op, e.to_string()))?;
    let new = new_container(engine, &op).await.map_err(|e| stuck(&op, e.to_string()))?;
    match decide(old.is_some(), new.is_some()) {
        Decision::RestoreOld => {
            restore_old(engine, &op).await.map_err(|e| stuck(&op, e))?;
            let reason = format!("interrupted after `{step}`; recovery restored the old container");
            journal.record(&mut op, Step::RolledBack, Some(reason))?;
            Ok(Recovered { action: "restored the old container".into(), op })
        }
        Decision::KeepNew => {
            let id = new.and_then(|n| n.id).unwrap_or_default();
            keep_new(engine, &op, &id).await.map_err(|e| stuck(&op, e))?;
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
            Err(stuck(&op, reason))
        }
    }
}

/// The op's new container: by recorded id, else by its temporary name (a
/// crash can fall between create and its journal record).
async fn new_container(engine: &Engine, op: &OpRecord) -> Result<Option<ContainerDetails>, EngineError> {
    if let Some(id) = &op.new_id {
        if let Some(c) = engine.inspect_container(id.as_str()).await? {
            return Ok(Some(c));
        }
    }
    let by_name = engine.inspect_container(&op.temp_name).await?;
    // Only a container that is not the old one can be the new one.
    Ok(by_name.filter(|c| c.id.as_deref() != Some(op.old_id.as_str())))
}

/// Removes the op's new container (by id, and by temporary name), gives the
/// old container its name back and restarts it if it was running.
pub async fn restore_old(engine: &Engine, op: &OpRecord) -> Result<(), String> {
    if let Some(new) = new_container(engine, op).await.map_err(|e| e.to_string())? {
        let id = new.id.unwrap_or_default();
        engine.remove(&id).await.map_err(|e| format!("removing the new container: {e}"))?;
    }
    let old = op.old_id.as_str();
    let current = engine.inspect_container(old).await.map_err(|e| e.to_string())?;
    let name = current.as_ref().and_then(|c| c.name.as_deref()).map(|n| n.trim_start_matches('/'));
    if name != Some(op.container.as_str()) {
        engine
            .rename(old, &op.container)
            .await
            .map_err(|e| format!("renaming the old container back: {e}"))?;
    }
    if op.was_running {
        engine.start(old).await.map_err(|e| format!("starting the old container: {e}"))?;
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
/// old container), the new container of a rolled-back or failed-before-swap
/// op. A failed op with rollback disabled keeps its backup on purpose.
async fn sweep(engine: &Engine, journal: &Journal) -> Result<Vec<Recovered>, SwapError> {
    let containers = engine
        .list_containers()
        .await
        .map_err(|e| SwapError::Unchanged { container: "(all)".into(), reason: e.to_string() })?;
    if !containers.iter().any(|c| super::swapped_name(&c.name).is_some()) {
        return Ok(Vec::new());
    }
    let mut swept = Vec::new();
    for op in journal.ops()?.into_iter().filter(OpRecord::is_finished) {
        let kept_backup = op.step() == Some(Step::Failed) && op.steps.iter().any(|s| s.step == Step::Started);
        for c in containers.iter().filter(|c| c.name == op.backup_name || c.name == op.temp_name) {
            let is_old = c.id == op.old_id;
            let remove = match op.step() {
                Some(Step::Committed) => is_old,
                Some(Step::RolledBack) => !is_old,
                Some(Step::Failed) => !is_old || !kept_backup,
                _ => false,
            };
            // Never remove the old container of an op that did not commit.
            if remove && !(is_old && op.step() != Some(Step::Committed)) {
                if let Err(e) = engine.remove(c.id.as_str()).await {
                    tracing::warn!(container = %c.name, error = %e, "leftover not removed");
                    continue;
                }
                swept.push(Recovered { action: format!("removed leftover {}", c.name), op: op.clone() });
            }
        }
    }
    Ok(swept)
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
