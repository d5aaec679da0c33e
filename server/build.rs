//! Rebuilds when a schema migration changes: `sqlx::migrate!` embeds
//! `migrations/` at compile time, and on stable Rust a proc macro cannot
//! tell cargo which files it read.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
