//! Container and pod stats (ContainerStats, ListContainerStats, PodSandboxStats,
//! ListPodSandboxStats), read from the cgroup filesystem and `/proc`, not from Docker's stats API.
//!
//! Lists come from the event-fed view; the pid and cgroup directories of each running container
//! are learned once (one inspect, one read of `/proc/<pid>/cgroup`) and cached. A container's
//! cgroup directories are named after its ID and never move, so container stats read them
//! without looking at the pid again; where the pid itself matters (a sandbox's network
//! counters, a container's start time in the metrics) the entry is checked against
//! `/proc/<pid>/cgroup` on use, so a restarted container is looked up again. CPU
//! `usage_nano_cores` is the rate between the previous sample kept here and the current one: the
//! first sample of a container reports no `usage_nano_cores` (field absent), later ones the rate
//! over at least [`MIN_RATE_WINDOW_NS`]. Writable-layer sizes come from a background task that,
//! every [`LAYER_REFRESH`], takes the containers from the view and walks each one's upper
//! directory with an entry budget ([`LAYER_WALK_BUDGET`]), one after another on one blocking
//! thread; the request path (and ImageFsInfo, which sums them as the container filesystem) only
//! reads its results.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_cri::v1 as cri;

use super::cgroup::{self, CgroupMounts, CgroupPaths, Usage};
use super::labels::{self, TYPE_CONTAINER};
use super::state::{SandboxEntry, id_matches};
use super::view::View;
use super::{Error, Result, Runtime, naming, shrink_if_sparse};
use crate::docker::{ContainerSummary, DockerApi};

/// CPU rates are computed over at least this window; a sample taken sooner after the previous
/// one reuses the last rate rather than computing a noisy one over a few milliseconds.
pub const MIN_RATE_WINDOW_NS: i64 = 500_000_000;
/// How often the background task refreshes writable-layer sizes.
pub const LAYER_REFRESH: Duration = Duration::from_secs(10);
/// At most this many directory entries are visited per container per refresh.
pub const LAYER_WALK_BUDGET: u64 = 200_000;
/// Upper bound on the kept CPU samples and pid entries (dropped wholesale beyond it; the lists
/// prune entries of containers that are gone on every call).
const MAX_ENTRIES: usize = 16_384;
/// Key prefix of a sandbox's entries in the kept state.
const POD_KEY: &str = "pod:";
/// Concurrent inspects when many pids are unknown (the first call after start-up).
const INSPECT_CONCURRENCY: usize = 8;

/// What the stats path keeps between calls.
#[derive(Default)]
pub struct StatsState {
    mounts: OnceLock<Option<CgroupMounts>>,
    procs: Mutex<HashMap<String, Arc<Proc>>>,
    cpu: Mutex<HashMap<String, CpuSample>>,
    layers: Arc<Mutex<HashMap<String, LayerUsage>>>,
    walker_started: AtomicBool,
}

/// A running container's process (from inspect) and its cgroup directories.
#[derive(Debug)]
struct Proc {
    info: ProcInfo,
    paths: CgroupPaths,
    /// The container's usage files, kept open (v1 containers, within the budget of open files).
    files: Option<cgroup::UsageFiles>,
}

impl Proc {
    /// One reading of the container's cgroups (through the open files where there are some).
    fn read_usage(&self, buf: &mut Vec<u8>) -> std::io::Result<Usage> {
        match &self.files {
            Some(f) => f.read(buf),
            None => cgroup::read_usage(&self.paths),
        }
    }

    /// Whether the reading came from files kept open (which fail for good once their cgroup
    /// is removed, even if a restarted container has one again under the same name).
    fn has_files(&self) -> bool {
        self.files.is_some()
    }
}

/// Whether a cached [`Proc`] is checked against `/proc/<pid>/cgroup` before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PidCheck {
    /// Only the cgroup directories are used: they never move for a container.
    PathsOnly,
    /// The pid is used too (network counters, start time): a restarted container has a new one.
    Verify,
}

/// A running container's process, from inspect.
#[derive(Debug, Clone)]
struct ProcInfo {
    pid: u32,
    cgroup_parent: String,
    host_network: bool,
    upper_dir: String,
    /// Start time, Unix seconds.
    started_at: u64,
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    usage_ns: u64,
    at_ns: i64,
    last_rate: Option<u64>,
}

/// A writable layer's size, from the background walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerUsage {
    pub upper_dir: String,
    pub bytes: u64,
    pub inodes: u64,
    pub at_ns: i64,
}

/// One interface's counters from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parse `/proc/net/dev` text; the loopback interface is left out.
pub fn parse_net_dev(text: &str) -> Vec<IfaceCounters> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" || name.is_empty() {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.push(IfaceCounters {
            name: name.to_string(),
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_errors: v[2],
            rx_dropped: v[3],
            tx_bytes: v[8],
            tx_packets: v[9],
            tx_errors: v[10],
            tx_dropped: v[11],
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Sum of usages (for a pod without its own cgroup: the pause container plus its containers).
pub fn sum_usage(parts: &[Usage]) -> Usage {
    let mut s = Usage::default();
    for u in parts {
        s.cpu_usage_ns += u.cpu_usage_ns;
        s.memory_usage += u.memory_usage;
        s.working_set += u.working_set;
        s.rss += u.rss;
        s.page_faults += u.page_faults;
        s.major_page_faults += u.major_page_faults;
        s.pids += u.pids;
    }
    s
}

/// The pod-level cgroup: the parent of the pause container's cgroup, which is the pod's own
/// cgroup only when the sandbox was given a cgroup parent (else it is Docker's shared parent).
pub fn pod_cgroup(pause: &CgroupPaths) -> CgroupPaths {
    CgroupPaths {
        v1: pause
            .v1
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p.parent()?.to_path_buf())))
            .collect(),
        v2: pause
            .v2
            .as_ref()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn u64v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// Walk `dir` without following links: (bytes on disk, entries, finished within `budget`).
pub fn walk_usage(dir: &Path, budget: u64) -> (u64, u64, bool) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if inodes >= budget {
                return (bytes, inodes, false);
            }
            let Ok(md) = e.metadata() else { continue };
            inodes += 1;
            if md.nlink() <= 1 || seen.insert((md.dev(), md.ino())) {
                bytes += md.blocks() * 512;
            }
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes, true)
}

impl StatsState {
    fn mounts(&self) -> Option<&CgroupMounts> {
        self.mounts
            .get_or_init(|| match CgroupMounts::detect() {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!("cannot read cgroup mounts, stats are unavailable: {e}");
                    None
                }
            })
            .as_ref()
    }

    /// The cached process of `id` (kept under `key`); with [`PidCheck::Verify`] only if the pid
    /// still belongs to that container.
    fn cached_proc(&self, key: &str, id: &str, check: PidCheck) -> Option<Arc<Proc>> {
        let p = self.procs.lock().ok()?.get(key).cloned()?;
        if check == PidCheck::Verify && !pid_is_in(p.info.pid, id) {
            return None;
        }
        Some(p)
    }

    /// Forget the cached process under `key` (its cgroup is gone: it is looked up afresh next
    /// time, and its open files are closed).
    fn forget(&self, key: &str) {
        if let Ok(mut procs) = self.procs.lock() {
            procs.remove(key);
        }
    }

    /// Cache `info` under `key` with the cgroup directories of its pid, if that pid (still)
    /// belongs to container `id`; a container's (not a sandbox's) usage files are kept open.
    fn learn(&self, key: String, id: &str, info: ProcInfo) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/cgroup", info.pid)) else {
            return;
        };
        let Some(mounts) = self.mounts() else {
            return;
        };
        if !text.contains(id) {
            return;
        }
        let paths = CgroupPaths::parse(&text, mounts);
        let files = if key.starts_with(POD_KEY) {
            None
        } else {
            cgroup::UsageFiles::open(&paths)
        };
        if let Ok(mut procs) = self.procs.lock() {
            if procs.len() > MAX_ENTRIES {
                procs.clear();
            }
            procs.insert(key, Arc::new(Proc { info, paths, files }));
        }
    }

    /// Rate since the kept sample of `key`, updating it.
    fn rate(&self, key: &str, usage_ns: u64, at_ns: i64) -> Option<u64> {
        let mut cpu = self.cpu.lock().ok()?;
        if cpu.len() > MAX_ENTRIES {
            cpu.clear();
        }
        match cpu.get_mut(key) {
            Some(prev) if at_ns - prev.at_ns < MIN_RATE_WINDOW_NS => prev.last_rate,
            Some(prev) => {
                let r = cgroup::nano_cores(prev.usage_ns, prev.at_ns, usage_ns, at_ns);
                *prev = CpuSample {
                    usage_ns,
                    at_ns,
                    last_rate: r,
                };
                r
            }
            None => {
                cpu.insert(
                    key.to_string(),
                    CpuSample {
                        usage_ns,
                        at_ns,
                        last_rate: None,
                    },
                );
                None
            }
        }
    }

    /// Drop kept state of containers (keys without `prefix`; with `prefix` for sandboxes) whose
    /// ID is not in `live`.
    fn prune(&self, prefix: &str, live: &HashSet<&str>) {
        let keep = |k: &String| match (prefix.is_empty(), k.strip_prefix(POD_KEY)) {
            (true, Some(_)) => true,
            (true, None) => live.contains(k.as_str()),
            (false, Some(id)) => live.contains(id),
            (false, None) => true,
        };
        if let Ok(mut c) = self.cpu.lock() {
            c.retain(|k, _| keep(k));
            shrink_if_sparse(&mut c);
        }
        if let Ok(mut p) = self.procs.lock() {
            p.retain(|k, _| keep(k));
            shrink_if_sparse(&mut p);
        }
    }

    /// Drop everything kept for container or sandbox `id` (it was removed from Docker): its
    /// open cgroup files are closed now rather than at the next list.
    pub(super) fn removed(&self, id: &str) {
        let pod_key = format!("{POD_KEY}{id}");
        if let Ok(mut c) = self.cpu.lock() {
            c.remove(id);
            c.remove(&pod_key);
            shrink_if_sparse(&mut c);
        }
        if let Ok(mut p) = self.procs.lock() {
            p.remove(id);
            p.remove(&pod_key);
            shrink_if_sparse(&mut p);
        }
    }

    pub(crate) fn layer(&self, id: &str) -> Option<LayerUsage> {
        self.layers.lock().ok()?.get(id).cloned()
    }
}

/// The CPU and memory messages for a reading.
fn cpu_memory(usage: &Usage, at_ns: i64, rate: Option<u64>) -> (cri::CpuUsage, cri::MemoryUsage) {
    (
        cri::CpuUsage {
            timestamp: at_ns,
            usage_core_nano_seconds: u64v(usage.cpu_usage_ns),
            usage_nano_cores: rate.and_then(u64v),
        },
        cri::MemoryUsage {
            timestamp: at_ns,
            working_set_bytes: u64v(usage.working_set),
            available_bytes: usage.available.and_then(u64v),
            usage_bytes: u64v(usage.memory_usage),
            rss_bytes: u64v(usage.rss),
            page_faults: u64v(usage.page_faults),
            major_page_faults: u64v(usage.major_page_faults),
        },
    )
}

fn container_attributes(c: &ContainerSummary) -> cri::ContainerAttributes {
    let (labels, annotations) = labels::extract(&c.labels);
    let metadata = super::state::container_metadata(c);
    cri::ContainerAttributes {
        id: c.id.clone(),
        metadata,
        labels,
        annotations,
    }
}

fn sandbox_of(c: &ContainerSummary) -> &str {
    c.labels
        .get(labels::SANDBOX_ID)
        .map(String::as_str)
        .unwrap_or_default()
}

/// Whether a container passes a `ContainerStatsFilter`.
pub fn container_filter_matches(
    c: &ContainerSummary,
    f: Option<&cri::ContainerStatsFilter>,
) -> bool {
    let Some(f) = f else { return true };
    if !id_matches(&c.id, &f.id) || !id_matches(sandbox_of(c), &f.pod_sandbox_id) {
        return false;
    }
    f.label_selector.is_empty()
        || labels::matches_selector(&labels::extract(&c.labels).0, &f.label_selector)
}

impl Runtime {
    fn stats_docker(&self) -> Arc<dyn DockerApi> {
        self.docker.clone()
    }

    /// Process and cgroup paths of each running container in `ids` (kept under `prefix` + ID):
    /// cached, else one inspect each.
    async fn procs_for(
        &self,
        prefix: &str,
        ids: &[&str],
        check: PidCheck,
    ) -> HashMap<String, Arc<Proc>> {
        let st = &self.stats;
        let mut out = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match st.cached_proc(&format!("{prefix}{id}"), id, check) {
                Some(p) => {
                    out.insert(id.to_string(), p);
                }
                None => missing.push(id.to_string()),
            }
        }
        if missing.is_empty() {
            return out;
        }
        let docker = self.stats_docker();
        let found: Vec<(String, Option<ProcInfo>)> = futures_util::stream::iter(missing)
            .map(|id| {
                let docker = docker.clone();
                async move {
                    let info = match docker.inspect_container(&id).await {
                        Ok(i) if i.state.running && i.state.pid > 0 => Some(ProcInfo {
                            pid: i.state.pid as u32,
                            cgroup_parent: i.cgroup_parent,
                            host_network: i.network_mode == "host",
                            started_at: chrono::DateTime::parse_from_rfc3339(&i.state.started_at)
                                .map(|t| u64::try_from(t.timestamp()).unwrap_or(0))
                                .unwrap_or(0),
                            upper_dir: i.upper_dir,
                        }),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::debug!(container_id = %id, "stats: inspect failed: {e}");
                            None
                        }
                    };
                    (id, info)
                }
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;
        for (id, info) in found {
            if let Some(info) = info {
                st.learn(format!("{prefix}{id}"), &id, info);
                if let Some(p) = st.cached_proc(&format!("{prefix}{id}"), &id, PidCheck::PathsOnly)
                {
                    out.insert(id, p);
                }
            }
        }
        out
    }

    /// Start the writable-layer walker once.
    fn ensure_layer_walker(&self) {
        if self.stats.walker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let docker = self.stats_docker();
        let view = self.view.clone();
        let layers = self.stats.layers.clone();
        tokio::spawn(async move {
            let mut no_upper = HashSet::new();
            loop {
                refresh_layers(docker.as_ref(), &view, &layers, &mut no_upper).await;
                tokio::time::sleep(LAYER_REFRESH).await;
            }
        });
    }

    /// Bytes of all CRI containers' writable layers as the background walker last saw them
    /// (starting the walker if it is not running yet).
    pub(super) fn writable_layers_bytes(&self) -> u64 {
        self.ensure_layer_walker();
        self.stats
            .layers
            .lock()
            .map(|l| l.values().map(|u| u.bytes).sum())
            .unwrap_or(0)
    }

    /// Stats of the listed containers `cs` (running ones get CPU/memory; others attributes and
    /// writable layer only).
    async fn stats_of(
        &self,
        cs: &[&ContainerSummary],
    ) -> (Vec<cri::ContainerStats>, HashMap<String, Usage>) {
        self.ensure_layer_walker();
        let running: Vec<&str> = cs
            .iter()
            .filter(|c| c.state == "running")
            .map(|c| c.id.as_str())
            .collect();
        let procs = self.procs_for("", &running, PidCheck::PathsOnly).await;
        let to_read: Vec<Arc<Proc>> = cs
            .iter()
            .filter_map(|c| procs.get(&c.id).cloned())
            .collect();
        let mut taken = read_usages(to_read).await.into_iter();
        let mut readings = HashMap::new();
        let mut out = Vec::with_capacity(cs.len());
        for c in cs {
            let mut s = cri::ContainerStats {
                attributes: Some(container_attributes(c)),
                ..Default::default()
            };
            if procs.contains_key(&c.id)
                && let Some(r) = taken.next()
            {
                if r.files_gone {
                    // The next call looks the container up again.
                    self.stats.forget(&c.id);
                }
                match r.usage {
                    Ok(usage) => {
                        let rate = self.stats.rate(&c.id, usage.cpu_usage_ns, r.at_ns);
                        let (cpu, mem) = cpu_memory(&usage, r.at_ns, rate);
                        s.cpu = Some(cpu);
                        s.memory = Some(mem);
                        readings.insert(c.id.clone(), usage);
                    }
                    Err(e) => {
                        // Most likely the container stopped since the view said it runs.
                        tracing::debug!(container_id = %c.id, "stats: cgroup read failed: {e}");
                    }
                }
            }
            if let Some(l) = self.stats.layer(&c.id) {
                s.writable_layer = Some(cri::FilesystemUsage {
                    timestamp: l.at_ns,
                    fs_id: Some(cri::FilesystemIdentifier {
                        mountpoint: l.upper_dir.clone(),
                    }),
                    used_bytes: u64v(l.bytes),
                    inodes_used: u64v(l.inodes),
                });
            }
            out.push(s);
        }
        (out, readings)
    }

    /// `ContainerStats`.
    #[tracing::instrument(skip_all, fields(container_id = %id))]
    pub async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats> {
        tracing::debug!("ContainerStats");
        if id.is_empty() {
            return Err(Error::InvalidArgument("container_id is required".into()));
        }
        self.host().await?;
        let all = self.list_container_summaries().await?;
        let c = match all.iter().find(|c| c.id == id) {
            Some(c) => c,
            None => {
                let mut m = all.iter().filter(|c| c.id.starts_with(id));
                match (m.next(), m.next()) {
                    (Some(c), None) => c,
                    (None, _) => {
                        return Err(Error::NotFound(format!("container {id:?} not found")));
                    }
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "container ID prefix {id:?} is ambiguous"
                        )));
                    }
                }
            }
        };
        let (mut v, _) = self.stats_of(&[c]).await;
        v.pop()
            .ok_or_else(|| Error::Internal("no stats produced".into()))
    }

    /// `ListContainerStats`.
    pub async fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>> {
        tracing::debug!("ListContainerStats");
        self.host().await?;
        let all = self.list_container_summaries().await?;
        // Only running containers keep a pid, open cgroup files and a CPU sample: a stopped
        // one's cgroup is gone (and kubelet keeps exited containers around for a long time).
        let running: HashSet<&str> = all
            .iter()
            .filter(|c| c.state == "running")
            .map(|c| c.id.as_str())
            .collect();
        self.stats.prune("", &running);
        let selected: Vec<&ContainerSummary> = all
            .iter()
            .filter(|c| container_filter_matches(c, filter))
            .collect();
        Ok(self.stats_of(&selected).await.0)
    }

    /// Stats of one sandbox entry with its containers `cs`.
    async fn sandbox_stats_of(
        &self,
        sb: &SandboxEntry,
        cs: &[&ContainerSummary],
    ) -> cri::PodSandboxStats {
        let (labels, annotations) = sb.labels();
        let mut out = cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sb.id.clone(),
                metadata: Some(sb.metadata()),
                labels,
                annotations,
            }),
            linux: None,
            windows: None,
        };
        let (containers, readings) = self.stats_of(cs).await;
        let mut linux = cri::LinuxPodSandboxStats {
            containers,
            ..Default::default()
        };
        let running = sb.container.as_ref().is_some_and(|c| c.state == "running");
        if running {
            let procs = self
                .procs_for(POD_KEY, &[sb.id.as_str()], PidCheck::Verify)
                .await;
            if let Some(Proc {
                info,
                paths: pause_paths,
                ..
            }) = procs.get(&sb.id).map(|p| p.as_ref())
            {
                let at = now_ns();
                let usage = if info.cgroup_parent.is_empty() {
                    let mut parts: Vec<Usage> = readings.values().copied().collect();
                    if let Ok(u) = cgroup::read_usage(pause_paths) {
                        parts.push(u);
                    }
                    Some(sum_usage(&parts))
                } else {
                    cgroup::read_usage(&pod_cgroup(pause_paths)).ok()
                };
                if let Some(usage) = usage {
                    let rate =
                        self.stats
                            .rate(&format!("{POD_KEY}{}", sb.id), usage.cpu_usage_ns, at);
                    let (cpu, mem) = cpu_memory(&usage, at, rate);
                    linux.cpu = Some(cpu);
                    linux.memory = Some(mem);
                    linux.process = Some(cri::ProcessUsage {
                        timestamp: at,
                        process_count: u64v(usage.pids),
                    });
                }
                if !info.host_network {
                    linux.network = network_usage(info.pid, at);
                }
            }
        }
        out.linux = Some(linux);
        out
    }

    /// `PodSandboxStats`.
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %id))]
    pub async fn pod_sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats> {
        tracing::debug!("PodSandboxStats");
        self.host().await?;
        let sb = self
            .find_sandbox(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?} not found")))?;
        let all = self.list_container_summaries().await?;
        let cs: Vec<&ContainerSummary> = all.iter().filter(|c| sandbox_of(c) == sb.id).collect();
        Ok(self.sandbox_stats_of(&sb, &cs).await)
    }

    /// `ListPodSandboxStats`: the ready sandboxes matching `filter`.
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>> {
        tracing::debug!("ListPodSandboxStats");
        self.host().await?;
        let (sandboxes, all) =
            tokio::try_join!(self.list_sandbox_entries(), self.list_container_summaries())?;
        let live: HashSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
        self.stats.prune(POD_KEY, &live);
        let mut out = Vec::new();
        for sb in &sandboxes {
            if sb.state() != cri::PodSandboxState::SandboxReady {
                continue;
            }
            if let Some(f) = filter
                && (!id_matches(&sb.id, &f.id)
                    || !labels::matches_selector(&sb.labels().0, &f.label_selector))
            {
                continue;
            }
            let cs: Vec<&ContainerSummary> =
                all.iter().filter(|c| sandbox_of(c) == sb.id).collect();
            out.push(self.sandbox_stats_of(sb, &cs).await);
        }
        Ok(out)
    }
}

impl Runtime {
    /// Metrics of every ready sandbox and its running containers (see [`super::metrics`]).
    pub(super) async fn collect_pod_metrics(&self) -> Result<Vec<cri::PodSandboxMetrics>> {
        use super::metrics;
        self.ensure_layer_walker();
        let (sandboxes, all) =
            tokio::try_join!(self.list_sandbox_entries(), self.list_container_summaries())?;
        let ready: Vec<&SandboxEntry> = sandboxes
            .iter()
            .filter(|s| s.state() == cri::PodSandboxState::SandboxReady)
            .collect();
        let ready_ids: Vec<&str> = ready.iter().map(|s| s.id.as_str()).collect();
        let running: Vec<&ContainerSummary> = all
            .iter()
            .filter(|c| c.state == "running" && ready_ids.contains(&sandbox_of(c)))
            .collect();
        let running_ids: Vec<&str> = running.iter().map(|c| c.id.as_str()).collect();
        let procs = self.procs_for("", &running_ids, PidCheck::Verify).await;
        let pod_procs = self.procs_for(POD_KEY, &ready_ids, PidCheck::Verify).await;
        struct Job {
            sandbox: String,
            id: String,
            labels: Vec<String>,
            proc: Arc<Proc>,
        }
        let jobs: Vec<Job> = running
            .iter()
            .filter_map(|c| {
                let proc = procs.get(&c.id)?.clone();
                let name = naming::parse_container_name(&c.name)
                    .map(|m| m.name)
                    .unwrap_or_default();
                Some(Job {
                    sandbox: sandbox_of(c).to_string(),
                    id: c.id.clone(),
                    labels: metrics::base_labels(c, &name),
                    proc,
                })
            })
            .collect();
        let pods: Vec<(String, Vec<String>, Option<u32>)> = ready
            .iter()
            .map(|sb| {
                let labels = sb
                    .container
                    .as_ref()
                    .map(|c| metrics::base_labels(c, "POD"))
                    .unwrap_or_default();
                let pid = pod_procs
                    .get(&sb.id)
                    .filter(|p| !p.info.host_network)
                    .map(|p| p.info.pid);
                (sb.id.clone(), labels, pid)
            })
            .collect();
        let layers = self.stats.layers.clone();
        let out = tokio::task::spawn_blocking(move || {
            let now = now_ns();
            let mut by_pod: HashMap<String, cri::PodSandboxMetrics> = pods
                .into_iter()
                .map(|(id, labels, pid)| {
                    let ifaces = pid
                        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/net/dev")).ok())
                        .map(|t| parse_net_dev(&t))
                        .unwrap_or_default();
                    let m = cri::PodSandboxMetrics {
                        pod_sandbox_id: id.clone(),
                        metrics: metrics::network_metrics(&labels, &ifaces),
                        container_metrics: Vec::new(),
                    };
                    (id, m)
                })
                .collect();
            let mut buf = Vec::new();
            for j in jobs {
                let Ok(usage) = j.proc.read_usage(&mut buf) else {
                    continue;
                };
                let extra = metrics::read_extra(&j.proc.paths);
                let (fds, sockets) = metrics::count_fds(&extra.pids);
                let layer = layers
                    .lock()
                    .ok()
                    .and_then(|l| l.get(&j.id).cloned())
                    .or_else(|| first_layer_walk(&layers, &j.id, &j.proc.info.upper_dir));
                let fs = (!j.proc.info.upper_dir.is_empty())
                    .then(|| metrics::fs_info(Path::new(&j.proc.info.upper_dir)))
                    .flatten();
                let reading = metrics::ContainerReading {
                    usage,
                    extra,
                    fds,
                    sockets,
                    layer,
                    fs,
                    start_time_secs: j.proc.info.started_at,
                };
                if let Some(p) = by_pod.get_mut(&j.sandbox) {
                    p.container_metrics.push(cri::ContainerMetrics {
                        container_id: j.id,
                        metrics: metrics::container_metrics(&j.labels, &reading, now),
                    });
                }
            }
            let mut v: Vec<cri::PodSandboxMetrics> = by_pod.into_values().collect();
            v.sort_by(|a, b| a.pod_sandbox_id.cmp(&b.pod_sandbox_id));
            v
        })
        .await
        .map_err(|e| Error::Internal(format!("metrics collection failed: {e}")))?;
        Ok(out)
    }
}

/// One container's reading and when it was taken.
struct Reading {
    usage: std::io::Result<Usage>,
    at_ns: i64,
    /// The kept files' cgroup is gone (the reading, if any, was taken by path).
    files_gone: bool,
}

/// From this many containers on, [`read_usages`] reads on two threads.
const PARALLEL_READS_FROM: usize = 32;

fn read_one(p: &Proc, buf: &mut Vec<u8>) -> Reading {
    let (usage, files_gone) = match p.read_usage(buf) {
        Ok(u) => (Ok(u), false),
        // Its cgroup is gone: the container stopped, or was restarted behind our back and
        // has a new cgroup under the same name, which a read by path finds.
        Err(_) if p.has_files() => (cgroup::read_usage(&p.paths), true),
        Err(e) => (Err(e), false),
    };
    Reading {
        usage,
        at_ns: now_ns(),
        files_gone,
    }
}

/// Readings of `procs`, in order. Most of a reading is the kernel producing `memory.stat`, so
/// a long list is split in two halves, one read on a blocking-pool thread while this task
/// reads the other.
async fn read_usages(mut procs: Vec<Arc<Proc>>) -> Vec<Reading> {
    let read = |ps: &[Arc<Proc>]| {
        let mut buf = Vec::new();
        ps.iter().map(|p| read_one(p, &mut buf)).collect::<Vec<_>>()
    };
    if procs.len() < PARALLEL_READS_FROM {
        return read(&procs);
    }
    let second = procs.split_off(procs.len() / 2);
    let n = second.len();
    let other = tokio::task::spawn_blocking(move || read(&second));
    let mut out = read(&procs);
    match other.await {
        Ok(rest) => out.extend(rest),
        Err(e) => out.extend((0..n).map(|_| Reading {
            usage: Err(std::io::Error::other(format!("stats reader failed: {e}"))),
            at_ns: now_ns(),
            files_gone: false,
        })),
    }
    out
}

/// Whether process `pid` is in a cgroup of container `id`.
fn pid_is_in(pid: u32, id: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|t| t.contains(id))
}

/// Budget of the one walk the metrics path makes for a container the background walker has
/// not reached yet (a fresh container's layer is small).
const FIRST_WALK_BUDGET: u64 = 10_000;

fn first_layer_walk(
    layers: &Mutex<HashMap<String, LayerUsage>>,
    id: &str,
    upper_dir: &str,
) -> Option<LayerUsage> {
    if upper_dir.is_empty() {
        return None;
    }
    let (bytes, inodes, _) = walk_usage(Path::new(upper_dir), FIRST_WALK_BUDGET);
    let l = LayerUsage {
        upper_dir: upper_dir.to_string(),
        bytes,
        inodes,
        at_ns: now_ns(),
    };
    if let Ok(mut m) = layers.lock() {
        m.entry(id.to_string()).or_insert_with(|| l.clone());
    }
    Some(l)
}

/// Network usage of the netns of `pid`.
fn network_usage(pid: u32, at: i64) -> Option<cri::NetworkUsage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let ifaces: Vec<cri::NetworkInterfaceUsage> = parse_net_dev(&text)
        .into_iter()
        .map(|i| cri::NetworkInterfaceUsage {
            name: i.name,
            rx_bytes: u64v(i.rx_bytes),
            rx_errors: u64v(i.rx_errors),
            tx_bytes: u64v(i.tx_bytes),
            tx_errors: u64v(i.tx_errors),
        })
        .collect();
    let default_interface = ifaces
        .iter()
        .find(|i| i.name == "eth0")
        .or_else(|| ifaces.first())
        .cloned();
    Some(cri::NetworkUsage {
        timestamp: at,
        default_interface,
        interfaces: ifaces,
    })
}

/// A pass of the writable-layer walker pauses for [`WALK_PAUSE`] between two containers once it
/// has visited this many entries since its last pause: the walk is background housekeeping, not
/// a burst of disk reads. Pausing after every container instead cost a wake-up each: with 200
/// small running containers, the whole daemon used 190 ms of CPU a minute, against 140 ms this
/// way (measured here before the log copiers stopped pacing without a wake-up).
const WALK_ENTRIES_PER_PAUSE: u64 = 10_000;
const WALK_PAUSE: Duration = Duration::from_millis(20);

/// The start of a walker pass over the view's containers `ids`: forget every container that has
/// left (in `layers` and `no_upper`), then split the rest into the walks to make (ID and upper
/// directory already known) and the containers to inspect first (never seen). Containers in
/// `no_upper` are in neither.
fn split_pass(
    layers: &mut HashMap<String, LayerUsage>,
    no_upper: &mut HashSet<String>,
    ids: Vec<String>,
) -> (Vec<(String, String)>, Vec<String>) {
    let live: HashSet<&str> = ids.iter().map(String::as_str).collect();
    layers.retain(|k, _| live.contains(k.as_str()));
    shrink_if_sparse(layers);
    no_upper.retain(|k| live.contains(k.as_str()));
    let (mut todo, mut unknown) = (Vec::with_capacity(ids.len()), Vec::new());
    for id in ids {
        if no_upper.contains(&id) {
            continue;
        }
        match layers.get(&id) {
            Some(u) => todo.push((id, u.upper_dir.clone())),
            None => unknown.push(id),
        }
    }
    (todo, unknown)
}

/// One pass of the writable-layer walker over every CRI container the view holds (nothing
/// while it may not be served: the last sizes stay). New containers' upper directories are
/// learned with one inspect each (again next pass for one whose inspect fails; once for one
/// whose storage driver names no upper directory, remembered in `no_upper`); the walks then
/// run on one blocking thread, one container after another (pausing as
/// [`WALK_ENTRIES_PER_PAUSE`] says), each result stored as soon as it is known unless the
/// container has left the view meanwhile. No Docker call when every container is known, and
/// no thread when there is nothing to walk.
async fn refresh_layers(
    docker: &dyn DockerApi,
    view: &Arc<View>,
    layers: &Arc<Mutex<HashMap<String, LayerUsage>>>,
    no_upper: &mut HashSet<String>,
) {
    let Some(ids) = view.ids(TYPE_CONTAINER) else {
        return;
    };
    let (mut todo, unknown) = {
        let Ok(mut l) = layers.lock() else { return };
        split_pass(&mut l, no_upper, ids)
    };
    for id in unknown {
        match docker.inspect_container(&id).await {
            Ok(i) if !i.upper_dir.is_empty() => todo.push((id, i.upper_dir)),
            // A driver without an upper directory (btrfs, zfs, vfs …): nothing to walk, and
            // nothing to ask again while the container lives.
            Ok(_) => {
                no_upper.insert(id);
            }
            Err(e) => tracing::debug!(container_id = %id, "writable layer: {e}"),
        }
    }
    if todo.is_empty() {
        return;
    }
    let layers = layers.clone();
    let view = view.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut since_pause = 0u64;
        for (id, upper) in todo {
            if since_pause >= WALK_ENTRIES_PER_PAUSE {
                std::thread::sleep(WALK_PAUSE);
                since_pause = 0;
            }
            let (bytes, inodes, _complete) = walk_usage(Path::new(&upper), LAYER_WALK_BUDGET);
            since_pause += inodes;
            if !view.contains(&id) {
                // Removed during the pass: its size would count until the next one.
                continue;
            }
            if let Ok(mut l) = layers.lock() {
                l.insert(
                    id,
                    LayerUsage {
                        upper_dir: upper,
                        bytes,
                        inodes,
                        at_ns: now_ns(),
                    },
                );
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::labels::CONTAINER_TYPE;
    use std::path::PathBuf;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0
";

    #[test]
    fn parses_net_dev_without_loopback() {
        let v = parse_net_dev(NET_DEV);
        assert_eq!(
            v,
            vec![IfaceCounters {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_packets: 40,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 3000,
                tx_packets: 30,
                tx_errors: 3,
                tx_dropped: 4,
            }]
        );
    }

    #[test]
    fn pod_cgroup_is_the_parent_directory() {
        let pause = CgroupPaths {
            v1: [(
                "memory".to_string(),
                PathBuf::from("/sys/fs/cgroup/memory/kubepods/podX/abc"),
            )]
            .into(),
            v2: Some(PathBuf::from("/sys/fs/cgroup/unified/kubepods/podX/abc")),
        };
        let p = pod_cgroup(&pause);
        assert_eq!(
            p.v1["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/kubepods/podX")
        );
        assert_eq!(
            p.v2,
            Some(PathBuf::from("/sys/fs/cgroup/unified/kubepods/podX"))
        );
    }

    #[test]
    fn sums_usage_without_available() {
        let a = Usage {
            cpu_usage_ns: 1,
            memory_usage: 10,
            working_set: 5,
            available: Some(3),
            pids: 1,
            ..Default::default()
        };
        let s = sum_usage(&[a, a]);
        assert_eq!(s.cpu_usage_ns, 2);
        assert_eq!(s.memory_usage, 20);
        assert_eq!(s.working_set, 10);
        assert_eq!(s.pids, 2);
        assert_eq!(s.available, None);
    }

    #[test]
    fn cpu_rate_needs_two_samples_and_a_window() {
        let st = StatsState::default();
        assert_eq!(st.rate("c", 0, 0), None, "first sample has no rate");
        assert_eq!(
            st.rate("c", 1_000, 1_000),
            None,
            "too soon: last rate (none yet)"
        );
        assert_eq!(
            st.rate("c", 500_000_000, 1_000_000_000),
            Some(500_000_000),
            "half a core over one second"
        );
        assert_eq!(
            st.rate("c", 600_000_000, 1_100_000_000),
            Some(500_000_000),
            "within the window: the last rate"
        );
        st.prune("", &HashSet::new());
        assert_eq!(st.rate("c", 0, 5_000_000_000), None, "pruned");
    }

    fn summary(id: &str, sandbox: &str, labels: &[(&str, &str)]) -> ContainerSummary {
        let mut l: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert(CONTAINER_TYPE.into(), TYPE_CONTAINER.into());
        l.insert(labels::SANDBOX_ID.into(), sandbox.into());
        ContainerSummary {
            id: id.into(),
            name: "k8s_app_p_ns_u_1".into(),
            labels: l,
            state: "running".into(),
            ..Default::default()
        }
    }

    #[test]
    fn container_filters() {
        let c = summary("abcdef", "sb123", &[("foo", "bar")]);
        let f = |id: &str, sb: &str, sel: &[(&str, &str)]| cri::ContainerStatsFilter {
            id: id.into(),
            pod_sandbox_id: sb.into(),
            label_selector: sel
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(container_filter_matches(&c, None));
        assert!(container_filter_matches(&c, Some(&f("", "", &[]))));
        assert!(container_filter_matches(
            &c,
            Some(&f("abc", "sb1", &[("foo", "bar")]))
        ));
        assert!(!container_filter_matches(&c, Some(&f("abd", "", &[]))));
        assert!(!container_filter_matches(&c, Some(&f("", "sb2", &[]))));
        assert!(!container_filter_matches(
            &c,
            Some(&f("", "", &[("foo", "baz")]))
        ));
        // Internal Docker labels are not CRI labels.
        assert!(!container_filter_matches(
            &c,
            Some(&f("", "", &[(CONTAINER_TYPE, TYPE_CONTAINER)]))
        ));
    }

    /// A cached container process whose v1 cgroup files are under `dir` (`cpuacct.usage` =
    /// `cpu`), with its files kept open if `keep`.
    fn fake_proc(dir: &Path, cpu: u64, keep: bool) -> Arc<Proc> {
        let (mem, acct) = (dir.join("memory"), dir.join("cpuacct"));
        for d in [&mem, &acct] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(mem.join("memory.stat"), "total_inactive_file 10\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "110\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "1000\n").unwrap();
        std::fs::write(acct.join("cpuacct.usage"), format!("{cpu}\n")).unwrap();
        let paths = CgroupPaths {
            v1: [("memory".into(), mem), ("cpuacct".into(), acct)].into(),
            v2: None,
        };
        Arc::new(Proc {
            info: ProcInfo {
                pid: 1,
                cgroup_parent: String::new(),
                host_network: false,
                upper_dir: String::new(),
                started_at: 0,
            },
            files: keep.then(|| cgroup::UsageFiles::open(&paths).unwrap()),
            paths,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_many_containers_in_order_on_two_threads() {
        let d = tempfile::tempdir().unwrap();
        for n in [3, PARALLEL_READS_FROM, 2 * PARALLEL_READS_FROM + 1] {
            let procs: Vec<Arc<Proc>> = (0..n)
                .map(|i| fake_proc(&d.path().join(format!("{n}-{i}")), i as u64, i % 2 == 0))
                .collect();
            let got: Vec<u64> = read_usages(procs)
                .await
                .into_iter()
                .map(|r| {
                    assert!(!r.files_gone);
                    let u = r.usage.unwrap();
                    assert_eq!((u.working_set, u.available), (100, Some(900)));
                    u.cpu_usage_ns
                })
                .collect();
            assert_eq!(got, (0..n as u64).collect::<Vec<_>>(), "{n} containers");
        }
    }

    #[test]
    fn missing_cgroup_files_are_an_error_not_a_reading() {
        let d = tempfile::tempdir().unwrap();
        let p = fake_proc(d.path(), 5, false);
        std::fs::remove_dir_all(d.path().join("cpuacct")).unwrap();
        let r = read_one(&p, &mut Vec::new());
        assert!(r.usage.is_err() && !r.files_gone);
    }

    #[test]
    fn walks_a_directory_within_budget() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        for i in 0..5 {
            std::fs::write(t.path().join("d").join(format!("f{i}")), vec![1u8; 8192]).unwrap();
        }
        let (bytes, inodes, done) = walk_usage(t.path(), 100);
        assert!(done);
        assert_eq!(inodes, 6);
        assert!(bytes >= 5 * 8192, "{bytes}");
        let (_, inodes, done) = walk_usage(t.path(), 3);
        assert!(!done);
        assert_eq!(inodes, 3);
    }

    #[test]
    fn a_pass_walks_known_layers_inspects_new_ones_and_skips_those_without_one() {
        let usage = |dir: &str| LayerUsage {
            upper_dir: dir.into(),
            ..Default::default()
        };
        let mut layers: HashMap<String, LayerUsage> = [
            ("walked".to_string(), usage("/u/walked")),
            ("gone".to_string(), usage("/u/gone")),
        ]
        .into();
        let mut no_upper: HashSet<String> = ["btrfs".to_string(), "gone-too".to_string()].into();
        let ids = ["walked", "btrfs", "new"].map(String::from).to_vec();
        let (todo, unknown) = split_pass(&mut layers, &mut no_upper, ids);
        assert_eq!(todo, vec![("walked".to_string(), "/u/walked".to_string())]);
        // Only the container never seen is inspected; one known to have no upper directory is
        // neither walked nor inspected again.
        assert_eq!(unknown, vec!["new".to_string()]);
        // Containers that left the view are forgotten in both.
        assert_eq!(layers.keys().collect::<Vec<_>>(), vec!["walked"]);
        assert_eq!(no_upper, HashSet::from(["btrfs".to_string()]));
    }
}
