//! cosign's signatures as registries hold them: the manifest at the tag
//! `sha256-<hex>.sig` of the signed image's repository, whose layers are
//! simple signing payloads with the signature in an annotation (see
//! [`crate::verify`], which judges them) — or, where there is no such tag
//! and the registry offers the OCI 1.1 referrers API, the manifests of
//! artifact type [`SIGNATURE_ARTIFACT`] whose subject is the image (what
//! `cosign sign --registry-referrers-mode=oci-1-1` writes), same layers.

use std::collections::HashMap;

use serde::Deserialize;

use super::distribution::{Auth, Distribution};
use super::{Registry, RegistryError};
use crate::reference::ImageRef;
use crate::types::Digest;
use crate::verify::{self, signature_tag, PublicKey, Refusal, SignedLayer, SIGNATURE_ANNOTATION};

/// The most signature layers read from one manifest: each costs a GET.
const MAX_LAYERS: usize = 16;
/// The most signature manifests read from a referrers list.
const MAX_REFERRERS: usize = 4;
/// The artifact type cosign gives a signature stored as a referrer.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// An OCI image index as the referrers API answers.
#[derive(Deserialize)]
struct Referrers {
    #[serde(default)]
    manifests: Vec<Referrer>,
}

#[derive(Deserialize)]
struct Referrer {
    digest: String,
    #[serde(default, rename = "artifactType")]
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct SignatureManifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

impl Registry {
    /// Whether `digest` of `image` carries a valid signature by one of
    /// `keys`: one lookup of its signatures, judged by [`verify::judge`];
    /// a registry that cannot be asked is [`Refusal::Registry`].
    pub async fn cosign_verdict(
        &self,
        image: &ImageRef,
        digest: &Digest,
        keys: &[PublicKey],
    ) -> Result<(), Refusal> {
        match self.cosign_signatures(image, digest).await {
            Ok(layers) => verify::judge(keys, digest, layers.as_deref())
                .map_err(|r| verify::with_count(r, layers.as_ref().map_or(0, Vec::len))),
            Err(e) => Err(Refusal::Registry(e.to_string())),
        }
    }

    /// The signature layers stored for `digest` of `image`'s repository;
    /// `None` when there is no signature tag. Each payload is checked
    /// against its descriptor's digest (a registry is not trusted to serve
    /// what it names). One GET for the manifest, one per signature layer.
    pub async fn cosign_signatures(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Option<Vec<SignedLayer>>, RegistryError> {
        let auth = self.auth_for(image.registry()).await;
        let client = self.client(image)?;
        let tag = signature_tag(digest);
        let body = match self.bounded(image, &auth, || client.manifest(image, &tag, &auth)).await {
            Ok((_, body)) => body,
            Err(RegistryError::NotFound { .. }) => {
                return self.cosign_referrers(image, client, &auth, digest).await;
            }
            Err(e) => return Err(e),
        };
        self.signature_layers(image, client, &auth, &tag, &body).await.map(Some)
    }

    /// The signature layers of the referrers of `digest` that cosign
    /// wrote; `None` when the registry has no referrers API or lists none.
    async fn cosign_referrers(
        &self,
        image: &ImageRef,
        client: &Distribution,
        auth: &Auth,
        digest: &Digest,
    ) -> Result<Option<Vec<SignedLayer>>, RegistryError> {
        let Some(body) = self.bounded(image, auth, || client.referrers(image, digest.as_str(), auth)).await?
        else {
            return Ok(None);
        };
        let index: Referrers = serde_json::from_slice(&body)
            .map_err(|e| failed(image, format!("the referrers of {digest} are unreadable: {e}")))?;
        let signatures: Vec<Referrer> = index
            .manifests
            .into_iter()
            .filter(|r| r.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT))
            .take(MAX_REFERRERS)
            .collect();
        if signatures.is_empty() {
            return Ok(None);
        }
        let mut layers = Vec::new();
        for referrer in signatures {
            let manifest_digest = Digest::parse(&referrer.digest)
                .map_err(|e| failed(image, format!("a referrer's digest: {e}")))?;
            let (_, body) =
                self.bounded(image, auth, || client.manifest(image, manifest_digest.as_str(), auth)).await?;
            if !matches_digest(&body, &manifest_digest) {
                return Err(failed(
                    image,
                    format!("the registry sent a manifest that is not {manifest_digest}"),
                ));
            }
            layers.extend(self.signature_layers(image, client, auth, manifest_digest.as_str(), &body).await?);
        }
        Ok(Some(layers))
    }

    /// The signature layers of the signature manifest `body` (named
    /// `name` in messages), each payload checked against its digest.
    async fn signature_layers(
        &self,
        image: &ImageRef,
        client: &Distribution,
        auth: &Auth,
        name: &str,
        body: &[u8],
    ) -> Result<Vec<SignedLayer>, RegistryError> {
        let manifest: SignatureManifest = serde_json::from_slice(body)
            .map_err(|e| failed(image, format!("the signature manifest {name} is unreadable: {e}")))?;
        let mut layers = Vec::new();
        for layer in manifest.layers.into_iter().take(MAX_LAYERS) {
            let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else { continue };
            let blob_digest = Digest::parse(&layer.digest)
                .map_err(|e| failed(image, format!("signature layer digest: {e}")))?;
            let payload =
                self.bounded(image, auth, || client.blob(image, blob_digest.as_str(), auth)).await?;
            if !matches_digest(&payload, &blob_digest) {
                return Err(failed(
                    image,
                    format!("the registry sent a signature payload that is not the blob {blob_digest}"),
                ));
            }
            layers.push(SignedLayer { payload, signature: signature.clone() });
        }
        Ok(layers)
    }
}

/// True when `bytes` hash to `digest` (sha256 only; cosign writes no other).
fn matches_digest(bytes: &[u8], digest: &Digest) -> bool {
    let Some(hex) = digest.as_str().strip_prefix("sha256:") else { return false };
    let sum = ring::digest::digest(&ring::digest::SHA256, bytes);
    let ours: String = sum.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    ours == hex
}

fn failed(image: &ImageRef, detail: String) -> RegistryError {
    RegistryError::Failed { registry: image.registry().to_string(), reference: image.familiar(), detail }
}
