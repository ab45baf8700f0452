//! Pure translation of CRI `ContainerConfig` / `PodSandboxConfig` into Docker [`ContainerSpec`]s:
//! no I/O, table-tested. Anything Docker cannot express is refused with `InvalidArgument` or
//! `Unimplemented` naming the field, never dropped silently.
//!
//! What needs the filesystem (mount sources exist, Localhost seccomp profile contents) is done
//! beforehand by [`super::inputs`], whose results travel in [`HostContext::seccomp_profiles`].
//!
//! Deliberate choices, each following the Go cri-dockerd unless said otherwise:
//! - no seccomp field and no `seccomp_profile_path` means unconfined (as kubelet, the Go original
//!   and containerd do); `RuntimeDefault` is Docker's default profile;
//! - empty `masked_paths`/`readonly_paths` keep Docker's defaults;
//! - memory swap defaults to the memory limit (no swap) when only a memory limit is given;
//! - the sandbox's `overhead`/`resources` are informational (kubelet already sized the pod cgroup,
//!   the cgroup parent); the pause container gets 2 CPU shares as upstream;
//! - `privileged` and capability `ALL` grant what the daemon holds: on a host whose bounding set
//!   lacks capabilities (this happens in nested/sandboxed environments) Docker's `Privileged`
//!   fails in runc, so it is emulated: the daemon's capabilities, seccomp/AppArmor/SELinux
//!   unconfined, nothing masked or read-only. Not emulated: all host devices, writable /sys.

use std::collections::{BTreeSet, HashMap};

use k8s_cri::v1 as cri;

use super::host::CAPABILITIES;
use super::{Error, Result};
use crate::docker::{
    ContainerSpec, DeviceSpec, HostSpec, LogConfig, MountSpec, PortBinding, Propagation,
    ResourceSpec,
};

/// What the translation needs to know about the pod the container joins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxContext {
    /// Docker ID of the sandbox (pause) container, whose namespaces the container joins.
    pub sandbox_id: String,
    /// The sandbox's cgroup parent (as kubelet sent it; converted for the driver here).
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
    /// Capabilities the Docker daemon holds: what `privileged` and `ALL` grant here. Empty means
    /// unknown, treated as the full set.
    pub daemon_capabilities: Vec<String>,
    /// `systemd` or `cgroupfs`.
    pub cgroup_driver: String,
    /// The host runs the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
    /// The network plugin is the no-op one: sandboxes use Docker's default bridge and publish
    /// their port mappings through Docker.
    pub docker_bridge: bool,
    /// Contents of the Localhost seccomp profiles the config being translated refers to, by
    /// path; filled per call by [`super::inputs`].
    pub seccomp_profiles: HashMap<String, String>,
    /// Docker's root directory (`docker info`), under which its json-file logs are.
    pub docker_root_dir: String,
}

/// Capabilities Docker 20.10 knows (`CAP_PERFMON`, `CAP_BPF`, `CAP_CHECKPOINT_RESTORE` are
/// refused by its API as unknown).
const DOCKER_KNOWN_CAPS: usize = 38;

/// oom_score_adj of the pause container, as upstream.
pub const SANDBOX_OOM_SCORE_ADJ: i64 = -998;
/// CPU shares of the pause container, as upstream.
pub const SANDBOX_CPU_SHARES: i64 = 2;

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

fn unimplemented(msg: impl Into<String>) -> Error {
    Error::Unimplemented(msg.into())
}

impl HostContext {
    /// Whether the daemon holds every capability: Docker's own `Privileged` then works.
    pub fn has_all_capabilities(&self) -> bool {
        self.daemon_capabilities.is_empty()
            || CAPABILITIES
                .iter()
                .take(DOCKER_KNOWN_CAPS)
                .all(|c| self.daemon_capabilities.iter().any(|d| d == c))
    }

    /// The daemon's capabilities that Docker can grant.
    fn grantable_capabilities(&self) -> Vec<String> {
        CAPABILITIES
            .iter()
            .take(DOCKER_KNOWN_CAPS)
            .filter(|c| self.daemon_capabilities.iter().any(|d| d == *c))
            .map(|c| (*c).to_string())
            .collect()
    }

    /// `wanted` raised to the host's floor.
    pub fn clamp_oom_score_adj(&self, wanted: i64) -> i64 {
        self.min_oom_score_adj.map_or(wanted, |min| wanted.max(min))
    }
}

/// Translate `cfg` into a Docker create spec named `name` with `labels` (computed by the caller:
/// CRI labels, annotations and the `io.kubernetes.*` bookkeeping labels).
pub fn container_spec(
    cfg: &cri::ContainerConfig,
    name: &str,
    labels: HashMap<String, String>,
    sandbox: &SandboxContext,
    host: &HostContext,
) -> Result<ContainerSpec> {
    let image = cfg
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid("ContainerConfig.image is required"))?;
    if sandbox.sandbox_id.is_empty() {
        return Err(invalid("the container's pod sandbox ID is required"));
    }
    if !cfg.cdi_devices.is_empty() {
        return Err(unimplemented(
            "ContainerConfig.CDI_devices: CDI devices are not supported by Docker 20.10",
        ));
    }
    let mut spec = ContainerSpec {
        name: name.to_string(),
        image,
        entrypoint: (!cfg.command.is_empty()).then(|| cfg.command.clone()),
        cmd: (!cfg.args.is_empty()).then(|| cfg.args.clone()),
        env: env(&cfg.envs)?,
        labels,
        working_dir: cfg.working_dir.clone(),
        tty: cfg.tty,
        open_stdin: cfg.stdin,
        stdin_once: cfg.stdin && cfg.stdin_once,
        ..Default::default()
    };
    if !spec.working_dir.is_empty() && !spec.working_dir.starts_with('/') {
        return Err(invalid(format!(
            "ContainerConfig.working_dir must be absolute, got {:?}",
            spec.working_dir
        )));
    }
    spec.host.mounts = mounts(&cfg.mounts)?;
    spec.host.devices = devices(&cfg.devices)?;
    spec.host.cgroup_parent = cgroup_parent(&sandbox.cgroup_parent, &host.cgroup_driver)?;
    spec.host.runtime = sandbox.runtime.clone();
    // The CRI log is made from Docker's json-file log (see `service::logs`), whatever the
    // daemon's default driver; the daemon's json-file options (max-size …) still apply.
    spec.host.log_config = Some(LogConfig {
        driver: "json-file".into(),
        options: HashMap::new(),
    });

    let linux = cfg.linux.clone().unwrap_or_default();
    if let Some(r) = &linux.resources {
        let (res, oom) = resources(r, host, "ContainerConfig.linux.resources")?;
        spec.host.resources = res;
        spec.host.oom_score_adj = oom;
    }
    let sc = linux.security_context.unwrap_or_default();
    let ns = sc
        .namespace_options
        .clone()
        .or_else(|| sandbox.namespace_options.clone())
        .unwrap_or_default();
    container_namespaces(&ns, &sandbox.sandbox_id, &mut spec.host)?;
    security(
        &Security::from_container(&sc),
        host,
        &mut spec,
        "ContainerConfig.linux.security_context",
    )?;
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
    let linux = cfg.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let host_network = ns.network == cri::NamespaceMode::Node as i32;
    let mut spec = ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        labels,
        ..Default::default()
    };
    let h = &mut spec.host;
    match cri::NamespaceMode::try_from(ns.network) {
        Ok(cri::NamespaceMode::Pod) => {
            h.network_mode = if host.docker_bridge {
                "default".into()
            } else {
                "none".into()
            };
            spec.hostname = cfg.hostname.clone();
        }
        Ok(cri::NamespaceMode::Node) => {
            h.network_mode = "host".into();
            h.uts_mode = "host".into();
        }
        _ => {
            return Err(invalid(format!(
                "PodSandboxConfig.linux.security_context.namespace_options.network: mode {} is not supported for a sandbox (POD or NODE)",
                ns.network
            )));
        }
    }
    h.pid_mode = match cri::NamespaceMode::try_from(ns.pid) {
        Ok(cri::NamespaceMode::Pod | cri::NamespaceMode::Container) => String::new(),
        Ok(cri::NamespaceMode::Node) => "host".into(),
        Ok(cri::NamespaceMode::Target) if !ns.target_id.is_empty() => {
            format!("container:{}", ns.target_id)
        }
        Ok(cri::NamespaceMode::Target) => {
            return Err(invalid(
                "PodSandboxConfig.linux.security_context.namespace_options: pid TARGET needs target_id",
            ));
        }
        Err(_) => {
            return Err(invalid(format!(
                "PodSandboxConfig.linux.security_context.namespace_options.pid: unknown mode {}",
                ns.pid
            )));
        }
    };
    let host_ipc = match cri::NamespaceMode::try_from(ns.ipc) {
        Ok(cri::NamespaceMode::Pod | cri::NamespaceMode::Container) => false,
        Ok(cri::NamespaceMode::Node) => true,
        _ => {
            return Err(invalid(format!(
                "PodSandboxConfig.linux.security_context.namespace_options.ipc: mode {} is not supported for a sandbox (POD or NODE)",
                ns.ipc
            )));
        }
    };
    h.ipc_mode = if host_ipc { "host" } else { "shareable" }.into();
    userns(
        &ns,
        "PodSandboxConfig.linux.security_context.namespace_options",
    )?;

    if let Some(dns) = &cfg.dns_config {
        h.dns = dns.servers.clone();
        h.dns_search = dns.searches.clone();
        h.dns_options = dns.options.clone();
    }
    if host.docker_bridge && !host_network {
        h.port_bindings = port_bindings(&cfg.port_mappings)?;
    }
    h.sysctls = sysctls(&linux.sysctls, host_network, host_ipc)?;
    h.cgroup_parent = cgroup_parent(&linux.cgroup_parent, &host.cgroup_driver)?;
    h.runtime = runtime.to_string();
    h.resources = ResourceSpec {
        cpu_shares: SANDBOX_CPU_SHARES,
        ..Default::default()
    };
    h.oom_score_adj = Some(host.clamp_oom_score_adj(SANDBOX_OOM_SCORE_ADJ));
    security(
        &Security::from_sandbox(&sc),
        host,
        &mut spec,
        "PodSandboxConfig.linux.security_context",
    )?;
    // The pause process never needs to gain privileges.
    if !sc.privileged {
        spec.host.security_opt.push("no-new-privileges".into());
    }
    Ok(spec)
}

fn env(envs: &[cri::KeyValue]) -> Result<Vec<String>> {
    envs.iter()
        .map(|kv| {
            if kv.key.is_empty() || kv.key.contains('=') {
                Err(invalid(format!(
                    "ContainerConfig.envs: bad variable name {:?}",
                    kv.key
                )))
            } else {
                Ok(format!("{}={}", kv.key, kv.value))
            }
        })
        .collect()
}

fn mounts(mounts: &[cri::Mount]) -> Result<Vec<MountSpec>> {
    let mut seen = BTreeSet::new();
    mounts
        .iter()
        .map(|m| {
            let field = format!("ContainerConfig.mounts[{:?}]", m.container_path);
            if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
                return Err(unimplemented(format!(
                    "{field}.image: image volumes are not supported by Docker 20.10"
                )));
            }
            if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
                return Err(unimplemented(format!(
                    "{field}: idmapped mounts are not supported by Docker 20.10"
                )));
            }
            if m.recursive_read_only {
                return Err(unimplemented(format!(
                    "{field}.recursive_read_only: not supported by Docker 20.10"
                )));
            }
            if !m.container_path.starts_with('/') {
                return Err(invalid(format!("{field}: container_path must be absolute")));
            }
            if !m.host_path.starts_with('/') {
                return Err(invalid(format!(
                    "{field}: host_path must be absolute, got {:?}",
                    m.host_path
                )));
            }
            if !seen.insert(m.container_path.trim_end_matches('/').to_string()) {
                return Err(invalid(format!("{field}: duplicate mount point")));
            }
            let propagation = match cri::MountPropagation::try_from(m.propagation) {
                Ok(cri::MountPropagation::PropagationPrivate) => Propagation::Private,
                Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::RSlave,
                Ok(cri::MountPropagation::PropagationBidirectional) => Propagation::RShared,
                Err(_) => {
                    return Err(invalid(format!(
                        "{field}.propagation: unknown value {}",
                        m.propagation
                    )));
                }
            };
            Ok(MountSpec {
                source: m.host_path.clone(),
                target: m.container_path.clone(),
                read_only: m.readonly,
                propagation,
                selinux_relabel: m.selinux_relabel,
            })
        })
        .collect()
}

fn devices(devices: &[cri::Device]) -> Result<Vec<DeviceSpec>> {
    devices
        .iter()
        .map(|d| {
            let field = format!("ContainerConfig.devices[{:?}]", d.host_path);
            if !d.host_path.starts_with('/') {
                return Err(invalid(format!("{field}: host_path must be absolute")));
            }
            let target = if d.container_path.is_empty() {
                d.host_path.clone()
            } else {
                d.container_path.clone()
            };
            if !target.starts_with('/') {
                return Err(invalid(format!("{field}: container_path must be absolute")));
            }
            let perms = if d.permissions.is_empty() {
                "rwm".to_string()
            } else {
                d.permissions.clone()
            };
            if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err(invalid(format!(
                    "{field}.permissions: {perms:?} is not a subset of \"rwm\""
                )));
            }
            Ok(DeviceSpec {
                path_on_host: d.host_path.clone(),
                path_in_container: target,
                cgroup_permissions: perms,
            })
        })
        .collect()
}

/// `LinuxContainerResources` -> Docker resources and oom_score_adj (clamped to the host floor).
fn resources(
    r: &cri::LinuxContainerResources,
    host: &HostContext,
    field: &str,
) -> Result<(ResourceSpec, Option<i64>)> {
    for (name, v) in [
        ("cpu_period", r.cpu_period),
        ("cpu_quota", r.cpu_quota),
        ("cpu_shares", r.cpu_shares),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
    ] {
        if v < 0 {
            return Err(invalid(format!(
                "{field}.{name}: must not be negative, got {v}"
            )));
        }
    }
    let mut res = ResourceSpec {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory: r.memory_limit_in_bytes,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        ..Default::default()
    };
    res.memory_swap = match r.memory_swap_limit_in_bytes {
        0 => r.memory_limit_in_bytes,
        -1 => -1,
        s if s < 0 => {
            return Err(invalid(format!(
                "{field}.memory_swap_limit_in_bytes: must be -1, 0 or positive, got {s}"
            )));
        }
        s if r.memory_limit_in_bytes == 0 => {
            return Err(invalid(format!(
                "{field}.memory_swap_limit_in_bytes: {s} needs memory_limit_in_bytes"
            )));
        }
        s if s < r.memory_limit_in_bytes => {
            return Err(invalid(format!(
                "{field}.memory_swap_limit_in_bytes: {s} is below memory_limit_in_bytes {} (it counts memory plus swap)",
                r.memory_limit_in_bytes
            )));
        }
        s => s,
    };
    if let Some(h) = r.hugepage_limits.iter().find(|h| h.limit != 0) {
        return Err(unimplemented(format!(
            "{field}.hugepage_limits: a {} limit of {} bytes cannot be set through Docker 20.10 (the pod cgroup's hugetlb limit still applies)",
            h.page_size, h.limit
        )));
    }
    if !r.unified.is_empty() {
        if !host.cgroup_v2 {
            return Err(invalid(format!(
                "{field}.unified: cgroup v2 settings on a cgroup v1 host ({:?})",
                r.unified.keys().collect::<BTreeSet<_>>()
            )));
        }
        let mut keys: Vec<_> = r.unified.iter().collect();
        keys.sort();
        for (k, v) in keys {
            let num = || {
                v.parse::<i64>()
                    .map_err(|_| invalid(format!("{field}.unified[{k}]: {v:?} is not a number")))
            };
            match k.as_str() {
                "memory.max" if v == "max" => res.memory = 0,
                "memory.max" => res.memory = num()?,
                "pids.max" if v == "max" => res.pids_limit = 0,
                "pids.max" => res.pids_limit = num()?,
                "cpuset.cpus" => res.cpuset_cpus = v.clone(),
                "cpuset.mems" => res.cpuset_mems = v.clone(),
                other => {
                    return Err(unimplemented(format!(
                        "{field}.unified[{other}]: Docker 20.10 cannot set this cgroup v2 file"
                    )));
                }
            }
        }
    }
    let oom = match r.oom_score_adj {
        0 => None,
        v if !(-1000..=1000).contains(&v) => {
            return Err(invalid(format!(
                "{field}.oom_score_adj: {v} is outside -1000..1000"
            )));
        }
        v => Some(host.clamp_oom_score_adj(v)),
    };
    Ok((res, oom))
}

/// Docker's cgroup parent for kubelet's: the systemd driver takes a slice name.
pub fn cgroup_parent(parent: &str, driver: &str) -> Result<String> {
    if parent.is_empty() || driver != "systemd" {
        return Ok(parent.to_string());
    }
    let base = parent
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    if base.ends_with(".slice") {
        return Ok(base.to_string());
    }
    // A cgroupfs-style path (`/kubepods/burstable/pod1`): the systemd slice kubelet would use.
    let parts: Vec<String> = parent
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace('-', "_"))
        .collect();
    if parts.is_empty() {
        return Err(invalid(format!(
            "PodSandboxConfig.linux.cgroup_parent: {parent:?} is not a cgroup for the systemd driver"
        )));
    }
    Ok(format!("{}.slice", parts.join("-")))
}

/// Docker's (and the checkpoint's) name of a CRI port protocol; `None` for an unknown value.
pub(crate) fn protocol_name(protocol: i32) -> Option<&'static str> {
    match cri::Protocol::try_from(protocol) {
        Ok(cri::Protocol::Tcp) => Some("tcp"),
        Ok(cri::Protocol::Udp) => Some("udp"),
        Ok(cri::Protocol::Sctp) => Some("sctp"),
        Err(_) => None,
    }
}

fn port_bindings(ports: &[cri::PortMapping]) -> Result<Vec<PortBinding>> {
    ports
        .iter()
        .map(|p| {
            let protocol = protocol_name(p.protocol).ok_or_else(|| {
                invalid(format!(
                    "PodSandboxConfig.port_mappings: unknown protocol {}",
                    p.protocol
                ))
            })?;
            let port = |name: &str, v: i32| {
                u16::try_from(v)
                    .map_err(|_| invalid(format!("PodSandboxConfig.port_mappings: bad {name} {v}")))
            };
            Ok(PortBinding {
                container_port: port("container_port", p.container_port)?,
                protocol: protocol.into(),
                host_ip: p.host_ip.clone(),
                host_port: port("host_port", p.host_port)?,
            })
        })
        .collect()
}

const IPC_SYSCTLS: [&str; 8] = [
    "kernel.shm_rmid_forced",
    "kernel.shmmax",
    "kernel.shmall",
    "kernel.shmmni",
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
];

/// Validate sysctls: only namespaced ones, and not in a namespace shared with the host.
pub fn sysctls(
    sysctls: &HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in sysctls {
        // `net/ipv4/ip_forward` is accepted for `net.ipv4.ip_forward`.
        let name = if k.contains('/') {
            k.replace('.', "\u{0}")
                .replace('/', ".")
                .replace('\u{0}', "/")
        } else {
            k.clone()
        };
        let field = format!("PodSandboxConfig.linux.sysctls[{k}]");
        let ipc = IPC_SYSCTLS.contains(&name.as_str()) || name.starts_with("fs.mqueue.");
        let net = name.starts_with("net.");
        if !ipc && !net {
            return Err(invalid(format!(
                "{field}: not a namespaced sysctl (only net.*, fs.mqueue.* and the kernel IPC ones)"
            )));
        }
        if net && host_network {
            return Err(invalid(format!(
                "{field}: net.* sysctls cannot be set in a pod that uses the host network"
            )));
        }
        if ipc && host_ipc {
            return Err(invalid(format!(
                "{field}: IPC sysctls cannot be set in a pod that uses the host IPC namespace"
            )));
        }
        out.insert(name, v.clone());
    }
    Ok(out)
}

fn userns(ns: &cri::NamespaceOption, field: &str) -> Result<()> {
    match &ns.userns_options {
        Some(u) if u.mode != cri::NamespaceMode::Node as i32 => Err(unimplemented(format!(
            "{field}.userns_options: user namespaces are not supported by Docker 20.10"
        ))),
        _ => Ok(()),
    }
}

fn container_namespaces(
    ns: &cri::NamespaceOption,
    sandbox_id: &str,
    h: &mut HostSpec,
) -> Result<()> {
    let field = "ContainerConfig.linux.security_context.namespace_options";
    let join = format!("container:{sandbox_id}");
    h.network_mode = match cri::NamespaceMode::try_from(ns.network) {
        Ok(cri::NamespaceMode::Pod) => join.clone(),
        Ok(cri::NamespaceMode::Node) => {
            // The sandbox is in the host network; the container also uses the host's UTS.
            h.uts_mode = "host".into();
            join.clone()
        }
        _ => {
            return Err(invalid(format!(
                "{field}.network: mode {} is not supported (POD or NODE)",
                ns.network
            )));
        }
    };
    h.ipc_mode = match cri::NamespaceMode::try_from(ns.ipc) {
        Ok(cri::NamespaceMode::Pod) => join.clone(),
        Ok(cri::NamespaceMode::Node) => "host".into(),
        _ => {
            return Err(invalid(format!(
                "{field}.ipc: mode {} is not supported (POD or NODE)",
                ns.ipc
            )));
        }
    };
    h.pid_mode = match cri::NamespaceMode::try_from(ns.pid) {
        Ok(cri::NamespaceMode::Pod) => join,
        Ok(cri::NamespaceMode::Container) => String::new(),
        Ok(cri::NamespaceMode::Node) => "host".into(),
        Ok(cri::NamespaceMode::Target) if !ns.target_id.is_empty() => {
            format!("container:{}", ns.target_id)
        }
        Ok(cri::NamespaceMode::Target) => {
            return Err(invalid(format!("{field}.pid: TARGET needs target_id")));
        }
        Err(_) => {
            return Err(invalid(format!("{field}.pid: unknown mode {}", ns.pid)));
        }
    };
    userns(ns, field)
}

/// The security settings common to containers and sandboxes.
#[derive(Debug, Default)]
struct Security {
    privileged: bool,
    run_as_user: Option<i64>,
    run_as_username: String,
    run_as_group: Option<i64>,
    supplemental_groups: Vec<i64>,
    strict_groups: bool,
    readonly_rootfs: bool,
    no_new_privs: bool,
    capabilities: Option<cri::Capability>,
    selinux: Option<cri::SeLinuxOption>,
    seccomp: Option<cri::SecurityProfile>,
    seccomp_profile_path: String,
    apparmor: Option<cri::SecurityProfile>,
    apparmor_profile: String,
    masked_paths: Vec<String>,
    readonly_paths: Vec<String>,
}

impl Security {
    // The deprecated string fields are still honoured when the new ones are absent.
    #[allow(deprecated)]
    fn from_container(sc: &cri::LinuxContainerSecurityContext) -> Security {
        Security {
            privileged: sc.privileged,
            run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
            run_as_username: sc.run_as_username.clone(),
            run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
            supplemental_groups: sc.supplemental_groups.clone(),
            strict_groups: sc.supplemental_groups_policy
                == cri::SupplementalGroupsPolicy::Strict as i32,
            readonly_rootfs: sc.readonly_rootfs,
            no_new_privs: sc.no_new_privs,
            capabilities: sc.capabilities.clone(),
            selinux: sc.selinux_options.clone(),
            seccomp: sc.seccomp.clone(),
            seccomp_profile_path: sc.seccomp_profile_path.clone(),
            apparmor: sc.apparmor.clone(),
            apparmor_profile: sc.apparmor_profile.clone(),
            masked_paths: sc.masked_paths.clone(),
            readonly_paths: sc.readonly_paths.clone(),
        }
    }

    #[allow(deprecated)]
    fn from_sandbox(sc: &cri::LinuxSandboxSecurityContext) -> Security {
        Security {
            privileged: sc.privileged,
            run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
            run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
            supplemental_groups: sc.supplemental_groups.clone(),
            strict_groups: sc.supplemental_groups_policy
                == cri::SupplementalGroupsPolicy::Strict as i32,
            readonly_rootfs: sc.readonly_rootfs,
            selinux: sc.selinux_options.clone(),
            seccomp: sc.seccomp.clone(),
            seccomp_profile_path: sc.seccomp_profile_path.clone(),
            apparmor: sc.apparmor.clone(),
            ..Default::default()
        }
    }
}

/// Normalise a capability name to Docker's `CAP_…` form; `ALL` stays `ALL`.
pub fn capability_name(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Some(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPABILITIES.contains(&full.as_str()).then_some(full)
}

fn security(s: &Security, host: &HostContext, spec: &mut ContainerSpec, field: &str) -> Result<()> {
    // User and groups.
    let user = match (&s.run_as_user, s.run_as_username.as_str()) {
        (_, name) if !name.is_empty() => name.to_string(),
        (Some(uid), _) if *uid < 0 => {
            return Err(invalid(format!("{field}.run_as_user: negative uid {uid}")));
        }
        (Some(uid), _) => uid.to_string(),
        (None, _) => String::new(),
    };
    spec.user = match s.run_as_group {
        Some(_) if user.is_empty() => {
            return Err(invalid(format!(
                "{field}.run_as_group: given without run_as_user or run_as_username"
            )));
        }
        Some(gid) if gid < 0 => {
            return Err(invalid(format!("{field}.run_as_group: negative gid {gid}")));
        }
        Some(gid) => format!("{user}:{gid}"),
        None => user,
    };
    if s.strict_groups {
        return Err(unimplemented(format!(
            "{field}.supplemental_groups_policy: Strict is not supported by Docker 20.10"
        )));
    }
    if let Some(g) = s.supplemental_groups.iter().find(|g| **g < 0) {
        return Err(invalid(format!(
            "{field}.supplemental_groups: negative gid {g}"
        )));
    }
    spec.host.group_add = s
        .supplemental_groups
        .iter()
        .map(|g| g.to_string())
        .collect();
    spec.host.readonly_rootfs = s.readonly_rootfs;

    // Capabilities.
    let caps = s.capabilities.clone().unwrap_or_default();
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(unimplemented(format!(
            "{field}.capabilities.add_ambient_capabilities: not supported by Docker 20.10"
        )));
    }
    let parse = |list: &[String], which: &str| -> Result<Vec<String>> {
        list.iter()
            .map(|c| {
                capability_name(c).ok_or_else(|| {
                    invalid(format!(
                        "{field}.capabilities.{which}: unknown capability {c:?}"
                    ))
                })
            })
            .collect()
    };
    let add = parse(&caps.add_capabilities, "add_capabilities")?;
    let drop = parse(&caps.drop_capabilities, "drop_capabilities")?;
    let full_host = host.has_all_capabilities();
    let emulate_privileged = s.privileged && !full_host;
    spec.host.privileged = s.privileged && full_host;
    if emulate_privileged {
        spec.host.cap_add = host.grantable_capabilities();
    } else if !s.privileged {
        if add.iter().any(|c| c == "ALL") {
            spec.host.cap_add = if full_host {
                vec!["ALL".into()]
            } else {
                host.grantable_capabilities()
            };
        } else {
            if let Some(missing) = add
                .iter()
                .find(|c| !full_host && !host.daemon_capabilities.contains(c))
            {
                return Err(invalid(format!(
                    "{field}.capabilities.add_capabilities: {missing} is not in this host's capability bounding set"
                )));
            }
            spec.host.cap_add = add;
        }
        spec.host.cap_drop = if drop.iter().any(|c| c == "ALL") {
            vec!["ALL".into()]
        } else {
            drop
        };
    }

    // Seccomp.
    let seccomp = match &s.seccomp {
        Some(p) => profile(p, "seccomp", field)?,
        None => deprecated_profile(&s.seccomp_profile_path, "seccomp_profile_path", field, true)?,
    };
    if s.privileged {
        if emulate_privileged {
            spec.host.security_opt.push("seccomp=unconfined".into());
        }
    } else {
        match seccomp {
            Profile::RuntimeDefault => {}
            Profile::Unconfined => spec.host.security_opt.push("seccomp=unconfined".into()),
            Profile::Localhost(path) => {
                let json = host.seccomp_profiles.get(&path).ok_or_else(|| {
                    invalid(format!(
                        "{field}.seccomp: Localhost profile {path:?} was not loaded (does it exist?)"
                    ))
                })?;
                spec.host.security_opt.push(format!("seccomp={json}"));
            }
        }
    }

    // AppArmor.
    let apparmor = match &s.apparmor {
        Some(p) => profile(p, "apparmor", field)?,
        None => deprecated_profile(&s.apparmor_profile, "apparmor_profile", field, false)?,
    };
    if emulate_privileged {
        spec.host.security_opt.push("apparmor=unconfined".into());
    } else if !s.privileged {
        match apparmor {
            Profile::RuntimeDefault => {}
            Profile::Unconfined => spec.host.security_opt.push("apparmor=unconfined".into()),
            Profile::Localhost(name) => spec.host.security_opt.push(format!("apparmor={name}")),
        }
    }

    // SELinux.
    if emulate_privileged {
        spec.host.security_opt.push("label=disable".into());
    } else if let Some(se) = &s.selinux {
        for (key, value) in [
            ("user", &se.user),
            ("role", &se.role),
            ("type", &se.r#type),
            ("level", &se.level),
        ] {
            if !value.is_empty() {
                spec.host.security_opt.push(format!("label={key}:{value}"));
            }
        }
    }

    if s.no_new_privs && !s.privileged {
        spec.host.security_opt.push("no-new-privileges".into());
    }

    // Masked and read-only paths.
    if emulate_privileged {
        spec.host.masked_paths = Some(Vec::new());
        spec.host.readonly_paths = Some(Vec::new());
    } else if !s.privileged {
        for p in s.masked_paths.iter().chain(&s.readonly_paths) {
            if !p.starts_with('/') {
                return Err(invalid(format!(
                    "{field}: masked/readonly path {p:?} must be absolute"
                )));
            }
        }
        spec.host.masked_paths = (!s.masked_paths.is_empty()).then(|| s.masked_paths.clone());
        spec.host.readonly_paths = (!s.readonly_paths.is_empty()).then(|| s.readonly_paths.clone());
    }
    Ok(())
}

/// A seccomp or AppArmor profile choice.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Profile {
    RuntimeDefault,
    Unconfined,
    /// Seccomp: absolute path of a JSON profile; AppArmor: a loaded profile's name.
    Localhost(String),
}

fn profile(p: &cri::SecurityProfile, kind: &str, field: &str) -> Result<Profile> {
    use cri::security_profile::ProfileType;
    match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(Profile::RuntimeDefault),
        Ok(ProfileType::Unconfined) => Ok(Profile::Unconfined),
        Ok(ProfileType::Localhost) => {
            let r = p.localhost_ref.trim();
            if r.is_empty() {
                return Err(invalid(format!(
                    "{field}.{kind}: Localhost needs localhost_ref"
                )));
            }
            if kind == "seccomp" && !r.starts_with('/') {
                return Err(invalid(format!(
                    "{field}.{kind}: Localhost profile path must be absolute, got {r:?}"
                )));
            }
            // AppArmor references may carry the kubelet's `localhost/` prefix.
            let r = r.strip_prefix("localhost/").unwrap_or(r);
            Ok(Profile::Localhost(r.to_string()))
        }
        Err(_) => Err(invalid(format!(
            "{field}.{kind}: unknown profile type {}",
            p.profile_type
        ))),
    }
}

/// The deprecated string form: `""`, `runtime/default`, `docker/default`, `unconfined`,
/// `localhost/<path or name>`. An empty seccomp path means unconfined (historic kubelet
/// default); an empty AppArmor profile means the runtime default.
fn deprecated_profile(value: &str, name: &str, field: &str, seccomp: bool) -> Result<Profile> {
    match value {
        "" if seccomp => Ok(Profile::Unconfined),
        "" | "runtime/default" | "docker/default" => Ok(Profile::RuntimeDefault),
        "unconfined" => Ok(Profile::Unconfined),
        v => match v.strip_prefix("localhost/") {
            Some(r) if seccomp && r.starts_with('/') => Ok(Profile::Localhost(r.to_string())),
            Some(r) if !seccomp && !r.is_empty() => Ok(Profile::Localhost(r.to_string())),
            _ => Err(invalid(format!("{field}.{name}: unsupported value {v:?}"))),
        },
    }
}

#[cfg(test)]
#[allow(deprecated)]
mod tests;
