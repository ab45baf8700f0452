//! End-to-end tests of the streaming server over real sockets with an in-process fake
//! runtime, driven by the crate's SPDY and WebSocket clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cri_streaming::client::{self, ClientError, ExecOptions, ExecOutput};
use cri_streaming::{
    AttachRequest, Config, Error, ExecRequest, ExitStatus, PortForwardRequest, PortStream, Runtime,
    Server, SessionCounts, SessionKind, StreamIo, TermSize,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Fake runtime: a few canned commands, attach = echo, port-forward to a local echo server.
struct Fake {
    echo: SocketAddr,
    cancelled: mpsc::UnboundedSender<String>,
}

/// Reports when the future holding it is dropped before finishing.
struct CancelGuard(Option<(mpsc::UnboundedSender<String>, String)>);
impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some((tx, what)) = self.0.take() {
            let _ = tx.send(what);
        }
    }
}

#[async_trait]
impl Runtime for Fake {
    async fn exec(&self, _id: &str, cmd: &[String], mut io: StreamIo) -> Result<ExitStatus, Error> {
        match cmd[0].as_str() {
            "echo" => {
                let mut out = io.stdout.take().expect("stdout");
                out.write_all(format!("{}\n", cmd[1..].join(" ")).as_bytes())
                    .await?;
                Ok(ExitStatus { code: 0 })
            }
            "sh" => {
                let mut err = io.stderr.take().expect("stderr");
                err.write_all(b"err\n").await?;
                Ok(ExitStatus { code: 3 })
            }
            "cat" => {
                let mut i = io.stdin.take().expect("stdin");
                let mut o = io.stdout.take().expect("stdout");
                tokio::io::copy(&mut i, &mut o).await?;
                Ok(ExitStatus { code: 0 })
            }
            "stty-size" => {
                let mut r = io.resize.take().expect("resize");
                let s = r.recv().await.expect("a resize");
                let mut o = io.stdout.take().expect("stdout");
                o.write_all(format!("{} {}\n", s.height, s.width).as_bytes())
                    .await?;
                Ok(ExitStatus { code: 0 })
            }
            "sleep" => {
                let _g = CancelGuard(Some((self.cancelled.clone(), "exec sleep".into())));
                std::future::pending::<()>().await;
                Ok(ExitStatus { code: 0 })
            }
            "fail" => Err(Error::Runtime("boom".into())),
            other => Err(Error::NotFound(other.into())),
        }
    }

    async fn attach(&self, _id: &str, mut io: StreamIo) -> Result<(), Error> {
        let mut i = io.stdin.take().expect("stdin");
        let mut o = io.stdout.take().expect("stdout");
        tokio::io::copy(&mut i, &mut o).await?;
        Ok(())
    }

    async fn port_forward(
        &self,
        pod: &str,
        port: u16,
        mut stream: PortStream,
    ) -> Result<(), Error> {
        if port == 9 {
            return Err(Error::Runtime("connection refused".into()));
        }
        let _g = CancelGuard(Some((
            self.cancelled.clone(),
            format!("portforward {pod}:{port}"),
        )));
        let mut tcp = TcpStream::connect(self.echo).await?;
        tokio::io::copy_bidirectional(&mut stream, &mut tcp).await?;
        std::mem::forget(_g);
        Ok(())
    }
}

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

struct Env {
    server: Server,
    cancelled: mpsc::UnboundedReceiver<String>,
}

async fn env_with(config: Config) -> Env {
    let (tx, rx) = mpsc::unbounded_channel();
    let fake = Fake {
        echo: echo_server().await,
        cancelled: tx,
    };
    let server = Server::new(config, Arc::new(fake));
    server.start().await.expect("start");
    Env {
        server,
        cancelled: rx,
    }
}

async fn env() -> Env {
    env_with(Config::default()).await
}

fn exec(cmd: &[&str], stdin: bool, stdout: bool, stderr: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout,
        stderr,
    }
}

const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

fn out(stdout: bool, stderr: bool) -> ExecOptions {
    ExecOptions {
        stdout,
        stderr,
        ..Default::default()
    }
}

impl Env {
    /// Get an exec URL for `req` and run it over SPDY with `proto` and `opts`.
    async fn exec_spdy(&self, req: ExecRequest, proto: &str, opts: ExecOptions) -> ExecOutput {
        let url = self.server.get_exec(req).expect("url");
        client::spdy_exec(&url, proto, opts).await.expect("exec")
    }

    /// Get an exec URL for `req` and run it over WebSocket with `proto` and `opts`.
    async fn exec_ws(&self, req: ExecRequest, proto: &str, opts: ExecOptions) -> ExecOutput {
        let url = self.server.get_exec(req).expect("url");
        client::ws_exec(&url, proto, opts).await.expect("exec")
    }
}

#[tokio::test]
async fn urls_are_absolute_and_requests_validated() {
    let e = env().await;
    let addr = e.server.local_addr().expect("addr");
    let url = e
        .server
        .get_exec(exec(&["echo"], false, true, false, false))
        .expect("url");
    let prefix = format!("http://{addr}/exec/");
    assert!(url.starts_with(&prefix), "{url}");
    assert!(url.len() >= prefix.len() + 32);
    let bad = e.server.get_exec(exec(&["echo"], false, true, true, true));
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    let bad = e
        .server
        .get_exec(exec(&["echo"], false, false, false, false));
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    let bad = e.server.get_attach(AttachRequest {
        container_id: "c".into(),
        ..Default::default()
    });
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    let url = e
        .server
        .get_port_forward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80],
        })
        .expect("url");
    assert!(
        url.starts_with(&format!("http://{addr}/portforward/")),
        "{url}"
    );

    let unstarted = Server::new(
        Config::default(),
        Arc::new(Fake {
            echo: addr,
            cancelled: mpsc::unbounded_channel().0,
        }),
    );
    assert!(matches!(
        unstarted.get_exec(exec(&["echo"], false, true, false, false)),
        Err(Error::NotRunning)
    ));
}

#[tokio::test]
async fn spdy_exec_echo_stderr_exit_code_and_runtime_error() {
    let e = env().await;
    let o = e
        .exec_spdy(
            exec(&["echo", "hi"], false, true, true, false),
            "v4.channel.k8s.io",
            out(true, true),
        )
        .await;
    assert_eq!(o.stdout, b"hi\n");
    assert_eq!(o.stderr, b"");
    assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS);

    let o = e
        .exec_spdy(
            exec(
                &["sh", "-c", "echo err >&2; exit 3"],
                false,
                true,
                true,
                false,
            ),
            "v4.channel.k8s.io",
            out(true, true),
        )
        .await;
    assert_eq!(o.stderr, b"err\n");
    let status: serde_json::Value = serde_json::from_slice(&o.error).expect("json");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // v2 protocol: plain-text error, nothing on success.
    let o = e
        .exec_spdy(
            exec(&["sh", "-c", "exit 3"], false, true, true, false),
            "v2.channel.k8s.io",
            out(true, true),
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&o.error),
        "command terminated with non-zero exit code: exit status 3"
    );
    let o = e
        .exec_spdy(
            exec(&["echo", "x"], false, true, false, false),
            "channel.k8s.io",
            out(true, false),
        )
        .await;
    assert_eq!(
        (o.stdout.as_slice(), o.error.as_slice()),
        (&b"x\n"[..], &b""[..])
    );

    let o = e
        .exec_spdy(
            exec(&["fail"], false, true, false, false),
            "v4.channel.k8s.io",
            out(true, false),
        )
        .await;
    let status: serde_json::Value = serde_json::from_slice(&o.error).expect("json");
    assert_eq!(status["reason"], "InternalError");
    assert_eq!(status["code"], 500);
}

#[tokio::test]
async fn spdy_exec_stdin_and_tty_resize() {
    let e = env().await;
    let o = e
        .exec_spdy(
            exec(&["cat"], true, true, false, false),
            "v4.channel.k8s.io",
            ExecOptions {
                stdin: Some(b"piped\n".to_vec()),
                ..out(true, false)
            },
        )
        .await;
    assert_eq!(o.stdout, b"piped\n");
    assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS);

    let o = e
        .exec_spdy(
            exec(&["stty-size"], true, true, false, true),
            "v4.channel.k8s.io",
            ExecOptions {
                stdin: Some(vec![]),
                tty: true,
                resize: vec![TermSize {
                    width: 132,
                    height: 43,
                }],
                ..out(true, false)
            },
        )
        .await;
    assert_eq!(o.stdout, b"43 132\n");
}

#[tokio::test]
async fn websocket_exec_all_protocols() {
    let e = env().await;
    for proto in [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v4.base64.channel.k8s.io",
    ] {
        let o = e
            .exec_ws(
                exec(&["echo", "hi"], false, true, true, false),
                proto,
                out(true, true),
            )
            .await;
        assert_eq!(o.stdout, b"hi\n", "{proto}");
        assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS, "{proto}");

        let o = e
            .exec_ws(
                exec(&["sh", "-c", "exit 3"], false, true, true, false),
                proto,
                out(true, true),
            )
            .await;
        assert_eq!(o.stderr, b"err\n", "{proto}");
        let status: serde_json::Value = serde_json::from_slice(&o.error).expect("json");
        assert_eq!(status["details"]["causes"][0]["message"], "3", "{proto}");
    }
    for proto in ["channel.k8s.io", "base64.channel.k8s.io", ""] {
        let o = e
            .exec_ws(
                exec(&["sh", "-c", "exit 3"], false, true, true, false),
                proto,
                out(true, true),
            )
            .await;
        assert_eq!(o.stderr, b"err\n", "{proto}");
        assert_eq!(
            String::from_utf8_lossy(&o.error),
            "command terminated with non-zero exit code: exit status 3",
            "{proto}"
        );
    }
}

#[tokio::test]
async fn websocket_v5_stdin_close_and_tty_resize() {
    let e = env().await;
    let o = e
        .exec_ws(
            exec(&["cat"], true, true, false, false),
            "v5.channel.k8s.io",
            ExecOptions {
                stdin: Some(b"piped\n".to_vec()),
                ..out(true, false)
            },
        )
        .await;
    assert_eq!(o.stdout, b"piped\n");
    assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS);

    let o = e
        .exec_ws(
            exec(&["stty-size"], false, true, false, true),
            "v4.base64.channel.k8s.io",
            ExecOptions {
                tty: true,
                resize: vec![TermSize {
                    width: 100,
                    height: 30,
                }],
                ..out(true, false)
            },
        )
        .await;
    assert_eq!(o.stdout, b"30 100\n");
}

#[tokio::test]
async fn websocket_first_message_is_empty_on_lowest_writable_channel() {
    let e = env().await;
    let url = e
        .server
        .get_exec(exec(&["echo", "hi"], false, false, true, false))
        .expect("url");
    let (mut ws, p) = client::ws_connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("ws");
    assert_eq!(p, "v4.channel.k8s.io");
    let first = ws.next().await.expect("msg").expect("ok");
    assert_eq!(client::ws_decode_binary(&first), Some((2, vec![])));
}

#[tokio::test]
async fn attach_over_both_transports() {
    let e = env().await;
    let req = AttachRequest {
        container_id: "c1".into(),
        stdin: true,
        stdout: true,
        tty: true,
        stderr: false,
    };
    let url = e.server.get_attach(req.clone()).expect("url");
    let o = client::spdy_exec(
        &url,
        "v4.channel.k8s.io",
        ExecOptions {
            stdin: Some(b"typed\n".to_vec()),
            tty: true,
            ..out(true, false)
        },
    )
    .await
    .expect("attach");
    assert_eq!(o.stdout, b"typed\n");
    assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS);

    let url = e.server.get_attach(req).expect("url");
    let o = client::ws_exec(
        &url,
        "v5.channel.k8s.io",
        ExecOptions {
            stdin: Some(b"typed\n".to_vec()),
            tty: true,
            ..out(true, false)
        },
    )
    .await
    .expect("attach");
    assert_eq!(o.stdout, b"typed\n");
}

async fn spdy_forward_once(
    c: &client::SpdyClient,
    port: &str,
    id: &str,
    payload: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let err = c
        .open(&[("streamtype", "error"), ("port", port), ("requestid", id)])
        .await
        .expect("error stream");
    let data = c
        .open(&[("streamtype", "data"), ("port", port), ("requestid", id)])
        .await
        .expect("data stream");
    let (mut dr, dw) = data.split();
    dw.write(payload).await.expect("write");
    dw.close().await;
    let (mut er, _) = err.split();
    tokio::join!(dr.read_to_end(), er.read_to_end())
}

#[tokio::test]
async fn spdy_port_forward_two_concurrent_streams_and_error() {
    let e = env().await;
    let url = e
        .server
        .get_port_forward(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![80],
        })
        .expect("url");
    let c = client::spdy_connect(&url, &["portforward.k8s.io"])
        .await
        .expect("connect");
    assert_eq!(c.protocol, "portforward.k8s.io");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (a, b) = tokio::join!(
        spdy_forward_once(&c, "80", "0", b"GET / HTTP/1.0\r\n\r\n"),
        spdy_forward_once(&c, "8080", "1", &big),
    );
    assert_eq!(a, (b"GET / HTTP/1.0\r\n\r\n".to_vec(), vec![]));
    assert_eq!(b.0.len(), big.len());
    assert!(b.0 == big && b.1.is_empty());
    let (data, err) = spdy_forward_once(&c, "9", "2", b"x").await;
    assert!(data.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&err),
        "error forwarding port 9 to pod pod1: connection refused"
    );
    c.conn.close().await;
}

#[tokio::test]
async fn websocket_port_forward_two_ports() {
    let e = env().await;
    let url = e
        .server
        .get_port_forward(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![80, 443],
        })
        .expect("url");
    let (ws, p) = client::ws_connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("ws");
    assert_eq!(p, "v4.channel.k8s.io");
    let (mut sink, mut source) = ws.split();
    // First frame on every channel carries the port, little endian.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = source.next().await.expect("msg").expect("ok");
        seen.push(client::ws_decode_binary(&m).expect("frame"));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (0, vec![80, 0]),
            (1, vec![80, 0]),
            (2, vec![0xbb, 1]),
            (3, vec![0xbb, 1])
        ]
    );
    sink.send(client::ws_binary(0, b"to-80"))
        .await
        .expect("send");
    sink.send(client::ws_binary(2, b"to-443"))
        .await
        .expect("send");
    let mut got = std::collections::BTreeMap::<u8, Vec<u8>>::new();
    while got.get(&0).map_or(0, Vec::len) < 5 || got.get(&2).map_or(0, Vec::len) < 6 {
        let m = source.next().await.expect("msg").expect("ok");
        let (ch, d) = client::ws_decode_binary(&m).expect("frame");
        got.entry(ch).or_default().extend(d);
    }
    assert_eq!(got[&0], b"to-80");
    assert_eq!(got[&2], b"to-443");
    sink.close().await.expect("close");
}

#[tokio::test]
async fn rejected_requests() {
    let e = env().await;
    let addr = e.server.local_addr().expect("addr");
    // Token reuse: 404 on the second use, over both transports.
    let url = e
        .server
        .get_exec(exec(&["echo", "hi"], false, true, false, false))
        .expect("url");
    client::spdy_exec(&url, "v4.channel.k8s.io", out(true, false))
        .await
        .expect("first use");
    let err = client::spdy_exec(&url, "v4.channel.k8s.io", out(true, false))
        .await
        .expect_err("reuse");
    assert_eq!(err.status(), Some(404), "{err}");
    let err = client::ws_exec(&url, "v5.channel.k8s.io", out(true, false))
        .await
        .expect_err("reuse");
    assert_eq!(err.status(), Some(404), "{err}");
    // Token of another kind.
    let url = e
        .server
        .get_exec(exec(&["echo"], false, true, false, false))
        .expect("url");
    let wrong = url.replace("/exec/", "/attach/");
    let err = client::spdy_connect(&wrong, &["v4.channel.k8s.io"])
        .await
        .err()
        .expect("wrong kind");
    assert_eq!(err.status(), Some(404));
    // Unknown paths and tokens.
    for path in ["/exec/nosuchtoken", "/foo/bar", "/", "/exec/", "/exec/a/b"] {
        let err = client::spdy_connect(&format!("http://{addr}{path}"), &["v4.channel.k8s.io"])
            .await
            .err()
            .expect("404");
        assert_eq!(err.status(), Some(404), "{path}");
    }
    // Bad upgrade headers: 400; no protocol: 400; unknown protocol: 403 + accepted list.
    let url = e
        .server
        .get_exec(exec(&["echo"], false, true, false, false))
        .expect("url");
    let err = client::spdy_connect_raw(&url, &["v4.channel.k8s.io"], false)
        .await
        .err()
        .expect("400");
    assert_eq!(err.status(), Some(400), "{err}");
    let url = e
        .server
        .get_exec(exec(&["echo"], false, true, false, false))
        .expect("url");
    let err = client::spdy_connect(&url, &[]).await.err().expect("400");
    assert_eq!(err.status(), Some(400), "{err}");
    let url = e
        .server
        .get_exec(exec(&["echo"], false, true, false, false))
        .expect("url");
    let err = client::spdy_connect(&url, &["v9.channel.k8s.io"])
        .await
        .err()
        .expect("403");
    assert_eq!(err.status(), Some(403), "{err}");
    let ClientError::Http { headers, .. } = err else {
        unreachable!()
    };
    let accepted: Vec<_> = headers
        .get_all("x-accepted-stream-protocol-versions")
        .iter()
        .collect();
    assert_eq!(accepted.len(), 4);
    let url = e
        .server
        .get_exec(exec(&["echo"], false, true, false, false))
        .expect("url");
    let err = client::ws_exec(&url, "v9.channel.k8s.io", out(true, false))
        .await
        .expect_err("403");
    assert_eq!(err.status(), Some(403), "{err}");
    // Port-forward: SPDY must use portforward.k8s.io.
    let url = e
        .server
        .get_port_forward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![],
        })
        .expect("url");
    let err = client::spdy_connect(&url, &["v4.channel.k8s.io"])
        .await
        .err()
        .expect("403");
    assert_eq!(err.status(), Some(403));
    // WebSocket port-forward needs ports in the request.
    let url = e
        .server
        .get_port_forward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![],
        })
        .expect("url");
    let err = client::ws_connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect_err("400");
    assert_eq!(err.status(), Some(400));
}

#[tokio::test]
async fn expired_token_is_404() {
    let e = env_with(Config {
        request_ttl: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let url = e
        .server
        .get_exec(exec(&["echo", "hi"], false, true, false, false))
        .expect("url");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let err = client::spdy_exec(&url, "v4.channel.k8s.io", out(true, false))
        .await
        .expect_err("expired");
    assert_eq!(err.status(), Some(404));
}

async fn expect_cancel(rx: &mut mpsc::UnboundedReceiver<String>, what: &str) {
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("cancellation observed");
    assert_eq!(got.as_deref(), Some(what));
}

#[tokio::test]
async fn client_disconnect_cancels_runtime_call() {
    let mut e = env().await;
    // SPDY: open all streams, then drop the connection.
    let url = e
        .server
        .get_exec(exec(&["sleep"], false, true, false, false))
        .expect("url");
    let c = client::spdy_connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    let _err = c.open(&[("streamtype", "error")]).await.expect("stream");
    let _out = c.open(&[("streamtype", "stdout")]).await.expect("stream");
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.conn.terminate();
    expect_cancel(&mut e.cancelled, "exec sleep").await;
    // The token is gone too.
    assert_eq!(
        client::spdy_connect(&url, &["v4.channel.k8s.io"])
            .await
            .err()
            .and_then(|e| e.status()),
        Some(404)
    );

    // WebSocket: drop the socket mid-stream.
    let url = e
        .server
        .get_exec(exec(&["sleep"], false, true, false, false))
        .expect("url");
    let (mut ws, _) = client::ws_connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("ws");
    let _ = ws.next().await;
    drop(ws);
    expect_cancel(&mut e.cancelled, "exec sleep").await;

    // Port-forward: closing the connection cancels an open forward.
    let url = e
        .server
        .get_port_forward(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![],
        })
        .expect("url");
    let c = client::spdy_connect(&url, &["portforward.k8s.io"])
        .await
        .expect("connect");
    let _err = c
        .open(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")])
        .await
        .expect("stream");
    let data = c
        .open(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")])
        .await
        .expect("stream");
    let (mut r, w) = data.split();
    w.write(b"ping").await.expect("write");
    assert_eq!(r.recv().await.as_deref(), Some(&b"ping"[..]));
    c.conn.terminate();
    expect_cancel(&mut e.cancelled, "portforward pod1:80").await;
}

/// Polls until `kind`'s open-session count is `want` (the server ends a session just after the
/// client sees its end).
async fn wait_open(server: &Server, kind: SessionKind, want: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = server.sessions().open(kind);
        if open == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind:?}: {open} sessions open, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn session_counts_follow_open_sessions() {
    let mut e = env().await;
    assert_eq!(e.server.sessions(), SessionCounts::default());
    // A finished exec (SPDY) and a finished attach (WebSocket) leave nothing open.
    let url = e
        .server
        .get_exec(exec(&["echo", "hi"], false, true, false, false))
        .expect("url");
    client::spdy_exec(&url, "v4.channel.k8s.io", out(true, false))
        .await
        .expect("exec");
    wait_open(&e.server, SessionKind::Exec, 0).await;
    assert_eq!(e.server.sessions().started(SessionKind::Exec), 1);

    // A running exec is open until its client goes away.
    let url = e
        .server
        .get_exec(exec(&["sleep"], false, true, false, false))
        .expect("url");
    let (mut ws, _) = client::ws_connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("ws");
    let _ = ws.next().await;
    wait_open(&e.server, SessionKind::Exec, 1).await;
    drop(ws);
    expect_cancel(&mut e.cancelled, "exec sleep").await;
    wait_open(&e.server, SessionKind::Exec, 0).await;
    assert_eq!(e.server.sessions().started(SessionKind::Exec), 2);

    // Port-forward: open while connected, whatever its streams do.
    let url = e
        .server
        .get_port_forward(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![80],
        })
        .expect("url");
    let c = client::spdy_connect(&url, &["portforward.k8s.io"])
        .await
        .expect("connect");
    wait_open(&e.server, SessionKind::PortForward, 1).await;
    let (data, _) = spdy_forward_once(&c, "80", "0", b"ping").await;
    assert_eq!(data, b"ping");
    assert_eq!(e.server.sessions().open(SessionKind::PortForward), 1);
    c.conn.close().await;
    wait_open(&e.server, SessionKind::PortForward, 0).await;
    let counts = e.server.sessions();
    assert_eq!(counts.started(SessionKind::PortForward), 1);
    assert_eq!(counts.started(SessionKind::Attach), 0);
    // A rejected upgrade (reused token) is no session.
    assert!(
        client::spdy_connect(&url, &["portforward.k8s.io"])
            .await
            .is_err()
    );
    assert_eq!(e.server.sessions().started(SessionKind::PortForward), 1);
}

#[tokio::test]
async fn idle_and_stream_creation_timeouts() {
    let mut e = env_with(Config {
        stream_idle_timeout: Duration::from_millis(300),
        stream_creation_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    // Idle: nothing flows, the server closes and cancels the exec.
    for ws in [false, true] {
        let url = e
            .server
            .get_exec(exec(&["sleep"], false, true, false, false))
            .expect("url");
        let started = std::time::Instant::now();
        if ws {
            let o = client::ws_exec(&url, "v5.channel.k8s.io", out(true, false))
                .await
                .expect("ws");
            assert!(o.error.is_empty());
        } else {
            let o = client::spdy_exec(&url, "v4.channel.k8s.io", out(true, false))
                .await
                .expect("spdy");
            assert!(o.error.is_empty());
        }
        expect_cancel(&mut e.cancelled, "exec sleep").await;
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
    // Creation: a client that never creates all its streams is dropped; the runtime never runs.
    let url = e
        .server
        .get_exec(exec(&["sleep"], false, true, false, false))
        .expect("url");
    let c = client::spdy_connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    let _err = c.open(&[("streamtype", "error")]).await.expect("stream");
    tokio::time::timeout(Duration::from_secs(5), c.conn.closed())
        .await
        .expect("server closed the connection");
    assert!(e.cancelled.try_recv().is_err());
}

fn payload(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

async fn transfer(e: &Env, ws: bool, data: &[u8]) -> Duration {
    let url = e
        .server
        .get_exec(exec(&["cat"], true, true, false, false))
        .expect("url");
    let opts = ExecOptions {
        stdin: Some(data.to_vec()),
        ..out(true, false)
    };
    let t = std::time::Instant::now();
    let o = if ws {
        client::ws_exec(&url, "v5.channel.k8s.io", opts)
            .await
            .expect("ws")
    } else {
        client::spdy_exec(&url, "v4.channel.k8s.io", opts)
            .await
            .expect("spdy")
    };
    let took = t.elapsed();
    assert_eq!(o.stdout.len(), data.len());
    assert!(o.stdout == data, "payload corrupted");
    assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS);
    took
}

// Used to hang in about one run of six on a busy machine: the SPDY client pushed megabytes
// before it learned the server paces by window, and the session deadlocked (see spdy/conn.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_64mib_byte_exact_over_both_transports() {
    let e = env().await;
    let data = payload(64 << 20);
    for ws in [false, true] {
        let took = transfer(&e, ws, &data).await;
        eprintln!(
            "{}: 64 MiB stdin->stdout in {took:?}",
            if ws { "websocket" } else { "spdy" }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release -p cri-streaming --test streaming -- --ignored --nocapture"]
async fn bench_throughput() {
    let e = env().await;
    let data = payload(256 << 20);
    for ws in [false, true] {
        let took = transfer(&e, ws, &data).await;
        let mibs = 256.0 / took.as_secs_f64();
        println!(
            "{:<9} 256 MiB exec stdin->stdout: {took:?} ({mibs:.0} MiB/s)",
            if ws { "websocket" } else { "spdy" }
        );
    }
}

#[tokio::test]
async fn unused_echo_helper_reads() {
    // Sanity of the fixture: the echo server echoes.
    let addr = echo_server().await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"abc").await.expect("write");
    let mut b = [0u8; 3];
    s.read_exact(&mut b).await.expect("read");
    assert_eq!(&b, b"abc");
}
