//! Run only signed images, fleet-wide: with `serve --verify-key` the
//! server judges cosign signatures the way every host does
//! ([`container_upgrader::verify`]) — a campaign is refused at creation
//! when the digest it would pin carries no signature by one of the keys,
//! and the version checker records, per repository, whether the digests
//! the fleet runs and the versions it is offered are signed, for the page.
//!
//! Verdicts are stored per (repository, digest) with the key set's
//! fingerprint: a good one is not asked again, a refusal is asked at every
//! check (a signature may be pushed after its image), and a change of keys
//! starts over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use serde::Serialize;

use super::error::db;
use super::store::{now_ms, Store};
use super::FleetError;
use container_upgrader::reference::ImageRef;
use container_upgrader::registry::Registry;
use container_upgrader::types::Digest;
use container_upgrader::verify::{PublicKey, Refusal};

/// Whether one version is signed by a key of `--verify-key`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Signed {
    /// `true`: a signature by one of the keys verifies for its digest.
    pub signed: bool,
    /// Why not, as a host would say it (`no signature: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the checker stored: per repository, each checked tag's digest and
/// each digest's verdict (`None`: signed).
#[derive(Debug, Default)]
pub struct Verdicts {
    tags: HashMap<String, HashMap<String, String>>,
    digests: HashMap<(String, String), Option<String>>,
}

impl Verdicts {
    /// The verdict for `digest` of `repository`, if checked.
    pub fn of_digest(&self, repository: &str, digest: &str) -> Option<Signed> {
        let refusal = self.digests.get(&(repository.to_string(), digest.to_string()))?;
        Some(Signed { signed: refusal.is_none(), reason: refusal.clone() })
    }

    /// The verdict for the digest `tag` of `repository` pointed at when
    /// last checked.
    pub fn of_tag(&self, repository: &str, tag: &str) -> Option<Signed> {
        let digest = self.tags.get(repository)?.get(tag)?;
        self.of_digest(repository, digest)
    }

    /// Nothing was checked (no `--verify-key`).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The marks for a target running `image` (at `digest`, when known)
    /// and offered `offered` tags: tag → verdict, only for what was checked.
    pub fn for_target(
        &self,
        repository: &str,
        running: Option<(&str, Option<&str>)>,
        offered: &[&String],
    ) -> BTreeMap<String, Signed> {
        let mut out = BTreeMap::new();
        if self.is_empty() {
            return out;
        }
        if let Some((tag, digest)) = running {
            let found = match digest {
                Some(d) => self.of_digest(repository, d),
                None => self.of_tag(repository, tag),
            };
            if let Some(s) = found {
                out.insert(tag.to_string(), s);
            }
        }
        for tag in offered {
            if let Some(s) = self.of_tag(repository, tag) {
                out.insert((*tag).clone(), s);
            }
        }
        out
    }
}

/// Identifies a key set for stored verdicts: the SHA-256 of the sorted
/// raw keys, in hex (stable across builds, unlike a std hasher).
pub fn fingerprint(keys: &[PublicKey]) -> String {
    let mut raws: Vec<&[u8]> = keys.iter().map(|k| k.raw.as_slice()).collect();
    raws.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for raw in raws {
        ctx.update(&(raw.len() as u64).to_be_bytes());
        ctx.update(raw);
    }
    ctx.finish().as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The most tags whose digest one check asks per repository: the running
/// tags and the updates offered are few; this bounds a fleet running many.
const MAX_TAGS_PER_REPOSITORY: usize = 32;

/// What every repository's check shares: the registry client, the
/// updates offered to a tag, the key set's fingerprint, the keys, and the
/// (repository, digest) pairs already judged signed.
#[derive(Clone, Copy)]
struct Judging<'a> {
    client: &'a Registry,
    offered: &'a (dyn Fn(&str, &[String]) -> Vec<String> + Sync),
    keys: &'a str,
    verify_keys: &'a [PublicKey],
    good: &'a HashSet<(String, String)>,
}

impl Store {
    /// Every stored verdict for the current keys.
    pub async fn signature_verdicts(&self) -> Result<Verdicts, FleetError> {
        let mut out = Verdicts::default();
        let digests: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT repository, digest, refusal FROM signatures")
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading signature verdicts"))?;
        if digests.is_empty() {
            return Ok(out);
        }
        out.digests = digests.into_iter().map(|(r, d, refusal)| ((r, d), refusal)).collect();
        let tags: Vec<(String, String, String)> =
            sqlx::query_as("SELECT repository, tag, digest FROM tag_digests")
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading tag digests"))?;
        for (repository, tag, digest) in tags {
            out.tags.entry(repository).or_default().insert(tag, digest);
        }
        Ok(out)
    }

    /// Checks the signatures of what the fleet runs and is offered, for
    /// each repository whose tags are in `listed` (repository → tags);
    /// `offered` names the updates offered to a tag among tags; `at_once`
    /// repositories are checked at once, each within its registry host's
    /// turn in `hosts` (the tag listings' own). Without keys, forgets
    /// every verdict (none would be true any more).
    pub async fn check_signatures(
        &self,
        verify_keys: &[PublicKey],
        client: &Registry,
        listed: &HashMap<String, Vec<String>>,
        offered: &(dyn Fn(&str, &[String]) -> Vec<String> + Sync),
        hosts: &HashMap<String, Arc<Semaphore>>,
        at_once: usize,
    ) -> Result<(), FleetError> {
        if verify_keys.is_empty() {
            for table in ["signatures", "tag_digests"] {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&self.pool)
                    .await
                    .map_err(db("forgetting signature verdicts"))?;
            }
            return Ok(());
        }
        let keys = fingerprint(verify_keys);
        sqlx::query("DELETE FROM signatures WHERE keys <> $1")
            .bind(&keys)
            .execute(&self.pool)
            .await
            .map_err(db("forgetting verdicts of other keys"))?;
        let good: HashSet<(String, String)> = sqlx::query_as::<_, (String, String)>(
            "SELECT repository, digest FROM signatures WHERE refusal IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading signature verdicts"))?
        .into_iter()
        .collect();
        let running: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT repository, image, digest FROM targets WHERE repository IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing what the fleet runs"))?;
        // `at_once` repositories at once, each host within its turn (the
        // listings' bounds): a fleet of hundreds of repositories is not
        // checked one request at a time.
        let work: Vec<_> = listed
            .iter()
            .filter_map(|(repository, tags)| {
                let reference = ImageRef::parse(repository).ok()?;
                let turn = hosts.get(reference.registry()).cloned();
                let ours = running.iter().filter(move |(r, _, _)| r == repository);
                let judging = Judging { client, offered, keys: &keys, verify_keys, good: &good };
                Some(self.check_repository(judging, repository, reference, tags, ours, turn))
            })
            .collect();
        let mut checks = futures_util::stream::iter(work).buffer_unordered(at_once.max(1));
        while let Some(checked) = checks.next().await {
            checked?;
        }
        Ok(())
    }

    /// One repository's part of [`Store::check_signatures`]: the digests of
    /// its offered and running tags (at most [`MAX_TAGS_PER_REPOSITORY`])
    /// and of what runs, each judged unless already known good.
    async fn check_repository<'a>(
        &self,
        judging: Judging<'_>,
        repository: &str,
        reference: ImageRef,
        tags: &[String],
        running: impl Iterator<Item = &'a (String, Option<String>, Option<String>)>,
        turn: Option<Arc<Semaphore>>,
    ) -> Result<(), FleetError> {
        // The offered updates first: past the bound, a running tag's
        // mark is the one to go (its digest is judged anyway).
        let (mut wanted, mut runs): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        let mut digests: Vec<Digest> = Vec::new();
        for (_, image, digest) in running {
            let tag = image
                .as_deref()
                .and_then(|i| ImageRef::parse(i).ok())
                .and_then(|i| i.tag().map(String::from));
            if let Some(tag) = tag {
                wanted.extend((judging.offered)(&tag, tags));
                runs.push(tag);
            }
            if let Some(d) = digest.as_deref().and_then(|d| Digest::parse(d).ok()) {
                digests.push(d);
            }
        }
        wanted.sort();
        wanted.dedup();
        runs.sort();
        runs.dedup();
        runs.retain(|t| !wanted.contains(t));
        wanted.extend(runs);
        wanted.truncate(MAX_TAGS_PER_REPOSITORY);
        let _turn = match turn {
            Some(turn) => turn.acquire_owned().await.ok(),
            None => None,
        };
        for tag in wanted.iter().filter(|t| tags.contains(t)) {
            let Ok(tagged) = ImageRef::parse(&format!("{repository}:{tag}")) else { continue };
            match judging.client.digest(&tagged).await {
                Ok(d) => {
                    self.store_tag_digest(repository, tag, &d).await?;
                    digests.push(d);
                }
                Err(e) => {
                    tracing::warn!(image = %tagged.familiar(), error = %e, "cannot read a tag's digest")
                }
            }
        }
        digests.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        digests.dedup();
        for digest in digests {
            if judging.good.contains(&(repository.to_string(), digest.to_string())) {
                continue;
            }
            let refusal = judging.client.cosign_verdict(&reference, &digest, judging.verify_keys).await.err();
            if let Some(Refusal::Registry(e)) = &refusal {
                // Not a verdict: what was known stays.
                tracing::warn!(repository = %repository, digest = %digest, error = %e, "cannot read signatures");
                continue;
            }
            self.store_verdict(repository, &digest, refusal.map(|r| r.to_string()), judging.keys).await?;
        }
        Ok(())
    }

    async fn store_tag_digest(&self, repository: &str, tag: &str, digest: &Digest) -> Result<(), FleetError> {
        sqlx::query(
            "INSERT INTO tag_digests (repository, tag, digest, checked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repository, tag) DO UPDATE SET digest = $3, checked_at = $4",
        )
        .bind(repository)
        .bind(tag)
        .bind(digest.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("storing a tag's digest"))?;
        Ok(())
    }

    async fn store_verdict(
        &self,
        repository: &str,
        digest: &Digest,
        refusal: Option<String>,
        keys: &str,
    ) -> Result<(), FleetError> {
        sqlx::query(
            "INSERT INTO signatures (repository, digest, refusal, keys, checked_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (repository, digest) DO UPDATE SET refusal = $3, keys = $4, checked_at = $5",
        )
        .bind(repository)
        .bind(digest.as_str())
        .bind(refusal)
        .bind(keys)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("storing a signature verdict"))?;
        Ok(())
    }
}

/// Reads `--verify-key` files: each one PEM public key (ECDSA P-256 or
/// Ed25519); the error names the file and what is allowed.
pub fn read_keys(paths: &[std::path::PathBuf]) -> Result<Vec<PublicKey>, String> {
    paths
        .iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("--verify-key {}: {e}", path.display()))?;
            PublicKey::from_pem(&text, &path.display().to_string())
                .map_err(|e| format!("--verify-key {}: {e}", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        let raw = std::iter::once(0x04).chain(std::iter::repeat_n(byte, 64)).collect();
        PublicKey { kind: container_upgrader::verify::KeyKind::EcdsaP256, raw, label: format!("key{byte}") }
    }

    #[test]
    fn a_key_set_is_the_same_in_any_order_and_another_set_is_not() {
        let (a, b) = (key(1), key(2));
        assert_eq!(fingerprint(&[a.clone(), b.clone()]), fingerprint(&[b.clone(), a.clone()]));
        assert_ne!(fingerprint(std::slice::from_ref(&a)), fingerprint(&[a, b]));
    }

    #[test]
    fn marks_cover_the_running_digest_and_the_offered_tags_only_where_judged() {
        let mut v = Verdicts::default();
        let repo = "reg.local/app";
        v.digests.insert((repo.into(), "sha256:run".into()), None);
        v.digests.insert((repo.into(), "sha256:new".into()), Some("no signature: …".into()));
        v.digests.insert((repo.into(), "sha256:tagged".into()), None);
        v.tags.insert(repo.into(), [("2.0.0".to_string(), "sha256:new".to_string())].into_iter().collect());
        v.tags.get_mut(repo).expect("repo").insert("1.0.0".into(), "sha256:tagged".into());
        let (new, unknown) = ("2.0.0".to_string(), "3.0.0".to_string());
        let marks = v.for_target(repo, Some(("1.0.0", Some("sha256:run"))), &[&new, &unknown]);
        assert_eq!(marks.len(), 2, "3.0.0 was never judged: {marks:?}");
        assert!(marks["1.0.0"].signed, "judged by the digest it runs");
        assert_eq!(marks["2.0.0"], Signed { signed: false, reason: Some("no signature: …".into()) });
        // A running digest never judged is not guessed from its tag's.
        let marks = v.for_target(repo, Some(("1.0.0", Some("sha256:other"))), &[]);
        assert!(marks.is_empty(), "{marks:?}");
        assert!(Verdicts::default().for_target(repo, Some(("1.0.0", None)), &[&new]).is_empty());
    }

    #[test]
    fn a_key_file_that_is_not_a_cosign_key_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("dir");
        let bad = dir.path().join("cosign.pub");
        std::fs::write(&bad, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").expect("write");
        let e = read_keys(std::slice::from_ref(&bad)).expect_err("refused");
        assert!(e.starts_with(&format!("--verify-key {}", bad.display())), "{e}");
        assert!(e.contains("allowed: ECDSA P-256"), "{e}");
        let e = read_keys(&[dir.path().join("missing.pub")]).expect_err("refused");
        assert!(e.contains("missing.pub"), "{e}");
    }
}
