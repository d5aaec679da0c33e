//! cosign's signatures as registries hold them: the manifest at the tag
//! `sha256-<hex>.sig` of the signed image's repository, whose layers are
//! simple signing payloads with the signature in an annotation (see
//! [`crate::verify`], which judges them).

use std::collections::HashMap;

use serde::Deserialize;

use super::{Registry, RegistryError};
use crate::reference::ImageRef;
use crate::types::Digest;
use crate::verify::{signature_tag, SignedLayer, SIGNATURE_ANNOTATION};

/// The most signature layers read from one manifest: each costs a GET.
const MAX_LAYERS: usize = 16;

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
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let manifest: SignatureManifest = serde_json::from_slice(&body)
            .map_err(|e| failed(image, format!("the signature manifest {tag} is unreadable: {e}")))?;
        let mut layers = Vec::new();
        for layer in manifest.layers.into_iter().take(MAX_LAYERS) {
            let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else { continue };
            let blob_digest = Digest::parse(&layer.digest)
                .map_err(|e| failed(image, format!("signature layer digest: {e}")))?;
            let payload =
                self.bounded(image, &auth, || client.blob(image, blob_digest.as_str(), &auth)).await?;
            if !matches_digest(&payload, &blob_digest) {
                return Err(failed(
                    image,
                    format!("the registry sent a signature payload that is not the blob {blob_digest}"),
                ));
            }
            layers.push(SignedLayer { payload, signature: signature.clone() });
        }
        Ok(Some(layers))
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
