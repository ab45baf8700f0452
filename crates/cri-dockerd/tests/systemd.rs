//! systemd integration on the real binary: socket activation (`fd://` with LISTEN_FDS/LISTEN_PID,
//! through Debian's `systemd-socket-activate` and through our own fd passing) with a client that
//! connects before the daemon starts, `sd_notify` READY=1/STOPPING=1 and a clean exit on SIGTERM,
//! the `fd://` failure without a passed socket, and the unit files in packaging/systemd.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::Proc;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tonic::transport::{Channel, Endpoint, Uri};

/// Flags every daemon here gets: private state, the test pause image, the local dockerd.
fn base_args(dir: &Path) -> Vec<String> {
    vec![
        format!(
            "--cri-dockerd-root-directory={}",
            dir.join("root").display()
        ),
        format!("--cni-conf-dir={}", dir.join("net.d").display()),
        "--pod-infra-container-image=cri-dockerd-test/pause:latest".into(),
        format!("--docker-endpoint={}", common::docker_endpoint()),
    ]
}

/// A gRPC channel over an already connected stream (connected before the daemon existed).
async fn channel_over(stream: UnixStream) -> Channel {
    stream.set_nonblocking(true).expect("nonblocking");
    let slot = Arc::new(Mutex::new(Some(stream)));
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let taken = slot.lock().expect("slot").take();
            async move {
                let s = taken.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotConnected, "stream already used")
                })?;
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::from_std(s)?))
            }
        }))
        .await
        .expect("HTTP/2 over the pre-connected stream")
}

async fn version_over(stream: UnixStream, log: impl Fn() -> String) -> cri::VersionResponse {
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(channel_over(stream).await);
    tokio::time::timeout(
        Duration::from_secs(30),
        rt.version(cri::VersionRequest::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("Version timed out; log:\n{}", log()))
    .unwrap_or_else(|e| panic!("Version failed: {e:?}; log:\n{}", log()))
    .into_inner()
}

/// Debian's `systemd-socket-activate` binds the socket, waits for the first connection, then
/// execs the daemon with LISTEN_FDS=1 and LISTEN_PID set — so the client connects first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_with_systemd_socket_activate() {
    require_docker!();
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        assert!(
            !common::required(),
            "systemd-socket-activate missing (Debian package systemd)"
        );
        eprintln!("skipping: systemd-socket-activate not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri-dockerd.sock");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(&socket)
        .arg(common::binary())
        .arg("--container-runtime-endpoint=fd://")
        .args(base_args(dir.path()));
    let mut p = Proc::spawn(cmd, dir.path().join("daemon.log"));

    let stream = p.connect(&socket, 10);
    let v = version_over(stream, || p.log()).await;
    assert_eq!(v.runtime_name, "docker");
    assert_eq!(v.runtime_api_version, "v1");
    let log = p.log();
    assert!(
        log.contains("serving CRI") && log.contains("fd://"),
        "{log}"
    );
    // The activated daemon serves further connections on the same socket.
    let mut rt =
        cri::runtime_service_client::RuntimeServiceClient::new(common::connect(&socket).await);
    rt.version(cri::VersionRequest::default())
        .await
        .expect("second connection");
    p.signal("-TERM");
    assert!(p.wait_exit(20).success(), "{}", p.log());
}

/// Our own fd passing, as systemd does it: the socket at fd 3, LISTEN_FDS=1, LISTEN_PID = the
/// daemon's pid (set by the shell that execs it). The client connects before the spawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_with_own_fd_passing_and_early_client() {
    require_docker!();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri-dockerd.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    // Connected while nobody accepts: the connection waits in the listen backlog.
    let early = UnixStream::connect(&socket).expect("connect before the daemon starts");

    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#)
        .arg(common::binary())
        .arg("--container-runtime-endpoint=fd://")
        .args(base_args(dir.path()))
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID");
    pass_as_fd3(&mut cmd, &listener);
    let mut p = Proc::spawn(cmd, dir.path().join("daemon.log"));
    drop(listener);

    let v = version_over(early, || p.log()).await;
    assert_eq!(v.runtime_name, "docker");
    p.signal("-TERM");
    assert!(p.wait_exit(20).success(), "{}", p.log());
    // systemd owns the socket file, not the daemon: it is still there.
    assert!(socket.exists());
}

/// Put `listener` at fd 3 of the child, inheritable.
fn pass_as_fd3(cmd: &mut Command, listener: &UnixListener) {
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls only dup2/fcntl, which
    // are async-signal-safe; `fd` stays open in the parent until spawn returns.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                // dup2 leaves FD_CLOEXEC clear on the new descriptor.
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// READY=1 once the socket serves, STOPPING=1 on SIGTERM, then a clean exit (0) even with a
/// client connection still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_then_stopping_and_clean_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let socket = dir.path().join("cri.sock");

    let mut cmd = Command::new(common::binary());
    cmd.arg(format!(
        "--container-runtime-endpoint=unix://{}",
        socket.display()
    ))
    .args(base_args(dir.path()))
    .env_remove("LISTEN_FDS")
    .env_remove("LISTEN_PID")
    .env("NOTIFY_SOCKET", &notify_path);
    let mut p = Proc::spawn(cmd, dir.path().join("daemon.log"));

    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1 ({e}); log:\n{}", p.log()));
    assert_eq!(std::str::from_utf8(&buf[..n]), Ok("READY=1"));
    // Ready means serving: the socket accepts now, and gRPC answers on it.
    let channel = common::connect(&socket).await;
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(channel);
    // Any answer (Docker may be absent here) proves the server is up; keep the connection open.
    let _ = rt.version(cri::VersionRequest::default()).await;

    p.signal("-TERM");
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no STOPPING=1 ({e}); log:\n{}", p.log()));
    assert_eq!(std::str::from_utf8(&buf[..n]), Ok("STOPPING=1"));
    let stopping = Instant::now();
    let st = p.wait_exit(20);
    assert_eq!(st.code(), Some(0), "{st}; log:\n{}", p.log());
    // Drained, not cut off: well before the daemon's 10s drain deadline.
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "took {:?}; log:\n{}",
        stopping.elapsed(),
        p.log()
    );
    assert!(!p.log().contains("still open"), "{}", p.log());
    assert!(p.log().contains("stopped"), "{}", p.log());
    drop(rt);
}

/// `fd://` with no socket passed (no LISTEN_FDS, or LISTEN_PID naming another process): exit
/// non-zero with one clear line.
#[test]
fn fd_endpoint_without_passed_socket_fails_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for env in [vec![], vec![("LISTEN_FDS", "1"), ("LISTEN_PID", "1")]] {
        let mut cmd = Command::new(common::binary());
        cmd.arg("--container-runtime-endpoint=fd://")
            .args(base_args(dir.path()))
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("NOTIFY_SOCKET");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        assert!(!out.status.success(), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{env:?}: {stderr}");
        assert!(
            stderr.contains("fd://") && stderr.contains("LISTEN_FDS"),
            "{env:?}: {stderr}"
        );
    }
}

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `key=value` lines of one `[section]` (comments and blanks skipped).
fn section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.to_string();
        } else if current == name
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn get<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn units_have_upstream_names_and_semantics() {
    let service = unit("cri-docker.service");
    let u = section(&service, "Unit");
    assert_eq!(
        get(&u, "After"),
        Some("network-online.target firewalld.service docker.service")
    );
    assert_eq!(get(&u, "Wants"), Some("network-online.target"));
    assert_eq!(get(&u, "Requires"), Some("cri-docker.socket"));
    let s = section(&service, "Service");
    for (k, v) in [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/bin/cri-dockerd --container-runtime-endpoint fd://",
        ),
        ("Restart", "always"),
        ("RestartSec", "2"),
        ("StartLimitBurst", "3"),
        ("StartLimitInterval", "60s"),
        ("LimitNOFILE", "infinity"),
        ("LimitNPROC", "infinity"),
        ("LimitCORE", "infinity"),
        ("TasksMax", "infinity"),
        ("Delegate", "yes"),
        ("KillMode", "process"),
    ] {
        assert_eq!(get(&s, k), Some(v), "[Service] {k}");
    }
    assert_eq!(
        get(&section(&service, "Install"), "WantedBy"),
        Some("multi-user.target")
    );

    let socket = unit("cri-docker.socket");
    assert_eq!(
        get(&section(&socket, "Unit"), "PartOf"),
        Some("cri-docker.service")
    );
    let s = section(&socket, "Socket");
    for (k, v) in [
        ("ListenStream", "%t/cri-dockerd.sock"),
        ("SocketMode", "0660"),
        ("SocketUser", "root"),
        ("SocketGroup", "docker"),
    ] {
        assert_eq!(get(&s, k), Some(v), "[Socket] {k}");
    }
    assert_eq!(
        get(&section(&socket, "Install"), "WantedBy"),
        Some("sockets.target")
    );
}

/// `systemd-analyze verify` accepts both units (ExecStart pointed at the built binary).
#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let service = unit("cri-docker.service").replace(
        "/usr/bin/cri-dockerd",
        &common::binary().display().to_string(),
    );
    std::fs::write(dir.path().join("cri-docker.service"), service).expect("write");
    std::fs::write(
        dir.path().join("cri-docker.socket"),
        unit("cri-docker.socket"),
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("cri-docker.socket"))
        .arg(dir.path().join("cri-docker.service"))
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        // Units outside the test's reach (docker.service, firewalld) are not ours to verify.
        .filter(|l| l.contains("cri-docker"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "{}\n{stderr}",
        out.status
    );
}

/// A client that opens HTTP/2 and then never answers (a hung kubelet) cannot hold the stop
/// forever: after the drain deadline (10s) the daemon closes it and exits 0.
#[test]
fn drain_deadline_closes_connections_that_never_finish() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let mut cmd = Command::new(common::binary());
    cmd.arg(format!(
        "--container-runtime-endpoint=unix://{}",
        socket.display()
    ))
    .args(base_args(dir.path()))
    .env_remove("LISTEN_FDS")
    .env_remove("LISTEN_PID");
    let mut p = Proc::spawn(cmd, dir.path().join("daemon.log"));
    let mut stuck = p.connect(&socket, 20);
    // Connection preface and an empty SETTINGS frame; then silence (never ACKs, never reads).
    stuck
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("preface");
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    p.signal("-TERM");
    let st = p.wait_exit(30);
    assert_eq!(st.code(), Some(0), "{st}; log:\n{}", p.log());
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}; log:\n{}",
        p.log()
    );
    assert!(p.log().contains("still open"), "{}", p.log());
    drop(stuck);
}
