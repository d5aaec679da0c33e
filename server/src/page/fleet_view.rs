//! `GET /`: the fleet table, one row per agent and target, with filters,
//! search and sort as query parameters (so it works without JavaScript),
//! and a selection that leads to "Create campaign".

use std::cmp::Ordering;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::html::{escape, layout, query};
use super::live::{ago, Cell, Live};
use super::session::Authed;
use super::PageError;
use crate::agents::{AgentSummary, Filter, Status, TargetView, UpdateKind};
use crate::state::FleetState;
use crate::store::now_ms;
use crate::versions::Updates;

/// The fleet view's query: every field optional, empty means "any".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FleetQuery {
    /// `KEY=VALUE`.
    #[serde(default)]
    pub label: String,
    /// `online`, `offline`, `revoked`.
    #[serde(default)]
    pub status: String,
    /// `any`, `patch`, `minor`, `major`.
    #[serde(default)]
    pub has_update: String,
    /// A substring of the agent's name or the target's image.
    #[serde(default)]
    pub q: String,
    /// The column to sort by (see [`SORTS`]).
    #[serde(default)]
    pub sort: String,
    /// `desc` for descending.
    #[serde(default)]
    pub dir: String,
    /// `json` for the live cells.
    #[serde(default)]
    pub format: String,
}

/// The sortable columns: (key, heading).
pub const SORTS: [(&str, &str); 8] = [
    ("name", "Agent"),
    ("status", "Status"),
    ("controller", "Controller"),
    ("target", "Target"),
    ("image", "Image"),
    ("version", "Version"),
    ("outcome", "Last op"),
    ("seen", "Last seen"),
];

impl FleetQuery {
    /// The store's filter (unknown values match nothing rather than all).
    fn filter(&self) -> Result<Filter, PageError> {
        let status = match self.status.as_str() {
            "" => None,
            "online" => Some(Status::Online),
            "offline" => Some(Status::Offline),
            "revoked" => Some(Status::Revoked),
            other => return Err(bad(format!("status `{other}`: expected online, offline or revoked"))),
        };
        let has_update = match self.has_update.as_str() {
            "" => None,
            "any" => Some(UpdateKind::Any),
            "patch" => Some(UpdateKind::Patch),
            "minor" => Some(UpdateKind::Minor),
            "major" => Some(UpdateKind::Major),
            other => return Err(bad(format!("has_update `{other}`: expected any, patch, minor or major"))),
        };
        let label = (!self.label.is_empty()).then(|| self.label.clone());
        Ok(Filter { label, version: None, status, has_update })
    }

    /// This query with another sort, as a link.
    fn sort_link(&self, key: &str) -> String {
        let current = if self.sort.is_empty() { "name" } else { self.sort.as_str() };
        let dir = if current == key && self.dir != "desc" { "desc" } else { "" };
        let q = query(&[
            ("label", &self.label),
            ("status", &self.status),
            ("has_update", &self.has_update),
            ("q", &self.q),
            ("sort", key),
            ("dir", dir),
        ]);
        format!("/?{q}")
    }
}

fn bad(message: String) -> PageError {
    PageError(crate::FleetError::BadRequest(message))
}

/// One row: an agent and one of its targets (none for an agent that has
/// not reported any).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The agent.
    pub agent: &'a AgentSummary,
    /// The target.
    pub target: Option<&'a TargetView>,
}

impl Row<'_> {
    /// Unique per page: the agent id and the target.
    pub fn key(&self) -> String {
        format!("{}/{}", self.agent.id, self.target.map(|t| t.target.as_str()).unwrap_or(""))
    }

    fn matches(&self, search: &str) -> bool {
        let search = search.to_lowercase();
        search.is_empty()
            || self.agent.name.to_lowercase().contains(&search)
            || self
                .target
                .and_then(|t| t.image.as_deref())
                .is_some_and(|i| i.to_lowercase().contains(&search))
    }

    fn sort_value(&self, key: &str) -> String {
        let t = self.target;
        let opt = |v: Option<&String>| v.cloned().unwrap_or_default();
        match key {
            "status" => status_text(self.agent.status).to_string(),
            "controller" => opt(self.agent.controller_version.as_ref()),
            "target" => t.map(|t| t.target.clone()).unwrap_or_default(),
            "image" => opt(t.and_then(|t| t.image.as_ref())),
            "version" => opt(t.and_then(|t| t.version.as_ref())),
            "outcome" => opt(t.and_then(|t| t.last_outcome.as_ref())),
            "seen" => self.agent.last_seen.clone(),
            _ => self.agent.name.clone(),
        }
    }
}

/// Versions compare as versions when both parse, else as text.
fn compare(key: &str, a: &str, b: &str) -> Ordering {
    if matches!(key, "version" | "controller") {
        let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v')).ok();
        if let (Some(x), Some(y)) = (parse(a), parse(b)) {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

/// The rows of `agents` that match the search, sorted.
pub fn rows<'a>(agents: &'a [AgentSummary], q: &FleetQuery) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = agents
        .iter()
        .flat_map(|agent| {
            let targets: Vec<Option<&TargetView>> =
                if agent.targets.is_empty() { vec![None] } else { agent.targets.iter().map(Some).collect() };
            targets.into_iter().map(move |target| Row { agent, target })
        })
        .filter(|r| r.matches(&q.q))
        .collect();
    let key = if SORTS.iter().any(|(k, _)| *k == q.sort) { q.sort.as_str() } else { "name" };
    rows.sort_by(|a, b| {
        let order = compare(key, &a.sort_value(key), &b.sort_value(key)).then_with(|| a.key().cmp(&b.key()));
        if q.dir == "desc" {
            order.reverse()
        } else {
            order
        }
    });
    rows
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::Online => "online",
        Status::Offline => "offline",
        Status::Revoked => "revoked",
    }
}

/// The "new version available" badges, most significant first.
pub fn badges(u: &Updates) -> String {
    [("major", &u.major), ("minor", &u.minor), ("patch", &u.patch)]
        .iter()
        .filter_map(|(kind, v)| {
            v.as_ref().map(|v| {
                format!(
                    r#"<span class="badge badge-{kind}" title="{kind} update available">{kind} {}</span>"#,
                    escape(v)
                )
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Outcome and reason of a target's last op.
pub fn last_op(t: &TargetView) -> (String, String) {
    let outcome = t.last_outcome.as_deref().unwrap_or("");
    let mut html = if outcome.is_empty() {
        String::from(r#"<span class="muted">none</span>"#)
    } else {
        format!(r#"<span class="outcome-{0}">{0}</span>"#, escape(outcome))
    };
    if let Some(reason) = t.last_reason.as_deref().or(t.failure.as_deref()).filter(|r| !r.is_empty()) {
        html.push_str(&format!(r#"<br><span class="reason">{}</span>"#, escape(reason)));
    }
    (html, format!("outcome {}", outcome.replace('_', "-")))
}

/// The live cells of one row.
pub fn cells(row: &Row<'_>, now: i64) -> Vec<Cell> {
    let key = row.key();
    let id = |field: &str| format!("{key}:{field}");
    let a = row.agent;
    let t = row.target;
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    let (op_html, op_class) = t.map(last_op).unwrap_or_default();
    vec![
        Cell::text(id("status"), status_text(a.status), &format!("status status-{}", status_text(a.status))),
        Cell::text(id("controller"), &text(a.controller_version.as_ref()), "controller"),
        Cell::text(id("image"), &text(t.and_then(|t| t.image.as_ref())), "image"),
        Cell::text(id("version"), &text(t.and_then(|t| t.version.as_ref())), "version"),
        Cell {
            id: id("updates"),
            html: t.map(|t| badges(&t.updates)).unwrap_or_default(),
            class: "updates".into(),
        },
        Cell { id: id("op"), html: op_html, class: op_class },
        Cell::text(id("seen"), &ago(&a.last_seen, now), "seen"),
    ]
}

fn labels(a: &AgentSummary) -> String {
    a.labels
        .iter()
        .map(|(k, v)| format!(r#"<span class="label">{}={}</span>"#, escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn row_html(row: &Row<'_>, now: i64) -> String {
    let a = row.agent;
    let c = cells(row, now);
    let cell = |field: &str| {
        c.iter().find(|c| c.id.ends_with(&format!(":{field}"))).map(Cell::td).unwrap_or_default()
    };
    format!(
        r#"<tr data-row="{key}"><td><input type="checkbox" name="agents" value="{id}" aria-label="select {name}"></td><td class="name"><a href="/agents/{id_url}">{name}</a></td><td>{labels}</td>{status}{controller}<td class="target">{target}</td>{image}{version}{updates}{op}{seen}</tr>"#,
        key = escape(&row.key()),
        id = escape(&a.id),
        id_url = escape(&super::html::urlencode(&a.id)),
        name = escape(&a.name),
        labels = labels(a),
        status = cell("status"),
        controller = cell("controller"),
        target = escape(row.target.map(|t| t.target.as_str()).unwrap_or("")),
        image = cell("image"),
        version = cell("version"),
        updates = cell("updates"),
        op = cell("op"),
        seen = cell("seen"),
    )
}

fn select(name: &str, current: &str, options: &[(&str, &str)]) -> String {
    let options: String = options
        .iter()
        .map(|(value, text)| {
            let selected = if *value == current { " selected" } else { "" };
            format!(r#"<option value="{}"{selected}>{}</option>"#, escape(value), escape(text))
        })
        .collect();
    format!(r#"<select name="{name}" id="filter-{name}">{options}</select>"#)
}

fn filters(q: &FleetQuery) -> String {
    format!(
        r#"<form method="get" action="/" class="filters" id="filters">
<label>Search <input type="search" name="q" id="filter-q" value="{search}" placeholder="name or image"></label>
<label>Label <input type="text" name="label" id="filter-label" value="{label}" placeholder="key=value"></label>
<label>Status {status}</label>
<label>Update {update}</label>
<input type="hidden" name="sort" value="{sort}"><input type="hidden" name="dir" value="{dir}">
<button type="submit" id="apply-filters">Filter</button> <a href="/">Clear</a></form>"#,
        search = escape(&q.q),
        label = escape(&q.label),
        status = select(
            "status",
            &q.status,
            &[("", "any"), ("online", "online"), ("offline", "offline"), ("revoked", "revoked")]
        ),
        update = select(
            "has_update",
            &q.has_update,
            &[
                ("", "any or none"),
                ("any", "has an update"),
                ("patch", "patch"),
                ("minor", "minor"),
                ("major", "major")
            ]
        ),
        sort = escape(&q.sort),
        dir = escape(&q.dir),
    )
}

/// The whole fleet page.
pub fn render(rows: &[Row<'_>], q: &FleetQuery, csrf: &str, now: i64) -> String {
    let headings: String = SORTS
        .iter()
        .map(|(key, heading)| {
            let arrow = match (q.sort == *key || (q.sort.is_empty() && *key == "name"), q.dir == "desc") {
                (true, true) => " ▼",
                (true, false) => " ▲",
                _ => "",
            };
            (*key, format!(r#"<th><a href="{}">{heading}{arrow}</a></th>"#, escape(&q.sort_link(key))))
        })
        .map(|(key, th)| match key {
            // Labels sit after the name and are not sortable.
            "name" => format!("{th}<th>Labels</th>"),
            "version" => format!("{th}<th>New version</th>"),
            _ => th,
        })
        .collect();
    let body_rows: String = rows.iter().map(|r| row_html(r, now)).collect();
    let empty = if rows.is_empty() { r#"<p class="muted" id="no-rows">No agent matches.</p>"# } else { "" };
    let body = format!(
        r#"{filters}
<form method="get" action="/campaigns/new" id="selection">
<p class="live" id="live-note" data-live="1">{count} rows</p>
<table class="fleet" id="fleet"><thead><tr><th></th>{headings}</tr></thead><tbody>{body_rows}</tbody></table>{empty}
<input type="hidden" name="label" value="{label}"><button type="submit" id="create-campaign">Create campaign</button></form>"#,
        filters = filters(q),
        label = escape(&q.label),
        count = rows.len(),
    );
    layout("Fleet", Some(csrf), &body)
}

/// `GET /`.
pub async fn fleet(
    State(state): State<FleetState>,
    Authed(session): Authed,
    q: Result<Query<FleetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(q) = q.map_err(|e| bad(format!("{e}")))?;
    let agents = state.store.agents(&q.filter()?, state.offline_after).await?;
    let rows = rows(&agents, &q);
    let now = now_ms();
    if q.format == "json" {
        let live = Live::new(rows.iter().map(Row::key).collect(), rows.iter().flat_map(|r| cells(r, now)));
        return Ok(Json(live).into_response());
    }
    Ok(Html(render(&rows, &q, &session.csrf, now)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn agent(id: &str, name: &str, images: &[(&str, &str)]) -> AgentSummary {
        AgentSummary {
            id: id.into(),
            name: name.into(),
            labels: BTreeMap::from([("env".to_string(), "<prod>".to_string())]),
            status: Status::Online,
            last_seen: "2026-01-01T00:00:00Z".into(),
            enrolled_at: String::new(),
            controller_version: Some("0.1.0".into()),
            controller_image: None,
            reported_at: None,
            targets: images
                .iter()
                .map(|(image, version)| TargetView {
                    target: format!("t-{version}"),
                    container: String::new(),
                    image: Some(image.to_string()),
                    digest: None,
                    version: Some(version.to_string()),
                    desired: None,
                    action: String::new(),
                    reason: String::new(),
                    last_op_id: None,
                    last_outcome: Some("rolled_back".into()),
                    last_reason: Some("exited <1>".into()),
                    failure: None,
                    updates: Updates {
                        patch: Some("1.0.1".into()),
                        major: Some("2.0.0".into()),
                        minor: None,
                    },
                    updates_unknown: None,
                })
                .collect(),
        }
    }

    fn q(search: &str, sort: &str, dir: &str) -> FleetQuery {
        FleetQuery { q: search.into(), sort: sort.into(), dir: dir.into(), ..FleetQuery::default() }
    }

    #[test]
    fn one_row_per_target_searched_and_sorted_by_version_not_text() {
        let agents = vec![
            agent("a", "web-1", &[("r/app:1.10.0", "1.10.0")]),
            agent("b", "web-2", &[("r/app:1.9.0", "1.9.0"), ("r/db:3.0.0", "3.0.0")]),
            agent("c", "empty", &[]),
        ];
        let keys = |q: &FleetQuery| rows(&agents, q).iter().map(Row::key).collect::<Vec<_>>();
        assert_eq!(keys(&q("", "", "")), ["c/", "a/t-1.10.0", "b/t-1.9.0", "b/t-3.0.0"]);
        assert_eq!(keys(&q("", "version", "")), ["c/", "b/t-1.9.0", "a/t-1.10.0", "b/t-3.0.0"]);
        assert_eq!(keys(&q("", "version", "desc")), ["b/t-3.0.0", "a/t-1.10.0", "b/t-1.9.0", "c/"]);
        assert_eq!(keys(&q("DB", "", "")), ["b/t-3.0.0"]);
        assert_eq!(keys(&q("web-1", "", "")), ["a/t-1.10.0"]);
        assert_eq!(keys(&q("", "nonsense", "")), keys(&q("", "name", "")));
    }

    #[test]
    fn the_page_escapes_agent_values_and_shows_badges_and_reasons() {
        let agents = vec![agent("a", "<img src=x>", &[("r/app:1.0.0", "1.0.0")])];
        let query = q("", "", "");
        let page = render(&rows(&agents, &query), &query, "csrf", 0);
        assert!(!page.contains("<img src=x>"), "{page}");
        assert!(page.contains("&lt;img src=x&gt;"));
        assert!(page.contains("env=&lt;prod&gt;"));
        assert!(page.contains(r#"badge badge-major"#) && page.contains("major 2.0.0"));
        assert!(page.contains("patch 1.0.1"));
        assert!(page.contains("exited &lt;1&gt;"));
        assert!(page.contains(r#"name="agents" value="a""#));
    }

    #[test]
    fn sort_links_keep_the_filters_and_toggle_direction() {
        let query = FleetQuery { label: "env=prod".into(), sort: "name".into(), ..FleetQuery::default() };
        assert_eq!(query.sort_link("name"), "/?label=env%3Dprod&sort=name&dir=desc");
        assert_eq!(query.sort_link("version"), "/?label=env%3Dprod&sort=version");
        assert_eq!(FleetQuery::default().sort_link("name"), "/?sort=name&dir=desc", "name is the default");
        assert!(FleetQuery { status: "asleep".into(), ..FleetQuery::default() }.filter().is_err());
        assert!(FleetQuery { has_update: "minor".into(), ..FleetQuery::default() }.filter().is_ok());
    }
}
