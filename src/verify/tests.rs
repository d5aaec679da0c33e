use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use super::*;

const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn digest(d: &str) -> Digest {
    Digest::parse(d).expect("digest")
}

fn payload(d: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": "registry.local/app"},
            "image": {"docker-manifest-digest": d},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

struct P256(EcdsaKeyPair, SystemRandom);

impl P256 {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("generate");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
        Self(pair, rng)
    }
    fn public(&self) -> PublicKey {
        PublicKey::from_pem(&keys::pem::p256(self.0.public_key().as_ref()), "test").expect("key")
    }
    fn sign(&self, payload: Vec<u8>) -> SignedLayer {
        let sig = self.0.sign(&self.1, &payload).expect("sign");
        SignedLayer { payload, signature: base64::engine::general_purpose::STANDARD.encode(sig.as_ref()) }
    }
}

#[test]
fn a_signature_by_a_listed_key_over_the_digest_is_good() {
    let key = P256::new();
    let layers = [key.sign(payload(A))];
    assert_eq!(judge(&[key.public()], &digest(A), Some(&layers)), Ok(()));
}

#[test]
fn each_failure_says_why_in_the_issues_words() {
    let key = P256::new();
    let other = P256::new();
    let reason = |keys: &[PublicKey], d: &str, layers: Option<&[SignedLayer]>| {
        judge(keys, &digest(d), layers).expect_err("refused").to_string()
    };
    let r = reason(&[key.public()], A, None);
    assert!(r.starts_with("no signature") && r.contains("sha256-aaaa"), "{r}");
    let r = reason(&[key.public()], A, Some(&[other.sign(payload(A))]));
    assert!(r.starts_with("signed by an unknown key"), "{r}");
    let r = reason(&[key.public()], B, Some(&[key.sign(payload(A))]));
    assert!(r.starts_with("signature is for another digest") && r.contains(A), "{r}");
    let mut tampered = key.sign(payload(A));
    tampered.payload = payload(A).into_iter().chain(*b" ").collect();
    let r = reason(&[key.public()], A, Some(&[tampered]));
    assert!(r.contains("payload does not verify"), "{r}");
    let mut garbled = key.sign(payload(A));
    garbled.signature = "not base64!".into();
    let r = reason(&[key.public()], A, Some(&[garbled]));
    assert!(r.starts_with("payload does not verify"), "{r}");
    let odd = serde_json::json!({"critical": {"image": {"docker-manifest-digest": A}, "type": "other"}});
    let r = reason(&[key.public()], A, Some(&[key.sign(odd.to_string().into_bytes())]));
    assert!(r.starts_with("payload does not verify") && r.contains("critical.type"), "{r}");
}

#[test]
fn any_listed_key_and_any_layer_will_do() {
    let old = P256::new();
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate");
    let new = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pair");
    let new_public = PublicKey::from_pem(&keys::pem::ed25519(new.public_key().as_ref()), "new").expect("key");
    let signed_new = SignedLayer {
        payload: payload(A),
        signature: base64::engine::general_purpose::STANDARD.encode(new.sign(&payload(A)).as_ref()),
    };
    let keys = [old.public(), new_public];
    let layers = [P256::new().sign(payload(A)), signed_new];
    assert_eq!(judge(&keys, &digest(A), Some(&layers)), Ok(()), "rotation: the second key, the second layer");
}

#[test]
fn the_signature_tag_is_cosigns() {
    assert_eq!(signature_tag(&digest(A)), format!("sha256-{}.sig", &A[7..]));
}
