//! Accepting connections for the API, bounded (DESIGN.md §12): at most
//! [`MAX_CONNECTIONS`] at once, each given [`FIRST_BYTE_TIMEOUT`] to start
//! its request and [`HEADER_TIMEOUT`] to finish the headers, one request
//! per connection (no keep-alive, so no idle connection is ever held), and
//! the whole exchange within [`REQUEST_TIMEOUT`].
//!
//! `axum::serve` has none of these: 20,000 idle connections exhausted the
//! process's file descriptors, and the controller then could not open the
//! manifest. A connection over the cap is closed at once rather than left
//! in the kernel's backlog, so a flood cannot queue ahead of a real client
//! for long: its connections time out within seconds and free their slots.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Connections served at once. The API has a handful of clients (a server,
/// a scraper); this keeps the descriptors it can take far below any
/// process limit (1024 is the smallest in use).
pub const MAX_CONNECTIONS: usize = 128;
/// Time a new connection has to send the first byte of its request.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to send the whole request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the whole exchange, body and answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// After an accept error (e.g. out of descriptors), wait before the next
/// accept instead of spinning on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, drops connections that have not started a request, and waits
/// (at most [`REQUEST_TIMEOUT`]) for the requests in progress.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "the API could not accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, limit = MAX_CONNECTIONS, "API connection refused: too many open");
            drop(stream);
            continue;
        };
        let (app, stopped) = (app.clone(), stopped.clone());
        tokio::spawn(async move {
            connection(stream, app, stopped).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every slot back means every connection is done.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, slots.acquire_many(all)).await;
    Ok(())
}

/// One connection, one request.
async fn connection(stream: TcpStream, app: Router, mut stopped: watch::Receiver<bool>) {
    // hyper's header timeout starts with the request, not with the
    // connection: a client that connects and sends nothing is timed here.
    let mut first = [0u8; 1];
    tokio::select! {
        started = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)) => {
            if !matches!(started, Ok(Ok(n)) if n > 0) {
                return;
            }
        }
        _ = stopped.wait_for(|s| *s) => return,
    }
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    if tokio::time::timeout(REQUEST_TIMEOUT, conn).await.is_err() {
        tracing::debug!("API request cut off after {}s", REQUEST_TIMEOUT.as_secs());
    }
}
