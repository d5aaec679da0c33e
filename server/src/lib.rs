//! The fleet server (`container-upgrader-server`, DESIGN.md §10): agents
//! enrol, long-poll their desired manifest and report; the server keeps
//! every agent's state and history in a database and knows, per target,
//! which newer versions its registry has.
//!
//! One file per concern: [`store`] (the database and its migrations),
//! [`enrolment`], [`desired`], [`reports`], [`versions`], [`agents`] (the
//! admin's view), [`api`] (the routes), [`page`] (the admin's web page),
//! [`notify`] (events to webhooks, Slack and ntfy).
//! Both sides of the agent wire speak [`protocol`], which lives in the
//! controller's library (`container_upgrader::protocol`) with the manifest
//! validation the server runs: one copy, nothing copied.

pub mod access;
pub mod agents;
pub mod api;
pub mod bounds;
pub mod campaign;
pub mod desired;
mod enrol_queue;
pub mod enrolment;
mod error;
pub mod guard;
pub mod notify;
pub mod page;
pub use container_upgrader::protocol;
pub mod replicas;
pub mod reports;
pub mod routes;
pub mod secret;
pub mod signatures;
pub mod state;
pub mod store;
pub mod versions;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::FleetError;
pub use store::Store;

use container_upgrader::serve::Limits;

/// Connections the server holds by default: a thousand agents' long-polls
/// and room to spare, within a raised descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Connections one source address (an IPv6 /64) may hold by default: a
/// sixteenth of the default cap, so one host cannot take every slot, and
/// room for 250 agents behind one NAT address. Behind a load balancer or
/// proxy (every connection from its address) set 0.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// The server's connection bounds: keep-alive (agents poll back to back),
/// requests up to a long-poll plus slack, idle connections closed after
/// a little more than the longest poll, bodies at the shared pace.
pub fn limits(max_connections: usize, max_per_address: usize) -> Limits {
    Limits {
        max_connections,
        max_per_address,
        first_byte: Duration::from_secs(10),
        header: Duration::from_secs(10),
        request: Duration::from_secs(protocol::MAX_WAIT_SECS + 30),
        keep_alive: true,
        idle: Duration::from_secs(protocol::MAX_WAIT_SECS + 15),
        body: container_upgrader::serve::DEFAULT_BODY_PACE,
    }
}

/// How often agents' history is pruned to `--history-max-events` and
/// `--history-max-age`.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Prunes every agent's history and the audit log now and every
/// [`PRUNE_EVERY`].
async fn prune_history(store: Store, keep: bounds::Retention, audit_max_age: Duration) {
    loop {
        match store.prune_history(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "agents' history pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning agents' history failed; trying again later"),
        }
        match store.prune_audit(audit_max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "audit log pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed; trying again later"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// How `container-upgrader-server` is set up.
#[derive(Clone)]
pub struct ServerConfig {
    /// The database URL (`sqlite://PATH`, `postgres://…`).
    pub db_url: String,
    /// The admin bearer token.
    pub admin_token: String,
    /// PEM certificate chain and private key, for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Missed polls before an agent counts as offline.
    pub offline_after: u32,
    /// The version checker's settings.
    pub checker: versions::CheckerConfig,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one source address may hold (0: no cap).
    pub max_connections_per_address: usize,
    /// The admin password's argon2 PHC hash, for the page's login.
    pub admin_password_hash: Option<String>,
    /// How much of each agent's history is kept.
    pub history: bounds::Retention,
    /// How long audit rows are kept.
    pub audit_max_age: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The sinks of `--notifications-file`, read and checked; `None`
    /// without the flag (every sink stays as it was, with a warning about
    /// those a file declared).
    pub notification_sinks: Option<Vec<notify::catalog::NewSink>>,
    /// An agent unseen this long is notified as offline.
    pub notify_offline_after: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("db_url", &store::redacted(&self.db_url))
            .field("admin_token", &"<redacted>")
            .field("tls", &self.tls)
            .field("offline_after", &self.offline_after)
            .field("checker", &self.checker)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_address", &self.max_connections_per_address)
            .field("admin_password", &self.admin_password_hash.is_some())
            .field("audit_max_age", &self.audit_max_age)
            .field("notification_sinks", &self.notification_sinks)
            .field("notify_offline_after", &self.notify_offline_after)
            .finish()
    }
}

/// Loads a rustls acceptor from PEM files.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<container_upgrader::serve::Tls, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    container_upgrader::tls::ensure_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}; expected PEM certificates", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}; expected a PEM private key", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Runs the server on `listener` until `shutdown` completes: opens (and
/// migrates) the database, starts the version checker, serves.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // The manifests here are the agents': a key file they name is on their
    // host, never a file of this machine to open.
    container_upgrader::manifest::verify::key_files_are_elsewhere();
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let store = Store::open(&config.db_url)
        .await
        .map_err(|e| e.to_string())?
        .with_offline_after(config.offline_after);
    store.restore_holds().await.map_err(|e| e.to_string())?;
    match &config.notification_sinks {
        Some(sinks) => {
            store.sync_file_sinks(sinks).await.map_err(|e| format!("--notifications-file: {e}"))?
        }
        None => {
            // Kept, not dropped with their queues: a start without the flag
            // may be a mistake. A file without them removes them.
            let sinks = store.sinks().await.map_err(|e| e.to_string())?;
            let filed: Vec<&str> = sinks
                .iter()
                .filter(|s| s.source == notify::catalog::Source::File)
                .map(|s| s.name.as_str())
                .collect();
            if !filed.is_empty() {
                tracing::warn!(sinks = ?filed, "notification sinks of a --notifications-file are kept, though this server was started without one; start with a file that leaves them out to remove them");
            }
        }
    }
    let new_repository = Arc::new(tokio::sync::Notify::new());
    // One version checker and one campaign runner across every replica on
    // the same database: each runs only on the server holding its lease.
    let checker = {
        let (store, checker, new_repository) =
            (store.clone(), config.checker.clone(), new_repository.clone());
        tokio::spawn(store.clone().lead("version-checker", move || {
            versions::run_checker(store.clone(), checker.clone(), new_repository.clone())
        }))
    };
    let campaigns = {
        let store = store.clone();
        tokio::spawn(store.clone().lead("campaign-runner", move || campaign::runner::run(store.clone())))
    };
    let listener_task = tokio::spawn(store.clone().listen_for_replicas());
    let pruner = tokio::spawn(prune_history(store.clone(), config.history, config.audit_max_age));
    // One deliverer and one presence scan across every replica: a sink
    // gets each event from one server (a takeover may repeat the head,
    // which its idempotency key makes harmless), and an offline agent is
    // told once.
    let notifier = {
        let store = store.clone();
        tokio::spawn(store.clone().lead("notifier", move || notify::deliver::run(store.clone())))
    };
    let presence = {
        let (store, after) = (store.clone(), config.notify_offline_after);
        tokio::spawn(store.clone().lead("presence", move || notify::offline::run(store.clone(), after)))
    };
    let state = state::FleetState {
        store: store.clone(),
        admin_token: Arc::from(config.admin_token.as_str()),
        offline_after: config.offline_after,
        new_repository,
        page: state::PageConfig {
            secure_cookies: tls.is_some(),
            password_hash: config.admin_password_hash.as_deref().map(Arc::from),
            credential: Arc::from(page::session::credential_fingerprint(
                &config.admin_token,
                config.admin_password_hash.as_deref(),
            )),
            ..state::PageConfig::default()
        },
        registry: Some(config.checker.clone()),
        guards: guard::Guards::default(),
        trusted_proxies: Arc::from(config.trusted_proxies.as_slice()),
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, tls = tls.is_some(), db = %store::redacted(&config.db_url), "fleet server listening");
    let served = container_upgrader::serve::serve(
        listener,
        routes::router(state),
        limits(config.max_connections, config.max_connections_per_address),
        tls,
        shutdown,
    )
    .await;
    store.stop_polls();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = checker.await;
        let _ = campaigns.await;
    })
    .await;
    listener_task.abort();
    pruner.abort();
    notifier.abort();
    presence.abort();
    store.close().await;
    served.map_err(|e| format!("serving on {addr}: {e}"))
}
