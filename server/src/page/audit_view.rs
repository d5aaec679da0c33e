//! `GET /audit`: the audit log, newest first, for every logged-in role —
//! when, who, through what, from where, what was done to what, and the
//! outcome; failed logins stand out. The filters are the API's
//! (`/v1/fleet/audit`): an exact actor, an action prefix, an object
//! substring, the outcome and how far back; "Older →" follows the
//! store's keyset cursor, so paging stays right while rows are added.
//! The address holds the whole state, so a filtered view bookmarks.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::html::{escape, layout, query};
use super::session::{Authed, Session};
use super::PageError;
use crate::access::audit::{AuditEntry, AuditFilter, AuditPage, FAILED};
use crate::access::Role;
use crate::state::FleetState;
use crate::store::{now_ms, rfc3339};
use crate::FleetError;

/// How far back the `since` select reaches: its choices and their length.
const SINCE: [(&str, &str, i64); 4] = [
    ("1h", "last hour", HOUR_MS),
    ("24h", "last 24 hours", 24 * HOUR_MS),
    ("7d", "last 7 days", 7 * 24 * HOUR_MS),
    ("30d", "last 30 days", 30 * 24 * HOUR_MS),
];
const HOUR_MS: i64 = 60 * 60 * 1000;

/// The page's query: every field optional, empty meaning "any".
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    before: String,
    /// Rows per page (the store's default when empty).
    #[serde(default)]
    limit: String,
}

impl AuditQuery {
    /// The store's filter: empty fields left out, a `since` choice turned
    /// into the time it names (anything else, an RFC 3339 time or a
    /// duration, is the store's to read).
    fn filter(&self, now: i64) -> Result<AuditFilter, FleetError> {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let since = match SINCE.iter().find(|(word, _, _)| *word == self.since.trim()) {
            Some((_, _, ms)) => Some(rfc3339(now.saturating_sub(*ms))),
            None => some(&self.since),
        };
        let limit = match some(&self.limit) {
            None => None,
            Some(n) => Some(
                n.parse::<i64>()
                    .map_err(|_| FleetError::Invalid(format!("limit: `{n}` is not a number of rows")))?,
            ),
        };
        Ok(AuditFilter {
            actor: some(&self.actor),
            action: some(&self.action),
            object: some(&self.object),
            outcome: some(&self.outcome),
            since,
            before: some(&self.before),
            limit,
            ..AuditFilter::default()
        })
    }

    /// The filters and page size as `key=value&…` (no cursor).
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("actor", self.actor.trim()),
            ("action", self.action.trim()),
            ("object", self.object.trim()),
            ("outcome", self.outcome.trim()),
            ("since", self.since.trim()),
            ("limit", self.limit.trim()),
        ]
    }
}

fn option(value: &str, label: &str, current: &str) -> String {
    let selected = if value == current { " selected" } else { "" };
    format!(r#"<option value="{}"{selected}>{}</option>"#, escape(value), escape(label))
}

fn filters(q: &AuditQuery) -> String {
    let since = q.since.trim();
    let mut since_options = option("", "all kept", since);
    since_options.extend(SINCE.iter().map(|(word, label, _)| option(word, label, since)));
    if !since.is_empty() && !SINCE.iter().any(|(word, _, _)| *word == since) {
        // A time typed into the address: kept, and shown as chosen.
        since_options.push_str(&option(since, &format!("since {since}"), since));
    }
    let outcome = q.outcome.trim();
    let outcomes: String =
        [("", "any"), ("ok", "ok"), (FAILED, "failed")].iter().map(|(v, l)| option(v, l, outcome)).collect();
    format!(
        r#"<form method="get" action="/audit" class="filters" id="audit-filters">
<label>Who <input type="text" name="actor" value="{actor}" placeholder="alice (exact)"></label>
<label>Action <input type="text" name="action" value="{action}" placeholder="campaign, user., login" list="audit-actions"></label>
<datalist id="audit-actions"><option value="login"><option value="pin"><option value="campaign"><option value="user."><option value="api-token."><option value="sessions."></datalist>
<label>Object contains <input type="text" name="object" value="{object}" placeholder="agent ID, user NAME"></label>
<label>Outcome <select name="outcome" id="audit-outcome">{outcomes}</select></label>
<label>When <select name="since" id="audit-since">{since_options}</select></label>
<button type="submit" id="apply-audit-filters">Filter</button> <a href="/audit">Clear</a></form>"#,
        actor = escape(q.actor.trim()),
        action = escape(q.action.trim()),
        object = escape(q.object.trim()),
    )
}

fn row(e: &AuditEntry) -> String {
    let failed = e.outcome == FAILED;
    let login = e.action == "login";
    let (class, outcome) = match (failed, login) {
        (true, true) => (
            r#" class="audit-failed""#,
            r#"<span class="badge badge-failed">failed login</span>"#.to_string(),
        ),
        (true, false) => {
            (r#" class="audit-failed""#, r#"<span class="badge badge-failed">failed</span>"#.to_string())
        }
        (false, _) => ("", escape(&e.outcome)),
    };
    format!(
        r#"<tr{class} data-audit="{id}"><td class="time">{at}</td><td class="name">{actor}</td><td>{via}</td><td><code>{source}</code></td><td><code>{action}</code></td><td class="object">{object}</td><td class="reason">{summary}</td><td>{outcome}</td></tr>"#,
        id = escape(&e.id),
        at = escape(&e.at),
        actor = escape(&e.actor),
        via = escape(&e.via),
        source = escape(&e.source),
        action = escape(&e.action),
        object = escape(&e.object),
        summary = escape(&e.summary),
    )
}

/// The page: filters, one page of rows, and the link to the older ones.
pub fn render(q: &AuditQuery, page: &AuditPage, error: Option<&str>, session: &Session) -> String {
    let rows: String = page.entries.iter().map(row).collect();
    let error = error
        .map(|e| format!(r#"<p class="error" id="audit-error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let filters_query = query(&q.pairs());
    let newest = if q.before.trim().is_empty() {
        String::new()
    } else {
        format!(r#"<a href="/audit?{}" id="audit-newest" rel="first">← Newest</a>"#, escape(&filters_query))
    };
    let older = match &page.next {
        Some(next) => {
            let mut pairs = q.pairs();
            pairs.push(("before", next));
            format!(r#"<a href="/audit?{}" id="audit-older" rel="next">Older →</a>"#, escape(&query(&pairs)))
        }
        None => String::new(),
    };
    let empty = if page.entries.is_empty() && error.is_empty() {
        r#"<p class="muted" id="no-audit">No audit row matches.</p>"#
    } else {
        ""
    };
    let body = format!(
        r#"{filters}{error}
<table class="audit" id="audit"><thead><tr><th>When (UTC)</th><th>Who</th><th>Via</th><th>From</th><th>Action</th><th>Object</th><th>Summary</th><th>Outcome</th></tr></thead><tbody>{rows}</tbody></table>{empty}
<p class="pager">{newest} {older}</p>"#,
        filters = filters(q),
    );
    layout("Audit", Some(session), &body)
}

/// `GET /audit?actor=&action=&object=&outcome=&since=&before=&limit=`
/// (viewer and up).
pub async fn audit(
    State(state): State<FleetState>,
    Authed(session): Authed,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    session.require(Role::Viewer)?;
    let Query(q) = q.map_err(|e| {
        FleetError::BadRequest(format!("{e}; allowed: actor, action, object, outcome, since, before, limit"))
    })?;
    let found = match q.filter(now_ms()) {
        Ok(filter) => state.store.audit_log(&filter).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(page) => Ok(Html(render(&q, &page, None, &session)).into_response()),
        // A filter the store cannot read (a malformed time or cursor):
        // the form again, saying which.
        Err(FleetError::Invalid(why)) => {
            let empty = AuditPage { entries: Vec::new(), next: None };
            let page = render(&q, &empty, Some(&why), &session);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, outcome: &str, actor: &str) -> AuditEntry {
        AuditEntry {
            id: "1765000000000.ab12".into(),
            at: "2026-12-06T03:00:00Z".into(),
            actor: actor.into(),
            via: "page".into(),
            source: "10.0.0.1".into(),
            action: action.into(),
            object: "page".into(),
            summary: "a login that did not match".into(),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn failed_logins_stand_out_everything_is_escaped_and_older_keeps_the_filters() {
        let q = AuditQuery { action: "login".into(), outcome: FAILED.into(), ..AuditQuery::default() };
        let page = AuditPage {
            entries: vec![entry("login", FAILED, "<script>x</script>"), entry("pin", "ok", "alice")],
            next: Some("1765000000000.ab12".into()),
        };
        let html = render(&q, &page, None, &Session::for_test(Role::Viewer));
        assert!(html.contains(r#"<tr class="audit-failed""#) && html.contains("failed login"), "{html}");
        assert!(!html.contains("<script>x") && html.contains("&lt;script&gt;x"));
        assert!(
            html.contains(r#"href="/audit?action=login&amp;outcome=failed&amp;before=1765000000000.ab12""#),
            "{html}"
        );
        assert!(!html.contains("audit-newest"), "the first page has no way back");
    }

    #[test]
    fn empty_fields_filter_nothing_and_the_since_choices_become_times() {
        let now = 10 * 24 * HOUR_MS;
        let f = AuditQuery { actor: " ".into(), since: "24h".into(), ..AuditQuery::default() }
            .filter(now)
            .expect("a valid filter");
        assert_eq!(f.actor, None);
        assert_eq!(f.since, Some(rfc3339(9 * 24 * HOUR_MS)));
        let typed = AuditQuery { since: "2026-12-01T00:00:00Z".into(), ..AuditQuery::default() };
        assert_eq!(typed.filter(now).expect("valid").since.as_deref(), Some("2026-12-01T00:00:00Z"));
        let bad = AuditQuery { limit: "many".into(), ..AuditQuery::default() }.filter(now);
        assert!(bad.expect_err("refused").to_string().contains("limit: `many`"));
        assert!(filters(&typed).contains(r#"<option value="2026-12-01T00:00:00Z" selected>"#));
    }
}
