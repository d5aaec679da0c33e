//! Running a command inside a container (`docker exec`), for hooks.
//!
//! The engine has no call to kill an exec'd process: past its time limit
//! the output stream is dropped and the command is reported as timed out,
//! but the process may keep running inside the container until it ends on
//! its own (or the container stops).

use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;

use super::{Engine, EngineError};

/// What a command run in a container did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Its exit code; `None` when it had not ended (timed out).
    pub exit_code: Option<i64>,
    /// The last `keep` bytes of its stdout and stderr, interleaved as sent.
    pub output: Tail,
    /// It outlived its time limit.
    pub timed_out: bool,
}

/// The end of a stream of output, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tail {
    bytes: Vec<u8>,
    keep: usize,
    /// Bytes dropped from the front.
    pub dropped: u64,
}

impl Tail {
    /// An empty tail keeping at most `keep` bytes.
    pub fn new(keep: usize) -> Self {
        Self { bytes: Vec::new(), keep, dropped: 0 }
    }

    /// Appends `chunk`, dropping what falls out of the window.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.keep {
            let cut = self.bytes.len() - self.keep;
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// The kept bytes as text (invalid UTF-8, such as a character cut in
    /// two at the window's edge, is replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl Engine {
    /// Runs `cmd` in the running container `id` with `env` added, keeping
    /// the last `keep` bytes of its output, for at most `limit`.
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        env: Vec<String>,
        limit: Duration,
        keep: usize,
    ) -> Result<ExecOutcome, EngineError> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.to_vec()),
            env: Some(env),
            ..Default::default()
        };
        let what = format!("running a command in container {id}");
        let created = self.bounded(&what, "exec/create", self.docker.create_exec(id, config)).await?;
        let options = StartExecOptions { detach: false, tty: false, output_capacity: None };
        let started =
            self.bounded(&what, "exec/start", self.docker.start_exec(&created.id, Some(options))).await?;
        let mut output = Tail::new(keep);
        // Not asked to detach, the engine attaches; a detached start has
        // no output to read.
        let timed_out = match started {
            StartExecResults::Attached { output: mut stream, .. } => {
                let read = async {
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(c) => output.push(&c.into_bytes()),
                            Err(e) => return Err(EngineError::Call { what: what.clone(), source: e }),
                        }
                    }
                    Ok(())
                };
                match tokio::time::timeout(limit, read).await {
                    Ok(result) => result.map(|()| false)?,
                    Err(_) => true,
                }
            }
            StartExecResults::Detached => false,
        };
        if timed_out {
            return Ok(ExecOutcome { exit_code: None, output, timed_out });
        }
        let inspected = self.bounded(&what, "exec/inspect", self.docker.inspect_exec(&created.id)).await?;
        Ok(ExecOutcome { exit_code: inspected.exit_code, output, timed_out })
    }
}

#[cfg(test)]
mod tests {
    use super::Tail;

    #[test]
    fn a_tail_keeps_the_last_bytes_and_counts_the_rest() {
        let mut t = Tail::new(5);
        t.push(b"abc");
        t.push(b"defgh");
        assert_eq!(t.text(), "defgh");
        assert_eq!(t.dropped, 3);
    }
}
