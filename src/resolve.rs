//! From what a target asks for to a concrete image: a tag to the digest the
//! registry serves now (so a moved tag is drift), a semver range to the
//! highest matching tag. Local images stand in for the registry where the
//! pull policy says so.
//!
//! Each distinct repository's tags and each distinct reference's digest is
//! fetched once per pass, several at a time.

use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt};
use semver::{Version, VersionReq};

use crate::manifest::{Manifest, PullPolicy, Target, Want};
use crate::observe::Observed;
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryError};
use crate::types::{Digest, ImageId};

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
}

/// Why a target's desired image is unknown. Plain data so a plan can carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No tag matches the range.
    #[error("no tag of {repository} matches semver {range}{} ({seen} tags seen)", if *.prerelease { " (pre-releases included)" } else { "" })]
    NoMatchingTag {
        /// The repository.
        repository: String,
        /// The range.
        range: String,
        /// Whether pre-releases were considered.
        prerelease: bool,
        /// How many tags the registry listed.
        seen: usize,
    },
    /// `pull: never` and the image is not on the host.
    #[error("{reference} is not present locally and pull is `never`")]
    NotLocal {
        /// The reference.
        reference: String,
    },
}

/// Resolution outcome per target index.
pub type Resolved = HashMap<usize, Result<Desired, ResolveError>>;

/// Resolves the targets at `indices` (see [`crate::plan::needs_resolution`]).
pub async fn resolve(
    manifest: &Manifest,
    observed: &Observed,
    registry: &Registry,
    indices: &[usize],
) -> Resolved {
    let targets: Vec<&Target> = manifest.targets.iter().filter(|t| indices.contains(&t.index)).collect();

    // Phase 1: tag lists for `track` targets that use the registry.
    let repos: HashSet<ImageRef> = targets
        .iter()
        .filter(|t| t.settings.pull != PullPolicy::Never)
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

    // Phase 2: the concrete reference of each target.
    let chosen: HashMap<usize, Result<(ImageRef, PullPolicy), ResolveError>> =
        targets.iter().map(|t| (t.index, choose(t, observed, &tags))).collect();

    // Phase 3: digests of the references the registry must answer for.
    let lookups: HashSet<ImageRef> = chosen
        .values()
        .filter_map(|c| c.as_ref().ok())
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

    chosen
        .into_iter()
        .map(|(index, c)| (index, c.and_then(|(r, pull)| finish(r, pull, observed, &digests))))
        .collect()
}

/// The reference a target runs: its image, or the best tag of its track.
fn choose(
    t: &Target,
    observed: &Observed,
    tags: &HashMap<String, Result<Vec<String>, RegistryError>>,
) -> Result<(ImageRef, PullPolicy), ResolveError> {
    let pull = t.settings.pull;
    match &t.want {
        Want::Image(r) => Ok((r.clone(), pull)),
        Want::Track { image, range, prerelease } => {
            let available: Vec<String> = if pull == PullPolicy::Never {
                local_tags(observed, image)
            } else {
                match tags.get(&image.name()) {
                    Some(Ok(list)) => list.clone(),
                    Some(Err(e)) => return Err(e.clone().into()),
                    None => Vec::new(),
                }
            };
            let tag =
                pick_tag(&available, range, *prerelease).ok_or_else(|| ResolveError::NoMatchingTag {
                    repository: image.name(),
                    range: range.to_string(),
                    prerelease: *prerelease,
                    seen: available.len(),
                })?;
            Ok((image.with_tag(&tag), pull))
        }
    }
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
        return Ok(Desired { reference: r, digest, local_id: None });
    }
    if let Some(result) = digests.get(&r) {
        let digest = Some(result.clone()?);
        return Ok(Desired { reference: r, digest, local_id: None });
    }
    match local_image(observed, &r) {
        Some(id) => Ok(Desired { reference: r, digest: None, local_id: Some(id) }),
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

/// The highest tag that is a semver version matching `range`.
///
/// Tags may carry a leading `v` (`v1.4.2`). Pre-release tags count only when
/// `prerelease` is set; then a pre-release matches when its release version
/// would (`1.5.0-rc.1` for `^1.4`), which is what "follow release
/// candidates of this line" means to an operator. Among equal versions with
/// different spellings (`1.4.2`, `v1.4.2`) the plain one wins, so the choice
/// is stable whatever order the registry lists them in.
pub fn pick_tag(tags: &[String], range: &VersionReq, prerelease: bool) -> Option<String> {
    tags.iter()
        .filter_map(|tag| {
            let v = Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
            let ok = if v.pre.is_empty() {
                range.matches(&v)
            } else {
                prerelease && (range.matches(&v) || range.matches(&Version::new(v.major, v.minor, v.patch)))
            };
            ok.then_some((v, !tag.starts_with('v'), tag))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(a.2)))
        .map(|(_, _, tag)| tag.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pick(tags: &[&str], range: &str, pre: bool) -> Option<String> {
        let tags: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
        pick_tag(&tags, &VersionReq::parse(range).expect(range), pre)
    }

    #[test]
    fn picks_highest_matching_tag() {
        let tags = ["1.3.9", "1.4.0", "1.4.2", "1.10.0", "2.0.0", "latest", "1.5.0-rc.1", "v1.9.1"];
        let cases = [
            ("^1.4", false, Some("1.10.0")),
            ("~1.4", false, Some("1.4.2")),
            ("=1.3.9", false, Some("1.3.9")),
            (">=1.4, <1.10", false, Some("v1.9.1")),
            ("^3", false, None),
            ("^2", false, Some("2.0.0")),
        ];
        for (range, pre, expected) in cases {
            assert_eq!(pick(&tags, range, pre).as_deref(), expected, "{range}");
        }
    }

    #[test]
    fn prereleases_only_when_asked() {
        let tags = ["1.4.2", "1.5.0-rc.1", "2.0.0-beta.1"];
        assert_eq!(pick(&tags, "^1.4", false).as_deref(), Some("1.4.2"));
        assert_eq!(pick(&tags, "^1.4", true).as_deref(), Some("1.5.0-rc.1"));
        // A pre-release of the next major is still outside ^1.4.
        assert_eq!(pick(&["2.0.0-beta.1"], "^1.4", true), None);
        // A release beats its own release candidate.
        assert_eq!(pick(&["1.5.0-rc.1", "1.5.0"], "^1.4", true).as_deref(), Some("1.5.0"));
    }

    #[test]
    fn plain_spelling_wins_over_v_prefix() {
        assert_eq!(pick(&["v1.4.2", "1.4.2"], "^1", false).as_deref(), Some("1.4.2"));
        assert_eq!(pick(&["1.4.2", "v1.4.2"], "^1", false).as_deref(), Some("1.4.2"));
    }

    proptest! {
        // The pick matches the range and no matching tag is higher.
        #[test]
        fn pick_is_the_maximum_of_matching_tags(
            versions in prop::collection::vec((0u64..4, 0u64..6, 0u64..6), 0..30),
            major in 0u64..4, minor in 0u64..6,
        ) {
            let tags: Vec<String> = versions.iter().map(|(a, b, c)| format!("{a}.{b}.{c}")).collect();
            let range = VersionReq::parse(&format!("^{major}.{minor}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let best = pick_tag(&tags, &range, false);
            let matching: Vec<Version> = tags.iter().filter_map(|t| Version::parse(t).ok()).filter(|v| range.matches(v)).collect();
            match best {
                None => prop_assert!(matching.is_empty()),
                Some(tag) => {
                    let v = Version::parse(&tag).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(range.matches(&v));
                    prop_assert!(matching.iter().all(|m| *m <= v));
                }
            }
        }
    }
}
