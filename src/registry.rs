//! Everything that speaks to image registries: a tag's current digest and a
//! repository's tags, through the distribution API ([`distribution`]).
//!
//! Credentials come from the Docker config file (`DOCKER_CONFIG` or
//! `~/.docker/config.json`, credential helpers included), read once per
//! registry. Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) are
//! spoken to over plain HTTP, as the Docker daemon itself does; others only
//! over HTTPS unless named as insecure. Every call has a timeout. HTTPS
//! trusts the system's CA certificates, or the bundled web PKI roots where
//! the system has none (see [`crate::tls`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::Mutex;

use crate::engine::Credentials;
use crate::reference::{ImageRef, DOCKER_HUB};
use crate::types::Digest;
use distribution::{Auth, CallError, Distribution};

mod distribution;

/// The default time one registry request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The most tags read from one repository (pages of 1000).
const MAX_TAGS: usize = 10_000;
const TAG_PAGE: usize = 1000;

/// Why a registry could not answer. Plain data so a plan can carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Nothing answered: connection refused, DNS failure, TLS failure.
    #[error("registry unreachable: {registry}: {detail}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The lowest-level cause.
        detail: String,
    },
    /// It did not answer in time.
    #[error("registry {registry} did not answer within {}s", .after.as_secs())]
    Timeout {
        /// The registry host.
        registry: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The tag or repository does not exist.
    #[error("{reference} not found in registry {registry}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// What was looked up.
        reference: String,
    },
    /// Credentials missing or refused.
    #[error("registry {registry} refused access to {reference} ({sent}): {detail}")]
    Denied {
        /// The registry host.
        registry: String,
        /// What was looked up.
        reference: String,
        /// Which credentials were sent: none, or whose.
        sent: String,
        /// The registry's message.
        detail: String,
    },
    /// Any other failure (a bad answer, an unexpected status).
    #[error("registry {registry} failed on {reference}: {detail}")]
    Failed {
        /// The registry host.
        registry: String,
        /// What was looked up.
        reference: String,
        /// The error chain.
        detail: String,
    },
}

/// A registry client shared by every resolution of a pass.
pub struct Registry {
    client: Result<Distribution, String>,
    timeout: Duration,
    auth: Mutex<HashMap<String, Auth>>,
    calls: AtomicU64,
}

impl Registry {
    /// A client for which `insecure` registries (host[:port]) use plain HTTP,
    /// in addition to loopback registries found among `seen`.
    pub fn new<'a>(
        insecure: &[String],
        seen: impl IntoIterator<Item = &'a ImageRef>,
        timeout: Duration,
    ) -> Self {
        Self::with_plain_http(plain_http(insecure, seen), timeout)
    }

    /// A client for which exactly the `plain` registries use plain HTTP
    /// (see [`plain_http`]). It trusts the system's CA certificates, or the
    /// bundled ones where the system has none ([`crate::tls`]): a registry,
    /// plain HTTP or not, never needs certificates installed.
    pub fn with_plain_http(plain: Vec<String>, timeout: Duration) -> Self {
        let http = crate::tls::http_client("registry client", |b| {
            b.connect_timeout(timeout.min(Duration::from_secs(5)))
                .read_timeout(timeout)
                .user_agent(concat!("container-upgrader/", env!("CARGO_PKG_VERSION")))
        });
        let client = http.map(|http| Distribution::new(http, plain));
        Self { client, timeout, auth: Mutex::new(HashMap::new()), calls: AtomicU64::new(0) }
    }

    /// How many requests this client has sent (for benchmarks and logs).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The digest the registry serves for `image` now (a HEAD request).
    pub async fn digest(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        let auth = self.auth_for(image.registry()).await;
        let client = self.client(image)?;
        let digest = self.bounded(image, &auth, client.manifest_digest(image, &auth)).await?;
        Digest::parse(&digest).map_err(|e| RegistryError::Failed {
            registry: image.registry().to_string(),
            reference: image.familiar(),
            detail: format!("registry sent a malformed digest: {e}"),
        })
    }

    /// Every tag of `image`'s repository (paged, at most 10 000).
    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let auth = self.auth_for(image.registry()).await;
        let client = self.client(image)?;
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page =
                self.bounded(image, &auth, client.tags_page(image, &auth, TAG_PAGE, last.as_deref())).await?;
            let got = page.len();
            tags.extend(page);
            // Registries that ignore `n` send everything at once.
            if got < TAG_PAGE || tags.len() >= MAX_TAGS || tags.last() == last.as_ref() {
                break;
            }
        }
        tags.truncate(MAX_TAGS);
        Ok(tags)
    }

    fn client(&self, image: &ImageRef) -> Result<&Distribution, RegistryError> {
        self.client.as_ref().map_err(|detail| RegistryError::Failed {
            registry: image.registry().to_string(),
            reference: image.familiar(),
            detail: detail.clone(),
        })
    }

    async fn bounded<T>(
        &self,
        image: &ImageRef,
        auth: &Auth,
        call: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, RegistryError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| classify(image, auth, e)),
            Err(_) => {
                Err(RegistryError::Timeout { registry: image.registry().to_string(), after: self.timeout })
            }
        }
    }

    async fn auth_for(&self, registry: &str) -> Auth {
        let mut cache = self.auth.lock().await;
        if let Some(auth) = cache.get(registry) {
            return auth.clone();
        }
        let owned = registry.to_string();
        // Credential helpers are external programs: keep them off the runtime threads.
        let auth = tokio::task::spawn_blocking(move || registry_auth(credentials(&owned)))
            .await
            .unwrap_or(Auth::Anonymous);
        cache.insert(registry.to_string(), auth.clone());
        auth
    }
}

/// The registries to speak plain HTTP to: the `insecure` ones and the
/// loopback ones among `seen`, sorted (equal lists mean an equal client).
pub fn plain_http<'a>(insecure: &[String], seen: impl IntoIterator<Item = &'a ImageRef>) -> Vec<String> {
    let mut plain: Vec<String> = insecure.to_vec();
    plain.extend(seen.into_iter().map(|r| r.registry().to_string()).filter(|r| is_loopback(r)));
    plain.sort();
    plain.dedup();
    plain
}

pub(crate) use crate::tls::ensure_crypto_provider;

/// The Docker config's credentials for `registry` (`None`: anonymous).
/// Blocking: a credential helper is an external program.
pub fn credentials(registry: &str) -> Option<Credentials> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let server = if registry == DOCKER_HUB { "https://index.docker.io/v1/" } else { registry };
    match docker_credential::get_credential(server) {
        Ok(DockerCredential::UsernamePassword(user, pass)) => {
            Some(Credentials { username: Some(user), password: Some(pass), identity_token: None })
        }
        Ok(DockerCredential::IdentityToken(token)) => {
            Some(Credentials { identity_token: Some(token), ..Credentials::default() })
        }
        Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => None,
        Err(e) => {
            tracing::warn!(registry, error = ?e, "cannot read registry credentials; trying anonymously");
            None
        }
    }
}

fn registry_auth(c: Option<Credentials>) -> Auth {
    match c {
        Some(Credentials { username: Some(u), password: Some(p), .. }) => Auth::Basic(u, p),
        Some(Credentials { identity_token: Some(t), .. }) => Auth::Bearer(t),
        _ => Auth::Anonymous,
    }
}

/// True for registries Docker treats as insecure by default.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    host == "localhost"
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// What an operator needs to tell "wrong password" from "no login at all".
/// The user name stays out: this text goes into plan reasons, status and
/// webhook events, which leave the host; the registry is enough to find
/// the login in the Docker config.
fn sent(registry: &str, auth: &Auth) -> String {
    match auth {
        Auth::Anonymous => format!("no credentials for {registry} in the Docker config"),
        Auth::Basic(..) => format!("the Docker config's login for {registry} was refused"),
        Auth::Bearer(_) => "the Docker config's identity token was refused".to_string(),
    }
}

fn classify(image: &ImageRef, auth: &Auth, e: CallError) -> RegistryError {
    let registry = image.registry().to_string();
    let reference = image.familiar();
    match e {
        CallError::Transport(e) if e.is_timeout() => {
            RegistryError::Timeout { registry, after: DEFAULT_TIMEOUT }
        }
        CallError::Transport(e) if e.is_connect() || e.is_request() => {
            RegistryError::Unreachable { registry, detail: root_cause(&e) }
        }
        CallError::Transport(e) => RegistryError::Failed { registry, reference, detail: chain(&e) },
        CallError::Status { status: StatusCode::NOT_FOUND, .. } => {
            RegistryError::NotFound { registry, reference }
        }
        CallError::Status { status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, detail } => {
            RegistryError::Denied { sent: sent(image.registry(), auth), registry, reference, detail }
        }
        CallError::Status { detail, .. } | CallError::Invalid(detail) => {
            RegistryError::Failed { registry, reference, detail }
        }
    }
}

/// The innermost cause ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The whole chain, outermost first.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e;
    while let Some(next) = cur.source() {
        parts.push(next.to_string());
        cur = next;
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for r in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.3.2.1", "[::1]:5000"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["docker.io", "10.0.0.1:5000", "registry.local:5000", "localhost.evil.io"] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
