//! ExecSync over the real socket against real dockerd: output, exit codes, timeout kill, errors.

mod common;

use k8s_cri::v1 as cri;
use tonic::Code;

/// A running busybox container, removed on drop.
struct Container {
    id: String,
}

impl Container {
    fn run() -> Container {
        let name = format!("cri-exec-test-{:016x}", rand_suffix());
        let id = common::docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "cri-dockerd-test/busybox:latest",
            "sleep",
            "1000",
        ]);
        Container { id }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = common::docker_try(&["rm", "-f", &self.id]);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn req(id: &str, cmd: &[&str], timeout: i64) -> cri::ExecSyncRequest {
    cri::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    }
}

#[tokio::test]
async fn exec_sync_returns_stdout_stderr_and_exit_code() {
    require_docker!();
    let c = Container::run();
    let d = common::Daemon::start(&[]).await;
    let mut rt = d.runtime().await;

    let r = rt
        .exec_sync(req(&c.id, &["echo", "hello"], 0))
        .await
        .expect("exec echo")
        .into_inner();
    assert_eq!(r.stdout, b"hello\n");
    assert!(r.stderr.is_empty());
    assert_eq!(r.exit_code, 0);

    let r = rt
        .exec_sync(req(
            &c.id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            10,
        ))
        .await
        .expect("exec sh")
        .into_inner();
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(r.exit_code, 3);

    // The same through CRI v1alpha2.
    let mut alpha = d.runtime_alpha().await;
    let r = alpha
        .exec_sync(k8s_cri::v1alpha2::ExecSyncRequest {
            container_id: c.id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo a; echo b >&2; exit 4".into(),
            ],
            timeout: 5,
        })
        .await
        .expect("v1alpha2 exec")
        .into_inner();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"a\n"[..], &b"b\n"[..], 4)
    );

    // A command that does not exist: Docker reports exit code 126/127, not an RPC error.
    let r = rt
        .exec_sync(req(&c.id, &["/no/such/binary"], 10))
        .await
        .expect("exec missing binary")
        .into_inner();
    assert_ne!(r.exit_code, 0);
}

#[tokio::test]
async fn exec_sync_timeout_kills_the_process() {
    require_docker!();
    let c = Container::run();
    let d = common::Daemon::start(&[]).await;
    let mut rt = d.runtime().await;

    let start = std::time::Instant::now();
    // A shell with a child: both must be gone afterwards.
    let err = rt
        .exec_sync(req(&c.id, &["sh", "-c", "sleep 777; echo never"], 1))
        .await
        .expect_err("must time out");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));

    // Give the kernel a moment to reap, then look for the processes inside the container.
    let mut left = String::new();
    for _ in 0..50 {
        left = common::docker(&["exec", &c.id, "ps", "-o", "pid,args"]);
        if !left.contains("sleep 777") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !left.contains("sleep 777"),
        "process survived the timeout:\n{left}"
    );
    assert!(
        !left.contains("echo never"),
        "shell survived the timeout:\n{left}"
    );

    // The container itself is unharmed.
    let r = rt
        .exec_sync(req(&c.id, &["true"], 5))
        .await
        .expect("exec after timeout")
        .into_inner();
    assert_eq!(r.exit_code, 0);
}

/// Output of `ps` in `id` once `pattern` disappeared from it (or after 5 s).
async fn ps_without(id: &str, pattern: &str) -> String {
    let mut left = String::new();
    for _ in 0..50 {
        left = common::docker(&["exec", id, "ps", "-o", "pid,args"]);
        if !left.contains(pattern) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    left
}

#[tokio::test]
async fn exec_sync_timeout_kills_even_when_the_client_gave_up() {
    require_docker!();
    let c = Container::run();
    let d = common::Daemon::start(&[]).await;
    let mut rt = d.runtime().await;

    // The client's deadline (1 s) ends the RPC before the exec timeout (2 s) does.
    let mut request = tonic::Request::new(req(&c.id, &["sleep", "778"], 2));
    request.set_timeout(std::time::Duration::from_secs(1));
    let err = rt.exec_sync(request).await.expect_err("client deadline");
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    let running = common::docker(&["exec", &c.id, "ps", "-o", "pid,args"]);
    assert!(
        running.contains("sleep 778"),
        "exec should still run until its own timeout"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let left = ps_without(&c.id, "sleep 778").await;
    assert!(
        !left.contains("sleep 778"),
        "process survived its timeout:\n{left}"
    );
}

#[tokio::test]
async fn exec_sync_errors_have_proper_codes() {
    require_docker!();
    let d = common::Daemon::start(&[]).await;
    let mut rt = d.runtime().await;

    let err = rt
        .exec_sync(req("no-such-container-4b1d2c", &["true"], 0))
        .await
        .expect_err("unknown container");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = rt
        .exec_sync(req("", &["true"], 0))
        .await
        .expect_err("empty id");
    assert_eq!(err.code(), Code::InvalidArgument);

    let c = Container::run();
    let err = rt
        .exec_sync(req(&c.id, &[], 0))
        .await
        .expect_err("empty cmd");
    assert_eq!(err.code(), Code::InvalidArgument);

    common::docker(&["stop", "-t", "0", &c.id]);
    let err = rt
        .exec_sync(req(&c.id, &["true"], 0))
        .await
        .expect_err("stopped container");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}
