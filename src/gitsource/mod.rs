//! `run --git URL`: the desired state comes from a file in a Git
//! repository (DESIGN.md §10's GitOps source, pulled by the host itself).
//!
//! Every `--git-interval` (less up to a quarter, at random, so hundreds of
//! hosts started together do not fetch in the same second), on SIGHUP and
//! on `POST /v1/git/refresh`, the source asks the remote where the ref
//! points. When it moved, it fetches that one commit (shallow, only the
//! ref), reads the file at `--git-path` and writes it to the manifest file
//! the way the fleet link does: validated by the same code as `validate`,
//! atomically, under the file's lock, and only within the file's own
//! `policy` (which Git cannot change). The file stays the one source the
//! controller reads; its watch starts the pass.
//!
//! Nothing the repository does can lose the running state: an unreachable
//! server, a deleted ref, a rewritten history, an invalid manifest, a file
//! too large — each leaves the manifest file as it was, is named in
//! `status` and `/v1/status`, and is looked at again (a failed look after
//! the shared backoff; a refused commit once the ref moves, or on a
//! refresh).
//!
//! State, in `STATE_DIR/git/` (0700): `last-valid-manifest.yaml`, whose
//! policy holds while the file is broken, and `scratch/`, the repository
//! of one look, emptied after it.

#[cfg(feature = "git")]
pub mod fetch;
#[cfg(feature = "git")]
pub mod helper;
#[cfg(feature = "git")]
pub mod signers;
pub mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::backoff::{self, Backoff, Policy};
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::private_fs;
use crate::status::{GitStatus, SharedSnapshot};

pub use wire::Head;

/// The file in `STATE_DIR/git/` holding the last valid manifest file.
const POLICY_FILE: &str = "last-valid-manifest.yaml";
/// The file in `STATE_DIR/git/` holding the source's last status.
const STATUS_FILE: &str = "status.json";
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;
/// The longest one look (the helper's whole run) may take; each request
/// in it has its own shorter limits.
const LOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest answer read from the helper (a manifest is at most 1 MiB).
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Retries after a failed look: 5 s doubling to 5 min.
const RETRY: Policy = Policy::new(Duration::from_secs(5), Duration::from_secs(300));

/// What `run --git` was given.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repository (`https://` or `http://`).
    pub url: String,
    /// A branch, a tag or a full ref name; `None`: the remote's HEAD.
    pub reference: Option<String>,
    /// The manifest's path in the repository.
    pub path: String,
    /// How often to look.
    pub interval: Duration,
    /// A file holding `token` or `user:token` for HTTPS.
    pub token_file: Option<PathBuf>,
    /// An `allowed_signers` file: only commits signed by its keys apply.
    pub signers_file: Option<PathBuf>,
    /// For an SSH URL: the private key.
    pub ssh_key: Option<PathBuf>,
    /// For an SSH URL: the known_hosts file.
    pub known_hosts: Option<PathBuf>,
    /// The manifest file the controller reads.
    pub manifest: PathBuf,
    /// The controller's state directory.
    pub state_dir: PathBuf,
}

/// The Git helper: `$CONTAINER_UPGRADER_GIT_HELPER`, else
/// `container-upgrader-git` next to this binary.
fn helper_path() -> Result<PathBuf, StartError> {
    if let Some(path) = std::env::var_os("CONTAINER_UPGRADER_GIT_HELPER") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe()
        .map_err(|e| StartError::Flag(format!("--git: cannot find this binary: {e}")))?;
    Ok(me.with_file_name(wire::HELPER))
}

/// Why the source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Not a URL this client can fetch from.
    #[error("--git {url}: {why}")]
    BadUrl {
        /// The URL, without credentials.
        url: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// A flag's value is unusable.
    #[error("{0}")]
    Flag(String),
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Asks the running source to look now.
#[derive(Debug, Clone, Default)]
pub struct Refresh(Arc<tokio::sync::Notify>);

impl Refresh {
    /// Look now (a look in progress is followed by one more).
    pub fn now(&self) {
        self.0.notify_one();
    }
}

/// The running source: its task stops when this is dropped.
#[derive(Debug)]
pub struct GitSource {
    task: tokio::task::JoinHandle<()>,
    refresh: Refresh,
}

impl Drop for GitSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitSource {
    /// Checks the flags and the token file, then starts looking (the first
    /// look at once).
    pub fn start(
        config: Config,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let ssh = check_url(&config.url)?;
        check_ssh(&config, ssh)?;
        if config.path.trim().is_empty()
            || config.path.starts_with('/')
            || config.path.split('/').any(|c| c == "..")
        {
            return Err(StartError::Flag(format!(
                "--git-path {:?}: expected a relative path inside the repository, like desired-state.yaml or hosts/web-1.yaml",
                config.path
            )));
        }
        if config.interval < Duration::from_secs(1) {
            return Err(StartError::Flag("--git-interval: at least 1s".into()));
        }
        if let Some(path) = &config.token_file {
            read_token(path)?;
        }
        let helper = helper_path()?;
        let missing = |why: String| {
            StartError::Flag(format!(
                "--git needs the Git helper {} ({why}): install it next to this binary (cargo builds it with the \
                 default `git` feature; the image has it) or point CONTAINER_UPGRADER_GIT_HELPER at it",
                helper.display()
            ))
        };
        if !helper.is_file() {
            return Err(missing("no such file".into()));
        }
        // The signers file is read by the helper's own parser, once now so
        // that a bad file stops the start rather than every look.
        if let Some(path) = &config.signers_file {
            let out = std::process::Command::new(&helper)
                .arg("--check-signers")
                .arg(path)
                .output()
                .map_err(|e| missing(e.to_string()))?;
            if !out.status.success() {
                return Err(StartError::Flag(format!(
                    "--git-verify-ssh-signers: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let dir = config.state_dir.join("git");
        let file_error = |path: &Path, e: std::io::Error| StartError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        private_fs::ensure_private_dir(&config.state_dir).map_err(|e| file_error(&config.state_dir, e))?;
        private_fs::ensure_private_subdir(&dir).map_err(|e| file_error(&dir, e))?;
        // The file's policy as it is now, should it break before the
        // first commit is read.
        if let Ok(bytes) = private_fs::read_bounded(&config.manifest, crate::manifest::source::MAX_BYTES) {
            if let Ok(text) = String::from_utf8(bytes) {
                if Manifest::parse(&config.manifest.display().to_string(), &text).is_ok() {
                    crate::link::remember(&dir.join(POLICY_FILE), &text);
                }
            }
        }
        // What the last run applied, until the first look says more (the
        // file still holds it); only when it followed the same source.
        let kept = read_status(&config.state_dir).filter(|k| {
            k.url == crate::redact::url(&config.url)
                && k.reference == config.reference
                && k.path == config.path
        });
        if let Ok(mut snap) = snapshot.write() {
            snap.git = Some(GitStatus {
                url: crate::redact::url(&config.url),
                reference: config.reference.clone(),
                path: config.path.clone(),
                commit: kept.as_ref().and_then(|k| k.commit.clone()),
                signer: kept.as_ref().and_then(|k| k.signer.clone()),
                author: kept.as_ref().and_then(|k| k.author.clone()),
                authored_at: kept.as_ref().and_then(|k| k.authored_at.clone()),
                applied_at: kept.as_ref().and_then(|k| k.applied_at.clone()),
                ..GitStatus::default()
            });
        }
        let refresh = Refresh::default();
        let task = tokio::spawn(run(config, helper, dir, snapshot, metrics, refresh.clone()));
        Ok(Self { task, refresh })
    }

    /// The handle SIGHUP and the API use to ask for a look now.
    pub fn refresh(&self) -> Refresh {
        self.refresh.clone()
    }
}

/// The Git source's status as the last `run --git` kept it in
/// `state_dir`, if any (for `status`).
pub fn read_status(state_dir: &Path) -> Option<GitStatus> {
    let bytes = private_fs::read_bounded(&state_dir.join("git").join(STATUS_FILE), 64 * 1024).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `https://host/repo` or `http://…` without a password, or an SSH URL
/// (`ssh://[user@]host[:port]/path`, or `user@host:path` as git writes
/// it); `true` for SSH.
fn check_url(url: &str) -> Result<bool, StartError> {
    let bad = |why: &str| StartError::BadUrl { url: crate::redact::url(url), why: why.to_string() };
    const ALLOWED: &str = "expected an https://, http:// or ssh:// URL, or user@host:path";
    let url = url.trim();
    if let Some((authority, path)) = scp_like(url) {
        if authority.is_empty() || authority.starts_with('-') || path.is_empty() {
            return Err(bad(ALLOWED));
        }
        return Ok(true);
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| bad(ALLOWED))?;
    match parsed.scheme() {
        "https" | "http" => {}
        "ssh" => {
            if parsed.host_str().is_none_or(|h| h.starts_with('-')) {
                return Err(bad("the URL names no host"));
            }
            if parsed.password().is_some() {
                return Err(bad("SSH authenticates with --git-ssh-key, not a password in the URL"));
            }
            return Ok(true);
        }
        _ => return Err(bad(ALLOWED)),
    }
    if parsed.host_str().is_none() {
        return Err(bad("the URL names no host"));
    }
    if parsed.password().is_some() {
        return Err(bad(
            "a secret in the URL would show in process lists and logs: put it in --git-token-file",
        ));
    }
    Ok(false)
}

/// `user@host:path` (git's scp-like SSH syntax): (`user@host`, `path`);
/// `None` for a URL with a scheme or a local path.
fn scp_like(url: &str) -> Option<(&str, &str)> {
    if url.contains("://") {
        return None;
    }
    let (authority, path) = url.split_once(':')?;
    (authority.contains('@') && !authority.contains('/')).then_some((authority, path))
}

/// An SSH URL needs a key and a known_hosts file, both readable, the key
/// private to its owner (`ssh` refuses it otherwise); HTTPS needs neither.
fn check_ssh(config: &Config, ssh: bool) -> Result<(), StartError> {
    if !ssh {
        if config.ssh_key.is_some() || config.known_hosts.is_some() {
            return Err(StartError::Flag(
                "--git-ssh-key and --git-known-hosts go with an SSH URL (ssh://… or user@host:path)".into(),
            ));
        }
        return Ok(());
    }
    if config.token_file.is_some() {
        return Err(StartError::Flag(
            "--git-token-file is for HTTPS; an SSH URL authenticates with --git-ssh-key".into(),
        ));
    }
    let (Some(key), Some(known)) = (&config.ssh_key, &config.known_hosts) else {
        return Err(StartError::Flag(
            "an SSH URL needs --git-ssh-key FILE (the private key) and --git-known-hosts FILE (the server's \
             host key, checked strictly: never learned on first use)"
                .into(),
        ));
    };
    for path in [key, known] {
        private_fs::read_bounded(path, 64 * 1024)
            .map_err(|e| StartError::File { path: path.clone(), message: e.to_string() })?;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o077 != 0 {
        return Err(StartError::File {
            path: key.clone(),
            message: format!(
                "mode {:o}: a private key must be readable by its owner only (chmod 600)",
                mode & 0o777
            ),
        });
    }
    let ssh = std::process::Command::new("ssh").arg("-V").output();
    if ssh.is_err() {
        return Err(StartError::Flag(
            "an SSH URL needs the `ssh` client on this host (none in a FROM scratch image: use HTTPS there)"
                .into(),
        ));
    }
    Ok(())
}

/// The token file's content, trimmed.
fn read_token(path: &Path) -> Result<String, StartError> {
    let file_error = |message: String| StartError::File { path: path.to_path_buf(), message };
    let bytes = private_fs::read_bounded(path, MAX_TOKEN_FILE).map_err(|e| file_error(e.to_string()))?;
    let token = String::from_utf8(bytes).map_err(|_| file_error("not UTF-8".into()))?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(file_error("empty: expected a token, or user:token".into()));
    }
    Ok(token)
}

/// What one look did.
enum Outcome {
    /// The ref had not moved.
    Unchanged,
    /// The file was written (`true`) or already said the same (`false`).
    Applied(Box<wire::Fetched>, bool),
    /// The commit's file was refused: the manifest file stays.
    Refused(Box<wire::Fetched>, String),
}

/// Looks until the process ends.
async fn run(
    config: Config,
    helper: PathBuf,
    dir: PathBuf,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    refresh: Refresh,
) {
    let status = |change: &dyn Fn(&mut GitStatus)| {
        if let Ok(mut snap) = snapshot.write() {
            change(snap.git.get_or_insert_with(GitStatus::default));
        }
    };
    let seed = backoff::random_seed();
    let mut backoff = Backoff::new(RETRY, Duration::from_secs(600));
    // Where the ref pointed at the last look that read the file (applied
    // or refused): a look that finds it there again fetches nothing.
    let mut last: Option<Head> = None;
    for round in 0u64.. {
        let started = Instant::now();
        let result = look(&config, &helper, &dir, last.as_ref()).await;
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let wait = match result {
            Ok(outcome) => {
                backoff.succeeded();
                match outcome {
                    Outcome::Unchanged => metrics.git_look("unchanged"),
                    Outcome::Applied(fetched, written) => {
                        if written {
                            tracing::info!(commit = %fetched.commit, author = %fetched.author, "wrote the manifest from Git");
                        }
                        metrics.git_look("applied");
                        metrics.set_git_commit_time(&fetched.authored_at);
                        status(&|s| {
                            s.commit = Some(fetched.commit.clone());
                            s.signer = fetched.signer.clone();
                            s.author = Some(fetched.author.clone());
                            s.authored_at = Some(fetched.authored_at.clone());
                            s.applied_at = Some(now.clone());
                            s.refused = None;
                        });
                        last = Some(fetched.head.clone());
                    }
                    Outcome::Refused(fetched, why) => {
                        tracing::error!(commit = %fetched.commit, error = %why, "the manifest in Git was not applied; the manifest file stays as it is");
                        metrics.git_look("refused");
                        status(&|s| {
                            s.refused = Some(crate::status::GitRefusal {
                                commit: fetched.commit.clone(),
                                author: fetched.author.clone(),
                                reason: why.clone(),
                            })
                        });
                        last = Some(fetched.head.clone());
                    }
                }
                status(&|s| {
                    s.last_look = Some(now.clone());
                    s.last_error = None;
                });
                backoff::delay(
                    &Policy { first: config.interval, max: config.interval, jitter: 0.25 },
                    1,
                    seed ^ round,
                )
            }
            Err(why) => {
                let wait = backoff.failed(Instant::now()).min(config.interval.max(RETRY.first));
                tracing::warn!(error = %why, retry_in = ?wait, "looking at the Git repository failed; the manifest file stays as it is");
                metrics.git_look("failed");
                status(&|s| {
                    s.last_look = Some(now.clone());
                    s.last_error = Some(why.clone());
                });
                wait
            }
        };
        tracing::debug!(took = ?started.elapsed(), next_in = ?wait, "looked at the Git repository");
        let next = humantime::format_rfc3339_seconds(SystemTime::now() + wait).to_string();
        status(&|s| s.next_look = Some(next.clone()));
        keep_status(&dir, &snapshot);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = refresh.0.notified() => {
                // Asked for: read the file again even if the ref did not
                // move (the host's policy may have changed since).
                last = None;
            }
        }
    }
}

/// Writes the source's status to `STATE_DIR/git/status.json`; a failure
/// is logged (only `status` and a restart's first seconds read it).
fn keep_status(dir: &Path, snapshot: &SharedSnapshot) {
    let Some(git) = snapshot.read().ok().and_then(|s| s.git.clone()) else { return };
    let Ok(bytes) = serde_json::to_vec_pretty(&git) else { return };
    let path = dir.join(STATUS_FILE);
    if let Err(e) = private_fs::write_atomic(&path, &bytes) {
        tracing::warn!(file = %path.display(), error = %e, "cannot keep the Git source's status");
    }
}

/// One look through the helper, and the write if the ref moved.
async fn look(config: &Config, helper: &Path, dir: &Path, last: Option<&Head>) -> Result<Outcome, String> {
    let token = match &config.token_file {
        Some(path) => Some(read_token(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let request = wire::Request {
        url: config.url.clone(),
        reference: config.reference.clone(),
        path: config.path.clone(),
        token,
        max_bytes: crate::manifest::source::MAX_BYTES,
        // Re-read on every look: a rotated key needs no restart.
        signers_file: config.signers_file.clone(),
        last: last.cloned(),
        scratch: dir.join("scratch"),
        ssh: config
            .ssh_key
            .clone()
            .zip(config.known_hosts.clone())
            .map(|(key, known_hosts)| wire::Ssh { key, known_hosts }),
    };
    let fetched = match ask(helper, &request).await? {
        wire::Look::Unchanged => return Ok(Outcome::Unchanged),
        wire::Look::Changed(fetched) => fetched,
    };
    let text = match &fetched.text {
        Ok(text) => text.clone(),
        Err(why) => {
            let why = why.clone();
            return Ok(Outcome::Refused(fetched, why));
        }
    };
    let from = format!("{}@{} ({})", crate::redact::url(&config.url), short(&fetched.commit), config.path);
    let (manifest, memory) = (config.manifest.clone(), dir.join(POLICY_FILE));
    // The write takes the file's lock: off the runtime's threads.
    let applied =
        tokio::task::spawn_blocking(move || crate::link::apply_from(&manifest, &text, &memory, &from))
            .await
            .map_err(|e| format!("writing the manifest stopped: {e}"))?;
    match applied {
        Ok(written) => Ok(Outcome::Applied(fetched, written)),
        Err(why) => Ok(Outcome::Refused(fetched, why)),
    }
}

/// Runs the helper on `request`: its answer, or why there is none. It is
/// killed past [`LOOK_TIMEOUT`].
async fn ask(helper: &Path, request: &wire::Request) -> Result<wire::Look, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let input = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(helper)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the Git helper {}: {e}", helper.display()))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&input).await.map_err(|e| format!("talking to the Git helper: {e}"))?;
        }
        let mut stdout = Vec::new();
        if let Some(out) = child.stdout.take() {
            out.take(MAX_ANSWER as u64 + 1)
                .read_to_end(&mut stdout)
                .await
                .map_err(|e| format!("reading the Git helper's answer: {e}"))?;
        }
        let mut stderr = Vec::new();
        if let Some(err) = child.stderr.take() {
            let _ = err.take(4096).read_to_end(&mut stderr).await;
        }
        let status = child.wait().await.map_err(|e| format!("the Git helper: {e}"))?;
        Ok::<_, String>((stdout, stderr, status))
    };
    let (stdout, stderr, status) = tokio::time::timeout(LOOK_TIMEOUT, run)
        .await
        .map_err(|_| format!("the look took over {} s and was stopped", LOOK_TIMEOUT.as_secs()))??;
    if stdout.len() > MAX_ANSWER {
        return Err("the Git helper's answer is too large".into());
    }
    match serde_json::from_slice::<wire::Response>(&stdout) {
        Ok(wire::Response::Ok(look)) => Ok(look),
        // What `ssh` said (an unknown host key, a refused key) is on the
        // helper's stderr: the reason needs it.
        Ok(wire::Response::Failed(why)) => match String::from_utf8_lossy(&stderr).trim() {
            "" => Err(why),
            said => Err(format!("{why} ({})", said.lines().last().unwrap_or(said))),
        },
        Err(_) => Err(format!(
            "the Git helper failed ({status}){}",
            Some(String::from_utf8_lossy(&stderr).trim().to_string())
                .filter(|e| !e.is_empty())
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
    }
}

/// A commit id's first 12 characters.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fetchable_urls_without_secrets_are_taken() {
        assert!(!check_url("https://git.example/ops/fleet.git").expect("https"));
        assert!(!check_url("http://127.0.0.1:8080/repo").expect("http"));
        assert!(check_url("ssh://git@git.example:2222/ops/fleet.git").expect("ssh"));
        assert!(check_url("git@git.example:ops/fleet.git").expect("scp-like"));
        let why = |url: &str| check_url(url).expect_err(url).to_string();
        assert!(why("git://127.0.0.1/repo").contains("expected an https://"));
        assert!(why("ssh://me:pw@git.example/repo").contains("--git-ssh-key"));
        assert!(why("-oProxyCommand=x@host:repo").contains("expected"), "an option, not a host");
        assert!(why("ftp://x/repo").contains("expected an https://"));
        let secret = why("https://me:hunter2@git.example/repo");
        assert!(secret.contains("--git-token-file") && !secret.contains("hunter2"), "{secret}");
        assert!(why("not a url").contains("expected"));
    }
}
