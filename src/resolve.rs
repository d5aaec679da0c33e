//! From what a target asks for to a concrete image: a tag to the digest the
//! registry serves now (so a moved tag is drift), a semver range to the
//! highest matching tag. Local images stand in for the registry where the
//! pull policy says so.
//!
//! Each distinct repository's tags and each distinct reference's digest is
//! fetched once per pass, several at a time.
//!
//! A `track` target is resolved per container: each stays in the flavour
//! of the tag it runs (`-alpine`), see [`tag`].

use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt};
use semver::VersionReq;

use crate::engine::Engine;
use crate::manifest::{Manifest, PullPolicy, Target, Want};
use crate::observe::{Observed, ObservedContainer};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryError};
use crate::types::{ContainerId, Digest, ImageId};

pub mod platform;
mod signature;
pub mod tag;

pub use tag::TagVersion;

/// How many registry requests run at once.
pub const CONCURRENCY: usize = 8;

/// The concrete image a target resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The reference to run (a track target gets the chosen tag).
    pub reference: ImageRef,
    /// The registry digest, when the registry was asked or the manifest pins one.
    pub digest: Option<Digest>,
    /// The local image standing in for the registry (`pull: never` /
    /// `if-missing` with the image present).
    pub local_id: Option<ImageId>,
    /// What `digest` serves the container's platform, when the digest
    /// differed from what the container runs and was read (see
    /// [`platform`]): the container may run it already.
    pub for_platform: Option<PlatformImage>,
}

/// The image a digest (an index) serves one container's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    /// The container image's platform.
    pub platform: Platform,
    /// The platform's manifest in the index.
    pub manifest: Digest,
    /// Its config digest: the image id it has once pulled.
    pub config: Digest,
}

/// Why a target's desired image is unknown. Plain data so a plan can carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No tag matches the range.
    #[error("no {} tag of {repository} matches semver {range}{} ({seen} tags seen)", if .flavour.is_empty() { "plain".to_string() } else { format!("`-{}`", .flavour) }, if *.prerelease { " (pre-releases included)" } else { "" })]
    NoMatchingTag {
        /// The repository.
        repository: String,
        /// The range.
        range: String,
        /// The flavour looked for (`alpine`; empty: tags without a suffix).
        flavour: String,
        /// Whether pre-releases were considered.
        prerelease: bool,
        /// How many tags the registry listed.
        seen: usize,
    },
    /// The repository's version tags come in several flavours and neither
    /// the target nor the container's tag says which.
    #[error("the tags of {repository} come in flavours {}; the container's tag names none, so set `track.flavor` to one", .flavours.join(", "))]
    AmbiguousFlavour {
        /// The repository.
        repository: String,
        /// The flavours its version tags carry.
        flavours: Vec<String>,
    },
    /// The index the tag names has no image for the container's platform:
    /// a pull would fail on every pass.
    #[error("{reference} has no image for {platform}, the platform of the container's image (it has {})", if .available.is_empty() { "none".to_string() } else { .available.join(", ") })]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The container image's platform.
        platform: String,
        /// The platforms the index has.
        available: Vec<String>,
    },
    /// The target verifies signatures and the digest's does not verify.
    #[error("{reference} is not deployed: {refusal}")]
    Unsigned {
        /// The reference.
        reference: String,
        /// Why.
        refusal: crate::verify::Refusal,
    },
    /// `pull: never` and the image is not on the host.
    #[error("{reference} is not present locally and pull is `never`")]
    NotLocal {
        /// The reference.
        reference: String,
    },
}

/// Resolution outcomes: per target, or for a `track` target per container
/// (each keeps its own flavour).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    targets: HashMap<usize, Result<Desired, ResolveError>>,
    containers: HashMap<(usize, ContainerId), Result<Desired, ResolveError>>,
}

impl Resolved {
    /// Nothing resolved.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outcome for `container` under target `index`.
    pub fn get(&self, index: usize, container: &ContainerId) -> Option<&Result<Desired, ResolveError>> {
        self.containers.get(&(index, container.clone())).or_else(|| self.targets.get(&index))
    }

    /// Records the outcome for every container of target `index`.
    pub fn insert(&mut self, index: usize, result: Result<Desired, ResolveError>) {
        self.targets.insert(index, result);
    }

    /// Records the outcome for one container of target `index`.
    pub fn insert_for(
        &mut self,
        index: usize,
        container: ContainerId,
        result: Result<Desired, ResolveError>,
    ) {
        self.containers.insert((index, container), result);
    }
}

impl FromIterator<(usize, Result<Desired, ResolveError>)> for Resolved {
    fn from_iter<I: IntoIterator<Item = (usize, Result<Desired, ResolveError>)>>(iter: I) -> Self {
        Self { targets: iter.into_iter().collect(), containers: HashMap::new() }
    }
}

impl<const N: usize> From<[(usize, Result<Desired, ResolveError>); N]> for Resolved {
    fn from(entries: [(usize, Result<Desired, ResolveError>); N]) -> Self {
        entries.into_iter().collect()
    }
}

/// The reference chosen for whom, with its pull policy.
type Choice = (For, Result<(ImageRef, PullPolicy), ResolveError>);

/// Whom a resolution is for: every container of a target, or one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum For {
    Target(usize),
    Container(usize, ContainerId),
}

/// Resolves the targets at `indices` (see [`crate::plan::needs_resolution`]).
/// `engine` tells the platform of a container's image, asked only when a
/// digest differs from what the container runs (see [`platform`]).
pub async fn resolve(
    manifest: &Manifest,
    observed: &Observed,
    registry: &Registry,
    engine: &Engine,
    indices: &[usize],
) -> Resolved {
    let targets: Vec<&Target> = manifest.targets.iter().filter(|t| indices.contains(&t.index)).collect();

    // Phase 1: tag lists for `track` targets that use the registry.
    let repos: HashSet<ImageRef> = targets
        .iter()
        .filter(|t| pull_policy(t) != PullPolicy::Never)
        .filter_map(|t| match &t.want {
            Want::Track { image, .. } => Some(image.with_tag("latest")),
            Want::Image(_) => None,
        })
        .collect();
    let tags: HashMap<String, Result<Vec<String>, RegistryError>> = stream::iter(repos)
        .map(|repo| async move { (repo.name(), registry.tags(&repo).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    // Phase 2: the concrete reference of each target, or of each
    // container of a track target.
    let chosen: Vec<Choice> = targets.iter().flat_map(|t| choose(t, observed, &tags)).collect();

    // Phase 3: digests of the references the registry must answer for.
    let lookups: HashSet<ImageRef> = chosen
        .iter()
        .filter_map(|(_, c)| c.as_ref().ok())
        .filter(|(r, pull)| r.digest().is_none() && needs_registry(r, *pull, observed))
        .map(|(r, _)| r.clone())
        .collect();
    let digests: HashMap<ImageRef, Result<Digest, RegistryError>> = stream::iter(lookups)
        .map(|r| async move {
            let d = registry.digest(&r).await;
            (r, d)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut resolved = Resolved::new();
    for (whom, c) in chosen {
        let result = c.and_then(|(r, pull)| finish(r, pull, observed, &digests));
        match whom {
            For::Target(index) => resolved.insert(index, result),
            For::Container(index, id) => resolved.insert_for(index, id, result),
        }
    }
    platform::check(&targets, observed, registry, engine, &mut resolved).await;
    signature::check(&targets, observed, registry, &mut resolved).await;
    resolved
}

/// The reference a target runs: its image, or for each of its containers
/// the best tag of its track in that container's flavour.
fn choose(
    t: &Target,
    observed: &Observed,
    tags: &HashMap<String, Result<Vec<String>, RegistryError>>,
) -> Vec<Choice> {
    let pull = pull_policy(t);
    let Want::Track { image, range, prerelease, flavor } = &t.want else {
        return vec![(For::Target(t.index), Ok((t.want.image().clone(), pull)))];
    };
    let available: Vec<String> = if pull == PullPolicy::Never {
        local_tags(observed, image)
    } else {
        match tags.get(&image.name()) {
            Some(Ok(list)) => list.clone(),
            Some(Err(e)) => return vec![(For::Target(t.index), Err(e.clone().into()))],
            None => Vec::new(),
        }
    };
    let track = Track { image, range, prerelease: *prerelease, flavor: flavor.as_deref(), tags: &available };
    observed
        .selected(t.index)
        .map(|c| {
            let running = running_tag(c, observed, image);
            (For::Container(t.index, c.id.clone()), track.choose(running.as_deref()).map(|r| (r, pull)))
        })
        .collect()
}

/// The pull policy that decides where a target's image is resolved. A
/// service's tasks run on any node, which pulls for itself: only the
/// registry can say what its tag names, so services always ask it.
fn pull_policy(t: &Target) -> PullPolicy {
    if t.select.is_service() {
        PullPolicy::Always
    } else {
        t.settings.pull
    }
}

/// A `track` target with its repository's tags.
struct Track<'a> {
    image: &'a ImageRef,
    range: &'a VersionReq,
    prerelease: bool,
    flavor: Option<&'a str>,
    tags: &'a [String],
}

impl Track<'_> {
    /// The tag for a container that runs `running` (a tag of the repository).
    fn choose(&self, running: Option<&str>) -> Result<ImageRef, ResolveError> {
        let flavour = tag::flavour(self.tags, self.flavor, running).map_err(|tag::Ambiguous(flavours)| {
            ResolveError::AmbiguousFlavour { repository: self.image.name(), flavours }
        })?;
        let chosen = tag::pick(self.tags, self.range, self.prerelease, &flavour).ok_or_else(|| {
            ResolveError::NoMatchingTag {
                repository: self.image.name(),
                range: self.range.to_string(),
                flavour: flavour.clone(),
                prerelease: self.prerelease,
                seen: self.tags.len(),
            }
        })?;
        Ok(self.image.with_tag(chosen.tag))
    }
}

/// The tag of `repo` that container `c` runs: the one it was created from,
/// else (the tag moved on) a version tag its image still carries.
pub fn running_tag(c: &ObservedContainer, observed: &Observed, repo: &ImageRef) -> Option<String> {
    let name = repo.name();
    let of_repo = |r: &str| {
        ImageRef::parse(r).ok().filter(|r| r.name() == name).and_then(|r| r.tag().map(str::to_string))
    };
    of_repo(&c.image).or_else(|| {
        let image = observed.images.get(&c.image_id)?;
        image.repo_tags.iter().filter_map(|t| of_repo(t)).find(|t| TagVersion::parse(t).is_some())
    })
}

fn needs_registry(r: &ImageRef, pull: PullPolicy, observed: &Observed) -> bool {
    match pull {
        PullPolicy::Always => true,
        PullPolicy::IfMissing => local_image(observed, r).is_none(),
        PullPolicy::Never => false,
    }
}

fn finish(
    r: ImageRef,
    pull: PullPolicy,
    observed: &Observed,
    digests: &HashMap<ImageRef, Result<Digest, RegistryError>>,
) -> Result<Desired, ResolveError> {
    if let Some(d) = r.digest() {
        let digest = Some(d.clone());
        return Ok(Desired { reference: r, digest, local_id: None, for_platform: None });
    }
    if let Some(result) = digests.get(&r) {
        let digest = Some(result.clone()?);
        return Ok(Desired { reference: r, digest, local_id: None, for_platform: None });
    }
    match local_image(observed, &r) {
        Some(id) => Ok(Desired { reference: r, digest: None, local_id: Some(id), for_platform: None }),
        None if pull == PullPolicy::Never => Err(ResolveError::NotLocal { reference: r.familiar() }),
        // Unreachable by construction (if-missing without a local image was
        // looked up), but an answer beats a panic.
        None => Err(ResolveError::NotLocal { reference: r.familiar() }),
    }
}

/// The local image that `r`'s tag names, if any.
fn local_image(observed: &Observed, r: &ImageRef) -> Option<ImageId> {
    observed
        .images
        .values()
        .find(|img| img.repo_tags.iter().any(|t| ImageRef::parse(t).is_ok_and(|t| t == *r)))
        .map(|img| img.id.clone())
}

/// Tags of `repo` present locally.
fn local_tags(observed: &Observed, repo: &ImageRef) -> Vec<String> {
    let name = repo.name();
    observed
        .images
        .values()
        .flat_map(|img| &img.repo_tags)
        .filter_map(|t| ImageRef::parse(t).ok())
        .filter(|t| t.name() == name)
        .filter_map(|t| t.tag().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use semver::Version;

    proptest! {
        // The pick matches the range and no matching tag is higher.
        #[test]
        fn pick_is_the_maximum_of_matching_tags(
            versions in prop::collection::vec((0u64..4, 0u64..6, 0u64..6), 0..30),
            major in 0u64..4, minor in 0u64..6,
        ) {
            let tags: Vec<String> = versions.iter().map(|(a, b, c)| format!("{a}.{b}.{c}")).collect();
            let range = VersionReq::parse(&format!("^{major}.{minor}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let best = tag::pick(&tags, &range, false, "");
            let matching: Vec<Version> = tags.iter().filter_map(|t| Version::parse(t).ok()).filter(|v| range.matches(v)).collect();
            match best {
                None => prop_assert!(matching.is_empty()),
                Some(t) => {
                    prop_assert!(range.matches(&t.version));
                    prop_assert!(matching.iter().all(|m| *m <= t.version));
                }
            }
        }
    }
}
