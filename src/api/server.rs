//! Accepting connections for the API, bounded (DESIGN.md §12): at most
//! [`MAX_CONNECTIONS`] at once, each given [`FIRST_BYTE_TIMEOUT`] to start
//! its request and [`HEADER_TIMEOUT`] to finish the headers, one request
//! per connection (no keep-alive, so no idle connection is ever held), and
//! the whole exchange within [`REQUEST_TIMEOUT`]; the loop itself is
//! [`crate::serve`], shared with the fleet server.
//!
//! `axum::serve` has none of these: 20,000 idle connections exhausted the
//! process's file descriptors, and the controller then could not open the
//! manifest. A connection over the cap is closed at once rather than left
//! in the kernel's backlog, so a flood cannot queue ahead of a real client
//! for long: its connections time out within seconds and free their slots.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::serve::Limits;

/// Connections served at once. The API has a handful of clients (a server,
/// a scraper); this keeps the descriptors it can take far below any
/// process limit (1024 is the smallest in use).
pub const MAX_CONNECTIONS: usize = 128;
/// Connections one address may hold: a quarter of the slots, so one
/// misbehaving client leaves room for the server and the scraper.
pub const MAX_PER_ADDRESS: usize = 32;
/// Time a new connection has to send the first byte of its request.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to send the whole request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the whole exchange, body and answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The API's bounds: one request per connection (no keep-alive, so no
/// idle connection is ever held).
pub const LIMITS: Limits = Limits {
    max_connections: MAX_CONNECTIONS,
    max_per_address: MAX_PER_ADDRESS,
    first_byte: FIRST_BYTE_TIMEOUT,
    header: HEADER_TIMEOUT,
    request: REQUEST_TIMEOUT,
    keep_alive: false,
    idle: Duration::ZERO,
    body: crate::serve::DEFAULT_BODY_PACE,
};

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, drops connections that have not started a request, and waits
/// (at most [`REQUEST_TIMEOUT`]) for the requests in progress.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::serve::serve(listener, app, LIMITS, None, shutdown).await
}
