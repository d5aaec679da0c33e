//! The server's router: every route — the agents' wire and admin API
//! ([`super::api`]), campaigns ([`super::campaign::api`]), notification
//! sinks ([`super::notify::api`]) and the page
//! ([`super::page`]) — in one function, with the state passed explicitly
//! and the bounds every request meets: a declared body over the limit is
//! refused unread, and requests without a credential keep to their budget
//! ([`super::guard`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::protocol::MAX_BODY_BYTES;
use super::state::{error, FleetState};
use super::FleetError;

/// The server's routes, ready to serve (or to drive in-process in tests).
pub fn router(state: FleetState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(super::api::routes())
        .merge(super::access::api::routes())
        .merge(super::campaign::api::routes())
        .merge(super::notify::api::routes())
        .merge(super::page::routes())
        .fallback(|| async {
            FleetError::NotFound(
                "no such route; the routes are /v1/agent/… and /v1/fleet/… (see the README)".into(),
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method (see the README's table)".into(),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), bounds))
        .with_state(state)
}

/// What every request meets before its route, in this order: a declared
/// body over the limit is refused unread ([`declared_size`]); behind a
/// trusted proxy the client is named ([`real_client`]); a request without
/// a credential keeps to its budget ([`budget_spent`]); and every answer gets
/// [`no_sniff_no_store`].
///
/// One middleware, not one per step: each `from_fn` layer boxes its own
/// future for as long as the request lasts, and a held poll lasts up to
/// its `wait` — at 10,000 agents over three replicas the three extra
/// boxes were some 4 KiB per held poll (issue 22, measured with
/// heaptrack under `--bench replicas`).
async fn bounds(State(state): State<FleetState>, mut request: Request, next: Next) -> Response {
    if let Some(refused) = declared_size(&request) {
        return no_sniff_no_store(refused);
    }
    real_client(&state, &mut request);
    let slot = match super::guard::unauthenticated_slot(&state.guards, &request) {
        None => None,
        Some(Some(slot)) => Some(slot),
        Some(None) => return no_sniff_no_store(budget_spent(&request)),
    };
    let response = next.run(request).await;
    drop(slot);
    no_sniff_no_store(response)
}

/// Every answer - JSON, YAML, errors, the 404 fallback - says what it is
/// and is kept by no cache (they carry manifests and fleet state); the
/// page's own stricter headers stay.
fn no_sniff_no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// 413 at once for a declared body over the limit, before any handler
/// (and before authentication) reads a byte of it.
fn declared_size(request: &Request) -> Option<Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    declared
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        .then(|| error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {MAX_BODY_BYTES} bytes")))
}

/// Behind a trusted proxy (`--trusted-proxy`), the client is the nearest
/// untrusted address of its `X-Forwarded-For`: the connection's address is
/// replaced by it for everything after (login limits, the audit log). From
/// any other peer the header is ignored.
fn real_client(state: &FleetState, request: &mut Request) {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| *a);
    if let Some(peer) = peer {
        if let Some(client) = forwarded_client(&state.trusted_proxies, peer.ip(), request.headers()) {
            request.extensions_mut().insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        }
    }
}

/// The client a trusted `peer` forwarded for: the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy.
fn forwarded_client(trusted: &[ipnet::IpNet], peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return None;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()?;
    hops.into_iter().rev().find(|ip| !is_trusted(ip))
}

/// The answer to an enrolment without a header token when every slot of
/// its budget is taken ([`super::guard`]).
fn budget_spent(request: &Request) -> Response {
    tracing::debug!(path = %request.uri().path(), "unauthenticated request refused: over its budget");
    super::guard::too_many(
        super::guard::RETRY_AFTER_SECS,
        "too many requests without a credential in progress; try again shortly".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_proxy_names_the_client_and_forged_hops_before_it_do_not_count() {
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/24".parse().expect("a net"), "::1/128".parse().expect("a net")];
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("a value"));
            h
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("an ip");
        let proxy = ip("10.0.0.5");
        assert_eq!(forwarded_client(&trusted, proxy, &headers("203.0.113.7")), Some(ip("203.0.113.7")));
        // A client that sends its own header cannot pick its address: the
        // proxy appends the real one, which is the right-most untrusted.
        assert_eq!(
            forwarded_client(&trusted, proxy, &headers("1.2.3.4, 203.0.113.7")),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            forwarded_client(&trusted, proxy, &headers("203.0.113.7, 10.0.0.9")),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            forwarded_client(&trusted, ip("198.51.100.1"), &headers("203.0.113.7")),
            None,
            "untrusted peer"
        );
        assert_eq!(forwarded_client(&trusted, proxy, &headers("garbage")), None);
        assert_eq!(forwarded_client(&trusted, proxy, &HeaderMap::new()), None);
        assert_eq!(forwarded_client(&[], proxy, &headers("203.0.113.7")), None, "none trusted by default");
    }
}
