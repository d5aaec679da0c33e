//! The plan decisions, table by table, without Docker.

use std::collections::BTreeMap;

use super::*;
use crate::observe::{Observed, ObservedImage};
use crate::registry::RegistryError;
use crate::resolve::ResolveError;
use crate::types::{ContainerId, ImageId};

const REG: &str = "127.0.0.1:5000";

fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("digest")
}

fn manifest(body: &str) -> Manifest {
    Manifest::parse("m.yaml", &format!("version: 1\n{body}")).expect("test manifest is valid")
}

/// A running container `name` created from `image`, whose image has
/// `repo_digest` (a digest char) in `REG/app`.
struct World {
    containers: Vec<ObservedContainer>,
    images: Vec<ObservedImage>,
}

impl World {
    fn new() -> Self {
        Self { containers: Vec::new(), images: Vec::new() }
    }

    fn container(mut self, name: &str, image: &str, image_id: &str, labels: &[(&str, &str)]) -> Self {
        self.containers.push(ObservedContainer {
            id: ContainerId::new(format!("id-{name}")),
            name: name.to_string(),
            image: image.to_string(),
            image_id: ImageId::new(image_id),
            state: "running".into(),
            health: None,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            joins: None,
            service: None,
        });
        self
    }

    fn image(mut self, id: &str, tags: &[&str], digests: &[String]) -> Self {
        self.images.push(ObservedImage {
            id: ImageId::new(id),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.to_vec(),
        });
        self
    }

    fn observe(self, m: &Manifest) -> Observed {
        Observed::new(m, self.containers, self.images)
    }
}

fn registry_says(target: usize, reference: &str, d: Digest) -> Resolved {
    let reference = ImageRef::parse(reference).expect("ref");
    Resolved::from([(target, Ok(Desired { reference, digest: Some(d), local_id: None, for_platform: None }))])
}

fn app_world() -> World {
    World::new().container("web", &format!("{REG}/app:1"), "img-1", &[]).image(
        "img-1",
        &[&format!("{REG}/app:1")],
        &[format!("{REG}/app@{}", digest('1'))],
    )
}

fn only(plan: &Plan) -> &PlanEntry {
    assert_eq!(plan.actions.len(), 1, "{plan:?}");
    &plan.actions[0]
}

#[test]
fn new_tag_plans_upgrade_with_tag_reason() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:2\n"));
    let observed = app_world().observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:2"), digest('2')));
    let e = only(&p);
    assert_eq!(e.action, Action::Upgrade);
    assert_eq!(e.reason, "tag 1 → 2");
    assert_eq!(e.container.as_deref(), Some("web"));
    assert_eq!(e.current.as_ref().map(|c| c.image.as_str()), Some("127.0.0.1:5000/app:1"));
    assert_eq!(e.current.as_ref().and_then(|c| c.digest.clone()), Some(digest('1').to_string()));
    assert_eq!(e.desired.as_ref().and_then(|c| c.digest.clone()), Some(digest('2').to_string()));
}

#[test]
fn same_digest_plans_none() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:1\n"));
    let observed = app_world().observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), digest('1')));
    assert_eq!(only(&p).action, Action::None);
    assert!(only(&p).reason.starts_with("up to date"), "{}", only(&p).reason);
}

#[test]
fn moved_tag_plans_upgrade_naming_the_new_digest() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:1\n"));
    let observed = app_world().observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), digest('9')));
    let e = only(&p);
    assert_eq!(e.action, Action::Upgrade);
    assert_eq!(e.reason, "tag 1 moved to sha256:999999999999 (running sha256:111111111111)");
}

#[test]
fn an_image_with_several_digests_of_the_repository_is_up_to_date_by_any_of_them() {
    // Pulled by tag and through an index (or pinned by digest on top of a
    // tag): two digests of one repository, listed alphabetically by Docker.
    // Whichever the registry names, the content is the same.
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:1\n"));
    let other = format!("{REG}/other@{}", digest('0'));
    for (digests, registry) in [
        (vec![digest('1'), digest('7')], digest('7')),
        (vec![digest('1'), digest('7')], digest('1')),
        (vec![digest('7'), digest('1')], digest('7')),
    ] {
        let mut repo_digests: Vec<String> = digests.iter().map(|d| format!("{REG}/app@{d}")).collect();
        repo_digests.insert(0, other.clone());
        let observed = World::new()
            .container("web", &format!("{REG}/app:1"), "img-1", &[])
            .image("img-1", &[&format!("{REG}/app:1")], &repo_digests)
            .observe(&m);
        let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), registry.clone()));
        let e = only(&p);
        assert_eq!(e.action, Action::None, "{digests:?} vs {registry}: {}", e.reason);
        assert_eq!(e.current.as_ref().and_then(|c| c.digest.clone()), Some(registry.to_string()));
        // A digest it does not carry is still a move.
        let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), digest('9')));
        assert_eq!(only(&p).action, Action::Upgrade);
    }
}

#[test]
fn a_tracked_container_above_every_matching_tag_is_never_moved_down() {
    let m = manifest(&format!("targets:\n  - container: web\n    track: {{image: {REG}/app, semver: ^3}}\n"));
    let running = |tag: &str| {
        World::new()
            .container("web", &format!("{REG}/app:{tag}"), "img-1", &[])
            .image("img-1", &[&format!("{REG}/app:{tag}")], &[format!("{REG}/app@{}", digest('1'))])
            .observe(&m)
    };
    let chose = |tag: &str| registry_says(0, &format!("{REG}/app:{tag}"), digest('2'));
    // (running, chosen by the track, action)
    for (run, chosen, action) in [
        ("v3.29.9", "v3.17.9", Action::None),
        ("3.29.9", "3.29.8", Action::None),
        ("3.29", "3.28.9", Action::None),
        ("3.17.9", "3.29.9", Action::Upgrade),
        ("latest", "3.17.9", Action::Upgrade),
    ] {
        let p = plan(&m, &running(run), &chose(chosen));
        let e = only(&p);
        assert_eq!(e.action, action, "{run} → {chosen}: {}", e.reason);
        if action == Action::None {
            assert!(e.reason.starts_with(&format!("warning: runs {run}, above {chosen}")), "{}", e.reason);
        }
    }
}

#[test]
fn different_tag_same_content_is_up_to_date() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:latest\n"));
    let observed = app_world().observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:latest"), digest('1')));
    assert_eq!(only(&p).action, Action::None);
}

#[test]
fn other_repository_plans_upgrade_naming_both_images() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/other:1\n"));
    let observed = app_world().observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/other:1"), digest('1')));
    assert_eq!(only(&p).action, Action::Upgrade, "same digest in another repository is not the same image");
    assert_eq!(only(&p).reason, format!("image {REG}/app:1 → {REG}/other:1"));
}

#[test]
fn locally_built_image_without_digest_plans_upgrade() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:1\n"));
    let observed = World::new()
        .container("web", &format!("{REG}/app:1"), "img-1", &[])
        .image("img-1", &[&format!("{REG}/app:1")], &[])
        .observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), digest('2')));
    assert_eq!(only(&p).action, Action::Upgrade);
    assert!(only(&p).reason.contains("no digest from 127.0.0.1:5000"), "{}", only(&p).reason);
}

#[test]
fn digest_pin_compares_digests() {
    let pin = format!("{REG}/app@{}", digest('1'));
    let m = manifest(&format!("targets:\n  - container: web\n    image: {pin}\n"));
    let observed = app_world().observe(&m);
    let same = registry_says(0, &pin, digest('1'));
    assert_eq!(only(&plan(&m, &observed, &same)).action, Action::None);

    let other_pin = format!("{REG}/app:1@{}", digest('3'));
    let m = manifest(&format!("targets:\n  - container: web\n    image: \"{other_pin}\"\n"));
    let p = plan(&m, &observed, &registry_says(0, &other_pin, digest('3')));
    assert_eq!(only(&p).action, Action::Upgrade);
    assert_eq!(only(&p).reason, "pinned sha256:333333333333, running sha256:111111111111");
}

#[test]
fn missing_container_and_empty_selector_plan_missing() {
    let m = manifest(
        "targets:\n  - container: ghost\n    image: a:1\n  - selector: {label: tier=edge}\n    image: b:1\n",
    );
    let observed = app_world().observe(&m);
    let p = plan(&m, &observed, &Resolved::new());
    let reasons: Vec<(Action, &str)> = p.actions.iter().map(|e| (e.action, e.reason.as_str())).collect();
    assert_eq!(
        reasons,
        vec![
            (Action::Missing, "no container named ghost"),
            (Action::Missing, "no container has label tier=edge")
        ]
    );
    assert!(needs_resolution(&m, &observed).is_empty(), "missing targets cost no registry call");
}

#[test]
fn policy_refuses_and_skips_resolution() {
    let m = manifest(&format!(
        "policy: {{allowed_images: [\"registry.local:5000/*\"]}}\ntargets:\n  - container: web\n    image: {REG}/app:2\n"
    ));
    let observed = app_world().observe(&m);
    assert!(needs_resolution(&m, &observed).is_empty());
    let p = plan(&m, &observed, &Resolved::new());
    assert_eq!(only(&p).action, Action::Refused);
    assert_eq!(only(&p).reason, format!("image {REG}/app not allowed by policy.allowed_images"));
}

#[test]
fn resolution_errors_become_error_entries_with_the_reason() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:2\n"));
    let observed = app_world().observe(&m);
    let resolved = Resolved::from([(
        0,
        Err(ResolveError::Registry(RegistryError::Unreachable {
            registry: REG.into(),
            detail: "Connection refused (os error 111)".into(),
        })),
    )]);
    let p = plan(&m, &observed, &resolved);
    assert_eq!(only(&p).action, Action::Error);
    assert_eq!(only(&p).reason, "registry unreachable: 127.0.0.1:5000: Connection refused (os error 111)");
}

#[test]
fn selector_plans_one_entry_per_matching_container() {
    let m = manifest(&format!("targets:\n  - selector: {{label: tier=edge}}\n    image: {REG}/app:2\n"));
    let observed = app_world()
        .container("edge-1", &format!("{REG}/app:1"), "img-1", &[("tier", "edge")])
        .container("edge-2", &format!("{REG}/app:2"), "img-2", &[("tier", "edge")])
        .container("core", &format!("{REG}/app:1"), "img-1", &[("tier", "core")])
        .image("img-2", &[&format!("{REG}/app:2")], &[format!("{REG}/app@{}", digest('2'))])
        .observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:2"), digest('2')));
    let got: Vec<(Option<&str>, Action)> =
        p.actions.iter().map(|e| (e.container.as_deref(), e.action)).collect();
    assert_eq!(got, vec![(Some("edge-1"), Action::Upgrade), (Some("edge-2"), Action::None)]);
}

#[test]
fn container_covered_by_two_targets_is_an_error_for_both() {
    let m = manifest(&format!(
        "targets:\n  - container: web\n    image: {REG}/app:2\n  - selector: {{label: tier}}\n    image: {REG}/app:3\n"
    ));
    let observed =
        World::new().container("web", &format!("{REG}/app:1"), "img-1", &[("tier", "x")]).observe(&m);
    let p = plan(&m, &observed, &Resolved::new());
    assert_eq!(p.count(Action::Error), 2, "{p:?}");
    assert!(p.actions[0].reason.contains("also selected by targets[1]"), "{}", p.actions[0].reason);
    assert!(p.actions[1].reason.contains("also selected by targets[0]"), "{}", p.actions[1].reason);
}

#[test]
fn local_resolution_compares_image_ids() {
    let m = manifest("targets:\n  - container: web\n    image: app:2\n    pull: never\n");
    let observed = World::new().container("web", "app:1", "img-1", &[]).observe(&m);
    let desired = |id: &str| {
        Resolved::from([(
            0,
            Ok(Desired {
                reference: ImageRef::parse("app:2").expect("ref"),
                digest: None,
                local_id: Some(ImageId::new(id)),
                for_platform: None,
            }),
        )])
    };
    assert_eq!(only(&plan(&m, &observed, &desired("img-2"))).action, Action::Upgrade);
    assert_eq!(only(&plan(&m, &observed, &desired("img-1"))).action, Action::None);
}

#[test]
fn stopped_containers_are_planned_and_their_state_is_said() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:2\n"));
    let mut world = app_world();
    world.containers[0].state = "exited".into();
    let p = plan(&m, &world.observe(&m), &registry_says(0, &format!("{REG}/app:2"), digest('2')));
    assert_eq!(only(&p).action, Action::Upgrade);
    assert_eq!(only(&p).reason, "tag 1 → 2 (container is exited)");
}

#[test]
fn container_whose_tag_moved_locally_shows_its_image_id() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:1\n"));
    let observed = World::new()
        .container("web", "sha256:abc", "img-old", &[])
        .image("img-old", &[], &[format!("{REG}/app@{}", digest('1'))])
        .observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), digest('2')));
    assert_eq!(only(&p).current.as_ref().map(|c| c.image.as_str()), Some("sha256:abc"));
    assert_eq!(only(&p).action, Action::Upgrade);
}

#[test]
fn plan_json_has_the_contract_fields() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:2\n"));
    let observed = app_world().observe(&m);
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:2"), digest('2')));
    let json = serde_json::to_value(&p).expect("serialises");
    let entry = &json["actions"][0];
    for field in ["target", "container", "current", "desired", "action", "reason"] {
        assert!(entry.get(field).is_some(), "missing {field} in {entry}");
    }
    assert_eq!(entry["action"], "upgrade");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A random world: containers `c0..` running tag `t` of `REG/app`, a
    /// registry where each tag has a digest, and a manifest naming some
    /// containers (and some that do not exist) with a desired tag each.
    #[derive(Debug, Clone)]
    struct Case {
        running: Vec<u8>,
        registry: [u8; 3],
        targets: Vec<(u8, u8)>,
        down: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            prop::collection::vec(0u8..3, 0..6),
            [0u8..3, 0u8..3, 0u8..3],
            prop::collection::btree_map(0u8..8, 0u8..3, 0..8),
            any::<bool>(),
        )
            .prop_map(|(running, registry, targets, down)| Case {
                running,
                registry,
                targets: targets.into_iter().collect(),
                down,
            })
    }

    fn world(c: &Case) -> (Manifest, Observed, Resolved) {
        let mut body = String::from("targets:\n");
        for (container, tag) in &c.targets {
            body.push_str(&format!("  - container: c{container}\n    image: {REG}/app:{tag}\n"));
        }
        if c.targets.is_empty() {
            body = "targets: []\n".into();
        }
        let m = manifest(&body);
        let mut w = World::new();
        for (i, tag) in c.running.iter().enumerate() {
            // Image `img-T` carries the digest the registry had for tag T
            // when it was pulled: the registry's current one.
            let id = format!("img-{tag}");
            w = w.container(&format!("c{i}"), &format!("{REG}/app:{tag}"), &id, &[]);
            let d = format!("{REG}/app@{}", digest(char::from(b'a' + c.registry[*tag as usize])));
            w = w.image(&id, &[&format!("{REG}/app:{tag}")], &[d]);
        }
        let observed = w.observe(&m);
        let resolved = m
            .targets
            .iter()
            .map(|t| {
                let r = match &t.want {
                    crate::manifest::Want::Image(r) => r.clone(),
                    other => panic!("unexpected {other:?}"),
                };
                let tag: usize = r.tag().and_then(|t| t.parse().ok()).expect("numeric tag");
                let result = if c.down {
                    Err(ResolveError::Registry(RegistryError::Unreachable {
                        registry: REG.into(),
                        detail: "down".into(),
                    }))
                } else {
                    let d = digest(char::from(b'a' + c.registry[tag]));
                    Ok(Desired { reference: r, digest: Some(d), local_id: None, for_platform: None })
                };
                (t.index, result)
            })
            .collect();
        (m, observed, resolved)
    }

    proptest! {
        #[test]
        fn one_entry_per_target_and_upgrade_exactly_when_content_differs(c in case()) {
            let (m, observed, resolved) = world(&c);
            let p = plan(&m, &observed, &resolved);
            prop_assert_eq!(p.actions.len(), m.targets.len(), "named targets give one entry each");
            for (e, (container, want)) in p.actions.iter().zip(&c.targets) {
                let running = c.running.get(*container as usize);
                let expected = match running {
                    None => Action::Missing,
                    Some(_) if c.down => Action::Error,
                    Some(tag) if c.registry[*tag as usize] == c.registry[*want as usize] => Action::None,
                    Some(_) => Action::Upgrade,
                };
                prop_assert_eq!(e.action, expected, "{:?}", e);
                // An upgrade always says what changes; nothing else claims a change.
                if e.action == Action::Upgrade {
                    prop_assert!(e.reason.contains('→') || e.reason.contains("moved"), "{}", e.reason);
                    prop_assert_ne!(e.current.as_ref().and_then(|s| s.digest.clone()), e.desired.as_ref().and_then(|s| s.digest.clone()));
                }
            }
        }

        #[test]
        fn plan_is_deterministic_and_never_resolves_what_it_does_not_need(c in case()) {
            let (m, observed, resolved) = world(&c);
            prop_assert_eq!(plan(&m, &observed, &resolved), plan(&m, &observed, &resolved));
            for i in needs_resolution(&m, &observed) {
                prop_assert!(observed.selected(i).next().is_some(), "target {} selects nothing", i);
            }
        }
    }
}

#[test]
fn an_index_moved_only_for_other_platforms_plans_none_and_this_platforms_change_upgrades() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:1\n"));
    let image_id = digest('5');
    let observed = World::new()
        .container("web", &format!("{REG}/app:1"), image_id.as_str(), &[])
        .image(image_id.as_str(), &[&format!("{REG}/app:1")], &[format!("{REG}/app@{}", digest('1'))])
        .observe(&m);
    let resolved = |config: Digest| {
        let for_platform = Some(crate::resolve::PlatformImage {
            platform: crate::platform::Platform::of(Some("linux"), Some("arm64"), None).expect("platform"),
            manifest: digest('a'),
            config,
        });
        let reference = ImageRef::parse(&format!("{REG}/app:1")).expect("ref");
        Resolved::from([(
            0,
            Ok(Desired { reference, digest: Some(digest('2')), local_id: None, for_platform }),
        )])
    };
    let same = plan(&m, &observed, &resolved(image_id.clone()));
    let e = only(&same);
    assert_eq!(e.action, Action::None, "{e:?}");
    assert!(
        e.reason.contains("linux/arm64") && e.reason.contains("only other platforms changed"),
        "{}",
        e.reason
    );
    let changed = plan(&m, &observed, &resolved(digest('6')));
    assert_eq!(only(&changed).action, Action::Upgrade, "{changed:?}");
}

#[test]
fn an_index_without_the_containers_platform_plans_error_naming_it() {
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:2\n"));
    let observed = app_world().observe(&m);
    let err = ResolveError::NoPlatform {
        reference: format!("{REG}/app:2"),
        platform: "linux/amd64".into(),
        available: vec!["linux/arm64".into()],
    };
    let p = plan(&m, &observed, &Resolved::from([(0, Err(err))]));
    let e = only(&p);
    assert_eq!(e.action, Action::Error);
    assert!(
        e.reason.contains("no image for linux/amd64") && e.reason.contains("it has linux/arm64"),
        "{}",
        e.reason
    );
}

#[test]
fn a_signature_refusal_is_listed_for_its_event_but_a_registry_failure_is_not() {
    use crate::verify::Refusal;
    let m = manifest(&format!("targets:\n  - container: web\n    image: {REG}/app:2\n"));
    let observed = app_world().observe(&m);
    let unsigned = ResolveError::Unsigned {
        reference: format!("{REG}/app:2"),
        refusal: Refusal::NoSignature { digest: "sha256:ab".into(), tag: "sha256-ab.sig".into() },
    };
    let p = plan(&m, &observed, &Resolved::from([(0, Err(unsigned))]));
    assert_eq!(only(&p).action, Action::Error);
    assert_eq!(p.refusals.len(), 1, "{p:?}");
    let r = &p.refusals[0];
    assert_eq!((r.container.as_str(), r.to.as_str()), ("web", format!("{REG}/app:2").as_str()));
    assert!(r.reason.contains("no signature") && r.reason == only(&p).reason, "{r:?}");
    assert!(!r.service);
    // A registry that could not be asked is no verdict: nothing to tell.
    let down = ResolveError::Unsigned {
        reference: format!("{REG}/app:2"),
        refusal: Refusal::Registry("connection refused".into()),
    };
    let p = plan(&m, &observed, &Resolved::from([(0, Err(down))]));
    assert_eq!(only(&p).action, Action::Error);
    assert!(p.refusals.is_empty(), "{p:?}");
}

/// A Swarm service `name` whose spec pins `REG/app:1` to `digest('1')`,
/// with `running` of 3 tasks up, and its last update in `update`.
fn service(
    name: &str,
    labels: &[(&str, &str)],
    running: u64,
    update: Option<UpdateState>,
) -> ObservedContainer {
    ObservedContainer {
        id: ContainerId::new(format!("svc-{name}")),
        name: name.to_string(),
        image: format!("{REG}/app:1"),
        image_id: ImageId::new(digest('1').as_str()),
        state: if running >= 3 { "running".into() } else { format!("{running}/3 tasks running") },
        health: None,
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        joins: None,
        service: Some(ServiceState { digest: Some(digest('1')), update, running, desired: 3 }),
    }
}

use crate::observe::ServiceState;
use crate::swarm::rollout::UpdateState;

#[test]
fn a_service_plans_as_a_container_does_with_the_same_reasons() {
    let m = manifest(&format!("targets:\n  - service: web\n    image: {REG}/app:2\n"));
    let observed = Observed::new(&m, vec![service("web", &[], 3, None)], Vec::new());
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:2"), digest('2')));
    let e = only(&p);
    assert_eq!((e.action, e.reason.as_str()), (Action::Upgrade, "tag 1 → 2"));
    assert_eq!(e.target, "service web");
    assert_eq!(e.container.as_deref(), Some("web"));
    assert_eq!(e.current.as_ref().and_then(|c| c.digest.clone()), Some(digest('1').to_string()));

    // The same tag, moved in the registry: drift, said as for a container.
    let m = manifest(&format!("targets:\n  - service: web\n    image: {REG}/app:1\n"));
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), digest('9')));
    assert_eq!(only(&p).action, Action::Upgrade);
    assert!(only(&p).reason.starts_with("tag 1 moved to sha256:999999999999"), "{}", only(&p).reason);
    // Pinned where the registry says: nothing to do.
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:1"), digest('1')));
    assert_eq!(only(&p).action, Action::None);
    assert!(only(&p).reason.starts_with("up to date"), "{}", only(&p).reason);
}

#[test]
fn container_and_service_targets_never_select_each_other() {
    let labels = [("tier", "edge")];
    let m = manifest(&format!(
        "targets:\n  - service_selector: {{label: tier=edge}}\n    image: {REG}/app:1\n  - container: web\n    image: {REG}/app:1\n"
    ));
    // A service and a container both named `web`, both labelled tier=edge.
    let mut world = app_world();
    world.containers[0].labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    world.containers.push(service("web", &labels, 3, None));
    let observed = world.observe(&m);
    let kinds = |i: usize| observed.selected(i).map(|c| c.service.is_some()).collect::<Vec<_>>();
    assert_eq!(kinds(0), [true]);
    assert_eq!(kinds(1), [false]);
}

#[test]
fn a_service_target_on_a_non_manager_is_an_error_that_says_why() {
    let m = manifest(&format!("targets:\n  - service: web\n    image: {REG}/app:2\n"));
    let mut observed = Observed::new(&m, Vec::new(), Vec::new());
    observed.swarm = Some("This node is not a swarm manager.".into());
    assert!(needs_resolution(&m, &observed).is_empty(), "nothing is asked of the registry");
    let p = plan(&m, &observed, &Resolved::new());
    let e = only(&p);
    assert_eq!(e.action, Action::Error);
    assert!(
        e.reason.starts_with("this Docker Engine is not a Swarm manager (This node is not a swarm manager.)"),
        "{}",
        e.reason
    );

    let observed = Observed::new(&m, Vec::new(), Vec::new());
    let p = plan(&m, &observed, &Resolved::new());
    assert_eq!((only(&p).action, only(&p).reason.as_str()), (Action::Missing, "no service named web"));
}

#[test]
fn an_update_under_way_is_named_and_a_converging_service_says_so() {
    let m = manifest(&format!("targets:\n  - service: web\n    image: {REG}/app:2\n"));
    let observed = Observed::new(&m, vec![service("web", &[], 2, Some(UpdateState::Updating))], Vec::new());
    let p = plan(&m, &observed, &registry_says(0, &format!("{REG}/app:2"), digest('2')));
    assert_eq!(only(&p).action, Action::Upgrade);
    assert_eq!(
        only(&p).reason,
        "tag 1 → 2 (service is 2/3 tasks running) (Swarm is updating the service: that update is waited for first)"
    );
}
