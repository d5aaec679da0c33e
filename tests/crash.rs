//! Crash safety: the upgrader is SIGKILLed right after each journal step
//! (and while each hook runs),
//! then `recover` runs. Every time, exactly one container carries the
//! target's name, it runs the old or the new image, no backup or temporary
//! container is left, and the volume's data is intact.
#![cfg(all(feature = "docker-tests", feature = "fault-injection"))]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{ImageSpec, TestRun};

const STEPS: [&str; 5] = ["prepared", "created", "stopped", "started", "committed"];

struct Case {
    run: TestRun,
    _registry: common::TestRegistry,
    repo: String,
    state: String,
}

fn case(test: &str) -> Case {
    let run = TestRun::new(test);
    let (registry, repo) = run.registry_with_versions();
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    Case { run, _registry: registry, repo, state }
}

impl Case {
    /// A running app:1 container named `suffix` with marker data in a volume.
    fn web(&self, suffix: &str) -> String {
        let volume = self.run.volume(&format!("{suffix}-data"));
        let mount = format!("{volume}:/data");
        self.run.run_container(suffix, &format!("{}:1", self.repo), &["-v", &mount]);
        let name = self.run.name(suffix);
        let marker = self.run.write_file(&format!("{suffix}-marker"), "precious data\n");
        self.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
        name
    }

    /// Starts `upgrade` with the fault hook and SIGKILLs it right after `step`.
    fn upgrade_killed_after(&self, name: &str, image: &str, step: &str) {
        let args = ["upgrade", name, "--image", image, "--state-dir", &self.state, "--stable", "1s"];
        let marker = format!("fault-injection: paused after {step}");
        let killed = self.run.cli_killed_at(&args, ("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", step), &marker);
        assert!(killed, "upgrade never reached {step}");
    }

    fn recover(&self) {
        let out = self.run.cli(&["recover", "--state-dir", &self.state]);
        assert!(
            out.status.success(),
            "recover failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The invariant. Returns the image the survivor runs.
    fn invariant(&self, name: &str) -> String {
        let filter = format!("name=^/{name}$");
        let ids = self.run.docker(&["ps", "-aq", "--filter", &filter]);
        assert_eq!(ids.lines().count(), 1, "exactly one container named {name}: {ids:?}");
        assert_eq!(self.run.inspect(name, "{{.State.Running}}"), "true", "{name} runs");
        let image = self.run.inspect(name, "{{.Config.Image}}");
        assert!(image == format!("{}:1", self.repo) || image == format!("{}:2", self.repo), "{image}");
        let names =
            self.run.docker(&["ps", "-a", "--filter", &self.run.label_filter(), "--format", "{{.Names}}"]);
        assert!(!names.contains("--cu-"), "leftovers after recover: {names}");
        let dest =
            self.run.write_file(&format!("out-{name}/.keep"), "").parent().expect("dir").join("marker");
        self.run.docker(&["cp", &format!("{name}:/data/marker"), dest.to_str().expect("utf-8")]);
        assert_eq!(std::fs::read_to_string(&dest).expect("marker"), "precious data\n", "data intact");
        image
    }
}

#[test]
fn sigkill_at_every_journal_step_then_recover_keeps_the_invariant() {
    let c = case("sigkill_every_step");
    let image = format!("{}:2", c.repo);
    for step in STEPS {
        let name = c.web(step);
        c.upgrade_killed_after(&name, &image, step);
        c.recover();
        let survivor = c.invariant(&name);
        // Before the commit the old container is restored; after it the new one stays.
        let expected = if step == "committed" { &image } else { &format!("{}:1", c.repo) };
        assert_eq!(&survivor, expected, "after a kill at {step}");
        // A second recover has nothing left to do.
        c.recover();
        c.invariant(&name);
    }
}

#[test]
fn sigkill_during_a_failing_gate_then_recover_restores_the_old_container() {
    let c = case("sigkill_failing_gate");
    let broken = format!("{}:broken", c.repo);
    c.run.build_image(
        &broken,
        &ImageSpec {
            env: vec![("TESTBOX_EXIT_AFTER_MS", "200"), ("TESTBOX_EXIT_CODE", "9")],
            ..Default::default()
        },
    );
    c.run.push(&broken);
    let name = c.web("gate");
    let old = c.run.inspect(&name, "{{.Id}}");
    c.upgrade_killed_after(&name, &broken, "started");
    c.recover();
    c.invariant(&name);
    assert_eq!(c.run.inspect(&name, "{{.Id}}"), old, "the very same old container");
}

#[test]
fn a_port_stolen_mid_swap_is_rolled_back_or_recovered() {
    // The old container publishes a host port. Right after it is stopped,
    // another process takes the port: the engine refuses to start the new
    // container, and the rollback cannot start the old one either. The
    // upgrader says so (exit 8); once the port is free, `recover` restores
    // the old container.
    let c = case("port_stolen_mid_swap");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let volume = c.run.volume("ported-data");
    let mount = format!("{volume}:/data");
    let publish = format!("127.0.0.1:{port}:8080");
    c.run.run_container("ported", &format!("{}:1", c.repo), &["-v", &mount, "-p", &publish]);
    let name = c.run.name("ported");
    let marker = c.run.write_file("ported-marker", "precious data\n");
    c.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
    let old = c.run.inspect(&name, "{{.Id}}");

    let image = format!("{}:2", c.repo);
    let child = c
        .run
        .cli_command()
        .args(["upgrade", &name, "--image", &image, "--state-dir", &c.state, "--stable", "1s"])
        .env("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", "stopped")
        .env("CONTAINER_UPGRADER_FAULT_PAUSE_MS", "3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the old container has stopped, then take its port.
    common::wait_for("the old container to stop", Duration::from_secs(60), || {
        c.run.inspect(&old, "{{.State.Running}}") == "false"
    });
    let thief = std::net::TcpListener::bind(("127.0.0.1", port)).expect("steal the port");
    let out = child.wait_with_output().expect("upgrade finishes");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "needs attention: {err}");
    assert!(err.contains("starting the new container failed"), "{err}");
    assert!(err.contains("run `container-upgrader recover`"), "{err}");
    // The op stays unfinished, with why, for `recover` to finish.
    let status = c.run.cli(&["status", "--state-dir", &c.state, "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let op = &status["containers"][0];
    let outcome = op["outcome"].as_str().unwrap_or_default();
    assert!(!["committed", "rolled_back", "failed", "aborted"].contains(&outcome), "unfinished: {op}");
    assert!(op["reason"].as_str().unwrap_or_default().contains("rollback failed"), "{op}");

    drop(thief);
    c.recover();
    c.invariant(&name);
    assert_eq!(c.run.inspect(&name, "{{.Id}}"), old, "the very same old container");
}

#[test]
fn a_container_sharing_the_network_is_brought_back_by_recover_after_a_kill() {
    let c = case("sigkill_with_network_dependent");
    let image = format!("{}:2", c.repo);
    // Killed after `stopped`, recover restores the old peer (a new
    // namespace, same id): the client is restarted into it. Killed after
    // `committed`, the old peer is gone: the client is recreated in the new
    // one's namespace.
    for step in ["stopped", "committed"] {
        let vpn = c.web(&format!("vpn-{step}"));
        let client = c.run.run_in_network_of(&vpn, &format!("client-{step}"), &format!("{}:1", c.repo), &[]);
        c.upgrade_killed_after(&vpn, &image, step);
        c.recover();
        c.invariant(&vpn);
        assert_eq!(c.run.inspect(&client, "{{.State.Running}}"), "true", "after a kill at {step}");
        assert_eq!(c.run.netns(&client), c.run.netns(&vpn), "one namespace again after a kill at {step}");
        // Nothing left for a second recover.
        let out = c.run.cli(&["recover", "--state-dir", &c.state]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "nothing to recover",
            "after a kill at {step}"
        );
    }
}

#[test]
fn a_container_linking_to_the_target_is_recreated_by_recover_after_a_kill() {
    let c = case("sigkill_with_link_dependent");
    let image = format!("{}:2", c.repo);
    // Killed after `committed`, before the swap brought its dependents
    // along: the engine left the link on the backup, which recover removes.
    // Without the convergence net the dependent could never start again.
    let db = c.web("db");
    let app = c.run.run_container("app", &format!("{}:1", c.repo), &["--link", &format!("{db}:database")]);
    let app = c.run.inspect(&app, "{{.Name}}").trim_start_matches('/').to_string();
    c.upgrade_killed_after(&db, &image, "committed");
    c.recover();
    c.invariant(&db);
    assert_eq!(c.run.inspect(&app, "{{.HostConfig.Links}}"), format!("[/{db}:/{app}/database]"));
    assert_eq!(c.run.inspect(&app, "{{.State.Running}}"), "true");
    c.run.docker(&["restart", "-t", "1", &app]);
    assert_eq!(c.run.inspect(&app, "{{.State.Running}}"), "true", "it can be started again");
    let out = c.run.cli(&["recover", "--state-dir", &c.state]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "nothing to recover");
}

/// Starts `reconcile --once` of `name` to `image` with `hooks`, and
/// SIGKILLs it while the hook journaled as `step` is running (the hooks
/// used here take 20 s; the kill comes 1.5 s after the step is recorded).
fn reconcile_killed_during(c: &Case, name: &str, image: &str, hooks: &str, step: &str) {
    use std::io::{BufRead, BufReader};
    let manifest = format!(
        "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\ntargets:\n  - container: {name}\n    image: {image}\n    hooks:\n{hooks}"
    );
    let file = c.run.write_file(&format!("{name}.yaml"), &manifest);
    let mut child = c
        .run
        .cli_command()
        .args(["reconcile", "-f", file.to_str().expect("utf-8"), "--once", "--state-dir", &c.state])
        .env("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", step)
        .env("CONTAINER_UPGRADER_FAULT_PAUSE_MS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("piped stderr");
    let marker = format!("fault-injection: paused after {step}");
    // Read on to the end in a thread: a closed pipe would make the
    // process's next log line fail before the kill.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        panic!("reconcile never reached {step}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().expect("wait").is_none(), "reconcile ended before the kill at {step}");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

#[test]
fn sigkill_during_each_hook_then_recover_keeps_the_invariant() {
    let c = case("sigkill_during_hooks");
    let image = format!("{}:2", c.repo);
    let slow = "{exec: [/testbox, pause, '20000'], timeout: 60s}";
    let cases = [
        ("pre_upgrade", format!("      pre_upgrade: {slow}\n"), "aborted"),
        ("post_upgrade", format!("      post_upgrade: {slow}\n"), "rolled_back"),
        (
            "pre_rollback",
            format!("      post_upgrade: {{exec: [/testbox, fail, smoke test failed]}}\n      pre_rollback: {slow}\n"),
            "rolled_back",
        ),
    ];
    for (step, hooks, outcome) in cases {
        let name = c.web(&format!("hook-{}", step.replace('_', "-")));
        let old = c.run.inspect(&name, "{{.Id}}");
        reconcile_killed_during(&c, &name, &image, &hooks, step);
        c.recover();
        assert_eq!(c.invariant(&name), format!("{}:1", c.repo), "after a kill during {step}");
        assert_eq!(
            c.run.inspect(&name, "{{.Id}}"),
            old,
            "the very same old container after a kill during {step}"
        );
        let status = c.run.cli(&["status", "--state-dir", &c.state, "--output", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
        let row = status["containers"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["container"] == name.as_str()).cloned())
            .expect("status row");
        assert_eq!(row["outcome"], outcome, "after a kill during {step}: {row}");
        let out = c.run.cli(&["recover", "--state-dir", &c.state]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "nothing to recover",
            "after a kill during {step}"
        );
    }
}

#[test]
fn start_first_killed_after_the_old_left_its_networks_recovers_it_onto_them() {
    let c = case("sigkill_start_first_networks");
    let image = format!("{}:2", c.repo);
    let net = c.run.network("svc");
    let aliases = format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}");
    // After `stopping` the intent (with the networks) is journaled; the kill
    // is made to fall after the disconnect by doing it here. After
    // `stopped` the old container really is off its network, stopped and
    // renamed.
    for step in ["stopping", "stopped"] {
        let volume = c.run.volume(&format!("sf-{step}-data"));
        let mount = format!("{volume}:/data");
        let args = ["-v", &mount, "--network", &net, "--network-alias", "svc", "--stop-timeout", "1"];
        c.run.run_container(&format!("sf-{step}"), &format!("{}:1", c.repo), &args);
        let name = c.run.name(&format!("sf-{step}"));
        let marker = c.run.write_file(&format!("sf-{step}-marker"), "precious data\n");
        c.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
        let old = c.run.inspect(&name, "{{.Id}}");

        let args = [
            "upgrade",
            &name,
            "--image",
            &image,
            "--state-dir",
            &c.state,
            "--stable",
            "1s",
            "--order",
            "start-first",
        ];
        let marker = format!("fault-injection: paused after {step}");
        let killed = c.run.cli_killed_at(&args, ("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", step), &marker);
        assert!(killed, "upgrade never reached {step}");
        if step == "stopping" {
            c.run.docker(&["network", "disconnect", &net, &old]);
        }
        let networks = c.run.inspect(&old, "{{json .NetworkSettings.Networks}}");
        assert!(!networks.contains(&format!("\"{net}\"")), "off {net} after a kill at {step}: {networks}");
        c.recover();
        c.invariant(&name);
        assert_eq!(c.run.inspect(&name, "{{.Id}}"), old, "the very same old container after {step}");
        let back = c.run.inspect(&name, &aliases);
        assert!(back.contains("\"svc\""), "on {net} with its alias after a kill at {step}: {back}");
    }
}
