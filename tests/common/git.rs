//! A real Git server for `run --git` tests: a bare repository served by the
//! distribution's `git http-backend` (CGI) behind a small HTTP server on
//! loopback, optionally behind a token, and a working clone to commit and
//! push from with the real `git`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

/// The repository and its server; the server stops when this is dropped.
pub struct GitServer {
    /// The bare repository's parent (`GIT_PROJECT_ROOT`).
    root: PathBuf,
    /// The working clone commits are made in.
    work: PathBuf,
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// `git …` in `dir`, with a fixed identity; panics with git's output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.test",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitServer {
    /// An empty repository `repo.git` under `dir`, served over HTTP; with
    /// `token`, every request needs HTTP Basic `x-access-token:<token>`.
    pub fn start(dir: &Path, token: Option<&str>) -> GitServer {
        let root = dir.join("srv");
        let work = dir.join("work");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&work).expect("mkdir");
        git(&root, &["init", "-q", "--bare", "-b", "main", "repo.git"]);
        git(&root.join("repo.git"), &["config", "http.receivepack", "false"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", root.join("repo.git").to_str().expect("utf-8")]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let expected =
            token.map(|t| format!("Basic {}", super::base64(format!("x-access-token:{t}").as_bytes())));
        let state = Arc::new((root.clone(), expected));
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind the Git server");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(move |method, uri, headers, body| {
            let state = state.clone();
            async move { cgi(&state, method, uri, headers, body).await }
        });
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitServer { root, work, addr, _runtime: runtime }
    }

    /// The repository's HTTP URL.
    pub fn url(&self) -> String {
        format!("http://{}/repo.git", self.addr)
    }

    /// Writes `files` in the working clone, commits them with `message`
    /// and returns the commit id (not pushed).
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let path = self.work.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, text).expect("write");
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// [`Self::commit`], signed with the SSH private key at `key`
    /// (`gpg.format=ssh`, as `git commit -S` does it).
    pub fn commit_signed(&self, files: &[(&str, &str)], message: &str, key: &Path) -> String {
        for (path, text) in files {
            std::fs::write(self.work.join(path), text).expect("write");
        }
        git(&self.work, &["add", "-A"]);
        let key = format!("user.signingkey={}", key.display());
        git(
            &self.work,
            &["-c", "gpg.format=ssh", "-c", &key, "commit", "-q", "-S", "--allow-empty", "-m", message],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `git …` in the working clone.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args)
    }

    /// The bare repository.
    pub fn bare(&self) -> PathBuf {
        self.root.join("repo.git")
    }
}

/// One request through `git http-backend`.
async fn cgi(
    state: &(PathBuf, Option<String>),
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (root, expected) = state;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if let Some(expected) = expected {
        if header("authorization") != *expected {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("WWW-Authenticate", "Basic realm=\"git\"")
                .body(Body::from("authentication required"))
                .expect("response");
        }
    }
    let env = [
        ("REQUEST_METHOD", method.as_str().to_string()),
        ("PATH_INFO", uri.path().to_string()),
        ("QUERY_STRING", uri.query().unwrap_or_default().to_string()),
        ("CONTENT_TYPE", header("content-type")),
        ("CONTENT_LENGTH", body.len().to_string()),
        ("GIT_PROTOCOL", header("git-protocol")),
        ("HTTP_CONTENT_ENCODING", header("content-encoding")),
    ];
    let root = root.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("REMOTE_ADDR", "127.0.0.1")
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("git http-backend");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(&body);
        }
        child.wait_with_output().expect("git http-backend output")
    })
    .await
    .expect("the CGI thread");
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::empty()).expect("response");
    };
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    for line in String::from_utf8_lossy(&out.stdout[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
        } else {
            response = response.header(name, value);
        }
    }
    response.status(status).body(Body::from(out.stdout[end + sep..].to_vec())).expect("response")
}

/// The distribution's `sshd` on a loopback port, serving this machine's
/// repositories to one client key (`git-upload-pack` over SSH, as any Git
/// host does), with its own host key. Stops when dropped.
pub struct Sshd {
    /// `127.0.0.1:PORT`.
    pub port: u16,
    /// The client's private key (0600).
    pub client_key: PathBuf,
    /// A known_hosts file listing the server's host key.
    pub known_hosts: PathBuf,
    /// A known_hosts file listing another key for the same address.
    pub wrong_known_hosts: PathBuf,
    process: super::Spawned,
}

impl Sshd {
    pub fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).expect("mkdir");
        let keygen = |file: &Path| {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
                .arg(file)
                .output()
                .expect("ssh-keygen");
            assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::read_to_string(file.with_extension("pub")).expect("public key")
        };
        let host_pub = keygen(&dir.join("host"));
        let other_pub = keygen(&dir.join("other"));
        let client_key = dir.join("client");
        let client_pub = keygen(&client_key);
        std::fs::write(dir.join("authorized_keys"), client_pub).expect("authorized_keys");
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let hosts = |public: &str| {
            let mut words = public.split_whitespace();
            let (kind, key) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            format!("[127.0.0.1]:{port} {kind} {key}\n")
        };
        let (known_hosts, wrong_known_hosts) = (dir.join("known_hosts"), dir.join("wrong_known_hosts"));
        std::fs::write(&known_hosts, hosts(&host_pub)).expect("known_hosts");
        std::fs::write(&wrong_known_hosts, hosts(&other_pub)).expect("known_hosts");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\nPidFile {pid}\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
                host = dir.join("host").display(),
                keys = dir.join("authorized_keys").display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )
        .expect("sshd_config");
        // sshd's privilege separation directory, which a service would make.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.args(["-D", "-e", "-f"]).arg(&config);
        let process = super::Spawned::start(cmd, "sshd");
        super::wait_for("sshd to listen", std::time::Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sshd { port, client_key, known_hosts, wrong_known_hosts, process }
    }

    /// `ssh://USER@127.0.0.1:PORT/<path>` for the repository at `path`.
    pub fn url(&self, path: &Path) -> String {
        let who = Command::new("id").arg("-un").output().expect("id -un");
        let user = String::from_utf8_lossy(&who.stdout).trim().to_string();
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, path.display())
    }

    /// What sshd logged.
    pub fn output(&self) -> String {
        self.process.output()
    }
}
