//! The link's HTTP requests: each bounded by timeouts, redirects never
//! followed (a redirect would send the agent's credential elsewhere), and
//! errors without the URL (it is the operator's, shown redacted elsewhere).

use std::time::Duration;

use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;

use crate::protocol::{self, EnrolRequest, EnrolResponse, ErrorBody, Report};

/// Connecting may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A request other than the long poll may take this long.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The long poll may take this much longer than the wait it asks for.
const POLL_MARGIN: Duration = Duration::from_secs(15);

/// Why an exchange with the server failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No answer: connection refused, timeout, TLS failure.
    #[error("the fleet server is unreachable: {0}")]
    Unreachable(String),
    /// The server answered with an error.
    #[error("the fleet server answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its error text.
        message: String,
    },
    /// Something on this host.
    #[error("{0}")]
    Local(String),
}

impl LinkError {
    /// The server does not take this agent's credential (revoked, unknown).
    pub fn is_refused(&self) -> bool {
        matches!(self, LinkError::Refused { status: 401 | 403, .. })
    }
}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (normalised: no trailing slash).
    pub fn new(base: &str) -> Result<Self, String> {
        crate::registry::ensure_crypto_provider();
        let http = crate::tls::http_client("fleet client", |b| {
            b.connect_timeout(CONNECT_TIMEOUT).redirect(reqwest::redirect::Policy::none())
        })?;
        Ok(Self { base: base.to_string(), http })
    }

    /// The URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Presents the enrolment token (in `Authorization` and the body).
    pub async fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, LinkError> {
        // The token also as a header: the server checks it before reading
        // the body. Still in the body too, for servers from before that.
        let answer = send(
            self.http
                .post(self.url(protocol::ENROL))
                .bearer_auth(&request.token)
                .timeout(TIMEOUT)
                .json(request),
        )
        .await?;
        answer
            .json()
            .await
            .map_err(|e| LinkError::Unreachable(format!("reading the enrolment answer: {}", e.without_url())))
    }

    /// The desired manifest and its ETag if it differs from `etag`; `None`
    /// when the server held the poll for `wait` without a change.
    pub async fn desired(
        &self,
        credential: &str,
        etag: Option<&str>,
        wait: Duration,
    ) -> Result<Option<(String, String)>, LinkError> {
        let url = format!("{}?wait={}", self.url(protocol::DESIRED), wait.as_secs());
        let mut request = self.http.get(url).bearer_auth(credential).timeout(wait + POLL_MARGIN);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let answer = send(request).await?;
        if answer.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let tag = answer.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_string).ok_or_else(
            || LinkError::Refused {
                status: answer.status().as_u16(),
                message: "no ETag on the desired manifest".into(),
            },
        )?;
        let text = read_limited(answer).await?;
        Ok(Some((text, tag)))
    }

    /// Sends the status snapshot.
    pub async fn report(&self, credential: &str, report: &Report) -> Result<(), LinkError> {
        send(
            self.http.post(self.url(protocol::REPORT)).bearer_auth(credential).timeout(TIMEOUT).json(report),
        )
        .await?;
        Ok(())
    }
}

/// Sends `request`; an answer that is not 2xx or 304 is an error with the
/// server's reason.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, LinkError> {
    let answer = request.send().await.map_err(|e| LinkError::Unreachable(e.without_url().to_string()))?;
    let status = answer.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(answer);
    }
    let message = if status.is_redirection() {
        "a redirect, which is not followed".to_string()
    } else {
        let body = answer.bytes().await.unwrap_or_default();
        let body = &body[..body.len().min(4096)];
        serde_json::from_slice::<ErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string())
    };
    Err(LinkError::Refused { status: status.as_u16(), message })
}

/// The body as text, at most [`protocol::MAX_BODY_BYTES`].
async fn read_limited(mut answer: reqwest::Response) -> Result<String, LinkError> {
    let mut body = Vec::new();
    while let Some(chunk) =
        answer.chunk().await.map_err(|e| LinkError::Unreachable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > protocol::MAX_BODY_BYTES {
            return Err(LinkError::Local(format!(
                "the server's manifest is larger than {} bytes",
                protocol::MAX_BODY_BYTES
            )));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| LinkError::Local("the server's manifest is not UTF-8".into()))
}
