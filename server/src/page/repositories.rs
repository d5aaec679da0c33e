//! `GET /repositories`: every repository the fleet runs, with what the
//! server's version checker knows of it - how many versions, the newest,
//! when it last asked the registry, and why it failed when it did. A
//! registry the server cannot reach is visible here, not only as an empty
//! version picker.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use super::html::{escape, layout, urlencode};
use super::session::{Authed, Session};
use super::PageError;
use crate::state::FleetState;
use crate::versions::RepositoryInfo;

/// The repositories table, failing registries first.
pub fn render(repos: &[RepositoryInfo], session: &Session) -> String {
    let mut repos: Vec<&RepositoryInfo> = repos.iter().collect();
    repos.sort_by(|a, b| {
        b.error.is_some().cmp(&a.error.is_some()).then_with(|| a.repository.cmp(&b.repository))
    });
    let failing = repos.iter().filter(|r| r.error.is_some()).count();
    let rows: String = repos
        .iter()
        .map(|r| {
            let status = match &r.error {
                Some(e) => format!(r#"<td class="error">unreachable: {}</td>"#, escape(e)),
                None if r.checked_at.is_none() => r#"<td class="muted">not checked yet</td>"#.to_string(),
                None => "<td>ok</td>".to_string(),
            };
            format!(
                r#"<tr><td class="name"><code>{repo}</code></td><td><a href="/?q={q}">{targets}</a></td><td>{versions}</td><td>{newest}</td><td class="time">{checked}</td>{status}</tr>"#,
                repo = escape(&r.repository),
                q = escape(&urlencode(&r.repository)),
                targets = r.targets,
                versions = r.versions,
                newest = escape(r.newest.as_deref().unwrap_or("unknown")),
                checked = escape(r.checked_at.as_deref().unwrap_or("never")),
            )
        })
        .collect();
    let summary = match failing {
        0 => format!(
            r#"<p id="repositories-summary">{} repositories; every registry answered.</p>"#,
            repos.len()
        ),
        n => format!(
            r#"<p class="warning" id="repositories-summary">{n} of {} repositories: the registry could not be read. Their newer versions are unknown and a campaign pinning by digest is refused until it can be read.</p>"#,
            repos.len()
        ),
    };
    let body = format!(
        r#"{summary}
<table class="repositories" id="repositories"><thead><tr><th>Repository</th><th>Targets</th><th>Versions</th><th>Newest release</th><th>Checked (UTC)</th><th>Registry</th></tr></thead><tbody>{rows}</tbody></table>"#
    );
    layout("Repositories", Some(session), &body)
}

/// `GET /repositories`.
pub async fn repositories(
    State(state): State<FleetState>,
    Authed(session): Authed,
) -> Result<Response, PageError> {
    let repos = state.store.repositories().await?;
    Ok(Html(render(&repos, &session)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, error: Option<&str>) -> RepositoryInfo {
        RepositoryInfo {
            repository: name.into(),
            versions: 3,
            newest: Some("1.2.0".into()),
            checked_at: Some("2026-12-05T18:00:00Z".into()),
            error: error.map(str::to_string),
            targets: 2,
        }
    }

    #[test]
    fn unreachable_registries_come_first_with_their_reason_escaped() {
        let html = render(
            &[repo("a.example/ok", None), repo("b.example/down", Some("connection refused <x>"))],
            &Session::for_test(crate::access::Role::Viewer),
        );
        let down = html.find("b.example/down").expect("listed");
        let ok = html.find("a.example/ok").expect("listed");
        assert!(down < ok, "the failing one first");
        assert!(html.contains("unreachable: connection refused &lt;x&gt;"), "{html}");
        assert!(html.contains("1 of 2 repositories"), "{html}");
    }
}
