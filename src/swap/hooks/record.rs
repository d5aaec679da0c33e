//! What one hook did, as the journal keeps it (apart from the running of
//! hooks, so the journal can name it without depending on the engine).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::{Phase, Place};

/// The output a failure reason carries (its last bytes): reasons travel in
/// one line of `reconcile` output, status and webhook events.
pub const REASON_OUTPUT_LIMIT: usize = 1024;

/// What one hook did, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    /// When it ran.
    pub phase: Phase,
    /// Where it ran.
    pub place: Place,
    /// It ended with exit code 0 in time.
    pub ok: bool,
    /// Its exit code, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// It outlived its timeout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// It could not be run at all (no such program, container not running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The end of its output, masked.
    #[serde(default)]
    pub output: String,
    /// How long it ran, in milliseconds.
    pub took_ms: u64,
}

impl HookRecord {
    /// `Ok` when it succeeded, else why it failed, with its output.
    pub fn verdict(&self) -> Result<(), String> {
        if self.ok {
            return Ok(());
        }
        let how = match (&self.error, self.timed_out, self.exit_code) {
            (Some(e), _, _) => e.clone(),
            (None, true, _) => {
                format!("timed out after {}", crate::manifest::Dur(Duration::from_millis(self.took_ms)))
            }
            (None, false, Some(code)) => format!("exit code {code}"),
            (None, false, None) => "no exit code".into(),
        };
        let output = last_bytes(self.output.trim(), REASON_OUTPUT_LIMIT).replace('\n', " | ");
        let output = if output.is_empty() { String::new() } else { format!(": {output}") };
        Err(format!("{} hook ({}) failed: {how}{output}", self.phase, self.place.name()))
    }
}

/// The last `limit` bytes of `text`, on a character boundary, marked when cut.
fn last_bytes(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ok: bool, exit_code: Option<i64>, timed_out: bool, output: &str) -> HookRecord {
        HookRecord {
            phase: Phase::PreUpgrade,
            place: Place::Exec,
            ok,
            exit_code,
            timed_out,
            error: None,
            output: output.into(),
            took_ms: 1500,
        }
    }

    #[test]
    fn a_failed_hook_says_how_and_ends_with_its_output() {
        let r = record(false, Some(3), false, "dumping\nno space left\n");
        assert_eq!(
            r.verdict(),
            Err("pre_upgrade hook (exec) failed: exit code 3: dumping | no space left".into())
        );
        let r = record(false, None, true, "");
        assert_eq!(r.verdict(), Err("pre_upgrade hook (exec) failed: timed out after 1s 500ms".into()));
        assert_eq!(record(true, Some(0), false, "fine").verdict(), Ok(()));
    }

    #[test]
    fn a_reason_carries_only_the_end_of_a_long_output() {
        let long = format!("{}THE END", "x".repeat(5000));
        let reason = record(false, Some(1), false, &long).verdict().expect_err("failed");
        assert!(reason.ends_with("THE END"), "{reason}");
        assert!(reason.len() < REASON_OUTPUT_LIMIT + 100, "{}", reason.len());
    }
}
