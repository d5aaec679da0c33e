//! The fleet server and its agents as real processes:
//! `container-upgrader-server` on a free loopback port, `run --server`
//! agents on this host, and the admin API over plain HTTP. Every process
//! is killed when its handle is dropped, also on a panic.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::distribution::{http, Answer};
use super::process::wait_for;
use super::{ImageSpec, TestRegistry, TestRun};

/// The server's binary; only the server package's tests (`server/tests`)
/// have it.
pub fn server_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_container-upgrader-server") {
        Some(path) => PathBuf::from(path),
        None => panic!("the fleet server's binary is built for the tests in server/tests only"),
    }
}

/// The admin token every test server is started with.
pub const ADMIN_TOKEN: &str = "admin-token-for-the-fleet-tests";

/// A child process with its stdout and stderr collected.
pub struct Spawned {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `cmd`, collecting its output.
    pub fn start(mut cmd: Command, what: &str) -> Spawned {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let streams = [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut o) = out.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                }
            });
        }
        Spawned { child, output }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running fleet server.
pub struct FleetServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The database URL it was started with.
    pub db: String,
    dir: PathBuf,
    admin_token_file: PathBuf,
    extra: Vec<String>,
    process: Option<Spawned>,
}

impl FleetServer {
    /// Starts `server` on `db` (`sqlite://…` or `postgres://…`), checking
    /// registries' tags every `version_check`, and waits for `/healthz`.
    pub fn start(run: &TestRun, db: &str, extra: &[&str]) -> FleetServer {
        let admin_token_file = run.write_file("fleet/admin.token", ADMIN_TOKEN);
        set_mode(&admin_token_file, 0o600);
        let dir = admin_token_file.parent().expect("dir").join("server-state");
        let mut server = FleetServer {
            addr: free_addr(),
            db: db.to_string(),
            dir,
            admin_token_file,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            process: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        // A diagnostic for the benches: `FLEET_SERVER_HEAPTRACK=PREFIX` runs
        // each server under heaptrack, its profile written to
        // PREFIX-127_0_0_1_PORT.zst (`heaptrack_print --print-peaks`). The
        // process id is then heaptrack's, so RSS figures are not the server's.
        let mut cmd = match std::env::var("FLEET_SERVER_HEAPTRACK") {
            Ok(prefix) if !prefix.is_empty() => {
                let mut c = Command::new("heaptrack");
                c.arg("-o")
                    .arg(format!("{prefix}-{}", self.addr.replace([':', '.'], "_")))
                    .arg(server_binary());
                c
            }
            _ => Command::new(server_binary()),
        };
        cmd.args(["--listen", &self.addr, "--db", &self.db])
            .arg("--admin-token-file")
            .arg(&self.admin_token_file)
            .arg("--state-dir")
            .arg(&self.dir)
            .args(&self.extra)
            .env("RUST_LOG", "info");
        self.process = Some(Spawned::start(cmd, "the fleet server"));
        let addr = self.addr.clone();
        wait_for("the fleet server to answer /healthz", Duration::from_secs(60), || {
            if let Some(p) = self.process.as_mut() {
                assert!(p.alive(), "the fleet server exited: {}", p.output());
            }
            std::net::TcpStream::connect(&addr).is_ok()
                && http(&addr, "GET", "/healthz", &[], b"").status == 200
        });
    }

    /// SIGKILL: nothing is flushed, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts it again on the same address and database.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// What it printed.
    pub fn output(&self) -> String {
        self.process.as_ref().map(Spawned::output).unwrap_or_default()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Spawned::pid)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin token's file.
    pub fn admin_token_file(&self) -> &Path {
        &self.admin_token_file
    }

    /// An admin request; `body` is JSON (or YAML for a manifest).
    pub fn admin(&self, method: &str, path: &str, body: &str) -> Answer {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let kind = if body.trim_start().starts_with('{') { "application/json" } else { "application/yaml" };
        let headers = [("Authorization", auth.as_str()), ("Content-Type", kind)];
        http(&self.addr, method, path, &headers, body.as_bytes())
    }

    /// Logs in on the page with `secret` (the admin token or password); the
    /// session cookie (`name=value`).
    pub fn login(&self, secret: &str) -> String {
        let body = format!("secret={secret}");
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let answer = http(&self.addr, "POST", "/login", &headers, body.as_bytes());
        assert_eq!(answer.status, 303, "{}", answer.text());
        let set = answer.header("set-cookie").expect("a session cookie");
        set.split(';').next().expect("name=value").to_string()
    }

    /// A page as the browser of session `cookie` gets it: status and HTML.
    pub fn page(&self, cookie: &str, path: &str) -> (u16, String) {
        let answer = http(&self.addr, "GET", path, &[("Cookie", cookie)], b"");
        (answer.status, answer.text())
    }

    /// An admin GET that must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let answer = self.admin("GET", path, "");
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.text());
        serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", answer.text()))
    }

    /// Every agent (`GET /v1/fleet/agents`).
    pub fn agents(&self) -> Vec<Value> {
        match self.get_json("/v1/fleet/agents") {
            Value::Array(a) => a,
            other => other["agents"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// The agent named `name`, in full (`GET /v1/fleet/agents/{id}`).
    pub fn agent_named(&self, name: &str) -> Option<Value> {
        let id = self.agents().into_iter().find(|a| a["name"] == name)?["id"].as_str()?.to_string();
        Some(self.get_json(&format!("/v1/fleet/agents/{id}")))
    }

    /// A new enrolment token with `uses` enrolments, through the CLI.
    pub fn enrolment_token(&self, run: &TestRun, args: &[&str]) -> String {
        let token_file = self.admin_token_file.to_string_lossy().to_string();
        let server = self.url();
        let mut full =
            vec!["fleet", "--server", &server, "--admin-token-file", &token_file, "token", "create"];
        full.extend_from_slice(args);
        let out = run.server_cli(&full);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(out.status.success(), "fleet token create: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().count(), 1, "only the token on stdout: {stdout}");
        stdout
    }
}

/// A free loopback address.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Publishes what the fleet tests upgrade between to `registry`: `app` at
/// each of `versions` and at `broken` (exits 300 ms after start, so it
/// fails its health gate), and controller images `ctl:1.0.0` and
/// `ctl:1.1.0`. Returns the two repositories.
pub fn publish_fleet_images(run: &TestRun, registry: &TestRegistry, versions: &[&str]) -> (String, String) {
    let (app, ctl) = (registry.repo("app"), registry.repo("ctl"));
    for v in versions {
        run.publish(
            &format!("{app}:{v}"),
            &ImageSpec { env: vec![("TESTBOX_VERSION", v)], ..Default::default() },
        );
    }
    let broken = ImageSpec {
        env: vec![("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "4")],
        ..Default::default()
    };
    run.publish(&format!("{app}:broken"), &broken);
    for v in ["1.0.0", "1.1.0"] {
        run.build_upgrader_image(&format!("{ctl}:{v}"), &[&format!("LABEL version={v}")]);
        run.push(&format!("{ctl}:{v}"));
    }
    (app, ctl)
}

/// An agent's manifest keeping `container` on `image` (drift every 5 s,
/// healthy once stable for 1 s).
pub fn agent_manifest(container: &str, image: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  drift_interval: 5s\n  health: {{stable: 1s, timeout: 20s}}\ntargets:\n  - container: {container}\n    image: {image}\n"
    )
}

/// A `run --server` agent on this host keeping one container of its own,
/// named `<run id>-<suffix>`, on the image its manifest names.
pub struct HostAgent {
    /// The agent's name on the server.
    pub name: String,
    /// Its container's name.
    pub container: String,
    /// Its manifest file (written by the agent from the server).
    pub manifest: PathBuf,
    /// The agent process.
    pub process: Spawned,
}

impl HostAgent {
    /// Starts container `suffix` on `image` and an agent `name` for it,
    /// enrolled with the token in `token_file`; health: stable for 1 s.
    pub fn start(
        run: &TestRun,
        server: &FleetServer,
        token_file: &Path,
        name: &str,
        suffix: &str,
        image: &str,
    ) -> HostAgent {
        Self::start_at(run, &server.url(), token_file, name, suffix, image)
    }

    /// [`HostAgent::start`] for the server at `url` (a balancer, or one
    /// replica of several).
    pub fn start_at(
        run: &TestRun,
        url: &str,
        token_file: &Path,
        name: &str,
        suffix: &str,
        image: &str,
    ) -> HostAgent {
        let text = agent_manifest(&run.name(suffix), image);
        Self::start_with_manifest(run, url, token_file, name, suffix, image, &text)
    }

    /// [`HostAgent::start_at`] with the agent's own manifest file `text`
    /// (its container is `run.name(suffix)`).
    pub fn start_with_manifest(
        run: &TestRun,
        url: &str,
        token_file: &Path,
        name: &str,
        suffix: &str,
        image: &str,
        text: &str,
    ) -> HostAgent {
        let container = run.name(suffix);
        run.run_container(suffix, image, &[]);
        let manifest = run.write_file(&format!("{name}/desired-state.yaml"), text);
        let state = manifest.parent().expect("dir").join("state");
        let mut cmd = run.cli_command();
        cmd.args(["run", "-f"])
            .arg(&manifest)
            .arg("--state-dir")
            .arg(&state)
            .args(["--server", url, "--agent-name", name, "--server-poll", "10s", "-v"])
            .arg("--enrol-token-file")
            .arg(token_file);
        let process = Spawned::start(cmd, name);
        HostAgent { name: name.to_string(), container, manifest, process }
    }
}

/// Starts a controller container `<run id>-<suffix>` on `image` whose own
/// manifest names itself, as agent `name` of `server` (enrolled with the
/// token in `token_file`): the agent that upgrades its own container
/// through the helper. Returns the container's name.
pub fn start_controller_agent(
    run: &TestRun,
    server: &FleetServer,
    token_file: &Path,
    name: &str,
    suffix: &str,
    image: &str,
) -> String {
    let container = run.name(suffix);
    let text = agent_manifest(&container, image);
    let manifest = run.write_file(&format!("{name}/desired-state.yaml"), text);
    let manifest_dir = manifest.parent().expect("dir").display().to_string();
    let state = run.volume(&format!("{suffix}-state"));
    let (state_mount, manifest_mount) =
        (format!("{state}:/var/lib/container-upgrader"), format!("{manifest_dir}:/etc/container-upgrader"));
    let secrets = format!("{}:/run/secrets:ro", token_file.parent().expect("dir").display());
    let token_name = token_file.file_name().expect("file").to_string_lossy().to_string();
    let token_in = format!("/run/secrets/{token_name}");
    let url = server.url();
    run.controller_container(
        &container,
        image,
        &[&state_mount, &manifest_mount, &secrets],
        &[],
        &["--server", &url, "--enrol-token-file", &token_in, "--agent-name", name, "--server-poll", "10s"],
    );
    container
}
