//! Images of container-upgrader itself, for the self-upgrade tests: the
//! crate's binary built static (glibc, crt-static: it runs in `FROM
//! scratch`) with the test-only fault hook, in a `FROM scratch` image laid
//! out like the project's Dockerfile.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::expect_success;
use super::{TestRun, RUN_LABEL};

const BUILD_TIMEOUT: Duration = Duration::from_secs(1500);

/// The controller's binary for processes run on this host: cargo's own
/// build when the tests are the controller package's, else (the fleet
/// server's tests, in `server/`) the static build, which runs here too.
pub fn controller_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_container-upgrader") {
        Some(path) => PathBuf::from(path),
        None => upgrader_binary(),
    }
}

/// The static `container-upgrader`, built once per test process (cargo
/// itself skips the work when nothing changed).
pub fn upgrader_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("static");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(super::repo_root())
        // The Git helper too: `run --git` finds it next to the binary.
        .args(["build", "-p", "container-upgrader", "--bin", "container-upgrader"])
        .args(["--bin", "container-upgrader-git"])
        .args(["--features", "container-upgrader/fault-injection"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .env("CARGO_TARGET_DIR", &target_dir)
        // No debug info: the binary goes into every self-upgrade test's
        // images (several tags per test, four tests at once), and with it
        // each copy weighed 255 MB; a CI run on a nearly full disk failed
        // for it. Symbols stay, so a panic still names its functions.
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C debuginfo=0 -C strip=debuginfo");
    expect_success(&mut cmd, "cargo build (static container-upgrader)", BUILD_TIMEOUT);
    target_dir.join("x86_64-unknown-linux-gnu/debug/container-upgrader")
}

impl TestRun {
    /// Builds a container-upgrader image tagged `tag`; `extra` Dockerfile
    /// lines go after the project's layout (e.g. a label that makes each
    /// version a distinct image, or a broken ENTRYPOINT). Returns its id.
    pub fn build_upgrader_image(&self, tag: &str, extra: &[&str]) -> String {
        self.upgrader_image(tag, extra, true)
    }

    /// [`TestRun::build_upgrader_image`] without the host's CA
    /// certificates: nothing in the image but the binary, like any bare
    /// `FROM scratch` image a user builds.
    pub fn build_upgrader_image_without_ca_certificates(&self, tag: &str, extra: &[&str]) -> String {
        self.upgrader_image(tag, extra, false)
    }

    fn upgrader_image(&self, tag: &str, extra: &[&str], ca_certificates: bool) -> String {
        let context = tempfile::tempdir_in(self.dir.path()).unwrap_or_else(|e| panic!("build context: {e}"));
        let binary = context.path().join("container-upgrader");
        // A hard link where the build directory shares the file system.
        let source = upgrader_binary();
        fs::hard_link(&source, &binary)
            .or_else(|_| fs::copy(&source, &binary).map(drop))
            .unwrap_or_else(|e| panic!("copying the binary: {e}"));
        let mut lines = vec![
            "FROM scratch".to_string(),
            format!("LABEL {RUN_LABEL}=\"{}\"", self.id()),
            "COPY container-upgrader /container-upgrader".into(),
        ];
        // Like the project's Dockerfile: root certificates for HTTPS registries.
        let certs = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if ca_certificates && fs::copy(certs, context.path().join("ca-certificates.crt")).is_ok() {
            lines.push("COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt".into());
        }
        lines.extend([
            "ENV CONTAINER_UPGRADER_STATE_DIR=/var/lib/container-upgrader".into(),
            r#"ENTRYPOINT ["/container-upgrader"]"#.into(),
        ]);
        lines.extend(extra.iter().map(|l| l.to_string()));
        fs::write(context.path().join("Dockerfile"), lines.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("writing the Dockerfile: {e}"));
        super::process::docker_build(tag, context.path())
    }
}
