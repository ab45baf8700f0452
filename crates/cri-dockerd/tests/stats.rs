//! Stats over the real socket against the real dockerd: CPU rate of a burner against the
//! process's own CPU time, working set of 64 MiB in shm, pod network counters after traffic,
//! writable-layer usage, filters, non-running containers, error codes, quiet logging.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Daemon;
use common::host::process_cpu_ns;
use common::pods::{Pod, Rt, container_config, string_map, wait_until};
use k8s_cri::v1 as cri;
use tonic::Code;

async fn daemon() -> Daemon {
    Daemon::start(&["--network-plugin=no-op"]).await
}

/// A daemon, its runtime client and one pod without labels.
async fn daemon_and_pod() -> (Daemon, Rt, Pod) {
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &[]).await;
    (d, rt, p)
}

/// A pod named `pod-{uid}` in namespace `stattest` with `labels`.
async fn pod(rt: &mut Rt, d: &Daemon, labels: &[(&str, &str)]) -> Pod {
    Pod::run_with(rt, d, "pod", "stattest", |c| c.labels = string_map(labels)).await
}

/// A busybox `sh -c script` container labelled `role=name`, started if `start`.
async fn container(rt: &mut Rt, p: &Pod, name: &str, script: &str, start: bool) -> String {
    let cfg = cri::ContainerConfig {
        labels: string_map(&[("role", name)]),
        ..container_config(name, &["sh", "-c", script])
    };
    if start {
        p.run_container(rt, cfg).await
    } else {
        p.create(rt, cfg).await
    }
}

async fn cstats(rt: &mut Rt, id: &str) -> cri::ContainerStats {
    rt.container_stats(cri::ContainerStatsRequest {
        container_id: id.into(),
    })
    .await
    .expect("ContainerStats")
    .into_inner()
    .stats
    .unwrap()
}

async fn pstats(rt: &mut Rt, id: &str) -> cri::PodSandboxStats {
    rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("PodSandboxStats")
    .into_inner()
    .stats
    .unwrap()
}

async fn list(rt: &mut Rt, filter: Option<cri::ContainerStatsFilter>) -> Vec<String> {
    let mut ids: Vec<String> = rt
        .list_container_stats(cri::ListContainerStatsRequest { filter })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    ids.sort();
    ids
}

fn v(x: &Option<cri::UInt64Value>) -> u64 {
    x.as_ref().map(|v| v.value).expect("value present")
}

fn pid_of(id: &str) -> u32 {
    common::docker(&["inspect", "-f", "{{.State.Pid}}", id])
        .parse()
        .unwrap()
}

#[tokio::test]
async fn cpu_burner_rate_matches_the_process_cpu_time() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let id = container(&mut rt, &p, "burner", "while :; do :; done", true).await;
    let pid = pid_of(&id);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let p0 = process_cpu_ns(pid);
    let s0 = cstats(&mut rt, &id).await;
    let cpu0 = s0.cpu.unwrap();
    assert!(
        cpu0.usage_nano_cores.is_none(),
        "first sample reports no rate"
    );
    assert!(cpu0.timestamp > 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s1 = cstats(&mut rt, &id).await;
    let p1 = process_cpu_ns(pid);
    let cpu1 = s1.cpu.unwrap();
    let rate = v(&cpu1.usage_nano_cores);
    let elapsed = (cpu1.timestamp - cpu0.timestamp) as u64;
    let cgroup_delta = v(&cpu1.usage_core_nano_seconds) - v(&cpu0.usage_core_nano_seconds);
    // The rate is the cgroup delta over the sample interval…
    assert_eq!(
        rate,
        (cgroup_delta as u128 * 1_000_000_000 / elapsed as u128) as u64
    );
    // …and that agrees with the burner's own CPU time (ticks are 10 ms coarse; the process
    // readings bracket the samples, so allow for the few ms between them).
    let process_rate = p1 as f64 * 1e9 / elapsed as f64 - p0 as f64 * 1e9 / elapsed as f64;
    let diff = (rate as f64 - process_rate).abs();
    assert!(
        diff <= process_rate * 0.1 + 40_000_000.0,
        "usage_nano_cores {rate} vs process {process_rate:.0}"
    );
    assert!(
        (100_000_000..=1_100_000_000).contains(&rate),
        "usage_nano_cores {rate}"
    );
    let mem = s1.memory.unwrap();
    assert!(v(&mem.working_set_bytes) > 0);
    assert!(v(&mem.usage_bytes) >= v(&mem.working_set_bytes));

    // The pod (no cgroup parent: the sum of its containers) includes the burner.
    let ps = pstats(&mut rt, &p.id).await;
    let linux = ps.linux.unwrap();
    assert_eq!(linux.containers.len(), 1);
    let pod_cpu = v(&linux.cpu.unwrap().usage_core_nano_seconds);
    assert!(pod_cpu >= v(&cpu1.usage_core_nano_seconds));
    assert!(
        v(&linux.process.unwrap().process_count) >= 2,
        "pause + burner"
    );
}

#[tokio::test]
async fn working_set_shows_64_mib_in_shm() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let id = container(
        &mut rt,
        &p,
        "mem",
        "head -c 67108864 /dev/zero > /dev/shm/fill; sleep 1000",
        true,
    )
    .await;
    let target = 64u64 << 20;
    let m = wait_until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        "working set stayed below 64 MiB",
        async || {
            let m = cstats(&mut rt, &id).await.memory.unwrap();
            (v(&m.working_set_bytes) >= target).then_some(m)
        },
    )
    .await;
    let ws = v(&m.working_set_bytes);
    assert!(ws <= target + target / 10, "working set {ws} vs 64 MiB");
    assert!(v(&m.usage_bytes) >= ws);
    let pm = pstats(&mut rt, &p.id).await.linux.unwrap().memory.unwrap();
    assert!(v(&pm.working_set_bytes) >= target, "pod working set");
}

#[tokio::test]
async fn pod_network_counters_grow_after_traffic() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let id = container(&mut rt, &p, "net", "sleep 1000", true).await;
    let before = pstats(&mut rt, &p.id).await.linux.unwrap().network.unwrap();
    let b = before.default_interface.unwrap();
    assert_eq!(b.name, "eth0");
    assert!(before.interfaces.iter().all(|i| i.name != "lo"));
    let r = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            // The pod's default gateway (Docker's bridge), 5 × 1000-byte echo requests.
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "gw=$(ip route | awk '/^default/ {print $3}'); ping -c 5 -i 0.2 -s 1000 \"$gw\""
                    .into(),
            ],
            timeout: 20,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        r.exit_code,
        0,
        "ping: {} {}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    let after = pstats(&mut rt, &p.id).await.linux.unwrap().network.unwrap();
    let a = after.default_interface.unwrap();
    assert!(
        v(&a.tx_bytes) >= v(&b.tx_bytes) + 5000,
        "tx {:?} -> {:?}",
        b.tx_bytes,
        a.tx_bytes
    );
    assert!(
        v(&a.rx_bytes) >= v(&b.rx_bytes) + 5000,
        "rx {:?} -> {:?}",
        b.rx_bytes,
        a.rx_bytes
    );
    assert!(after.timestamp > before.timestamp);
}

#[tokio::test]
async fn writable_layer_usage_is_filled_in_the_background() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let id = container(
        &mut rt,
        &p,
        "disk",
        "mkdir -p /data && for i in 1 2 3 4 5 6 7 8 9 10; do echo hi > /data/f$i; done; head -c 2097152 /dev/urandom > /data/big; sleep 1000",
        true,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(500),
        "writable layer never reached 2 MiB",
        async || {
            let w = cstats(&mut rt, &id).await.writable_layer?;
            (v(&w.used_bytes) >= 2 << 20).then_some(w)
        },
    )
    .await;
    let (bytes, inodes) = (v(&w.used_bytes), v(&w.inodes_used));
    assert!(inodes >= 12, "inodes {inodes}");
    assert!(bytes < 4 << 20, "bytes {bytes}");
    assert!(w.timestamp > 0);
    assert!(!w.fs_id.unwrap().mountpoint.is_empty());
}

/// A unix-socket proxy in front of dockerd that keeps what the daemon sends (its requests).
struct DockerRecorder {
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DockerRecorder {
    fn start(path: &std::path::Path) -> DockerRecorder {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(path).expect("bind proxy");
        let upstream = common::docker_endpoint()
            .trim_start_matches("unix://")
            .to_string();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::UnixStream::connect(&upstream).await else {
                    continue;
                };
                let keep = keep.clone();
                tokio::spawn(async move {
                    let (mut down_r, mut down_w) = down.into_split();
                    let (mut up_r, mut up_w) = up.into_split();
                    let requests = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = down_r.read(&mut buf).await {
                            keep.lock().unwrap().extend_from_slice(&buf[..n]);
                            if up_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = up_w.shutdown().await;
                    };
                    let answers = async {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                        let _ = down_w.shutdown().await;
                    };
                    tokio::join!(requests, answers);
                });
            }
        });
        DockerRecorder { sent, task }
    }

    /// The request lines seen so far (`GET /v1.41/... HTTP/1.1`).
    fn request_lines(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        String::from_utf8_lossy(&sent)
            .lines()
            .filter(|l| l.ends_with(" HTTP/1.1"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for DockerRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// ImageFsInfo (kubelet calls it every few seconds) reports the containers' writable layers from
/// the background walker, not by asking Docker to size every container on the host
/// (`/containers/json?size=true` walks each writable layer and took a minute per call with a
/// few hundred containers on a busy machine), and the walker does not list containers itself.
#[tokio::test]
async fn image_fs_info_counts_writable_layers_without_a_docker_size_walk() {
    require_docker!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let recorder = DockerRecorder::start(&sock);
    let d = Daemon::start(&[
        "--network-plugin=no-op",
        &format!("--docker-endpoint=unix://{}", sock.display()),
    ])
    .await;
    let mut rt = d.runtime().await;
    let mut img = d.image().await;
    let p = pod(&mut rt, &d, &[]).await;
    container(
        &mut rt,
        &p,
        "disk",
        "head -c 3145728 /dev/urandom > /big; sleep 1000",
        true,
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the container filesystem never counted the 3 MiB written",
        async || {
            let r = img
                .image_fs_info(cri::ImageFsInfoRequest {})
                .await
                .expect("ImageFsInfo")
                .into_inner();
            assert!(v(&r.image_filesystems[0].used_bytes) > 0);
            (v(&r.container_filesystems[0].used_bytes) >= 3 << 20).then_some(())
        },
    )
    .await;
    let lines = recorder.request_lines();
    assert!(
        lines.iter().any(|l| l.contains("/images/json")),
        "requests went through the proxy: {lines:?}"
    );
    let sized: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("/containers/json") && l.contains("size=true"))
        .collect();
    assert!(
        sized.is_empty(),
        "Docker was asked to size containers: {sized:?}"
    );
    // The walker runs on (every 10 s) and takes the containers from the event-fed view: no
    // Docker list of its own (it used to list all containers labelled as CRI containers; the
    // view's own lists, of one ID or a resync of every type, are not counted).
    let lists = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| {
                l.contains("/containers/json?all=true")
                    && l.contains("io.kubernetes.docker.type%3Dcontainer")
                    && !l.contains("%22id%22")
            })
            .count()
    };
    let before = lists(&recorder.request_lines());
    tokio::time::sleep(Duration::from_secs(12)).await;
    let lines = recorder.request_lines();
    assert_eq!(
        lists(&lines),
        before,
        "the daemon listed containers while nothing was asked: {lines:?}"
    );
}

#[tokio::test]
async fn filters_non_running_containers_and_errors() {
    require_docker!();
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p1 = pod(&mut rt, &d, &[("app", "one")]).await;
    let p2 = pod(&mut rt, &d, &[("app", "two")]).await;
    let run1 = container(&mut rt, &p1, "run1", "sleep 1000", true).await;
    let created1 = container(&mut rt, &p1, "created1", "sleep 1000", false).await;
    let run2 = container(&mut rt, &p2, "run2", "sleep 1000", true).await;

    let all = list(&mut rt, None).await;
    for id in [&run1, &created1, &run2] {
        assert!(all.contains(id), "{id} listed");
    }
    let f = |id: &str, sb: &str, sel: &[(&str, &str)]| {
        Some(cri::ContainerStatsFilter {
            id: id.into(),
            pod_sandbox_id: sb.into(),
            label_selector: sel
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    };
    let mut p1_ids = vec![run1.clone(), created1.clone()];
    p1_ids.sort();
    assert_eq!(list(&mut rt, f("", &p1.id[..12], &[])).await, p1_ids);
    assert_eq!(
        list(&mut rt, f(&run2[..12], "", &[])).await,
        vec![run2.clone()]
    );
    assert_eq!(
        list(&mut rt, f("", "", &[("role", "run1")])).await,
        vec![run1.clone()]
    );
    assert!(list(&mut rt, f(&run1, &p2.id, &[])).await.is_empty());

    // A created container is listed with its attributes and no CPU/memory.
    let s = cstats(&mut rt, &created1).await;
    let attrs = s.attributes.unwrap();
    assert_eq!(attrs.metadata.unwrap().name, "created1");
    assert_eq!(attrs.labels["role"], "created1");
    assert!(s.cpu.is_none() && s.memory.is_none());
    let s = cstats(&mut rt, &run1[..16]).await;
    assert_eq!(s.attributes.unwrap().id, run1, "ID prefix");
    assert!(s.cpu.unwrap().timestamp > 0);

    // Pod stats: filters and the containers inside.
    let pods = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: String::new(),
                label_selector: HashMap::from([("app".to_string(), "one".to_string())]),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let mine: Vec<_> = pods
        .iter()
        .filter(|s| s.attributes.as_ref().unwrap().id == p1.id)
        .collect();
    assert_eq!(mine.len(), 1);
    assert!(
        pods.iter()
            .all(|s| s.attributes.as_ref().unwrap().id != p2.id)
    );
    let mut inside: Vec<String> = mine[0]
        .linux
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.attributes.as_ref().unwrap().id.clone())
        .collect();
    inside.sort();
    assert_eq!(inside, p1_ids);
    let by_id = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: p2.id[..12].to_string(),
                label_selector: HashMap::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].attributes.as_ref().unwrap().id, p2.id);

    // Errors.
    let e = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: "0123456789abcdef-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: "0123456789abcdef-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

#[tokio::test]
async fn a_stats_cycle_logs_nothing_at_info() {
    require_docker!();
    let (d, mut rt, p) = daemon_and_pod().await;
    let id = container(&mut rt, &p, "quiet", "sleep 1000", true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mark = d.log().len();
    for _ in 0..3 {
        list(&mut rt, None).await;
        cstats(&mut rt, &id).await;
        pstats(&mut rt, &p.id).await;
        rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
            .await
            .unwrap();
    }
    let log = d.log();
    let new = &log[mark..];
    assert!(new.contains("ListContainerStats"), "debug lines are logged");
    for line in new.lines() {
        assert!(
            !(line.contains(" INFO ") || line.contains(" WARN ") || line.contains(" ERROR ")),
            "stats cycle logged: {line}"
        );
    }
}

#[tokio::test]
async fn pod_metrics_carry_cadvisor_names_and_labels() {
    require_docker!();
    let (_d, mut rt, p) = daemon_and_pod().await;
    let id = container(&mut rt, &p, "metered", "echo hi > /f; sleep 1000", true).await;
    let descs = rt
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors;
    let keys: HashMap<String, Vec<String>> =
        descs.into_iter().map(|d| (d.name, d.label_keys)).collect();
    assert_eq!(
        keys["container_memory_working_set_bytes"],
        ["container", "id", "image", "name", "namespace", "pod"]
    );
    let all = rt
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics;
    let pm = all
        .iter()
        .find(|m| m.pod_sandbox_id == p.id)
        .expect("our pod");
    // Pod level: network of eth0, labelled as cAdvisor's POD container.
    let rx = pm
        .metrics
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total")
        .expect("network metric");
    assert_eq!(rx.label_values[0], "POD");
    assert_eq!(rx.label_values[6], "eth0");
    let cm = pm
        .container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .expect("our container");
    let get = |name: &str| {
        cm.metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let ws = get("container_memory_working_set_bytes");
    assert_eq!(ws.label_values.len(), keys[&ws.name].len());
    assert_eq!(ws.label_values[0], "metered");
    assert_eq!(ws.label_values[1], id);
    assert_eq!(ws.label_values[4], "stattest");
    assert!(ws.value.as_ref().unwrap().value > 0);
    assert!(get("container_processes").value.as_ref().unwrap().value >= 1);
    assert!(get("container_fs_usage_bytes").value.is_some());
    for m in &cm.metrics {
        assert_eq!(m.label_values.len(), keys[&m.name].len(), "{}", m.name);
    }
}

/// The daemon's open files under the cgroup filesystem.
fn open_cgroup_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with("/sys/fs/cgroup"))
        .count()
}

#[tokio::test]
async fn kept_cgroup_files_are_closed_when_their_containers_go() {
    require_docker!();
    let (d, mut rt, p) = daemon_and_pod().await;
    let pid = d.child.id();
    let ids = [
        container(&mut rt, &p, "kept-a", "sleep 1000", true).await,
        container(&mut rt, &p, "kept-b", "sleep 1000", true).await,
    ];
    // Other tests' containers are on this host too: list only this pod's, so only ours are read.
    let only_this_pod = cri::ContainerStatsFilter {
        pod_sandbox_id: p.id.clone(),
        ..Default::default()
    };
    let before = open_cgroup_files(pid);
    for id in &ids {
        let s = cstats(&mut rt, id).await;
        assert!(s.cpu.is_some() && s.memory.is_some(), "{s:?}");
    }
    // Each running container's usage files stay open between calls (cgroup v1 here).
    let kept = open_cgroup_files(pid) - before;
    assert_eq!(
        kept,
        2 * 5,
        "memory.stat/usage/limit, cpuacct.usage, pids.current each"
    );
    let again = cstats(&mut rt, &ids[0]).await;
    assert!(again.cpu.is_some(), "read again through the kept files");
    assert_eq!(
        open_cgroup_files(pid) - before,
        kept,
        "nothing opened twice"
    );

    // Stopped: the next list closes that container's files (its cgroup is gone).
    rt.stop_container(cri::StopContainerRequest {
        container_id: ids[0].clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the stopped container's cgroup files stayed open",
        async || {
            let _ = list(&mut rt, Some(only_this_pod.clone())).await;
            (open_cgroup_files(pid) == before + 5).then_some(())
        },
    )
    .await;
    // Removed: the other container's files are closed as soon as Docker reports it gone,
    // without any further stats call.
    common::pods::stop_and_remove_pod(&mut rt, &p.id).await;
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the removed pod's cgroup files stayed open",
        async || (open_cgroup_files(pid) == before).then_some(()),
    )
    .await;
}
