//! Test images: the `FROM scratch` Dockerfile an [`ImageSpec`] describes,
//! around the static testbox fixture compiled by [`testbox_binary`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::expect_success;
use super::RUN_LABEL;

const RUSTC_TIMEOUT: Duration = Duration::from_secs(300);
/// A static binary is the only kind that runs in `FROM scratch`; stripping
/// keeps every test image build small.
const RUSTC_FLAGS: &[&str] = &[
    "--edition=2021",
    "-O",
    "-Ctarget-feature=+crt-static",
    "--target=x86_64-unknown-linux-gnu",
    "-Cstrip=symbols",
    "--crate-name=testbox",
];

const HEALTHCHECK: &str = r#"HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["/testbox","health"]"#;

/// What a test image contains besides the testbox entrypoint. Empty fields
/// add nothing to the Dockerfile:
/// `ImageSpec { env: vec![("TESTBOX_VERSION", "1")], ..Default::default() }`.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec<'a> {
    /// `ENV` pairs, e.g. `("TESTBOX_VERSION", "2")`.
    pub env: Vec<(&'a str, &'a str)>,
    /// `LABEL` pairs (the run label is always added on top).
    pub labels: Vec<(&'a str, &'a str)>,
    /// `CMD` in exec form, i.e. the arguments to `/testbox`.
    pub cmd: Vec<&'a str>,
    /// `WORKDIR`.
    pub workdir: Option<&'a str>,
    /// `EXPOSE` entries such as `"8080"` or `"53/udp"`.
    pub expose: Vec<&'a str>,
    /// `VOLUME` paths.
    pub volumes: Vec<&'a str>,
    /// Adds `HEALTHCHECK ... CMD ["/testbox","health"]`; set
    /// `TESTBOX_HEALTH=fail` (image env or `docker run -e`) to make it fail.
    pub healthcheck: bool,
    /// `USER`.
    pub user: Option<&'a str>,
}

impl ImageSpec<'_> {
    pub(super) fn dockerfile(&self, run_id: &str) -> String {
        let mut lines = vec![
            "FROM scratch".to_string(),
            // First instruction on purpose: the legacy builder keeps an
            // intermediate image per step and reuses them from its cache. With
            // the run label first, no layer is shared with another run, so
            // another run's cleanup can never delete a layer our build is
            // reusing, and our cleanup finds every intermediate by label.
            format!("LABEL {RUN_LABEL}={}", quote(run_id)),
            "COPY testbox /testbox".into(),
            r#"ENTRYPOINT ["/testbox"]"#.into(),
        ];
        // Pairs go in one instruction each: every instruction is a commit,
        // and commits are the slow part of a legacy build.
        if !self.env.is_empty() {
            lines.push(format!("ENV {}", pairs(&self.env)));
        }
        if !self.labels.is_empty() {
            lines.push(format!("LABEL {}", pairs(&self.labels)));
        }
        if !self.cmd.is_empty() {
            lines.push(format!("CMD {}", json_array(&self.cmd)));
        }
        lines.extend(self.workdir.map(|dir| format!("WORKDIR {dir}")));
        lines.extend(self.expose.iter().map(|port| format!("EXPOSE {port}")));
        if !self.volumes.is_empty() {
            lines.push(format!("VOLUME {}", json_array(&self.volumes)));
        }
        if self.healthcheck {
            lines.push(HEALTHCHECK.into());
        }
        lines.extend(self.user.map(|user| format!("USER {user}")));
        lines.join("\n") + "\n"
    }
}

/// A Dockerfile double-quoted value; `$` is escaped because ENV and LABEL
/// expand variables.
fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$");
    format!("\"{escaped}\"")
}

fn pairs(pairs: &[(&str, &str)]) -> String {
    let quoted: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
    quoted.join(" ")
}

/// Exec form. Not [`quote`]: `\$` is invalid JSON, and Docker silently falls
/// back to shell form (which needs `/bin/sh`, absent in scratch) on bad JSON.
fn json_array(items: &[&str]) -> String {
    let quoted: Vec<String> =
        items.iter().map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("[{}]", quoted.join(","))
}

/// The static testbox binary, compiled once per test process and reused
/// across processes while newer than its source.
pub fn testbox_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(compile_testbox).clone()
}

fn compile_testbox() -> PathBuf {
    let source = super::repo_root().join("tests/fixtures/testbox.rs");
    let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("testbox");
    if is_newer(&binary, &source) {
        return binary;
    }
    // Parallel test binaries may compile at once: each writes a private
    // file and renames it into place, and rename is atomic, so nobody ever
    // copies a half-written binary.
    let private = binary.with_extension(format!("{}.tmp", std::process::id()));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(RUSTC_FLAGS).arg("-o").arg(&private).arg(&source);
    expect_success(&mut cmd, "rustc tests/fixtures/testbox.rs", RUSTC_TIMEOUT);
    if let Err(e) = fs::rename(&private, &binary) {
        panic!("moving testbox into {}: {e}", binary.display());
    }
    binary
}

fn is_newer(path: &Path, than: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(path), modified(than)), (Some(a), Some(b)) if a >= b)
}
