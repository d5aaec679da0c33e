//! Benchmarks of the swap engine, printed, not asserted:
//!
//! 1. stop-first downtime (old container dies → new container starts, from
//!    the engine's own event timestamps) against the floor: the bare API
//!    sequence stop / rename / create / start on an identical container, in
//!    the same process. Target: ≤ floor + 50 ms.
//! 2. `reconcile --once` over 20 containers, one after another (parallel 1)
//!    against the default parallelism and 20 at once. Target: ≥ 5× faster.
//!
//! `cargo bench --features docker-tests --bench swap`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerCreateBody;
use common::{median, ms, TestRun};
use container_upgrader::engine::Engine;
use container_upgrader::manifest::{HealthGate, Manifest, Order, Probe, PullPolicy, Settings};
use container_upgrader::reconcile::{self, Applied, DEFAULT_PARALLEL};
use container_upgrader::reference::ImageRef;
use container_upgrader::registry::{self, Registry};
use container_upgrader::swap::journal::Journal;
use container_upgrader::swap::{Outcome, SwapRequest, Swapper};

const ROUNDS: usize = 8;
const FLEET: usize = 20;

fn main() {
    let run = TestRun::new("bench_swap");
    let registry = run.registry();
    let repo = registry.repo("app");
    run.publish_versions(&repo);
    let state = run.write_file("state/.keep", "").parent().expect("dir").to_path_buf();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let engine = Engine::connect().await.expect("engine");
        let swapper = Swapper::new(engine.clone(), Journal::open(&state).expect("journal"));
        downtime(&run, &engine, &swapper, &repo).await;
        fleet(&run, &swapper, &repo).await;
    });
}

fn settings(parallel_stable: Duration) -> Settings {
    Settings {
        pull: PullPolicy::IfMissing,
        order: Order::StopFirst,
        rollback: true,
        cleanup: false,
        health: HealthGate {
            timeout: Duration::from_secs(30),
            stable: parallel_stable,
            probe: Probe::Running,
        },
        update: Default::default(),
        hooks: Default::default(),
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Time from the `die` of the container named `name` to the next `start`
/// of a container with that name, from the engine's event log.
fn gap(run: &TestRun, name: &str, since: f64, until: f64) -> Duration {
    let filter = format!("container={name}");
    let out = run.docker(&[
        "events",
        "--since",
        &format!("{since:.3}"),
        "--until",
        &format!("{until:.3}"),
        "--filter",
        "type=container",
        "--filter",
        &filter,
        "--format",
        "{{.Action}} {{.TimeNano}}",
    ]);
    let mut die = None;
    for line in out.lines() {
        let (action, nanos) = line.split_once(' ').expect("event line");
        let nanos: i64 = nanos.parse().expect("nanos");
        match action {
            "die" if die.is_none() => die = Some(nanos),
            "start" => {
                if let Some(d) = die {
                    return Duration::from_nanos(u64::try_from(nanos - d).expect("start after die"));
                }
            }
            _ => {}
        }
    }
    panic!("no die→start for {name} in:\n{out}");
}

async fn downtime(run: &TestRun, engine: &Engine, swapper: &Swapper, repo: &str) {
    let (v1, v2) = (format!("{repo}:1"), format!("{repo}:2"));
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for i in 0..ROUNDS {
        // Ours: a full swap (gate excluded from downtime: it runs after start).
        let name = run.name(&format!("ours{i}"));
        run.run_container(&format!("ours{i}"), &v1, &[]);
        let since = unix_now();
        let request = SwapRequest {
            container: name.clone(),
            image: ImageRef::parse(&v2).expect("ref"),
            planned: None,
            settings: settings(Duration::from_millis(200)),
            op_id: None,
            service: false,
        };
        let outcome = swapper.swap(&request).await.expect("swap");
        assert!(matches!(outcome, Outcome::Committed(_)), "{outcome}");
        ours.push(gap(run, &name, since, unix_now() + 1.0));

        // Floor: the bare sequence on an identical container.
        let name = run.name(&format!("floor{i}"));
        run.run_container(&format!("floor{i}"), &v1, &[]);
        let since = unix_now();
        engine.stop(&name, None).await.expect("stop");
        engine.rename(&name, &format!("{name}-old")).await.expect("rename");
        let body = ContainerCreateBody {
            image: Some(v2.clone()),
            labels: Some([(common::RUN_LABEL.to_string(), run.id().to_string())].into()),
            ..Default::default()
        };
        let id = engine.create(&name, body).await.expect("create");
        engine.start(id.as_str()).await.expect("start");
        floor.push(gap(run, &name, since, unix_now() + 1.0));
        engine.remove(&format!("{name}-old")).await.expect("remove");
    }
    let (o, f) = (median(&mut ours), median(&mut floor));
    println!("stop-first downtime (die → start, engine event times), median of {ROUNDS}:");
    println!("  container-upgrader swap:              {:8.1} ms", ms(o));
    println!("  floor: bare stop/rename/create/start: {:8.1} ms", ms(f));
    println!(
        "  difference:                           {:+8.1} ms  (target ≤ +50 ms: {})",
        ms(o) - ms(f),
        if o <= f + Duration::from_millis(50) { "met" } else { "NOT met" }
    );
}

async fn fleet(run: &TestRun, swapper: &Swapper, repo: &str) {
    for i in 0..FLEET {
        run.run_container(&format!("fleet{i}"), &format!("{repo}:1"), &[]);
    }
    let manifest = |tag: &str| {
        let mut text = String::from(
            "version: 1\ndefaults:\n  pull: if-missing\n  health: {stable: 2s, timeout: 60s, probe: running}\ntargets:\n",
        );
        for i in 0..FLEET {
            text.push_str(&format!(
                "  - container: {}\n    image: {repo}:{tag}\n",
                run.name(&format!("fleet{i}"))
            ));
        }
        Manifest::parse("bench.yaml", &text).expect("manifest")
    };
    let mut results = Vec::new();
    for (tag, parallel) in [("2", 1), ("1", DEFAULT_PARALLEL), ("2", FLEET)] {
        let m = manifest(tag);
        let registry =
            Registry::new(&[], m.targets.iter().map(|t| t.want.image()), registry::DEFAULT_TIMEOUT);
        let t = Instant::now();
        let report = reconcile::reconcile_once(swapper, &m, &registry, parallel, None, &Default::default())
            .await
            .expect("reconcile");
        let took = t.elapsed();
        let committed = report
            .applied
            .iter()
            .filter(|(_, a)| matches!(a, Applied::Swapped(o) if matches!(**o, Outcome::Committed(_))))
            .count();
        assert_eq!(committed, FLEET, "every container upgraded");
        results.push((parallel, took));
    }
    let sequential = results[0].1;
    println!("reconcile --once over {FLEET} containers (gate: running, stable 2s):");
    for (parallel, took) in &results {
        println!(
            "  parallel {parallel:>2}: {:6.2} s  ({:.1}x faster than one after another)",
            took.as_secs_f64(),
            sequential.as_secs_f64() / took.as_secs_f64()
        );
    }
}
