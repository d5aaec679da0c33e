//! Dependency order against the real engine and registry: containers that
//! depend on others (legacy links, compose `depends_on`; the `container:`
//! network mode is in tests/reconcile.rs and tests/swap.rs) are swapped
//! after them, dependents that must follow a replaced container do, and a
//! cycle is refused with its names.
#![cfg(feature = "docker-tests")]

mod common;

use std::path::{Path, PathBuf};

use common::TestRun;
use serde_json::Value;

const GATE: &str = "defaults:\n  health: {stable: 1s, timeout: 30s}\n";

/// `reconcile --once` over `targets` (`(container, image)`); the output,
/// stdout and stderr.
fn reconcile(run: &TestRun, state: &Path, targets: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut manifest = format!("version: 1\n{GATE}targets:\n");
    for (container, image) in targets {
        manifest.push_str(&format!("  - container: {container}\n    image: {image}\n"));
    }
    let file = run.write_file("desired-state.yaml", &manifest);
    let out = run.cli(&[
        "reconcile",
        "-f",
        file.to_str().expect("utf-8"),
        "--once",
        "--state-dir",
        state.to_str().expect("utf-8"),
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), stdout.into_owned(), stderr.into_owned())
}

fn state_dir(run: &TestRun) -> PathBuf {
    run.write_file("state/.keep", "").parent().expect("dir").to_path_buf()
}

/// When the journal says `container`'s swap reached `step` (RFC 3339 with
/// milliseconds, UTC: ordered as text).
fn step_at(state: &Path, container: &str, step: &str) -> String {
    let dir = state.join("ops");
    for entry in std::fs::read_dir(&dir).expect("journal") {
        let path = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let Ok(op) = serde_json::from_str::<Value>(&text) else { continue };
        if op["container"] != container {
            continue;
        }
        let steps = op["steps"].as_array().cloned().unwrap_or_default();
        if let Some(s) = steps.iter().find(|s| s["step"] == step) {
            return s["at"].as_str().expect("at").to_string();
        }
    }
    panic!("no `{step}` step for {container} in {}", dir.display());
}

/// The address `/etc/hosts` in `container` gives `alias`.
fn hosts_entry(run: &TestRun, container: &str, alias: &str) -> Option<String> {
    let copy = run.write_file(&format!("hosts-{container}"), "");
    run.docker(&["cp", &format!("{container}:/etc/hosts"), copy.to_str().expect("utf-8")]);
    let hosts = std::fs::read_to_string(&copy).expect("hosts");
    hosts
        .lines()
        .find(|l| l.split_whitespace().skip(1).any(|name| name == alias))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn a_linking_container_is_swapped_after_what_it_links_to_and_follows_it() {
    let run = TestRun::new("deps_links");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    let state = state_dir(&run);
    let (v1, v2) = (format!("{app}:1"), format!("{app}:2"));
    run.run_container("db", &v1, &[]);
    let db = run.name("db");
    run.run_container("web", &v1, &["--link", &format!("{db}:database")]);
    let web = run.name("web");

    // Both in one pass, the dependent first in the file: it still waits.
    let (code, stdout, stderr) = reconcile(&run, &state, &[(&web, v2.clone()), (&db, v2.clone())]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Reconciled: 2 upgraded"), "{stdout}");
    let db_done = step_at(&state, &db, "committed");
    let web_began = step_at(&state, &web, "prepared");
    assert!(db_done <= web_began, "web's swap began at {web_began}, before db's committed at {db_done}");
    let db_ip = run.inspect(&db, "{{.NetworkSettings.IPAddress}}");
    assert_eq!(
        hosts_entry(&run, &web, "database").as_deref(),
        Some(db_ip.as_str()),
        "web resolves the new db"
    );
    assert_eq!(run.inspect(&web, "{{.HostConfig.Links}}"), format!("[/{db}:/{web}/database]"));

    // Only the linked-to container moves: the dependent follows it, on its
    // own image, and can still be restarted afterwards (a link left on the
    // removed backup makes the engine refuse to start it).
    run.publish(
        &format!("{app}:3"),
        &common::ImageSpec { env: vec![("TESTBOX_VERSION", "3")], ..Default::default() },
    );
    let web_id = run.inspect(&web, "{{.Id}}");
    let (code, stdout, stderr) = reconcile(&run, &state, &[(&db, format!("{app}:3"))]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_ne!(run.inspect(&web, "{{.Id}}"), web_id, "web was recreated to link to the new db");
    assert_eq!(run.inspect(&web, "{{.Config.Image}}"), v2, "web keeps its own image");
    assert_eq!(run.inspect(&web, "{{.State.Running}}"), "true");
    assert_eq!(run.inspect(&web, "{{.HostConfig.Links}}"), format!("[/{db}:/{web}/database]"));
    let db_ip = run.inspect(&db, "{{.NetworkSettings.IPAddress}}");
    assert_eq!(hosts_entry(&run, &web, "database").as_deref(), Some(db_ip.as_str()));
    run.docker(&["restart", "-t", "1", &web]);
    assert_eq!(run.inspect(&web, "{{.State.Running}}"), "true");
    let names = run.docker(&["ps", "-a", "--filter", &run.label_filter(), "--format", "{{.Names}}"]);
    assert!(!names.contains("--cu-"), "leftovers: {names}");
}

fn compose_labels(project: &str, service: &str, depends_on: &str) -> Vec<String> {
    let mut labels = vec![
        "--label".to_string(),
        format!("com.docker.compose.project={project}"),
        "--label".to_string(),
        format!("com.docker.compose.service={service}"),
    ];
    if !depends_on.is_empty() {
        labels.extend(["--label".to_string(), format!("com.docker.compose.depends_on={depends_on}")]);
    }
    labels
}

fn run_compose(run: &TestRun, suffix: &str, image: &str, labels: &[String]) -> String {
    let args: Vec<&str> = labels.iter().map(String::as_str).collect();
    run.run_container(suffix, image, &args);
    run.name(suffix)
}

#[test]
fn compose_depends_on_orders_the_pass_and_restart_true_dependents_follow() {
    let run = TestRun::new("deps_compose");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    let state = state_dir(&run);
    let (v1, v2) = (format!("{app}:1"), format!("{app}:2"));
    // The project's name is the test run's, so no other run's labels match.
    let project = run.name("proj");
    let db = run_compose(&run, "db", &v1, &compose_labels(&project, "db", ""));
    let api = run_compose(&run, "api", &v1, &compose_labels(&project, "api", "db:service_started:true"));
    let worker = run_compose(
        &run,
        "worker",
        &v1,
        &compose_labels(&project, "worker", "api:service_started:false,db:service_healthy:false"),
    );

    // api and worker wait for db; worker for api too.
    let targets = [(&worker, v2.clone()), (&api, v2.clone()), (&db, v2.clone())];
    let targets: Vec<(&str, String)> = targets.iter().map(|(n, i)| (n.as_str(), i.clone())).collect();
    let (code, stdout, stderr) = reconcile(&run, &state, &targets);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Reconciled: 3 upgraded"), "{stdout}");
    let (db_done, api_began) = (step_at(&state, &db, "committed"), step_at(&state, &api, "prepared"));
    assert!(db_done <= api_began, "api began at {api_began}, before db committed at {db_done}");
    let (api_done, worker_began) = (step_at(&state, &api, "committed"), step_at(&state, &worker, "prepared"));
    assert!(api_done <= worker_began, "worker began at {worker_began}, before api committed at {api_done}");

    // db alone moves: api (`restart: true`) is restarted, worker is not.
    run.publish(
        &format!("{app}:3"),
        &common::ImageSpec { env: vec![("TESTBOX_VERSION", "3")], ..Default::default() },
    );
    let started = |name: &str| run.inspect(name, "{{.State.StartedAt}}");
    let (api_id, api_started, worker_started) =
        (run.inspect(&api, "{{.Id}}"), started(&api), started(&worker));
    let (code, stdout, stderr) = reconcile(&run, &state, &[(&db, format!("{app}:3"))]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(run.inspect(&api, "{{.Id}}"), api_id, "restarted, not recreated");
    assert_ne!(started(&api), api_started, "api was restarted after db");
    assert_eq!(run.inspect(&api, "{{.State.Running}}"), "true");
    assert_eq!(started(&worker), worker_started, "restart: false leaves worker alone");
}

#[test]
fn a_dependency_cycle_is_refused_with_its_names_and_the_rest_is_upgraded() {
    let run = TestRun::new("deps_cycle");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    let state = state_dir(&run);
    let (v1, v2) = (format!("{app}:1"), format!("{app}:2"));
    let project = run.name("proj");
    let a = run_compose(&run, "a", &v1, &compose_labels(&project, "a", "b:service_started:false"));
    let b = run_compose(&run, "b", &v1, &compose_labels(&project, "b", "a:service_started:false"));
    run.run_container("c", &v1, &[]);
    let c = run.name("c");
    let (a_id, b_id) = (run.inspect(&a, "{{.Id}}"), run.inspect(&b, "{{.Id}}"));

    let targets = [(a.as_str(), v2.clone()), (b.as_str(), v2.clone()), (c.as_str(), v2.clone())];
    let (code, stdout, stderr) = reconcile(&run, &state, &targets);
    assert_ne!(code, Some(0), "a refusal is not success\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 upgraded") && stdout.contains("2 errors"), "{stdout}");
    assert!(stderr.contains("dependency cycle"), "{stderr}");
    assert!(stderr.contains(&format!("{a} depends on (compose) {b}")), "names the cycle: {stderr}");
    assert_eq!(run.inspect(&a, "{{.Id}}"), a_id, "nothing changed");
    assert_eq!(run.inspect(&b, "{{.Id}}"), b_id, "nothing changed");
    assert_eq!(run.inspect(&a, "{{.Config.Image}}"), v1);
    assert_eq!(run.inspect(&c, "{{.Config.Image}}"), v2, "the rest goes on");
}
