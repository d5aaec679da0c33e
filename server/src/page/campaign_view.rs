//! The campaigns as the admin watches them: `GET /campaigns` (the history,
//! newest first), `GET /campaigns/{id}` (one campaign with its waves and
//! every agent's state and reason, refreshed in place), and
//! `POST /campaigns/{id}/{pause|resume|abort|rollback}` (with the
//! session's CSRF token). Everything shown is the API's own view of the
//! campaign ([`CampaignView`]); the commands go through the same
//! [`runner::apply`] as `POST /v1/fleet/campaigns/{id}/{command}`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;

use super::html::{csrf_field, escape, image, layout, urlencode};
use super::live::{when, Cell, Live};
use super::session::{check_post, Authed};
use super::PageError;
use crate::campaign::api::command_named;
use crate::campaign::engine::{AgentState, Command, RollbackState};
use crate::campaign::runner;
use crate::campaign::spec::{Batch, FailureAction, Order, Selection, Spec};
use crate::campaign::view::{self, AgentView, CampaignSummary, CampaignView, WaveView};
use crate::state::FleetState;
use crate::store::{now_ms, rfc3339};
use crate::FleetError;

/// The campaign pages' query.
#[derive(Debug, Default, Deserialize)]
pub struct ViewQuery {
    /// `json` for the live cells.
    #[serde(default)]
    format: String,
    /// Only agents in this state (`failed`, `rolled_back`, …, or
    /// `failures` for all three kinds); empty for all, failures first.
    #[serde(default)]
    state: String,
}

/// The command forms' fields.
#[derive(Debug, Deserialize)]
pub struct CommandForm {
    csrf: Option<String>,
    /// `yes` once the admin confirmed a destructive command.
    #[serde(default)]
    confirm: String,
}

/// Agent states in the order a campaign moves through them (how counts
/// are listed).
const STATE_ORDER: [&str; 7] =
    ["succeeded", "upgrading", "sent", "pending", "failed", "rolled_back", "timed_out"];

/// An agent's state as the API writes it.
pub fn agent_state(s: AgentState) -> &'static str {
    match s {
        AgentState::Pending => "pending",
        AgentState::Sent => "sent",
        AgentState::Upgrading => "upgrading",
        AgentState::Succeeded => "succeeded",
        AgentState::Failed => "failed",
        AgentState::RolledBack => "rolled_back",
        AgentState::TimedOut => "timed_out",
    }
}

fn rollback_state(s: RollbackState) -> &'static str {
    match s {
        RollbackState::Sent => "sent",
        RollbackState::Done => "done",
        RollbackState::Failed => "failed",
        RollbackState::TimedOut => "timed_out",
    }
}

/// `class` for a state word (`state state-rolled-back`).
fn state_class(word: &str) -> String {
    format!("state state-{}", word.replace('_', "-"))
}

/// "3 succeeded · 1 sent · 2 pending", each in its state's colour.
pub fn counts_html(counts: &BTreeMap<String, usize>) -> String {
    let known = STATE_ORDER.iter().filter_map(|s| counts.get(*s).map(|n| (*s, *n)));
    let other =
        counts.iter().filter(|(s, _)| !STATE_ORDER.contains(&s.as_str())).map(|(s, n)| (s.as_str(), *n));
    known
        .chain(other)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| {
            format!(
                r#"<span class="{}">{n} {}</span>"#,
                escape(&state_class(s)),
                escape(&s.replace('_', " "))
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// "rollback: 3 done · 1 failed", or nothing before a rollback.
fn rollback_counts_html(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let words = [
        ("done", "state-succeeded"),
        ("sent", "state-sent"),
        ("failed", "state-failed"),
        ("timed_out", "state-timed-out"),
    ];
    let parts: Vec<String> = words
        .iter()
        .filter_map(|(w, class)| counts.get(*w).filter(|n| **n > 0).map(|n| (w, class, n)))
        .map(|(w, class, n)| format!(r#"<span class="state {class}">{n} {}</span>"#, w.replace('_', " ")))
        .collect();
    format!("rollback: {}", parts.join(" · "))
}

/// The agents still pinned to the campaign's image, with why; once the
/// campaign stopped upgrading, "none" is said out loud.
fn still_pinned_html(v: &CampaignView) -> String {
    let stopped =
        v.summary.state == "rolling_back" || v.summary.state == "rolled_back" || v.summary.state == "aborted";
    if !stopped {
        return String::new();
    }
    if v.still_pinned.is_empty() {
        return format!(
            r#"<p id="none-pinned">No agent is pinned to <code>{}</code> any more.</p>"#,
            escape(&v.summary.image)
        );
    }
    let rows: String = v
        .still_pinned
        .iter()
        .map(|p| {
            format!(
                r#"<li><a href="/agents/{}">{}</a> ({}): {}</li>"#,
                escape(&urlencode(&p.agent_id)),
                escape(if p.name.is_empty() { &p.agent_id } else { &p.name }),
                escape(&p.target),
                escape(&p.why)
            )
        })
        .collect();
    format!(
        r#"<p class="warning">{n} agent(s) still pinned to <code>{image}</code>:</p><ul id="pinned-agents">{rows}</ul>"#,
        n = v.still_pinned.len(),
        image = escape(&v.summary.image),
    )
}

fn duration(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    if ms == 0 {
        return "0s".into();
    }
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn command_word(c: Command) -> &'static str {
    match c {
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::Abort => "abort",
        Command::AbortAndRevert => "abort-and-revert",
        Command::Rollback => "rollback",
    }
}

fn command_label(c: Command) -> &'static str {
    match c {
        Command::Pause => "Pause",
        Command::Resume => "Resume (accept the failures so far)",
        Command::Abort => "Abort",
        Command::AbortAndRevert => "Abort and revert",
        Command::Rollback => "Roll back",
    }
}

/// The buttons of the commands that apply now, each a POST form with the
/// CSRF token.
fn actions_html(id: &str, commands: &[Command], csrf: &str) -> String {
    if commands.is_empty() {
        return r#"<span class="muted">No command applies to this campaign any more.</span>"#.into();
    }
    commands
        .iter()
        .map(|c| {
            let word = command_word(*c);
            format!(
                r#"<form method="post" action="/campaigns/{id}/{word}" class="command">{csrf}<button type="submit" id="{word}" class="command-{word}">{label}</button></form>"#,
                id = escape(&urlencode(id)),
                csrf = csrf_field(csrf),
                label = command_label(*c),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn wave_key(w: &WaveView) -> String {
    format!("w/{}/{}", w.kind, w.wave)
}

fn wave_cells(w: &WaveView, agents: &[AgentView]) -> Vec<Cell> {
    let key = wave_key(w);
    let id = |field: &str| format!("{key}:{field}");
    let settled = w
        .agents
        .iter()
        .filter_map(|a| agents.iter().find(|v| &v.agent_id == a))
        .filter(|a| match w.kind {
            "rollback" => a.rollback.is_some_and(|r| r != RollbackState::Sent),
            _ => a.state.settled(),
        })
        .count();
    let (progress, class) = match (&w.started_at, &w.done_at) {
        (_, Some(_)) => ("done".to_string(), "wave-state state-succeeded"),
        (Some(_), None) => (format!("{settled} of {} settled", w.agents.len()), "wave-state state-sent"),
        (None, None) => ("waiting".to_string(), "wave-state state-pending"),
    };
    vec![
        Cell::text(id("started"), &when(w.started_at.as_deref().unwrap_or(""), now_ms()), "time"),
        Cell::text(id("done"), &when(w.done_at.as_deref().unwrap_or(""), now_ms()), "time"),
        Cell::text(id("progress"), &progress, class),
    ]
}

fn agent_key(a: &AgentView) -> String {
    format!("a/{}", a.agent_id)
}

fn agent_cells(a: &AgentView) -> Vec<Cell> {
    let key = agent_key(a);
    let id = |field: &str| format!("{key}:{field}");
    let state = agent_state(a.state);
    let rollback = match (a.rollback, &a.rollback_reason) {
        (Some(r), Some(why)) => format!("{} ({why})", rollback_state(r)),
        (Some(r), None) => rollback_state(r).to_string(),
        (None, _) => String::new(),
    };
    vec![
        Cell::text(id("state"), &state.replace('_', " "), &state_class(state)),
        Cell::text(id("reason"), a.reason.as_deref().unwrap_or(""), "reason"),
        Cell::text(id("sent"), &when(a.sent_at.as_deref().unwrap_or(""), now_ms()), "time"),
        Cell::text(id("committed"), &when(a.committed_at.as_deref().unwrap_or(""), now_ms()), "time"),
        Cell::text(id("rollback"), &rollback, "rollback"),
        Cell::text(id("sends"), &a.sends.to_string(), "sends"),
    ]
}

/// Every live cell of campaign `v`.
pub fn cells(v: &CampaignView, csrf: &str) -> Vec<Cell> {
    let s = &v.summary;
    let mut cells = vec![
        Cell::text("c:state".into(), &s.state.replace('_', " "), &state_class(s.state)),
        Cell::text("c:reason".into(), s.reason.as_deref().unwrap_or(""), "reason"),
        Cell { id: "c:counts".into(), html: counts_html(&s.counts), class: "counts".into() },
        Cell::text(
            "c:failures".into(),
            &format!("{} (max failure ratio {})", v.failures_text, v.spec.max_failure_ratio),
            "failures",
        ),
        Cell {
            id: "c:rollbacks".into(),
            html: rollback_counts_html(&s.rollback_counts),
            class: "counts".into(),
        },
        Cell { id: "c:pinned".into(), html: still_pinned_html(v), class: "still-pinned".into() },
        Cell::text("c:updated".into(), &when(&s.updated_at, now_ms()), "time"),
        Cell {
            id: "c:actions".into(),
            html: actions_html(&s.id, &v.commands, csrf),
            class: "actions".into(),
        },
    ];
    cells.extend(v.waves.iter().flat_map(|w| wave_cells(w, &v.agent_states)));
    cells.extend(v.agent_states.iter().flat_map(agent_cells));
    cells
}

/// The rows' keys: waves, then the agents the state filter shows.
fn rows(v: &CampaignView, state_filter: &str) -> Vec<String> {
    let agents = v.agent_states.iter().filter(|a| state_passes(a, state_filter)).map(agent_key);
    v.waves.iter().map(wave_key).chain(agents).collect()
}

/// Which agents, in words.
pub fn selection_text(s: &Selection) -> String {
    match s {
        Selection::Agents(ids) => format!("{} selected agent(s)", ids.len()),
        Selection::Label(l) => format!("agents labelled {l}"),
        Selection::Below(v) => format!("agents running below {v}"),
        Selection::Filter(f) => f.describe(),
    }
}

fn batch_text(b: Batch) -> String {
    match b {
        Batch::Count(n) => format!("{n} agent(s)"),
        Batch::Percent(p) => format!("{p}% of the agents"),
    }
}

fn failure_action_text(a: FailureAction) -> &'static str {
    match a {
        FailureAction::Pause => "pause",
        FailureAction::Rollback => "roll back",
        FailureAction::Continue => "continue",
    }
}

fn order_text(order: &Order) -> String {
    match order {
        Order::Name => "by agent name".into(),
        Order::Shuffle => "shuffled".into(),
        Order::SpreadBy(key) => format!("spread across label {key}"),
    }
}

fn schedule_text(spec: &Spec) -> String {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let start = spec.start_at.map(|t| format!("from {}", rfc3339(t)));
    let window = spec.window.as_ref().map(|w| {
        let days: Vec<&str> = w.days.iter().filter_map(|d| DAYS.get(usize::from(*d)).copied()).collect();
        let days = if days.is_empty() { "every day".to_string() } else { days.join(", ") };
        let hm = |m: i64| format!("{:02}:{:02}", m / 60, m % 60);
        let sign = if w.offset_minutes < 0 { '-' } else { '+' };
        match &w.time_zone {
            Some(zone) => format!("{days} {}-{} {zone}", hm(w.from_minute), hm(w.to_minute)),
            None => format!(
                "{days} {}-{} at UTC{sign}{}",
                hm(w.from_minute),
                hm(w.to_minute),
                hm(w.offset_minutes.abs())
            ),
        }
    });
    match [start, window].into_iter().flatten().collect::<Vec<_>>() {
        v if v.is_empty() => "at once, any time".into(),
        v => v.join("; "),
    }
}

/// The settings of `spec` as rows of a facts table.
pub fn settings_rows(spec: &Spec) -> String {
    let rows = [
        ("Agents", selection_text(&spec.selection)),
        ("Target", spec.target.clone()),
        ("Image", spec.image.clone()),
        ("Canary", format!("{} agent(s)", spec.canary)),
        ("Batch", batch_text(spec.batch)),
        ("Delay between waves", duration(spec.delay_ms)),
        ("Monitor window", duration(spec.monitor_ms)),
        ("Max failure ratio", spec.max_failure_ratio.to_string()),
        ("On failure", failure_action_text(spec.failure_action).to_string()),
        ("Report deadline", duration(spec.deadline_ms)),
        ("Schedule", schedule_text(spec)),
        ("Wave order", order_text(&spec.order)),
        (
            "After the canary",
            if spec.approve_after_canary { "wait for an admin's approval" } else { "go on" }.to_string(),
        ),
    ];
    rows.iter().map(|(k, v)| format!("<tr><th>{k}</th><td>{}</td></tr>", escape(v))).collect()
}

/// Names listed per wave; a bigger wave says how many more (the agents
/// table below has them all).
const NAMES_PER_WAVE: usize = 20;

/// `id`s as agent names, escaped (the id when the agent is gone), at most
/// [`NAMES_PER_WAVE`] of them.
pub fn names(ids: &[String], agents: &[AgentView]) -> String {
    let more = ids.len().saturating_sub(NAMES_PER_WAVE);
    let shown = ids
        .iter()
        .take(NAMES_PER_WAVE)
        .map(|id| {
            let name =
                agents.iter().find(|a| &a.agent_id == id).map(|a| a.name.as_str()).filter(|n| !n.is_empty());
            escape(name.unwrap_or(id))
        })
        .collect::<Vec<_>>()
        .join(", ");
    match more {
        0 => shown,
        n => format!("{shown} and {n} more"),
    }
}

/// The wave's name: the canary, or its number.
pub fn wave_name(kind: &str, wave: u32, canary: bool) -> String {
    match (kind, wave, canary) {
        ("upgrade", 0, true) => "0 (canary)".into(),
        ("rollback", n, _) => format!("rollback {n}"),
        (_, n, _) => n.to_string(),
    }
}

/// Where an agent state sorts on the campaign page: failures first.
fn failures_first(s: AgentState) -> u8 {
    match s {
        AgentState::Failed | AgentState::RolledBack | AgentState::TimedOut => 0,
        AgentState::Sent | AgentState::Upgrading => 1,
        AgentState::Pending => 2,
        AgentState::Succeeded => 3,
    }
}

/// Whether agent `a` passes the page's state filter.
fn state_passes(a: &AgentView, filter: &str) -> bool {
    match filter {
        "" | "all" => true,
        "failures" => a.state.failure(),
        other => agent_state(a.state) == other,
    }
}

/// The state filter's links: All · Failures (n) · one per state present.
fn state_filter_html(v: &CampaignView, current: &str) -> String {
    let id = escape(&urlencode(&v.summary.id));
    let link = |value: &str, text: String| {
        let on = if current == value || (current.is_empty() && value == "all") {
            r#" class="current""#
        } else {
            ""
        };
        format!(r#"<a href="/campaigns/{id}?state={value}"{on}>{}</a>"#, escape(&text))
    };
    let failures = v.agent_states.iter().filter(|a| a.state.failure()).count();
    let mut parts = vec![link("all", format!("All ({})", v.agent_states.len()))];
    if failures > 0 {
        parts.push(link("failures", format!("Failures ({failures})")));
    }
    for s in STATE_ORDER {
        let n = v.agent_states.iter().filter(|a| agent_state(a.state) == s).count();
        if n > 0 {
            parts.push(link(s, format!("{} ({n})", s.replace('_', " "))));
        }
    }
    format!(r#"<p class="state-filter" id="state-filter">Show: {}</p>"#, parts.join(" · "))
}

fn timeline_html(v: &CampaignView) -> String {
    let rows: String = v
        .timeline
        .iter()
        .map(|e| {
            format!(
                r#"<tr><td class="time">{}</td><td>{}</td><td class="reason">{}</td><td>{}</td></tr>"#,
                escape(&when(&e.at, now_ms())),
                escape(&e.what),
                escape(e.detail.as_deref().unwrap_or("")),
                escape(&e.by)
            )
        })
        .collect();
    format!(
        r#"<table class="timeline" id="timeline"><thead><tr><th>When</th><th>What</th><th>Detail</th><th>By</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

fn render(v: &CampaignView, csrf: &str, error: Option<&str>) -> String {
    render_filtered(v, csrf, error, "")
}

fn render_filtered(v: &CampaignView, csrf: &str, error: Option<&str>, state_filter: &str) -> String {
    let s = &v.summary;
    let all = cells(v, csrf);
    let cell = |id: &str| all.iter().find(|c| c.id == id).cloned();
    let td = |id: &str| cell(id).map(|c| c.td()).unwrap_or_default();
    let canary = v.spec.canary > 0;
    let waves: String = v
        .waves
        .iter()
        .map(|w| {
            let key = wave_key(w);
            format!(
                r#"<tr data-row="{k}"><td>{name}</td><td>{n}</td><td>{agents}</td>{started}{done}{progress}</tr>"#,
                k = escape(&key),
                name = escape(&wave_name(w.kind, w.wave, canary)),
                n = w.agents.len(),
                agents = names(&w.agents, &v.agent_states),
                started = td(&format!("{key}:started")),
                done = td(&format!("{key}:done")),
                progress = td(&format!("{key}:progress")),
            )
        })
        .collect();
    let mut shown: Vec<&AgentView> =
        v.agent_states.iter().filter(|a| state_passes(a, state_filter)).collect();
    shown.sort_by_key(|a| failures_first(a.state));
    let agents: String = shown
        .iter()
        .map(|a| {
            let key = agent_key(a);
            let f = |field: &str| td(&format!("{key}:{field}"));
            format!(
                r#"<tr data-row="{k}"><td class="name"><a href="/agents/{id_url}">{name}</a></td><td>{wave}</td>{state}{reason}<td>{previous}</td>{sent}{committed}{rollback}{sends}</tr>"#,
                k = escape(&key),
                id_url = escape(&urlencode(&a.agent_id)),
                name = escape(if a.name.is_empty() { &a.agent_id } else { &a.name }),
                wave = escape(&wave_name("upgrade", a.wave, canary)),
                state = f("state"),
                reason = f("reason"),
                previous = image(a.previous_image.as_deref().unwrap_or("")),
                sent = f("sent"),
                committed = f("committed"),
                rollback = f("rollback"),
                sends = f("sends"),
            )
        })
        .collect();
    let error = error
        .map(|e| format!(r#"<p class="error" id="command-error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let element = |id: &str, tag: &str| cell(id).map(|c| c.element(tag)).unwrap_or_default();
    let body = format!(
        r#"<p><a href="/campaigns">← Campaigns</a></p>{error}
<p class="live" id="live-note" data-live="1" data-reload="1">Campaign {id}</p>
<div class="campaign-head"><p class="big">{state} {counts}</p>{reason}</div>
<div class="actions-row">{actions}</div>
{rollbacks}{pinned}
<h2>Waves</h2>
<table class="waves" id="waves"><thead><tr><th>Wave</th><th>Agents</th><th>Which</th><th>Started</th><th>Done</th><th>Progress</th></tr></thead><tbody>{waves}</tbody></table>
<h2>Agents</h2>
{filter}
<table class="campaign-agents" id="campaign-agents"><thead><tr><th>Agent</th><th>Wave</th><th>State</th><th>Reason</th><th>Previous image</th><th>Sent</th><th>Committed</th><th>Rollback</th><th>Sends</th></tr></thead><tbody>{agents}</tbody></table>
<h2>Timeline</h2>
{timeline}
<h2>Settings</h2>
<table class="facts"><tr><th>Name</th><td id="campaign-name">{name}</td></tr>{settings}
<tr><th>Failures</th>{failures}</tr><tr><th>Created</th><td>{created}</td></tr><tr><th>Updated</th>{updated}</tr></table>"#,
        id = escape(&s.id),
        state = element("c:state", "span"),
        counts = element("c:counts", "span"),
        reason = element("c:reason", "p"),
        actions = element("c:actions", "div"),
        filter = state_filter_html(v, state_filter),
        timeline = timeline_html(v),
        rollbacks = element("c:rollbacks", "p"),
        pinned = element("c:pinned", "div"),
        name = escape(&s.name),
        settings = settings_rows(&v.spec),
        failures = td("c:failures"),
        created = escape(&when(&s.created_at, now_ms())),
        updated = td("c:updated"),
    );
    layout(&format!("Campaign {}", s.name), Some(csrf), &body)
}

/// `GET /campaigns/{id}`.
pub async fn campaign(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path(id): Path<String>,
    Query(q): Query<ViewQuery>,
) -> Result<Response, PageError> {
    let v = state.store.campaign_view(&id).await?;
    let filter = q.state.trim();
    let known = ["", "all", "failures"].contains(&filter) || STATE_ORDER.contains(&filter);
    if !known {
        return Err(FleetError::Invalid(format!(
            "state `{filter}`: expected all, failures, or one of {}",
            STATE_ORDER.join(", ")
        ))
        .into());
    }
    if q.format == "json" {
        // Only the rows on screen: a filtered page of a big campaign
        // refreshes what it shows, not every agent.
        let shown = rows(&v, filter);
        let keep: std::collections::HashSet<&str> = shown.iter().map(String::as_str).collect();
        let cells = cells(&v, &session.csrf).into_iter().filter(|c| {
            c.id.starts_with("c:") || c.id.rsplit_once(':').is_some_and(|(row, _)| keep.contains(row))
        });
        let cells: Vec<Cell> = cells.collect();
        return Ok(Json(Live::new(shown, cells)).into_response());
    }
    Ok(Html(render_filtered(&v, &session.csrf, None, filter)).into_response())
}

/// `POST /campaigns/{id}/{command}`: the command through the same runner
/// as the API, then back to the campaign; a command that does not apply
/// now shows the campaign with the reason (409), nothing changed.
pub async fn command(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path((id, word)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CommandForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(crate::access::Role::Operator)?;
    let cmd = command_named(&word)?;
    if destructive(cmd) && form.confirm != "yes" {
        let v = state.store.campaign_view(&id).await?;
        return Ok(Html(confirm_page(&v, cmd, &session.csrf)).into_response());
    }
    match runner::apply(&state.store, &id, cmd, &session.principal).await {
        Ok(()) => {
            tracing::info!(campaign = %id, command = word, "campaign command from the page");
            Ok(Redirect::to(&format!("/campaigns/{}", urlencode(&id))).into_response())
        }
        Err(FleetError::Conflict(why)) => {
            let v = state.store.campaign_view(&id).await?;
            Ok((StatusCode::CONFLICT, Html(render(&v, &session.csrf, Some(&why)))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// Commands that change agents or end the campaign for good: the page
/// asks first, on a page of its own (no script needed).
fn destructive(cmd: Command) -> bool {
    matches!(cmd, Command::Abort | Command::AbortAndRevert | Command::Rollback)
}

/// "Roll back campaign X? It sends N agents back…": the confirmation step.
fn confirm_page(v: &CampaignView, cmd: Command, csrf: &str) -> String {
    let s = &v.summary;
    let pinned = v.agent_states.iter().filter(|a| a.sent_at.is_some() && a.rollback.is_none()).count();
    let what = match cmd {
        Command::Rollback | Command::AbortAndRevert => format!(
            "This sends {pinned} agent(s) the campaign pinned to <code>{}</code> back to the image each ran before              (the digest it reported), in waves, whatever became of their upgrade.{}",
            escape(&s.image),
            if cmd == Command::AbortAndRevert { " No further agent is upgraded." } else { "" }
        ),
        _ => format!(
            "This stops the campaign for good: no further agent is upgraded. The {pinned} agent(s) it already              pinned stay pinned to <code>{}</code>; “Abort and revert” sends them back instead.",
            escape(&s.image)
        ),
    };
    let word = command_word(cmd);
    let body = format!(
        r#"<h2>{label}: {name}?</h2>
<p id="confirm-what">{what}</p>
<form method="post" action="/campaigns/{id}/{word}" class="command">{csrf}<input type="hidden" name="confirm" value="yes"><button type="submit" id="confirm" class="command-{word}">Yes, {label_lower}</button></form>
<p><a href="/campaigns/{id}" id="cancel">Cancel: back to the campaign</a></p>"#,
        label = command_label(cmd),
        label_lower = command_label(cmd).to_lowercase(),
        name = escape(&s.name),
        id = escape(&urlencode(&s.id)),
        csrf = csrf_field(csrf),
    );
    layout(&format!("{}: {}", command_label(cmd), s.name), Some(csrf), &body)
}

fn list_cells(s: &CampaignSummary) -> Vec<Cell> {
    let id = |field: &str| format!("{}:{field}", s.id);
    vec![
        Cell::text(id("state"), &s.state.replace('_', " "), &state_class(s.state)),
        Cell::text(id("reason"), s.reason.as_deref().unwrap_or(""), "reason"),
        Cell { id: id("counts"), html: counts_html(&s.counts), class: "counts".into() },
        Cell::text(id("updated"), &when(&s.updated_at, now_ms()), "time"),
    ]
}

fn render_list(all: &[CampaignSummary], csrf: &str) -> String {
    let rows: String = all
        .iter()
        .map(|s| {
            let cells = list_cells(s);
            let td = |field: &str| {
                cells.iter().find(|c| c.id.ends_with(&format!(":{field}"))).map(Cell::td).unwrap_or_default()
            };
            format!(
                r#"<tr data-row="{id}"><td class="name"><a href="/campaigns/{id_url}">{name}</a></td>{state}{reason}<td>{target}</td><td><code>{image}</code></td><td>{agents}</td>{counts}<td class="time">{created}</td>{updated}</tr>"#,
                id = escape(&s.id),
                id_url = escape(&urlencode(&s.id)),
                name = escape(&s.name),
                state = td("state"),
                reason = td("reason"),
                target = escape(&s.target),
                image = escape(&s.image),
                agents = s.agents,
                counts = td("counts"),
                created = escape(&when(&s.created_at, now_ms())),
                updated = td("updated"),
            )
        })
        .collect();
    let empty = if all.is_empty() {
        r#"<p class="muted" id="no-campaigns">No campaign yet: tick agents on the fleet page and “Create campaign”, or start here.</p>"#
    } else {
        ""
    };
    let body = format!(
        r#"<p><a href="/campaigns/new" id="new-campaign">New campaign</a></p>
<p class="live" id="live-note" data-live="1" data-reload="1">{n} campaigns, newest first</p>
<table class="campaigns" id="campaigns"><thead><tr><th>Name</th><th>State</th><th>Reason</th><th>Target</th><th>Image</th><th>Agents</th><th>Progress</th><th>Created</th><th>Updated</th></tr></thead><tbody>{rows}</tbody></table>{empty}"#,
        n = all.len(),
    );
    layout("Campaigns", Some(csrf), &body)
}

/// `GET /campaigns`: the history, newest first.
pub async fn list(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Query(q): Query<ViewQuery>,
) -> Result<Response, PageError> {
    let all: Vec<CampaignSummary> = state.store.campaigns().await?.iter().map(view::summary).collect();
    if q.format == "json" {
        let live = Live::new(all.iter().map(|s| s.id.clone()).collect(), all.iter().flat_map(list_cells));
        return Ok(Json(live).into_response());
    }
    Ok(Html(render_list(&all, &session.csrf)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::schedule::Window;

    fn agent(id: &str, name: &str) -> AgentView {
        AgentView {
            agent_id: id.into(),
            name: name.into(),
            target: "web".into(),
            wave: 0,
            state: AgentState::Pending,
            reason: None,
            previous_image: None,
            sent_at: None,
            committed_at: None,
            rollback: None,
            rollback_reason: None,
            sends: 0,
        }
    }

    #[test]
    fn counts_follow_the_campaigns_order_and_skip_zeros() {
        let counts = BTreeMap::from([
            ("pending".to_string(), 2),
            ("succeeded".to_string(), 3),
            ("failed".to_string(), 0),
            ("rolled_back".to_string(), 1),
        ]);
        assert_eq!(
            counts_html(&counts),
            r#"<span class="state state-succeeded">3 succeeded</span> · <span class="state state-pending">2 pending</span> · <span class="state state-rolled-back">1 rolled back</span>"#
        );
    }

    #[test]
    fn wave_names_are_escaped_named_or_ids_and_big_waves_say_how_many_more() {
        let agents = vec![agent("a", "<b>x</b>"), agent("b", "")];
        assert_eq!(names(&["a".into(), "b".into(), "gone".into()], &agents), "&lt;b&gt;x&lt;/b&gt;, b, gone");
        let many: Vec<String> = (0..25).map(|i| format!("id{i}")).collect();
        let listed = names(&many, &[]);
        assert!(listed.ends_with("id19 and 5 more"), "{listed}");
    }

    #[test]
    fn schedules_read_as_days_hours_and_offset() {
        let spec = |start_at, window| Spec {
            name: "c".into(),
            selection: Selection::Label("env=prod".into()),
            target: "web".into(),
            image: "r/app:1".into(),
            canary: 1,
            batch: Batch::Percent(25.0),
            delay_ms: 60_000,
            monitor_ms: 0,
            max_failure_ratio: 0.1,
            failure_action: FailureAction::Pause,
            start_at,
            window,
            deadline_ms: 600_000,
            order: Order::Name,
            approve_after_canary: false,
        };
        assert_eq!(schedule_text(&spec(None, None)), "at once, any time");
        let window = Window {
            days: vec![0, 4],
            from_minute: 22 * 60,
            to_minute: 4 * 60,
            offset_minutes: -150,
            time_zone: None,
        };
        assert_eq!(
            schedule_text(&spec(Some(1_767_312_000_000), Some(window))),
            "from 2026-01-02T00:00:00Z; mon, fri 22:00-04:00 at UTC-02:30"
        );
        let rows = settings_rows(&spec(None, None));
        assert!(rows.contains("<td>25% of the agents</td>") && rows.contains("<td>1m</td>"), "{rows}");
        assert!(rows.contains("<td>agents labelled env=prod</td>") && rows.contains("<td>10m</td>"));
    }
}
