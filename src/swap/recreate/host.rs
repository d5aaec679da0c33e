//! The host config: carried whole (every resource limit, capability, device,
//! mount, port binding, log and DNS setting is the user's or the daemon's,
//! never the image's), then the values Docker reports in a form it does not
//! accept back are rewritten, and anonymous volumes are pinned by name.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{ContainerConfig, HostConfig, Mount, MountPoint, MountType};

use super::Namespace;

/// `Err((namespace, peer id))` when a shared namespace's peer is not in `peers`.
pub(super) fn host_config(
    old: &HostConfig,
    cfg: &ContainerConfig,
    mounts: &[MountPoint],
    peers: &HashMap<String, String>,
) -> Result<HostConfig, (Namespace, String)> {
    let mut host = old.clone();
    host.network_mode = by_name(old.network_mode.as_deref(), Namespace::Network, peers)?;
    host.ipc_mode = by_name(old.ipc_mode.as_deref(), Namespace::Ipc, peers)?;
    host.pid_mode = by_name(old.pid_mode.as_deref(), Namespace::Pid, peers)?;
    host.links = old.links.as_ref().map(|l| l.iter().map(|link| legacy_link(link)).collect());
    host.volumes_from = old.volumes_from.as_ref().map(|v| v.iter().map(|f| volumes_from(f, peers)).collect());
    host.mounts = old.mounts.as_ref().map(|m| m.iter().map(|m| pin_mount(m, mounts)).collect());
    let anonymous = anonymous_volume_binds(old, cfg, mounts);
    if !anonymous.is_empty() {
        host.binds.get_or_insert_with(Vec::new).extend(anonymous);
    }
    Ok(host)
}

/// Inspect shows `container:<full id>` even when the user named the peer;
/// the name follows the peer through its own recreation, the id does not.
fn by_name(
    mode: Option<&str>,
    namespace: Namespace,
    peers: &HashMap<String, String>,
) -> Result<Option<String>, (Namespace, String)> {
    let Some(mode) = mode else { return Ok(None) };
    let Some(id) = mode.strip_prefix("container:") else { return Ok(Some(mode.to_string())) };
    let name = peers.get(id).ok_or_else(|| (namespace, id.to_string()))?;
    Ok(Some(format!("container:{}", name.trim_start_matches('/'))))
}

/// Inspect shows a legacy link `--link peer:alias` as `/peer:/me/alias`,
/// which the daemon does not parse back; the create form is `peer:alias`.
///
/// The engine renames a link along with the container it names: after that
/// container's swap, the link names its backup. The new container links to
/// whatever carries the original name, as the user asked.
fn legacy_link(link: &str) -> String {
    let peer = |p: &str| {
        let p = p.trim_start_matches('/');
        crate::swap::names::swapped_name(p).unwrap_or(p).to_string()
    };
    match link.split_once(':') {
        Some((p, alias)) => {
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            format!("{}:{alias}", peer(p))
        }
        None => peer(link),
    }
}

/// `--volumes-from <peer>[:ro|rw]`, by name where the peer was given by id.
fn volumes_from(entry: &str, peers: &HashMap<String, String>) -> String {
    let (peer, mode) = entry.split_once(':').map_or((entry, None), |(p, m)| (p, Some(m)));
    let peer = peers.get(peer).map_or(peer, |name| name.trim_start_matches('/'));
    mode.map_or_else(|| peer.to_string(), |m| format!("{peer}:{m}"))
}

/// A `--mount type=volume` without a source is an anonymous volume: it gets
/// the old container's volume by name, or the new container would start on a
/// fresh empty one.
fn pin_mount(mount: &Mount, mounts: &[MountPoint]) -> Mount {
    let anonymous = mount.typ == Some(MountType::VOLUME) && mount.source.as_deref().is_none_or(str::is_empty);
    let mut mount = mount.clone();
    if anonymous {
        let used = mounts.iter().find(|p| is_volume(p) && p.destination == mount.target);
        if let Some(name) = used.and_then(|p| p.name.clone()) {
            mount.source = Some(name);
        }
    }
    mount
}

fn is_volume(p: &MountPoint) -> bool {
    p.typ.as_deref() == Some("volume")
}

/// `name:/destination[:ro]` binds for the anonymous volumes of `-v /path` and
/// of the image's VOLUME, so their data follows. They are the volume mount
/// points at a `Config.Volumes` path no bind, mount or tmpfs covers; the
/// `Config.Volumes` test leaves out volumes that `--volumes-from` alone
/// brings (those come back through `VolumesFrom`).
fn anonymous_volume_binds(host: &HostConfig, cfg: &ContainerConfig, mounts: &[MountPoint]) -> Vec<String> {
    let covered = covered_destinations(host);
    let declared: BTreeSet<&str> = cfg.volumes.iter().flatten().map(String::as_str).collect();
    let mut binds: Vec<String> = mounts
        .iter()
        .filter(|p| is_volume(p))
        .filter_map(|p| {
            let (name, dest) = (p.name.as_deref()?, p.destination.as_deref()?);
            let anonymous = declared.contains(dest) && !covered.contains(dest) && !name.is_empty();
            let mode = if p.rw == Some(false) { ":ro" } else { "" };
            anonymous.then(|| format!("{name}:{dest}{mode}"))
        })
        .collect();
    binds.sort();
    binds
}

/// Container paths already given a source by binds, mounts or tmpfs.
fn covered_destinations(host: &HostConfig) -> BTreeSet<&str> {
    // A bind is `source:destination[:options]`; Linux paths hold no `:`.
    let binds = host.binds.iter().flatten().filter_map(|b| b.split(':').nth(1));
    let mounts = host.mounts.iter().flatten().filter_map(|m| m.target.as_deref());
    let tmpfs = host.tmpfs.iter().flat_map(HashMap::keys).map(String::as_str);
    binds.chain(mounts).chain(tmpfs).collect()
}
