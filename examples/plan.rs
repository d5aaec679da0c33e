//! The pipeline as a library: load a manifest, observe Docker, resolve the
//! desired images, and print the plan.
//!
//! `cargo run --example plan -- desired-state.example.yaml`

use std::process::ExitCode;

use container_upgrader::engine::Engine;
use container_upgrader::manifest::Manifest;
use container_upgrader::registry::{self, Registry};
use container_upgrader::swap::scaffold::Scaffolding;
use container_upgrader::{observe, plan, resolve};

#[tokio::main]
async fn main() -> ExitCode {
    let path = std::env::args().nth(1).unwrap_or_else(|| "desired-state.yaml".into());
    let manifest = match Manifest::load(path.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match Engine::connect().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Without a journal, an op's backups and temporaries are told apart by
    // their names and labels.
    let observed = match observe::observe(&engine, &manifest, &Scaffolding::default()).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let registry =
        Registry::new(&[], manifest.targets.iter().map(|t| t.want.image()), registry::DEFAULT_TIMEOUT);
    let needed = plan::needs_resolution(&manifest, &observed);
    let resolved = resolve::resolve(&manifest, &observed, &registry, &engine, &needed).await;
    for entry in plan::plan(&manifest, &observed, &resolved).actions {
        let container = entry.container.as_deref().unwrap_or("-");
        println!("{:<24} {:<24} {:<8} {}", entry.target, container, entry.action, entry.reason);
    }
    println!("Docker API calls: {:?}, registry requests: {}", engine.calls(), registry.calls());
    ExitCode::SUCCESS
}
