//! ListMetricDescriptors / ListPodSandboxMetrics: the cAdvisor `container_*` metrics kubelet
//! serves on `/metrics/cadvisor`, read from the cgroup filesystem and `/proc`.
//!
//! Labels follow cAdvisor's as kubelet exports them: `container` (CRI name; `POD` for the
//! sandbox), `id`, `image`, `name` (Docker name), `namespace`, `pod`, plus the metric's own
//! (`cpu`, `interface`, `device`, `failure_type`/`scope`, …). CRI carries values as integers, so
//! `_seconds` metrics are whole seconds (as CRI-O reports them). Hugetlb, pressure and ulimit
//! metrics are not provided.

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1 as cri;
use k8s_cri::v1::MetricType;

use super::cgroup::{CgroupPaths, Usage};
use super::stats::{IfaceCounters, LayerUsage};
use super::{Result, Runtime, labels};
use crate::docker::ContainerSummary;

/// The labels every metric starts with.
pub const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

struct Desc {
    name: &'static str,
    help: &'static str,
    extra: &'static [&'static str],
}

const fn d(name: &'static str, help: &'static str, extra: &'static [&'static str]) -> Desc {
    Desc { name, help, extra }
}

const NET: &[&str] = &["interface"];
const DEV: &[&str] = &["device"];

/// Every metric we provide.
const DESCRIPTORS: &[Desc] = &[
    d(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        &["cpu"],
    ),
    d(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        &[],
    ),
    d(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        &[],
    ),
    d(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        &[],
    ),
    d(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        &[],
    ),
    d(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        &[],
    ),
    d(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        &[],
    ),
    d(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        &[],
    ),
    d("container_memory_rss", "Size of RSS in bytes.", &[]),
    d(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        &[],
    ),
    d(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        &[],
    ),
    d(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
        &[],
    ),
    d(
        "container_memory_swap",
        "Container swap usage in bytes.",
        &[],
    ),
    d(
        "container_memory_failcnt",
        "Number of memory usage hits limits.",
        &[],
    ),
    d(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes.",
        &[],
    ),
    d(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        &["failure_type", "scope"],
    ),
    d(
        "container_oom_events_total",
        "Count of out of memory events observed for the container.",
        &[],
    ),
    d(
        "container_processes",
        "Number of processes running inside the container.",
        &[],
    ),
    d(
        "container_threads",
        "Number of threads running inside the container.",
        &[],
    ),
    d(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero.",
        &[],
    ),
    d(
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
        &[],
    ),
    d(
        "container_sockets",
        "Number of open sockets for the container.",
        &[],
    ),
    d(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        &[],
    ),
    d("container_fs_inodes_total", "Number of Inodes.", &[]),
    d(
        "container_fs_inodes_free",
        "Number of available Inodes.",
        &[],
    ),
    d(
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        &[],
    ),
    d(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read.",
        DEV,
    ),
    d(
        "container_fs_reads_total",
        "Cumulative count of reads completed.",
        DEV,
    ),
    d(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written.",
        DEV,
    ),
    d(
        "container_fs_writes_total",
        "Cumulative count of writes completed.",
        DEV,
    ),
    d(
        "container_blkio_device_usage_total",
        "Blkio device bytes usage.",
        &["device", "major", "minor", "operation"],
    ),
    d(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
        NET,
    ),
    d(
        "container_network_receive_packets_total",
        "Cumulative count of packets received.",
        NET,
    ),
    d(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving.",
        NET,
    ),
    d(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
        NET,
    ),
    d(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
        NET,
    ),
    d(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted.",
        NET,
    ),
    d(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting.",
        NET,
    ),
    d(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
        NET,
    ),
    d(
        "container_spec_cpu_period",
        "CPU period of the container.",
        &[],
    ),
    d(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        &[],
    ),
    d(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        &[],
    ),
    d(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        &[],
    ),
    d(
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation limit for the container.",
        &[],
    ),
    d(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
        &[],
    ),
    d(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        &[],
    ),
    d(
        "container_last_seen",
        "Last time a container was seen by the exporter.",
        &[],
    ),
];

fn desc(name: &str) -> Option<&'static Desc> {
    DESCRIPTORS.iter().find(|d| d.name == name)
}

fn is_counter(name: &str) -> bool {
    name.ends_with("_total") || name == "container_memory_failcnt"
}

/// `ListMetricDescriptors`.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|d| cri::MetricDescriptor {
            name: d.name.into(),
            help: d.help.into(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra.iter())
                .map(|s| s.to_string())
                .collect(),
        })
        .collect()
}

/// One block-device counter: (major, minor, `Read`/`Write`, value).
pub type IoEntry = (u64, u64, String, u64);

/// Cgroup readings beyond [`Usage`], for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub user_ns: u64,
    pub system_ns: u64,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_ns: u64,
    pub cache: u64,
    pub mapped_file: u64,
    pub kernel: u64,
    pub swap: u64,
    pub failcnt: u64,
    pub max_usage: u64,
    /// Faults of this cgroup alone (the hierarchy's are in [`Usage`]).
    pub pgfault_local: u64,
    pub pgmajfault_local: u64,
    pub oom_kills: u64,
    pub processes: u64,
    pub threads_max: u64,
    pub spec_cpu_period: u64,
    pub spec_cpu_quota: u64,
    pub spec_cpu_shares: u64,
    pub spec_memory_limit: u64,
    pub spec_memory_reservation: u64,
    pub spec_swap_limit: u64,
    /// (major, minor, operation, bytes) and (…, count) from blkio / io.stat.
    pub io_bytes: Vec<IoEntry>,
    pub io_ops: Vec<IoEntry>,
    /// Pids in the cgroup (for file descriptors and sockets).
    pub pids: Vec<u32>,
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn num(p: &Path) -> u64 {
    parse_limit(read(p).trim())
}

/// A cgroup number; `max`, negative and page-rounded "unlimited" values read as 0.
pub fn parse_limit(s: &str) -> u64 {
    match s.parse::<u64>() {
        Ok(v) if v < (1 << 62) => v,
        _ => 0,
    }
}

fn flat(s: &str) -> HashMap<&str, u64> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// Parse v1 `blkio.throttle.io_service_bytes` style text: `maj:min Op value` lines.
pub fn parse_blkio(s: &str) -> Vec<IoEntry> {
    s.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, v) = (f.next()?, f.next()?, f.next()?);
            let (maj, min) = dev.split_once(':')?;
            Some((
                maj.parse().ok()?,
                min.parse().ok()?,
                op.to_string(),
                v.parse().ok()?,
            ))
        })
        .filter(|(_, _, op, _)| op == "Read" || op == "Write")
        .collect()
}

/// Parse v2 `io.stat`: `maj:min rbytes=… wbytes=… rios=… wios=…` lines.
pub fn parse_io_stat(s: &str) -> (Vec<IoEntry>, Vec<IoEntry>) {
    let (mut bytes, mut ops) = (Vec::new(), Vec::new());
    for l in s.lines() {
        let mut f = l.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "rbytes" => bytes.push((maj, min, "Read".into(), v)),
                "wbytes" => bytes.push((maj, min, "Write".into(), v)),
                "rios" => ops.push((maj, min, "Read".into(), v)),
                "wios" => ops.push((maj, min, "Write".into(), v)),
                _ => {}
            }
        }
    }
    (bytes, ops)
}

fn pids_of(dir: &Path) -> Vec<u32> {
    read(&dir.join("cgroup.procs"))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .take(4096)
        .collect()
}

/// Read the extra cgroup values of `paths`.
pub fn read_extra(paths: &CgroupPaths) -> Extra {
    let mut e = Extra::default();
    if let Some(mem) = paths.v1.get("memory") {
        let stat = read(&mem.join("memory.stat"));
        let s = flat(&stat);
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        e.cache = g("total_cache");
        e.mapped_file = g("total_mapped_file");
        e.swap = g("total_swap");
        e.pgfault_local = g("pgfault");
        e.pgmajfault_local = g("pgmajfault");
        e.kernel = num(&mem.join("memory.kmem.usage_in_bytes"));
        e.failcnt = num(&mem.join("memory.failcnt"));
        e.max_usage = num(&mem.join("memory.max_usage_in_bytes"));
        e.oom_kills = flat(&read(&mem.join("memory.oom_control")))
            .get("oom_kill")
            .copied()
            .unwrap_or(0);
        e.spec_memory_limit = num(&mem.join("memory.limit_in_bytes"));
        e.spec_memory_reservation = num(&mem.join("memory.soft_limit_in_bytes"));
        e.spec_swap_limit = num(&mem.join("memory.memsw.limit_in_bytes"));
        e.pids = pids_of(mem);
        if let Some(acct) = paths.v1.get("cpuacct") {
            let s = flat_owned(&read(&acct.join("cpuacct.stat")));
            // USER_HZ is 100 on Linux: ticks of 10 ms.
            e.user_ns = s.get("user").copied().unwrap_or(0) * 10_000_000;
            e.system_ns = s.get("system").copied().unwrap_or(0) * 10_000_000;
        }
        if let Some(cpu) = paths.v1.get("cpu") {
            let s = flat_owned(&read(&cpu.join("cpu.stat")));
            e.nr_periods = s.get("nr_periods").copied().unwrap_or(0);
            e.nr_throttled = s.get("nr_throttled").copied().unwrap_or(0);
            e.throttled_ns = s.get("throttled_time").copied().unwrap_or(0);
            e.spec_cpu_period = num(&cpu.join("cpu.cfs_period_us"));
            e.spec_cpu_quota = num(&cpu.join("cpu.cfs_quota_us"));
            e.spec_cpu_shares = num(&cpu.join("cpu.shares"));
        }
        if let Some(pids) = paths.v1.get("pids") {
            e.threads_max = num(&pids.join("pids.max"));
        }
        if let Some(blk) = paths.v1.get("blkio") {
            e.io_bytes = parse_blkio(&read(
                &blk.join("blkio.throttle.io_service_bytes_recursive"),
            ));
            e.io_ops = parse_blkio(&read(&blk.join("blkio.throttle.io_serviced_recursive")));
        }
        return e;
    }
    let Some(dir) = &paths.v2 else { return e };
    let stat = read(&dir.join("memory.stat"));
    let s = flat(&stat);
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    e.cache = g("file");
    e.mapped_file = g("file_mapped");
    e.kernel = s
        .get("kernel")
        .copied()
        .unwrap_or_else(|| g("kernel_stack") + g("slab") + g("sock") + g("pagetables"));
    e.pgfault_local = g("pgfault");
    e.pgmajfault_local = g("pgmajfault");
    e.swap = num(&dir.join("memory.swap.current"));
    let events = flat_owned(&read(&dir.join("memory.events")));
    e.failcnt = events.get("max").copied().unwrap_or(0);
    e.oom_kills = events.get("oom_kill").copied().unwrap_or(0);
    e.max_usage = match num(&dir.join("memory.peak")) {
        0 => num(&dir.join("memory.current")),
        v => v,
    };
    let cpu = flat_owned(&read(&dir.join("cpu.stat")));
    e.user_ns = cpu.get("user_usec").copied().unwrap_or(0) * 1000;
    e.system_ns = cpu.get("system_usec").copied().unwrap_or(0) * 1000;
    e.nr_periods = cpu.get("nr_periods").copied().unwrap_or(0);
    e.nr_throttled = cpu.get("nr_throttled").copied().unwrap_or(0);
    e.throttled_ns = cpu.get("throttled_usec").copied().unwrap_or(0) * 1000;
    let max = read(&dir.join("cpu.max"));
    let mut f = max.split_whitespace();
    e.spec_cpu_quota = f.next().map(parse_limit).unwrap_or(0);
    e.spec_cpu_period = f.next().map(parse_limit).unwrap_or(0);
    // cpu.weight (1..10000) back to shares (2..262144), as runc converts the other way.
    let weight = num(&dir.join("cpu.weight"));
    e.spec_cpu_shares = if weight == 0 {
        0
    } else {
        2 + (weight - 1) * 262142 / 9999
    };
    e.spec_memory_limit = num(&dir.join("memory.max"));
    e.spec_memory_reservation = num(&dir.join("memory.low"));
    e.spec_swap_limit = num(&dir.join("memory.swap.max"));
    e.threads_max = num(&dir.join("pids.max"));
    let (b, o) = parse_io_stat(&read(&dir.join("io.stat")));
    e.io_bytes = b;
    e.io_ops = o;
    e.pids = pids_of(dir);
    e
}

fn flat_owned(s: &str) -> HashMap<String, u64> {
    flat(s)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// (file descriptors, sockets) held by `pids`.
pub fn count_fds(pids: &[u32]) -> (u64, u64) {
    let (mut fds, mut sockets) = (0, 0);
    for pid in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            fds += 1;
            if std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            {
                sockets += 1;
            }
        }
    }
    (fds, sockets)
}

/// Filesystem facts of the filesystem holding a writable layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo {
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub limit_bytes: u64,
}

/// statvfs of `dir`.
pub fn fs_info(dir: &Path) -> Option<FsInfo> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(FsInfo {
        inodes_total: s.f_files,
        inodes_free: s.f_ffree,
        limit_bytes: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

/// Everything known about one container for its metrics.
#[derive(Debug, Clone, Default)]
pub struct ContainerReading {
    pub usage: Usage,
    pub extra: Extra,
    pub fds: u64,
    pub sockets: u64,
    pub layer: Option<LayerUsage>,
    pub fs: Option<FsInfo>,
    pub start_time_secs: u64,
}

struct Out<'a> {
    labels: &'a [String],
    timestamp: i64,
    metrics: Vec<cri::Metric>,
}

impl Out<'_> {
    fn push(&mut self, name: &str, extra: &[&str], value: u64) {
        debug_assert!(desc(name).is_some_and(|d| d.extra.len() == extra.len()));
        let mut label_values = self.labels.to_vec();
        label_values.extend(extra.iter().map(|s| s.to_string()));
        self.metrics.push(cri::Metric {
            name: name.into(),
            timestamp: self.timestamp,
            metric_type: if is_counter(name) {
                MetricType::Counter
            } else {
                MetricType::Gauge
            } as i32,
            label_values,
            value: Some(cri::UInt64Value { value }),
        });
    }
}

const NS: u64 = 1_000_000_000;

/// The metrics of one container (everything but network).
pub fn container_metrics(labels: &[String], r: &ContainerReading, now_ns: i64) -> Vec<cri::Metric> {
    let mut o = Out {
        labels,
        timestamp: 0,
        metrics: Vec::new(),
    };
    let (u, e) = (&r.usage, &r.extra);
    o.push(
        "container_cpu_usage_seconds_total",
        &["total"],
        u.cpu_usage_ns / NS,
    );
    o.push("container_cpu_user_seconds_total", &[], e.user_ns / NS);
    o.push("container_cpu_system_seconds_total", &[], e.system_ns / NS);
    o.push("container_cpu_cfs_periods_total", &[], e.nr_periods);
    o.push(
        "container_cpu_cfs_throttled_periods_total",
        &[],
        e.nr_throttled,
    );
    o.push(
        "container_cpu_cfs_throttled_seconds_total",
        &[],
        e.throttled_ns / NS,
    );
    o.push("container_memory_usage_bytes", &[], u.memory_usage);
    o.push("container_memory_working_set_bytes", &[], u.working_set);
    o.push("container_memory_rss", &[], u.rss);
    o.push("container_memory_cache", &[], e.cache);
    o.push("container_memory_mapped_file", &[], e.mapped_file);
    o.push("container_memory_kernel_usage", &[], e.kernel);
    o.push("container_memory_swap", &[], e.swap);
    o.push("container_memory_failcnt", &[], e.failcnt);
    o.push("container_memory_max_usage_bytes", &[], e.max_usage);
    let f = "container_memory_failures_total";
    o.push(f, &["pgfault", "container"], e.pgfault_local);
    o.push(f, &["pgmajfault", "container"], e.pgmajfault_local);
    o.push(f, &["pgfault", "hierarchy"], u.page_faults);
    o.push(f, &["pgmajfault", "hierarchy"], u.major_page_faults);
    o.push("container_oom_events_total", &[], e.oom_kills);
    o.push("container_processes", &[], e.pids.len() as u64);
    o.push("container_threads", &[], u.pids);
    o.push("container_threads_max", &[], e.threads_max);
    o.push("container_file_descriptors", &[], r.fds);
    o.push("container_sockets", &[], r.sockets);
    if let Some(l) = &r.layer {
        o.push("container_fs_usage_bytes", &[], l.bytes);
    }
    if let Some(fs) = &r.fs {
        o.push("container_fs_inodes_total", &[], fs.inodes_total);
        o.push("container_fs_inodes_free", &[], fs.inodes_free);
        o.push("container_fs_limit_bytes", &[], fs.limit_bytes);
    }
    for (maj, min, op, v) in &e.io_bytes {
        let dev = format!("{maj}:{min}");
        let name = if op == "Read" {
            "container_fs_reads_bytes_total"
        } else {
            "container_fs_writes_bytes_total"
        };
        o.push(name, &[dev.as_str()], *v);
        let (maj, min) = (maj.to_string(), min.to_string());
        o.push(
            "container_blkio_device_usage_total",
            &[dev.as_str(), maj.as_str(), min.as_str(), op.as_str()],
            *v,
        );
    }
    for (maj, min, op, v) in &e.io_ops {
        let dev = format!("{maj}:{min}");
        let name = if op == "Read" {
            "container_fs_reads_total"
        } else {
            "container_fs_writes_total"
        };
        o.push(name, &[dev.as_str()], *v);
    }
    o.push("container_spec_cpu_period", &[], e.spec_cpu_period);
    o.push("container_spec_cpu_quota", &[], e.spec_cpu_quota);
    o.push("container_spec_cpu_shares", &[], e.spec_cpu_shares);
    o.push(
        "container_spec_memory_limit_bytes",
        &[],
        e.spec_memory_limit,
    );
    o.push(
        "container_spec_memory_reservation_limit_bytes",
        &[],
        e.spec_memory_reservation,
    );
    o.push(
        "container_spec_memory_swap_limit_bytes",
        &[],
        e.spec_swap_limit,
    );
    o.push("container_start_time_seconds", &[], r.start_time_secs);
    o.push(
        "container_last_seen",
        &[],
        u64::try_from(now_ns).unwrap_or(0) / NS,
    );
    o.metrics
}

/// Network metrics of a pod's interfaces.
pub fn network_metrics(labels: &[String], ifaces: &[IfaceCounters]) -> Vec<cri::Metric> {
    let mut o = Out {
        labels,
        timestamp: 0,
        metrics: Vec::new(),
    };
    for i in ifaces {
        let n = [i.name.as_str()];
        o.push("container_network_receive_bytes_total", &n, i.rx_bytes);
        o.push("container_network_receive_packets_total", &n, i.rx_packets);
        o.push(
            "container_network_receive_packets_dropped_total",
            &n,
            i.rx_dropped,
        );
        o.push("container_network_receive_errors_total", &n, i.rx_errors);
        o.push("container_network_transmit_bytes_total", &n, i.tx_bytes);
        o.push("container_network_transmit_packets_total", &n, i.tx_packets);
        o.push(
            "container_network_transmit_packets_dropped_total",
            &n,
            i.tx_dropped,
        );
        o.push("container_network_transmit_errors_total", &n, i.tx_errors);
    }
    o.metrics
}

/// The base label values of a container (`container_name` is `POD` for a sandbox).
pub fn base_labels(c: &ContainerSummary, container_name: &str) -> Vec<String> {
    let get = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
    vec![
        container_name.to_string(),
        c.id.clone(),
        c.image.clone(),
        c.name.clone(),
        get(labels::POD_NAMESPACE),
        get(labels::POD_NAME),
    ]
}

impl Runtime {
    /// `ListMetricDescriptors`.
    pub fn list_metric_descriptors(&self) -> Vec<cri::MetricDescriptor> {
        tracing::debug!("ListMetricDescriptors");
        descriptors()
    }

    /// `ListPodSandboxMetrics`: every ready sandbox with its running containers.
    pub async fn list_pod_sandbox_metrics(&self) -> Result<Vec<cri::PodSandboxMetrics>> {
        tracing::debug!("ListPodSandboxMetrics");
        self.host().await?;
        self.collect_pod_metrics().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_have_help_and_unique_names() {
        let ds = descriptors();
        let mut names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ds.len());
        for d in &ds {
            assert!(!d.help.is_empty(), "{}", d.name);
            assert_eq!(&d.label_keys[..6], &BASE_LABELS.map(String::from)[..]);
        }
    }

    #[test]
    fn every_descriptor_gets_values_with_matching_labels() {
        let labels: Vec<String> = ["app", "id1", "busybox", "k8s_app", "ns", "pod"]
            .map(String::from)
            .to_vec();
        let r = ContainerReading {
            usage: Usage {
                cpu_usage_ns: 3_500_000_000,
                ..Default::default()
            },
            extra: Extra {
                io_bytes: vec![(8, 0, "Read".into(), 10), (8, 0, "Write".into(), 20)],
                io_ops: vec![(8, 0, "Read".into(), 1), (8, 0, "Write".into(), 2)],
                pids: vec![1, 2],
                ..Default::default()
            },
            layer: Some(LayerUsage::default()),
            fs: Some(FsInfo::default()),
            ..Default::default()
        };
        let mut m = container_metrics(&labels, &r, 7_000_000_000);
        m.extend(network_metrics(
            &labels,
            &[IfaceCounters {
                name: "eth0".into(),
                ..Default::default()
            }],
        ));
        let keys: HashMap<String, usize> = descriptors()
            .into_iter()
            .map(|d| (d.name, d.label_keys.len()))
            .collect();
        for d in DESCRIPTORS {
            assert!(
                m.iter().any(|x| x.name == d.name),
                "{} has no value",
                d.name
            );
        }
        for x in &m {
            assert_eq!(x.label_values.len(), keys[&x.name], "{}", x.name);
        }
        let cpu = m
            .iter()
            .find(|x| x.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(cpu.value.as_ref().unwrap().value, 3);
        assert_eq!(cpu.metric_type, MetricType::Counter as i32);
        assert_eq!(cpu.label_values[6], "total");
        let p = m.iter().find(|x| x.name == "container_processes").unwrap();
        assert_eq!(p.value.as_ref().unwrap().value, 2);
        assert_eq!(p.metric_type, MetricType::Gauge as i32);
    }

    #[test]
    fn parses_io_files_and_limits() {
        assert_eq!(
            parse_blkio("8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\nTotal 600\n"),
            vec![(8, 0, "Read".into(), 100), (8, 0, "Write".into(), 200)]
        );
        let (b, o) = parse_io_stat("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0\n");
        assert_eq!(b, vec![(8, 0, "Read".into(), 1), (8, 0, "Write".into(), 2)]);
        assert_eq!(o, vec![(8, 0, "Read".into(), 3), (8, 0, "Write".into(), 4)]);
        assert_eq!(parse_limit("max"), 0);
        assert_eq!(parse_limit("-1"), 0);
        assert_eq!(parse_limit("9223372036854771712"), 0);
        assert_eq!(parse_limit("1024"), 1024);
    }

    #[test]
    fn reads_v1_extra_values() {
        let t = tempfile::tempdir().unwrap();
        let (mem, cpu, acct) = (t.path().join("m"), t.path().join("c"), t.path().join("a"));
        for d in [&mem, &cpu, &acct] {
            std::fs::create_dir(d).unwrap();
        }
        let w = |d: &Path, f: &str, s: &str| std::fs::write(d.join(f), s).unwrap();
        w(
            &mem,
            "memory.stat",
            "pgfault 5\ntotal_cache 100\ntotal_mapped_file 7\n",
        );
        w(&mem, "memory.failcnt", "2\n");
        w(
            &mem,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        w(&mem, "memory.limit_in_bytes", "67108864\n");
        w(&mem, "cgroup.procs", "10\n11\n");
        w(&acct, "cpuacct.stat", "user 150\nsystem 20\n");
        w(
            &cpu,
            "cpu.stat",
            "nr_periods 9\nnr_throttled 4\nthrottled_time 3000000000\n",
        );
        w(&cpu, "cpu.cfs_quota_us", "20000\n");
        let e = read_extra(&CgroupPaths {
            v1: [
                ("memory".to_string(), mem),
                ("cpu".to_string(), cpu),
                ("cpuacct".to_string(), acct),
            ]
            .into(),
            v2: None,
        });
        assert_eq!(e.cache, 100);
        assert_eq!(e.mapped_file, 7);
        assert_eq!(e.pgfault_local, 5);
        assert_eq!(e.failcnt, 2);
        assert_eq!(e.oom_kills, 1);
        assert_eq!(e.spec_memory_limit, 64 << 20);
        assert_eq!(e.pids, vec![10, 11]);
        assert_eq!(e.user_ns, 1_500_000_000);
        assert_eq!(e.system_ns, 200_000_000);
        assert_eq!(
            (e.nr_periods, e.nr_throttled, e.throttled_ns),
            (9, 4, 3_000_000_000)
        );
        assert_eq!(e.spec_cpu_quota, 20000);
    }
}
