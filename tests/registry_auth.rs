//! `plan` reads registry credentials from `$DOCKER_CONFIG/config.json`,
//! against a real registry that requires HTTP basic auth.
#![cfg(feature = "docker-tests")]

mod common;

use std::path::Path;

use common::{ImageSpec, TestRegistry, TestRun};
use serde_json::Value;

const USER: &str = "deployer";
const PASSWORD: &str = "s3cret-pass";

/// A registry requiring `USER`/`PASSWORD` holding `app:1` and `app:2`, a
/// container running `app:1`, and a manifest asking for `app:2`.
struct Setup {
    run: TestRun,
    registry: TestRegistry,
    container: String,
    manifest: String,
    /// The registry's digest of `app:2`.
    d2: String,
}

/// Pushes `app:1` and `app:2` to `registry` (through its login or CA) and
/// runs a container on `app:1`: the repository, app:2's digest and the
/// container's name.
fn published(run: &TestRun, registry: &TestRegistry) -> (String, String, String) {
    let repo = registry.repo("app");
    for version in ["1", "2"] {
        let tag = format!("{repo}:{version}");
        run.build_image(&tag, &ImageSpec { env: vec![("TESTBOX_VERSION", version)], ..Default::default() });
        registry.push(&tag);
    }
    let d2 = registry_digest(run, &repo, "2");
    run.run_container("web", &format!("{repo}:1"), &[]);
    (repo, d2, run.name("web"))
}

fn setup(test_name: &str) -> Setup {
    let run = TestRun::new(test_name);
    let registry = run.registry_with_auth(USER, PASSWORD);
    let (repo, d2, container) = published(&run, &registry);
    let manifest = format!("version: 1\ntargets:\n  - container: {container}\n    image: {repo}:2\n");
    Setup { run, registry, container, manifest, d2 }
}

/// The digest `docker push` recorded for `repo:tag`.
fn registry_digest(run: &TestRun, repo: &str, tag: &str) -> String {
    let digests = run.inspect(&format!("{repo}:{tag}"), "{{range .RepoDigests}}{{.}} {{end}}");
    digests
        .split_whitespace()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")))
        .unwrap_or_else(|| panic!("{repo}:{tag} has no digest after push: {digests}"))
        .to_string()
}

/// `plan --output json` with `DOCKER_CONFIG=docker_config`; returns the
/// entry for the setup's container.
fn plan_entry(s: &Setup, docker_config: &Path) -> Value {
    let manifest = s.run.write_file("desired-state.yaml", &s.manifest);
    let args = ["plan", "-f", manifest.to_str().expect("utf-8 path"), "--output", "json"];
    let env = [("DOCKER_CONFIG", docker_config.to_str().expect("utf-8 path"))];
    let out = s.run.cli_with_env(&args, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a registry refusing access is a per-target error: {stderr}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("plan output is not JSON ({e}): {}\nstderr: {stderr}", String::from_utf8_lossy(&out.stdout))
    });
    plan["actions"]
        .as_array()
        .and_then(|actions| actions.iter().find(|e| e["container"] == s.container.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no entry for {} in {plan:#}", s.container))
}

#[test]
fn plan_uses_credentials_from_the_docker_config() {
    let s = setup("plan_uses_docker_config_credentials");
    let addr = s.registry.addr();
    let config = s.run.docker_config("good", &[(&addr, USER, PASSWORD)]);

    let e = plan_entry(&s, &config);
    assert_eq!(e["action"], "upgrade", "{e:#}");
    assert_eq!(e["reason"], "tag 1 → 2");
    assert_eq!(e["desired"]["digest"], s.d2.as_str(), "desired digest is what the registry serves");
}

#[test]
fn wrong_or_missing_credentials_plan_error_naming_the_registry() {
    let s = setup("wrong_or_missing_credentials");
    let addr = s.registry.addr();
    let reference = format!("{}:2", s.registry.repo("app"));
    let refused = format!("registry {addr} refused access to {reference} (");
    let wrong = format!("{refused}the Docker config's login for {addr} was refused): ");
    let none = format!("{refused}no credentials for {addr} in the Docker config): ");
    // distribution logs `error authenticating user "<user>"` only for a
    // request that carried a login it rejected (anonymous ones log "invalid
    // authorization credential"): it tells a wrong login sent from none sent.
    let rejected_logins = || {
        let log = s.registry.log();
        log.lines().filter(|l| l.contains("error authenticating user") && l.contains(USER)).count()
    };
    let cases = [
        ("wrong password", s.run.docker_config("wrong", &[(&addr, USER, "not-the-password")]), true, &wrong),
        ("no config.json", s.run.empty_dir("no-docker-config"), false, &none),
        (
            "login for another registry only",
            s.run.docker_config("other", &[("registry.example:5000", USER, PASSWORD)]),
            false,
            &none,
        ),
    ];
    for (case, config, sends_login, expected) in cases {
        let rejected_before = rejected_logins();
        let e = plan_entry(&s, &config);
        assert_eq!(e["action"], "error", "{case}: {e:#}");
        let reason = e["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with(expected.as_str()), "{case}: {reason}");
        // Reasons leave the host (status, webhook): no user name in them.
        assert!(!reason.contains(USER), "{case}: the reason names the registry user: {reason}");
        let rejected = rejected_logins() > rejected_before;
        assert_eq!(rejected, sends_login, "{case}: did plan send the config's login?\n{}", s.registry.log());
    }
}

#[test]
fn a_hung_credential_helper_is_stopped_at_its_limit_and_the_plan_says_why() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup("hung_credential_helper");
    // A `docker-credential-hang` that never answers, first on PATH, and a
    // Docker config that names it for the registry.
    let bin = s.run.empty_dir("helper-bin");
    let helper = bin.join("docker-credential-hang");
    std::fs::write(&helper, "#!/bin/sh\nexec sleep 60\n").expect("writing the helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod the helper");
    let config = s.run.empty_dir("hang-config");
    let helpers = format!("{{\"credHelpers\": {{\"{}\": \"hang\"}}}}\n", s.registry.addr());
    std::fs::write(config.join("config.json"), helpers).expect("writing config.json");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());

    let manifest = s.run.write_file("desired-state.yaml", &s.manifest);
    let args = [
        "plan",
        "-f",
        manifest.to_str().expect("utf-8 path"),
        "--output",
        "json",
        "--registry-timeout",
        "2s",
    ];
    let env = [("DOCKER_CONFIG", config.to_str().expect("utf-8 path")), ("PATH", path.as_str())];
    let started = std::time::Instant::now();
    let out = s.run.cli_with_env(&args, &env);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(took < std::time::Duration::from_secs(8), "the plan waited {took:?} for a helper limited to 2s");
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let e = &plan["actions"][0];
    assert_eq!(e["action"], "error", "{e:#}");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("docker-credential-hang did not answer within 2s"),
        "the plan says why it had no login: {reason}"
    );
}

#[test]
fn a_registry_with_its_own_ca_in_certs_d_is_read_over_https() {
    let run = TestRun::new("registry_certs_d");
    let registry = run.registry_with_tls();
    let (repo, d2, container) = published(&run, &registry);
    let manifest = run.write_file(
        "desired-state.yaml",
        format!("version: 1\ntargets:\n  - container: {container}\n    image: {repo}:2\n"),
    );
    let plan = |certs_d: &Path| {
        let args = ["plan", "-f", manifest.to_str().expect("utf-8 path"), "--output", "json"];
        let out =
            run.cli_with_env(&args, &[("CONTAINER_UPGRADER_CERTS_D", certs_d.to_str().expect("utf-8 path"))]);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("plan output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr))
        });
        plan["actions"][0].clone()
    };

    // Its CA where Docker keeps it: HTTPS, verified, even on loopback.
    let e = plan(&registry.certs_d());
    assert_eq!(e["action"], "upgrade", "{e:#}");
    assert_eq!(e["desired"]["digest"], d2.as_str(), "{e:#}");

    // Without it, the registry cannot be read (plain HTTP to a TLS server).
    let e = plan(&run.empty_dir("no-certs"));
    assert_eq!(e["action"], "error", "{e:#}");
}
