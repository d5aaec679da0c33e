//! What Docker says runs — containers, images, services — as our own
//! plain types: the engine module converts its answers into them and
//! [`crate::observe`] selects among them. Below both, so neither imports
//! the other back.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::swarm::rollout::UpdateState;
use crate::types::{ContainerId, Digest, ImageId};

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
    /// Set when this is not a container but a Swarm service (a `service`
    /// target's): its id, name, spec image and labels fill the fields
    /// above, so resolve and plan treat both alike.
    pub service: Option<ServiceState>,
}

/// What Swarm says of a service besides what a container also has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    /// The digest its spec pins the image to (Swarm pins it at create and
    /// update time unless told not to).
    pub digest: Option<Digest>,
    /// Where its last update stands (`UpdateStatus.State`).
    #[serde(skip)]
    pub update: Option<UpdateState>,
    /// Tasks running now.
    pub running: u64,
    /// Tasks it should have.
    pub desired: u64,
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
