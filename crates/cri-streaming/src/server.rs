//! The HTTP/1.1 streaming server: token issue (`get_exec` & co.), routing of
//! `/exec|attach|portforward/{token}`, and the SPDY / WebSocket upgrade handshakes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};

use crate::cache::TokenCache;
use crate::remotecommand::{self, Job};
use crate::request::Pending;
use crate::runtime::Runtime;
use crate::sessions::{SessionCounts, SessionKind, Sessions};
use crate::spdy::{Connection, Role};
use crate::ws::{self, WsProto};
use crate::{
    AttachRequest, Config, Error, ExecRequest, PortForwardRequest, SPDY_PORTFORWARD_PROTOCOL,
    SPDY_REMOTECOMMAND_PROTOCOLS, WS_PORTFORWARD_PROTOCOLS, WS_REMOTECOMMAND_PROTOCOLS,
};

/// Request header carrying the client's SPDY subprotocols (one per header line).
pub const HEADER_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
/// Response header listing the server's protocols after a failed negotiation.
pub const HEADER_ACCEPTED_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";

type Body = Full<Bytes>;

struct Inner {
    config: Config,
    runtime: Arc<dyn Runtime>,
    cache: Mutex<TokenCache>,
    addr: OnceLock<SocketAddr>,
    shutdown: watch::Sender<bool>,
    sessions: Arc<Sessions>,
}

/// The streaming server. Cheap to clone; all clones share the listener and token cache.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.inner.config)
            .field("addr", &self.inner.addr.get())
            .finish()
    }
}

impl Server {
    /// A server for `runtime`; nothing listens until [`Server::start`].
    pub fn new(config: Config, runtime: Arc<dyn Runtime>) -> Self {
        let cache = TokenCache::new(config.request_ttl, config.request_cache_size);
        Self {
            inner: Arc::new(Inner {
                config,
                runtime,
                cache: Mutex::new(cache),
                addr: OnceLock::new(),
                shutdown: watch::channel(false).0,
                sessions: Arc::default(),
            }),
        }
    }

    /// Binds the listener, spawns the accept loop and returns the bound address.
    pub async fn start(&self) -> Result<SocketAddr, Error> {
        if let Some(addr) = self.inner.addr.get() {
            return Ok(*addr);
        }
        let listener = TcpListener::bind(self.inner.config.bind_addr).await?;
        let addr = listener.local_addr()?;
        if self.inner.addr.set(addr).is_err() {
            return Err(Error::FailedPrecondition(
                "streaming server already started".into(),
            ));
        }
        tracing::debug!(%addr, "streaming server listening");
        let inner = self.inner.clone();
        tokio::spawn(accept_loop(listener, inner));
        Ok(addr)
    }

    /// Address the listener is bound to, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.addr.get().copied()
    }

    /// Exec, attach and port-forward sessions open now and started so far (a session is open
    /// from its protocol upgrade until its connection ends).
    pub fn sessions(&self) -> SessionCounts {
        self.inner.sessions.snapshot()
    }

    /// Stops accepting connections (streams in progress continue).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn base_url(&self) -> Result<String, Error> {
        if let Some(base) = &self.inner.config.base_url {
            return Ok(base.trim_end_matches('/').to_string());
        }
        let mut addr = *self.inner.addr.get().ok_or(Error::NotRunning)?;
        if addr.ip().is_unspecified() {
            // Clients cannot dial 0.0.0.0 / [::]; the local loopback reaches the listener.
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Ok(format!("http://{addr}"))
    }

    fn issue(&self, kind: &str, pending: Pending) -> Result<String, Error> {
        let base = self.base_url()?;
        let token = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(pending)?;
        Ok(format!("{base}/{kind}/{token}"))
    }

    /// Validates `req` and returns the absolute URL of its single-use exec endpoint.
    pub fn get_exec(&self, req: ExecRequest) -> Result<String, Error> {
        req.validate()?;
        self.issue("exec", Pending::Exec(req))
    }

    /// Validates `req` and returns the absolute URL of its single-use attach endpoint.
    pub fn get_attach(&self, req: AttachRequest) -> Result<String, Error> {
        req.validate()?;
        self.issue("attach", Pending::Attach(req))
    }

    /// Validates `req` and returns the absolute URL of its single-use port-forward endpoint.
    pub fn get_port_forward(&self, req: PortForwardRequest) -> Result<String, Error> {
        req.validate()?;
        self.issue("portforward", Pending::PortForward(req))
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| route(inner.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "streaming connection ended with error");
            }
        });
    }
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into() + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found() -> Response<Body> {
    plain(StatusCode::NOT_FOUND, "404 page not found")
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    header_values(headers, name.as_str())
        .iter()
        .any(|v| v.eq_ignore_ascii_case(token))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, header::CONNECTION, "upgrade")
        && has_token(headers, header::UPGRADE, "websocket")
}

/// Picks the first client protocol the server supports (client order wins, as in kubelet).
fn negotiate<'a>(client: &[String], server: &[&'a str]) -> Option<&'a str> {
    client
        .iter()
        .find_map(|c| server.iter().find(|s| **s == c.as_str()).copied())
}

async fn route(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').split('/');
    let (Some(kind), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(not_found());
    };
    if token.is_empty() || !matches!(kind, "exec" | "attach" | "portforward") {
        return Ok(not_found());
    }
    if req.method() != Method::GET && req.method() != Method::POST {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let pending = inner
        .cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .consume(token);
    let resp = match (kind, pending) {
        ("exec", Some(Pending::Exec(r))) => remote_command(&inner, req, Job::Exec(r)),
        ("attach", Some(Pending::Attach(r))) => remote_command(&inner, req, Job::Attach(r)),
        ("portforward", Some(Pending::PortForward(r))) => port_forward(&inner, req, r),
        _ => {
            tracing::debug!(kind, "unknown, expired or reused streaming token");
            not_found()
        }
    };
    Ok(resp)
}

/// Result of a WebSocket handshake check: the 101 response and negotiated protocol, or an error.
fn ws_handshake(
    req: &Request<Incoming>,
    protocols: &[&'static str],
) -> (Response<Body>, Option<&'static str>) {
    let h = req.headers();
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        let mut r = plain(StatusCode::BAD_REQUEST, "unsupported websocket version");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return (r, None);
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return (
            plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"),
            None,
        );
    };
    let mut offered = header_values(h, header::SEC_WEBSOCKET_PROTOCOL.as_str());
    if offered.is_empty() {
        offered.push(String::new());
    }
    let chosen = if offered.iter().any(String::is_empty) && !protocols.contains(&"") {
        // A client offering nothing gets the legacy binary channel protocol.
        Some("")
    } else {
        negotiate(&offered, protocols)
    };
    let Some(chosen) = chosen else {
        return (
            plain(
                StatusCode::FORBIDDEN,
                format!(
                    "requested protocol(s) are not supported: {offered:?}; supports {protocols:?}"
                ),
            ),
            None,
        );
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let rh = r.headers_mut();
    rh.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        rh.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if !chosen.is_empty() {
        rh.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(chosen),
        );
    }
    (r, Some(chosen))
}

/// SPDY upgrade check (kubelet's `httpstream.Handshake`): 400 without upgrade headers or
/// protocol header, 403 (with the accepted list) when no protocol matches.
fn spdy_handshake(
    req: &Request<Incoming>,
    protocols: &[&'static str],
) -> (Response<Body>, Option<&'static str>) {
    let h = req.headers();
    if !has_token(h, header::CONNECTION, "upgrade") || !has_token(h, header::UPGRADE, "SPDY/3.1") {
        return (
            plain(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: missing upgrade headers in request",
            ),
            None,
        );
    }
    let offered = header_values(h, HEADER_PROTOCOL_VERSION);
    if offered.is_empty() {
        return (
            plain(
                StatusCode::BAD_REQUEST,
                format!("unable to upgrade: {HEADER_PROTOCOL_VERSION} is required"),
            ),
            None,
        );
    }
    let Some(chosen) = negotiate(&offered, protocols) else {
        let mut r = plain(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {protocols:?}"
            ),
        );
        for p in protocols {
            r.headers_mut().append(
                HEADER_ACCEPTED_PROTOCOL_VERSIONS,
                HeaderValue::from_static(p),
            );
        }
        return (r, None);
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let rh = r.headers_mut();
    rh.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    rh.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    rh.insert(HEADER_PROTOCOL_VERSION, HeaderValue::from_static(chosen));
    (r, Some(chosen))
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

fn remote_command(inner: &Arc<Inner>, mut req: Request<Incoming>, job: Job) -> Response<Body> {
    let cfg = inner.config.clone();
    let runtime = inner.runtime.clone();
    let sessions = inner.sessions.clone();
    let kind = match job {
        Job::Exec(_) => SessionKind::Exec,
        Job::Attach(_) => SessionKind::Attach,
    };
    if is_websocket(req.headers()) {
        let (resp, proto) = ws_handshake(&req, WS_REMOTECOMMAND_PROTOCOLS);
        let Some(proto) = proto else { return resp };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => {
                    let _open = sessions.open(kind);
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(up),
                        WsRole::Server,
                        Some(ws_config()),
                    )
                    .await;
                    ws::serve_remotecommand(
                        ws,
                        WsProto::from_name(proto),
                        job,
                        runtime,
                        cfg.stream_idle_timeout,
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        return resp;
    }
    let (resp, proto) = spdy_handshake(&req, SPDY_REMOTECOMMAND_PROTOCOLS);
    let Some(proto) = proto else { return resp };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let up = match upgrade.await {
            Ok(up) => up,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY upgrade failed");
                return;
            }
        };
        let _open = sessions.open(kind);
        match Connection::new(
            TokioIo::new(up),
            Role::Server,
            BytesMut::new(),
            Some(cfg.stream_idle_timeout),
        ) {
            Ok((conn, incoming)) => {
                remotecommand::serve_spdy(
                    conn,
                    incoming,
                    remotecommand::spdy_version(proto),
                    job,
                    runtime,
                    cfg.stream_creation_timeout,
                )
                .await;
            }
            Err(e) => tracing::info!(error = %e, "SPDY session setup failed"),
        }
    });
    resp
}

fn port_forward(
    inner: &Arc<Inner>,
    mut req: Request<Incoming>,
    pf: PortForwardRequest,
) -> Response<Body> {
    let cfg = inner.config.clone();
    let runtime = inner.runtime.clone();
    let sessions = inner.sessions.clone();
    if is_websocket(req.headers()) {
        let ports = pf.ports();
        if ports.is_empty() {
            return plain(
                StatusCode::BAD_REQUEST,
                "query parameter \"port\" is required",
            );
        }
        let (resp, proto) = ws_handshake(&req, WS_PORTFORWARD_PROTOCOLS);
        let Some(proto) = proto else { return resp };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => {
                    let _open = sessions.open(SessionKind::PortForward);
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(up),
                        WsRole::Server,
                        Some(ws_config()),
                    )
                    .await;
                    ws::serve_portforward(
                        ws,
                        WsProto::from_name(proto),
                        pf.pod_sandbox_id,
                        ports,
                        runtime,
                        cfg.stream_idle_timeout,
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        return resp;
    }
    let (resp, proto) = spdy_handshake(&req, &[SPDY_PORTFORWARD_PROTOCOL]);
    if proto.is_none() {
        return resp;
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let up = match upgrade.await {
            Ok(up) => up,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY upgrade failed");
                return;
            }
        };
        let _open = sessions.open(SessionKind::PortForward);
        match Connection::new(
            TokioIo::new(up),
            Role::Server,
            BytesMut::new(),
            Some(cfg.stream_idle_timeout),
        ) {
            Ok((conn, incoming)) => {
                crate::portforward::serve_spdy(
                    conn,
                    incoming,
                    pf.pod_sandbox_id,
                    runtime,
                    cfg.stream_creation_timeout,
                )
                .await;
            }
            Err(e) => tracing::info!(error = %e, "SPDY session setup failed"),
        }
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_client_order() {
        let c = vec![
            "v2.channel.k8s.io".to_string(),
            "v4.channel.k8s.io".to_string(),
        ];
        assert_eq!(
            negotiate(&c, SPDY_REMOTECOMMAND_PROTOCOLS),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&["x".to_string()], SPDY_REMOTECOMMAND_PROTOCOLS),
            None
        );
    }

    #[test]
    fn header_values_split_commas_and_lines() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("a, b"));
        h.append("x-a", HeaderValue::from_static("c"));
        assert_eq!(header_values(&h, "x-a"), vec!["a", "b", "c"]);
    }
}
