//! The `no-op` plugin: pods keep Docker's own bridge networking. Not for Kubernetes clusters.

use async_trait::async_trait;

use super::{Error, NetworkPlugin, NotReady, PodNetwork, PodNetworkStatus, Result};

/// The warning logged once when the no-op plugin is selected.
pub const NOOP_WARNING: &str = "network plugin is no-op: pods will use Docker's default bridge \
    network (172.17.0.0/16 addresses, no pod-to-pod routing between nodes, no NetworkReady check). \
    Kubernetes clusters need --network-plugin=cni with a CNI configuration in --cni-conf-dir";

/// no-op: Docker's default bridge. Always ready; the sandbox reads IPs from Docker itself.
#[derive(Debug)]
pub struct NoOp;

impl NoOp {
    /// The plugin's name (`--network-plugin=no-op`).
    pub const NAME: &'static str = "no-op";

    /// Construct, logging the one loud warning.
    pub fn new() -> Self {
        tracing::warn!("{NOOP_WARNING}");
        NoOp
    }
}

impl Default for NoOp {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl NetworkPlugin for NoOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn status(&self) -> std::result::Result<(), NotReady> {
        Ok(())
    }
    async fn setup_pod(&self, pod: &PodNetwork) -> Result<PodNetworkStatus> {
        Err(Error::NotSupported(format!(
            "no-op network plugin does not attach pods (sandbox {}): the sandbox uses Docker's bridge",
            pod.sandbox_id
        )))
    }
    async fn teardown_pod(&self, _pod: &PodNetwork) -> Result<()> {
        Ok(())
    }
    async fn pod_network_status(&self, pod: &PodNetwork) -> Result<PodNetworkStatus> {
        Err(Error::NotSupported(format!(
            "no-op network plugin has no pod addresses for sandbox {}: ask Docker",
            pod.sandbox_id
        )))
    }
    async fn check_pod(&self, _pod: &PodNetwork) -> Result<()> {
        Ok(())
    }
}
