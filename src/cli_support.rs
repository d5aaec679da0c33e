//! What the two command lines share — the controller's `container-upgrader`
//! and the fleet server's `container-upgrader-server`: logging on stderr,
//! a failed command as a message and an exit code, and secrets read from
//! files. One copy, so both binaries log, fail and read tokens alike.

use std::fmt;
use std::path::Path;

use clap::{Args, ValueEnum};

/// `println!` that never panics: stdout closed by its reader (`| head -1`)
/// is the reader's choice, not a failure of ours.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics, for the same reason.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Options every command of both binaries takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CONTAINER_UPGRADER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// Sets up tracing on stderr; stdout is for command output only.
pub fn init_logging(global: &Global) {
    let default = match global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second initialisation (tests) is not an error worth reporting.
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Exit codes, documented in `--help` and the README. The server's
/// commands use the generic ones (`OK`, `INVALID` for a refusal, `USAGE`,
/// `INTERNAL`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The manifest is invalid, or the server refused; nothing was done.
    pub const INVALID: u8 = 1;
    /// Bad command-line usage (also clap's own code).
    pub const USAGE: u8 = 2;
    /// The Docker Engine could not be reached or failed.
    pub const ENGINE: u8 = 3;
    /// `plan --detailed-exitcode`: upgrades pending.
    pub const CHANGES: u8 = 4;
    /// `plan --detailed-exitcode`: a target is in error, refused or missing.
    pub const PROBLEMS: u8 = 5;
    /// A new container failed its gate and was rolled back.
    pub const ROLLED_BACK: u8 = 6;
    /// Nothing changed because of an error before the swap.
    pub const UNCHANGED: u8 = 7;
    /// A swap stopped half-way or failed without rollback: run `recover`.
    pub const ATTENTION: u8 = 8;
    /// A bug or an environment failure (cannot start the runtime, cannot
    /// write stdout, a server that cannot be reached).
    pub const INTERNAL: u8 = 70;
}

/// A command that failed: the message for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code (see [`exit`]).
    pub code: u8,
    message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    /// A failure with exit code `code` and `message` for stderr.
    pub fn new(code: u8, message: impl fmt::Display) -> Self {
        Self { code, message: message.to_string() }
    }
}

/// The largest token file read: a token is a line, not a document.
pub const MAX_TOKEN_FILE: u64 = 4096;

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A secret from a file given by `flag`: the file's first line, which must
/// be at least [`MIN_TOKEN_LEN`] characters. Only a regular file of at most
/// [`MAX_TOKEN_FILE`] bytes is read (`/dev/zero` would fill memory, a FIFO
/// would hang the start); a symlink is resolved first, since orchestrators
/// mount secrets through them. A file others may read is used, with a
/// warning on stderr.
pub fn read_token(path: &Path, flag: &str) -> Result<String, Failure> {
    read_secret(path, flag, &SecretFile { what: "token", min_len: MIN_TOKEN_LEN, trim: true })
}

/// What a secret file holds: named in its messages ("the password hash
/// is not UTF-8 text"), with the shortest value accepted and whether
/// surrounding spaces are part of it.
#[derive(Debug, Clone, Copy)]
pub struct SecretFile<'a> {
    /// "token", "password", "password hash".
    pub what: &'a str,
    /// The shortest value accepted (1 for "not empty").
    pub min_len: usize,
    /// Spaces around the first line are not part of the value.
    pub trim: bool,
}

/// The first line of the file `flag` names, as [`read_token`] reads a
/// token, for any kind of secret.
pub fn read_secret(path: &Path, flag: &str, kind: &SecretFile<'_>) -> Result<String, Failure> {
    let what = kind.what;
    let fail = |m: String| Failure::new(exit::USAGE, format!("error: {flag} {}: {m}", path.display()));
    let real = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let bytes = crate::private_fs::read_bounded(&real, MAX_TOKEN_FILE)
        .map_err(|e| fail(format!("{e}; expected a regular file of at most {MAX_TOKEN_FILE} bytes")))?;
    let text = String::from_utf8(bytes).map_err(|_| fail(format!("the {what} is not UTF-8 text")))?;
    let line = text.lines().next().unwrap_or_default();
    let token = if kind.trim { line.trim() } else { line }.to_string();
    if token.is_empty() {
        return Err(fail(format!("the file is empty; expected the {what} on its first line")));
    }
    if token.chars().count() < kind.min_len {
        return Err(fail(format!("the {what} must be at least {} characters", kind.min_len)));
    }
    if let Ok(meta) = std::fs::metadata(&real) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            err!(
                "warning: {flag} {}: readable by group or others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    Ok(token)
}
