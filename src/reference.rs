//! Image references, parsed and normalised by Docker's reference grammar
//! (distribution's `reference` package: domain, path components, tag,
//! digest).
//!
//! The grammar is checked here rather than by `oci-spec`'s
//! `Reference::from_str` for three reasons: its regex compiles into a program of about 4 MiB that stays
//! resident for the life of the daemon (the idle daemon's budget is 10 MiB);
//! its tag class `\w` is Unicode where Docker's is ASCII, so it accepts tags
//! the daemon refuses; and its only complaint is "invalid reference format"
//! where an operator needs to know which part is wrong. A property test holds
//! this parser to `oci-spec`'s on generated input.

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
        let grammar = |reason: String| RefError::Grammar { input: input.to_string(), reason };
        let (name, tag) = split_tag(name);
        if let Some(tag) = tag {
            check_tag(tag).map_err(grammar)?;
        }
        check_name(name).map_err(grammar)?;
        let (registry, repository) = split_domain(name);
        // Docker adds `latest` when neither tag nor digest is given; a
        // digest-only reference keeps no tag.
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Self { registry, repository, tag, digest })
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

    /// The same repository by `digest` alone (`name@digest`, no tag): what
    /// a pull of exactly that content asks for.
    pub fn pinned_only(&self, digest: Digest) -> Self {
        Self { tag: None, digest: Some(digest), ..self.clone() }
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

/// The tag Docker assumes when a reference names neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Docker's limit on a name (domain and path together).
const NAME_MAX: usize = 255;
/// Docker's limit on a tag.
const TAG_MAX: usize = 128;

/// `name[:tag]` → (name, tag). The tag follows the last `:` that comes after
/// the last `/`; an earlier `:` belongs to the domain's port.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match tag.chars().next() {
        None => Err("the tag after `:` is empty".to_string()),
        Some(c) if !word(c) => Err(format!("tag `{tag}` must start with a letter, digit or `_`")),
        _ if tag.len() > TAG_MAX => Err(format!("tag is {} characters long; at most {TAG_MAX}", tag.len())),
        _ => match tag.chars().find(|&c| !(word(c) || c == '.' || c == '-')) {
            Some(c) => Err(format!("tag `{tag}` has `{c}`; tags are letters, digits, `_`, `.` and `-`")),
            None => Ok(()),
        },
    }
}

/// `[domain[:port]/]component(/component)*`, at most 255 characters. The
/// first component counts as a domain when it could only be one or when the
/// rest would not parse otherwise, as the regex's alternation does.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the repository name is empty".to_string());
    }
    if name.len() > NAME_MAX {
        return Err(format!("the name is {} characters long; at most {NAME_MAX}", name.len()));
    }
    let path_only = check_path(name);
    if path_only.is_ok() {
        return path_only;
    }
    match name.split_once('/') {
        Some((domain, path)) if check_domain(domain).is_ok() => check_path(path),
        Some((domain, _)) if names_a_registry(domain) => check_domain(domain),
        _ => path_only,
    }
}

/// `host[:port]`: dot-separated labels of letters, digits and inner `-`.
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry port `{port}` in `{domain}` must be digits"));
        }
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "registry host `{host}` is not a host name (dot-separated letters, digits and inner `-`)"
            ));
        }
    }
    Ok(())
}

/// `component(/component)*`, each `[a-z0-9]+` joined by `.`, `_`, `__` or
/// runs of `-`.
fn check_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!("repository `{path}` has an empty path component"));
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let mut i = 0;
        let mut after_separator = true;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                after_separator = false;
                i += 1;
                continue;
            }
            let run = match b {
                b'.' => 1,
                b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
                b'_' => 1,
                b'-' => bytes[i..].iter().take_while(|&&c| c == b'-').count(),
                _ => {
                    let c = component[i..].chars().next().unwrap_or('?');
                    return Err(format!(
                        "repository component `{component}` has `{c}`; components are lowercase letters and digits joined by `.`, `_`, `__` or `-`"
                    ));
                }
            };
            if after_separator {
                return Err(format!(
                    "repository component `{component}` must start and end with a letter or digit, with one separator between"
                ));
            }
            after_separator = true;
            i += run;
        }
        if after_separator {
            return Err(format!("repository component `{component}` must end with a letter or digit"));
        }
    }
    Ok(())
}

/// Docker's rule for the first path component: a registry when it has a
/// `.` or `:` or is `localhost`, otherwise part of a Docker Hub repository.
fn names_a_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// Docker's `splitDomain`: the first component is the registry when
/// [`names_a_registry`]; otherwise the registry is Docker Hub, where
/// single-component names live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest)) if names_a_registry(first) => (first, rest),
        _ => (DOCKER_HUB, name),
    };
    let domain = if domain == "index.docker.io" { DOCKER_HUB } else { domain };
    if domain == DOCKER_HUB && !rest.contains('/') {
        return (domain.to_string(), format!("library/{rest}"));
    }
    (domain.to_string(), rest.to_string())
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
        Some((first, rest)) if names_a_registry(first) => rest,
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
            (&format!("app:{}", "t".repeat(129)), "at most 128"),
            ("app:1é", "tags are letters, digits"),
            ("app:é", "must start with a letter"),
            ("app:", "tag after `:` is empty"),
            ("app:.x", "must start with a letter, digit or `_`"),
            ("a--/b", "must end with a letter or digit"),
            ("a/.b", "must start and end"),
            ("a/b..c", "must start and end"),
            ("a//b", "empty path component"),
            ("-bad.host/app", "is not a host name"),
            ("host.io:port/app", "must be digits"),
            (&format!("{}/app", "a".repeat(252)), "at most 255"),
        ];
        for (input, needle) in cases {
            let err = ImageRef::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    /// Mostly well-formed references with noise mixed in: valid components
    /// with every separator Docker knows, components of any reference
    /// characters, domains with and without ports, tags good and bad.
    fn near_reference() -> impl Strategy<Value = String> {
        let component = prop_oneof![
            4 => "[a-z0-9]{1,3}((\\.|_|__|-{1,3})[a-z0-9]{1,3}){0,2}",
            1 => "[a-zA-Z0-9._-]{0,6}",
        ];
        let domain = prop_oneof![
            Just(String::new()),
            Just("localhost/".to_string()),
            "[a-z0-9]([a-z0-9-]{0,3}[a-z0-9])?(\\.[a-zA-Z0-9-]{1,4})?(:[0-9]{1,4})?/",
            "[a-zA-Z0-9.-]{1,8}(:[0-9a]{0,3})?/",
        ];
        let tag =
            prop_oneof![Just(String::new()), ":[A-Za-z0-9_][A-Za-z0-9_.-]{0,5}", ":[A-Za-z0-9_.-]{0,4}"];
        (domain, prop::collection::vec(component, 1..4), tag)
            .prop_map(|(domain, path, tag)| format!("{domain}{}{tag}", path.join("/")))
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

        // The grammar agrees with oci-spec's regex (what registries and
        // registry clients expect) on near-miss input built from the characters
        // references are made of. Where oci-spec accepts and we refuse, it is
        // one of the checks Docker makes beyond that regex.
        #[test]
        fn grammar_agrees_with_oci_spec(
            s in near_reference(),
        ) {
            let ours = ImageRef::parse(&s);
            match (oci_spec::distribution::Reference::try_from(s.as_str()), ours) {
                (Ok(theirs), Ok(ours)) => {
                    prop_assert_eq!(theirs.registry(), ours.registry());
                    prop_assert_eq!(theirs.repository(), ours.repository());
                    prop_assert_eq!(theirs.tag(), ours.tag());
                }
                (Ok(_), Err(e)) => prop_assert!(
                    matches!(e, RefError::Uppercase(_) | RefError::ImageId(_)),
                    "oci-spec accepts {:?}, we refuse: {}", s, e
                ),
                (Err(_), Ok(ours)) => prop_assert!(false, "oci-spec refuses {:?}, we accept {}", s, ours),
                (Err(_), Err(_)) => {}
            }
        }

        // Arbitrary input never panics; it parses or gives an error.
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,80}") {
            let _ = ImageRef::parse(&s);
        }
    }
}
