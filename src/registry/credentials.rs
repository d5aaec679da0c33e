//! A registry's credentials from the Docker config (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`): a credential helper's answer when one is
//! configured for the registry (`credHelpers`, else `credsStore`), else the
//! file's own `auths` entry.
//!
//! A helper is an external program that may hang (a locked keychain, a
//! helper waiting for a prompt nobody sees): it runs under a time limit and
//! is killed past it, so one hung helper costs one registry one limit —
//! never every registry, and never the pass.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::engine::Credentials;
use crate::reference::DOCKER_HUB;

/// The longest a credential helper may take.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest Docker config read.
const MAX_CONFIG: u64 = 1 << 20;
/// The user name helpers answer with for an identity token.
const TOKEN_USER: &str = "<token>";

/// The parts of the Docker config that choose a helper.
#[derive(Deserialize, Default)]
struct Config {
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: std::collections::HashMap<String, String>,
}

/// A helper's answer to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// [`credentials`] for handing to the engine (a pull, a service update):
/// what cannot be read is logged and the engine goes on anonymously. The
/// engine exchanges an identity token itself; a helper that hangs is
/// stopped at [`HELPER_TIMEOUT`].
pub async fn for_engine(registry: &str, what: &str) -> Option<Credentials> {
    match credentials(registry, HELPER_TIMEOUT).await {
        Ok(found) => found,
        Err(why) => {
            tracing::warn!(registry = %registry, reason = %why, "{what} without credentials");
            None
        }
    }
}

/// The Docker config's credentials for `registry`: `Ok(None)` when it has
/// none; `Err` says why they could not be read (a helper that failed or
/// did not answer within `limit`) — the caller goes on anonymously.
pub async fn credentials(registry: &str, limit: Duration) -> Result<Option<Credentials>, String> {
    let server = if registry == DOCKER_HUB { "https://index.docker.io/v1/" } else { registry };
    let config = read_config().await;
    let helper = config.cred_helpers.get(server).or(config.creds_store.as_ref()).filter(|h| !h.is_empty());
    match helper {
        Some(helper) => ask_helper(helper, server, limit).await,
        None => {
            // No helper: only the file is read, through the crate that
            // knows its `auths` encodings.
            let owned = server.to_string();
            let read = tokio::task::spawn_blocking(move || from_file(&owned));
            match tokio::time::timeout(limit, read).await {
                Ok(Ok(found)) => Ok(found),
                Ok(Err(e)) => Err(format!("reading the Docker config: {e}")),
                Err(_) => Err(format!("reading the Docker config took over {}s", limit.as_secs())),
            }
        }
    }
}

/// Where the Docker CLI keeps its config.
fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json")),
    }
}

/// The helper settings; none when there is no readable config (the file's
/// `auths` are still read by [`from_file`], which says why it cannot).
async fn read_config() -> Config {
    let Some(path) = config_path() else { return Config::default() };
    let Ok(file) = tokio::fs::File::open(&path).await else { return Config::default() };
    let mut body = Vec::new();
    use tokio::io::AsyncReadExt;
    if file.take(MAX_CONFIG).read_to_end(&mut body).await.is_err() {
        return Config::default();
    }
    serde_json::from_slice(&body).unwrap_or_default()
}

/// The config file's own entry for `server`. Blocking (a file read).
fn from_file(server: &str) -> Option<Credentials> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(server) {
        Ok(DockerCredential::UsernamePassword(user, pass)) => {
            Some(Credentials { username: Some(user), password: Some(pass), identity_token: None })
        }
        Ok(DockerCredential::IdentityToken(token)) => {
            Some(Credentials { identity_token: Some(token), ..Credentials::default() })
        }
        Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => None,
        Err(e) => {
            tracing::warn!(server, error = ?e, "cannot read registry credentials; trying anonymously");
            None
        }
    }
}

/// Runs `docker-credential-HELPER get` for `server`, killed after `limit`.
async fn ask_helper(helper: &str, server: &str, limit: Duration) -> Result<Option<Credentials>, String> {
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A helper past its limit is killed when the wait below is dropped.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the credential helper {program} (credHelpers/credsStore in the Docker config): {e}"))?;
    let ask = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(server.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(limit, ask).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("the credential helper {program} failed: {e}")),
        Err(_) => {
            return Err(format!(
                "the credential helper {program} did not answer within {}s and was stopped",
                limit.as_secs()
            ))
        }
    };
    let said = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The helpers' own words for "no entry" (docker-credential-helpers).
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "the credential helper {program} failed ({}): {}",
            output.status,
            said.trim().chars().chain(stderr.trim().chars()).take(300).collect::<String>()
        ));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("the credential helper {program} gave an unreadable answer: {e}"))?;
    Ok(Some(if answer.username == TOKEN_USER {
        Credentials { identity_token: Some(answer.secret), ..Credentials::default() }
    } else {
        Credentials { username: Some(answer.username), password: Some(answer.secret), identity_token: None }
    }))
}
