//! Exec, Attach and PortForward end to end: the real binary, the real dockerd, and the
//! `cri-streaming` test client speaking SPDY/3.1 and WebSocket to the returned URLs; the
//! streaming server's security defaults (loopback only, unguessable single-use tokens).

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::pods::{Pod, Rt, container_config, host_network, stop_pod_sandbox, wait_until};
use cri_streaming::TermSize;
use cri_streaming::client::{self, ExecOptions};
use k8s_cri::v1 as cri;
use tonic::Code;

const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

async fn daemon() -> (Daemon, Rt) {
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let rt = d.runtime().await;
    (d, rt)
}

async fn pod(rt: &mut Rt, d: &Daemon) -> Pod {
    Pod::run(rt, d, "stream", "streamtest").await
}

/// A daemon, its runtime client and one pod.
async fn daemon_and_pod() -> (Daemon, Rt, Pod) {
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
    (d, rt, p)
}

/// Create and start a busybox container running `cmd` in `p`.
async fn run(rt: &mut Rt, p: &Pod, name: &str, cmd: &[&str], stdin_tty: bool) -> String {
    run_with(rt, p, name, cmd, stdin_tty, stdin_tty, false).await
}

async fn run_with(
    rt: &mut Rt,
    p: &Pod,
    name: &str,
    cmd: &[&str],
    stdin: bool,
    tty: bool,
    stdin_once: bool,
) -> String {
    let cfg = cri::ContainerConfig {
        log_path: format!("{name}.log"),
        stdin,
        tty,
        stdin_once,
        ..container_config(name, cmd)
    };
    p.run_container(rt, cfg).await
}

fn exec_req(id: &str, cmd: &[&str], tty: bool, stdin: bool, stderr: bool) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr,
    }
}

async fn exec_url(rt: &mut Rt, req: cri::ExecRequest) -> String {
    let url = rt.exec(req).await.expect("Exec").into_inner().url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    url
}

/// PortForward for `ports` of sandbox `id`: the streaming URL.
async fn port_forward_url(rt: &mut Rt, id: &str, ports: &[i32]) -> String {
    rt.port_forward(cri::PortForwardRequest {
        pod_sandbox_id: id.into(),
        port: ports.to_vec(),
    })
    .await
    .expect("PortForward")
    .into_inner()
    .url
}

fn exit_code_of(status: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(status).ok()?;
    v["details"]["causes"]
        .as_array()?
        .iter()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str())
        .map(str::to_string)
}

/// PIDs of processes in `id` whose command line contains `needle` (`docker top`).
fn top_has(id: &str, needle: &str) -> bool {
    let (_, out) = common::docker_try(&["top", id, "-o", "pid,args"]);
    out.lines().skip(1).any(|l| l.contains(needle))
}

/// Wait until a process matching `needle` runs in `id` (`running`) or no longer does; panics
/// with `what` and the processes of `id` after `timeout`.
async fn wait_top(id: &str, needle: &str, running: bool, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while top_has(id, needle) != running {
        assert!(
            Instant::now() < deadline,
            "{what}:\n{}",
            common::docker(&["top", id])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Run the exec or attach at `url` with the client of `proto`: SPDY for v4, WebSocket for v5.
async fn exec_over(
    url: &str,
    proto: &str,
    opts: ExecOptions,
) -> Result<client::ExecOutput, client::ClientError> {
    if proto.starts_with("v4") {
        client::spdy_exec(url, proto, opts).await
    } else {
        client::ws_exec(url, proto, opts).await
    }
}

#[tokio::test]
async fn exec_stdout_stderr_and_exit_code_over_spdy_and_websocket() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;

    for proto in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let url = exec_url(
            &mut rt,
            exec_req(&c, &["echo", "hello"], false, false, true),
        )
        .await;
        let opts = ExecOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let o = exec_over(&url, proto, opts).await.expect("exec echo");
        assert_eq!(o.stdout, b"hello\n", "{proto}");
        assert!(o.stderr.is_empty(), "{proto}");
        assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS, "{proto}");

        let url = exec_url(
            &mut rt,
            exec_req(
                &c,
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                false,
                false,
                true,
            ),
        )
        .await;
        let opts = ExecOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let o = exec_over(&url, proto, opts).await.expect("exec exit 3");
        assert_eq!(o.stdout, b"out\n", "{proto}");
        assert_eq!(o.stderr, b"err\n", "{proto}");
        assert_eq!(
            exit_code_of(&o.error).as_deref(),
            Some("3"),
            "{proto}: {}",
            String::from_utf8_lossy(&o.error)
        );
    }
}

#[tokio::test]
async fn exec_stdin_cat_and_tty_resize() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;

    // stdin piped to cat, both transports.
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for proto in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let url = exec_url(&mut rt, exec_req(&c, &["cat"], false, true, true)).await;
        let opts = ExecOptions {
            stdin: Some(input.clone()),
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let o = exec_over(&url, proto, opts).await.expect("exec cat");
        assert_eq!(o.stdout.len(), input.len(), "{proto}");
        assert!(o.stdout == input, "{proto}: cat output differs");
        assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS, "{proto}");
    }

    // A TTY exec sees the size the client sent on the resize stream.
    for (proto, size) in [
        (
            "v4.channel.k8s.io",
            TermSize {
                width: 123,
                height: 45,
            },
        ),
        (
            "v5.channel.k8s.io",
            TermSize {
                width: 77,
                height: 33,
            },
        ),
    ] {
        let url = exec_url(
            &mut rt,
            exec_req(&c, &["sh", "-c", "sleep 1; stty size"], true, false, false),
        )
        .await;
        let opts = ExecOptions {
            stdout: true,
            tty: true,
            resize: vec![size],
            ..Default::default()
        };
        let o = exec_over(&url, proto, opts).await.expect("tty exec");
        let want = format!("{} {}\r\n", size.height, size.width);
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{proto}");
        assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS, "{proto}");
    }
}

#[tokio::test]
async fn attach_to_running_tty_container() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    for proto in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let c = run(&mut rt, &p, &format!("sh-{}", &proto[..2]), &["sh"], true).await;
        let url = rt
            .attach(cri::AttachRequest {
                container_id: c.clone(),
                stdin: true,
                tty: true,
                stdout: true,
                stderr: false,
            })
            .await
            .expect("Attach")
            .into_inner()
            .url;
        // The shell exits after the command, which ends the attach.
        let opts = ExecOptions {
            stdin: Some(b"echo hi-$((6*7)); exit\n".to_vec()),
            stdout: true,
            tty: true,
            ..Default::default()
        };
        let o = tokio::time::timeout(Duration::from_secs(30), exec_over(&url, proto, opts))
            .await
            .expect("attach ends when the shell exits")
            .expect("attach");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("hi-42"), "{proto}: {out:?}");
    }
}

/// stdin_once without TTY: the end of the attach's stdin closes the container's stdin, so `cat`
/// sees EOF, prints what it got and exits, which ends the attach.
#[tokio::test]
async fn attach_stdin_once_closes_container_stdin() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let c = run_with(&mut rt, &p, "cat", &["cat"], true, false, true).await;
    let url = rt
        .attach(cri::AttachRequest {
            container_id: c.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    let o = tokio::time::timeout(
        Duration::from_secs(30),
        client::spdy_exec(
            &url,
            "v4.channel.k8s.io",
            ExecOptions {
                stdin: Some(b"once\n".to_vec()),
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        ),
    )
    .await
    .expect("attach ends when cat exits")
    .expect("attach");
    assert_eq!(o.stdout, b"once\n");
    assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS);
}

#[tokio::test]
async fn rpc_validation_codes() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;

    let e = rt
        .exec(exec_req(
            "no-such-container",
            &["true"],
            false,
            false,
            false,
        ))
        .await
        .expect_err("unknown container");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let mut r = exec_req(&c, &["true"], false, false, false);
    r.stdout = false;
    let e = rt.exec(r).await.expect_err("no streams");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = rt
        .exec(exec_req(&c, &["true"], true, false, true))
        .await
        .expect_err("tty+stderr");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = rt
        .attach(cri::AttachRequest {
            container_id: c.clone(),
            tty: true,
            stdout: true,
            stderr: true,
            stdin: false,
        })
        .await
        .expect_err("attach tty+stderr");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "no-such-sandbox".into(),
            port: vec![80],
        })
        .await
        .expect_err("unknown sandbox");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Not running: FailedPrecondition.
    let stopped = run(&mut rt, &p, "stopped", &["true"], false).await;
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "container did not exit",
        async || {
            (common::docker(&["inspect", "-f", "{{.State.Running}}", &stopped]) != "true")
                .then_some(())
        },
    )
    .await;
    let e = rt
        .exec(exec_req(&stopped, &["true"], false, false, false))
        .await
        .expect_err("stopped container");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    stop_pod_sandbox(&mut rt, &p.id).await;
    let e = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: p.id.clone(),
            port: vec![80],
        })
        .await
        .expect_err("stopped sandbox");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}

#[tokio::test]
async fn token_reuse_and_unknown_are_404_without_exec_left_behind() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;

    let url = exec_url(
        &mut rt,
        exec_req(&c, &["sleep", "4242"], false, false, false),
    )
    .await;
    // Unknown token: 404 on both transports, and nothing ran.
    let bogus = format!("{}/exec/not-a-token", url.rsplit_once("/exec/").unwrap().0);
    let e = client::spdy_connect(&bogus, &["v4.channel.k8s.io"])
        .await
        .err()
        .expect("unknown token refused");
    assert_eq!(e.status(), Some(404), "{e}");
    let e = client::ws_connect(&bogus, &["v5.channel.k8s.io"])
        .await
        .expect_err("unknown token refused");
    assert_eq!(e.status(), Some(404), "{e}");

    // Use the real token once, cut the connection, then reuse it.
    let (ws, _) = client::ws_connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("first use");
    wait_top(
        &c,
        "sleep 4242",
        true,
        Duration::from_secs(10),
        "exec never started",
    )
    .await;
    let e = client::ws_connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect_err("reuse refused");
    assert_eq!(e.status(), Some(404), "{e}");
    let e = client::spdy_connect(&url, &["v4.channel.k8s.io"])
        .await
        .err()
        .expect("reuse refused");
    assert_eq!(e.status(), Some(404), "{e}");

    // The client going away mid-exec kills the process.
    drop(ws);
    wait_top(
        &c,
        "sleep 4242",
        false,
        Duration::from_secs(20),
        "exec'd sleep still running after the client disconnected",
    )
    .await;
    assert!(top_has(&c, "sleep 1000"), "main process must survive");
}

/// The host's own IPv4 addresses other than loopback (`ip -4 -o addr`).
fn host_ipv4_addrs() -> Vec<std::net::Ipv4Addr> {
    common::command_output("ip", &["-4", "-o", "addr", "show"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
        .filter(|ip: &std::net::Ipv4Addr| !ip.is_loopback())
        .collect()
}

/// Security defaults: without --streaming-bind-addr the streaming server answers on 127.0.0.1
/// only (the URLs' host; the same port on every other address of the host refuses), each token
/// is 24 bytes (192 bits) of URL-safe base64 and none repeats; --streaming-bind-addr moves it.
#[tokio::test]
async fn streaming_server_is_loopback_only_by_default_with_unguessable_tokens() {
    use base64::Engine;
    use std::net::{SocketAddr, TcpStream};
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let mut tokens = std::collections::HashSet::new();
    let mut port = 0u16;
    for _ in 0..50 {
        let url = port_forward_url(&mut rt, &p.id, &[80]).await;
        let (p_str, token) = url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|r| r.split_once("/portforward/"))
            .unwrap_or_else(|| panic!("not a loopback port-forward URL: {url}"));
        port = p_str.parse().expect("port");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .unwrap_or_else(|e| panic!("token {token:?} is not URL-safe base64: {e}"));
        assert_eq!(bytes.len(), 24, "{token}");
        assert!(
            tokens.insert(token.to_string()),
            "token {token} issued twice"
        );
    }
    TcpStream::connect(("127.0.0.1", port)).expect("streaming server on loopback");
    let others = host_ipv4_addrs();
    assert!(!others.is_empty(), "no non-loopback address to check");
    for ip in &others {
        let e = TcpStream::connect_timeout(&SocketAddr::from((*ip, port)), Duration::from_secs(2))
            .expect_err("streaming server reachable on a non-loopback address");
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{ip}:{port}: {e}"
        );
    }

    // The operator's choice: another address.
    let ip = others[0];
    let d2 = Daemon::start(&[
        "--network-plugin=no-op",
        &format!("--streaming-bind-addr={ip}"),
    ])
    .await;
    let mut rt2 = d2.runtime().await;
    let p2 = pod(&mut rt2, &d2).await;
    let url = port_forward_url(&mut rt2, &p2.id, &[80]).await;
    assert!(url.starts_with(&format!("http://{ip}:")), "{url}");
}

/// A daemon, a pod (removed when dropped) with a running container, and the URL of a TTY exec
/// (with stdin) of `sh -c script` in it: (daemon, pod, container ID, URL).
async fn tty_exec_of(script: &str) -> (Daemon, Pod, String, String) {
    let (d, mut rt, p) = daemon_and_pod().await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;
    let url = exec_url(
        &mut rt,
        exec_req(&c, &["sh", "-c", script], true, true, false),
    )
    .await;
    (d, p, c, url)
}

#[tokio::test]
async fn spdy_client_disconnect_kills_tty_exec() {
    require_docker!();
    let (d, _p, c, url) = tty_exec_of("sleep 4343").await;
    let conn = client::spdy_connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    let _err = conn.open(&[("streamtype", "error")]).await.expect("error");
    let _stdin = conn.open(&[("streamtype", "stdin")]).await.expect("stdin");
    let _out = conn
        .open(&[("streamtype", "stdout")])
        .await
        .expect("stdout");
    let _resize = conn
        .open(&[("streamtype", "resize")])
        .await
        .expect("resize");
    wait_top(
        &c,
        "sleep 4343",
        true,
        Duration::from_secs(10),
        "exec never started",
    )
    .await;
    conn.conn.terminate();
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(20);
    while top_has(&c, "sleep 4343") {
        assert!(
            Instant::now() < deadline,
            "tty exec still running after the client disconnected:\n{}\ndaemon log:\n{}",
            common::docker(&["top", &c]),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TTY exec whose client closes stdin but stays connected: Docker ends the attach's output
/// while the process runs on. The process is killed once the wait for its exit gives up, and
/// the client gets a failure status rather than success or a hang.
#[tokio::test]
async fn tty_exec_left_running_after_stdin_closes_is_killed() {
    require_docker!();
    let (_d, _p, c, url) = tty_exec_of("sleep 4344").await;
    let o = tokio::time::timeout(
        Duration::from_secs(30),
        client::spdy_exec(
            &url,
            "v4.channel.k8s.io",
            ExecOptions {
                stdin: Some(Vec::new()),
                stdout: true,
                tty: true,
                ..Default::default()
            },
        ),
    )
    .await
    .expect("the exec session ended")
    .expect("exec");
    let status = String::from_utf8_lossy(&o.error).into_owned();
    assert!(status.contains("Failure"), "{status}");
    wait_top(
        &c,
        "sleep 4344",
        false,
        Duration::from_secs(10),
        "the exec outlived its session",
    )
    .await;
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

const GET: &[u8] = b"GET /index.html HTTP/1.0\r\n\r\n";
const INDEX: &str = "hello from cri-dockerd-test";

/// GET the index from `port` on new streams (request ids from `first_id`) every 200 ms until
/// httpd answers with it; returns that answer's (data, error stream). Panics after 10 s.
async fn forward_until_index(
    c: &client::SpdyClient,
    port: &str,
    first_id: u32,
) -> (Vec<u8>, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = first_id;
    loop {
        let (data, err) = spdy_forward_once(c, port, &n.to_string(), GET).await;
        n += 1;
        if String::from_utf8_lossy(&data).contains(INDEX) {
            return (data, err);
        }
        assert!(
            Instant::now() < deadline,
            "no answer from httpd on port {port}: {:?} {:?}",
            String::from_utf8_lossy(&data),
            String::from_utf8_lossy(&err)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn port_forward_to_httpd_in_pod_ipv4_ipv6_and_concurrent() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let _httpd = run(
        &mut rt,
        &p,
        "httpd",
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        false,
    )
    .await;
    // An IPv6-only listener: reached only through the [::1] fallback.
    let httpd6 = run(
        &mut rt,
        &p,
        "httpd6",
        &["httpd", "-f", "-p", "[::1]:8086", "-h", "/var/www"],
        false,
    )
    .await;
    let url = port_forward_url(&mut rt, &p.id, &[80]).await;
    let c = client::spdy_connect(&url, &["portforward.k8s.io"])
        .await
        .expect("connect");
    // Give httpd a moment to bind.
    let (_, err) = forward_until_index(&c, "80", 0).await;
    assert!(err.is_empty());
    // Two concurrent streams on one connection.
    let (a, b) = tokio::join!(
        spdy_forward_once(&c, "80", "100", GET),
        spdy_forward_once(&c, "80", "101", GET),
    );
    for (data, err) in [a, b] {
        assert!(
            String::from_utf8_lossy(&data).contains(INDEX),
            "{:?}",
            String::from_utf8_lossy(&err)
        );
    }
    // IPv6 loopback, when the pod has it.
    let (ok, addrs) = common::docker_try(&["exec", &httpd6, "ip", "-6", "addr", "show", "lo"]);
    if ok && addrs.contains("::1") {
        forward_until_index(&c, "8086", 200).await;
    } else {
        eprintln!("pod has no IPv6 loopback ({addrs:?}): IPv6 port-forward not checked");
    }
    // Nothing listening: the error stream says so.
    let (data, err) = spdy_forward_once(&c, "9", "300", b"x").await;
    assert!(data.is_empty());
    assert!(
        String::from_utf8_lossy(&err).contains("refused"),
        "{:?}",
        String::from_utf8_lossy(&err)
    );
    c.conn.close().await;

    // WebSocket port-forward: port 80 on channels 0 (data) and 1 (error).
    let url = port_forward_url(&mut rt, &p.id, &[80]).await;
    use futures_util::{SinkExt, StreamExt};
    let (ws, _) = client::ws_connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("ws");
    let (mut sink, mut source) = ws.split();
    for _ in 0..2 {
        let m = source.next().await.expect("msg").expect("ok");
        assert_eq!(client::ws_decode_binary(&m).expect("frame").1, vec![80, 0]);
    }
    sink.send(client::ws_binary(0, GET)).await.expect("send");
    let mut body = Vec::new();
    while let Some(Ok(m)) = source.next().await {
        if let Some((0, d)) = client::ws_decode_binary(&m) {
            body.extend(d);
        }
        if String::from_utf8_lossy(&body).contains(INDEX) {
            break;
        }
    }
    assert!(String::from_utf8_lossy(&body).contains(INDEX));
    let _ = sink.close().await;
}

/// A host-network pod: the forward enters the host's namespace; the listener is IPv6-only, so
/// the request goes through the `[::1]` fallback. (Docker bridge pods have IPv6 disabled on `lo`.)
#[tokio::test]
async fn port_forward_host_network_ipv6_loopback() {
    require_docker!();
    if !std::fs::read_to_string("/proc/net/if_inet6")
        .is_ok_and(|s| s.contains("00000000000000000000000000000001"))
    {
        eprintln!("host has no ::1: IPv6 port-forward not checked");
        return;
    }
    let (d, mut rt) = daemon().await;
    let p = Pod::run_with(&mut rt, &d, "stream", "streamtest", |c| {
        c.linux = host_network()
    })
    .await;
    let port = (20000 + std::process::id() % 20000).to_string();
    let listen = format!("[::1]:{port}");
    let _httpd = run(
        &mut rt,
        &p,
        "httpd6",
        &["httpd", "-f", "-p", &listen, "-h", "/var/www"],
        false,
    )
    .await;
    let url = port_forward_url(&mut rt, &p.id, &[]).await;
    let c = client::spdy_connect(&url, &["portforward.k8s.io"])
        .await
        .expect("connect");
    forward_until_index(&c, &port, 0).await;
    c.conn.close().await;
}

/// 64 MiB through exec stdin -> `cat` -> stdout arrives byte-exact.
#[tokio::test]
async fn exec_cat_64mib_byte_exact() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;
    let data = pattern(64 << 20);
    let url = exec_url(&mut rt, exec_req(&c, &["cat"], false, true, false)).await;
    let t = Instant::now();
    let o = client::ws_exec(
        &url,
        "v5.channel.k8s.io",
        ExecOptions {
            stdin: Some(data.clone()),
            stdout: true,
            ..Default::default()
        },
    )
    .await
    .expect("exec cat");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(o.stdout.len(), data.len());
    assert!(o.stdout == data, "64 MiB differ");
    eprintln!(
        "cri-dockerd exec (WebSocket v5) cat 64 MiB: {secs:.2}s, {:.1} MiB/s",
        64.0 / secs
    );
}

fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Throughput: 64 MiB through `cat` via our SPDY and WebSocket exec vs `docker exec -i` directly.
/// Run with `cargo test -p cri-dockerd --test streaming_docker -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn bench_exec_cat_throughput() {
    require_docker!();
    let (d, mut rt, p) = daemon_and_pod().await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;
    let data = pattern(64 << 20);
    for proto in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let url = exec_url(&mut rt, exec_req(&c, &["cat"], false, true, false)).await;
        let opts = ExecOptions {
            stdin: Some(data.clone()),
            stdout: true,
            ..Default::default()
        };
        let t = Instant::now();
        let o = exec_over(&url, proto, opts).await.expect("exec");
        let secs = t.elapsed().as_secs_f64();
        assert!(o.stdout == data);
        println!(
            "cri-dockerd exec {proto:<20} 64 MiB: {secs:6.2}s {:7.1} MiB/s",
            64.0 / secs
        );
    }
    let file = d.dir.path().join("bench.bin");
    std::fs::write(&file, &data).unwrap();
    let t = Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker exec -i {c} cat < {} | wc -c",
            file.display()
        ))
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (64 << 20).to_string()
    );
    println!(
        "docker exec -i cat            64 MiB: {secs:6.2}s {:7.1} MiB/s",
        64.0 / secs
    );
}
