//! After every pass: the op events it finished go to the outbox, and the
//! status snapshot goes to the server.

use std::time::{Duration, Instant, SystemTime};

use super::{Enrolled, Shared, REPORT_TICK, RETRY};
use crate::backoff::Backoff;
use crate::protocol::{Controller, GitReport, HoldReport, LastOpReport, Report, TargetReport};
use crate::reference::ImageRef;
use crate::report::{Delivery, Outbox};
use crate::resolve::tag::TagVersion;
use crate::status::Snapshot;
use crate::summary::Kind;
use crate::swap::journal::Journal;

/// Sends a report whenever a pass ended since the last one sent (and
/// retries a failed one with backoff).
pub(super) async fn reports(
    shared: &Shared,
    enrolled: &Enrolled,
    outbox: &Outbox,
    journal: &Journal,
    delivery: &Delivery,
) {
    let mut sent: Option<String> = None;
    // Signature refusals already queued as events (by op id).
    let mut told: std::collections::BTreeSet<String> = Default::default();
    let mut backoff = Backoff::new(RETRY, Duration::from_secs(600));
    let mut next_try = Instant::now();
    loop {
        tokio::time::sleep(REPORT_TICK).await;
        let snapshot = match shared.snapshot.read() {
            Ok(snap) if snap.updated_at.is_some() && snap.updated_at != sent => snap.clone(),
            _ => continue,
        };
        if Instant::now() < next_try {
            continue;
        }
        // Events first: the report's last ops then never run ahead of the
        // history the server holds for long.
        match outbox.enqueue_news(&journal.ops().unwrap_or_default(), true) {
            Ok(news) if !news.is_empty() => delivery.wake(),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "op events not queued for the fleet server"),
        }
        // A move refused for its signature is an op that changed nothing:
        // a campaign waiting on it learns why at once, not at its deadline.
        match outbox.enqueue_refusals(&snapshot.refusals, None, &mut told) {
            Ok(0) => {}
            Ok(_) => delivery.wake(),
            Err(e) => tracing::error!(error = %e, "refusal events not queued for the fleet server"),
        }
        let report = of(&snapshot);
        match shared.client.report(&enrolled.credential, &report).await {
            Ok(()) => {
                backoff.succeeded();
                shared.contact();
                sent = snapshot.updated_at;
            }
            Err(e) => {
                let wait = backoff.failed(Instant::now());
                tracing::warn!(error = %e, retry_in = ?wait, "the status report did not reach the fleet server");
                shared.status(|s| s.last_error = Some(format!("report: {e}")));
                next_try = Instant::now() + wait;
            }
        }
    }
}

/// The report for a status snapshot.
pub fn of(snap: &Snapshot) -> Report {
    let summary = snap.last_pass.as_ref().and_then(|p| p.summary.as_ref());
    let holds = summary
        .map(|s| {
            s.failures
                .iter()
                .filter(|f| matches!(f.kind, Kind::Held | Kind::RolledBack))
                .filter_map(|f| {
                    let until = f.retry_at?;
                    let image = snap
                        .targets
                        .iter()
                        .find(|t| t.target == f.target && t.container == f.container)
                        .and_then(|t| t.desired.as_ref())
                        .map(|d| d.image.clone())?;
                    Some(HoldReport {
                        container: f.who().to_string(),
                        image,
                        until: rfc3339(until),
                        reason: f.reason.clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Report {
        controller_version: snap.version.clone(),
        controller: snap
            .controller
            .as_ref()
            .map(|c| Controller { container: c.container.clone(), image: c.image.clone() }),
        manifest_error: snap.manifest_error.clone(),
        pass_error: snap.last_pass.as_ref().and_then(|p| p.error.clone()),
        updated_at: snap.updated_at.clone(),
        desired_revision: snap.fleet.as_ref().and_then(|f| f.desired_revision),
        desired_error: snap.fleet.as_ref().and_then(|f| f.last_error.clone()),
        targets: snap
            .targets
            .iter()
            .map(|t| {
                let image = t.observed.as_ref().map(|o| o.image.clone());
                TargetReport {
                    target: t.target.clone(),
                    container: t.container.clone(),
                    version: image.as_deref().and_then(version_of),
                    image,
                    digest: t.observed.as_ref().and_then(|o| o.digest.clone()),
                    desired: t.desired.as_ref().map(|d| d.image.clone()),
                    action: serde_json::to_value(t.action)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    reason: t.reason.clone(),
                    last_op: t.last_op.as_ref().map(|op| LastOpReport {
                        op_id: op.op_id.clone(),
                        outcome: op.outcome.to_string(),
                        from: op.from.clone(),
                        to: op.to.clone(),
                        reason: op.reason.clone(),
                        updated_at: op.updated_at.clone(),
                    }),
                    failure: t.failure.as_ref().map(|f| format!("{}: {}", f.kind.name(), f.reason)),
                }
            })
            .collect(),
        holds,
        // Without the look times: they change every look, and a report
        // equal to the last costs the server almost nothing.
        git: snap.git.as_ref().map(|g| GitReport {
            url: g.url.clone(),
            reference: g.reference.clone(),
            path: g.path.clone(),
            commit: g.commit.clone(),
            author: g.author.clone(),
            authored_at: g.authored_at.clone(),
            signer: g.signer.clone(),
            error: g
                .refused
                .as_ref()
                .map(|r| format!("commit {} not applied: {}", r.commit, r.reason))
                .or_else(|| g.last_error.clone()),
        }),
    }
}

/// The version an image's tag spells (`app:1.25.3-alpine` → `1.25.3`).
pub fn version_of(image: &str) -> Option<String> {
    let reference = ImageRef::parse(image).ok()?;
    let tag = reference.tag()?;
    TagVersion::parse(tag).map(|v| v.version.to_string())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_tags_that_spell_one() {
        assert_eq!(version_of("registry.local/app:1.25.3-alpine").as_deref(), Some("1.25.3"));
        assert_eq!(version_of("postgres:16.2").as_deref(), Some("16.2.0"));
        assert_eq!(version_of("app:latest"), None);
        assert_eq!(version_of("app"), None);
    }
}
