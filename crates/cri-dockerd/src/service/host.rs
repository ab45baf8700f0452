//! Facts about this host that shape container creation, detected once at start-up: the lowest
//! oom_score_adj allowed, the capabilities the Docker daemon can grant, the cgroup driver.
//!
//! The daemon runs as root next to dockerd, so its capability bounding set is dockerd's (and
//! runc's): what `privileged` and capability `ALL` can grant here, and whether a negative
//! oom_score_adj can be set (that needs `CAP_SYS_RESOURCE`).

use crate::config::OomScoreRestrict;

pub use super::convert::HostContext;

/// Linux capability names by bit number (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40).
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const CAP_SYS_RESOURCE: &str = "CAP_SYS_RESOURCE";

/// Detect the host context. `cgroup_driver` comes from `docker info`. Logs one warning when
/// negative oom_score_adj values will be clamped.
pub fn detect(cgroup_driver: &str, restrict: OomScoreRestrict) -> HostContext {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let own_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let caps = daemon_capabilities(&status);
    let min_oom_score_adj = min_oom_score_adj(restrict, &caps, own_adj);
    if let Some(min) = min_oom_score_adj {
        let cause = match restrict {
            OomScoreRestrict::Always => "--restrict-oom-score-adj=true".to_string(),
            _ => format!("the capability bounding set lacks {CAP_SYS_RESOURCE}"),
        };
        tracing::warn!(
            min_oom_score_adj = min,
            "oom_score_adj values below {min} will be clamped to {min}: {cause}"
        );
    }
    HostContext {
        min_oom_score_adj,
        daemon_capabilities: caps,
        cgroup_driver: cgroup_driver.to_string(),
        cgroup_v2: std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        ..Default::default()
    }
}

/// The clamping floor: `Never` -> none; `Always` -> our own current value; `Auto` -> our own
/// current value when `CAP_SYS_RESOURCE` is missing (the kernel then refuses values below the
/// process's floor, as containerd's `restrict_oom_score_adj` assumes), none otherwise.
pub fn min_oom_score_adj(restrict: OomScoreRestrict, caps: &[String], own_adj: i64) -> Option<i64> {
    match restrict {
        OomScoreRestrict::Never => None,
        OomScoreRestrict::Always => Some(own_adj),
        OomScoreRestrict::Auto => {
            if caps.is_empty() || caps.iter().any(|c| c == CAP_SYS_RESOURCE) {
                None
            } else {
                Some(own_adj)
            }
        }
    }
}

/// Capability names held by this process, from `/proc/self/status`: the bounding set (`CapBnd`)
/// intersected with the effective set (`CapEff`) when both are present. Empty when unreadable.
pub fn daemon_capabilities(proc_status: &str) -> Vec<String> {
    let field = |name: &str| {
        proc_status.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
    };
    let mask = match (field("CapBnd"), field("CapEff")) {
        (Some(b), Some(e)) => b & e,
        (Some(m), None) | (None, Some(m)) => m,
        (None, None) => return Vec::new(),
    };
    caps_from_mask(mask)
}

/// Capability names for the bits set in `mask` (bits beyond the known table are ignored).
pub fn caps_from_mask(mask: u64) -> Vec<String> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| (*name).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESTRICTED: &str = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n";
    const FULL: &str = "CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
    const DOCKER_DEFAULT: &str = "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n";

    #[test]
    fn parses_capability_sets() {
        let caps = daemon_capabilities(RESTRICTED);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_CHECKPOINT_RESTORE".to_string()));

        assert_eq!(daemon_capabilities(FULL).len(), 41);

        let docker = daemon_capabilities(DOCKER_DEFAULT);
        let expected = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW",
            "CAP_SYS_CHROOT",
            "CAP_MKNOD",
            "CAP_AUDIT_WRITE",
            "CAP_SETFCAP",
        ];
        assert_eq!(docker, expected);
    }

    #[test]
    fn effective_set_narrows_bounding_set() {
        let s = "CapEff:\t0000000000000001\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(daemon_capabilities(s), ["CAP_CHOWN"]);
        assert!(daemon_capabilities("Name:\tx\n").is_empty());
        assert!(daemon_capabilities("CapBnd:\tzz\n").is_empty());
    }

    #[test]
    fn oom_floor_by_policy() {
        let restricted = daemon_capabilities(RESTRICTED);
        let full = daemon_capabilities(FULL);
        let table = [
            (OomScoreRestrict::Auto, &restricted, 0, Some(0)),
            (OomScoreRestrict::Auto, &restricted, -500, Some(-500)),
            (OomScoreRestrict::Auto, &full, 0, None),
            (OomScoreRestrict::Always, &full, 0, Some(0)),
            (OomScoreRestrict::Always, &full, -999, Some(-999)),
            (OomScoreRestrict::Never, &restricted, 0, None),
        ];
        for (policy, caps, own, want) in table {
            assert_eq!(
                min_oom_score_adj(policy, caps, own),
                want,
                "{policy:?} {own}"
            );
        }
    }
}
