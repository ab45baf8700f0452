//! Upgrade in place from the Go cri-dockerd: a pod made exactly as the Go version makes it
//! (container names, labels, the `<root>/sandbox/<id>` checkpoint in its JSON format, the libcni
//! cache entry, the kubelet log symlink) is listed, inspected, stopped and removed by our daemon.

mod common;

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1 as cri;

const PAUSE: &str = "cri-dockerd-test/pause:latest";
const BUSYBOX: &str = "cri-dockerd-test/busybox:latest";

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n & 0xffff_ffff, std::process::id())
}

/// Removes the Go-made containers on drop, also when the test failed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (_, ids) = common::docker_try(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.kubernetes.pod.uid={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            let _ = common::docker_try(&["rm", "-f", id]);
        }
    }
}

fn label_args(labels: &[(&str, String)]) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
}

fn docker_owned(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::docker(&args)
}

/// The Go version's checkpoint (`PodSandboxCheckpoint`, `json.Marshal`ed: compact, its
/// checksum a number).
fn go_checkpoint(name: &str, ns: &str) -> String {
    format!(
        r#"{{"version":"v1","name":"{name}","namespace":"{ns}","data":{{"port_mappings":[{{"protocol":"tcp","container_port":80,"host_port":18080}}]}},"checksum":2847192215}}"#
    )
}

/// libcni's cache entry for the sandbox's attachment (`results/<net>-<id>-<ifname>`).
fn cni_cache_entry(sid: &str, name: &str, ns: &str, uid: &str) -> String {
    use base64::Engine;
    let conf = r#"{"cniVersion":"0.4.0","name":"podnet","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.244.0.0/24"}}"#;
    serde_json::json!({
        "kind": "cniCacheV1",
        "containerId": sid,
        "config": base64::engine::general_purpose::STANDARD.encode(conf),
        "ifName": "eth0",
        "networkName": "podnet",
        "cniArgs": [
            ["IgnoreUnknown", "1"],
            ["K8S_POD_NAMESPACE", ns],
            ["K8S_POD_NAME", name],
            ["K8S_POD_INFRA_CONTAINER_ID", sid],
            ["K8S_POD_UID", uid]
        ],
        "capabilityArgs": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]},
        "result": {
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "cni0", "mac": "0a:58:0a:f4:00:01"}, {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/proc/1/ns/net"}],
            "ips": [{"version": "4", "interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
            "dns": {}
        }
    })
    .to_string()
}

fn as_map(m: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort();
    v
}

#[tokio::test]
async fn go_made_pod_is_listed_stopped_and_removed() {
    require_docker!();
    let id = unique();
    let (name, ns, uid) = (
        format!("web-{id}"),
        "upgrade".to_string(),
        format!("uid-{id}"),
    );
    let _cleanup = Cleanup(uid.clone());
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pods").join(format!("{ns}_{name}_{uid}"));
    std::fs::create_dir_all(logs.join("app")).unwrap();

    // The pause container, as the Go version creates it for a kubelet RunPodSandbox.
    let pod_labels = vec![
        ("io.kubernetes.pod.name", name.clone()),
        ("io.kubernetes.pod.namespace", ns.clone()),
        ("io.kubernetes.pod.uid", uid.clone()),
        ("app", "web".to_string()),
        ("annotation.kubernetes.io/config.source", "api".to_string()),
        (
            "annotation.kubernetes.io/config.seen",
            "2024-01-01T00:00:00Z".to_string(),
        ),
        ("io.kubernetes.docker.type", "podsandbox".to_string()),
        ("io.kubernetes.container.name", "POD".to_string()),
    ];
    let mut args: Vec<String> = ["create", "--name"].map(String::from).to_vec();
    args.push(format!("k8s_POD_{name}_{ns}_{uid}_0"));
    args.extend(label_args(&pod_labels));
    args.extend(
        [
            "--network",
            "none",
            "--ipc",
            "shareable",
            "--hostname",
            &name,
            "--cpu-shares",
            "2",
            PAUSE,
        ]
        .map(String::from),
    );
    let sid = docker_owned(&args);
    common::docker(&["start", &sid]);

    // The app container in the pod's namespaces.
    let log_path = logs.join("app/0.log");
    let app_labels = vec![
        ("io.kubernetes.pod.name", name.clone()),
        ("io.kubernetes.pod.namespace", ns.clone()),
        ("io.kubernetes.pod.uid", uid.clone()),
        ("io.kubernetes.container.name", "app".to_string()),
        (
            "annotation.io.kubernetes.container.hash",
            "5f3c2b1a".to_string(),
        ),
        (
            "annotation.io.kubernetes.container.restartCount",
            "0".to_string(),
        ),
        (
            "annotation.io.kubernetes.container.terminationMessagePath",
            "/dev/termination-log".to_string(),
        ),
        ("io.kubernetes.docker.type", "container".to_string()),
        ("io.kubernetes.sandbox.id", sid.clone()),
        (
            "io.kubernetes.container.logpath",
            log_path.display().to_string(),
        ),
    ];
    let mut args: Vec<String> = ["create", "--name"].map(String::from).to_vec();
    args.push(format!("k8s_app_{name}_{ns}_{uid}_0"));
    args.extend(label_args(&app_labels));
    for opt in ["--network", "--ipc", "--pid"] {
        args.push(opt.into());
        args.push(format!("container:{sid}"));
    }
    args.extend([BUSYBOX, "sh", "-c", "echo hello-from-go; sleep 3600"].map(String::from));
    let cid = docker_owned(&args);
    common::docker(&["start", &cid]);
    // The Go version's StartContainer: the kubelet log path is a symlink to Docker's json log.
    let docker_log = common::docker(&["inspect", "-f", "{{.LogPath}}", &cid]);
    std::os::unix::fs::symlink(&docker_log, &log_path).unwrap();

    // Its root directory and CNI cache.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sandbox")).unwrap();
    std::fs::write(root.join("sandbox").join(&sid), go_checkpoint(&name, &ns)).unwrap();
    let cni_results = dir.path().join("cni-cache/results");
    std::fs::create_dir_all(&cni_results).unwrap();
    let cache_file = cni_results.join(format!("podnet-{sid}-eth0"));
    std::fs::write(&cache_file, cni_cache_entry(&sid, &name, &ns, &uid)).unwrap();

    // Swap the binary: our daemon on the same root and CNI cache.
    let daemon = common::Daemon::start_in(dir, &[], &[]).await;
    let mut rt = daemon.runtime().await;

    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [("io.kubernetes.pod.uid".to_string(), uid.clone())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "{pods:#?}\n{}", daemon.log());
    let pod = &pods[0];
    assert_eq!(pod.id, sid);
    assert_eq!(pod.state, cri::PodSandboxState::SandboxReady as i32);
    let md = pod.metadata.as_ref().unwrap();
    assert_eq!(
        (
            md.name.as_str(),
            md.namespace.as_str(),
            md.uid.as_str(),
            md.attempt
        ),
        (name.as_str(), ns.as_str(), uid.as_str(), 0)
    );
    let want_labels: HashMap<String, String> = [
        ("io.kubernetes.pod.name", name.clone()),
        ("io.kubernetes.pod.namespace", ns.clone()),
        ("io.kubernetes.pod.uid", uid.clone()),
        ("app", "web".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(as_map(&pod.labels), as_map(&want_labels));
    let want_annotations: HashMap<String, String> = [
        ("kubernetes.io/config.source", "api"),
        ("kubernetes.io/config.seen", "2024-01-01T00:00:00Z"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(as_map(&pod.annotations), as_map(&want_annotations));

    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sid.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(status.metadata.as_ref().unwrap().name, name);
    assert_eq!(as_map(&status.annotations), as_map(&want_annotations));
    let nsopts = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .unwrap();
    assert_eq!(nsopts.network, cri::NamespaceMode::Pod as i32);

    let containers = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sid.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 1, "{containers:#?}");
    let c = &containers[0];
    assert_eq!(c.id, cid);
    assert_eq!(c.pod_sandbox_id, sid);
    assert_eq!(c.state, cri::ContainerState::ContainerRunning as i32);
    let cmd = c.metadata.as_ref().unwrap();
    assert_eq!((cmd.name.as_str(), cmd.attempt), ("app", 0));
    assert_eq!(
        c.labels
            .get("io.kubernetes.container.name")
            .map(String::as_str),
        Some("app")
    );
    assert_eq!(c.labels.get("io.kubernetes.pod.uid"), Some(&uid));
    assert!(
        !c.labels.contains_key("io.kubernetes.sandbox.id"),
        "{:?}",
        c.labels
    );
    assert_eq!(
        c.annotations
            .get("io.kubernetes.container.hash")
            .map(String::as_str),
        Some("5f3c2b1a")
    );
    assert_eq!(c.annotations.len(), 3, "{:?}", c.annotations);

    let cstatus = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: cid.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(cstatus.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(cstatus.log_path, log_path.display().to_string());
    assert_eq!(cstatus.image.as_ref().unwrap().image, BUSYBOX);

    // The kubelet log path still points at Docker's own log, untouched.
    let target = std::fs::read_link(&log_path).unwrap();
    assert_eq!(target, Path::new(&docker_log));
    let json_log = std::fs::read_to_string(&docker_log).unwrap();
    assert!(json_log.contains("hello-from-go"), "{json_log}");
    for line in json_log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "Docker's json log was written to through the symlink: {line:?}"
        );
    }

    // kubelet deletes the pod: stop and remove everything.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("stop: {e:?}\n{}", daemon.log()));
    let state = common::docker(&["inspect", "-f", "{{.State.Status}}", &cid]);
    assert_eq!(state, "exited");
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                id: sid.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxNotready as i32);
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: cid.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("remove: {e:?}\n{}", daemon.log()));

    let (_, left) = common::docker_try(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.kubernetes.pod.uid={uid}"),
    ]);
    assert_eq!(left.trim(), "", "containers left behind");
    assert!(
        std::fs::symlink_metadata(&log_path).is_err(),
        "the kubelet log symlink is left behind"
    );
    assert!(
        !daemon.root().join("sandbox").join(&sid).exists(),
        "checkpoint left behind"
    );
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.iter().all(|p| p.id != sid));
}
