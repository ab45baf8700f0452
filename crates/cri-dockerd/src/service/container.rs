//! Containers: CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ContainerStatus, ListContainers, UpdateContainerResources and ReopenContainerLog.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::labels::{self, Bookkeeping, CONTAINER_TYPE, TYPE_CONTAINER};
use super::sandbox::{ignore_not_found, rfc3339_to_nanos, with_context};
use super::state::{container_state, container_to_cri, id_matches};
use super::{Error, Result, Runtime, convert, naming};
use crate::docker::{self, ContainerInfo, ResourceSpec};

/// The CRI log file of a container: `log_path` under the sandbox's `log_directory`. The
/// directory must be absolute and `log_path` relative, neither with `..`: the daemon creates
/// and writes this file, so it must not escape the directory kubelet chose.
fn cri_log_path(log_directory: &str, log_path: &str) -> Result<Option<String>> {
    use std::path::Component;
    if log_path.is_empty() {
        return Ok(None);
    }
    let dir = Path::new(log_directory);
    let file = Path::new(log_path);
    if !dir.is_absolute() || dir.components().any(|c| c == Component::ParentDir) {
        return Err(Error::InvalidArgument(format!(
            "PodSandboxConfig.log_directory {log_directory:?} must be an absolute path without \"..\" when ContainerConfig.log_path is set"
        )));
    }
    if file.is_absolute()
        || log_path.contains('\0')
        || file
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::InvalidArgument(format!(
            "ContainerConfig.log_path {log_path:?} must be a relative path inside the log directory (no \"..\")"
        )));
    }
    Ok(Some(dir.join(file).to_string_lossy().into_owned()))
}

/// A CRI container found by [`Runtime::find_container`].
struct FoundContainer {
    /// Full Docker ID.
    id: String,
    /// The CRI log file (label [`labels::LOG_PATH`]); empty for none.
    cri_log: String,
    /// Docker's json-file log path when inspect data gave it; empty when unknown.
    docker_log: String,
}

/// Longest ContainerStatus waits for the log of an exited container to be copied.
const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(2);

impl Runtime {
    /// Inspect a CRI container (full ID or prefix): `None` if absent or not one of ours.
    async fn inspect_cri_container(&self, id: &str) -> Result<Option<ContainerInfo>> {
        if id.is_empty() {
            return Err(Error::InvalidArgument("container_id is required".into()));
        }
        match self.docker.inspect_container(id).await {
            Ok(i) if i.labels.get(CONTAINER_TYPE).map(String::as_str) == Some(TYPE_CONTAINER) => {
                Ok(Some(i))
            }
            Ok(_) | Err(docker::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn require_container(&self, id: &str) -> Result<ContainerInfo> {
        self.inspect_cri_container(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))
    }

    /// CRI container `id` (a full ID or a unique prefix) by its full ID and CRI log path: from
    /// the event-fed view, without a Docker call, when it knows the full ID; otherwise
    /// inspected (a prefix, or the view not being served). `None` when there is no such CRI
    /// container.
    async fn find_container(&self, id: &str) -> Result<Option<FoundContainer>> {
        if let Some(s) = self.view.list_one(id, TYPE_CONTAINER) {
            let cri_log = s.labels.get(labels::LOG_PATH).cloned().unwrap_or_default();
            return Ok(Some(FoundContainer {
                id: s.id,
                cri_log,
                docker_log: String::new(),
            }));
        }
        Ok(self
            .inspect_cri_container(id)
            .await?
            .map(|i| FoundContainer {
                cri_log: i.labels.get(labels::LOG_PATH).cloned().unwrap_or_default(),
                docker_log: i.log_path,
                id: i.id,
            }))
    }

    /// Docker's json-file log of started container `id`. This runtime creates its containers
    /// with the json-file driver, which writes `containers/<id>/<id>-json.log` under Docker's
    /// root directory, made when the container starts; when that file is not there (another
    /// root directory since, another driver), inspect tells.
    async fn docker_log_path(&self, id: &str) -> Result<String> {
        let root = &self.host().await?.docker_root_dir;
        if !root.is_empty() {
            let path = Path::new(root)
                .join("containers")
                .join(id)
                .join(format!("{id}-json.log"));
            if path.is_file() {
                return Ok(path.to_string_lossy().into_owned());
            }
        }
        Ok(self.docker.inspect_container(id).await?.log_path)
    }

    /// Directory of the intent markers of in-flight CreateContainer calls.
    fn pending_dir(&self) -> PathBuf {
        self.config.root_dir.join("pending")
    }

    /// The intent marker of a CreateContainer for Docker container `name`: named by the name's
    /// hash (kubelet-style names easily exceed the 255-byte file-name limit), holding the name.
    fn marker_path(&self, name: &str) -> PathBuf {
        self.pending_dir().join(naming::marker_file_name(name))
    }

    /// `CreateContainer`.
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %req.pod_sandbox_id))]
    pub async fn create_container(&self, req: &cri::CreateContainerRequest) -> Result<String> {
        let cfg = req.config.as_ref().ok_or_else(|| {
            Error::InvalidArgument("CreateContainerRequest.config is required".into())
        })?;
        let cmd = cfg
            .metadata
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("ContainerConfig.metadata is required".into()))?;
        if cmd.name.is_empty() {
            return Err(Error::InvalidArgument(
                "ContainerConfig.metadata.name is required".into(),
            ));
        }
        let host = self.host().await?.clone();
        let sb = self
            .find_sandbox(&req.pod_sandbox_id)
            .await?
            .filter(|s| s.container.is_some())
            .ok_or_else(|| {
                Error::NotFound(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
            })?;
        let sandbox_host = self.sandbox_host(&sb.id).await?;
        let pod_md = sb.metadata();
        let log_directory = req
            .sandbox_config
            .as_ref()
            .map(|c| c.log_directory.clone())
            .filter(|d| !d.is_empty())
            .or_else(|| sb.checkpoint.as_ref().map(|c| c.log_directory.clone()))
            .unwrap_or_default();
        let log_path = cri_log_path(&log_directory, &cfg.log_path)?;
        let name = naming::container_name(&pod_md, cmd);
        let docker_labels = labels::make(
            &cfg.labels,
            &cfg.annotations,
            &Bookkeeping {
                container_type: TYPE_CONTAINER,
                pod_name: pod_md.name.clone(),
                pod_namespace: pod_md.namespace.clone(),
                pod_uid: pod_md.uid.clone(),
                container_name: cmd.name.clone(),
                sandbox_id: Some(sb.id.clone()),
                log_path,
                owner: self.owner.clone(),
            },
        )?;
        let namespace_options = sb
            .checkpoint
            .as_ref()
            .filter(|c| c.origin == crate::store::Origin::Ours)
            .map(|c| cri::NamespaceOption {
                network: c.network_mode,
                pid: c.pid_mode,
                ipc: c.ipc_mode,
                target_id: c.target_id.clone(),
                userns_options: None,
            })
            .or_else(|| {
                req.sandbox_config
                    .as_ref()
                    .and_then(|c| c.linux.as_ref())
                    .and_then(|l| l.security_context.as_ref())
                    .and_then(|s| s.namespace_options.clone())
            });
        let sandbox_ctx = convert::SandboxContext {
            sandbox_id: sb.id.clone(),
            cgroup_parent: sandbox_host.cgroup_parent,
            namespace_options,
            runtime: sandbox_host.runtime,
        };
        let host = super::inputs::container_inputs(cfg, &host)?;
        let mut spec = convert::container_spec(cfg, &name, docker_labels, &sandbox_ctx, &host)?;

        // An intent marker: if we die before Docker's answer arrives, start-up recovery removes
        // the container this call may have created.
        let marker = self.marker_path(&spec.name);
        std::fs::create_dir_all(self.pending_dir())?;
        std::fs::write(&marker, spec.name.as_bytes())?;
        let res = self.create_container_recovering(&mut spec, false).await;
        if let Err(e) = std::fs::remove_file(&marker) {
            tracing::warn!("removing intent marker {}: {e}", marker.display());
        }
        let id = res.map_err(|e| match e {
            Error::NotFound(m) if m.contains("image") => {
                Error::NotFound(format!("no such image {:?}: {m}", spec.image))
            }
            other => other,
        })?;
        tracing::info!(container_id = %id, container = %cmd.name, "container created");
        Ok(id)
    }

    /// `StartContainer`; then copies its output to the CRI log path.
    #[tracing::instrument(skip_all, fields(container_id = %id))]
    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.host().await?;
        let found = self
            .find_container(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))?;
        let cri_log = &found.cri_log;
        if let Some(dir) = Path::new(cri_log).parent().filter(|_| !cri_log.is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Internal(format!("creating log directory {}: {e}", dir.display()))
            })?;
        }
        let seq = self.view.seq();
        self.docker
            .start_container(&found.id)
            .await
            .map_err(|e| with_context(e.into(), "starting container"))?;
        if self.view.has_exited(&found.id) {
            // Started again after it had exited (Docker allows it; kubelet never asks): the
            // same confirmed step back as for a `docker start` by hand, log follower included.
            self.confirm_restart(&found.id, seq).await;
        } else {
            self.view_note(&found.id, "running").await;
        }
        if !cri_log.is_empty() {
            // Docker 20.10 assigns the json-file path only when the container starts.
            let docker_log = if found.docker_log.is_empty() {
                self.docker_log_path(&found.id).await?
            } else {
                found.docker_log.clone()
            };
            self.logs.follow(&found.id, &docker_log, cri_log)?;
        }
        tracing::info!(container_id = %found.id, "container started");
        Ok(())
    }

    /// `StopContainer`: SIGTERM (or the image's stop signal), SIGKILL after `timeout` seconds.
    /// Success when already stopped, removed or never existed.
    #[tracing::instrument(skip_all, fields(container_id = %id))]
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        self.host().await?;
        let Some(found) = self.find_container(id).await? else {
            tracing::info!("StopContainer: no such container, nothing to stop");
            return Ok(());
        };
        let timeout = Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
        ignore_not_found(self.docker.stop_container(&found.id, timeout).await)?;
        self.view_note(&found.id, "exited").await;
        tracing::info!(container_id = %found.id, "container stopped");
        Ok(())
    }

    /// `RemoveContainer`: force-remove, stop copying its log and delete the CRI log file (as the
    /// Go original removes its log symlink). Success when already removed or never existed.
    #[tracing::instrument(skip_all, fields(container_id = %id))]
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.host().await?;
        let Some(found) = self.find_container(id).await? else {
            tracing::info!("RemoveContainer: no such container, nothing to remove");
            return Ok(());
        };
        self.remove_container_by_id(&found.id, Some(&found.cri_log))
            .await?;
        tracing::info!(container_id = %found.id, "container removed");
        Ok(())
    }

    pub(crate) async fn remove_container_by_id(
        &self,
        id: &str,
        cri_log: Option<&str>,
    ) -> Result<()> {
        // The log copier stops and the CRI log goes whatever becomes of the container (as in
        // the Go original, which removes the log before the container), both files on a
        // blocking thread while Docker removes the container.
        let position = self.logs.stop_following(id);
        let cri_log = cri_log.filter(|p| !p.is_empty()).map(PathBuf::from);
        let files = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(position);
            match cri_log.map(|p| std::fs::remove_file(&p).map_err(|e| (p, e))) {
                Some(Err((p, e))) if e.kind() != std::io::ErrorKind::NotFound => Some((p, e)),
                _ => None,
            }
        });
        let (removed, files) = tokio::join!(self.docker.remove_container(id, true), files);
        if let Ok(Some((p, e))) = files {
            tracing::warn!(container_id = %id, "removing log {}: {e}", p.display());
        }
        ignore_not_found(removed)?;
        self.view.remove(id);
        Ok(())
    }

    /// `ContainerStatus`.
    pub async fn container_status(
        &self,
        req: &cri::ContainerStatusRequest,
    ) -> Result<cri::ContainerStatusResponse> {
        tracing::debug!(container_id = %req.container_id, "ContainerStatus");
        self.host().await?;
        let info = self.require_container(&req.container_id).await?;
        let status = status_from_info(&info);
        if status.state == cri::ContainerState::ContainerExited as i32 {
            // Whoever sees the exit may read the log file next: it must hold all output.
            self.logs.flush(&info.id, LOG_FLUSH_LIMIT).await;
        }
        let mut out = cri::ContainerStatusResponse {
            status: Some(status),
            info: Default::default(),
        };
        if req.verbose {
            let v = serde_json::json!({
                "pid": info.state.pid,
                "dockerState": info.state.status,
                "dockerLogPath": info.log_path,
                "sandboxID": info.labels.get(labels::SANDBOX_ID),
                "networkMode": info.network_mode,
                "ipcMode": info.ipc_mode,
                "pidMode": info.pid_mode,
                "runtime": info.runtime,
                "cgroupParent": info.cgroup_parent,
            });
            out.info.insert("info".into(), v.to_string());
        }
        Ok(out)
    }

    /// `ListContainers`.
    pub async fn list_containers(
        &self,
        filter: Option<&cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>> {
        tracing::debug!("ListContainers");
        self.host().await?;
        let all = self.list_container_summaries().await?;
        Ok(filter_containers(all.iter().map(container_to_cri), filter))
    }

    /// `UpdateContainerResources`: cpu period/quota/shares, memory (and swap), cpuset via
    /// `docker update`. oom_score_adj, hugepages and unified cannot be changed on a Docker
    /// container after creation; they are refused when asked for.
    #[tracing::instrument(skip_all, fields(container_id = %req.container_id))]
    pub async fn update_container_resources(
        &self,
        req: &cri::UpdateContainerResourcesRequest,
    ) -> Result<()> {
        self.host().await?;
        let info = self.require_container(&req.container_id).await?;
        let Some(r) = req.linux.as_ref() else {
            return Ok(());
        };
        if !r.unified.is_empty() {
            return Err(Error::Unimplemented(
                "UpdateContainerResources: LinuxContainerResources.unified cannot be updated on Docker".into(),
            ));
        }
        if !r.hugepage_limits.is_empty() {
            return Err(Error::Unimplemented(
                "UpdateContainerResources: LinuxContainerResources.hugepage_limits cannot be updated on Docker".into(),
            ));
        }
        let spec = ResourceSpec {
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpu_shares: r.cpu_shares,
            memory: r.memory_limit_in_bytes,
            memory_swap: r.memory_swap_limit_in_bytes,
            cpuset_cpus: r.cpuset_cpus.clone(),
            cpuset_mems: r.cpuset_mems.clone(),
            pids_limit: 0,
        };
        self.docker
            .update_container_resources(&info.id, &spec)
            .await
            .map_err(|e| with_context(e.into(), "updating container resources"))?;
        tracing::info!(container_id = %info.id, "container resources updated");
        Ok(())
    }

    /// `ReopenContainerLog`: the container must be running.
    #[tracing::instrument(skip_all, fields(container_id = %id))]
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.host().await?;
        let info = self.require_container(id).await?;
        if !info.state.running {
            return Err(Error::FailedPrecondition(format!(
                "container {id:?} is not running"
            )));
        }
        self.logs.reopen(&info.id).await
    }
}

/// Apply a CRI container filter: id (or prefix), state, pod sandbox id (or prefix), labels.
pub fn filter_containers(
    all: impl Iterator<Item = cri::Container>,
    filter: Option<&cri::ContainerFilter>,
) -> Vec<cri::Container> {
    let default = cri::ContainerFilter::default();
    let f = filter.unwrap_or(&default);
    all.filter(|c| id_matches(&c.id, &f.id))
        .filter(|c| id_matches(&c.pod_sandbox_id, &f.pod_sandbox_id))
        .filter(|c| f.state.as_ref().is_none_or(|s| s.state == c.state))
        .filter(|c| labels::matches_selector(&c.labels, &f.label_selector))
        .collect()
}

/// A CRI container status from Docker's inspect.
pub fn status_from_info(info: &ContainerInfo) -> cri::ContainerStatus {
    let (l, a) = labels::extract(&info.labels);
    let state = container_state(&info.state.status);
    let reason = if state == cri::ContainerState::ContainerExited {
        if info.state.oom_killed {
            "OOMKilled"
        } else if info.state.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    } else {
        ""
    };
    let metadata = naming::parse_container_name(&info.name).or_else(|| {
        info.labels
            .get(labels::CONTAINER_NAME)
            .map(|n| cri::ContainerMetadata {
                name: n.clone(),
                attempt: 0,
            })
    });
    let r = &info.resources;
    cri::ContainerStatus {
        id: info.id.clone(),
        metadata,
        state: state as i32,
        created_at: rfc3339_to_nanos(&info.created),
        started_at: rfc3339_to_nanos(&info.state.started_at),
        finished_at: rfc3339_to_nanos(&info.state.finished_at),
        exit_code: i32::try_from(info.state.exit_code).unwrap_or(-1),
        image: Some(cri::ImageSpec {
            image: info.image.clone(),
            ..Default::default()
        }),
        image_ref: info.image_id.clone(),
        image_id: info.image_id.clone(),
        reason: reason.into(),
        message: info.state.error.clone(),
        labels: l,
        annotations: a,
        mounts: info
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.destination.clone(),
                host_path: m.source.clone(),
                readonly: !m.read_write,
                propagation: match m.propagation.as_str() {
                    "rslave" | "slave" => cri::MountPropagation::PropagationHostToContainer,
                    "rshared" | "shared" => cri::MountPropagation::PropagationBidirectional,
                    _ => cri::MountPropagation::PropagationPrivate,
                } as i32,
                ..Default::default()
            })
            .collect(),
        log_path: info
            .labels
            .get(labels::LOG_PATH)
            .cloned()
            .unwrap_or_default(),
        resources: Some(cri::ContainerResources {
            linux: Some(cri::LinuxContainerResources {
                cpu_period: r.cpu_period,
                cpu_quota: r.cpu_quota,
                cpu_shares: r.cpu_shares,
                memory_limit_in_bytes: r.memory,
                memory_swap_limit_in_bytes: r.memory_swap,
                cpuset_cpus: r.cpuset_cpus.clone(),
                cpuset_mems: r.cpuset_mems.clone(),
                ..Default::default()
            }),
            windows: None,
        }),
        user: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::{ContainerState, MountInfo};
    use std::collections::HashMap;

    #[test]
    fn log_paths_stay_inside_the_log_directory() {
        let ok = |d: &str, p: &str| cri_log_path(d, p).expect("accepted");
        assert_eq!(ok("/var/log/pods/x", ""), None);
        assert_eq!(ok("", ""), None);
        assert_eq!(
            ok("/var/log/pods/x", "app/0.log").as_deref(),
            Some("/var/log/pods/x/app/0.log")
        );
        assert_eq!(ok("/l", "./a.log").as_deref(), Some("/l/./a.log"));
        for (d, p) in [
            ("/var/log/pods/x", "../../etc/x"),
            ("/var/log/pods/x", "app/../../y.log"),
            ("/var/log/pods/x", "/etc/passwd"),
            ("/var/log/pods/x", "a\0b"),
            ("/var/log/pods/../../etc", "x.log"),
            ("relative/dir", "x.log"),
            ("", "x.log"),
        ] {
            assert!(
                matches!(cri_log_path(d, p), Err(Error::InvalidArgument(_))),
                "{d:?} {p:?}"
            );
        }
    }

    fn info(status: &str, exit: i64, oom: bool) -> ContainerInfo {
        ContainerInfo {
            id: "abc".into(),
            name: "k8s_app_p_ns_u_3".into(),
            image: "busybox:latest".into(),
            image_id: "sha256:1234".into(),
            created: "2024-01-02T03:04:05.000000001Z".into(),
            labels: HashMap::from([
                (CONTAINER_TYPE.to_string(), TYPE_CONTAINER.to_string()),
                (labels::LOG_PATH.to_string(), "/l/app.log".to_string()),
                ("x".to_string(), "y".to_string()),
            ]),
            state: ContainerState {
                status: status.into(),
                exit_code: exit,
                oom_killed: oom,
                started_at: "0001-01-01T00:00:00Z".into(),
                finished_at: "0001-01-01T00:00:00Z".into(),
                ..Default::default()
            },
            mounts: vec![MountInfo {
                source: "/h".into(),
                destination: "/c".into(),
                read_write: false,
                propagation: "rslave".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn reasons_and_states() {
        use cri::ContainerState as S;
        for (st, exit, oom, state, reason) in [
            ("created", 0, false, S::ContainerCreated, ""),
            ("running", 0, false, S::ContainerRunning, ""),
            ("exited", 0, false, S::ContainerExited, "Completed"),
            ("exited", 3, false, S::ContainerExited, "Error"),
            ("exited", 137, true, S::ContainerExited, "OOMKilled"),
        ] {
            let s = status_from_info(&info(st, exit, oom));
            assert_eq!(s.state, state as i32, "{st}");
            assert_eq!(s.reason, reason, "{st} {exit}");
            assert_eq!(s.exit_code, exit as i32);
        }
    }

    #[test]
    fn status_fields() {
        let s = status_from_info(&info("created", 0, false));
        assert_eq!(
            s.metadata.unwrap(),
            cri::ContainerMetadata {
                name: "app".into(),
                attempt: 3
            }
        );
        assert_eq!(s.created_at, 1_704_164_645_000_000_001);
        assert_eq!(s.started_at, 0);
        assert_eq!(s.finished_at, 0);
        assert_eq!(s.image.unwrap().image, "busybox:latest");
        assert_eq!(s.image_ref, "sha256:1234");
        assert_eq!(s.log_path, "/l/app.log");
        assert_eq!(
            s.labels,
            HashMap::from([("x".to_string(), "y".to_string())])
        );
        assert_eq!(s.mounts[0].container_path, "/c");
        assert!(s.mounts[0].readonly);
        assert_eq!(
            s.mounts[0].propagation,
            cri::MountPropagation::PropagationHostToContainer as i32
        );
    }

    #[test]
    fn container_filters() {
        let c =
            |id: &str, sb: &str, state: cri::ContainerState, l: &[(&str, &str)]| cri::Container {
                id: id.into(),
                pod_sandbox_id: sb.into(),
                state: state as i32,
                labels: l
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
        use cri::ContainerState as S;
        let all = || {
            vec![
                c("c1a", "s1", S::ContainerRunning, &[("a", "1")]),
                c("c1b", "s1", S::ContainerExited, &[("a", "2")]),
                c("c2a", "s2", S::ContainerRunning, &[("a", "1")]),
            ]
            .into_iter()
        };
        let ids = |f: cri::ContainerFilter| -> Vec<String> {
            filter_containers(all(), Some(&f))
                .into_iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(filter_containers(all(), None).len(), 3);
        assert_eq!(
            ids(cri::ContainerFilter {
                id: "c1".into(),
                ..Default::default()
            }),
            ["c1a", "c1b"]
        );
        assert_eq!(
            ids(cri::ContainerFilter {
                pod_sandbox_id: "s2".into(),
                ..Default::default()
            }),
            ["c2a"]
        );
        assert_eq!(
            ids(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: S::ContainerRunning as i32
                }),
                label_selector: HashMap::from([("a".into(), "1".into())]),
                ..Default::default()
            }),
            ["c1a", "c2a"]
        );
        assert!(
            ids(cri::ContainerFilter {
                id: "zz".into(),
                ..Default::default()
            })
            .is_empty()
        );
    }
}
