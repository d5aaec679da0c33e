//! The engine's event stream, reduced to what the controller reacts to.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use super::{Engine, EngineError};

impl Engine {
    /// Calls `on_event(action, container name, attributes)` for every
    /// container event until the stream ends or fails; the attributes carry
    /// the container's labels. Not bounded in time: it is a stream.
    pub async fn container_events(
        &self,
        mut on_event: impl FnMut(&str, &str, &HashMap<String, String>),
    ) -> Result<(), EngineError> {
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let options = EventsOptions { filters: Some(filters), ..Default::default() };
        let mut stream = self.docker.events(Some(options));
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry("events").or_default() += 1;
        }
        while let Some(item) = stream.next().await {
            let event =
                item.map_err(|source| EngineError::Call { what: "following events".into(), source })?;
            let action = event.action.unwrap_or_default();
            let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
            let name = attributes.get("name").cloned().unwrap_or_default();
            on_event(&action, &name, &attributes);
        }
        Ok(())
    }
}
