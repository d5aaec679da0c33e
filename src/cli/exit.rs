//! Exit codes, documented in `--help` and the README.

/// Success.
pub const OK: u8 = 0;
/// The manifest is invalid; nothing was done.
pub const INVALID: u8 = 1;
/// The Docker Engine could not be reached or failed.
pub const ENGINE: u8 = 3;
/// `plan --detailed-exitcode`: upgrades pending.
pub const CHANGES: u8 = 4;
/// `plan --detailed-exitcode`: a target is in error, refused or missing.
pub const PROBLEMS: u8 = 5;
/// A bug or an environment failure (cannot start the runtime, cannot write stdout).
pub const INTERNAL: u8 = 70;
