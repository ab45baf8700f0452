//! The benchmark's gRPC transport to the daemon: one HTTP/2 connection over the unix socket,
//! requests sent straight on it (tonic's codec over hyper's HTTP/2 client). tonic's `Channel`
//! puts a queue and a worker task in front of the connection (for reconnects and load
//! balancing); that is the client's own cost, not the daemon's, and the Docker floor's client
//! (bollard) has no such queue, so the CRI side is measured without it.
//!
//! Writes are batched as kubelet's gRPC client (grpc-go) batches them: hyper's HTTP/2 client
//! writes a request's HEADERS frame, and its DATA frame only once the connection has given
//! the stream send capacity, so each call would reach the daemon as two writes, the daemon
//! would wake twice per request and the second write would wait behind the first wake-up.
//! grpc-go's writer (`loopyWriter.run`) yields once before flushing a batch smaller than 1,000
//! bytes, so that a unary call's HEADERS and DATA go out together; [`Batched`] does the same.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cloneable gRPC transport: clones share the connection (HTTP/2 streams).
#[derive(Clone)]
pub struct Conn(SendRequest<Body>);

/// Connect to the daemon's unix socket.
pub async fn connect(path: &Path) -> anyhow::Result<Conn> {
    let io = TokioIo::new(Batched::new(tokio::net::UnixStream::connect(path).await?));
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

/// Below this size a batch waits for one yield before it is sent (grpc-go's `minBatchSize`).
const MIN_BATCH: usize = 1000;

/// A stream whose writes are held until a flush, and whose flush of a small new batch yields to
/// the other tasks once first (they may add to the batch), as grpc-go's writer does.
struct Batched<S> {
    inner: S,
    buf: Vec<u8>,
    yielded: bool,
}

impl<S> Batched<S> {
    fn new(inner: S) -> Self {
        Batched {
            inner,
            buf: Vec::new(),
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Batched<S> {
    /// Write the held bytes; Ready once all are written and flushed.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.buf.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.buf.drain(..n);
        }
        self.yielded = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Batched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Batched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() && this.buf.len() < MIN_BATCH && !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Wake, Waker};

    /// Records every write it is given.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.get_mut().writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_batch_goes_out_in_one_write_after_one_yield() {
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut b = Batched::new(Recorder::default());
        let mut b = Pin::new(&mut b);

        // The connection writes HEADERS and flushes: nothing is sent yet, the flush yields and
        // asks to be polled again.
        assert!(matches!(
            b.as_mut().poll_write(&mut cx, b"HEADERS"),
            Poll::Ready(Ok(7))
        ));
        assert!(b.as_mut().poll_flush(&mut cx).is_pending());
        assert!(woken.0.load(Ordering::SeqCst));
        assert!(b.inner.writes.is_empty());

        // Meanwhile the body adds DATA; the next flush sends both in one write.
        assert!(matches!(
            b.as_mut().poll_write(&mut cx, b"DATA"),
            Poll::Ready(Ok(4))
        ));
        assert!(matches!(
            b.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(b.inner.writes, vec![b"HEADERSDATA".to_vec()]);
        assert_eq!(b.inner.flushes, 1);

        // Nothing held: a flush goes straight through; the next batch yields once again.
        assert!(matches!(
            b.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        woken.0.store(false, Ordering::SeqCst);
        assert!(matches!(
            b.as_mut().poll_write(&mut cx, b"X"),
            Poll::Ready(Ok(1))
        ));
        assert!(b.as_mut().poll_flush(&mut cx).is_pending());
        assert!(woken.0.load(Ordering::SeqCst));
        assert!(matches!(
            b.as_mut().poll_shutdown(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(b.inner.writes.len(), 2);
        assert_eq!(b.inner.writes[1], b"X".to_vec());
    }

    #[test]
    fn a_large_batch_goes_out_at_once() {
        let waker = Waker::from(Arc::new(Woken::default()));
        let mut cx = Context::from_waker(&waker);
        let mut b = Batched::new(Recorder::default());
        let mut b = Pin::new(&mut b);
        let big = vec![7u8; MIN_BATCH];
        assert!(matches!(
            b.as_mut().poll_write(&mut cx, &big),
            Poll::Ready(Ok(_))
        ));
        assert!(matches!(
            b.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(b.inner.writes, vec![big]);
    }
}
