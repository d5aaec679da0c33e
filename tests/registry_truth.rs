//! What the registry says, read truly (issue 11): every digest an image
//! carries counts, only this host's platform counts, a tag that moves
//! between plan and pull does not change what is created. Against the real
//! engine and a real registry; indexes are stored with plain HTTP PUTs.
#![cfg(feature = "docker-tests")]

mod common;

use common::{ImageSpec, TestRegistry, TestRun};
use serde_json::Value;

fn plan_json(run: &TestRun, manifest: &str) -> Value {
    let path = run.write_file("desired-state.yaml", manifest);
    let out = run.cli(&["plan", "-f", path.to_str().expect("utf-8 path"), "--output", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan output is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn entry<'a>(plan: &'a Value, container: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["container"] == container))
        .unwrap_or_else(|| panic!("no entry for {container} in {plan:#}"))
}

/// Builds and pushes `repo:tag` with content unique to `version`.
fn publish(run: &TestRun, registry: &TestRegistry, repo: &str, tag: &str, version: &str) {
    let reference = format!("{repo}:{tag}");
    run.build_image(&reference, &ImageSpec { env: vec![("TESTBOX_VERSION", version)], ..Default::default() });
    registry.push(&reference);
}

/// The repository's digests the local image `image` carries.
fn repo_digests(run: &TestRun, image: &str) -> Vec<String> {
    run.inspect(image, "{{range .RepoDigests}}{{.}} {{end}}").split_whitespace().map(str::to_string).collect()
}

#[test]
fn an_image_with_two_digests_of_its_repository_plans_none_whichever_the_registry_names() {
    let run = TestRun::new("two_repo_digests_plan_none");
    let registry = run.registry();
    let repo = registry.repo("app");
    let path = registry.path_of(&repo);
    publish(&run, &registry, &repo, "1", "1");
    // The same image also published through a multi-platform index, and
    // pulled by the index's digest: the image now carries both digests.
    let manifest = registry.manifest(&path, "1");
    let index = registry.put_index(&path, "multi", &[(&manifest, "amd64"), (&manifest, "arm64")]);
    run.docker(&["pull", &format!("{repo}@{index}")]);
    let digests = repo_digests(&run, &format!("{repo}:1"));
    assert_eq!(digests.len(), 2, "{digests:?}");
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:1"), &[]);

    // One tag names the manifest, the other the index: one of the two
    // digests sorts first, so both orders are covered.
    for tag in ["1", "multi"] {
        let m = format!("version: 1\ntargets:\n  - container: {name}\n    image: {repo}:{tag}\n");
        let plan = plan_json(&run, &m);
        let e = entry(&plan, &name);
        assert_eq!(e["action"], "none", "tag {tag} with digests {digests:?}: {e:#}");
    }
}

/// Stores `repo:from`'s manifest under every tag of `tags` (no push needed).
fn tag_all(registry: &TestRegistry, repo: &str, from: &str, tags: &[&str]) {
    let path = registry.path_of(repo);
    let m = registry.manifest(&path, from);
    for tag in tags {
        registry.put_manifest(&path, tag, &m.media_type, &m.body);
    }
}

#[test]
fn real_world_tag_families_resolve_in_their_flavour_and_never_downwards() {
    let run = TestRun::new("tag_families");
    let registry = run.registry();
    let repo = |name: &str| registry.repo(name);
    // nginx-, postgres- and suffix-only-shaped repositories.
    publish(&run, &registry, &repo("web"), "1.25.3-alpine", "a");
    tag_all(
        &registry,
        &repo("web"),
        "1.25.3-alpine",
        &["1.25.3", "1.27.3", "1.27.3-alpine", "1.27.4-perl", "1.27"],
    );
    publish(&run, &registry, &repo("pg"), "16.2", "a");
    tag_all(&registry, &repo("pg"), "16.2", &["16", "16.10", "16.10-alpine", "17rc1"]);
    publish(&run, &registry, &repo("suf"), "1.0.0-bookworm", "a");
    tag_all(&registry, &repo("suf"), "1.0.0-bookworm", &["1.2.0-bookworm", "latest"]);
    // The running version's tag is gone from the registry (deleted, or
    // beyond what a partial list shows): the highest left is lower.
    publish(&run, &registry, &repo("down"), "v3.17.9", "a");
    publish(&run, &registry, &repo("down"), "v3.29.9", "b");
    let running = [
        ("web", format!("{}:1.25.3-alpine", repo("web")), "^1", ""),
        ("perl", format!("{}:1.25.3", repo("web")), "^1", ", prerelease: true"),
        ("pg", format!("{}:16.2", repo("pg")), "^16", ""),
        ("suf", format!("{}:latest", repo("suf")), "^1", ""),
        ("down", format!("{}:v3.29.9", repo("down")), "^3", ""),
    ];
    let mut manifest = String::from("version: 1\ntargets:\n");
    for (name, image, range, extra) in &running {
        run.run_container(name, image, &[]);
        let repository = image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r);
        manifest += &format!(
            "  - container: {}\n    track: {{image: {repository}, semver: \"{range}\"{extra}}}\n",
            run.name(name)
        );
    }
    let path = registry.path_of(&repo("down"));
    let gone = registry.manifest(&path, "v3.29.9").digest;
    let deleted = common::http(&registry.addr(), "DELETE", &format!("/v2/{path}/manifests/{gone}"), &[], b"");
    assert_eq!(deleted.status, 202, "{}", String::from_utf8_lossy(&deleted.body));

    let plan = plan_json(&run, &manifest);
    let desired = |name: &str| {
        entry(&plan, &run.name(name))["desired"]["image"].as_str().unwrap_or_default().to_string()
    };
    assert!(desired("web").ends_with("/web:1.27.3-alpine"), "an -alpine container stays alpine: {plan:#}");
    assert!(desired("perl").ends_with("/web:1.27.3"), "-perl is a flavour, not a pre-release: {plan:#}");
    assert!(desired("pg").ends_with("/pg:16.10"), "two-part versions count: {plan:#}");
    assert!(desired("suf").ends_with("/suf:1.2.0-bookworm"), "suffix-only tags match: {plan:#}");
    let down = entry(&plan, &run.name("down"));
    assert_eq!(down["action"], "none", "{down:#}");
    let reason = down["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("warning: runs v3.29.9, above v3.17.9"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_between_plan_and_pull_still_creates_exactly_the_planned_image() {
    use container_upgrader::engine::Engine;
    use container_upgrader::manifest::{HealthGate, Order, Probe, PullPolicy, Settings};
    use container_upgrader::reference::ImageRef;
    use container_upgrader::swap::journal::Journal;
    use container_upgrader::swap::{Outcome, SwapRequest, Swapper};
    use container_upgrader::types::Digest;
    use std::time::Duration;

    let run = TestRun::new("tag_moved_before_pull");
    let registry = run.registry();
    let repo = registry.repo("app");
    publish(&run, &registry, &repo, "1", "1");
    publish(&run, &registry, &repo, "2", "2");
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:1"), &[]);
    let m = format!("version: 1\ntargets:\n  - container: {name}\n    image: {repo}:2\n");
    let plan = plan_json(&run, &m);
    let planned = entry(&plan, &name)["desired"]["digest"].as_str().unwrap_or_default().to_string();

    // Someone publishes another build under the same tag before the swap
    // pulls (here and in the registry).
    publish(&run, &registry, &repo, "2", "3");

    let state = run.empty_dir("state");
    let engine = Engine::connect().await.expect("engine");
    let swapper = Swapper::new(engine, Journal::open(&state).expect("journal"));
    let request = SwapRequest {
        container: name.clone(),
        image: ImageRef::parse(&format!("{repo}:2")).expect("reference"),
        planned: Some(Digest::parse(&planned).expect("planned digest")),
        settings: Settings {
            pull: PullPolicy::Always,
            order: Order::StopFirst,
            rollback: true,
            cleanup: false,
            health: HealthGate {
                timeout: Duration::from_secs(20),
                stable: Duration::from_millis(300),
                probe: Probe::Running,
            },
            update: Default::default(),
            hooks: Default::default(),
        },
        op_id: None,
        service: false,
    };
    let outcome = swapper.swap(&request).await.expect("swap");
    assert!(matches!(outcome, Outcome::Committed(_)), "{outcome}");

    assert_eq!(
        run.inspect(&name, "{{.Config.Image}}"),
        format!("{repo}:2"),
        "it shows the name the user wrote"
    );
    let env = run.inspect(&name, "{{range .Config.Env}}{{.}} {{end}}");
    assert!(env.contains("TESTBOX_VERSION=2"), "the planned build runs, not the moved tag's: {env}");
    let image = run.inspect(&name, "{{.Image}}");
    let digests = repo_digests(&run, &image);
    assert!(digests.iter().any(|d| d.ends_with(&planned)), "{digests:?} lacks {planned}");
}

/// How many manifests of `path` the tool (by its user agent) has GET.
fn manifest_gets(registry: &TestRegistry, path: &str) -> usize {
    let needle = format!("GET /v2/{path}/manifests/");
    registry.log().lines().filter(|l| l.contains(&needle) && l.contains("container-upgrader/")).count()
}

#[test]
fn an_index_changed_only_for_another_platform_plans_none_and_one_without_this_platform_plans_error() {
    let run = TestRun::new("index_other_platform");
    let registry = run.registry();
    let repo = registry.repo("app");
    let path = registry.path_of(&repo);
    publish(&run, &registry, &repo, "1", "1");
    publish(&run, &registry, &repo, "2", "2");
    let (one, two) = (registry.manifest(&path, "1"), registry.manifest(&path, "2"));
    // This host is amd64 (the test images are x86-64 binaries).
    registry.put_index(&path, "multi", &[(&one, "amd64"), (&one, "arm64")]);
    run.docker(&["pull", &format!("{repo}:multi")]);
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:multi"), &[]);
    let plan_for = |tag: &str| {
        let m = format!("version: 1\ntargets:\n  - container: {name}\n    image: {repo}:{tag}\n");
        entry(&plan_json(&run, &m), &name).clone()
    };

    let unchanged = plan_for("multi");
    assert_eq!(unchanged["action"], "none", "{unchanged:#}");
    assert_eq!(manifest_gets(&registry, &path), 0, "a no-change pass only HEADs:\n{}", registry.log());

    // Re-indexed: a new arm64 build, the amd64 entry as it was.
    registry.put_index(&path, "multi", &[(&one, "amd64"), (&two, "arm64")]);
    let other = plan_for("multi");
    assert_eq!(other["action"], "none", "only arm64 changed: {other:#}");
    let reason = other["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("linux/amd64") && reason.contains("only other platforms changed"), "{reason}");
    assert_eq!(manifest_gets(&registry, &path), 2, "the index, then this platform's manifest");

    // This platform's entry changed: that is an upgrade.
    registry.put_index(&path, "multi", &[(&two, "amd64"), (&one, "arm64")]);
    let mine = plan_for("multi");
    assert_eq!(mine["action"], "upgrade", "amd64 changed: {mine:#}");

    // No image for this platform at all: said in the plan, not left to a
    // pull failing on every pass.
    registry.put_index(&path, "armonly", &[(&two, "arm64")]);
    let missing = plan_for("armonly");
    assert_eq!(missing["action"], "error", "{missing:#}");
    let reason = missing["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no image for linux/amd64") && reason.contains("it has linux/arm64"), "{reason}");
}

#[test]
fn an_emulated_container_is_upgraded_on_its_own_platform() {
    let run = TestRun::new("emulated_platform_kept");
    let registry = run.registry();
    let repo = registry.repo("app");
    let path = registry.path_of(&repo);
    publish(&run, &registry, &repo, "1", "1");
    publish(&run, &registry, &repo, "2", "2");
    for version in ["1", "2"] {
        let native = registry.manifest(&path, version);
        let arm = registry.as_architecture(&path, version, "arm64");
        registry.put_index(&path, &format!("multi{version}"), &[(&native, "amd64"), (&arm, "arm64")]);
    }
    // As `docker run --platform linux/arm64` on an amd64 host leaves it.
    run.docker(&["pull", "--platform", "linux/arm64", &format!("{repo}:multi1")]);
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:multi1"), &[]);
    let arch = |container: &str| {
        let image = run.inspect(container, "{{.Image}}");
        run.inspect(&image, "{{.Os}}/{{.Architecture}}")
    };
    assert_eq!(arch(&name), "linux/arm64", "the setup runs an emulated image");

    let state = run.empty_dir("state");
    let image = format!("{repo}:multi2");
    let state = state.to_str().expect("utf-8 path");
    let out = run.cli(&["upgrade", &name, "--image", &image, "--state-dir", state, "--stable", "300ms"]);
    assert!(out.status.success(), "upgrade failed: {}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(arch(&name), "linux/arm64", "the upgraded container keeps its platform");
    let env = run.inspect(&name, "{{range .Config.Env}}{{.}} {{end}}");
    assert!(env.contains("TESTBOX_VERSION=2"), "and runs the new version: {env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_insecure_registries_are_read_as_docker_info_reports_them() {
    use container_upgrader::engine::Engine;
    let engine = Engine::connect().await.expect("engine");
    let view = engine.insecure_registries().await.expect("docker info");
    let cidrs: Vec<String> = serde_json::from_str(&common::docker(&[
        "info",
        "--format",
        "{{json .RegistryConfig.InsecureRegistryCIDRs}}",
    ]))
    .expect("docker info JSON");
    assert_eq!(view.cidrs, cidrs);
    // The engine's default range: what makes a 127.0.0.1 registry plain HTTP for it too.
    assert!(view.cidrs.iter().any(|c| c == "127.0.0.0/8"), "{view:?}");
}
