//! Where events go and what each sink is sent, as pure functions: a sink
//! and a stored event in, the request's headers and body out. Sending is
//! [`super::deliver`]'s.
//!
//! - `webhook`: the event's JSON as stored, `Content-Type:
//!   application/json`, `Idempotency-Key: ID`, and
//!   `X-Container-Upgrader-Signature: sha256=HEX`, the HMAC-SHA256 of the
//!   exact body under the sink's secret.
//! - `slack`: `{"text": SUMMARY}` (Slack incoming webhooks, Mattermost,
//!   Rocket.Chat, Discord's `/slack` endpoint).
//! - `ntfy`: the summary as a plain-text body to the topic URL, with
//!   `Title`, `Priority` and `Tags` headers, and the secret (if any) as
//!   `Authorization: Bearer`.

use serde::{Deserialize, Serialize};

use super::{Event, Kind};

/// The header carrying a webhook body's HMAC.
pub const SIGNATURE_HEADER: &str = "X-Container-Upgrader-Signature";
/// The header carrying an event's id.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The shortest webhook secret accepted: an HMAC key should be at least
/// as hard to guess as a random 16-character token.
pub const MIN_SECRET_LEN: usize = 16;
/// The longest URL accepted.
const MAX_URL_LEN: usize = 2048;

/// A sink's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// The event's JSON, signed.
    Webhook,
    /// `{"text": …}`.
    Slack,
    /// ntfy's text body and headers.
    Ntfy,
}

impl SinkKind {
    /// Its name in files, forms and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Ntfy => "ntfy",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Result<SinkKind, String> {
        match s {
            "webhook" => Ok(SinkKind::Webhook),
            "slack" => Ok(SinkKind::Slack),
            "ntfy" => Ok(SinkKind::Ntfy),
            other => Err(format!("unknown sink kind `{other}`; expected webhook, slack or ntfy")),
        }
    }
}

/// What a sink needs to be sent to: its URL and secret. A `Debug` without
/// the secret, nor the URL's query (it may hold a token).
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Its format.
    pub kind: SinkKind,
    /// Where each event is POSTed.
    pub url: String,
    /// The webhook's HMAC key, or ntfy's bearer token.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("kind", &self.kind)
            .field("url", &shown_url(self.kind, &self.url))
            .field("secret", &self.secret.as_ref().map(|_| "set"))
            .finish()
    }
}

/// Checks a new sink: an http(s) URL with a host, a webhook's secret
/// long enough, a name people can type.
pub fn validate(name: &str, kind: SinkKind, url: &str, secret: Option<&str>) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(format!("name `{name}`: 1-64 characters of letters, digits, `-`, `_`, `.`"));
    }
    validate_url(url)?;
    match (kind, secret) {
        (SinkKind::Webhook, None) => Err(format!(
            "sink `{name}`: a webhook needs a secret (at least {MIN_SECRET_LEN} characters) to sign its events with"
        )),
        (SinkKind::Webhook, Some(s)) if s.chars().count() < MIN_SECRET_LEN => Err(format!(
            "sink `{name}`: the webhook secret has {} characters; at least {MIN_SECRET_LEN}",
            s.chars().count()
        )),
        (SinkKind::Slack, Some(_)) => Err(format!(
            "sink `{name}`: a slack sink takes no secret (its URL is the credential)"
        )),
        (_, Some(s)) if s.chars().any(char::is_control) => {
            Err(format!("sink `{name}`: the secret holds a control character"))
        }
        _ => Ok(()),
    }
}

/// A sink URL: `http://` or `https://`, with a host, at most 2048 bytes.
pub fn validate_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("the URL is {} bytes long; at most {MAX_URL_LEN}", url.len()));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("URL `{}`: {e}; expected http(s)://HOST/PATH", container_upgrader::redact::url(url))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("URL scheme `{}`: only http:// and https:// sinks are allowed", parsed.scheme()));
    }
    let host = parsed.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    let never = match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_link_local() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_unicast_link_local() || ip.is_unspecified() || ip.is_multicast()
        }
        Err(_) => false,
    };
    // As the version checker: a link-local address is a cloud's metadata
    // service, never a sink, and an admin's typo must not post there.
    if never {
        return Err(format!("host `{host}`: a link-local, unspecified or multicast address is never a sink"));
    }
    Ok(())
}

/// A sink's URL as the API and the page show it: a Slack URL's path is
/// its credential, so only its origin; others without userinfo or query.
pub fn shown_url(kind: SinkKind, url: &str) -> String {
    match (kind, reqwest::Url::parse(url)) {
        (SinkKind::Slack, Ok(u)) => format!("{}/…", u.origin().ascii_serialization()),
        _ => container_upgrader::redact::url(url),
    }
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// One POST, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What `target` is sent for `event`, whose stored JSON is `payload`
/// (signed as is, so the signature covers exactly the bytes sent).
pub fn request(target: &Target, event: &Event, payload: &str) -> Request {
    let mut headers = vec![(IDEMPOTENCY_HEADER, event.id.clone())];
    let body = match target.kind {
        SinkKind::Webhook => {
            headers.push(("Content-Type", "application/json".into()));
            if let Some(secret) = &target.secret {
                headers.push((SIGNATURE_HEADER, sign(secret, payload.as_bytes())));
            }
            payload.as_bytes().to_vec()
        }
        SinkKind::Slack => {
            headers.push(("Content-Type", "application/json".into()));
            serde_json::json!({ "text": event.summary }).to_string().into_bytes()
        }
        SinkKind::Ntfy => {
            headers.push(("Content-Type", "text/plain; charset=utf-8".into()));
            headers.push(("Title", title(event.kind)));
            headers.push(("Priority", if event.kind.urgent() { "high" } else { "default" }.into()));
            headers.push(("Tags", tags(event.kind).into()));
            if let Some(token) = &target.secret {
                headers.push(("Authorization", format!("Bearer {token}")));
            }
            event.summary.clone().into_bytes()
        }
    };
    Request { headers, body }
}

/// An ntfy title: ASCII, as header values must be.
fn title(kind: Kind) -> String {
    format!("container-upgrader: {}", kind.as_str())
}

/// ntfy tags (shown as emoji).
fn tags(kind: Kind) -> &'static str {
    match kind {
        Kind::CampaignCompleted | Kind::AgentOnline => "white_check_mark",
        Kind::CampaignFailed | Kind::AgentOpFailed | Kind::AgentOffline => "warning",
        Kind::CampaignRolledBack | Kind::CampaignRollingBack => "leftwards_arrow_with_hook",
        Kind::Test => "test_tube",
        _ => "information_source",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: Kind) -> Event {
        Event {
            id: "ev-1".into(),
            kind,
            at: "2026-12-06T00:00:00Z".into(),
            summary: "Campaign `web` failed and paused: the canary failed: exit 4.".into(),
            campaign: None,
            agent: None,
            op: None,
            sink: None,
        }
    }

    fn target(kind: SinkKind, secret: Option<&str>) -> Target {
        Target { kind, url: "https://hooks.example/x".into(), secret: secret.map(str::to_string) }
    }

    fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_webhook_gets_the_stored_json_signed_with_its_idempotency_key() {
        let e = event(Kind::CampaignFailed);
        let payload = serde_json::to_string(&e).expect("json");
        let r = request(&target(SinkKind::Webhook, Some("0123456789abcdef")), &e, &payload);
        assert_eq!(r.body, payload.as_bytes());
        assert_eq!(header(&r, "Idempotency-Key"), Some("ev-1"));
        assert_eq!(header(&r, SIGNATURE_HEADER), Some(sign("0123456789abcdef", payload.as_bytes()).as_str()));
        let back: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(back["id"], "ev-1");
        assert_eq!(back["kind"], "campaign.failed");
        assert!(back.get("campaign").is_none(), "absent parts are left out");
    }

    #[test]
    fn slack_gets_the_summary_as_text_and_ntfy_a_titled_urgent_plain_body() {
        let e = event(Kind::CampaignFailed);
        let slack = request(&target(SinkKind::Slack, None), &e, "{}");
        let v: serde_json::Value = serde_json::from_slice(&slack.body).expect("json");
        assert_eq!(v, serde_json::json!({ "text": e.summary }));
        assert_eq!(header(&slack, SIGNATURE_HEADER), None);
        let ntfy = request(&target(SinkKind::Ntfy, Some("tk_abc")), &e, "{}");
        assert_eq!(ntfy.body, e.summary.as_bytes());
        assert_eq!(header(&ntfy, "Title"), Some("container-upgrader: campaign.failed"));
        assert_eq!(header(&ntfy, "Priority"), Some("high"));
        assert_eq!(header(&ntfy, "Tags"), Some("warning"));
        assert_eq!(header(&ntfy, "Authorization"), Some("Bearer tk_abc"));
        assert_eq!(header(&ntfy, "Idempotency-Key"), Some("ev-1"));
        let calm = request(&target(SinkKind::Ntfy, None), &event(Kind::CampaignCompleted), "{}");
        assert_eq!(header(&calm, "Priority"), Some("default"));
        assert_eq!(header(&calm, "Authorization"), None);
    }

    #[test]
    fn only_http_urls_and_good_secrets_make_a_sink() {
        assert!(validate("ops", SinkKind::Slack, "https://hooks.slack.com/services/T/B/C", None).is_ok());
        assert!(validate("ops", SinkKind::Ntfy, "http://127.0.0.1:8080/topic", None).is_ok());
        for bad in ["file:///etc/passwd", "ftp://h/x", "gopher://h", "javascript:alert(1)"] {
            let e = validate("ops", SinkKind::Ntfy, bad, None).expect_err(bad);
            assert!(e.contains("only http:// and https://") || e.contains("expected http"), "{bad}: {e}");
        }
        assert!(validate("ops", SinkKind::Ntfy, "not a url", None).is_err());
        for never in
            ["http://169.254.169.254/latest", "http://[fe80::1]/x", "http://0.0.0.0/x", "http://224.0.0.1/x"]
        {
            let e = validate("ops", SinkKind::Ntfy, never, None).expect_err(never);
            assert!(e.contains("never a sink"), "{never}: {e}");
        }
        let e = validate("ops", SinkKind::Webhook, "https://h/x", None).expect_err("no secret");
        assert!(e.contains("needs a secret"), "{e}");
        let e = validate("ops", SinkKind::Webhook, "https://h/x", Some("short")).expect_err("short");
        assert!(e.contains("at least 16"), "{e}");
        assert!(validate("a b", SinkKind::Ntfy, "https://h/x", None).is_err());
        assert!(validate("ops", SinkKind::Slack, "https://h/x", Some("0123456789abcdef")).is_err());
    }

    #[test]
    fn a_slack_url_is_shown_without_its_secret_path() {
        assert_eq!(
            shown_url(SinkKind::Slack, "https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(shown_url(SinkKind::Ntfy, "https://u:p@ntfy.sh/topic?auth=x"), "https://ntfy.sh/topic");
        let t = target(SinkKind::Webhook, Some("0123456789abcdef"));
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
    }
}
