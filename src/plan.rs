//! The plan: a pure diff of the manifest against what runs.
//!
//! `plan(manifest, observed, resolved)` touches nothing: every decision the
//! controller makes about *whether* to act is here, tested without Docker.
//! The executor (the swap engine) acts on the entries whose action is
//! [`Action::Upgrade`].

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::manifest::{Manifest, Target, Want};
use crate::observe::{Observed, ObservedContainer};
use crate::reference::ImageRef;
use crate::resolve::{Desired, ResolveError, Resolved, TagVersion};
use crate::types::Digest;
use crate::verify::Refusal;

/// What to do about one container (or one target with no container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Swap the container to the desired image.
    Upgrade,
    /// Already on the desired image.
    None,
    /// The target selects no container.
    Missing,
    /// The policy does not allow the target's image.
    Refused,
    /// The desired image could not be determined (registry down, no tag
    /// matches, …) or the target conflicts with another. Never acted on.
    Error,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Upgrade => "upgrade",
            Action::None => "none",
            Action::Missing => "missing",
            Action::Refused => "refused",
            Action::Error => "error",
        })
    }
}

/// An image as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageState {
    /// A reference (`app:1.4.2`) or, for a container whose tag moved away,
    /// the image id it still runs.
    pub image: String,
    /// The registry digest, when known.
    pub digest: Option<String>,
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    /// The target as written (`web`, `label tier=edge`).
    pub target: String,
    /// The target's position in the manifest.
    #[serde(skip)]
    pub target_index: usize,
    /// The container's name; `None` for [`Action::Missing`].
    pub container: Option<String>,
    /// What it runs now.
    pub current: Option<ImageState>,
    /// What it should run.
    pub desired: Option<ImageState>,
    /// The decision.
    pub action: Action,
    /// Why, in words a person reads.
    pub reason: String,
}

/// The whole plan, in manifest order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Plan {
    /// One entry per selected container, or per target that selects none.
    pub actions: Vec<PlanEntry>,
    /// The entries held because the digest they would move to is not
    /// signed (`verify.require`): each is told to the webhook and the
    /// fleet server once, as an op that ended before anything changed.
    #[serde(skip)]
    pub refusals: Vec<SignatureRefusal>,
}

/// A move refused for its signature ([`crate::resolve::ResolveError::Unsigned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRefusal {
    /// The container (or Swarm service) left as it was.
    pub container: String,
    /// `true` for a Swarm service.
    pub service: bool,
    /// The image it runs.
    pub from: String,
    /// The image it was not moved to.
    pub to: String,
    /// Why, as the plan says it.
    pub reason: String,
}

impl Plan {
    /// Entries the executor would act on.
    pub fn upgrades(&self) -> impl Iterator<Item = &PlanEntry> {
        self.actions.iter().filter(|e| e.action == Action::Upgrade)
    }

    /// How many entries have each action.
    pub fn count(&self, action: Action) -> usize {
        self.actions.iter().filter(|e| e.action == action).count()
    }
}

/// Which targets need their desired image resolved: those the policy
/// allows and that select at least one container (resolution costs registry
/// round trips; a missing or refused target does not need it).
pub fn needs_resolution(manifest: &Manifest, observed: &Observed) -> Vec<usize> {
    manifest
        .targets
        .iter()
        .filter(|t| manifest.policy.allows(t.want.image()))
        .filter(|t| !(t.select.is_service() && observed.swarm.is_some()))
        .filter(|t| observed.selected(t.index).next().is_some())
        .map(|t| t.index)
        .collect()
}

/// Diffs the manifest against what runs.
pub fn plan(manifest: &Manifest, observed: &Observed, resolved: &Resolved) -> Plan {
    let owners = owners(manifest, observed);
    let mut actions = Vec::new();
    let mut refusals = Vec::new();
    for target in &manifest.targets {
        if let Some(why) = observed.swarm.as_ref().filter(|_| target.select.is_service()) {
            actions.push(not_manager(target, why));
            continue;
        }
        let selected: Vec<&ObservedContainer> = observed.selected(target.index).collect();
        if selected.is_empty() {
            actions.push(missing(target));
            continue;
        }
        for c in selected {
            let e = entry(manifest, target, c, &owners, observed, resolved);
            if let (Action::Error, Some(Err(ResolveError::Unsigned { reference, refusal }))) =
                (e.action, resolved.get(target.index, &c.id))
            {
                // Not a verdict: asked again next pass, nothing to tell yet.
                if !matches!(refusal, Refusal::Registry(_) | Refusal::Local) {
                    refusals.push(SignatureRefusal {
                        container: c.name.clone(),
                        service: c.service.is_some(),
                        from: e.current.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                        to: reference.clone(),
                        reason: e.reason.clone(),
                    });
                }
            }
            actions.push(e);
        }
    }
    Plan { actions, refusals }
}

/// For each container, the targets that select it (more than one is a conflict).
fn owners<'a>(manifest: &Manifest, observed: &'a Observed) -> HashMap<&'a str, Vec<usize>> {
    let mut owners: HashMap<&str, Vec<usize>> = HashMap::new();
    for t in &manifest.targets {
        for c in observed.selected(t.index) {
            owners.entry(c.id.as_str()).or_default().push(t.index);
        }
    }
    owners
}

fn missing(target: &Target) -> PlanEntry {
    let reason = match &target.select {
        crate::manifest::Select::Container(name) => format!("no container named {name}"),
        crate::manifest::Select::Service(name) => format!("no service named {name}"),
        sel @ crate::manifest::Select::ServiceLabel { .. } => format!("no service has {sel}"),
        sel => format!("no container has {sel}"),
    };
    unselected(target, Action::Missing, reason)
}

/// A service target on an engine that is not a Swarm manager: never acted
/// on, and said plainly (the engine's own words are kept).
fn not_manager(target: &Target, why: &str) -> PlanEntry {
    let reason = format!(
        "this Docker Engine is not a Swarm manager ({why}); a service target is upgraded through a manager: run the controller on a manager node"
    );
    unselected(target, Action::Error, reason)
}

/// The entry of a target that selects nothing, with why.
fn unselected(target: &Target, action: Action, reason: String) -> PlanEntry {
    PlanEntry {
        target: target.select.to_string(),
        target_index: target.index,
        container: None,
        current: None,
        desired: Some(ImageState { image: target.want.to_string(), digest: None }),
        action,
        reason,
    }
}

fn entry(
    manifest: &Manifest,
    target: &Target,
    c: &ObservedContainer,
    owners: &HashMap<&str, Vec<usize>>,
    observed: &Observed,
    resolved: &Resolved,
) -> PlanEntry {
    let repository = target.want.image();
    let desired_digest = match resolved.get(target.index, &c.id) {
        Some(Ok(d)) => d.digest.as_ref(),
        _ => None,
    };
    let current = current_state(c, observed, repository, desired_digest);
    let mut e = PlanEntry {
        target: target.select.to_string(),
        target_index: target.index,
        container: Some(c.name.clone()),
        current: Some(current),
        desired: Some(ImageState { image: target.want.to_string(), digest: None }),
        action: Action::Error,
        reason: String::new(),
    };
    let others: Vec<String> = owners
        .get(c.id.as_str())
        .into_iter()
        .flatten()
        .filter(|&&i| i != target.index)
        .map(|i| format!("targets[{i}]"))
        .collect();
    if !others.is_empty() {
        e.reason = format!(
            "container {} is also selected by {}; a container may be covered by one target only",
            c.name,
            others.join(", ")
        );
        return e;
    }
    if !manifest.policy.allows(repository) {
        e.action = Action::Refused;
        e.reason = format!("image {} not allowed by policy.allowed_images", repository.name());
        return e;
    }
    match resolved.get(target.index, &c.id) {
        None => e.reason = "desired image was not resolved".to_string(),
        Some(Err(err)) => e.reason = err.to_string(),
        Some(Ok(desired)) => {
            e.desired = Some(ImageState {
                image: desired.reference.familiar(),
                digest: desired.digest.as_ref().map(Digest::to_string),
            });
            (e.action, e.reason) = match above_track(target, c, observed, desired) {
                Some(warning) => (Action::None, warning),
                None => compare(c, observed, desired),
            };
            if let Some(state) = c.service.as_ref().and_then(|s| s.update).filter(|s| s.in_progress()) {
                if e.action == Action::Upgrade {
                    e.reason.push_str(&format!(
                        " (Swarm is {} the service: that update is waited for first)",
                        if state == crate::swarm::rollout::UpdateState::Updating {
                            "updating"
                        } else {
                            "rolling back"
                        }
                    ));
                }
            }
        }
    }
    e
}

/// What the container runs, with the digest it has in the desired
/// repository (the desired one when it carries it, else the first).
fn current_state(
    c: &ObservedContainer,
    observed: &Observed,
    repository: &ImageRef,
    desired: Option<&Digest>,
) -> ImageState {
    let image = ImageRef::parse(&c.image).map_or_else(|_| c.image.clone(), |r| r.familiar());
    let digests = observed.repo_digests(c, repository);
    let shown = desired.filter(|d| digests.contains(d)).or(digests.first());
    ImageState { image, digest: shown.map(|d| d.to_string()) }
}

/// A tracked container that runs a version above the chosen tag is never
/// moved down: a tag list seen in part (a registry's paging, a stale
/// mirror, a deleted tag) must not become a downgrade. Says why, as a
/// warning, when that is the case.
fn above_track(
    target: &Target,
    c: &ObservedContainer,
    observed: &Observed,
    desired: &Desired,
) -> Option<String> {
    let Want::Track { image, range, .. } = &target.want else { return None };
    let running = crate::resolve::running_tag(c, observed, image)?;
    let running_version = TagVersion::parse(&running)?;
    let chosen = TagVersion::parse(desired.reference.tag()?)?;
    (running_version.version > chosen.version).then(|| {
        let warning = format!(
            "warning: runs {running}, above {}, the highest tag matching {range} the registry lists; not moved down",
            chosen.tag
        );
        tracing::warn!(container = %c.name, running = %running, chosen = %chosen.tag, "tracked container runs a version above every matching tag");
        warning
    })
}

/// The decision for one container whose desired image is known.
fn compare(c: &ObservedContainer, observed: &Observed, desired: &Desired) -> (Action, String) {
    let want = &desired.reference;
    let running = ImageRef::parse(&c.image).ok();
    let same_content = match (&desired.local_id, &desired.digest) {
        (Some(id), _) => *id == c.image_id,
        (None, Some(d)) => observed.repo_digests(c, want).contains(d),
        (None, None) => false,
    };
    let kind = if c.service.is_some() { "service" } else { "container" };
    let state = if c.state == "running" { String::new() } else { format!(" ({kind} is {})", c.state) };
    // The index moved, but its entry for this container's platform is the
    // image the container runs: recreating it would change nothing.
    if let Some(p) = desired.for_platform.as_ref().filter(|p| p.config.as_str() == c.image_id.as_str()) {
        let index = desired.digest.as_ref().map_or("", |d| d.short());
        return (
            Action::None,
            format!(
                "up to date: {} is index {index}; its {} image {} is the one running (only other platforms changed){state}",
                want.familiar(),
                p.platform,
                p.manifest.short()
            ),
        );
    }
    if same_content {
        let what = desired.digest.as_ref().map_or_else(|| c.image_id.to_string(), |d| d.short().to_string());
        return (Action::None, format!("up to date: {} is {what}{state}", want.familiar()));
    }
    let reason = match running {
        Some(r) if r.name() != want.name() => format!("image {} → {}", r.familiar(), want.familiar()),
        Some(r) if r.tag() != want.tag() && want.tag().is_some() => {
            format!("tag {} → {}", r.tag().unwrap_or("(digest)"), want.tag().unwrap_or_default())
        }
        _ => moved(c, observed, desired),
    };
    (Action::Upgrade, format!("{reason}{state}"))
}

/// The reason when the reference is unchanged but the content is not.
fn moved(c: &ObservedContainer, observed: &Observed, desired: &Desired) -> String {
    let want = &desired.reference;
    let label = want.tag().map_or_else(|| "pin".to_string(), |t| format!("tag {t}"));
    match (&desired.digest, observed.repo_digests(c, want).into_iter().next()) {
        (Some(d), Some(cur)) if want.digest().is_some() => {
            format!("pinned {}, running {}", d.short(), cur.short())
        }
        (Some(d), Some(cur)) => format!("{label} moved to {} (running {})", d.short(), cur.short()),
        (Some(d), None) => {
            format!("running image has no digest from {}; {label} is {}", want.registry(), d.short())
        }
        (None, _) => format!("{label} now names another local image ({})", c.image_id),
    }
}

#[cfg(test)]
mod tests;
