//! `GET /campaigns/new?agents=…` and `POST /campaigns/new`: the campaign
//! form, its preview of the waves, and the start.
//!
//! The form's fields become the API's [`Request`](crate::campaign::spec::Request)
//! ([`super::campaign_request`]) and go through the very
//! functions `POST /v1/fleet/campaigns/preview` and `POST
//! /v1/fleet/campaigns` call ([`runner::plan`], [`runner::create`],
//! [`view::preview`]), so the page validates and plans exactly as the API
//! and the CLI do. A refused form comes back filled in, with the message
//! naming the field and what it accepts, and nothing stored.
//!
//! "Preview waves" shows the waves; "Start campaign" appears with them
//! and carries a fingerprint of the previewed settings: settings changed
//! after the preview are previewed again instead of started.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::campaign_request::{field_of, fingerprint, CampaignForm};
use super::campaign_view::{names, settings_rows, wave_name};
use super::html::{csrf_field, escape, layout, urlencode};
use super::session::{check_post, Authed, Session};
use super::PageError;
use crate::access::Role;
use crate::agents::{AgentSummary, Filter};
use crate::campaign::runner;
use crate::campaign::view::{self, Preview};
use crate::state::FleetState;
use crate::FleetError;
use container_upgrader::resolve::tag::TagVersion;

/// Weekdays as the window takes them.
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Tags offered per repository, newest first.
const MAX_TAGS: usize = 40;

/// What the form offers: the agents, the known targets and labels, and
/// the tags the server knows per repository the fleet runs.
#[derive(Debug, Default)]
pub struct Choices {
    /// Every agent.
    pub agents: Vec<AgentSummary>,
    /// Repository → its version tags, newest first.
    pub tags: BTreeMap<String, Vec<String>>,
    /// Repository → why its registry could not be read, last time.
    pub errors: BTreeMap<String, String>,
    /// With `--verify-key`: which tags the version checker found signed.
    pub signatures: crate::signatures::Verdicts,
}

impl Choices {
    async fn load(state: &FleetState) -> Result<Self, FleetError> {
        let mut agents = state.store.agents(&Filter::default(), state.offline_after).await?;
        agents.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let known = state.store.tags_by_repository().await?;
        let repositories = state.store.repositories().await?;
        let errors =
            repositories.iter().filter_map(|r| Some((r.repository.clone(), r.error.clone()?))).collect();
        let tags = repositories
            .into_iter()
            .map(|r| {
                let mut versions: Vec<TagVersion<'_>> = known
                    .get(&r.repository)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| TagVersion::parse(t))
                    .collect();
                versions.sort_by(|a, b| {
                    (&b.version, b.revision, b.parts).cmp(&(&a.version, a.revision, a.parts))
                });
                let tags = versions.iter().take(MAX_TAGS).map(|t| t.tag.to_string()).collect();
                (r.repository, tags)
            })
            .collect();
        let signatures = state.store.signature_verdicts().await?;
        Ok(Self { agents, tags, errors, signatures })
    }
}

fn checked(on: bool) -> &'static str {
    if on {
        " checked"
    } else {
        ""
    }
}

fn input(name: &str, value: &str, invalid: &str, extra: &str) -> String {
    let class = if invalid == name { r#" class="invalid" aria-invalid="true""# } else { "" };
    format!(r#"<input type="text" name="{name}" id="f-{name}" value="{}"{class} {extra}>"#, escape(value))
}

fn agents_fieldset(f: &CampaignForm, c: &Choices, invalid: &str) -> String {
    let rows: String = c
        .agents
        .iter()
        .map(|a| {
            let versions: Vec<String> = a
                .targets
                .iter()
                .map(|t| format!("{} {}", t.target, t.version.as_deref().unwrap_or("?")))
                .collect();
            format!(
                r#"<label class="pick"><input type="checkbox" name="agents" value="{id}"{on}> {name} <span class="muted">{versions}</span></label>"#,
                id = escape(&a.id),
                on = checked(f.agents.contains(&a.id)),
                name = escape(&a.name),
                versions = escape(&versions.join(", ")),
            )
        })
        .collect();
    let labels: BTreeSet<String> =
        c.agents.iter().flat_map(|a| a.labels.iter().map(|(k, v)| format!("{k}={v}"))).collect();
    let keys: BTreeSet<&str> = c.agents.iter().flat_map(|a| a.labels.keys().map(String::as_str)).collect();
    let keys: String = keys.iter().map(|k| format!(r#"<option value="{}">"#, escape(k))).collect();
    let labels: String = labels.iter().map(|l| format!(r#"<option value="{}">"#, escape(l))).collect();
    let radio = |value: &str, text: &str| {
        format!(
            r#"<label><input type="radio" name="selection" value="{value}" id="sel-{value}"{}> {text}</label>"#,
            checked(f.selection == value)
        )
    };
    let mark = if invalid == "selection" || invalid == "agents" { r#" class="invalid""# } else { "" };
    let open = if f.selection == "agents" { " open" } else { "" };
    let ticked = f.agents.len();
    format!(
        r#"<fieldset{mark}><legend>Which agents</legend>
{by_filter}
<details class="agent-pick-box"{open}><summary>{by_agents} <span class="muted">({ticked} ticked of {all})</span></summary><div class="agent-pick" id="agent-pick">{rows}</div></details>
<p>{by_label} {label}<datalist id="labels">{labels}</datalist><datalist id="label-keys">{keys}</datalist></p>
<p>{by_below} {below} <span class="muted">(agents whose target runs a lower version)</span></p>
<p><label><input type="checkbox" name="exclude_offline" value="yes" id="f-exclude_offline"{exclude}> Leave out agents that are offline now</label></p></fieldset>"#,
        exclude = checked(f.exclude_offline == "yes"),
        by_filter = filter_html(f, c),
        all = c.agents.len(),
        by_agents = radio("agents", "Pick agents one by one"),
        by_label = radio("label", "Agents with the label"),
        label = input("label", &f.label, invalid, r#"list="labels" placeholder="key=value""#),
        by_below = radio("below", "Agents running below version"),
        below = input("below", &f.below, invalid, r#"placeholder="1.2.0""#),
    )
}

fn target_fieldset(f: &CampaignForm, c: &Choices, invalid: &str) -> String {
    let targets: BTreeSet<&str> =
        c.agents.iter().flat_map(|a| a.targets.iter().map(|t| t.target.as_str())).collect();
    let targets: String = targets.iter().map(|t| format!(r#"<option value="{}">"#, escape(t))).collect();
    // The newest version each repository's agents run: a tag below it is
    // a downgrade for those agents.
    let mut running: BTreeMap<String, (TagVersion<'_>, usize)> = BTreeMap::new();
    for t in c.agents.iter().flat_map(|a| a.targets.iter()) {
        let (Some(image), Some(v)) = (&t.image, t.version.as_deref().and_then(TagVersion::parse)) else {
            continue;
        };
        let slot = running.entry(runner::repository(image)).or_insert((v.clone(), 0));
        if (&v.version, v.revision) > (&slot.0.version, slot.0.revision) {
            *slot = (v, 0);
        }
    }
    for t in c.agents.iter().flat_map(|a| a.targets.iter()) {
        let (Some(image), Some(v)) = (&t.image, t.version.as_deref().and_then(TagVersion::parse)) else {
            continue;
        };
        if let Some(slot) = running.get_mut(&runner::repository(image)) {
            if (&v.version, v.revision) == (&slot.0.version, slot.0.revision) {
                slot.1 += 1;
            }
        }
    }
    let mark = |repo: &str, tag: &str| -> String {
        let Some(v) = TagVersion::parse(tag) else { return String::new() };
        let mut marks = Vec::new();
        if !v.version.pre.is_empty() {
            marks.push("pre-release".to_string());
        }
        if let Some((newest, n)) = running.get(repo) {
            if (&v.version, v.revision) < (&newest.version, newest.revision) {
                marks.push(format!("downgrade: {n} agent(s) run {}", newest.tag));
            }
        }
        match c.signatures.of_tag(repo, tag) {
            Some(s) if s.signed => marks.push("signed".to_string()),
            Some(_) => marks.push("unsigned: Start is refused".to_string()),
            None => {}
        }
        if marks.is_empty() {
            String::new()
        } else {
            format!(" · {}", marks.join(" · "))
        }
    };
    let groups: String = c
        .tags
        .iter()
        .filter(|(_, tags)| !tags.is_empty())
        .map(|(repo, tags)| {
            let options: String = tags
                .iter()
                .map(|t| {
                    let on = if *t == f.version { " selected" } else { "" };
                    format!(r#"<option value="{0}"{on}>{0}{1}</option>"#, escape(t), escape(&mark(repo, t)))
                })
                .collect();
            format!(r#"<optgroup label="{}">{options}</optgroup>"#, escape(repo))
        })
        .collect();
    let none = if groups.is_empty() {
        r#"<span class="muted">The server knows no tags yet (it asks the registries every --version-check-interval); give an image.</span>"#
    } else {
        ""
    };
    let mark = |name: &str| if invalid == name { r#" class="invalid" aria-invalid="true""# } else { "" };
    let radio = |value: &str, text: &str| {
        format!(
            r#"<label><input type="radio" name="by" value="{value}" id="by-{value}"{}> {text}</label>"#,
            checked(f.by == value)
        )
    };
    format!(
        r#"<fieldset><legend>Target and version</legend>
<p><label>Target {target}</label><datalist id="targets">{targets}</datalist> <span class="muted">(the manifest's target or a container name; <code>*</code> matches any characters)</span></p>
<p>{by_version} <select name="version" id="f-version"{version_mark}><option value="">— a tag the registry has —</option>{groups}</select> {none}</p>
<p>{by_image} {image}</p>{unreachable}
<p><input type="hidden" name="pin_digest_shown" value="1"><label><input type="checkbox" name="pin_digest" value="yes" id="f-pin_digest"{pin}> Pin by digest: every agent gets the exact image the registry gives at the start (untick to hand agents the tag when the server cannot reach the registry)</label></p></fieldset>"#,
        target = input("target", &f.target, invalid, r#"list="targets" class="pin-image" required"#),
        by_version = radio("version", "Version"),
        version_mark = mark("version"),
        by_image = radio("image", "Image"),
        image = input("image", &f.image, invalid, r#"placeholder="registry/repo:tag" class="pin-image""#),
        pin = checked(f.pin_digest == "yes"),
        unreachable = unreachable_html(c),
    )
}

fn waves_fieldset(f: &CampaignForm, invalid: &str) -> String {
    let orders: String =
        [("name", "by agent name"), ("shuffle", "shuffled"), ("spread", "spread across a label")]
            .iter()
            .map(|(v, t)| {
                let on = if f.order == *v { " selected" } else { "" };
                format!(r#"<option value="{v}"{on}>{t}</option>"#)
            })
            .collect();
    let actions: String = [("pause", "pause"), ("rollback", "roll back"), ("continue", "continue")]
        .iter()
        .map(|(v, t)| {
            let on = if f.failure_action == *v { " selected" } else { "" };
            format!(r#"<option value="{v}"{on}>{t}</option>"#)
        })
        .collect();
    format!(
        r#"<fieldset><legend>Waves</legend><div class="grid">
<label>Canary agents {canary}</label>
<label>Batch size (agents or %) {batch}</label>
<label>Delay between waves {delay}</label>
<label>Monitor window {monitor}</label>
<label>Max failure ratio (0–1) {ratio}</label>
<label>On failure <select name="failure_action" id="f-failure_action">{actions}</select></label>
<label>Report deadline {deadline}</label>
<label>Wave order <select name="order" id="f-order">{orders}</select></label>
<label>Spread across label {spread}</label></div>
<p><label><input type="checkbox" name="approve_after_canary" value="yes" id="f-approve_after_canary"{approve}> Wait for my approval after the canary</label></p></fieldset>"#,
        canary = input("canary", &f.canary, invalid, r#"inputmode="numeric""#),
        batch = input("batch", &f.batch, invalid, r#"placeholder="2 or 25%""#),
        delay = input("delay", &f.delay, invalid, r#"placeholder="1m""#),
        monitor = input("monitor", &f.monitor, invalid, r#"placeholder="5m""#),
        ratio = input("max_failure_ratio", &f.max_failure_ratio, invalid, r#"inputmode="decimal""#),
        deadline = input("deadline", &f.deadline, invalid, r#"placeholder="10m""#),
        orders = orders,
        spread = input("spread_by", &f.spread_by, invalid, r#"placeholder="region" list="label-keys""#),
        approve = checked(f.approve_after_canary == "yes"),
    )
}

fn schedule_fieldset(f: &CampaignForm, invalid: &str) -> String {
    let days: String = DAYS
        .iter()
        .map(|d| {
            format!(
                r#"<label><input type="checkbox" name="window_days" value="{d}"{}> {d}</label> "#,
                checked(f.window_days.iter().any(|x| x == d))
            )
        })
        .collect();
    let mark = if invalid == "window_days" { r#" class="invalid""# } else { "" };
    format!(
        r#"<fieldset><legend>Schedule (optional)</legend><div class="grid">
<label>Start at (RFC 3339) {start}</label>
<label>Window hours {hours}</label>
<label>Time zone (IANA name or offset) {offset}</label></div>
<p{mark}>Window days (none ticked: every day): {days}</p></fieldset>"#,
        start = input("start_at", &f.start_at, invalid, r#"placeholder="2026-02-01T22:00:00Z""#),
        hours = input("window_hours", &f.window_hours, invalid, r#"placeholder="22:00-04:00""#),
        offset = input(
            "time_zone",
            if f.time_zone.is_empty() { &f.utc_offset } else { &f.time_zone },
            invalid,
            r#"placeholder="Europe/Berlin or +02:00""#
        ),
    )
}

/// The fleet filter as a selection: what it says, how many agents it
/// matches now (with the target, when one is given), and the filter's
/// fields carried as hidden inputs. Only shown when the form came from the
/// fleet page's "Create campaign for these N" (or was posted with it).
fn filter_html(f: &CampaignForm, c: &Choices) -> String {
    if f.selection != "filter" {
        return String::new();
    }
    let filter = f.fleet_filter();
    let rows = runner::row_filter(&filter);
    let matching: Vec<&AgentSummary> = c
        .agents
        .iter()
        .filter(|a| a.status != crate::agents::Status::Revoked)
        .filter(|a| {
            let target = f.target.trim();
            let targets: Vec<&crate::agents::TargetView> = a
                .targets
                .iter()
                .filter(|t| {
                    target.is_empty()
                        || t.target == target
                        || t.container == target
                        || (target.contains('*')
                            && container_upgrader::manifest::policy::glob_match(target, &t.target))
                })
                .collect();
            targets.iter().any(|t| rows.passes(a, Some(t)))
        })
        .collect();
    let offline = matching.iter().filter(|a| a.status == crate::agents::Status::Offline).count();
    let hidden: String = filter
        .labels
        .iter()
        .map(|l| format!(r#"<input type="hidden" name="filter_labels" value="{}">"#, escape(l)))
        .chain(
            [
                ("filter_version", &f.filter_version),
                ("filter_repo", &f.filter_repo),
                ("filter_failing", &f.filter_failing),
                ("filter_has_update", &f.filter_has_update),
                ("filter_status", &f.filter_status),
                ("filter_q", &f.filter_q),
            ]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!(r#"<input type="hidden" name="{k}" value="{}">"#, escape(v))),
        )
        .collect();
    const LISTED: usize = 500;
    let items: String = matching
        .iter()
        .take(LISTED)
        .map(|a| {
            let off = if a.status == crate::agents::Status::Offline {
                r#" <span class="state state-timed-out">offline</span>"#
            } else {
                ""
            };
            format!("<li>{}{off}</li>", escape(&a.name))
        })
        .collect();
    let more = match matching.len().saturating_sub(LISTED) {
        0 => String::new(),
        n => format!("<li class=\"muted\">and {n} more</li>"),
    };
    let offline_note = match offline {
        0 => String::new(),
        n => format!(r#" <span class="warning" id="filter-offline">{n} of them offline now</span>"#),
    };
    format!(
        r#"<p><label><input type="radio" name="selection" value="filter" id="sel-filter" checked> The fleet page's filter: {what}</label>{hidden}</p>
<p id="filter-count"><strong>{n}</strong> agent(s) match now.{offline_note}</p>
<details id="filter-agents"><summary>Show them</summary><ul class="filter-agents">{items}{more}</ul></details>"#,
        what = escape(&filter.describe()),
        n = matching.len(),
    )
}

/// The repositories whose registry the server could not read, and why.
fn unreachable_html(c: &Choices) -> String {
    if c.errors.is_empty() {
        return String::new();
    }
    let items: String = c
        .errors
        .iter()
        .map(|(repo, why)| format!("<li><code>{}</code>: {}</li>", escape(repo), escape(why)))
        .collect();
    format!(
        r#"<div class="warning" id="registry-errors">Versions unknown: the server could not reach the registry of <ul>{items}</ul>See <a href="/repositories">Repositories</a>.</div>"#
    )
}

fn preview_html(p: &Preview, pin: &Result<String, FleetError>) -> String {
    let pin = match pin {
        Ok(image) => format!(
            r#"<p>Start pins <code id="preview-pin">{}</code>{}.</p><input type="hidden" name="previewed_image" value="{}">"#,
            escape(image),
            if image.contains('@') { " (the digest the registry gives now)" } else { "" },
            escape(image)
        ),
        // A verifying server (--verify-key) and a digest nobody signed.
        Err(FleetError::Invalid(why)) => {
            format!(r#"<p class="error" id="preview-pin">Start would be refused: {}</p>"#, escape(why))
        }
        Err(why) => format!(
            r#"<p class="error" id="preview-pin">The digest Start would pin is unknown: registry unreachable ({}). Start is refused while the registry cannot be read; untick “Pin by digest” to hand agents the tag.</p>"#,
            escape(&why.to_string())
        ),
    };
    let canary = p.spec.canary > 0;
    let rows: String = p
        .waves
        .iter()
        .map(|w| {
            format!(
                r#"<tr data-wave="{n}"><td>{wave}</td><td>{count}</td><td>{names}</td></tr>"#,
                n = w.wave,
                wave = escape(&wave_name(w.kind, w.wave, canary)),
                count = w.agents.len(),
                names = names(&w.agents, &p.agents),
            )
        })
        .collect();
    let targets: String = p
        .agents
        .iter()
        .map(|a| {
            format!(
                "<tr><td>{}{}</td><td>{}</td><td>{}</td></tr>",
                escape(if a.name.is_empty() { &a.agent_id } else { &a.name }),
                if p.offline.contains(&a.agent_id) {
                    r#" <span class="state state-timed-out">offline</span>"#
                } else {
                    ""
                },
                escape(&a.target),
                super::html::image(a.previous_image.as_deref().unwrap_or(""))
            )
        })
        .collect();
    format!(
        r#"<section class="preview" id="preview-result"><h2>Preview</h2>
<p>Pins <code id="preview-image">{image}</code> on {agents} agent(s) in {waves} wave(s); nothing is sent until you start it.</p>{pin}{offline}
<table class="waves" id="preview-waves"><thead><tr><th>Wave</th><th>Agents</th><th>Which</th></tr></thead><tbody>{rows}</tbody></table>
<details><summary>Settings and agents</summary><table class="facts">{settings}</table>
<table><thead><tr><th>Agent</th><th>Target</th><th>Now runs</th></tr></thead><tbody>{targets}</tbody></table></details></section>"#,
        image = escape(&p.image),
        agents = p.agents.len(),
        waves = p.waves.len(),
        settings = settings_rows(&p.spec),
        offline = match p.offline.len() {
            0 => String::new(),
            n => format!(
                r#"<p class="warning" id="preview-offline">{n} of them are offline now: they take their pin when they are back, possibly long after the campaign. Tick “Leave out agents that are offline now” to leave them out.</p>"#
            ),
        },
    )
}

/// The whole form page; `preview` (with the request's fingerprint) adds
/// the waves and the start button.
pub fn render(
    f: &CampaignForm,
    c: &Choices,
    session: &Session,
    error: Option<&str>,
    preview: Option<(&Preview, &str, &Result<String, FleetError>)>,
) -> String {
    let invalid = error.map(field_of).unwrap_or("");
    let error = error
        .map(|e| format!(r#"<p class="error" id="form-error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let (preview, start) = match preview {
        Some((p, print, pin)) => (
            preview_html(p, pin),
            format!(
                r#"<input type="hidden" name="previewed" value="{}"> <button type="submit" name="action" value="start" id="start-campaign" class="primary">Start campaign</button>"#,
                escape(print)
            ),
        ),
        None => (String::new(), String::new()),
    };
    let body = format!(
        r#"<p><a href="/campaigns">← Campaigns</a></p>{error}
<form method="post" action="/campaigns/new" class="campaign-form" id="campaign-form">{csrf}
<p><label>Name <input type="text" name="name" id="f-name" value="{name}" placeholder="campaign" maxlength="200"></label></p>
{agents}{target}{waves}{schedule}
{preview}<p><button type="submit" name="action" value="preview" id="preview">Preview waves</button>{start}</p>
</form>"#,
        csrf = csrf_field(&session.csrf),
        name = escape(&f.name),
        agents = agents_fieldset(f, c, invalid),
        target = target_fieldset(f, c, invalid),
        waves = waves_fieldset(f, invalid),
        schedule = schedule_fieldset(f, invalid),
    );
    layout("New campaign", Some(session), &body)
}

/// `GET /campaigns/new?agents=ID…&label=K=V`: the form, with the fleet
/// page's selection ticked and, when the selected agents share one
/// target, that target filled in; the fleet's label filter fills in the
/// label selector.
pub async fn form(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    session.require(Role::Operator)?;
    let choices = Choices::load(&state).await?;
    let mut f = CampaignForm::default();
    // "Create campaign for these N": the fleet page's whole filter (its own
    // parameter names) becomes the selection.
    if pairs.iter().any(|(k, v)| k == "selection" && v == "filter") {
        f.selection = "filter".into();
        for (k, v) in &pairs {
            let v = v.trim().to_string();
            match k.as_str() {
                "label" if !v.is_empty() && !f.filter_labels.contains(&v) => f.filter_labels.push(v),
                "version" => f.filter_version = v,
                "repo" => f.filter_repo = v,
                "failing" => f.filter_failing = v,
                "has_update" => f.filter_has_update = v,
                "status" => f.filter_status = v,
                "q" => f.filter_q = v,
                "target" => f.target = v,
                _ => {}
            }
        }
        if f.target.is_empty() {
            // The overview's links filter by repository: when every
            // matching host names its target alike, that is the target.
            let owned = runner::row_filter(&f.fleet_filter());
            let rows = &owned;
            let names: BTreeSet<&str> = choices
                .agents
                .iter()
                .flat_map(|a| a.targets.iter().filter(move |t| rows.passes(a, Some(t))))
                .map(|t| t.target.as_str())
                .collect();
            if let [only] = names.into_iter().collect::<Vec<_>>().as_slice() {
                f.target = (*only).to_string();
            }
        }
        return Ok(Html(render(&f, &choices, &session, None, None)).into_response());
    }
    for (k, v) in pairs {
        match k.as_str() {
            "agents" if !f.agents.contains(&v) => f.agents.push(v),
            // The fleet page's label filter: the campaign's label selector
            // when no row is ticked.
            "label" => f.label = v,
            _ => {}
        }
    }
    if !f.agents.is_empty() {
        f.selection = "agents".into();
        let selected: Vec<&AgentSummary> =
            choices.agents.iter().filter(|a| f.agents.contains(&a.id)).collect();
        let mut targets: BTreeSet<&str> = BTreeSet::new();
        for a in &selected {
            targets.extend(a.targets.iter().map(|t| t.target.as_str()));
        }
        if let [only] = targets.into_iter().collect::<Vec<_>>().as_slice() {
            f.target = (*only).to_string();
        }
    }
    Ok(Html(render(&f, &choices, &session, None, None)).into_response())
}

/// The form again with `error`, with the status the API would answer.
fn refused(f: &CampaignForm, c: &Choices, session: &Session, status: StatusCode, error: &str) -> Response {
    (status, Html(render(f, c, session, Some(error), None))).into_response()
}

/// `POST /campaigns/new`: "Preview waves" plans and shows the waves;
/// "Start campaign" creates the campaign (when the settings are the ones
/// previewed) and opens its page.
pub async fn submit(
    State(state): State<FleetState>,
    Authed(session): Authed,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let f = CampaignForm::from_pairs(pairs);
    check_post(&session, &headers, f.csrf.as_deref())?;
    // Previewing changes nothing, but the whole form is an operator's:
    // a viewer never reaches a start button.
    session.require(Role::Operator)?;
    let choices = Choices::load(&state).await?;
    let request = match f.request() {
        Ok(r) => r,
        Err(e) => return Ok(refused(&f, &choices, &session, StatusCode::UNPROCESSABLE_ENTITY, &e)),
    };
    let print = fingerprint(&request);
    if f.action == "start" && f.previewed == print {
        // Start pins exactly what the preview showed, even if the tag
        // moved since.
        let mut request = request;
        if request.pin_digest != Some(false) && f.previewed_image.contains("@sha256:") {
            request.image = Some(f.previewed_image.trim().to_string());
            request.version = None;
        }
        return match runner::create(&state.store, &request, state.registry.as_ref(), &session.principal).await
        {
            Ok(id) => {
                tracing::info!(campaign = %id, "campaign created from the page");
                Ok(Redirect::to(&format!("/campaigns/{}", urlencode(&id))).into_response())
            }
            Err(e) => api_refusal(&f, &choices, &session, e),
        };
    }
    match runner::plan(&state.store, &request).await {
        Ok(planned) => {
            let mut p = view::preview(&planned, &state.store.agent_names().await?);
            p.offline = state.store.offline_members(&planned).await?;
            let pin = runner::pinned_image(&planned, &request, state.registry.as_ref()).await;
            let note = (f.action == "start")
                .then_some("The settings changed since the preview: check these waves, then start.");
            Ok(Html(render(&f, &choices, &session, note, Some((&p, &print, &pin)))).into_response())
        }
        Err(e) => api_refusal(&f, &choices, &session, e),
    }
}

/// An API refusal (422, 409, …) as the form with its message; a database
/// failure as the error page.
fn api_refusal(
    f: &CampaignForm,
    c: &Choices,
    session: &Session,
    e: FleetError,
) -> Result<Response, PageError> {
    match e {
        FleetError::Invalid(m) => Ok(refused(f, c, session, StatusCode::UNPROCESSABLE_ENTITY, &m)),
        FleetError::Conflict(m) => Ok(refused(f, c, session, StatusCode::CONFLICT, &m)),
        // The registry cannot be read: the form stays, with the switch
        // that hands agents the tag instead.
        FleetError::Upstream(m) => Ok(refused(f, c, session, StatusCode::BAD_GATEWAY, &m)),
        FleetError::BadRequest(m) | FleetError::NotFound(m) => {
            Ok(refused(f, c, session, StatusCode::BAD_REQUEST, &m))
        }
        other => Err(other.into()),
    }
}
