//! The I/O half of the translation, done before the pure [`super::convert`] runs: mount and
//! device sources must exist, and Localhost seccomp profiles are read (and checked to be JSON).

use k8s_cri::v1 as cri;

use super::convert::HostContext;
use super::{Error, Result};

/// Check `cfg`'s mount and device sources and load its Localhost seccomp profile; returns
/// `host` with [`HostContext::seccomp_profiles`] filled, to pass to `convert::container_spec`.
#[allow(deprecated)] // the deprecated seccomp_profile_path is honoured too
pub fn container_inputs(cfg: &cri::ContainerConfig, host: &HostContext) -> Result<HostContext> {
    check_mount_sources(&cfg.mounts)?;
    for d in &cfg.devices {
        if std::fs::metadata(&d.host_path).is_err() {
            return Err(Error::InvalidArgument(format!(
                "ContainerConfig.devices: host device {:?} does not exist",
                d.host_path
            )));
        }
    }
    let sc = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let path = sc.and_then(|sc| localhost_seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path));
    with_profile(host, path)
}

/// Load the sandbox's Localhost seccomp profile; returns `host` with it, for
/// `convert::sandbox_spec`.
#[allow(deprecated)]
pub fn sandbox_inputs(cfg: &cri::PodSandboxConfig, host: &HostContext) -> Result<HostContext> {
    let sc = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let path = sc.and_then(|sc| localhost_seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path));
    with_profile(host, path)
}

/// Every bind-mount source must exist: Docker would silently create a missing one as an empty
/// directory, hiding a wrong path (kubelet creates the directories it means to mount).
pub fn check_mount_sources(mounts: &[cri::Mount]) -> Result<()> {
    for m in mounts {
        if m.host_path.is_empty() {
            continue; // refused by the translation with a clearer message
        }
        if let Err(e) = std::fs::metadata(&m.host_path) {
            return Err(Error::InvalidArgument(format!(
                "ContainerConfig.mounts[{:?}]: host path {:?} cannot be used: {e}",
                m.container_path, m.host_path
            )));
        }
    }
    Ok(())
}

fn localhost_seccomp(p: Option<&cri::SecurityProfile>, deprecated: &str) -> Option<String> {
    match p {
        Some(p) if p.profile_type == cri::security_profile::ProfileType::Localhost as i32 => {
            Some(p.localhost_ref.trim().to_string())
        }
        Some(_) => None,
        None => deprecated
            .strip_prefix("localhost/")
            .filter(|r| r.starts_with('/'))
            .map(str::to_string),
    }
}

fn with_profile(host: &HostContext, path: Option<String>) -> Result<HostContext> {
    let mut out = host.clone();
    let Some(path) = path.filter(|p| p.starts_with('/')) else {
        return Ok(out);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::InvalidArgument(format!("cannot load seccomp profile {path:?}: {e}"))
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::InvalidArgument(format!("seccomp profile {path:?} is not valid JSON: {e}"))
    })?;
    out.seccomp_profiles.insert(path, json.to_string());
    Ok(out)
}

#[cfg(test)]
#[allow(deprecated)]
mod tests {
    use super::*;

    fn seccomp_cfg(path: &str) -> cri::ContainerConfig {
        cri::ContainerConfig {
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: path.into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn loads_localhost_profiles_and_checks_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("p.json");
        std::fs::write(&good, "{ \"defaultAction\": \"SCMP_ACT_ALLOW\" }").expect("write");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "not json").expect("write");
        let good = good.to_str().expect("utf8");

        let host = container_inputs(&seccomp_cfg(good), &HostContext::default()).expect("good");
        assert_eq!(
            host.seccomp_profiles.get(good).map(String::as_str),
            Some(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)
        );
        for p in [bad.to_str().expect("utf8"), "/no/such/profile.json"] {
            let err = container_inputs(&seccomp_cfg(p), &HostContext::default());
            assert!(matches!(err, Err(Error::InvalidArgument(_))), "{p}");
        }
        // The deprecated string form.
        let cfg = cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    seccomp_profile_path: format!("localhost/{good}"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            sandbox_inputs(&cfg, &HostContext::default())
                .expect("sandbox")
                .seccomp_profiles
                .contains_key(good)
        );

        let mount = |p: &str| cri::Mount {
            container_path: "/m".into(),
            host_path: p.into(),
            ..Default::default()
        };
        assert!(check_mount_sources(&[mount(dir.path().to_str().expect("utf8"))]).is_ok());
        assert!(matches!(
            check_mount_sources(&[mount("/no/such/dir/4f2a")]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
