//! Container resource usage read straight from the cgroup filesystem (v1 and v2, any cgroup
//! driver): the cheap path for ContainerStats, instead of one Docker stats call per container.
//!
//! A process's cgroups are found from `/proc/<pid>/cgroup` and the hierarchies' mount points from
//! `/proc/self/mountinfo`, so the cgroupfs and systemd drivers need no special casing.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

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
        let mut buf = Vec::with_capacity(READ_CAPACITY);
        let stat = stat_values(
            read_small(&mem.join("memory.stat"), &mut buf)?,
            V1_STAT_KEYS,
        );
        let usage = read_u64_with(&mem.join("memory.usage_in_bytes"), &mut buf)?;
        let limit = read_u64_with(&mem.join("memory.limit_in_bytes"), &mut buf).unwrap_or(u64::MAX);
        let pids = match paths.v1.get("pids") {
            Some(p) => read_u64_with(&p.join("pids.current"), &mut buf).unwrap_or(0),
            None => 0,
        };
        let cpu_usage_ns = read_u64_with(&cpu.join("cpuacct.usage"), &mut buf)?;
        return Ok(v1_usage(stat, usage, limit, cpu_usage_ns, pids));
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

/// The v1 keys [`read_usage`] and [`UsageFiles`] take from `memory.stat`, in [`v1_usage`]'s
/// order.
const V1_STAT_KEYS: [&str; 4] = [
    "total_inactive_file",
    "total_rss",
    "total_pgfault",
    "total_pgmajfault",
];

fn v1_usage(stat: [u64; 4], usage: u64, limit: u64, cpu_usage_ns: u64, pids: u64) -> Usage {
    let [inactive_file, rss, page_faults, major_page_faults] = stat;
    let working_set = usage.saturating_sub(inactive_file);
    Usage {
        cpu_usage_ns,
        memory_usage: usage,
        working_set,
        rss,
        page_faults,
        major_page_faults,
        available: (limit < UNLIMITED).then(|| limit.saturating_sub(working_set)),
        pids,
    }
}

/// Open files (see [`UsageFiles`]) kept by the whole process, and the most it may keep.
static OPEN_USAGE_FILES: AtomicUsize = AtomicUsize::new(0);

/// How many cgroup files may be kept open: half the soft `RLIMIT_NOFILE` (the daemon raises it
/// to the hard limit at start-up), so sockets and everything else keep the other half.
fn open_files_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        usize::try_from(soft / 2).unwrap_or(usize::MAX).min(65_536)
    })
}

/// A v1 container cgroup's usage files kept open and re-read in place (`pread` at offset 0): a
/// cgroup file's content is made afresh on every read from the start, and one read call is
/// all a reading takes, where opening by path walks five directory levels of cgroupfs each
/// time (about 12 µs per file here, the larger part of a reading). The files stay valid for
/// the cgroup's life; once it is removed, reads fail with `ENODEV` and the caller drops them.
/// Open files do not keep a cgroup from being removed.
#[derive(Debug)]
pub struct UsageFiles {
    stat: std::fs::File,
    usage: std::fs::File,
    limit: std::fs::File,
    cpu: std::fs::File,
    pids: Option<std::fs::File>,
    count: usize,
}

impl UsageFiles {
    /// Open the usage files of `paths` (v1 only; `None` on v2, where [`read_usage`] is used),
    /// unless that would go over the process's budget of kept files.
    pub fn open(paths: &CgroupPaths) -> Option<Self> {
        let (mem, cpu) = (paths.v1.get("memory")?, paths.v1.get("cpuacct")?);
        let open = |p: PathBuf| std::fs::File::open(p).ok();
        // A root cgroup has no pids.current: counted as 0, as by read_usage.
        let pids = paths
            .v1
            .get("pids")
            .and_then(|d| open(d.join("pids.current")));
        let files = UsageFiles {
            stat: open(mem.join("memory.stat"))?,
            usage: open(mem.join("memory.usage_in_bytes"))?,
            limit: open(mem.join("memory.limit_in_bytes"))?,
            cpu: open(cpu.join("cpuacct.usage"))?,
            count: 4 + usize::from(pids.is_some()),
            pids,
        };
        // Counted from here on (given back on drop, also when over the budget just below).
        let total = OPEN_USAGE_FILES.fetch_add(files.count, Ordering::Relaxed) + files.count;
        (total <= open_files_budget()).then_some(files)
    }

    /// One reading, with `buf` as scratch space.
    pub fn read(&self, buf: &mut Vec<u8>) -> io::Result<Usage> {
        let stat = stat_values(pread_all(&self.stat, buf)?, V1_STAT_KEYS);
        let usage = pread_u64(&self.usage, buf)?;
        let limit = pread_u64(&self.limit, buf).unwrap_or(u64::MAX);
        let pids = match &self.pids {
            Some(f) => pread_u64(f, buf).unwrap_or(0),
            None => 0,
        };
        let cpu = pread_u64(&self.cpu, buf)?;
        Ok(v1_usage(stat, usage, limit, cpu, pids))
    }
}

impl Drop for UsageFiles {
    fn drop(&mut self) {
        OPEN_USAGE_FILES.fetch_sub(self.count, Ordering::Relaxed);
    }
}

/// The whole content of `f` from offset 0, in one read when it fits in `buf` (a cgroup file is
/// produced whole on a read from the start; reading on from an offset would produce it again).
fn pread_all<'a>(f: &std::fs::File, buf: &'a mut Vec<u8>) -> io::Result<&'a str> {
    use std::os::unix::fs::FileExt;
    if buf.capacity() < READ_CAPACITY {
        buf.reserve(READ_CAPACITY - buf.len());
    }
    loop {
        buf.clear();
        buf.resize(buf.capacity(), 0);
        let n = f.read_at(buf, 0)?;
        if n < buf.len() {
            buf.truncate(n);
            break;
        }
        // Filled the buffer: the content may be longer. Read again with more room.
        let more = buf.len();
        buf.reserve(more);
    }
    std::str::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn pread_u64(f: &std::fs::File, buf: &mut Vec<u8>) -> io::Result<u64> {
    pread_all(f, buf)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
    read_u64_with(p, &mut Vec::with_capacity(READ_CAPACITY))
}

/// Room for one cgroup file: v1 `memory.stat` is about 1.5 KiB, v2's about 3 KiB.
const READ_CAPACITY: usize = 8 * 1024;

/// Read the small (pseudo-)file `p` into `buf` (cleared first) with plain reads: no size query
/// and no seek, which a cgroup file cannot answer usefully anyway.
fn read_small<'a>(p: &Path, buf: &'a mut Vec<u8>) -> io::Result<&'a str> {
    use std::io::Read;
    buf.clear();
    let mut f = std::fs::File::open(p)?;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(READ_CAPACITY);
        }
        let start = buf.len();
        let room = buf.capacity() - start;
        buf.resize(start + room, 0);
        match f.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                break;
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => return Err(e),
        }
    }
    std::str::from_utf8(buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))
}

fn read_u64_with(p: &Path, buf: &mut Vec<u8>) -> io::Result<u64> {
    read_small(p, buf)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))
}

/// The values of `keys` in flat-keyed text (`key value` lines), 0 where a key is missing.
fn stat_values<const N: usize>(text: &str, keys: [&str; N]) -> [u64; N] {
    let mut out = [0; N];
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        if let Some(i) = keys.iter().position(|key| *key == k) {
            out[i] = v.trim().parse().unwrap_or(0);
        }
    }
    out
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
        let expected = Usage {
            cpu_usage_ns: 123456789,
            memory_usage: 1000000,
            working_set: 800000,
            rss: 700000,
            page_faults: 42,
            major_page_faults: 3,
            available: Some(3200000),
            pids: 7,
        };
        assert_eq!(u, expected);

        // The same through files kept open, which see the content as it is at each read.
        let before = OPEN_USAGE_FILES.load(Ordering::Relaxed);
        let files = UsageFiles::open(&paths).unwrap();
        assert_eq!(OPEN_USAGE_FILES.load(Ordering::Relaxed), before + 5);
        let mut buf = Vec::new();
        assert_eq!(files.read(&mut buf).unwrap(), expected);
        write(&paths.v1["cpuacct"], "cpuacct.usage", "223456789\n");
        write(
            &paths.v1["memory"],
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let again = files.read(&mut buf).unwrap();
        assert_eq!(again.cpu_usage_ns, 223456789);
        assert_eq!(again.available, None, "unlimited");
        drop(files);
        assert_eq!(OPEN_USAGE_FILES.load(Ordering::Relaxed), before);
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
    fn stat_values_picks_keys_in_order_and_zero_for_missing() {
        let text = "cache 5\ntotal_rss 7\ntotal_cache 9\nbroken\ntotal_pgfault x\n";
        assert_eq!(
            stat_values(
                text,
                ["total_cache", "total_rss", "absent", "total_pgfault"]
            ),
            [9, 7, 0, 0]
        );
    }

    #[test]
    fn read_small_reads_files_beyond_its_first_capacity() {
        let d = tempfile::tempdir().unwrap();
        let long = "k 1\n".repeat(READ_CAPACITY); // 4x the first allocation
        write(d.path(), "big", &long);
        let mut buf = Vec::with_capacity(16);
        assert_eq!(read_small(&d.path().join("big"), &mut buf).unwrap(), long);
        write(d.path(), "small", "42\n");
        assert_eq!(
            read_u64_with(&d.path().join("small"), &mut buf).unwrap(),
            42
        );
        assert!(read_u64_with(&d.path().join("missing"), &mut buf).is_err());
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
        if mounts.is_v2_only() {
            assert!(UsageFiles::open(&paths).is_none());
            return;
        }
        // The kept files give the same kind of reading, and a fresh one on every read.
        let files = UsageFiles::open(&paths).unwrap();
        let mut buf = Vec::new();
        let a = files.read(&mut buf).unwrap();
        let burn = std::time::Instant::now();
        while burn.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(burn.elapsed());
        }
        let b = files.read(&mut buf).unwrap();
        assert!(a.memory_usage > 0, "{a:?}");
        assert!(b.cpu_usage_ns > a.cpu_usage_ns, "{a:?} then {b:?}");
    }
}
