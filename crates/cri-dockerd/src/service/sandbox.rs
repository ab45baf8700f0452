//! Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus and
//! ListPodSandbox, over a pause container and a checkpoint per sandbox.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::labels::{self, Bookkeeping, TYPE_SANDBOX};
use super::state::{SandboxEntry, id_matches};
use super::{Error, Result, Runtime, convert, naming};
use crate::config::NetworkPluginKind;
use crate::docker::{self, ContainerSpec};
use crate::network::PodNetwork;
use crate::store::{PortMapping, SandboxCheckpoint};

/// How long the pause container gets to stop before it is killed (as the Go original).
const SANDBOX_STOP_GRACE: Duration = Duration::from_secs(10);

/// What a sandbox's containers take from its pause container's Docker host config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SandboxHost {
    pub cgroup_parent: String,
    pub runtime: String,
}

impl From<&docker::ContainerInfo> for SandboxHost {
    fn from(i: &docker::ContainerInfo) -> Self {
        SandboxHost {
            cgroup_parent: i.cgroup_parent.clone(),
            runtime: i.runtime.clone(),
        }
    }
}

/// [`SandboxHost`] per sandbox ID, kept from RunPodSandbox (or the first CreateContainer after
/// a restart) until the sandbox is removed or destroyed, so CreateContainer needs no inspect.
#[derive(Default)]
pub(crate) struct SandboxHosts(std::sync::Mutex<std::collections::HashMap<String, SandboxHost>>);

impl SandboxHosts {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, SandboxHost>> {
        // Each entry is written whole; a panic elsewhere cannot leave one half-made.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: &str) -> Option<SandboxHost> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn insert(&self, id: &str, host: SandboxHost) {
        self.lock().insert(id.to_string(), host);
    }

    pub(crate) fn remove(&self, id: &str) {
        let mut map = self.lock();
        if map.remove(id).is_some() {
            super::shrink_if_sparse(&mut map);
        }
    }
}

/// Unix nanoseconds of an RFC 3339 time; Docker's zero time (year 1) and garbage give 0.
pub(crate) fn rfc3339_to_nanos(s: &str) -> i64 {
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) if t.timestamp() > 0 => t.timestamp_nanos_opt().unwrap_or(0),
        _ => 0,
    }
}

impl Runtime {
    /// The Docker runtime for a CRI runtime handler: empty for Docker's default; otherwise it
    /// must be one of `docker info`'s runtimes.
    pub(crate) async fn docker_runtime(&self, handler: &str) -> Result<String> {
        if handler.is_empty() {
            return Ok(String::new());
        }
        let info = self.docker.info().await?;
        if info.runtimes.iter().any(|r| r == handler) {
            return Ok(handler.to_string());
        }
        Err(Error::InvalidArgument(format!(
            "unknown runtime handler {handler:?}: docker knows {}",
            info.runtimes.join(", ")
        )))
    }

    /// Create a container, pulling its image once if Docker does not have it (`pull`), and
    /// recovering from a name held by a leftover container as the Go original does: remove the
    /// leftover if it is not running, else (or if it vanished meanwhile) use a randomized name.
    pub(crate) async fn create_container_recovering(
        &self,
        spec: &mut ContainerSpec,
        pull: bool,
    ) -> Result<String> {
        let mut pulled = false;
        let mut renamed = false;
        loop {
            match self.docker.create_container(spec).await {
                Ok(id) => {
                    self.view_created(&id, spec).await;
                    return Ok(id);
                }
                Err(docker::Error::NotFound(msg)) if pull && !pulled && msg.contains("image") => {
                    tracing::info!(image = %spec.image, "pulling the pod infra image");
                    self.docker
                        .pull_image(&spec.image, None, self.config.image_pull_progress_deadline)
                        .await
                        .map_err(|e| {
                            with_context(e.into(), &format!("pulling image {:?}", spec.image))
                        })?;
                    pulled = true;
                }
                Err(docker::Error::NotFound(msg)) => {
                    return Err(Error::NotFound(format!(
                        "creating container {:?}: {msg}",
                        spec.name
                    )));
                }
                Err(docker::Error::Conflict(msg)) if !renamed => {
                    let Some(holder) = conflicting_id(&msg) else {
                        return Err(Error::from(docker::Error::Conflict(msg)));
                    };
                    tracing::warn!(name = %spec.name, holder = %holder, "name conflict: removing the leftover container");
                    match self.docker.remove_container(&holder, false).await {
                        Ok(()) => self.view_refresh(&holder).await,
                        Err(docker::Error::NotFound(_)) => {
                            spec.name = naming::randomize(&spec.name)
                        }
                        Err(e) => {
                            return Err(Error::FailedPrecondition(format!(
                                "container name {:?} is held by container {holder}, which cannot be removed: {e}",
                                spec.name
                            )));
                        }
                    }
                    renamed = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `RunPodSandbox`.
    #[tracing::instrument(skip_all, fields(pod = tracing::field::Empty))]
    pub async fn run_pod_sandbox(&self, req: &cri::RunPodSandboxRequest) -> Result<String> {
        let cfg = req.config.as_ref().ok_or_else(|| {
            Error::InvalidArgument("RunPodSandboxRequest.config is required".into())
        })?;
        let md = cfg.metadata.as_ref().ok_or_else(|| {
            Error::InvalidArgument("PodSandboxConfig.metadata is required".into())
        })?;
        if md.name.is_empty() || md.namespace.is_empty() || md.uid.is_empty() {
            return Err(Error::InvalidArgument(
                "PodSandboxConfig.metadata needs name, namespace and uid".into(),
            ));
        }
        tracing::Span::current().record("pod", format!("{}/{}", md.namespace, md.name));
        let host = self.host().await?.clone();
        let runtime = self.docker_runtime(&req.runtime_handler).await?;
        let name = naming::sandbox_name(md);
        let docker_labels = labels::make(
            &cfg.labels,
            &cfg.annotations,
            &Bookkeeping {
                container_type: TYPE_SANDBOX,
                pod_name: md.name.clone(),
                pod_namespace: md.namespace.clone(),
                pod_uid: md.uid.clone(),
                container_name: naming::SANDBOX_CONTAINER_NAME.into(),
                owner: self.owner.clone(),
                ..Default::default()
            },
        )?;
        let host = super::inputs::sandbox_inputs(cfg, &host)?;
        let mut spec = convert::sandbox_spec(
            cfg,
            &name,
            &self.config.pause_image,
            docker_labels,
            &runtime,
            &host,
        )?;
        let ns = cfg
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        // The no-op plugin's Docker bridge and published ports come from the translation
        // (`HostContext::docker_bridge`); every other plugin gets a pause container on network
        // `none` and attaches it below. Refuse early (nothing made) while it cannot.
        let host_network = ns.network == cri::NamespaceMode::Node as i32;
        if self.plugin_owns_network(host_network)
            && let Err(nr) = self.network.status()
        {
            return Err(Error::FailedPrecondition(format!(
                "{}: {}",
                nr.reason, nr.message
            )));
        }

        let id = self.create_container_recovering(&mut spec, true).await?;
        // From here on, a failure removes what was made.
        match self.finish_sandbox(&id, req, cfg, md, &ns).await {
            Ok(()) => {
                tracing::info!(pod_sandbox_id = %id, "pod sandbox running");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(pod_sandbox_id = %id, "RunPodSandbox failed, removing the sandbox: {e}");
                if let Err(rm) = self.docker.remove_container(&id, true).await
                    && !matches!(rm, docker::Error::NotFound(_))
                {
                    tracing::warn!(pod_sandbox_id = %id, "removing the failed sandbox: {rm}");
                }
                self.view_refresh(&id).await;
                self.sandbox_hosts.remove(&id);
                if let Err(rm) = self.checkpoints.remove(&id) {
                    tracing::warn!(pod_sandbox_id = %id, "removing the failed sandbox's checkpoint: {rm}");
                }
                Err(e)
            }
        }
    }

    async fn finish_sandbox(
        &self,
        id: &str,
        req: &cri::RunPodSandboxRequest,
        cfg: &cri::PodSandboxConfig,
        md: &cri::PodSandboxMetadata,
        ns: &cri::NamespaceOption,
    ) -> Result<()> {
        let host_network = ns.network == cri::NamespaceMode::Node as i32;
        let info = self.docker.inspect_container(id).await?;
        self.sandbox_hosts.insert(id, SandboxHost::from(&info));
        let cp = SandboxCheckpoint {
            id: id.to_string(),
            name: md.name.clone(),
            namespace: md.namespace.clone(),
            uid: md.uid.clone(),
            attempt: md.attempt,
            created_at: rfc3339_to_nanos(&info.created),
            host_network: ns.network == cri::NamespaceMode::Node as i32,
            port_mappings: cfg
                .port_mappings
                .iter()
                .map(|p| PortMapping {
                    // An unknown protocol counts as TCP, as in the network layer.
                    protocol: convert::protocol_name(p.protocol).unwrap_or("tcp").into(),
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip.clone(),
                })
                .collect(),
            network_mode: ns.network,
            pid_mode: ns.pid,
            ipc_mode: ns.ipc,
            target_id: ns.target_id.clone(),
            runtime_handler: req.runtime_handler.clone(),
            log_directory: cfg.log_directory.clone(),
            labels: cfg
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            annotations: cfg
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            network_plugin: (!host_network).then(|| self.network.name().to_string()),
            origin: Default::default(),
        };
        self.checkpoints
            .write(&cp)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.docker
            .start_container(id)
            .await
            .map_err(|e| with_context(e.into(), "starting the pod sandbox (pause) container"))?;
        self.view_note(id, "running").await;
        if !self.plugin_owns_network(host_network) {
            return Ok(());
        }
        // CNI ADD on the pause container's netns. On failure the plugin has already run DEL;
        // the caller removes the container and the checkpoint.
        let started = self.docker.inspect_container(id).await?;
        let pid = u32::try_from(started.state.pid)
            .ok()
            .filter(|p| *p > 0 && started.state.running)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "the pause container exited right after its start ({}, exit code {})",
                    started.state.status, started.state.exit_code
                ))
            })?;
        let mut pod = self.pod_network(&cp, Some(pid));
        pod.dns = cfg.dns_config.as_ref().map(Into::into);
        let st = self
            .network
            .setup_pod(&pod)
            .await
            .map_err(|e| with_context(e.into(), "setting up the pod network"))?;
        tracing::info!(pod_sandbox_id = %id, ip = %st.ip, additional_ips = ?st.additional_ips, "pod network attached");
        Ok(())
    }

    /// `StopPodSandbox`: stop every container of the pod, then the pause container. Success when
    /// the sandbox is already stopped, removed, or never existed (kubelet retries; cri-api:
    /// "must not return an error if all relevant resources have already been reclaimed").
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %id))]
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let Some(sb) = self.find_sandbox(id).await? else {
            tracing::info!("StopPodSandbox: no such sandbox, nothing to stop");
            return Ok(());
        };
        // The app containers are killed (no grace: kubelet has stopped them already with
        // theirs; this is the safety net, as in containerd) all at once: they are independent
        // of each other, and only the pause container must outlive them.
        let running: Vec<_> = self
            .sandbox_containers(&sb.id)
            .await?
            .into_iter()
            .filter(|c| matches!(c.state.as_str(), "running" | "paused" | "restarting"))
            .collect();
        let stops = running.iter().map(|c| async move {
            ignore_not_found(self.docker.stop_container(&c.id, Duration::ZERO).await)?;
            self.view_note(&c.id, "exited").await;
            Ok::<_, Error>(())
        });
        futures_util::future::join_all(stops)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        // Detach the network while the pause container (and its netns) still exists; the
        // pause container is stopped even when that fails, and the failure is returned so
        // that kubelet retries (DEL is idempotent and works from the cache without a netns).
        let info = self.inspect_sandbox_for_network(&sb).await?;
        let network_err = if self.owns_sandbox_network(&sb, info.as_ref()) {
            self.teardown_sandbox_network(&sb, info.as_ref())
                .await
                .err()
        } else {
            None
        };
        if sb.container.is_some() {
            ignore_not_found(self.docker.stop_container(&sb.id, SANDBOX_STOP_GRACE).await)?;
            self.view_note(&sb.id, "exited").await;
        }
        if let Some(e) = network_err {
            return Err(e);
        }
        tracing::info!(pod_sandbox_id = %sb.id, "pod sandbox stopped");
        Ok(())
    }

    /// `RemovePodSandbox`: remove every container of the pod, the pause container, and last the
    /// checkpoint. Success when already removed or never existed.
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %id))]
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let Some(sb) = self.find_sandbox(id).await? else {
            tracing::info!("RemovePodSandbox: no such sandbox, nothing to remove");
            return Ok(());
        };
        // A sandbox removed without StopPodSandbox: detach its network first (after a Stop
        // the pause container is not running and this is skipped).
        if sb.container.as_ref().is_some_and(|c| c.state == "running") {
            let info = self.inspect_sandbox_for_network(&sb).await?;
            if self.owns_sandbox_network(&sb, info.as_ref()) {
                self.teardown_sandbox_network(&sb, info.as_ref()).await?;
            }
        }
        // The app containers, all at once (independent of each other), before the pause
        // container whose namespaces they joined.
        let containers = self.sandbox_containers(&sb.id).await?;
        let removals = containers.iter().map(|c| {
            self.remove_container_by_id(&c.id, c.labels.get(labels::LOG_PATH).map(String::as_str))
        });
        futures_util::future::join_all(removals)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        // The checkpoint goes while Docker removes the pause container; should that removal
        // fail, the checkpoint is written back. (A crash in between leaves a sandbox listed
        // from its container alone, which kubelet removes again.)
        let (removed, checkpoint) = tokio::join!(
            async {
                if sb.container.is_none() {
                    return Ok(());
                }
                ignore_not_found(self.docker.remove_container(&sb.id, true).await)
            },
            self.checkpoints.remove_async(&sb.id)
        );
        if let Err(e) = removed {
            if let (Ok(()), Some(cp)) = (&checkpoint, &sb.checkpoint)
                && let Err(w) = self.checkpoints.write(cp)
            {
                tracing::warn!(pod_sandbox_id = %sb.id, "writing back the checkpoint of a sandbox that could not be removed: {w}");
            }
            return Err(e);
        }
        if sb.container.is_some() {
            self.view.remove(&sb.id);
        }
        self.sandbox_hosts.remove(&sb.id);
        checkpoint.map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(pod_sandbox_id = %sb.id, "pod sandbox removed");
        Ok(())
    }

    /// The [`SandboxHost`] of sandbox `id` (whose pause container the view lists): kept, or
    /// inspected once and kept while the view still lists the sandbox afterwards (so a
    /// sandbox removed meanwhile leaves no entry behind).
    pub(crate) async fn sandbox_host(&self, id: &str) -> Result<SandboxHost> {
        if let Some(h) = self.sandbox_hosts.get(id) {
            return Ok(h);
        }
        let info = match self.docker.inspect_container(id).await {
            Ok(i) => i,
            Err(docker::Error::NotFound(_)) => {
                return Err(Error::NotFound(format!("pod sandbox {id:?} not found")));
            }
            Err(e) => return Err(e.into()),
        };
        let host = SandboxHost::from(&info);
        self.sandbox_hosts.insert(id, host.clone());
        if self.view.list_one(id, TYPE_SANDBOX).is_none() {
            self.sandbox_hosts.remove(id);
        }
        Ok(host)
    }

    /// The pause container's inspect data; `None` when it is gone.
    async fn inspect_sandbox(&self, sb: &SandboxEntry) -> Result<Option<docker::ContainerInfo>> {
        if sb.container.is_none() {
            return Ok(None);
        }
        match self.docker.inspect_container(&sb.id).await {
            Ok(i) => Ok(Some(i)),
            Err(docker::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The pause container's inspect data when the network plugin may own the sandbox's
    /// network (the only use Stop and Remove have for it); `None` without a Docker call when it
    /// cannot, whatever the inspect would say (no-op plugin, host network, made under no-op).
    async fn inspect_sandbox_for_network(
        &self,
        sb: &SandboxEntry,
    ) -> Result<Option<docker::ContainerInfo>> {
        // Knowing less (no inspect data) only ever widens what `owns_sandbox_network` accepts.
        if !self.owns_sandbox_network(sb, None) {
            return Ok(None);
        }
        self.inspect_sandbox(sb).await
    }

    /// Whether a pod with (`host_network`) gets its network from the plugin rather than from
    /// Docker: not host-network, and the plugin is not `no-op`.
    fn plugin_owns_network(&self, host_network: bool) -> bool {
        !host_network && self.config.network_plugin != NetworkPluginKind::NoOp
    }

    /// Whether an existing sandbox's network was set up by the plugin (so it needs DEL and
    /// has its IPs in the plugin): not host-network, not made under `no-op` (checkpoint), and
    /// its pause container, when it still exists, is on Docker network `none`.
    fn owns_sandbox_network(
        &self,
        sb: &SandboxEntry,
        info: Option<&docker::ContainerInfo>,
    ) -> bool {
        let ns = namespace_options(sb, info);
        if !self.plugin_owns_network(ns.network == cri::NamespaceMode::Node as i32) {
            return false;
        }
        let made_by = sb
            .checkpoint
            .as_ref()
            .and_then(|c| c.network_plugin.as_deref());
        if made_by == Some(crate::network::NoOp::NAME) {
            return false;
        }
        info.is_none_or(|i| i.network_mode == "none")
    }

    /// The plugin's view of a pod, from its checkpoint (or, without one, the container's
    /// name and labels). `pid` is the running pause container's.
    fn pod_network(&self, cp: &SandboxCheckpoint, pid: Option<u32>) -> PodNetwork {
        PodNetwork {
            name: cp.name.clone(),
            namespace: cp.namespace.clone(),
            uid: cp.uid.clone(),
            sandbox_id: cp.id.clone(),
            netns: pid.map(PodNetwork::netns_of_pid),
            port_mappings: cp.port_mappings.iter().map(port_mapping).collect(),
            annotations: cp.annotations.clone(),
            pod_cidr: self.pod_cidr.read().ok().and_then(|c| c.clone()),
            dns: None,
        }
    }

    /// CNI DEL for a sandbox, with its netns while the pause container runs.
    async fn teardown_sandbox_network(
        &self,
        sb: &SandboxEntry,
        info: Option<&docker::ContainerInfo>,
    ) -> Result<()> {
        let pod = self.pod_network(&network_checkpoint(sb), running_pid(info));
        self.network
            .teardown_pod(&pod)
            .await
            .map_err(|e| with_context(e.into(), "tearing down the pod network"))
    }

    /// The pod's IPs from the plugin (its cached result, else the netns): no plugin runs.
    async fn plugin_pod_ips(
        &self,
        sb: &SandboxEntry,
        info: Option<&docker::ContainerInfo>,
    ) -> cri::PodSandboxNetworkStatus {
        let pod = PodNetwork {
            sandbox_id: sb.id.clone(),
            netns: running_pid(info).map(PodNetwork::netns_of_pid),
            ..Default::default()
        };
        match self.network.pod_network_status(&pod).await {
            Ok(st) => cri::PodSandboxNetworkStatus {
                ip: st.ip.to_string(),
                additional_ips: if self.config.ipv6_dual_stack {
                    st.additional_ips
                        .iter()
                        .map(|ip| cri::PodIp { ip: ip.to_string() })
                        .collect()
                } else {
                    Vec::new()
                },
            },
            Err(e) => {
                tracing::debug!(pod_sandbox_id = %sb.id, "no pod IP: {e}");
                cri::PodSandboxNetworkStatus::default()
            }
        }
    }

    /// The CRI containers of a sandbox: from the event-fed view while it is served (every
    /// CreateContainer puts its container there before it returns), else one Docker list.
    async fn sandbox_containers(&self, sandbox_id: &str) -> Result<Vec<docker::ContainerSummary>> {
        let of_sandbox = |c: &docker::ContainerSummary| {
            c.labels.get(labels::SANDBOX_ID).map(String::as_str) == Some(sandbox_id)
        };
        if let Some(list) = self.view.list_where(labels::TYPE_CONTAINER, of_sandbox) {
            return Ok(list);
        }
        let mut all = self.list_container_summaries().await?;
        all.retain(of_sandbox);
        Ok(all)
    }

    /// `PodSandboxStatus`.
    pub async fn pod_sandbox_status(
        &self,
        req: &cri::PodSandboxStatusRequest,
    ) -> Result<cri::PodSandboxStatusResponse> {
        let id = &req.pod_sandbox_id;
        tracing::debug!(pod_sandbox_id = %id, "PodSandboxStatus");
        self.host().await?;
        let sb = self
            .find_sandbox(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?} not found")))?;
        let info = match &sb.container {
            Some(_) => match self.docker.inspect_container(&sb.id).await {
                Ok(i) => Some(i),
                Err(docker::Error::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let mut entry = sb.clone();
        if info.is_none() {
            entry.container = None;
        }
        let mut status = cri::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: Some(entry.metadata()),
            state: entry.state() as i32,
            created_at: entry.created_at(),
            runtime_handler: entry.runtime_handler(),
            ..Default::default()
        };
        let (l, a) = entry.labels();
        status.labels = l;
        status.annotations = a;
        if let Some(i) = &info {
            status.state = if i.state.running {
                cri::PodSandboxState::SandboxReady
            } else {
                cri::PodSandboxState::SandboxNotready
            } as i32;
            if sb.checkpoint.as_ref().is_none_or(|c| c.created_at == 0) {
                status.created_at = rfc3339_to_nanos(&i.created);
            }
        }
        let ns = namespace_options(&sb, info.as_ref());
        let host_network = ns.network == cri::NamespaceMode::Node as i32;
        status.network = Some(if host_network {
            cri::PodSandboxNetworkStatus::default()
        } else if self.owns_sandbox_network(&sb, info.as_ref()) {
            self.plugin_pod_ips(&sb, info.as_ref()).await
        } else {
            // Docker's bridge (no-op plugin).
            cri::PodSandboxNetworkStatus {
                ip: info
                    .as_ref()
                    .map(|i| i.ip_address.clone())
                    .unwrap_or_default(),
                additional_ips: Vec::new(),
            }
        });
        status.linux = Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options: Some(ns) }),
        });
        let mut out = cri::PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        };
        if req.verbose {
            let v = serde_json::json!({
                "pid": info.as_ref().map(|i| i.state.pid).unwrap_or(0),
                "image": info.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                "dockerState": info.as_ref().map(|i| i.state.status.clone()).unwrap_or_default(),
                "networkMode": info.as_ref().map(|i| i.network_mode.clone()).unwrap_or_default(),
                "runtime": info.as_ref().map(|i| i.runtime.clone()).unwrap_or_default(),
                "cgroupParent": info.as_ref().map(|i| i.cgroup_parent.clone()).unwrap_or_default(),
                "checkpoint": sb.checkpoint,
            });
            out.info.insert("info".into(), v.to_string());
        }
        Ok(out)
    }

    /// `ListPodSandbox`.
    pub async fn list_pod_sandbox(
        &self,
        filter: Option<&cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        tracing::debug!("ListPodSandbox");
        self.host().await?;
        let entries = self.list_sandbox_entries().await?;
        Ok(filter_sandboxes(entries, filter))
    }
}

/// Apply a CRI sandbox filter: id (or prefix), state, label selector.
pub fn filter_sandboxes(
    entries: Vec<SandboxEntry>,
    filter: Option<&cri::PodSandboxFilter>,
) -> Vec<cri::PodSandbox> {
    let default = cri::PodSandboxFilter::default();
    let f = filter.unwrap_or(&default);
    entries
        .iter()
        .filter(|e| id_matches(&e.id, &f.id))
        .map(SandboxEntry::to_cri)
        .filter(|s| f.state.as_ref().is_none_or(|st| st.state == s.state))
        .filter(|s| labels::matches_selector(&s.labels, &f.label_selector))
        .collect()
}

/// The sandbox's namespace options: as requested (our checkpoint), else from Docker's modes.
fn namespace_options(
    sb: &SandboxEntry,
    info: Option<&docker::ContainerInfo>,
) -> cri::NamespaceOption {
    if let Some(cp) = sb
        .checkpoint
        .as_ref()
        .filter(|c| c.origin == crate::store::Origin::Ours)
    {
        return cri::NamespaceOption {
            network: cp.network_mode,
            pid: cp.pid_mode,
            ipc: cp.ipc_mode,
            target_id: cp.target_id.clone(),
            userns_options: None,
        };
    }
    let node = cri::NamespaceMode::Node as i32;
    let pod = cri::NamespaceMode::Pod as i32;
    let mode = |m: Option<&str>| if m == Some("host") { node } else { pod };
    let host_net = sb.checkpoint.as_ref().is_some_and(|c| c.host_network);
    cri::NamespaceOption {
        network: if host_net {
            node
        } else {
            mode(info.map(|i| i.network_mode.as_str()))
        },
        pid: mode(info.map(|i| i.pid_mode.as_str())),
        ipc: mode(info.map(|i| i.ipc_mode.as_str())),
        target_id: String::new(),
        userns_options: None,
    }
}

/// The pid of a running pause container.
fn running_pid(info: Option<&docker::ContainerInfo>) -> Option<u32> {
    info.filter(|i| i.state.running)
        .and_then(|i| u32::try_from(i.state.pid).ok())
        .filter(|p| *p > 0)
}

/// What the network plugin needs to know about a sandbox: its checkpoint, completed from the
/// container's name and labels where the checkpoint lacks it (Go checkpoints have no uid or
/// annotations; a sandbox may have no checkpoint at all).
fn network_checkpoint(sb: &SandboxEntry) -> SandboxCheckpoint {
    let mut cp = sb.checkpoint.clone().unwrap_or_default();
    cp.id = sb.id.clone();
    let md = sb.metadata();
    for (have, from) in [
        (&mut cp.name, md.name),
        (&mut cp.namespace, md.namespace),
        (&mut cp.uid, md.uid),
    ] {
        if have.is_empty() {
            *have = from;
        }
    }
    if cp.annotations.is_empty() {
        cp.annotations = sb.labels().1.into_iter().collect();
    }
    cp
}

/// A checkpointed port mapping as the network layer takes it.
fn port_mapping(p: &PortMapping) -> crate::network::PortMapping {
    use crate::network::Protocol;
    crate::network::PortMapping {
        container_port: p.container_port,
        host_port: p.host_port,
        protocol: match p.protocol.to_ascii_lowercase().as_str() {
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => Protocol::Tcp,
        },
        host_ip: p.host_ip.clone(),
    }
}

/// The ID in Docker's name-conflict message (`… is already in use by container "<id>". …`).
fn conflicting_id(msg: &str) -> Option<String> {
    let rest = msg.split("by container \"").nth(1)?;
    let id: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    (!id.is_empty()).then_some(id)
}

/// The same error kind with `ctx: ` in front of its message.
pub(crate) fn with_context(e: Error, ctx: &str) -> Error {
    let f = |m: String| format!("{ctx}: {m}");
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(f(m)),
        Error::NotFound(m) => Error::NotFound(f(m)),
        Error::AlreadyExists(m) => Error::AlreadyExists(f(m)),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(f(m)),
        Error::Unauthenticated(m) => Error::Unauthenticated(f(m)),
        Error::PermissionDenied(m) => Error::PermissionDenied(f(m)),
        Error::Unavailable(m) => Error::Unavailable(f(m)),
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(f(m)),
        Error::Unimplemented(m) => Error::Unimplemented(f(m)),
        Error::Internal(m) => Error::Internal(f(m)),
    }
}

/// `Ok` for a NotFound answer (idempotent stop/remove).
pub(crate) fn ignore_not_found(r: docker::Result<()>) -> Result<()> {
    match r {
        Ok(()) | Err(docker::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ContainerSummary;
    use std::collections::HashMap;

    #[test]
    fn parses_docker_conflict_messages() {
        let m = r#"Conflict. The container name "/k8s_POD_a_b_c_0" is already in use by container "0123abcd". You have to remove (or rename) that container to be able to reuse that name."#;
        assert_eq!(conflicting_id(m).as_deref(), Some("0123abcd"));
        assert_eq!(conflicting_id("something else"), None);
    }

    #[test]
    fn zero_time_is_zero() {
        assert_eq!(rfc3339_to_nanos("0001-01-01T00:00:00Z"), 0);
        assert_eq!(rfc3339_to_nanos(""), 0);
        assert_eq!(
            rfc3339_to_nanos("2024-01-02T03:04:05.123456789Z"),
            1_704_164_645_123_456_789
        );
    }

    fn entry(id: &str, state: &str, labels: &[(&str, &str)]) -> SandboxEntry {
        let mut l: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert(labels::CONTAINER_TYPE.into(), TYPE_SANDBOX.into());
        l.insert(labels::OWNER.into(), "o".into());
        SandboxEntry {
            id: id.into(),
            container: Some(ContainerSummary {
                id: id.into(),
                name: format!("k8s_POD_p{id}_ns_u{id}_0"),
                labels: l,
                state: state.into(),
                ..Default::default()
            }),
            checkpoint: None,
        }
    }

    #[test]
    fn sandbox_filters() {
        let all = || {
            vec![
                entry("aaa1", "running", &[("app", "x")]),
                entry("aab2", "exited", &[("app", "y")]),
                entry("bbb3", "running", &[("app", "y"), ("tier", "web")]),
            ]
        };
        let ids = |f: cri::PodSandboxFilter| -> Vec<String> {
            filter_sandboxes(all(), Some(&f))
                .into_iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(filter_sandboxes(all(), None).len(), 3);
        assert_eq!(
            ids(cri::PodSandboxFilter {
                id: "aa".into(),
                ..Default::default()
            }),
            ["aaa1", "aab2"]
        );
        assert_eq!(
            ids(cri::PodSandboxFilter {
                id: "bbb3".into(),
                ..Default::default()
            }),
            ["bbb3"]
        );
        assert_eq!(
            ids(cri::PodSandboxFilter {
                state: Some(cri::PodSandboxStateValue {
                    state: cri::PodSandboxState::SandboxNotready as i32
                }),
                ..Default::default()
            }),
            ["aab2"]
        );
        assert_eq!(
            ids(cri::PodSandboxFilter {
                label_selector: HashMap::from([("app".into(), "y".into())]),
                ..Default::default()
            }),
            ["aab2", "bbb3"]
        );
        assert_eq!(
            ids(cri::PodSandboxFilter {
                label_selector: HashMap::from([
                    ("app".into(), "y".into()),
                    ("tier".into(), "web".into())
                ]),
                state: Some(cri::PodSandboxStateValue {
                    state: cri::PodSandboxState::SandboxReady as i32
                }),
                ..Default::default()
            }),
            ["bbb3"]
        );
    }
}
