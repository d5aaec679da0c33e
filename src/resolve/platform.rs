//! The last step of a resolution: for a container whose desired digest is
//! not one its image carries, what that digest serves the container's own
//! platform.
//!
//! A multi-platform index changes digest whenever any platform does (a new
//! arm64 build, fresh attestations), while this container's content may be
//! unchanged; and an index may have no image for the container's platform
//! at all, when a pull would fail on every pass. Only this suspected
//! change costs more than the one HEAD per reference: an image inspect
//! (the platform, `--platform` included) and the GETs of the index and the
//! platform's manifest.

use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt};

use super::{Desired, PlatformImage, ResolveError, Resolved, CONCURRENCY};
use crate::engine::Engine;
use crate::manifest::Target;
use crate::observe::{Observed, ObservedContainer};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::{ForPlatform, Registry, RegistryError};
use crate::types::{Digest, ImageId};

/// A container whose desired digest is not one its image carries.
struct Suspect<'a> {
    index: usize,
    container: &'a ObservedContainer,
    desired: Desired,
    digest: Digest,
}

/// Replaces, for each suspect container of `targets`, its outcome with the
/// platform-aware one: the desired image with [`Desired::for_platform`],
/// or [`ResolveError::NoPlatform`]. A failure to read the index or the
/// image's platform leaves the outcome as it was (the swap pulls the
/// digest for the platform anyway).
pub(super) async fn check(
    targets: &[&Target],
    observed: &Observed,
    registry: &Registry,
    engine: &Engine,
    resolved: &mut Resolved,
) {
    let suspects = suspects(targets, observed, resolved);
    if suspects.is_empty() {
        return;
    }
    let ids: HashSet<&ImageId> = suspects.iter().map(|s| &s.container.image_id).collect();
    let platforms: HashMap<&ImageId, Platform> = stream::iter(ids)
        .map(|id| async move {
            match engine.image_platform(id.as_str()).await {
                Ok(platform) => platform.map(|p| (id, p)),
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "reading the platform of a running image; its index entry is not compared");
                    None
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|found| async move { found })
        .collect()
        .await;
    let lookups: HashSet<(ImageRef, Digest, Platform)> = suspects
        .iter()
        .filter_map(|s| {
            let platform = platforms.get(&s.container.image_id)?;
            Some((s.desired.reference.clone(), s.digest.clone(), platform.clone()))
        })
        .collect();
    let answers: HashMap<(ImageRef, Digest, Platform), Result<ForPlatform, RegistryError>> =
        stream::iter(lookups)
            .map(|key| async move {
                let answer = registry.for_platform(&key.0, &key.1, &key.2).await;
                (key, answer)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    for s in suspects {
        let Some(platform) = platforms.get(&s.container.image_id) else { continue };
        let key = (s.desired.reference.clone(), s.digest.clone(), platform.clone());
        let outcome = match answers.get(&key) {
            Some(Ok(ForPlatform::Image { manifest, config })) => Ok(Desired {
                for_platform: Some(PlatformImage {
                    platform: platform.clone(),
                    manifest: manifest.clone(),
                    config: config.clone(),
                }),
                ..s.desired
            }),
            Some(Ok(ForPlatform::Missing { available })) => Err(ResolveError::NoPlatform {
                reference: s.desired.reference.familiar(),
                platform: platform.to_string(),
                available: available.clone(),
            }),
            Some(Err(e)) => {
                tracing::warn!(reference = %s.desired.reference.familiar(), error = %e, "reading the index for the container's platform; planned on the index digest alone");
                continue;
            }
            None => continue,
        };
        resolved.insert_for(s.index, s.container.id.clone(), outcome);
    }
}

/// The containers of `targets` resolved to a registry digest their image
/// does not carry.
fn suspects<'a>(targets: &[&Target], observed: &'a Observed, resolved: &Resolved) -> Vec<Suspect<'a>> {
    let mut out = Vec::new();
    for t in targets {
        // A service has no local image to read a platform from; Swarm
        // pulls the index on each node and picks that node's image.
        for c in observed.selected(t.index).filter(|c| c.service.is_none()) {
            let Some(Ok(desired)) = resolved.get(t.index, &c.id) else { continue };
            let Some(digest) = desired.digest.clone().filter(|_| desired.local_id.is_none()) else {
                continue;
            };
            if observed.repo_digests(c, &desired.reference).contains(&digest) {
                continue;
            }
            out.push(Suspect { index: t.index, container: c, desired: desired.clone(), digest });
        }
    }
    out
}
