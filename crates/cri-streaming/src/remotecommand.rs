//! Exec/attach over either transport: the pipes between the client streams and the
//! [`Runtime`] call, the resize decoder, and the SPDY remotecommand protocols v1-v4.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use crate::runtime::{Runtime, StreamIo, TermSize};
use crate::spdy::{Connection, Stream, StreamWriter};
use crate::status::{self, Outcome};
use crate::{AttachRequest, ExecRequest};

/// Pipe buffer between transport and runtime.
pub(crate) const PIPE: usize = 64 * 1024;
/// Read size of the pumps from those pipes to the client (a whole pipe's worth).
pub(crate) const PUMP_BUF: usize = PIPE;

/// An exec or attach to run.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    Exec(ExecRequest),
    Attach(AttachRequest),
}

impl Job {
    pub(crate) fn streams(&self) -> (bool, bool, bool, bool) {
        match self {
            Job::Exec(r) => (r.stdin, r.stdout, r.stderr, r.tty),
            Job::Attach(r) => (r.stdin, r.stdout, r.stderr, r.tty),
        }
    }

    pub(crate) fn container_id(&self) -> &str {
        match self {
            Job::Exec(r) => &r.container_id,
            Job::Attach(r) => &r.container_id,
        }
    }

    /// Runs the job on the runtime.
    pub(crate) async fn run(&self, runtime: &dyn Runtime, io: StreamIo) -> Outcome {
        match self {
            Job::Exec(r) => runtime
                .exec(&r.container_id, &r.cmd, io)
                .await
                .map(|s| Some(s.code)),
            Job::Attach(r) => runtime.attach(&r.container_id, io).await.map(|()| None),
        }
    }
}

/// Transport-side ends of the pipes handed to the runtime.
pub(crate) struct Ends {
    pub stdin: Option<DuplexStream>,
    pub stdout: Option<DuplexStream>,
    pub stderr: Option<DuplexStream>,
    pub resize: Option<mpsc::Sender<TermSize>>,
}

/// Creates the runtime's [`StreamIo`] and the matching transport ends.
pub(crate) fn plumbing(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> (StreamIo, Ends) {
    fn pipe(on: bool) -> (Option<DuplexStream>, Option<DuplexStream>) {
        if on {
            let (a, b) = tokio::io::duplex(PIPE);
            (Some(a), Some(b))
        } else {
            (None, None)
        }
    }
    let (rt_in, t_in) = pipe(stdin);
    let (rt_out, t_out) = pipe(stdout);
    let (rt_err, t_err) = pipe(stderr && !tty);
    let (resize_tx, resize_rx) = if tty {
        let (tx, rx) = mpsc::channel(16);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let io = StreamIo {
        stdin: rt_in.map(|s| Box::new(s) as _),
        stdout: rt_out.map(|s| Box::new(s) as _),
        stderr: rt_err.map(|s| Box::new(s) as _),
        tty,
        resize: resize_rx,
    };
    (
        io,
        Ends {
            stdin: t_in,
            stdout: t_out,
            stderr: t_err,
            resize: resize_tx,
        },
    )
}

/// Decodes a stream of concatenated `{"Width":..,"Height":..}` objects split arbitrarily.
#[derive(Default)]
pub(crate) struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Feeds bytes, returns the sizes completed by them. Malformed input is dropped.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<TermSize> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TermSize>();
        let mut consumed = 0;
        loop {
            match it.next() {
                Some(Ok(s)) => {
                    consumed = it.byte_offset();
                    out.push(s);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "dropping malformed resize message");
                    consumed = self.buf.len();
                    break;
                }
                None => {
                    consumed = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
        out
    }
}

/// Copies a pipe end into a SPDY stream, then half-closes it.
async fn pump_out(mut from: DuplexStream, to: StreamWriter) {
    let mut buf = vec![0u8; PUMP_BUF];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    to.close().await;
}

/// Negotiated SPDY remotecommand protocol version (1..=4).
pub(crate) fn spdy_version(protocol: &str) -> u8 {
    match protocol {
        "v4.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    }
}

#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

/// Serves one exec/attach over an upgraded SPDY connection.
pub(crate) async fn serve_spdy(
    conn: Connection,
    mut incoming: mpsc::Receiver<Stream>,
    version: u8,
    job: Job,
    runtime: Arc<dyn Runtime>,
    creation_timeout: Duration,
) {
    let (stdin, stdout, stderr, tty) = job.streams();
    let stderr = stderr && !tty;
    let expected = 1
        + usize::from(stdin)
        + usize::from(stdout)
        + usize::from(stderr)
        + usize::from(tty && version >= 3);
    let mut s = Streams::default();
    let mut received = 0;
    let wait = async {
        while received < expected {
            let Some(stream) = incoming.recv().await else {
                return false;
            };
            let slot = match stream.header("streamtype").unwrap_or("") {
                "error" => &mut s.error,
                "stdin" => &mut s.stdin,
                "stdout" => &mut s.stdout,
                "stderr" => &mut s.stderr,
                "resize" => &mut s.resize,
                other => {
                    tracing::debug!(stream_type = other, "unexpected stream type");
                    continue;
                }
            };
            *slot = Some(stream);
            received += 1;
        }
        true
    };
    match tokio::time::timeout(creation_timeout, wait).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!("client went away before creating its streams");
            conn.terminate();
            return;
        }
        Err(_) => {
            tracing::info!(
                container_id = job.container_id(),
                "timed out waiting for client to create streams"
            );
            conn.terminate();
            return;
        }
    }

    let (io, ends) = plumbing(
        s.stdin.is_some(),
        s.stdout.is_some(),
        s.stderr.is_some(),
        tty,
    );
    let mut pumps = tokio::task::JoinSet::new();
    let mut side = tokio::task::JoinSet::new();
    if let (Some(stream), Some(mut w)) = (s.stdin.take(), ends.stdin) {
        side.spawn(async move {
            let (mut r, _) = stream.split();
            while let Some(chunk) = r.recv().await {
                if w.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
    }
    if let (Some(stream), Some(tx)) = (s.resize.take(), ends.resize) {
        side.spawn(async move {
            let (mut r, _) = stream.split();
            let mut dec = ResizeDecoder::default();
            while let Some(chunk) = r.recv().await {
                for size in dec.feed(&chunk) {
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    for (stream, end) in [
        (s.stdout.take(), ends.stdout),
        (s.stderr.take(), ends.stderr),
    ] {
        if let (Some(stream), Some(end)) = (stream, end) {
            let (_, w) = stream.split();
            pumps.spawn(pump_out(end, w));
        }
    }

    let outcome = tokio::select! {
        o = job.run(runtime.as_ref(), io) => o,
        () = conn.closed() => {
            tracing::info!(container_id = job.container_id(), "client disconnected, cancelling stream");
            return;
        }
    };
    // Output drains once the runtime dropped its pipe ends.
    let drained = async { while pumps.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => {}
        () = conn.closed() => return,
    }
    side.abort_all();
    log_outcome(&job, &outcome);
    if let Some(err) = s.error.take() {
        let (_, w) = err.split();
        let body = if version >= 4 {
            Some(status::v4(&outcome))
        } else {
            status::legacy(&outcome).map(String::into_bytes)
        };
        if let Some(body) = body {
            let _ = w.write(&body).await;
        }
        w.close().await;
    }
    conn.close().await;
    // Give the client a moment to read everything and hang up first.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    conn.terminate();
}

pub(crate) fn log_outcome(job: &Job, outcome: &Outcome) {
    match outcome {
        Ok(code) => {
            tracing::info!(container_id = job.container_id(), exit_code = ?code, "stream finished")
        }
        Err(e) => tracing::info!(container_id = job.container_id(), error = %e, "stream failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_decoder_handles_splits_and_concatenation() {
        let mut d = ResizeDecoder::default();
        assert_eq!(d.feed(br#"{"Width":80,"Hei"#), vec![]);
        assert_eq!(
            d.feed(br#"ght":24}{"Width":100,"Height":50}"#),
            vec![
                TermSize {
                    width: 80,
                    height: 24
                },
                TermSize {
                    width: 100,
                    height: 50
                }
            ]
        );
        assert_eq!(d.feed(b"garbage"), vec![]);
        assert_eq!(
            d.feed(br#"{"Width":1,"Height":2}"#),
            vec![TermSize {
                width: 1,
                height: 2
            }]
        );
    }

    #[test]
    fn spdy_versions() {
        assert_eq!(spdy_version("v4.channel.k8s.io"), 4);
        assert_eq!(spdy_version("v3.channel.k8s.io"), 3);
        assert_eq!(spdy_version("v2.channel.k8s.io"), 2);
        assert_eq!(spdy_version("channel.k8s.io"), 1);
    }
}
