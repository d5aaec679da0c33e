//! Running a target's hooks at their points of a swap.
//!
//! | phase | where `exec` runs | when | a failure … |
//! |---|---|---|---|
//! | `pre_upgrade` | the old container | after the pull, before anything is touched | skips the swap: nothing changes, the op is `aborted` (and the backoff holds the image) |
//! | `post_upgrade` | the new container | after the gate passed, before the commit | counts as a failed gate: rolled back (or `failed` with rollback off) |
//! | `pre_rollback` | the new container | before a failed new container is rolled back | is added to the reason; the rollback goes on |
//!
//! Each phase is journaled (its [`Step`]) *before* the command starts, so a
//! crash during a hook leaves a record `recover` reads: nothing had changed
//! during `pre_upgrade` (the op is closed `aborted`), the new container had
//! not been accepted during `post_upgrade` or `pre_rollback` (the old one is
//! restored). Recovery never runs a hook again.
//!
//! Output (stdout and stderr, the last [`OUTPUT_LIMIT`] bytes) is masked —
//! the environment values of the container involved, `KEY=value`
//! assignments, credentials in URLs — before it is kept in the journal or
//! put in a reason, so every later reader (status, webhook, fleet server)
//! gets the masked text.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::journal::{OpRecord, Step};
use super::{SwapError, Swapper};
use crate::engine::{Engine, Tail};
use crate::manifest::{Hook, Hooks, Phase, Place};

pub mod record;

pub use record::{HookRecord, REASON_OUTPUT_LIMIT};

/// The output kept of a hook (its last bytes).
pub const OUTPUT_LIMIT: usize = 4096;

/// What a hook is told about the swap it belongs to; given to the
/// command as `CONTAINER_UPGRADER_*` environment variables.
#[derive(Debug, Clone)]
pub struct HookContext<'a> {
    /// The op.
    pub op: &'a OpRecord,
    /// The container an `exec` runs in (and whose environment is masked).
    pub container_id: &'a str,
}

impl HookContext<'_> {
    fn env(&self, phase: Phase) -> Vec<(String, String)> {
        let op = self.op;
        [
            ("CONTAINER_UPGRADER_HOOK", phase.name().to_string()),
            ("CONTAINER_UPGRADER_OP", op.op_id.to_string()),
            ("CONTAINER_UPGRADER_CONTAINER", op.container.clone()),
            ("CONTAINER_UPGRADER_OLD_IMAGE", op.old_image.clone()),
            ("CONTAINER_UPGRADER_NEW_IMAGE", op.new_image.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Runs `hook` for `phase`; never fails — a hook that cannot run is a
/// failed hook, recorded as such.
pub async fn run(engine: &Engine, phase: Phase, hook: &Hook, ctx: &HookContext<'_>) -> HookRecord {
    let started = Instant::now();
    // The container's environment is what its output most likely leaks.
    let details = engine.inspect_container(ctx.container_id).await;
    let secrets = match &details {
        Ok(Some(c)) => crate::redact::env_values(
            c.config.as_ref().and_then(|cfg| cfg.env.as_ref()).into_iter().flatten().map(String::as_str),
        ),
        _ => Vec::new(),
    };
    let running =
        matches!(&details, Ok(Some(c)) if c.state.as_ref().and_then(|s| s.running).unwrap_or(false));
    let ran = match hook.place {
        Place::Exec if !running => Err(match details {
            Err(e) => format!("the container could not be inspected: {e}"),
            Ok(None) => "the container does not exist".into(),
            Ok(Some(_)) => "the container is not running, and `exec` runs inside it".into(),
        }),
        Place::Exec => {
            let env = ctx.env(phase).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            engine
                .exec(ctx.container_id, &hook.command, env, hook.timeout, OUTPUT_LIMIT)
                .await
                .map(|o| (o.exit_code, o.output, o.timed_out))
                .map_err(|e| e.to_string())
        }
        Place::Run => run_here(&hook.command, ctx.env(phase), hook.timeout).await,
    };
    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mask = |text: &str| mask_url_credentials(&crate::redact::text(text, &secrets));
    let record = match ran {
        Ok((exit_code, output, timed_out)) => HookRecord {
            phase,
            place: hook.place,
            ok: !timed_out && exit_code == Some(0),
            exit_code,
            timed_out,
            error: None,
            output: mask(&output.text()),
            took_ms,
        },
        Err(error) => HookRecord {
            phase,
            place: hook.place,
            ok: false,
            exit_code: None,
            timed_out: false,
            error: Some(mask(&error)),
            output: String::new(),
            took_ms,
        },
    };
    tracing::info!(hook = phase.name(), place = hook.place.name(), ok = record.ok, took_ms, "hook");
    record
}

/// Runs `command` as a child of the controller, stdin closed, stdout and
/// stderr captured together. Past `limit` the child is killed (SIGKILL;
/// processes it started itself are not).
async fn run_here(
    command: &[String],
    env: Vec<(String, String)>,
    limit: Duration,
) -> Result<(Option<i64>, Tail, bool), String> {
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting `{program}` on the controller failed: {e}"))?;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("the command's output could not be captured".into());
    };
    let tail = std::sync::Mutex::new(Tail::new(OUTPUT_LIMIT));
    let finished = tokio::time::timeout(limit, async {
        tokio::join!(pump(&mut out, &tail), pump(&mut err, &tail));
        child.wait().await
    })
    .await;
    let timed_out = finished.is_err();
    let code = match finished {
        Ok(Ok(status)) => status.code().map(i64::from),
        Ok(Err(e)) => return Err(format!("waiting for `{program}` failed: {e}")),
        Err(_) => {
            if let Err(e) = child.kill().await {
                tracing::warn!(error = %e, program = %program, "a timed-out hook could not be killed");
            }
            None
        }
    };
    let tail = tail.into_inner().unwrap_or_default();
    Ok((code, tail, timed_out))
}

/// Reads `stream` to its end into `tail`.
async fn pump(stream: &mut (dyn tokio::io::AsyncRead + Unpin + Send), tail: &std::sync::Mutex<Tail>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if let Ok(mut t) = tail.lock() {
            t.push(&buf[..n]);
        }
    }
}

/// `text` with the userinfo of every URL in it masked
/// (`https://user:secret@host` → `https://***@host`).
fn mask_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end =
            tail.find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'').unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo) => {
                out.push_str(crate::redact::MASK);
                rest = &tail[userinfo..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

impl Step {
    /// The step journaled just before `phase`'s hook starts.
    pub fn before_hook(phase: Phase) -> Step {
        match phase {
            Phase::PreUpgrade => Step::PreUpgrade,
            Phase::PostUpgrade => Step::PostUpgrade,
            Phase::PreRollback => Step::PreRollback,
        }
    }
}

impl Swapper {
    /// Runs `phase`'s hook of `hooks`, if there is one, in the container
    /// the phase names (the old one before the upgrade, the new one after):
    /// journals the phase first, then what the hook did. `Ok(Err(reason))`:
    /// the hook failed.
    pub(super) async fn hook(
        &self,
        phase: Phase,
        hooks: &Hooks,
        op: &mut OpRecord,
    ) -> Result<Result<(), String>, SwapError> {
        let Some(hook) = hooks.get(phase) else { return Ok(Ok(())) };
        self.journal().record(op, Step::before_hook(phase), None)?;
        let container_id = match phase {
            Phase::PreUpgrade => op.old_id.to_string(),
            Phase::PostUpgrade | Phase::PreRollback => {
                op.new_id.as_ref().map(ToString::to_string).unwrap_or_default()
            }
        };
        let record = run(self.engine(), phase, hook, &HookContext { op, container_id: &container_id }).await;
        let verdict = record.verdict();
        op.hooks.push(record);
        self.journal().write(op)?;
        Ok(verdict)
    }

    /// Runs the `pre_rollback` hook before the rollback `reason` asks for;
    /// returns the reason, with the hook's failure added if it failed (the
    /// rollback goes on either way).
    pub(super) async fn pre_rollback(
        &self,
        hooks: &Hooks,
        op: &mut OpRecord,
        reason: String,
    ) -> Result<String, SwapError> {
        Ok(match self.hook(Phase::PreRollback, hooks, op).await? {
            Ok(()) => reason,
            Err(failed) => format!("{reason}; {failed}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(
            mask_url_credentials("pushing to https://admin:s3cret@db.local:5432/app and http://plain/x"),
            "pushing to https://***@db.local:5432/app and http://plain/x"
        );
    }

    #[tokio::test]
    async fn a_controller_command_is_killed_at_its_timeout() {
        let started = Instant::now();
        let cmd = vec!["sleep".to_string(), "30".to_string()];
        let (code, _, timed_out) = run_here(&cmd, Vec::new(), Duration::from_millis(300)).await.expect("ran");
        assert!(timed_out);
        assert_eq!(code, None);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_controller_command_gets_its_output_and_exit_code_captured() {
        let cmd =
            ["sh", "-c", "echo out; echo err >&2; echo $CONTAINER_UPGRADER_HOOK; exit 4"].map(String::from);
        let env = vec![("CONTAINER_UPGRADER_HOOK".to_string(), "pre_upgrade".to_string())];
        let (code, tail, timed_out) = run_here(&cmd, env, Duration::from_secs(10)).await.expect("ran");
        assert_eq!(code, Some(4));
        assert!(!timed_out);
        let text = tail.text();
        for want in ["out", "err", "pre_upgrade"] {
            assert!(text.contains(want), "{text}");
        }
        let missing = ["/no/such/program".to_string()];
        let e = run_here(&missing, Vec::new(), Duration::from_secs(1)).await.expect_err("not started");
        assert!(e.contains("/no/such/program"), "{e}");
    }
}
