//! Accepting HTTP connections, bounded (DESIGN.md §12), for both the
//! agent API (a handful of clients, one request per connection) and the
//! fleet server (a thousand agents each holding a long-poll open).
//!
//! `axum::serve` bounds nothing: 20,000 idle connections exhausted the
//! process's file descriptors, and the controller then could not open the
//! manifest. Here every connection takes a slot of a semaphore
//! ([`Limits::max_connections`]); one over the cap is closed at once
//! rather than left in the kernel's backlog, so a flood cannot queue ahead
//! of a real client for long. A connection has [`Limits::first_byte`] to
//! start its request and [`Limits::header`] to finish the headers; each
//! request must be answered within [`Limits::request`]; with keep-alive a
//! connection with no request in progress for [`Limits::idle`] is closed.
//! TLS (rustls) is optional and handshakes within the header timeout.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// After an accept error (e.g. out of descriptors), wait before the next
/// accept instead of spinning on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How often a keep-alive connection checks whether it has been idle.
const IDLE_TICK: Duration = Duration::from_millis(500);

/// The bounds one server holds its clients to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Time a new connection has to send the first byte of its request.
    pub first_byte: Duration,
    /// Time to send the whole request head (and the TLS handshake).
    pub header: Duration,
    /// Time for one request, body and answer included. Longer than any
    /// long-poll the server holds.
    pub request: Duration,
    /// Several requests per connection. Off: one request, then close.
    pub keep_alive: bool,
    /// With keep-alive: a connection with no request in progress for this
    /// long is closed.
    pub idle: Duration,
}

/// A TLS acceptor (rustls), for a server that terminates TLS itself.
pub type Tls = tokio_rustls::TlsAcceptor;

/// Serves `app` on `listener` within `limits` until `shutdown` completes;
/// then stops accepting, closes connections between requests, and waits
/// (at most [`Limits::request`]) for the requests in progress.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, limit = limits.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let (app, stopped, tls) = (app.clone(), stopped.clone(), tls.clone());
        tokio::spawn(async move {
            connection(stream, app, limits, tls, stopped).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every slot back means every connection is done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.request, slots.acquire_many(all)).await;
    Ok(())
}

/// One connection: wait for its first byte, shake hands if TLS, serve.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    tls: Option<Tls>,
    mut stopped: watch::Receiver<bool>,
) {
    // hyper's header timeout starts with the request, not with the
    // connection: a client that connects and sends nothing is timed here.
    let mut first = [0u8; 1];
    tokio::select! {
        started = tokio::time::timeout(limits.first_byte, stream.peek(&mut first)) => {
            if !matches!(started, Ok(Ok(n)) if n > 0) {
                return;
            }
        }
        _ = stopped.wait_for(|s| *s) => return,
    }
    match tls {
        None => http(stream, app, limits, stopped).await,
        Some(tls) => match tokio::time::timeout(limits.header, tls.accept(stream)).await {
            Ok(Ok(stream)) => http(stream, app, limits, stopped).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
    }
}

/// When the connection last finished a request, and how many it has in
/// progress: what the idle timeout looks at.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.start.elapsed();
        Some(now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed))))
    }
}

/// Marks a request in progress for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// HTTP/1 over `io`, each request within [`Limits::request`].
async fn http<I>(io: I, app: Router, limits: Limits, mut stopped: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity =
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0), busy: AtomicUsize::new(0) });
    let inner = TowerToHyperService::new(app);
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let busy = Busy::enter(&tracked);
        let answer = hyper::service::Service::call(&inner, req);
        async move {
            let answer = tokio::time::timeout(limits.request, answer).await;
            drop(busy);
            match answer {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::debug!(secs = limits.request.as_secs(), "request cut off");
                    let mut late = Response::new(Body::from("the request took too long\n"));
                    *late.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    Ok(late)
                }
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(limits.keep_alive)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(limits.request);
    tokio::pin!(deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            // One request per connection: the whole exchange is bounded
            // (the body read included), as the API always was.
            () = &mut deadline, if !limits.keep_alive => {
                tracing::debug!(secs = limits.request.as_secs(), "connection cut off");
                return;
            }
            () = tokio::time::sleep(IDLE_TICK), if limits.keep_alive && !closing => {
                if activity.idle_for().is_some_and(|idle| idle >= limits.idle) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = stopped.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const KEEP: Limits = Limits {
        max_connections: 4,
        first_byte: Duration::from_secs(5),
        header: Duration::from_secs(5),
        request: Duration::from_secs(5),
        keep_alive: true,
        idle: Duration::from_millis(600),
    };

    async fn server(limits: Limits) -> std::net::SocketAddr {
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(serve(listener, app, limits, None, std::future::pending()));
        addr
    }

    async fn get(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("the request is sent");
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.expect("an answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_then_closes_an_idle_connection() {
        let addr = server(KEEP).await;
        let mut stream = TcpStream::connect(addr).await.expect("a connection");
        assert!(get(&mut stream).await.starts_with("HTTP/1.1 200"));
        assert!(get(&mut stream).await.starts_with("HTTP/1.1 200"), "the same connection again");
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0))), "closed after the idle time: {closed:?}");
    }

    #[tokio::test]
    async fn over_the_cap_a_connection_is_closed_at_once() {
        let addr = server(Limits { max_connections: 1, ..KEEP }).await;
        let mut first = TcpStream::connect(addr).await.expect("a connection");
        assert!(get(&mut first).await.starts_with("HTTP/1.1 200"));
        let mut second = TcpStream::connect(addr).await.expect("accepted by the kernel");
        let mut buf = [0u8; 16];
        let _ = second.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let read = tokio::time::timeout(Duration::from_secs(2), second.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed, not served: {read:?}");
    }
}
