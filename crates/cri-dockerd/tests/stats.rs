//! Stats over the real socket against the real dockerd: CPU rate of a burner against the
//! process's own CPU time, working set of 64 MiB in shm, pod network counters after traffic,
//! writable-layer usage, filters, non-running containers, error codes, quiet logging.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Daemon;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::Code;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const BUSYBOX: &str = "cri-dockerd-test/busybox:latest";

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n & 0xffff_ffff, std::process::id())
}

/// Removes every container of a pod uid on drop, also when the test failed.
struct PodCleanup(String);

impl Drop for PodCleanup {
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

struct Pod {
    id: String,
    config: cri::PodSandboxConfig,
    _cleanup: PodCleanup,
}

async fn daemon() -> Daemon {
    Daemon::start(&["--network-plugin=no-op"]).await
}

async fn pod(rt: &mut Rt, d: &Daemon, labels: &[(&str, &str)]) -> Pod {
    let uid = unique();
    let cleanup = PodCleanup(uid.clone());
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("pod-{uid}"),
            namespace: "stattest".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        log_directory: d
            .dir
            .path()
            .join("pods")
            .join(&uid)
            .to_string_lossy()
            .into_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    Pod {
        id,
        config,
        _cleanup: cleanup,
    }
}

async fn container(rt: &mut Rt, p: &Pod, name: &str, script: &str, start: bool) -> String {
    let cfg = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        labels: HashMap::from([("role".to_string(), name.to_string())]),
        ..Default::default()
    };
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: p.id.clone(),
            config: Some(cfg),
            sandbox_config: Some(p.config.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    if start {
        rt.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("StartContainer");
    }
    id
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

/// CPU time of `pid` (utime + stime) in nanoseconds, from /proc/<pid>/stat.
fn process_cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz: u64 = common::command_output("getconf", &["CLK_TCK"])
        .parse()
        .unwrap();
    ticks * (1_000_000_000 / hz)
}

fn pid_of(id: &str) -> u32 {
    common::docker(&["inspect", "-f", "{{.State.Pid}}", id])
        .parse()
        .unwrap()
}

#[tokio::test]
async fn cpu_burner_rate_matches_the_process_cpu_time() {
    require_docker!();
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &[]).await;
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
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &[]).await;
    let id = container(
        &mut rt,
        &p,
        "mem",
        "head -c 67108864 /dev/zero > /dev/shm/fill; sleep 1000",
        true,
    )
    .await;
    let target = 64u64 << 20;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = cstats(&mut rt, &id).await.memory.unwrap();
        let ws = v(&m.working_set_bytes);
        if ws >= target {
            assert!(ws <= target + target / 10, "working set {ws} vs 64 MiB");
            assert!(v(&m.usage_bytes) >= ws);
            let pm = pstats(&mut rt, &p.id).await.linux.unwrap().memory.unwrap();
            assert!(v(&pm.working_set_bytes) >= target, "pod working set");
            return;
        }
        assert!(Instant::now() < deadline, "working set stayed at {ws}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn pod_network_counters_grow_after_traffic() {
    require_docker!();
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &[]).await;
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
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &[]).await;
    let id = container(
        &mut rt,
        &p,
        "disk",
        "mkdir -p /data && for i in 1 2 3 4 5 6 7 8 9 10; do echo hi > /data/f$i; done; head -c 2097152 /dev/urandom > /data/big; sleep 1000",
        true,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cstats(&mut rt, &id).await;
        if let Some(w) = s.writable_layer {
            let (bytes, inodes) = (v(&w.used_bytes), v(&w.inodes_used));
            if bytes >= 2 << 20 {
                assert!(inodes >= 12, "inodes {inodes}");
                assert!(bytes < 4 << 20, "bytes {bytes}");
                assert!(w.timestamp > 0);
                assert!(!w.fs_id.unwrap().mountpoint.is_empty());
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "writable layer never reached 2 MiB"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &[]).await;
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
    let d = daemon().await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d, &[]).await;
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
