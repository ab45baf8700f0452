//! Errors of the network layer, in terms of CNI: plugin failures keep the plugin's own code,
//! message, details and stderr.

use std::path::PathBuf;
use std::time::Duration;

/// A network plugin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable network configuration (yet).
    #[error("network plugin is not ready: {0}")]
    NotReady(String),
    /// A network configuration could not be used.
    #[error("invalid CNI network configuration {origin}: {reason}")]
    InvalidConfig { origin: String, reason: String },
    /// A `cniVersion` this client does not implement.
    #[error(
        "unsupported CNI version {version:?} in {origin} (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)"
    )]
    UnsupportedVersion { version: String, origin: String },
    /// The plugin binary is on none of the bin dirs.
    #[error("failed to find plugin {plugin:?} in path {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    /// The plugin reported a CNI error (`{"code":…,"msg":…,"details":…}`).
    #[error(transparent)]
    Plugin(Box<PluginError>),
    /// The plugin exited non-zero without a parseable CNI error.
    #[error(transparent)]
    PluginFailed(Box<PluginExit>),
    /// The plugin ran longer than the timeout and was killed.
    #[error(
        "plugin type={plugin:?} name={network:?} ({command}) timed out after {after:?} and was killed"
    )]
    Timeout {
        plugin: String,
        network: String,
        command: &'static str,
        after: Duration,
    },
    /// The plugin could not be started.
    #[error("could not run plugin {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The plugin succeeded but printed something that is not a usable result.
    #[error(
        "plugin type={plugin:?} ({command}) returned an invalid result: {reason}; stdout: {stdout:?}"
    )]
    InvalidResult {
        plugin: String,
        command: &'static str,
        reason: String,
        stdout: String,
    },
    /// The request itself is wrong (bad bandwidth annotation, missing netns …).
    #[error("invalid pod network request: {0}")]
    InvalidArgument(String),
    /// Reading or writing the result cache failed.
    #[error("CNI cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    /// The operation does not exist for this plugin or configuration version.
    #[error("{0}")]
    NotSupported(String),
    /// No addresses are known for the pod.
    #[error("no pod IPs known for sandbox {sandbox_id}: {reason}")]
    NoPodIps { sandbox_id: String, reason: String },
}

impl Error {
    /// The CNI error code when a plugin reported one.
    pub fn cni_code(&self) -> Option<u64> {
        match self {
            Error::Plugin(e) => Some(e.code),
            _ => None,
        }
    }
}

/// A CNI error object a plugin printed, with its stderr.
#[derive(Debug, thiserror::Error)]
#[error(
    "plugin type={plugin:?} name={network:?} failed ({command}): code {code}: {msg}{}{}",
    if details.is_empty() { String::new() } else { format!(" ({details})") },
    if stderr.is_empty() { String::new() } else { format!("; stderr: {}", stderr.trim_end()) }
)]
pub struct PluginError {
    pub plugin: String,
    pub network: String,
    pub command: &'static str,
    pub code: u64,
    pub msg: String,
    pub details: String,
    pub stderr: String,
}

/// A plugin that failed without a CNI error object: exit status and output.
#[derive(Debug, thiserror::Error)]
#[error(
    "plugin type={plugin:?} name={network:?} failed ({command}): {status}; stdout: {stdout:?}; stderr: {stderr:?}"
)]
pub struct PluginExit {
    pub plugin: String,
    pub network: String,
    pub command: &'static str,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}
