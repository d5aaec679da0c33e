//! Which image an index serves one platform: read only when a tag's digest
//! differs from what a container runs, since an index's digest changes
//! whenever any of its platforms (or attestations) does. Official images are
//! re-indexed for other architectures often; the entry for the container's
//! own platform says whether its content changed.

use serde::Deserialize;

use super::{Registry, RegistryError};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::types::Digest;

/// What a manifest or index serves one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForPlatform {
    /// This image: its manifest's digest and its config's digest — which is
    /// the id the engine gives the image once pulled.
    Image {
        /// The platform's manifest (the index entry's digest).
        manifest: Digest,
        /// The image's config digest: its local image id.
        config: Digest,
    },
    /// The index has no entry for the platform; these are the ones it has.
    Missing {
        /// `os/architecture[/variant]` of each entry, attestations left out.
        available: Vec<String>,
    },
}

/// The fields of a manifest or an index this reads.
#[derive(Deserialize)]
struct Document {
    manifests: Option<Vec<Entry>>,
    config: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Entry {
    digest: String,
    platform: Option<EntryPlatform>,
}

#[derive(Deserialize)]
struct EntryPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

impl Registry {
    /// What `image`'s `digest` (a manifest or an index) serves `platform`:
    /// one GET for a manifest, two for an index (it, then the platform's
    /// manifest for its config digest).
    pub async fn for_platform(
        &self,
        image: &ImageRef,
        digest: &Digest,
        platform: &Platform,
    ) -> Result<ForPlatform, RegistryError> {
        let document = self.document(image, digest).await?;
        let Some(entries) = document.manifests else {
            let config = config_of(image, document)?;
            return Ok(ForPlatform::Image { manifest: digest.clone(), config });
        };
        let found = entries.iter().find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
        });
        let Some(entry) = found else {
            let available = entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                // BuildKit's attestation manifests say `unknown/unknown`.
                .filter(|p| p.os != "unknown")
                .map(|p| match &p.variant {
                    Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
                    _ => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            return Ok(ForPlatform::Missing { available });
        };
        let manifest =
            Digest::parse(&entry.digest).map_err(|e| failed(image, format!("index entry: {e}")))?;
        let config = config_of(image, self.document(image, &manifest).await?)?;
        Ok(ForPlatform::Image { manifest, config })
    }

    async fn document(&self, image: &ImageRef, digest: &Digest) -> Result<Document, RegistryError> {
        let auth = self.auth_for(image.registry()).await;
        let client = self.client(image)?;
        let reference = digest.to_string();
        let (_, body) = self.bounded(image, &auth, || client.manifest(image, &reference, &auth)).await?;
        serde_json::from_slice(&body)
            .map_err(|e| failed(image, format!("the registry sent an unreadable manifest {digest}: {e}")))
    }
}

fn config_of(image: &ImageRef, document: Document) -> Result<Digest, RegistryError> {
    let config = document
        .config
        .ok_or_else(|| failed(image, "the registry sent a manifest without a config".to_string()))?;
    Digest::parse(&config.digest).map_err(|e| failed(image, format!("manifest config: {e}")))
}

fn failed(image: &ImageRef, detail: String) -> RegistryError {
    RegistryError::Failed { registry: image.registry().to_string(), reference: image.familiar(), detail }
}
