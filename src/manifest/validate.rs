//! From the document as written to a [`Manifest`]: every rule that serde
//! cannot express, each problem reported at the position of the field.

use std::collections::HashMap;

use semver::VersionReq;

use super::document::{Document, HealthDoc, Overrides, Probe, SelectorDoc, TargetDoc, TrackDoc, UpdateDoc};
use super::text::shown;
use super::{
    HealthGate, Manifest, ManifestError, Policy, Pos, Problem, Select, ServiceUpdate, Settings, Source,
    Target, Want,
};
use super::{DEFAULT_DRIFT_INTERVAL, VERSION};
use crate::reference::ImageRef;

/// Checks everything and returns the manifest, or every problem found.
pub(super) fn validate(src: &Source) -> Result<Manifest, ManifestError> {
    if src.is_empty_document() {
        return Err(ManifestError::single(
            &src.origin,
            Pos { line: 1, column: 1 },
            "the manifest is empty; it needs at least `version: 1` and a `targets:` list",
        ));
    }
    let doc: Document = super::de::from_tree(src.tree()).map_err(|e| ManifestError {
        origin: src.origin.clone(),
        problems: vec![Problem {
            pos: e.pos.unwrap_or(Pos { line: 1, column: 1 }),
            path: e.path.unwrap_or_else(|| super::yaml::DOCUMENT.to_string()),
            message: e.message,
        }],
    })?;
    let mut problems = Vec::new();
    if doc.version != VERSION {
        problems.push(src.problem(
            "version",
            format!("unsupported manifest version {}; this build reads version {VERSION}", doc.version),
        ));
    }
    let base = settings(src, "defaults", &Settings::default(), &doc.defaults_as_target(), &mut problems);
    let policy_verify = super::verify::policy(src, doc.policy.verify.as_ref(), &mut problems);
    let mut targets = Vec::with_capacity(doc.targets.len());
    let mut seen: HashMap<Select, usize> = HashMap::new();
    for (index, t) in doc.targets.iter().enumerate() {
        let path = format!("targets[{index}]");
        let select = select(src, &path, t);
        if let Ok(sel) = &select {
            let field = select_field(t);
            if let Some(first) = seen.insert(sel.clone(), index) {
                let at = src.pos(&format!("targets[{first}].{field}"));
                problems.push(src.problem(
                    &format!("{path}.{field}"),
                    format!(
                        "duplicate target: `{sel}` is already a target at targets[{first}] (line {}); each container or service may be named by one target only",
                        at.line
                    ),
                ));
            }
        }
        let want = want(src, &path, t);
        let settings = settings(src, &path, &base, t, &mut problems);
        let verify = super::verify::merge(src, &path, &policy_verify, t.verify.as_ref(), &mut problems);
        if let Ok(sel) = &select {
            service_only(src, &path, sel, t, &mut problems);
        }
        match (select, want) {
            (Ok(select), Ok(want)) => targets.push(Target { index, select, want, settings, verify }),
            (select, want) => problems.extend(select.err().into_iter().chain(want.err())),
        }
    }
    if let Some(d) = doc.defaults.drift_interval.filter(|d| !d.is_zero() && d.0 < super::MIN_DRIFT_INTERVAL) {
        problems.push(src.problem(
            "defaults.drift_interval",
            format!(
                "drift interval {d} is shorter than the minimum of {}s; write at least {}s, or 0 to check only on triggers",
                super::MIN_DRIFT_INTERVAL.as_secs(),
                super::MIN_DRIFT_INTERVAL.as_secs()
            ),
        ));
    }
    if let Some(url) = &doc.report.webhook {
        if let Err(m) = webhook(url) {
            problems.push(src.problem("report.webhook", m));
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.pos.line, p.pos.column));
        return Err(ManifestError { origin: src.origin.clone(), problems });
    }
    Ok(Manifest {
        webhook: doc.report.webhook,
        origin: src.origin.clone(),
        drift_interval: doc.defaults.drift_interval.unwrap_or(super::Dur(DEFAULT_DRIFT_INTERVAL)),
        policy: Policy {
            allowed_images: doc.policy.allowed_images,
            push_may_change_targets: doc.policy.push_may_change_targets,
            verify: policy_verify.as_read(),
        },
        targets,
    })
}

impl Document {
    /// `defaults` seen as a target's overrides, so one merge serves both.
    fn defaults_as_target(&self) -> TargetDoc {
        let Overrides { pull, order, rollback, cleanup, health, update, hooks, drift_interval: _ } =
            self.defaults.clone();
        TargetDoc {
            container: None,
            selector: None,
            service: None,
            service_selector: None,
            image: None,
            track: None,
            pull,
            order,
            rollback,
            cleanup,
            health,
            update,
            hooks,
            verify: None,
        }
    }
}

/// The fields that say what a target covers.
const SELECT_FIELDS: [&str; 4] = ["container", "selector", "service", "service_selector"];

/// The one of [`SELECT_FIELDS`] the target sets (the first, when several).
fn select_field(t: &TargetDoc) -> &'static str {
    let set =
        [t.container.is_some(), t.selector.is_some(), t.service.is_some(), t.service_selector.is_some()];
    SELECT_FIELDS.iter().zip(set).find(|(_, set)| *set).map_or("container", |(f, _)| *f)
}

fn select(src: &Source, path: &str, t: &TargetDoc) -> Result<Select, Problem> {
    let given: Vec<&str> = SELECT_FIELDS
        .iter()
        .zip([t.container.is_some(), t.selector.is_some(), t.service.is_some(), t.service_selector.is_some()])
        .filter_map(|(f, set)| set.then_some(*f))
        .collect();
    if given.len() > 1 {
        return Err(src.problem(
            path,
            format!(
                "a target has one of `container`, `selector`, `service` or `service_selector`; this one has {}; allowed: one of them",
                given.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(" and ")
            ),
        ));
    }
    match (&t.container, &t.selector, &t.service, &t.service_selector) {
        (Some(name), ..) => container_name(name).map_err(|m| src.problem(&format!("{path}.container"), m)),
        (_, Some(sel), ..) => selector(sel).map_err(|m| src.problem(&format!("{path}.selector.label"), m)),
        (_, _, Some(name), _) => service_name(name).map_err(|m| src.problem(&format!("{path}.service"), m)),
        (_, _, _, Some(sel)) => match selector(sel) {
            Ok(Select::Label { key, value }) => Ok(Select::ServiceLabel { key, value }),
            Ok(other) => Ok(other),
            Err(m) => Err(src.problem(&format!("{path}.service_selector.label"), m)),
        },
        (None, None, None, None) => Err(src.problem(
            path,
            "a target needs `container: NAME`, `selector: {label: \"key=value\"}`, `service: NAME` or `service_selector: {label: \"key=value\"}`",
        )),
    }
}

/// Swarm's service name rule (swarmkit's `^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`,
/// at most 63 characters): letters, digits, `-` and `_`, starting and
/// ending with a letter or digit. `_` matters: `docker stack deploy` names
/// its services `STACK_SERVICE`.
pub(super) const MAX_SERVICE_NAME: usize = 63;

fn service_name(name: &str) -> Result<Select, String> {
    let ok_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let valid = (1..=MAX_SERVICE_NAME).contains(&name.len())
        && ok_edge(name.chars().next())
        && ok_edge(name.chars().last())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "invalid service name `{}`; Swarm service names are 1-{MAX_SERVICE_NAME} characters of [a-zA-Z0-9_-], starting and ending with a letter or digit",
            shown(name)
        ));
    }
    Ok(Select::Service(name.to_string()))
}

/// Settings that mean something for only one kind of target, refused on
/// the other where the target itself sets them (a default may serve both).
fn service_only(src: &Source, path: &str, select: &Select, t: &TargetDoc, problems: &mut Vec<Problem>) {
    if !select.is_service() {
        if t.update.is_some() {
            problems.push(src.problem(
                &format!("{path}.update"),
                "`update` applies to Swarm service targets only; allowed: `update` under a target with `service` or `service_selector`, or in `defaults`",
            ));
        }
        return;
    }
    if t.hooks.is_some() {
        problems.push(src.problem(
            &format!("{path}.hooks"),
            "`hooks` apply to container targets only: Swarm replaces a service's tasks itself; allowed: `hooks` under a target with `container` or `selector`, or in `defaults`",
        ));
    }
    // Swarm judges a task by its image's HEALTHCHECK (or it running): the
    // controller does not reach into tasks on other nodes to probe them.
    if let Some(probe @ (Probe::Http { .. } | Probe::Tcp { .. })) =
        t.health.as_ref().and_then(|h| h.probe.as_ref())
    {
        let kind = if matches!(probe, Probe::Http { .. }) { "http" } else { "tcp" };
        problems.push(src.problem(
            &format!("{path}.health.probe"),
            format!(
                "a `{kind}` probe cannot gate a Swarm service: Swarm judges each task by its image's HEALTHCHECK; allowed for services: `auto` or `running`"
            ),
        ));
    }
}

fn want(src: &Source, path: &str, t: &TargetDoc) -> Result<Want, Problem> {
    match (&t.image, &t.track) {
        (Some(image), None) => ImageRef::parse(image)
            .map(Want::Image)
            .map_err(|e| src.problem(&format!("{path}.image"), e.to_string())),
        (None, Some(track)) => self::track(src, &format!("{path}.track"), track),
        (Some(_), Some(_)) => {
            Err(src.problem(path, "a target has either `image` or `track`, not both; allowed: one of them"))
        }
        (None, None) => Err(src.problem(
            path,
            "a target needs `image: REF` (a tag or name@sha256:…) or `track: {image: REPO, semver: RANGE}`",
        )),
    }
}

/// An absolute http(s) URL with a host.
fn webhook(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("invalid webhook URL `{url}`; expected http://HOST[:PORT]/PATH or https://…")),
    }
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
/// The longest container name accepted: Docker sets no limit of its own,
/// but a name is also a DNS name on user networks (63 per label, 253 in
/// all), and a longer one is a mistake or an attack on our output.
pub(super) const MAX_CONTAINER_NAME: usize = 253;
/// The longest label selector (`key=value`) accepted.
pub(super) const MAX_SELECTOR: usize = 1024;

fn container_name(name: &str) -> Result<Select, String> {
    if name.len() > MAX_CONTAINER_NAME {
        return Err(format!(
            "container name `{}` is too long; at most {MAX_CONTAINER_NAME} characters",
            shown(name)
        ));
    }
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && bare.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        return Err(format!(
            "invalid container name `{}`; Docker names are 2+ characters of [a-zA-Z0-9_.-] starting with a letter or digit",
            shown(name)
        ));
    }
    Ok(Select::Container(bare.to_string()))
}

fn selector(sel: &SelectorDoc) -> Result<Select, String> {
    if sel.label.len() > MAX_SELECTOR {
        return Err(format!(
            "label selector `{}` is too long; at most {MAX_SELECTOR} characters",
            shown(&sel.label)
        ));
    }
    let (key, value) = match sel.label.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (sel.label.as_str(), None),
    };
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid label selector `{}`; expected `key=value` or `key`, the key without spaces",
            shown(&sel.label)
        ));
    }
    Ok(Select::Label { key: key.to_string(), value })
}

fn track(src: &Source, path: &str, t: &TrackDoc) -> Result<Want, Problem> {
    let image_path = format!("{path}.image");
    let image = ImageRef::parse(&t.image).map_err(|e| src.problem(&image_path, e.to_string()))?;
    let last = t.image.rsplit('/').next().unwrap_or(&t.image);
    if image.digest().is_some() || last.contains(':') {
        return Err(src.problem(
            &image_path,
            format!(
                "`{}` names a tag or digest; `track.image` is a repository, the tag is chosen by `semver`",
                t.image
            ),
        ));
    }
    let range = VersionReq::parse(&t.semver).map_err(|e| {
        src.problem(
            &format!("{path}.semver"),
            format!("invalid semver range `{}` ({e}); expected e.g. ^1.4, ~2.19, >=1.2, <2", t.semver),
        )
    })?;
    let flavor = t.flavor.as_deref().map(|f| f.trim_start_matches('-'));
    if let Some(f) = flavor.filter(|f| !f.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))) {
        return Err(src.problem(
            &format!("{path}.flavor"),
            format!("`{f}` cannot be a tag suffix; allowed: letters, digits, `.`, `_`, `-` (e.g. alpine, bookworm-slim)"),
        ));
    }
    Ok(Want::Track { image, range, prerelease: t.prerelease, flavor: flavor.map(str::to_string) })
}

/// Merges a target's (or `defaults`') overrides over `base`.
fn settings(
    src: &Source,
    path: &str,
    base: &Settings,
    t: &TargetDoc,
    problems: &mut Vec<Problem>,
) -> Settings {
    let health = t.health.as_ref().map_or_else(
        || base.health.clone(),
        |h| health(src, &format!("{path}.health"), &base.health, h, problems),
    );
    let update = t.update.as_ref().map_or_else(
        || base.update.clone(),
        |u| update(src, &format!("{path}.update"), &base.update, u, problems),
    );
    let hooks = t.hooks.as_ref().map_or_else(
        || base.hooks.clone(),
        |h| super::hooks::merge(src, &format!("{path}.hooks"), &base.hooks, h, problems),
    );
    Settings {
        pull: t.pull.unwrap_or(base.pull),
        order: t.order.unwrap_or(base.order),
        rollback: t.rollback.unwrap_or(base.rollback),
        cleanup: t.cleanup.unwrap_or(base.cleanup),
        health,
        update,
        hooks,
    }
}

/// Merges `update` over `base`, field by field.
fn update(
    src: &Source,
    path: &str,
    base: &ServiceUpdate,
    u: &UpdateDoc,
    problems: &mut Vec<Problem>,
) -> ServiceUpdate {
    let max_failure_ratio = match u.max_failure_ratio.as_deref().map(failure_ratio) {
        None => base.max_failure_ratio,
        Some(Ok(r)) => r,
        Some(Err(m)) => {
            problems.push(src.problem(&format!("{path}.max_failure_ratio"), m));
            base.max_failure_ratio
        }
    };
    ServiceUpdate {
        parallelism: u.parallelism.unwrap_or(base.parallelism),
        delay: u.delay.map_or(base.delay, |d| d.0),
        max_failure_ratio,
    }
}

/// A decimal from 0 to 1 (`0`, `0.25`, `1`).
fn failure_ratio(text: &str) -> Result<f64, String> {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.');
    match text.parse::<f64>() {
        Ok(r) if plain && (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "`{}` is not a failure ratio; allowed: a decimal from 0 to 1, such as 0 or 0.25",
            shown(text)
        )),
    }
}

fn health(
    src: &Source,
    path: &str,
    base: &HealthGate,
    h: &HealthDoc,
    problems: &mut Vec<Problem>,
) -> HealthGate {
    let gate = HealthGate {
        timeout: h.timeout.map_or(base.timeout, |d| d.0),
        stable: h.stable.map_or(base.stable, |d| d.0),
        probe: h.probe.clone().unwrap_or_else(|| base.probe.clone()),
    };
    if gate.timeout.is_zero() {
        problems.push(src.problem(
            &format!("{path}.timeout"),
            "health.timeout is 0; allowed: a duration longer than 0, such as 60s",
        ));
    } else if gate.stable >= gate.timeout {
        problems.push(src.problem(
            &format!("{path}.stable"),
            format!(
                "health.stable ({}) must be shorter than health.timeout ({}), or the gate can never pass",
                super::Dur(gate.stable),
                super::Dur(gate.timeout)
            ),
        ));
    }
    match &gate.probe {
        Probe::Http { port: 0, .. } | Probe::Tcp { port: 0 } => {
            problems.push(src.problem(
                &format!("{path}.probe"),
                "probe port must be 1-65535; allowed: a port from 1 to 65535",
            ));
        }
        Probe::Http { status, .. } if !(100..=599).contains(status) => {
            problems.push(src.problem(
                &format!("{path}.probe"),
                format!(
                    "HTTP status {status} is not 100-599; allowed: a status from 100 to 599, such as 200"
                ),
            ));
        }
        Probe::Http { path: p, .. } if !p.starts_with('/') => {
            problems.push(src.problem(
                &format!("{path}.probe"),
                format!("HTTP path `{p}` must start with `/`; allowed: a path such as `/healthz`"),
            ));
        }
        _ => {}
    }
    gate
}
