//! Version, Status, RuntimeConfig and UpdateRuntimeConfig.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::{Result, Runtime};

/// Runtime name reported by `Version`.
pub const RUNTIME_NAME: &str = "docker";
/// Condition type: the runtime is up.
pub const RUNTIME_READY: &str = "RuntimeReady";
/// Condition type: pod networking is ready.
pub const NETWORK_READY: &str = "NetworkReady";
/// The CRI API version of the v1 service.
pub const CRI_V1_API_VERSION: &str = "v1";

impl Runtime {
    /// `Version`: runtime name `docker`, Docker's engine version and the CRI API version asked.
    pub async fn version(&self, cri_api_version: &str) -> Result<cri::VersionResponse> {
        let v = self.docker.version().await?;
        Ok(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: v.version,
            runtime_api_version: cri_api_version.into(),
        })
    }

    /// `Status`: RuntimeReady from dockerd reachability, NetworkReady from the network plugin.
    pub async fn status(&self, verbose: bool) -> Result<cri::StatusResponse> {
        let runtime = match self.docker.ping().await {
            Ok(()) => condition(RUNTIME_READY, true, "", ""),
            Err(e) => condition(
                RUNTIME_READY,
                false,
                "DockerDaemonNotReady",
                &format!("docker: failed to get docker version: {e}"),
            ),
        };
        let network = match self.network.status() {
            Ok(()) => condition(NETWORK_READY, true, "", ""),
            Err(not_ready) => {
                condition(NETWORK_READY, false, &not_ready.reason, &not_ready.message)
            }
        };
        let mut info = HashMap::new();
        if verbose {
            let cfg = serde_json::json!({
                "networkPlugin": self.network.name(),
                "podInfraContainerImage": self.config.pause_image,
                "dockerEndpoint": self.config.docker_endpoint,
                "rootDirectory": self.config.root_dir,
                "cniConfDir": self.config.cni_conf_dir,
                "cniBinDirs": self.config.cni_bin_dirs,
                "podCIDR": self.pod_cidr.read().map(|c| c.clone()).unwrap_or_default(),
            });
            info.insert("config".to_string(), cfg.to_string());
        }
        Ok(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info,
            runtime_handlers: Vec::new(),
            features: None,
        })
    }

    /// `RuntimeConfig`: the cgroup driver Docker uses.
    pub async fn runtime_config(&self) -> Result<cri::RuntimeConfigResponse> {
        let info = self.docker.info().await?;
        let driver = match info.cgroup_driver.as_str() {
            "systemd" => cri::CgroupDriver::Systemd,
            _ => cri::CgroupDriver::Cgroupfs,
        };
        Ok(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        })
    }

    /// `UpdateRuntimeConfig`: stores the pod CIDR for the network plugin.
    pub fn update_runtime_config(&self, req: &cri::UpdateRuntimeConfigRequest) -> Result<()> {
        let cidr = req
            .runtime_config
            .as_ref()
            .and_then(|c| c.network_config.as_ref())
            .map(|n| n.pod_cidr.clone())
            .unwrap_or_default();
        if cidr.is_empty() {
            return Ok(());
        }
        let mut slot = self
            .pod_cidr
            .write()
            .map_err(|_| super::Error::Internal("pod CIDR lock poisoned".into()))?;
        if slot.as_deref() != Some(cidr.as_str()) {
            tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
            *slot = Some(cidr.clone());
        }
        drop(slot);
        self.network.set_pod_cidr(&cidr);
        Ok(())
    }
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> cri::RuntimeCondition {
    cri::RuntimeCondition {
        r#type: kind.into(),
        status,
        reason: reason.into(),
        message: message.into(),
    }
}
