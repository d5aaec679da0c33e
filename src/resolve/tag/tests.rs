//! Tag selection over the shapes of real repositories' tag lists.

use super::*;

fn list(tags: &str) -> Vec<String> {
    tags.split_whitespace().map(str::to_string).collect()
}

/// The tag `track` chooses for a container running `running` (`None`: a
/// tag that says nothing, or none), with `named` flavour from the target.
fn choose(
    tags: &[String],
    range: &str,
    pre: bool,
    named: Option<&str>,
    running: Option<&str>,
) -> Option<String> {
    let range = VersionReq::parse(range).unwrap_or_else(|e| panic!("{range}: {e}"));
    let flavour = flavour(tags, named, running).ok()?;
    pick(tags, &range, pre, &flavour).map(|t| t.tag.to_string())
}

// Shapes of Docker Hub's lists (abridged, in the registry's own sort).
const NGINX: &str = "1 1-alpine 1.25 1.25-alpine 1.25.3 1.25.3-alpine 1.25.3-alpine-perl 1.25.3-alpine-slim \
    1.25.3-bookworm 1.25.3-perl 1.27 1.27.3 1.27.3-alpine 1.27.3-alpine3.20 1.27.3-alpine-perl 1.27.4-perl \
    1.27.4-alpine-perl alpine latest mainline mainline-alpine3.20-perl stable stable-alpine";
const POSTGRES: &str = "15 15.7 15.7-alpine 16 16-alpine 16.2 16.2-alpine 16.3 16.3-alpine 16.3-alpine3.20 \
    16.3-bookworm 16.10 17 17rc1 17rc1-alpine 17beta3 alpine latest";
const NODE: &str = "20 20-alpine 20.11 20.11.0 20.11.0-alpine 20.11.0-alpine3.19 20.11.0-bookworm-slim 20.11.1 \
    20.11.1-alpine 20.11.1-alpine3.19 20.11.1-bookworm-slim 21.6.2 21.6.2-alpine current hydrogen iron-alpine lts";
const ALPINE: &str = "20240606 3 3.19 3.19.1 3.20 3.20.0 3.20.3 edge latest";
const PORTAINER_AGENT: &str = "2.19.4 2.19.4-linux-amd64 2.19.5 2.19.5-linux-amd64 2.19.5-windows1809-amd64 \
    2.20.0-rc1 2.21.4 2.21.4-linux-amd64 2.22.0-rc1 develop latest linux-amd64-2.19.4 lts sts";
const BITNAMI: &str = "16 16.2.0-debian-12-r5 16.2.0-debian-12-r6 16.3.0-debian-12-r1 16.3.0-debian-12-r12 \
    16.3.0-debian-12-r2 latest";
const SUFFIX_ONLY: &str = "1.0.0-bookworm 1.1.0-bookworm 1.2.0-bookworm latest";

/// What, tags, range, prerelease, named flavour, running tag, expected.
type Case<'a> = (&'a str, &'a str, &'a str, bool, Option<&'a str>, Option<&'a str>, Option<&'a str>);
/// Version, flavour, revision; `None`: not a version.
type Read<'a> = Option<(&'a str, &'a str, u64)>;

#[test]
fn tracked_tags_are_chosen_as_an_operator_expects() {
    // (what, tags, range, prerelease, named flavour, running tag, expected)
    let cases: &[Case] = &[
        ("nginx plain stays plain", NGINX, "^1", false, None, Some("1.25.3"), Some("1.27.3")),
        ("nginx alpine stays alpine", NGINX, "^1", false, None, Some("1.25.3-alpine"), Some("1.27.3-alpine")),
        (
            "nginx alpine-perl",
            NGINX,
            "^1",
            false,
            None,
            Some("1.25.3-alpine-perl"),
            Some("1.27.4-alpine-perl"),
        ),
        (
            "nginx perl is a flavour, not a pre-release",
            NGINX,
            "^1",
            true,
            None,
            Some("1.25.3"),
            Some("1.27.3"),
        ),
        (
            "nginx named flavour",
            NGINX,
            "~1.25",
            false,
            Some("alpine-slim"),
            Some("1.25.3"),
            Some("1.25.3-alpine-slim"),
        ),
        ("nginx unknown running tag: plain", NGINX, "^1", false, None, Some("stable"), Some("1.27.3")),
        ("postgres two-part versions", POSTGRES, "^16", false, None, Some("16.2"), Some("16.10")),
        ("postgres alpine two-part", POSTGRES, "^16", false, None, Some("16.2-alpine"), Some("16.3-alpine")),
        ("postgres 17rc1 is no version", POSTGRES, ">=16", true, None, Some("16.2"), Some("16.10")),
        ("postgres major alias not pinned", POSTGRES, "^15", false, None, Some("15"), Some("15.7")),
        (
            "node bookworm-slim",
            NODE,
            "^20",
            false,
            None,
            Some("20.11.0-bookworm-slim"),
            Some("20.11.1-bookworm-slim"),
        ),
        ("node alpine3.19", NODE, "^20", false, None, Some("20.11.0-alpine3.19"), Some("20.11.1-alpine3.19")),
        ("node plain", NODE, "^20", false, None, Some("20.11.0"), Some("20.11.1")),
        ("node across majors", NODE, ">=20", false, None, Some("20.11.0-alpine"), Some("21.6.2-alpine")),
        ("alpine two and three parts", ALPINE, "^3", false, None, None, Some("3.20.3")),
        ("alpine tilde", ALPINE, "~3.19", false, None, Some("3.19"), Some("3.19.1")),
        ("portainer agent plain", PORTAINER_AGENT, "^2.19", false, None, Some("2.19.4"), Some("2.21.4")),
        (
            "portainer agent arch flavour",
            PORTAINER_AGENT,
            "^2.19",
            false,
            None,
            Some("2.19.4-linux-amd64"),
            Some("2.21.4-linux-amd64"),
        ),
        (
            "portainer agent rc when asked",
            PORTAINER_AGENT,
            "^2.19",
            true,
            None,
            Some("2.19.4"),
            Some("2.22.0-rc1"),
        ),
        (
            "portainer agent windows flavour",
            PORTAINER_AGENT,
            "^2",
            false,
            Some("windows1809-amd64"),
            None,
            Some("2.19.5-windows1809-amd64"),
        ),
        (
            "bitnami revisions are rebuilds",
            BITNAMI,
            "^16",
            false,
            None,
            Some("16.2.0-debian-12-r5"),
            Some("16.3.0-debian-12-r12"),
        ),
        ("suffix-only repository", SUFFIX_ONLY, "^1", false, None, None, Some("1.2.0-bookworm")),
        (
            "suffix-only, running one",
            SUFFIX_ONLY,
            "^1",
            false,
            None,
            Some("1.0.0-bookworm"),
            Some("1.2.0-bookworm"),
        ),
        ("no flavour match", NGINX, "^1", false, Some("windows"), None, None),
        ("no range match", POSTGRES, "^18", false, None, Some("16.2"), None),
    ];
    for (what, tags, range, pre, named, running, expected) in cases {
        let got = choose(&list(tags), range, *pre, *named, *running);
        assert_eq!(got.as_deref(), *expected, "{what}: {range} from {running:?}");
    }
}

#[test]
fn tags_read_as_versions() {
    let cases: &[(&str, Read)] = &[
        ("1.25.3", Some(("1.25.3", "", 0))),
        ("v1.4.2", Some(("1.4.2", "", 0))),
        ("16.2", Some(("16.2.0", "", 0))),
        ("1.25.3-alpine", Some(("1.25.3", "alpine", 0))),
        ("1.27.4-perl", Some(("1.27.4", "perl", 0))),
        ("1.5.0-rc.1", Some(("1.5.0-rc.1", "", 0))),
        ("2.22.0-rc1", Some(("2.22.0-rc1", "", 0))),
        ("1.5.0-rc.1-alpine", Some(("1.5.0-rc.1", "alpine", 0))),
        ("2.0.0-beta.1", Some(("2.0.0-beta.1", "", 0))),
        ("16.2.0-debian-12-r5", Some(("16.2.0", "debian-12", 5))),
        ("1.40.1-ls220", Some(("1.40.1", "", 220))),
        ("20.11.0-alpine3.19", Some(("20.11.0", "alpine3.19", 0))),
        ("16", None),
        ("latest", None),
        ("17rc1", None),
        ("linux-amd64-2.19.4", None),
        ("1.2.3.4", None),
        ("1..2", None),
    ];
    for (tag, expected) in cases {
        let got = TagVersion::parse(tag).map(|t| (t.version.to_string(), t.flavour, t.revision));
        let expected = expected.map(|(v, f, r)| (v.to_string(), f, r));
        assert_eq!(got, expected, "{tag}");
    }
}

#[test]
fn several_flavours_and_nothing_to_choose_by_is_ambiguous() {
    let tags = list("1.0.0-alpine 1.0.0-bookworm latest");
    assert_eq!(flavour(&tags, None, None), Err(Ambiguous(vec!["alpine".into(), "bookworm".into()])));
    assert_eq!(flavour(&tags, Some("alpine"), None), Ok("alpine".into()));
    assert_eq!(flavour(&tags, None, Some("1.0.0-bookworm")), Ok("bookworm".into()));
}

#[test]
fn prereleases_only_when_asked_and_spellings_never_depend_on_order() {
    let range = |r: &str| VersionReq::parse(r).unwrap_or_else(|e| panic!("{r}: {e}"));
    let best =
        |tags: &str, r: &str, pre: bool| pick(&list(tags), &range(r), pre, "").map(|t| t.tag.to_string());
    let tags = "1.4.2 1.5.0-rc.1 2.0.0-beta.1";
    assert_eq!(best(tags, "^1.4", false).as_deref(), Some("1.4.2"));
    assert_eq!(best(tags, "^1.4", true).as_deref(), Some("1.5.0-rc.1"));
    // A pre-release of the next major is still outside ^1.4.
    assert_eq!(best("2.0.0-beta.1", "^1.4", true), None);
    // A release beats its own release candidate.
    assert_eq!(best("1.5.0-rc.1 1.5.0", "^1.4", true).as_deref(), Some("1.5.0"));
    // The plain spelling wins over `v`, the fuller over the two-part one.
    assert_eq!(best("v1.4.2 1.4.2", "^1", false).as_deref(), Some("1.4.2"));
    assert_eq!(best("1.4.2 v1.4.2", "^1", false).as_deref(), Some("1.4.2"));
    assert_eq!(best("1.4 1.4.0", "^1", false).as_deref(), Some("1.4.0"));
    assert_eq!(best("1.3.9 1.4.0 1.10.0 v1.9.1 latest", ">=1.4, <1.10", false).as_deref(), Some("v1.9.1"));
}
