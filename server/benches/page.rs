//! The fleet view at 300 and then 3,000 hosts, in headless Chromium:
//! figures printed, nothing timed asserted.
//!
//! The real server binary (release build) on SQLite, a real registry
//! holding the app's tags 1.0.0 … 1.4.2 and 2.0.0 (so the version checker
//! marks patch / minor / major updates), and simulated agents speaking the
//! real HTTP protocol: each enrols (50 at a time, with one of 15
//! enrolment tokens that carry its `region` and `env` labels) and reports
//! one target `app` on a version: the first 12 on 1.0.0 (the oldest), the
//! rest spread over 1.1.0 … 1.4.2; one in ten runs its image pinned by
//! digest, one in 25 reports a rolled-back last op, every 97th has a long
//! name without separators, and one in 20 goes silent (the server runs
//! with `--offline-after 1`; the others keep polling, as agents do).
//!
//! Then, logged in through the form in a 1280 × 900 window, per scale:
//! - `/` first paint (`first-contentful-paint`) and navigation timing,
//!   median of 5 loads; the HTML's size;
//! - the live refresh (`/?format=json` of the page on screen) as the
//!   page's own script makes it (Resource Timing) and over plain HTTP;
//! - polling paused while the tab is hidden;
//! - the time from `/` to the 12 hosts on the oldest version: one click on
//!   the overview's oldest version;
//! - horizontal overflow at 1280 px (the fleet view, 500 rows per page, a
//!   long-named agent's page).
//!
//! `cargo bench -p container-upgrader-server --features docker-tests --bench page`

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http, median, ms, wait_for, Browser, FleetServer, ImageSpec, TestRun, ADMIN_TOKEN};
use serde_json::{json, Value};

const SCALES: [usize; 2] = [300, 3000];
const ENROL_AT_ONCE: usize = 50;
/// Hosts on the oldest version (the first ones enrolled).
const OLDEST: usize = 12;
const NEWER: [&str; 6] = ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.4.1", "1.4.2"];
const REGIONS: [&str; 5] = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
/// One in this many goes silent.
const OFFLINE_EVERY: usize = 20;
/// One in this many reports a rolled-back last op.
const FAILING_EVERY: usize = 25;
/// The server's offline threshold with `--offline-after 1`: one 30 s poll
/// plus its 10 s margin.
const OFFLINE_AFTER: Duration = Duration::from_secs(42);
const LOADS: usize = 5;

fn version(i: usize) -> &'static str {
    if i < OLDEST {
        "1.0.0"
    } else {
        NEWER[i % NEWER.len()]
    }
}

fn name(i: usize) -> String {
    if i.is_multiple_of(97) {
        format!(
            "host{i:04}inrackseventeenunitfortytwobladethreeofthecmdbimportedfleetnamewithoutanyseparator"
        )
    } else {
        format!("host-{i:04}")
    }
}

struct Setup {
    app: String,
    digest: String,
}

impl Setup {
    fn image(&self, i: usize) -> String {
        let image = format!("{}:{}", self.app, version(i));
        if i.is_multiple_of(10) {
            format!("{image}@{}", self.digest)
        } else {
            image
        }
    }

    fn report(&self, i: usize) -> Value {
        let image = self.image(i);
        let last_op = (i % FAILING_EVERY == 1).then(|| {
            json!({
                "op_id": format!("20261205T000000Z-{i:04}"),
                "outcome": "rolled_back",
                "from": format!("{}:{}", self.app, version(i)),
                "to": format!("{}:2.0.0", self.app),
                "reason": "health gate: exited with code 4 after 300 ms",
                "updated_at": "2026-12-05T00:00:03Z",
            })
        });
        json!({
            "controller_version": "0.1.0",
            "controller": {"container": "ctl", "image": "registry.local:5000/ops/container-upgrader:0.1.0"},
            "updated_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "targets": [{
                "target": "app",
                "container": "app",
                "image": image,
                "digest": self.digest,
                "version": version(i),
                "desired": image,
                "action": "none",
                "reason": "up to date",
                "last_op": last_op,
            }],
            "holds": [],
        })
    }
}

struct Agent {
    i: usize,
    credential: String,
}

struct Fleet {
    base: String,
    client: reqwest::Client,
    tokens: Vec<String>,
    setup: Setup,
    /// The agents that keep polling.
    online: Mutex<Vec<Arc<Agent>>>,
    stop: AtomicBool,
}

impl Fleet {
    async fn enrol(&self, i: usize) -> Option<Agent> {
        let manifest = format!(
            "version: 1\ndefaults:\n  drift_interval: 5m\ntargets:\n  - container: app\n    image: {}\n",
            self.setup.image(i)
        );
        let token = &self.tokens[i % self.tokens.len()];
        let body = json!({"token": token, "name": name(i), "manifest": manifest});
        // As current agents do: the token in the header too, checked before
        // the body is read (an enrolment without it counts against the
        // server's budget for requests without a credential).
        let request =
            self.client.post(format!("{}/v1/agent/enrol", self.base)).bearer_auth(token).json(&body);
        let answer = request.send().await.ok()?;
        let status = answer.status();
        let value: Value = answer.json().await.ok()?;
        if status.as_u16() != 201 {
            eprintln!("enrol {i}: {status} {value}");
            return None;
        }
        Some(Agent { i, credential: value["credential"].as_str()?.to_string() })
    }

    async fn report(&self, agent: &Agent) {
        let url = format!("{}/v1/agent/report", self.base);
        let body = self.setup.report(agent.i);
        match self.client.post(url).bearer_auth(&agent.credential).json(&body).send().await {
            Ok(a) if a.status().is_success() => {}
            Ok(a) => eprintln!("report {}: {}", agent.i, a.status()),
            Err(e) => eprintln!("report {}: {e}", agent.i),
        }
    }

    /// Agents `from..to` enrol and report, 50 at a time; the silent ones
    /// are left out of the polling.
    async fn grow(self: &Arc<Self>, from: usize, to: usize) -> usize {
        let mut enrolled = 0;
        for chunk in (from..to).collect::<Vec<_>>().chunks(ENROL_AT_ONCE) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let fleet = self.clone();
                    tokio::spawn(async move {
                        let agent = fleet.enrol(i).await?;
                        fleet.report(&agent).await;
                        Some(agent)
                    })
                })
                .collect();
            for t in tasks {
                if let Ok(Some(agent)) = t.await {
                    enrolled += 1;
                    if agent.i % OFFLINE_EVERY != 3 {
                        if let Ok(mut online) = self.online.lock() {
                            online.push(Arc::new(agent));
                        }
                    }
                }
            }
        }
        enrolled
    }

    /// Every online agent polls its desired state (no wait) every 15 s,
    /// 25 at a time, until stopped: what keeps it online.
    async fn heartbeat(self: Arc<Self>) {
        while !self.stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let agents: Vec<Arc<Agent>> = self.online.lock().map(|o| o.clone()).unwrap_or_default();
            for chunk in agents.chunks(25) {
                let polls: Vec<_> = chunk
                    .iter()
                    .map(|a| {
                        let request = self
                            .client
                            .get(format!("{}/v1/agent/desired", self.base))
                            .bearer_auth(&a.credential);
                        tokio::spawn(async move { request.send().await.map(|r| r.status()) })
                    })
                    .collect();
                for p in polls {
                    let _ = p.await;
                }
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            let rest = Duration::from_secs(15).saturating_sub(started.elapsed());
            tokio::time::sleep(rest).await;
        }
    }
}

/// What one scale measured.
#[derive(Default)]
struct Figures {
    agents: usize,
    setup_s: f64,
    html_bytes: usize,
    html_ms: f64,
    fcp_ms: f64,
    response_end_ms: f64,
    dom_ready_ms: f64,
    load_ms: f64,
    live_bytes: u64,
    live_ms: f64,
    live_http_bytes: usize,
    live_http_ms: f64,
    live_500_bytes: usize,
    store_ms: f64,
    hidden_polls: u64,
    click_ms: f64,
    click_fcp_ms: f64,
    oldest_rows: u64,
    overflow: Vec<(String, i64)>,
}

/// Navigation and paint timing of the page in `browser`, in ms (`fcp`
/// -1 when the page painted nothing within 3 s).
fn timing(browser: &Browser) -> Value {
    // The paint entry may land a moment after `load`.
    let deadline = Instant::now() + Duration::from_secs(3);
    while browser.js("return performance.getEntriesByType('paint').length;", json!([])) == json!(0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    browser.js(
        "const n = performance.getEntriesByType('navigation')[0];
         const p = performance.getEntriesByType('paint');
         const fcp = p.find(e => e.name === 'first-contentful-paint') || p.find(e => e.name === 'first-paint');
         return { fcp: fcp ? fcp.startTime : -1, responseEnd: n.responseEnd,
                  domReady: n.domContentLoadedEventEnd, load: n.loadEventEnd, bytes: n.decodedBodySize };",
        json!([]),
    )
}

fn overflow(browser: &Browser) -> i64 {
    browser
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", json!([]))
        .as_i64()
        .unwrap_or(-1)
}

fn count(browser: &Browser, css: &str) -> u64 {
    browser.js("return document.querySelectorAll(arguments[0]).length;", json!([css])).as_u64().unwrap_or(0)
}

fn live_updates(browser: &Browser) -> u64 {
    browser
        .js("return Number(document.getElementById('live-note').dataset.updates || '0');", json!([]))
        .as_u64()
        .unwrap_or(0)
}

fn json_fetches(browser: &Browser) -> Value {
    browser.js(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('format=json'))
           .map(e => ({ bytes: e.encodedBodySize, duration: e.duration }));",
        json!([]),
    )
}

fn measure(server: &FleetServer, browser: &Browser, agents: usize) -> Figures {
    let base = server.url();
    let mut f = Figures { agents, ..Figures::default() };
    let cookie = server.login(ADMIN_TOKEN);
    let headers = [("Cookie", cookie.as_str())];
    let timed = |path: &str| {
        let started = Instant::now();
        let answer = http(&server.addr, "GET", path, &headers, b"");
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.text());
        (started.elapsed(), answer.body.len())
    };
    let mut html: Vec<Duration> = Vec::new();
    let mut live: Vec<Duration> = Vec::new();
    for _ in 0..10 {
        let (took, bytes) = timed("/");
        html.push(took);
        f.html_bytes = bytes;
        let (took, bytes) = timed("/?format=json");
        live.push(took);
        f.live_http_bytes = bytes;
    }
    f.html_ms = ms(median(&mut html));
    f.live_http_ms = ms(median(&mut live));
    f.live_500_bytes = timed("/?size=500&format=json").1;
    // What reading the fleet from the store costs, without rendering rows.
    let mut store: Vec<Duration> = (0..10).map(|_| timed("/?q=no-such-host&format=json").0).collect();
    f.store_ms = ms(median(&mut store));

    // First paint, median of fresh loads.
    let mut fcp = Vec::new();
    let mut end = Vec::new();
    let mut ready = Vec::new();
    let mut load = Vec::new();
    for _ in 0..LOADS {
        browser.goto(&format!("{base}/"));
        browser.find("#fleet");
        let t = timing(browser);
        let d = |k: &str| Duration::from_secs_f64(t[k].as_f64().unwrap_or(-1.0).max(0.0) / 1000.0);
        fcp.push(d("fcp"));
        end.push(d("responseEnd"));
        ready.push(d("domReady"));
        load.push(d("load"));
    }
    f.fcp_ms = ms(median(&mut fcp));
    f.response_end_ms = ms(median(&mut end));
    f.dom_ready_ms = ms(median(&mut ready));
    f.load_ms = ms(median(&mut load));
    f.overflow.push(("/".into(), overflow(browser)));

    // The page's own live refresh.
    wait_for("the page's first live refresh", Duration::from_secs(20), || live_updates(browser) >= 1);
    // A few of them: the median.
    wait_for("three live refreshes", Duration::from_secs(30), || live_updates(browser) >= 3);
    let fetches = json_fetches(browser).as_array().cloned().unwrap_or_default();
    f.live_bytes = fetches.iter().filter_map(|e| e["bytes"].as_u64()).max().unwrap_or(0);
    let mut took: Vec<Duration> = fetches
        .iter()
        .filter_map(|e| e["duration"].as_f64())
        .map(|d| Duration::from_secs_f64(d / 1000.0))
        .collect();
    f.live_ms = if took.is_empty() { -1.0 } else { ms(median(&mut took)) };

    // Hidden: no polling for 7 s (two periods), then back.
    browser.js(
        "Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
         document.dispatchEvent(new Event('visibilitychange')); return null;",
        json!([]),
    );
    let before = json_fetches(browser).as_array().map_or(0, Vec::len) as u64;
    std::thread::sleep(Duration::from_secs(7));
    let after = json_fetches(browser).as_array().map_or(0, Vec::len) as u64;
    f.hidden_polls = after - before;

    // One click from `/` to the hosts on the oldest version.
    browser.goto(&format!("{base}/"));
    browser.find("#overview-table a.version-count.oldest");
    let started = Instant::now();
    browser.click("#overview-table a.version-count.oldest");
    wait_for("the oldest version's hosts", Duration::from_secs(30), || {
        browser.url().contains("version=1.0.0")
            && browser.js("return document.readyState;", json!([])) == "complete"
            && count(browser, "#fleet") == 1
    });
    f.click_ms = ms(started.elapsed());
    f.click_fcp_ms = timing(browser)["fcp"].as_f64().unwrap_or(-1.0);
    f.oldest_rows = count(browser, "#fleet tr[data-row]");

    browser.goto(&format!("{base}/?size=500"));
    browser.find("#fleet");
    f.overflow.push(("/?size=500".into(), overflow(browser)));
    browser.goto(&format!("{base}/?q=inrackseventeen"));
    browser.click("td.name a");
    browser.find("#targets");
    f.overflow.push(("a long-named agent".into(), overflow(browser)));
    f
}

fn main() {
    let run = TestRun::new("bench_page");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish(&format!("{app}:1.0.0"), &ImageSpec::default());
    let path = registry.path_of(&app);
    let stored = registry.manifest(&path, "1.0.0");
    for tag in NEWER.iter().chain(&["2.0.0"]) {
        registry.put_manifest(&path, tag, &stored.media_type, &stored.body);
    }
    let digest = registry.digest_of(&format!("{app}:1.0.0"));

    let dir = run.write_file("fleet/db/.keep", "").parent().expect("dir").to_path_buf();
    let sqlite = format!("sqlite://{}", dir.join("fleet.db").display());
    let server =
        FleetServer::start(&run, &sqlite, &["--version-check-interval", "5s", "--offline-after", "1"]);
    let mut tokens = Vec::new();
    for c in 0..REGIONS.len() * ENVS.len() {
        let labels = json!({"region": REGIONS[c % REGIONS.len()], "env": ENVS[c % ENVS.len()]});
        let body = json!({"uses": 1000, "expires_in": "2h", "labels": labels}).to_string();
        let answer = server.admin("POST", "/v1/fleet/enrolment-tokens", &body);
        assert_eq!(answer.status, 201, "{}", answer.text());
        let token: Value = serde_json::from_slice(&answer.body).expect("JSON");
        tokens.push(token["token"].as_str().expect("token").to_string());
    }

    container_upgrader::tls::ensure_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let fleet = Arc::new(Fleet {
        base: server.url(),
        client,
        tokens,
        setup: Setup { app: app.clone(), digest },
        online: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let heartbeat = runtime.spawn(fleet.clone().heartbeat());
    let browser = Browser::start();
    browser.set_window_size(1280, 900);
    browser.goto(&format!("{}/login", server.url()));
    browser.type_into("#secret", ADMIN_TOKEN);
    browser.click("#login");
    browser.find("#fleet");

    let mut all = Vec::new();
    let mut have = 0;
    for scale in SCALES {
        let started = Instant::now();
        have += runtime.block_on(fleet.grow(have, scale));
        let setup = started.elapsed();
        println!("{have} agents enrolled and reported in {:.1} s", setup.as_secs_f64());
        // The version checker has the tags, and the silent ones are offline.
        wait_for("every target's updates", Duration::from_secs(120), || {
            let agents = server.agents();
            agents.len() == have && agents.iter().all(|a| a["targets"][0]["updates"]["major"] == "2.0.0")
        });
        // The silent ones were last heard from during the setup.
        std::thread::sleep(OFFLINE_AFTER.saturating_sub(started.elapsed().saturating_sub(setup)));
        let silent = (0..have).filter(|i| i % OFFLINE_EVERY == 3).count();
        wait_for("the silent agents to be offline", Duration::from_secs(90), || {
            server.agents().iter().filter(|a| a["status"] == "offline").count() == silent
        });
        let mut f = measure(&server, &browser, have);
        f.setup_s = setup.as_secs_f64();
        all.push(f);
    }
    fleet.stop.store(true, Ordering::Relaxed);
    heartbeat.abort();

    println!();
    println!("fleet view (`/`) in headless Chromium, 1280 × 900; default page size 100; medians");
    println!(
        "| figure | {} |",
        all.iter().map(|f| format!("{} agents", f.agents)).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|{}", "---|".repeat(all.len()));
    let row = |what: &str, v: &dyn Fn(&Figures) -> String| {
        println!("| {what} | {} |", all.iter().map(v).collect::<Vec<_>>().join(" | "));
    };
    row("enrol + first report (50 at a time)", &|f| format!("{:.1} s", f.setup_s));
    row("`/` first contentful paint", &|f| format!("{:.0} ms", f.fcp_ms));
    row("`/` response end / DOM ready / load", &|f| {
        format!("{:.0} / {:.0} / {:.0} ms", f.response_end_ms, f.dom_ready_ms, f.load_ms)
    });
    row("`/` HTML size; server time (HTTP)", &|f| {
        format!("{:.1} KB; {:.1} ms", f.html_bytes as f64 / 1000.0, f.html_ms)
    });
    row("live refresh by the page: size (max); time", &|f| {
        format!("{:.1} KB; {:.1} ms", f.live_bytes as f64 / 1000.0, f.live_ms)
    });
    row("live refresh over HTTP: size; time", &|f| {
        format!("{:.1} KB; {:.1} ms", f.live_http_bytes as f64 / 1000.0, f.live_http_ms)
    });
    row("same, filtered to no row (the store's part)", &|f| format!("{:.1} ms", f.store_ms));
    row("live refresh, 500 rows per page: size", &|f| format!("{:.1} KB", f.live_500_bytes as f64 / 1000.0));
    row("polls while hidden (7 s)", &|f| f.hidden_polls.to_string());
    row("`/` → oldest version's hosts: one click", &|f| {
        format!(
            "{:.0} ms ({} rows; that page's first paint {:.0} ms)",
            f.click_ms, f.oldest_rows, f.click_fcp_ms
        )
    });
    row("horizontal overflow at 1280 px", &|f| {
        f.overflow.iter().map(|(page, px)| format!("{page}: {px} px")).collect::<Vec<_>>().join(", ")
    });
}
