//! dockerd going away and coming back, simulated with a unix-socket proxy in front of the real
//! dockerd (so the shared daemon is never stopped): RuntimeReady follows it, calls fail with
//! Unavailable instead of hanging, and the daemon recovers without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Daemon;
use k8s_cri::v1 as cri;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// A proxy from `path` to the real docker socket, stoppable and restartable.
struct Proxy {
    path: PathBuf,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    fn new(path: &Path) -> Proxy {
        Proxy {
            path: path.to_path_buf(),
            task: None,
        }
    }

    fn start(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy");
        let upstream = common::docker_endpoint()
            .trim_start_matches("unix://")
            .to_string();
        self.task = Some(tokio::spawn(async move {
            let mut conns = Vec::new();
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    break;
                };
                let upstream = upstream.clone();
                conns.push(tokio::spawn(async move {
                    if let Ok(mut up) = UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                }));
                conns.retain(|c| !c.is_finished());
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn runtime_ready(
    rt: &mut k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
) -> (bool, String) {
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("Status always answers")
        .into_inner();
    let c = st
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    (c.status, c.message)
}

async fn wait_ready(
    rt: &mut k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    want: bool,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ready, msg) = runtime_ready(rt).await;
        if ready == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "RuntimeReady stayed {ready} ({msg}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn follows_dockerd_going_away_and_coming_back() {
    require_docker!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let mut proxy = Proxy::new(&sock);
    proxy.start();
    let d = Daemon::start(&[&format!("--docker-endpoint=unix://{}", sock.display())]).await;
    let mut rt = d.runtime().await;
    wait_ready(&mut rt, true).await;
    rt.version(cri::VersionRequest::default())
        .await
        .expect("version while up");

    proxy.stop();
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
    wait_ready(&mut rt, true).await;
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
    let mut proxy = Proxy::new(&sock);
    let d = Daemon::start(&[&format!("--docker-endpoint=unix://{}", sock.display())]).await;
    let mut rt = d.runtime().await;
    let (ready, msg) = runtime_ready(&mut rt).await;
    assert!(!ready, "no dockerd yet");
    assert!(
        msg.contains(&sock.display().to_string()),
        "message names the endpoint: {msg}"
    );

    proxy.start();
    wait_ready(&mut rt, true).await;
    rt.version(cri::VersionRequest::default())
        .await
        .expect("version after dockerd appeared");
}
