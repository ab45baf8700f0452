//! `--runtime-cgroups`: at start-up, move the cri-dockerd process into the named cgroup — under
//! every cgroup v1 controller hierarchy (cgroupfs), or in the v2 unified hierarchy.

use std::path::{Path, PathBuf};

/// The cgroup hierarchies of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 only: one unified hierarchy mounted at `root`.
    Unified { root: PathBuf },
    /// cgroup v1 (possibly hybrid, with a v2 tree beside it that only systemd uses): one
    /// hierarchy per mount, each with its controllers.
    V1 { hierarchies: Vec<Hierarchy> },
    /// No cgroup filesystem is mounted.
    None,
}

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// Why the process could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no cgroup filesystem is mounted")]
    NoCgroupFs,
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
    #[error("{}", .0.join("; "))]
    Move(Vec<String>),
}

/// v1 controllers we do not join: `cpuset` needs cpus/mems set up in every new level before a
/// process may enter, and the named (controller-less) hierarchies such as `name=systemd` belong
/// to the service manager.
const SKIPPED_V1_CONTROLLERS: &[&str] = &["cpuset"];

/// Read the host's layout from `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Layout {
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for line in text.lines() {
        // `id parent major:minor root mountpoint options [optional...] - fstype source superopts`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split_whitespace();
        let (Some(fstype), Some(_source), Some(superopts)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        let Some(mount) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mount = PathBuf::from(unescape_mount(mount));
        match fstype {
            "cgroup" => {
                let controllers: Vec<String> = superopts
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro") && !o.starts_with("name=") && !o.contains('=')
                    })
                    .filter(|o| {
                        // Known mount options that are not controllers.
                        !matches!(
                            *o,
                            "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode"
                        )
                    })
                    .map(str::to_string)
                    .collect();
                if !controllers.is_empty() {
                    v1.push(Hierarchy { mount, controllers });
                }
            }
            "cgroup2" => v2.push(mount),
            _ => {}
        }
    }
    if !v1.is_empty() {
        Layout::V1 { hierarchies: v1 }
    } else if let Some(root) = v2.into_iter().next() {
        Layout::Unified { root }
    } else {
        Layout::None
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup directories `name` (absolute, validated by the flag parser) means on `layout`:
/// one per joined v1 hierarchy, or one in the unified tree.
pub fn cgroup_dirs(layout: &Layout, name: &str) -> Vec<PathBuf> {
    let rel = name.trim_start_matches('/');
    match layout {
        Layout::Unified { root } => vec![root.join(rel)],
        Layout::V1 { hierarchies } => hierarchies
            .iter()
            .filter(|h| {
                h.controllers
                    .iter()
                    .any(|c| !SKIPPED_V1_CONTROLLERS.contains(&c.as_str()))
            })
            .map(|h| h.mount.join(rel))
            .collect(),
        Layout::None => Vec::new(),
    }
}

/// Create `name` under every hierarchy and move process `pid` into it. Returns the directories
/// joined. Partial failure is an error listing every hierarchy that failed.
pub fn enter(name: &str, pid: u32) -> Result<Vec<PathBuf>, Error> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::MountInfo)?;
    let dirs = cgroup_dirs(&parse_mountinfo(&mountinfo), name);
    if dirs.is_empty() {
        return Err(Error::NoCgroupFs);
    }
    let mut failures = Vec::new();
    for dir in &dirs {
        if let Err(e) = join(dir, pid) {
            failures.push(format!("{}: {e}", dir.display()));
        }
    }
    if failures.is_empty() {
        Ok(dirs)
    } else {
        Err(Error::Move(failures))
    }
}

fn join(dir: &Path, pid: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /var/lib/docker rw - ext4 /dev/sda1 rw
";

    const V2: &str = "\
25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 21 0:23 / /proc rw - proc proc rw
";

    #[test]
    fn parses_v1_hierarchies_skipping_named_ones_and_the_unified_tree() {
        let Layout::V1 { hierarchies } = parse_mountinfo(V1) else {
            panic!("not v1");
        };
        let got: Vec<(&str, Vec<&str>)> = hierarchies
            .iter()
            .map(|h| {
                (
                    h.mount.to_str().unwrap(),
                    h.controllers.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("/sys/fs/cgroup/cpu,cpuacct", vec!["cpu", "cpuacct"]),
                ("/sys/fs/cgroup/cpuset", vec!["cpuset"]),
                ("/sys/fs/cgroup/memory", vec!["memory"]),
                ("/sys/fs/cgroup/pids", vec!["pids"]),
            ]
        );
    }

    #[test]
    fn parses_unified_only_and_nothing() {
        assert_eq!(
            parse_mountinfo(V2),
            Layout::Unified {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(
            parse_mountinfo("26 21 0:23 / /proc rw - proc proc rw\n"),
            Layout::None
        );
    }

    #[test]
    fn dirs_per_hierarchy_without_cpuset() {
        let dirs = cgroup_dirs(&parse_mountinfo(V1), "/system.slice/cri-dockerd");
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/cpu,cpuacct/system.slice/cri-dockerd",
                "/sys/fs/cgroup/memory/system.slice/cri-dockerd",
                "/sys/fs/cgroup/pids/system.slice/cri-dockerd",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            cgroup_dirs(&parse_mountinfo(V2), "/cri"),
            vec![PathBuf::from("/sys/fs/cgroup/cri")]
        );
        assert!(cgroup_dirs(&Layout::None, "/cri").is_empty());
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mount(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mount(r"/plain"), "/plain");
        assert_eq!(unescape_mount(r"/end\"), r"/end\");
    }
}
