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
    /// Docker closes the container's stdin when the first attach's stdin ends.
    pub stdin_once: bool,
    pub resources: ResourceSpec,
    pub cgroup_parent: String,
    pub runtime: String,
    /// The writable layer's directory on the host (overlay-style drivers' `UpperDir`), if any.
    pub upper_dir: String,
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

/// Longest container name or ID passed to Docker. Docker itself accepts names well over 255
/// bytes (kubelet-made names of long pods do exceed it); this only keeps absurd values from
/// producing an over-long request URI.
const MAX_REFERENCE_LEN: usize = 4096;

/// Refuse, as not found, a container reference no container can have: Docker IDs and names are
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (at most [`MAX_REFERENCE_LEN`] bytes here). Without this a `/`
/// or `..` turns into another URL (Docker answers 301) and a huge one fails in the HTTP client.
pub(crate) fn check_reference(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = id.len() <= MAX_REFERENCE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(80).collect();
        Err(Error::NotFound(format!(
            "No such container: {shown:?} is not a valid container ID or name"
        )))
    }
}

#[async_trait]
impl ContainerApi for DockerClient {
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let body = create_body(spec);
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let resp = self
            .call("create_container", |d| async move {
                d.create_container(Some(options), body).await
            })
            .await?;
        Ok(resp.id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.call("start_container", |d| async move {
            d.start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
                .await
        })
        .await
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let t = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = bollard::query_parameters::StopContainerOptions {
            t: Some(t),
            signal: None,
        };
        // The stop itself may take `timeout`: give the HTTP request that much more time than
        // the client's default, or long grace periods would fail with a client timeout.
        let stop = self.call_unmeasured(|d| async move {
            let wait = d.timeout().max(timeout + Duration::from_secs(30));
            d.with_timeout(wait).stop_container(id, Some(options)).await
        });
        super::client::measure("stop_container", async move {
            match stop.await {
                // 304 Not Modified: already stopped.
                Err(Error::Api { status: 304, .. }) => Ok(()),
                other => other,
            }
        })
        .await
    }

    async fn remove_container(&self, id: &str, force: bool) -> Result<()> {
        check_reference(id)?;
        let options = bollard::query_parameters::RemoveContainerOptions {
            v: true,
            force,
            link: false,
        };
        self.call("remove_container", |d| async move {
            d.remove_container(id, Some(options)).await
        })
        .await
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        check_reference(id)?;
        let r = self
            .call("inspect_container", |d| async move {
                d.inspect_container(
                    id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            })
            .await?;
        Ok(info_from_inspect(r))
    }

    async fn list_containers(&self, filter: &ListFilter) -> Result<Vec<ContainerSummary>> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if !filter.labels.is_empty() {
            filters.insert("label".into(), filter.labels.clone());
        }
        if let Some(id) = &filter.id {
            filters.insert("id".into(), vec![id.clone()]);
        }
        let options = bollard::query_parameters::ListContainersOptions {
            all: filter.all,
            filters: (!filters.is_empty()).then_some(filters),
            ..Default::default()
        };
        let list = self
            .call("list_containers", |d| async move {
                d.list_containers(Some(options)).await
            })
            .await?;
        Ok(list.into_iter().map(summary_from_list).collect())
    }

    async fn update_container_resources(&self, id: &str, resources: &ResourceSpec) -> Result<()> {
        let r = resources;
        let body = bollard::models::ContainerUpdateBody {
            cpu_period: nonzero(r.cpu_period),
            cpu_quota: nonzero(r.cpu_quota),
            cpu_shares: nonzero(r.cpu_shares),
            memory: nonzero(r.memory),
            memory_swap: nonzero(r.memory_swap),
            cpuset_cpus: nonempty(&r.cpuset_cpus),
            cpuset_mems: nonempty(&r.cpuset_mems),
            pids_limit: nonzero(r.pids_limit),
            ..Default::default()
        };
        self.call("update_container", |d| async move {
            d.update_container(id, body).await
        })
        .await
    }
}

fn nonzero(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn nonempty_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// Map our spec onto Docker's create body. Pure; unit-tested below.
pub(crate) fn create_body(spec: &ContainerSpec) -> bollard::models::ContainerCreateBody {
    use bollard::models::{
        ContainerCreateBody, DeviceMapping, HostConfig, HostConfigLogConfig, Mount,
        MountBindOptions, MountBindOptionsPropagationEnum, PortBinding as DPortBinding,
    };
    let h = &spec.host;
    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    for m in &h.mounts {
        if m.selinux_relabel {
            // The Mount API has no relabel option; the legacy bind syntax does.
            let mut opts = vec![if m.read_only { "ro" } else { "rw" }.to_string()];
            opts.push(propagation_name(m.propagation).to_string());
            opts.push("Z".into());
            binds.push(format!("{}:{}:{}", m.source, m.target, opts.join(",")));
            continue;
        }
        let propagation = match m.propagation {
            Propagation::Private => MountBindOptionsPropagationEnum::RPRIVATE,
            Propagation::RSlave => MountBindOptionsPropagationEnum::RSLAVE,
            Propagation::RShared => MountBindOptionsPropagationEnum::RSHARED,
        };
        mounts.push(Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(bollard::models::MountType::BIND),
            read_only: Some(m.read_only),
            bind_options: Some(MountBindOptions {
                propagation: Some(propagation),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let mut exposed = Vec::new();
    let mut port_map: HashMap<String, Option<Vec<DPortBinding>>> = HashMap::new();
    for p in &h.port_bindings {
        let proto = if p.protocol.is_empty() {
            "tcp".to_string()
        } else {
            p.protocol.to_ascii_lowercase()
        };
        let key = format!("{}/{}", p.container_port, proto);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        port_map
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(DPortBinding {
                host_ip: nonempty(&p.host_ip),
                host_port: Some(if p.host_port == 0 {
                    String::new()
                } else {
                    p.host_port.to_string()
                }),
            });
    }
    let r = &h.resources;
    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode: nonempty(&h.network_mode),
        ipc_mode: nonempty(&h.ipc_mode),
        pid_mode: nonempty(&h.pid_mode),
        uts_mode: nonempty(&h.uts_mode),
        privileged: Some(h.privileged),
        readonly_rootfs: Some(h.readonly_rootfs),
        cap_add: nonempty_vec(&h.cap_add),
        cap_drop: nonempty_vec(&h.cap_drop),
        security_opt: nonempty_vec(&h.security_opt),
        group_add: nonempty_vec(&h.group_add),
        sysctls: (!h.sysctls.is_empty()).then(|| h.sysctls.clone()),
        cgroup_parent: nonempty(&h.cgroup_parent),
        oom_score_adj: h.oom_score_adj,
        cpu_period: nonzero(r.cpu_period),
        cpu_quota: nonzero(r.cpu_quota),
        cpu_shares: nonzero(r.cpu_shares),
        memory: nonzero(r.memory),
        memory_swap: nonzero(r.memory_swap),
        cpuset_cpus: nonempty(&r.cpuset_cpus),
        cpuset_mems: nonempty(&r.cpuset_mems),
        pids_limit: nonzero(r.pids_limit),
        devices: (!h.devices.is_empty()).then(|| {
            h.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.path_on_host.clone()),
                    path_in_container: Some(d.path_in_container.clone()),
                    cgroup_permissions: Some(d.cgroup_permissions.clone()),
                })
                .collect()
        }),
        masked_paths: h.masked_paths.clone(),
        readonly_paths: h.readonly_paths.clone(),
        dns: nonempty_vec(&h.dns),
        dns_search: nonempty_vec(&h.dns_search),
        dns_options: nonempty_vec(&h.dns_options),
        extra_hosts: nonempty_vec(&h.extra_hosts),
        port_bindings: (!port_map.is_empty()).then_some(port_map),
        shm_size: h.shm_size,
        runtime: nonempty(&h.runtime),
        log_config: h.log_config.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: Some(l.options.clone()),
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        hostname: nonempty(&spec.hostname),
        domainname: nonempty(&spec.domainname),
        user: nonempty(&spec.user),
        tty: Some(spec.tty),
        open_stdin: Some(spec.open_stdin),
        stdin_once: Some(spec.stdin_once),
        attach_stdin: Some(spec.open_stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        env: nonempty_vec(&spec.env),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        image: Some(spec.image.clone()),
        working_dir: nonempty(&spec.working_dir),
        labels: Some(spec.labels.clone()),
        stop_signal: spec.stop_signal.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn propagation_name(p: Propagation) -> &'static str {
    match p {
        Propagation::Private => "rprivate",
        Propagation::RSlave => "rslave",
        Propagation::RShared => "rshared",
    }
}

fn info_from_inspect(r: bollard::models::ContainerInspectResponse) -> ContainerInfo {
    let state = r.state.unwrap_or_default();
    let config = r.config.unwrap_or_default();
    let host = r.host_config.unwrap_or_default();
    let ip_address = r
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove("bridge"))
        .and_then(|e| e.ip_address)
        .unwrap_or_default();
    ContainerInfo {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        image_id: r.image.unwrap_or_default(),
        created: r.created.unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
        state: ContainerState {
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            oom_killed: state.oom_killed.unwrap_or(false),
            pid: state.pid.unwrap_or(0),
            exit_code: state.exit_code.unwrap_or(0),
            error: state.error.unwrap_or_default(),
            started_at: state.started_at.unwrap_or_default(),
            finished_at: state.finished_at.unwrap_or_default(),
        },
        log_path: r.log_path.unwrap_or_default(),
        mounts: r
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| MountInfo {
                source: m.source.unwrap_or_default(),
                destination: m.destination.unwrap_or_default(),
                read_write: m.rw.unwrap_or(false),
                propagation: m.propagation.unwrap_or_default(),
            })
            .collect(),
        hostname: config.hostname.unwrap_or_default(),
        resolv_conf_path: r.resolv_conf_path.unwrap_or_default(),
        hosts_path: r.hosts_path.unwrap_or_default(),
        network_mode: host.network_mode.unwrap_or_default(),
        ipc_mode: host.ipc_mode.unwrap_or_default(),
        pid_mode: host.pid_mode.unwrap_or_default(),
        ip_address,
        tty: config.tty.unwrap_or(false),
        open_stdin: config.open_stdin.unwrap_or(false),
        stdin_once: config.stdin_once.unwrap_or(false),
        resources: ResourceSpec {
            cpu_period: host.cpu_period.unwrap_or(0),
            cpu_quota: host.cpu_quota.unwrap_or(0),
            cpu_shares: host.cpu_shares.unwrap_or(0),
            memory: host.memory.unwrap_or(0),
            memory_swap: host.memory_swap.unwrap_or(0),
            cpuset_cpus: host.cpuset_cpus.unwrap_or_default(),
            cpuset_mems: host.cpuset_mems.unwrap_or_default(),
            pids_limit: host.pids_limit.unwrap_or(0),
        },
        cgroup_parent: host.cgroup_parent.unwrap_or_default(),
        runtime: host.runtime.unwrap_or_default(),
        upper_dir: r
            .graph_driver
            .and_then(|g| g.data.get("UpperDir").cloned())
            .unwrap_or_default(),
    }
}

fn summary_from_list(c: bollard::models::ContainerSummary) -> ContainerSummary {
    ContainerSummary {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        image_id: c.image_id.unwrap_or_default(),
        labels: c.labels.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        created: c.created.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_references_are_not_found() {
        let kubelet_long = format!("k8s_{}_0", "a".repeat(300));
        for ok in [
            "abc",
            "0123456789abcdef",
            "k8s_POD_x_ns_uid_0",
            "a.b-c_d",
            &kubelet_long,
        ] {
            assert!(check_reference(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_REFERENCE_LEN + 1);
        for bad in [
            "",
            "/",
            "..",
            "../x",
            "a/b",
            "-x",
            "a b",
            "pöd",
            long.as_str(),
        ] {
            assert!(
                matches!(check_reference(bad), Err(Error::NotFound(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn create_body_maps_every_field() {
        let spec = ContainerSpec {
            name: "k8s_c_p_ns_uid_0".into(),
            image: "busybox".into(),
            entrypoint: Some(vec!["sh".into()]),
            cmd: Some(vec!["-c".into(), "true".into()]),
            env: vec!["A=b".into()],
            labels: HashMap::from([("k".into(), "v".into())]),
            working_dir: "/w".into(),
            user: "1:2".into(),
            hostname: "h".into(),
            domainname: "d".into(),
            tty: true,
            open_stdin: true,
            stdin_once: true,
            stop_signal: Some("SIGINT".into()),
            host: HostSpec {
                mounts: vec![
                    MountSpec {
                        source: "/a".into(),
                        target: "/b".into(),
                        read_only: true,
                        propagation: Propagation::RSlave,
                        selinux_relabel: false,
                    },
                    MountSpec {
                        source: "/c".into(),
                        target: "/d".into(),
                        read_only: false,
                        propagation: Propagation::RShared,
                        selinux_relabel: true,
                    },
                ],
                network_mode: "container:x".into(),
                ipc_mode: "container:x".into(),
                pid_mode: "host".into(),
                uts_mode: "host".into(),
                privileged: true,
                readonly_rootfs: true,
                cap_add: vec!["NET_ADMIN".into()],
                cap_drop: vec!["ALL".into()],
                security_opt: vec!["no-new-privileges".into()],
                group_add: vec!["4000".into()],
                sysctls: HashMap::from([("net.core.somaxconn".into(), "1024".into())]),
                cgroup_parent: "/kubepods".into(),
                oom_score_adj: Some(100),
                resources: ResourceSpec {
                    cpu_period: 100000,
                    cpu_quota: 50000,
                    cpu_shares: 512,
                    memory: 1 << 26,
                    memory_swap: 1 << 27,
                    cpuset_cpus: "0".into(),
                    cpuset_mems: "0".into(),
                    pids_limit: 100,
                },
                devices: vec![DeviceSpec {
                    path_on_host: "/dev/null".into(),
                    path_in_container: "/dev/n".into(),
                    cgroup_permissions: "rw".into(),
                }],
                masked_paths: Some(vec![]),
                readonly_paths: Some(vec!["/proc/sys".into()]),
                dns: vec!["1.1.1.1".into()],
                dns_search: vec!["svc".into()],
                dns_options: vec!["ndots:5".into()],
                extra_hosts: vec!["a:1.2.3.4".into()],
                port_bindings: vec![PortBinding {
                    container_port: 80,
                    protocol: "TCP".into(),
                    host_ip: "127.0.0.1".into(),
                    host_port: 8080,
                }],
                shm_size: Some(1 << 20),
                runtime: "runc".into(),
                log_config: Some(LogConfig {
                    driver: "json-file".into(),
                    options: HashMap::from([("max-size".into(), "1m".into())]),
                }),
            },
        };
        let b = create_body(&spec);
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["Image"], "busybox");
        assert_eq!(v["Entrypoint"], serde_json::json!(["sh"]));
        assert_eq!(v["Cmd"], serde_json::json!(["-c", "true"]));
        assert_eq!(v["Env"], serde_json::json!(["A=b"]));
        assert_eq!(v["Labels"]["k"], "v");
        assert_eq!(v["WorkingDir"], "/w");
        assert_eq!(v["User"], "1:2");
        assert_eq!(v["Hostname"], "h");
        assert_eq!(v["Domainname"], "d");
        assert_eq!(v["Tty"], true);
        assert_eq!(v["OpenStdin"], true);
        assert_eq!(v["StdinOnce"], true);
        assert_eq!(v["StopSignal"], "SIGINT");
        assert_eq!(v["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
        let h = &v["HostConfig"];
        assert_eq!(h["Mounts"][0]["Source"], "/a");
        assert_eq!(h["Mounts"][0]["Target"], "/b");
        assert_eq!(h["Mounts"][0]["Type"], "bind");
        assert_eq!(h["Mounts"][0]["ReadOnly"], true);
        assert_eq!(h["Mounts"][0]["BindOptions"]["Propagation"], "rslave");
        assert_eq!(h["Binds"], serde_json::json!(["/c:/d:rw,rshared,Z"]));
        assert_eq!(h["NetworkMode"], "container:x");
        assert_eq!(h["IpcMode"], "container:x");
        assert_eq!(h["PidMode"], "host");
        assert_eq!(h["UTSMode"], "host");
        assert_eq!(h["Privileged"], true);
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["CapAdd"], serde_json::json!(["NET_ADMIN"]));
        assert_eq!(h["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(h["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
        assert_eq!(h["GroupAdd"], serde_json::json!(["4000"]));
        assert_eq!(h["Sysctls"]["net.core.somaxconn"], "1024");
        assert_eq!(h["CgroupParent"], "/kubepods");
        assert_eq!(h["OomScoreAdj"], 100);
        assert_eq!(h["CpuPeriod"], 100000);
        assert_eq!(h["CpuQuota"], 50000);
        assert_eq!(h["CpuShares"], 512);
        assert_eq!(h["Memory"], 1 << 26);
        assert_eq!(h["MemorySwap"], 1 << 27);
        assert_eq!(h["CpusetCpus"], "0");
        assert_eq!(h["CpusetMems"], "0");
        assert_eq!(h["PidsLimit"], 100);
        assert_eq!(h["Devices"][0]["PathOnHost"], "/dev/null");
        assert_eq!(h["Devices"][0]["PathInContainer"], "/dev/n");
        assert_eq!(h["Devices"][0]["CgroupPermissions"], "rw");
        assert_eq!(h["MaskedPaths"], serde_json::json!([]));
        assert_eq!(h["ReadonlyPaths"], serde_json::json!(["/proc/sys"]));
        assert_eq!(h["Dns"], serde_json::json!(["1.1.1.1"]));
        assert_eq!(h["DnsSearch"], serde_json::json!(["svc"]));
        assert_eq!(h["DnsOptions"], serde_json::json!(["ndots:5"]));
        assert_eq!(h["ExtraHosts"], serde_json::json!(["a:1.2.3.4"]));
        assert_eq!(
            h["PortBindings"]["80/tcp"],
            serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": "8080"}])
        );
        assert_eq!(h["ShmSize"], 1 << 20);
        assert_eq!(h["Runtime"], "runc");
        assert_eq!(h["LogConfig"]["Type"], "json-file");
        assert_eq!(h["LogConfig"]["Config"]["max-size"], "1m");
    }

    #[test]
    fn create_body_leaves_unset_fields_to_docker() {
        let b = create_body(&ContainerSpec {
            name: "n".into(),
            image: "i".into(),
            ..Default::default()
        });
        let v = serde_json::to_value(&b).unwrap();
        assert!(v.get("Entrypoint").is_none());
        assert!(v.get("Cmd").is_none());
        let h = &v["HostConfig"];
        for k in [
            "Memory",
            "MaskedPaths",
            "NetworkMode",
            "OomScoreAdj",
            "Runtime",
            "Mounts",
            "PortBindings",
            "LogConfig",
        ] {
            assert!(h.get(k).is_none(), "{k} should be unset");
        }
    }
}
