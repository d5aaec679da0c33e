//! One reconcile pass: recover, observe, resolve, plan, then swap every
//! container the plan says to upgrade — several at a time — and report.
//!
//! The pass does not know why it runs (a file change, a timer, a CLI
//! call): it always reconciles the whole manifest, so it must be, and is,
//! idempotent. A target that fails rolls back alone; the others go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use futures_util::stream::{self, StreamExt};

use crate::dependencies as order;
use crate::engine::Engine;
use crate::engine::EngineError;
use crate::manifest::{Manifest, Settings};
use crate::observe::{self, Observed};
use crate::plan::{self, Action, Plan, PlanEntry};
use crate::reference::ImageRef;
use crate::registry::Registry;
use crate::resolve;
use crate::selfupgrade::{needs_helper, Me};
use crate::swap::backoff::{self, Hold};
use crate::swap::journal::Journal;
use crate::swap::journal::JournalError;
use crate::swap::journal::OpRecord;
use crate::swap::recover::{self, Recovered, Recovery};
use crate::swap::scaffold::Scaffolding;
use crate::swap::{NoChange, Outcome, SwapError, SwapRequest, Swapper};

/// The default `--parallel`: swaps asking the engine for work (pull,
/// create, start, stop, rename, remove) at once. A swap whose new container
/// sits in its health gate holds no slot: the gate only waits.
pub const DEFAULT_PARALLEL: usize = 16;

/// Swaps of one wave in flight at once, whatever `--parallel` says. Each
/// is a task with a journal record and, while gating, one inspect every
/// 250 ms: small, but a manifest of thousands of containers should not
/// open thousands of gates together.
pub const MAX_IN_FLIGHT: usize = 512;

/// What happened to one upgrade entry of the plan.
#[derive(Debug)]
pub enum Applied {
    /// A swap ran (committed, rolled back, failed, or found nothing to do).
    Swapped(Box<Outcome>),
    /// Held back: the same image failed recently for this container.
    Held(Hold),
    /// The swap could not run or could not finish.
    Error(SwapError),
}

/// The result of a pass.
#[derive(Debug)]
pub struct Report {
    /// Unfinished ops found and finished first.
    pub recovered: Vec<Recovered>,
    /// The plan the pass acted on.
    pub plan: Plan,
    /// One result per `upgrade` entry, in plan order.
    pub applied: Vec<(PlanEntry, Applied)>,
    /// The controller's own container, when the plan upgrades it: not
    /// swapped here (a container cannot replace itself) but handed back,
    /// after every sibling is done, for a helper to swap. `Err`: held.
    pub own: Option<(PlanEntry, Result<SwapRequest, Hold>)>,
}

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The engine could not be listed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The journal cannot be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Recovery of an earlier op failed, or found a damaged journal
    /// record; nothing new is started on top of it.
    #[error("recovering interrupted swaps needs attention: {}", join(.0))]
    Recover(Vec<SwapError>),
}

fn join(errors: &[SwapError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Finishes what a crash interrupted, services first (Swarm carried their
/// updates on; only the verdict is to be read), then containers, leaving
/// alone the ops `skip` names (the controller's own swap is a helper's).
/// `Err` only when the journal or the engine cannot be read at all.
pub async fn recover(
    engine: &Engine,
    journal: &Journal,
    skip: impl Fn(&OpRecord) -> bool,
) -> Result<Recovery, SwapError> {
    let mut recovery = crate::swarm::recover_services(engine, journal).await?;
    let containers = recover::recover_except(engine, journal, skip).await?;
    recovery.done.extend(containers.done);
    recovery.problems.extend(containers.problems);
    Ok(recovery)
}

/// Runs one pass of `manifest`, with at most `parallel` swaps asking the
/// engine for work at once (gates wait without a slot).
pub async fn reconcile_once(
    swapper: &Swapper,
    manifest: &Manifest,
    registry: &Registry,
    parallel: usize,
    me: Option<&Me>,
    stopping: &AtomicBool,
) -> Result<Report, ReconcileError> {
    let skip = |op: &OpRecord| me.is_some_and(|me| needs_helper(op, me));
    let recovery = recover(swapper.engine(), swapper.journal(), skip)
        .await
        .map_err(|e| ReconcileError::Recover(vec![e]))?;
    if !recovery.problems.is_empty() {
        for r in &recovery.done {
            tracing::info!(op_id = %r.op.op_id, container = %r.op.container, action = %r.action, "recovered");
        }
        return Err(ReconcileError::Recover(recovery.problems));
    }
    let recovered = recovery.done;
    let history = swapper.journal().ops()?;
    // The journal knows every backup and temporary it made, even renamed
    // ones: none of them is a target, whatever labels it copied.
    let scaffolding = Scaffolding::from_journal(&history);
    let observed = observe::observe(swapper.engine(), manifest, &scaffolding).await?;
    let needed = plan::needs_resolution(manifest, &observed);
    let resolved = resolve::resolve(manifest, &observed, registry, swapper.engine(), &needed).await;
    let plan = plan::plan(manifest, &observed, &resolved);
    let now = SystemTime::now();

    let (own, work): (Vec<Job>, Vec<Job>) = plan
        .upgrades()
        .enumerate()
        .filter_map(|(order, entry)| {
            let request = request(manifest, &resolved, &observed, entry)?;
            let held = backoff::hold(&history, &request.container, &request.image.familiar(), now);
            Some((order, entry.clone(), held.map_or(Ok(request), Err)))
        })
        .partition(|(_, entry, job)| {
            // A service (the controller's own included) is replaced by Swarm: no helper.
            let container = job.as_ref().map_or(true, |r| !r.service);
            container && me.is_some_and(|me| entry.container.as_deref() == Some(me.name.as_str()))
        });
    // A container that depends on another one swapped in this pass
    // (`container:` network, legacy link, compose `depends_on`) is swapped
    // after it: started together, it would join or resolve its peer
    // half-way through. Containers depending on each other in a circle are
    // refused.
    let links = legacy_links(swapper.engine(), &work).await;
    let (waves, mut applied) = waves(work, &observed, &links);
    for wave in waves {
        applied.extend(run_wave(swapper, wave, parallel, stopping).await);
    }
    applied.sort_by_key(|(order, _, _)| *order);
    let applied = applied.into_iter().map(|(_, entry, applied)| (entry, applied)).collect();
    // The convergence net for containers sharing a replaced container's
    // network (see swap::rejoin); logged, journaled, never failing the pass.
    if !stopping.load(Ordering::SeqCst) {
        if let Err(e) = swapper.rejoin_orphans(&Settings::default()).await {
            tracing::warn!(error = %e, "looking for containers left in a replaced container's network");
        }
    }
    if let Err(e) = swapper.journal().prune() {
        tracing::warn!(error = %e, "pruning the journal");
    }
    let own = own.into_iter().next().map(|(_, entry, job)| (entry, job));
    Ok(Report { recovered, plan, applied, own })
}

/// One swap of a pass: its place in the plan, its entry, and the request
/// or why it is held.
type Job = (usize, PlanEntry, Result<SwapRequest, Hold>);

/// One swap's result, with its place in the plan.
type Done = (usize, PlanEntry, Applied);

/// The containers (not services) a pass's jobs swap: held ones are not.
fn swapped_containers(work: &[Job]) -> impl Iterator<Item = &str> {
    work.iter()
        .filter_map(|(_, _, job)| job.as_ref().ok())
        .filter(|r| !r.service)
        .map(|r| r.container.as_str())
}

/// The legacy links of the containers a pass swaps (name → the names
/// they link to; the engine's list does not carry links, so each is
/// inspected — only when two or more containers are swapped, the only case
/// where their order matters). A container that cannot be inspected now
/// is left to its swap to report.
async fn legacy_links(engine: &Engine, work: &[Job]) -> HashMap<String, Vec<String>> {
    let swapped: Vec<&str> = swapped_containers(work).collect();
    if swapped.len() < 2 {
        return HashMap::new();
    }
    let mut links = HashMap::new();
    for name in swapped {
        let Ok(Some(details)) = engine.inspect_container(name).await else { continue };
        let linked: Vec<String> = details
            .host_config
            .and_then(|h| h.links)
            .unwrap_or_default()
            .iter()
            .filter_map(|link| order::linked_container(link))
            .collect();
        if !linked.is_empty() {
            links.insert(name.to_string(), linked);
        }
    }
    links
}

/// Splits a pass's swaps into waves, each after the containers it depends
/// on (see [`order`]); held swaps and services go in the first. Also
/// returns the swaps refused for a dependency cycle, nothing changed.
fn waves(
    work: Vec<Job>,
    observed: &Observed,
    links: &HashMap<String, Vec<String>>,
) -> (Vec<Vec<Job>>, Vec<Done>) {
    let swapped: Vec<String> = swapped_containers(&work).map(str::to_string).collect();
    let ordered = order::order(&swapped, &order::edges(&observed.containers, links));
    let wave_of: HashMap<&str, usize> = ordered
        .waves
        .iter()
        .enumerate()
        .flat_map(|(i, wave)| wave.iter().map(move |name| (name.as_str(), i)))
        .collect();
    let mut waves: Vec<Vec<Job>> = (0..ordered.waves.len().max(1)).map(|_| Vec::new()).collect();
    let mut refused = Vec::new();
    for (order, entry, job) in work {
        let swap = job.as_ref().ok().filter(|r| !r.service).map(|r| r.container.clone());
        match swap {
            Some(name) => match ordered.refused.iter().find(|(n, _)| *n == name) {
                Some((_, why)) => {
                    let error = SwapError::unchanged(&name, NoChange::DependencyCycle(why.clone()));
                    refused.push((order, entry, Applied::Error(error)));
                }
                None => waves[wave_of.get(name.as_str()).copied().unwrap_or(0)].push((order, entry, job)),
            },
            None => waves[0].push((order, entry, job)),
        }
    }
    (waves, refused)
}

/// Runs `jobs` together (up to [`MAX_IN_FLIGHT`]), with at most `parallel`
/// of them asking the engine for work at once; no new swap once `stopping`.
///
/// The bound is on engine work, not on whole swaps: a swap in its health
/// gate gives its slot back, so a 5 s gate on the first sixteen does not
/// hold the seventeenth for 5 s.
async fn run_wave(swapper: &Swapper, jobs: Vec<Job>, parallel: usize, stopping: &AtomicBool) -> Vec<Done> {
    let swapper = &swapper.clone().with_engine_slots(parallel);
    stream::iter(jobs)
        .map(|(order, entry, job)| async move {
            if job.is_ok() {
                // Every swap starts at once; each waits for its first turn
                // at the engine before it checks for a shutdown, so a
                // stopping controller starts no swap that was queued.
                swapper.engine_turn().await;
            }
            let applied = match job {
                Err(hold) => Applied::Held(hold),
                // Shutting down: swaps in flight finish; no new one starts.
                Ok(request) if stopping.load(Ordering::SeqCst) => Applied::Error(SwapError::unchanged(
                    &request.container,
                    crate::swap::NoChange::ShuttingDown,
                )),
                Ok(request) => {
                    // A service is upgraded through Swarm, not swapped.
                    let result = if request.service {
                        crate::swarm::update(swapper, &request, stopping).await
                    } else {
                        swapper.swap(&request).await
                    };
                    match result {
                        Ok(outcome) => Applied::Swapped(Box::new(outcome)),
                        Err(e) => Applied::Error(e),
                    }
                }
            };
            (order, entry, applied)
        })
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// The swap an `upgrade` entry asks for.
fn request(
    manifest: &Manifest,
    resolved: &resolve::Resolved,
    observed: &Observed,
    entry: &PlanEntry,
) -> Option<SwapRequest> {
    debug_assert_eq!(entry.action, Action::Upgrade);
    let target = manifest.targets.get(entry.target_index)?;
    let name = entry.container.as_deref()?;
    let service = target.select.is_service();
    let id = &observed.containers.iter().find(|c| c.name == name && c.service.is_some() == service)?.id;
    let desired = resolved.get(entry.target_index, id)?.as_ref().ok()?;
    // Swap to the tag (what the container will show), pulled by the digest
    // the plan compared: a tag that moves meanwhile changes nothing.
    let image: ImageRef = desired.reference.clone();
    let planned = desired.digest.clone().filter(|_| image.digest().is_none() && desired.local_id.is_none());
    Some(SwapRequest {
        container: entry.container.clone()?,
        image,
        planned,
        settings: target.settings.clone(),
        op_id: None,
        service,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::observe::ObservedContainer;
    use crate::swap::backoff::Hold;
    use crate::types::{ContainerId, ImageId};

    fn container(name: &str, joins: Option<&str>) -> ObservedContainer {
        ObservedContainer {
            id: ContainerId::new(format!("id-{name}")),
            name: name.into(),
            image: "app:1".into(),
            image_id: ImageId::new("sha256:1"),
            state: "running".into(),
            health: None,
            labels: BTreeMap::new(),
            joins: joins.map(Into::into),
            service: None,
        }
    }

    fn job(order: usize, manifest: &Manifest, name: &str, held: bool) -> Job {
        let entry = PlanEntry {
            target: name.into(),
            target_index: order,
            container: Some(name.into()),
            current: None,
            desired: None,
            action: Action::Upgrade,
            reason: String::new(),
        };
        let job = if held {
            Err(Hold { until: SystemTime::now(), failures: 1, reason: "exited".into() })
        } else {
            let settings = manifest.targets[order].settings.clone();
            let image = ImageRef::parse("app:2").expect("image");
            Ok(SwapRequest {
                container: name.into(),
                image,
                planned: None,
                settings,
                op_id: None,
                service: false,
            })
        };
        (order, entry, job)
    }

    fn names(jobs: &[Job]) -> Vec<&str> {
        jobs.iter().filter_map(|(_, e, _)| e.container.as_deref()).collect()
    }

    #[test]
    fn a_container_in_a_swapped_peers_network_waits_for_the_peer() {
        let text = "version: 1\ntargets:\n  - container: vpn\n    image: app:2\n  - container: client\n    image: app:2\n  - container: web\n    image: app:2\n";
        let manifest = Manifest::parse("m.yaml", text).expect("manifest");
        let containers = vec![
            container("vpn", None),
            container("client", Some("id-vpn")),
            container("web", Some("id-other")),
        ];
        let observed = Observed::new(&manifest, containers, Vec::new());
        let work = vec![
            job(0, &manifest, "vpn", false),
            job(1, &manifest, "client", false),
            job(2, &manifest, "web", false),
        ];
        let (waves_, refused) = waves(work, &observed, &HashMap::new());
        assert!(refused.is_empty());
        assert_eq!(waves_.iter().map(|w| names(w)).collect::<Vec<_>>(), [vec!["vpn", "web"], vec!["client"]]);

        // A held peer is not swapped: its client need not wait.
        let work = vec![job(0, &manifest, "vpn", true), job(1, &manifest, "client", false)];
        let (waves_, _) = waves(work, &observed, &HashMap::new());
        assert_eq!(waves_.iter().map(|w| names(w)).collect::<Vec<_>>(), [vec!["vpn", "client"]]);
    }
}
