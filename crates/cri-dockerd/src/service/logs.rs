//! Container logs at the kubelet log path, in the CRI format
//! (`<RFC3339Nano> <stdout|stderr> <P|F> <text>`), and ReopenContainerLog.

use std::path::PathBuf;

use super::Result;

/// Copies container output to CRI-format log files.
#[derive(Debug, Default)]
pub struct LogManager {
    /// Where resume offsets are kept.
    pub state_dir: PathBuf,
}

impl LogManager {
    /// A manager keeping its state under `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        LogManager { state_dir }
    }

    /// Start (or resume after a daemon restart) copying `container_id`'s output, found at Docker's
    /// `docker_log_path`, into `cri_log_path`. Idempotent.
    pub fn follow(
        &self,
        _container_id: &str,
        _docker_log_path: &str,
        _cri_log_path: &str,
    ) -> Result<()> {
        Ok(())
    }

    /// Close and reopen the CRI log file (after kubelet rotated it).
    pub async fn reopen(&self, _container_id: &str) -> Result<()> {
        Ok(())
    }

    /// Stop copying (container removed); forget its state.
    pub fn forget(&self, _container_id: &str) {}
}
