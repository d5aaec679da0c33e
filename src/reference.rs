//! Image references, parsed and normalised by Docker's reference grammar.
//!
//! The grammar itself (domain, path components, tag, digest) comes from
//! `oci-spec`'s `Reference`, the one `oci-client` speaks. Two of its gaps are
//! closed here because the daemon would refuse what it lets through: an
//! uppercase repository path whose first component is taken for a domain
//! (`Uppercase/app:1`), and a digest of the right length with non-hex
//! characters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::{Digest, DigestError};

/// The registry Docker assumes when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalised image reference: registry, repository, and a tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// Empty input.
    #[error("image reference is empty; expected [registry[:port]/]repository[:tag][@sha256:digest]")]
    Empty,
    /// An image id (`sha256:<64 hex>` or 64 hex), not a reference.
    #[error("`{0}` is an image id, not an image reference; name the image as repository:tag or repository@sha256:digest")]
    ImageId(String),
    /// Uppercase letters in the repository path.
    #[error("invalid image reference `{0}`: repository name must be lowercase")]
    Uppercase(String),
    /// The digest part is malformed.
    #[error("invalid image reference `{input}`: {source}")]
    Digest {
        /// The reference as given.
        input: String,
        /// What is wrong with its digest.
        #[source]
        source: DigestError,
    },
    /// Anything else the grammar refuses.
    #[error("invalid image reference `{input}`: {reason}; expected [registry[:port]/]repository[:tag][@sha256:digest], lowercase repository, tag of [A-Za-z0-9_.-] up to 128 characters")]
    Grammar {
        /// The reference as given.
        input: String,
        /// The grammar's complaint.
        reason: String,
    },
}

impl ImageRef {
    /// Parses a reference as `docker pull` would, adding `docker.io`,
    /// `library/` and the `latest` tag where Docker assumes them.
    pub fn parse(input: &str) -> Result<Self, RefError> {
        if input.is_empty() {
            return Err(RefError::Empty);
        }
        // Docker shows a container's image as its id once the tag has moved
        // to another image; `sha256:<hex>` would otherwise parse as
        // repository `sha256` with a hex tag.
        if is_image_id(input) {
            return Err(RefError::ImageId(input.to_string()));
        }
        let (name, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (input, None),
        };
        let digest = digest
            .map(Digest::parse)
            .transpose()
            .map_err(|source| RefError::Digest { input: input.to_string(), source })?;
        if path_has_uppercase(name) {
            return Err(RefError::Uppercase(input.to_string()));
        }
        let parsed = oci_client::Reference::try_from(input)
            .map_err(|e| RefError::Grammar { input: input.to_string(), reason: e.to_string() })?;
        // oci-spec adds `latest` when neither tag nor digest is given, as
        // Docker does; a digest-only reference keeps no tag.
        let tag = parsed.tag().map(str::to_string);
        Ok(Self {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag,
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `127.0.0.1:5000`, …
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/nginx`, `team/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`: what identifies the image's history.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// The same reference pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self { digest: Some(digest), ..self.clone() }
    }

    /// The short form people type: `nginx:1.25` rather than
    /// `docker.io/library/nginx:1.25`.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        };
        self.with_suffix(name)
    }

    /// The reference as `oci-client` wants it.
    pub fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(d)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                d.to_string(),
            ),
            (None, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.to_string(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        }
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

/// `sha256:<64 hex>` or bare 64 hex: what Docker calls an image id.
fn is_image_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True when the repository path (everything after a domain, before a tag)
/// has an uppercase letter. Mirrors Docker's `splitDomain`: the first
/// component is a domain only if it has a `.` or `:` or is `localhost`, and
/// domains may be uppercase while paths may not.
fn path_has_uppercase(name: &str) -> bool {
    let path = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => name,
    };
    // The tag follows the last ':' after the last '/'; tags may be uppercase.
    let last = path.rsplit('/').next().unwrap_or(path);
    let path_end = path.len() - last.len() + last.find(':').unwrap_or(last.len());
    path[..path_end].chars().any(|c| c.is_ascii_uppercase())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl FromStr for ImageRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.familiar())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
            ("portainer/agent:2.19.4", "docker.io/portainer/agent:2.19.4", "portainer/agent:2.19.4"),
            ("index.docker.io/library/redis:7", "docker.io/library/redis:7", "redis:7"),
            (
                "registry.local:5000/edge",
                "registry.local:5000/edge:latest",
                "registry.local:5000/edge:latest",
            ),
            ("127.0.0.1:5000/a/b/c:1.4.2", "127.0.0.1:5000/a/b/c:1.4.2", "127.0.0.1:5000/a/b/c:1.4.2"),
            ("localhost/app:v1", "localhost/app:v1", "localhost/app:v1"),
            (
                "REGISTRY.example.com/app:Tag_1",
                "REGISTRY.example.com/app:Tag_1",
                "REGISTRY.example.com/app:Tag_1",
            ),
        ];
        for (input, whole, familiar) in cases {
            let r = ImageRef::parse(input).expect(input);
            assert_eq!(r.to_string(), whole, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn digest_pins_parse_with_and_without_tag() {
        let r = ImageRef::parse(&format!("app@sha256:{HEX64}")).expect("digest only");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(Digest::as_str), Some(format!("sha256:{HEX64}").as_str()));
        let r = ImageRef::parse(&format!("reg.io:443/app:2@sha256:{HEX64}")).expect("tag+digest");
        assert_eq!(r.tag(), Some("2"));
        assert_eq!(r.registry(), "reg.io:443");
    }

    #[test]
    fn rejects_what_docker_rejects_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("Uppercase:tag", "must be lowercase"),
            ("Uppercase/lowercase:tag", "must be lowercase"),
            ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
            ("app@sha256:abc", "malformed"),
            (&format!("app@sha256:{}", "z".repeat(64)), "malformed"),
            (&format!("app@md5:{HEX64}"), "not supported"),
            ("app:bad tag", "invalid image reference"),
            ("aa/asdf$$^/aa", "invalid image reference"),
            (":justtag", "invalid image reference"),
            (&format!("sha256:{HEX64}"), "is an image id"),
            (HEX64, "is an image id"),
            (&format!("app:{}", "t".repeat(129)), "invalid image reference"),
        ];
        for (input, needle) in cases {
            let err = ImageRef::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    proptest! {
        // Whatever Docker-valid reference we build, parsing its normalised
        // form again gives the same reference (normalisation is idempotent).
        #[test]
        fn normalisation_round_trips(
            domain in prop::option::of("[a-z][a-z0-9]{0,8}\\.[a-z]{2,3}(:[1-9][0-9]{1,4})?"),
            path in prop::collection::vec("[a-z0-9]+([._-][a-z0-9]+)?", 1..4),
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let mut s = String::new();
            if let Some(d) = &domain { s.push_str(d); s.push('/'); }
            s.push_str(&path.join("/"));
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            let r = ImageRef::parse(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = ImageRef::parse(&r.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&r, &again);
            let familiar = ImageRef::parse(&r.familiar()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&r, &familiar);
            prop_assert_eq!(r.tag(), Some(tag.as_deref().unwrap_or("latest")));
        }

        // Arbitrary input never panics; it parses or gives an error.
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,80}") {
            let _ = ImageRef::parse(&s);
        }
    }
}
