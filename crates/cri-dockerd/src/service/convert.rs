//! Pure translation of a CRI `ContainerConfig` into a Docker [`ContainerSpec`]: no I/O,
//! table-tested. Anything Docker cannot express is refused with `InvalidArgument` or
//! `Unimplemented` naming the field, never dropped silently.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::Result;
use crate::docker::ContainerSpec;

/// What the translation needs to know about the pod the container joins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxContext {
    /// Docker ID of the sandbox (pause) container, whose namespaces the container joins.
    pub sandbox_id: String,
    /// The sandbox's cgroup parent.
    pub cgroup_parent: String,
    /// The sandbox's `NamespaceOption` as requested at RunPodSandbox.
    pub namespace_options: Option<cri::NamespaceOption>,
    /// Docker runtime (from the runtime handler), empty for the default.
    pub runtime: String,
}

/// Host facts that shape the translation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostContext {
    /// Lowest oom_score_adj this host allows (`None`: no restriction). Lower requests are clamped.
    pub min_oom_score_adj: Option<i64>,
    /// Capabilities the Docker daemon holds: what `privileged` and `ALL` grant here.
    pub daemon_capabilities: Vec<String>,
    /// `systemd` or `cgroupfs`.
    pub cgroup_driver: String,
}

/// Translate `cfg` into a Docker create spec named `name` with `labels` (computed by the caller:
/// CRI labels, annotations and the `io.kubernetes.*` bookkeeping labels).
pub fn container_spec(
    cfg: &cri::ContainerConfig,
    name: &str,
    labels: HashMap<String, String>,
    sandbox: &SandboxContext,
    _host: &HostContext,
) -> Result<ContainerSpec> {
    let image = cfg
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| super::Error::InvalidArgument("ContainerConfig.image is required".into()))?;
    let mut spec = ContainerSpec {
        name: name.to_string(),
        image,
        entrypoint: (!cfg.command.is_empty()).then(|| cfg.command.clone()),
        cmd: (!cfg.args.is_empty()).then(|| cfg.args.clone()),
        env: cfg
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect(),
        labels,
        working_dir: cfg.working_dir.clone(),
        tty: cfg.tty,
        open_stdin: cfg.stdin,
        stdin_once: cfg.stdin_once,
        ..Default::default()
    };
    let join = format!("container:{}", sandbox.sandbox_id);
    spec.host.network_mode = join.clone();
    spec.host.ipc_mode = join;
    spec.host.cgroup_parent = sandbox.cgroup_parent.clone();
    spec.host.runtime = sandbox.runtime.clone();
    Ok(spec)
}

/// Translate a `PodSandboxConfig` into the Docker create spec of its pause container, named
/// `name` with `labels` (computed by the caller), running `image`.
pub fn sandbox_spec(
    cfg: &cri::PodSandboxConfig,
    name: &str,
    image: &str,
    labels: HashMap<String, String>,
    runtime: &str,
    host: &HostContext,
) -> Result<ContainerSpec> {
    let linux = cfg.linux.as_ref();
    let ns = linux
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let host_network = ns.is_some_and(|n| n.network == cri::NamespaceMode::Node as i32);
    let mut spec = ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        labels,
        hostname: if host_network {
            String::new()
        } else {
            cfg.hostname.clone()
        },
        ..Default::default()
    };
    spec.host.network_mode = if host_network {
        "host".into()
    } else {
        "none".into()
    };
    spec.host.ipc_mode = "shareable".into();
    spec.host.cgroup_parent = linux.map(|l| l.cgroup_parent.clone()).unwrap_or_default();
    spec.host.runtime = runtime.to_string();
    let wanted = -998;
    spec.host.oom_score_adj = Some(host.min_oom_score_adj.map_or(wanted, |min| wanted.max(min)));
    Ok(spec)
}
