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
//!
//! One source address may hold at most [`Limits::max_per_address`] of the
//! slots (IPv6 counted per /64, which one host usually has whole): one
//! client cannot take every slot and lock everyone else out (issue 20:
//! 4,200 trickling connections from one host held all 4,096). And a
//! request body must keep coming ([`BodyPace`]): no byte for
//! [`BodyPace::stall`] or less than [`BodyPace::min_rate`] on average
//! ends the request, so one byte every few seconds cannot hold a
//! connection for the whole [`Limits::request`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
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
/// A body sent without a length (chunked) is paced as if it declared this
/// many bytes: the largest body either server takes.
const UNDECLARED_BODY_BYTES: u64 = 1024 * 1024;
/// The "an address is at its cap" warning is logged at most this often.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The bounds one server holds its clients to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections one source address (an IPv6 /64) may hold at once;
    /// more from it are closed on accept. 0: no cap (behind a load
    /// balancer or proxy every connection comes from its address).
    pub max_per_address: usize,
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
    /// How fast a request body must arrive.
    pub body: BodyPace,
}

/// The pace both servers hold bodies to: a byte at least every 5 s, and
/// 32 KiB/s on average (256 kbit/s, a poor mobile link): a 1 MiB body has
/// 32 s plus the header timeout, where a trickle of one byte every few
/// seconds is cut off as soon as its declared length says it is behind.
pub const DEFAULT_BODY_PACE: BodyPace = BodyPace { stall: Duration::from_secs(5), min_rate: 32 * 1024 };

/// How fast a request body must arrive, so a trickle cannot hold a
/// connection: the deadline fits the declared length on a slow link, not a
/// byte every few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// The longest wait for the next byte of a body.
    pub stall: Duration,
    /// The slowest average rate accepted, in bytes a second: a body of N
    /// declared bytes must be in within [`Limits::header`] + N / `min_rate`
    /// seconds of its request's head.
    pub min_rate: u64,
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
    let per_address = Arc::new(PerAddress::new(limits.max_per_address));
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
        // The address's cap first: a client over it takes no global slot,
        // not even for a moment.
        let Some(address_slot) = per_address.take(peer.ip()) else {
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, limit = limits.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let (app, stopped, tls) = (app.clone(), stopped.clone(), tls.clone());
        tokio::spawn(async move {
            connection(stream, peer, app, limits, tls, stopped).await;
            drop(slot);
            drop(address_slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every slot back means every connection is done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.request, slots.acquire_many(all)).await;
    Ok(())
}

/// The connections each source address holds, against
/// [`Limits::max_per_address`].
struct PerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// When an address at its cap was last warned about (ms since `start`).
    warned_ms: AtomicU64,
    refused: AtomicU64,
    start: Instant,
}

/// One connection's hold on its address's count, given back on drop.
struct AddressSlot {
    table: Option<(Arc<PerAddress>, IpAddr)>,
}

impl PerAddress {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::new(HashMap::new()),
            warned_ms: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// A slot for a connection from `ip`, or `None` when its address holds
    /// its cap already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        if self.limit == 0 {
            return Some(AddressSlot { table: None });
        }
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            drop(open);
            self.refused_one(key);
            return None;
        }
        *count += 1;
        Some(AddressSlot { table: Some((self.clone(), key)) })
    }

    /// Logs a refusal: each at debug, and a warning at most once a
    /// [`CAP_WARNING_EVERY`] (an attack must not flood the log).
    fn refused_one(&self, key: IpAddr) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(address = %key, limit = self.limit, "connection refused: its address holds its cap");
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.warned_ms.load(Ordering::Relaxed);
        let every = u64::try_from(CAP_WARNING_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= every)
            && self.warned_ms.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(
                address = %key,
                limit = self.limit,
                refused_so_far = refused,
                "connections refused: one address holds its cap of connections \
                 (raise --max-connections-per-address, or 0 behind a load balancer)"
            );
        }
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some((table, key)) = self.table.take() else { return };
        let mut open = table.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

/// What an address is counted as: an IPv4 address (also when mapped into
/// IPv6) or an IPv6 /64, the block one host or one customer usually gets.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The request with its body paced by `pace`: each chunk within
/// [`BodyPace::stall`] of the last, the whole within `grace` plus the
/// declared length at [`BodyPace::min_rate`]. Requests without a body are
/// left alone.
fn paced(request: Request<hyper::body::Incoming>, grace: Duration, pace: BodyPace) -> Request<Body> {
    use futures_util::StreamExt;
    let headers = request.headers();
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = headers.contains_key(axum::http::header::TRANSFER_ENCODING);
    let length = match declared {
        Some(0) | None if !chunked => return request.map(Body::new),
        Some(n) => n,
        None => UNDECLARED_BODY_BYTES,
    };
    let transfer = Duration::from_secs_f64(length as f64 / pace.min_rate.max(1) as f64);
    let deadline = tokio::time::Instant::now() + grace + transfer;
    request.map(|body| {
        let chunks = Body::new(body).into_data_stream();
        let bounded = futures_util::stream::unfold(Some(chunks), move |chunks| async move {
            let mut chunks = chunks?;
            let until = deadline.min(tokio::time::Instant::now() + pace.stall);
            match tokio::time::timeout_at(until, chunks.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(chunks))),
                Ok(None) => None,
                Err(_) => {
                    tracing::debug!(declared = length, "request body too slow: cut off");
                    let slow = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body arrived too slowly",
                    );
                    Some((Err(axum::Error::new(slow)), None))
                }
            }
        });
        Body::from_stream(bounded)
    })
}

/// One connection: wait for its first byte, shake hands if TLS, serve.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
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
        None => http(stream, peer, app, limits, stopped).await,
        // Boxed: a TLS connection's state (rustls's buffers, the handshake)
        // is several KiB, and a plain connection's task would otherwise be
        // that large too, for every held poll.
        Some(tls) => {
            Box::pin(async move {
                match tokio::time::timeout(limits.header, tls.accept(stream)).await {
                    Ok(Ok(stream)) => http(stream, peer, app, limits, stopped).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            })
            .await
        }
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

/// HTTP/1 over `io`, each request within [`Limits::request`]. Handlers
/// find the client's address as axum's [`ConnectInfo`].
async fn http<I>(io: I, peer: SocketAddr, app: Router, limits: Limits, mut stopped: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity =
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0), busy: AtomicUsize::new(0) });
    let inner = TowerToHyperService::new(app);
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let busy = Busy::enter(&tracked);
        req.extensions_mut().insert(ConnectInfo(peer));
        let answer = hyper::service::Service::call(&inner, paced(req, limits.header, limits.body));
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
    // Half-close allowed: while a request is in progress hyper does not
    // read the socket to see whether the client hung up. That read takes a
    // second read buffer (8-16 KiB) for every request in progress, and the
    // fleet server holds a poll per agent: 75 MB of a replica's 250 at
    // 5,300 connections (issue 22, heaptrack under `--bench replicas`).
    // The price: a request whose client went away runs to its end (a held
    // poll to its `wait`, at most a minute; anything to `Limits::request`)
    // instead of being dropped, and its answer meets a closed socket.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(limits.keep_alive)
        .half_close(true)
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
        max_per_address: 0,
        first_byte: Duration::from_secs(5),
        header: Duration::from_secs(5),
        request: Duration::from_secs(5),
        keep_alive: true,
        idle: Duration::from_millis(600),
        body: BodyPace { stall: Duration::from_secs(5), min_rate: 1024 },
    };

    async fn server(limits: Limits) -> std::net::SocketAddr {
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "late"
                }),
            );
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
    async fn a_client_that_closes_its_sending_side_after_the_request_still_gets_the_answer() {
        // `nc -N`, `curl` scripts with shutdown, some proxies: the request
        // is whole, the client only says it sends nothing more.
        // The answer takes a while, as a held poll's does.
        let addr = server(KEEP).await;
        let mut stream = TcpStream::connect(addr).await.expect("a connection");
        stream.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("the request is sent");
        stream.shutdown().await.expect("the sending side is closed");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer))
            .await
            .expect("an answer, then the close")
            .expect("read");
        let said = String::from_utf8_lossy(&answer);
        assert!(said.starts_with("HTTP/1.1 200") && said.ends_with("late"), "{said}");
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

    async fn from(ip: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.bind(SocketAddr::from((ip, 0))).expect("a loopback source address");
        socket.connect(addr).await.expect("a connection")
    }

    #[tokio::test]
    async fn one_address_holds_at_most_its_cap_and_others_are_served() {
        let addr = server(Limits { max_per_address: 1, ..KEEP }).await;
        let mut first = from([127, 0, 0, 1], addr).await;
        assert!(get(&mut first).await.starts_with("HTTP/1.1 200"));
        let mut second = from([127, 0, 0, 1], addr).await;
        let _ = second.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), second.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the address's second is closed: {read:?}");
        let mut other = from([127, 0, 0, 2], addr).await;
        assert!(get(&mut other).await.starts_with("HTTP/1.1 200"), "another address is served");
        drop(first);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut again = from([127, 0, 0, 1], addr).await;
        assert!(get(&mut again).await.starts_with("HTTP/1.1 200"), "its slot came back");
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("mapped");
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().expect("v4"));
    }

    /// Sends `head` then one byte every `every`; how long until the server
    /// answered or closed, and what it said.
    async fn trickle(addr: std::net::SocketAddr, head: &[u8], every: Duration) -> (Duration, String) {
        let mut stream = TcpStream::connect(addr).await.expect("a connection");
        let started = Instant::now();
        stream.write_all(head).await.expect("the head is sent");
        let mut buf = vec![0u8; 1024];
        loop {
            tokio::select! {
                n = stream.read(&mut buf) => {
                    let n = n.unwrap_or(0);
                    return (started.elapsed(), String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                () = tokio::time::sleep(every) => {
                    if stream.write_all(b"x").await.is_err() {
                        return (started.elapsed(), String::new());
                    }
                }
            }
        }
    }

    const PACED: Limits = Limits {
        header: Duration::from_secs(1),
        body: BodyPace { stall: Duration::from_millis(800), min_rate: 1000 },
        ..KEEP
    };

    #[tokio::test]
    async fn a_body_that_stalls_is_cut_off_at_the_stall_timeout() {
        let addr = server(PACED).await;
        let head = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nx";
        let (took, said) = trickle(addr, head, Duration::from_secs(3)).await;
        assert!(took < Duration::from_secs(2), "cut off after the stall, not the request timeout: {took:?}");
        assert!(!said.starts_with("HTTP/1.1 200"), "{said}");
    }

    #[tokio::test]
    async fn a_trickle_is_cut_off_when_its_declared_length_says_it_is_behind() {
        let addr = server(PACED).await;
        // 2,000 bytes at 1,000 a second after a 1 s grace: 3 s.
        let head = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\n\r\nx";
        let (took, said) = trickle(addr, head, Duration::from_millis(300)).await;
        assert!(took >= Duration::from_millis(2500) && took < Duration::from_millis(4500), "{took:?}");
        assert!(!said.starts_with("HTTP/1.1 200"), "{said}");
    }

    #[tokio::test]
    async fn a_body_at_a_slow_but_steady_pace_is_read_whole() {
        let addr = server(PACED).await;
        let mut stream = TcpStream::connect(addr).await.expect("a connection");
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1500\r\n\r\n")
            .await
            .expect("head");
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            stream.write_all(&[b'y'; 500]).await.expect("a part");
        }
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.expect("an answer");
        let said = String::from_utf8_lossy(&buf[..n]);
        assert!(said.starts_with("HTTP/1.1 200") && said.ends_with("1500"), "{said}");
    }
}
