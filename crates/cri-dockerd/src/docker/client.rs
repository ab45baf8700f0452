//! [`DockerClient`]: a lazily connected, version-negotiated bollard client.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::RwLock;

use super::error::{Error, Result};

/// Longest any single non-streaming Docker call may take before it fails with `Timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A Docker Engine client. Cheap to clone.
#[derive(Clone)]
pub struct DockerClient {
    endpoint: Arc<str>,
    conn: Arc<RwLock<Option<Docker>>>,
}

impl std::fmt::Debug for DockerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerClient")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl DockerClient {
    /// A client for `endpoint` (`unix:///path` or `tcp://host:port`). Does not connect yet.
    pub fn new(endpoint: &str) -> Self {
        DockerClient {
            endpoint: endpoint.into(),
            conn: Arc::new(RwLock::new(None)),
        }
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The negotiated connection, connecting (and negotiating the API version) if needed.
    pub(crate) async fn conn(&self) -> Result<Docker> {
        if let Some(d) = self.conn.read().await.as_ref() {
            return Ok(d.clone());
        }
        let mut slot = self.conn.write().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let docker = connect(&self.endpoint)?;
        let docker = docker.negotiate_version().await.map_err(Error::from)?;
        tracing::debug!(endpoint = %self.endpoint, api_version = %docker.client_version(), "connected to docker");
        *slot = Some(docker.clone());
        Ok(docker)
    }

    /// Drop the connection so that the next call reconnects (and negotiates) again.
    pub(crate) async fn forget_connection(&self) {
        self.conn.write().await.take();
    }

    /// Run `f` on the connection; an `Unavailable` answer drops the connection so that the next
    /// call reconnects and negotiates again (dockerd may have been upgraded).
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
    {
        let docker = self.conn().await?;
        match f(docker).await {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = Error::from(e);
                if e.is_unavailable() {
                    self.conn.write().await.take();
                }
                Err(e)
            }
        }
    }
}

fn connect(endpoint: &str) -> Result<Docker> {
    let timeout = REQUEST_TIMEOUT.as_secs();
    let version = bollard::API_DEFAULT_VERSION;
    let res = if endpoint.starts_with("unix://") {
        Docker::connect_with_unix(endpoint, timeout, version)
    } else if let Some(rest) = endpoint.strip_prefix("tcp://") {
        Docker::connect_with_http(&format!("tcp://{rest}"), timeout, version)
    } else if endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, timeout, version)
    } else {
        return Err(Error::Client(format!(
            "unsupported docker endpoint {endpoint:?}"
        )));
    };
    res.map_err(Error::from)
}
