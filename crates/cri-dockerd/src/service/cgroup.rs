//! Container resource usage read straight from the cgroup filesystem (v1 and v2, any cgroup
//! driver): the cheap path for ContainerStats, instead of one Docker stats call per container.
//!
//! A process's cgroups are found from `/proc/<pid>/cgroup` and the hierarchies' mount points from
//! `/proc/self/mountinfo`, so the cgroupfs and systemd drivers need no special casing.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// Where each cgroup hierarchy is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// v1 controller name (`memory`, `cpuacct`, `pids`, …) -> mount point.
    pub v1: HashMap<String, PathBuf>,
    /// The unified (v2) hierarchy, if mounted.
    pub v2: Option<PathBuf>,
}

impl CgroupMounts {
    /// Read `/proc/self/mountinfo`.
    pub fn detect() -> io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }

    /// Parse mountinfo text.
    pub fn parse(mountinfo: &str) -> Self {
        let mut m = CgroupMounts::default();
        for line in mountinfo.lines() {
            // <id> <parent> <maj:min> <root> <mount point> <options> [optional…] - <fstype> <source> <super options>
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (Some(mount_point), Some(fstype)) = (pre.get(4), post.first()) else {
                continue;
            };
            match *fstype {
                "cgroup2" => {
                    m.v2.get_or_insert_with(|| PathBuf::from(unescape(mount_point)));
                }
                "cgroup" => {
                    let opts = post.get(2).copied().unwrap_or_default();
                    for opt in opts.split(',') {
                        if matches!(
                            opt,
                            "cpu" | "cpuacct" | "memory" | "pids" | "cpuset" | "blkio"
                        ) {
                            m.v1.entry(opt.to_string())
                                .or_insert_with(|| PathBuf::from(unescape(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        m
    }

    /// True when the host uses the unified hierarchy only.
    pub fn is_v2_only(&self) -> bool {
        self.v1.is_empty() && self.v2.is_some()
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The cgroup directories of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupPaths {
    /// v1 controller -> directory.
    pub v1: HashMap<String, PathBuf>,
    /// v2 directory.
    pub v2: Option<PathBuf>,
}

impl CgroupPaths {
    /// The cgroups of process `pid`.
    pub fn for_pid(pid: u32, mounts: &CgroupMounts) -> io::Result<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        Ok(Self::parse(&text, mounts))
    }

    /// Parse `/proc/<pid>/cgroup` text against `mounts`.
    pub fn parse(proc_cgroup: &str, mounts: &CgroupMounts) -> Self {
        let mut p = CgroupPaths::default();
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if controllers.is_empty() {
                if let Some(root) = &mounts.v2 {
                    p.v2 = Some(root.join(rel));
                }
                continue;
            }
            for c in controllers.split(',') {
                if let Some(root) = mounts.v1.get(c) {
                    p.v1.insert(c.to_string(), root.join(rel));
                }
            }
        }
        p
    }
}

/// One reading of a cgroup's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory usage in bytes (including page cache).
    pub memory_usage: u64,
    /// usage - inactive_file, as kubelet and cAdvisor define the working set.
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// limit - working set, when a limit is set.
    pub available: Option<u64>,
    /// Processes/threads in the cgroup.
    pub pids: u64,
}

/// Limits above this are "unlimited" (v1 reports a page-rounded i64::MAX).
const UNLIMITED: u64 = 1 << 62;

/// Read the usage of the cgroups in `paths`. v2 is preferred when the memory controller is not
/// on a v1 hierarchy.
pub fn read_usage(paths: &CgroupPaths) -> io::Result<Usage> {
    if let (Some(mem), Some(cpu)) = (paths.v1.get("memory"), paths.v1.get("cpuacct")) {
        let stat = parse_flat_keyed(&std::fs::read_to_string(mem.join("memory.stat"))?);
        let usage = read_u64(&mem.join("memory.usage_in_bytes"))?;
        let limit = read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
        let inactive_file = stat.get("total_inactive_file").copied().unwrap_or(0);
        let working_set = usage.saturating_sub(inactive_file);
        let pids = match paths.v1.get("pids") {
            Some(p) => read_u64(&p.join("pids.current")).unwrap_or(0),
            None => 0,
        };
        return Ok(Usage {
            cpu_usage_ns: read_u64(&cpu.join("cpuacct.usage"))?,
            memory_usage: usage,
            working_set,
            rss: stat.get("total_rss").copied().unwrap_or(0),
            page_faults: stat.get("total_pgfault").copied().unwrap_or(0),
            major_page_faults: stat.get("total_pgmajfault").copied().unwrap_or(0),
            available: (limit < UNLIMITED).then(|| limit.saturating_sub(working_set)),
            pids,
        });
    }
    let Some(dir) = &paths.v2 else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no memory/cpu cgroup for the process",
        ));
    };
    let cpu = parse_flat_keyed(&std::fs::read_to_string(dir.join("cpu.stat"))?);
    let stat = parse_flat_keyed(&std::fs::read_to_string(dir.join("memory.stat"))?);
    let usage = read_u64(&dir.join("memory.current"))?;
    let limit = std::fs::read_to_string(dir.join("memory.max"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let inactive_file = stat.get("inactive_file").copied().unwrap_or(0);
    let working_set = usage.saturating_sub(inactive_file);
    Ok(Usage {
        cpu_usage_ns: cpu
            .get("usage_usec")
            .copied()
            .unwrap_or(0)
            .saturating_mul(1000),
        memory_usage: usage,
        working_set,
        rss: stat.get("anon").copied().unwrap_or(0),
        page_faults: stat.get("pgfault").copied().unwrap_or(0),
        major_page_faults: stat.get("pgmajfault").copied().unwrap_or(0),
        available: limit.map(|l| l.saturating_sub(working_set)),
        pids: read_u64(&dir.join("pids.current")).unwrap_or(0),
    })
}

/// CPU use between two readings, in nanocores (1e9 = one full core).
pub fn nano_cores(
    prev_usage_ns: u64,
    prev_at_ns: i64,
    cur_usage_ns: u64,
    cur_at_ns: i64,
) -> Option<u64> {
    let elapsed = cur_at_ns.checked_sub(prev_at_ns).filter(|e| *e > 0)? as u128;
    let used = cur_usage_ns.checked_sub(prev_usage_ns)? as u128;
    Some((used * 1_000_000_000 / elapsed) as u64)
}

fn read_u64(p: &Path) -> io::Result<u64> {
    let s = std::fs::read_to_string(p)?;
    s.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))
}

fn parse_flat_keyed(s: &str) -> HashMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";

    #[test]
    fn parses_v1_and_hybrid_mounts() {
        let m = CgroupMounts::parse(MOUNTINFO_V1);
        assert_eq!(m.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m.v1["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert!(!m.is_v2_only());
        let v2 =
            CgroupMounts::parse("40 1 0:33 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert!(v2.is_v2_only());
    }

    #[test]
    fn parses_proc_cgroup_for_both_drivers() {
        let m = CgroupMounts::parse(MOUNTINFO_V1);
        let p = CgroupPaths::parse(
            "4:memory:/kubepods.slice/kubepods-pod1.slice/docker-abc.scope\n3:cpu,cpuacct:/docker/abc\n0::/docker/abc\n",
            &m,
        );
        assert_eq!(
            p.v1["memory"],
            PathBuf::from(
                "/sys/fs/cgroup/memory/kubepods.slice/kubepods-pod1.slice/docker-abc.scope"
            )
        );
        assert_eq!(
            p.v1["cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/docker/abc")
        );
        assert_eq!(
            p.v2,
            Some(PathBuf::from("/sys/fs/cgroup/unified/docker/abc"))
        );
    }

    fn write(dir: &Path, name: &str, content: &str) {
        std::fs::write(dir.join(name), content).unwrap();
    }

    #[test]
    fn reads_v1_usage() {
        let t = tempfile::tempdir().unwrap();
        let (mem, cpu, pids) = (t.path().join("m"), t.path().join("c"), t.path().join("p"));
        for d in [&mem, &cpu, &pids] {
            std::fs::create_dir(d).unwrap();
        }
        write(&mem, "memory.usage_in_bytes", "1000000\n");
        write(&mem, "memory.limit_in_bytes", "4000000\n");
        write(
            &mem,
            "memory.stat",
            "cache 5\ntotal_inactive_file 200000\ntotal_rss 700000\ntotal_pgfault 42\ntotal_pgmajfault 3\n",
        );
        write(&cpu, "cpuacct.usage", "123456789\n");
        write(&pids, "pids.current", "7\n");
        let paths = CgroupPaths {
            v1: [
                ("memory".into(), mem),
                ("cpuacct".into(), cpu),
                ("pids".into(), pids),
            ]
            .into(),
            v2: None,
        };
        let u = read_usage(&paths).unwrap();
        assert_eq!(
            u,
            Usage {
                cpu_usage_ns: 123456789,
                memory_usage: 1000000,
                working_set: 800000,
                rss: 700000,
                page_faults: 42,
                major_page_faults: 3,
                available: Some(3200000),
                pids: 7,
            }
        );
    }

    #[test]
    fn reads_v2_usage_and_unlimited_memory() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(
            d,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(d, "memory.current", "5000\n");
        write(d, "memory.max", "max\n");
        write(
            d,
            "memory.stat",
            "anon 3000\ninactive_file 1000\npgfault 9\npgmajfault 1\n",
        );
        write(d, "pids.current", "2\n");
        let u = read_usage(&CgroupPaths {
            v1: HashMap::new(),
            v2: Some(d.to_path_buf()),
        })
        .unwrap();
        assert_eq!(u.cpu_usage_ns, 2_500_000);
        assert_eq!(u.working_set, 4000);
        assert_eq!(u.available, None);
        assert_eq!(u.pids, 2);
    }

    #[test]
    fn computes_nano_cores() {
        assert_eq!(
            nano_cores(0, 0, 1_000_000_000, 1_000_000_000),
            Some(1_000_000_000)
        );
        assert_eq!(nano_cores(100, 10, 600, 1010), Some(500_000_000));
        assert_eq!(nano_cores(100, 10, 50, 20), None, "counter went backwards");
        assert_eq!(nano_cores(100, 10, 200, 10), None, "no time passed");
    }

    #[test]
    fn reads_this_hosts_own_cgroups() {
        // A real reading of our own process: the files exist and parse on this host.
        let mounts = CgroupMounts::detect().unwrap();
        let paths = CgroupPaths::for_pid(std::process::id(), &mounts).unwrap();
        let u = read_usage(&paths).unwrap();
        assert!(u.cpu_usage_ns > 0);
        assert!(u.memory_usage > 0);
    }
}
