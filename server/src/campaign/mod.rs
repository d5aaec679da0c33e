//! Campaigns: upgrade a set of agents' target to one image in safe waves
//! (DESIGN.md §10, issue 13). The decisions are pure ([`engine`], over a
//! validated [`spec`] and a [`schedule`]); one runner acts on them.

pub mod api;
pub mod engine;
pub mod runner;
pub mod schedule;
pub mod spec;
pub mod store;
pub mod view;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod tests;
