//! Which container am I? The controller must know its own container to
//! upgrade itself through a helper instead of stopping itself mid-swap.
//!
//! Tried in order: an explicit id (flag or `CONTAINER_UPGRADER_SELF_ID`);
//! `/proc/self/mountinfo`, where the engine's per-container files
//! (`/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`) are bind-mounted from
//! `…/containers/<id>/` — this works under cgroup v1 and v2, with or
//! without a cgroup namespace; `/proc/self/cgroup` (cgroup v1 paths such as
//! `/docker/<id>`); then the hostname, which Docker sets to the short id
//! unless told otherwise. Every candidate is confirmed with the engine by
//! the caller: a guess that does not inspect is not an identity.

use std::fs;

/// Candidates for this process's container id, best first. Empty outside a
/// container (the caller then knows it is not containerised).
pub fn candidates(explicit: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(id) = explicit.filter(|s| !s.is_empty()) {
        out.push(id.to_string());
    }
    if let Ok(text) = fs::read_to_string("/proc/self/mountinfo") {
        out.extend(from_mountinfo(&text));
    }
    if let Ok(text) = fs::read_to_string("/proc/self/cgroup") {
        out.extend(from_cgroup(&text));
    }
    if let Ok(name) = fs::read_to_string("/etc/hostname") {
        out.extend(from_hostname(&name));
    }
    out.dedup();
    out
}

/// The id in `…/containers/<64 hex>/…` on a line mounting one of the
/// engine's per-container files.
pub fn from_mountinfo(text: &str) -> Option<String> {
    text.lines()
        .filter(|line| ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"].iter().any(|f| line.contains(f)))
        .find_map(|line| line.split("/containers/").nth(1).and_then(leading_id))
}

/// The last 64-hex path component of a cgroup v1 line (`/docker/<id>`,
/// `/system.slice/docker-<id>.scope`).
pub fn from_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.rsplit('/').find_map(|part| {
            let part = part.strip_prefix("docker-").unwrap_or(part);
            let part = part.strip_suffix(".scope").unwrap_or(part);
            leading_id(part).filter(|id| id.len() == part.len())
        })
    })
}

/// Docker's default hostname is the 12-character short id.
pub fn from_hostname(name: &str) -> Option<String> {
    let name = name.trim();
    (name.len() == 12 && name.bytes().all(|b| b.is_ascii_hexdigit())).then(|| name.to_string())
}

/// The 64 lowercase hex characters at the start of `s`, if there are.
fn leading_id(s: &str) -> Option<String> {
    let id = s.get(..64)?;
    id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8882a99aa3d77728127ae8309cda849d74951151b0653b5e615a4a25061cbe95";

    #[test]
    fn mountinfo_gives_the_id_under_cgroup_v1_and_v2() {
        let text = format!(
            "1021 1001 0:56 / / rw,relatime master:1 - overlay overlay rw\n\
             1040 1021 8:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw\n\
             1041 1021 8:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(from_mountinfo(&text).as_deref(), Some(ID));
        // A volume that happens to live under a `containers` path is not the answer.
        let decoy = "50 1 8:1 /data/containers/notanid/x /data rw - ext4 /dev/sda1 rw\n";
        assert_eq!(from_mountinfo(decoy), None);
    }

    #[test]
    fn cgroup_v1_paths_give_the_id_and_v2_root_gives_none() {
        assert_eq!(from_cgroup(&format!("12:memory:/docker/{ID}\n")).as_deref(), Some(ID));
        assert_eq!(
            from_cgroup(&format!("1:name=systemd:/system.slice/docker-{ID}.scope\n")).as_deref(),
            Some(ID)
        );
        assert_eq!(from_cgroup("0::/\n"), None, "cgroup v2 with a namespace shows only /");
        assert_eq!(from_cgroup("9:name=systemd:/\n"), None);
    }

    #[test]
    fn hostname_counts_only_when_it_looks_like_a_short_id() {
        assert_eq!(from_hostname("8882a99aa3d7\n").as_deref(), Some("8882a99aa3d7"));
        assert_eq!(from_hostname("my-agent"), None);
    }

    #[test]
    fn the_explicit_id_comes_first() {
        let c = candidates(Some("abc"));
        assert_eq!(c.first().map(String::as_str), Some("abc"));
    }
}
