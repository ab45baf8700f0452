//! A small SPDY/3.1 and WebSocket client for the streaming server, used by the tests and the
//! throughput benchmark (feature `client`). It speaks the same subprotocols kubectl/crictl do.

use std::io;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::TermSize;
use crate::spdy::{Connection, Role, Stream};

/// Client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered the upgrade with a non-101 status.
    #[error("HTTP {status}: {body}")]
    Http {
        /// Status code.
        status: u16,
        /// Response headers.
        headers: HeaderMap,
        /// Response body (text).
        body: String,
    },
    /// Socket failure.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// WebSocket protocol failure.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// SPDY failure.
    #[error("spdy: {0}")]
    Spdy(String),
    /// URL not of the form `http://host:port/path`.
    #[error("bad url {0}")]
    BadUrl(String),
}

impl ClientError {
    /// HTTP status of a refused upgrade.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn split_url(url: &str) -> Result<(String, String), ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl(url.into()))?;
    let slash = rest.find('/').unwrap_or(rest.len());
    let path = if slash == rest.len() {
        "/"
    } else {
        &rest[slash..]
    };
    Ok((rest[..slash].to_string(), path.to_string()))
}

/// A SPDY session opened through the HTTP upgrade.
pub struct SpdyClient {
    /// The session.
    pub conn: Connection,
    /// Negotiated `X-Stream-Protocol-Version`.
    pub protocol: String,
    /// Streams the server opens (none in the kubelet protocols).
    pub incoming: mpsc::Receiver<Stream>,
}

/// Upgrades `url` to SPDY/3.1 offering `protocols` (one `X-Stream-Protocol-Version` line each);
/// `upgrade_headers: false` leaves out `Connection`/`Upgrade` (to test the refusal).
pub async fn spdy_connect_raw(
    url: &str,
    protocols: &[&str],
    upgrade_headers: bool,
) -> Result<SpdyClient, ClientError> {
    let (host, path) = split_url(url)?;
    let mut tcp = TcpStream::connect(&host).await?;
    let _ = tcp.set_nodelay(true);
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n");
    if upgrade_headers {
        req.push_str("Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
    }
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(ClientError::Spdy("connection closed during upgrade".into()));
        }
    };
    let head = buf.split_to(end);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&head)
        .map_err(|e| ClientError::Spdy(format!("bad response: {e}")))?;
    let status = resp.code.unwrap_or(0);
    let mut map = HeaderMap::new();
    for h in resp.headers.iter() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(n, v);
        }
    }
    if status != 101 {
        let len = map
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < len {
            if tcp.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        return Err(ClientError::Http {
            status,
            headers: map,
            body: String::from_utf8_lossy(&buf).trim().to_string(),
        });
    }
    let protocol = map
        .get("x-stream-protocol-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (conn, incoming) = Connection::new(tcp, Role::Client, buf, None)
        .map_err(|e| ClientError::Spdy(e.to_string()))?;
    Ok(SpdyClient {
        conn,
        protocol,
        incoming,
    })
}

/// Upgrades `url` to SPDY/3.1 offering `protocols`.
pub async fn spdy_connect(url: &str, protocols: &[&str]) -> Result<SpdyClient, ClientError> {
    spdy_connect_raw(url, protocols, true).await
}

impl SpdyClient {
    /// Opens a stream with the given headers and waits for the reply.
    pub async fn open(&self, headers: &[(&str, &str)]) -> io::Result<Stream> {
        self.conn
            .open_stream(
                headers
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
            .await
    }
}

/// What to send in an exec/attach.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Stdin bytes (opens the stdin stream); closed after sending unless `keep_stdin_open`.
    pub stdin: Option<Vec<u8>>,
    /// Open stdout.
    pub stdout: bool,
    /// Open stderr.
    pub stderr: bool,
    /// Terminal (opens the resize stream on v3+).
    pub tty: bool,
    /// Sizes to send before stdin.
    pub resize: Vec<TermSize>,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Stdout bytes.
    pub stdout: Vec<u8>,
    /// Stderr bytes.
    pub stderr: Vec<u8>,
    /// Error channel bytes (v4+: JSON status; v1-v3: message, empty on success).
    pub error: Vec<u8>,
}

/// Runs an exec/attach over SPDY with `protocol`, the way kubectl does.
pub async fn spdy_exec(
    url: &str,
    protocol: &str,
    opts: ExecOptions,
) -> Result<ExecOutput, ClientError> {
    let c = spdy_connect(url, &[protocol]).await?;
    let err = c.open(&[("streamtype", "error")]).await?;
    let stdin = match &opts.stdin {
        Some(_) => Some(c.open(&[("streamtype", "stdin")]).await?),
        None => None,
    };
    let stdout = if opts.stdout {
        Some(c.open(&[("streamtype", "stdout")]).await?)
    } else {
        None
    };
    let stderr = if opts.stderr {
        Some(c.open(&[("streamtype", "stderr")]).await?)
    } else {
        None
    };
    let resize = if opts.tty && crate::remotecommand::spdy_version(&c.protocol) >= 3 {
        Some(c.open(&[("streamtype", "resize")]).await?)
    } else {
        None
    };
    let send = async {
        if let Some(r) = resize {
            let (_, w) = r.split();
            for s in &opts.resize {
                let _ = w.write(&serde_json::to_vec(s).unwrap_or_default()).await;
            }
        }
        if let (Some(s), Some(data)) = (stdin, &opts.stdin) {
            let (_, w) = s.split();
            let _ = w.write(data).await;
            w.close().await;
        }
    };
    let read = |s: Option<Stream>| async move {
        match s {
            Some(s) => s.split().0.read_to_end().await,
            None => Vec::new(),
        }
    };
    let ((), out, errout, status) = tokio::join!(send, read(stdout), read(stderr), read(Some(err)));
    c.conn.close().await;
    Ok(ExecOutput {
        stdout: out,
        stderr: errout,
        error: status,
    })
}

/// A client WebSocket.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url` (http:// is rewritten to ws://) offering `protocols`; returns it
/// with the negotiated subprotocol.
pub async fn ws_connect(url: &str, protocols: &[&str]) -> Result<(WsStream, String), ClientError> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url
        .into_client_request()
        .map_err(|e| ClientError::WebSocket(e.to_string()))?;
    if !protocols.is_empty() {
        let v = http::HeaderValue::from_str(&protocols.join(", "))
            .map_err(|e| ClientError::WebSocket(e.to_string()))?;
        req.headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let p = resp
                .headers()
                .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Ok((ws, p))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(ClientError::Http {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_default(),
        }),
        Err(e) => Err(ClientError::WebSocket(e.to_string())),
    }
}

fn ws_frame(base64: bool, channel: u8, data: &[u8]) -> Message {
    use base64::Engine as _;
    if base64 {
        let mut s = String::new();
        s.push(char::from(b'0' + channel));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
        Message::text(s)
    } else {
        let mut v = vec![channel];
        v.extend_from_slice(data);
        Message::binary(v)
    }
}

fn ws_unframe(base64: bool, msg: &Message) -> Option<(u8, Vec<u8>)> {
    use base64::Engine as _;
    let raw: &[u8] = match msg {
        Message::Binary(b) => b,
        Message::Text(t) => t.as_bytes(),
        _ => return None,
    };
    let (&ch, rest) = raw.split_first()?;
    if base64 {
        Some((
            ch.checked_sub(b'0')?,
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?,
        ))
    } else {
        Some((ch, rest.to_vec()))
    }
}

/// Runs an exec/attach over WebSocket with `protocol` ("" offers none: legacy binary).
/// On `v5.channel.k8s.io` stdin is closed with the close signal after sending; on older
/// protocols stdin stays open until the server finishes.
pub async fn ws_exec(
    url: &str,
    protocol: &str,
    opts: ExecOptions,
) -> Result<ExecOutput, ClientError> {
    let offered: Vec<&str> = if protocol.is_empty() {
        vec![]
    } else {
        vec![protocol]
    };
    let (ws, negotiated) = ws_connect(url, &offered).await?;
    let base64 = negotiated.contains("base64");
    let (mut sink, mut source) = ws.split();
    let send = async {
        for s in &opts.resize {
            let _ = sink
                .send(ws_frame(
                    base64,
                    4,
                    &serde_json::to_vec(s).unwrap_or_default(),
                ))
                .await;
        }
        if let Some(data) = &opts.stdin {
            for chunk in data.chunks(64 * 1024) {
                if sink.feed(ws_frame(base64, 0, chunk)).await.is_err() {
                    return sink;
                }
            }
            if sink.flush().await.is_err() {
                return sink;
            }
            if negotiated == "v5.channel.k8s.io" {
                let _ = sink.send(Message::binary(vec![255u8, 0])).await;
            }
        }
        sink
    };
    let recv = async {
        let mut out = ExecOutput::default();
        while let Some(Ok(msg)) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            match ws_unframe(base64, &msg) {
                Some((1, d)) => out.stdout.extend_from_slice(&d),
                Some((2, d)) => out.stderr.extend_from_slice(&d),
                Some((3, d)) => out.error.extend_from_slice(&d),
                _ => {}
            }
        }
        out
    };
    let (mut sink, out) = tokio::join!(send, recv);
    let _ = sink.close().await;
    Ok(out)
}

/// Encodes a client message for a channel (binary protocols).
pub fn ws_binary(channel: u8, data: &[u8]) -> Message {
    ws_frame(false, channel, data)
}

/// Decodes a server message of a binary channel protocol.
pub fn ws_decode_binary(msg: &Message) -> Option<(u8, Vec<u8>)> {
    ws_unframe(false, msg)
}
