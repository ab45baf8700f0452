//! [`RpcMetricsLayer`]: a tower layer around every CRI service that records each call's latency
//! and gRPC status code (see [`crate::metrics`]), so no handler measures itself.
//!
//! The code is read where gRPC puts it: in the response headers of a trailers-only answer (every
//! error a handler returns), else in the trailers at the end of the body. The latency runs until
//! then, so it covers encoding and, for `GetContainerEvents`, the whole stream. A body dropped
//! before its trailers (the client went away) is counted as `Canceled`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

use crate::metrics::{RpcCall, record_rpc, start_rpc};

const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;

/// The layer; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let call = Pending(start_rpc(req.uri().path()));
        MeteredFuture {
            inner: self.inner.call(req),
            call: Some(call),
        }
    }
}

/// The gRPC status code in `headers`, if there is one.
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    let v = headers.get("grpc-status")?;
    Some(
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(UNKNOWN),
    )
}

pin_project_lite::pin_project! {
    /// The response future of [`RpcMetrics`].
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        call: Option<Pending>,
    }
}

impl<F, ResBody, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<MeteredBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(resp) => {
                let pending = match (call, grpc_status(resp.headers())) {
                    (Some(call), Some(code)) => {
                        call.finish(code);
                        None
                    }
                    (call, _) => call,
                };
                Ok(resp.map(|inner| MeteredBody {
                    inner,
                    call: pending,
                }))
            }
            Err(e) => {
                if let Some(call) = call {
                    call.finish(UNKNOWN);
                }
                Err(e)
            }
        })
    }
}

/// A call whose code is not known yet; dropped unrecorded (the client went away before the
/// answer or its trailers), it counts as `Canceled`.
pub struct Pending(RpcCall);

impl Pending {
    fn finish(self, code: i32) {
        record_rpc(self.0, code);
        crate::memory::note_activity();
        std::mem::forget(self);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        record_rpc(self.0, CANCELLED);
        crate::memory::note_activity();
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the call when its trailers (or its end) go by.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Pending>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(code) = f.trailers_ref().and_then(grpc_status)
                    && let Some(p) = this.call.take()
                {
                    p.finish(code);
                }
            }
            Some(Err(_)) => {
                if let Some(p) = this.call.take() {
                    p.finish(UNKNOWN);
                }
            }
            // The end without a status in trailers: a gRPC server always sends one.
            None => {
                if let Some(p) = this.call.take() {
                    p.finish(UNKNOWN);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(grpc_status(&h), Some(5));
        h.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(grpc_status(&h), Some(UNKNOWN));
    }
}
