//! The manifest exactly as written: serde structs that mirror the YAML.
//!
//! Field names here are a contract with other tools (the agent that writes
//! the file, servers that push it, the README). Unknown fields are errors.
//! Cross-field rules (`container` xor `selector`, `image` xor `track`,
//! duplicates) are checked in `validate`, which turns this into [`super::Manifest`].

use serde::{Deserialize, Serialize};

use super::duration::Dur;
use super::hooks::HooksDoc;
use super::policy::ImagePattern;

/// The top level of `desired-state.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Format version; only `1` exists.
    pub version: u64,
    /// Settings every target inherits.
    #[serde(default)]
    pub defaults: Overrides,
    /// What a manifest may name.
    #[serde(default)]
    pub policy: PolicyDoc,
    /// The containers to keep on a version.
    #[serde(default)]
    pub targets: Vec<TargetDoc>,
    /// Where op outcomes are reported.
    #[serde(default)]
    pub report: ReportDoc,
}

/// `report` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportDoc {
    /// An http(s) URL that receives one JSON POST per op outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// `defaults`: settings every target inherits; a target may override each
/// one but `drift_interval`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// When to pull the desired image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullPolicy>,
    /// Stop the old container first, or start the new one first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// Roll back to the old container when the health gate fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
    /// Remove the old image after a committed upgrade (when nothing else uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<bool>,
    /// The health gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthDoc>,
    /// How a Swarm service target is rolled out (service targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateDoc>,
    /// Commands run around each swap (container targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksDoc>,
    /// Periodic re-check (`0` = only on triggers). Only meaningful in `defaults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_interval: Option<Dur>,
}

/// When to pull the desired image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Ask the registry every pass: a moved tag is drift.
    Always,
    /// Use a local image of that tag if there is one, else pull.
    IfMissing,
    /// Never pull; the image must already be on the host.
    Never,
}

/// The order of the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Stop the old container, then start the new one.
    StopFirst,
    /// Start and gate the new one first (no downtime; no exclusive host ports).
    StartFirst,
}

/// The health gate as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthDoc {
    /// How long the new container has to pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// How long it must stay running with an unchanged restart count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<Dur>,
    /// What "healthy" means.
    // Written as a word (`auto`) or a single-key mapping (`{http: …}`);
    // `super::de` reads both, serde_yaml needs telling to write the latter.
    #[serde(
        default,
        serialize_with = "serde_yaml::with::singleton_map::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub probe: Option<Probe>,
}

/// What the health gate checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Probe {
    /// The container's Docker HEALTHCHECK if it has one, else `running`.
    Auto,
    /// Running, restart count unchanged, for `stable`.
    Running,
    /// An HTTP GET against the container's address on one of its networks.
    Http {
        /// Container port.
        port: u16,
        /// Request path.
        #[serde(default = "default_path")]
        path: String,
        /// Expected status code.
        #[serde(default = "default_status")]
        status: u16,
    },
    /// A TCP connect against the container's address.
    Tcp {
        /// Container port.
        port: u16,
    },
}

fn default_path() -> String {
    "/".to_string()
}

fn default_status() -> u16 {
    200
}

/// `policy` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Repositories targets may name; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_images: Option<Vec<ImagePattern>>,
    /// Whether an API push may add, remove or re-select targets and change
    /// any setting; `false` (the default): it may change only the `image` or
    /// `track` of the targets the file already has.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push_may_change_targets: bool,
    /// Signatures a digest needs before it is deployed (cosign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyDoc>,
}

/// `verify` as written: in `policy`, and per target (field by field).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyDoc {
    /// Public keys: PEM file paths (relative to the manifest) or inline PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// Refuse a digest without a valid signature (`false`: warn only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<bool>,
}

/// One target as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDoc {
    /// A container by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Containers by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<SelectorDoc>,
    /// A Swarm service by name (the engine must be a Swarm manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Swarm services by label (of the service, not of its tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<SelectorDoc>,
    /// The exact image: a tag, or `name@sha256:…` (parsed in validation,
    /// so every bad reference in the file is reported, not just the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Follow the highest tag matching a semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackDoc>,
    /// Overrides `defaults.pull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullPolicy>,
    /// Overrides `defaults.order`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// Overrides `defaults.rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
    /// Overrides `defaults.cleanup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<bool>,
    /// Overrides fields of `defaults.health` (field by field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthDoc>,
    /// Overrides fields of `defaults.update` (service targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateDoc>,
    /// Overrides `defaults.hooks`, phase by phase (container targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksDoc>,
    /// Overrides fields of `policy.verify` (field by field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyDoc>,
}

/// `update` as written: how Swarm rolls a service out (its `UpdateConfig`
/// besides order, monitor and failure action, which come from `order`,
/// `health.stable` and `rollback`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDoc {
    /// Tasks replaced at once (`0`: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    /// Pause between batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Dur>,
    /// The share of tasks that may fail before the update fails, a
    /// decimal from 0 to 1 (kept as text: read and checked in validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<String>,
}

/// `selector` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorDoc {
    /// `key=value`, or `key` for "has this label".
    pub label: String,
}

/// `track` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrackDoc {
    /// The repository whose tags are followed (no tag, no digest); kept as
    /// text so validation can tell an explicit tag from the implied `latest`.
    pub image: String,
    /// A semver range such as `^1.4`, `~2.19`, `>=1.2, <2`.
    pub semver: String,
    /// Consider pre-release tags (`1.5.0-rc.1`).
    #[serde(default)]
    pub prerelease: bool,
    /// The tag suffix to follow (`alpine` for `1.25.3-alpine`); absent:
    /// the one of the tag each container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
}
