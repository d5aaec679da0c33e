//! Removal of everything carrying a run's label, for `TestRun`'s `Drop`.

use super::process::try_docker;

/// Removes every object matching `filter`; returns what failed.
pub(super) fn remove_labelled(filter: &str) -> Vec<String> {
    let mut failures = Vec::new();
    // Services before anything: their tasks are containers Swarm restarts.
    super::swarm::remove_services(filter, &mut failures);
    let anonymous = anonymous_volumes(filter);
    // Containers first: networks, volumes and images in use cannot go.
    remove(&["ps", "-aq"], filter, &["rm", "-f", "-v"], &mut failures);
    // Anonymous volumes carry no label; `rm -v` misses those a container
    // mounted by name (as a recreation may do), so remove them explicitly.
    // `volume rm` refuses volumes still used elsewhere, so this is safe.
    if !anonymous.is_empty() {
        let names = anonymous.iter().map(String::as_str);
        let args: Vec<&str> = ["volume", "rm"].into_iter().chain(names).collect();
        let _ = try_docker(&args);
    }
    remove(&["network", "ls", "-q"], filter, &["network", "rm"], &mut failures);
    remove(&["volume", "ls", "-q"], filter, &["volume", "rm", "-f"], &mut failures);
    // Tagged images first: removing them also removes their untagged
    // intermediates, so the `-a` pass only sees leftovers.
    remove(&["images", "-q"], filter, &["rmi", "-f"], &mut failures);
    remove(&["images", "-aq"], filter, &["rmi", "-f"], &mut failures);
    failures
}

/// Volumes with a 64-hex name (Docker's anonymous volumes) mounted by the
/// run's containers.
fn anonymous_volumes(filter: &str) -> Vec<String> {
    let ids = try_docker(&["ps", "-aq", "--filter", filter]).unwrap_or_default();
    if ids.is_empty() {
        return Vec::new();
    }
    let format = "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}";
    let mut args = vec!["inspect", "-f", format];
    args.extend(ids.split_whitespace());
    let names = try_docker(&args).unwrap_or_default();
    names
        .split_whitespace()
        .filter(|name| name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()))
        .map(String::from)
        .collect()
}

/// Lists ids with `list --filter <filter>`, then passes them to `remove`.
fn remove(list: &[&str], filter: &str, remove: &[&str], failures: &mut Vec<String>) {
    let list: Vec<&str> = list.iter().copied().chain(["--filter", filter]).collect();
    let listed = match try_docker(&list) {
        Ok(listed) => listed,
        Err(e) => {
            failures.push(e);
            return;
        }
    };
    // `docker images` prints an id once per tag.
    let mut ids: Vec<&str> = listed.split_whitespace().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let args: Vec<&str> = remove.iter().copied().chain(ids).collect();
    if let Err(e) = try_docker(&args) {
        failures.push(e);
    }
}
