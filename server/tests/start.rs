//! The server's binary started as the README's first two commands start
//! it: no flags. It makes its admin token on the first start (0600, said
//! once), keeps it across restarts, and `fleet` on the same machine finds
//! it. No Docker needed: these run with a bare `cargo test` too.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_container-upgrader-server");

/// A server on a free loopback port with `state` as its state directory
/// (through the environment, as a user sets it), killed when dropped.
struct Server {
    child: Child,
    addr: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn start(state: &Path) -> Server {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").to_string()
        };
        let mut child = Command::new(BIN)
            .args(["--listen", &addr])
            .env("CONTAINER_UPGRADER_SERVER_STATE_DIR", state)
            .env_remove("CONTAINER_UPGRADER_ADMIN_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the server");
        let (tx, stderr) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the server did not listen on {addr}");
            assert!(child.try_wait().expect("wait").is_none(), "the server exited");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, addr, stderr }
    }

    /// What it printed on stderr so far.
    fn printed(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        self.stderr.try_iter().collect()
    }

    fn fleet(&self, state: &Path, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(["fleet", "--server", &format!("http://{}", self.addr)])
            .args(args)
            .env("CONTAINER_UPGRADER_SERVER_STATE_DIR", state)
            .env_remove("CONTAINER_UPGRADER_ADMIN_TOKEN_FILE")
            .output()
            .expect("running fleet")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_server_started_without_flags_makes_its_admin_token_once_and_fleet_finds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let token_file = state.join("admin.token");

    let server = Server::start(&state);
    let printed = server.printed();
    let created: Vec<&String> = printed.iter().filter(|l| l.contains("created an admin token")).collect();
    assert_eq!(created.len(), 1, "the first start says where the token is: {printed:?}");
    assert!(created[0].contains(&token_file.display().to_string()), "{printed:?}");
    let token = std::fs::read_to_string(&token_file).expect("the token file");
    assert!(token.trim().len() >= 32, "a long random token: {token:?}");
    assert_eq!(std::fs::metadata(&token_file).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&state).expect("meta").permissions().mode() & 0o777, 0o700);
    assert!(state.join("fleet.db").exists(), "the default SQLite database sits in the state directory");

    let out = server.fleet(&state, &["token", "create"]);
    assert!(out.status.success(), "fleet found the token: {}", String::from_utf8_lossy(&out.stderr));
    drop(server);

    let server = Server::start(&state);
    let printed = server.printed();
    assert!(!printed.iter().any(|l| l.contains("created an admin token")), "said once only: {printed:?}");
    assert_eq!(std::fs::read_to_string(&token_file).expect("kept"), token, "the same token after a restart");
    let out = server.fleet(&state, &["token", "list", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "the token made before the restart: {listed}");
}

#[test]
fn fleet_without_a_token_anywhere_says_what_it_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["fleet", "agents"])
        .env("CONTAINER_UPGRADER_SERVER_STATE_DIR", dir.path())
        .env_remove("CONTAINER_UPGRADER_ADMIN_TOKEN_FILE")
        .env_remove("CONTAINER_UPGRADER_TOKEN_FILE")
        .output()
        .expect("running fleet");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--admin-token-file") && stderr.contains("admin.token"), "{stderr}");
}

#[test]
fn named_users_work_from_the_cli_with_their_own_token_and_the_audit_log_says_who() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let server = Server::start(&state);
    let text = |out: &std::process::Output| {
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };

    // The break-glass admin (the token on this machine) adds an operator
    // with a password from a file, and a viewer with a setup code.
    let password = dir.path().join("alice.password");
    std::fs::write(&password, "correct horse battery staple\n").expect("write");
    let pw = password.display().to_string();
    let out = server.fleet(&state, &["user", "add", "alice", "--role", "operator", "--password-file", &pw]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = server.fleet(&state, &["user", "add", "bob", "--role", "viewer"]);
    let (code, said) = text(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(code.trim().len(), 64, "only the setup code on stdout: {code:?}");
    assert!(said.contains("setup code"), "{said}");

    // alice's own token, shown once, then used through --token-file.
    let out =
        server.fleet(&state, &["api-token", "create", "laptop", "--user", "alice", "--expires-in", "7d"]);
    let (token, said) = text(&out);
    assert!(out.status.success() && token.starts_with("cut."), "{token:?} {said}");
    let token_file = dir.path().join("alice.token");
    std::fs::write(&token_file, &token).expect("write");
    let tf = token_file.display().to_string();
    let out = server.fleet(&state, &["--token-file", &tf, "whoami"]);
    let (me, said) = text(&out);
    assert!(me.contains("alice") && me.contains("operator") && me.contains("laptop"), "{me} {said}");

    // An operator may not manage users: exit 1 and the server's reason.
    let out = server.fleet(&state, &["--token-file", &tf, "user", "add", "mallory", "--role", "admin"]);
    let (_, said) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("403") && said.contains("needs the admin role"), "{said}");

    // The audit log: who added whom, and nothing for the refused request.
    let out = server.fleet(&state, &["--token-file", &tf, "audit", "--action", "user", "-o", "json"]);
    let (log, said) = text(&out);
    assert!(out.status.success(), "{said}");
    let log: serde_json::Value = serde_json::from_str(&log).expect("JSON");
    let entries = log["entries"].as_array().expect("entries");
    let objects: Vec<&str> = entries.iter().filter_map(|e| e["object"].as_str()).collect();
    assert_eq!(objects, ["user bob", "user alice"], "{log}");
    assert!(entries.iter().all(|e| e["actor"] == "admin token (break-glass)"), "{log}");
    let out = server.fleet(&state, &["--token-file", &tf, "audit", "--action", "api-token"]);
    let (table, _) = text(&out);
    assert!(table.contains("laptop") && table.contains("WHO"), "{table}");

    // Revoked: the token stops at once.
    let out = server.fleet(&state, &["api-token", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let id = listed[0]["id"].as_str().expect("an id").to_string();
    assert!(server.fleet(&state, &["--token-file", &tf, "api-token", "revoke", &id]).status.success());
    let out = server.fleet(&state, &["--token-file", &tf, "whoami"]);
    let (_, said) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(said.contains("401") && said.contains("revoked"), "{said}");
}
