//! Benchmark: a no-change plan over 500 real containers.
//!
//! `cargo bench --features docker-tests --bench plan` (N via
//! `BENCH_CONTAINERS`). Prints figures, asserts none: the target (under
//! 0.5 s, one container list call) is read by a person. The baseline is one
//! bare `containers/json` call over the same containers, timed in the same
//! process, so the ratio says how much the pipeline adds to the floor.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{calls_between, median, ms, ImageSpec, TestRun};
use container_upgrader::engine::Engine;
use container_upgrader::manifest::Manifest;
use container_upgrader::plan::{self, Action};
use container_upgrader::registry::{self, Registry};
use container_upgrader::{observe, resolve};

const ROUNDS: usize = 10;

fn main() {
    let n: usize = std::env::var("BENCH_CONTAINERS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let run = TestRun::new("bench_plan");
    let registry = run.registry();
    let image = format!("{}:1", registry.repo("app"));
    run.build_image(&image, &ImageSpec::default());
    run.push(&image);

    let started = Instant::now();
    let names = start_containers(&run, &image, n);
    eprintln!("started {n} containers in {:.1} s", started.elapsed().as_secs_f64());

    let mut text = String::from("version: 1\ntargets:\n");
    for name in &names {
        text.push_str(&format!("  - container: {name}\n    image: {image}\n"));
    }
    let manifest = match Manifest::parse("bench.yaml", &text) {
        Ok(m) => m,
        Err(e) => panic!("bench manifest: {e}"),
    };

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(measure(&manifest, n));
}

/// `docker create` in parallel, then `docker start` in batches.
fn start_containers(run: &TestRun, image: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| run.name(&format!("c{i}"))).collect();
    let label = run.label();
    std::thread::scope(|s| {
        for chunk in names.chunks(n.div_ceil(8).max(1)) {
            let (label, image) = (&label, image);
            s.spawn(move || {
                for name in chunk {
                    run.docker(&["create", "--name", name, "--label", label, image]);
                }
                for batch in chunk.chunks(25) {
                    let mut args = vec!["start"];
                    args.extend(batch.iter().map(String::as_str));
                    run.docker(&args);
                }
            });
        }
    });
    names
}

async fn measure(manifest: &Manifest, n: usize) {
    let engine = match Engine::connect().await {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    // Baseline: the one call the pipeline cannot avoid.
    let mut floor = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let listed = engine.list_containers().await.expect("list");
        floor.push(t.elapsed());
        assert!(listed.len() >= n);
    }

    let mut passes = Vec::new();
    let mut pure = Vec::new();
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
        let t_plan = Instant::now();
        let plan = plan::plan(manifest, &observed, &resolved);
        pure.push(t_plan.elapsed());
        passes.push(t.elapsed());
        per_pass = calls_between(&before, &engine.calls());
        registry_calls = registry.calls();
        assert_eq!(plan.count(Action::None), n, "not a no-change plan: {:?}", plan.actions.first());
    }

    let (pass, base) = (median(&mut passes), median(&mut floor));
    println!("no-change plan over {n} running containers ({n} targets), median of {ROUNDS} rounds:");
    println!("  full pass (observe + resolve + plan): {:8.1} ms", ms(pass));
    println!("  pure plan():                          {:8.1} ms", ms(median(&mut pure)));
    println!("  baseline, one bare containers/json:   {:8.1} ms", ms(base));
    println!("  pass / baseline:                      {:8.2}x", pass.as_secs_f64() / base.as_secs_f64());
    println!("  Docker API calls per pass:            {per_pass:?}");
    println!("  registry requests per pass:           {registry_calls}");
    println!(
        "  target: < 500 ms with one container list call: {}",
        if pass < Duration::from_millis(500) && per_pass.get("containers/json") == Some(&1) {
            "met"
        } else {
            "NOT met"
        }
    );
}
