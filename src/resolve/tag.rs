//! Tags read as versions the way real repositories spell them, and the
//! choice of a `track` target's tag.
//!
//! Real tag lists are not semver: postgres publishes `16.2` (two parts),
//! nginx `1.25.3`, `1.25.3-alpine`, `1.25.3-alpine-perl` and `1.25`, node
//! `20.11.0-bookworm-slim`, some repositories only suffixed tags. A tag is
//! `[v]MAJOR.MINOR[.PATCH][-PRE][-FLAVOUR]`: PRE is a pre-release marker
//! (`rc.1`, `beta2`, …) and FLAVOUR whatever else follows (`alpine`,
//! `bookworm-slim`). A flavour is a variant of the same version, never a
//! pre-release (`1.27.4-perl` is a release), and a tracked container stays
//! in its flavour: a `1.25.3-alpine` container tracked with `^1` moves to
//! `1.27.3-alpine`, not to the Debian-based `1.27.3`.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use semver::{Prerelease, Version, VersionReq};

/// Words that open a pre-release marker (`rc`, `rc1`, `rc.1`, `beta-2`
/// is `beta` then a flavour `2` — rare enough to accept).
const PRE_RELEASE: &[&str] =
    &["alpha", "beta", "rc", "pre", "preview", "dev", "snapshot", "nightly", "canary"];

/// A tag read as a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagVersion<'a> {
    /// The tag as the registry lists it.
    pub tag: &'a str,
    /// The version (a two-part tag has patch 0), with its pre-release.
    pub version: Version,
    /// 2 or 3: how many numbers the tag spells.
    pub parts: u8,
    /// What follows the version and pre-release (`alpine`), `""` for none,
    /// without a trailing build revision.
    pub flavour: &'a str,
    /// A trailing build revision (`r5` in bitnami's `16.2.0-debian-12-r5`,
    /// `ls220` in linuxserver's): a rebuild of the same version and
    /// flavour, higher is newer. 0 when there is none.
    pub revision: u64,
    /// Spelled with a leading `v`.
    pub v_prefix: bool,
}

impl TagVersion<'_> {
    /// Reads `tag`; `None` when it is not a version (`latest`, `16`,
    /// `alpine`, `3.13.0rc2`).
    pub fn parse(tag: &str) -> Option<TagVersion<'_>> {
        let (v_prefix, body) = match tag.strip_prefix('v') {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let (core, rest) = body.split_once('-').unwrap_or((body, ""));
        let numbers: Vec<u64> =
            core.split('.')
                .map(|n| {
                    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                        n.parse().ok()
                    } else {
                        None
                    }
                })
                .collect::<Option<_>>()?;
        // A lone number (`16`, `3`) is a floating alias, not a version to pin.
        let (major, minor, patch) = match numbers[..] {
            [major, minor] => (major, minor, 0),
            [major, minor, patch] => (major, minor, patch),
            _ => return None,
        };
        let mut version = Version::new(major, minor, patch);
        let (pre, flavour) = match rest.split_once('-') {
            Some((first, after)) if is_pre_release(first) => (first, after),
            None if is_pre_release(rest) => (rest, ""),
            _ => ("", rest),
        };
        if !pre.is_empty() {
            version.pre = Prerelease::new(pre).ok()?;
        }
        let (flavour, revision) = split_revision(flavour);
        Some(TagVersion { tag, version, parts: numbers.len() as u8, flavour, revision, v_prefix })
    }

    /// Whether the version counts for `range`: a release when it matches; a
    /// pre-release only when asked for and its release version would match
    /// (`1.5.0-rc.1` for `^1.4`: "follow release candidates of this line").
    pub fn matches(&self, range: &VersionReq, prerelease: bool) -> bool {
        if self.version.pre.is_empty() {
            return range.matches(&self.version);
        }
        let v = &self.version;
        prerelease && (range.matches(v) || range.matches(&Version::new(v.major, v.minor, v.patch)))
    }

    /// Higher version first; among equal versions the fuller spelling
    /// (`1.4.0` over `1.4`), then the plain one (`1.4.2` over `v1.4.2`),
    /// then the tag text — so the choice never depends on list order.
    fn rank(&self, other: &Self) -> Ordering {
        self.version
            .cmp(&other.version)
            .then(self.revision.cmp(&other.revision))
            .then(self.parts.cmp(&other.parts))
            .then(other.v_prefix.cmp(&self.v_prefix))
            .then(other.tag.cmp(self.tag))
    }
}

/// `debian-12-r5` → (`debian-12`, 5); `ls220` → (``, 220); `alpine3.19`
/// and `bookworm` are flavours with no revision.
fn split_revision(flavour: &str) -> (&str, u64) {
    let (head, last) = flavour.rsplit_once('-').unwrap_or(("", flavour));
    let number = ["r", "ls"].iter().find_map(|p| {
        let n = last.strip_prefix(p)?;
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse().ok()).flatten()
    });
    match number {
        Some(n) => (head, n),
        None => (flavour, 0),
    }
}

/// `rc`, `rc1`, `rc.1`, `beta.2`, `alpha` …: a marker word, then nothing,
/// digits, or dot-separated digits.
fn is_pre_release(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    PRE_RELEASE.iter().any(|word| {
        lower.strip_prefix(word).is_some_and(|rest| {
            let rest = rest.strip_prefix('.').unwrap_or(rest);
            rest.split('.').all(|n| n.bytes().all(|b| b.is_ascii_digit())) && !rest.ends_with('.')
        })
    })
}

/// Why no flavour can be chosen for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous(pub Vec<String>);

/// The flavour a container is kept in: the one the target names, else the
/// one of the tag it runs (when that tag is a version of the repository),
/// else plain when the repository has plain version tags; a repository
/// whose version tags all carry one flavour has that one. Several flavours
/// and nothing to choose by is [`Ambiguous`], listing them.
pub fn flavour(tags: &[String], named: Option<&str>, running: Option<&str>) -> Result<String, Ambiguous> {
    if let Some(named) = named {
        return Ok(named.to_string());
    }
    if let Some(running) = running.and_then(TagVersion::parse) {
        return Ok(running.flavour.to_string());
    }
    let flavours: BTreeSet<&str> =
        tags.iter().filter_map(|t| TagVersion::parse(t)).map(|t| t.flavour).collect();
    if flavours.contains("") || flavours.is_empty() {
        return Ok(String::new());
    }
    match flavours.len() {
        1 => Ok(flavours.into_iter().next().unwrap_or_default().to_string()),
        _ => Err(Ambiguous(flavours.into_iter().map(str::to_string).collect())),
    }
}

/// The highest tag of `flavour` whose version matches `range` (see
/// [`TagVersion::matches`] and its ranking).
pub fn pick<'t>(
    tags: &'t [String],
    range: &VersionReq,
    prerelease: bool,
    flavour: &str,
) -> Option<TagVersion<'t>> {
    tags.iter()
        .filter_map(|t| TagVersion::parse(t))
        .filter(|t| t.flavour == flavour && t.matches(range, prerelease))
        .max_by(TagVersion::rank)
}

#[cfg(test)]
mod tests;
