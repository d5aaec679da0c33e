//! Which certificates the HTTP clients (registry, webhook) trust.
//!
//! The system's CA store comes first, as for any program on the host
//! (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured). Where there is none —
//! any `FROM scratch` image built without `/etc/ssl/certs` — the clients
//! would not even build, and a plain-HTTP registry or webhook, which needs
//! no certificate at all, would be unreachable too. So a client that cannot
//! be built on the system store is built on the web PKI roots compiled into
//! the binary (Mozilla's, from `webpki-root-certs`): the binary works in
//! any image.

use std::fmt::Display;

/// Where a client's trusted certificates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The system's CA store (the clients' default).
    System,
    /// Only the web PKI roots bundled in the binary.
    Bundled,
}

/// The bundled roots, each one DER-encoded certificate.
pub fn bundled() -> impl Iterator<Item = &'static [u8]> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|cert| cert.as_ref())
}

/// Builds a client with the system's roots, or, when that fails (no CA
/// certificates found), with the bundled ones. `Err` says why neither
/// worked.
pub fn build<C, E: Display>(what: &str, mut build: impl FnMut(Roots) -> Result<C, E>) -> Result<C, String> {
    ensure_crypto_provider();
    let system = match build(Roots::System) {
        Ok(client) => return Ok(client),
        Err(e) => e.to_string(),
    };
    match build(Roots::Bundled) {
        Ok(client) => {
            tracing::info!(client = what, reason = %system, "system CA certificates unusable; trusting the bundled web PKI roots");
            Ok(client)
        }
        Err(e) => Err(format!("cannot build the {what}: {system}; with the bundled roots: {e}")),
    }
}

/// A reqwest client as `configure` sets it up, trusting the system's roots
/// or else the bundled ones (see [`build`]).
pub fn http_client(
    what: &str,
    configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, String> {
    build(what, |roots| trusting(configure(reqwest::Client::builder()), roots).build())
}

/// `builder`, trusting `roots`.
fn trusting(builder: reqwest::ClientBuilder, roots: Roots) -> reqwest::ClientBuilder {
    match roots {
        Roots::System => builder,
        Roots::Bundled => {
            builder.tls_certs_only(bundled().filter_map(|der| reqwest::Certificate::from_der(der).ok()))
        }
    }
}

/// Whether a client trusting the system's CA store can be built here (no
/// store in a bare `FROM scratch` image); asked once per process.
pub fn system_roots_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        ensure_crypto_provider();
        reqwest::Client::builder().build().is_ok()
    })
}

/// Installs ring as rustls' process-wide crypto provider. reqwest is built
/// without a default provider (to avoid aws-lc); every client needs this
/// first, and a second call is harmless.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_roots_are_certificates_a_client_accepts() {
        assert!(bundled().count() > 100, "a real web PKI set");
        assert!(bundled().all(|der| reqwest::Certificate::from_der(der).is_ok()));
        ensure_crypto_provider();
        let client = trusting(reqwest::Client::builder(), Roots::Bundled).build();
        assert!(client.is_ok(), "{client:?}");
    }

    #[test]
    fn the_bundled_roots_are_tried_when_the_system_store_fails() {
        let mut tried = Vec::new();
        let built = build("test client", |roots| {
            tried.push(roots);
            if roots == Roots::System {
                Err("No CA certificates were loaded from the system")
            } else {
                Ok(7)
            }
        });
        assert_eq!(built, Ok(7));
        assert_eq!(tried, [Roots::System, Roots::Bundled]);

        let failed = build("test client", |_| Err::<(), _>("broken"));
        assert_eq!(
            failed,
            Err("cannot build the test client: broken; with the bundled roots: broken".into())
        );
    }
}
