//! Everything that speaks to image registries: a tag's current digest and a
//! repository's tags, through the distribution API ([`distribution`]).
//!
//! Credentials come from the Docker config file (`DOCKER_CONFIG` or
//! `~/.docker/config.json`, credential helpers included, each under a time
//! limit), read once per registry ([`credentials`]); an identity token is
//! exchanged at the registry's token service for an access token. Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) are
//! spoken to over plain HTTP, as the Docker daemon itself does; others only
//! over HTTPS unless named as insecure. Every call has a timeout. HTTPS
//! trusts the system's CA certificates, or the bundled web PKI roots where
//! the system has none (see [`crate::tls`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell};

use crate::engine::{Credentials, Engine, InsecureRegistries};
use crate::reference::ImageRef;
use crate::types::Digest;
pub use credentials::{credentials, for_engine, HELPER_TIMEOUT};
use distribution::{Auth, CallError, Distribution};
pub use platform::ForPlatform;

mod certs;
mod cosign;
mod credentials;
mod distribution;
mod platform;
#[cfg(test)]
mod stand_in;

/// The default time one registry request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The most tags read from one repository, and the most pages: a bound
/// on what one repository costs a pass (Docker Hub serves 100 a page).
const MAX_TAGS: usize = 10_000;
const MAX_PAGES: usize = 100;
/// Requests per call when the registry answers 429 or 5xx.
const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured; a registry asking for more is
/// answered by the next pass, not by holding this one.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// 429 and the 5xx a registry sends while it recovers.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Our own wait before attempt `attempt + 1`: 0.5 s, 1 s, … (the
/// registry's `Retry-After` wins when it sends one).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1))
}

/// Tags asked for per page; registries may send fewer.
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
    /// The registry keeps refusing for too many requests (429), also after
    /// the retries.
    #[error("registry {registry} rate limited {reference} (429, still after {attempts} attempts): {detail}")]
    RateLimited {
        /// The registry host.
        registry: String,
        /// What was looked up.
        reference: String,
        /// How many requests were made.
        attempts: u32,
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
    auth: Mutex<HashMap<String, Arc<OnceCell<Auth>>>>,
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
    /// plain HTTP or not, never needs certificates installed. A registry
    /// with CA files in Docker's `certs.d` also trusts those, and is spoken
    /// to over HTTPS even on loopback (whoever put them there set up TLS).
    pub fn with_plain_http(plain: Vec<String>, timeout: Duration) -> Self {
        let configure = |b: reqwest::ClientBuilder| {
            b.connect_timeout(timeout.min(Duration::from_secs(5)))
                .read_timeout(timeout)
                .user_agent(concat!("container-upgrader/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::custom(redirect_rule))
        };
        let http = crate::tls::http_client("registry client", configure);
        // Registries with their own CAs (certs.d) get a client of their own.
        let own: HashMap<String, Result<reqwest::Client, String>> = certs::registry_cas(&certs::certs_dir())
            .into_iter()
            .map(|(registry, cas)| {
                let client = cas.and_then(|cas| {
                    crate::tls::http_client("registry client", |b| {
                        cas.iter().cloned().fold(configure(b), |b, ca| b.add_root_certificate(ca))
                    })
                });
                (registry, client)
            })
            .collect();
        let client = http.map(|http| Distribution::new(http, plain).with_own_clients(own));
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
        let digest = self.bounded(image, &auth, || client.manifest_digest(image, &auth)).await?;
        Digest::parse(&digest).map_err(|e| RegistryError::Failed {
            registry: image.registry().to_string(),
            reference: image.familiar(),
            detail: format!("registry sent a malformed digest: {e}"),
        })
    }

    /// Every tag of `image`'s repository, following the registry's pages
    /// (its `Link` header; else `last` while pages come full) up to 10 000
    /// tags or 100 pages — with a warning when that cuts the list, since a
    /// `track` target then sees only part of it.
    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let auth = self.auth_for(image.registry()).await;
        let client = self.client(image)?;
        let mut page = self.bounded(image, &auth, || client.tags_first(image, &auth, TAG_PAGE)).await?;
        let mut tags: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut pages = 1;
        loop {
            let full = page.tags.len() >= TAG_PAGE;
            let last = page.tags.last().cloned();
            let before = tags.len();
            tags.extend(page.tags.drain(..).filter(|t| seen.insert(t.clone())));
            // A registry that ignores `last` sends the same page again.
            if pages > 1 && tags.len() == before {
                break;
            }
            let next = match (page.next.take(), last) {
                (Some(next), _) => next,
                // Registries that page by `n` without a `Link` header.
                (None, Some(last)) if full => client.tags_after(&page, TAG_PAGE, &last),
                _ => break,
            };
            if tags.len() >= MAX_TAGS || pages >= MAX_PAGES {
                tracing::warn!(
                    repository = %image.name(),
                    tags = tags.len(),
                    pages,
                    "the tag list was cut at {MAX_TAGS} tags or {MAX_PAGES} pages; a tracked version past it is not seen"
                );
                break;
            }
            page = self.bounded(image, &auth, || client.tags_at(image, &auth, next.clone())).await?;
            pages += 1;
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

    /// Runs `call` under the timeout; a 429 or a 5xx answer is tried again,
    /// up to [`ATTEMPTS`] times, after the registry's `Retry-After` (capped
    /// at [`MAX_RETRY_AFTER`]) or our own doubling backoff. Each attempt has
    /// the full timeout.
    async fn bounded<T, F>(
        &self,
        image: &ImageRef,
        auth: &Auth,
        call: impl Fn() -> F,
    ) -> Result<T, RegistryError>
    where
        F: std::future::Future<Output = Result<T, CallError>>,
    {
        let mut attempt = 1;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let result = match tokio::time::timeout(self.timeout, call()).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(RegistryError::Timeout {
                        registry: image.registry().to_string(),
                        after: self.timeout,
                    })
                }
            };
            let wait = match &result {
                Err(CallError::Status { status, retry_after, .. })
                    if retryable(*status) && attempt < ATTEMPTS =>
                {
                    retry_after.map_or_else(|| backoff(attempt), |d| d.min(MAX_RETRY_AFTER))
                }
                _ => return result.map_err(|e| classify(image, auth, e)),
            };
            tracing::info!(registry = image.registry(), reference = %image.familiar(), attempt, wait_ms = wait.as_millis() as u64, "registry busy; trying again");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The credentials for `registry`, looked up once per client. The map
    /// is locked only to find the registry's cell: a slow credential helper
    /// holds up lookups of its own registry (which wait for its answer, up
    /// to the helper's time limit), never those of others.
    async fn auth_for(&self, registry: &str) -> Auth {
        let cell = self.auth.lock().await.entry(registry.to_string()).or_default().clone();
        let limit = self.timeout.min(HELPER_TIMEOUT);
        cell.get_or_init(|| async { registry_auth(credentials(registry, limit).await) }).await.clone()
    }
}

/// The registries to speak plain HTTP to: the `insecure` ones and the
/// loopback ones among `seen`, sorted (equal lists mean an equal client).
pub fn plain_http<'a>(insecure: &[String], seen: impl IntoIterator<Item = &'a ImageRef>) -> Vec<String> {
    plain_http_as(insecure, &InsecureRegistries::default(), seen)
}

/// [`plain_http`], plus the registries among `seen` the engine treats as
/// insecure (`engine`: its `insecure-registries`, by name or by an IP
/// address inside one of its ranges; a host name is not resolved).
pub fn plain_http_as<'a>(
    insecure: &[String],
    engine: &InsecureRegistries,
    seen: impl IntoIterator<Item = &'a ImageRef>,
) -> Vec<String> {
    let mut plain: Vec<String> = insecure.to_vec();
    plain.extend(
        seen.into_iter()
            .map(|r| r.registry().to_string())
            .filter(|r| is_loopback(r) || engine_insecure(engine, r)),
    );
    plain.sort();
    plain.dedup();
    plain
}

/// [`plain_http_as`] with the engine's own list, asked only when a
/// registry among `seen` is neither loopback nor in `insecure` (so a pass
/// over loopback or HTTPS-only-by-flag registries costs no engine call).
/// An engine that cannot say is taken to trust none: HTTPS is the safe
/// side.
pub async fn plain_http_for<'a>(
    engine: &Engine,
    insecure: &[String],
    seen: impl IntoIterator<Item = &'a ImageRef>,
) -> Vec<String> {
    let seen: Vec<&ImageRef> = seen.into_iter().collect();
    let undecided =
        seen.iter().any(|r| !is_loopback(r.registry()) && !insecure.iter().any(|i| i == r.registry()));
    let view = if undecided {
        engine.insecure_registries().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the engine's insecure registries; only loopback and --insecure-registry use plain HTTP");
            InsecureRegistries::default()
        })
    } else {
        InsecureRegistries::default()
    };
    plain_http_as(insecure, &view, seen)
}

/// True when the engine's `insecure-registries` cover `registry`.
fn engine_insecure(engine: &InsecureRegistries, registry: &str) -> bool {
    engine.names.iter().any(|n| n == registry)
        || host(registry)
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| engine.cidrs.iter().any(|c| in_cidr(ip, c)))
}

/// True when `ip` lies in `cidr` (`10.0.0.0/8`, `fd00::/8`).
fn in_cidr(ip: std::net::IpAddr, cidr: &str) -> bool {
    use std::net::IpAddr;
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else { return false };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The host part of `registry` (`[::1]:5000` → `::1`).
/// Redirects a registry may send its client on: at most 5, each to HTTPS,
/// to the same host and port, or to loopback. A plain-HTTP registry
/// sending the client to another host in the clear (a cloud metadata
/// address, an internal port) is refused rather than followed.
fn redirect_rule(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    const MAX_REDIRECTS: usize = 5;
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
    }
    let next = attempt.url();
    let same = attempt.previous().first().is_some_and(|first| {
        first.host_str() == next.host_str() && first.port_or_known_default() == next.port_or_known_default()
    });
    let loopback =
        next.host_str().is_some_and(|h| is_loopback(h.trim_start_matches('[').trim_end_matches(']')));
    if next.scheme() == "https" || same || loopback {
        attempt.follow()
    } else {
        let to = next.host_str().unwrap_or("?").to_string();
        attempt
            .error(format!("a redirect to another host ({to}) over plain HTTP is not followed; only HTTPS"))
    }
}

/// Whether a token realm the registry `registry` names may be asked:
/// over HTTPS, on the registry's own host, or on loopback. A realm on
/// another host in the clear would take the login there unencrypted, or
/// turn the client into a probe of internal addresses.
pub(crate) fn realm_allowed(registry: &str, realm: &reqwest::Url) -> Result<(), String> {
    let realm_host = realm.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    if realm.scheme() == "https" || realm_host == host(registry) || is_loopback(realm_host) {
        return Ok(());
    }
    Err(format!(
        "the registry {registry} names a token realm on another host over plain HTTP ({realm_host}); refused: a realm elsewhere must be HTTPS"
    ))
}

/// The host of `registry` (`host[:port]` or `[v6]:port`), without the port.
pub fn host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

pub(crate) use crate::tls::ensure_crypto_provider;

fn registry_auth(c: Result<Option<Credentials>, String>) -> Auth {
    match c {
        Ok(Some(Credentials { username: Some(u), password: Some(p), .. })) => Auth::Basic(u, p),
        Ok(Some(Credentials { identity_token: Some(t), .. })) => Auth::IdentityToken(t),
        Ok(_) => Auth::Anonymous,
        Err(why) => {
            tracing::warn!(reason = %why, "no registry credentials; trying anonymously");
            Auth::Unavailable(why)
        }
    }
}

/// True for registries Docker treats as insecure by default.
pub fn is_loopback(registry: &str) -> bool {
    let host = host(registry);
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
        Auth::IdentityToken(_) => "the Docker config's identity token was refused".to_string(),
        Auth::Unavailable(why) => format!("no credentials: {why}"),
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
        CallError::Status { status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, detail, .. } => {
            RegistryError::Denied { sent: sent(image.registry(), auth), registry, reference, detail }
        }
        CallError::Status { status: StatusCode::TOO_MANY_REQUESTS, detail, .. } => {
            RegistryError::RateLimited { registry, reference, attempts: ATTEMPTS, detail }
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
    fn a_token_realm_elsewhere_must_be_https() {
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        assert!(realm_allowed("reg.example:5000", &url("https://auth.example/token")).is_ok());
        assert!(
            realm_allowed("reg.example:5000", &url("http://reg.example:5001/token")).is_ok(),
            "same host"
        );
        assert!(realm_allowed("reg.example", &url("http://127.0.0.1:9/token")).is_ok(), "loopback");
        let e = realm_allowed("127.0.0.1:5000", &url("http://169.254.169.254/latest/meta-data"))
            .expect_err("refused");
        assert!(e.contains("169.254.169.254") && e.contains("must be HTTPS"), "{e}");
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_in_the_clear_is_not_followed() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok).take(4) {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let answer = "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://169.254.169.254/latest/meta-data\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let client = Registry::with_plain_http(vec![addr.clone()], Duration::from_secs(5));
        let image = ImageRef::parse(&format!("{addr}/team/app:1")).expect("reference");
        let e = client.digest(&image).await.expect_err("not followed").to_string();
        assert!(e.contains("not followed"), "{e}");
    }
    use stand_in::{serve, Reply};

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// 1 200 tags `3.0.0` … `3.39.29`, listed sorted as text (so `3.9.x`
    /// comes last), served 100 a page whatever `n` asks, with `Link`.
    fn paging_registry() -> stand_in::StandIn {
        let mut all: Vec<String> =
            (0..40).flat_map(|minor| (0..30).map(move |p| format!("3.{minor}.{p}"))).collect();
        all.sort();
        serve(move |line| {
            let Some(query) = line
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.split_once("tags/list?"))
                .map(|(_, q)| q.to_string())
            else {
                return Reply::status("200 OK").header("docker-content-digest", DIGEST);
            };
            let param = |k: &str| {
                query.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).map(str::to_string)
            };
            let n = param("n").and_then(|n| n.parse().ok()).unwrap_or(100usize).min(100);
            let start =
                param("last").map_or(0, |last| all.iter().position(|t| *t == last).map_or(0, |i| i + 1));
            let page: Vec<&String> = all.iter().skip(start).take(n).collect();
            let body = serde_json::json!({"name": "app", "tags": page}).to_string();
            let mut reply = Reply::ok(body);
            if start + n < all.len() {
                let last = page.last().map(|t| t.as_str()).unwrap_or_default();
                reply = reply.header("link", format!("</v2/app/tags/list?last={last}&n={n}>; rel=\"next\""));
            }
            reply
        })
    }

    #[tokio::test]
    async fn a_rate_limited_request_is_retried_after_the_registrys_retry_after() {
        let count = std::sync::atomic::AtomicU32::new(0);
        let server = serve(move |_| match count.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::status("429 Too Many Requests").header("retry-after", "1"),
            1 => Reply::status("503 Service Unavailable"),
            _ => Reply::status("200 OK").header("docker-content-digest", DIGEST),
        });
        let registry = Registry::with_plain_http(vec![server.addr.clone()], DEFAULT_TIMEOUT);
        let image = ImageRef::parse(&format!("{}/app:1", server.addr)).expect("reference");
        let digest = registry.digest(&image).await.map(|d| d.to_string());
        assert_eq!(digest.as_deref(), Ok(DIGEST));
        let seen =
            server.seen.lock().map(|s| s.iter().map(|(at, _)| *at).collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(seen.len(), 3, "429, 503, then the answer");
        assert!(
            seen[1] - seen[0] >= Duration::from_secs(1),
            "waited the Retry-After: {:?}",
            seen[1] - seen[0]
        );
        assert!(
            seen[2] - seen[1] >= Duration::from_millis(900),
            "then our own backoff: {:?}",
            seen[2] - seen[1]
        );
    }

    #[tokio::test]
    async fn a_registry_that_keeps_rate_limiting_is_said_to() {
        let server = serve(|_| Reply::status("429 Too Many Requests").header("retry-after", "0"));
        let registry = Registry::with_plain_http(vec![server.addr.clone()], DEFAULT_TIMEOUT);
        let image = ImageRef::parse(&format!("{}/app:1", server.addr)).expect("reference");
        let err = registry.digest(&image).await.map_err(|e| e.to_string());
        let err = err.expect_err("rate limited");
        assert!(err.contains("rate limited") && err.contains("3 attempts"), "{err}");
        assert_eq!(server.lines().len(), 3);
    }

    #[tokio::test]
    async fn tag_lists_are_read_to_the_end_through_link_headers() {
        let server = paging_registry();
        let registry = Registry::with_plain_http(vec![server.addr.clone()], DEFAULT_TIMEOUT);
        let image = ImageRef::parse(&format!("{}/app", server.addr)).expect("reference");
        let tags = registry.tags(&image).await.expect("tags");
        assert_eq!(tags.len(), 1200, "every page is read");
        assert_eq!(registry.calls(), 12, "pages of 100");
        let lines = server.lines();
        assert!(lines[0].contains("tags/list?n=1000 "), "asks for many: {}", lines[0]);
        assert!(
            lines[1..].iter().all(|l| l.contains("tags/list?last=") && l.contains("&n=100 ")),
            "follows the links: {lines:?}"
        );
        let range = semver::VersionReq::parse("^3").expect("range");
        let best = crate::resolve::tag::pick(&tags, &range, false, "").map(|t| t.tag.to_string());
        assert_eq!(best.as_deref(), Some("3.39.29"), "the highest, on the last page by text order");
    }

    #[test]
    fn the_engines_insecure_registries_are_spoken_to_over_plain_http() {
        let engine = InsecureRegistries {
            names: vec!["registry.lan:5000".into()],
            cidrs: vec!["127.0.0.0/8".into(), "10.20.0.0/16".into(), "fd00::/8".into()],
        };
        let refs: Vec<ImageRef> = [
            "registry.lan:5000/app:1",
            "registry.lan/app:1",
            "10.20.3.4:5000/app:1",
            "10.21.0.1:5000/app:1",
            "ghcr.io/o/app:1",
        ]
        .iter()
        .map(|r| ImageRef::parse(r).expect("reference"))
        .collect();
        assert_eq!(
            plain_http_as(&["other:443".to_string()], &engine, &refs),
            ["10.20.3.4:5000", "other:443", "registry.lan:5000"],
            "by name (port included), by address range, and --insecure-registry"
        );
        assert!(in_cidr("fd00::1".parse().expect("ip"), "fd00::/8"));
        assert!(!in_cidr("fe80::1".parse().expect("ip"), "fd00::/8"));
        assert!(!in_cidr("10.0.0.1".parse().expect("ip"), "garbage"));
        assert!(in_cidr("8.8.8.8".parse().expect("ip"), "0.0.0.0/0"));
    }

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
