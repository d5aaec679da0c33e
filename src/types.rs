//! Newtypes that keep identifiers from being mixed up.

use std::fmt;

use serde::Serialize;

/// A Docker container id (the full 64-hex form as the engine reports it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ContainerId(String);

impl ContainerId {
    /// Wraps an id reported by the engine.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as the engine knows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-character form `docker ps` shows.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content digest such as `sha256:0123…` (algorithm, colon, lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Digest(String);

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("digest `{0}` has no algorithm prefix; expected sha256:<64 hex characters>")]
    NoAlgorithm(String),
    /// An algorithm registries do not use.
    #[error("digest algorithm `{0}` is not supported; allowed: sha256, sha384, sha512")]
    Algorithm(String),
    /// Wrong length or a non-hex character.
    #[error("digest `{digest}` is malformed; expected {algorithm}:<{len} lowercase hex characters>")]
    Encoded {
        /// The digest as given.
        digest: String,
        /// Its algorithm.
        algorithm: String,
        /// The hex length that algorithm needs.
        len: usize,
    },
}

impl Digest {
    /// Parses and checks `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (algorithm, hex) = s.split_once(':').ok_or_else(|| DigestError::NoAlgorithm(s.to_string()))?;
        let len = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            other => return Err(DigestError::Algorithm(other.to_string())),
        };
        let well_formed =
            hex.len() == len && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(DigestError::Encoded {
                digest: s.to_string(),
                algorithm: algorithm.to_string(),
                len,
            });
        }
        Ok(Self(s.to_string()))
    }

    /// The full `algorithm:hex` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex characters, for tables and reasons.
    pub fn short(&self) -> &str {
        let end = self.0.find(':').map_or(0, |i| i + 13);
        self.0.get(..end).unwrap_or(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A local image id (the digest of the image config), as `docker images --no-trunc` shows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ImageId(String);

impl ImageId {
    /// Wraps an id reported by the engine.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as the engine reports it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one swap attempt: sortable by time, unique per host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct OpId(String);

impl OpId {
    /// A new id: UTC time to the millisecond, then the process id and a
    /// per-process counter (`20261125T093012.345Z-4242-1`).
    pub fn generate() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let compact: String = now.chars().filter(|c| !matches!(c, '-' | ':')).collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("{compact}-{}-{n}", std::process::id()))
    }

    /// Wraps an id this process made or already checked.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// Checks an id that comes from outside (a flag, a journal file name):
    /// it names files in the state directory, so it must be a plain name —
    /// `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 100 characters.
    pub fn parse(id: &str) -> Result<Self, String> {
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !first_ok || !rest_ok || id.len() > 100 {
            return Err(format!(
                "`{}` is not an op id: expected a letter or digit, then letters, digits, `.`, `_` or `-`, at most 100 characters",
                id.chars().take(120).collect::<String>()
            ));
        }
        Ok(Self(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, name-safe suffix derived from the id (for backup and
    /// temporary container names): the time's digits and the counter.
    pub fn suffix(&self) -> String {
        let digits: String = self.0.chars().filter(char::is_ascii_alphanumeric).collect();
        let start = digits.len().saturating_sub(12);
        digits[start..].to_lowercase()
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn op_ids_from_outside_must_be_plain_names() {
        let made = OpId::generate();
        assert_eq!(OpId::parse(made.as_str()).expect("generated ids parse"), made);
        for bad in ["", "../x", ".hidden", "a/b", "a b", "op\0", &"x".repeat(101)] {
            assert!(OpId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digest_accepts_well_formed_sha256() {
        let d = Digest::parse(&format!("sha256:{HEX64}")).expect("valid");
        assert_eq!(d.short(), "sha256:0123456789ab");
    }

    #[test]
    fn digest_rejects_bad_forms_with_what_is_allowed() {
        let cases = [
            ("abc", "no algorithm prefix"),
            ("md5:abc", "not supported"),
            ("sha256:abc", "64 lowercase hex"),
            (&format!("sha256:{}", HEX64.to_uppercase()), "64 lowercase hex"),
            (&format!("sha256:{}g", &HEX64[1..]), "64 lowercase hex"),
        ];
        for (input, needle) in cases {
            let err = Digest::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
