//! Swarm services (DESIGN.md §11): a service target is upgraded through
//! the orchestrator, not by swapping containers. One service update — the
//! image pinned by digest, an `UpdateConfig` from the target's settings
//! ([`rollout`]) — watched through `UpdateStatus` until Swarm says
//! completed, paused or rolled back, journaled and reported as a swap is.
//!
//! An update already under way (someone's `docker service update`, or
//! ours from a pass that ended early) is waited for, never stacked. The
//! controller deployed as a service upgrades its own service the same way:
//! Swarm replaces its task, and the new task reads the op from the journal
//! and finishes it ([`recover`]).

pub mod rollout;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::engine::{Engine, EngineError, ServiceDetails};
use crate::swap::journal::{Journal, OpRecord, ServiceOp, Step};
use crate::swap::recover::{Recovered, Recovery};
use crate::swap::{NoChange, Outcome, SwapError, SwapRequest, Swapper};
use crate::types::{ContainerId, ImageId, OpId};
use rollout::{Ending, Rollout};

/// How often a watched service is inspected.
const POLL: Duration = Duration::from_millis(500);
/// The reason of an op whose service was removed while it was updated.
const GONE: &str = "the service was removed during its update";
/// How many task errors a rolled-back op's reason quotes.
const TASK_ERRORS: usize = 3;

/// The journal lock of service `name`, apart from a container's of the
/// same name.
pub fn lock_name(name: &str) -> String {
    format!("service.{name}")
}

/// Updates service `req.container` to `req.image` (pinned to
/// `req.planned` when the plan resolved a digest) and watches the update
/// to its end.
///
/// Once `stopping` is set the watch ends, leaving the op `started`: Swarm
/// carries the update on without us, and the next controller's recovery
/// reads how it ended. A controller upgrading its own service is stopped
/// by that very update, and must not hold its task up until Swarm kills it.
pub async fn update(
    swapper: &Swapper,
    req: &SwapRequest,
    stopping: &AtomicBool,
) -> Result<Outcome, SwapError> {
    let span = tracing::info_span!("service_update", service = %req.container, to = %req.image.familiar(), op_id = tracing::field::Empty);
    update_in_span(swapper, req, stopping).instrument(span).await
}

async fn update_in_span(
    swapper: &Swapper,
    req: &SwapRequest,
    stopping: &AtomicBool,
) -> Result<Outcome, SwapError> {
    let name = req.container.as_str();
    let journal = swapper.journal();
    let engine = swapper.engine();
    let _lock = journal.lock(&lock_name(name)).map_err(|e| SwapError::unchanged(name, e))?;
    let unchanged = |e: EngineError| SwapError::unchanged(name, e);
    let mut service = inspect(engine, name).await?;
    let deadline = rollout::deadline(&req.settings, service_tasks(&service));
    if service.update.is_some_and(rollout::UpdateState::in_progress) {
        tracing::info!(state = service.update.map_or("", |s| s.name()), "waiting for the update under way");
        service = wait_settled(engine, name, deadline).await?;
    }
    let image = match &req.planned {
        Some(d) => req.image.with_digest(d.clone()).familiar(),
        None => req.image.familiar(),
    };
    if same_image(&service.image, &image) {
        return Ok(Outcome::AlreadyCurrent { container: name.to_string(), image });
    }
    let mut op = new_op(req, &service, &image, deadline);
    tracing::Span::current().record("op_id", op.op_id.as_str());
    journal.record(&mut op, Step::Prepared, None)?;
    let rollout = Rollout::from_settings(&req.settings);
    // Sent with the update (`--with-registry-auth`): the nodes pull with it.
    let credentials = crate::registry::for_engine(req.image.registry(), "updating the service").await;
    match engine.update_service(&service, &image, &rollout, credentials).await {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!(warning = %w, "Swarm's warning on the update");
            }
        }
        Err(e) => {
            journal.record(&mut op, Step::Aborted, Some(e.to_string()))?;
            return Err(unchanged(e));
        }
    }
    journal.record(&mut op, Step::Started, None)?;
    match watch(engine, &op, deadline, stopping).await? {
        Some((ending, message)) => finish(engine, journal, op, ending, message).await,
        None => {
            let reason = if stopping.load(Ordering::SeqCst) {
                "the controller stopped while Swarm was updating; Swarm carries on, and the next controller reads how it ended".to_string()
            } else {
                format!(
                    "Swarm did not finish the update within {}s; it carries on, and the next pass reads how it ended",
                    deadline.as_secs()
                )
            };
            op.reason = Some(reason.clone());
            journal.write(&op)?;
            Err(SwapError::Stuck { container: name.to_string(), op_id: op.op_id, reason })
        }
    }
}

/// Finishes every unfinished service op in the journal: each one whose
/// watch no live process holds is read again and Swarm's verdict
/// journaled ([`recover`]). `Err` only when the journal cannot be read.
pub async fn recover_services(engine: &Engine, journal: &Journal) -> Result<Recovery, SwapError> {
    let mut recovery = Recovery::default();
    // Damaged records are the container pass's to report and move aside.
    let ops = journal.scan()?.ops;
    for op in ops.iter().filter(|op| !op.is_finished() && op.service.is_some()) {
        let Ok(_lock) = journal.lock(&lock_name(&op.container)) else {
            tracing::info!(op_id = %op.op_id, service = %op.container, "service update watched elsewhere; left alone");
            continue;
        };
        let Some(op) = journal.read(&op.op_id)?.filter(|o| !o.is_finished()) else { continue };
        match recover(engine, journal, op).await {
            Ok(Some(done)) => recovery.done.push(done),
            Ok(None) => {}
            Err(e) => recovery.problems.push(e),
        }
    }
    Ok(recovery)
}

/// Finishes an interrupted service op: reads how Swarm's update ended
/// (waiting for it up to its deadline), and journals that. `Ok(None)`:
/// still running; left for the next recovery.
pub async fn recover(
    engine: &Engine,
    journal: &Journal,
    mut op: OpRecord,
) -> Result<Option<Recovered>, SwapError> {
    let Some(service_op) = op.service.clone() else { return Ok(None) };
    let found =
        engine.inspect_service(&op.container).await.map_err(|e| SwapError::unchanged(&op.container, e))?;
    // Removed meanwhile: nothing is left to finish, and an op that could
    // never end must not hold every later pass up.
    let Some(service) = found else {
        journal.record(&mut op, Step::Failed, Some(GONE.to_string()))?;
        return Ok(Some(Recovered { action: "the service was removed".into(), op }));
    };
    let (_, spec_digest) = crate::engine::split_pin(&service.image);
    let pinned_ours = spec_digest.is_some_and(|d| d.as_str() == op.new_image_id.as_str());
    let issued = service.update_started_at != service_op.previous_update || pinned_ours;
    if op.step() == Some(Step::Prepared) && !issued {
        let reason = "interrupted before the service update was issued; nothing changed".to_string();
        journal.record(&mut op, Step::Aborted, Some(reason))?;
        return Ok(Some(Recovered { action: "nothing to undo: the update was never issued".into(), op }));
    }
    let deadline = Duration::from_secs(service_op.deadline_secs);
    let since = op
        .steps
        .last()
        .and_then(|s| humantime::parse_rfc3339(&s.at).ok())
        .and_then(|at| std::time::SystemTime::now().duration_since(at).ok())
        .unwrap_or_default();
    let left = deadline.saturating_sub(since).max(POLL);
    match watch(engine, &op, left, &AtomicBool::new(false)).await? {
        Some((ending, message)) => {
            let outcome = finish(engine, journal, op, ending, message).await?;
            let action =
                format!("read how Swarm's update ended: {}", outcome.op().map_or("", |o| o.outcome().name()));
            Ok(outcome.op().cloned().map(|op| Recovered { action, op }))
        }
        None => Ok(None),
    }
}

async fn inspect(engine: &Engine, name: &str) -> Result<ServiceDetails, SwapError> {
    engine
        .inspect_service(name)
        .await
        .map_err(|e| SwapError::unchanged(name, e))?
        .ok_or_else(|| SwapError::unchanged(name, NoChange::NoSuchService(name.to_string())))
}

/// The tasks an update replaces, for its deadline.
fn service_tasks(service: &ServiceDetails) -> u64 {
    service.replicas.unwrap_or(1)
}

/// True when the spec's image is `wanted`: the same text, or the same
/// repository pinned to the same digest (Swarm writes the reference its
/// own way, e.g. with `docker.io/library/`).
fn same_image(spec: &str, wanted: &str) -> bool {
    use crate::reference::ImageRef;
    match (ImageRef::parse(spec), ImageRef::parse(wanted)) {
        (Ok(a), Ok(b)) => a.name() == b.name() && a.digest().is_some() && a.digest() == b.digest(),
        _ => spec == wanted,
    }
}

/// Waits until no update is under way; returns the service as it is then.
async fn wait_settled(engine: &Engine, name: &str, limit: Duration) -> Result<ServiceDetails, SwapError> {
    let start = Instant::now();
    loop {
        let service = inspect(engine, name).await?;
        if !service.update.is_some_and(rollout::UpdateState::in_progress) {
            return Ok(service);
        }
        if start.elapsed() > limit {
            return Err(SwapError::unchanged(
                name,
                NoChange::NotAllowed(format!(
                    "an update of service {name} is still under way after {}s; it is not stacked on",
                    limit.as_secs()
                )),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Watches the op's update until Swarm ends it; `None` past `limit` or
/// once `stopping`.
async fn watch(
    engine: &Engine,
    op: &OpRecord,
    limit: Duration,
    stopping: &AtomicBool,
) -> Result<Option<(Ending, String)>, SwapError> {
    let previous = op.service.as_ref().and_then(|s| s.previous_update.clone());
    let start = Instant::now();
    loop {
        let found = engine
            .inspect_service(&op.container)
            .await
            .map_err(|e| SwapError::unchanged(&op.container, e))?;
        let Some(service) = found else { return Ok(Some((Ending::Failed, GONE.to_string()))) };
        // A status that started when the one before ours did is not ours.
        let ours = service.update_started_at.is_some() && service.update_started_at != previous;
        if let Some(ending) = service.update.filter(|_| ours).and_then(rollout::ending) {
            return Ok(Some((ending, service.update_message.unwrap_or_default())));
        }
        if start.elapsed() > limit || stopping.load(Ordering::SeqCst) {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Journals how the update ended; the reason of a failed one quotes
/// Swarm's message and the newest task errors.
async fn finish(
    engine: &Engine,
    journal: &Journal,
    mut op: OpRecord,
    ending: Ending,
    message: String,
) -> Result<Outcome, SwapError> {
    if ending == Ending::Committed {
        journal.record(&mut op, Step::Committed, None)?;
        return Ok(Outcome::Committed(op));
    }
    let id = op.old_id.as_str().to_string();
    let errors = match engine.task_errors(&id, TASK_ERRORS).await {
        _ if message == GONE => Vec::new(),
        Ok(errors) => errors,
        Err(e) => vec![format!("(task errors could not be read: {e})")],
    };
    let tasks = if errors.is_empty() { String::new() } else { format!("; {}", errors.join("; ")) };
    let reason = format!("{}{tasks}", message.trim());
    Ok(match ending {
        Ending::RolledBack => {
            journal.record(&mut op, Step::RolledBack, Some(reason))?;
            Outcome::RolledBack(op)
        }
        Ending::Failed | Ending::Committed => {
            journal.record(&mut op, Step::Failed, Some(reason))?;
            Outcome::Failed(op)
        }
    })
}

fn new_op(req: &SwapRequest, service: &ServiceDetails, image: &str, deadline: Duration) -> OpRecord {
    // As a swap records them: the references people wrote (what backoff
    // and status compare), and the digests in the `_id` fields.
    let (old_image, old_digest) = crate::engine::split_pin(&service.image);
    let (_, new_digest) = crate::engine::split_pin(image);
    OpRecord {
        op_id: req.op_id.clone().unwrap_or_else(OpId::generate),
        container: service.name.clone(),
        old_id: ContainerId::new(service.id.clone()),
        old_image,
        old_image_id: ImageId::new(old_digest.map(|d| d.to_string()).unwrap_or_default()),
        new_image: req.image.familiar(),
        new_image_id: ImageId::new(new_digest.map(|d| d.to_string()).unwrap_or_default()),
        was_running: true,
        order: req.settings.order,
        backup_name: String::new(),
        temp_name: String::new(),
        new_id: None,
        steps: Vec::new(),
        reason: None,
        follows: None,
        stop_grace_secs: None,
        hooks: Vec::new(),
        left_networks: Vec::new(),
        service: Some(ServiceOp {
            id: service.id.clone(),
            previous_update: service.update_started_at.clone(),
            deadline_secs: deadline.as_secs(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_pin_written_two_ways_is_the_same_image() {
        let d = format!("sha256:{}", "a".repeat(64));
        let e = format!("sha256:{}", "b".repeat(64));
        assert!(same_image(&format!("docker.io/library/nginx:1@{d}"), &format!("nginx:1@{d}")));
        assert!(same_image(&format!("reg:5000/app:1@{d}"), &format!("reg:5000/app:2@{d}")));
        assert!(!same_image(&format!("reg:5000/app:1@{d}"), &format!("reg:5000/app:1@{e}")));
        // A tag alone is never "the same": what it names may have moved.
        assert!(!same_image("reg:5000/app:1", "reg:5000/app:1"));
        assert!(!same_image(&format!("reg:5000/other:1@{d}"), &format!("reg:5000/app:1@{d}")));
    }
}
