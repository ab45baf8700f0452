//! [`DockerClient`]: a lazily connected, version-negotiated bollard client.

use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Run `f` on the connection, measured as Docker operation `operation` (the Go original's
    /// `operation_type` name); an `Unavailable` answer drops the connection so that the next
    /// call reconnects and negotiates again (dockerd may have been upgraded).
    pub(crate) async fn call<T, F, Fut>(&self, operation: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
    {
        measure(operation, self.call_unmeasured(f)).await
    }

    /// [`DockerClient::call`] without the measurement, for callers that measure a larger unit
    /// with [`measure`] (a pull with its own progress deadline).
    pub(crate) async fn call_unmeasured<T, F, Fut>(&self, f: F) -> Result<T>
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

/// Run `fut` and record it as Docker operation `operation`: latency, and the error kind when
/// it fails. A call abandoned before it finished (its caller timed out or went away) is
/// recorded as an error of kind `cancelled`.
pub(crate) async fn measure<T>(
    operation: &'static str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    struct Abandoned(Option<(&'static str, Instant)>);
    impl Drop for Abandoned {
        fn drop(&mut self) {
            if let Some((operation, start)) = self.0.take() {
                crate::metrics::record_docker(
                    operation,
                    start.elapsed(),
                    Some(("cancelled", false)),
                );
            }
        }
    }
    let start = Instant::now();
    let mut guard = Abandoned(Some((operation, start)));
    let result = fut.await;
    guard.0 = None;
    let error = result
        .as_ref()
        .err()
        .map(|e| (e.kind(), matches!(e, Error::Timeout(_))));
    crate::metrics::record_docker(operation, start.elapsed(), error);
    result
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
