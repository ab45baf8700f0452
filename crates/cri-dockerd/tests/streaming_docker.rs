//! Exec, Attach and PortForward end to end: the real binary, the real dockerd, and the
//! `cri-streaming` test client speaking SPDY/3.1 and WebSocket to the returned URLs.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Daemon;
use cri_streaming::TermSize;
use cri_streaming::client::{self, ExecOptions};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::Code;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const BUSYBOX: &str = "cri-dockerd-test/busybox:latest";
const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n & 0xffff_ffff, std::process::id())
}

/// Removes every container of a pod uid on drop, also when the test failed.
struct PodCleanup(String);

impl Drop for PodCleanup {
    fn drop(&mut self) {
        let (_, ids) = common::docker_try(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.kubernetes.pod.uid={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            let _ = common::docker_try(&["rm", "-f", id]);
        }
    }
}

struct Pod {
    id: String,
    config: cri::PodSandboxConfig,
    _cleanup: PodCleanup,
}

async fn daemon() -> (Daemon, Rt) {
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let rt = d.runtime().await;
    (d, rt)
}

async fn pod(rt: &mut Rt, d: &Daemon) -> Pod {
    let uid = unique();
    let cleanup = PodCleanup(uid.clone());
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("stream-{uid}"),
            namespace: "streamtest".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        log_directory: d
            .dir
            .path()
            .join("pods")
            .join(&uid)
            .to_string_lossy()
            .into_owned(),
        ..Default::default()
    };
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    Pod {
        id,
        config,
        _cleanup: cleanup,
    }
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
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        stdin,
        tty,
        stdin_once,
        labels: HashMap::new(),
        ..Default::default()
    };
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: p.id.clone(),
            config: Some(cfg),
            sandbox_config: Some(p.config.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
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

#[tokio::test]
async fn exec_stdout_stderr_and_exit_code_over_spdy_and_websocket() {
    require_docker!();
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
        let o = if proto.starts_with("v4") {
            client::spdy_exec(&url, proto, opts).await
        } else {
            client::ws_exec(&url, proto, opts).await
        }
        .expect("exec echo");
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
        let o = if proto.starts_with("v4") {
            client::spdy_exec(&url, proto, opts).await
        } else {
            client::ws_exec(&url, proto, opts).await
        }
        .expect("exec exit 3");
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
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
        let o = if proto.starts_with("v4") {
            client::spdy_exec(&url, proto, opts).await
        } else {
            client::ws_exec(&url, proto, opts).await
        }
        .expect("exec cat");
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
        let o = if proto.starts_with("v4") {
            client::spdy_exec(&url, proto, opts).await
        } else {
            client::ws_exec(&url, proto, opts).await
        }
        .expect("tty exec");
        let want = format!("{} {}\r\n", size.height, size.width);
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{proto}");
        assert_eq!(String::from_utf8_lossy(&o.error), SUCCESS, "{proto}");
    }
}

#[tokio::test]
async fn attach_to_running_tty_container() {
    require_docker!();
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
        let o = tokio::time::timeout(Duration::from_secs(30), async {
            if proto.starts_with("v4") {
                client::spdy_exec(&url, proto, opts).await
            } else {
                client::ws_exec(&url, proto, opts).await
            }
        })
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
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::docker(&["inspect", "-f", "{{.State.Running}}", &stopped]) == "true" {
        assert!(Instant::now() < deadline, "container did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = rt
        .exec(exec_req(&stopped, &["true"], false, false, false))
        .await
        .expect_err("stopped container");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .expect("StopPodSandbox");
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
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while !top_has(&c, "sleep 4242") {
        assert!(Instant::now() < deadline, "exec never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while top_has(&c, "sleep 4242") {
        assert!(
            Instant::now() < deadline,
            "exec'd sleep still running after the client disconnected:\n{}",
            common::docker(&["top", &c])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(top_has(&c, "sleep 1000"), "main process must survive");
}

#[tokio::test]
async fn spdy_client_disconnect_kills_tty_exec() {
    require_docker!();
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
    let c = run(&mut rt, &p, "main", &["sleep", "1000"], false).await;
    let url = exec_url(
        &mut rt,
        exec_req(&c, &["sh", "-c", "sleep 4343"], true, true, false),
    )
    .await;
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while !top_has(&c, "sleep 4343") {
        assert!(Instant::now() < deadline, "exec never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.conn.terminate();
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(20);
    while top_has(&c, "sleep 4343") {
        assert!(
            Instant::now() < deadline,
            "tty exec still running after the client disconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

#[tokio::test]
async fn port_forward_to_httpd_in_pod_ipv4_ipv6_and_concurrent() {
    require_docker!();
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
    let url = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: p.id.clone(),
            port: vec![80],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    let c = client::spdy_connect(&url, &["portforward.k8s.io"])
        .await
        .expect("connect");
    // Give httpd a moment to bind.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        let (data, err) = spdy_forward_once(&c, "80", &n.to_string(), GET).await;
        n += 1;
        let body = String::from_utf8_lossy(&data);
        if body.contains(INDEX) {
            assert!(err.is_empty());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from httpd: {body:?} {:?}",
            String::from_utf8_lossy(&err)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
        let mut n = 200;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (data, err) = spdy_forward_once(&c, "8086", &n.to_string(), GET).await;
            n += 1;
            if String::from_utf8_lossy(&data).contains(INDEX) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no answer over [::1]: {:?}",
                String::from_utf8_lossy(&err)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
    let url = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: p.id.clone(),
            port: vec![80],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
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
    let mut p = pod(&mut rt, &d).await;
    // Recreate as a host-network pod.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .expect("stop");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .expect("remove");
    p.config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    p.id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(p.config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox host network")
        .into_inner()
        .pod_sandbox_id;
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
    let url = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: p.id.clone(),
            port: vec![],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    let c = client::spdy_connect(&url, &["portforward.k8s.io"])
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        let (data, err) = spdy_forward_once(&c, &port, &n.to_string(), GET).await;
        n += 1;
        if String::from_utf8_lossy(&data).contains(INDEX) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer over [::1]:{port}: {:?}",
            String::from_utf8_lossy(&err)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.conn.close().await;
}

/// 64 MiB through exec stdin -> `cat` -> stdout arrives byte-exact.
#[tokio::test]
async fn exec_cat_64mib_byte_exact() {
    require_docker!();
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
    let (d, mut rt) = daemon().await;
    let p = pod(&mut rt, &d).await;
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
        let o = if proto.starts_with("v4") {
            client::spdy_exec(&url, proto, opts).await
        } else {
            client::ws_exec(&url, proto, opts).await
        }
        .expect("exec");
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
