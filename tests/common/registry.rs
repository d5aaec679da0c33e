//! [`TestRegistry`]: a private registry process per test, optionally
//! requiring HTTP basic auth.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::credentials::{write_docker_config, write_htpasswd};
use super::process::run_docker;

const REGISTRY_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A private `docker-registry` (Debian's package of distribution v2) on a
/// free loopback port, with storage in a temp dir. Dropping it kills the
/// process and deletes the storage.
///
/// Started with a login (`TestRun::registry_with_auth`), it answers 401 to
/// any request without that user and password (distribution's `htpasswd`
/// auth; distribution 2.8 serves it over plain HTTP without complaint), and
/// [`TestRegistry::docker`] runs docker logged in to it.
pub struct TestRegistry {
    run_id: String,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Whether requests need the login (an htpasswd file is in `dir`).
    auth: bool,
    /// Whether it serves HTTPS, with a certificate from its own test CA
    /// (`ca.crt` in `dir`).
    tls: bool,
}

impl TestRegistry {
    pub(super) fn start(run_id: &str, login: Option<(&str, &str)>, tls: bool) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("container-upgrader-registry-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating registry storage: {e}"));
        if let Some((user, password)) = login {
            write_htpasswd(&dir.path().join("htpasswd"), user, password);
        }
        if tls {
            write_tls(dir.path());
        }
        let auth = login.is_some();
        let mut registry = TestRegistry { run_id: run_id.to_string(), port: 0, dir, child: None, auth, tls };
        // The free port is found by binding and releasing it, so another
        // process can grab it before the registry does: retry a few times.
        let mut last_error = String::new();
        for _ in 0..3 {
            registry.port = free_port();
            match registry.spawn_and_wait() {
                Ok(()) => break,
                Err(e) => last_error = e,
            }
        }
        assert!(registry.child.is_some(), "test registry did not start: {last_error}");
        if let Some((user, password)) = login {
            write_docker_config(&registry.docker_config(), &[(&registry.addr(), user, password)]);
        }
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<run id>/<name>`: a repository unique to the run.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.addr(), self.run_id)
    }

    /// Runs docker logged in to this registry: with a login, `DOCKER_CONFIG`
    /// is a dir of the registry's own holding it, so the machine's
    /// `~/.docker/config.json` is neither read nor written; without one,
    /// plain [`docker`](super::docker). Panics with the command and stderr
    /// on failure; returns trimmed stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let config = self.docker_config();
        let config = config.to_str().expect("temp dir paths are UTF-8");
        let env: &[(&str, &str)] = if self.auth { &[("DOCKER_CONFIG", config)] } else { &[] };
        run_docker(args, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `docker push tag`, logged in (see [`TestRegistry::docker`]).
    pub fn push(&self, tag: &str) {
        self.docker(&["push", tag]);
    }

    /// Where the registry keeps its blobs and manifests (to break one).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log so far (warnings and the access log).
    pub fn log(&self) -> String {
        let path = self.dir.path().join("registry.log");
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
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
        // With auth on, an anonymous `/v2/` answers 401; with TLS, Go's
        // server answers plain HTTP with 400: either is ready too.
        let ready_status = if self.tls {
            400
        } else if self.auth {
            401
        } else {
            200
        };
        let ready = wait_until_ready(child, &addr, ready_status);
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
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: {}\n",
            storage.display(),
            self.addr()
        );
        if self.tls {
            let dir = self.dir.path();
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            );
        }
        if self.auth {
            let htpasswd = self.dir.path().join("htpasswd");
            config += &format!(
                "auth:\n  htpasswd:\n    realm: container-upgrader-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let path = self.dir.path().join("config.yml");
        fs::write(&path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// A directory laid out as Docker's `/etc/docker/certs.d`, holding this
    /// registry's CA as `127.0.0.1:PORT/ca.crt` (a TLS registry only).
    pub fn certs_d(&self) -> PathBuf {
        let certs = self.dir.path().join("certs.d");
        let own = certs.join(self.addr());
        fs::create_dir_all(&own)
            .and_then(|()| fs::copy(self.dir.path().join("ca.crt"), own.join("ca.crt")))
            .unwrap_or_else(|e| panic!("laying out {}: {e}", certs.display()));
        certs
    }

    /// The `DOCKER_CONFIG` dir [`TestRegistry::docker`] uses.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test CA (`ca.crt`) and a certificate for `127.0.0.1` it signed
/// (`server.crt`, `server.key`) in `dir`, made with `openssl` (P-256: quick).
fn write_tls(dir: &std::path::Path) {
    fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .unwrap_or_else(|e| panic!("writing san.ext: {e}"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=container-upgrader test CA"],
        ]
        .concat(),
        [&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]]
            .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ];
    for args in steps {
        let mut cmd = Command::new("openssl");
        cmd.args(&args).current_dir(dir);
        let out = super::process::run_bounded(&mut cmd, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("`openssl {}`: {e}", args.join(" ")));
        assert!(
            out.status.success(),
            "`openssl {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

fn wait_until_ready(child: &mut Child, addr: &str, expected: u16) -> Result<(), String> {
    let deadline = Instant::now() + REGISTRY_READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry on {addr} exited with {status}"));
        }
        if http_status(addr, "/v2/") == Ok(expected) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "GET http://{addr}/v2/ did not answer {expected} within {REGISTRY_READY_TIMEOUT:?}"
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
