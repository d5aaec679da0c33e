//! `policy.allowed_images`: which images a manifest may name.
//!
//! A pushed manifest (from a server, an API call, a git commit) must not be
//! able to run arbitrary images on the host. Patterns match the normalised
//! repository name (`docker.io/portainer/agent`), never the tag: pinning a
//! version is the manifest's job, choosing the repository is the policy's.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::reference::ImageRef;

/// One entry of `allowed_images`.
///
/// Without `*` it is a repository, normalised like a reference
/// (`portainer/agent` means `docker.io/portainer/agent`). With `*` it is a
/// glob over the normalised name where `*` matches any characters,
/// `/` included (`registry.local:5000/*` allows everything on that registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePattern {
    text: String,
    normalised: String,
}

impl ImagePattern {
    /// Parses a pattern, normalising a plain repository name.
    pub fn parse(s: &str) -> Result<Self, String> {
        const ALLOWED: &str = "a repository (`portainer/agent`, `registry.local:5000/team/app`) or a glob with `*` (`registry.local:5000/*`)";
        if s.is_empty() {
            return Err(format!("empty image pattern; expected {ALLOWED}"));
        }
        if s.contains(['@']) || (!s.contains('*') && has_tag(s)) {
            return Err(format!("image pattern `{s}` names a tag or digest; patterns match repositories only, expected {ALLOWED}"));
        }
        let normalised = if s.contains('*') {
            normalise_glob(s)
        } else {
            ImageRef::parse(s).map_err(|e| format!("{e}; expected {ALLOWED}"))?.name()
        };
        Ok(Self { text: s.to_string(), normalised })
    }

    /// True when `image`'s repository is allowed by this pattern.
    pub fn matches(&self, image: &ImageRef) -> bool {
        glob_match(&self.normalised, &image.name())
    }
}

/// `a/b:1` has a tag; `host:5000/a` has a port, not a tag.
fn has_tag(s: &str) -> bool {
    s.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// Adds Docker Hub's implied parts to a glob the way a reference would get
/// them: `portainer/*` → `docker.io/portainer/*`, `nginx*` → `docker.io/library/nginx*`.
fn normalise_glob(s: &str) -> String {
    let first = s.split('/').next().unwrap_or(s);
    if s.starts_with('*') || first.contains(['.', ':']) || first == "localhost" {
        s.to_string()
    } else if s.contains('/') {
        format!("docker.io/{s}")
    } else {
        format!("docker.io/library/{s}")
    }
}

/// Glob match where `*` matches any run of characters (iterative, linear
/// backtracking on the last star: no exponential blow-up on hostile input).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ImagePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ImagePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allowed(pattern: &str, image: &str) -> bool {
        ImagePattern::parse(pattern).expect(pattern).matches(&ImageRef::parse(image).expect(image))
    }

    #[test]
    fn table_of_matches() {
        let cases = [
            ("portainer/agent", "portainer/agent:2.19.4", true),
            ("portainer/agent", "docker.io/portainer/agent:latest", true),
            ("portainer/agent", "portainer/agent-evil:1", false),
            ("portainer/agent", "evil.io/portainer/agent:1", false),
            ("nginx", "nginx:1.25", true),
            ("nginx", "docker.io/library/nginx", true),
            ("registry.local:5000/*", "registry.local:5000/edge:1", true),
            ("registry.local:5000/*", "registry.local:5000/team/deep/app:1", true),
            ("registry.local:5000/*", "registry.local:5001/edge:1", false),
            ("registry.local:5000/*", "registry.local/edge:1", false),
            ("portainer/*", "portainer/agent:1", true),
            ("portainer/*", "library/portainer:1", false),
            ("*", "anything.io/x/y:1", true),
            ("127.0.0.1:*/app", "127.0.0.1:5000/app:2", true),
            ("127.0.0.1:*", "127.0.0.1:5000/team/app:2", true),
            ("127.0.0.1:*", "127.0.0.2:5000/app:2", false),
            ("nginx*", "nginx-unprivileged:1", true),
            ("nginx*", "bitnami/nginx:1", false),
        ];
        for (pattern, image, expected) in cases {
            assert_eq!(allowed(pattern, image), expected, "{pattern} vs {image}");
        }
    }

    #[test]
    fn patterns_with_tags_or_digests_are_refused() {
        for p in ["portainer/agent:2.1", "app@sha256:00", ""] {
            let err = ImagePattern::parse(p).expect_err(p);
            assert!(err.contains("expected a repository"), "{p}: {err}");
        }
        // A registry port is not a tag.
        assert!(ImagePattern::parse("registry.local:5000/app").is_ok());
    }

    proptest! {
        #[test]
        fn glob_without_star_is_equality(a in "[a-z/.:]{0,12}", b in "[a-z/.:]{0,12}") {
            prop_assert_eq!(glob_match(&a, &b), a == b);
        }

        #[test]
        fn star_suffix_is_prefix_match(prefix in "[a-z/]{0,8}", rest in "[a-z/]{0,8}") {
            let pattern = format!("{prefix}*");
            let text = format!("{prefix}{rest}");
            prop_assert!(glob_match(&pattern, &text));
        }

        #[test]
        fn hostile_patterns_finish(stars in 1usize..40) {
            let pattern = "*a".repeat(stars) + "b";
            let text = "a".repeat(200);
            prop_assert!(!glob_match(&pattern, &text));
        }
    }
}
