//! A throw-away PostgreSQL cluster for the fleet server's tests: Debian's
//! `postgresql` binaries, `initdb` into a temp directory and `pg_ctl
//! start` on a free loopback port, as the `postgres` user when the tests
//! run as root (PostgreSQL refuses to run as root). Dropping it stops the
//! cluster (immediate mode) and removes the directory, also on a panic.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::expect_success;

const PG_TIMEOUT: Duration = Duration::from_secs(120);

/// A running cluster; `url` connects to its `postgres` database.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
}

/// The newest installed server's bin directory (`/usr/lib/postgresql/N/bin`),
/// else where `initdb` is on the PATH.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let found = Command::new("sh").args(["-c", "command -v initdb"]).output().ok();
    let path = found.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    match Path::new(&path).parent() {
        Some(dir) if !path.is_empty() => dir.to_path_buf(),
        _ => {
            panic!("PostgreSQL's initdb was not found: install Debian's `postgresql` (.ci/install-deps does)")
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `bin/TOOL ARGS`, as `postgres` when we are root.
fn pg(bin: &Path, tool: &str, args: &[&str]) -> Command {
    let exe = bin.join(tool);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(exe).args(args);
        cmd
    } else {
        let mut cmd = Command::new(exe);
        cmd.args(args);
        cmd
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

impl TestPostgres {
    /// initdb + start; panics with the tool's output when either fails.
    pub fn start() -> TestPostgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("container-upgrader-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir for PostgreSQL: {e}"));
        if is_root() {
            expect_success(
                Command::new("chown").args(["postgres:postgres"]).arg(dir.path()),
                "chown the PostgreSQL dir",
                PG_TIMEOUT,
            );
        }
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().to_string();
        expect_success(
            &mut pg(&bin, "initdb", &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"]),
            "initdb",
            PG_TIMEOUT,
        );
        let port = free_port();
        let socket_dir = dir.path().to_string_lossy().to_string();
        let options = format!("-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = dir.path().join("postgres.log").to_string_lossy().to_string();
        expect_success(
            &mut pg(&bin, "pg_ctl", &["-D", &data_s, "-o", &options, "-l", &log, "-w", "-t", "60", "start"]),
            "pg_ctl start",
            PG_TIMEOUT,
        );
        TestPostgres { dir, bin, url: format!("postgres://postgres@127.0.0.1:{port}/postgres") }
    }
}

impl TestPostgres {
    /// Runs one SQL statement with `psql`; its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let local = self.bin.join("psql");
        let mut cmd = Command::new(if local.exists() { local } else { PathBuf::from("psql") });
        cmd.args(["-X", "-A", "-t", "-d", &self.url, "-c", sql]);
        let out = expect_success(&mut cmd, "psql", PG_TIMEOUT);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").to_string_lossy().to_string();
        let _ = pg(&self.bin, "pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
