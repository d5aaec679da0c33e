//! Per-registry CA certificates, where Docker keeps them:
//! `/etc/docker/certs.d/HOST[:PORT]/*.crt` (`$CONTAINER_UPGRADER_CERTS_D`
//! overrides the directory). A registry with a private CA pulls fine
//! through the engine, which reads them; without them here, every lookup of
//! that registry failed certificate verification.
//!
//! Each registry's CAs are trusted for that registry only (and its token
//! service), never for another: one client per registry that has some.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The most certificate files read for one registry, and the largest one.
const MAX_FILES: usize = 16;
const MAX_FILE: u64 = 1 << 20;

/// Where the per-registry directories are.
pub fn certs_dir() -> PathBuf {
    std::env::var_os("CONTAINER_UPGRADER_CERTS_D")
        .map_or_else(|| PathBuf::from("/etc/docker/certs.d"), PathBuf::from)
}

/// Per registry (`HOST[:PORT]`, the directory's name), its CA certificates
/// as PEM, or why they cannot be used. No directory: none.
pub fn registry_cas(dir: &Path) -> HashMap<String, Result<Vec<reqwest::Certificate>, String>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return HashMap::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let registry = e.file_name().to_str()?.to_string();
            let cas = cas_in(&e.path());
            // A directory holding only client certificates adds no CA.
            (!matches!(&cas, Ok(c) if c.is_empty())).then_some((registry, cas))
        })
        .collect()
}

/// The `*.crt` files of one registry's directory, as Docker reads them
/// (`client.cert`/`client.key` are client certificates, not CAs).
fn cas_in(dir: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    files.truncate(MAX_FILES);
    files
        .iter()
        .map(|path| {
            let unusable = |why: String| format!("the CA file {} is unusable: {why}", path.display());
            let size = std::fs::metadata(path).map_err(|e| unusable(e.to_string()))?.len();
            if size > MAX_FILE {
                return Err(unusable(format!("over {} MiB", MAX_FILE >> 20)));
            }
            let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
            reqwest::Certificate::from_pem(&pem).map_err(|e| unusable(e.to_string()))
        })
        .collect()
}
