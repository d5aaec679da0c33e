//! The two read-only calls of the OCI distribution API this tool makes — a
//! manifest's digest and a page of a repository's tags — and the registry's
//! auth challenge: HTTP Basic, or a Bearer token from the realm the registry
//! names (Docker Hub, GHCR, Harbor, distribution with token auth).
//!
//! Spoken through our own reqwest client rather than `oci-client`: that
//! crate builds a second, default reqwest client inside every one of its
//! own, and where the system has no CA certificates (any bare `FROM
//! scratch` image) that one panics — so not even a plain-HTTP registry
//! could be reached. Ours trusts the bundled roots there ([`crate::tls`]).

use std::collections::HashMap;

use reqwest::header::{HeaderMap, ACCEPT, LINK, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::reference::{ImageRef, DOCKER_HUB};

/// What a pull accepts, so the digest is the one a pull resolves (an
/// index, for a multi-platform image).
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";
/// Where Docker Hub's API is (`docker.io` names the hub, not the host).
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// The largest tag list page, token or error body read.
const MAX_BODY: usize = 4 << 20;

/// One page of a repository's tags.
pub struct TagPage {
    /// The tags on it.
    pub tags: Vec<String>,
    /// The next page, when the registry's `Link` header names one.
    pub next: Option<Url>,
    /// Where this page was read.
    pub url: Url,
}

/// The target of a `Link: <url>; rel="next"` header value (RFC 8288; the
/// distribution API pages tag lists with it).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        is_next.then(|| target.to_string())
    })
}

/// The credentials sent to one registry.
#[derive(Clone, Default)]
pub enum Auth {
    /// None.
    #[default]
    Anonymous,
    /// User and password: HTTP Basic, or exchanged for a token.
    Basic(String, String),
    /// An identity token (`docker login` to a registry with OAuth): a
    /// refresh token, exchanged at the token service for an access token.
    IdentityToken(String),
    /// None could be read: why (a credential helper that hung or failed).
    Unavailable(String),
}

/// Why a call failed, before the registry module tells it to the operator.
#[derive(Debug)]
pub enum CallError {
    /// No answer: DNS, connection, TLS, timeout.
    Transport(reqwest::Error),
    /// The registry (or its token service) answered with an error status.
    Status {
        /// The status.
        status: StatusCode,
        /// The registry's own message, else the status text.
        detail: String,
        /// How long the registry asks to wait before trying again
        /// (`Retry-After` in seconds, on 429 and 503).
        retry_after: Option<std::time::Duration>,
    },
    /// An answer that cannot be used.
    Invalid(String),
}

impl From<reqwest::Error> for CallError {
    fn from(e: reqwest::Error) -> Self {
        CallError::Transport(e)
    }
}

/// What a request carries to be let in.
#[derive(Clone)]
enum Credential {
    Basic(String, String),
    Bearer(String),
}

/// A client of the distribution API, shared by every lookup of a pass.
pub struct Distribution {
    http: reqwest::Client,
    /// Registries spoken to over plain HTTP.
    plain: Vec<String>,
    /// Per registry and repository, the credential that was let in last:
    /// sent up front, so a token is fetched once, not once per request.
    admitted: Mutex<HashMap<(String, String), Credential>>,
    /// Registries with CAs of their own (Docker's `certs.d`): their client,
    /// or why their CA files cannot be used. Always HTTPS.
    own: HashMap<String, Result<reqwest::Client, String>>,
}

impl Distribution {
    /// A client over `http`; `plain` registries are spoken to over HTTP.
    pub fn new(http: reqwest::Client, plain: Vec<String>) -> Self {
        Self { http, plain, admitted: Mutex::new(HashMap::new()), own: HashMap::new() }
    }

    /// Speaks to the registries of `own` through their own client (one
    /// trusting their CA files).
    pub fn with_own_clients(mut self, own: HashMap<String, Result<reqwest::Client, String>>) -> Self {
        self.own = own;
        self
    }

    /// The client for `registry`, token service included.
    fn http_for(&self, registry: &str) -> Result<&reqwest::Client, CallError> {
        match self.own.get(registry) {
            Some(Ok(client)) => Ok(client),
            Some(Err(why)) => Err(CallError::Invalid(why.clone())),
            None => Ok(&self.http),
        }
    }

    /// The digest the registry serves for `image` (its digest if pinned,
    /// else its tag): a HEAD request's `Docker-Content-Digest`.
    pub async fn manifest_digest(&self, image: &ImageRef, auth: &Auth) -> Result<String, CallError> {
        let reference = image
            .digest()
            .map(|d| d.to_string())
            .unwrap_or_else(|| image.tag().unwrap_or("latest").to_string());
        let url = self.url(image, &format!("manifests/{reference}"))?;
        let response = self.send(image, auth, Method::HEAD, url).await?;
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| CallError::Invalid("the registry sent no Docker-Content-Digest header".into()))
    }

    /// The manifest (or index) `image`'s repository serves for `reference`
    /// (a digest or a tag), read whole: its media type and body.
    pub async fn manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        auth: &Auth,
    ) -> Result<(String, Vec<u8>), CallError> {
        let url = self.url(image, &format!("manifests/{reference}"))?;
        let response = self.send(image, auth, Method::GET, url).await?;
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((media_type, read_bounded(response).await?))
    }

    /// The OCI 1.1 referrers of manifest `digest` in `image`'s repository
    /// (an image index of the manifests whose `subject` it is), read whole;
    /// `None` when the registry does not offer the API (it answers 404, or
    /// another status saying it does not know the route).
    pub async fn referrers(
        &self,
        image: &ImageRef,
        digest: &str,
        auth: &Auth,
    ) -> Result<Option<Vec<u8>>, CallError> {
        let url = self.url(image, &format!("referrers/{digest}"))?;
        match self.send(image, auth, Method::GET, url).await {
            Ok(response) => Ok(Some(read_bounded(response).await?)),
            Err(CallError::Status { status, .. })
                if matches!(status.as_u16(), 400 | 404 | 405 | 406 | 501) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The blob `digest` of `image`'s repository, read whole (bounded).
    pub async fn blob(&self, image: &ImageRef, digest: &str, auth: &Auth) -> Result<Vec<u8>, CallError> {
        let url = self.url(image, &format!("blobs/{digest}"))?;
        let response = self.send(image, auth, Method::GET, url).await?;
        read_bounded(response).await
    }

    /// The first page of `image`'s tags, asking for `n` (a registry may
    /// send fewer: Docker Hub sends at most 100), and where the next page
    /// is when the registry says there is one.
    pub async fn tags_first(&self, image: &ImageRef, auth: &Auth, n: usize) -> Result<TagPage, CallError> {
        let mut url = self.url(image, "tags/list")?;
        url.query_pairs_mut().append_pair("n", &n.to_string());
        self.tags_at(image, auth, url).await
    }

    /// The page of tags at `url` (a [`TagPage::next`]).
    pub async fn tags_at(&self, image: &ImageRef, auth: &Auth, url: Url) -> Result<TagPage, CallError> {
        #[derive(Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let response = self.send(image, auth, Method::GET, url.clone()).await?;
        let next = response
            .headers()
            .get_all(LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link)
            .and_then(|link| url.join(&link).ok())
            // Only the same registry: a link elsewhere would get our
            // credentials for this one.
            .filter(|next| next.origin() == url.origin());
        let body = read_bounded(response).await?;
        let list: TagList = serde_json::from_slice(&body)
            .map_err(|e| CallError::Invalid(format!("the registry sent an unreadable tag list: {e}")))?;
        Ok(TagPage { tags: list.tags.unwrap_or_default(), next, url })
    }

    /// The URL of the page after `last` in a registry that pages by `last`
    /// but sends no `Link` header.
    pub fn tags_after(&self, page: &TagPage, n: usize, last: &str) -> Url {
        let mut url = page.url.clone();
        url.query_pairs_mut().clear().append_pair("n", &n.to_string()).append_pair("last", last);
        url
    }

    /// `scheme://host/v2/<repository>/<path>`.
    fn url(&self, image: &ImageRef, path: &str) -> Result<Url, CallError> {
        let registry = image.registry();
        let plain = self.plain.iter().any(|p| p == registry) && !self.own.contains_key(registry);
        let scheme = if plain { "http" } else { "https" };
        let host = if registry == DOCKER_HUB { DOCKER_HUB_HOST } else { registry };
        let url = format!("{scheme}://{host}/v2/{}/{path}", image.repository());
        Url::parse(&url).map_err(|e| CallError::Invalid(format!("{url}: {e}")))
    }

    /// Sends the request with the credential last admitted for the
    /// repository; on 401, answers the registry's challenge once and sends
    /// it again. An error status is an `Err`.
    async fn send(
        &self,
        image: &ImageRef,
        auth: &Auth,
        method: Method,
        url: Url,
    ) -> Result<Response, CallError> {
        let key = (image.registry().to_string(), image.repository().to_string());
        let known = self.admitted.lock().await.get(&key).cloned();
        let http = self.http_for(image.registry())?;
        let response = self.request(http, method.clone(), url.clone(), known.as_ref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return success(response).await;
        }
        let challenge = Challenge::from_headers(response.headers());
        let Some(credential) = self.answer(challenge, image, auth).await? else {
            return success(response).await;
        };
        let response = self.request(http, method, url, Some(&credential)).await?;
        if response.status().is_success() {
            self.admitted.lock().await.insert(key, credential);
        }
        success(response).await
    }

    async fn request(
        &self,
        http: &reqwest::Client,
        method: Method,
        url: Url,
        credential: Option<&Credential>,
    ) -> Result<Response, CallError> {
        let request = http.request(method, url).header(ACCEPT, MANIFEST_TYPES);
        let request = match credential {
            None => request,
            Some(Credential::Basic(user, password)) => request.basic_auth(user, Some(password)),
            Some(Credential::Bearer(token)) => request.bearer_auth(token),
        };
        Ok(request.send().await?)
    }

    /// The credential that answers `challenge` with `auth`; `None`: there
    /// is nothing to answer with.
    async fn answer(
        &self,
        challenge: Option<Challenge>,
        image: &ImageRef,
        auth: &Auth,
    ) -> Result<Option<Credential>, CallError> {
        match (challenge, auth) {
            (Some(Challenge::Bearer { realm, service, scope }), Auth::IdentityToken(refresh)) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository()));
                self.refresh(image.registry(), &realm, service.as_deref(), &scope, refresh)
                    .await
                    .map(|t| Some(Credential::Bearer(t)))
            }
            // An identity token means something only to a token service.
            (_, Auth::IdentityToken(_)) => Ok(None),
            (Some(Challenge::Bearer { realm, service, scope }), _) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository()));
                self.token(image.registry(), &realm, service.as_deref(), &scope, auth)
                    .await
                    .map(|t| Some(Credential::Bearer(t)))
            }
            (_, Auth::Basic(user, password)) => Ok(Some(Credential::Basic(user.clone(), password.clone()))),
            (_, Auth::Anonymous | Auth::Unavailable(_)) => Ok(None),
        }
    }

    /// A token from the registry's token service, for `scope`; the login
    /// goes along when there is one (anonymous tokens are for public
    /// repositories).
    async fn token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        auth: &Auth,
    ) -> Result<String, CallError> {
        let mut url = Url::parse(realm).map_err(|e| {
            CallError::Invalid(format!("the registry names an unusable token realm {realm}: {e}"))
        })?;
        super::realm_allowed(registry, &url).map_err(CallError::Invalid)?;
        url.query_pairs_mut().append_pair("scope", scope);
        if let Some(service) = service {
            url.query_pairs_mut().append_pair("service", service);
        }
        let request = self.http_for(registry)?.get(url);
        let request = match auth {
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
            _ => request,
        };
        let body = read_bounded(success(request.send().await?).await?).await?;
        token_of(&body)
    }
}

impl Distribution {
    /// An access token for `scope` in exchange for an identity token: the
    /// OAuth2 refresh-token grant Docker's own client uses (POST to the
    /// realm). Sending the identity token itself as the bearer token is
    /// refused by every registry that issues them.
    async fn refresh(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        refresh_token: &str,
    ) -> Result<String, CallError> {
        let url = Url::parse(realm).map_err(|e| {
            CallError::Invalid(format!("the registry names an unusable token realm {realm}: {e}"))
        })?;
        super::realm_allowed(registry, &url).map_err(CallError::Invalid)?;
        // The form body, encoded as a query is (application/x-www-form-urlencoded).
        let mut form = Url::parse("http://form.invalid/").map_err(|e| CallError::Invalid(e.to_string()))?;
        form.query_pairs_mut()
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .append_pair("service", service.unwrap_or_default())
            .append_pair("scope", scope)
            .append_pair("client_id", "container-upgrader");
        let body = form.query().unwrap_or_default().to_string();
        let request = self
            .http_for(registry)?
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        let body = read_bounded(success(request.send().await?).await?).await?;
        token_of(&body)
    }
}

/// The token in a token service's answer (`token` or `access_token`).
fn token_of(body: &[u8]) -> Result<String, CallError> {
    #[derive(Deserialize)]
    struct Token {
        token: Option<String>,
        access_token: Option<String>,
    }
    let token: Token = serde_json::from_slice(body)
        .map_err(|e| CallError::Invalid(format!("the token service sent an unreadable answer: {e}")))?;
    token
        .token
        .or(token.access_token)
        .ok_or_else(|| CallError::Invalid("the token service sent no token".into()))
}

/// `response` if its status is a success; else its status and message.
async fn success(response: Response) -> Result<Response, CallError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // Only the seconds form: registries send that (an HTTP date is rare and
    // falls back to our own backoff).
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(std::time::Duration::from_secs);
    let body = read_bounded(response).await.unwrap_or_default();
    Err(CallError::Status { status, detail: message(status, &body), retry_after })
}

/// The registry's own words for an error (`{"errors": [{"message": …}]}`),
/// else the status text.
fn message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        message: Option<String>,
        code: Option<String>,
    }
    let said: Vec<String> = serde_json::from_slice::<Errors>(body)
        .map(|e| e.errors.into_iter().filter_map(|e| e.message.or(e.code)).collect())
        .unwrap_or_default();
    if said.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {}", said.join("; "))
    }
}

/// The body, refused past [`MAX_BODY`]: a registry is not trusted to be small.
async fn read_bounded(mut response: Response) -> Result<Vec<u8>, CallError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(CallError::Invalid(format!("the registry's answer is over {} MiB", MAX_BODY >> 20)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    /// HTTP Basic.
    Basic,
    /// Fetch a token from `realm`.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(Self::parse)
    }

    /// `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
    fn parse(header: &str) -> Option<Self> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = params(rest);
        let get =
            |key: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone());
        Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
    }
}

/// `key="value", key=value` pairs; quoted values may hold commas (a scope
/// such as `repository:a:pull,push`) and backslash escapes.
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() || chars.next_if_eq(&'=').is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            Challenge::parse(hub),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        let push = r#"bearer realm="https://r.example/token", scope="repository:a/b:pull,push""#;
        assert_eq!(
            Challenge::parse(push),
            Some(Challenge::Bearer {
                realm: "https://r.example/token".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Bearer service=\"x\""), None, "no realm, no token");
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(
            params(r#"a="x\"y",b=plain, c="""#),
            [("a".into(), "x\"y".into()), ("b".into(), "plain".into()), ("c".into(), String::new())]
        );
    }

    /// A registry with token auth on loopback, as distribution behind a
    /// token service answers: the token for `deployer`'s login, and the
    /// digest for that token. Records each request line.
    fn token_registry() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (log, realm) = (seen.clone(), format!("http://{addr}/token"));
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let mut head = Vec::new();
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    head.push(line.trim_end().to_string());
                    line.clear();
                }
                let has = |h: &str| head.iter().any(|l| l.eq_ignore_ascii_case(h));
                let first = head.first().cloned().unwrap_or_default();
                log.lock().expect("log").push(first.clone());
                let length = head
                    .iter()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|n| n.trim().to_string())
                    })
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let response = if first.starts_with("POST /token ") {
                    // The OAuth2 refresh-token grant for identity token `rt-1`.
                    if body.contains("grant_type=refresh_token") && body.contains("refresh_token=rt-1") {
                        "200 OK\r\ncontent-length: 22\r\n\r\n{\"access_token\":\"t0k\"}".to_string()
                    } else {
                        "401 Unauthorized\r\ncontent-length: 0\r\n\r\n".to_string()
                    }
                } else if first.starts_with("GET /token?") {
                    // base64("deployer:pw")
                    if has("authorization: Basic ZGVwbG95ZXI6cHc=") {
                        "200 OK\r\ncontent-length: 15\r\n\r\n{\"token\":\"t0k\"}".to_string()
                    } else {
                        "401 Unauthorized\r\ncontent-length: 0\r\n\r\n".to_string()
                    }
                } else if has("authorization: Bearer t0k") {
                    "200 OK\r\ndocker-content-digest: sha256:abc\r\ncontent-length: 0\r\n\r\n".to_string()
                } else {
                    format!("401 Unauthorized\r\nwww-authenticate: Bearer realm=\"{realm}\",service=\"reg\",scope=\"repository:team/app:pull\"\r\ncontent-length: 0\r\n\r\n")
                };
                // One request per connection, said so: a pooled connection
                // this loop already closed would fail the client's next request.
                let response = response.replacen("\r\n", "\r\nconnection: close\r\n", 1);
                let _ = stream.write_all(format!("HTTP/1.1 {response}").as_bytes());
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn a_bearer_challenge_is_answered_with_a_token_fetched_once() {
        let (addr, seen) = token_registry();
        let http = crate::tls::http_client("test client", |b| b).expect("client");
        let d = Distribution::new(http, vec![addr.clone()]);
        let image = ImageRef::parse(&format!("{addr}/team/app:1")).expect("reference");
        let login = Auth::Basic("deployer".into(), "pw".into());
        for _ in 0..2 {
            let digest = d.manifest_digest(&image, &login).await.map_err(|e| format!("{e:?}"));
            assert_eq!(digest.as_deref(), Ok("sha256:abc"));
        }
        let lines = seen.lock().expect("log").clone();
        assert_eq!(
            lines,
            [
                "HEAD /v2/team/app/manifests/1 HTTP/1.1",
                "GET /token?scope=repository%3Ateam%2Fapp%3Apull&service=reg HTTP/1.1",
                "HEAD /v2/team/app/manifests/1 HTTP/1.1",
                "HEAD /v2/team/app/manifests/1 HTTP/1.1",
            ],
            "the token is fetched with the login, then reused"
        );
        // The token admitted for the repository goes first, whatever the login.
        let wrong = Auth::Basic("deployer".into(), "nope".into());
        let again = d.manifest_digest(&image.with_tag("2"), &wrong).await;
        assert!(again.is_ok(), "{again:?}");
        // Elsewhere, the wrong login gets no token: refused.
        let other = ImageRef::parse(&format!("{addr}/team/other:1")).expect("reference");
        let refused = d.manifest_digest(&other, &wrong).await;
        assert!(
            matches!(refused, Err(CallError::Status { status: StatusCode::UNAUTHORIZED, .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn an_identity_token_is_exchanged_for_an_access_token_not_sent_as_one() {
        let (addr, seen) = token_registry();
        let http = crate::tls::http_client("test client", |b| b).expect("client");
        let d = Distribution::new(http, vec![addr.clone()]);
        let image = ImageRef::parse(&format!("{addr}/team/app:1")).expect("reference");
        let digest = d.manifest_digest(&image, &Auth::IdentityToken("rt-1".into())).await;
        assert_eq!(digest.map_err(|e| format!("{e:?}")).as_deref(), Ok("sha256:abc"));
        let lines = seen.lock().expect("log").clone();
        assert_eq!(
            lines,
            [
                "HEAD /v2/team/app/manifests/1 HTTP/1.1",
                "POST /token HTTP/1.1",
                "HEAD /v2/team/app/manifests/1 HTTP/1.1",
            ],
            "the identity token goes to the token service, the access token to the registry"
        );
        let other = ImageRef::parse(&format!("{addr}/team/other:1")).expect("reference");
        let refused = d.manifest_digest(&other, &Auth::IdentityToken("stale".into())).await;
        assert!(
            matches!(refused, Err(CallError::Status { status: StatusCode::UNAUTHORIZED, .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn next_links_are_read_as_registries_send_them() {
        let cases = [
            (r#"</v2/a/tags/list?last=x&n=100>; rel="next""#, Some("/v2/a/tags/list?last=x&n=100")),
            (
                r#"<https://r.io/v2/a/tags/list?n=5&last=b>; rel=next"#,
                Some("https://r.io/v2/a/tags/list?n=5&last=b"),
            ),
            (r#"</x>; rel="prev", </y>; rel="next""#, Some("/y")),
            (r#"</x>; rel="prev""#, None),
            ("garbage", None),
        ];
        for (header, expected) in cases {
            assert_eq!(next_link(header).as_deref(), expected, "{header}");
        }
    }

    #[test]
    fn error_bodies_give_the_registrys_own_words() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(message(StatusCode::NOT_FOUND, body), "404 Not Found: manifest unknown");
        assert_eq!(message(StatusCode::UNAUTHORIZED, b""), "401 Unauthorized");
        assert_eq!(message(StatusCode::BAD_GATEWAY, b"<html>"), "502 Bad Gateway");
    }

    #[test]
    fn urls_name_the_hub_by_its_api_host_and_plain_registries_by_http() {
        let http = crate::tls::http_client("test client", |b| b).expect("client");
        let d = Distribution::new(http, vec!["127.0.0.1:5000".into()]);
        let url = |r: &str, path: &str| {
            d.url(&ImageRef::parse(r).expect("reference"), path).map(|u| u.to_string()).unwrap_or_default()
        };
        assert_eq!(
            url("nginx:1.25", "manifests/1.25"),
            "https://registry-1.docker.io/v2/library/nginx/manifests/1.25"
        );
        assert_eq!(
            url("127.0.0.1:5000/team/app:2", "tags/list"),
            "http://127.0.0.1:5000/v2/team/app/tags/list"
        );
        assert_eq!(url("ghcr.io/o/app:2", "tags/list"), "https://ghcr.io/v2/o/app/tags/list");
    }
}
