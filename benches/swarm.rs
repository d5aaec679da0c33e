//! Benchmark: Swarm services (issue 14) on the engine's single-node Swarm.
//!
//! `cargo bench --features docker-tests --bench swarm` (N via
//! `BENCH_SERVICES`, default 50). Prints figures, asserts none:
//! 1. a no-change pass over N one-replica services: time, and the service
//!    list calls per pass (the target: one);
//! 2. a 3-replica upgrade through the controller (plan, pinned update,
//!    watched to `completed`) against the bare `docker service update
//!    --image` of the same service between the same two images, with the
//!    same rollout settings.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{calls_between, median, ms, wait_for, TestRun};
use container_upgrader::engine::Engine;
use container_upgrader::manifest::Manifest;
use container_upgrader::plan::{self, Action};
use container_upgrader::registry::{self, Registry};
use container_upgrader::{observe, resolve};

const ROUNDS: usize = 10;

fn main() {
    let n: usize = std::env::var("BENCH_SERVICES").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let run = TestRun::on_swarm("bench_swarm");
    let registry = run.registry();
    let repo = registry.repo("app");
    run.publish_versions(&repo);

    let started = Instant::now();
    let names: Vec<String> = (0..n).map(|i| run.name(&format!("s{i}"))).collect();
    // Created without waiting for each (`service` waits); all are waited for below.
    let (label, v1) = (run.label(), format!("{repo}:1"));
    for name in &names {
        let mut args = vec!["service", "create", "--detach", "--name", name, "--label", &label];
        args.extend(["--container-label", &label, "--stop-grace-period", "2s", &v1]);
        run.docker(&args);
    }
    for name in &names {
        run.wait_running(name, 1);
    }
    eprintln!("started {n} services in {:.1} s", started.elapsed().as_secs_f64());

    let mut text = String::from("version: 1\ntargets:\n");
    for name in &names {
        text.push_str(&format!("  - service: {name}\n    image: {repo}:1\n"));
    }
    let manifest = Manifest::parse("bench.yaml", &text).unwrap_or_else(|e| panic!("bench manifest: {e}"));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(no_change(&manifest, n));
    // The services of part 1 are not needed any more: free the node.
    run.docker(
        &[["service", "rm"].as_slice(), &names.iter().map(String::as_str).collect::<Vec<_>>()].concat(),
    );

    upgrade(&run, &repo);
}

async fn no_change(manifest: &Manifest, n: usize) {
    let engine = Engine::connect().await.unwrap_or_else(|e| panic!("{e}"));
    let mut passes = Vec::new();
    let mut per_pass = Default::default();
    let mut registry_calls = 0;
    for _ in 0..ROUNDS {
        let before = engine.calls();
        let t = Instant::now();
        let observed = observe::observe(&engine, manifest, &Default::default()).await.expect("observe");
        let needed = plan::needs_resolution(manifest, &observed);
        let registry =
            Registry::new(&[], manifest.targets.iter().map(|t| t.want.image()), registry::DEFAULT_TIMEOUT);
        let resolved = resolve::resolve(manifest, &observed, &registry, &engine, &needed).await;
        let plan = plan::plan(manifest, &observed, &resolved);
        passes.push(t.elapsed());
        per_pass = calls_between(&before, &engine.calls());
        registry_calls = registry.calls();
        assert_eq!(plan.count(Action::None), n, "not a no-change plan: {:?}", plan.actions.first());
    }
    println!("no-change pass over {n} services ({n} targets), median of {ROUNDS} rounds:");
    println!("  full pass (observe + resolve + plan): {:8.1} ms", ms(median(&mut passes)));
    println!("  Docker API calls per pass:            {per_pass:?}");
    println!("  service list calls per pass:          {}", per_pass.get("services").copied().unwrap_or(0));
    println!("  registry requests per pass:           {registry_calls}");
}

/// The controller's upgrade of a 3-replica service against `docker
/// service update` of the same service, both stop-first, parallelism 1,
/// monitor 1s.
fn upgrade(run: &TestRun, repo: &str) {
    let service = run.service("web", &format!("{repo}:1"), 3, &["--update-monitor", "1s"]);
    let bare = |image: &str| {
        let t = Instant::now();
        run.docker(&["service", "update", "--quiet", "--detach=false", "--image", image, &service]);
        t.elapsed()
    };
    let state = run.empty_dir("state").display().to_string();
    let ours = |image: &str| {
        let text = format!(
            "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\ntargets:\n  - service: {service}\n    image: {image}\n"
        );
        let file = run.write_file("desired-state.yaml", text).display().to_string();
        let t = Instant::now();
        let out = run.cli(&["reconcile", "-f", &file, "--once", "--state-dir", &state]);
        let took = t.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        took
    };
    let settle = || {
        wait_for("the service to settle", Duration::from_secs(60), || {
            run.update_status(&service).0 == "completed"
        })
    };
    // Warm both paths once (the node pulls each image the first time).
    bare(&format!("{repo}:2"));
    settle();
    bare(&format!("{repo}:1"));
    settle();
    let (mut with_us, mut without) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        with_us.push(ours(&format!("{repo}:2")));
        settle();
        with_us.push(ours(&format!("{repo}:1")));
        settle();
        without.push(bare(&format!("{repo}:2")));
        settle();
        without.push(bare(&format!("{repo}:1")));
        settle();
    }
    let (a, b) = (median(&mut with_us), median(&mut without));
    println!("3-replica upgrade (stop-first, parallelism 1, monitor 1s), median of 6:");
    println!("  container-upgrader reconcile --once:   {:8.1} ms", ms(a));
    println!("  bare docker service update --image:    {:8.1} ms", ms(b));
    println!("  ours / bare:                           {:8.2}x", a.as_secs_f64() / b.as_secs_f64());
}
