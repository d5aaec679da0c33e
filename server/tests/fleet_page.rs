//! The fleet page in a real browser: headless Chromium (Debian's
//! `chromium` and `chromium-driver`) driven through WebDriver logs in
//! through the form, sees three real `run --server` agents with their
//! versions and "new version available" badges, filters, selects agents
//! for a campaign, fills in the campaign form, previews its waves, starts
//! it and watches the campaign page until it completes without a reload,
//! rolls it back,
//! opens an agent, pins a target through the form and sees the new version
//! arrive without a reload, and logs out. Screenshots of the fleet, the
//! campaign form with its preview, the campaign, and an agent land in
//! `target/page-screenshots/`.
//! Plain HTTP checks the refusals: no session, no CSRF token.
#![cfg(feature = "docker-tests")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{
    http, set_mode, wait_for, Browser, FleetServer, ImageSpec, Spawned, TestRegistry, TestRun, ADMIN_TOKEN,
};
use serde_json::{json, Value};

const VERSIONS: [&str; 4] = ["1.0.0", "1.0.1", "1.1.0", "2.0.0"];

/// A SQLite database in the run's directory.
fn sqlite(run: &TestRun) -> String {
    let dir = run.write_file("fleet/db/.keep", "").parent().expect("dir").to_path_buf();
    format!("sqlite://{}", dir.join("fleet.db").display())
}

fn manifest(container: &str, image: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  drift_interval: 5s\n  health: {{stable: 1s, timeout: 20s}}\ntargets:\n  - container: {container}\n    image: {image}\n"
    )
}

/// Where the screenshots go (kept after the test, as its artifacts).
fn screenshots() -> PathBuf {
    common::repo_root().join("target").join("page-screenshots")
}

struct Fleet {
    run: TestRun,
    server: FleetServer,
    app: String,
    _agents: Vec<Spawned>,
    registry: TestRegistry,
}

/// A registry with the app in four versions, the server, and three agents
/// (two labelled env=prod, one env=staging) each keeping its own
/// container on 1.0.0; returns once all reported and the badges are known.
fn fleet(test: &str) -> Fleet {
    let run = TestRun::new(test);
    let registry = run.registry();
    let app = registry.repo("app");
    for v in VERSIONS {
        let spec = ImageSpec { env: vec![("TESTBOX_VERSION", v)], ..Default::default() };
        run.publish(&format!("{app}:{v}"), &spec);
    }
    let server = FleetServer::start(&run, &sqlite(&run), &["--version-check-interval", "2s"]);
    let mut agents = Vec::new();
    for (i, env) in [(1, "prod"), (2, "prod"), (3, "staging")] {
        let token = server.enrolment_token(&run, &["--label", &format!("env={env}")]);
        let token_file = run.write_file(&format!("secrets/enrol-{i}.token"), format!("{token}\n"));
        set_mode(&token_file, 0o600);
        let name = format!("page-agent-{i}");
        let container = run.name(&format!("app{i}"));
        run.run_container(&format!("app{i}"), &format!("{app}:1.0.0"), &[]);
        let manifest_path = run
            .write_file(&format!("{name}/desired-state.yaml"), manifest(&container, &format!("{app}:1.0.0")));
        let mut cmd = run.cli_command();
        cmd.args(["run", "-f"])
            .arg(&manifest_path)
            .arg("--state-dir")
            .arg(manifest_path.parent().expect("dir").join("state"))
            .args(["--server", &server.url(), "--agent-name", &name, "--server-poll", "10s", "-v"])
            .arg("--enrol-token-file")
            .arg(&token_file);
        agents.push(Spawned::start(cmd, &name));
    }
    wait_for("three agents to report 1.0.0 with its newer versions", Duration::from_secs(120), || {
        let listed = server.agents();
        listed.len() == 3
            && listed.iter().all(|a| {
                let t = &a["targets"][0];
                t["version"] == "1.0.0"
                    && t["updates"]["major"] == "2.0.0"
                    && t["updates"]["patch"] == "1.0.1"
            })
    });
    Fleet { run, server, app, _agents: agents, registry }
}

/// `document.querySelectorAll(css).length`.
fn count(browser: &Browser, css: &str) -> u64 {
    browser.js("return document.querySelectorAll(arguments[0]).length;", json!([css])).as_u64().unwrap_or(0)
}

#[test]
fn a_browser_sees_versions_and_badges_runs_a_campaign_through_the_form_to_completion_rolls_it_back_and_pins()
{
    let f = fleet("fleet-page-browser");
    let base = f.server.url();
    let browser = Browser::start();

    // Without a session the page sends the browser to the login form.
    browser.goto(&format!("{base}/"));
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    browser.type_into("#secret", "not-the-admin-token");
    browser.click("#login");
    browser.find("#login-error");
    browser.type_into("#secret", ADMIN_TOKEN);
    browser.click("#login");
    browser.find("#fleet");
    assert_eq!(browser.url(), format!("{base}/"));

    // Every agent, its version and its badges.
    let text = browser.text();
    for i in 1..=3 {
        assert!(text.contains(&format!("page-agent-{i}")), "{text}");
    }
    assert_eq!(count(&browser, "tr[data-row]"), 3);
    assert_eq!(count(&browser, "td.version"), 3);
    let versions = browser
        .js("return Array.from(document.querySelectorAll('td.version'), e => e.textContent);", json!([]));
    assert_eq!(versions, json!(["1.0.0", "1.0.0", "1.0.0"]));
    assert_eq!(count(&browser, ".badge-major"), 3);
    assert_eq!(count(&browser, ".badge-minor"), 3);
    assert_eq!(count(&browser, ".badge-patch"), 3);
    assert!(text.contains("major 2.0.0") && text.contains("minor 1.1.0") && text.contains("patch 1.0.1"));
    let fleet_png = screenshots().join("fleet.png");
    browser.screenshot(&fleet_png);

    // The overview: one repository, all three hosts on 1.0.0, each count a
    // link to exactly those rows; nothing wider than a 1280 px window.
    assert_eq!(count(&browser, "#overview-table tr[data-group]"), 1);
    assert_eq!(text_of(&browser, "#overview-table a.version-count"), "1.0.0 ×3");
    browser.set_window_size(1280, 900);
    let overflow = browser
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", json!([]));
    assert_eq!(overflow, json!(0), "no horizontal scrolling at 1280 px");
    browser.click("#overview-table a.version-count");
    wait_for("the version filter", Duration::from_secs(10), || browser.url().contains("version=1.0.0"));
    assert_eq!(count(&browser, "tr[data-row]"), 3);
    assert!(text_of(&browser, "[data-cell='fleet:showing']").starts_with("showing 1–3 of 3 rows"));
    browser.goto(&format!("{base}/"));

    // Filter by label through the form, then by status.
    browser.type_into("#filter-label", "env=staging");
    browser.click("#apply-filters");
    wait_for("the label filter", Duration::from_secs(10), || count(&browser, "tr[data-row]") == 1);
    assert!(browser.text().contains("page-agent-3"));
    browser.goto(&format!("{base}/?status=offline"));
    assert_eq!(count(&browser, "tr[data-row]"), 0);
    browser.goto(&format!("{base}/?q=page-agent-2"));
    assert_eq!(count(&browser, "tr[data-row]"), 1);

    // Sort by a column link; select two agents for a campaign.
    browser.goto(&format!("{base}/"));
    browser.click("th a[href*='sort=name']");
    wait_for("the descending sort", Duration::from_secs(10), || browser.url().contains("dir=desc"));
    let first = browser.js("return document.querySelector('td.name a').textContent;", json!([]));
    assert_eq!(first, "page-agent-3");
    browser.click("tr[data-row]:nth-child(1) input[name=agents]");
    browser.click("tr[data-row]:nth-child(2) input[name=agents]");
    browser.click("#create-campaign");
    create_and_watch_a_campaign(&f, &browser);

    // One agent: pin its target to 1.1.0 through the form.
    browser.goto(&format!("{base}/?sort=name"));
    browser.click("td.name a");
    browser.find("#targets");
    assert_eq!(
        browser.js("return document.getElementById('agent-name').textContent;", json!([])),
        "page-agent-1"
    );
    browser.type_into(".pin-image", &format!("{}:1.1.0", f.app));
    browser.click(".pin-button");
    browser.find("#pinned");

    // The new version arrives in place, without a reload.
    browser.js("window.stillTheSamePage = true; return null;", json!([]));
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while browser.js("return document.querySelector('td.version').textContent;", json!([])) != "1.1.0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the pinned version did not appear on the page in 90 s; live note: {}; the server says: {}",
            browser.js("return document.getElementById('live-note').textContent;", json!([])),
            f.server.agent_named("page-agent-1").unwrap_or(Value::Null)["targets"]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(browser.js("return window.stillTheSamePage === true;", json!([])), Value::Bool(true));
    let agent_png = screenshots().join("agent.png");
    browser.screenshot(&agent_png);
    let container = f.run.name("app1");
    assert_eq!(f.run.inspect(&container, "{{.Config.Image}}"), format!("{}:1.1.0", f.app));

    // Logging out ends the session.
    browser.click("#logout");
    browser.find("#secret");
    browser.goto(&format!("{base}/"));
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    eprintln!("page screenshots: {} and {}", fleet_png.display(), agent_png.display());
}

/// `textContent` of the first element matching `css` ("" when none).
fn text_of(browser: &Browser, css: &str) -> String {
    let script = "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';";
    browser.js(script, json!([css])).as_str().unwrap_or_default().to_string()
}

/// From the form the fleet page's "Create campaign" opened with agents 3
/// and 2 ticked: fills it in, previews the waves, starts it, and watches
/// the campaign page (without a reload) until it says completed; rolls it
/// back from the page; the history lists it.
fn create_and_watch_a_campaign(f: &Fleet, browser: &Browser) {
    browser.find("#campaign-form");
    assert!(browser.url().contains("/campaigns/new?agents="), "{}", browser.url());
    assert_eq!(count(browser, "input[name=agents]:checked"), 2, "the fleet page's selection is ticked");
    assert_eq!(count(browser, "#sel-agents:checked"), 1);
    // Each host names its container after itself: one target for all.
    browser.type_into("#f-name", "app to 2.0.0");
    browser.type_into("#f-target", &format!("{}-app*", f.run.id()));
    browser.click("#f-version option[value='2.0.0']");
    browser.type_into("#f-monitor", "2s");
    browser.type_into("#f-deadline", "90s");

    // A bad value first: the form comes back, filled in, saying why.
    browser.type_into("#f-batch", "0%");
    browser.click("#preview");
    browser.find("#form-error");
    assert!(text_of(browser, "#form-error").starts_with("batch `0%`"), "{}", browser.text());
    assert_eq!(count(browser, "input[name=agents]:checked"), 2, "the selection survives a refusal");
    assert_eq!(count(browser, "#start-campaign"), 0);
    browser.type_into("#f-batch", "1");
    browser.click("#preview");
    browser.find("#preview-waves");
    assert_eq!(count(browser, "#preview-waves tr[data-wave]"), 2, "the canary, then one wave of one");
    assert_eq!(text_of(browser, "#preview-image"), format!("{}:2.0.0", f.app));
    assert!(
        f.server.get_json("/v1/fleet/campaigns").as_array().is_some_and(Vec::is_empty),
        "nothing started"
    );
    browser.js("document.getElementById('preview-result').scrollIntoView(); return null;", json!([]));
    let form_png = screenshots().join("campaign-new.png");
    browser.screenshot(&form_png);

    browser.click("#start-campaign");
    browser.find("#campaign-agents");
    assert!(browser.url().contains("/campaigns/"), "{}", browser.url());
    assert_eq!(text_of(browser, "#campaign-name"), "app to 2.0.0");
    assert_eq!(count(browser, "#campaign-agents tr[data-row]"), 2);
    assert_eq!(count(browser, "#pause"), 1, "a running campaign offers pause");
    let first = text_of(browser, "[data-cell='c:state']");
    assert!(first == "running" || first == "completed", "{first}");
    browser.js("window.stillTheSamePage = true; return null;", json!([]));
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut seen = vec![first];
    loop {
        let state = text_of(browser, "[data-cell='c:state']");
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "completed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the campaign did not complete on the page in 180 s (states seen: {seen:?}); the page says:\n{}\nthe server says: {}",
            browser.text(),
            f.server.get_json("/v1/fleet/campaigns")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("running"),
        "the page showed it running first: {seen:?}"
    );
    assert_eq!(
        browser.js("return window.stillTheSamePage === true;", json!([])),
        Value::Bool(true),
        "no reload"
    );
    let states = browser.js(
        "return Array.from(document.querySelectorAll('#campaign-agents [data-cell$=\":state\"]'), e => e.textContent);",
        json!([]),
    );
    assert_eq!(states, json!(["succeeded", "succeeded"]));
    assert_eq!(count(browser, "#rollback"), 1, "a completed campaign offers its rollback, live");
    assert_eq!(count(browser, "#pause"), 0);
    let campaign_png = screenshots().join("campaign.png");
    browser.screenshot(&campaign_png);
    // Every host runs the one digest the server read at creation.
    let pinned = format!("{}:2.0.0@{}", f.app, f.registry.digest_of(&format!("{}:2.0.0", f.app)));
    for i in [2, 3] {
        let container = f.run.name(&format!("app{i}"));
        assert_eq!(f.run.inspect(&container, "{{.Config.Image}}"), pinned, "{container}");
    }

    // Rolled back from the page: both agents return to 1.0.0, in waves.
    browser.click("#rollback");
    browser.find("#confirm-what");
    // A destructive command asks first, on a page of its own.
    assert!(
        text_of(browser, "#confirm-what").contains("sends 2 agent(s)"),
        "the confirmation says what happens"
    );
    browser.click("#confirm");
    browser.find("#waves tr[data-row^='w/rollback/']");
    wait_for("the page to say rolled back", Duration::from_secs(180), || {
        text_of(browser, "[data-cell='c:state']") == "rolled back"
    });
    let rollbacks = browser.js(
        "return Array.from(document.querySelectorAll('#campaign-agents [data-cell$=\":rollback\"]'), e => e.textContent);",
        json!([]),
    );
    assert_eq!(rollbacks, json!(["done", "done"]));
    browser.find("#none-pinned");
    assert_eq!(count(browser, "form.command"), 0, "nothing applies to a rolled-back campaign");
    // Back on exactly the bits each ran: 1.0.0 pinned by its digest.
    let before = format!("{}:1.0.0@{}", f.app, f.registry.digest_of(&format!("{}:1.0.0", f.app)));
    for i in [2, 3] {
        let container = f.run.name(&format!("app{i}"));
        assert_eq!(f.run.inspect(&container, "{{.Config.Image}}"), before, "{container}");
    }

    // The history lists it.
    browser.click("nav a[href='/campaigns']");
    browser.find("#campaigns");
    assert_eq!(count(browser, "#campaigns tr[data-row]"), 1);
    assert!(
        browser.text().contains("app to 2.0.0") && browser.text().contains("rolled back"),
        "{}",
        browser.text()
    );
    eprintln!("campaign screenshots: {} and {}", form_png.display(), campaign_png.display());
}

#[test]
fn the_password_and_the_token_log_in_without_a_session_pages_redirect_and_posts_need_the_csrf_token() {
    let run = TestRun::new("fleet-page-http");
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::from_b64("cGFnZS10ZXN0LXNhbHQ").expect("a salt");
    let phc = argon2::Argon2::default().hash_password(b"staple-battery", &salt).expect("a hash").to_string();
    let password_file = run.write_file("fleet/admin.password", format!("{phc}\n"));
    set_mode(&password_file, 0o600);
    let password_arg = password_file.to_string_lossy().to_string();
    let server = FleetServer::start(&run, &sqlite(&run), &["--admin-password-file", &password_arg]);
    for path in ["/", "/agents/whatever", "/campaigns", "/campaigns/new?agents=a", "/campaigns/whatever"] {
        let answer = http(&server.addr, "GET", path, &[], b"");
        assert_eq!(answer.status, 303, "GET {path}");
        assert_eq!(answer.header("location"), Some("/login"), "GET {path}");
    }
    let wrong = http(
        &server.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"secret=staple-batteryy",
    );
    assert_eq!(wrong.status, 401, "a wrong password");
    server.login("staple-battery");
    let cookie = server.login(ADMIN_TOKEN);
    let with_cookie = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let page = http(&server.addr, "GET", "/", &with_cookie, b"");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("default-src 'self'")));
    // A malformed query is a 400 page naming the parameter, the value and
    // what is allowed.
    for (query, says) in [
        ("size=0", "parameter `size`: `0` is not allowed; expected one of 50, 100, 250, 500"),
        ("page=abc", "parameter `page`: `abc`"),
        ("status=asleep", "expected online, offline or revoked"),
        ("label=env", "expected KEY=VALUE"),
    ] {
        let answer = http(&server.addr, "GET", &format!("/?{query}"), &with_cookie, b"");
        assert_eq!(answer.status, 400, "{query}");
        assert!(answer.text().contains(says), "{query}: {}", answer.text());
    }
    for path in ["/logout", "/agents/whatever/pin", "/campaigns/new", "/campaigns/whatever/pause"] {
        let answer = http(&server.addr, "POST", path, &with_cookie, b"target=web&image=x%3A1");
        assert_eq!(answer.status, 403, "POST {path} without the CSRF token: {}", answer.text());
    }
    // The bearer API is unchanged and the cookie does not open it.
    assert_eq!(http(&server.addr, "GET", "/v1/fleet/agents", &with_cookie, b"").status, 401);
    assert_eq!(server.admin("GET", "/v1/fleet/agents", "").status, 200);
}

/// The operator's path at scale, in the browser: from the overview one
/// click to the hosts on the oldest version, "Create campaign for these
/// N" (the filter, not checkboxes), a version whose health gate fails on
/// every host, the campaign completing with three local rollbacks, and the
/// admin's rollback — confirmed on its own page — sending every pinned
/// host back, so that none is left pinned to the bad image.
#[test]
fn from_the_overview_to_a_campaign_for_these_n_that_fails_and_a_rollback_that_leaves_no_host_pinned() {
    let f = fleet("fleet-page-no-host-behind");
    // 3.0.0 fails its health check on every host.
    let bad = ImageSpec {
        env: vec![("TESTBOX_VERSION", "3.0.0"), ("TESTBOX_HEALTH", "fail")],
        healthcheck: true,
        ..Default::default()
    };
    f.run.publish(&format!("{}:3.0.0", f.app), &bad);
    wait_for("the server to know 3.0.0", Duration::from_secs(60), || {
        f.server.agents().iter().all(|a| a["targets"][0]["updates"]["major"] == "3.0.0")
    });
    let base = f.server.url();
    let browser = Browser::start();
    browser.goto(&format!("{base}/login"));
    browser.type_into("#secret", ADMIN_TOKEN);
    browser.click("#login");
    browser.find("#overview-table");

    // One click from `/` to the hosts on the oldest version.
    browser.click("#overview-table a.version-count");
    wait_for("the version filter", Duration::from_secs(10), || browser.url().contains("version=1.0.0"));
    assert_eq!(count(&browser, "tr[data-row]"), 3);
    assert_eq!(text_of(&browser, "#campaign-for-these"), "Create campaign for these 3");
    browser.click("#campaign-for-these");
    browser.find("#campaign-form");
    browser.set_window_size(1280, 900);
    let overflow = browser
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", json!([]));
    assert_eq!(overflow, json!(0), "no horizontal scrolling on the campaign form at 1280 px");
    assert_eq!(count(&browser, "#sel-filter:checked"), 1, "the filter is the selection");
    assert!(text_of(&browser, "#filter-count").starts_with("3 agent(s) match now"), "{}", browser.text());
    assert_eq!(count(&browser, "#agent-pick input:checked"), 0, "no checkbox ticked");

    browser.type_into("#f-name", "app to 3.0.0");
    browser.type_into("#f-target", &format!("{}-app*", f.run.id()));
    browser.click("#f-version option[value='3.0.0']");
    browser.type_into("#f-canary", "0");
    browser.type_into("#f-batch", "3");
    browser.type_into("#f-max_failure_ratio", "1");
    browser.click("#f-failure_action option[value='continue']");
    browser.type_into("#f-monitor", "2s");
    browser.type_into("#f-deadline", "150s");
    browser.click("#preview");
    browser.find("#preview-waves");
    assert_eq!(count(&browser, "#preview-waves tr[data-wave]"), 1, "one wave of three");
    browser.click("#start-campaign");
    browser.find("#campaign-agents");
    wait_for("the campaign to complete with three local rollbacks", Duration::from_secs(240), || {
        text_of(&browser, "[data-cell='c:state']") == "completed"
    });
    let states = browser.js(
        "return Array.from(document.querySelectorAll('#campaign-agents [data-cell$=\":state\"]'), e => e.textContent);",
        json!([]),
    );
    assert_eq!(states, json!(["rolled back", "rolled back", "rolled back"]), "{}", browser.text());
    assert!(text_of(&browser, "[data-cell='c:failures']").starts_with("3 of 3 agents failed (3 rolled back)"));

    // Every host's desired state still names 3.0.0: without a rollback
    // they would try it again once their hold expires.
    let ids: Vec<String> =
        f.server.agents().iter().filter_map(|a| a["id"].as_str().map(str::to_string)).collect();
    let manifest_of = |id: &str| f.server.admin("GET", &format!("/v1/fleet/agents/{id}/manifest"), "").text();
    assert!(
        ids.iter().all(|id| manifest_of(id).contains(":3.0.0@sha256:")),
        "pinned to the campaign's digest"
    );

    browser.click("#rollback");
    browser.find("#confirm-what");
    assert!(text_of(&browser, "#confirm-what").contains("sends 3 agent(s)"), "{}", browser.text());
    browser.click("#confirm");
    browser.find("#campaign-agents");
    wait_for("the rollback to finish", Duration::from_secs(180), || {
        text_of(&browser, "[data-cell='c:state']") == "rolled back"
    });
    browser.find("#none-pinned");
    // The campaign page, at 1280 px, with its timeline, reasons and
    // digests: nothing wider than the window.
    browser.set_window_size(1280, 900);
    let overflow = browser
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", json!([]));
    assert_eq!(overflow, json!(0), "no horizontal scrolling on the campaign page at 1280 px");
    let before = format!(":1.0.0@{}", f.registry.digest_of(&format!("{}:1.0.0", f.app)));
    for id in &ids {
        let m = manifest_of(id);
        assert!(m.contains(&before) && !m.contains("3.0.0"), "back on exactly 1.0.0's digest: {m}");
    }
    assert!(browser.text().contains("Timeline") && text_of(&browser, "#timeline").contains("rolling back"));
    for i in 1..=3 {
        let container = f.run.name(&format!("app{i}"));
        assert!(f.run.inspect(&container, "{{.Config.Image}}").contains(":1.0.0"), "{container}");
    }
}
