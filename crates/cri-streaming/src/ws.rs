//! WebSocket transport: the kubelet channel protocols (`channel.k8s.io`, `base64.channel.k8s.io`,
//! `v4.*`, `v5.channel.k8s.io`) for exec/attach and the `v4` port-forward channel layout.
//!
//! Every message starts with a channel byte (ASCII digit in base64 protocols): 0 stdin,
//! 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds 255 = "close channel N" from the client.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::idle::Activity;
use crate::remotecommand::{self, Job, PUMP_BUF, ResizeDecoder};
use crate::runtime::Runtime;
use crate::status;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The negotiated WebSocket channel protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WsProto {
    /// Text frames with base64 payloads and ASCII channel digits.
    pub base64: bool,
    /// 1 (plain text errors), 4 (JSON status) or 5 (JSON status + close signal).
    pub version: u8,
}

impl WsProto {
    /// The protocol for a negotiated subprotocol name ("" = legacy binary).
    pub(crate) fn from_name(name: &str) -> Self {
        match name {
            "v5.channel.k8s.io" => Self {
                base64: false,
                version: 5,
            },
            "v4.channel.k8s.io" | "v4.portforward.k8s.io" | "portforward.k8s.io" => Self {
                base64: false,
                version: 4,
            },
            "v4.base64.channel.k8s.io" => Self {
                base64: true,
                version: 4,
            },
            "base64.channel.k8s.io" => Self {
                base64: true,
                version: 1,
            },
            _ => Self {
                base64: false,
                version: 1,
            },
        }
    }

    /// Frames `data` for `channel`.
    pub(crate) fn encode(self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            s.push(char::from(b'0' + channel));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::text(s)
        } else {
            let mut v = Vec::with_capacity(1 + data.len());
            v.push(channel);
            v.extend_from_slice(data);
            Message::binary(v)
        }
    }

    /// Splits a data message into (channel, payload); `None` for control/invalid messages.
    pub(crate) fn decode(self, msg: &Message) -> Option<(u8, Vec<u8>)> {
        let raw: &[u8] = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => t.as_bytes(),
            _ => return None,
        };
        let (&first, rest) = raw.split_first()?;
        if self.version >= 5 && first == CLOSE {
            return Some((CLOSE, rest.to_vec()));
        }
        if self.base64 {
            let ch = first.checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            Some((ch, data))
        } else {
            Some((first, rest.to_vec()))
        }
    }
}

/// Copies a pipe end to a channel until EOF.
async fn pump_out(mut from: DuplexStream, channel: u8, proto: WsProto, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; PUMP_BUF];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(proto.encode(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Spawns the writer half: sends queued messages, then a normal close when the queue ends.
fn spawn_writer<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::Receiver<Message>,
    activity: Activity,
) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        // Queue what is waiting and flush once: tungstenite writes to the socket as its buffer
        // fills, so a busy stream costs no syscall per message.
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
            activity.touch();
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    })
}

/// Serves one exec/attach over an accepted WebSocket.
pub(crate) async fn serve_remotecommand<S>(
    ws: WebSocketStream<S>,
    proto: WsProto,
    job: Job,
    runtime: Arc<dyn Runtime>,
    idle_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (stdin, stdout, stderr, tty) = job.streams();
    let activity = Activity::new();
    activity.touch();
    let (sink, mut source) = ws.split();
    let (out_tx, out_rx) = mpsc::channel::<Message>(32);
    let writer = spawn_writer(sink, out_rx, activity.clone());
    let (io, ends) = remotecommand::plumbing(stdin, stdout, stderr, tty);

    // Tell the client the connection is set up: an empty message on the lowest writable channel.
    let hello = if ends.stdout.is_some() {
        STDOUT
    } else if ends.stderr.is_some() {
        STDERR
    } else {
        ERROR
    };
    let _ = out_tx.send(proto.encode(hello, &[])).await;

    let mut pumps = tokio::task::JoinSet::new();
    if let Some(end) = ends.stdout {
        pumps.spawn(pump_out(end, STDOUT, proto, out_tx.clone()));
    }
    if let Some(end) = ends.stderr {
        pumps.spawn(pump_out(end, STDERR, proto, out_tx.clone()));
    }

    // Reader: dispatches client messages; finishing means the client went away.
    let mut stdin_w = ends.stdin;
    let resize = ends.resize;
    let reader_activity = activity.clone();
    let mut reader = tokio::spawn(async move {
        let mut dec = ResizeDecoder::default();
        while let Some(Ok(msg)) = source.next().await {
            reader_activity.touch();
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((ch, data)) = proto.decode(&msg) else {
                continue;
            };
            match ch {
                STDIN => {
                    if let Some(w) = stdin_w.as_mut()
                        && w.write_all(&data).await.is_err()
                    {
                        stdin_w = None;
                    }
                }
                RESIZE => {
                    if let Some(tx) = &resize {
                        for size in dec.feed(&data) {
                            let _ = tx.send(size).await;
                        }
                    }
                }
                CLOSE if data.first() == Some(&STDIN) => {
                    if let Some(mut w) = stdin_w.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });

    let outcome = tokio::select! {
        o = job.run(runtime.as_ref(), io) => o,
        _ = &mut reader => {
            tracing::info!(container_id = job.container_id(), "client disconnected, cancelling stream");
            writer.abort();
            return;
        }
        () = activity.expired(idle_timeout) => {
            tracing::info!(container_id = job.container_id(), "stream idle timeout, closing");
            reader.abort();
            writer.abort();
            return;
        }
    };
    let drained = async { while pumps.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => {}
        _ = &mut reader => { writer.abort(); return; }
    }
    remotecommand::log_outcome(&job, &outcome);
    let body = if proto.version >= 4 {
        Some(status::v4(&outcome))
    } else {
        status::legacy(&outcome).map(String::into_bytes)
    };
    if let Some(body) = body {
        let _ = out_tx.send(proto.encode(ERROR, &body)).await;
    }
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut reader).await;
    reader.abort();
}

/// Serves a port-forward over an accepted WebSocket: per port `i`, channel `2i` carries data
/// and `2i+1` errors; both start with the port number (2 bytes, little endian).
pub(crate) async fn serve_portforward<S>(
    ws: WebSocketStream<S>,
    proto: WsProto,
    pod_sandbox_id: String,
    ports: Vec<u16>,
    runtime: Arc<dyn Runtime>,
    idle_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    activity.touch();
    let (sink, mut source) = ws.split();
    let (out_tx, out_rx) = mpsc::channel::<Message>(32);
    let writer = spawn_writer(sink, out_rx, activity.clone());
    let mut inputs: Vec<Option<tokio::io::WriteHalf<DuplexStream>>> = Vec::new();
    let mut forwards = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data_ch = u8::try_from(2 * i).unwrap_or(u8::MAX);
        let _ = out_tx
            .send(proto.encode(data_ch, &port.to_le_bytes()))
            .await;
        let _ = out_tx
            .send(proto.encode(data_ch + 1, &port.to_le_bytes()))
            .await;
        let (rt_end, t_end) = tokio::io::duplex(remotecommand::PIPE);
        let (t_r, t_w) = tokio::io::split(t_end);
        inputs.push(Some(t_w));
        let out = out_tx.clone();
        let rt = runtime.clone();
        let pod = pod_sandbox_id.clone();
        forwards.spawn(async move {
            let copy = async {
                let mut t_r = t_r;
                let mut buf = vec![0u8; PUMP_BUF];
                loop {
                    match t_r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if out.send(proto.encode(data_ch, &buf[..n])).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            let (res, ()) = tokio::join!(rt.port_forward(&pod, port, rt_end), copy);
            if let Err(e) = res {
                let msg = format!("error forwarding port {port} to pod {pod}: {e}");
                tracing::info!(pod_sandbox_id = %pod, port, error = %e, "port forward failed");
                let _ = out.send(proto.encode(data_ch + 1, msg.as_bytes())).await;
            }
        });
    }
    drop(out_tx);
    let reader_activity = activity.clone();
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            reader_activity.touch();
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((ch, data)) = proto.decode(&msg) else {
                continue;
            };
            if ch % 2 != 0 {
                continue;
            }
            if let Some(slot) = inputs.get_mut(usize::from(ch / 2))
                && let Some(w) = slot.as_mut()
                && w.write_all(&data).await.is_err()
            {
                *slot = None;
            }
        }
        // Client gone: EOF to every forward.
        for w in inputs.iter_mut().flatten() {
            let _ = w.shutdown().await;
        }
    });
    let all_done = async { while forwards.join_next().await.is_some() {} };
    tokio::select! {
        () = all_done => {}
        _ = &mut reader => {
            // Client closed: give forwards a moment to finish after EOF, then cancel.
            let wait = async { while forwards.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(1), wait).await.is_err() {
                forwards.abort_all();
            }
        }
        () = activity.expired(idle_timeout) => {
            tracing::info!(pod_sandbox_id = %pod_sandbox_id, "port forward idle timeout, closing");
            forwards.abort_all();
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_codecs() {
        let bin = WsProto::from_name("v4.channel.k8s.io");
        let m = bin.encode(STDOUT, b"hi");
        assert_eq!(m, Message::binary(vec![1, b'h', b'i']));
        assert_eq!(bin.decode(&m), Some((1, b"hi".to_vec())));
        let b64 = WsProto::from_name("v4.base64.channel.k8s.io");
        let m = b64.encode(STDERR, b"hi");
        assert_eq!(m, Message::text("2aGk="));
        assert_eq!(b64.decode(&m), Some((2, b"hi".to_vec())));
        let v5 = WsProto::from_name("v5.channel.k8s.io");
        assert_eq!(
            v5.decode(&Message::binary(vec![255, 0])),
            Some((CLOSE, vec![0]))
        );
        assert_eq!(
            bin.decode(&Message::binary(vec![255, 0])),
            Some((255, vec![0]))
        );
        assert_eq!(
            WsProto::from_name(""),
            WsProto {
                base64: false,
                version: 1
            }
        );
        assert_eq!(bin.decode(&Message::binary(Vec::<u8>::new())), None);
    }
}
