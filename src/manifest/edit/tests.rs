//! `set` and `unset` edits, table by table and by property.
use super::*;
use proptest::prelude::*;

const BASE: &str = r#"# desired state
version: 1
policy:
  allowed_images: [app, registry.local:5000/*]   # what may run

targets:
  # the web front
  - container: web
    image: app:1            # pinned by ops
  - container: db
    image: 'registry.local:5000/db:15'
  - {container: cache, image: "app:7"}   # flow
  - selector: {label: "tier=edge"}
    image: registry.local:5000/edge:1.4
  - container: tracker
    track: {image: app, semver: "^1"}
"#;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The lines of `a` and `b` that differ, as (line number, a, b).
fn changed_lines<'t>(a: &'t str, b: &'t str) -> Vec<(usize, &'t str, &'t str)> {
    assert_eq!(a.lines().count(), b.lines().count(), "line count changed:\n{b}");
    a.lines()
        .zip(b.lines())
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i + 1, x, y))
        .collect()
}

fn image_of(text: &str, target: &str) -> String {
    let m = Manifest::parse("m.yaml", text).expect("valid");
    let t = m.targets.iter().find(|t| t.select.to_string() == target).expect("target");
    t.want.to_string()
}

#[test]
fn set_image_rewrites_only_that_value_in_its_own_quoting() {
    let pinned = format!("app@{DIGEST}");
    let cases = [
        ("web", "app:2", 9, "    image: app:2            # pinned by ops"),
        ("web", "app:2.0.10-with-a-long-tag", 9, "    image: app:2.0.10-with-a-long-tag # pinned by ops"),
        ("web", pinned.as_str(), 9, &*format!("    image: {pinned} # pinned by ops")),
        ("db", "registry.local:5000/db:16", 11, "    image: 'registry.local:5000/db:16'"),
        ("cache", "app:8", 12, r#"  - {container: cache, image: "app:8"}   # flow"#),
        ("label tier=edge", "registry.local:5000/edge:1.5", 14, "    image: registry.local:5000/edge:1.5"),
        (" web ", "docker.io/library/app:3", 9, "    image: docker.io/library/app:3 # pinned by ops"),
    ];
    for (target, image, line, expected) in cases {
        let out = set_image(BASE, "m.yaml", target, image).expect(target);
        let changed = changed_lines(BASE, &out);
        assert_eq!(changed.len(), 1, "{target}: {changed:?}");
        assert_eq!((changed[0].0, changed[0].2), (line, expected), "{target}");
        let want = ImageRef::parse(image).expect("image").familiar();
        assert_eq!(image_of(&out, target.trim()), want, "{target}");
    }
}

#[test]
fn setting_the_same_image_returns_the_text_unchanged() {
    assert_eq!(set_image(BASE, "m.yaml", "web", "app:1").expect("same"), BASE);
}

#[test]
fn edits_keep_a_byte_order_mark() {
    let text = format!("\u{feff}{BASE}");
    let out = set_image(&text, "m.yaml", "web", "app:2").expect("set");
    assert_eq!(out, format!("\u{feff}{}", set_image(BASE, "m.yaml", "web", "app:2").expect("set")));
    let out = unset(&text, "m.yaml", "web").expect("unset");
    assert_eq!(out, format!("\u{feff}{}", unset(BASE, "m.yaml", "web").expect("unset")));
}

#[test]
fn set_image_refusals_say_what_to_do() {
    let cases = [
            ("web", "App:1", "cannot set `web` to `App:1`: invalid image reference `App:1`: repository name must be lowercase"),
            ("web", "", "image reference is empty"),
            ("nope", "app:1", "m.yaml: no target `nope`; name a target as `plan` shows it (a container name, or `label KEY=VALUE`); the targets are: `web`, `db`, `cache`, `label tier=edge`, `tracker`"),
            ("tier=edge", "app:1", "no target `tier=edge`"),
            ("tracker", "app:2", "m.yaml:16:13: `tracker` follows a semver range (`track:`)"),
            ("web", "evil/app:1", "m.yaml:4:19: `evil/app:1` is outside policy.allowed_images [app, registry.local:5000/*]: no pattern matches its repository docker.io/evil/app"),
            ("web", "registry.local:5001/app:1", "outside policy.allowed_images"),
        ];
    for (target, image, needle) in cases {
        let err = set_image(BASE, "m.yaml", target, image).expect_err(target).to_string();
        assert!(err.contains(needle), "{target} {image}: {err}");
    }
}

#[test]
fn an_invalid_manifest_is_not_edited() {
    let text = "version: 1\ntargets:\n  - container: web\n    image: app:1\n    colour: blue\n";
    let err = set_image(text, "m.yaml", "web", "app:2").expect_err("invalid").to_string();
    assert!(err.contains("m.yaml:5:5: targets[0].colour: unknown field `colour`"), "{err}");
    assert!(err.contains("fix it before editing it"), "{err}");
    let err = unset(text, "m.yaml", "web").expect_err("invalid").to_string();
    assert!(err.contains("fix it before editing it"), "{err}");
}

#[test]
fn values_written_in_forms_it_cannot_rewrite_safely_are_refused() {
    let cases = [
        ("  - container: web\n    image: >-\n      app:1\n", "web", "block scalar"),
        ("  - container: web\n    image: \"app\\x3a1\"\n", "web", "spans lines or uses escapes"),
        ("  - container: web\n    image: \"app:\\\n      1\"\n", "web", "spans lines or uses escapes"),
        ("  - container: aa\n    image: &img app:1\n  - container: bb\n    image: *img\n", "aa", "anchor"),
        ("  - container: aa\n    image: &img app:1\n  - container: bb\n    image: *img\n", "bb", "alias"),
    ];
    for (targets, target, needle) in cases {
        let text = format!("version: 1\ntargets:\n{targets}");
        let err = set_image(&text, "m.yaml", target, "app:2").expect_err(needle).to_string();
        assert!(err.contains(needle) && err.contains("edit the file by hand"), "{needle}: {err}");
    }
}

#[test]
fn plain_values_yaml_would_read_as_something_else_are_quoted() {
    let cases = [
        ("nginx", true),
        ("app:1", true),
        ("registry.local:5000/team/app:1.4", true),
        ("app_x-y.z:v1.2_3", true),
        ("1.0", false),
        ("1:30", false),
        ("1e3", false),
        ("0x1f", false),
        ("on", false),
        ("Null", false),
        ("true", false),
        ("-app", false),
        ("app:", false),
        ("a #b", false),
        ("a,b", false),
    ];
    for (value, plain) in cases {
        assert_eq!(plain_is_safe(value), plain, "{value}");
    }
    let text = "version: 1\ntargets:\n  - container: web\n    image: app:1\n";
    if ImageRef::parse("1.0").is_ok() {
        let out = set_image(text, "m.yaml", "web", "1.0").expect("set");
        assert!(out.contains("    image: \"1.0\"\n"), "{out}");
    }
}

#[test]
fn non_ascii_text_and_crlf_line_breaks_are_handled() {
    // yaml-rust2 counts characters, not bytes: multi-byte text before the
    // value must not shift the splice.
    let text = "# état désiré → ok\nversion: 1\ntargets:\n  - container: web # ü\n    image: app:1 # ß\n  - container: db\n    image: app:1\n";
    let cases = [text.to_string(), text.replace('\n', "\r\n")];
    for text in cases {
        let out = set_image(&text, "m.yaml", "web", "app:2").expect("set");
        assert_eq!(out, text.replacen("app:1", "app:2", 1), "{text:?}");
        let out = unset(&text, "m.yaml", "web").expect("unset");
        let entry = "  - container: web # ü\n    image: app:1 # ß\n";
        let entry = if text.contains('\r') { entry.replace('\n', "\r\n") } else { entry.to_string() };
        assert_eq!(out, text.replace(&entry, ""), "{text:?}");
    }
}

#[test]
fn unset_removes_the_entry_its_comment_and_a_doubled_blank_line() {
    let cases = [
        ("web", &[7, 8, 9][..]),
        ("db", &[10, 11][..]),
        ("cache", &[12][..]),
        ("label tier=edge", &[13, 14][..]),
        ("tracker", &[15, 16][..]),
    ];
    for (target, removed) in cases {
        let out = unset(BASE, "m.yaml", target).expect(target);
        let expected: String = BASE
            .split_inclusive('\n')
            .enumerate()
            .filter(|(i, _)| !removed.contains(&(i + 1)))
            .map(|(_, l)| l)
            .collect();
        assert_eq!(out, expected, "{target}");
    }
    let spaced = "version: 1\n\ntargets:\n\n  # first\n  - container: aa\n    image: app:1\n\n  # second\n  - container: bb\n    image: app:2\n    # its health: later\n\npolicy: {}\n";
    let cases = [
            ("aa", "version: 1\n\ntargets:\n\n  # second\n  - container: bb\n    image: app:2\n    # its health: later\n\npolicy: {}\n"),
            ("bb", "version: 1\n\ntargets:\n\n  # first\n  - container: aa\n    image: app:1\n\npolicy: {}\n"),
        ];
    for (target, expected) in cases {
        assert_eq!(unset(spaced, "m.yaml", target).expect(target), expected, "{target}");
    }
}

#[test]
fn unset_of_the_only_target_leaves_an_empty_list() {
    let text = "version: 1\ntargets:\n- container: web\n  image: app:1\npolicy: {}\n";
    let out = unset(text, "m.yaml", "web").expect("unset");
    assert_eq!(out, "version: 1\ntargets:\npolicy: {}\n");
    assert!(Manifest::parse("m.yaml", &out).expect("valid").targets.is_empty());
}

#[test]
fn unset_refuses_a_flow_sequence_and_unknown_targets() {
    let text = "version: 1\ntargets: [{container: aa, image: app:1}, {container: bb, image: app:2}]\n";
    let err = unset(text, "m.yaml", "aa").expect_err("flow").to_string();
    assert!(
        err.contains("m.yaml:2:12: targets[0]: cannot edit in place: `targets` is a flow sequence"),
        "{err}"
    );
    // set still works inside a flow sequence.
    let out = set_image(text, "m.yaml", "bb", "app:3").expect("set");
    assert_eq!(out, text.replace("app:2", "app:3"));
    let err = unset(BASE, "m.yaml", "label tier=core").expect_err("unknown").to_string();
    assert!(err.contains("no target `label tier=core`"), "{err}");
}

#[test]
fn the_example_manifest_can_be_set_and_unset() {
    let example = include_str!("../../../desired-state.example.yaml");
    let out = set_image(example, "ex.yaml", "portainer_agent", "portainer/agent:2.20.0").expect("set");
    assert_eq!(changed_lines(example, &out).len(), 1);
    let out = unset(&out, "ex.yaml", "label tier=edge").expect("unset");
    let m = Manifest::parse("ex.yaml", &out).expect("valid");
    assert_eq!(m.targets.len(), 1);
    assert!(!out.contains("tier=edge") && !out.contains("Every container labelled"), "{out}");
    assert!(out.contains("# One container by name"), "{out}");
    assert!(out.ends_with("    image: portainer/agent:2.20.0\n"), "no blank line left at the end:\n{out}");
}

/// How one generated target is written.
#[derive(Debug, Clone)]
struct Gen {
    selector: bool,
    image: String,
    style: u8,
    comment: bool,
    above: bool,
}

fn image() -> impl Strategy<Value = String> {
    let name = "[a-z][a-z0-9]{1,5}(/[a-z][a-z0-9]{1,5})?";
    let host = prop::sample::select(vec!["", "registry.local:5000/", "127.0.0.1:5000/", "ghcr.io/"]);
    let tag = "[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,10}";
    (host, name, tag).prop_map(|(h, n, t)| format!("{h}{n}:{t}"))
}

fn target() -> impl Strategy<Value = Gen> {
    (any::<bool>(), image(), 0u8..4, any::<bool>(), any::<bool>())
        .prop_map(|(selector, image, style, comment, above)| Gen { selector, image, style, comment, above })
}

fn render_manifest(targets: &[Gen]) -> String {
    let mut text = String::from("# generated\nversion: 1\n\ntargets:\n");
    for (i, t) in targets.iter().enumerate() {
        let select = if t.selector {
            format!("selector: {{label: \"tier=t{i}\"}}")
        } else {
            format!("container: c{i}")
        };
        let image = match t.style {
            1 => format!("'{}'", t.image),
            2 => format!("\"{}\"", t.image),
            _ => t.image.clone(),
        };
        let comment = if t.comment { "   # note: keep" } else { "" };
        if t.above {
            text.push_str(&format!("  # target {i}\n"));
        }
        if t.style == 3 {
            text.push_str(&format!("  - {{{select}, image: {image}}}{comment}\n\n"));
        } else {
            text.push_str(&format!("  - {select}{comment}\n    image: {image}{comment}\n"));
        }
    }
    text
}

fn name(targets: &[Gen], i: usize) -> String {
    if targets[i].selector {
        format!("label tier=t{i}")
    } else {
        format!("c{i}")
    }
}

proptest! {
    #[test]
    fn set_image_changes_exactly_one_value(
        targets in prop::collection::vec(target(), 1..7),
        pick in any::<prop::sample::Index>(),
        new in image(),
    ) {
        let text = render_manifest(&targets);
        let k = pick.index(targets.len());
        let out = set_image(&text, "gen.yaml", &name(&targets, k), &new).expect("set");
        let changed = changed_lines(&text, &out);
        if new == targets[k].image {
            prop_assert!(changed.is_empty());
        } else {
            prop_assert_eq!(changed.len(), 1, "{:?}", changed);
            prop_assert!(changed[0].1.contains(&targets[k].image) && changed[0].2.contains(&new));
        }
        for (i, t) in targets.iter().enumerate() {
            let want = if i == k { &new } else { &t.image };
            let want = ImageRef::parse(want).expect("generated image").familiar();
            prop_assert_eq!(image_of(&out, &name(&targets, i)), want);
        }
    }

    #[test]
    fn unset_removes_exactly_one_target(
        targets in prop::collection::vec(target(), 1..7),
        pick in any::<prop::sample::Index>(),
    ) {
        let text = render_manifest(&targets);
        let k = pick.index(targets.len());
        let out = unset(&text, "gen.yaml", &name(&targets, k)).expect("unset");
        let m = Manifest::parse("gen.yaml", &out).expect("valid");
        let names: Vec<String> = m.targets.iter().map(|t| t.select.to_string()).collect();
        let expected: Vec<String> = (0..targets.len()).filter(|&i| i != k).map(|i| name(&targets, i)).collect();
        prop_assert_eq!(names, expected);
        prop_assert!(out.starts_with("# generated\nversion: 1\n"));
    }
}
