//! A registry stand-in for tests of what a real registry will not do on
//! demand — page a tag list by 100, answer 429 with `Retry-After`: a tiny
//! HTTP server on 127.0.0.1 that answers each request line as told and
//! records when each came.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An answer: status line tail (`200 OK`), extra headers, body.
pub struct Reply {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Self {
        Self { status: "200 OK", headers: Vec::new(), body: body.into() }
    }

    pub fn status(status: &'static str) -> Self {
        Self { status, headers: Vec::new(), body: String::new() }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A running stand-in: its address and the request lines it saw, in order.
pub struct StandIn {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl StandIn {
    /// The request lines seen so far.
    pub fn lines(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.iter().map(|(_, l)| l.clone()).collect()).unwrap_or_default()
    }
}

/// Serves `answer(request line)` on a free loopback port until the test ends.
pub fn serve(answer: impl Fn(&str) -> Reply + Send + 'static) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(clone) = stream.try_clone() else { continue };
            let mut reader = BufReader::new(clone);
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let first = first.trim_end().to_string();
            if let Ok(mut log) = log.lock() {
                log.push((Instant::now(), first.clone()));
            }
            let reply = answer(&first);
            let mut out = format!(
                "HTTP/1.1 {}\r\nconnection: close\r\ncontent-length: {}\r\n",
                reply.status,
                reply.body.len()
            );
            for (k, v) in &reply.headers {
                out += &format!("{k}: {v}\r\n");
            }
            out += "\r\n";
            out += &reply.body;
            let _ = stream.write_all(out.as_bytes());
        }
    });
    StandIn { addr, seen }
}
