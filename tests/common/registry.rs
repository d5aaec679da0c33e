//! [`TestRegistry`]: a private registry process per test.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const REGISTRY_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A private `docker-registry` (Debian's package of distribution v2) on a
/// free loopback port, with storage in a temp dir. Dropping it kills the
/// process and deletes the storage.
pub struct TestRegistry {
    run_id: String,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl TestRegistry {
    pub(super) fn start(run_id: &str) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("container-upgrader-registry-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating registry storage: {e}"));
        let mut registry = TestRegistry { run_id: run_id.to_string(), port: 0, dir, child: None };
        // The free port is found by binding and releasing it, so another
        // process can grab it before the registry does: retry a few times.
        let mut last_error = String::new();
        for _ in 0..3 {
            registry.port = free_port();
            match registry.spawn_and_wait() {
                Ok(()) => return registry,
                Err(e) => last_error = e,
            }
        }
        panic!("test registry did not start: {last_error}");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<run id>/<name>`: a repository unique to the run.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.addr(), self.run_id)
    }

    /// Kills the registry (for "registry down" tests); storage is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped registry again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().unwrap_or_else(|e| panic!("test registry did not restart: {e}"));
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let addr = self.addr();
        let config = self.write_config();
        let log_path = self.dir.path().join("registry.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("creating log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("cloning log: {e}"))?;
        let spawned = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => self.child.insert(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`docker-registry` is not on PATH: the Docker tests need Debian's registry; \
                 run them through `.ci/run`, or `apt-get install docker-registry`"
            ),
            Err(e) => panic!("starting docker-registry: {e}"),
        };
        let ready = wait_until_ready(child, &addr);
        if ready.is_err() {
            self.stop();
        }
        ready.map_err(|e| {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            format!("{e}; registry log:\n{log}")
        })
    }

    fn write_config(&self) -> PathBuf {
        let storage = self.dir.path().join("storage");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: {}\n",
            storage.display(),
            self.addr()
        );
        let path = self.dir.path().join("config.yml");
        fs::write(&path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

fn wait_until_ready(child: &mut Child, addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + REGISTRY_READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry on {addr} exited with {status}"));
        }
        if http_status(addr, "/v2/") == Ok(200) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "GET http://{addr}/v2/ did not answer 200 within {REGISTRY_READY_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Status code of a plain `GET http://addr/path` over HTTP/1.0 (which closes
/// the connection, so no body framing is needed). Bounded by short timeouts.
pub fn http_status(addr: &str, path: &str) -> Result<u16, String> {
    let socket: SocketAddr = addr.parse().map_err(|e| format!("bad address {addr}: {e}"))?;
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&socket, timeout).map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    // "HTTP/1.1 200" is 12 bytes.
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&head);
    head.get(9..12)
        .and_then(|code| code.parse().ok())
        .filter(|_| head.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))
}
