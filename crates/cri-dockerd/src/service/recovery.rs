//! Start-up recovery after a crash: remove what an interrupted RunPodSandbox or CreateContainer
//! left half-made, and resume copying the logs of running containers.

use super::labels::{self, CONTAINER_TYPE, OWNER, TYPE_CONTAINER, TYPE_SANDBOX};
use super::{Result, Runtime};
use crate::docker::{self, ListFilter};

impl Runtime {
    /// Runs once, when dockerd first answers (before any other call is served).
    pub(crate) async fn recover(&self) -> Result<()> {
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
        // 2. Containers whose CreateContainer call never returned (intent markers).
        let dir = self.config.root_dir.join("pending");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
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
