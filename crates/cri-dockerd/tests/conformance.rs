//! Behaviour the CRI conformance suite (critest) relies on that other tests do not cover, over
//! the real socket against the real dockerd: kubelet-length pod and container names.

mod common;

use std::time::Duration;

use common::Daemon;
use common::pods::{
    Pod, container_status, docker_create_half, start_container, stop_and_remove_pod, wait_until,
};
use k8s_cri::v1 as cri;

/// A busybox container running `command`, logging to `{name}.log`.
fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        log_path: format!("{name}.log"),
        ..common::pods::container_config(name, command)
    }
}

/// critest's security-context specs use pod names of ~60 and container names of ~70 characters
/// (prefix + UUID), which with namespace and uid make Docker names longer than a file name may
/// be: CreateContainer must not depend on the name fitting in one (its crash-recovery intent
/// marker once did, failing with "File name too long"). An interrupted create of such a
/// container is still cleaned up after a restart.
#[tokio::test]
async fn kubelet_length_names_create_and_recover() {
    require_docker!();
    let mut d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = Pod::run(
        &mut rt,
        &d,
        &format!("pod-{}", "p".repeat(200)),
        "conformance",
    )
    .await;
    let cname = format!("container-{}", "c".repeat(100));
    let id = p
        .try_create(&mut rt, container_config(&cname, &["sleep", "1000"]))
        .await
        .expect("CreateContainer with a long name");
    start_container(&mut rt, &id).await;
    let s = container_status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(s.metadata.unwrap().name, cname);
    let pending = d.root().join("pending");
    assert_eq!(
        std::fs::read_dir(&pending).map(|r| r.count()).unwrap_or(0),
        0,
        "intent marker left behind"
    );

    // An interrupted CreateContainer of a long-named container: Docker made it, the marker
    // (as CreateContainer writes it) is still there.
    let meta = p.config.metadata.clone().unwrap();
    let half_name = format!(
        "k8s_{}-half_{}_{}_{}_0",
        cname, meta.name, meta.namespace, meta.uid
    );
    assert!(half_name.len() > 255);
    let marker_name = {
        use sha2::{Digest, Sha256};
        Sha256::digest(half_name.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::create_dir_all(&pending).unwrap();
    std::fs::write(pending.join(&marker_name), half_name.as_bytes()).unwrap();
    let half = docker_create_half(&half_name, &p.id, &meta.uid);
    d.kill_and_restart().await;
    let mut rt = d.runtime().await;
    // Recovery runs before the first call is answered.
    rt.list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap();
    assert!(
        !common::docker_try(&["inspect", &half]).0,
        "interrupted create of a long-named container not cleaned up"
    );
    assert!(!pending.join(&marker_name).exists());
    stop_and_remove_pod(&mut rt, &p.id).await;
}

/// critest's log specs read the log file as soon as ContainerStatus reports the container
/// exited: by then every line it wrote must be there, on both streams.
#[tokio::test]
async fn log_is_complete_once_status_reports_exited() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = Pod::run(&mut rt, &d, "logpod", "conformance").await;
    for i in 0..3 {
        let name = format!("exits-{i}");
        let script = "echo hello World; echo 'to stderr' >&2; touch /x; echo Found";
        let id = p
            .create(&mut rt, container_config(&name, &["sh", "-c", script]))
            .await;
        start_container(&mut rt, &id).await;
        let log_path = wait_until(
            Duration::from_secs(20),
            Duration::from_millis(10),
            format!("{name} did not exit"),
            async || {
                let s = container_status(&mut rt, &id).await;
                (s.state == cri::ContainerState::ContainerExited as i32).then_some(s.log_path)
            },
        )
        .await;
        let text = std::fs::read_to_string(&log_path).unwrap();
        // Docker copies stdout and stderr separately: their relative order is not kept.
        let mut tails: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        tails.sort_unstable();
        assert_eq!(
            tails,
            [
                "stderr F to stderr",
                "stdout F Found",
                "stdout F hello World"
            ],
            "{text}"
        );
    }
    stop_and_remove_pod(&mut rt, &p.id).await;
}
