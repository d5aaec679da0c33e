//! The one harness behind every Docker integration test (`mod common;`).
//!
//! A [`TestRun`] owns everything a test creates in Docker: each container,
//! image, network and volume carries the label [`RUN_LABEL`]`=<run id>`, and
//! dropping the run removes exactly those objects, also when the test
//! panicked. Images are `FROM scratch` around the static `testbox` fixture
//! (`tests/fixtures/testbox.rs`), so nothing is ever pulled from the
//! internet. [`TestRegistry`] is Debian's `docker-registry` on a free
//! loopback port; the daemon treats 127.0.0.0/8 as insecure, so plain HTTP
//! pushes work without configuration. A registry can require a login
//! ([`TestRun::registry_with_auth`]); docker commands for it, and the
//! binary under test ([`TestRun::cli_with_env`]), then get a `DOCKER_CONFIG`
//! dir the run writes ([`TestRun::docker_config`]), never the machine's own.
//!
//! Everything shells out to the docker CLI rather than bollard: the harness
//! must not share code paths (or bugs) with the engine module it tests.
//! Every helper panics with the command and its stderr on failure, and every
//! command runs under a timeout so a wedged daemon fails the test instead of
//! hanging CI.
#![allow(dead_code)]

mod bench;
mod cleanup;
pub mod cosign;
mod credentials;
mod distribution;
mod fleet;
mod git;
mod image;
mod postgres;
mod process;
mod referrers;
mod registry;
mod swarm;
mod upgrader;
mod webdriver;
mod webhook;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

// Each tests/*.rs is its own crate and uses only some of these.
#[allow(unused_imports)]
pub use bench::{calls_between, median, ms, usage, Quantiles, Samples};
#[allow(unused_imports)]
pub use credentials::{base64, Login};
#[allow(unused_imports)]
pub use distribution::{http, sha256_hex, Answer, Stored, MANIFEST_LIST, MANIFEST_V2};
#[allow(unused_imports)]
pub use fleet::{
    agent_manifest, free_addr, publish_fleet_images, set_mode, start_controller_agent, FleetServer,
    HostAgent, Spawned, ADMIN_TOKEN,
};
#[allow(unused_imports)]
pub use git::{GitServer, Sshd};
#[allow(unused_imports)]
pub use image::{testbox_binary, ImageSpec};
#[allow(unused_imports)]
pub use postgres::TestPostgres;
#[allow(unused_imports)]
pub use process::{docker, try_docker, wait_for};
#[allow(unused_imports)]
pub use referrers::ReferrersRegistry;
#[allow(unused_imports)]
pub use registry::{http_status, TestRegistry};
#[allow(unused_imports)]
pub use swarm::{running_tasks, Sampler};
#[allow(unused_imports)]
pub use upgrader::controller_binary;
#[allow(unused_imports)]
pub use webdriver::Browser;
#[allow(unused_imports)]
pub use webhook::receiver;

use process::{expect_success, run_bounded, DOCKER_TIMEOUT};

const CLI_TIMEOUT: Duration = Duration::from_secs(300);

/// The repository's root: the controller package's directory, also when
/// the tests are the fleet server's (their package is `server/`).
pub fn repo_root() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("tests/common").is_dir() {
        dir.to_path_buf()
    } else {
        dir.parent().unwrap_or(dir).to_path_buf()
    }
}

/// Label key put on every Docker object a [`TestRun`] creates.
pub const RUN_LABEL: &str = "container-upgrader.test-run";

/// Owns the Docker objects of one test; see the module docs.
pub struct TestRun {
    id: String,
    dir: TempDir,
}

impl TestRun {
    /// Starts a run named after the test; the id is unique across parallel
    /// tests, test binaries and leftovers of earlier crashed runs.
    pub fn new(test_name: &str) -> TestRun {
        let dir = tempfile::Builder::new()
            .prefix("container-upgrader-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temp dir for {test_name}: {e}"));
        TestRun { id: unique_id(test_name), dir }
    }

    /// The run id: lowercase, valid as a container name and image path part.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `container-upgrader.test-run=<id>`, for `--label`.
    pub fn label(&self) -> String {
        format!("{RUN_LABEL}={}", self.id)
    }

    /// `label=container-upgrader.test-run=<id>`, for `--filter`.
    pub fn label_filter(&self) -> String {
        format!("label={}", self.label())
    }

    /// A docker-valid name unique to this run: `<id>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{}", self.id, slug(suffix, 60))
    }

    /// Starts a private registry; see [`TestRegistry`].
    pub fn registry(&self) -> TestRegistry {
        TestRegistry::start(&self.id, None, false)
    }

    /// Starts a private registry holding `app:1` and `app:2` (see
    /// [`TestRun::publish_versions`]); returns it and the repository.
    pub fn registry_with_versions(&self) -> (TestRegistry, String) {
        let registry = self.registry();
        let repo = registry.repo("app");
        self.publish_versions(&repo);
        (registry, repo)
    }

    /// Starts a private registry that answers 401 unless a request carries
    /// `user` and `password` (HTTP basic auth); push to it with
    /// [`TestRegistry::push`], which is logged in.
    pub fn registry_with_auth(&self, user: &str, password: &str) -> TestRegistry {
        TestRegistry::start(&self.id, Some((user, password)), false)
    }

    /// Starts a private registry serving HTTPS with a certificate from its
    /// own CA (see [`TestRegistry::certs_d`]). The engine pushes to it as to
    /// any 127.0.0.0/8 registry: HTTPS without verification.
    pub fn registry_with_tls(&self) -> TestRegistry {
        TestRegistry::start(&self.id, None, true)
    }

    /// Writes `<run dir>/docker-config/<name>/config.json` with an `auths`
    /// entry per login, as `docker login` would; returns the dir, for
    /// `DOCKER_CONFIG`.
    pub fn docker_config(&self, name: &str, logins: &[Login]) -> PathBuf {
        let dir = self.dir.path().join("docker-config").join(slug(name, 60));
        credentials::write_docker_config(&dir, logins);
        dir
    }

    /// An empty dir in the run's temp dir (e.g. a `DOCKER_CONFIG` without
    /// a config.json); returns its path.
    pub fn empty_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("empty").join(slug(name, 60));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        dir
    }

    /// Builds a `FROM scratch` testbox image tagged `tag`; returns its id.
    pub fn build_image(&self, tag: &str, spec: &ImageSpec) -> String {
        let context = tempfile::tempdir_in(self.dir.path())
            .unwrap_or_else(|e| panic!("creating a build context for {tag}: {e}"));
        let binary = context.path().join("testbox");
        fs::copy(testbox_binary(), &binary)
            .unwrap_or_else(|e| panic!("copying testbox into {}: {e}", binary.display()));
        let dockerfile = context.path().join("Dockerfile");
        fs::write(&dockerfile, spec.dockerfile(&self.id))
            .unwrap_or_else(|e| panic!("writing {}: {e}", dockerfile.display()));
        process::docker_build(tag, context.path())
    }

    /// `docker push tag`.
    pub fn push(&self, tag: &str) {
        self.docker(&["push", tag]);
    }

    /// Builds `image` as `spec` says and pushes it to its registry.
    pub fn publish(&self, image: &str, spec: &ImageSpec) {
        self.build_image(image, spec);
        self.push(image);
    }

    /// Publishes `repo:1` and `repo:2`, each running `testbox <tag> started`.
    pub fn publish_versions(&self, repo: &str) {
        for tag in ["1", "2"] {
            let spec = ImageSpec { env: vec![("TESTBOX_VERSION", tag)], ..Default::default() };
            self.publish(&format!("{repo}:{tag}"), &spec);
        }
    }

    /// `docker run -d --name <name(suffix)> --label <run label> <extra_args>
    /// <image>`; returns the container id.
    pub fn run_container(&self, suffix: &str, image: &str, extra_args: &[&str]) -> String {
        let (name, label) = (self.name(suffix), self.label());
        let mut args = vec!["run", "-d", "--name", &name, "--label", &label];
        args.extend_from_slice(extra_args);
        args.push(image);
        self.docker(&args)
    }

    /// Creates a labelled network `<name(suffix)>`; returns its name.
    pub fn network(&self, suffix: &str) -> String {
        let (name, label) = (self.name(suffix), self.label());
        self.docker(&["network", "create", "--label", &label, &name]);
        name
    }

    /// Creates a labelled volume `<name(suffix)>`; returns its name.
    pub fn volume(&self, suffix: &str) -> String {
        let (name, label) = (self.name(suffix), self.label());
        self.docker(&["volume", "create", "--label", &label, &name]);
        name
    }

    /// Runs docker; panics with the command and stderr on failure; returns
    /// trimmed stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        docker(args)
    }

    /// Like [`TestRun::docker`], for commands that are expected to fail.
    pub fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        try_docker(args)
    }

    /// Starts controller container `name` on `image` as an operator runs
    /// it: labelled for this run, host network, restarted unless stopped,
    /// the Docker socket and `mounts` (`SRC:DST[:ro]`) mounted, then
    /// `options` (more `docker run` flags), and `run -f` the manifest in
    /// `/etc/container-upgrader/` with `args` and `-v`. Returns its id.
    pub fn controller_container(
        &self,
        name: &str,
        image: &str,
        mounts: &[&str],
        options: &[&str],
        args: &[&str],
    ) -> String {
        let label = self.label();
        let mut docker_args = vec!["run", "-d", "--name", name, "--label", &label];
        docker_args.extend(["--network", "host", "--restart", "unless-stopped"]);
        docker_args.extend(["-v", "/var/run/docker.sock:/var/run/docker.sock"]);
        for m in mounts {
            docker_args.extend(["-v", m]);
        }
        docker_args.extend(options);
        docker_args.extend([image, "run", "-f", "/etc/container-upgrader/desired-state.yaml"]);
        docker_args.extend(args);
        docker_args.push("-v");
        docker(&docker_args)
    }

    /// `docker inspect -f <format> <target>`.
    pub fn inspect(&self, target: &str, format: &str) -> String {
        docker(&["inspect", "-f", format, target])
    }

    /// `run_container` of `client` inside the network namespace of the
    /// container named `peer` (`--network container:<peer>`), with `extra`
    /// arguments; returns the client's name.
    pub fn run_in_network_of(&self, peer: &str, client: &str, image: &str, extra: &[&str]) -> String {
        let mode = format!("container:{peer}");
        let mut args = vec!["--network", mode.as_str()];
        args.extend_from_slice(extra);
        self.run_container(client, image, &args);
        self.name(client)
    }

    /// The network namespace a running container's process lives in (the
    /// engine runs on this host, so its `/proc` is ours).
    pub fn netns(&self, container: &str) -> PathBuf {
        let pid = self.inspect(container, "{{.State.Pid}}");
        std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .unwrap_or_else(|e| panic!("network namespace of {container} (pid {pid}): {e}"))
    }

    /// `docker logs`, stdout and stderr together.
    pub fn logs(&self, container: &str) -> String {
        let mut cmd = Command::new("docker");
        cmd.args(["logs", container]);
        let out = expect_success(&mut cmd, "docker logs", DOCKER_TIMEOUT);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Writes `contents` to `name` inside a temp dir the run owns.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join("files").join(name);
        let written =
            path.parent().map_or(Ok(()), fs::create_dir_all).and_then(|()| fs::write(&path, contents));
        written.unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Runs the crate's binary to completion (bounded); the caller checks
    /// the exit status.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_env(args, &[])
    }

    /// [`TestRun::cli`] with `env` added to the binary's environment, e.g.
    /// `("DOCKER_CONFIG", dir)`.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.cli_command();
        cmd.args(args).envs(env.iter().copied());
        let shown = format!("container-upgrader {}", args.join(" "));
        run_bounded(&mut cmd, CLI_TIMEOUT).unwrap_or_else(|e| panic!("`{shown}` {e}"))
    }

    /// A `Command` for the controller's binary, for tests that keep it
    /// running.
    pub fn cli_command(&self) -> Command {
        Command::new(controller_binary())
    }

    /// Runs the fleet server's binary (`container-upgrader-server`, e.g.
    /// its `fleet …` admin CLI) to completion (bounded).
    pub fn server_cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(fleet::server_binary());
        cmd.args(args);
        let shown = format!("container-upgrader-server {}", args.join(" "));
        run_bounded(&mut cmd, CLI_TIMEOUT).unwrap_or_else(|e| panic!("`{shown}` {e}"))
    }

    /// Runs the binary with a fault-injection `env` until it prints a line
    /// containing `marker` (it then stands frozen) and SIGKILLs it there:
    /// `true`. `false` when it ended on its own without reaching it.
    pub fn cli_killed_at(&self, args: &[&str], env: (&str, &str), marker: &str) -> bool {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .cli_command()
            .args(args)
            .env(env.0, env.1)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning container-upgrader {}: {e}", args.join(" ")));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if line.contains(marker) => break,
                Ok(line) => seen.push(line),
                // stderr closed: the process ended on its own.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    return false;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("container-upgrader never printed {marker:?} nor ended; stderr: {seen:#?}");
                }
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        true
    }
}

impl Drop for TestRun {
    fn drop(&mut self) {
        // Runs while unwinding from a failed assertion too, so it must not
        // panic: a second panic aborts and hides the test's own message.
        for failure in cleanup::remove_labelled(&self.label_filter()) {
            eprintln!("test run {} cleanup: {failure}", self.id);
        }
    }
}

/// `<test name>-<pid>-<counter>-<time>`: the counter separates runs in one
/// test binary, the time separates us from leftovers of a crashed run that
/// had the same pid.
fn unique_id(test_name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let pid = std::process::id();
    format!("{}-{pid}-{n}-{:05x}", slug(test_name, 40), nanos & 0xf_ffff)
}

/// Lowercase alphanumerics joined by single `-`: valid in container,
/// network and volume names and as an image path component.
fn slug(text: &str, max_len: usize) -> String {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let mut slug = words.join("-");
    slug.truncate(max_len);
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() { "x" } else { slug }.to_string()
}
