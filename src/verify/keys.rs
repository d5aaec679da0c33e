//! The public keys a manifest lists for `verify`: SubjectPublicKeyInfo in
//! PEM (`-----BEGIN PUBLIC KEY-----`), what `cosign generate-key-pair`
//! writes as `cosign.pub` (ECDSA P-256) and what `openssl pkey -pubout`
//! writes for an Ed25519 key.
//!
//! DER is canonical, so each accepted algorithm has exactly one encoding
//! of its SubjectPublicKeyInfo header: the header is compared byte for
//! byte and the key taken from behind it, without a general ASN.1 reader.

use std::fmt;

use base64::Engine as _;

/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes) }`,
/// up to the uncompressed point.
const P256_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// `SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING (33 bytes) }`.
const ED25519_HEADER: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// The OIDs of algorithms refused by name (so the message says which).
const EC_OID: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const RSA_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// The largest PEM text read (a P-256 `cosign.pub` is 178 bytes).
pub const MAX_PEM: usize = 16 * 1024;

/// A signature algorithm a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256, ASN.1 DER signatures (cosign's default).
    EcdsaP256,
    /// Ed25519 over the payload bytes.
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Ed25519 => "Ed25519",
        })
    }
}

/// One public key, checked and ready to verify with. Two are equal when
/// they are the same key, wherever they were read from.
#[derive(Clone)]
pub struct PublicKey {
    /// The algorithm.
    pub kind: KeyKind,
    /// The key itself: the uncompressed point (65 bytes) or the Ed25519
    /// key (32 bytes).
    pub raw: Vec<u8>,
    /// Where it came from (a file path, or `inline`), for messages.
    pub label: String,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.raw == other.raw
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key from {}", self.kind, self.label)
    }
}

impl PublicKey {
    /// Reads one PEM public key; the error says what was found and what is allowed.
    pub fn from_pem(text: &str, label: &str) -> Result<Self, String> {
        if text.len() > MAX_PEM {
            return Err(format!(
                "the key is over {} KiB; a public key is a few hundred bytes",
                MAX_PEM >> 10
            ));
        }
        let der = pem_body(text)?;
        let (kind, raw) = if let Some(point) = der.strip_prefix(&P256_HEADER[..]) {
            if point.len() != 65 || point.first() != Some(&0x04) {
                return Err("the ECDSA P-256 key is not an uncompressed point of 65 bytes".to_string());
            }
            (KeyKind::EcdsaP256, point.to_vec())
        } else if let Some(key) = der.strip_prefix(&ED25519_HEADER[..]) {
            if key.len() != 32 {
                return Err("the Ed25519 key is not 32 bytes".to_string());
            }
            (KeyKind::Ed25519, key.to_vec())
        } else if contains(&der, &RSA_OID) {
            return Err("this is an RSA key; allowed: ECDSA P-256 (cosign's default) or Ed25519".to_string());
        } else if contains(&der, &EC_OID) {
            return Err(
                "this is an ECDSA key on another curve than P-256; allowed: ECDSA P-256 (cosign's default) or Ed25519"
                    .to_string(),
            );
        } else {
            return Err(
                "not a public key this build reads; allowed: ECDSA P-256 (cosign's default) or Ed25519, as PEM `PUBLIC KEY`"
                    .to_string(),
            );
        };
        Ok(Self { kind, raw, label: label.to_string() })
    }

    /// True when `signature` (as cosign writes it: DER for ECDSA, 64 bytes
    /// for Ed25519) is this key's over `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};
        match self.kind {
            KeyKind::EcdsaP256 => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.raw).verify(payload, signature).is_ok()
            }
            KeyKind::Ed25519 => {
                UnparsedPublicKey::new(&ED25519, &self.raw).verify(payload, signature).is_ok()
            }
        }
    }
}

/// The DER inside the one `PUBLIC KEY` block of `text`.
fn pem_body(text: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let text = text.trim();
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "this is a private key; list the public key (`cosign.pub`), which is all verifying needs"
                .to_string(),
        );
    }
    let body = text.strip_prefix(BEGIN).and_then(|rest| rest.strip_suffix(END)).ok_or_else(|| {
        format!("expected one PEM block `{BEGIN}` … `{END}` (a file path, or the PEM inline)")
    })?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("the PEM body is not base64: {e}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Test keys: SubjectPublicKeyInfo PEM for a key pair made with `ring`
/// (also used by the integration tests to sign as cosign does).
pub mod pem {
    use base64::Engine as _;

    use super::{ED25519_HEADER, P256_HEADER};

    /// The PEM of an ECDSA P-256 public key given as its uncompressed point.
    pub fn p256(point: &[u8]) -> String {
        wrap(&[&P256_HEADER[..], point].concat())
    }

    /// The PEM of an Ed25519 public key.
    pub fn ed25519(key: &[u8]) -> String {
        wrap(&[&ED25519_HEADER[..], key].concat())
    }

    fn wrap(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> =
            b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    /// The example public key of cosign's signature specification
    /// (`specs/SIGNATURE_SPEC.md`): ECDSA P-256 SubjectPublicKeyInfo.
    const COSIGN_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELigCnlLNKgOglRTx1D7JhI7eRw99
QolE9Jo4QUxnbMy5nUuBL+UZF9qqfm/Dg1BNeHRThHzWh2ki9vAEgWEDOw==
-----END PUBLIC KEY-----";

    #[test]
    fn a_cosign_public_key_is_read_as_ecdsa_p256() {
        let key = PublicKey::from_pem(COSIGN_PUB, "cosign.pub").expect("cosign.pub");
        assert_eq!(key.kind, KeyKind::EcdsaP256);
        assert_eq!(key.raw.len(), 65);
    }

    #[test]
    fn keys_made_here_verify_their_own_signatures_only() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("generate");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
        let key = PublicKey::from_pem(&pem::p256(pair.public_key().as_ref()), "t").expect("p256");
        let sig = pair.sign(&rng, b"payload").expect("sign");
        assert!(key.verifies(b"payload", sig.as_ref()));
        assert!(!key.verifies(b"payload!", sig.as_ref()), "another payload");

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pair");
        let ed = PublicKey::from_pem(&pem::ed25519(pair.public_key().as_ref()), "t").expect("ed25519");
        assert_eq!(ed.kind, KeyKind::Ed25519);
        let sig = pair.sign(b"payload");
        assert!(ed.verifies(b"payload", sig.as_ref()));
        assert!(!key.verifies(b"payload", sig.as_ref()), "the other key");
    }

    #[test]
    fn other_keys_are_refused_saying_what_is_allowed() {
        let rsa = "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END PUBLIC KEY-----";
        let e = PublicKey::from_pem(rsa, "t").expect_err("rsa");
        assert!(e.contains("RSA") && e.contains("allowed"), "{e}");
        let e =
            PublicKey::from_pem("-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----", "t")
                .expect_err("private");
        assert!(e.contains("private key"), "{e}");
        let e = PublicKey::from_pem("hello", "t").expect_err("garbage");
        assert!(e.contains("PEM"), "{e}");
    }
}
