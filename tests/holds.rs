//! A pull that fails is held like a failed gate: `run` with a 1 s drift
//! interval does not pull every second while the registry cannot serve the
//! image, but retries on the backoff (here shortened with
//! `CONTAINER_UPGRADER_HOLD_BASE=2s`), counted at the registry; `status`
//! says the image is held and why; the container is untouched.
#![cfg(feature = "docker-tests")]

mod common;

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use common::{wait_for, TestRun};

#[test]
fn a_failing_pull_is_retried_on_the_backoff_not_every_pass() {
    let run = TestRun::new("holds_failing_pull");
    let (registry, repo) = run.registry_with_versions();
    run.run_container("web", &format!("{repo}:1"), &[]);
    let web = run.name("web");
    let old = run.inspect(&web, "{{.Id}}");

    // The registry still lists app:2 (the plan sees an upgrade) but cannot
    // serve its config blob: every pull of it fails.
    let config = run.inspect(&format!("{repo}:2"), "{{.Id}}");
    let hex = config.trim_start_matches("sha256:");
    let blob = registry.storage().join(format!("docker/registry/v2/blobs/sha256/{}/{hex}", &hex[..2]));
    std::fs::remove_dir_all(&blob).unwrap_or_else(|e| panic!("removing {}: {e}", blob.display()));
    run.docker(&["rmi", &format!("{repo}:2")]);

    let manifest = run.write_file(
        "desired-state.yaml",
        format!("version: 1\ndefaults:\n  drift_interval: 2s\ntargets:\n  - container: {web}\n    image: {repo}:2\n"),
    );
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let log = run.write_file("run.log", "");
    let mut daemon = run
        .cli_command()
        .args(["run", "-f", manifest.to_str().expect("utf-8"), "--state-dir", &state])
        .env("CONTAINER_UPGRADER_HOLD_BASE", "2s")
        .stdout(Stdio::from(File::create(&log).expect("log")))
        .stderr(Stdio::from(File::options().append(true).open(&log).expect("log")))
        .spawn()
        .expect("spawn run");

    // Each pull by the engine fetches the planned digest's manifest once
    // (the swap pulls `app@sha256:…`, not the tag), sent with the engine's
    // user agent (the plan's own lookups carry another).
    let attempts = || {
        let log = registry.log();
        log.lines()
            .filter(|l| l.contains("\"GET ") && l.contains("/manifests/sha256:") && l.contains("\"docker/"))
            .count()
    };
    wait_for("a first pull attempt", Duration::from_secs(60), || attempts() >= 1);
    // 8 drift intervals: held 2 s, then 4 s, then 8 s (each + ≤ 20 %).
    std::thread::sleep(Duration::from_secs(16));
    let seen = attempts();
    let _ = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let _ = daemon.wait();
    let output = std::fs::read_to_string(&log).expect("log");
    assert!((2..=4).contains(&seen), "pull attempts over 16 passes follow the backoff: {seen}\n{output}");

    let status = run.cli(&["status", "--state-dir", &state, "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let entry = status["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["container"] == web.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(entry["outcome"], "aborted", "{entry}");
    assert!(entry["reason"].as_str().unwrap_or_default().contains("pulling"), "{entry}");
    assert!(entry["held_until"].is_string(), "held, and status says so: {entry}");
    assert_eq!(run.inspect(&web, "{{.Id}}"), old, "the container is untouched");
    assert_eq!(run.inspect(&web, "{{.State.Running}}"), "true");
}
