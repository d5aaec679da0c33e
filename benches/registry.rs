//! What a pass costs the registry, printed, not asserted (issue 11):
//!
//! 1. A no-change pass over 100 targets on 10 repositories: registry
//!    requests (our client's count: HEADs, tag pages, token fetches, no
//!    `/v2/` ping) — target one HEAD per distinct reference — and the
//!    registry's own access log lines for that pass.
//! 2. A pass that moves 10 containers to one new image: engine pulls
//!    (`images/create`) — target 1.
//! 3. Signature verification (issue 24): the pass of part 1 with
//!    `policy.verify` — added requests (target 0: nothing moves, nothing
//!    is verified) and added time; and the resolution of 10 containers
//!    moving to one signed digest, with and without `verify` — added
//!    requests (target 2: the `.sig` manifest and its payload blob) and
//!    added time, cold and then with the verdict remembered.
//!
//! `cargo bench --features docker-tests --bench registry`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::cosign::{payload, put_signature, Key};
use common::{ImageSpec, TestRegistry, TestRun};
use container_upgrader::engine::Engine;
use container_upgrader::manifest::Manifest;
use container_upgrader::plan::{self, Action};
use container_upgrader::reconcile;
use container_upgrader::registry::{self, Registry};
use container_upgrader::swap::journal::Journal;
use container_upgrader::swap::Swapper;
use container_upgrader::{observe, resolve};

const REPOS: usize = 10;
const PER_REPO: usize = 10;

fn main() {
    let run = TestRun::new("bench_registry");
    let registry = run.registry();
    let repos: Vec<String> = (0..REPOS).map(|i| registry.repo(&format!("app{i}"))).collect();
    for repo in &repos {
        let spec = ImageSpec { env: vec![("TESTBOX_VERSION", "1")], ..Default::default() };
        run.publish(&format!("{repo}:1"), &spec);
    }
    let spec = ImageSpec { env: vec![("TESTBOX_VERSION", "2")], ..Default::default() };
    run.publish(&format!("{}:2", repos[0]), &spec);
    // The engine must pull app0:2 itself in part 2.
    run.docker(&["rmi", &format!("{}:2", repos[0])]);
    let mut text = String::from("version: 1\ntargets:\n");
    for (r, repo) in repos.iter().enumerate() {
        for i in 0..PER_REPO {
            let suffix = format!("c{r}-{i}");
            run.run_container(&suffix, &format!("{repo}:1"), &[]);
            text += &format!("  - container: {}\n    image: {repo}:1\n", run.name(&suffix));
        }
    }
    let manifest = Manifest::parse("bench.yaml", &text).expect("manifest");
    let state = run.empty_dir("state");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let engine = Engine::connect().await.expect("engine");
        // 1. No-change pass.
        let observed = observe::observe(&engine, &manifest, &Default::default()).await.expect("observe");
        let needed = plan::needs_resolution(&manifest, &observed);
        let client =
            Registry::new(&[], manifest.targets.iter().map(|t| t.want.image()), registry::DEFAULT_TIMEOUT);
        let log_before = registry.log().lines().count();
        let resolved = resolve::resolve(&manifest, &observed, &client, &engine, &needed).await;
        let p = plan::plan(&manifest, &observed, &resolved);
        assert_eq!(p.count(Action::None), REPOS * PER_REPO, "not a no-change plan: {:?}", p.actions.first());
        let log: Vec<String> = registry.log().lines().skip(log_before).map(str::to_string).collect();
        let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
        println!(
            "no-change pass, {} targets on {REPOS} repositories ({REPOS} distinct references):",
            REPOS * PER_REPO
        );
        println!("  registry requests (client count): {}", client.calls());
        println!(
            "  registry access log: {} HEAD manifests, {} GET, {} GET /v2/ pings",
            count("\"HEAD /v2/"),
            count("\"GET /v2/"),
            count("\"GET /v2/ ")
        );

        // 2. Ten containers of one repository move to one new image.
        let mut text = String::from(
            "version: 1\ndefaults:\n  health: {stable: 500ms, timeout: 30s, probe: running}\ntargets:\n",
        );
        for i in 0..PER_REPO {
            text += &format!("  - container: {}\n    image: {}:2\n", run.name(&format!("c0-{i}")), repos[0]);
        }
        let m = Manifest::parse("bench2.yaml", &text).expect("manifest");
        let swapper = Swapper::new(engine.clone(), Journal::open(&state).expect("journal"));
        let client = Registry::new(&[], m.targets.iter().map(|t| t.want.image()), registry::DEFAULT_TIMEOUT);
        let before = engine.calls().get("images/create").copied().unwrap_or(0);
        let t = std::time::Instant::now();
        let report = reconcile::reconcile_once(&swapper, &m, &client, 16, None, &Default::default())
            .await
            .expect("reconcile");
        let took = t.elapsed();
        let pulls = engine.calls().get("images/create").copied().unwrap_or(0) - before;
        println!(
            "pass moving {PER_REPO} containers to one new image ({:.1} s, {} swaps):",
            took.as_secs_f64(),
            report.applied.len()
        );
        println!("  engine pulls (images/create): {pulls}");
        println!("  registry requests (client count): {}", client.calls());

        // 3. Signature verification.
        verification(&run, &registry, &repos, &engine).await;
    });
    std::thread::sleep(Duration::from_millis(10));
}

/// Part 3: what `policy.verify` adds to a no-change pass and to an upgrade.
async fn verification(run: &TestRun, registry: &TestRegistry, repos: &[String], engine: &Engine) {
    const SAMPLES: usize = 7;
    let key = Key::p256();
    let key_file = run.write_file("bench-cosign.pub", key.public_pem());
    let verify = format!("policy:\n  verify:\n    keys: [{}]\n", key_file.display());
    // The same targets as part 1, minus the repository part 2 moved on.
    let mut same = String::new();
    for (r, repo) in repos.iter().enumerate().skip(1) {
        for i in 0..PER_REPO {
            same += &format!("  - container: {}\n    image: {repo}:1\n", run.name(&format!("c{r}-{i}")));
        }
    }
    let plain = Manifest::parse("b3.yaml", &format!("version: 1\ntargets:\n{same}")).expect("manifest");
    let verified =
        Manifest::parse("b3v.yaml", &format!("version: 1\n{verify}targets:\n{same}")).expect("manifest");
    let (calls, plain_ms) = resolve_times(&plain, engine, SAMPLES, Action::None).await;
    let (v_calls, v_ms) = resolve_times(&verified, engine, SAMPLES, Action::None).await;
    println!("no-change pass with policy.verify, {} targets (median of {SAMPLES}):", plain.targets.len());
    println!(
        "  registry requests: {v_calls} (without verify: {calls}; added: {})",
        v_calls as i64 - calls as i64
    );
    println!("  resolve + plan: {v_ms:.1} ms (without verify: {plain_ms:.1} ms)");

    // Ten containers of app1 move to app1:2, signed.
    let repo = &repos[1];
    let spec = ImageSpec { env: vec![("TESTBOX_VERSION", "2")], ..Default::default() };
    run.publish(&format!("{repo}:2"), &spec);
    let digest = registry.digest_of(&format!("{repo}:2"));
    let p = payload(repo, &digest);
    put_signature(registry, &registry.path_of(repo), &digest, &p, &key.sign(&p));
    let mut up = String::new();
    for i in 0..PER_REPO {
        up += &format!("  - container: {}\n    image: {repo}:2\n", run.name(&format!("c1-{i}")));
    }
    let plain = Manifest::parse("b4.yaml", &format!("version: 1\ntargets:\n{up}")).expect("manifest");
    let verified =
        Manifest::parse("b4v.yaml", &format!("version: 1\n{verify}targets:\n{up}")).expect("manifest");
    let (calls, plain_ms) = resolve_times(&plain, engine, SAMPLES, Action::Upgrade).await;
    let (cold_calls, cold_ms) = resolve_times(&verified, engine, 1, Action::Upgrade).await;
    let (warm_calls, warm_ms) = resolve_times(&verified, engine, SAMPLES, Action::Upgrade).await;
    println!("resolving {PER_REPO} containers moving to one signed digest:");
    println!("  without verify: {calls} requests, {plain_ms:.1} ms (median of {SAMPLES})");
    println!(
        "  verified, first time: {cold_calls} requests (added: {}), {cold_ms:.1} ms",
        cold_calls as i64 - calls as i64
    );
    println!("  verified, verdict remembered: {warm_calls} requests, {warm_ms:.1} ms (median of {SAMPLES})");
}

/// Resolves and plans `m` `samples` times, each with a new registry client
/// (as a pass after the client's reuse time would); returns the client's
/// request count of the last one and the median time in milliseconds.
async fn resolve_times(m: &Manifest, engine: &Engine, samples: usize, expect: Action) -> (u64, f64) {
    let observed = observe::observe(engine, m, &Default::default()).await.expect("observe");
    let needed = plan::needs_resolution(m, &observed);
    let mut times = Vec::new();
    let mut calls = 0;
    for _ in 0..samples {
        let client = Registry::new(&[], m.targets.iter().map(|t| t.want.image()), registry::DEFAULT_TIMEOUT);
        let t = std::time::Instant::now();
        let resolved = resolve::resolve(m, &observed, &client, engine, &needed).await;
        let p = plan::plan(m, &observed, &resolved);
        times.push(t.elapsed());
        assert_eq!(p.count(expect), m.targets.len(), "{:?}", p.actions.first());
        calls = client.calls();
    }
    (calls, common::ms(common::median(&mut times)))
}
