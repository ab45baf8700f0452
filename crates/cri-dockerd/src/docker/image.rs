//! Image calls: list, inspect, pull, remove, disk usage.

use std::time::Duration;

use async_trait::async_trait;

use super::client::DockerClient;
use super::error::{Error, Result};

/// An image as the domain layer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:<hex>` image ID.
    pub id: String,
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@sha256:<hex>` references.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// The image config's `User` (may be `name`, `uid`, `uid:gid`, `name:group` or empty).
    pub user: String,
}

/// Registry credentials for a pull (the CRI `AuthConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub username: String,
    pub password: String,
    /// base64(`username:password`).
    pub auth: String,
    pub server_address: String,
    pub identity_token: String,
    pub registry_token: String,
}

/// Image-level Docker calls.
#[async_trait]
pub trait ImageApi {
    /// All images.
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;
    /// Inspect by ID, tag or digest; `NotFound` if absent.
    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo>;
    /// Pull `reference`; fails with `Timeout` when no progress is made for `progress_deadline`.
    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<PullAuth>,
        progress_deadline: Duration,
    ) -> Result<()>;
    /// Remove one reference or ID (`force` also untags every tag of an ID).
    async fn remove_image(&self, reference: &str, force: bool) -> Result<()>;
}

#[async_trait]
impl ImageApi for DockerClient {
    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Err(Error::Client("list_images: not implemented yet".into()))
    }
    async fn inspect_image(&self, _reference: &str) -> Result<ImageInfo> {
        Err(Error::Client("inspect_image: not implemented yet".into()))
    }
    async fn pull_image(
        &self,
        _reference: &str,
        _auth: Option<PullAuth>,
        _progress_deadline: Duration,
    ) -> Result<()> {
        Err(Error::Client("pull_image: not implemented yet".into()))
    }
    async fn remove_image(&self, _reference: &str, _force: bool) -> Result<()> {
        Err(Error::Client("remove_image: not implemented yet".into()))
    }
}
