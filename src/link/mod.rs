//! The agent's link to the fleet server (`run --server URL`, DESIGN.md
//! §10): enrols once, long-polls this agent's desired manifest and writes
//! it to the manifest file, reports a status snapshot after every pass and
//! delivers each finished op from a durable outbox.
//!
//! The link only ever connects out, so an agent behind NAT works. The
//! manifest file stays the one source of truth the controller reads: the
//! link writes the server's version to it (atomically, under the file's
//! lock, like `set`), and the file watch starts a pass. A server that is
//! down changes nothing on the host: the file keeps the last manifest and
//! the link retries with backoff.
//!
//! The server is trusted like the manifest file, within the file's own
//! `policy`: a manifest from the server must keep that policy unchanged
//! and name only images it allows, or it is not written (the reason is in
//! `/v1/status` and the next report).
//!
//! State, in `STATE_DIR/fleet/` (0700, files 0600): `agent.json` — the
//! server, the agent id and its credential —, `outbox/` for op events, and
//! `last-valid-manifest.yaml`, whose policy holds while the file is broken.
//! A credential the server refuses (revoked) is never replaced on its own:
//! remove `agent.json` and give a new enrolment token to enrol again.

mod client;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backoff::{Backoff, Policy};
use crate::manifest::{write, Manifest};
use crate::metrics::Metrics;
use crate::private_fs;
use crate::protocol;
use crate::report::{Delivery, Endpoint, Outbox, Receiver};
use crate::status::{FleetStatus, SharedSnapshot};
use crate::swap::journal::Journal;

pub use client::{Client, LinkError};

/// The file in `STATE_DIR/fleet/` holding the credential.
const AGENT_FILE: &str = "agent.json";
/// The file in `STATE_DIR/fleet/` holding the last valid manifest file.
const POLICY_FILE: &str = "last-valid-manifest.yaml";
/// What an agent without a manifest file enrols with.
const EMPTY_MANIFEST: &str = "version: 1\ntargets: []\n";
/// The largest enrolment token or credential file read.
const MAX_SECRET_FILE: u64 = 4096;
/// Retries after a failed exchange: 1 s doubling to 1 min …
const RETRY: Policy = Policy::new(Duration::from_secs(1), Duration::from_secs(60));
/// … and to 5 min when the server refuses this agent (revoked).
const REFUSED_RETRY: Policy = Policy::new(Duration::from_secs(30), Duration::from_secs(300));
/// How often the report task looks for a finished pass.
const REPORT_TICK: Duration = Duration::from_secs(1);

/// What `run --server` was given.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's base URL (`https://fleet.example:8080`).
    pub server: String,
    /// The enrolment token's file, for the first start.
    pub enrol_token_file: Option<PathBuf>,
    /// The name the server shows for this agent.
    pub name: String,
    /// The manifest file the controller reads.
    pub manifest: PathBuf,
    /// The controller's state directory.
    pub state_dir: PathBuf,
    /// How long one desired-state poll may be held open by the server.
    pub wait: Duration,
    /// `run --git` too: the manifest file follows the Git repository, so
    /// the server's desired state is never written (the agent still polls,
    /// which keeps it online, and reports, with the commit).
    pub reports_only: bool,
}

/// What `STATE_DIR/fleet/agent.json` holds.
#[derive(Clone, Serialize, Deserialize)]
struct Enrolled {
    server: String,
    agent_id: String,
    credential: String,
}

/// Why the link cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The server URL is not one.
    #[error("--server {0}: expected an http:// or https:// URL without user name or password")]
    BadUrl(String),
    /// Neither a stored credential nor an enrolment token.
    #[error(
        "not enrolled with {server} yet ({} does not exist): give --enrol-token-file with a token from `container-upgrader-server fleet token create`",
        path.display()
    )]
    NoToken {
        /// The server.
        server: String,
        /// Where the credential would be.
        path: PathBuf,
    },
    /// The credential is for another server.
    #[error(
        "{} holds the credential of {enrolled}, not of {server}: remove it to enrol with {server}",
        path.display()
    )]
    OtherServer {
        /// The stored credential's file.
        path: PathBuf,
        /// Its server.
        enrolled: String,
        /// The server asked for.
        server: String,
    },
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The running link: its tasks stop when the process ends.
#[derive(Debug)]
pub struct Link {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Link {
    /// Checks what can be checked before the controller starts (the URL,
    /// the stored credential or the enrolment token's file), then starts
    /// the link's tasks on the current runtime. Enrolment and everything
    /// after it happen in the background, retried until the server answers.
    pub fn start(
        config: Config,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let server = normalise_url(&config.server)?;
        let dir = config.state_dir.join("fleet");
        let file_error = |path: &Path, e: std::io::Error| StartError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        private_fs::ensure_private_dir(&config.state_dir).map_err(|e| file_error(&config.state_dir, e))?;
        private_fs::ensure_private_subdir(&dir).map_err(|e| file_error(&dir, e))?;
        let enrolled = read_enrolled(&dir.join(AGENT_FILE))?;
        match &enrolled {
            Some(e) if e.server != server => {
                return Err(StartError::OtherServer {
                    path: dir.join(AGENT_FILE),
                    enrolled: crate::redact::url(&e.server),
                    server: crate::redact::url(&server),
                })
            }
            Some(_) => {}
            None => match &config.enrol_token_file {
                None => {
                    return Err(StartError::NoToken {
                        server: crate::redact::url(&server),
                        path: dir.join(AGENT_FILE),
                    })
                }
                Some(path) => {
                    read_secret(path)?;
                }
            },
        }
        // The file's policy as it is now, should it break before the
        // server's first version arrives.
        if let Ok(bytes) = private_fs::read_bounded(&config.manifest, crate::manifest::source::MAX_BYTES) {
            if let Ok(text) = String::from_utf8(bytes) {
                if Manifest::parse(&config.manifest.display().to_string(), &text).is_ok() {
                    remember(&dir.join(POLICY_FILE), &text);
                }
            }
        }
        let outbox =
            Outbox::open(&dir).map_err(|e| StartError::File { path: dir.clone(), message: e.to_string() })?;
        let journal = Journal::open(&config.state_dir)
            .map_err(|e| StartError::File { path: config.state_dir.clone(), message: e.to_string() })?;
        // History begins at enrolment: ops finished before are not news.
        outbox
            .init_ledger(&journal.ops().unwrap_or_default())
            .map_err(|e| StartError::File { path: dir.clone(), message: e.to_string() })?;
        if let Ok(mut snap) = snapshot.write() {
            snap.fleet = Some(FleetStatus {
                server: crate::redact::url(&server),
                agent_id: enrolled.as_ref().map(|e| e.agent_id.clone()),
                ..FleetStatus::default()
            });
        }
        let delivery = Delivery::start_to(Receiver::Fleet, outbox.clone(), metrics, snapshot.clone());
        let shared = Arc::new(Shared {
            client: Client::new(&server)
                .map_err(|e| StartError::File { path: PathBuf::from("--server"), message: e })?,
            config: Config { server, ..config },
            dir,
            snapshot,
            enrolled: tokio::sync::OnceCell::new_with(enrolled),
        });
        let task = tokio::spawn(run(shared, outbox, journal, delivery));
        Ok(Self { tasks: vec![task] })
    }
}

/// What the link's tasks share.
struct Shared {
    client: Client,
    config: Config,
    dir: PathBuf,
    snapshot: SharedSnapshot,
    enrolled: tokio::sync::OnceCell<Enrolled>,
}

impl Shared {
    fn status(&self, change: impl FnOnce(&mut FleetStatus)) {
        if let Ok(mut snap) = self.snapshot.write() {
            change(snap.fleet.get_or_insert_with(FleetStatus::default));
        }
    }

    fn contact(&self) {
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        self.status(|s| s.last_contact = Some(now));
    }
}

/// Enrols if needed, then polls the desired state and reports, both until
/// the process ends.
async fn run(shared: Arc<Shared>, outbox: Outbox, journal: Journal, delivery: Delivery) {
    let enrolled = enrol(&shared).await;
    delivery.set_endpoint(Some(Endpoint {
        url: shared.client.url(protocol::EVENTS),
        bearer: Some(enrolled.credential.clone()),
    }));
    tokio::join!(
        desired(&shared, &enrolled),
        report::reports(&shared, &enrolled, &outbox, &journal, &delivery)
    );
}

/// The stored credential, or a new one from the enrolment token (retried
/// until the server takes it).
async fn enrol(shared: &Shared) -> Enrolled {
    if let Some(e) = shared.enrolled.get() {
        return e.clone();
    }
    let mut backoff = Backoff::new(RETRY, Duration::from_secs(600));
    loop {
        match try_enrol(shared).await {
            Ok(e) => {
                shared.status(|s| {
                    s.agent_id = Some(e.agent_id.clone());
                    s.last_error = None;
                });
                shared.contact();
                tracing::info!(agent_id = %e.agent_id, server = %crate::redact::url(&shared.config.server), "enrolled with the fleet server");
                let _ = shared.enrolled.set(e.clone());
                return e;
            }
            Err(e) => {
                let wait = backoff.failed(Instant::now());
                tracing::warn!(error = %e, retry_in = ?wait, "enrolment with the fleet server failed");
                shared.status(|s| s.last_error = Some(format!("enrolment: {e}")));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn try_enrol(shared: &Shared) -> Result<Enrolled, LinkError> {
    let path = shared
        .config
        .enrol_token_file
        .as_deref()
        .ok_or_else(|| LinkError::Local("no enrolment token".into()))?;
    let token = read_secret(path).map_err(|e| LinkError::Local(e.to_string()))?;
    // The file as it is: the server's first desired state for this agent.
    // No file yet is an empty manifest.
    let manifest = match private_fs::read_bounded(&shared.config.manifest, crate::manifest::source::MAX_BYTES)
    {
        Ok(bytes) => {
            String::from_utf8(bytes).map_err(|_| LinkError::Local("the manifest is not UTF-8".into()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => EMPTY_MANIFEST.to_string(),
        Err(e) => return Err(LinkError::Local(format!("reading {}: {e}", shared.config.manifest.display()))),
    };
    let request = protocol::EnrolRequest { token, name: shared.config.name.clone(), manifest };
    let answer = shared.client.enrol(&request).await?;
    let enrolled = Enrolled {
        server: shared.config.server.clone(),
        agent_id: answer.agent_id,
        credential: answer.credential,
    };
    let path = shared.dir.join(AGENT_FILE);
    let bytes = serde_json::to_vec_pretty(&enrolled).map_err(|e| LinkError::Local(e.to_string()))?;
    // Written before it is used: a crash now does not lose the agent.
    private_fs::write_atomic(&path, &bytes)
        .map_err(|e| LinkError::Local(format!("writing {}: {e}", path.display())))?;
    Ok(enrolled)
}

/// Long-polls the desired manifest and writes each new one to the file.
async fn desired(shared: &Shared, enrolled: &Enrolled) {
    let mut etag: Option<String> = None;
    let mut backoff = Backoff::new(RETRY, Duration::from_secs(600));
    loop {
        match shared.client.desired(&enrolled.credential, etag.as_deref(), shared.config.wait).await {
            Ok(None) => {
                backoff.succeeded();
                shared.contact();
            }
            Ok(Some((_, tag))) if shared.config.reports_only => {
                // Git is the one source; the server knows (the report's
                // `git`) and refuses to pin this agent.
                backoff.succeeded();
                shared.contact();
                etag = Some(tag);
            }
            Ok(Some((text, tag))) => {
                backoff.succeeded();
                shared.contact();
                let revision = protocol::revision_of(&tag);
                match apply(&shared.config.manifest, &text, &shared.dir.join(POLICY_FILE)) {
                    Ok(written) => {
                        if written {
                            tracing::info!(revision, "wrote the fleet server's desired manifest");
                        }
                        shared.status(|s| {
                            s.desired_revision = revision;
                            s.last_error = None;
                        });
                    }
                    Err(why) => {
                        tracing::error!(revision, error = %why, "the fleet server's manifest was not applied");
                        shared.status(|s| {
                            s.last_error = Some(format!("desired revision {}: {why}", revision.unwrap_or(-1)))
                        });
                    }
                }
                // Not asked again until it changes, applied or not: a
                // refused version waits for the next one.
                etag = Some(tag);
            }
            Err(e) => {
                let refused = e.is_refused();
                let wait = if refused {
                    Backoff::new(REFUSED_RETRY, Duration::ZERO).failed(Instant::now())
                } else {
                    backoff.failed(Instant::now())
                };
                tracing::warn!(error = %e, retry_in = ?wait, "polling the fleet server failed; the manifest file stays as it is");
                shared.status(|s| s.last_error = Some(e.to_string()));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Writes `text` to the manifest file unless it is what the file holds
/// already; refuses a manifest that is invalid or steps outside the file's
/// policy. `Ok(true)`: written.
///
/// The policy is the file's; while the file is missing, empty or invalid
/// (a half-saved edit), it is the policy of the last valid version of the
/// file, kept in `memory` — so a broken file never lets the server widen
/// what it may do. With neither, it is the policy of an empty manifest
/// (what an agent without a file enrols with): no server-set policy.
pub fn apply(path: &Path, text: &str, memory: &Path) -> Result<bool, String> {
    apply_from(path, text, memory, "the fleet server")
}

/// [`apply`] for a manifest from `source` (the fleet server, a Git commit),
/// which error messages name.
pub fn apply_from(path: &Path, text: &str, memory: &Path, source: &str) -> Result<bool, String> {
    let origin = path.display().to_string();
    let incoming = Manifest::parse(&format!("{origin} (from {source})"), text).map_err(|e| e.to_string())?;
    let mut written = false;
    let update = |current: Option<&str>| -> Result<String, String> {
        if current == Some(text) {
            remember(memory, text);
            return Ok(text.to_string());
        }
        match current.and_then(|c| Manifest::parse(&origin, c).ok()) {
            // Kept only when it stays: a written text replaces it below.
            Some(local) => check_policy(&local, &incoming).inspect_err(|_| {
                remember(memory, current.unwrap_or_default());
            })?,
            None => check_policy(&remembered(memory, &origin)?, &incoming)?,
        }
        written = true;
        Ok(text.to_string())
    };
    write::update_or_create(path, update).map_err(|e| e.to_string())?;
    if written {
        remember(memory, text);
    }
    Ok(written)
}

/// Keeps `text`, a valid version of the manifest file, as the one whose
/// policy holds while the file is broken. A failure is logged: the check
/// then falls back to the older memory, never to no policy.
pub fn remember(memory: &Path, text: &str) {
    if private_fs::read_bounded(memory, crate::manifest::source::MAX_BYTES)
        .is_ok_and(|old| old == text.as_bytes())
    {
        return;
    }
    if let Err(e) = private_fs::write_atomic(memory, text.as_bytes()) {
        tracing::warn!(file = %memory.display(), error = %e, "cannot keep the manifest's last valid policy");
    }
}

/// The last valid version of the manifest file, or an empty manifest.
fn remembered(memory: &Path, origin: &str) -> Result<Manifest, String> {
    let kept = format!("the last valid version of {origin}, kept in {}", memory.display());
    match private_fs::read_bounded(memory, crate::manifest::source::MAX_BYTES) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| format!("{kept}: not UTF-8"))?;
            Manifest::parse(&kept, &text).map_err(|e| format!("{kept}: {e}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Manifest::parse(&format!("an empty manifest (no valid {origin} seen yet)"), EMPTY_MANIFEST)
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("{kept}: {e}")),
    }
}

/// The server's manifest keeps the file's policy, and every image it names
/// is allowed by it.
pub fn check_policy(local: &Manifest, incoming: &Manifest) -> Result<(), String> {
    if local.policy != incoming.policy {
        return Err(format!(
            "it changes `policy`, which only the manifest file on this host may set (kept from {})",
            local.origin
        ));
    }
    let foreign = crate::manifest::hooks::foreign_hooks(local, incoming)
        .into_iter()
        .chain(crate::manifest::verify::foreign_verify(local, incoming));
    if let Some((index, why)) = foreign.min_by_key(|(index, _)| *index) {
        return Err(format!("targets[{index}]: {why} (kept from {})", local.origin));
    }
    let refused: Vec<String> = incoming
        .targets
        .iter()
        .filter(|t| !local.policy.allows(t.want.image()))
        .map(|t| format!("targets[{}]: `{}`", t.index, t.want.image().familiar()))
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "images not allowed by policy.allowed_images of {}: {}",
            local.origin,
            refused.join(", ")
        ))
    }
}

/// `http(s)://host[:port][/path]`, without a trailing slash; no userinfo.
fn normalise_url(raw: &str) -> Result<String, StartError> {
    let bad = || StartError::BadUrl(crate::redact::url(raw));
    let url = reqwest::Url::parse(raw.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(bad());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn read_enrolled(path: &Path) -> Result<Option<Enrolled>, StartError> {
    match private_fs::read_bounded(path, MAX_SECRET_FILE) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| StartError::File {
            path: path.to_path_buf(),
            message: format!("not this agent's credential file ({e}); remove it to enrol again"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StartError::File { path: path.to_path_buf(), message: e.to_string() }),
    }
}

/// A secret's file: its first line, trimmed. A symlink is resolved first
/// (orchestrators mount secrets through them).
fn read_secret(path: &Path) -> Result<String, StartError> {
    let fail = |message: String| StartError::File { path: path.to_path_buf(), message };
    let real = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let bytes = private_fs::read_bounded(&real, MAX_SECRET_FILE)
        .map_err(|e| fail(format!("{e}; expected a regular file of at most {MAX_SECRET_FILE} bytes")))?;
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.is_empty() {
        return Err(fail("empty: expected the enrolment token on the first line".into()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse("local.yaml", text).expect("valid")
    }

    const POLICY: &str = "version: 1\npolicy:\n  allowed_images: [\"registry.local/app\"]\ntargets:\n  - container: web\n    image: registry.local/app:1\n";

    #[test]
    fn the_servers_manifest_keeps_the_local_policy_and_its_images() {
        let local = manifest(POLICY);
        let same = manifest(&POLICY.replace("app:1", "app:2"));
        assert_eq!(check_policy(&local, &same), Ok(()));
        let other_image = manifest(&POLICY.replace("registry.local/app:1", "evil/app:1"));
        let why = check_policy(&local, &other_image).expect_err("outside the policy");
        assert!(why.contains("targets[0]") && why.contains("evil/app:1"), "{why}");
        let widened = manifest(&POLICY.replace("[\"registry.local/app\"]", "[\"*\"]"));
        assert!(check_policy(&local, &widened).expect_err("widened").contains("policy"));
        let no_policy = manifest("version: 1\ntargets:\n  - container: web\n    image: any/thing:1\n");
        assert_eq!(check_policy(&no_policy, &no_policy), Ok(()));
    }

    #[test]
    fn the_servers_manifest_keeps_which_signatures_each_target_needs() {
        const KEY: &str = "\"-----BEGIN PUBLIC KEY-----\\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\\n-----END PUBLIC KEY-----\"";
        let verified = POLICY.replace("targets:", &format!("  verify: {{keys: [{KEY}]}}\ntargets:"));
        let local = manifest(&verified);
        assert_eq!(check_policy(&local, &manifest(&verified.replace("app:1", "app:2"))), Ok(()));
        // A target switching verification off (or a new target doing so).
        let off = format!("{verified}    verify: {{require: false}}\n");
        let why = check_policy(&local, &manifest(&off)).expect_err("verify weakened");
        assert!(why.contains("targets[0]") && why.contains("verify"), "{why}");
        let added = format!(
            "{verified}  - container: db\n    image: registry.local/app:1\n    verify: {{require: false}}\n"
        );
        let why = check_policy(&local, &manifest(&added)).expect_err("a new target without verification");
        assert!(why.contains("targets[1]"), "{why}");
    }

    #[test]
    fn the_servers_manifest_keeps_the_local_hooks() {
        let hooked = format!("{POLICY}    hooks: {{pre_upgrade: {{exec: [dump]}}}}\n");
        let local = manifest(&hooked);
        assert_eq!(check_policy(&local, &manifest(&hooked.replace("app:1", "app:2"))), Ok(()));
        let changed = manifest(&hooked.replace("exec: [dump]", "run: [sh, -c, evil]"));
        let why = check_policy(&local, &changed).expect_err("hooks changed");
        assert!(why.contains("targets[0]") && why.contains("hooks"), "{why}");
        assert!(check_policy(&local, &manifest(POLICY)).is_err(), "dropping the hooks is a change too");
    }

    #[test]
    fn apply_writes_only_what_is_new_and_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired-state.yaml");
        let memory = dir.path().join("memory.yaml");
        std::fs::write(&path, POLICY).expect("write");
        assert_eq!(apply(&path, POLICY, &memory), Ok(false), "same text");
        let next = POLICY.replace("app:1", "app:2");
        assert_eq!(apply(&path, &next, &memory), Ok(true));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), next);
        let bad = POLICY.replace("registry.local/app:1", "evil/app:1");
        assert!(apply(&path, &bad, &memory).is_err());
        assert!(apply(&path, "version: 1\ntargets: [{container: x}]\n", &memory).is_err(), "invalid");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), next, "refusals change nothing");
    }

    #[test]
    fn a_broken_or_missing_file_keeps_its_last_valid_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired-state.yaml");
        let memory = dir.path().join("memory.yaml");
        std::fs::write(&path, POLICY).expect("write");
        let next = POLICY.replace("app:1", "app:2");
        assert_eq!(apply(&path, &next, &memory), Ok(true));
        let widened = "version: 1\ntargets:\n  - container: web\n    image: evil/app:1\n";
        let evil_in_policy =
            POLICY.replace("app:1", "app:3").replace("[\"registry.local/app\"]", "[\"evil/*\"]");
        for broken in ["", "version: 1\ntargets: [", "\u{0}garbage"] {
            std::fs::write(&path, broken).expect("write");
            let why = apply(&path, widened, &memory).expect_err("no policy while broken");
            assert!(why.contains("policy"), "{why}");
            assert!(apply(&path, &evil_in_policy, &memory).is_err(), "a new policy while broken");
            assert_eq!(std::fs::read_to_string(&path).expect("read"), broken, "nothing written");
        }
        std::fs::remove_file(&path).expect("rm");
        assert!(apply(&path, widened, &memory).is_err(), "a missing file keeps the policy too");
        assert!(!path.exists());
        let third = POLICY.replace("app:1", "app:3");
        assert_eq!(apply(&path, &third, &memory), Ok(true), "within the kept policy: written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), third);
    }

    #[test]
    fn without_any_valid_file_the_server_sets_no_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired-state.yaml");
        let memory = dir.path().join("memory.yaml");
        assert!(apply(&path, POLICY, &memory).is_err(), "a policy the file never had");
        let plain = "version: 1\ntargets:\n  - container: web\n    image: registry.local/app:1\n";
        assert_eq!(apply(&path, plain, &memory), Ok(true), "no file yet: created");
        assert_eq!(apply(&path, plain, &memory), Ok(false), "same text");
        assert_eq!(std::fs::read_to_string(&memory).expect("kept"), plain);
    }

    #[test]
    fn server_urls_are_plain_http_or_https_without_credentials() {
        assert_eq!(normalise_url("http://127.0.0.1:8080/").ok().as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            normalise_url("https://fleet.example/base/").ok().as_deref(),
            Some("https://fleet.example/base")
        );
        for bad in ["ftp://x", "http://user:pw@x", "not a url", "http://x/?token=1"] {
            assert!(normalise_url(bad).is_err(), "{bad}");
        }
    }
}
