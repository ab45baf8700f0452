//! dockerd going away and coming back, simulated with a unix-socket proxy in front of the real
//! dockerd (so the shared daemon is never stopped): RuntimeReady follows it, calls fail with
//! Unavailable instead of hanging, and the daemon recovers without a restart.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::pods::{runtime_ready, wait_runtime_ready};
use common::proxy::DockerProxy;
use k8s_cri::v1 as cri;

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A daemon talking to dockerd through a started [`DockerProxy`], ready; the temp dir holds the
/// proxy's socket.
async fn ready_behind_proxy() -> (tempfile::TempDir, DockerProxy, Daemon, common::pods::Rt) {
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::started(&dir.path().join("docker.sock"));
    let d = Daemon::start(&[&proxy.endpoint_flag()]).await;
    let mut rt = d.runtime().await;
    wait_runtime_ready(&mut rt, true, READY_TIMEOUT).await;
    (dir, proxy, d, rt)
}

#[tokio::test]
async fn follows_dockerd_going_away_and_coming_back() {
    require_docker!();
    let (_dir, mut proxy, d, mut rt) = ready_behind_proxy().await;
    rt.version(cri::VersionRequest::default())
        .await
        .expect("version while up");

    proxy.stop().await;
    let (ready, msg) = runtime_ready(&mut rt).await;
    assert!(!ready);
    assert!(msg.contains("docker"), "{msg}");
    let started = Instant::now();
    let err = rt
        .version(cri::VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed fast, not after a hang"
    );
    let err = d
        .image()
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    proxy.start();
    wait_runtime_ready(&mut rt, true, READY_TIMEOUT).await;
    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .expect("version after recovery")
        .into_inner();
    assert_eq!(v.runtime_name, "docker");
}

#[tokio::test]
async fn starts_while_dockerd_is_down_and_recovers() {
    require_docker!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let mut proxy = DockerProxy::new(&sock);
    let d = Daemon::start(&[&proxy.endpoint_flag()]).await;
    let mut rt = d.runtime().await;
    let (ready, msg) = runtime_ready(&mut rt).await;
    assert!(!ready, "no dockerd yet");
    assert!(
        msg.contains(&sock.display().to_string()),
        "message names the endpoint: {msg}"
    );

    proxy.start();
    wait_runtime_ready(&mut rt, true, READY_TIMEOUT).await;
    rt.version(cri::VersionRequest::default())
        .await
        .expect("version after dockerd appeared");
}

/// Docker calls reuse idle connections (as the Go original's client does) instead of dialing
/// dockerd for each, and a connection cut by a dockerd restart is not reused.
#[tokio::test]
async fn docker_connections_are_reused_and_replaced_after_a_restart() {
    require_docker!();
    let (_dir, mut proxy, _d, mut rt) = ready_behind_proxy().await;
    let calls = |rt: &mut common::pods::Rt| {
        let mut rt = rt.clone();
        async move {
            for _ in 0..20 {
                rt.version(cri::VersionRequest::default())
                    .await
                    .expect("Version");
            }
        }
    };
    calls(&mut rt).await;
    let before = proxy.accepted();
    calls(&mut rt).await;
    assert_eq!(
        proxy.accepted(),
        before,
        "20 sequential calls on a warm pool dial no new connection"
    );

    proxy.stop().await;
    proxy.start();
    wait_runtime_ready(&mut rt, true, READY_TIMEOUT).await;
    calls(&mut rt).await;
    assert!(
        proxy.accepted() > before,
        "new connections after the restart"
    );
}
