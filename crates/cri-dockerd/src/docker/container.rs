//! Container calls: create, start, stop, remove, inspect, list, update.
//!
//! [`ContainerSpec`] is our own description of a Docker container to create (the subset of
//! Docker's `Config` + `HostConfig` that CRI needs); the domain's translation code produces it
//! without I/O and this module maps it onto the Docker API.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use super::client::DockerClient;
use super::error::{Error, Result};

/// A container to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Docker container name (without the leading `/`).
    pub name: String,
    /// Image reference or ID.
    pub image: String,
    /// Overrides the image's ENTRYPOINT when `Some` (CRI `command`).
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's CMD when `Some` (CRI `args`).
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub working_dir: String,
    /// `user`, `uid`, `uid:gid` or `user:group`; empty for the image default.
    pub user: String,
    pub hostname: String,
    pub domainname: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub stop_signal: Option<String>,
    pub host: HostSpec,
}

/// Docker `HostConfig` subset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSpec {
    pub mounts: Vec<MountSpec>,
    /// `none`, `host`, `container:<id>`, `default`/`bridge` or empty (Docker's default).
    pub network_mode: String,
    /// `shareable`, `private`, `host`, `container:<id>` or empty.
    pub ipc_mode: String,
    /// `host`, `container:<id>` or empty (private).
    pub pid_mode: String,
    /// `host` or empty.
    pub uts_mode: String,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Docker security options: `seccomp=<json or unconfined>`, `apparmor=<profile>`,
    /// `label=type:…`, `no-new-privileges`.
    pub security_opt: Vec<String>,
    /// Supplemental groups (numeric or names).
    pub group_add: Vec<String>,
    pub sysctls: HashMap<String, String>,
    pub cgroup_parent: String,
    pub oom_score_adj: Option<i64>,
    pub resources: ResourceSpec,
    pub devices: Vec<DeviceSpec>,
    /// `None` leaves Docker's defaults; `Some(vec![])` unmasks everything.
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `host:ip` entries for /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// Published ports (only for Docker-bridge networking, the no-op plugin).
    pub port_bindings: Vec<PortBinding>,
    pub shm_size: Option<i64>,
    /// Docker runtime name (`runc`, …); empty for the default.
    pub runtime: String,
    /// Log driver and options; `None` for the daemon's default.
    pub log_config: Option<LogConfig>,
}

/// A bind mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountSpec {
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub propagation: Propagation,
    /// Relabel for SELinux (`:Z` private, when `true`).
    pub selinux_relabel: bool,
}

/// Mount propagation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Private,
    RSlave,
    RShared,
}

/// A device node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSpec {
    pub path_on_host: String,
    pub path_in_container: String,
    /// `rwm` subset.
    pub cgroup_permissions: String,
}

/// A published port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortBinding {
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// Log driver configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    pub driver: String,
    pub options: HashMap<String, String>,
}

/// Resource limits. Zero / empty means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSpec {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory: i64,
    pub memory_swap: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: i64,
}

/// A container's state, from inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub status: String,
    pub running: bool,
    pub oom_killed: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    /// RFC 3339; Docker's zero time (`0001-01-01T00:00:00Z`) when never started/finished.
    pub started_at: String,
    pub finished_at: String,
}

/// A mount as Docker reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountInfo {
    pub source: String,
    pub destination: String,
    pub read_write: bool,
    pub propagation: String,
}

/// A container, from inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// The image reference the container was created from (`Config.Image`).
    pub image: String,
    /// `sha256:…` image ID.
    pub image_id: String,
    /// RFC 3339.
    pub created: String,
    pub labels: HashMap<String, String>,
    pub state: ContainerState,
    /// Docker's json-file log path.
    pub log_path: String,
    pub mounts: Vec<MountInfo>,
    pub hostname: String,
    pub resolv_conf_path: String,
    pub hosts_path: String,
    pub network_mode: String,
    pub ipc_mode: String,
    pub pid_mode: String,
    /// IP on Docker's default bridge (no-op plugin), if any.
    pub ip_address: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub resources: ResourceSpec,
    pub cgroup_parent: String,
    pub runtime: String,
}

/// A container, from list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub labels: HashMap<String, String>,
    /// `created`, `running`, `exited`, …
    pub state: String,
    /// Unix seconds.
    pub created: i64,
}

/// Which containers to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Include stopped containers.
    pub all: bool,
    /// `key` (present) or `key=value` label filters, all of which must match.
    pub labels: Vec<String>,
    /// ID or ID prefix.
    pub id: Option<String>,
}

/// Container-level Docker calls.
#[async_trait]
pub trait ContainerApi {
    /// Create; returns the ID.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stop with SIGTERM (or the stop signal), then SIGKILL after `timeout`.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    /// Remove; `force` kills a running container first. Removes anonymous volumes.
    async fn remove_container(&self, id: &str, force: bool) -> Result<()>;
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo>;
    async fn list_containers(&self, filter: &ListFilter) -> Result<Vec<ContainerSummary>>;
    async fn update_container_resources(&self, id: &str, resources: &ResourceSpec) -> Result<()>;
}

#[async_trait]
impl ContainerApi for DockerClient {
    async fn create_container(&self, _spec: &ContainerSpec) -> Result<String> {
        Err(Error::Client(
            "create_container: not implemented yet".into(),
        ))
    }
    async fn start_container(&self, _id: &str) -> Result<()> {
        Err(Error::Client("start_container: not implemented yet".into()))
    }
    async fn stop_container(&self, _id: &str, _timeout: Duration) -> Result<()> {
        Err(Error::Client("stop_container: not implemented yet".into()))
    }
    async fn remove_container(&self, _id: &str, _force: bool) -> Result<()> {
        Err(Error::Client(
            "remove_container: not implemented yet".into(),
        ))
    }
    async fn inspect_container(&self, _id: &str) -> Result<ContainerInfo> {
        Err(Error::Client(
            "inspect_container: not implemented yet".into(),
        ))
    }
    async fn list_containers(&self, _filter: &ListFilter) -> Result<Vec<ContainerSummary>> {
        Err(Error::Client("list_containers: not implemented yet".into()))
    }
    async fn update_container_resources(&self, _id: &str, _resources: &ResourceSpec) -> Result<()> {
        Err(Error::Client(
            "update_container_resources: not implemented yet".into(),
        ))
    }
}
