//! Registry credentials: the htpasswd file an authenticating
//! [`TestRegistry`](super::TestRegistry) checks, and Docker config files
//! (`$DOCKER_CONFIG/config.json`) that hold logins.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::run_bounded;

const HTPASSWD_TIMEOUT: Duration = Duration::from_secs(30);

/// A registry login: `(registry host:port, user, password)`.
pub type Login<'a> = (&'a str, &'a str, &'a str);

/// Writes the `user:bcrypt-hash` line distribution's `htpasswd` auth reads
/// (it accepts bcrypt only) to `path`, with `htpasswd -Bbn` from Debian's
/// apache2-utils: hashing bcrypt ourselves would need a crate for one test.
pub(super) fn write_htpasswd(path: &Path, user: &str, password: &str) {
    let mut cmd = Command::new("htpasswd");
    cmd.args(["-Bbn", user, password]);
    let out = run_bounded(&mut cmd, HTPASSWD_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "`htpasswd` {e}: registries requiring auth need it from Debian's apache2-utils; \
             run `.ci/install-deps` (or `apt-get install apache2-utils`)"
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "`htpasswd -Bbn {user} ...` failed ({}): {}", out.status, stderr.trim());
    fs::write(path, &out.stdout).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Writes `dir/config.json` holding an `auths` entry per login, as
/// `docker login` writes it (`"auth": base64(user:password)`).
pub(super) fn write_docker_config(dir: &Path, logins: &[Login]) {
    let entries: Vec<String> = logins
        .iter()
        .map(|(registry, user, password)| {
            format!("\"{registry}\": {{\"auth\": \"{}\"}}", base64(format!("{user}:{password}").as_bytes()))
        })
        .collect();
    let config = format!("{{\"auths\": {{{}}}}}\n", entries.join(", "));
    let path = dir.join("config.json");
    fs::create_dir_all(dir)
        .and_then(|()| fs::write(&path, config))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Standard base64 with padding: all a config.json `auth` needs, so no crate.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
