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
