//! `plan` against the real Docker Engine and a real registry.
#![cfg(feature = "docker-tests")]

mod common;

use common::{ImageSpec, TestRun};
use serde_json::Value;

/// Builds an image whose content is unique to `version` and pushes it under
/// every tag in `tags`; returns the registry digest of the first tag.
fn publish(run: &TestRun, repo: &str, version: &str, tags: &[&str]) -> String {
    let first = format!("{repo}:{}", tags[0]);
    run.build_image(&first, &ImageSpec { env: vec![("TESTBOX_VERSION", version)], ..Default::default() });
    for tag in tags {
        let reference = format!("{repo}:{tag}");
        if reference != first {
            run.docker(&["tag", &first, &reference]);
        }
        run.push(&reference);
    }
    let repo_digest = run.inspect(&first, &format!("{{{{range .RepoDigests}}}}{{{{if eq (index (split . \"@\") 0) \"{repo}\"}}}}{{{{.}}}}{{{{end}}}}{{{{end}}}}"));
    repo_digest
        .split_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| panic!("{first} has no digest after push"))
}

fn plan_json(run: &TestRun, manifest: &str) -> (Value, std::process::Output) {
    let path = run.write_file("desired-state.yaml", manifest);
    let out = run.cli(&["plan", "-f", path.to_str().expect("utf-8 path"), "--output", "json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan output is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out)
}

/// The entry for `container` in the plan's `actions`.
fn entry<'a>(plan: &'a Value, container: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["container"] == container))
        .unwrap_or_else(|| panic!("no entry for {container} in {plan:#}"))
}

#[test]
fn newer_tag_in_manifest_plans_upgrade_and_current_tag_plans_none() {
    let run = TestRun::new("newer_tag_plans_upgrade");
    let registry = run.registry();
    let repo = registry.repo("app");
    publish(&run, &repo, "1", &["1"]);
    let d2 = publish(&run, &repo, "2", &["2"]);
    let (old, current) = (run.name("old"), run.name("current"));
    run.run_container("old", &format!("{repo}:1"), &[]);
    run.run_container("current", &format!("{repo}:2"), &[]);

    let manifest = format!(
        "version: 1\ntargets:\n  - container: {old}\n    image: {repo}:2\n  - container: {current}\n    image: {repo}:2\n"
    );
    let (plan, out) = plan_json(&run, &manifest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let e = entry(&plan, &old);
    assert_eq!(e["action"], "upgrade", "{e:#}");
    assert_eq!(e["reason"], "tag 1 → 2");
    assert_eq!(e["current"]["image"], format!("{repo}:1"));
    assert_eq!(e["desired"]["image"], format!("{repo}:2"));
    assert_eq!(e["desired"]["digest"], d2.as_str(), "desired digest is what the registry serves");

    let e = entry(&plan, &current);
    assert_eq!(e["action"], "none", "{e:#}");
    assert_eq!(e["current"]["digest"], d2.as_str());
    assert_eq!(plan["summary"]["upgrade"], 1);
}

#[test]
fn moved_latest_digest_plans_upgrade() {
    let run = TestRun::new("moved_latest_plans_upgrade");
    let registry = run.registry();
    let repo = registry.repo("app");
    let d1 = publish(&run, &repo, "1", &["latest"]);
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:latest"), &[]);

    let manifest = format!("version: 1\ntargets:\n  - container: {name}\n    image: {repo}:latest\n");
    let (plan, _) = plan_json(&run, &manifest);
    assert_eq!(entry(&plan, &name)["action"], "none", "before the push nothing moved: {plan:#}");

    // Someone publishes a new build under the same tag.
    let d2 = publish(&run, &repo, "2", &["latest"]);
    assert_ne!(d1, d2);
    let (plan, _) = plan_json(&run, &manifest);
    let e = entry(&plan, &name);
    assert_eq!(e["action"], "upgrade", "{e:#}");
    assert_eq!(e["desired"]["digest"], d2.as_str());
    assert_eq!(e["current"]["digest"], d1.as_str());
    let short = |d: &str| d[..19].to_string();
    assert_eq!(e["reason"], format!("tag latest moved to {} (running {})", short(&d2), short(&d1)));
}

#[test]
fn track_semver_picks_highest_matching_pushed_tag() {
    let run = TestRun::new("track_semver_picks_highest");
    let registry = run.registry();
    let repo = registry.repo("edge");
    publish(&run, &repo, "a", &["1.4.0", "1.3.0", "2.0.0", "1.11.0-rc.1", "latest"]);
    publish(&run, &repo, "b", &["1.10.0"]);
    let (stable, canary) = (run.name("stable"), run.name("canary"));
    let label = format!("tier={}", run.id());
    run.run_container("stable", &format!("{repo}:1.4.0"), &["--label", &label]);
    run.run_container("canary", &format!("{repo}:1.4.0"), &[]);

    let manifest = format!(
        "version: 1\ntargets:\n  - selector: {{label: \"{label}\"}}\n    track: {{image: {repo}, semver: ^1.4}}\n  - container: {canary}\n    track: {{image: {repo}, semver: ^1.4, prerelease: true}}\n"
    );
    let (plan, out) = plan_json(&run, &manifest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e = entry(&plan, &stable);
    assert_eq!(e["desired"]["image"], format!("{repo}:1.10.0"), "{e:#}");
    assert_eq!(e["action"], "upgrade");
    assert_eq!(e["reason"], "tag 1.4.0 → 1.10.0");
    let e = entry(&plan, &canary);
    assert_eq!(e["desired"]["image"], format!("{repo}:1.11.0-rc.1"), "pre-releases when asked: {e:#}");
}

#[test]
fn stopped_registry_plans_error_with_a_clear_reason_and_no_action() {
    let run = TestRun::new("stopped_registry_plans_error");
    let mut registry = run.registry();
    let repo = registry.repo("app");
    publish(&run, &repo, "1", &["1"]);
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:1"), &[]);
    registry.stop();

    let manifest = format!("version: 1\ntargets:\n  - container: {name}\n    image: {repo}:2\n");
    let (plan, out) = plan_json(&run, &manifest);
    assert!(out.status.success(), "a down registry is a per-target error, not a crash");
    let e = entry(&plan, &name);
    assert_eq!(e["action"], "error", "{e:#}");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with(&format!("registry unreachable: {}", registry.addr())), "{reason}");
    assert!(reason.to_lowercase().contains("connection refused"), "{reason}");

    let path = run.write_file("desired-state.yaml", &manifest);
    let out = run.cli(&["plan", "-f", path.to_str().expect("utf-8"), "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(5), "detailed exit code flags the error");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("registry unreachable"), "{table}");
    assert!(table.contains("0 to upgrade"), "{table}");
}

#[test]
fn image_outside_allowed_images_is_refused() {
    let run = TestRun::new("outside_policy_refused");
    let registry = run.registry();
    let repo = registry.repo("app");
    publish(&run, &repo, "1", &["1"]);
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:1"), &[]);
    let manifest = format!(
        "version: 1\npolicy:\n  allowed_images: [\"registry.example:5000/*\", portainer/agent]\ntargets:\n  - container: {name}\n    image: {repo}:2\n"
    );
    let (plan, _) = plan_json(&run, &manifest);
    let e = entry(&plan, &name);
    assert_eq!(e["action"], "refused", "{e:#}");
    assert_eq!(e["reason"], format!("image {repo} not allowed by policy.allowed_images"));
}

#[test]
fn missing_container_and_unknown_tag_are_reported_per_target() {
    let run = TestRun::new("missing_and_unknown_tag");
    let registry = run.registry();
    let repo = registry.repo("app");
    publish(&run, &repo, "1", &["1"]);
    let (ghost, web) = (run.name("ghost"), run.name("web"));
    run.run_container("web", &format!("{repo}:1"), &[]);
    let manifest = format!(
        "version: 1\ntargets:\n  - container: {ghost}\n    image: {repo}:1\n  - container: {web}\n    image: {repo}:9\n"
    );
    let (plan, _) = plan_json(&run, &manifest);
    let actions = plan["actions"].as_array().expect("actions");
    assert_eq!(actions[0]["action"], "missing");
    assert_eq!(actions[0]["reason"], format!("no container named {ghost}"));
    assert_eq!(actions[1]["action"], "error");
    assert_eq!(actions[1]["reason"], format!("{repo}:9 not found in registry {}", registry.addr()));
}
