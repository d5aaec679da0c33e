//! Run only signed images: cosign signatures, checked before a digest is
//! planned into service.
//!
//! cosign stores a key-based signature of `repo@sha256:H` as an OCI
//! manifest at the tag `sha256-H.sig` of the same repository; each layer is
//! a *simple signing* payload (JSON naming the signed digest under
//! `critical.image.docker-manifest-digest`) and carries the base64
//! signature in its `dev.cosignproject.cosign/signature` annotation. The
//! registry module fetches those layers ([`crate::registry`]); this module
//! judges them ([`judge`]), purely.
//!
//! A signature counts only when one of the listed keys verifies it *and*
//! its payload names the digest being deployed: a signature copied to
//! another digest's tag, or a tag moved to an image nobody signed, fails.
//! Good verdicts are remembered per digest for the process's life
//! ([`remember`]), so a pass that changes nothing asks the registry nothing
//! more; refusals are asked again each pass (a signature may be pushed
//! after the image).

pub mod keys;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use serde::Deserialize;

pub use keys::{KeyKind, PublicKey};

use crate::types::Digest;

/// The annotation that holds a layer's base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type of a simple signing payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of a container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The effective `verify` of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// A valid signature by any one of these keys is enough (listing two
    /// rotates from one to the other).
    pub keys: Vec<PublicKey>,
    /// `true`: a digest without one is never deployed; `false`: it is,
    /// with a warning.
    pub require: bool,
}

impl Verify {
    /// Identifies the key set, for the verdict cache.
    fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut raws: Vec<&[u8]> = self.keys.iter().map(|k| k.raw.as_slice()).collect();
        raws.sort();
        raws.hash(&mut h);
        h.finish()
    }
}

/// One signature layer as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLayer {
    /// The payload blob, exactly as stored (its digest checked against the
    /// layer's descriptor).
    pub payload: Vec<u8>,
    /// The annotation's text: the base64 signature.
    pub signature: String,
}

/// Why a digest is not deployed. The first words are the reason an
/// operator reads in the plan, status, reports and the webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The registry holds no `sha256-H.sig` for the digest.
    #[error("no signature: the registry has no {tag} for {digest}")]
    NoSignature {
        /// The digest being deployed.
        digest: String,
        /// The signature tag looked up.
        tag: String,
    },
    /// Signatures exist but none verifies with a listed key. A payload
    /// changed after signing reads the same: no key verifies its signature.
    #[error("signed by an unknown key, or payload does not verify: none of the {signatures} signature(s) of {digest} verifies with the {keys} listed key(s)")]
    UnknownKey {
        /// The digest being deployed.
        digest: String,
        /// How many signature layers there were.
        signatures: usize,
        /// How many keys were tried.
        keys: usize,
    },
    /// A listed key signed, but another digest: the signature was copied
    /// to this digest's tag.
    #[error("signature is for another digest: it signs {signed}, not {digest}")]
    OtherDigest {
        /// The digest being deployed.
        digest: String,
        /// The digest the payload names.
        signed: String,
    },
    /// The signature or its payload is malformed.
    #[error("payload does not verify: {detail}")]
    Payload {
        /// What is wrong.
        detail: String,
    },
    /// The registry could not be asked (its error, as text: this module
    /// sits below the registry client, which fetches for it).
    #[error("signature not checked: {0}")]
    Registry(String),
    /// The image comes from the local store (`pull: never`, or
    /// `if-missing` with the tag present), which has no registry digest.
    #[error("signature not checked: the image would come from the local image store, which holds no registry digest to verify; use `pull: always` for a verified target")]
    Local,
}

/// The simple signing payload's fields that are checked.
#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: CriticalImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Judges `layers` (the signature manifest's, `None`: there is none) for
/// `digest`: `Ok` when one layer's signature verifies with a key of
/// `keys` and its payload names `digest`. Otherwise the most telling
/// refusal: another digest signed, then a malformed payload, then no key.
pub fn judge(keys: &[PublicKey], digest: &Digest, layers: Option<&[SignedLayer]>) -> Result<(), Refusal> {
    let no_signature = || Refusal::NoSignature { digest: digest.to_string(), tag: signature_tag(digest) };
    let layers = match layers {
        None | Some([]) => return Err(no_signature()),
        Some(layers) => layers,
    };
    let mut worst: Option<Refusal> = None;
    for layer in layers {
        match judge_layer(keys, digest, layer) {
            Ok(()) => return Ok(()),
            Err(r) => {
                if worst.as_ref().is_none_or(|w| rank(&r) > rank(w)) {
                    worst = Some(r);
                }
            }
        }
    }
    Err(worst.unwrap_or_else(no_signature))
}

/// How much a refusal tells, for picking one among several layers.
fn rank(r: &Refusal) -> u8 {
    match r {
        Refusal::OtherDigest { .. } => 3,
        Refusal::Payload { .. } => 2,
        Refusal::UnknownKey { .. } => 1,
        Refusal::NoSignature { .. } | Refusal::Registry(_) | Refusal::Local => 0,
    }
}

fn judge_layer(keys: &[PublicKey], digest: &Digest, layer: &SignedLayer) -> Result<(), Refusal> {
    let payload_error = |detail: String| Refusal::Payload { detail };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(layer.signature.trim())
        .map_err(|e| payload_error(format!("the signature annotation is not base64: {e}")))?;
    // The payload is read only once a key vouches for it.
    if !keys.iter().any(|k| k.verifies(&layer.payload, &signature)) {
        return Err(Refusal::UnknownKey { digest: digest.to_string(), signatures: 1, keys: keys.len() });
    }
    let payload: Payload = serde_json::from_slice(&layer.payload)
        .map_err(|e| payload_error(format!("the signed payload is not simple signing JSON: {e}")))?;
    if payload.critical.kind != SIGNATURE_TYPE {
        return Err(payload_error(format!(
            "critical.type is `{}`, not `{SIGNATURE_TYPE}`",
            payload.critical.kind.chars().take(80).collect::<String>()
        )));
    }
    if payload.critical.image.digest != digest.as_str() {
        return Err(Refusal::OtherDigest {
            digest: digest.to_string(),
            signed: payload.critical.image.digest.chars().take(80).collect(),
        });
    }
    Ok(())
}

/// The tag cosign stores `digest`'s signature under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}.sig", digest.as_str().replacen(':', "-", 1))
}

/// Fixes the count in an [`Refusal::UnknownKey`] to all the layers seen.
pub fn with_count(r: Refusal, layers: usize) -> Refusal {
    match r {
        Refusal::UnknownKey { digest, keys, .. } => Refusal::UnknownKey { digest, signatures: layers, keys },
        other => other,
    }
}

/// Good verdicts: (repository, digest, key set).
type Verdicts = Mutex<HashSet<(String, String, u64)>>;

/// The most good verdicts kept; past it the set starts over (each costs
/// one lookup again, nothing worse).
const MAX_VERDICTS: usize = 4096;

fn verdicts() -> &'static Verdicts {
    static VERDICTS: OnceLock<Verdicts> = OnceLock::new();
    VERDICTS.get_or_init(Default::default)
}

/// True when `digest` of `repository` was verified with `verify`'s keys before.
pub fn known_good(repository: &str, digest: &Digest, verify: &Verify) -> bool {
    let key = (repository.to_string(), digest.to_string(), verify.fingerprint());
    verdicts().lock().map(|v| v.contains(&key)).unwrap_or(false)
}

/// Remembers that `digest` of `repository` verified with `verify`'s keys.
pub fn remember(repository: &str, digest: &Digest, verify: &Verify) {
    if let Ok(mut v) = verdicts().lock() {
        if v.len() >= MAX_VERDICTS {
            v.clear();
        }
        v.insert((repository.to_string(), digest.to_string(), verify.fingerprint()));
    }
}

#[cfg(test)]
mod tests;
