//! The `cni` and `kubenet` network plugins: the network configuration (from the conf dir,
//! re-read when it changes, or kubenet's built-in one), the loopback network every pod gets,
//! per-pod ADD/DEL/CHECK/status through the libcni-compatible [`client::CniClient`].

pub mod cache;
pub mod client;
pub mod conf;
pub mod exec;
pub mod kubenet;
pub mod procnet;
pub mod result;
pub mod runtime_conf;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;

use self::client::CniClient;
use self::conf::{Fingerprint, NetworkConfigList};
use self::kubenet::KubenetSettings;
use self::runtime_conf::RuntimeConf;
use super::{
    DEFAULT_INTERFACE_NAME, Error, NetworkPlugin, NotReady, PodNetwork, PodNetworkStatus, Result,
};
use crate::config::Config;

/// Name of the loopback network (cache files `cni-loopback-<id>-eth0`, as the Go original).
pub const LOOPBACK_NETWORK: &str = "cni-loopback";
/// How often the conf dir is re-read and 1.1.0 plugins are asked for STATUS in the background.
pub const SYNC_PERIOD: Duration = Duration::from_secs(5);
const NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// Where the network configuration comes from.
#[derive(Debug, Clone)]
enum Source {
    /// First valid file of a conf dir.
    Dir(PathBuf),
    /// kubenet's built-in configuration on the pod CIDR.
    Kubenet {
        settings: KubenetSettings,
        dual_stack: bool,
    },
}

#[derive(Debug)]
struct Loaded {
    fingerprint: Option<Fingerprint>,
    /// For kubenet: the pod CIDR the list was built for.
    built_for: Option<String>,
    current: std::result::Result<(Option<PathBuf>, Arc<NetworkConfigList>), String>,
}

/// The `cni` (or `kubenet`) network plugin.
pub struct CniPlugin {
    name: &'static str,
    source: Source,
    client: CniClient,
    loopback: NetworkConfigList,
    pod_cidr: RwLock<Option<String>>,
    loaded: Mutex<Loaded>,
    /// Last STATUS failure of a 1.1.0 network.
    plugin_status: Mutex<Option<String>>,
    pod_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn loopback_list() -> NetworkConfigList {
    let json = format!(
        r#"{{"cniVersion":"1.0.0","name":"{LOOPBACK_NETWORK}","plugins":[{{"type":"loopback"}}]}}"#
    );
    match NetworkConfigList::from_list_bytes(json.as_bytes(), "built-in loopback") {
        Ok(l) => l,
        // The literal above is valid; a unit test guards it.
        Err(e) => panic!("built-in loopback network: {e}"),
    }
}

impl CniPlugin {
    /// A `cni` plugin reading `conf_dir`, running plugins from `bin_dirs`, caching in `cache_dir`.
    pub fn new_cni(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        Self::build("cni", Source::Dir(conf_dir), bin_dirs, cache_dir, None)
    }

    /// A `kubenet` plugin.
    pub fn new_kubenet(
        settings: KubenetSettings,
        dual_stack: bool,
        bin_dirs: Vec<PathBuf>,
        cache_dir: PathBuf,
        pod_cidr: Option<String>,
    ) -> Self {
        Self::build(
            "kubenet",
            Source::Kubenet {
                settings,
                dual_stack,
            },
            bin_dirs,
            cache_dir,
            pod_cidr,
        )
    }

    fn build(
        name: &'static str,
        source: Source,
        bin_dirs: Vec<PathBuf>,
        cache_dir: PathBuf,
        pod_cidr: Option<String>,
    ) -> Self {
        CniPlugin {
            name,
            source,
            client: CniClient::new(bin_dirs, cache_dir),
            loopback: loopback_list(),
            pod_cidr: RwLock::new(pod_cidr),
            loaded: Mutex::new(Loaded {
                fingerprint: None,
                built_for: None,
                current: Err("not loaded yet".into()),
            }),
            plugin_status: Mutex::new(None),
            pod_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Per plugin-call timeout (default [`client::DEFAULT_PLUGIN_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client.timeout = timeout;
        self
    }

    /// The `cni` plugin of `config`, with its background re-sync when a runtime is running.
    pub fn cni(config: &Config) -> Arc<dyn NetworkPlugin> {
        let p = Arc::new(Self::new_cni(
            config.cni_conf_dir.clone(),
            config.cni_bin_dirs.clone(),
            config.cni_cache_dir.clone(),
        ));
        p.spawn_sync();
        p
    }

    /// The `kubenet` plugin of `config`.
    pub fn kubenet(config: &Config) -> Arc<dyn NetworkPlugin> {
        let settings = KubenetSettings {
            mtu: config.network_plugin_mtu,
            hairpin: config.hairpin_mode,
            bandwidth: exec::find_plugin("bandwidth", &config.cni_bin_dirs).is_ok(),
            ..Default::default()
        };
        let p = Arc::new(Self::new_kubenet(
            settings,
            config.ipv6_dual_stack,
            config.cni_bin_dirs.clone(),
            config.cni_cache_dir.clone(),
            config.pod_cidr.clone(),
        ));
        p.spawn_sync();
        p
    }

    /// Re-read the configuration every [`SYNC_PERIOD`] and run STATUS for 1.1.0 networks, for
    /// as long as the plugin lives. Needs a tokio runtime; without one, `status()` still
    /// re-reads on each call.
    pub fn spawn_sync(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        handle.spawn(async move {
            loop {
                tokio::time::sleep(SYNC_PERIOD).await;
                let Some(p) = weak.upgrade() else { break };
                p.refresh().await;
            }
        });
    }

    /// Re-read the configuration and, for a 1.1.0 network, ask every plugin for STATUS.
    pub async fn refresh(&self) {
        let Ok((_, list)) = self.current_network() else {
            return;
        };
        let outcome = if list.version.supports_status_gc() {
            self.client
                .status_list(&list)
                .await
                .err()
                .map(|e| e.to_string())
        } else {
            None
        };
        if let Ok(mut s) = self.plugin_status.lock() {
            if *s != outcome {
                match &outcome {
                    Some(e) => tracing::warn!(error = %e, "CNI network reports not ready"),
                    None => tracing::info!(network = %list.name, "CNI network reports ready"),
                }
            }
            *s = outcome;
        }
    }

    fn effective_pod_cidr(&self, pod: &PodNetwork) -> Option<String> {
        pod.pod_cidr
            .clone()
            .filter(|c| !c.trim().is_empty())
            .or_else(|| self.pod_cidr.read().ok().and_then(|c| c.clone()))
    }

    /// The network configuration in use, re-read when the conf dir changed.
    pub fn current_network(
        &self,
    ) -> std::result::Result<(Option<PathBuf>, Arc<NetworkConfigList>), String> {
        let mut loaded = match self.loaded.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        match &self.source {
            Source::Dir(dir) => {
                let fp = conf::fingerprint(dir);
                let unchanged = loaded.fingerprint.as_ref() == Some(&fp);
                // A config whose plugins were missing is re-checked every time (binaries are
                // often installed after the config).
                if !(unchanged && loaded.current.is_ok()) {
                    let new = conf::load_first_valid(dir, &self.client.bin_dirs)
                        .map(|(p, l)| (Some(p), Arc::new(l)));
                    log_change(&loaded.current, &new);
                    loaded.current = new;
                    loaded.fingerprint = Some(fp);
                }
            }
            Source::Kubenet {
                settings,
                dual_stack,
            } => {
                let cidr = self.pod_cidr.read().ok().and_then(|c| c.clone());
                let cidr = cidr.map(|c| {
                    if *dual_stack {
                        c
                    } else {
                        c.split(',').next().unwrap_or_default().to_string()
                    }
                });
                if loaded.built_for != cidr || loaded.current.is_err() {
                    let new = match &cidr {
                        None => Err(
                            "kubenet does not have netConfig. This is most likely due to lack of PodCIDR"
                                .to_string(),
                        ),
                        Some(c) => match kubenet::REQUIRED_PLUGINS
                            .iter()
                            .find(|p| exec::find_plugin(p, &self.client.bin_dirs).is_err())
                        {
                            Some(missing) => Err(format!(
                                "could not locate kubenet required CNI plugin {missing:?} in {:?}",
                                self.client.bin_dirs
                            )),
                            None => kubenet::conf_list(settings, c)
                                .map(|l| (None, Arc::new(l)))
                                .map_err(|e| e.to_string()),
                        },
                    };
                    log_change(&loaded.current, &new);
                    loaded.current = new;
                    loaded.built_for = cidr;
                }
            }
        }
        loaded.current.clone()
    }

    fn not_ready(&self, why: &str) -> NotReady {
        let message = match &self.source {
            Source::Dir(dir) => format!(
                "docker: network plugin is not ready: cni config uninitialized: {why} (conf dir {})",
                dir.display()
            ),
            Source::Kubenet { .. } => format!("docker: network plugin is not ready: {why}"),
        };
        NotReady {
            reason: NOT_READY_REASON.into(),
            message,
        }
    }

    fn pod_lock(&self, sandbox_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.pod_locks.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        locks
            .entry(sandbox_id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    }

    fn forget_pod_lock(&self, sandbox_id: &str) {
        if let Ok(mut locks) = self.pod_locks.lock()
            && let Some(l) = locks.get(sandbox_id)
            && Arc::strong_count(l) == 1
        {
            locks.remove(sandbox_id);
        }
    }

    fn runtime_conf(
        &self,
        pod: &PodNetwork,
        netns: String,
        caps: serde_json::Map<String, serde_json::Value>,
    ) -> RuntimeConf {
        RuntimeConf {
            container_id: pod.sandbox_id.clone(),
            netns,
            if_name: DEFAULT_INTERFACE_NAME.into(),
            args: runtime_conf::pod_cni_args(pod),
            capability_args: caps,
        }
    }

    async fn setup_locked(&self, pod: &PodNetwork) -> Result<PodNetworkStatus> {
        let netns = pod
            .netns
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "sandbox {} has no network namespace to set up",
                    pod.sandbox_id
                ))
            })?;
        if !netns.exists() {
            return Err(Error::InvalidArgument(format!(
                "network namespace {} of sandbox {} does not exist",
                netns.display(),
                pod.sandbox_id
            )));
        }
        if is_host_netns(netns) {
            return Err(Error::InvalidArgument(format!(
                "network namespace {} of sandbox {} is the host's own: refusing to run CNI on it",
                netns.display(),
                pod.sandbox_id
            )));
        }
        let (_, list) = self.current_network().map_err(Error::NotReady)?;
        let pod_cidr = self.effective_pod_cidr(pod);
        if list.capabilities().contains("ipRanges") && pod_cidr.is_none() {
            return Err(Error::NotReady(
                "cni config needs ipRanges but no PodCIDR set".into(),
            ));
        }
        let caps = runtime_conf::capability_args(pod, pod_cidr.as_deref())?;
        let rt = self.runtime_conf(pod, netns.display().to_string(), caps);

        let attach = async {
            self.client.add_list(&self.loopback, &rt).await?;
            let result = self.client.add_list(&list, &rt).await?;
            let mut ips = result.pod_ips(DEFAULT_INTERFACE_NAME);
            if ips.is_empty()
                && let Some(pid) = procnet::pid_of_netns(netns)
            {
                ips = procnet::pod_ips(Path::new("/proc"), pid, DEFAULT_INTERFACE_NAME)
                    .unwrap_or_default();
            }
            PodNetworkStatus::from_ips(ips, DEFAULT_INTERFACE_NAME).ok_or_else(|| Error::NoPodIps {
                sandbox_id: pod.sandbox_id.clone(),
                reason: format!(
                    "network {:?} returned no address for {DEFAULT_INTERFACE_NAME}",
                    list.name
                ),
            })
        };
        match attach.await {
            Ok(status) => Ok(status),
            Err(e) => {
                // Leave nothing behind: DEL what may have been set up (also removes any cache).
                if let Err(del) = self.client.del_list(&list, &rt).await {
                    tracing::warn!(pod_sandbox_id = %pod.sandbox_id, error = %del, "cleanup after failed CNI ADD");
                }
                if let Err(del) = self.client.del_list(&self.loopback, &rt).await {
                    tracing::debug!(pod_sandbox_id = %pod.sandbox_id, error = %del, "loopback cleanup after failed CNI ADD");
                }
                Err(e)
            }
        }
    }

    async fn teardown_locked(&self, pod: &PodNetwork) -> Result<()> {
        // Only a netns that still exists is passed on: a stale /proc/<pid> path could name an
        // unrelated process' namespace once the pid is reused.
        // The host's own netns (a reused pid) is never passed: DEL of loopback would take the
        // host's `lo` down.
        let netns = pod
            .netns
            .as_ref()
            .filter(|p| p.exists())
            .filter(|p| {
                let host = is_host_netns(p);
                if host {
                    tracing::warn!(pod_sandbox_id = %pod.sandbox_id, netns = %p.display(),
                        "netns of the sandbox is the host's own (pid reused?): tearing down without it");
                }
                !host
            })
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let rt = self.runtime_conf(pod, netns, serde_json::Map::new());
        let current = self.current_network().ok().map(|(_, l)| l);

        // Every network this sandbox was attached to per the cache (it may have been set up
        // with another configuration, or by the Go cri-dockerd), plus the current network.
        let mut lists: Vec<Arc<NetworkConfigList>> = Vec::new();
        for a in self.client.cache.attachments(Some(&pod.sandbox_id)) {
            if a.network_name == LOOPBACK_NETWORK || a.if_name != DEFAULT_INTERFACE_NAME {
                continue;
            }
            let parsed = NetworkConfigList::from_list_bytes(&a.config, "cached config")
                .or_else(|_| NetworkConfigList::from_conf_bytes(&a.config, "cached config"));
            match parsed {
                Ok(l) if l.name == a.network_name => lists.push(Arc::new(l)),
                _ => match &current {
                    Some(c) if c.name == a.network_name => lists.push(c.clone()),
                    _ => {
                        tracing::warn!(pod_sandbox_id = %pod.sandbox_id, network = %a.network_name,
                            "cached CNI config is unusable and not the current network; dropping the cache entry");
                        let _ =
                            self.client
                                .cache
                                .remove(&a.network_name, &a.container_id, &a.if_name);
                    }
                },
            }
        }
        if let Some(c) = &current
            && !lists.iter().any(|l| l.name == c.name)
        {
            lists.push(c.clone());
        }
        if lists.is_empty() {
            tracing::debug!(pod_sandbox_id = %pod.sandbox_id, "no CNI network to tear down");
        }

        if let Err(e) = self.client.del_list(&self.loopback, &rt).await {
            tracing::warn!(pod_sandbox_id = %pod.sandbox_id, error = %e, "CNI failed to delete loopback network");
        }
        for list in lists {
            match self.client.del_list(&list, &rt).await {
                Ok(()) => {}
                // As the Go original: a network already deleted by an earlier attempt.
                Err(e) if e.to_string().contains("no such file or directory") => {
                    tracing::debug!(pod_sandbox_id = %pod.sandbox_id, error = %e, "CNI DEL: already gone");
                    let _ = self
                        .client
                        .cache
                        .remove(&list.name, &rt.container_id, &rt.if_name);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn cached_status(&self, pod: &PodNetwork) -> Option<PodNetworkStatus> {
        let current = self.current_network().ok().map(|(_, l)| l.name.clone());
        let mut attachments = self.client.cache.attachments(Some(&pod.sandbox_id));
        attachments
            .retain(|a| a.network_name != LOOPBACK_NETWORK && a.if_name == DEFAULT_INTERFACE_NAME);
        attachments.sort_by_key(|a| Some(&a.network_name) != current.as_ref());
        attachments.into_iter().find_map(|a| {
            let r = result::CniResult::parse(a.result.as_ref()?, "cached result").ok()?;
            PodNetworkStatus::from_ips(r.pod_ips(DEFAULT_INTERFACE_NAME), DEFAULT_INTERFACE_NAME)
        })
    }
}

/// Whether `path` is the network namespace this process (the host's, for cri-dockerd) runs in.
pub fn is_host_netns(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/self/ns/net");
    let theirs = std::fs::metadata(path);
    match (ours, theirs) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn log_change(
    old: &std::result::Result<(Option<PathBuf>, Arc<NetworkConfigList>), String>,
    new: &std::result::Result<(Option<PathBuf>, Arc<NetworkConfigList>), String>,
) {
    match (old, new) {
        (Ok((op, ol)), Ok((np, nl))) if op == np && ol == nl => {}
        (_, Ok((path, list))) => tracing::info!(
            network = %list.name,
            cni_version = %list.cni_version,
            file = %path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in".into()),
            "using CNI network configuration"
        ),
        (Ok(_), Err(e)) => tracing::warn!(error = %e, "CNI network configuration is gone"),
        (Err(a), Err(b)) if a != b => {
            tracing::debug!(error = %b, "no usable CNI network configuration")
        }
        _ => {}
    }
}

#[async_trait]
impl NetworkPlugin for CniPlugin {
    fn name(&self) -> &'static str {
        self.name
    }

    fn status(&self) -> std::result::Result<(), NotReady> {
        self.current_network().map_err(|e| self.not_ready(&e))?;
        if let Ok(s) = self.plugin_status.lock()
            && let Some(e) = s.as_ref()
        {
            return Err(self.not_ready(e));
        }
        Ok(())
    }

    fn set_pod_cidr(&self, cidr: &str) {
        if let Ok(mut slot) = self.pod_cidr.write() {
            if matches!(self.source, Source::Kubenet { .. })
                && let Some(old) = slot.as_ref()
                && old != cidr
            {
                // As the Go original: kubenet keeps its first pod CIDR.
                tracing::info!(pod_cidr = %cidr, current = %old, "kubenet ignores a pod CIDR change");
                return;
            }
            *slot = Some(cidr.to_string());
        }
    }

    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %pod.sandbox_id, pod = %format!("{}/{}", pod.namespace, pod.name)))]
    async fn setup_pod(&self, pod: &PodNetwork) -> Result<PodNetworkStatus> {
        let lock = self.pod_lock(&pod.sandbox_id);
        let res = {
            let _g = lock.lock().await;
            self.setup_locked(pod).await
        };
        drop(lock);
        self.forget_pod_lock(&pod.sandbox_id);
        match &res {
            Ok(s) => {
                tracing::info!(ip = %s.ip, additional_ips = ?s.additional_ips, "pod network set up")
            }
            Err(e) => tracing::info!(error = %e, "pod network setup failed"),
        }
        res
    }

    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %pod.sandbox_id))]
    async fn teardown_pod(&self, pod: &PodNetwork) -> Result<()> {
        let lock = self.pod_lock(&pod.sandbox_id);
        let res = {
            let _g = lock.lock().await;
            self.teardown_locked(pod).await
        };
        drop(lock);
        self.forget_pod_lock(&pod.sandbox_id);
        if res.is_ok() {
            tracing::info!("pod network torn down");
        }
        res
    }

    async fn pod_network_status(&self, pod: &PodNetwork) -> Result<PodNetworkStatus> {
        if let Some(s) = self.cached_status(pod) {
            tracing::debug!(pod_sandbox_id = %pod.sandbox_id, ip = %s.ip, "pod IPs from the CNI cache");
            return Ok(s);
        }
        let pid = pod
            .netns
            .as_deref()
            .and_then(procnet::pid_of_netns)
            .ok_or_else(|| Error::NoPodIps {
                sandbox_id: pod.sandbox_id.clone(),
                reason: "no cached CNI result and no /proc/<pid>/ns/net to read".into(),
            })?;
        let ips =
            procnet::pod_ips(Path::new("/proc"), pid, DEFAULT_INTERFACE_NAME).map_err(|e| {
                Error::NoPodIps {
                    sandbox_id: pod.sandbox_id.clone(),
                    reason: format!("reading /proc/{pid}/net: {e}"),
                }
            })?;
        PodNetworkStatus::from_ips(ips, DEFAULT_INTERFACE_NAME).ok_or_else(|| Error::NoPodIps {
            sandbox_id: pod.sandbox_id.clone(),
            reason: format!("no address in the network namespace of pid {pid}"),
        })
    }

    async fn check_pod(&self, pod: &PodNetwork) -> Result<()> {
        let (_, list) = self.current_network().map_err(Error::NotReady)?;
        let netns = pod
            .netns
            .as_ref()
            .filter(|p| !is_host_netns(p))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let pod_cidr = self.effective_pod_cidr(pod);
        let caps = runtime_conf::capability_args(pod, pod_cidr.as_deref())?;
        let rt = self.runtime_conf(pod, netns, caps);
        self.client.check_list(&list, &rt).await
    }

    async fn gc(&self, valid_sandbox_ids: &[String]) -> Result<()> {
        let valid: Vec<(String, String)> = valid_sandbox_ids
            .iter()
            .map(|id| (id.clone(), DEFAULT_INTERFACE_NAME.to_string()))
            .collect();
        let lo = self.client.gc_list(&self.loopback, &valid).await;
        if let Ok((_, list)) = self.current_network() {
            self.client.gc_list(&list, &valid).await?;
        }
        lo
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_network_is_valid() {
        let l = loopback_list();
        assert_eq!(l.name, LOOPBACK_NETWORK);
        assert_eq!(l.plugins[0].plugin_type, "loopback");
    }

    fn fake_bins(names: &[&str]) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        for n in names {
            let p = d.path().join(n);
            std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        d
    }

    #[test]
    fn cni_ready_only_with_a_valid_conf_and_its_plugins() {
        let conf = tempfile::tempdir().unwrap();
        let bins = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let p = CniPlugin::new_cni(
            conf.path().to_path_buf(),
            vec![bins.path().to_path_buf()],
            cache.path().to_path_buf(),
        );
        let err = p.status().unwrap_err();
        assert_eq!(err.reason, "NetworkPluginNotReady");
        assert!(err.message.contains("no networks found"), "{}", err.message);
        std::fs::write(conf.path().join("00-bad.conflist"), "{not json").unwrap();
        std::fs::write(
            conf.path().join("10-net.conflist"),
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        let err = p.status().unwrap_err();
        assert!(err.message.contains("bridge"), "{}", err.message);
        // The binary appears later: picked up without any conf change.
        let b = fake_bins(&["bridge"]);
        std::fs::copy(b.path().join("bridge"), bins.path().join("bridge")).unwrap();
        assert!(p.status().is_ok());
        assert_eq!(
            p.current_network().unwrap().0.unwrap(),
            conf.path().join("10-net.conflist")
        );
        std::fs::remove_file(conf.path().join("10-net.conflist")).unwrap();
        assert!(p.status().is_err());
    }

    #[test]
    fn cni_not_ready_when_dir_missing() {
        let p = CniPlugin::new_cni(
            PathBuf::from("/nonexistent/cni/net.d"),
            vec![],
            PathBuf::from("/nonexistent/cache"),
        );
        let err = p.status().unwrap_err();
        assert_eq!(err.reason, "NetworkPluginNotReady");
        assert!(err.message.contains("/nonexistent/cni/net.d"));
    }

    #[test]
    fn kubenet_needs_pod_cidr_and_plugins() {
        let bins = fake_bins(&["bridge", "host-local", "loopback"]);
        let cache = tempfile::tempdir().unwrap();
        let p = CniPlugin::new_kubenet(
            KubenetSettings::default(),
            false,
            vec![bins.path().to_path_buf()],
            cache.path().to_path_buf(),
            None,
        );
        assert!(p.status().unwrap_err().message.contains("PodCIDR"));
        p.set_pod_cidr("10.40.0.0/24,fd40::/64");
        assert!(p.status().unwrap_err().message.contains("portmap"));
        let pm = fake_bins(&["portmap"]);
        std::fs::copy(pm.path().join("portmap"), bins.path().join("portmap")).unwrap();
        assert!(p.status().is_ok());
        let (_, l) = p.current_network().unwrap();
        // Not dual-stack: only the first CIDR.
        assert_eq!(
            l.plugins[0].raw["ipam"]["ranges"],
            serde_json::json!([[{"subnet": "10.40.0.0/24"}]])
        );
        // The first pod CIDR sticks.
        p.set_pod_cidr("10.41.0.0/24");
        assert_eq!(
            p.current_network().unwrap().1.plugins[0].raw["ipam"]["ranges"][0][0]["subnet"],
            "10.40.0.0/24"
        );
    }
}
