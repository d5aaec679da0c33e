//! The last step of a resolution for targets with `verify`: a container
//! about to be moved to a digest its image does not carry gets that digest
//! verified (cosign, [`crate::verify`]); a refusal replaces its outcome
//! with [`ResolveError::Unsigned`] when the target requires a signature,
//! so the plan holds it with the reason and nothing on the host changes.
//!
//! Each (repository, digest) is asked once per pass, and a good verdict is
//! remembered for the process's life: a pass that changes nothing, or an
//! upgrade to a digest verified before, sends no request.

use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt};

use super::{Desired, ResolveError, Resolved, CONCURRENCY};
use crate::manifest::Target;
use crate::observe::Observed;
use crate::reference::ImageRef;
use crate::registry::Registry;
use crate::types::{ContainerId, Digest};
use crate::verify::{self, Refusal, Verify};

/// One container whose move needs a verdict.
struct Pending<'a> {
    index: usize,
    container: ContainerId,
    desired: Desired,
    verify: &'a Verify,
}

/// Replaces the outcome of each container of `targets` whose desired
/// digest fails verification (see the module docs).
pub(super) async fn check(
    targets: &[&Target],
    observed: &Observed,
    registry: &Registry,
    resolved: &mut Resolved,
) {
    let pending = pending(targets, observed, resolved);
    if pending.is_empty() {
        return;
    }
    // Digest lookups, one per (repository, digest, key set) not known good.
    let lookups: HashMap<(String, Digest), (ImageRef, &Verify)> = pending
        .iter()
        .filter_map(|p| {
            let digest = p.desired.digest.clone().filter(|_| p.desired.local_id.is_none())?;
            let repo = p.desired.reference.name();
            (!verify::known_good(&repo, &digest, p.verify))
                .then(|| ((repo, digest), (p.desired.reference.clone(), p.verify)))
        })
        .collect();
    let verdicts: HashMap<(String, Digest), Result<(), Refusal>> = stream::iter(lookups)
        .map(|((repo, digest), (reference, keys))| async move {
            let verdict = registry.cosign_verdict(&reference, &digest, &keys.keys).await;
            if verdict.is_ok() {
                verify::remember(&repo, &digest, keys);
            }
            ((repo, digest), verdict)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for p in pending {
        let verdict = match p.desired.digest.as_ref().filter(|_| p.desired.local_id.is_none()) {
            None => Err(Refusal::Local),
            Some(digest) => {
                verdicts.get(&(p.desired.reference.name(), digest.clone())).cloned().unwrap_or(Ok(()))
            }
        };
        let Err(refusal) = verdict else { continue };
        let reference = p.desired.reference.familiar();
        if !p.verify.require {
            tracing::warn!(reference = %reference, reason = %refusal, "deploying an image whose signature does not verify (verify.require is false)");
            continue;
        }
        tracing::info!(reference = %reference, reason = %refusal, "not deploying an image whose signature does not verify");
        resolved.insert_for(p.index, p.container, Err(ResolveError::Unsigned { reference, refusal }));
    }
}

/// The containers of verifying targets resolved to an image they do not
/// run: a registry digest their image does not carry, or a local image
/// other than theirs.
fn pending<'a>(targets: &[&'a Target], observed: &Observed, resolved: &Resolved) -> Vec<Pending<'a>> {
    let mut out = Vec::new();
    let mut seen: HashSet<(usize, ContainerId)> = HashSet::new();
    for t in targets {
        let Some(verify) = t.verify.as_ref() else { continue };
        for c in observed.selected(t.index) {
            let Some(Ok(desired)) = resolved.get(t.index, &c.id) else { continue };
            let runs = match (&desired.digest, &desired.local_id, &desired.for_platform) {
                (_, Some(local), _) => *local == c.image_id,
                (_, _, Some(p)) if p.config.as_str() == c.image_id.as_str() => true,
                (Some(d), None, _) => observed.repo_digests(c, &desired.reference).contains(d),
                (None, None, _) => false,
            };
            if runs || !seen.insert((t.index, c.id.clone())) {
                continue;
            }
            out.push(Pending { index: t.index, container: c.id.clone(), desired: desired.clone(), verify });
        }
    }
    out
}
