//! Pod sandboxes over the real socket against the real dockerd: run, status, list filters,
//! stop, remove, idempotence, bad input, and restart recovery.

mod common;

use std::collections::HashMap;

use common::Daemon;
use common::pods::{
    PodCleanup, Rt, host_network, remove_pod_sandbox, run_pod_sandbox, sandbox_status,
    stop_pod_sandbox, string_map, unique,
};
use k8s_cri::v1 as cri;
use tonic::Code;

/// Pod `pod-{uid}` in `sbtest`, attempt 1, with a hostname, labels and annotations.
fn pod_config(uid: &str, log_dir: &std::path::Path) -> cri::PodSandboxConfig {
    let mut cfg = cri::PodSandboxConfig {
        hostname: format!("host-{}", &uid[..6]),
        log_directory: log_dir.to_string_lossy().into_owned(),
        labels: string_map(&[("app", "web"), ("uid", uid), ("empty", "")]),
        annotations: string_map(&[("note", "a=b,c_d"), ("kubernetes.io/config.source", "api")]),
        ..common::pods::pod_config(&format!("pod-{uid}"), "sbtest", uid)
    };
    cfg.metadata.as_mut().unwrap().attempt = 1;
    cfg
}

fn uid_ps(uid: &str) -> String {
    common::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.kubernetes.pod.uid={uid}"),
    ])
}

async fn list(rt: &mut Rt, filter: cri::PodSandboxFilter) -> Vec<cri::PodSandbox> {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest {
        filter: Some(filter),
    })
    .await
    .expect("ListPodSandbox")
    .into_inner()
    .items
}

fn by_uid(uid: &str) -> HashMap<String, String> {
    string_map(&[("uid", uid)])
}

/// A filter for the sandboxes labelled with `uid` (`pod_config` sets the label).
fn of_uid(uid: &str) -> cri::PodSandboxFilter {
    cri::PodSandboxFilter {
        label_selector: by_uid(uid),
        ..Default::default()
    }
}

/// A filter for the sandbox with id (or id prefix) `id`.
fn with_id(id: &str) -> cri::PodSandboxFilter {
    cri::PodSandboxFilter {
        id: id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn sandbox_lifecycle_status_list_stop_remove() {
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    let cfg = pod_config(&uid, &d.dir.path().join("pods"));
    let id = run_pod_sandbox(&mut rt, &cfg).await;
    assert_eq!(id.len(), 64, "{id}");

    // Named and labelled as the Go original.
    let name = common::docker(&["inspect", "--format", "{{.Name}}", &id]);
    assert_eq!(name, format!("/k8s_POD_pod-{uid}_sbtest_{uid}_1"));
    let labels = common::docker(&["inspect", "--format", "{{json .Config.Labels}}", &id]);
    let labels: HashMap<String, String> = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["io.kubernetes.docker.type"], "podsandbox");
    assert_eq!(labels["io.kubernetes.pod.uid"], uid);
    assert_eq!(labels["io.kubernetes.pod.name"], format!("pod-{uid}"));
    assert_eq!(labels["io.kubernetes.pod.namespace"], "sbtest");
    assert_eq!(labels["io.kubernetes.container.name"], "POD");
    assert_eq!(labels["annotation.note"], "a=b,c_d");
    assert_eq!(labels["app"], "web");

    // oom_score_adj: upstream's -998 where the host allows it, else clamped (CAP_SYS_RESOURCE).
    let oom: i64 = common::docker(&["inspect", "--format", "{{.HostConfig.OomScoreAdj}}", &id])
        .parse()
        .unwrap();
    let negative_allowed = std::process::Command::new("sh")
        .args(["-c", "echo -998 > /proc/self/oom_score_adj"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    if negative_allowed {
        assert_eq!(oom, -998);
    } else {
        assert!(oom >= 0, "{oom}");
    }

    // The checkpoint exists.
    let cp = d.root().join("sandbox").join(&id);
    assert!(cp.exists(), "checkpoint {cp:?}");

    // Status: READY, metadata, exact labels and annotations, created_at, bridge IP (no-op).
    let st = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let s = st.status.clone().unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(s.metadata, cfg.metadata);
    assert_eq!(s.labels, cfg.labels);
    assert_eq!(s.annotations, cfg.annotations);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        s.created_at > now - 120_000_000_000 && s.created_at <= now,
        "{}",
        s.created_at
    );
    let ip = common::docker(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.Networks.bridge.IPAddress}}",
        &id,
    ]);
    assert!(!ip.is_empty());
    assert_eq!(s.network.unwrap().ip, ip);
    let ns = s.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
    assert!(st.info.contains_key("info"));
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    assert!(info["pid"].as_i64().unwrap() > 0);

    // The hostname inside the pause container's UTS namespace.
    let hostname = common::docker(&["inspect", "--format", "{{.Config.Hostname}}", &id]);
    assert_eq!(hostname, cfg.hostname);

    // Listed with each filter; prefix IDs work.
    let mine = list(&mut rt, of_uid(&uid)).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, id);
    assert_eq!(mine[0].labels, cfg.labels);
    assert_eq!(mine[0].annotations, cfg.annotations);
    assert_eq!(mine[0].created_at, s.created_at);
    assert_eq!(list(&mut rt, with_id(&id)).await.len(), 1);
    assert_eq!(list(&mut rt, with_id(&id[..12])).await.len(), 1);
    let ready = Some(cri::PodSandboxStateValue {
        state: cri::PodSandboxState::SandboxReady as i32,
    });
    let notready = Some(cri::PodSandboxStateValue {
        state: cri::PodSandboxState::SandboxNotready as i32,
    });
    assert_eq!(
        list(
            &mut rt,
            cri::PodSandboxFilter {
                state: ready,
                label_selector: by_uid(&uid),
                ..Default::default()
            }
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        list(
            &mut rt,
            cri::PodSandboxFilter {
                state: notready,
                label_selector: by_uid(&uid),
                ..Default::default()
            }
        )
        .await
        .len(),
        0
    );
    let mut wrong = by_uid(&uid);
    wrong.insert("app".into(), "db".into());
    assert!(
        list(
            &mut rt,
            cri::PodSandboxFilter {
                label_selector: wrong,
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );
    let short = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id[..12].into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(short.status.unwrap().id, id);

    // Stop -> NOTREADY (twice is fine).
    for _ in 0..2 {
        stop_pod_sandbox(&mut rt, &id).await;
    }
    let s = sandbox_status(&mut rt, &id).await;
    assert_eq!(s.state, cri::PodSandboxState::SandboxNotready as i32);
    assert_eq!(
        list(
            &mut rt,
            cri::PodSandboxFilter {
                state: notready,
                label_selector: by_uid(&uid),
                ..Default::default()
            }
        )
        .await
        .len(),
        1
    );

    // Remove -> gone, checkpoint gone (twice is fine).
    for _ in 0..2 {
        remove_pod_sandbox(&mut rt, &id).await;
    }
    assert!(uid_ps(&uid).is_empty());
    assert!(!cp.exists());
    assert!(list(&mut rt, of_uid(&uid)).await.is_empty());
    let e = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn unknown_ids_stop_and_remove_succeed() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let bogus = "f".repeat(64);
    stop_pod_sandbox(&mut rt, &bogus).await;
    remove_pod_sandbox(&mut rt, &bogus).await;
    let e = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: bogus,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn bad_input_is_refused_and_leaves_nothing() {
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let cfg = pod_config(&uid, &d.dir.path().join("pods"));

    // Unknown runtime handler.
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: "no-such-runtime".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("no-such-runtime"), "{}", e.message());
    assert!(uid_ps(&uid).is_empty());

    // Missing metadata / config.
    let mut no_md = cfg.clone();
    no_md.metadata = None;
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(no_md),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A label key reserved for our bookkeeping.
    let mut reserved = cfg.clone();
    reserved
        .labels
        .insert("io.kubernetes.docker.type".into(), "x".into());
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(reserved),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(uid_ps(&uid).is_empty());

    // `runc` (a Docker runtime) is accepted.
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: "runc".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let s = sandbox_status(&mut rt, &id).await;
    assert_eq!(s.runtime_handler, "runc");
    assert_eq!(
        common::docker(&["inspect", "--format", "{{.HostConfig.Runtime}}", &id]),
        "runc"
    );
    remove_pod_sandbox(&mut rt, &id).await;
    assert!(uid_ps(&uid).is_empty());
}

#[tokio::test]
async fn host_network_sandbox() {
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let mut cfg = pod_config(&uid, &d.dir.path().join("pods"));
    cfg.linux = host_network();
    let id = run_pod_sandbox(&mut rt, &cfg).await;
    assert_eq!(
        common::docker(&["inspect", "--format", "{{.HostConfig.NetworkMode}}", &id]),
        "host"
    );
    let s = sandbox_status(&mut rt, &id).await;
    let ns = s.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    assert_eq!(s.network.unwrap().ip, "");
    remove_pod_sandbox(&mut rt, &id).await;
}

#[tokio::test]
async fn restart_recovery_keeps_state_and_cleans_half_created() {
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let mut d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let cfg = pod_config(&uid, &d.dir.path().join("pods"));
    let a = run_pod_sandbox(&mut rt, &cfg).await;
    let mut cfg_b = cfg.clone();
    cfg_b.metadata.as_mut().unwrap().attempt = 2;
    let b = run_pod_sandbox(&mut rt, &cfg_b).await;
    stop_pod_sandbox(&mut rt, &b).await;
    let before = list(&mut rt, of_uid(&uid)).await;
    assert_eq!(before.len(), 2);

    // An interrupted RunPodSandbox: a pause container with our labels, never started, no
    // checkpoint. It carries this daemon's owner label (as the daemon's own would): other
    // tests' daemons, starting meanwhile, would otherwise clean it up too, and a removal
    // racing with ours fails ours ("removal already in progress") while it is still listed.
    let owner = common::docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.kubernetes.cri-dockerd.owner\"}}",
        &a,
    ]);
    assert!(!owner.is_empty(), "sandbox {a} has an owner label");
    let half = common::docker(&[
        "create",
        "--name",
        &format!("k8s_POD_half-{uid}_sbtest_{uid}_0"),
        "--label",
        &format!("io.kubernetes.cri-dockerd.owner={owner}"),
        "--label",
        "io.kubernetes.docker.type=podsandbox",
        "--label",
        &format!("io.kubernetes.pod.uid={uid}"),
        "--label",
        &format!("uid={uid}"),
        "--network",
        "none",
        "cri-dockerd-test/pause:latest",
    ]);
    // An interrupted sandbox whose checkpoint was written but whose container is gone.
    let ghost = "0".repeat(63) + "1";
    let mut gcp = std::fs::read(d.root().join("sandbox").join(&b)).unwrap();
    let text = String::from_utf8(gcp.clone()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], "cri-dockerd-rs/sandbox");
    // Go-format checkpoint for a sandbox whose container is gone: listed NOTREADY.
    gcp.clear();
    gcp.extend_from_slice(
        br#"{"version":"v1","name":"gone","namespace":"sbtest","data":{"host_network":false},"checksum":42}"#,
    );
    std::fs::write(d.root().join("sandbox").join(&ghost), &gcp).unwrap();

    d.kill_and_restart().await;
    let mut rt = d.runtime().await;
    let after = list(&mut rt, of_uid(&uid)).await;
    // What a restart must keep of each listed sandbox, in id order.
    let kept = |list: &[cri::PodSandbox]| {
        let mut v: Vec<_> = list
            .iter()
            .map(|s| {
                let s = s.clone();
                (s.id, s.state, s.created_at, s.labels, s.annotations)
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    assert_eq!(kept(&after), kept(&before));
    let (ok, _) = common::docker_try(&["inspect", &half]);
    assert!(
        !ok,
        "the half-created pause container must be removed at start-up"
    );

    // The ghost is listed NOTREADY, and Stop/Remove clean it up.
    let g = list(&mut rt, with_id(&ghost)).await;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].state, cri::PodSandboxState::SandboxNotready as i32);
    assert_eq!(g[0].metadata.as_ref().unwrap().name, "gone");
    stop_pod_sandbox(&mut rt, &ghost).await;
    remove_pod_sandbox(&mut rt, &ghost).await;
    assert!(!d.root().join("sandbox").join(&ghost).exists());

    for id in [a, b] {
        remove_pod_sandbox(&mut rt, &id).await;
    }
    assert!(uid_ps(&uid).is_empty());
}

#[tokio::test]
async fn failed_start_leaves_nothing_behind() {
    require_docker!();
    let (uid_a, uid_b) = (unique(), format!("b{}", unique()));
    let _ca = PodCleanup(uid_a.clone());
    let _cb = PodCleanup(uid_b.clone());
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    // Two pods publishing the same host port on Docker's bridge: the second start fails.
    let port = 20000 + (std::process::id() % 20000) as i32;
    let mapping = cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port: port,
        host_ip: "127.0.0.1".into(),
    };
    let mut a = pod_config(&uid_a, &d.dir.path().join("pods"));
    a.port_mappings = vec![mapping.clone()];
    let id_a = run_pod_sandbox(&mut rt, &a).await;
    let bound = common::docker(&["port", &id_a]);
    assert!(bound.contains(&format!("127.0.0.1:{port}")), "{bound}");
    let mut b = pod_config(&uid_b, &d.dir.path().join("pods"));
    b.port_mappings = vec![mapping];
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(b),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Unknown);
    assert!(
        e.message().contains("starting the pod sandbox"),
        "{}",
        e.message()
    );
    assert!(
        e.message().contains("allocated") || e.message().contains("address already in use"),
        "{}",
        e.message()
    );
    assert!(
        uid_ps(&uid_b).is_empty(),
        "the failed sandbox must be removed"
    );
    let checkpoints: Vec<_> = std::fs::read_dir(d.root().join("sandbox"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(checkpoints, vec![std::ffi::OsString::from(&id_a)]);
    remove_pod_sandbox(&mut rt, &id_a).await;
}

#[tokio::test]
async fn missing_pause_image_is_an_error_and_leaves_nothing() {
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let image = format!("--pod-infra-container-image=127.0.0.1:9/absent-{uid}:none");
    let d = Daemon::start(&[&image]).await;
    let mut rt = d.runtime().await;
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(&uid, &d.dir.path().join("pods"))),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    assert_ne!(e.code(), Code::Unknown);
    assert!(e.message().contains("pulling image"), "{}", e.message());
    assert!(uid_ps(&uid).is_empty());
}

#[tokio::test]
async fn name_held_by_a_leftover_container_is_recovered() {
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let cfg = pod_config(&uid, &d.dir.path().join("pods"));
    // A stopped leftover holding the exact name (labelled so the cleanup guard finds it).
    let leftover = common::docker(&[
        "create",
        "--name",
        &format!("k8s_POD_pod-{uid}_sbtest_{uid}_1"),
        "--label",
        &format!("io.kubernetes.pod.uid={uid}"),
        "--network",
        "none",
        "cri-dockerd-test/pause:latest",
    ]);
    let id = run_pod_sandbox(&mut rt, &cfg).await;
    assert_ne!(id, leftover);
    assert!(
        !common::docker_try(&["inspect", &leftover]).0,
        "leftover removed"
    );
    assert_eq!(
        common::docker(&["inspect", "--format", "{{.Name}}", &id]),
        format!("/k8s_POD_pod-{uid}_sbtest_{uid}_1")
    );
    remove_pod_sandbox(&mut rt, &id).await;
    assert!(uid_ps(&uid).is_empty());
}

#[tokio::test]
async fn v1alpha2_sandbox_round_trip() {
    use k8s_cri::v1alpha2 as alpha;
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime_alpha().await;
    let cfg = alpha::PodSandboxConfig {
        metadata: Some(alpha::PodSandboxMetadata {
            name: format!("alpha-{uid}"),
            namespace: "sbtest".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        labels: by_uid(&uid),
        ..Default::default()
    };
    let id = rt
        .run_pod_sandbox(alpha::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let items = rt
        .list_pod_sandbox(alpha::ListPodSandboxRequest {
            filter: Some(alpha::PodSandboxFilter {
                label_selector: by_uid(&uid),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, id);
    assert_eq!(items[0].state, alpha::PodSandboxState::SandboxReady as i32);
    rt.remove_pod_sandbox(alpha::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
    assert!(uid_ps(&uid).is_empty());
}

#[tokio::test]
async fn failed_checkpoint_write_removes_the_container() {
    require_docker!();
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let d = Daemon::start(&[]).await;
    // The checkpoint directory cannot be created: a regular file is in the way.
    std::fs::create_dir_all(d.root()).unwrap();
    std::fs::write(d.root().join("sandbox"), b"not a directory").unwrap();
    let mut rt = d.runtime().await;
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(&uid, &d.dir.path().join("pods"))),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    assert!(e.message().contains("checkpoint"), "{}", e.message());
    assert!(uid_ps(&uid).is_empty(), "the container must be removed");
}

/// Clears the immutable attribute of a file on drop (so a failing test still lets the pod go).
struct Pinned(std::path::PathBuf);

impl Pinned {
    fn pin(path: std::path::PathBuf) -> Pinned {
        std::fs::write(&path, b"pinned").expect("write the pinned file");
        common::command_output("chattr", &["+i", &path.to_string_lossy()]);
        Pinned(path)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .args(["-i", &self.0.to_string_lossy()])
            .status();
    }
}

/// RemovePodSandbox removes the checkpoint while Docker removes the pause container; when
/// Docker fails (here: an immutable file in the container's writable layer), the call fails and
/// the checkpoint is written back, so the sandbox stays listed and a retry removes both.
#[tokio::test]
async fn remove_pod_sandbox_keeps_the_checkpoint_when_docker_fails() {
    require_docker!();
    if !common::host::is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pinning a file (chattr +i) needs root"
        );
        eprintln!("skipping: pinning a file (chattr +i) needs root");
        return;
    }
    let d = Daemon::start(&[]).await;
    let mut rt = d.runtime().await;
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let id = run_pod_sandbox(&mut rt, &pod_config(&uid, &d.dir.path().join("logs"))).await;
    stop_pod_sandbox(&mut rt, &id).await;
    let upper = common::docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &id]);
    let pinned = Pinned::pin(std::path::Path::new(&upper).join("cri-dockerd-test-pinned"));
    let checkpoint = d.root().join("sandbox").join(&id);
    assert!(checkpoint.exists(), "checkpoint {checkpoint:?}");

    let err = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .expect_err("Docker cannot remove the pause container");
    assert!(err.message().contains("operation not permitted"), "{err:?}");
    assert!(
        checkpoint.exists(),
        "checkpoint written back: {checkpoint:?}"
    );
    let listed = |rt: &mut Rt| {
        let mut rt = rt.clone();
        let id = id.clone();
        async move {
            rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await
                .expect("ListPodSandbox")
                .into_inner()
                .items
                .iter()
                .any(|s| s.id == id)
        }
    };
    assert!(listed(&mut rt).await, "still listed");

    drop(pinned);
    remove_pod_sandbox(&mut rt, &id).await;
    assert!(!checkpoint.exists(), "checkpoint {checkpoint:?} removed");
    assert!(!listed(&mut rt).await, "no longer listed");
}
