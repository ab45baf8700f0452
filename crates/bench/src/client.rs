//! The benchmark's gRPC transport to the daemon: one HTTP/2 connection over the unix socket,
//! requests sent straight on it (tonic's codec over hyper's HTTP/2 client). tonic's `Channel`
//! puts a queue and a worker task in front of the connection (for reconnects and load
//! balancing); that is the client's own cost, not the daemon's, and the Docker floor's client
//! (bollard) has no such queue, so the CRI side is measured without it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cloneable gRPC transport: clones share the connection (HTTP/2 streams).
#[derive(Clone)]
pub struct Conn(SendRequest<Body>);

/// Connect to the daemon's unix socket.
pub async fn connect(path: &Path) -> anyhow::Result<Conn> {
    let io = TokioIo::new(tokio::net::UnixStream::connect(path).await?);
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn(send))
}

/// The origin tonic puts in each request's `:scheme` and `:authority` (the path is the method).
pub fn origin() -> http::Uri {
    http::Uri::from_static("http://localhost")
}

impl tower::Service<http::Request<Body>> for Conn {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let fut = self.0.send_request(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
