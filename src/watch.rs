//! Trigger sources besides the timer: the manifest file and Docker events.
//!
//! The file watch is on the manifest's *directory*: editors and `set` (and
//! the API) replace the file by renaming a temporary one over it, which a
//! watch on the file itself would lose after the first rename.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use std::sync::{Arc, RwLock};

use crate::engine::Engine;
use crate::manifest::Manifest;
use crate::swap::scaffold;
use crate::trigger::{Trigger, Triggers};

/// Watches `manifest`'s directory and sends [`Trigger::File`] when an event
/// names the manifest. Keep the returned watcher alive.
pub fn watch_file(manifest: &Path, triggers: Triggers) -> notify::Result<notify::RecommendedWatcher> {
    let file: PathBuf = manifest.file_name().map(PathBuf::from).unwrap_or_default();
    let dir = match manifest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| p.file_name() == Some(file.as_os_str())) {
            // Full means a pass is already due: nothing is lost.
            let _ = triggers.try_send(Trigger::File);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// The manifest in force, shared with the event watcher so it reacts only
/// to containers some target selects.
pub type Current = Arc<RwLock<Option<Manifest>>>;

/// Follows the engine's container events and sends [`Trigger::Docker`] for
/// those that can mean drift on a target: destroyed, died, renamed, created
/// or started (a new container matching a selector shows as `create`). The
/// swap's own temporary, backup and helper containers are ignored.
/// Reconnects with backoff when the stream ends.
pub async fn watch_docker(engine: Engine, current: Current, triggers: Triggers) {
    let mut delay = Duration::from_secs(1);
    loop {
        let result = engine
            .container_events(|action, name, attributes| {
                let labels = || attributes.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                if scaffold::marked(name, labels())
                    || !matches!(action, "destroy" | "die" | "rename" | "create" | "start")
                {
                    return;
                }
                let relevant = current.read().ok().is_some_and(|m| {
                    m.as_ref().is_some_and(|m| m.targets.iter().any(|t| t.select.matches(name, labels())))
                });
                if relevant {
                    let _ = triggers.try_send(Trigger::Docker(format!("{action} {name}")));
                }
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "docker event stream ended; reconnecting");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
