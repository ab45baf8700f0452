//! Docker container names for sandboxes and containers, compatible with the Go cri-dockerd:
//! `k8s_POD_<pod>_<namespace>_<uid>_<attempt>` and `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`,
//! optionally followed by `_<8 hex>` when a name conflict forced a random suffix.

use k8s_cri::v1 as cri;

const KUBE_PREFIX: &str = "k8s";
/// The container-name part of every sandbox (pause container) name.
pub const SANDBOX_CONTAINER_NAME: &str = "POD";
const DELIMITER: char = '_';

/// Name of the pause container for `md`.
pub fn sandbox_name(md: &cri::PodSandboxMetadata) -> String {
    [
        KUBE_PREFIX,
        SANDBOX_CONTAINER_NAME,
        &md.name,
        &md.namespace,
        &md.uid,
        &md.attempt.to_string(),
    ]
    .join("_")
}

/// Name of container `c` in the pod `pod`.
pub fn container_name(pod: &cri::PodSandboxMetadata, c: &cri::ContainerMetadata) -> String {
    [
        KUBE_PREFIX,
        &c.name,
        &pod.name,
        &pod.namespace,
        &pod.uid,
        &c.attempt.to_string(),
    ]
    .join("_")
}

/// `name` with a random `_<8 hex>` suffix, used when a leftover container holds the name.
pub fn randomize(name: &str) -> String {
    let mut buf = [0u8; 4];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    buf.copy_from_slice(&(nanos ^ std::process::id().rotate_left(16)).to_le_bytes());
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}{DELIMITER}{hex}")
}

/// File name of the intent marker of a CreateContainer for Docker container `name`: the hex
/// SHA-256 of the name, as a container name (pod name + namespace + uid + container name) can be
/// longer than the 255 bytes a file name may have.
pub fn marker_file_name(name: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parts(name: &str) -> Option<Vec<&str>> {
    let name = name.trim_start_matches('/');
    let parts: Vec<&str> = name.split(DELIMITER).collect();
    // Tolerate the random suffix.
    if (parts.len() != 6 && parts.len() != 7) || parts[0] != KUBE_PREFIX {
        return None;
    }
    Some(parts)
}

/// Parse a sandbox name back into its metadata (`None` if it is not one of ours).
pub fn parse_sandbox_name(name: &str) -> Option<cri::PodSandboxMetadata> {
    let p = parts(name)?;
    let attempt = p[5].parse().ok()?;
    Some(cri::PodSandboxMetadata {
        name: p[2].into(),
        namespace: p[3].into(),
        uid: p[4].into(),
        attempt,
    })
}

/// Parse a container name back into its metadata (`None` if it is not one of ours).
pub fn parse_container_name(name: &str) -> Option<cri::ContainerMetadata> {
    let p = parts(name)?;
    let attempt = p[5].parse().ok()?;
    Some(cri::ContainerMetadata {
        name: p[1].into(),
        attempt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> cri::PodSandboxMetadata {
        cri::PodSandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: "1234-abcd".into(),
            attempt: 2,
        }
    }

    #[test]
    fn names_match_the_go_original() {
        assert_eq!(sandbox_name(&pod()), "k8s_POD_web_default_1234-abcd_2");
        let c = cri::ContainerMetadata {
            name: "nginx".into(),
            attempt: 5,
        };
        assert_eq!(
            container_name(&pod(), &c),
            "k8s_nginx_web_default_1234-abcd_5"
        );
    }

    #[test]
    fn parse_round_trips_with_and_without_suffix_and_slash() {
        let n = sandbox_name(&pod());
        assert_eq!(parse_sandbox_name(&n), Some(pod()));
        assert_eq!(parse_sandbox_name(&format!("/{n}")), Some(pod()));
        let r = randomize(&n);
        assert_eq!(r.len(), n.len() + 9);
        assert_eq!(parse_sandbox_name(&r), Some(pod()));
        let c = cri::ContainerMetadata {
            name: "app".into(),
            attempt: 1,
        };
        assert_eq!(
            parse_container_name(&container_name(&pod(), &c)),
            Some(c.clone())
        );
    }

    #[test]
    fn marker_file_names_fit_any_container_name() {
        let long = cri::PodSandboxMetadata {
            name: "p".repeat(253),
            namespace: "n".repeat(63),
            uid: "u".repeat(36),
            attempt: 0,
        };
        let c = cri::ContainerMetadata {
            name: "c".repeat(63),
            attempt: 0,
        };
        let name = container_name(&long, &c);
        assert!(name.len() > 255);
        let f = marker_file_name(&name);
        assert_eq!(f.len(), 64);
        assert!(f.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(f, marker_file_name(&name), "stable");
        assert_ne!(f, marker_file_name(&container_name(&pod(), &c)));
    }

    #[test]
    fn parse_rejects_foreign_names() {
        for bad in [
            "nginx",
            "k8s_POD_a_b_c",
            "k9s_POD_a_b_c_0",
            "k8s_POD_a_b_c_x",
            "k8s_POD_a_b_c_0_1_2",
            "k8s_POD_a_b_c_-1",
        ] {
            assert_eq!(parse_sandbox_name(bad), None, "{bad}");
        }
    }
}
