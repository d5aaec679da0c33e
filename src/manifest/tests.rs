//! Manifest parsing and validation, table-driven: every refusal names the
//! line and column (or the limit) and says what is allowed.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse("m.yaml", text)
}

fn err(text: &str) -> String {
    parse(text).expect_err("should be refused").to_string()
}

#[test]
fn the_example_manifest_validates() {
    let m =
        Manifest::load(std::path::Path::new("desired-state.example.yaml")).expect("example must stay valid");
    assert_eq!(m.targets.len(), 2);
    assert_eq!(m.drift_interval, Dur(Duration::from_secs(300)));
    assert!(m.policy.allows(&"portainer/agent:9".parse().expect("ref")));
    assert!(!m.policy.allows(&"evil/agent:1".parse().expect("ref")));
    let edge = &m.targets[1];
    assert_eq!(edge.select, Select::Label { key: "tier".into(), value: Some("edge".into()) });
    assert_eq!(edge.settings.health.timeout, Duration::from_secs(120));
    assert_eq!(edge.settings.health.stable, Duration::from_secs(5), "inherited from defaults");
    assert_eq!(edge.settings.health.probe, Probe::Http { port: 8080, path: "/healthz".into(), status: 200 });
    let dump = edge.settings.hooks.pre_upgrade.as_ref().expect("the example's pre_upgrade hook");
    assert_eq!((dump.place, dump.timeout), (Place::Exec, Duration::from_secs(120)));
    assert!(m.targets[0].settings.hooks.is_empty());
}

#[test]
fn minimal_manifest_gets_documented_defaults() {
    let m = parse("version: 1\ntargets:\n  - container: web\n    image: nginx:1.25\n").expect("valid");
    let s = &m.targets[0].settings;
    assert_eq!(s.pull, PullPolicy::Always);
    assert_eq!(s.order, Order::StopFirst);
    assert!(s.rollback);
    assert!(!s.cleanup);
    assert_eq!(s.health.timeout, Duration::from_secs(60));
    assert_eq!(s.health.stable, Duration::from_secs(5));
    assert_eq!(s.health.probe, Probe::Auto);
    assert_eq!(m.drift_interval, Dur(DEFAULT_DRIFT_INTERVAL));
    assert!(m.policy.allowed_images.is_none());
    assert_eq!(m.targets[0].want, Want::Image("docker.io/library/nginx:1.25".parse().expect("ref")));
}

#[test]
fn target_overrides_merge_field_by_field() {
    let text = "\
version: 1
defaults:
  pull: if-missing
  order: start-first
  health: {timeout: 30s, stable: 2s, probe: running}
targets:
  - container: aa
    image: a:1
    rollback: false
    health: {probe: {tcp: {port: 5432}}}
  - container: bb
    image: b:1
    pull: never
";
    let m = parse(text).expect("valid");
    let a = &m.targets[0].settings;
    assert_eq!((a.pull, a.order, a.rollback), (PullPolicy::IfMissing, Order::StartFirst, false));
    assert_eq!(a.health.timeout, Duration::from_secs(30));
    assert_eq!(a.health.probe, Probe::Tcp { port: 5432 });
    let b = &m.targets[1].settings;
    assert_eq!((b.pull, b.rollback), (PullPolicy::Never, true));
    assert_eq!(b.health.probe, Probe::Running);
}

#[test]
fn digest_pins_and_tracks_parse() {
    let hex = "a".repeat(64);
    let text = format!(
        "version: 1\ntargets:\n  - container: aa\n    image: reg.io:5000/a@sha256:{hex}\n  - selector: {{label: tier}}\n    track: {{image: reg.io:5000/b, semver: '>=1.2, <2', prerelease: true}}\n"
    );
    let m = parse(&text).expect("valid");
    match &m.targets[0].want {
        Want::Image(r) => {
            assert_eq!(r.digest().map(|d| d.as_str().to_string()), Some(format!("sha256:{hex}")))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(m.targets[1].select, Select::Label { key: "tier".into(), value: None });
    match &m.targets[1].want {
        Want::Track { range, prerelease, .. } => {
            assert!(range.matches(&semver::Version::new(1, 9, 0)));
            assert!(*prerelease);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Each invalid manifest, the field path and `line:column` its first
/// problem must carry, and a phrase of what is allowed (or what is wrong).
/// Every refusal is in our words: none of serde's or the YAML library's.
#[test]
fn invalid_manifests_name_field_line_column_and_what_is_allowed() {
    let hex = "0".repeat(64);
    let t = |rest: &str| format!("version: 1\ntargets:\n  - container: aa\n{rest}");
    let cases: Vec<(String, &str, &str, &str)> = vec![
        ("".into(), "(document)", "1:1", "the manifest is empty"),
        ("# only a comment\n".into(), "(document)", "1:1", "needs at least `version: 1`"),
        ("version: 2\ntargets: []\n".into(), "version", "1:10", "this build reads version 1"),
        ("targets: []\n".into(), "version", "1:1", "the required field `version` is missing"),
        ("version: 1\ntarget: []\n".into(), "target", "2:1", "unknown field `target`; allowed: `version`, `defaults`"),
        (t("    imag: a:1\n"), "targets[0].imag", "4:5", "unknown field `imag`; allowed: `container`"),
        (t("    image: A/b:1\n"), "targets[0].image", "4:12", "repository name must be lowercase"),
        (t(&format!("    image: a@sha256:{}\n", &hex[1..])), "targets[0].image", "4:12", "malformed"),
        (t(""), "targets[0]", "3:5", "needs `image: REF`"),
        ("version: 1\ntargets:\n  - image: a:1\n".into(), "targets[0]", "3:5", "needs `container: NAME`, `selector: {label: \"key=value\"}`, `service: NAME` or `service_selector"),
        (t("    selector: {label: x}\n    image: a:1\n"), "targets[0]", "3:5", "has `container` and `selector`; allowed: one of them"),
        (t("    service: web\n    image: a:1\n"), "targets[0]", "3:5", "has `container` and `service`; allowed: one of them"),
        ("version: 1\ntargets:\n  - service: web-\n    image: a:1\n".into(), "targets[0].service", "3:14", "invalid service name `web-`; Swarm service names are 1-63 characters of [a-zA-Z0-9_-], starting and ending"),
        ("version: 1\ntargets:\n  - service: web.1\n    image: a:1\n".into(), "targets[0].service", "3:14", "invalid service name `web.1`"),
        ("version: 1\ntargets:\n  - service_selector: {label: \"=v\"}\n    image: a:1\n".into(), "targets[0].service_selector.label", "3:31", "expected `key=value` or `key`"),
        ("version: 1\ntargets:\n  - service: web\n    image: a:1\n  - service: web\n    image: a:2\n".into(), "targets[1].service", "5:14", "already a target at targets[0] (line 3)"),
        (t("    image: a:1\n    update: {parallelism: 2}\n"), "targets[0].update", "5:14", "`update` applies to Swarm service targets only"),
        ("version: 1\ntargets:\n  - service: web\n    image: a:1\n    update: {max_failure_ratio: 1.5}\n".into(), "targets[0].update.max_failure_ratio", "5:33", "allowed: a decimal from 0 to 1"),
        ("version: 1\ntargets:\n  - service: web\n    image: a:1\n    update: {paralelism: 2}\n".into(), "targets[0].update.paralelism", "5:14", "unknown field `paralelism`; allowed: `parallelism`, `delay`, `max_failure_ratio`"),
        ("version: 1\ntargets:\n  - service: web\n    image: a:1\n    health: {probe: {tcp: {port: 80}}}\n".into(), "targets[0].health.probe", "5:22", "a `tcp` probe cannot gate a Swarm service"),
        (t("    image: a:1\n    track: {image: a, semver: ^1}\n"), "targets[0]", "3:5", "either `image` or `track`"),
        (t("    image: a:1\n  - container: aa\n    image: a:2\n"), "targets[1].container", "5:16", "already a target at targets[0] (line 3)"),
        ("version: 1\ntargets:\n  - container: -bad\n    image: a:1\n".into(), "targets[0].container", "3:16", "invalid container name `-bad`"),
        ("version: 1\ntargets:\n  - selector: {label: \"=v\"}\n    image: a:1\n".into(), "targets[0].selector.label", "3:23", "expected `key=value` or `key`"),
        (t("    track: {image: a, semver: \"^^1\"}\n"), "targets[0].track.semver", "4:31", "expected e.g. ^1.4"),
        (t("    track: {image: \"a:1\", semver: ^1}\n"), "targets[0].track.image", "4:20", "the tag is chosen by `semver`"),
        (t("    track: {image: a}\n"), "targets[0].track.semver", "4:13", "the required field `semver` is missing"),
        ("version: 1\ndefaults: {drift_interval: 5}\n".into(), "defaults.drift_interval", "2:28", "has no unit, so it could be seconds or minutes"),
        ("version: 1\ndefaults: {drift_interval: 5M}\n".into(), "defaults.drift_interval", "2:28", "could mean months or minutes"),
        ("version: 1\ndefaults: {drift_interval: 1mo}\n".into(), "defaults.drift_interval", "2:28", "could mean months or minutes"),
        ("version: 1\ndefaults: {drift_interval: [1]}\n".into(), "defaults.drift_interval", "2:28", "found a list; allowed: a number with a unit"),
        ("version: 1\ndefaults: {health: {timeout: soon}}\n".into(), "defaults.health.timeout", "2:30", "allowed: a number with a unit — ms, s, m (minutes), h, d"),
        ("version: 1\ndefaults: {pull: sometimes}\n".into(), "defaults.pull", "2:18", "`sometimes` is not allowed here; allowed: one of `always`, `if-missing`, `never`"),
        ("version: 1\ndefaults: {order: random}\n".into(), "defaults.order", "2:19", "allowed: one of `stop-first`, `start-first`"),
        ("version: 1\ndefaults: {rollback: yes}\n".into(), "defaults.rollback", "2:22", "found `yes`; allowed: `true` or `false`"),
        ("version: 1\ndefaults: {health: {probe: {http: {port: 0}}}}\n".into(), "defaults.health.probe", "2:29", "probe port must be 1-65535"),
        ("version: 1\ndefaults: {health: {probe: {http: {port: -0}}}}\n".into(), "defaults.health.probe.http.port", "2:42", "`-0` is negative; allowed: a whole number from 0 to 65535"),
        ("version: 1\ndefaults: {health: {probe: {tcp: {port: -80}}}}\n".into(), "defaults.health.probe.tcp.port", "2:41", "is negative"),
        ("version: 1\ndefaults: {health: {probe: {http: {port: 70000}}}}\n".into(), "defaults.health.probe.http.port", "2:42", "`70000` is out of range; allowed: a whole number from 0 to 65535"),
        ("version: 1\ndefaults: {health: {probe: {tcp: {port: \"80\"}}}}\n".into(), "defaults.health.probe.tcp.port", "2:41", "in quotes; allowed: a whole number"),
        ("version: 1\ndefaults: {health: {probe: {http: {port: 1, status: 99999}}}}\n".into(), "defaults.health.probe.http.status", "2:53", "out of range"),
        ("version: 1\ndefaults: {health: {probe: {grpc: {port: 1}}}}\n".into(), "defaults.health.probe", "2:29", "`grpc` is not allowed here; allowed: one of `auto`, `running`, `http`, `tcp`"),
        ("version: 1\ndefaults: {health: {probe: {http: {port: 80}, tcp: {port: 1}}}}\n".into(), "defaults.health.probe", "2:29", "a mapping with a single key"),
        ("version: 1\ndefaults: {health: {probe: http}}\n".into(), "defaults.health.probe", "2:28", "`http` needs settings"),
        ("version: 1\ndefaults: {health: {probe: !http {port: 1}}}\n".into(), "defaults.health.probe", "2:34", "found the tag `!http`"),
        ("version: 1\ndefaults: {health: {timeout: 5s, stable: 10s}}\n".into(), "defaults.health.stable", "2:42", "must be shorter than health.timeout"),
        (t("    image: a:1\n    drift_interval: 1m\n"), "targets[0].drift_interval", "5:5", "unknown field `drift_interval`"),
        ("version: 1\npolicy: {allowed_images: [\"a/b:1\"]}\n".into(), "policy.allowed_images[0]", "2:27", "patterns match repositories only"),
        ("version: 1\npolicy: {allowed_images: x/y}\n".into(), "policy.allowed_images", "2:26", "found `x/y`; allowed: a list"),
        ("version: 1\ntargets: [\n".into(), "targets", "3:1", "cannot be read as YAML; allowed: `key: value` lines"),
        ("version: 1\ntargets:\n  - container: aa\n   image: a:1\n".into(), "targets", "4:9", "cannot be read as YAML"),
        ("version: 1\n\tdefaults: {}\n".into(), "version", "1:10", "tabs are not indentation"),
        ("version: 1\n---\nversion: 1\n".into(), "(document)", "2:1", "more than one YAML document"),
        ("- 1\n- 2\n".into(), "(document)", "1:1", "found a list; allowed: a mapping with the fields `version`"),
        ("version: x\n".into(), "version", "1:10", "found `x`; allowed: a whole number"),
        ("version: 1\nreport: {webhook: \"ftp://x\"}\n".into(), "report.webhook", "2:19", "expected http://HOST[:PORT]/PATH"),
        ("version: 1\nreport: {hook: x}\n".into(), "report.hook", "2:10", "unknown field `hook`; allowed: `webhook`"),
        ("version: 1\nversion: 1\n".into(), "version", "2:1", "`version` is given twice in this mapping (first on line 1)"),
        ("version: 1\ndefaults: {health: &h {timeout: 1m}}\ntargets:\n  - container: aa\n    image: a:1\n    health: {timeout: *h}\n".into(), "targets[0].health.timeout", "2:24", "found a mapping; allowed: a number with a unit"),
    ];
    const LIBRARY_WORDS: [&str; 6] = [
        "untagged enum",
        "expected u",
        "invalid type:",
        "did not find expected",
        "unknown variant",
        "did not match",
    ];
    let mut wrong = Vec::new();
    for (text, path, at, phrase) in &cases {
        let e = parse(text).expect_err(text);
        let p = &e.problems[0];
        let got_at = format!("{}:{}", p.pos.line, p.pos.column);
        let foreign = LIBRARY_WORDS.iter().any(|w| p.message.contains(w));
        if p.path != *path || got_at != *at || !p.message.contains(phrase) || foreign {
            wrong.push(format!(
                "{text:?}\n  wanted {path} at {at} with {phrase:?}\n  got    {} at {got_at}: {}",
                p.path, p.message
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = "\
version: 1
targets:
  - container: aa
    image: Bad:1
  - container: aa
    image: b:1
  - selector: {label: \"x y\"}
    image: c:1
";
    let e = parse(text).expect_err("invalid");
    let lines: Vec<usize> = e.problems.iter().map(|p| p.pos.line).collect();
    assert_eq!(lines, vec![4, 5, 7], "{e}");
}

#[test]
fn alias_bombs_are_refused_quickly() {
    // The classic "billion laughs": each level repeats the previous nine times.
    let mut text = String::from("version: 1\npolicy:\n  allowed_images: &a0 [\"x/y\"]\ntargets:\n");
    for i in 1..13 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        text.push_str(&format!("  - &a{i} [{refs}]\n"));
    }
    let start = std::time::Instant::now();
    let e = err(&text);
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(e.contains("more than 100 aliases"), "{e}");
    assert!(e.starts_with("m.yaml:16:"), "points at the 101st alias: {e}");
}

#[test]
fn files_over_the_size_limit_are_refused_without_reading_them_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(64 * 1024 * 1024).expect("sparse 64 MiB");
    let e = Manifest::load(&path).expect_err("too big").to_string();
    assert!(e.contains("larger than the limit of 1024 KiB"), "{e}");
    assert!(e.starts_with(&path.display().to_string()), "{e}");
}

#[test]
fn a_missing_file_says_so() {
    let e =
        Manifest::load(std::path::Path::new("/nonexistent/desired.yaml")).expect_err("missing").to_string();
    assert!(e.contains("/nonexistent/desired.yaml: (document): cannot open the manifest"), "{e}");
}

#[test]
fn non_utf8_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bin.yaml");
    std::fs::write(&path, b"version: 1\n\xff\xfe\n").expect("write");
    let e = Manifest::load(&path).expect_err("binary").to_string();
    assert!(e.contains("not UTF-8"), "{e}");
}

#[test]
fn a_byte_order_mark_is_allowed_and_is_not_a_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bom.yaml");
    std::fs::write(&path, "\u{feff}version: 1\ntargets:\n  - container: web\n    image: app:1\n")
        .expect("write");
    let m = Manifest::load(&path).expect("a BOM is fine");
    assert_eq!(m.targets.len(), 1);
    let e = err("\u{feff}version: 2\ntargets: []\n");
    assert!(e.contains("m.yaml:1:10:"), "the column counts from after the mark: {e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // Whatever bytes arrive, parsing returns (never panics, never hangs).
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse(&text);
    }

    // YAML-ish noise built from manifest tokens exercises deeper paths.
    #[test]
    fn manifest_shaped_noise_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        "version: 1\n", "targets:\n", "  - ", "container: aa\n", "image: a:1\n", "    ", "{", "}", "[", "]",
        "&x ", "*x ", "selector: {label: k=v}\n", "track: {image: a, semver: ^1}\n", "health:\n", "probe: auto\n",
        ": ", "- ", "\n", "'", "\"", "#c\n", "!tag ",
    ]), 0..40)) {
        let _ = parse(&parts.concat());
    }

    // Generated valid manifests validate, with one target per entry.
    #[test]
    fn generated_valid_manifests_validate(
        names in prop::collection::btree_set("[a-z][a-z0-9_-]{1,10}", 1..10),
        tag in "[a-z0-9][a-z0-9._-]{0,10}",
        timeout in 10u64..600,
    ) {
        let mut text = format!("version: 1\ndefaults:\n  health: {{timeout: {timeout}s, stable: 1s}}\ntargets:\n");
        for (i, n) in names.iter().enumerate() {
            text.push_str(&format!("  - container: {n}\n    image: registry.local:5000/app{i}:{tag}\n"));
        }
        let m = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(m.targets.len(), names.len());
        for t in &m.targets {
            prop_assert_eq!(t.settings.health.timeout, Duration::from_secs(timeout));
        }
    }
}

#[test]
fn a_drift_interval_below_the_minimum_is_refused_but_zero_means_off() {
    let text = |d: &str| format!("version: 1\ndefaults:\n  drift_interval: {d}\ntargets: []\n");
    for short in ["1ms", "500ms", "1s"] {
        let err = Manifest::parse("m.yaml", &text(short)).expect_err(short).to_string();
        assert!(err.contains("m.yaml:3:19: defaults.drift_interval:"), "{short}: {err}");
        assert!(err.contains("minimum of 2s") && err.contains("or 0"), "{short}: {err}");
    }
    for fine in ["0", "2s", "5m"] {
        assert!(Manifest::parse("m.yaml", &text(fine)).is_ok(), "{fine}");
    }
}

#[test]
fn service_targets_take_names_label_selectors_and_update_settings() {
    let m = Manifest::parse(
        "m.yaml",
        "version: 1\ndefaults:\n  update: {parallelism: 2}\ntargets:\n  - service: web\n    image: app:2\n    order: start-first\n    update: {delay: 2s, max_failure_ratio: 0.25}\n  - service_selector: {label: tier=edge}\n    image: app:2\n  - container: web\n    image: app:2\n",
    )
    .expect("valid");
    assert_eq!(m.targets[0].select, Select::Service("web".into()));
    assert_eq!(m.targets[1].select, Select::ServiceLabel { key: "tier".into(), value: Some("edge".into()) });
    assert_eq!(m.targets[0].select.to_string(), "service web");
    // Field by field over the defaults.
    let u = &m.targets[0].settings.update;
    assert_eq!((u.parallelism, u.delay, u.max_failure_ratio), (2, Duration::from_secs(2), 0.25));
    assert_eq!(m.targets[1].settings.update.parallelism, 2);
    // A container and a service may share a name: they are different targets.
    assert_eq!(m.targets[2].select, Select::Container("web".into()));
}

#[test]
fn the_swarm_example_manifest_validates() {
    let m = Manifest::load(std::path::Path::new("examples/swarm/desired-state.yaml"))
        .expect("examples/swarm must stay valid");
    assert_eq!(m.targets.len(), 3);
    assert!(m.targets.iter().all(|t| t.select.is_service()));
    assert_eq!(m.targets[0].settings.update.parallelism, 2);
    assert_eq!(m.targets[2].settings.order, Order::StopFirst);
}
