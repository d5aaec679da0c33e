//! Benchmarks of the swap engine, printed, not asserted:
//!
//! 1. stop-first downtime (old container dies → new container starts, from
//!    the engine's own event timestamps) against the floor: the bare API
//!    sequence stop / rename / create / start on an identical container, in
//!    the same process. Target: ≤ floor + 50 ms.
//! 2. N = 20 and 100 containers moved to a new image: the raw floor (bare
//!    API calls, all at once, in this process) against `reconcile --once`
//!    with the default `--parallel` and gates of 1 s and 5 s. Target: all
//!    moved in ≈ the floor whatever the gate; a 5 s gate adds ≈ 5 s to the
//!    exit, not one round per `--parallel` swaps.
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
use container_upgrader::swap::journal::{Journal, Step};
use container_upgrader::swap::{Outcome, SwapRequest, Swapper};

const ROUNDS: usize = 8;

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
        // `BENCH_SWAP=fleet` (or `downtime`) runs one part only.
        let only = std::env::var("BENCH_SWAP").ok();
        let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
        if part("downtime") {
            downtime(&run, &engine, &swapper, &repo).await;
        }
        if part("fleet") {
            fleet(&run, &engine, &swapper, &repo).await;
        }
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

/// Starts `n` containers of `image` named `run.name("{prefix}{i}")`, all at once.
async fn start_fleet(run: &TestRun, engine: &Engine, image: &str, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| run.name(&format!("{prefix}{i}"))).collect();
    let started = names.iter().map(|name| async move {
        let id = engine.create(name, body(run, image)).await.expect("create");
        engine.start(id.as_str()).await.expect("start");
    });
    futures_util::future::join_all(started).await;
    names
}

fn body(run: &TestRun, image: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some([(common::RUN_LABEL.to_string(), run.id().to_string())].into()),
        ..Default::default()
    }
}

/// The floor: every container moved by bare API calls, all at once, in
/// this process (stop, rename, create, start, remove the old). Returns when
/// the last new container started.
async fn raw_floor(run: &TestRun, engine: &Engine, names: &[String], image: &str) -> Duration {
    let t = Instant::now();
    let moved = names.iter().map(|name| async move {
        let old = format!("{name}-old");
        engine.stop(name, None).await.expect("stop");
        engine.rename(name, &old).await.expect("rename");
        let id = engine.create(name, body(run, image)).await.expect("create");
        engine.start(id.as_str()).await.expect("start");
        let at = t.elapsed();
        engine.remove(&old).await.expect("remove");
        at
    });
    futures_util::future::join_all(moved).await.into_iter().max().unwrap_or_default()
}

/// One pass of the project over `names` to `image`, gate `stable`; returns
/// (all moved: the last `started` in the journal, exit of the pass).
async fn project(swapper: &Swapper, names: &[String], image: &str, stable: &str) -> (Duration, Duration) {
    let mut text = format!(
        "version: 1\ndefaults:\n  pull: if-missing\n  health: {{stable: {stable}, timeout: 60s, probe: running}}\ntargets:\n"
    );
    for name in names {
        text.push_str(&format!("  - container: {name}\n    image: {image}\n"));
    }
    let m = Manifest::parse("bench.yaml", &text).expect("manifest");
    let registry = Registry::new(&[], m.targets.iter().map(|t| t.want.image()), registry::DEFAULT_TIMEOUT);
    let since = SystemTime::now();
    let t = Instant::now();
    let report =
        reconcile::reconcile_once(swapper, &m, &registry, DEFAULT_PARALLEL, None, &Default::default())
            .await
            .expect("reconcile");
    let exit = t.elapsed();
    let mut moved = Duration::ZERO;
    for (_, applied) in &report.applied {
        let Applied::Swapped(outcome) = applied else { panic!("not swapped: {applied:?}") };
        let Outcome::Committed(op) = &**outcome else { panic!("not committed: {outcome}") };
        let started = op.steps.iter().find(|s| s.step == Step::Started).expect("started step");
        let at = humantime::parse_rfc3339(&started.at).expect("journal time");
        moved = moved.max(at.duration_since(since).unwrap_or_default());
    }
    assert_eq!(report.applied.len(), names.len(), "every container upgraded");
    (moved, exit)
}

/// All N containers to a new image: the raw floor against a pass with the
/// default `--parallel` and gates of 1 s and 5 s.
async fn fleet(run: &TestRun, engine: &Engine, swapper: &Swapper, repo: &str) {
    let (v1, v2) = (format!("{repo}:1"), format!("{repo}:2"));
    println!("N containers to a new image, default --parallel {DEFAULT_PARALLEL} (gate: running, stable S):");
    for n in [20, 100] {
        let names = start_fleet(run, engine, &v1, &format!("fleet{n}-"), n).await;
        let floor = raw_floor(run, engine, &names, &v2).await;
        println!("  N={n:>3} raw API floor, all at once:      all moved {:5.2} s", floor.as_secs_f64());
        for (stable, image) in [("1s", &v1), ("5s", &v2)] {
            let (moved, exit) = project(swapper, &names, image, stable).await;
            println!(
                "  N={n:>3} container-upgrader, stable {stable}:  all moved {:5.2} s ({:.2}x the floor), exit {:5.2} s",
                moved.as_secs_f64(),
                moved.as_secs_f64() / floor.as_secs_f64(),
                exit.as_secs_f64()
            );
        }
        for name in &names {
            engine.remove(name).await.expect("remove");
        }
    }
}
