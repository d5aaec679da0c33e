//! `container-upgrader-server [serve]`: the fleet server (DESIGN.md §10).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use container_upgrader::cli_support::{read_secret, read_token, SecretFile};
use container_upgrader::err;
use container_upgrader::manifest::Dur;
use container_upgrader_server::{self as fleet, versions::CheckerConfig, ServerConfig};
use tokio::signal::unix::{signal, SignalKind};

use super::{exit, state, Failure};

/// `serve`'s flags (also taken with no command at all).
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The database: `sqlite://PATH` or `postgres://USER@HOST/DB` (default:
    /// the SQLite file `fleet.db` in --state-dir).
    #[arg(long, value_name = "URL", env = "CONTAINER_UPGRADER_SERVER_DB")]
    db: Option<String>,
    /// A file holding the PostgreSQL password, put into --db's URL (which
    /// then names no password of its own): the password stays out of the
    /// command line, the environment and `docker inspect`.
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_SERVER_DB_PASSWORD_FILE", requires = "db")]
    db_password_file: Option<PathBuf>,
    /// Where the default SQLite database and the generated admin token
    /// live (created 0700). Default: /var/lib/container-upgrader-server
    /// for root, else $XDG_STATE_HOME (~/.local/state)/container-upgrader-server.
    #[arg(long, value_name = "DIR", env = "CONTAINER_UPGRADER_SERVER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// A file holding the admin bearer token (at least 16 characters).
    /// Never pass the token itself. Without it the server uses
    /// STATE_DIR/admin.token, created with a random token on the first
    /// start.
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// A file holding the argon2 PHC hash (`$argon2id$v=19$…`) of an admin
    /// password for the page's login (the admin token works there too).
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    /// PEM certificate chain, to serve HTTPS (with --tls-key).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// An agent is offline after this many missed polls.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    offline_after: u32,
    /// Time between listings of every repository's tags.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    version_check_interval: Dur,
    /// A registry (host[:port]) to reach over plain HTTP. Loopback
    /// registries always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// Time one registry request may take.
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    registry_timeout: Dur,
    /// Ask only this registry (host or host:port) for versions and digests;
    /// others are "not allowed" without a request. Repeatable; without it,
    /// any registry an agent's manifest names (never link-local addresses).
    #[arg(long = "registry-allow", value_name = "HOST[:PORT]")]
    registry_allow: Vec<String>,
    /// Run only signed images: a cosign public key (PEM, ECDSA P-256 or
    /// Ed25519). Repeatable (a signature by any one is enough: list the
    /// old and the new key to rotate). A campaign whose digest no listed
    /// key signed is refused at creation, and the page marks each version
    /// signed or unsigned.
    #[arg(long = "verify-key", value_name = "PATH")]
    verify_key: Vec<PathBuf>,
    /// Connections served at once (each agent holds one).
    #[arg(long, value_name = "N", default_value_t = fleet::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Op events kept per agent (its history), newest first.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    history_max_events: u32,
    /// Op events older than this are dropped (`90d`, `2w`, `12h`).
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = long_duration)]
    history_max_age: std::time::Duration,
    /// A load balancer or proxy in front (IP or CIDR; repeatable) whose
    /// `X-Forwarded-For` header names the client: login limits and the
    /// audit log then see the client's address, not the proxy's. Others'
    /// headers are ignored.
    #[arg(long = "trusted-proxy", value_name = "IP[/PREFIX]", value_parser = trusted_proxy)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Audit log rows older than this are dropped (`365d`, `2y`).
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = long_duration)]
    audit_max_age: std::time::Duration,
    /// Connections one client address (an IPv6 /64) may hold at once;
    /// more are closed on accept, so one host cannot take every slot.
    /// Raise it when many agents share one NAT address; 0 turns it off
    /// (behind a load balancer or proxy, where every connection comes
    /// from its address: limit per client there).
    #[arg(long, value_name = "N", default_value_t = fleet::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)]
    max_connections_per_address: usize,
    /// A YAML file declaring notification sinks (webhook, slack, ntfy;
    /// see the README). Synced at every start; a bad file stops the
    /// server. Sinks added on the page stay beside them.
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_NOTIFICATIONS_FILE")]
    notifications_file: Option<PathBuf>,
    /// Tell the notification sinks about an agent not seen for longer
    /// than this (once per offline episode, and when it is back).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = offline_duration)]
    notify_offline_after: std::time::Duration,
}

/// `--notify-offline-after`: at least a second.
fn offline_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}`: {e}; expected a duration like 10m or 1h"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("`{s}`: at least 1s"));
    }
    Ok(d)
}

/// `IP` or `IP/PREFIX`.
fn trusted_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an IP address or CIDR (10.0.0.5, 10.0.0.0/24, fd00::/64)"))
}

/// A duration of hours to years (`90d`, `2w`), at least a minute.
fn long_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}`: {e}; expected a duration like 90d, 2w or 12h"))?;
    if d < std::time::Duration::from_secs(60) {
        return Err(format!("`{s}`: at least 1m"));
    }
    Ok(d)
}

/// Runs the server until SIGTERM or SIGINT.
pub(crate) async fn serve(args: ServeArgs) -> Result<u8, Failure> {
    let state_dir = args.state_dir.clone().unwrap_or_else(state::default_state_dir);
    let admin_token = match &args.admin_token_file {
        Some(path) => read_token(path, "--admin-token-file")?,
        None => state::admin_token(&state_dir)?,
    };
    let usage = |m: String| Failure::new(exit::USAGE, format!("error: {m}"));
    let admin_password_hash = match &args.admin_password_file {
        Some(path) => {
            let kind = SecretFile { what: "password hash", min_len: 1, trim: true };
            let phc = read_secret(path, "--admin-password-file", &kind)?;
            fleet::page::login::check_password_hash(&phc)
                .map_err(|e| usage(format!("--admin-password-file {}: {e}", path.display())))?;
            Some(phc)
        }
        None => None,
    };
    let notification_sinks = match &args.notifications_file {
        Some(path) => Some(fleet::notify::config::load(path).map_err(usage)?),
        None => None,
    };
    let verify_keys = fleet::signatures::read_keys(&args.verify_key).map_err(usage)?;
    if args.version_check_interval.is_zero() {
        return Err(usage("--version-check-interval must be more than zero".into()));
    }
    if args.max_connections == 0 {
        return Err(usage("--max-connections must be at least 1".into()));
    }
    let db_url = match args.db {
        Some(url)
            if url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://") =>
        {
            match &args.db_password_file {
                Some(path) => {
                    let kind = SecretFile { what: "password", min_len: 1, trim: false };
                    with_password(&url, &read_secret(path, "--db-password-file", &kind)?).map_err(usage)?
                }
                None => url,
            }
        }
        Some(_) => return Err(usage("--db: expected sqlite://PATH or postgres://…".into())),
        None => {
            container_upgrader::private_fs::ensure_private_dir(&state_dir).map_err(|e| {
                Failure::new(exit::INTERNAL, format!("error: --state-dir {}: {e}", state_dir.display()))
            })?;
            let file = state_dir.join("fleet.db");
            // SQLite gives its -wal and -shm files the database file's mode:
            // create it 0600 first so none of them is readable by others.
            if !file.exists() {
                container_upgrader::private_fs::create_private(&file).map_err(|e| {
                    Failure::new(exit::INTERNAL, format!("error: creating {}: {e}", file.display()))
                })?;
            }
            fleet::store::sqlite_url(&file)
        }
    };
    let config = ServerConfig {
        db_url,
        admin_token,
        tls: args.tls_cert.zip(args.tls_key),
        offline_after: args.offline_after,
        checker: CheckerConfig {
            interval: args.version_check_interval.0,
            insecure: args.insecure,
            timeout: args.registry_timeout.0,
            allow: args.registry_allow,
            verify_keys,
        },
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        admin_password_hash,
        history: fleet::bounds::Retention {
            max_events: args.history_max_events,
            max_age: args.history_max_age,
        },
        audit_max_age: args.audit_max_age,
        trusted_proxies: args.trusted_proxies,
        notification_sinks,
        notify_offline_after: args.notify_offline_after,
    };
    warn_if_few_descriptors(args.max_connections);
    let listener = listen(args.listen)
        .map_err(|e| Failure::new(exit::INTERNAL, format!("error: --listen {}: {e}", args.listen)))?;
    let fail =
        |e: std::io::Error| Failure::new(exit::INTERNAL, format!("error: installing signal handlers: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(fail)?;
    let mut int = signal(SignalKind::interrupt()).map_err(fail)?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    if config.tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "serving plain HTTP beyond loopback: put a TLS proxy in front or use --tls-cert");
    }
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    err!("fleet server on {scheme}://{}, database {}", args.listen, fleet::store::redacted(&config.db_url));
    fleet::run(listener, config, shutdown)
        .await
        .map_err(|e| Failure::new(exit::INTERNAL, format!("error: {e}")))?;
    Ok(exit::OK)
}

/// Connections the kernel queues before the server accepts them (capped by
/// `net.core.somaxconn`). tokio's default of 1024 overflowed under a
/// connect flood, and a dropped SYN costs a legitimate client a second.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `postgres://USER@HOST/DB` with `password` put in, percent-encoded.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| s.starts_with("postgres")) else {
        return Err("--db-password-file goes with a postgres:// --db".into());
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some((user, host)) = rest[..authority_end].rsplit_once('@') else {
        return Err("--db: name the user (postgres://USER@HOST/DB) for --db-password-file".into());
    };
    if user.contains(':') {
        return Err("--db already holds a password; give it in one place only".into());
    }
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}{}", &rest[authority_end..]))
}

/// Descriptors beyond the connections: the database, logs, registry calls.
const SPARE_DESCRIPTORS: u64 = 64;

/// Warns when the process may open fewer files than `--max-connections`
/// needs (a default soft limit of 1024 serves about 950 agents; past it
/// accepts fail). Read from /proc, since raising the limit needs `unsafe`.
fn warn_if_few_descriptors(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else { return };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<u64>().ok());
    let wanted = max_connections as u64 + SPARE_DESCRIPTORS;
    if let Some(soft) = soft.filter(|s| *s < wanted) {
        err!(
            "warning: the open-file limit is {soft}, below --max-connections {max_connections} + {SPARE_DESCRIPTORS}; \
             raise it (ulimit -n {wanted}, systemd LimitNOFILE=, docker --ulimit nofile={wanted}) or lower --max-connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::with_password;

    #[test]
    fn the_password_file_goes_into_the_url_encoded() {
        assert_eq!(
            with_password("postgres://fleet@db:5432/fleet?sslmode=disable", "p@ss/w:rd").as_deref(),
            Ok("postgres://fleet:p%40ss%2Fw%3Ard@db:5432/fleet?sslmode=disable")
        );
        assert_eq!(with_password("postgresql://u@h", "x").as_deref(), Ok("postgresql://u:x@h"));
    }

    #[test]
    fn a_url_without_a_user_or_with_a_password_is_refused() {
        assert!(with_password("postgres://db/fleet", "x").is_err());
        assert!(with_password("postgres://u:old@db/fleet", "x").is_err());
        assert!(with_password("sqlite:///tmp/x", "x").is_err());
    }
}
