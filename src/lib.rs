//! container-upgrader keeps Docker containers on the image versions an
//! operator pins in a desired-state manifest.
//!
//! The modules follow the pipeline of DESIGN.md §3:
//! [`manifest`] (load, validate) → [`observe`] (what Docker runs) →
//! [`resolve`] (tags to digests, semver to tags) → [`plan`] (the pure diff).
//! Only [`engine`] talks to the Docker Engine and only [`registry`] talks to
//! image registries.
#![deny(missing_docs)]

pub mod api;
pub mod backoff;
pub mod cli_support;
pub mod controller;
pub mod daemon;
pub mod dependencies;
pub mod engine;
pub mod gitsource;
pub mod identity;
pub mod link;
pub mod manifest;
pub mod metrics;
pub mod observe;
pub mod observed;
pub mod plan;
pub mod platform;
pub mod private_fs;
pub mod protocol;
pub mod reconcile;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod selfupgrade;
pub mod serve;
pub mod status;
pub mod summary;
pub mod swap;
pub mod swarm;
pub mod tls;
pub mod trigger;
pub mod types;
pub mod verify;
pub mod watch;
