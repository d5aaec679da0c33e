//! An image's platform — OS, architecture, variant — read from the local
//! image and matched against the entries of a multi-platform index.
//!
//! A container created with `--platform` (an emulated `linux/arm64` on an
//! amd64 host) must be re-pulled and recreated for that same platform: a
//! pull without it fetches the host's, and the container silently changes
//! architecture. And of an index, only the entry for the container's
//! platform says whether its content changed.

use std::fmt;

use serde::Serialize;

/// `os/architecture[/variant]`, as Docker and OCI indexes spell it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Platform {
    /// `linux`, `windows`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, … (Go's GOARCH names).
    pub architecture: String,
    /// `v7`, `v8`, …; `None` when the image names none.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform an image reports (`Os`, `Architecture`, `Variant` of
    /// `docker image inspect`); `None` when it names no OS or architecture.
    pub fn of(os: Option<&str>, architecture: Option<&str>, variant: Option<&str>) -> Option<Self> {
        let os = os.filter(|s| !s.is_empty())?;
        let architecture = architecture.filter(|s| !s.is_empty())?;
        Some(Self {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|s| !s.is_empty()).map(str::to_string),
        })
    }

    /// True when an index entry for `os`/`architecture`/`variant` serves
    /// this platform. Variants are compared after the normalisation
    /// containerd applies (an arm64 image is `v8` unless it says otherwise,
    /// a 32-bit arm one `v7`): registries and local images each leave out
    /// the default, not always the same one.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let variant = variant.filter(|s| !s.is_empty());
        self.os == os
            && normal_arch(&self.architecture) == normal_arch(architecture)
            && default_variant(&self.architecture, self.variant.as_deref())
                == default_variant(architecture, variant)
    }
}

/// Aliases of the same architecture, as containerd's `platforms` package
/// reads them.
fn normal_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" | "armel" => "arm",
        "i386" => "386",
        other => other,
    }
}

/// The variant an image without one has: `v8` for arm64, `v7` for arm.
fn default_variant<'a>(arch: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (normal_arch(arch), variant) {
        ("arm64", None) => Some("v8"),
        ("arm", None) => Some("v7"),
        (_, v) => v,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_match_as_containerd_normalises_them() {
        let p = |os, arch, variant| Platform::of(Some(os), Some(arch), variant).expect("platform");
        let cases = [
            (p("linux", "amd64", None), ("linux", "amd64", None), true),
            (p("linux", "amd64", None), ("linux", "arm64", None), false),
            (p("linux", "amd64", None), ("windows", "amd64", None), false),
            (p("linux", "arm64", None), ("linux", "arm64", Some("v8")), true),
            (p("linux", "arm64", Some("v8")), ("linux", "arm64", None), true),
            (p("linux", "aarch64", None), ("linux", "arm64", None), true),
            (p("linux", "arm", Some("v6")), ("linux", "arm", Some("v7")), false),
            (p("linux", "arm", None), ("linux", "arm", Some("v7")), true),
        ];
        for (platform, (os, arch, variant), expected) in cases {
            assert_eq!(
                platform.matches(os, arch, variant),
                expected,
                "{platform} vs {os}/{arch}/{variant:?}"
            );
        }
        assert_eq!(p("linux", "arm", Some("v7")).to_string(), "linux/arm/v7");
        assert_eq!(Platform::of(Some(""), Some("amd64"), None), None);
    }
}
