//! The fleet server (`container-upgrader server`, DESIGN.md §10): agents
//! enrol, long-poll their desired manifest and report; the server keeps
//! every agent's state and history in a database and knows, per target,
//! which newer versions its registry has.
//!
//! The agent's side of the wire is [`crate::link`]; both speak
//! [`protocol`].

pub mod protocol;
