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

/// Each invalid manifest, the `file:line:column` its first problem must
/// carry, and a fragment of the message.
#[test]
fn invalid_manifests_name_line_column_and_what_is_allowed() {
    let hex = "0".repeat(64);
    let cases: Vec<(String, &str, &str)> = vec![
        ("".into(), "m.yaml:1:1", "the manifest is empty"),
        ("# only a comment\n".into(), "m.yaml:1:1", "needs at least `version: 1`"),
        ("version: 2\ntargets: []\n".into(), "m.yaml:1:10", "unsupported manifest version 2; this build reads version 1"),
        ("targets: []\n".into(), "m.yaml:1:1", "missing field `version`"),
        ("version: 1\ntarget: []\n".into(), "m.yaml:2:1", "unknown field `target`, expected one of"),
        ("version: 1\ntargets:\n  - container: aa\n    imag: a:1\n".into(), "m.yaml:4:5", "unknown field `imag`"),
        ("version: 1\ntargets:\n  - container: aa\n    image: A/b:1\n".into(), "m.yaml:4:12", "repository name must be lowercase"),
        (format!("version: 1\ntargets:\n  - container: aa\n    image: a@sha256:{}\n", &hex[1..]), "m.yaml:4:12", "malformed"),
        ("version: 1\ntargets:\n  - container: aa\n".into(), "m.yaml:3:5", "needs `image: REF`"),
        ("version: 1\ntargets:\n  - image: a:1\n".into(), "m.yaml:3:5", "needs `container: NAME` or `selector"),
        ("version: 1\ntargets:\n  - container: aa\n    selector: {label: x}\n    image: a:1\n".into(), "m.yaml:3:5", "either `container` or `selector`"),
        ("version: 1\ntargets:\n  - container: aa\n    image: a:1\n    track: {image: a, semver: ^1}\n".into(), "m.yaml:3:5", "either `image` or `track`"),
        ("version: 1\ntargets:\n  - container: aa\n    image: a:1\n  - container: aa\n    image: a:2\n".into(), "m.yaml:5:16", "duplicate target: `aa` is already a target at targets[0] (line 3)"),
        ("version: 1\ntargets:\n  - selector: {label: x=1}\n    image: a:1\n  - selector: {label: x=1}\n    image: a:2\n".into(), "m.yaml:5:16", "duplicate target: `label x=1`"),
        ("version: 1\ntargets:\n  - container: -bad\n    image: a:1\n".into(), "m.yaml:3:16", "invalid container name `-bad`"),
        ("version: 1\ntargets:\n  - selector: {label: \"=v\"}\n    image: a:1\n".into(), "m.yaml:3:23", "invalid label selector"),
        ("version: 1\ntargets:\n  - container: aa\n    track: {image: a, semver: \"^^1\"}\n".into(), "m.yaml:4:31", "invalid semver range `^^1`"),
        ("version: 1\ntargets:\n  - container: aa\n    track: {image: \"a:1\", semver: ^1}\n".into(), "m.yaml:4:20", "names a tag or digest"),
        ("version: 1\ndefaults: {drift_interval: 5}\n".into(), "m.yaml:2:", "duration `5` has no unit"),
        ("version: 1\ndefaults: {health: {timeout: soon}}\n".into(), "m.yaml:2:", "invalid duration `soon`"),
        ("version: 1\ndefaults: {pull: sometimes}\n".into(), "m.yaml:2:", "unknown variant `sometimes`, expected one of `always`, `if-missing`, `never`"),
        ("version: 1\ndefaults: {order: random}\n".into(), "m.yaml:2:", "expected `stop-first` or `start-first`"),
        ("version: 1\ndefaults: {health: {probe: {http: {port: 0}}}}\n".into(), "m.yaml:2:", "probe port must be 1-65535"),
        ("version: 1\ndefaults: {health: {probe: {grpc: {port: 1}}}}\n".into(), "m.yaml:2:", "unknown variant `grpc`"),
        ("version: 1\ndefaults: {health: {probe: {http: {port: 80}, tcp: {port: 1}}}}\n".into(), "m.yaml:2:", "single key"),
        ("version: 1\ndefaults: {health: {timeout: 5s, stable: 10s}}\n".into(), "m.yaml:2:", "must be shorter than health.timeout"),
        ("version: 1\ntargets:\n  - container: aa\n    image: a:1\n    drift_interval: 1m\n".into(), "m.yaml:5:5", "unknown field `drift_interval`"),
        ("version: 1\npolicy: {allowed_images: [\"a/b:1\"]}\n".into(), "m.yaml:2:", "patterns match repositories only"),
        ("version: 1\ntargets: [\n".into(), "m.yaml:3:", "not valid YAML"),
        ("version: 1\n---\nversion: 1\n".into(), "m.yaml:2:1", "more than one YAML document"),
        ("- 1\n- 2\n".into(), "m.yaml:1:1", "expected struct Document"),
        ("version: 1\nreport: {webhook: \"ftp://x\"}\n".into(), "m.yaml:2:", "invalid webhook URL `ftp://x`"),
        ("version: 1\nreport: {hook: x}\n".into(), "m.yaml:2:", "unknown field `hook`"),
    ];
    for (text, at, needle) in cases {
        let e = err(&text);
        assert!(e.starts_with(at), "{text:?}\n  wanted at {at}, got: {e}");
        assert!(e.contains(needle), "{text:?}\n  wanted {needle:?}, got: {e}");
    }
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
    assert!(e.contains("/nonexistent/desired.yaml: cannot open the manifest"), "{e}");
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
    for short in ["1ns", "500ms", "1s"] {
        let err = Manifest::parse("m.yaml", &text(short)).expect_err(short).to_string();
        assert!(err.contains("m.yaml:3:19: defaults.drift_interval:"), "{short}: {err}");
        assert!(err.contains("minimum of 2s") && err.contains("or 0"), "{short}: {err}");
    }
    for fine in ["0", "2s", "5m"] {
        assert!(Manifest::parse("m.yaml", &text(fine)).is_ok(), "{fine}");
    }
}
