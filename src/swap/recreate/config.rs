//! Telling the user's config values from those the old image supplied.
//!
//! At create the daemon merges the image config into the container config
//! (ENV by key, LABEL by key, EXPOSE and VOLUME as sets, CMD, ENTRYPOINT,
//! WORKDIR, USER, STOPSIGNAL and HEALTHCHECK fields when unset), and
//! `docker inspect` shows the merged result. Undoing that merge against the
//! old image leaves what the user set; the new image's defaults then come
//! from the same merge when the new container is created.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{ContainerConfig, HealthConfig, HostConfig, ImageConfig};

/// `Some` for a non-empty string: inspect reports unset strings as `""`.
pub(super) fn non_empty(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_string)
}

fn non_empty_list(v: Option<&[String]>) -> Option<&[String]> {
    v.filter(|l| !l.is_empty())
}

/// The container's value unless it is the image's (then the new image's
/// default applies).
pub(super) fn unless_default(container: Option<&str>, image: Option<&str>) -> Option<String> {
    let c = non_empty(container);
    (c != non_empty(image)).then_some(c).flatten()
}

/// As [`unless_default`], for list values.
pub(super) fn unless_default_list(
    container: Option<&[String]>,
    image: Option<&[String]>,
) -> Option<Vec<String>> {
    let c = non_empty_list(container);
    (c != non_empty_list(image)).then_some(c).flatten().map(<[String]>::to_vec)
}

/// The hostname, unless it is Docker's default (the short id) or the
/// container shares another's network namespace, where the daemon refuses a
/// hostname ("conflicting options: hostname and the network mode") and
/// reports the container's own short id.
pub(super) fn hostname(hostname: Option<&str>, short_id: &str, shares_network: bool) -> Option<String> {
    non_empty(hostname).filter(|h| h != short_id && !shares_network)
}

/// The entries of a merged list (ENV, VOLUME) that the image did not supply.
/// ENV compares whole `KEY=value` entries, so a user value shadowing an
/// image default is kept.
pub(super) fn user_entries(container: Option<&[String]>, image: Option<&[String]>) -> Option<Vec<String>> {
    let image: BTreeSet<&str> = image.unwrap_or_default().iter().map(String::as_str).collect();
    let kept: Vec<String> =
        container.unwrap_or_default().iter().filter(|e| !image.contains(e.as_str())).cloned().collect();
    (!kept.is_empty()).then_some(kept)
}

/// Labels the image did not supply with the same value. The swap's own
/// op label is the tool's, not the user's: the next swap sets its own.
pub(super) fn user_labels(
    container: Option<&HashMap<String, String>>,
    image: Option<&HashMap<String, String>>,
) -> Option<HashMap<String, String>> {
    let from_image = |k: &String, v: &String| image.and_then(|i| i.get(k)) == Some(v);
    let kept: HashMap<String, String> = container
        .into_iter()
        .flatten()
        .filter(|(k, v)| !from_image(k, v) && k.as_str() != crate::swap::OP_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// A list in a stable order: the bollard model turns JSON objects such as
/// `ExposedPorts` and `Volumes` into lists in hash order.
pub(super) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// `(Entrypoint, Cmd)`. When the user sets `--entrypoint`, Docker does not
/// take the image's CMD: the container's CMD is then the user's (or none)
/// even where it equals the image's, and is carried as it is. That reset is
/// also how a user `--entrypoint` equal to the image's shows: no CMD where
/// the image has one. An ENTRYPOINT the user cleared (`--entrypoint ""`)
/// shows as none and is sent as `[""]`, Docker's "no entrypoint".
pub(super) fn command(c: &ContainerConfig, img: &ImageConfig) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let (entrypoint, image_entrypoint) =
        (non_empty_list(c.entrypoint.as_deref()), non_empty_list(img.entrypoint.as_deref()));
    let (cmd, image_cmd) = (non_empty_list(c.cmd.as_deref()), non_empty_list(img.cmd.as_deref()));
    let cmd_was_reset = cmd.is_none() && image_cmd.is_some();
    if entrypoint != image_entrypoint || cmd_was_reset {
        let entrypoint = entrypoint.map_or_else(|| vec![String::new()], <[String]>::to_vec);
        return (Some(entrypoint), cmd.map(<[String]>::to_vec));
    }
    (None, unless_default_list(cmd, image_cmd))
}

/// The healthcheck fields the user overrode. Docker fills each unset field
/// from the image, so each is compared on its own: an override of the
/// interval alone keeps the new image's test command.
pub(super) fn healthcheck(c: Option<&HealthConfig>, img: Option<&HealthConfig>) -> Option<HealthConfig> {
    let c = c?;
    let img = img.cloned().unwrap_or_default();
    // 0 means "inherit" for every duration and count.
    let own = |v: Option<i64>, i: Option<i64>| v.filter(|&v| v != 0 && Some(v) != i);
    let kept = HealthConfig {
        test: unless_default_list(c.test.as_deref(), img.test.as_deref()),
        interval: own(c.interval, img.interval),
        timeout: own(c.timeout, img.timeout),
        retries: own(c.retries, img.retries),
        start_period: own(c.start_period, img.start_period),
        start_interval: own(c.start_interval, img.start_interval),
    };
    (kept != HealthConfig::default()).then_some(kept)
}

/// Ports the user exposed, plus every published port: a port in
/// `PortBindings` must stay exposed even when only the old image exposed it.
/// None in a shared network namespace, where the daemon refuses exposed
/// ports ("conflicting options: port exposing and the container type
/// network mode") and inspect shows only the image's.
pub(super) fn exposed_ports(
    c: &ContainerConfig,
    img: &ImageConfig,
    host: &HostConfig,
    shares_network: bool,
) -> Option<Vec<String>> {
    if shares_network {
        return None;
    }
    let user = user_entries(c.exposed_ports.as_deref(), img.exposed_ports.as_deref()).unwrap_or_default();
    let published = host.port_bindings.iter().flat_map(HashMap::keys).cloned();
    let all = sorted(user.into_iter().chain(published).collect());
    (!all.is_empty()).then_some(all)
}
