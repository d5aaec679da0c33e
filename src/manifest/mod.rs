//! The desired-state manifest: load, validate, and the typed model the rest
//! of the pipeline reads.
//!
//! Loading never acts on bad input: every problem comes back as a
//! [`ManifestError`] with file, line and column, and the caller keeps using
//! its last good manifest.

mod de;
pub mod document;
pub mod duration;
pub mod edit;
pub mod error;
pub mod hooks;
pub mod policy;
pub mod source;
mod text;
mod validate;
pub mod verify;
pub mod write;
pub mod yaml;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use semver::VersionReq;

pub use document::{Order, Probe, PullPolicy};
pub use duration::Dur;
pub use error::{ManifestError, Problem};
pub use hooks::{Hook, Hooks, Phase, Place};
pub use policy::ImagePattern;
pub use source::{Pos, Source};

use crate::reference::ImageRef;

/// The only manifest format version this build reads.
pub const VERSION: u64 = 1;

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where it was read from.
    pub origin: String,
    /// Periodic re-check interval (zero: only on triggers).
    pub drift_interval: Dur,
    /// What targets may name.
    pub policy: Policy,
    /// The targets, in file order.
    pub targets: Vec<Target>,
    /// `report.webhook`: where each op outcome is POSTed.
    pub webhook: Option<String>,
}

/// `policy`, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    /// `None`: any image is allowed.
    pub allowed_images: Option<Vec<ImagePattern>>,
    /// `policy.push_may_change_targets`: an API push may change which
    /// containers are managed and how, not only their images.
    pub push_may_change_targets: bool,
    /// `policy.verify` as read (each target's effective one is
    /// [`Target::verify`]); kept here so a push that changes it is seen
    /// as changing the policy.
    pub verify: Option<crate::verify::Verify>,
}

impl Policy {
    /// True when `image` may be named by a target.
    pub fn allows(&self, image: &ImageRef) -> bool {
        self.allowed_images.as_ref().is_none_or(|patterns| patterns.iter().any(|p| p.matches(image)))
    }
}

/// One validated target with its effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Position in `targets` (0-based), for messages.
    pub index: usize,
    /// Which containers it covers.
    pub select: Select,
    /// Which image they should run.
    pub want: Want,
    /// Defaults merged with the target's overrides.
    pub settings: Settings,
    /// `policy.verify` merged with the target's `verify`; `None`: signatures are not checked.
    pub verify: Option<crate::verify::Verify>,
}

/// How a target picks its containers (or, on a Swarm manager, services).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Select {
    /// One container by name.
    Container(String),
    /// Every container with this label (and value, if given).
    Label {
        /// Label key.
        key: String,
        /// Required value; `None` means "has the label".
        value: Option<String>,
    },
    /// One Swarm service by name.
    Service(String),
    /// Every Swarm service with this service label (and value, if given).
    ServiceLabel {
        /// Label key.
        key: String,
        /// Required value; `None` means "has the label".
        value: Option<String>,
    },
}

impl Select {
    /// True when an object with this name and these labels is covered
    /// (the caller offers containers to container selects and services to
    /// service selects, see [`Select::is_service`]).
    pub fn matches<'a>(&self, name: &str, mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        match self {
            Select::Container(n) | Select::Service(n) => n == name,
            Select::Label { key, value } | Select::ServiceLabel { key, value } => {
                labels.any(|(k, v)| k == key && value.as_deref().is_none_or(|want| want == v))
            }
        }
    }

    /// True when the target covers Swarm services rather than containers.
    pub fn is_service(&self) -> bool {
        matches!(self, Select::Service(_) | Select::ServiceLabel { .. })
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Select::Container(name) => f.write_str(name),
            Select::Label { key, value: Some(v) } => write!(f, "label {key}={v}"),
            Select::Label { key, value: None } => write!(f, "label {key}"),
            Select::Service(name) => write!(f, "service {name}"),
            Select::ServiceLabel { key, value: Some(v) } => write!(f, "service label {key}={v}"),
            Select::ServiceLabel { key, value: None } => write!(f, "service label {key}"),
        }
    }
}

/// The image a target wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// Exactly this reference (a tag, or a digest pin).
    Image(ImageRef),
    /// The highest tag of `image` matching `range`.
    Track {
        /// The repository (its tag is ignored).
        image: ImageRef,
        /// The semver range.
        range: VersionReq,
        /// Whether pre-release tags count.
        prerelease: bool,
        /// The tag suffix to follow (`alpine`); `None`: each container's own.
        flavor: Option<String>,
    },
}

impl Want {
    /// The repository the target's image comes from (for policy checks).
    pub fn image(&self) -> &ImageRef {
        match self {
            Want::Image(r) | Want::Track { image: r, .. } => r,
        }
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::Image(r) => f.write_str(&r.familiar()),
            Want::Track { image, range, .. } => {
                let name = image.familiar();
                let name = name.rsplit_once(':').map_or(name.as_str(), |(n, _)| n);
                write!(f, "{name} (semver {range})")
            }
        }
    }
}

/// Effective settings of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// When to pull.
    pub pull: PullPolicy,
    /// Swap order.
    pub order: Order,
    /// Roll back when the gate fails.
    pub rollback: bool,
    /// Remove the old image after a commit.
    pub cleanup: bool,
    /// The health gate.
    pub health: HealthGate,
    /// How a Swarm service is rolled out (service targets only).
    pub update: ServiceUpdate,
    /// Commands run around each swap.
    pub hooks: Hooks,
}

/// `update`, effective: the parts of a Swarm `UpdateConfig` that have no
/// other setting (order is `order`, monitor is `health.stable`, the
/// failure action follows `rollback`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceUpdate {
    /// Tasks replaced at once; `0` means all at once.
    pub parallelism: u64,
    /// Pause between batches.
    pub delay: Duration,
    /// The share of tasks (0 to 1) that may fail before the update fails.
    pub max_failure_ratio: f64,
}

impl Default for ServiceUpdate {
    /// Swarm's own defaults: one task at a time, no delay, no failure allowed.
    fn default() -> Self {
        Self { parallelism: 1, delay: Duration::ZERO, max_failure_ratio: 0.0 }
    }
}

/// The effective health gate.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthGate {
    /// Overall time the new container has.
    pub timeout: Duration,
    /// How long it must stay running unchanged.
    pub stable: Duration,
    /// What is checked.
    pub probe: Probe,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pull: PullPolicy::Always,
            order: Order::StopFirst,
            rollback: true,
            cleanup: false,
            health: HealthGate {
                timeout: Duration::from_secs(60),
                stable: Duration::from_secs(5),
                probe: Probe::Auto,
            },
            update: ServiceUpdate::default(),
            hooks: Hooks::default(),
        }
    }
}

/// The shortest non-zero drift interval: each check asks the registry
/// about every target, so a shorter one would only hammer it.
pub const MIN_DRIFT_INTERVAL: Duration = Duration::from_secs(2);

/// The drift interval when the manifest sets none.
pub const DEFAULT_DRIFT_INTERVAL: Duration = Duration::from_secs(300);

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        validate::validate(&Source::read(path)?)
    }

    /// Validates manifest text that came from elsewhere (an API body, a test).
    pub fn parse(origin: &str, text: &str) -> Result<Self, ManifestError> {
        validate::validate(&Source::from_text(origin, text)?)
    }

    /// Validates an already scanned source.
    pub fn from_source(source: &Source) -> Result<Self, ManifestError> {
        validate::validate(source)
    }
}

#[cfg(test)]
mod tests;
