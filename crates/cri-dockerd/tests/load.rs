//! Load and fault tests against the real dockerd: many pods at once; dockerd vanishing under
//! in-flight calls (a unix-socket proxy that is cut, so the shared dockerd keeps running); the
//! daemon SIGKILLed at random points of a lifecycle loop on a real CNI network (bridge +
//! host-local); a read-only or full root directory.
//! Each test is bounded (< 60 s on two cores) and removes what it made, also on failure.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Daemon;
use common::host::Rng;
use common::load::{NamespaceCleanup, assert_failed_as_unavailable, docker_ids, read_call, req};
use common::pods::{condition, unique, wait_runtime_ready};
use common::proxy::DockerProxy;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;

/// Pods started at once by `concurrent_pods_all_succeed_and_are_cleaned_up`.
const CONCURRENT_PODS: usize = 50;
/// Seeds of the SIGKILL test.
const KILL_SEEDS: [u64; 3] = [0x5eed_0001, 0x5eed_0002, 0x5eed_0003];
fn pod_config(ns: &str, uid: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        log_directory: log_dir.to_string_lossy().into_owned(),
        ..common::pods::pod_config(&format!("pod-{uid}"), ns, uid)
    }
}

fn container_config() -> cri::ContainerConfig {
    cri::ContainerConfig {
        log_path: "sleeper/0.log".into(),
        ..common::pods::container_config("sleeper", &["sleep", "600"])
    }
}

/// RunPodSandbox + CreateContainer + StartContainer; returns (sandbox id, container id).
async fn run_pod(
    rt: &mut RuntimeServiceClient<Channel>,
    ns: &str,
    uid: &str,
    log_dir: &Path,
) -> Result<(String, String), tonic::Status> {
    let config = pod_config(ns, uid, log_dir);
    let sb = rt
        .run_pod_sandbox(req(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }))
        .await?
        .into_inner()
        .pod_sandbox_id;
    let c = rt
        .create_container(req(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(container_config()),
            sandbox_config: Some(config),
        }))
        .await?
        .into_inner()
        .container_id;
    rt.start_container(req(cri::StartContainerRequest {
        container_id: c.clone(),
    }))
    .await?;
    Ok((sb, c))
}

/// IDs of the sandboxes CRI lists in pod namespace `ns` and of the containers in them.
async fn cri_ids(rt: &mut RuntimeServiceClient<Channel>, ns: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in rt
        .list_pod_sandbox(req(cri::ListPodSandboxRequest { filter: None }))
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
    {
        if s.metadata.as_ref().is_some_and(|m| m.namespace == ns) {
            out.insert(s.id);
        }
    }
    let containers = rt
        .list_containers(req(cri::ListContainersRequest { filter: None }))
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    let ids: Vec<String> = containers
        .into_iter()
        .filter(|c| out.contains(&c.pod_sandbox_id))
        .map(|c| c.id)
        .collect();
    out.extend(ids);
    out
}

/// Stop and remove every sandbox CRI lists in `ns`.
async fn remove_all_pods(rt: &mut RuntimeServiceClient<Channel>, ns: &str) {
    let sandboxes = rt
        .list_pod_sandbox(req(cri::ListPodSandboxRequest { filter: None }))
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    for s in sandboxes
        .into_iter()
        .filter(|s| s.metadata.as_ref().is_some_and(|m| m.namespace == ns))
    {
        rt.stop_pod_sandbox(req(cri::StopPodSandboxRequest {
            pod_sandbox_id: s.id.clone(),
        }))
        .await
        .expect("StopPodSandbox");
        rt.remove_pod_sandbox(req(cri::RemovePodSandboxRequest {
            pod_sandbox_id: s.id,
        }))
        .await
        .expect("RemovePodSandbox");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pods_all_succeed_and_are_cleaned_up() {
    require_docker!();
    let ns = format!("load-{}", unique());
    let _cleanup = NamespaceCleanup(ns.clone());
    let d = Daemon::start(&[]).await;
    let logs = tempfile::tempdir().unwrap();
    let rt = d.runtime().await;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..CONCURRENT_PODS {
        let mut rt = rt.clone();
        let ns = ns.clone();
        let log_dir = logs.path().to_path_buf();
        tasks.spawn(async move { run_pod(&mut rt, &ns, &format!("{ns}-{i}"), &log_dir).await });
    }
    let mut made = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let (sb, c) = r.unwrap().expect("every pod starts");
        made.insert(sb);
        made.insert(c);
    }
    eprintln!(
        "{CONCURRENT_PODS} pods started concurrently in {:?}",
        started.elapsed()
    );
    let mut rt = rt.clone();
    assert_eq!(made.len(), 2 * CONCURRENT_PODS);
    assert_eq!(cri_ids(&mut rt, &ns).await, made, "all listed");
    let running = rt
        .list_containers(req(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(
        running.iter().filter(|c| made.contains(&c.id)).count(),
        CONCURRENT_PODS,
        "all running"
    );
    assert_eq!(docker_ids(&ns), made, "docker has exactly these");

    remove_all_pods(&mut rt, &ns).await;
    assert!(cri_ids(&mut rt, &ns).await.is_empty(), "nothing listed");
    assert!(docker_ids(&ns).is_empty(), "nothing left in docker");
    let left: Vec<_> = std::fs::read_dir(d.root().join("sandbox"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no checkpoints left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dockerd_restart_under_load_fails_fast_and_recovers() {
    require_docker!();
    let ns = format!("load-{}", unique());
    let _cleanup = NamespaceCleanup(ns.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::started(&dir.path().join("docker.sock"));
    let d = Daemon::start(&[&proxy.endpoint_flag()]).await;
    let logs = tempfile::tempdir().unwrap();
    let mut rt = d.runtime().await;
    wait_runtime_ready(&mut rt, true, Duration::from_secs(20)).await;
    let mut pods = Vec::new();
    for i in 0..3 {
        pods.push(
            run_pod(&mut rt, &ns, &format!("{ns}-{i}"), logs.path())
                .await
                .expect("pod"),
        );
    }

    // Calls in flight from several tasks, until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = JoinSet::new();
    for w in 0..4 {
        let mut rt = rt.clone();
        let stop = stop.clone();
        let ns = ns.clone();
        let log_dir = logs.path().to_path_buf();
        let (sb, c) = pods[w % pods.len()].clone();
        load.spawn(async move {
            let mut codes: Vec<(Code, String, Duration)> = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let t = Instant::now();
                let r = match n % 4 {
                    0 => run_pod(&mut rt, &ns, &format!("{ns}-w{w}-{n}"), &log_dir)
                        .await
                        .map(drop),
                    // ListContainers, ContainerStatus, PodSandboxStatus.
                    k => read_call(&mut rt, k - 1, &sb, &c).await,
                };
                if let Err(e) = r {
                    codes.push((e.code(), e.message().to_string(), t.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            codes
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready_while_down = condition(&mut rt, "RuntimeReady").await.status;
    assert!(
        !ready_while_down,
        "RuntimeReady false while dockerd is away"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut errors = Vec::new();
    while let Some(r) = load.join_next().await {
        errors.extend(r.unwrap());
    }
    assert_failed_as_unavailable(&errors);

    proxy.start();
    wait_runtime_ready(&mut rt, true, Duration::from_secs(20)).await;
    let (sb, c) = run_pod(&mut rt, &ns, &format!("{ns}-after"), logs.path())
        .await
        .expect("a pod starts after dockerd came back");
    let listed = cri_ids(&mut rt, &ns).await;
    assert!(listed.contains(&sb) && listed.contains(&c));
    assert_eq!(listed, docker_ids(&ns), "List matches docker ps after");

    remove_all_pods(&mut rt, &ns).await;
    assert!(docker_ids(&ns).is_empty(), "nothing left in docker");
    proxy.stop().await;
}

/// Lifecycle loop: RunPodSandbox, CreateContainer, StartContainer, StopContainer,
/// RemoveContainer, StopPodSandbox, RemovePodSandbox, until a call fails (the daemon died).
async fn lifecycle_loop(mut rt: RuntimeServiceClient<Channel>, ns: String, log_dir: PathBuf) {
    for n in 0.. {
        let Ok((sb, c)) = run_pod(&mut rt, &ns, &format!("{ns}-k{n}"), &log_dir).await else {
            return;
        };
        let steps = async {
            rt.stop_container(req(cri::StopContainerRequest {
                container_id: c.clone(),
                timeout: 0,
            }))
            .await?;
            rt.remove_container(req(cri::RemoveContainerRequest { container_id: c }))
                .await?;
            rt.stop_pod_sandbox(req(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.clone(),
            }))
            .await?;
            rt.remove_pod_sandbox(req(cri::RemovePodSandboxRequest { pod_sandbox_id: sb }))
                .await?;
            Ok::<(), tonic::Status>(())
        };
        if steps.await.is_err() {
            return;
        }
    }
}

/// A bridge + host-local CNI network of its own for one test (Debian's plugins), its bridge
/// removed on drop.
struct TestNet {
    name: String,
    bridge: String,
    ipam: tempfile::TempDir,
}

const CNI_PLUGINS: &str = "/usr/lib/cni";

impl TestNet {
    /// `None` (a skip; a failure under CI) without root or the plugins.
    fn new() -> Option<TestNet> {
        if !(common::host::is_root() && Path::new(CNI_PLUGINS).join("bridge").exists()) {
            assert!(
                !common::required(),
                "needs root and /usr/lib/cni (scripts/test-env.sh)"
            );
            eprintln!("skipping: needs root and containernetworking-plugins");
            return None;
        }
        let id = format!("{:06x}", common::host::rand_u32() & 0xff_ffff);
        Some(TestNet {
            name: format!("cld-{id}"),
            bridge: format!("cld{id}"),
            ipam: tempfile::tempdir().unwrap(),
        })
    }

    fn flags(&self) -> [String; 2] {
        [
            "--network-plugin=cni".into(),
            format!("--cni-bin-dir={CNI_PLUGINS}"),
        ]
    }

    fn write_conflist(&self, d: &Daemon) {
        let r = common::host::rand_u32();
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [common::host::bridge_plugin(
                &self.bridge,
                serde_json::json!([[{"subnet": format!("10.{}.{}.0/24", 100 + r % 100, (r >> 8) % 256)}]]),
                self.ipam.path(),
            )]
        });
        std::fs::create_dir_all(d.cni_conf_dir()).unwrap();
        let tmp = d.cni_conf_dir().join(".tmp");
        std::fs::write(&tmp, list.to_string()).unwrap();
        std::fs::rename(tmp, d.cni_conf_dir().join("10-load.conflist")).unwrap();
    }

    /// Whether host-local ever handed out an address on this network.
    fn used(&self) -> bool {
        self.ipam.path().join(&self.name).is_dir()
    }

    /// The container (sandbox) IDs holding a host-local lease.
    fn lease_holders(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam.path().join(&self.name))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains('.'))
            .filter(|e| {
                !e.file_name()
                    .to_string_lossy()
                    .starts_with("last_reserved_ip")
            })
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| text.lines().next().map(|l| l.trim().to_string()))
            .collect()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Files in the daemon's CNI result cache: entries (`<network>-<sandbox id>-<interface>`) and
/// temporary files of writes a SIGKILL interrupted (`.<entry>.tmp`; start-up recovery removes
/// those of sandboxes that no longer run, StopPodSandbox those of its own).
fn cni_cache_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.dir.path().join("cni-cache").join("results"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn recoveries(d: &Daemon) -> usize {
    d.log().matches("start-up recovery done").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_lifecycle_leaves_nothing_behind() {
    require_docker!();
    let Some(net) = TestNet::new() else { return };
    let ns = format!("load-{}", unique());
    let _cleanup = NamespaceCleanup(ns.clone());
    let flags = net.flags();
    let mut d = Daemon::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    net.write_conflist(&d);
    let logs = tempfile::tempdir().unwrap();
    for (round, seed) in KILL_SEEDS.iter().enumerate() {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        // Recovery of the previous start finished.
        let deadline = Instant::now() + Duration::from_secs(20);
        while recoveries(&d) < round + 1 {
            assert!(Instant::now() < deadline, "no recovery; log:\n{}", d.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let worker = tokio::spawn(lifecycle_loop(
            d.runtime().await,
            ns.clone(),
            logs.path().to_path_buf(),
        ));
        let delay = Duration::from_millis(200 + rng.next() % 2500);
        tokio::time::sleep(delay).await;
        eprintln!("seed {seed:#x}: SIGKILL after {delay:?}");
        if round + 1 == KILL_SEEDS.len() {
            // A kill seldom lands inside a file write: leave what one inside each of the two
            // atomic writes would (a sandbox that never ran), for the checks below.
            let never_ran = "f".repeat(64);
            let results = d.dir.path().join("cni-cache").join("results");
            std::fs::create_dir_all(&results).unwrap();
            std::fs::write(
                results.join(format!(".{}-{never_ran}-eth0.tmp", net.name)),
                "{",
            )
            .unwrap();
            std::fs::create_dir_all(d.root().join("sandbox")).unwrap();
            std::fs::write(
                d.root().join("sandbox").join(format!(".{never_ran}.tmp")),
                "{",
            )
            .unwrap();
        }
        d.kill_and_restart().await;
        tokio::time::timeout(Duration::from_secs(20), worker)
            .await
            .expect("the loop ends when the daemon dies")
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while recoveries(&d) < KILL_SEEDS.len() + 1 {
        assert!(Instant::now() < deadline, "no recovery; log:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut rt = d.runtime().await;
    let listed = cri_ids(&mut rt, &ns).await;
    let in_docker = docker_ids(&ns);
    let leaked: Vec<_> = in_docker.difference(&listed).collect();
    assert!(
        leaked.is_empty(),
        "containers in docker that CRI does not list: {leaked:?}"
    );
    let sandboxes: BTreeSet<String> = rt
        .list_pod_sandbox(req(cri::ListPodSandboxRequest { filter: None }))
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    for e in std::fs::read_dir(d.root().join("sandbox"))
        .into_iter()
        .flatten()
        .flatten()
    {
        // Start-up recovery removed the temporary files of interrupted writes too.
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            sandboxes.contains(&name),
            "checkpoint {name} has no listed sandbox"
        );
    }
    let pending: Vec<_> = std::fs::read_dir(d.root().join("pending"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(pending.is_empty(), "intent markers left: {pending:?}");
    // Network attachments only of listed sandboxes (start-up recovery released the others).
    assert!(
        net.used(),
        "no pod ever got an address: the loop never got far"
    );
    for f in cni_cache_files(&d) {
        assert!(
            sandboxes.iter().any(|sb| f.contains(sb.as_str())),
            "CNI cache entry {f} has no listed sandbox"
        );
    }
    for holder in net.lease_holders() {
        assert!(
            sandboxes.contains(&holder),
            "IP lease of {holder}, which is not a listed sandbox"
        );
    }

    // What is listed can be removed: afterwards nothing is left anywhere.
    remove_all_pods(&mut rt, &ns).await;
    let orphans: Vec<_> = docker_ids(&ns).into_iter().collect();
    assert!(
        orphans.is_empty(),
        "left in docker after removal: {orphans:?}"
    );
    assert!(cri_ids(&mut rt, &ns).await.is_empty());
    assert!(cni_cache_files(&d).is_empty(), "{:?}", cni_cache_files(&d));
    assert!(net.lease_holders().is_empty(), "{:?}", net.lease_holders());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

/// A mount over a directory, unmounted on drop.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount(args: &[&str], target: &Path) -> Option<MountGuard> {
    let st = std::process::Command::new("mount")
        .args(args)
        .arg(target)
        .status()
        .ok()?;
    if !st.success() {
        if common::required() {
            panic!("mount {args:?} failed");
        }
        eprintln!("skipping: cannot mount {args:?} (not root?)");
        return None;
    }
    Some(MountGuard(target.to_path_buf()))
}

/// RunPodSandbox into an unwritable checkpoint directory: a clear error, nothing left behind.
async fn sandbox_fails_cleanly(d: &Daemon, ns: &str, want_in_message: &str) {
    let logs = tempfile::tempdir().unwrap();
    let mut rt = d.runtime().await;
    let err = rt
        .run_pod_sandbox(req(cri::RunPodSandboxRequest {
            config: Some(pod_config(ns, &format!("{ns}-0"), logs.path())),
            runtime_handler: String::new(),
        }))
        .await
        .expect_err("RunPodSandbox must fail");
    assert!(
        matches!(
            err.code(),
            Code::Internal | Code::ResourceExhausted | Code::FailedPrecondition
        ),
        "{err:?}"
    );
    assert!(
        err.message().contains("checkpoint") && err.message().contains(want_in_message),
        "clear message: {err:?}"
    );
    assert!(docker_ids(ns).is_empty(), "no container left behind");
    assert!(cri_ids(&mut rt, ns).await.is_empty(), "nothing listed");
    // The daemon still serves.
    rt.version(req(cri::VersionRequest::default()))
        .await
        .expect("still alive");
}

#[tokio::test]
async fn read_only_root_directory_fails_cleanly() {
    require_docker!();
    let ns = format!("load-{}", unique());
    let _cleanup = NamespaceCleanup(ns.clone());
    let d = Daemon::start(&[]).await;
    let target = d.root().join("sandbox");
    std::fs::create_dir_all(&target).unwrap();
    let src = tempfile::tempdir().unwrap();
    let Some(_m) = mount(
        &["--bind", "-o", "ro", &src.path().to_string_lossy()],
        &target,
    ) else {
        return;
    };
    sandbox_fails_cleanly(&d, &ns, "Read-only file system").await;
}

#[tokio::test]
async fn full_root_directory_fails_cleanly() {
    require_docker!();
    let ns = format!("load-{}", unique());
    let _cleanup = NamespaceCleanup(ns.clone());
    let d = Daemon::start(&[]).await;
    let target = d.root().join("sandbox");
    std::fs::create_dir_all(&target).unwrap();
    let Some(_m) = mount(&["-t", "tmpfs", "-o", "size=64k", "tmpfs"], &target) else {
        return;
    };
    // Fill it up.
    let filler = target.join(".filler");
    let chunk = vec![0u8; 4096];
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    sandbox_fails_cleanly(&d, &ns, "No space left").await;
}
