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
    let res = if let Some(path) = endpoint.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err(Error::Unavailable(format!(
                "docker socket {path} does not exist"
            )));
        }
        // Requests name a fixed host; the connector ignores it and dials the socket.
        Docker::connect_with_custom_transport(
            pooled_unix(path),
            Some("http://docker"),
            timeout,
            version,
        )
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

/// Most idle connections to dockerd kept for reuse.
const POOL_MAX_IDLE: usize = 8;
/// How long an idle connection is kept (closed by a background timer after that).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Each connection reads into a buffer of this fixed size. hyper's default buffer grows with
/// the largest response read (up to ~400 KiB) and keeps that size while the connection idles
/// in the pool: after a list of a few hundred containers, 8 idle connections held about
/// 200 KiB of buffers. A large response is read in more `read` calls instead (a few
/// microseconds each).
const READ_BUF_SIZE: usize = 16 * 1024;

/// What bollard's custom transport returns.
type Responding = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::result::Result<
                    http::Response<hyper::body::Incoming>,
                    bollard::errors::Error,
                >,
            > + Send,
    >,
>;

/// The transport to a unix-socket dockerd: HTTP/1.1 with keep-alive, idle connections reused
/// (bollard's own unix transport opens a new connection per request; reusing one saves about
/// 0.13 ms per call here, and dockerd a connection per call). A connection dockerd closes
/// (a restart) is dropped from the pool; a request that fails on it fails `Unavailable`, and
/// the caller then starts over with a new client (see [`DockerClient::call`]).
fn pooled_unix(
    path: &str,
) -> impl Fn(bollard::BollardRequest) -> Responding + Send + Sync + 'static {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .http1_read_buf_exact_size(READ_BUF_SIZE)
        .build(UnixDialer(Arc::from(std::path::Path::new(path))));
    move |req| {
        let client = client.clone();
        Box::pin(async move {
            client
                .request(req)
                .await
                .map_err(bollard::errors::Error::from)
        })
    }
}

/// Dials the unix socket whatever host a request names.
#[derive(Clone)]
struct UnixDialer(Arc<std::path::Path>);

impl tower::Service<http::Uri> for UnixDialer {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let socket = self.0.clone();
        Box::pin(async move {
            tokio::net::UnixStream::connect(&*socket)
                .await
                .map(hyper_util::rt::TokioIo::new)
        })
    }
}
