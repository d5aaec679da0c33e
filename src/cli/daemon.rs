//! `run`: the controller loop. Recovers at start, then reconciles the whole
//! manifest on every drift interval until SIGTERM or SIGINT. A manifest
//! that fails to load is reported and the last good one stays in force.

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use container_upgrader::controller::Controller;
use container_upgrader::manifest::{Manifest, DEFAULT_DRIFT_INTERVAL};

use super::{exit, swap_cmd, Failure};

/// With `drift_interval: 0` and no other trigger yet, how long to idle.
const IDLE: Duration = Duration::from_secs(3600);

pub async fn run(controller: &Controller, path: &Path) -> Result<u8, Failure> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    for note in controller.startup().await {
        eprintln!("{note}");
    }
    let mut last_good: Option<Manifest> = None;
    loop {
        match Manifest::load(path) {
            Ok(m) => last_good = Some(m),
            Err(e) if last_good.is_some() => eprintln!("{e}\nerror: keeping the last good manifest"),
            Err(e) => eprintln!("{e}\nerror: no valid manifest yet; nothing is done until one is"),
        }
        if let Some(manifest) = &last_good {
            // A pass is never interrupted by a signal: a swap in flight
            // finishes or rolls back; the signal is seen right after.
            match controller.pass(manifest).await {
                Ok(pass) => {
                    swap_cmd::print_pass(&pass);
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
        let interval = last_good.as_ref().map_or(DEFAULT_DRIFT_INTERVAL, |m| m.drift_interval.0);
        let wait = if interval.is_zero() { IDLE } else { interval };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    eprintln!("stopping: no swap in flight");
    Ok(exit::OK)
}
