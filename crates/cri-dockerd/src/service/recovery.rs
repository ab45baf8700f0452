//! Start-up recovery after a crash: remove what an interrupted RunPodSandbox or CreateContainer
//! left half-made, release network attachments of sandboxes that no longer run, and resume
//! copying the logs of running containers.

use std::path::Path;

use super::labels::{self, CONTAINER_TYPE, OWNER, TYPE_CONTAINER, TYPE_SANDBOX};
use super::{Result, Runtime};
use crate::docker::{self, ListFilter};

impl Runtime {
    /// Runs once, when dockerd first answers (before any other call is served).
    pub(crate) async fn recover(&self) -> Result<()> {
        // 0. Temporary files of checkpoint writes a kill interrupted.
        let temporaries = self.checkpoints.remove_temporaries();
        if temporaries > 0 {
            tracing::info!("recovery: removed {temporaries} unfinished checkpoint file(s)");
        }
        let ours = |l: &std::collections::HashMap<String, String>| {
            l.get(OWNER).is_none_or(|o| *o == self.owner)
        };
        // 1. Pause containers never started and never checkpointed: RunPodSandbox died between
        //    Docker's create and the checkpoint. (With a checkpoint they are kept, NOTREADY,
        //    for kubelet to remove.) Other instances' containers (another owner) are left alone.
        let sandboxes = self
            .docker
            .list_containers(&ListFilter {
                all: true,
                labels: vec![format!("{CONTAINER_TYPE}={TYPE_SANDBOX}")],
                id: None,
            })
            .await?;
        for s in sandboxes
            .iter()
            .filter(|s| s.state == "created" && ours(&s.labels))
        {
            let checkpointed = matches!(self.checkpoints.read(&s.id), Ok(Some(_)) | Err(_));
            if checkpointed {
                continue;
            }
            tracing::info!(pod_sandbox_id = %s.id, name = %s.name, "recovery: removing a half-created pod sandbox");
            if let Err(e) = self.docker.remove_container(&s.id, true).await
                && !matches!(e, docker::Error::NotFound(_))
            {
                tracing::warn!(pod_sandbox_id = %s.id, "recovery: {e}");
            }
            self.view_refresh(&s.id).await;
        }
        // 1b. Network attachments of sandboxes that no longer run (a daemon killed between CNI
        //     ADD and its reply, a pause container that died): DEL them from the plugin's
        //     cache. Every running sandbox counts, whoever owns it.
        let live: Vec<String> = sandboxes
            .iter()
            .filter(|s| matches!(s.state.as_str(), "running" | "paused" | "restarting"))
            .map(|s| s.id.clone())
            .collect();
        if let Err(e) = self.network.gc(&live).await {
            tracing::warn!("recovery: network garbage collection: {e}");
        }
        // 2. Containers whose CreateContainer call never returned (intent markers).
        let dir = self.config.root_dir.join("pending");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                // The marker holds the container name (markers of older builds were empty and
                // named after the container).
                let name = match std::fs::read_to_string(e.path()) {
                    Ok(n) if !n.trim().is_empty() => n.trim().to_string(),
                    _ => e.file_name().to_string_lossy().into_owned(),
                };
                match self.docker.inspect_container(&name).await {
                    Ok(i) if i.state.status == "created" && ours(&i.labels) => {
                        tracing::info!(container_id = %i.id, name = %name, "recovery: removing a half-created container");
                        if let Err(e) = self.docker.remove_container(&i.id, true).await {
                            tracing::warn!(container_id = %i.id, "recovery: {e}");
                        }
                        self.view_refresh(&i.id).await;
                    }
                    Ok(_) | Err(docker::Error::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                let _ = std::fs::remove_file(e.path());
            }
        }
        // 3. Resume log copying for running containers.
        let running = self
            .docker
            .list_containers(&ListFilter {
                all: false,
                labels: vec![format!("{CONTAINER_TYPE}={TYPE_CONTAINER}")],
                id: None,
            })
            .await?;
        for c in running.iter().filter(|c| ours(&c.labels)) {
            let Some(cri_log) = c.labels.get(labels::LOG_PATH).filter(|p| !p.is_empty()) else {
                continue;
            };
            // The Go cri-dockerd made the CRI log path a symlink to Docker's own json log (kubelet
            // reads that format too). Copying into it would append CRI lines to Docker's file.
            if is_symlink(Path::new(cri_log)) {
                tracing::debug!(container_id = %c.id, log_path = %cri_log, "recovery: log path is a symlink (made by the Go cri-dockerd): left as is");
                continue;
            }
            match self.docker.inspect_container(&c.id).await {
                Ok(i) => {
                    if let Err(e) = self.logs.follow(&c.id, &i.log_path, cri_log) {
                        tracing::warn!(container_id = %c.id, "recovery: resuming log copy: {e}");
                    }
                }
                Err(docker::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!("start-up recovery done");
        Ok(())
    }
}

/// Whether `p` itself is a symbolic link.
fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_log_paths_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("json.log");
        std::fs::write(&file, "").unwrap();
        let link = dir.path().join("0.log");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(is_symlink(&link));
        assert!(!is_symlink(&file));
        assert!(!is_symlink(&dir.path().join("missing.log")));
    }
}
