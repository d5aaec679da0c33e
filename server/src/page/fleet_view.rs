//! `GET /`: the fleet at a glance, then one page of its rows. The overview
//! ([`super::overview`]) counts versions, stragglers, failures and
//! offline hosts per repository, each count a link to the list filtered to
//! those rows; the list is one row per agent and target, filtered, sorted
//! with a tie-break (agent id, then target) so pages never overlap or skip,
//! and paged on the server ([`super::fleet_query`] has the parameters).
//! Everything is a query parameter, so it works without JavaScript; the
//! script refreshes only the rows on screen, as data (`&format=json`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use super::fleet_query::{status_text, thousands, FleetQuery, Pages, QueryError, SIZES, SORTS};
use super::html::{escape, layout, urlencode};
use super::live::{when, Cell, Live};
use super::overview::{self, version_cmp};
use super::session::{Authed, Session};
use super::PageError;
use crate::access::Role;
use crate::agents::{AgentSummary, TargetView};
use crate::reports::repository_of;
use crate::signatures::Signed;
use crate::state::FleetState;
use crate::store::now_ms;
use crate::versions::Updates;

/// The most distinct values a filter's list offers (labels, targets,
/// repositories, versions): a datalist of thousands helps nobody.
const MAX_OFFERED: usize = 300;

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
        format!("{}/{}", self.agent.id, self.target_name())
    }

    fn target_name(&self) -> &str {
        self.target.map(|t| t.target.as_str()).unwrap_or("")
    }

    /// Whether the row passes every filter of `q`; `search` is `q.q`
    /// lowercased (once, not per row).
    fn sort_value(&self, key: &str) -> String {
        let t = self.target;
        let opt = |v: Option<&String>| v.cloned().unwrap_or_default();
        match key {
            "status" => status_text(self.agent.status).to_string(),
            "controller" => opt(self.agent.controller_version.as_ref()),
            "target" => self.target_name().to_string(),
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

/// Every row of `agents` that passes `q`'s filters, in `q`'s order: the
/// column (reversed for `desc`), then agent id, then target, so the order
/// is total and a page boundary never moves a row between pages.
pub fn rows<'a>(agents: &'a [AgentSummary], q: &FleetQuery) -> Vec<Row<'a>> {
    let filter = q.row_filter();
    let mut keyed: Vec<(String, Row<'a>)> = agents
        .iter()
        .flat_map(|agent| {
            let targets: Vec<Option<&TargetView>> =
                if agent.targets.is_empty() { vec![None] } else { agent.targets.iter().map(Some).collect() };
            targets.into_iter().map(move |target| Row { agent, target })
        })
        .filter(|r| filter.passes(r.agent, r.target))
        .map(|r| (r.sort_value(q.sort), r))
        .collect();
    keyed.sort_by(|(va, a), (vb, b)| {
        let primary = compare(q.sort, va, vb);
        let primary = if q.desc { primary.reverse() } else { primary };
        primary.then_with(|| a.agent.id.cmp(&b.agent.id)).then_with(|| a.target_name().cmp(b.target_name()))
    });
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// The badges, or why newer versions are unknown ("unknown: registry
/// unreachable"), which must not read like "up to date".
fn updates_html(t: &TargetView) -> String {
    match &t.updates_unknown {
        Some(why) if !t.updates.any() => {
            let short = if why.starts_with("not allowed") {
                "unknown: registry not allowed"
            } else {
                "unknown: registry unreachable"
            };
            format!(r#"<span class="badge badge-unknown" title="{}">{short}</span>"#, escape(why))
        }
        _ => badges(&t.updates, &t.signatures),
    }
}

/// The "new version available" badges, most significant first, each with
/// its signed/unsigned mark where the server verifies (`--verify-key`).
pub fn badges(u: &Updates, signatures: &BTreeMap<String, Signed>) -> String {
    [("major", &u.major), ("minor", &u.minor), ("patch", &u.patch)]
        .iter()
        .filter_map(|(kind, v)| {
            v.as_ref().map(|v| {
                format!(
                    r#"<span class="badge badge-{kind}" title="{kind} update available">{kind} {}</span>{}"#,
                    escape(v),
                    signature_mark(signatures.get(v))
                )
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// ` signed` or ` unsigned` (its reason as the title), or nothing when
/// not judged.
pub fn signature_mark(s: Option<&Signed>) -> String {
    match s {
        None => String::new(),
        Some(Signed { signed: true, .. }) => {
            r#" <span class="sig sig-signed" title="signed by a key of the server's --verify-key">signed</span>"#
                .to_string()
        }
        Some(Signed { reason, .. }) => format!(
            r#" <span class="sig sig-unsigned" title="{}">unsigned</span>"#,
            escape(reason.as_deref().unwrap_or("no valid signature"))
        ),
    }
}

/// The version a target runs, with its signature mark (judged by the
/// digest it runs).
pub fn version_html(t: &TargetView) -> String {
    let version = escape(t.version.as_deref().unwrap_or(""));
    if t.signatures.is_empty() {
        return version;
    }
    let tag = t.image.as_deref().and_then(|i| container_upgrader::reference::ImageRef::parse(i).ok());
    let mark = tag.as_ref().and_then(|r| r.tag()).map(|tag| signature_mark(t.signatures.get(tag)));
    format!("{version}{}", mark.unwrap_or_default())
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
        Cell {
            id: id("image"),
            html: super::html::image(t.and_then(|t| t.image.as_deref()).unwrap_or("")),
            class: "image".into(),
        },
        match t {
            Some(t) if !t.signatures.is_empty() => {
                Cell { id: id("version"), html: version_html(t), class: "version".into() }
            }
            _ => Cell::text(id("version"), &text(t.and_then(|t| t.version.as_ref())), "version"),
        },
        Cell { id: id("updates"), html: t.map(updates_html).unwrap_or_default(), class: "updates".into() },
        Cell { id: id("op"), html: op_html, class: op_class },
        Cell::text(id("seen"), &when(&a.last_seen, now), "seen"),
    ]
}

/// `git abc1234` for an agent that follows a Git repository (`run
/// --git`), the repository, commit and author as its title; nothing else.
pub fn git_badge(a: &AgentSummary) -> String {
    let Some(g) = &a.git else { return String::new() };
    let short: String = g.commit.as_deref().unwrap_or("?").chars().take(7).collect();
    let mut title = format!("desired state from Git: {} {}", g.url, g.path);
    if let Some(r) = &g.reference {
        title.push_str(&format!(" ({r})"));
    }
    if let Some(c) = &g.commit {
        title.push_str(&format!("; commit {c}"));
    }
    if let Some(who) = &g.author {
        title.push_str(&format!(" by {who}"));
    }
    if let Some(e) = &g.error {
        title.push_str(&format!("; {e}"));
    }
    let class = if g.error.is_some() { "badge badge-git badge-git-error" } else { "badge badge-git" };
    format!(r#" <span class="{class}" title="{}">git {}</span>"#, escape(&title), escape(&short))
}

fn labels(a: &AgentSummary) -> String {
    a.labels
        .iter()
        .map(|(k, v)| format!(r#"<span class="label">{}={}</span>"#, escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn row_html(row: &Row<'_>, now: i64, shared_names: &std::collections::HashSet<&str>, pick: bool) -> String {
    let a = row.agent;
    // Enrolment keeps names as given: two hosts may share one. Say so, so
    // nobody pins or campaigns the wrong one by its name.
    let dup = if shared_names.contains(a.name.as_str()) {
        r#" <span class="badge badge-dup" title="another agent has this name too; tell them apart by their id">same name</span>"#
    } else {
        ""
    };
    let c = cells(row, now);
    let cell = |field: &str| {
        c.iter().find(|c| c.id.ends_with(&format!(":{field}"))).map(Cell::td).unwrap_or_default()
    };
    let pick = if pick {
        format!(
            r#"<input type="checkbox" name="agents" value="{}" aria-label="select {}">"#,
            escape(&a.id),
            escape(&a.name)
        )
    } else {
        String::new()
    };
    format!(
        r#"<tr data-row="{key}"><td>{pick}</td><td class="name"><a href="/agents/{id_url}">{name}</a>{dup}{git}</td><td class="labels">{labels}</td>{status}{controller}<td class="target">{target}</td>{image}{version}{updates}{op}{seen}</tr>"#,
        key = escape(&row.key()),
        id_url = escape(&urlencode(&a.id)),
        name = escape(&a.name),
        labels = labels(a),
        git = git_badge(a),
        status = cell("status"),
        controller = cell("controller"),
        target = escape(row.target_name()),
        image = cell("image"),
        version = cell("version"),
        updates = cell("updates"),
        op = cell("op"),
        seen = cell("seen"),
    )
}

/// What the fleet has, offered by the filters: `KEY=VALUE` labels,
/// targets, repositories and versions (each at most [`MAX_OFFERED`]).
#[derive(Debug, Default)]
pub struct Facets {
    labels: BTreeSet<String>,
    targets: BTreeSet<String>,
    repos: BTreeSet<String>,
    versions: Vec<String>,
}

impl Facets {
    /// From every agent.
    pub fn of(agents: &[AgentSummary]) -> Self {
        let mut f = Self::default();
        let mut versions = BTreeSet::new();
        let add = |set: &mut BTreeSet<String>, v: String| {
            if set.len() < MAX_OFFERED {
                set.insert(v);
            }
        };
        for a in agents {
            for (k, v) in &a.labels {
                add(&mut f.labels, format!("{k}={v}"));
            }
            for t in &a.targets {
                add(&mut f.targets, t.target.clone());
                if let Some(r) = t.image.as_deref().and_then(repository_of) {
                    add(&mut f.repos, r);
                }
                if let Some(v) = t.version.as_ref().filter(|v| !v.is_empty()) {
                    add(&mut versions, v.clone());
                }
            }
        }
        f.versions = versions.into_iter().collect();
        f.versions.sort_by(|a, b| version_cmp(a, b));
        f
    }
}

fn select(name: &str, current: &str, options: &[(String, String)]) -> String {
    let mut options: Vec<(String, String)> = options.to_vec();
    // A value from a link that the fleet no longer has stays selectable.
    if !current.is_empty() && !options.iter().any(|(v, _)| v == current) {
        options.push((current.to_string(), current.to_string()));
    }
    let options: String = options
        .iter()
        .map(|(value, text)| {
            let selected = if value == current { " selected" } else { "" };
            format!(r#"<option value="{}"{selected}>{}</option>"#, escape(value), escape(text))
        })
        .collect();
    format!(r#"<select name="{name}" id="filter-{name}">{options}</select>"#)
}

fn pairs(fixed: &[(&str, &str)]) -> Vec<(String, String)> {
    fixed.iter().map(|(v, t)| (v.to_string(), t.to_string())).collect()
}

fn choices(any: &str, values: &BTreeSet<String>) -> Vec<(String, String)> {
    std::iter::once((String::new(), any.to_string()))
        .chain(values.iter().map(|v| (v.clone(), v.clone())))
        .collect()
}

fn datalist(id: &str, values: &[String]) -> String {
    let options: String = values.iter().map(|v| format!(r#"<option value="{}">"#, escape(v))).collect();
    format!(r#"<datalist id="{id}">{options}</datalist>"#)
}

fn filters(q: &FleetQuery, facets: &Facets) -> String {
    // The labels already required: a chip each (× drops it) and a hidden
    // field so the form keeps them; the text field adds one more.
    let chips: String = q
        .labels
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let pair = format!("{k}={v}");
            format!(
                r#"<span class="label filter-chip">{text} <a href="{drop}" title="drop this label" aria-label="drop label {text}">×</a><input type="hidden" name="label" value="{text}"></span> "#,
                text = escape(&pair),
                drop = escape(&q.without_label(i)),
            )
        })
        .collect();
    let status: Vec<(String, String)> =
        pairs(&[("", "any"), ("online", "online"), ("offline", "offline"), ("revoked", "revoked")]);
    let update = pairs(&[
        ("", "any or none"),
        ("any", "has an update"),
        ("patch", "patch"),
        ("minor", "minor"),
        ("major", "major"),
    ]);
    let sizes: Vec<(String, String)> = SIZES.iter().map(|s| (s.to_string(), format!("{s} rows"))).collect();
    let labels: Vec<String> = facets.labels.iter().cloned().collect();
    format!(
        r#"<form method="get" action="/" class="filters" id="filters">
<label>Search <input type="search" name="q" id="filter-q" value="{search}" placeholder="name or image"></label>
<label>Labels (all must match) <span class="chips">{chips}</span><input type="text" name="label" id="filter-label" list="fleet-labels" placeholder="key=value"></label>{label_list}
<label>Repository {repo}</label>
<label>Target {target}</label>
<label>Version <input type="text" name="version" id="filter-version" value="{version}" list="fleet-versions" placeholder="any" size="10"></label>{version_list}
<label>Status {status}</label>
<label>Update {update}</label>
<label class="check"><input type="checkbox" name="failing" value="1" id="filter-failing"{failing}> Last op failed</label>
<label>Page size {size}</label>
<input type="hidden" name="sort" value="{sort}"><input type="hidden" name="dir" value="{dir}">
<button type="submit" id="apply-filters">Filter</button> <a href="/">Clear</a></form>"#,
        search = escape(&q.q),
        label_list = datalist("fleet-labels", &labels),
        repo = select("repo", &q.repo, &choices("any", &facets.repos)),
        target = select("target", &q.target, &choices("any", &facets.targets)),
        version = escape(&q.version),
        version_list = datalist("fleet-versions", &facets.versions),
        status = select("status", q.status.map(status_text).unwrap_or(""), &status),
        update =
            select("has_update", q.has_update.map(super::fleet_query::update_text).unwrap_or(""), &update),
        failing = if q.failing { " checked" } else { "" },
        size = select("size", &q.size.to_string(), &sizes),
        sort = if q.sort == "name" { "" } else { q.sort },
        dir = if q.desc { "desc" } else { "" },
    )
}

/// Previous and next links (keeping every filter), where the page is, and
/// the page sizes.
fn pager(q: &FleetQuery, p: &Pages) -> String {
    let link = |page: usize, text: &str, id: &str, on: bool| {
        if on {
            format!(r#"<a href="{}" id="{id}" rel="{id}">{text}</a>"#, escape(&q.link(page)))
        } else {
            format!(r#"<span class="muted">{text}</span>"#)
        }
    };
    let sizes: String = SIZES
        .iter()
        .map(|s| {
            if *s == q.size {
                format!("<strong>{s}</strong>")
            } else {
                let to = FleetQuery { size: *s, ..q.clone() };
                // The first row shown stays on the page the new size shows.
                let page = p.start / s + 1;
                format!(r#"<a href="{}">{s}</a>"#, escape(&to.link(page)))
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r#"<nav class="pager" aria-label="pages">{first} {prev} <span class="where">page {page} of {count}</span> {next} {last} <span class="sizes">rows per page: {sizes}</span></nav>"#,
        first = link(1, "« first", "first", p.page > 1),
        prev = link(p.page.saturating_sub(1), "‹ previous", "prev", p.page > 1),
        next = link(p.page + 1, "next ›", "next", p.page < p.count),
        last = link(p.count, "last »", "last", p.page < p.count),
        page = thousands(p.page),
        count = thousands(p.count),
    )
}

/// The line that says which rows are on screen (refreshed live).
fn showing(p: &Pages, agents: usize) -> Cell {
    let fleet = format!("{} agents in the fleet", thousands(agents));
    Cell::text("fleet:showing".into(), &format!("{} rows; {fleet}", p.showing()), "showing")
}

/// Everything the page shows, for [`render`].
pub struct View<'a> {
    /// Every agent (for the overview and the filters' lists).
    pub agents: &'a [AgentSummary],
    /// The rows that pass the filters, in order.
    pub rows: &'a [Row<'a>],
    /// The query.
    pub q: &'a FleetQuery,
    /// The session (who sees what, the CSRF token).
    pub session: &'a Session,
    /// Now, in ms since the epoch.
    pub now: i64,
}

/// The whole fleet page.
pub fn render(v: &View<'_>) -> String {
    let q = v.q;
    let p = Pages::new(v.rows.len(), q.page, q.size);
    let shown = &v.rows[p.start..p.end];
    let headings: String = SORTS
        .iter()
        .map(|(key, heading)| {
            let arrow = match (q.sort == *key, q.desc) {
                (true, true) => " ▼",
                (true, false) => " ▲",
                _ => "",
            };
            (
                *key,
                format!(
                    r#"<th class="col-{key}"><a href="{}">{heading}{arrow}</a></th>"#,
                    escape(&q.sort_link(key))
                ),
            )
        })
        .map(|(key, th)| match key {
            // Labels sit after the name and are not sortable.
            "name" => format!(r#"{th}<th class="col-labels">Labels</th>"#),
            "version" => format!(r#"{th}<th class="col-updates">New version</th>"#),
            _ => th,
        })
        .collect();
    let mut seen_names: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for a in v.agents {
        *seen_names.entry(a.name.as_str()).or_default() += 1;
    }
    let shared_names: std::collections::HashSet<&str> =
        seen_names.into_iter().filter(|(_, n)| *n > 1).map(|(name, _)| name).collect();
    // Campaigns are an operator's: a viewer gets neither the tick boxes
    // nor the buttons that lead to the campaign form.
    let operator = v.session.may(Role::Operator);
    let body_rows: String = shown.iter().map(|r| row_html(r, v.now, &shared_names, operator)).collect();
    let empty = if shown.is_empty() { r#"<p class="muted" id="no-rows">No agent matches.</p>"# } else { "" };
    let with_targets: Vec<&AgentSummary> = v.agents.iter().filter(|a| !a.targets.is_empty()).collect();
    let groups = overview::overview(v.agents);
    let overview = overview::render(&groups, v.agents.len() - with_targets.len());
    // The campaign form takes one label to preselect agents by.
    let campaign_label = match q.labels.as_slice() {
        [(k, val)] => {
            format!(r#"<input type="hidden" name="label" value="{}">"#, escape(&format!("{k}={val}")))
        }
        _ => String::new(),
    };
    let pager = pager(q, &p);
    let body = format!(
        r#"{overview}<h2 id="list">Hosts</h2>{filters}
<form method="get" action="/campaigns/new" id="selection">
<p class="live-line">{showing} <span class="live" id="live-note" data-live="1"></span> {for_these}</p>{pager}
<table class="fleet" id="fleet"><thead><tr><th class="col-pick"></th>{headings}</tr></thead><tbody>{body_rows}</tbody></table>{empty}{pager}
{create}</form>"#,
        create = if operator {
            format!(r#"{campaign_label}<button type="submit" id="create-campaign">Create campaign</button>"#)
        } else {
            String::new()
        },
        filters = filters(q, &Facets::of(v.agents)),
        for_these = if operator { campaign_for_these(q, v.rows.len()) } else { String::new() },
        showing = showing(&p, v.agents.len()).element("span"),
    );
    layout("Fleet", Some(v.session), &body)
}

/// "Create campaign for these N": the current filter (not the ticked
/// boxes) becomes the campaign's selection, however many pages it spans.
fn campaign_for_these(q: &FleetQuery, rows: usize) -> String {
    if rows == 0 {
        return String::new();
    }
    let mut pairs: Vec<(&str, String)> = vec![("selection", "filter".to_string())];
    pairs.extend(q.pairs().into_iter().filter(|(k, _)| !matches!(*k, "sort" | "dir" | "size")));
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    format!(
        r#"<a href="/campaigns/new?{}" id="campaign-for-these" class="button">Create campaign for these {rows}</a>"#,
        escape(&super::html::query(&refs))
    )
}

/// The live cells of the rows on the page `q` asks for, and the line
/// saying which they are.
pub fn live(agents: &[AgentSummary], rows: &[Row<'_>], q: &FleetQuery, now: i64) -> Live {
    let p = Pages::new(rows.len(), q.page, q.size);
    let shown = &rows[p.start..p.end];
    let cells = shown.iter().flat_map(|r| cells(r, now)).chain(std::iter::once(showing(&p, agents.len())));
    Live::new(shown.iter().map(Row::key).collect(), cells)
}

/// A refused query, as a page that says what to change.
fn refused(e: &QueryError, session: &Session) -> Response {
    let body = format!(
        r#"<p class="error" id="bad-query">This address cannot be shown: {message}.</p>
<table class="facts"><tr><th>Parameter</th><td><code>{parameter}</code></td></tr><tr><th>Given</th><td><code>{given}</code></td></tr><tr><th>Allowed</th><td>{allowed}</td></tr></table>
<p><a href="/">Back to the whole fleet</a></p>"#,
        message = escape(&e.to_string()),
        parameter = escape(&e.parameter),
        given = escape(&e.given),
        allowed = escape(&e.allowed),
    );
    (StatusCode::BAD_REQUEST, Html(layout("Bad query", Some(session), &body))).into_response()
}

/// `GET /`.
pub async fn fleet(
    State(state): State<FleetState>,
    Authed(session): Authed,
    pairs: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    // A list of pairs takes any well-formed query; what remains is the
    // percent-encoding itself.
    let Ok(Query(pairs)) = pairs else {
        let e = QueryError {
            parameter: "(the query string)".into(),
            given: "undecodable".into(),
            allowed: "key=value pairs joined by &, percent-encoded as UTF-8".into(),
        };
        return Ok(refused(&e, &session));
    };
    let q = match FleetQuery::parse(&pairs) {
        Ok(q) => q,
        Err(e) => return Ok(refused(&e, &session)),
    };
    let agents = state.store.agents(&crate::agents::Filter::default(), state.offline_after).await?;
    let rows = rows(&agents, &q);
    let now = now_ms();
    if q.json {
        return Ok(Json(live(&agents, &rows, &q, now)).into_response());
    }
    let view = View { agents: &agents, rows: &rows, q: &q, session: &session, now };
    Ok(Html(render(&view)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::Status;
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
            git: None,
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
                    signatures: Default::default(),
                })
                .collect(),
        }
    }

    fn q(search: &str, sort: &'static str, desc: bool) -> FleetQuery {
        FleetQuery { q: search.into(), sort, desc, ..FleetQuery::default() }
    }

    fn parse(query: &str) -> FleetQuery {
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        FleetQuery::parse(&pairs).expect("a valid query")
    }

    fn with_labels(mut a: AgentSummary, labels: &[(&str, &str)]) -> AgentSummary {
        a.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        a
    }

    #[test]
    fn one_row_per_target_searched_and_sorted_by_version_not_text() {
        let agents = vec![
            agent("a", "web-1", &[("r/app:1.10.0", "1.10.0")]),
            agent("b", "web-2", &[("r/app:1.9.0", "1.9.0"), ("r/db:3.0.0", "3.0.0")]),
            agent("c", "empty", &[]),
        ];
        let keys = |q: &FleetQuery| rows(&agents, q).iter().map(Row::key).collect::<Vec<_>>();
        assert_eq!(keys(&q("", "name", false)), ["c/", "a/t-1.10.0", "b/t-1.9.0", "b/t-3.0.0"]);
        assert_eq!(keys(&q("", "version", false)), ["c/", "b/t-1.9.0", "a/t-1.10.0", "b/t-3.0.0"]);
        assert_eq!(keys(&q("", "version", true)), ["b/t-3.0.0", "a/t-1.10.0", "b/t-1.9.0", "c/"]);
        assert_eq!(keys(&q("DB", "name", false)), ["b/t-3.0.0"]);
        assert_eq!(keys(&q("web-1", "name", false)), ["a/t-1.10.0"]);
    }

    #[test]
    fn equal_sort_values_are_ordered_by_agent_id_then_target_in_both_directions() {
        // Three agents with the same name and version: only the tie-break
        // decides, and it does not flip with the direction, so pages of
        // either order never overlap.
        let agents = vec![
            agent("c", "same", &[("r/app:1.0.0", "1.0.0")]),
            agent("a", "same", &[("r/app:1.0.0", "1.0.0"), ("r/db:1.0.0", "1.0.0")]),
            agent("b", "same", &[("r/app:1.0.0", "1.0.0")]),
        ];
        let keys = |q: &FleetQuery| rows(&agents, q).iter().map(Row::key).collect::<Vec<_>>();
        let want = ["a/t-1.0.0", "a/t-1.0.0", "b/t-1.0.0", "c/t-1.0.0"];
        assert_eq!(keys(&q("", "name", false)), want);
        assert_eq!(keys(&q("", "version", true)), want);
    }

    #[test]
    fn every_label_must_match_and_version_target_and_repo_filter_the_row() {
        let agents = vec![
            with_labels(agent("a", "a", &[("r/app:1.0.0", "1.0.0")]), &[("env", "prod"), ("region", "eu")]),
            with_labels(agent("b", "b", &[("r/app:1.2.0", "1.2.0")]), &[("env", "prod"), ("region", "us")]),
            with_labels(agent("c", "c", &[("r/db:1.0.0", "1.0.0")]), &[("env", "staging"), ("region", "eu")]),
        ];
        let keys = |query: &str| rows(&agents, &parse(query)).iter().map(Row::key).collect::<Vec<_>>();
        assert_eq!(keys("label=env=prod"), ["a/t-1.0.0", "b/t-1.2.0"]);
        assert_eq!(keys("label=env=prod&label=region=eu"), ["a/t-1.0.0"]);
        assert!(keys("label=env=staging&label=region=us").is_empty());
        assert!(keys("label=env=pro").is_empty(), "a value matches whole");
        assert_eq!(keys("version=1.0.0"), ["a/t-1.0.0", "c/t-1.0.0"]);
        let repo = repository_of("r/app:1.0.0").expect("a repository");
        assert_eq!(keys(&format!("version=1.0.0&repo={repo}")), ["a/t-1.0.0"]);
        assert_eq!(keys("target=t-1.2.0"), ["b/t-1.2.0"]);
        assert_eq!(keys("failing=1").len(), 3, "every test target rolled back");
        assert_eq!(keys("has_update=major").len(), 3);
        assert!(keys("has_update=minor").is_empty());
        assert!(keys("status=offline").is_empty());
    }

    #[test]
    fn the_page_shows_one_page_of_rows_says_which_and_links_keep_the_filters() {
        let agents: Vec<AgentSummary> = (0..250)
            .map(|i| {
                with_labels(
                    agent(&format!("a{i:03}"), &format!("host-{i:03}"), &[("r/app:1.0.0", "1.0.0")]),
                    &[("env", "prod")],
                )
            })
            .collect();
        let query = parse("label=env=prod&page=2");
        let all = rows(&agents, &query);
        let page = render(&View {
            agents: &agents,
            rows: &all,
            q: &query,
            session: &Session::for_test(Role::Operator),
            now: 0,
        });
        assert_eq!(page.matches("<tr data-row=").count(), 100);
        assert!(page.contains("host-100") && page.contains("host-199"));
        assert!(!page.contains(">host-099<") && !page.contains(">host-200<"));
        assert!(page.contains("showing 101–200 of 250 rows"), "{page}");
        assert!(page.contains(r#"href="/?label=env%3Dprod&amp;page=3" id="next""#), "{page}");
        assert!(page.contains(r#"href="/?label=env%3Dprod" id="prev""#));
        assert!(page.contains(r#"<option value="env=prod">"#), "the fleet's labels are offered");
        let json = serde_json::to_value(live(&agents, &all, &query, 0)).expect("JSON");
        assert_eq!(json["rows"].as_array().map(Vec::len), Some(100), "only the rows on screen");
        assert_eq!(json["rows"][0], "a100/t-1.0.0");
        assert_eq!(
            json["cells"]["fleet:showing"]["html"],
            "showing 101–200 of 250 rows; 250 agents in the fleet"
        );
    }

    #[test]
    fn the_page_escapes_agent_values_and_shows_badges_and_reasons() {
        let agents = vec![agent("a", "<img src=x>", &[("r/app:1.0.0", "1.0.0")])];
        let query = FleetQuery::default();
        let all = rows(&agents, &query);
        let page = render(&View {
            agents: &agents,
            rows: &all,
            q: &query,
            session: &Session::for_test(Role::Operator),
            now: 0,
        });
        assert!(!page.contains("<img src=x>"), "{page}");
        assert!(page.contains("&lt;img src=x&gt;"));
        assert!(page.contains("env=&lt;prod&gt;"));
        assert!(page.contains(r#"badge badge-major"#) && page.contains("major 2.0.0"));
        assert!(page.contains("patch 1.0.1"));
        assert!(page.contains("exited &lt;1&gt;"));
        assert!(page.contains(r#"name="agents" value="a""#));
        assert!(page.contains("2026-01-01 00:00 UTC ("), "one time convention: {page}");
        assert!(page.contains(r#"id="overview""#));
    }

    #[test]
    fn two_agents_with_one_name_are_marked_and_the_filter_becomes_a_campaign_link() {
        let agents = vec![
            agent("a", "web-1", &[("r/app:1.0.0", "1.0.0")]),
            agent("b", "web-1", &[("r/app:1.0.0", "1.0.0")]),
            agent("c", "web-2", &[("r/app:1.0.0", "1.0.0")]),
        ];
        let query = FleetQuery::default();
        let all = rows(&agents, &query);
        let page = render(&View {
            agents: &agents,
            rows: &all,
            q: &query,
            session: &Session::for_test(Role::Operator),
            now: 0,
        });
        assert_eq!(page.matches("badge-dup").count(), 2, "both web-1 rows, not web-2: {page}");
        assert!(page.contains(r#"id="campaign-for-these""#) && page.contains("Create campaign for these 3"));
        assert!(page.contains(r#"href="/campaigns/new?selection=filter""#), "{page}");
    }
}
