//! cosign signatures made in a test, stored exactly as cosign stores them:
//! an OCI manifest at `sha256-<hex>.sig` whose layer is the simple signing
//! payload, with the base64 signature in `dev.cosignproject.cosign/signature`
//! (cosign's `specs/SIGNATURE_SPEC.md`). Keys are made with `ring`, the
//! crate the controller verifies with.

use container_upgrader::verify::keys::pem;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::json;

use super::{base64, TestRegistry};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A signing key made here, as `cosign generate-key-pair` (P-256) or an
/// Ed25519 pair would be.
pub enum Key {
    P256(EcdsaKeyPair, SystemRandom),
    Ed25519(Ed25519KeyPair),
}

impl Key {
    pub fn p256() -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("generate");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key pair");
        Key::P256(pair, rng)
    }

    pub fn ed25519() -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate");
        Key::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key pair"))
    }

    /// The public key as PEM (`cosign.pub`).
    pub fn public_pem(&self) -> String {
        match self {
            Key::P256(pair, _) => pem::p256(pair.public_key().as_ref()),
            Key::Ed25519(pair) => pem::ed25519(pair.public_key().as_ref()),
        }
    }

    /// The base64 signature of `payload`, as cosign puts it in the annotation.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig = match self {
            Key::P256(pair, rng) => pair.sign(rng, payload).expect("sign").as_ref().to_vec(),
            Key::Ed25519(pair) => pair.sign(payload).as_ref().to_vec(),
        };
        base64(&sig)
    }
}

/// cosign's simple signing payload for `digest` of `repo`.
pub fn payload(repo: &str, digest: &str) -> Vec<u8> {
    json!({
        "critical": {
            "identity": {"docker-reference": repo},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// Signs `digest` of `repo` with `key` as `cosign sign` does: the payload
/// naming them, signed, stored at the digest's `.sig` tag.
pub fn sign_image(registry: &TestRegistry, repo: &str, digest: &str, key: &Key) {
    let signed = payload(repo, digest);
    put_signature(registry, &registry.path_of(repo), digest, &signed, &key.sign(&signed));
}

/// Stores a signature manifest at `sha256-<hex of tag_digest>.sig` whose
/// one layer is `payload` with `signature`, in cosign's shape.
pub fn put_signature(registry: &TestRegistry, path: &str, tag_digest: &str, payload: &[u8], signature: &str) {
    let layer = registry.put_blob(path, payload);
    let config = json!({
        "architecture": "", "os": "", "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    })
    .to_string();
    let config_digest = registry.put_blob(path, config.as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": layer,
            "annotations": {"dev.cosignproject.cosign/signature": signature},
        }],
    });
    let tag = format!("{}.sig", tag_digest.replacen(':', "-", 1));
    registry.put_manifest(path, &tag, OCI_MANIFEST, manifest.to_string().as_bytes());
}

/// Stores a signature manifest as cosign's OCI 1.1 mode does — by digest,
/// no tag, artifact type `application/vnd.dev.cosign.artifact.sig.v1+json`,
/// `subject` the signed manifest — and returns its digest and size, for
/// a referrers list.
pub fn put_signature_referrer(
    registry: &TestRegistry,
    path: &str,
    subject: &str,
    payload: &[u8],
    signature: &str,
) -> (String, usize) {
    let layer = registry.put_blob(path, payload);
    let empty = registry.put_blob(path, b"{}");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": empty},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": layer,
            "annotations": {"dev.cosignproject.cosign/signature": signature},
        }],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 0},
    })
    .to_string();
    let digest = format!("sha256:{}", super::sha256_hex(manifest.as_bytes()));
    let stored = registry.put_manifest(path, &digest, OCI_MANIFEST, manifest.as_bytes());
    assert_eq!(stored, digest, "the registry stored the manifest under its digest");
    (digest, manifest.len())
}
