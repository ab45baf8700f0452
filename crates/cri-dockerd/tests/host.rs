//! Host detection on the real machine: this environment's bounding set lacks CAP_SYS_RESOURCE,
//! so negative oom_score_adj values must be clamped, and privileged must be emulated.

use cri_dockerd::config::OomScoreRestrict;
use cri_dockerd::service::host;

fn kernel_refuses_negative_oom_score_adj() -> bool {
    // The ground truth: can a child process lower its own oom_score_adj?
    let ok = std::process::Command::new("sh")
        .args(["-c", "echo -998 > /proc/self/oom_score_adj"])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    !ok
}

#[test]
fn detect_matches_what_the_kernel_allows() {
    let ctx = host::detect("cgroupfs", OomScoreRestrict::Auto);
    let refused = kernel_refuses_negative_oom_score_adj();
    let has_sys_resource = ctx
        .daemon_capabilities
        .iter()
        .any(|c| c == "CAP_SYS_RESOURCE");
    assert_eq!(ctx.min_oom_score_adj.is_some(), refused, "{ctx:?}");
    assert_eq!(has_sys_resource, !refused, "{ctx:?}");
    assert!(ctx.daemon_capabilities.iter().any(|c| c == "CAP_CHOWN"));
    assert_eq!(ctx.cgroup_driver, "cgroupfs");

    let never = host::detect("systemd", OomScoreRestrict::Never);
    assert_eq!(never.min_oom_score_adj, None);
    let always = host::detect("systemd", OomScoreRestrict::Always);
    assert!(always.min_oom_score_adj.is_some());
}

/// On the machines this project is developed on the restriction is real; CI runs there too.
#[test]
fn this_machine_lacks_cap_sys_resource() {
    if !kernel_refuses_negative_oom_score_adj() {
        eprintln!("skipping: this host allows negative oom_score_adj");
        return;
    }
    let ctx = host::detect("cgroupfs", OomScoreRestrict::Auto);
    assert!(ctx.min_oom_score_adj.is_some());
    assert!(
        !ctx.daemon_capabilities
            .iter()
            .any(|c| c == "CAP_SYS_RESOURCE")
    );
    assert!(!ctx.has_all_capabilities());
}
