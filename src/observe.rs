//! What Docker runs now, as plain data the plan can read.
//!
//! One container list and one image list per pass, whatever the number of
//! targets: the list calls carry everything a no-change plan needs (name,
//! labels, image ref, image id, state, health; repo digests from the image
//! list). Inspecting is left to the swap, for the containers it changes.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::engine::{Engine, EngineError};
use crate::manifest::{Manifest, Select};
use crate::types::{ContainerId, ImageId};

/// A container as the list call reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedContainer {
    /// Full id.
    pub id: ContainerId,
    /// Name without the leading `/`.
    pub name: String,
    /// The image reference it was created from (`app:1`), or an image id
    /// when that tag has since moved to another image.
    pub image: String,
    /// The id of the image it runs.
    pub image_id: ImageId,
    /// `running`, `exited`, `created`, `restarting`, `paused`, `dead`.
    pub state: String,
    /// The Docker HEALTHCHECK state, when it has one.
    pub health: Option<Health>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The container id in its `container:<id>` network mode, when it lives
    /// in another container's network namespace.
    pub joins: Option<String>,
}

/// Docker's health status of a container with a HEALTHCHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not yet decided.
    Starting,
    /// Passing.
    Healthy,
    /// Failing.
    Unhealthy,
}

/// A local image as the list call reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedImage {
    /// Image id.
    pub id: ImageId,
    /// `repo:tag` names pointing at it, in Docker's short form.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…` digests it was pulled or pushed as.
    pub repo_digests: Vec<String>,
}

/// Everything observed in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The containers some target selects (others are dropped at once).
    pub containers: Vec<ObservedContainer>,
    /// Local images by id.
    pub images: HashMap<ImageId, ObservedImage>,
    /// Per target index, the indices into `containers` it selects.
    by_target: Vec<Vec<usize>>,
}

impl Observed {
    /// Builds an observation from raw lists, keeping only the containers the
    /// manifest selects.
    pub fn new(manifest: &Manifest, containers: Vec<ObservedContainer>, images: Vec<ObservedImage>) -> Self {
        let mut keep = vec![false; containers.len()];
        for i in selections(manifest, &containers).into_iter().flatten() {
            keep[i] = true;
        }
        let containers: Vec<_> =
            containers.into_iter().zip(keep).filter_map(|(c, k)| k.then_some(c)).collect();
        let by_target = selections(manifest, &containers);
        let images = images.into_iter().map(|i| (i.id.clone(), i)).collect();
        Self { containers, images, by_target }
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
    let by_name: HashMap<&str, usize> =
        containers.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
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

/// True when `select` covers container `c`.
pub fn selects(select: &Select, c: &ObservedContainer) -> bool {
    select.matches(&c.name, c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Lists containers once and, when the manifest selects any, images once.
pub async fn observe(engine: &Engine, manifest: &Manifest) -> Result<Observed, EngineError> {
    let mut observed = Observed::new(manifest, engine.list_containers().await?, Vec::new());
    // No selected container: the plan needs no image data, skip the call.
    if !observed.containers.is_empty() {
        observed.images = engine.list_images().await?.into_iter().map(|i| (i.id.clone(), i)).collect();
    }
    Ok(observed)
}
