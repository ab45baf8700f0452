//! Pods and busybox containers over CRI for the end-to-end tests: unique names, config builders,
//! run/create/start/status helpers, polling until a condition holds, and removal of everything a
//! test pod left in Docker.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use super::Daemon;

/// The v1 runtime client every test drives.
pub type Rt = RuntimeServiceClient<Channel>;

/// The busybox image `scripts/test-env.sh` builds offline.
pub const BUSYBOX: &str = "cri-dockerd-test/busybox:latest";

/// A unique suffix for names in this test run.
pub fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n & 0xffff_ffff, std::process::id())
}

/// A `String` map from pairs, for labels and annotations.
pub fn string_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Force-removes every container of a pod uid on drop, also when the test failed.
pub struct PodCleanup(pub String);

impl Drop for PodCleanup {
    fn drop(&mut self) {
        let (_, ids) = super::docker_try(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.kubernetes.pod.uid={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            let _ = super::docker_try(&["rm", "-f", id]);
        }
    }
}

/// A pod sandbox config with only the metadata set (attempt 0); the optional fields are set with
/// struct update syntax: `PodSandboxConfig { hostname: .., ..pod_config(..) }`.
pub fn pod_config(name: &str, namespace: &str, uid: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

/// A busybox container config running `command` (attempt 0, no log path); the optional fields
/// are set with struct update syntax, as for [`pod_config`].
pub fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
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
        ..Default::default()
    }
}

/// The `linux` part of a pod sandbox config that puts the pod in the host's network namespace.
pub fn host_network() -> Option<cri::LinuxPodSandboxConfig> {
    Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// RunPodSandbox, returning the sandbox id or the error.
pub async fn try_run_pod_sandbox(
    rt: &mut Rt,
    config: &cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

/// RunPodSandbox, returning the sandbox id; panics on failure.
pub async fn run_pod_sandbox(rt: &mut Rt, config: &cri::PodSandboxConfig) -> String {
    try_run_pod_sandbox(rt, config)
        .await
        .expect("RunPodSandbox")
}

/// StartContainer; panics on failure.
pub async fn start_container(rt: &mut Rt, id: &str) {
    rt.start_container(cri::StartContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("StartContainer");
}

/// StopPodSandbox; panics on failure.
pub async fn stop_pod_sandbox(rt: &mut Rt, id: &str) {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("StopPodSandbox");
}

/// RemovePodSandbox; panics on failure.
pub async fn remove_pod_sandbox(rt: &mut Rt, id: &str) {
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("RemovePodSandbox");
}

/// StopPodSandbox then RemovePodSandbox; panics on failure.
pub async fn stop_and_remove_pod(rt: &mut Rt, id: &str) {
    stop_pod_sandbox(rt, id).await;
    remove_pod_sandbox(rt, id).await;
}

/// The (non-verbose) status of sandbox `id`; panics on failure.
pub async fn sandbox_status(rt: &mut Rt, id: &str) -> cri::PodSandboxStatus {
    rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: id.into(),
        verbose: false,
    })
    .await
    .expect("PodSandboxStatus")
    .into_inner()
    .status
    .expect("PodSandboxStatus has a status")
}

/// The (non-verbose) status of container `id`; panics on failure.
pub async fn container_status(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .expect("ContainerStatus has a status")
}

/// `docker create` a busybox container named `name` with the labels CreateContainer gives a
/// container of sandbox `sandbox_id` (pod `uid`), as an interrupted CreateContainer leaves it:
/// made by Docker, unknown to the daemon's state. Returns its id.
pub fn docker_create_half(name: &str, sandbox_id: &str, uid: &str) -> String {
    super::docker(&[
        "create",
        "--name",
        name,
        "--label",
        "io.kubernetes.docker.type=container",
        "--label",
        &format!("io.kubernetes.sandbox.id={sandbox_id}"),
        "--label",
        &format!("io.kubernetes.pod.uid={uid}"),
        "--network",
        "none",
        BUSYBOX,
        "true",
    ])
}

/// A running pod sandbox of a test; its containers are force-removed on drop.
pub struct Pod {
    pub id: String,
    pub uid: String,
    pub config: cri::PodSandboxConfig,
    _cleanup: PodCleanup,
}

impl Pod {
    /// Run a pod named `{name}-{uid}` in `namespace` (uid from [`unique`]), logging under the
    /// daemon's `pods/{uid}`.
    pub async fn run(rt: &mut Rt, d: &Daemon, name: &str, namespace: &str) -> Pod {
        Self::run_with(rt, d, name, namespace, |_| {}).await
    }

    /// [`Pod::run`] with `edit` setting more fields of the config first.
    pub async fn run_with(
        rt: &mut Rt,
        d: &Daemon,
        name: &str,
        namespace: &str,
        edit: impl FnOnce(&mut cri::PodSandboxConfig),
    ) -> Pod {
        let uid = unique();
        let cleanup = PodCleanup(uid.clone());
        let mut config = cri::PodSandboxConfig {
            log_directory: d
                .dir
                .path()
                .join("pods")
                .join(&uid)
                .to_string_lossy()
                .into_owned(),
            ..pod_config(&format!("{name}-{uid}"), namespace, &uid)
        };
        edit(&mut config);
        let id = run_pod_sandbox(rt, &config).await;
        Pod {
            id,
            uid,
            config,
            _cleanup: cleanup,
        }
    }

    /// CreateContainer in this pod, returning the container id or the error.
    pub async fn try_create(
        &self,
        rt: &mut Rt,
        config: cri::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id)
    }

    /// CreateContainer in this pod, returning the container id; panics on failure.
    pub async fn create(&self, rt: &mut Rt, config: cri::ContainerConfig) -> String {
        self.try_create(rt, config).await.expect("CreateContainer")
    }

    /// Create and start a container in this pod, returning its id; panics on failure.
    pub async fn run_container(&self, rt: &mut Rt, config: cri::ContainerConfig) -> String {
        let id = self.create(rt, config).await;
        start_container(rt, &id).await;
        id
    }
}

/// Call `probe` every `every` until it returns `Some`, and return that; panics with `what` once
/// `timeout` has passed.
pub async fn wait_until<T>(
    timeout: Duration,
    every: Duration,
    what: impl Display,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} (waited {timeout:?})");
        tokio::time::sleep(every).await;
    }
}

/// The Status condition `name` (RuntimeReady, NetworkReady). Status must answer (in 15 s)
/// even with dockerd away.
pub async fn condition(rt: &mut Rt, name: &str) -> cri::RuntimeCondition {
    let mut req = tonic::Request::new(cri::StatusRequest { verbose: false });
    req.set_timeout(Duration::from_secs(15));
    rt.status(req)
        .await
        .expect("Status always answers")
        .into_inner()
        .status
        .expect("Status has a status")
        .conditions
        .into_iter()
        .find(|c| c.r#type == name)
        .unwrap_or_else(|| panic!("no {name} condition"))
}

/// The RuntimeReady condition of Status: (status, message).
pub async fn runtime_ready(rt: &mut Rt) -> (bool, String) {
    let c = condition(rt, "RuntimeReady").await;
    (c.status, c.message)
}

/// Poll Status until RuntimeReady is `want`; panics after `timeout`.
pub async fn wait_runtime_ready(rt: &mut Rt, want: bool, timeout: Duration) {
    let deadline = Instant::now() + timeout;
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
