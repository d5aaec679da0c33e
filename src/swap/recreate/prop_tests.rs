//! Properties over arbitrary images and user settings, with the container's
//! values built the way the daemon merges them.

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::{EndpointSettings, PortBinding};
use proptest::prelude::*;

use super::fixture::{Case, SHORT_ID};

fn env_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    // Few keys and values, so user and image collide often.
    prop::collection::btree_map("[A-D]", "[xyz]", 0..4)
}

fn entries(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Docker's merge at create: the user's entries, then the image's entries
/// for keys the user did not set.
fn merged(user: &BTreeMap<String, String>, image: &BTreeMap<String, String>) -> Vec<String> {
    let from_image = image.iter().filter(|(k, _)| !user.contains_key(*k));
    entries(user).into_iter().chain(from_image.map(|(k, v)| format!("{k}={v}"))).collect()
}

proptest! {
    /// The request's ENV is exactly the user's entries, less those identical
    /// to the old image's (indistinguishable from it): never an old-image
    /// default the user did not set, whatever the new image has.
    #[test]
    fn env_is_exactly_the_user_entries(old in env_map(), new in env_map(), user in env_map()) {
        let container = merged(&user, &old);
        let spec = Case::new()
            .old_image(|i| i.env = Some(entries(&old)))
            .new_image(|i| i.env = Some(entries(&new)))
            .config(|c| c.env = Some(container))
            .spec();
        let got: BTreeSet<String> = spec.body.env.unwrap_or_default().into_iter().collect();
        let expected: BTreeSet<String> =
            user.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, v)| format!("{k}={v}")).collect();
        prop_assert_eq!(got, expected);
    }

    /// Same for labels, merged by key with the container's value winning.
    #[test]
    fn labels_are_exactly_the_user_labels(old in env_map(), user in env_map()) {
        let mut container = old.clone();
        container.extend(user.clone());
        let spec = Case::new()
            .old_image(|i| i.labels = Some(old.clone().into_iter().collect()))
            .config(|c| c.labels = Some(container.into_iter().collect()))
            .spec();
        let got: BTreeMap<String, String> = spec.body.labels.unwrap_or_default().into_iter().collect();
        let expected: BTreeMap<String, String> =
            user.into_iter().filter(|(k, v)| old.get(k) != Some(v)).collect();
        prop_assert_eq!(got, expected);
    }

    /// Whatever the image exposed, every published port stays exposed, and
    /// nothing only the old image exposed is left.
    #[test]
    fn published_ports_stay_exposed(
        image in prop::collection::btree_set(7000u16..7006, 0..4),
        published in prop::collection::btree_set(7000u16..7006, 0..4),
    ) {
        let key = |p: &u16| format!("{p}/tcp");
        let binding = Some(vec![PortBinding { host_ip: None, host_port: Some(String::new()) }]);
        let container: Vec<String> = image.union(&published).map(key).collect();
        let spec = Case::new()
            .old_image(|i| i.exposed_ports = Some(image.iter().map(key).collect()))
            .config(|c| c.exposed_ports = Some(container))
            .host(|h| h.port_bindings = Some(published.iter().map(|p| (key(p), binding.clone())).collect()))
            .spec();
        let got: Vec<String> = spec.body.exposed_ports.unwrap_or_default();
        prop_assert_eq!(got, published.iter().map(key).collect::<Vec<_>>());
    }

    /// Aliases come out once each, in first-seen order, without the old short id.
    #[test]
    fn aliases_are_unique_and_never_the_old_short_id(
        user in prop::collection::vec("[a-c]", 0..6),
        at in 0usize..6,
    ) {
        let mut aliases = user.clone();
        aliases.insert(at.min(aliases.len()), SHORT_ID.to_string());
        let endpoint = EndpointSettings { aliases: Some(aliases), ..Default::default() };
        let spec = Case::new().network("front", endpoint).spec();
        let got = spec.extra_networks.first().and_then(|(_, e)| e.aliases.clone()).unwrap_or_default();
        let mut expected: Vec<String> = Vec::new();
        for a in user {
            if !expected.contains(&a) {
                expected.push(a);
            }
        }
        prop_assert_eq!(got, expected);
    }
}
