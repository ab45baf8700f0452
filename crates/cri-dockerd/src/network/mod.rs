//! Pod networking: the [`NetworkPlugin`] trait, the pod/network data it works on, and the choice
//! between the `cni`, `kubenet` and `no-op` plugins.
//!
//! The sandbox code calls [`NetworkPlugin::setup_pod`] after the pause container started (on its
//! `/proc/<pid>/ns/net`), [`NetworkPlugin::teardown_pod`] when the sandbox stops (idempotent, works
//! without a netns), and [`NetworkPlugin::pod_network_status`] for PodSandboxStatus.

pub mod cni;
mod error;
mod noop;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{Config, NetworkPluginKind};

pub use cni::CniPlugin;
pub use error::{Error, PluginError, PluginExit};
pub use noop::NoOp;

/// Result of network operations.
pub type Result<T> = std::result::Result<T, Error>;

/// The interface name every pod gets (`CNI_IFNAME`).
pub const DEFAULT_INTERFACE_NAME: &str = "eth0";

/// Why the network is not ready (the `NetworkReady` condition's reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub reason: String,
    pub message: String,
}

/// Protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Lower-case name, as CNI's `portMappings` capability wants it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One hostPort mapping of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: i32,
    /// 0 means "no host port": such mappings are not passed to plugins.
    pub host_port: i32,
    pub protocol: Protocol,
    /// Empty means all host addresses.
    pub host_ip: String,
}

impl From<&k8s_cri::v1::PortMapping> for PortMapping {
    fn from(p: &k8s_cri::v1::PortMapping) -> Self {
        let protocol = match k8s_cri::v1::Protocol::try_from(p.protocol) {
            Ok(k8s_cri::v1::Protocol::Udp) => Protocol::Udp,
            Ok(k8s_cri::v1::Protocol::Sctp) => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        PortMapping {
            container_port: p.container_port,
            host_port: p.host_port,
            protocol,
            host_ip: p.host_ip.clone(),
        }
    }
}

/// DNS settings of a pod (the CNI `dns` capability).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl From<&k8s_cri::v1::DnsConfig> for DnsConfig {
    fn from(d: &k8s_cri::v1::DnsConfig) -> Self {
        DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }
    }
}

/// Everything a plugin needs to attach or detach one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNetwork {
    /// Pod name (`K8S_POD_NAME`).
    pub name: String,
    /// Pod namespace (`K8S_POD_NAMESPACE`).
    pub namespace: String,
    /// Pod UID (`K8S_POD_UID`).
    pub uid: String,
    /// The sandbox (pause container) id: `CNI_CONTAINERID` and `K8S_POD_INFRA_CONTAINER_ID`.
    pub sandbox_id: String,
    /// The pod's network namespace, `/proc/<pause pid>/ns/net`. `None` on teardown when the
    /// pause container is gone.
    pub netns: Option<PathBuf>,
    pub port_mappings: Vec<PortMapping>,
    /// Pod annotations; `kubernetes.io/ingress-bandwidth` / `egress-bandwidth` are used.
    pub annotations: BTreeMap<String, String>,
    /// Pod CIDR(s), comma separated; `None` uses the plugin's (from `UpdateRuntimeConfig`).
    pub pod_cidr: Option<String>,
    pub dns: Option<DnsConfig>,
}

impl PodNetwork {
    /// The netns path of the process `pid` (the pause container's).
    pub fn netns_of_pid(pid: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    }
}

/// A pod's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkStatus {
    /// The primary IP (IPv4 first when the pod has both families).
    pub ip: IpAddr,
    /// Further IPs (the IPv6 address of a dual-stack pod).
    pub additional_ips: Vec<IpAddr>,
    /// The pod interface these addresses are on.
    pub interface: String,
}

impl PodNetworkStatus {
    /// Build from addresses in any order: IPv4 first, duplicates dropped. `None` when empty.
    pub fn from_ips(ips: impl IntoIterator<Item = IpAddr>, interface: &str) -> Option<Self> {
        let mut all: Vec<IpAddr> = Vec::new();
        for ip in ips {
            if !all.contains(&ip) {
                all.push(ip);
            }
        }
        all.sort_by_key(|ip| ip.is_ipv6());
        let mut it = all.into_iter();
        let ip = it.next()?;
        Some(PodNetworkStatus {
            ip,
            additional_ips: it.collect(),
            interface: interface.to_string(),
        })
    }
}

/// A pod network plugin.
#[async_trait]
pub trait NetworkPlugin: Send + Sync + 'static {
    /// `cni`, `kubenet` or `no-op`.
    fn name(&self) -> &'static str;
    /// Ready, or why not. Cheap: called on every CRI `Status`.
    fn status(&self) -> std::result::Result<(), NotReady>;
    /// The pod CIDR changed (`UpdateRuntimeConfig`).
    fn set_pod_cidr(&self, _cidr: &str) {}
    /// Attach the pod (CNI ADD on its netns, loopback included). On error nothing is left
    /// attached: the plugin already ran DEL.
    async fn setup_pod(&self, pod: &PodNetwork) -> Result<PodNetworkStatus>;
    /// Detach the pod (CNI DEL). Idempotent; works when the netns or container is gone.
    async fn teardown_pod(&self, pod: &PodNetwork) -> Result<()>;
    /// The pod's IPs, from the stored result or read from its netns.
    async fn pod_network_status(&self, pod: &PodNetwork) -> Result<PodNetworkStatus>;
    /// CNI CHECK: the pod's network is still as set up.
    async fn check_pod(&self, pod: &PodNetwork) -> Result<()>;
    /// Remove attachments of sandboxes not in `valid_sandbox_ids` (and CNI GC where supported).
    async fn gc(&self, _valid_sandbox_ids: &[String]) -> Result<()> {
        Ok(())
    }
}

/// Build the plugin `config` selects, measured per pod operation ([`Measured`]).
pub fn from_config(config: &Config) -> Arc<dyn NetworkPlugin> {
    let plugin: Arc<dyn NetworkPlugin> = match config.network_plugin {
        NetworkPluginKind::Cni => CniPlugin::cni(config),
        NetworkPluginKind::Kubenet => CniPlugin::kubenet(config),
        NetworkPluginKind::NoOp => Arc::new(NoOp::new()),
    };
    Arc::new(Measured(plugin))
}

/// A plugin whose pod operations are recorded as the Go original's network plugin manager
/// records them (`kubelet_network_plugin_operations_*` with `set_up_pod`, `tear_down_pod`,
/// `get_pod_network_status`; `check_pod` is ours). The CNI runs inside are measured on their
/// own, per command and plugin type.
pub struct Measured(pub Arc<dyn NetworkPlugin>);

async fn measure<T>(
    operation: &'static str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let start = std::time::Instant::now();
    let result = fut.await;
    crate::metrics::record_network(operation, start.elapsed(), result.is_err());
    result
}

#[async_trait]
impl NetworkPlugin for Measured {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn status(&self) -> std::result::Result<(), NotReady> {
        self.0.status()
    }
    fn set_pod_cidr(&self, cidr: &str) {
        self.0.set_pod_cidr(cidr)
    }
    async fn setup_pod(&self, pod: &PodNetwork) -> Result<PodNetworkStatus> {
        measure("set_up_pod", self.0.setup_pod(pod)).await
    }
    async fn teardown_pod(&self, pod: &PodNetwork) -> Result<()> {
        measure("tear_down_pod", self.0.teardown_pod(pod)).await
    }
    async fn pod_network_status(&self, pod: &PodNetwork) -> Result<PodNetworkStatus> {
        measure("get_pod_network_status", self.0.pod_network_status(pod)).await
    }
    async fn check_pod(&self, pod: &PodNetwork) -> Result<()> {
        measure("check_pod", self.0.check_pod(pod)).await
    }
    async fn gc(&self, valid_sandbox_ids: &[String]) -> Result<()> {
        self.0.gc(valid_sandbox_ids).await
    }
}

/// The first file of `dir` (lexical order) that parses as a CNI network configuration, whether
/// or not its plugin binaries exist (`doctor` reports those separately).
pub fn first_valid_conf(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    cni::conf::conf_files(dir)
        .ok()?
        .into_iter()
        .find(|f| cni::conf::NetworkConfigList::from_file(f).is_ok())
}
