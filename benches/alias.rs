//! What a client sees during swaps, printed, not asserted: a client
//! container polls a service by its network alias every 50 ms on a
//! user-defined network (resolving the alias afresh for every request, one
//! connection per request), while the service is swapped 20 times, each
//! way:
//!
//! 1. stop-first (container-upgrader);
//! 2. start-first as it was before the old container left its networks
//!    first: bare API calls (create the new one with the alias, start, a
//!    1 s gate, stop the old one, rename both, remove the old one);
//! 3. start-first (container-upgrader): the old container leaves its
//!    networks once the new one passed, then stops.
//!
//! Two clients poll side by side: one gives up on a request after 1 s
//! (connect, send or read), one after 5 s. Failed requests are counted per
//! swap, from the start of the swap to 500 ms after it returned, and so are
//! slow ones (over 250 ms) of the patient client.
//! `cargo bench --features docker-tests --bench alias`

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, EndpointSettings, NetworkingConfig};
use common::TestRun;
use container_upgrader::engine::Engine;
use container_upgrader::manifest::{HealthGate, Order, Probe, PullPolicy, Settings};
use container_upgrader::reference::ImageRef;
use container_upgrader::swap::journal::Journal;
use container_upgrader::swap::{Outcome, SwapRequest, Swapper};

const SWAPS: usize = 20;
const PORT: &str = "8080";
const ALIAS: &str = "svc";
/// Time after a swap returns still counted as its own.
const TAIL: Duration = Duration::from_millis(500);
/// A request slower than this is counted as slow.
const SLOW_MS: u128 = 250;
/// The clients' names' suffixes and their timeouts.
const CLIENTS: [(&str, &str); 2] = [("client-1s", "1000"), ("client-5s", "5000")];

fn main() {
    let run = TestRun::new("bench_alias");
    let registry = run.registry();
    let repo = registry.repo("app");
    run.publish_versions(&repo);
    let net = run.network("alias");
    let state = run.write_file("state/.keep", "").parent().expect("dir").to_path_buf();
    let service = run.name("svc");
    let port_env = format!("TESTBOX_HTTP_PORT={PORT}");
    let v1 = format!("{repo}:1");
    run.run_container("svc", &v1, &["--network", &net, "--network-alias", ALIAS, "-e", &port_env]);
    let target = format!("{ALIAS}:{PORT}");
    let label = run.label();
    let clients: Vec<String> = CLIENTS
        .iter()
        .map(|(suffix, timeout)| {
            let name = run.name(suffix);
            let args = ["run", "-d", "--name", &name, "--label", &label, "--network", &net];
            run.docker(&[&args[..], &[&v1, "poll", &target, "50", timeout]].concat());
            name
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let images = [format!("{repo}:2"), v1];
    let results = rt.block_on(async {
        let engine = Engine::connect().await.expect("engine");
        let swapper = Swapper::new(engine.clone(), Journal::open(&state).expect("journal"));
        let ours = |order: Order| {
            let (swapper, service) = (&swapper, &service);
            move |image: String| async move {
                let request = SwapRequest {
                    container: service.clone(),
                    image: ImageRef::parse(&image).expect("ref"),
                    planned: None,
                    settings: settings(order),
                    op_id: None,
                    service: false,
                };
                let outcome = swapper.swap(&request).await.expect("swap");
                assert!(matches!(outcome, Outcome::Committed(_)), "{outcome}");
            }
        };
        let mut results = Vec::new();
        let stop_first = rounds(&images, ours(Order::StopFirst)).await;
        results.push(("stop-first (container-upgrader)", stop_first));
        let bare = |image: String| bare_start_first(&engine, &run, &service, &net, image);
        results.push(("start-first, old sequence (bare API)", rounds(&images, bare).await));
        let start_first = rounds(&images, ours(Order::StartFirst)).await;
        results.push(("start-first (container-upgrader)", start_first));
        results
    });
    let logs: Vec<Vec<Line>> = clients.iter().map(|c| parse(&run.logs(c))).collect();
    println!("Clients polling a service by its network alias every 50 ms, {SWAPS} swaps each:");
    for (name, windows) in &results {
        println!("  {name}:");
        for ((suffix, _), lines) in CLIENTS.iter().zip(&logs) {
            let count = |pick: &dyn Fn(&Line) -> bool| -> Vec<usize> {
                windows
                    .iter()
                    .map(|&(from, to)| lines.iter().filter(|l| (from..to).contains(&l.at) && pick(l)).count())
                    .collect()
            };
            let failed = count(&|l| !l.ok);
            let slow = count(&|l| l.ok && l.took > SLOW_MS);
            let requests: usize = count(&|_| true).iter().sum();
            let total: usize = failed.iter().sum();
            println!(
                "    {suffix}: failed {total:>3} of {requests:>4} requests ({:.2} per swap, at most {} in one, {} of {SWAPS} swaps saw one); slow (> {SLOW_MS} ms) {}",
                total as f64 / SWAPS as f64,
                failed.iter().max().copied().unwrap_or(0),
                failed.iter().filter(|&&f| f > 0).count(),
                slow.iter().sum::<usize>(),
            );
        }
    }
    for ((suffix, _), client) in CLIENTS.iter().zip(&clients) {
        println!("{suffix}'s failures, as it printed them:");
        for line in run.logs(client).lines().filter(|l| l.starts_with("fail")) {
            println!("  {line}");
        }
    }
}

/// One request as a client printed it.
struct Line {
    ok: bool,
    at: u128,
    took: u128,
}

fn parse(log: &str) -> Vec<Line> {
    log.lines()
        .filter_map(|l| {
            let mut words = l.split(' ');
            let ok = match words.next()? {
                "ok" => true,
                "fail" => false,
                _ => return None,
            };
            let at = words.next()?.parse().ok()?;
            let took = if ok { words.nth(1)?.parse().ok()? } else { 0 };
            Some(Line { ok, at, took })
        })
        .collect()
}

fn settings(order: Order) -> Settings {
    Settings {
        pull: PullPolicy::IfMissing,
        order,
        rollback: true,
        cleanup: false,
        health: HealthGate {
            timeout: Duration::from_secs(30),
            stable: Duration::from_secs(1),
            probe: Probe::Running,
        },
        update: Default::default(),
        hooks: Default::default(),
    }
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Runs `SWAPS` swaps alternating between `images`; returns each one's
/// window (unix ms, from its start to `TAIL` after it returned).
async fn rounds<F, Fut>(images: &[String; 2], swap: F) -> Vec<(u128, u128)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut windows = Vec::new();
    for i in 0..SWAPS {
        let since = unix_ms();
        swap(images[i % 2].clone()).await;
        tokio::time::sleep(TAIL).await;
        windows.push((since, unix_ms()));
    }
    windows
}

/// start-first before the old container left its networks: the new one
/// joins with the alias, passes a 1 s gate, then the old one is stopped
/// with its alias still on.
async fn bare_start_first(engine: &Engine, run: &TestRun, name: &str, net: &str, image: String) {
    let temp = format!("{name}-new");
    let endpoint = EndpointSettings { aliases: Some(vec![ALIAS.to_string()]), ..Default::default() };
    let body = ContainerCreateBody {
        image: Some(image),
        env: Some(vec![format!("TESTBOX_HTTP_PORT={PORT}")]),
        labels: Some([(common::RUN_LABEL.to_string(), run.id().to_string())].into()),
        host_config: Some(bollard::models::HostConfig {
            network_mode: Some(net.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(net.to_string(), endpoint)])),
        }),
        ..Default::default()
    };
    let id = engine.create(&temp, body).await.expect("create");
    engine.start(id.as_str()).await.expect("start");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = format!("{name}-old");
    engine.stop(name, None).await.expect("stop");
    engine.rename(name, &old).await.expect("rename old");
    engine.rename(id.as_str(), name).await.expect("rename new");
    engine.remove(&old).await.expect("remove old");
}
