//! `status`: the journal's view — the last swap of each container and
//! whether a failed image is held. Reads only the state directory, so it
//! works while `run` is going, and from any container sharing the volume.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use container_upgrader::status::LastOp;
use container_upgrader::swap::backoff;
use container_upgrader::swap::journal::{Journal, OpRecord};

use super::{exit, Failure};
use container_upgrader::{err, out};

/// One container's line: its last op (as `/v1/status` shows it) and hold.
#[derive(Serialize)]
struct Row<'a> {
    container: &'a str,
    #[serde(flatten)]
    op: LastOp,
    held_until: Option<String>,
}

/// One hook of an op, for the text view: how it ended and its output's
/// last line (the JSON view has all it kept).
fn hook_line(h: &container_upgrader::swap::hooks::HookRecord) -> String {
    let how = match h.verdict() {
        Ok(()) => "ok".to_string(),
        Err(_) if h.timed_out => "timed out".to_string(),
        Err(_) => h.error.clone().unwrap_or_else(|| format!("exit code {}", h.exit_code.unwrap_or_default())),
    };
    let last = h.output.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim()));
    format!("{} hook ({}): {how} in {} ms{}", h.phase, h.place.name(), h.took_ms, last.unwrap_or_default())
}

/// The Git source's lines for the text view: where the manifest file came
/// from, and what was refused or failed since.
fn git_lines(git: &container_upgrader::status::GitStatus) -> Vec<String> {
    let reference = git.reference.as_deref().map(|r| format!(" {r}")).unwrap_or_default();
    let mut lines = vec![match &git.commit {
        Some(commit) => {
            let by = git.author.as_deref().unwrap_or("?");
            let signed = git.signer.as_deref().map(|s| format!(", signed by {s}")).unwrap_or_default();
            let applied = git.applied_at.as_deref().map(|t| format!(", applied {t}")).unwrap_or_default();
            format!(
                "manifest from git {}{reference} {}: commit {commit} by {by} at {}{signed}{applied}",
                git.url,
                git.path,
                git.authored_at.as_deref().unwrap_or("?")
            )
        }
        None => format!("manifest from git {}{reference} {}: no commit applied yet", git.url, git.path),
    }];
    if let Some(refused) = &git.refused {
        lines.push(format!("  refused commit {} by {}: {}", refused.commit, refused.author, refused.reason));
    }
    if let Some(error) = &git.last_error {
        lines.push(format!("  last look failed ({}): {error}", git.last_look.as_deref().unwrap_or("?")));
    }
    lines
}

pub fn status(state_dir: &Path, json: bool) -> Result<u8, Failure> {
    let journal =
        Journal::open(state_dir).map_err(|e| Failure::new(exit::ATTENTION, format!("error: {e}")))?;
    let scan = journal.scan().map_err(|e| Failure::new(exit::ATTENTION, format!("error: {e}")))?;
    let ops = scan.ops;
    let mut last: BTreeMap<&str, &OpRecord> = BTreeMap::new();
    for op in &ops {
        last.insert(op.container.as_str(), op);
    }
    let now = SystemTime::now();
    let rows: Vec<Row> = last
        .values()
        .map(|op| Row {
            container: &op.container,
            op: LastOp::from_op(op),
            held_until: backoff::hold(&ops, &op.container, &op.new_image, now)
                .map(|h| humantime::format_rfc3339_seconds(h.until).to_string()),
        })
        .collect();
    // A record that cannot be read is never passed over in silence: it may
    // be all that is left of an interrupted swap.
    let damaged: Vec<String> =
        scan.damaged.iter().map(|d| format!("{}: {}", d.path.display(), d.reason)).collect();
    for d in &damaged {
        err!("error: damaged journal record {d}; run `container-upgrader recover`");
    }
    let set_aside = journal.lost_ops().len();
    if set_aside > 0 {
        err!(
            "note: {set_aside} damaged record(s) were moved aside to {}",
            state_dir.join("damaged").display()
        );
    }
    let code = if damaged.is_empty() { exit::OK } else { exit::ATTENTION };
    let git = container_upgrader::gitsource::read_status(state_dir);
    if json {
        let mut doc = serde_json::json!({ "containers": rows, "damaged_records": damaged });
        if let Some(git) = &git {
            doc["git"] = serde_json::to_value(git).map_err(|e| Failure::new(exit::INTERNAL, e))?;
        }
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Failure::new(exit::INTERNAL, e))?;
        out!("{text}");
        return Ok(code);
    }
    if let Some(git) = &git {
        for line in git_lines(git) {
            out!("{line}");
        }
    }
    if rows.is_empty() {
        out!("no swaps recorded in {}", state_dir.display());
    } else {
        for r in &rows {
            let held = r.held_until.as_ref().map(|u| format!("; held until {u}")).unwrap_or_default();
            let reason = r.op.reason.as_ref().map(|x| format!(": {x}")).unwrap_or_default();
            let o = &r.op;
            let what = match &o.follows {
                Some(peer) => format!("recreated on {} to follow {peer}'s network", o.to),
                None => format!("{} → {}", o.from, o.to),
            };
            out!("{}: {} {what} at {} (op {}){reason}{held}", r.container, o.outcome, o.updated_at, o.op_id);
            for h in &o.hooks {
                out!("  {}", hook_line(h));
            }
        }
    }
    Ok(code)
}
