//! The server's state directory and the admin token it makes on its first
//! start, so `container-upgrader-server` runs with no flags at all.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use container_upgrader::err;
use container_upgrader::private_fs;

use super::{exit, Failure};

/// The state directory of a server run by root: the usual place for a
/// service's data.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/container-upgrader-server";

/// The admin token's file name inside the state directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Where the state lives when `--state-dir` is not given: the system place
/// for root, else `$XDG_STATE_HOME/container-upgrader-server` (default
/// `~/.local/state/…`), which a user can write without sudo.
pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from(SYSTEM_STATE_DIR);
    }
    let xdg = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    match (xdg, home) {
        (Some(xdg), _) => xdg.join("container-upgrader-server"),
        (None, Some(home)) => home.join(".local/state/container-upgrader-server"),
        // No home at all (a bare container as a non-root user): the
        // working directory is the one place left that is likely ours.
        (None, None) => PathBuf::from("container-upgrader-server-state"),
    }
}

/// The effective user is root: `/proc/self` belongs to the process's
/// effective user (std has no geteuid, and the crate forbids `unsafe`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The admin token of a server started without `--admin-token-file`: the
/// one in `STATE_DIR/admin.token`, created (random, 0600) on the first
/// start — and then, once, the server says where it is.
pub fn admin_token(state_dir: &Path) -> Result<String, Failure> {
    let path = state_dir.join(ADMIN_TOKEN_FILE);
    let internal = |what: String| Failure::new(exit::INTERNAL, format!("error: {what}"));
    private_fs::ensure_private_dir(state_dir)
        .map_err(|e| internal(format!("--state-dir {}: {e}", state_dir.display())))?;
    // Exclusive create: an existing token (or a symlink planted where it
    // goes) is never overwritten; O_EXCL does not follow a symlink.
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
    match created {
        Ok(mut file) => {
            let token = new_token()?;
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| internal(format!("writing {}: {e}", path.display())))?;
            err!(
                "created an admin token in {} (mode 0600): log in to the page with it, and `container-upgrader-server fleet` reads it from there",
                path.display()
            );
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            container_upgrader::cli_support::read_token(&path, "the admin token file")
        }
        Err(e) => Err(internal(format!("creating {}: {e}", path.display()))),
    }
}

/// 32 random bytes, hex: 256 bits, nothing to guess.
fn new_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Failure::new(exit::INTERNAL, "error: the system's random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_first_start_creates_a_private_token_and_later_starts_read_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let first = admin_token(&state).expect("created");
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(state.join(ADMIN_TOKEN_FILE)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&state).expect("dir").permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(admin_token(&state).expect("read"), first, "the same token on every start");
    }

    #[test]
    fn a_damaged_token_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "short\n").expect("write");
        let failure = admin_token(dir.path()).expect_err("refused");
        assert!(failure.to_string().contains("at least 16 characters"), "{failure}");
        assert_eq!(std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).expect("kept"), "short\n");
    }
}
