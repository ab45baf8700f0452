//! Behaviour the CRI conformance suite (critest) relies on that other tests do not cover, over
//! the real socket against the real dockerd: kubelet-length pod and container names.

mod common;

use common::Daemon;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const BUSYBOX: &str = "cri-dockerd-test/busybox:latest";

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

/// A pod named `name` (made unique), logging under the daemon's temp dir.
async fn pod(rt: &mut Rt, d: &Daemon, name: &str) -> Pod {
    let uid = unique();
    let cleanup = PodCleanup(uid.clone());
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("{name}-{uid}"),
            namespace: "conformance".into(),
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

fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

async fn create(rt: &mut Rt, p: &Pod, cfg: cri::ContainerConfig) -> Result<String, tonic::Status> {
    rt.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: p.id.clone(),
        config: Some(cfg),
        sandbox_config: Some(p.config.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

async fn start(rt: &mut Rt, id: &str) {
    rt.start_container(cri::StartContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("StartContainer");
}

async fn remove_pod(rt: &mut Rt, p: &Pod) {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .unwrap();
}

/// critest's security-context specs use pod names of ~60 and container names of ~70 characters
/// (prefix + UUID), which with namespace and uid make Docker names longer than a file name may
/// be: CreateContainer must not depend on the name fitting in one (its crash-recovery intent
/// marker once did, failing with "File name too long"). An interrupted create of such a
/// container is still cleaned up after a restart.
#[tokio::test]
async fn kubelet_length_names_create_and_recover() {
    require_docker!();
    let mut d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &format!("pod-{}", "p".repeat(200))).await;
    let cname = format!("container-{}", "c".repeat(100));
    let id = create(&mut rt, &p, container_config(&cname, &["sleep", "1000"]))
        .await
        .expect("CreateContainer with a long name");
    start(&mut rt, &id).await;
    let s = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(s.metadata.unwrap().name, cname);
    let pending = d.root().join("pending");
    assert_eq!(
        std::fs::read_dir(&pending).map(|r| r.count()).unwrap_or(0),
        0,
        "intent marker left behind"
    );

    // An interrupted CreateContainer of a long-named container: Docker made it, the marker
    // (as CreateContainer writes it) is still there.
    let meta = p.config.metadata.clone().unwrap();
    let half_name = format!(
        "k8s_{}-half_{}_{}_{}_0",
        cname, meta.name, meta.namespace, meta.uid
    );
    assert!(half_name.len() > 255);
    let marker_name = {
        use sha2::{Digest, Sha256};
        Sha256::digest(half_name.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::create_dir_all(&pending).unwrap();
    std::fs::write(pending.join(&marker_name), half_name.as_bytes()).unwrap();
    let half = common::docker(&[
        "create",
        "--name",
        &half_name,
        "--label",
        "io.kubernetes.docker.type=container",
        "--label",
        &format!("io.kubernetes.sandbox.id={}", p.id),
        "--label",
        &format!("io.kubernetes.pod.uid={}", meta.uid),
        "--network",
        "none",
        BUSYBOX,
        "true",
    ]);
    d.kill_and_restart().await;
    let mut rt = d.runtime().await;
    // Recovery runs before the first call is answered.
    rt.list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap();
    assert!(
        !common::docker_try(&["inspect", &half]).0,
        "interrupted create of a long-named container not cleaned up"
    );
    assert!(!pending.join(&marker_name).exists());
    remove_pod(&mut rt, &p).await;
}

/// critest's log specs read the log file as soon as ContainerStatus reports the container
/// exited: by then every line it wrote must be there, on both streams.
#[tokio::test]
async fn log_is_complete_once_status_reports_exited() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, "logpod").await;
    for i in 0..3 {
        let name = format!("exits-{i}");
        let script = "echo hello World; echo 'to stderr' >&2; touch /x; echo Found";
        let id = create(&mut rt, &p, container_config(&name, &["sh", "-c", script]))
            .await
            .expect("CreateContainer");
        start(&mut rt, &id).await;
        let log_path = loop {
            let s = rt
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            if s.state == cri::ContainerState::ContainerExited as i32 {
                break s.log_path;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let text = std::fs::read_to_string(&log_path).unwrap();
        // Docker copies stdout and stderr separately: their relative order is not kept.
        let mut tails: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        tails.sort_unstable();
        assert_eq!(
            tails,
            [
                "stderr F to stderr",
                "stdout F Found",
                "stdout F hello World"
            ],
            "{text}"
        );
    }
    remove_pod(&mut rt, &p).await;
}
