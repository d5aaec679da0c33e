//! Bearer-token authentication for requests that change state.
//!
//! Take [`Authorized`] as a handler argument: it runs before the body is
//! read, so an unauthenticated client cannot make us buffer a megabyte.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// The configured token. Not `Debug`-printable in full, so it cannot leak
/// through a log line.
#[derive(Clone)]
pub(super) struct Token(Vec<u8>);

impl Token {
    /// The token as read from `--token-file`, surrounding whitespace (the
    /// file's trailing newline) removed. `None` when nothing is left: an
    /// empty token must not mean "anyone".
    pub(super) fn new(raw: &str) -> Option<Self> {
        let t = raw.trim();
        (!t.is_empty()).then(|| Self(t.as_bytes().to_vec()))
    }

    /// Constant-time comparison: the time taken does not depend on how many
    /// leading bytes match. It does depend on whether the lengths match,
    /// which `subtle` (like every such compare) does not hide; a token is
    /// long and random, so its length is not the secret.
    pub(super) fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_slice().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The token from the request's one `Authorization: Bearer <token>` header.
/// The scheme is case-insensitive (RFC 7235 §2.1); any other scheme, an
/// empty token, or more than one `Authorization` header yields `None`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.as_bytes();
    let split = value.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Proof that the request may read the status and the metrics: it carried
/// the write token or the read-only token, or neither is configured (an
/// API without tokens is a loopback-only status page).
#[derive(Debug)]
pub(super) struct ReadAuthorized;

impl FromRequestParts<AppState> for ReadAuthorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.token.is_none() && state.read_token.is_none() {
            return Ok(ReadAuthorized);
        }
        let presented = bearer(&parts.headers).ok_or(ApiError::MissingToken)?;
        // Both compared, always: which one matched is not told by timing.
        let write = state.token.as_ref().is_some_and(|t| t.matches(presented));
        let read = state.read_token.as_ref().is_some_and(|t| t.matches(presented));
        if write | read {
            Ok(ReadAuthorized)
        } else {
            Err(ApiError::WrongToken)
        }
    }
}

/// Proof that the request carried the configured token.
#[derive(Debug)]
pub(super) struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = &state.token else {
            return Err(ApiError::TokenNotConfigured);
        };
        let presented = bearer(&parts.headers).ok_or(ApiError::MissingToken)?;
        if token.matches(presented) {
            Ok(Authorized)
        } else {
            Err(ApiError::WrongToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_header_parsing() {
        let cases: &[(&[&'static str], Option<&[u8]>)] = &[
            (&["Bearer s3cret"], Some(b"s3cret")),
            (&["bearer s3cret"], Some(b"s3cret")),
            (&["BEARER   s3cret  "], Some(b"s3cret")),
            (&["Bearer\ts3cret"], Some(b"s3cret")),
            (&[], None),
            (&["Bearer"], None),
            (&["Bearer "], None),
            (&["Bearers3cret"], None),
            (&["Basic czNjcmV0"], None),
            (&["s3cret"], None),
            (&["Bearer s3cret", "Bearer other"], None),
        ];
        for (values, want) in cases {
            assert_eq!(bearer(&headers(values)), *want, "{values:?}");
        }
    }

    #[test]
    fn token_comparison_is_exact() {
        let t = Token::new("s3cret\n").expect("non-empty token");
        assert!(t.matches(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret ", b"s3creT", b"s3cret\n", b"x3cret", b"s3cretx"] {
            assert!(!t.matches(wrong), "{:?}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn blank_token_file_configures_no_token() {
        assert!(Token::new("").is_none());
        assert!(Token::new(" \n\t").is_none());
    }

    #[test]
    fn token_is_redacted_in_debug_output() {
        let t = Token::new("s3cret").expect("non-empty token");
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
