//! What the engine itself is configured to do with registries.

use super::{Engine, EngineError};

/// The registries the engine speaks plain HTTP to: its daemon.json
/// `insecure-registries`, as `docker info` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsecureRegistries {
    /// Registries named insecure (`host:port`; `Secure: false` in
    /// `IndexConfigs`).
    pub names: Vec<String>,
    /// Insecure address ranges (`InsecureRegistryCIDRs`, `127.0.0.0/8` by
    /// default).
    pub cidrs: Vec<String>,
}

impl Engine {
    /// The engine's insecure registries (one `GET /info`).
    pub async fn insecure_registries(&self) -> Result<InsecureRegistries, EngineError> {
        let info = self.bounded("reading the engine's registry settings", "info", self.docker.info()).await?;
        let config = info.registry_config.unwrap_or_default();
        let mut names: Vec<String> = config
            .index_configs
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, index)| index.secure == Some(false))
            .map(|(name, index)| index.name.unwrap_or(name))
            .collect();
        names.sort();
        Ok(InsecureRegistries { names, cidrs: config.insecure_registry_cidrs.unwrap_or_default() })
    }
}
