//! Swarm services (issue 14) on a single-node Swarm the tests make of the
//! engine (and undo when they end, see `TestRun::on_swarm`): a service target is upgraded by a watched service
//! update, rolled back by Swarm when its new tasks fail, put back on its
//! pin after a hand-made update, and never updated on top of an update
//! under way.
#![cfg(feature = "docker-tests")]

mod common;

use std::time::Duration;

use common::{ImageSpec, Sampler, TestRegistry, TestRun};
use serde_json::Value;

/// `repo:1` and `repo:2` that run, `repo:3` whose tasks exit with code 5
/// after 300 ms.
fn publish(run: &TestRun, registry: &TestRegistry) -> String {
    let repo = registry.repo("app");
    run.publish_versions(&repo);
    let exits = ImageSpec {
        env: vec![("TESTBOX_VERSION", "3"), ("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "5")],
        ..Default::default()
    };
    run.publish(&format!("{repo}:3"), &exits);
    repo
}

/// A manifest with one service target on `image`, `extra` lines under it.
fn manifest(run: &TestRun, service: &str, image: &str, extra: &str) -> String {
    let text = format!(
        "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 20s}}\ntargets:\n  - service: {service}\n    image: {image}\n{extra}"
    );
    run.write_file("desired-state.yaml", text).display().to_string()
}

/// `reconcile --once`; returns the exit code, stdout and stderr.
fn reconcile(run: &TestRun, manifest: &str) -> (Option<i32>, String, String) {
    let state = run.empty_dir("state").display().to_string();
    let out = run.cli(&["reconcile", "-f", manifest, "--once", "--state-dir", &state]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `status --output json`: the last op of each target (services too).
fn status(run: &TestRun) -> Value {
    let state = run.empty_dir("state").display().to_string();
    let out = run.cli(&["status", "--state-dir", &state, "--output", "json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn last_op<'a>(status: &'a Value, service: &str) -> &'a Value {
    status["containers"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["container"] == service))
        .unwrap_or_else(|| panic!("no status row for {service}: {status:#}"))
}

#[test]
fn a_three_replica_service_upgraded_to_a_good_version_commits() {
    let run = TestRun::on_swarm("swarm_commits");
    let registry = run.registry();
    let repo = publish(&run, &registry);
    let service = run.service("web", &format!("{repo}:1"), 3, &[]);
    let file = manifest(&run, &service, &format!("{repo}:2"), "    update: {parallelism: 2}\n");

    // The plan reads the service as it reads a container.
    let out = run.cli(&["plan", "-f", &file, "--output", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let entry = &plan["actions"][0];
    assert_eq!(entry["target"], format!("service {service}"), "{plan:#}");
    assert_eq!((entry["action"].as_str(), entry["reason"].as_str()), (Some("upgrade"), Some("tag 1 → 2")));

    let (code, stdout, stderr) = reconcile(&run, &file);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Reconciled: 1 upgraded, 0 rolled back"), "{stdout}");
    let digest = run.registry_digest(&format!("{repo}:2"));
    assert_eq!(run.service_image(&service), format!("{repo}:2@{digest}"), "pinned by digest");
    assert_eq!(run.update_status(&service).0, "completed");
    run.wait_running(&service, 3);
    // Swarm took the rollout settings from the target.
    let config = run.docker(&[
        "service",
        "inspect",
        "-f",
        "{{.Spec.UpdateConfig.Parallelism}} {{.Spec.UpdateConfig.FailureAction}} {{.Spec.UpdateConfig.Monitor}} {{.Spec.UpdateConfig.Order}}",
        &service,
    ]);
    assert_eq!(config, "2 rollback 1s stop-first");

    let op = last_op(&status(&run), &service).clone();
    assert_eq!(op["outcome"], "committed", "{op:#}");
    assert_eq!(op["to"], format!("{repo}:2"));
    assert_eq!(op["service"], true, "told from a container swap: {op:#}");

    // The next pass has nothing to do.
    let (code, stdout, stderr) = reconcile(&run, &file);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 upgraded") && stdout.contains("1 up to date"), "{stdout}");
}

#[test]
fn a_service_whose_new_tasks_exit_is_rolled_back_by_swarm_with_the_task_error() {
    let run = TestRun::on_swarm("swarm_rolls_back");
    let registry = run.registry();
    let repo = publish(&run, &registry);
    let service = run.service("web", &format!("{repo}:1"), 3, &[]);
    let before = run.service_image(&service);
    let file = manifest(&run, &service, &format!("{repo}:3"), "    health: {stable: 3s}\n");

    let (code, stdout, stderr) = reconcile(&run, &file);
    assert_eq!(code, Some(6), "rolled back\n{stdout}\n{stderr}");
    assert!(stdout.contains("0 upgraded, 1 rolled back"), "{stdout}");
    assert!(stderr.contains("non-zero exit (5)"), "the task's error is the reason: {stderr}");
    assert_eq!(run.update_status(&service).0, "rollback_completed");
    assert_eq!(run.service_image(&service), before, "back on the old spec");
    run.wait_running(&service, 3);

    let op = last_op(&status(&run), &service).clone();
    assert_eq!(op["outcome"], "rolled_back", "{op:#}");
    assert!(op["reason"].as_str().is_some_and(|r| r.contains("non-zero exit (5)")), "{op:#}");

    // The failed image is held, not retried on the next pass.
    let (code, stdout, stderr) = reconcile(&run, &file);
    assert_eq!(code, Some(7), "held\n{stdout}\n{stderr}");
    assert!(stderr.contains("held: upgrade to"), "{stderr}");
}

#[test]
fn a_hand_made_update_is_waited_for_then_put_back_on_the_pin() {
    let run = TestRun::on_swarm("swarm_drift");
    let registry = run.registry();
    let repo = publish(&run, &registry);
    let service = run.service("web", &format!("{repo}:2"), 3, &[]);
    let file = manifest(&run, &service, &format!("{repo}:2"), "");
    let pinned = run.service_image(&service);

    // By hand, back to 1, slowly: 3 tasks one by one, 2 s apart.
    run.docker(&[
        "service",
        "update",
        "--detach",
        "--update-delay",
        "2s",
        "--image",
        &format!("{repo}:1"),
        &service,
    ]);
    // Every distinct (start, state) of the service's updates, in order.
    let watched = service.clone();
    let sampler = Sampler::start(Duration::from_millis(100), move || {
        let format = "{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}} {{.UpdateStatus.State}}{{end}}";
        common::try_docker(&["service", "inspect", "-f", format, &watched]).unwrap_or_default()
    });
    let (code, stdout, stderr) = reconcile(&run, &file);
    let samples = sampler.finish();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 upgraded"), "{stdout}");
    assert_eq!(run.service_image(&service), pinned, "back on the pin");
    run.wait_running(&service, 3);

    let mut seen: Vec<(String, String)> = Vec::new();
    for (_, s) in samples {
        // `StartedAt` has spaces (`2026-12-01 10:25:27.1 +0000 UTC`).
        let Some((started, state)) = s.rsplit_once(' ') else { continue };
        if seen.last().is_none_or(|(a, b)| a != started || b != state) {
            seen.push((started.to_string(), state.to_string()));
        }
    }
    // The hand-made update ran through every slot before ours began: each
    // of the three slots had a task on image 1 (an update stacked on it
    // midway would have left the later slots without one). The task
    // history says so after the fact; a sampler can miss the moment the
    // hand-made update reads `completed` (the controller starts within
    // its 500 ms poll of it).
    let tasks =
        common::try_docker(&["service", "ps", "--no-trunc", "--format", "{{.Name}}|{{.Image}}", &service])
            .unwrap_or_default();
    let hand_image = format!("{repo}:1");
    let mut slots: Vec<&str> = tasks
        .lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(_, image)| image.starts_with(&hand_image))
        .map(|(name, _)| name)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(
        slots.len(),
        3,
        "never stacked: every slot ran image 1 first ({tasks}); updates seen: {seen:?}"
    );
    let first = seen.first().map(|(s, _)| s.clone()).unwrap_or_default();
    assert!(seen.iter().any(|(s, _)| *s != first), "no second update: {seen:?}");
}

#[test]
fn start_first_keeps_every_replica_running_throughout() {
    let run = TestRun::on_swarm("swarm_start_first");
    let registry = run.registry();
    let repo = publish(&run, &registry);
    let service = run.service("web", &format!("{repo}:1"), 3, &[]);
    let file = manifest(&run, &service, &format!("{repo}:2"), "    order: start-first\n");

    let watched = service.clone();
    let sampler = Sampler::start(Duration::from_millis(100), move || common::running_tasks(&watched));
    let (code, stdout, stderr) = reconcile(&run, &file);
    let samples = sampler.finish();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 upgraded"), "{stdout}");
    assert!(samples.len() > 20, "sampled throughout: {} samples", samples.len());
    let fewest = samples.iter().map(|(_, n)| *n).min().unwrap_or(0);
    assert!(fewest >= 3, "a replica was missing: {samples:?}");
    // And the old ones did go: start-first overlaps, it does not add.
    run.wait_running(&service, 3);
}

#[test]
fn the_controller_deployed_as_a_service_upgrades_its_own_service_without_a_helper() {
    const STATE: &str = "/var/lib/container-upgrader";
    let run = TestRun::on_swarm("swarm_self_upgrade");
    let registry = run.registry();
    let ctl = registry.repo("ctl");
    for tag in ["1", "2"] {
        run.build_upgrader_image(&format!("{ctl}:{tag}"), &[&format!("LABEL version={tag}")]);
        run.push(&format!("{ctl}:{tag}"));
    }
    let state = run.volume("state");
    let dir = run.write_file("manifest/.keep", "").parent().expect("dir").to_path_buf();
    let name = run.name("ctl");
    let write_manifest = |tag: &str| {
        let text = format!(
            "version: 1\ndefaults:\n  drift_interval: 2s\n  health: {{stable: 2s, timeout: 30s}}\ntargets:\n  - service: {name}\n    image: {ctl}:{tag}\n"
        );
        let tmp = dir.join(".desired-state.yaml.tmp");
        std::fs::write(&tmp, text).expect("write manifest");
        std::fs::rename(&tmp, dir.join("desired-state.yaml")).expect("rename manifest");
    };
    write_manifest("1");
    let mounts = [
        "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock".to_string(),
        format!("type=volume,src={state},dst={STATE}"),
        format!("type=bind,src={},dst=/etc/container-upgrader,readonly", dir.display()),
    ];
    let mut extra = vec!["--network", "host"];
    for m in &mounts {
        extra.extend(["--mount", m.as_str()]);
    }
    let command = ["run", "-f", "/etc/container-upgrader/desired-state.yaml", "-v"];
    let service = run.service_running("ctl", &format!("{ctl}:1"), &command, 1, &extra);
    assert_eq!(service, name);
    let old_task =
        run.docker(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={name}")]);

    // The operator pins the controller's own service to version 2.
    write_manifest("2");
    let digest = run.registry_digest(&format!("{ctl}:2"));
    let status_of_service = || -> Value {
        let volume = format!("{state}:{STATE}");
        let label = run.label();
        let image = format!("{ctl}:1");
        let args = ["run", "--rm", "--label", &label, "-v", &volume, &image, "status", "--output", "json"];
        let out = common::try_docker(&args).unwrap_or_default();
        let status: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        status["containers"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["container"] == name.as_str()).cloned())
            .unwrap_or(Value::Null)
    };
    common::wait_for("the new controller to journal the update committed", Duration::from_secs(180), || {
        status_of_service()["outcome"] == "committed"
    });
    assert_eq!(run.service_image(&name), format!("{ctl}:2@{digest}"));
    assert_eq!(run.update_status(&name).0, "completed");
    run.wait_running(&name, 1);
    let new_task =
        run.docker(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={name}")]);
    assert_ne!(new_task, old_task, "Swarm replaced the controller's task");
    // The old controller left when Swarm stopped it (its watch ends on
    // SIGTERM; Swarm carries the update on), not killed at the grace's end.
    assert_eq!(run.inspect(&old_task, "{{.State.ExitCode}}"), "0", "{}", run.logs(&old_task));
    assert_eq!(run.inspect(&new_task, "{{index .Config.Labels \"version\"}}"), "2");
    // The orchestrator replaced it: no helper container was made.
    let names = run.docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", &run.label_filter()]);
    assert!(!names.contains("--cu-"), "helpers or backups: {names}");
    // The new task read the op the old one journaled and reported it.
    let op = status_of_service();
    let logs = run.logs(&new_task);
    assert!(logs.contains(op["op_id"].as_str().unwrap_or("?")), "the new task reports op {op:#}:\n{logs}");
}

#[test]
fn a_service_on_a_registry_that_needs_a_login_is_updated_with_the_controllers_credentials() {
    let run = TestRun::on_swarm("swarm_registry_auth");
    let registry = run.registry_with_auth("swarm", "s3cret");
    let repo = registry.repo("app");
    for tag in ["1", "2"] {
        let image = format!("{repo}:{tag}");
        run.build_image(&image, &ImageSpec { env: vec![("TESTBOX_VERSION", tag)], ..Default::default() });
        registry.push(&image);
    }
    // Created without a login (the node has version 1 locally), so the
    // service's spec holds no credentials Swarm could reuse.
    let name = run.service("web", &format!("{repo}:1"), 2, &[]);
    // The node has no copy of version 2: its tasks must pull it, with the
    // credentials the controller sends.
    run.docker(&["rmi", &format!("{repo}:2")]);

    let file = manifest(&run, &name, &format!("{repo}:2"), "");
    let state = run.empty_dir("state").display().to_string();
    let config = registry.docker_config();
    let env = [("DOCKER_CONFIG", config.to_str().expect("utf-8 path"))];
    let out = run.cli_with_env(&["reconcile", "-f", &file, "--once", "--state-dir", &state], &env);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 upgraded"), "{stdout}");
    assert!(run.service_image(&name).starts_with(&format!("{repo}:2@sha256:")));
    run.wait_running(&name, 2);
}

#[test]
fn a_service_removed_during_an_interrupted_update_does_not_hold_later_passes_up() {
    let run = TestRun::on_swarm("swarm_removed");
    let registry = run.registry();
    let repo = publish(&run, &registry);
    // Slow on purpose: 3 tasks, 3 s apart.
    let service = run.service("web", &format!("{repo}:1"), 3, &[]);
    let file = manifest(&run, &service, &format!("{repo}:2"), "    update: {delay: 3s}\n");
    let state = run.empty_dir("state").display().to_string();

    // A controller killed while it watches the update leaves the op `started`.
    let mut child = run
        .cli_command()
        .args(["reconcile", "-f", &file, "--once", "--state-dir", &state])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn reconcile");
    common::wait_for("the update to start", Duration::from_secs(60), || {
        run.update_status(&service).0 == "updating"
    });
    child.kill().expect("kill reconcile");
    let _ = child.wait();
    run.docker(&["service", "rm", &service]);

    let (code, stdout, stderr) = reconcile(&run, &file);
    assert_eq!(code, Some(0), "the next pass runs\n{stdout}\n{stderr}");
    assert!(stdout.contains("0 upgraded"), "{stdout}");
    assert!(stderr.contains(&format!("no service named {service}")), "{stderr}");
    let op = last_op(&status(&run), &service).clone();
    assert_eq!(op["outcome"], "failed", "{op:#}");
    assert_eq!(op["reason"], "the service was removed during its update", "{op:#}");
}

#[test]
fn a_container_selector_leaves_the_containers_of_swarm_tasks_alone() {
    let run = TestRun::on_swarm("swarm_tasks_not_containers");
    let registry = run.registry();
    let repo = publish(&run, &registry);
    let tier = format!("tier={}", run.id());
    let service = run.service("web", &format!("{repo}:1"), 2, &["--container-label", &tier]);
    let text = format!("version: 1\ntargets:\n  - selector: {{label: \"{tier}\"}}\n    image: {repo}:2\n");
    let file = run.write_file("desired-state.yaml", text).display().to_string();

    let out = run.cli(&["plan", "-f", &file, "--output", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(plan["actions"].as_array().map(Vec::len), Some(1), "{plan:#}");
    assert_eq!(plan["actions"][0]["action"], "missing", "{plan:#}");
    let (_, stdout, stderr) = reconcile(&run, &file);
    assert!(stdout.contains("0 upgraded"), "{stdout}\n{stderr}");
    assert!(run.service_image(&service).starts_with(&format!("{repo}:1")), "the service was not touched");
    run.wait_running(&service, 2);
}

#[test]
fn a_service_is_updated_only_to_a_digest_signed_by_a_listed_key() {
    use common::cosign::{sign_image, Key};
    let run = TestRun::on_swarm("swarm_verify");
    let registry = run.registry();
    let repo = publish(&run, &registry);
    let service = run.service("web", &format!("{repo}:1"), 1, &[]);
    let before = run.service_image(&service);
    let key = Key::p256();
    run.write_file("key.pub", key.public_pem());
    let text = format!(
        "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 20s}}\npolicy:\n  verify:\n    keys: [key.pub]\n    require: true\ntargets:\n  - service: {service}\n    image: {repo}:2\n"
    );
    let file = run.write_file("desired-state.yaml", text).display().to_string();

    // Unsigned: held with the reason; the service is not touched.
    let out = run.cli(&["plan", "-f", &file, "--output", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let entry = &plan["actions"][0];
    assert_eq!(entry["action"], "error", "{plan:#}");
    assert!(entry["reason"].as_str().unwrap_or_default().contains("no signature"), "{plan:#}");
    let (_, stdout, stderr) = reconcile(&run, &file);
    assert!(format!("{stdout}{stderr}").contains("no signature"), "{stdout}\n{stderr}");
    assert_eq!(run.service_image(&service), before, "the service keeps its image");

    // Signed by the listed key: updated, pinned by the verified digest.
    let digest = run.registry_digest(&format!("{repo}:2"));
    sign_image(&registry, &repo, &digest, &key);
    let (code, stdout, stderr) = reconcile(&run, &file);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(run.service_image(&service), format!("{repo}:2@{digest}"), "{stdout}\n{stderr}");
}
