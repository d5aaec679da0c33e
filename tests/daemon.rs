//! `run`, the controller loop, against the real engine and registry: file
//! changes, drift by hand, invalid manifests, reporting and shutdown.
#![cfg(feature = "docker-tests")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, ImageSpec, Spawned, TestRegistry, TestRun};

/// A running `container-upgrader run` with its output collected.
struct Daemon {
    process: Spawned,
}

impl Daemon {
    fn start(run: &TestRun, manifest: &std::path::Path, state: &str, extra: &[&str]) -> Daemon {
        let mut cmd = run.cli_command();
        cmd.args(["run", "-f", manifest.to_str().expect("utf-8"), "--state-dir", state]).args(extra);
        Daemon { process: Spawned::start(cmd, "run") }
    }

    fn output(&self) -> String {
        self.process.output()
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        self.sigterm();
        self.exit_code(Duration::from_secs(20))
    }

    fn sigterm(&self) {
        let pid = self.process.pid().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// The exit code once it exits within `timeout`; else it is killed: None.
    fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.process.exited() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.process.kill();
        None
    }
}

struct Setup {
    run: TestRun,
    _registry: TestRegistry,
    repo: String,
    dir: PathBuf,
    state: String,
}

fn setup(test: &str) -> Setup {
    let run = TestRun::new(test);
    let (registry, repo) = run.registry_with_versions();
    let broken = format!("{repo}:broken");
    run.build_image(
        &broken,
        &ImageSpec {
            env: vec![("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "4")],
            ..Default::default()
        },
    );
    run.push(&broken);
    let dir = run.write_file("m/.keep", "").parent().expect("dir").to_path_buf();
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    Setup { run, _registry: registry, repo, dir, state }
}

impl Setup {
    fn text(&self, name: &str, tag: &str, extra_defaults: &str) -> String {
        format!(
            "version: 1\ndefaults:\n  drift_interval: 1h\n  health: {{stable: 1s, timeout: 20s}}\n{extra_defaults}targets:\n  - container: {name}\n    image: {}:{tag}\n",
            self.repo
        )
    }

    fn path(&self) -> PathBuf {
        self.dir.join("desired-state.yaml")
    }

    /// Writes the manifest in place (same inode), as `echo >` does.
    fn write_in_place(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(self.path())
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    /// Writes it the way editors and `set` do: a temp file renamed over it.
    fn write_by_rename(&self, text: &str) {
        let tmp = self.dir.join(".desired-state.yaml.swp");
        std::fs::write(&tmp, text).expect("write tmp");
        std::fs::rename(&tmp, self.path()).expect("rename");
    }

    fn image_of(&self, name: &str) -> String {
        self.run.try_docker(&["inspect", "-f", "{{.Config.Image}}", name]).unwrap_or_default()
    }
}

#[test]
fn editing_the_manifest_in_place_or_by_rename_starts_the_swap() {
    let s = setup("daemon_file_edits");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    s.write_in_place(&s.text(&web, "1", ""));
    let d = Daemon::start(&s.run, &s.path(), &s.state, &[]);
    wait_for("the first pass", Duration::from_secs(60), || d.output().contains("Reconciled:"));

    // The drift timer is 1 h: only the file event can start these swaps.
    s.write_in_place(&s.text(&web, "2", ""));
    wait_for("the in-place edit to be applied", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:2", s.repo)
    });
    s.write_by_rename(&s.text(&web, "1", ""));
    wait_for("the renamed file to be applied", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:1", s.repo)
    });
    assert_eq!(d.terminate(), Some(0), "SIGTERM exits 0");
}

#[test]
fn a_container_replaced_by_hand_with_the_old_tag_is_put_back() {
    let s = setup("daemon_drift_by_hand");
    s.run.run_container("web", &format!("{}:2", s.repo), &[]);
    let web = s.run.name("web");
    s.write_in_place(&s.text(&web, "2", ""));
    let d = Daemon::start(&s.run, &s.path(), &s.state, &[]);
    wait_for("the first pass", Duration::from_secs(60), || d.output().contains("Reconciled:"));

    // Someone replaces it by hand with the old tag.
    s.run.docker(&["rm", "-f", &web]);
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    // The drift timer is 1 h: the engine's events bring the pin back.
    wait_for("the pin to come back (docker events)", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:2", s.repo) && d.output().contains(&format!("{web}: upgraded"))
    });
}

#[test]
fn an_invalid_manifest_changes_nothing_and_the_next_valid_one_applies() {
    let s = setup("daemon_invalid_manifest");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    s.write_in_place(&s.text(&web, "1", ""));
    let d = Daemon::start(&s.run, &s.path(), &s.state, &[]);
    wait_for("the first pass", Duration::from_secs(60), || d.output().contains("Reconciled:"));
    let id = s.run.inspect(&web, "{{.Id}}");

    // Half-written: the image line is cut off mid-way and a key is misspelt.
    let bad = s.text(&web, "2", "").replace("    image:", "    imag:");
    s.write_in_place(&bad);
    wait_for("the error with its position", Duration::from_secs(30), || {
        let out = d.output();
        out.contains("desired-state.yaml:7:5:")
            && out.contains("unknown field `imag`")
            && out.contains("keeping the last good manifest")
    });
    assert_eq!(s.run.inspect(&web, "{{.Id}}"), id, "nothing changed");

    s.write_by_rename(&s.text(&web, "2", ""));
    wait_for("the next valid manifest to apply", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:2", s.repo)
    });
}

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    /// The `Idempotency-Key` header.
    key: Option<String>,
    body: String,
}

/// A webhook receiver on loopback that records each POST.
fn receiver(listener: TcpListener) -> Arc<Mutex<Vec<Received>>> {
    let posts = Arc::new(Mutex::new(Vec::new()));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let (mut length, mut key) = (0usize, None);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("idempotency-key:") {
                    key = line.split_once(':').map(|(_, v)| v.trim().to_string());
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let body = String::from_utf8_lossy(&body).into_owned();
                seen.lock().expect("lock").push(Received { key, body });
            }
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    posts
}

#[test]
fn every_op_is_reported_to_the_webhook_even_after_the_receiver_was_down() {
    let s = setup("daemon_webhook");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    // A port with nobody listening yet: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let hook = "  # reports\n";
    let report = format!("report: {{webhook: \"http://127.0.0.1:{port}/events\"}}\n");
    let text = |tag: &str| format!("{}{report}", s.text(&web, tag, hook));
    s.write_in_place(&text("2"));
    let d = Daemon::start(&s.run, &s.path(), &s.state, &[]);
    wait_for("the upgrade", Duration::from_secs(60), || s.image_of(&web) == format!("{}:2", s.repo));
    // The daemon keeps reconciling while the receiver is down: a broken
    // version is tried and rolled back.
    s.write_by_rename(&text("broken"));
    wait_for("the rollback", Duration::from_secs(60), || d.output().contains("rolled back"));

    let posts = receiver(TcpListener::bind(("127.0.0.1", port)).expect("receiver"));
    wait_for("both reports", Duration::from_secs(60), || posts.lock().map(|b| b.len() >= 2).unwrap_or(false));
    std::thread::sleep(Duration::from_secs(2));
    let bodies: Vec<String> = posts.lock().expect("lock").iter().map(|p| p.body.clone()).collect();
    assert_eq!(bodies.len(), 2, "one event per op: {bodies:#?}");
    let events: Vec<serde_json::Value> =
        bodies.iter().map(|b| serde_json::from_str(b).expect("JSON")).collect();
    assert_eq!(events[0]["outcome"], "committed");
    assert_eq!(events[0]["container"], web.as_str());
    assert_eq!(events[0]["from"], format!("{}:1", s.repo));
    assert_eq!(events[0]["to"], format!("{}:2", s.repo));
    assert_eq!(events[1]["outcome"], "rolled_back");
    let reason = events[1]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("exited with code 4") || reason.contains("restarted"), "{reason}");
    assert!(events[1]["duration_ms"].as_u64().is_some());
}

/// A raw HTTP/1.0 request on loopback: (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn a_valid_api_push_upgrades_the_target_and_refusals_write_nothing() {
    let s = setup("daemon_api_push");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    let policy = "policy:\n  allowed_images: [\"127.0.0.1:*\"]\n";
    // No policy yet: the API must not write, whatever the token.
    s.write_in_place(&s.text(&web, "1", ""));
    let token = "a-long-enough-test-token-0123456789";
    let token_file = s.run.write_file("token", format!("{token}\n"));
    let addr = free_addr();
    let d = Daemon::start(
        &s.run,
        &s.path(),
        &s.state,
        &["--listen", &addr, "--token-file", token_file.to_str().expect("utf-8")],
    );
    wait_for("the API", Duration::from_secs(60), || {
        std::net::TcpStream::connect(&addr).is_ok() && d.output().contains("Reconciled:")
    });
    assert_eq!(http(&addr, "GET", "/healthz", &[], "").0, 200);

    let body = format!("{{\"target\": \"{web}\", \"image\": \"{}:2\"}}", s.repo);
    let json = "Content-Type: application/json";
    let bearer = format!("Authorization: Bearer {token}");
    let before = std::fs::read(s.path()).expect("read");
    let (status, answer) = http(&addr, "PUT", "/v1/desired", &[json, &bearer], &body);
    assert_eq!((status, answer.contains("no policy.allowed_images")), (403, true), "no policy: {answer}");
    assert_eq!(std::fs::read(s.path()).expect("read"), before, "a push without a policy wrote");

    s.write_in_place(&format!("{}{policy}", s.text(&web, "1", "")));
    let before = std::fs::read(s.path()).expect("read");
    // A selector on a privileged container's label, with an allowed image:
    // still refused, since the file does not let pushes add targets.
    let privileged = s.run.name("privileged");
    s.run.run_container("privileged", &format!("{}:1", s.repo), &["--label", "evil=1"]);
    let widened = format!(
        "{}  - selector: {{label: \"evil=1\"}}\n    image: {}:2\n{policy}",
        s.text(&web, "1", ""),
        s.repo
    );
    let yaml = "Content-Type: application/yaml";
    let (status, answer) = http(&addr, "PUT", "/v1/desired", &[yaml, &bearer], &widened);
    assert_eq!((status, answer.contains("may not add a target")), (403, true), "selector push: {answer}");
    assert_eq!(http(&addr, "PUT", "/v1/desired", &[json], &body).0, 401, "no token");
    assert_eq!(http(&addr, "PUT", "/v1/desired", &[json, "Authorization: Bearer wrong"], &body).0, 401);
    let outside = format!("{{\"target\": \"{web}\", \"image\": \"evil.example/app:2\"}}");
    assert_eq!(
        http(&addr, "PUT", "/v1/desired", &[json, &bearer], &outside).0,
        403,
        "outside allowed_images"
    );
    assert_eq!(std::fs::read(s.path()).expect("read"), before, "refusals write nothing");

    let (status, answer) = http(&addr, "PUT", "/v1/desired", &[json, &bearer], &body);
    assert_eq!(status, 200, "{answer}");
    wait_for("the pushed image to run", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:2", s.repo) && d.output().contains(&format!("{web}: upgraded"))
    });
    let out = s.run.cli(&["validate", "-f", s.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "the written file validates");
    assert_eq!(
        s.image_of(&privileged),
        format!("{}:1", s.repo),
        "the refused selector's container was touched"
    );

    assert_eq!(http(&addr, "GET", "/v1/status", &[], "").0, 401, "reads need the token once one is set");
    let (_, status) = http(&addr, "GET", "/v1/status", &[&bearer], "");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let target = status["targets"].as_array().and_then(|t| t.first()).cloned().unwrap_or_default();
    assert_eq!(target["container"], web.as_str(), "{status:#}");
    assert_eq!(target["last_op"]["outcome"], "committed", "{status:#}");
    let (_, metrics) = http(&addr, "GET", "/metrics", &[&bearer], "");
    assert!(metrics.contains("container_upgrader_upgrades_total{outcome=\"committed\"} 1"), "{metrics}");
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_failed_containers_secrets_stay_out_of_status_webhook_journal_and_logs() {
    let s = setup("daemon_secrets");
    // The fixture prints `testbox <TESTBOX_VERSION> started`: a container
    // whose own environment value lands in its output, as a password
    // echoed by a misconfigured app does. `docker run -e` makes it the
    // user's setting, so the recreated (broken) container keeps it.
    let secret = "Hunter2-db-pa55word";
    s.run.run_container("web", &format!("{}:1", s.repo), &["-e", &format!("TESTBOX_VERSION={secret}")]);
    let web = s.run.name("web");
    let posts = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("receiver");
        let port = listener.local_addr().expect("addr").port();
        let report = format!("report: {{webhook: \"http://127.0.0.1:{port}/events\"}}\n");
        let policy = "policy:\n  allowed_images: [\"127.0.0.1:*\"]\n";
        s.write_in_place(&format!("{}{report}{policy}", s.text(&web, "broken", "")));
        receiver(listener)
    };
    let token = "a-long-enough-test-token-0123456789";
    let token_file = s.run.write_file("token", format!("{token}\n"));
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let addr = free_addr();
    let d = Daemon::start(
        &s.run,
        &s.path(),
        &s.state,
        &["--listen", &addr, "--token-file", token_file.to_str().expect("utf-8")],
    );
    wait_for("the rollback", Duration::from_secs(90), || d.output().contains("rolled back"));
    wait_for("the webhook event", Duration::from_secs(30), || posts.lock().is_ok_and(|p| !p.is_empty()));

    let bearer = format!("Authorization: Bearer {token}");
    let (code, status) = http(&addr, "GET", "/v1/status", &[&bearer], "");
    assert_eq!(code, 200, "{status}");
    let reason = serde_json::from_str::<serde_json::Value>(&status).expect("status JSON")["targets"][0]
        ["last_op"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("last output: testbox *** started"), "the output is quoted, masked: {reason}");
    let webhook = posts.lock().expect("lock").iter().map(|p| p.body.clone()).collect::<Vec<_>>().join("\n");
    let mut journal = String::new();
    for entry in std::fs::read_dir(PathBuf::from(&s.state).join("ops")).expect("ops dir").flatten() {
        journal.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    assert!(journal.contains("rolled_back"), "{journal}");
    let cli_status = s.run.cli(&["status", "--state-dir", &s.state, "--output", "json"]);
    let cli_status = String::from_utf8_lossy(&cli_status.stdout).into_owned();
    for (place, text) in
        [("/v1/status", &status), ("webhook", &webhook), ("journal", &journal), ("status", &cli_status)]
    {
        assert!(!text.contains(secret), "the secret is in the {place}: {text}");
    }
    assert!(!d.output().contains(secret), "the secret is in the daemon's log: {}", d.output());
    assert_eq!(d.terminate(), Some(0));
}

/// A loopback address nothing listens on yet (for the API).
fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    format!("127.0.0.1:{port}")
}

/// How many descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn thousands_of_idle_api_connections_neither_stop_reconciling_nor_the_api() {
    let s = setup("daemon_conn_flood");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    s.write_in_place(&s.text(&web, "1", ""));
    let addr = free_addr();
    let d = Daemon::start(&s.run, &s.path(), &s.state, &["--listen", &addr]);
    wait_for("the API and a first pass", Duration::from_secs(60), || {
        std::net::TcpStream::connect(&addr).is_ok() && d.output().contains("Reconciled:")
    });
    let pid = d.process.pid();
    let before = open_fds(pid);

    // 3,000 connections that never send a byte, all held open by the test.
    let mut idle = Vec::new();
    let mut peak = 0;
    for i in 0..3000 {
        if let Ok(c) = std::net::TcpStream::connect(&addr) {
            idle.push(c);
        }
        if i % 250 == 0 {
            peak = peak.max(open_fds(pid));
        }
    }
    assert!(idle.len() > 2500, "only {} connections opened", idle.len());
    peak = peak.max(open_fds(pid));
    assert!(
        peak <= before + container_upgrader::api::MAX_CONNECTIONS + 16,
        "the daemon held {peak} descriptors (had {before})"
    );

    // While they are open, the daemon still sees and applies a change.
    s.write_by_rename(&s.text(&web, "2", ""));
    wait_for("the upgrade during the flood", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:2", s.repo)
    });
    // And the API answers again within seconds: the silent ones time out.
    wait_for("the API to answer during the flood", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).is_ok() && http(&addr, "GET", "/healthz", &[], "").0 == 200
    });
    // The container shows :2 once renamed, before its gate passes and the
    // outcome is printed: wait for the outcome, don't race it.
    wait_for("the upgrade to be reported", Duration::from_secs(60), || {
        d.output().contains(&format!("{web}: upgraded"))
    });
    drop(idle);
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_flood_of_triggers_runs_passes_no_faster_than_the_floor() {
    let run = TestRun::new("daemon_pass_floor");
    let manifest = run.write_file(
        "desired-state.yaml",
        format!("version: 1\ndefaults:\n  drift_interval: 0\ntargets:\n  - container: {}\n    image: 127.0.0.1:1/app:1\n", run.name("absent")),
    );
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let addr = free_addr();
    let d = Daemon::start(&run, &manifest, &state, &["--listen", &addr]);
    wait_for("a first pass", Duration::from_secs(60), || d.output().contains("Reconciled:"));
    let passes = || -> u64 {
        let (_, metrics) = http(&addr, "GET", "/metrics", &[], "");
        metrics
            .lines()
            .filter(|l| l.starts_with("container_upgrader_passes_total{"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()))
            .sum()
    };
    let before = passes();
    // 6 s of SIGHUPs, 50 a second: each is a trigger.
    let pid = d.process.pid().to_string();
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        let _ = std::process::Command::new("kill").args(["-HUP", &pid]).status();
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran = passes() - before;
    assert!((1..=4).contains(&ran), "{ran} passes in 6 s with a 2 s floor");
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn sigterm_during_a_pass_lets_the_swap_in_flight_finish_and_starts_no_other() {
    let s = setup("daemon_sigterm_mid_pass");
    // b depends on a (compose's label), so b's swap waits for a's to pass
    // its 4 s gate: SIGTERM lands while a's swap is the only one in
    // flight. (`--parallel` bounds engine work, not gates, so two
    // independent swaps would both be in flight by then.)
    let project = format!("com.docker.compose.project={}", s.run.name("p"));
    let names: Vec<String> = [("a", ""), ("b", "a:service_started:false")]
        .iter()
        .map(|(n, depends_on)| {
            let service = format!("com.docker.compose.service={n}");
            let depends_on = format!("com.docker.compose.depends_on={depends_on}");
            let labels = ["--label", &project, "--label", &service, "--label", &depends_on];
            s.run.run_container(n, &format!("{}:1", s.repo), &labels);
            s.run.name(n)
        })
        .collect();
    let ids: Vec<String> = names.iter().map(|n| s.run.inspect(n, "{{.Id}}")).collect();
    let targets: String =
        names.iter().map(|n| format!("  - container: {n}\n    image: {}:2\n", s.repo)).collect();
    s.write_in_place(&format!(
        "version: 1\ndefaults:\n  drift_interval: 1h\n  health: {{stable: 4s, timeout: 30s}}\ntargets:\n{targets}"
    ));
    let mut d = Daemon::start(&s.run, &s.path(), &s.state, &["--parallel", "1"]);
    let ops = std::path::Path::new(&s.state).join("ops");
    wait_for("a swap to be in flight", Duration::from_secs(60), || {
        std::fs::read_dir(&ops).map(|d| d.count() > 0).unwrap_or(false)
    });
    d.sigterm();
    let code = d.exit_code(Duration::from_secs(40));
    let out = d.output();
    assert_eq!(code, Some(0), "SIGTERM exits 0 once the swap in flight is done:\n{out}");
    assert!(out.contains("stopping: no new swap starts"), "{out}");

    let images: Vec<String> = names.iter().map(|n| s.image_of(n)).collect();
    let upgraded: Vec<usize> = (0..2).filter(|&i| images[i] == format!("{}:2", s.repo)).collect();
    assert_eq!(upgraded, [0], "exactly the swap in flight (a's) finished: {images:?}\n{out}");
    let other = 1 - upgraded[0];
    assert_eq!(images[other], format!("{}:1", s.repo), "no new swap started");
    assert_eq!(s.run.inspect(&names[other], "{{.Id}}"), ids[other], "the other container is untouched");
    assert_eq!(s.run.inspect(&names[upgraded[0]], "{{.State.Running}}"), "true");
    let leftovers = s.run.docker(&["ps", "-a", "--filter", &s.run.label_filter(), "--format", "{{.Names}}"]);
    assert!(!leftovers.contains("--cu-"), "no temporary or backup container left: {leftovers}");
    let status = s.run.cli(&["status", "--state-dir", &s.state, "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let rows = status["containers"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "one op journaled: {status:#}");
    assert_eq!(rows[0]["container"], names[upgraded[0]].as_str());
    assert_eq!(rows[0]["outcome"], "committed", "{status:#}");
}

/// The ids of the finished ops in the journal of `state`.
fn finished_ops(state: &str) -> Vec<String> {
    let dir = std::path::Path::new(state).join("ops");
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .expect("ops")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter(|op| {
            let last = op["steps"].as_array().and_then(|s| s.last()).map(|s| s["step"].clone());
            matches!(last.as_ref().and_then(|s| s.as_str()), Some("committed" | "rolled_back" | "failed"))
        })
        .filter_map(|op| op["op_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn outbox_files(state: &str) -> usize {
    std::fs::read_dir(std::path::Path::new(state).join("outbox"))
        .map(|d| {
            d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count()
        })
        .unwrap_or(0)
}

#[test]
fn events_queued_while_the_receiver_hung_are_delivered_after_a_restart() {
    let s = setup("daemon_webhook_outbox");
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            s.run.run_container(n, &format!("{}:1", s.repo), &[]);
            s.run.name(n)
        })
        .collect();
    // A receiver that accepts connections and never answers: every POST
    // hangs until the controller's timeout.
    let hung = TcpListener::bind("127.0.0.1:0").expect("hung receiver");
    let port = hung.local_addr().expect("addr").port();
    let manifest = |tags: [&str; 3]| {
        let targets: String = names
            .iter()
            .zip(tags)
            .map(|(n, tag)| format!("  - container: {n}\n    image: {}:{tag}\n", s.repo))
            .collect();
        format!(
            "version: 1\ndefaults:\n  drift_interval: 1h\n  health: {{stable: 1s, timeout: 20s}}\nreport: {{webhook: \"http://127.0.0.1:{port}/events\"}}\ntargets:\n{targets}"
        )
    };
    s.write_in_place(&manifest(["2", "2", "2"]));
    let d = Daemon::start(&s.run, &s.path(), &s.state, &[]);
    wait_for("three upgrades", Duration::from_secs(90), || d.output().contains("Reconciled: 3 upgraded"));
    s.write_by_rename(&manifest(["broken", "broken", "2"]));
    wait_for("two rollbacks", Duration::from_secs(90), || d.output().contains("2 rolled back"));
    let ops = finished_ops(&s.state);
    assert_eq!(ops.len(), 5, "five ops journaled");
    wait_for("five events in the outbox", Duration::from_secs(10), || outbox_files(&s.state) == 5);
    assert_eq!(d.terminate(), Some(0), "SIGTERM exits 0 even with a POST hanging");

    // The receiver is down now, and the controller restarts.
    drop(hung);
    let d = Daemon::start(&s.run, &s.path(), &s.state, &[]);
    wait_for("the first pass after the restart", Duration::from_secs(60), || {
        d.output().contains("Reconciled:")
    });
    assert_eq!(outbox_files(&s.state), 5, "nothing lost while the receiver is down");

    let posts = receiver(TcpListener::bind(("127.0.0.1", port)).expect("receiver back"));
    let delivered = || -> Vec<String> {
        let mut ids: Vec<String> = posts.lock().expect("lock").iter().filter_map(|p| p.key.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    wait_for("every event delivered", Duration::from_secs(90), || delivered() == ops);
    for post in posts.lock().expect("lock").iter() {
        let event: serde_json::Value = serde_json::from_str(&post.body).expect("JSON");
        assert_eq!(event["op_id"].as_str(), post.key.as_deref(), "the op id is the idempotency key");
    }
    let outcomes: Vec<String> = posts
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(&p.body).ok())
        .filter_map(|e| e["outcome"].as_str().map(str::to_string))
        .collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "committed").count(), 3, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "rolled_back").count(), 2, "{outcomes:?}");
    wait_for("the outbox to empty", Duration::from_secs(10), || outbox_files(&s.state) == 0);
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_target_that_cannot_be_resolved_is_counted_named_and_retried() {
    let s = setup("daemon_failure_named");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    // A registry nobody serves: the target is in error on every pass.
    let closed = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let text = format!(
        "version: 1\ndefaults:\n  drift_interval: 1h\ntargets:\n  - container: {web}\n    image: 127.0.0.1:{closed}/app:2\n"
    );
    s.write_in_place(&text);
    let once =
        s.run.cli(&["reconcile", "-f", s.path().to_str().expect("utf-8"), "--once", "--state-dir", &s.state]);
    let stdout = String::from_utf8_lossy(&once.stdout);
    assert_eq!(once.status.code(), Some(7), "{stdout}");
    assert!(stdout.contains(&format!("1 errors, 0 up to date. Failed: {web} (error).")), "{stdout}");

    let addr = free_addr();
    let d = Daemon::start(&s.run, &s.path(), &s.state, &["--listen", &addr]);
    wait_for("the API", Duration::from_secs(60), || std::net::TcpStream::connect(&addr).is_ok());
    // The drift timer is 1 h: only the retry after the failure runs a second pass.
    wait_for("a retried pass", Duration::from_secs(60), || {
        http(&addr, "GET", "/metrics", &[], "")
            .1
            .contains("container_upgrader_passes_total{trigger=\"retry\"} 1")
    });
    let (_, metrics) = http(&addr, "GET", "/metrics", &[], "");
    assert!(metrics.contains("container_upgrader_last_pass_failures 1"), "{metrics}");
    assert!(!metrics.contains("container_upgrader_failures_total{kind=\"error\"} 0"), "{metrics}");
    let (_, status) = http(&addr, "GET", "/v1/status", &[], "");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let failure = &status["last_pass"]["summary"]["failures"][0];
    assert_eq!(failure["container"], web.as_str(), "{status:#}");
    assert_eq!(failure["kind"], "error", "{status:#}");
    assert_eq!(status["last_pass"]["summary"]["errors"], 1, "{status:#}");
    assert_eq!(status["targets"][0]["failure"]["kind"], "error", "{status:#}");
    assert!(d.output().contains(&format!("Failed: {web} (error).")), "{}", d.output());
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_second_sigterm_forces_the_exit_and_the_next_start_finishes_the_swap() {
    let s = setup("daemon_forced_stop");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    // A long gate: the first SIGTERM alone would wait 30 s for it.
    s.write_in_place(&format!(
        "version: 1\ndefaults:\n  drift_interval: 1h\n  health: {{stable: 30s, timeout: 60s}}\ntargets:\n  - container: {web}\n    image: {}:2\n",
        s.repo
    ));
    let mut d = Daemon::start(&s.run, &s.path(), &s.state, &[]);
    let ops = std::path::Path::new(&s.state).join("ops");
    wait_for("a swap in flight", Duration::from_secs(60), || {
        std::fs::read_dir(&ops).map(|d| d.count() > 0).unwrap_or(false)
    });
    d.sigterm();
    wait_for("the drain to begin", Duration::from_secs(10), || {
        d.output().contains("stopping: no new swap starts")
    });
    d.sigterm();
    let code = d.exit_code(Duration::from_secs(10));
    assert_eq!(code, Some(8), "forced, long before the gate ends:\n{}", d.output());

    let out = s.run.cli(&["recover", "--state-dir", &s.state]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.run.inspect(&web, "{{.State.Running}}"), "true", "a container runs under the name");
    let leftovers = s.run.docker(&["ps", "-a", "--filter", &s.run.label_filter(), "--format", "{{.Names}}"]);
    assert!(!leftovers.contains("--cu-"), "no temporary or backup container left: {leftovers}");
}

#[test]
fn allow_any_image_lets_a_push_without_a_policy_write_and_is_warned_about_at_start() {
    let s = setup("daemon_allow_any_image");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    s.write_in_place(&s.text(&web, "1", ""));
    let token = "a-long-enough-test-token-0123456789";
    let token_file = s.run.write_file("token", format!("{token}\n"));
    let addr = free_addr();
    let token_path = token_file.to_str().expect("utf-8");
    let args = ["--listen", &addr, "--token-file", token_path, "--allow-any-image"];
    let d = Daemon::start(&s.run, &s.path(), &s.state, &args);
    wait_for("the API", Duration::from_secs(60), || {
        std::net::TcpStream::connect(&addr).is_ok() && d.output().contains("Reconciled:")
    });
    assert!(
        d.output().contains("--allow-any-image: when the manifest has no policy.allowed_images"),
        "{}",
        d.output()
    );

    let body = format!("{{\"target\": \"{web}\", \"image\": \"{}:2\"}}", s.repo);
    let bearer = format!("Authorization: Bearer {token}");
    let (status, answer) =
        http(&addr, "PUT", "/v1/desired", &["Content-Type: application/json", &bearer], &body);
    assert_eq!(status, 200, "{answer}");
    wait_for("the pushed image to run", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:2", s.repo)
    });
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn running_out_of_descriptors_is_not_remembered_once_they_are_back() {
    // The daemon's own descriptor limit is lowered below the API's
    // connection cap, so a flood of idle connections leaves it none: a pass
    // then fails (no socket for the registry, no CA store, no manifest).
    // Once the flood is gone, the next pass must work — no failed client
    // may be kept for later passes.
    let s = setup("daemon_fd_exhaustion");
    s.run.run_container("web", &format!("{}:1", s.repo), &[]);
    let web = s.run.name("web");
    let text = |tag: &str| s.text(&web, tag, "").replace("drift_interval: 1h", "drift_interval: 2s");
    s.write_in_place(&text("1"));
    let addr = free_addr();
    let d = Daemon::start(&s.run, &s.path(), &s.state, &["--listen", &addr]);
    wait_for("the API and a first pass", Duration::from_secs(60), || {
        std::net::TcpStream::connect(&addr).is_ok() && d.output().contains("Reconciled:")
    });
    let pid = d.process.pid().to_string();
    // Fewer spare descriptors than the API lets one address hold (32):
    // the flood, all from loopback, must still be able to use them up.
    let limit = open_fds(d.process.pid()) + 20;
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit");
    assert!(lowered.success());

    let mut idle: Vec<std::net::TcpStream> =
        (0..200).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    wait_for("the daemon to run out of descriptors", Duration::from_secs(30), || {
        idle.extend(std::net::TcpStream::connect(&addr).ok());
        open_fds(d.process.pid()) >= limit
    });
    s.write_by_rename(&text("2"));
    wait_for("a pass to fail for want of descriptors", Duration::from_secs(60), || {
        let out = d.output();
        out.contains("Too many open files") || out.contains("os error 24")
    });
    drop(idle);
    // The silent connections are cut within seconds; then the upgrade
    // happens at the next drift check, not after any cache expires.
    wait_for("the upgrade once descriptors are back", Duration::from_secs(60), || {
        s.image_of(&web) == format!("{}:2", s.repo) && d.output().contains(&format!("{web}: upgraded"))
    });
    assert_eq!(d.terminate(), Some(0));
}
