//! The top of the fleet view: per repository, how many hosts run each
//! version (oldest first), how many are behind by a patch, minor or major
//! release, how many failed their last op and how many are offline. Every
//! count links to the fleet list filtered to exactly those rows, so the
//! stragglers on the oldest version are one click from `/`.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::fleet_query::{thousands, FleetQuery};
use super::html::escape;
use crate::agents::{failing, AgentSummary, Status, UpdateKind};
use crate::reports::repository_of;

/// The most groups the overview lists (the largest first): a fleet whose
/// every host runs its own repository gets a bounded table.
pub const MAX_GROUPS: usize = 40;

/// How rows are grouped: by the repository of the image, or by the
/// target's name when it reported no image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    /// `registry/name` of the image.
    Repository(String),
    /// A target without an image.
    Target(String),
}

/// One repository's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// Hosts (agent and target rows).
    pub hosts: usize,
    /// The targets' names seen (sorted, deduplicated).
    pub targets: Vec<String>,
    /// `(version, hosts)`, oldest first; an empty version (not a
    /// version tag) last.
    pub versions: Vec<(String, usize)>,
    /// Hosts with a newer patch release available.
    pub patch: usize,
    /// With a newer minor release.
    pub minor: usize,
    /// With a newer major release.
    pub major: usize,
    /// Whose last op failed or rolled back.
    pub failing: usize,
    /// Whose agent is offline.
    pub offline: usize,
}

/// Versions compare as versions (a leading `v` ignored) when both parse,
/// else as text; an empty one sorts last.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v')).ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The figures of every group, the most hosts first (then by name).
pub fn overview(agents: &[AgentSummary]) -> Vec<(GroupKey, Group)> {
    let mut groups: HashMap<GroupKey, (Group, HashMap<String, usize>)> = HashMap::new();
    for agent in agents {
        for t in &agent.targets {
            let key = match t.image.as_deref().and_then(repository_of) {
                Some(r) => GroupKey::Repository(r),
                None => GroupKey::Target(t.target.clone()),
            };
            let (g, versions) = groups.entry(key).or_default();
            g.hosts += 1;
            if !g.targets.contains(&t.target) {
                g.targets.push(t.target.clone());
            }
            *versions.entry(t.version.clone().unwrap_or_default()).or_default() += 1;
            g.patch += usize::from(UpdateKind::Patch.in_(&t.updates));
            g.minor += usize::from(UpdateKind::Minor.in_(&t.updates));
            g.major += usize::from(UpdateKind::Major.in_(&t.updates));
            g.failing += usize::from(failing(t.last_outcome.as_deref()));
            g.offline += usize::from(agent.status == Status::Offline);
        }
    }
    let mut out: Vec<(GroupKey, Group)> = groups
        .into_iter()
        .map(|(key, (mut g, versions))| {
            g.versions = versions.into_iter().collect();
            g.versions.sort_by(|a, b| version_cmp(&a.0, &b.0));
            g.targets.sort();
            (key, g)
        })
        .collect();
    out.sort_by(|a, b| b.1.hosts.cmp(&a.1.hosts).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The list filtered to `key`'s rows.
fn base(key: &GroupKey) -> FleetQuery {
    match key {
        GroupKey::Repository(r) => FleetQuery { repo: r.clone(), ..FleetQuery::default() },
        GroupKey::Target(t) => FleetQuery { target: t.clone(), ..FleetQuery::default() },
    }
}

/// `n` as a link to `query`'s list, or a muted 0.
fn count(n: usize, query: FleetQuery, title: &str, class: &str) -> String {
    if n == 0 {
        return r#"<span class="muted">0</span>"#.to_string();
    }
    format!(
        r#"<a class="count {class}" href="{}" title="{}">{}</a>"#,
        escape(&query.link(1)),
        escape(title),
        thousands(n)
    )
}

fn group_row(key: &GroupKey, g: &Group) -> String {
    let (name, what) = match key {
        GroupKey::Repository(r) => (r.as_str(), "repository"),
        GroupKey::Target(t) => (t.as_str(), "target"),
    };
    let shown: Vec<String> = g.targets.iter().take(3).map(|t| escape(t)).collect();
    let more = g.targets.len().saturating_sub(shown.len());
    let targets = match more {
        0 => shown.join(", "),
        n => format!("{} and {n} more", shown.join(", ")),
    };
    let oldest = g.versions.first().map(|(v, _)| v.clone()).filter(|v| !v.is_empty());
    let versions: String = g
        .versions
        .iter()
        .map(|(v, n)| {
            if v.is_empty() {
                return format!(
                    r#"<span class="version-count muted" title="not a version tag">other ×{}</span>"#,
                    thousands(*n)
                );
            }
            let is_oldest = oldest.as_deref() == Some(v.as_str()) && g.versions.len() > 1;
            let title = format!(
                "{} host{} on {v}{}",
                thousands(*n),
                if *n == 1 { "" } else { "s" },
                if is_oldest { " (the oldest)" } else { "" }
            );
            let q = FleetQuery { version: v.clone(), ..base(key) };
            format!(
                r#"<a class="version-count{}" href="{}" title="{}"><span class="version">{}</span> ×{}</a>"#,
                if is_oldest { " oldest" } else { "" },
                escape(&q.link(1)),
                escape(&title),
                escape(v),
                thousands(*n)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let kind = |k: UpdateKind, n: usize, label: &str| {
        count(
            n,
            FleetQuery { has_update: Some(k), ..base(key) },
            &format!("{n} behind by a {label} release"),
            label,
        )
    };
    format!(
        r#"<tr data-group="{key}"><td class="group"><a href="{all_link}" title="{what}">{name}</a><br><span class="muted">{targets}</span></td><td>{hosts}</td><td class="versions">{versions}</td><td>{patch}</td><td>{minor}</td><td>{major}</td><td>{failing}</td><td>{offline}</td></tr>"#,
        key = escape(name),
        all_link = escape(&base(key).link(1)),
        name = escape(name),
        hosts = count(g.hosts, base(key), "every host", "hosts"),
        patch = kind(UpdateKind::Patch, g.patch, "patch"),
        minor = kind(UpdateKind::Minor, g.minor, "minor"),
        major = kind(UpdateKind::Major, g.major, "major"),
        failing = count(
            g.failing,
            FleetQuery { failing: true, ..base(key) },
            "last op failed or rolled back",
            "failing"
        ),
        offline = count(
            g.offline,
            FleetQuery { status: Some(Status::Offline), ..base(key) },
            "agent offline",
            "offline"
        ),
    )
}

/// The overview table (nothing when no agent reported a target).
pub fn render(groups: &[(GroupKey, Group)], agents_without_targets: usize) -> String {
    if groups.is_empty() && agents_without_targets == 0 {
        return String::new();
    }
    let rows: String = groups.iter().take(MAX_GROUPS).map(|(k, g)| group_row(k, g)).collect();
    let more = match groups.len().saturating_sub(MAX_GROUPS) {
        0 => String::new(),
        n => {
            format!(r#"<p class="muted">{n} more repositories with fewer hosts: filter the list below.</p>"#)
        }
    };
    let bare = match agents_without_targets {
        0 => String::new(),
        n => format!(r#"<p class="muted">{} agents reported no target yet.</p>"#, thousands(n)),
    };
    format!(
        r#"<section class="overview" id="overview"><h2>Overview</h2>
<table class="overview" id="overview-table"><thead><tr><th>Repository (targets)</th><th>Hosts</th><th>Running versions, oldest first</th><th>Patch behind</th><th>Minor behind</th><th>Major behind</th><th>Failing</th><th>Offline</th></tr></thead><tbody>{rows}</tbody></table>{more}{bare}</section>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::TargetView;
    use crate::versions::Updates;

    fn host(
        id: &str,
        status: Status,
        image: &str,
        version: &str,
        updates: Updates,
        outcome: Option<&str>,
    ) -> AgentSummary {
        AgentSummary {
            id: id.into(),
            name: id.into(),
            labels: Default::default(),
            status,
            last_seen: String::new(),
            enrolled_at: String::new(),
            controller_version: None,
            controller_image: None,
            reported_at: None,
            git: None,
            targets: vec![TargetView {
                target: "web".into(),
                container: "web".into(),
                image: Some(image.into()),
                digest: None,
                version: Some(version.into()),
                desired: None,
                action: String::new(),
                reason: String::new(),
                last_op_id: None,
                last_outcome: outcome.map(str::to_string),
                last_reason: None,
                failure: None,
                updates,
                updates_unknown: None,
                signatures: Default::default(),
            }],
        }
    }

    fn behind(patch: bool, minor: bool, major: bool) -> Updates {
        let v = |on: bool, s: &str| on.then(|| s.to_string());
        Updates { patch: v(patch, "p"), minor: v(minor, "m"), major: v(major, "M") }
    }

    #[test]
    fn counts_versions_oldest_first_and_who_is_behind_failing_or_offline() {
        let mut agents = Vec::new();
        for i in 0..12 {
            agents.push(host(
                &format!("old{i}"),
                Status::Online,
                "r.io/app:1.0.0",
                "1.0.0",
                behind(true, true, true),
                None,
            ));
        }
        for i in 0..3 {
            agents.push(host(
                &format!("mid{i}"),
                Status::Offline,
                "r.io/app:1.10.0",
                "1.10.0",
                behind(false, false, true),
                Some("rolled_back"),
            ));
        }
        agents.push(host(
            "new",
            Status::Online,
            "r.io/app:1.9.2",
            "1.9.2",
            behind(false, true, true),
            Some("committed"),
        ));
        agents.push(host("db", Status::Online, "r.io/db:16", "16", Updates::default(), Some("failed")));
        let groups = overview(&agents);
        assert_eq!(groups.len(), 2);
        let (key, app) = &groups[0];
        assert_eq!(key, &GroupKey::Repository("r.io/app".into()));
        assert_eq!(app.hosts, 16);
        assert_eq!(app.versions, [("1.0.0".to_string(), 12), ("1.9.2".into(), 1), ("1.10.0".into(), 3)]);
        assert_eq!((app.patch, app.minor, app.major, app.failing, app.offline), (12, 13, 16, 3, 3));
        assert_eq!(groups[1].1.failing, 1);
        let html = render(&groups, 2);
        assert!(html.contains(r#"href="/?repo=r.io%2Fapp&amp;version=1.0.0""#), "{html}");
        assert!(html.contains("version-count oldest"));
        assert!(html.contains(r#"href="/?repo=r.io%2Fapp&amp;has_update=minor""#));
        assert!(html.contains(r#"href="/?repo=r.io%2Fapp&amp;failing=1""#));
        assert!(html.contains(r#"href="/?repo=r.io%2Fapp&amp;status=offline""#));
        assert!(html.contains("2 agents reported no target yet"));
    }

    #[test]
    fn version_order_is_semantic_then_textual_with_unknown_last() {
        let mut v = vec!["", "latest", "1.10.0", "v1.2.0", "1.9.0"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["v1.2.0", "1.9.0", "1.10.0", "latest", ""]);
    }

    #[test]
    fn group_names_are_escaped() {
        let agents = vec![host("a", Status::Online, "r.io/app:1.0.0", "<b>", Updates::default(), None)];
        let html = render(&overview(&agents), 0);
        assert!(!html.contains("<b>") && html.contains("&lt;b&gt;"), "{html}");
    }
}
