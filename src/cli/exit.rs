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
/// Bad command-line usage (also clap's own code).
pub const USAGE: u8 = 2;
/// A new container failed its gate and was rolled back.
pub const ROLLED_BACK: u8 = 6;
/// Nothing changed because of an error before the swap.
pub const UNCHANGED: u8 = 7;
/// A swap stopped half-way or failed without rollback: run `recover`.
pub const ATTENTION: u8 = 8;
