//! Containers over the real socket against the real dockerd: lifecycle, states and exit codes,
//! status fields, list filters, resources update, shared namespaces, bad input, recovery.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Daemon;
use common::pods::{
    BUSYBOX, Pod, Rt, container_status, docker_create_half, remove_pod_sandbox, start_container,
    string_map, unique, wait_until,
};
use k8s_cri::v1 as cri;
use tonic::Code;

/// A pod named `pod-{uid}` in namespace `ctest` with hostname `podhost`.
async fn pod(rt: &mut Rt, d: &Daemon) -> Pod {
    Pod::run_with(rt, d, "pod", "ctest", |c| c.hostname = "podhost".into()).await
}

/// A busybox `sh -c script` container with a log path, a label and an annotation.
fn container_config(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        log_path: format!("{name}/0.log"),
        labels: string_map(&[("role", name)]),
        annotations: string_map(&[("why", "test: a=b")]),
        ..common::pods::container_config(name, &["sh", "-c", script])
    }
}

async fn wait_exited(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        format!("container {id} did not exit"),
        async || {
            let s = container_status(rt, id).await;
            (s.state == cri::ContainerState::ContainerExited as i32).then_some(s)
        },
    )
    .await
}

/// A container filter for the pod (id or prefix) `id`.
fn in_pod(id: &str) -> cri::ContainerFilter {
    cri::ContainerFilter {
        pod_sandbox_id: id.into(),
        ..Default::default()
    }
}

async fn list(rt: &mut Rt, f: cri::ContainerFilter) -> Vec<String> {
    let mut ids: Vec<String> = rt
        .list_containers(cri::ListContainersRequest { filter: Some(f) })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn container_lifecycle_and_status() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d).await;
    let cfg = container_config("app", "echo hi; sleep 1000");
    let id = p.create(&mut rt, cfg.clone()).await;

    let name = common::docker(&["inspect", "--format", "{{.Name}}", &id]);
    assert_eq!(name, format!("/k8s_app_pod-{}_ctest_{}_0", p.uid, p.uid));
    let s = container_status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerCreated as i32);
    assert!(s.created_at > 0);
    assert_eq!(s.started_at, 0);
    assert_eq!(s.finished_at, 0);
    assert_eq!(s.metadata, cfg.metadata);
    assert_eq!(s.labels, cfg.labels);
    assert_eq!(s.annotations, cfg.annotations);
    assert_eq!(s.image.as_ref().unwrap().image, BUSYBOX);
    let image_id = common::docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX]);
    assert_eq!(s.image_ref, image_id);
    let log_path = format!("{}/app/0.log", p.config.log_directory);
    assert_eq!(s.log_path, log_path);

    start_container(&mut rt, &id).await;
    let s = container_status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert!(s.started_at >= s.created_at, "{s:?}");
    assert!(std::path::Path::new(&log_path).parent().unwrap().is_dir());
    let v = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&v.info["info"]).unwrap();
    assert!(info["pid"].as_i64().unwrap() > 0);
    assert_eq!(info["sandboxID"], p.id.as_str());

    // Prefix IDs work for status.
    assert_eq!(container_status(&mut rt, &id[..12]).await.id, id);

    // ReopenContainerLog on a running container.
    rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();

    // Stopped by SIGTERM (143) when sh shares the pod's PID namespace (the CRI default, pid=POD),
    // or by SIGKILL after the timeout (137) where sh is PID 1 and ignores SIGTERM.
    for _ in 0..2 {
        rt.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    }
    let s = container_status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert!(
        matches!(s.exit_code, 137 | 143),
        "exit code {}",
        s.exit_code
    );
    assert_eq!(s.reason, "Error");
    assert!(s.finished_at >= s.started_at && s.finished_at > 0);
    let e = rt
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // RemoveContainer deletes the CRI log file, as the Go original removes its log symlink.
    if !std::path::Path::new(&log_path).exists() {
        std::fs::write(&log_path, b"").unwrap();
    }
    for _ in 0..2 {
        rt.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    }
    let (exists, _) = common::docker_try(&["inspect", &id]);
    assert!(!exists);
    assert!(!std::path::Path::new(&log_path).exists());
    let e = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Unknown IDs: stop/remove succeed, status is NotFound.
    let bogus = "e".repeat(64);
    rt.stop_container(cri::StopContainerRequest {
        container_id: bogus.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: bogus.clone(),
    })
    .await
    .unwrap();
    let e = rt
        .start_container(cri::StartContainerRequest {
            container_id: bogus.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // The pause container is not a CRI container.
    let e = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: p.id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    remove_pod_sandbox(&mut rt, &p.id).await;
}

#[tokio::test]
async fn exit_codes_and_reasons() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d).await;
    for (name, script, code, reason) in [
        ("ok", "exit 0", 0, "Completed"),
        ("bad", "exit 3", 3, "Error"),
    ] {
        let id = p.create(&mut rt, container_config(name, script)).await;
        start_container(&mut rt, &id).await;
        let s = wait_exited(&mut rt, &id).await;
        assert_eq!(s.exit_code, code, "{name}");
        assert_eq!(s.reason, reason, "{name}");
        assert!(s.finished_at > 0);
    }
    remove_pod_sandbox(&mut rt, &p.id).await;
    assert!(list(&mut rt, in_pod(&p.id)).await.is_empty());
}

#[tokio::test]
async fn oom_killed_after_memory_update() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d).await;
    // The limit is set through UpdateContainerResources (convert's create-time resources are
    // another engineer's), then the container fills 64 MiB.
    let id = p
        .create(
            &mut rt,
            container_config(
                "hog",
                "sleep 2; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
            ),
        )
        .await;
    start_container(&mut rt, &id).await;
    let limit = 16 * 1024 * 1024;
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: limit,
            memory_swap_limit_in_bytes: limit,
            cpu_shares: 256,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        common::docker(&["inspect", "--format", "{{.HostConfig.Memory}}", &id]),
        limit.to_string()
    );
    assert_eq!(
        common::docker(&["inspect", "--format", "{{.HostConfig.CpuQuota}}", &id]),
        "50000"
    );
    let s = container_status(&mut rt, &id).await;
    let r = s.resources.unwrap().linux.unwrap();
    assert_eq!(r.memory_limit_in_bytes, limit);
    assert_eq!(r.cpu_shares, 256);
    let s = wait_exited(&mut rt, &id).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137);

    // Fields Docker cannot update are refused, not dropped.
    let e = rt
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                unified: HashMap::from([("memory.high".to_string(), "1".to_string())]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    remove_pod_sandbox(&mut rt, &p.id).await;
}

#[tokio::test]
async fn list_filters() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p1 = pod(&mut rt, &d).await;
    let p2 = pod(&mut rt, &d).await;
    let a = p1
        .create(&mut rt, container_config("a", "sleep 1000"))
        .await;
    let b = p1
        .create(&mut rt, container_config("b", "sleep 1000"))
        .await;
    let c = p2
        .create(&mut rt, container_config("a", "sleep 1000"))
        .await;
    start_container(&mut rt, &a).await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        list(&mut rt, in_pod(&p1.id)).await,
        sorted(vec![a.clone(), b.clone()])
    );
    assert_eq!(list(&mut rt, in_pod(&p2.id[..12])).await, vec![c.clone()]);
    assert_eq!(
        list(
            &mut rt,
            cri::ContainerFilter {
                id: b.clone(),
                ..Default::default()
            }
        )
        .await,
        vec![b.clone()]
    );
    assert_eq!(
        list(
            &mut rt,
            cri::ContainerFilter {
                id: b[..10].into(),
                ..Default::default()
            }
        )
        .await,
        vec![b.clone()]
    );
    let running = Some(cri::ContainerStateValue {
        state: cri::ContainerState::ContainerRunning as i32,
    });
    let created = Some(cri::ContainerStateValue {
        state: cri::ContainerState::ContainerCreated as i32,
    });
    assert_eq!(
        list(
            &mut rt,
            cri::ContainerFilter {
                pod_sandbox_id: p1.id.clone(),
                state: running,
                ..Default::default()
            }
        )
        .await,
        vec![a.clone()]
    );
    assert_eq!(
        list(
            &mut rt,
            cri::ContainerFilter {
                pod_sandbox_id: p1.id.clone(),
                state: created,
                ..Default::default()
            }
        )
        .await,
        vec![b.clone()]
    );
    let sel = |uid: &str, role: &str| {
        HashMap::from([
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ("role".to_string(), role.to_string()),
        ])
    };
    // kubelet-style labels were added by us (not CRI labels): the selector does not see them.
    assert!(
        list(
            &mut rt,
            cri::ContainerFilter {
                label_selector: sel(&p2.uid, "a"),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );
    let role_a = list(
        &mut rt,
        cri::ContainerFilter {
            label_selector: HashMap::from([("role".to_string(), "a".to_string())]),
            ..Default::default()
        },
    )
    .await;
    assert!(role_a.contains(&a) && role_a.contains(&c) && !role_a.contains(&b));
    let listed = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: a.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed[0].pod_sandbox_id, p1.id);
    assert_eq!(listed[0].metadata.as_ref().unwrap().name, "a");
    assert_eq!(
        listed[0].labels,
        HashMap::from([("role".to_string(), "a".to_string())])
    );
    assert_eq!(listed[0].annotations["why"], "test: a=b");
    assert_eq!(
        listed[0].image_ref,
        common::docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX])
    );
    for p in [&p1, &p2] {
        remove_pod_sandbox(&mut rt, &p.id).await;
    }
    assert!(list(&mut rt, in_pod(&p1.id)).await.is_empty());
}

#[tokio::test]
async fn containers_share_the_pod_network_and_ipc() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d).await;
    let x = p.create(&mut rt, container_config("x", "sleep 1000")).await;
    let y = p.create(&mut rt, container_config("y", "sleep 1000")).await;
    for id in [&x, &y] {
        start_container(&mut rt, id).await;
    }
    let ns = |id: &str, kind: &str| {
        common::docker(&["exec", id, "readlink", &format!("/proc/self/ns/{kind}")])
    };
    for kind in ["net", "ipc"] {
        assert_eq!(ns(&x, kind), ns(&y, kind), "{kind}");
    }
    // The pod's hostname, seen from inside both containers.
    for id in [&x, &y] {
        assert_eq!(common::docker(&["exec", id, "hostname"]), "podhost");
    }
    // Shared /dev/shm through IPC: a file written by one is seen by the other.
    common::docker(&["exec", &x, "sh", "-c", "echo shared > /dev/shm/marker"]);
    assert_eq!(
        common::docker(&["exec", &y, "cat", "/dev/shm/marker"]),
        "shared"
    );
    remove_pod_sandbox(&mut rt, &p.id).await;
    for id in [&x, &y] {
        assert!(!common::docker_try(&["inspect", id]).0);
    }
}

#[tokio::test]
async fn bad_input() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d).await;
    let before = list(&mut rt, in_pod(&p.id)).await;
    assert!(before.is_empty());

    let mut no_md = container_config("m", "true");
    no_md.metadata = None;
    let mut no_image = container_config("m", "true");
    no_image.image.as_mut().unwrap().image = format!("cri-dockerd-test/absent-{}:none", unique());
    let cases = [
        (p.id.clone(), Some(no_md), Code::InvalidArgument),
        (p.id.clone(), None, Code::InvalidArgument),
        (
            "d".repeat(64),
            Some(container_config("m", "true")),
            Code::NotFound,
        ),
        (p.id.clone(), Some(no_image), Code::NotFound),
    ];
    for (sandbox, cfg, code) in cases {
        let e = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox,
                config: cfg,
                sandbox_config: Some(p.config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
    }
    assert!(list(&mut rt, in_pod(&p.id)).await.is_empty());

    // A container in a removed sandbox.
    remove_pod_sandbox(&mut rt, &p.id).await;
    let e = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: p.id.clone(),
            config: Some(container_config("late", "true")),
            sandbox_config: Some(p.config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        common::docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.kubernetes.pod.uid={}", p.uid)
        ])
        .is_empty()
    );
}

#[tokio::test]
async fn restart_keeps_containers_and_removes_interrupted_creates() {
    require_docker!();
    let mut d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d).await;
    let run = p
        .create(&mut rt, container_config("run", "sleep 1000"))
        .await;
    let idle = p
        .create(&mut rt, container_config("idle", "sleep 1000"))
        .await;
    start_container(&mut rt, &run).await;
    let all = in_pod(&p.id);
    let before = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(all.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(before.len(), 2);

    // An interrupted CreateContainer: Docker made the container, our marker is still there.
    let name = format!("k8s_half_pod-{}_ctest_{}_0", p.uid, p.uid);
    std::fs::create_dir_all(d.root().join("pending")).unwrap();
    std::fs::write(d.root().join("pending").join(&name), b"").unwrap();
    let half = docker_create_half(&name, &p.id, &p.uid);

    d.kill_and_restart().await;
    let mut rt = d.runtime().await;
    let mut after = rt
        .list_containers(cri::ListContainersRequest { filter: Some(all) })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let mut before = before;
    after.sort_by(|a, b| a.id.cmp(&b.id));
    before.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(after, before);
    assert!(
        !common::docker_try(&["inspect", &half]).0,
        "interrupted create not cleaned up"
    );
    assert!(!d.root().join("pending").join(&name).exists());
    assert_eq!(
        container_status(&mut rt, &run).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    assert_eq!(
        container_status(&mut rt, &idle).await.state,
        cri::ContainerState::ContainerCreated as i32
    );
    remove_pod_sandbox(&mut rt, &p.id).await;
}
