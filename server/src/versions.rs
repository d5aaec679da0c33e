//! "New version available": the server lists each repository's tags once
//! for the whole fleet (not once per agent), and marks per target the
//! newest patch, minor and major release above the version it runs, in its
//! own flavour (a `1.25.3-alpine` container is offered `1.27.0-alpine`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use futures_util::StreamExt as _;

use super::error::db;
use super::store::{now_ms, Store};
use super::FleetError;
use container_upgrader::reference::ImageRef;
use container_upgrader::registry::{self, Registry};
use container_upgrader::resolve::tag::TagVersion;

/// The newer releases a target could move to; absent when there is none.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Updates {
    /// The newest tag with the same major and minor and a higher patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// The newest tag with the same major and a higher minor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<String>,
    /// The newest tag with a higher major.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<String>,
}

impl Updates {
    /// Whether any update is known.
    pub fn any(&self) -> bool {
        self.patch.is_some() || self.minor.is_some() || self.major.is_some()
    }
}

/// The updates for a container running `running` (a tag) among `tags`:
/// releases only (no pre-releases), in the running tag's flavour. A tag
/// that is not a version (`latest`) has none.
pub fn updates(running: &str, tags: &[String]) -> Updates {
    let Some(now) = TagVersion::parse(running) else { return Updates::default() };
    let mut best: [Option<TagVersion<'_>>; 3] = [None, None, None];
    for candidate in tags.iter().filter_map(|t| TagVersion::parse(t)) {
        if !candidate.version.pre.is_empty()
            || candidate.flavour != now.flavour
            || candidate.version <= now.version
        {
            continue;
        }
        let (c, n) = (&candidate.version, &now.version);
        let kind = if c.major != n.major {
            2
        } else if c.minor != n.minor {
            1
        } else {
            0
        };
        let better = best[kind].as_ref().is_none_or(|b| {
            (c, candidate.revision, candidate.parts, !candidate.v_prefix)
                > (&b.version, b.revision, b.parts, !b.v_prefix)
        });
        if better {
            best[kind] = Some(candidate);
        }
    }
    let [patch, minor, major] = best.map(|b| b.map(|t| t.tag.to_string()));
    Updates { patch, minor, major }
}

/// What `--version-check-interval` and friends set.
#[derive(Debug, Clone)]
pub struct CheckerConfig {
    /// Time between checks of every repository.
    pub interval: Duration,
    /// Registries (host[:port]) spoken to over plain HTTP, besides loopback.
    pub insecure: Vec<String>,
    /// Time one registry request may take.
    pub timeout: Duration,
    /// When not empty, the only registries (host or host:port) the
    /// server asks; others are recorded "not allowed" without a request.
    pub allow: Vec<String>,
    /// `--verify-key`: when not empty, campaigns pin only digests signed by
    /// one of these keys, and the checker records which versions are.
    pub verify_keys: Vec<container_upgrader::verify::PublicKey>,
}

/// Repositories checked at once.
pub const CHECKS_AT_ONCE: usize = 8;
/// Requests at once to one registry host: a slow host delays only its own
/// repositories.
pub const CHECKS_PER_HOST: usize = 2;

/// Why the server will not ask `registry` at all, if it will not: it is not
/// in `--registry-allow`, or it is an address no registry has (link-local,
/// such as a cloud's metadata service at 169.254.169.254; unspecified;
/// multicast). Said without contacting it, so the answer reveals nothing
/// about what is reachable from the server.
pub fn refused(registry: &str, allow: &[String]) -> Option<String> {
    let host = container_upgrader::registry::host(registry);
    let odd = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_link_local() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_unspecified() || ip.is_multicast() || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    };
    if odd {
        return Some(format!(
            "not allowed: {registry} is a link-local, unspecified or multicast address, never a registry"
        ));
    }
    if !allow.is_empty() && !allow.iter().any(|a| a == registry || a == host) {
        return Some(format!("not allowed: {registry} is not in --registry-allow"));
    }
    None
}

/// A repository as the server knows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RepositoryInfo {
    /// `registry/path`.
    pub repository: String,
    /// How many version tags it has.
    pub versions: usize,
    /// Its highest release tag.
    pub newest: Option<String>,
    /// When its tags were last listed (RFC 3339).
    pub checked_at: Option<String>,
    /// Why the last listing failed.
    pub error: Option<String>,
    /// How many targets run an image from it.
    pub targets: i64,
}

/// The highest release among `tags`.
pub fn newest(tags: &[String]) -> Option<String> {
    tags.iter()
        .filter_map(|t| TagVersion::parse(t))
        .filter(|t| t.version.pre.is_empty())
        .max_by(|a, b| (&a.version, a.revision, a.parts).cmp(&(&b.version, b.revision, b.parts)))
        .map(|t| t.tag.to_string())
}

/// What the version checker knows per repository: its tags, and why its
/// last listing failed.
#[derive(Debug, Default)]
pub struct RepositoryTags {
    /// Repository → tags.
    pub tags: std::collections::HashMap<String, Vec<String>>,
    /// Repository → the last listing's error.
    pub errors: std::collections::HashMap<String, String>,
    /// With `--verify-key`: which digests and tags are signed.
    pub signatures: crate::signatures::Verdicts,
}

impl Store {
    /// Tags and errors for every repository.
    pub async fn repository_tags(&self) -> Result<RepositoryTags, FleetError> {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT repository, tags, error FROM repositories")
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading repository tags"))?;
        let mut out = RepositoryTags::default();
        for (repository, tags, error) in rows {
            if let Some(e) = error {
                out.errors.insert(repository.clone(), e);
            }
            out.tags.insert(repository, serde_json::from_str(&tags).unwrap_or_default());
        }
        out.signatures = self.signature_verdicts().await?;
        Ok(out)
    }

    /// The tags stored for every repository, by repository.
    pub async fn tags_by_repository(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, FleetError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT repository, tags FROM repositories")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading repository tags"))?;
        Ok(rows.into_iter().map(|(r, tags)| (r, serde_json::from_str(&tags).unwrap_or_default())).collect())
    }

    /// Every repository a target runs, with what is known of it.
    pub async fn repositories(&self) -> Result<Vec<RepositoryInfo>, FleetError> {
        type Row = (String, Option<String>, Option<i64>, Option<String>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT t.repository, r.tags, r.checked_at, r.error, COUNT(*) FROM targets t \
             LEFT JOIN repositories r ON r.repository = t.repository \
             WHERE t.repository IS NOT NULL GROUP BY t.repository, r.tags, r.checked_at, r.error \
             ORDER BY t.repository",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing repositories"))?;
        Ok(rows
            .into_iter()
            .map(|(repository, tags, checked_at, error, targets)| {
                let tags: Vec<String> = tags.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
                RepositoryInfo {
                    repository,
                    versions: tags.iter().filter(|t| TagVersion::parse(t).is_some()).count(),
                    newest: newest(&tags),
                    checked_at: checked_at.map(super::store::rfc3339),
                    error,
                    targets,
                }
            })
            .collect())
    }

    /// Lists the tags of every repository the fleet runs, once each.
    pub async fn check_versions(&self, config: &CheckerConfig) -> Result<(), FleetError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT repository FROM targets WHERE repository IS NOT NULL")
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing the fleet's repositories"))?;
        let refs: Vec<ImageRef> = rows.iter().filter_map(|(r,)| ImageRef::parse(r).ok()).collect();
        let client = Arc::new(Registry::with_plain_http(
            registry::plain_http(&config.insecure, &refs),
            config.timeout,
        ));
        let hosts: std::collections::HashMap<String, Arc<tokio::sync::Semaphore>> = refs
            .iter()
            .map(|r| (r.registry().to_string(), Arc::new(tokio::sync::Semaphore::new(CHECKS_PER_HOST))))
            .collect();
        let allow = Arc::new(config.allow.clone());
        let listings = futures_util::stream::iter(refs.into_iter().map(|image| {
            let turn = hosts.get(image.registry()).cloned();
            list_tags(client.clone(), turn, allow.clone(), image)
        }))
        .buffer_unordered(CHECKS_AT_ONCE);
        futures_util::pin_mut!(listings);
        let mut listed: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        while let Some((repository, tags, error)) = futures_util::StreamExt::next(&mut listings).await {
            // A failed listing keeps the tags known before.
            sqlx::query(
                "INSERT INTO repositories (repository, tags, checked_at, error) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repository) DO UPDATE SET tags = COALESCE($5, repositories.tags), \
                 checked_at = $3, error = $4",
            )
            .bind(&repository)
            .bind(
                tags.as_ref()
                    .map_or_else(|| "[]".to_string(), |t| serde_json::to_string(t).unwrap_or_default()),
            )
            .bind(now_ms())
            .bind(error)
            .bind(tags.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default()))
            .execute(&self.pool)
            .await
            .map_err(db("storing repository tags"))?;
            if let Some(tags) = tags {
                listed.insert(repository, tags);
            }
        }
        let offered = |tag: &str, tags: &[String]| {
            let u = updates(tag, tags);
            [u.patch, u.minor, u.major].into_iter().flatten().collect()
        };
        self.check_signatures(&config.verify_keys, &client, &listed, &offered, &hosts, CHECKS_AT_ONCE).await
    }
}

/// One repository's tags: (repository, tags, why not), asked within its
/// host's `turn`, or refused without a request.
async fn list_tags(
    client: Arc<Registry>,
    turn: Option<Arc<tokio::sync::Semaphore>>,
    allow: Arc<Vec<String>>,
    image: ImageRef,
) -> (String, Option<Vec<String>>, Option<String>) {
    if let Some(why) = refused(image.registry(), &allow) {
        return (image.name(), None, Some(why));
    }
    let _turn = match turn {
        Some(s) => s.acquire_owned().await.ok(),
        None => None,
    };
    match client.tags(&image).await {
        Ok(tags) => (image.name(), Some(tags), None),
        Err(e) => {
            tracing::warn!(repository = %image.name(), error = %e, "cannot list tags");
            (image.name(), None, Some(e.to_string()))
        }
    }
}

/// Checks versions soon after start, every `interval`, and whenever `new`
/// is notified (a report brought a repository never checked), until the
/// task is dropped.
pub async fn run_checker(store: Store, config: CheckerConfig, new: Arc<Notify>) {
    // Let the first reports arrive before the first check.
    let mut next = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = new.notified() => {}
        }
        if let Err(e) = store.check_versions(&config).await {
            tracing::warn!(error = %e, "version check failed");
        }
        next = tokio::time::Instant::now() + config.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn updates_are_the_newest_patch_minor_and_major_in_the_same_flavour() {
        let all = tags(&[
            "1.25.3",
            "1.25.4",
            "1.25.4-alpine",
            "1.26.0",
            "1.27.0",
            "1.27.1-rc.1",
            "2.0.1",
            "2.0.0",
            "latest",
            "1.24.9",
            "1.25",
        ]);
        let u = updates("1.25.3", &all);
        assert_eq!(u.patch.as_deref(), Some("1.25.4"));
        assert_eq!(u.minor.as_deref(), Some("1.27.0"));
        assert_eq!(u.major.as_deref(), Some("2.0.1"));
        let alpine = updates("1.25.3-alpine", &all);
        assert_eq!(alpine, Updates { patch: Some("1.25.4-alpine".into()), minor: None, major: None });
        assert!(!updates("2.0.1", &all).any(), "the newest has none");
        assert!(!updates("latest", &all).any(), "not a version: no marks");
    }

    #[test]
    fn newest_ignores_pre_releases_and_words() {
        assert_eq!(newest(&tags(&["1.0.0", "2.0.0-rc.1", "latest", "1.2"])).as_deref(), Some("1.2"));
        assert_eq!(newest(&tags(&["latest"])), None);
    }
}
