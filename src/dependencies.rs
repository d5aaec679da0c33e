//! The order of a pass's swaps: a container that depends on another one
//! swapped in the same pass is swapped after it, never at the same time.
//!
//! Three kinds of dependency are read off the engine:
//! - `network_mode: container:X` — it lives in X's network namespace;
//! - a legacy link (`--link X:alias`) — its `/etc/hosts` names X;
//! - compose's `depends_on`, which Compose v2 records on the dependent as
//!   the label `com.docker.compose.depends_on` =
//!   `service:condition:restart,…`, resolved to the containers of that
//!   service in the same compose project.
//!
//! Swaps go in waves: the first holds every swap that waits for nothing,
//! the next those whose dependencies are all in earlier waves, and so on.
//! Containers that depend on each other in a circle cannot be ordered:
//! each of them is refused with the circle's names, and nothing of theirs
//! changes. A dependency that is not swapped in the pass is not waited for.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::observed::ObservedContainer;
use crate::swap::names::swapped_name;

/// The label Compose v2 writes with a service's `depends_on`.
pub const COMPOSE_DEPENDS_ON: &str = "com.docker.compose.depends_on";
/// The label naming a container's compose project.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// The label naming a container's compose service.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// Why one container waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `network_mode: container:<dependency>`.
    Network,
    /// A legacy link to the dependency.
    Link,
    /// Compose's `depends_on`.
    Compose,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Network => "shares the network of",
            Kind::Link => "links to",
            Kind::Compose => "depends on (compose)",
        }
    }
}

/// `dependent` must be swapped after `dependency`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The container that waits.
    pub dependent: String,
    /// The container it waits for.
    pub dependency: String,
    /// Why.
    pub kind: Kind,
}

/// One entry of compose's `depends_on` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeDependency {
    /// The service depended on.
    pub service: String,
    /// `restart: true`: Compose restarts the dependent when this service
    /// is updated, and so does a swap of that service's container.
    pub restart: bool,
}

/// The `depends_on` entries in `labels`: `service[:condition[:restart]]`
/// separated by commas (older Compose versions wrote the names alone).
/// Empty entries are skipped.
pub fn compose_depends_on(labels: &BTreeMap<String, String>) -> Vec<ComposeDependency> {
    let Some(value) = labels.get(COMPOSE_DEPENDS_ON) else { return Vec::new() };
    value
        .split(',')
        .filter_map(|entry| {
            let mut fields = entry.trim().split(':');
            let service = fields.next().filter(|s| !s.is_empty())?.to_string();
            let restart = fields.nth(1).is_some_and(|r| r.eq_ignore_ascii_case("true"));
            Some(ComposeDependency { service, restart })
        })
        .collect()
}

/// The container a legacy link names, as inspect shows it
/// (`/db:/web/database` → `db`). A link that follows a container into a
/// swap's backup (the engine renames links along with the container)
/// names the container that took its place.
pub fn linked_container(link: &str) -> Option<String> {
    linked_peers(link).map(|(_, name)| name)
}

/// The container a legacy link names, as the engine shows it now and as
/// the user named it (the same, unless the link followed its container
/// into a swap's backup).
pub fn linked_peers(link: &str) -> Option<(String, String)> {
    let raw = link.split(':').next()?.trim_start_matches('/');
    let name = swapped_name(raw).unwrap_or(raw);
    (!raw.is_empty()).then(|| (raw.to_string(), name.to_string()))
}

/// The containers of compose service `service` in `project`.
pub fn compose_service<'a>(
    containers: &'a [ObservedContainer],
    project: &'a str,
    service: &'a str,
) -> impl Iterator<Item = &'a ObservedContainer> + 'a {
    containers.iter().filter(move |c| {
        c.labels.get(COMPOSE_PROJECT).map(String::as_str) == Some(project)
            && c.labels.get(COMPOSE_SERVICE).map(String::as_str) == Some(service)
    })
}

/// Every dependency among `containers`: their `container:` network modes
/// and compose labels, and the legacy links in `links` (container name →
/// the names it links to, read by inspecting it: the engine's list does
/// not carry links). Edges to a container that is not in `containers` are
/// dropped; a container never depends on itself.
pub fn edges(containers: &[ObservedContainer], links: &HashMap<String, Vec<String>>) -> Vec<Edge> {
    let by_id: HashMap<&str, &str> = containers.iter().map(|c| (c.id.as_str(), c.name.as_str())).collect();
    let names: BTreeSet<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let mut edges = BTreeSet::new();
    let mut add = |dependent: &str, dependency: &str, kind: Kind| {
        if dependent != dependency && names.contains(dependency) {
            edges.insert(Edge { dependent: dependent.to_string(), dependency: dependency.to_string(), kind });
        }
    };
    for c in containers {
        if let Some(peer) = c.joins.as_deref() {
            // The engine records the peer's id; a name is accepted too.
            add(&c.name, by_id.get(peer).copied().unwrap_or(peer), Kind::Network);
        }
        for peer in links.get(&c.name).into_iter().flatten() {
            add(&c.name, peer, Kind::Link);
        }
        let Some(project) = c.labels.get(COMPOSE_PROJECT) else { continue };
        for dependency in compose_depends_on(&c.labels) {
            for peer in compose_service(containers, project, &dependency.service) {
                add(&c.name, &peer.name, Kind::Compose);
            }
        }
    }
    edges.into_iter().collect()
}

/// A pass's swaps in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ordered {
    /// Waves of container names: each after every earlier one.
    pub waves: Vec<Vec<String>>,
    /// Containers refused, with why: they depend on each other in a circle.
    pub refused: Vec<(String, String)>,
}

/// Orders `names` (the containers a pass swaps) by `edges`: dependencies
/// first (see the module docs). Within a wave, names keep their order.
pub fn order(names: &[String], edges: &[Edge]) -> Ordered {
    let members: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    // dependent → its dependencies among the swapped, with the first kind.
    let mut needs: BTreeMap<&str, BTreeMap<&str, Kind>> = BTreeMap::new();
    for e in edges {
        if members.contains(e.dependent.as_str()) && members.contains(e.dependency.as_str()) {
            needs.entry(e.dependent.as_str()).or_default().entry(e.dependency.as_str()).or_insert(e.kind);
        }
    }
    let mut left: Vec<&str> = Vec::new();
    for name in names {
        if !left.contains(&name.as_str()) {
            left.push(name);
        }
    }
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut out = Ordered::default();
    while !left.is_empty() {
        let waits = |name: &str, placed: &BTreeSet<&str>, left: &[&str]| {
            needs.get(name).is_some_and(|deps| deps.keys().any(|d| !placed.contains(d) && left.contains(d)))
        };
        let (ready, waiting): (Vec<&str>, Vec<&str>) =
            left.iter().partition(|name| !waits(name, &placed, &left));
        if ready.is_empty() {
            // Everything left waits: some of it is in a circle. Refuse the
            // containers on a circle; those that only wait for one go on.
            let on_circle: Vec<(&str, Vec<&str>)> = waiting
                .iter()
                .filter_map(|&name| circle(name, &needs, &waiting).map(|c| (name, c)))
                .collect();
            for (name, path) in &on_circle {
                out.refused.push((name.to_string(), describe(path, &needs)));
            }
            left.retain(|name| !on_circle.iter().any(|(n, _)| n == name));
            continue;
        }
        placed.extend(ready.iter().copied());
        out.waves.push(ready.iter().map(|s| s.to_string()).collect());
        left = waiting;
    }
    out
}

/// The circle through `start` (`start → … → start`) among `within`, if any.
fn circle<'a>(
    start: &'a str,
    needs: &BTreeMap<&'a str, BTreeMap<&'a str, Kind>>,
    within: &[&'a str],
) -> Option<Vec<&'a str>> {
    // Depth-first, the path kept; the graph is a pass's swaps, so small.
    let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for &next in needs.get(node).into_iter().flat_map(|d| d.keys()) {
            if next == start {
                let mut path = path.clone();
                path.push(start);
                return Some(path);
            }
            if within.contains(&next) && seen.insert(next) {
                let mut longer = path.clone();
                longer.push(next);
                stack.push((next, longer));
            }
        }
    }
    None
}

fn describe(path: &[&str], needs: &BTreeMap<&str, BTreeMap<&str, Kind>>) -> String {
    let steps: Vec<String> = path
        .windows(2)
        .map(|w| {
            let kind = needs.get(w[0]).and_then(|d| d.get(w[1])).copied().unwrap_or(Kind::Compose);
            format!("{} {} {}", w[0], kind.describe(), w[1])
        })
        .collect();
    format!(
        "dependency cycle: {}; the containers of a cycle are not upgraded (nothing changed): break the cycle, or upgrade them by hand",
        steps.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::types::{ContainerId, ImageId};

    fn c(name: &str) -> ObservedContainer {
        ObservedContainer {
            id: ContainerId::new(format!("id-{name}")),
            name: name.into(),
            image: "app:1".into(),
            image_id: ImageId::new("sha256:1"),
            state: "running".into(),
            health: None,
            labels: BTreeMap::new(),
            joins: None,
            service: None,
        }
    }

    fn compose(name: &str, project: &str, service: &str, depends_on: &str) -> ObservedContainer {
        let mut c = c(name);
        c.labels.insert(COMPOSE_PROJECT.into(), project.into());
        c.labels.insert(COMPOSE_SERVICE.into(), service.into());
        if !depends_on.is_empty() {
            c.labels.insert(COMPOSE_DEPENDS_ON.into(), depends_on.into());
        }
        c
    }

    fn edge(dependent: &str, dependency: &str, kind: Kind) -> Edge {
        Edge { dependent: dependent.into(), dependency: dependency.into(), kind }
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn compose_labels_are_read_in_every_form_compose_wrote() {
        let mut labels = BTreeMap::new();
        labels.insert(
            COMPOSE_DEPENDS_ON.to_string(),
            "db:service_healthy:true, cache:service_started:false,old,,".to_string(),
        );
        let deps = compose_depends_on(&labels);
        let read: Vec<(&str, bool)> = deps.iter().map(|d| (d.service.as_str(), d.restart)).collect();
        assert_eq!(read, [("db", true), ("cache", false), ("old", false)]);
        assert!(compose_depends_on(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn edges_come_from_network_modes_links_and_compose_labels_of_the_same_project() {
        let mut client = c("client");
        client.joins = Some("id-vpn".into());
        let containers = vec![
            c("vpn"),
            client,
            c("db"),
            c("web"),
            compose("p-api-1", "p", "api", "db:service_started:false,cache:service_healthy:true"),
            compose("p-db-1", "p", "db", ""),
            compose("p-cache-1", "p", "cache", ""),
            compose("p-cache-2", "p", "cache", ""),
            // Another project's `db` is not this one's dependency.
            compose("q-db-1", "q", "db", ""),
        ];
        let links = HashMap::from([("web".to_string(), strings(&["db", "gone"]))]);
        let found = edges(&containers, &links);
        assert_eq!(
            found,
            [
                edge("client", "vpn", Kind::Network),
                edge("p-api-1", "p-cache-1", Kind::Compose),
                edge("p-api-1", "p-cache-2", Kind::Compose),
                edge("p-api-1", "p-db-1", Kind::Compose),
                edge("web", "db", Kind::Link),
            ]
        );
    }

    #[test]
    fn dependencies_go_first_and_independent_swaps_share_the_first_wave() {
        let edges = [
            edge("web", "db", Kind::Link),
            edge("worker", "web", Kind::Compose),
            edge("worker", "db", Kind::Compose),
            edge("client", "vpn", Kind::Network),
        ];
        let ordered = order(&strings(&["worker", "web", "db", "vpn", "client", "alone"]), &edges);
        assert_eq!(
            ordered.waves,
            [strings(&["db", "vpn", "alone"]), strings(&["web", "client"]), strings(&["worker"])]
        );
        assert!(ordered.refused.is_empty());
        // A dependency not swapped in this pass is not waited for.
        let ordered = order(&strings(&["worker", "web"]), &edges);
        assert_eq!(ordered.waves, [strings(&["web"]), strings(&["worker"])]);
    }

    #[test]
    fn a_cycle_is_refused_with_its_names_and_the_rest_goes_on() {
        let edges = [
            edge("a", "b", Kind::Compose),
            edge("b", "a", Kind::Link),
            edge("c", "a", Kind::Compose),
            edge("self", "self", Kind::Compose),
        ];
        let ordered = order(&strings(&["a", "b", "c", "d"]), &edges);
        assert_eq!(ordered.waves, [strings(&["d"]), strings(&["c"])]);
        let refused: Vec<&str> = ordered.refused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(refused, ["a", "b"]);
        let why = &ordered.refused[0].1;
        assert!(why.contains("a depends on (compose) b, b links to a"), "{why}");
        assert!(why.contains("nothing changed"), "{why}");
    }

    proptest! {
        /// Whatever the graph: every swap is either placed once or refused
        /// on a circle; each placed one comes after every placed
        /// dependency; a refused one really is on a circle.
        #[test]
        fn every_order_respects_every_edge(
            n in 1usize..9,
            pairs in proptest::collection::vec((0usize..9, 0usize..9), 0..20),
        ) {
            let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let edges: Vec<Edge> = pairs
                .iter()
                .filter(|(a, b)| *a < n && *b < n && a != b)
                .map(|(a, b)| edge(&names[*a], &names[*b], Kind::Compose))
                .collect();
            let ordered = order(&names, &edges);
            let wave_of: HashMap<&str, usize> = ordered
                .waves
                .iter()
                .enumerate()
                .flat_map(|(i, w)| w.iter().map(move |n| (n.as_str(), i)))
                .collect();
            let refused: BTreeSet<&str> = ordered.refused.iter().map(|(n, _)| n.as_str()).collect();
            prop_assert_eq!(wave_of.len() + refused.len(), n);
            prop_assert!(refused.iter().all(|r| !wave_of.contains_key(r)));
            for e in &edges {
                if let (Some(a), Some(b)) = (wave_of.get(e.dependent.as_str()), wave_of.get(e.dependency.as_str())) {
                    prop_assert!(a > b, "{} (wave {}) placed before {} (wave {})", e.dependent, a, e.dependency, b);
                }
            }
            let needs: BTreeMap<&str, BTreeMap<&str, Kind>> = edges.iter().fold(BTreeMap::new(), |mut m, e| {
                m.entry(e.dependent.as_str()).or_default().insert(e.dependency.as_str(), e.kind);
                m
            });
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            for r in &refused {
                prop_assert!(circle(r, &needs, &all).is_some(), "{} refused but on no circle", r);
            }
        }
    }
}
