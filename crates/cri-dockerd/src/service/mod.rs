//! The domain layer (the Go `core/`): every CRI call's logic, over the Docker adapter, the
//! network plugin and the checkpoint store. Uses the CRI v1 message types; v1alpha2 is converted
//! in the server layer.

pub mod cgroup;
pub mod container;
pub mod convert;
mod error;
pub mod events;
pub mod exec;
pub mod host;
pub mod image;
pub mod inputs;
pub mod labels;
mod log_watch;
pub mod logs;
pub mod metrics;
pub mod naming;
mod recovery;
pub mod runtime_info;
pub mod sandbox;
pub mod state;
pub mod stats;
pub mod streaming;
pub mod view;

use std::sync::Arc;

pub use error::{Error, Result};

use crate::config::Config;
use crate::docker::DockerApi;
use crate::network::NetworkPlugin;
use crate::store::CheckpointStore;
use convert::HostContext;
use logs::LogManager;

/// The runtime: shared by every gRPC handler.
pub struct Runtime {
    pub(crate) docker: Arc<dyn DockerApi>,
    pub(crate) config: Arc<Config>,
    pub(crate) network: Arc<dyn NetworkPlugin>,
    /// Pod CIDR from `UpdateRuntimeConfig` (or `--pod-cidr`).
    pub(crate) pod_cidr: std::sync::RwLock<Option<String>>,
    /// Sandbox checkpoints under the root directory.
    pub(crate) checkpoints: CheckpointStore,
    /// CRI-format container logs.
    pub(crate) logs: LogManager,
    /// Host facts, detected once dockerd first answers (start-up recovery runs then too).
    host: tokio::sync::OnceCell<HostContext>,
    /// Marks the containers this instance creates (see [`labels::OWNER`]).
    pub(crate) owner: String,
    /// The exec/attach/port-forward server, once [`Runtime::start_streaming`] ran.
    pub(crate) streaming: std::sync::OnceLock<cri_streaming::Server>,
    /// The event-fed view of our containers that List calls read.
    pub(crate) view: Arc<view::View>,
    /// Subscribers to the CRI container events.
    pub(crate) events: events::EventHub,
    /// Samples and caches of the stats calls.
    pub(crate) stats: stats::StatsState,
    /// What CreateContainer copies from each sandbox's pause container.
    pub(crate) sandbox_hosts: sandbox::SandboxHosts,
}

impl Runtime {
    /// A runtime over `docker` with `config`.
    pub fn new(docker: Arc<dyn DockerApi>, config: Arc<Config>) -> Self {
        let network = crate::network::from_config(&config);
        let owner = owner_id(&config.root_dir);
        // The checkpoint index is read once, now; a failure is retried on first use.
        let checkpoints = CheckpointStore::new(&config.root_dir);
        if let Err(e) = checkpoints.preload() {
            tracing::warn!("reading the sandbox checkpoints: {e}");
        }
        Runtime {
            pod_cidr: std::sync::RwLock::new(config.pod_cidr.clone()),
            checkpoints,
            logs: LogManager::new(config.root_dir.join("logs")),
            host: tokio::sync::OnceCell::new(),
            owner,
            streaming: std::sync::OnceLock::new(),
            view: Arc::default(),
            events: events::EventHub::default(),
            stats: stats::StatsState::default(),
            sandbox_hosts: sandbox::SandboxHosts::default(),
            docker,
            config,
            network,
        }
    }

    /// The configuration the runtime was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The host context, detecting it (and running start-up recovery) on first use. Fails with
    /// `Unavailable` while dockerd does not answer; the next call tries again.
    pub(crate) async fn host(&self) -> Result<&HostContext> {
        self.host
            .get_or_try_init(|| async {
                let info = self.docker.info().await?;
                let mut host =
                    host::detect(&info.cgroup_driver, self.config.restrict_oom_score_adj);
                host.docker_root_dir = info.docker_root_dir.clone();
                host.docker_bridge =
                    self.config.network_plugin == crate::config::NetworkPluginKind::NoOp;
                // Recovery is best effort: only an unreachable dockerd postpones start-up.
                match self.recover().await {
                    Err(e @ Error::Unavailable(_)) => return Err(e),
                    Err(e) => tracing::warn!("start-up recovery incomplete: {e}"),
                    Ok(()) => {}
                }
                Ok::<_, Error>(host)
            })
            .await
    }

    /// Detect the host and recover from an earlier crash as soon as dockerd answers, retrying
    /// in the background until it does. Call once at start-up.
    pub fn spawn_startup(self: &Arc<Self>) {
        self.spawn_event_publisher();
        self.spawn_view_feed();
        let rt = self.clone();
        tokio::spawn(async move {
            loop {
                match rt.host().await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!("start-up recovery waits for dockerd: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

/// A stable ID for this instance: a hash of its root directory.
fn owner_id(root: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(root.to_string_lossy().as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub(crate) use crate::memory::shrink_if_sparse;
