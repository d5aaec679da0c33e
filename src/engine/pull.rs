//! Pulling an image, with progress for a person watching.

use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::{Engine, EngineError};
use crate::platform::Platform;
use crate::reference::ImageRef;

/// The longest a pull may take.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Registry credentials for a pull.
#[derive(Clone, Default)]
pub struct Credentials {
    /// User name (basic auth).
    pub username: Option<String>,
    /// Password (basic auth).
    pub password: Option<String>,
    /// An identity token instead of a password.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// One progress message of a pull (`Downloading`, `Pull complete`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The layer id, when the message is about a layer.
    pub layer: Option<String>,
    /// The status text.
    pub status: String,
    /// The engine's progress bar text, if any.
    pub progress: Option<String>,
}

impl Engine {
    /// Pulls `image` for `platform` (`None`: the engine's own), calling
    /// `on_progress` for every message. An error the engine reports inside
    /// the stream (unknown tag, refused credentials, no image for the
    /// platform) is an error here.
    pub async fn pull(
        &self,
        image: &ImageRef,
        platform: Option<&Platform>,
        credentials: Option<Credentials>,
        mut on_progress: impl FnMut(PullProgress) + Send,
    ) -> Result<(), EngineError> {
        let reference = image.to_string();
        let (from_image, tag) = match (image.digest(), image.tag()) {
            (Some(d), _) => (format!("{}@{d}", image.name()), None),
            (None, tag) => (image.name(), Some(tag.unwrap_or("latest").to_string())),
        };
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            platform: platform.map(Platform::to_string).unwrap_or_default(),
            ..Default::default()
        };
        let credentials = credentials.map(|c| DockerCredentials {
            username: c.username,
            password: c.password,
            identitytoken: c.identity_token,
            serveraddress: Some(image.registry().to_string()),
            ..Default::default()
        });
        let what = format!("pulling {reference}");
        let run = async {
            let mut stream = self.docker.create_image(Some(options), None, credentials);
            while let Some(item) = stream.next().await {
                let info = item?;
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(bollard::errors::Error::DockerStreamError { error: detail });
                }
                on_progress(PullProgress {
                    layer: info.id,
                    status: info.status.unwrap_or_default(),
                    progress: info.progress_detail.and_then(|p| match (p.current, p.total) {
                        (Some(c), Some(t)) if t > 0 => Some(format!("{}/{} KiB", c / 1024, t / 1024)),
                        _ => None,
                    }),
                });
            }
            Ok(())
        };
        self.bounded_for(&what, "images/create", PULL_TIMEOUT, run).await
    }

    /// Gives the image `id` the name `image` (`repo:tag`), as `docker tag`
    /// does: after a pull by digest, the name the user wrote points at
    /// exactly the planned content.
    pub async fn tag(&self, id: &str, image: &ImageRef) -> Result<(), EngineError> {
        let tag = image.tag().unwrap_or("latest");
        let what = format!("tagging {id} as {}", image.familiar());
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(image.name()),
            tag: Some(tag.to_string()),
        };
        self.bounded(&what, "images/tag", self.docker.tag_image(id, Some(options))).await
    }
}
