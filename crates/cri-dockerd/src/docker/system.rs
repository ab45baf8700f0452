//! System calls: version, info, ping.

use async_trait::async_trait;

use super::client::DockerClient;
use super::error::Result;

/// Docker's `/version`, the parts we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionInfo {
    /// Engine version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// Highest API version the engine speaks, e.g. `1.41`.
    pub api_version: String,
}

/// Docker's `/info`, the parts we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonInfo {
    /// `cgroupfs` or `systemd`.
    pub cgroup_driver: String,
    /// `1` or `2`.
    pub cgroup_version: String,
    /// Docker's root directory, e.g. `/var/lib/docker`.
    pub docker_root_dir: String,
    /// Storage driver, e.g. `overlay2`.
    pub storage_driver: String,
    /// Configured runtimes (runc, …).
    pub runtimes: Vec<String>,
    /// Default runtime name.
    pub default_runtime: String,
    /// Security options (`name=seccomp,profile=default`, `name=apparmor`, …).
    pub security_options: Vec<String>,
    /// Server version.
    pub server_version: String,
}

/// System-level Docker calls.
#[async_trait]
pub trait SystemApi {
    /// `/version`.
    async fn version(&self) -> Result<VersionInfo>;
    /// `/info`.
    async fn info(&self) -> Result<DaemonInfo>;
    /// `/_ping`: succeeds when dockerd answers.
    async fn ping(&self) -> Result<()>;
}

#[async_trait]
impl SystemApi for DockerClient {
    async fn version(&self) -> Result<VersionInfo> {
        let v = self
            .call("version", |d| async move { d.version().await })
            .await?;
        Ok(VersionInfo {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
        })
    }

    async fn info(&self) -> Result<DaemonInfo> {
        let i = self.call("info", |d| async move { d.info().await }).await?;
        let mut runtimes: Vec<String> = i.runtimes.unwrap_or_default().into_keys().collect();
        runtimes.sort();
        Ok(DaemonInfo {
            cgroup_driver: i.cgroup_driver.map(|d| d.to_string()).unwrap_or_default(),
            cgroup_version: i.cgroup_version.map(|v| v.to_string()).unwrap_or_default(),
            docker_root_dir: i.docker_root_dir.unwrap_or_default(),
            storage_driver: i.driver.unwrap_or_default(),
            runtimes,
            default_runtime: i.default_runtime.unwrap_or_default(),
            security_options: i.security_options.unwrap_or_default(),
            server_version: i.server_version.unwrap_or_default(),
        })
    }

    async fn ping(&self) -> Result<()> {
        self.call("ping", |d| async move { d.ping().await })
            .await
            .map(|_| ())
    }
}
