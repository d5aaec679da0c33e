//! Printing a plan for people (a table) or machines (JSON).

use std::io::{self, Write};

use container_upgrader::plan::{Action, ImageState, Plan, PlanEntry};
use serde::Serialize;

/// `plan --output json`: the contract other tools read.
#[derive(Serialize)]
struct Report<'a> {
    actions: &'a [PlanEntry],
    summary: Summary,
}

#[derive(Serialize)]
struct Summary {
    upgrade: usize,
    none: usize,
    missing: usize,
    refused: usize,
    error: usize,
}

/// Writes the plan to stdout.
pub fn print_plan(plan: &Plan, json: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let report = Report { actions: &plan.actions, summary: summary(plan) };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)
    } else {
        out.write_all(table(plan).as_bytes())
    }
}

fn summary(plan: &Plan) -> Summary {
    Summary {
        upgrade: plan.count(Action::Upgrade),
        none: plan.count(Action::None),
        missing: plan.count(Action::Missing),
        refused: plan.count(Action::Refused),
        error: plan.count(Action::Error),
    }
}

fn image(state: Option<&ImageState>) -> String {
    match state {
        None => "-".to_string(),
        Some(ImageState { image, digest: Some(d) }) => format!("{image} ({})", short(d)),
        Some(ImageState { image, digest: None }) => image.clone(),
    }
}

fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(digest.len(), |i| (i + 13).min(digest.len()));
    &digest[..end]
}

/// A terraform-style table: one row per entry, then a summary line.
pub fn table(plan: &Plan) -> String {
    let header = ["TARGET", "CONTAINER", "CURRENT", "DESIRED", "ACTION", "REASON"].map(String::from);
    let rows: Vec<[String; 6]> = plan
        .actions
        .iter()
        .map(|e| {
            [
                e.target.clone(),
                e.container.clone().unwrap_or_else(|| "-".into()),
                image(e.current.as_ref()),
                image(e.desired.as_ref()),
                e.action.to_string(),
                e.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        // Padded by hand: `format!("{c:<w$}")` panics for widths over 65,535.
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    s.push_str(&format!(
        "\nPlan: {} to upgrade, {} up to date, {} missing, {} refused, {} in error.\n",
        plan.count(Action::Upgrade),
        plan.count(Action::None),
        plan.count(Action::Missing),
        plan.count(Action::Refused),
        plan.count(Action::Error),
    ));
    s
}

#[cfg(test)]
mod tests {
    use container_upgrader::plan::{Action, Plan, PlanEntry};

    use super::table;

    #[test]
    fn a_cell_of_any_length_is_printed_whole() {
        let long = "r".repeat(70_000);
        let entry = PlanEntry {
            target: "web".into(),
            target_index: 0,
            container: Some("web".into()),
            current: None,
            desired: None,
            action: Action::Error,
            reason: long.clone(),
        };
        let text = table(&Plan { actions: vec![entry], refusals: Vec::new() });
        assert!(text.contains(&long));
        assert!(text.contains("1 in error"));
    }
}
