//! Pieces of the tests that put calls in flight while dockerd goes away (`tests/load.rs`,
//! `tests/dockerd_restart.rs`): calls with a client-side deadline, the read calls kubelet makes
//! all the time, the check of how they failed, and clean-up by pod namespace.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tonic::Code;

use super::pods::Rt;

/// Client-side bound of each call while dockerd is away.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A request with a client-side deadline of [`CALL_TIMEOUT`].
pub fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_TIMEOUT);
    r
}

/// Read call number `k` (mod 4: ListContainers, ContainerStatus of `container`,
/// PodSandboxStatus of `sandbox`, ListPodSandbox).
pub async fn read_call(
    rt: &mut Rt,
    k: usize,
    sandbox: &str,
    container: &str,
) -> Result<(), tonic::Status> {
    match k % 4 {
        0 => rt
            .list_containers(req(cri::ListContainersRequest { filter: None }))
            .await
            .map(drop),
        1 => rt
            .container_status(req(cri::ContainerStatusRequest {
                container_id: container.to_string(),
                verbose: false,
            }))
            .await
            .map(drop),
        2 => rt
            .pod_sandbox_status(req(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.to_string(),
                verbose: false,
            }))
            .await
            .map(drop),
        _ => rt
            .list_pod_sandbox(req(cri::ListPodSandboxRequest { filter: None }))
            .await
            .map(drop),
    }
}

/// A failed call: its code, message and how long it took.
pub type Failure = (Code, String, Duration);

/// Calls made while dockerd was away failed, all with `Unavailable` (or the client's deadline)
/// within the deadline, and some of them fast.
pub fn assert_failed_as_unavailable(failures: &[Failure]) {
    assert!(
        !failures.is_empty(),
        "calls made while dockerd was away must have failed"
    );
    for (code, msg, took) in failures {
        assert!(
            matches!(code, Code::Unavailable | Code::DeadlineExceeded),
            "a call failed with {code:?} ({msg}); wanted Unavailable"
        );
        assert!(*took < CALL_TIMEOUT + Duration::from_secs(2), "{took:?}");
    }
    assert!(
        failures
            .iter()
            .any(|(c, _, t)| *c == Code::Unavailable && *t < Duration::from_secs(5)),
        "some calls fail fast with Unavailable: {failures:?}"
    );
}

/// Docker IDs of every container (any state) in pod namespace `ns`; panics when docker fails.
pub fn docker_ids(ns: &str) -> BTreeSet<String> {
    try_docker_ids(ns).expect("docker ps")
}

/// [`docker_ids`], `None` when docker fails.
fn try_docker_ids(ns: &str) -> Option<BTreeSet<String>> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label=io.kubernetes.pod.namespace={ns}"))
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// Force-removes every container of a pod namespace on drop, also when the test failed.
pub struct NamespaceCleanup(pub String);

impl Drop for NamespaceCleanup {
    fn drop(&mut self) {
        for id in try_docker_ids(&self.0).unwrap_or_default() {
            let _ = super::docker_try(&["rm", "-f", &id]);
        }
    }
}
