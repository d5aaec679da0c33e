//! What Docker runs now, as plain data the plan can read.
//!
//! One container list and one image list per pass, whatever the number of
//! targets: the list calls carry everything a no-change plan needs (name,
//! labels, image ref, image id, state, health; repo digests from the image
//! list). Inspecting is left to the swap, for the containers it changes.
//!
//! The backups, temporaries and helpers of ops carry their container's
//! labels, so selectors match them too; they are dropped here, before any
//! target sees them, so that `plan`, `reconcile` and `run` all leave them
//! alone (see [`crate::swap::scaffold`]).

use std::collections::HashMap;

use crate::engine::{Engine, EngineError};
use crate::manifest::{Manifest, Select};
pub use crate::observed::{Health, ObservedContainer, ObservedImage, ServiceState};
use crate::reference::ImageRef;
use crate::swap::scaffold::Scaffolding;
use crate::types::{Digest, ImageId};

/// Everything observed in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The containers some target selects (others, and every op's
    /// scaffolding, are dropped at once).
    pub containers: Vec<ObservedContainer>,
    /// Local images by id.
    pub images: HashMap<ImageId, ObservedImage>,
    /// Per target index, the indices into `containers` it selects.
    by_target: Vec<Vec<usize>>,
    /// Why service targets cannot be observed (the engine is not a Swarm
    /// manager), when the manifest has any.
    pub swarm: Option<String>,
}

impl Observed {
    /// Every digest the container's image carries for `repository`'s name:
    /// one per way it was pulled from (or pushed to) there. An image pulled by
    /// tag and again through a multi-platform index, or pinned by digest on
    /// top of a tag, has several, and Docker lists them alphabetically — so
    /// "the first" is an accident of hex, never "the one the registry means".
    pub fn repo_digests(&self, c: &ObservedContainer, repository: &ImageRef) -> Vec<Digest> {
        let name = repository.name();
        // A service has no local image: its spec pins the one digest it runs.
        if let Some(service) = &c.service {
            let same_repository = ImageRef::parse(&c.image).is_ok_and(|r| r.name() == name);
            return service.digest.iter().filter(|_| same_repository).cloned().collect();
        }
        let Some(image) = self.images.get(&c.image_id) else { return Vec::new() };
        image
            .repo_digests
            .iter()
            .filter_map(|rd| {
                let r = ImageRef::parse(rd).ok()?;
                (r.name() == name).then(|| r.digest().cloned()).flatten()
            })
            .collect()
    }

    /// Builds an observation from raw lists, keeping only the containers the
    /// manifest selects and never an op's backup, temporary or helper (as
    /// their names and labels tell).
    pub fn new(manifest: &Manifest, containers: Vec<ObservedContainer>, images: Vec<ObservedImage>) -> Self {
        Self::excluding(manifest, containers, images, &Scaffolding::default())
    }

    /// [`Observed::new`], leaving out whatever `scaffolding` recognises
    /// (with the journal's record, also a backup someone renamed).
    pub fn excluding(
        manifest: &Manifest,
        containers: Vec<ObservedContainer>,
        images: Vec<ObservedImage>,
        scaffolding: &Scaffolding,
    ) -> Self {
        let containers: Vec<_> =
            containers.into_iter().filter(|c| !scaffolding.contains(&c.id, &c.name, &c.labels)).collect();
        let mut keep = vec![false; containers.len()];
        for i in selections(manifest, &containers).into_iter().flatten() {
            keep[i] = true;
        }
        let containers: Vec<_> =
            containers.into_iter().zip(keep).filter_map(|(c, k)| k.then_some(c)).collect();
        let by_target = selections(manifest, &containers);
        let images = images.into_iter().map(|i| (i.id.clone(), i)).collect();
        Self { containers, images, by_target, swarm: None }
    }

    /// The containers target `index` selects, in list order.
    pub fn selected(&self, index: usize) -> impl Iterator<Item = &ObservedContainer> {
        self.by_target.get(index).into_iter().flatten().map(|&i| &self.containers[i])
    }
}

/// For each target, the indices into `containers` it selects. Name targets
/// go through an index, so a manifest of many named containers costs
/// O(targets + containers), not their product.
fn selections(manifest: &Manifest, containers: &[ObservedContainer]) -> Vec<Vec<usize>> {
    // Containers only: a service may carry a container's name.
    let by_name: HashMap<&str, usize> = containers
        .iter()
        .enumerate()
        .filter(|(_, c)| swappable(c))
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    manifest
        .targets
        .iter()
        .map(|t| match &t.select {
            Select::Container(name) => by_name.get(name.as_str()).map(|&i| vec![i]).unwrap_or_default(),
            select => {
                containers.iter().enumerate().filter(|(_, c)| selects(select, c)).map(|(i, _)| i).collect()
            }
        })
        .collect()
}

/// True when `select` covers container (or service) `c`: container
/// selects take containers only, service selects services only.
pub fn selects(select: &Select, c: &ObservedContainer) -> bool {
    let kind = if select.is_service() { c.service.is_some() } else { swappable(c) };
    kind && select.matches(&c.name, c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The label Swarm puts on each task's container.
pub const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";

/// A container a container target may swap: not a service, and not the
/// container of a Swarm task — Swarm owns those (swapping one would make it
/// reschedule the task, and the service keeps its old image); a service is
/// upgraded as a `service:` target.
fn swappable(c: &ObservedContainer) -> bool {
    c.service.is_none() && !c.labels.contains_key(SWARM_TASK_LABEL)
}

/// Lists containers once, services once when the manifest has service
/// targets, and images once when it selects any container.
/// What `scaffolding` recognises is never observed.
pub async fn observe(
    engine: &Engine,
    manifest: &Manifest,
    scaffolding: &Scaffolding,
) -> Result<Observed, EngineError> {
    let mut listed = engine.list_containers().await?;
    let mut swarm = None;
    if manifest.targets.iter().any(|t| t.select.is_service()) {
        match engine.list_services().await? {
            Ok(services) => listed.extend(services),
            Err(crate::engine::NotManager(why)) => swarm = Some(why),
        }
    }
    let mut observed = Observed::excluding(manifest, listed, Vec::new(), scaffolding);
    observed.swarm = swarm;
    // No selected container: the plan needs no image data, skip the call.
    if observed.containers.iter().any(|c| c.service.is_none()) {
        observed.images = engine.list_images().await?.into_iter().map(|i| (i.id.clone(), i)).collect();
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swap::journal::{OpRecord, Step, StepRecord};
    use crate::swap::scaffold::{backup_name, helper_name, temp_name, HELPER_LABEL};
    use crate::types::{ContainerId, OpId};

    fn container(id: &str, name: &str, labels: &[(&str, &str)]) -> ObservedContainer {
        ObservedContainer {
            id: ContainerId::new(id),
            name: name.into(),
            image: "app:1".into(),
            image_id: ImageId::new("sha256:1"),
            state: "running".into(),
            health: None,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            joins: None,
            service: None,
        }
    }

    fn selected(observed: &Observed) -> Vec<&str> {
        observed.selected(0).map(|c| c.name.as_str()).collect()
    }

    const TIER: (&str, &str) = ("tier", "front");

    #[test]
    fn a_selector_never_takes_an_ops_backup_temporary_or_helper() {
        let m = Manifest::parse(
            "m.yaml",
            "version: 1\ntargets:\n  - selector: {label: tier=front}\n    image: app:2\n",
        )
        .expect("manifest");
        let containers = vec![
            container("1", "web", &[TIER]),
            container("2", &backup_name("web", "012345z42421"), &[TIER]),
            container("3", &temp_name("web", "012345z42421"), &[TIER]),
            container("4", &helper_name("ctl", "012345z42421"), &[TIER]),
            // A helper is known by its label whatever its name.
            container("5", "ctl-helper", &[TIER, (HELPER_LABEL, "ctl")]),
            // The operator's own names may contain the mark.
            container("6", "web--cu-restore-2024", &[TIER]),
        ];
        let observed = Observed::new(&m, containers, Vec::new());
        assert_eq!(selected(&observed), ["web", "web--cu-restore-2024"]);
        assert_eq!(observed.containers.len(), 2, "scaffolding is not observed at all");
    }

    #[test]
    fn a_container_target_never_takes_a_swarm_tasks_container() {
        let m = Manifest::parse(
            "m.yaml",
            "version: 1\ntargets:\n  - selector: {label: tier=front}\n    image: app:2\n  - container: web.1.abc\n    image: app:2\n",
        )
        .expect("manifest");
        let task = (SWARM_TASK_LABEL, "t1");
        let containers = vec![
            container("1", "web", &[TIER]),
            // A task of a service created with `--container-label tier=front`.
            container("2", "web.1.abc", &[TIER, task]),
        ];
        let observed = Observed::new(&m, containers, Vec::new());
        assert_eq!(selected(&observed), ["web"]);
        assert_eq!(observed.selected(1).count(), 0, "not by name either");
    }

    #[test]
    fn the_journal_excludes_a_backup_renamed_by_hand() {
        let m = Manifest::parse(
            "m.yaml",
            "version: 1\ntargets:\n  - selector: {label: tier}\n    image: app:2\n",
        )
        .expect("manifest");
        let steps = [Step::Prepared, Step::Created, Step::Stopped, Step::Started, Step::Failed];
        let op = OpRecord {
            op_id: OpId::new("op-1"),
            new_id: Some(ContainerId::new("new")),
            backup_name: backup_name("web", "op1"),
            temp_name: temp_name("web", "op1"),
            steps: steps.iter().map(|&step| StepRecord { step, at: String::new() }).collect(),
            reason: Some("exited".into()),
            ..OpRecord::sample("web")
        };
        let containers = || vec![container("new", "web", &[TIER]), container("old", "web-previous", &[TIER])];
        let known = Scaffolding::from_journal([&op]);
        assert_eq!(selected(&Observed::excluding(&m, containers(), Vec::new(), &known)), ["web"]);
        // Without the journal, nothing tells it from the operator's own.
        assert_eq!(selected(&Observed::new(&m, containers(), Vec::new())), ["web", "web-previous"]);
    }
}
