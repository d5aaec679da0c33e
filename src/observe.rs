//! What Docker runs now, as plain data the plan can read.
//!
//! One container list and one image list per pass, whatever the number of
//! targets: the list calls carry everything a no-change plan needs (name,
//! labels, image ref, image id, state, health; repo digests from the image
//! list). Inspecting is left to the swap, for the containers it changes.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::engine::{Engine, EngineError};
use crate::manifest::Manifest;
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
}

impl Observed {
    /// Builds an observation from raw lists, keeping only the containers the
    /// manifest selects.
    pub fn new(manifest: &Manifest, containers: Vec<ObservedContainer>, images: Vec<ObservedImage>) -> Self {
        let containers = containers
            .into_iter()
            .filter(|c| manifest.targets.iter().any(|t| selects(&t.select, c)))
            .collect();
        let images = images.into_iter().map(|i| (i.id.clone(), i)).collect();
        Self { containers, images }
    }
}

/// True when `select` covers container `c`.
pub fn selects(select: &crate::manifest::Select, c: &ObservedContainer) -> bool {
    select.matches(&c.name, c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Lists containers and images once and keeps what the manifest selects.
pub async fn observe(engine: &Engine, manifest: &Manifest) -> Result<Observed, EngineError> {
    let containers = engine.list_containers().await?;
    let wanted = containers.iter().any(|c| manifest.targets.iter().any(|t| selects(&t.select, c)));
    // No selected container: the plan needs no image data, skip the call.
    let images = if wanted { engine.list_images().await? } else { Vec::new() };
    Ok(Observed::new(manifest, containers, images))
}
