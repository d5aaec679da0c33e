//! Ids, secrets and their hashes.
//!
//! Agent credentials and enrolment tokens are 256-bit random secrets from
//! the system's generator, stored as their SHA-256. A slow password hash
//! (argon2) protects guessable human passwords; against 256 random bits it
//! adds nothing but latency, paid on every request of every agent (a
//! thousand agents polling). Hashes are compared in constant time.

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use super::FleetError;

/// Random bytes in a secret (256 bits).
const SECRET_BYTES: usize = 32;
/// Random bytes in an id (80 bits: unique, not secret).
const ID_BYTES: usize = 10;

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> Result<String, FleetError> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| FleetError::Corrupt("the system's random number generator failed".into()))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 random bytes, for a password hash's salt.
pub fn salt() -> Result<[u8; 16], FleetError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| FleetError::Corrupt("the system's random number generator failed".into()))?;
    Ok(bytes)
}

/// A new id (agent, enrolment token): 20 hex digits.
pub fn new_id() -> Result<String, FleetError> {
    random_hex(ID_BYTES)
}

/// A new secret: 64 hex digits.
pub fn new_secret() -> Result<String, FleetError> {
    random_hex(SECRET_BYTES)
}

/// The stored form of a secret: its SHA-256 in hex.
pub fn hash(secret: &str) -> String {
    hex(digest(&SHA256, secret.as_bytes()).as_ref())
}

/// Whether `secret` hashes to `stored`, in constant time.
pub fn verify(secret: &str, stored: &str) -> bool {
    hash(secret).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Whether two secrets are equal, in time independent of where they differ
/// and of their lengths (both are hashed first).
pub fn equal(given: &str, expected: &str) -> bool {
    verify(given, &hash(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_verify_only_against_their_own_hash() {
        let (a, b) = (
            new_secret().expect("the system generator works"),
            new_secret().expect("the system generator works"),
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(verify(&a, &hash(&a)));
        assert!(!verify(&b, &hash(&a)));
        assert!(!verify("", &hash(&a)));
        assert!(equal("admin-token-123456", "admin-token-123456"));
        assert!(!equal("admin-token-123456", "admin-token-12345"));
        let id = new_id().expect("the system generator works");
        let credential = format!("{id}.{a}");
        assert!(
            super::super::protocol::split_credential(&credential).is_some(),
            "our ids and secrets fit the wire shape"
        );
    }
}
