//! Bad input through the real socket, property style: random, huge, unicode and path-traversal
//! strings and out-of-range numbers in sandbox and container requests (a deterministic PRNG, so
//! a failure replays). Every call succeeds or gets a proper gRPC code (never Unknown), the daemon
//! never panics, and no file appears outside the directories it owns.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use common::Daemon;
use common::host::Rng;
use common::pods::unique;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::Code;
use tonic::transport::Channel;

/// Random requests sent per seed.
const CASES: usize = 120;
const SEED: u64 = 0xf022_0001;

/// Hostile values from the shared deterministic PRNG, so a failing case replays.
impl Rng {
    /// A hostile string; `escape` is a directory outside the daemon's, for traversal targets.
    fn string(&mut self, escape: &Path) -> String {
        let e = escape.display();
        match self.below(12) {
            0 => String::new(),
            1 => "a".repeat(1 + self.below(70_000) as usize),
            2 => "pöd-名前-🚀-\u{202e}rtl-\u{200b}".into(),
            3 => "../../etc/x".into(),
            4 => format!("../../../../..{e}/escape-{}", self.below(1000)),
            5 => format!("{e}/abs-escape-{}", self.below(1000)),
            6 => "a\0b".into(),
            7 => " \t\n=,;:\"'$(id)`id`".into(),
            8 => "/".into(),
            9 => "..".into(),
            10 => "UPPER_case.dots-and_underscores".into(),
            _ => (0..self.below(40))
                .map(|_| char::from_u32(0x20 + self.below(0x2fff) as u32).unwrap_or('x'))
                .collect(),
        }
    }

    fn int(&mut self) -> i64 {
        *self.pick(&[
            0,
            -1,
            i64::MIN,
            i64::MAX,
            1,
            -4096,
            1 << 40,
            i64::from(i32::MAX) + 1,
        ])
    }

    fn map(&mut self, escape: &Path, run: &str) -> HashMap<String, String> {
        let mut m = HashMap::from([("fuzz-run".to_string(), run.to_string())]);
        for _ in 0..self.below(4) {
            m.insert(self.string(escape), self.string(escape));
        }
        m
    }
}

/// Force-removes every container labelled with this run on drop.
struct RunCleanup(String);

impl Drop for RunCleanup {
    fn drop(&mut self) {
        let (_, ids) = common::docker_try(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=fuzz-run={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            let _ = common::docker_try(&["rm", "-f", id]);
        }
    }
}

fn timed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(Duration::from_secs(20));
    r
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.display().to_string());
        }
    }
    out
}

fn check(results: &mut BTreeMap<String, usize>, what: &str, r: Result<(), tonic::Status>) {
    let code = match &r {
        Ok(()) => "Ok".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    if let Err(s) = &r {
        // Internal is for our or dockerd's failures, not for bad input.
        assert!(
            !matches!(s.code(), Code::Unknown | Code::Cancelled | Code::Internal),
            "{what}: code {:?}: {}",
            s.code(),
            s.message()
        );
    }
    *results.entry(format!("{what}: {code}")).or_default() += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_proper_codes_and_write_nothing_outside() {
    require_docker!();
    let run = unique();
    let _cleanup = RunCleanup(run.clone());
    let mut d = Daemon::start(&[]).await;
    let escape = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let pod_logs = logs.path().join("pods").join("p");
    let mut rt: RuntimeServiceClient<Channel> = d.runtime().await;

    // One good sandbox and a running container to aim container calls at.
    let good_pod = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("fuzz-{run}"),
            namespace: "fuzz".into(),
            uid: format!("fuzz-{run}"),
            attempt: 0,
        }),
        log_directory: pod_logs.display().to_string(),
        labels: HashMap::from([("fuzz-run".to_string(), run.clone())]),
        ..Default::default()
    };
    let sb = rt
        .run_pod_sandbox(timed(cri::RunPodSandboxRequest {
            config: Some(good_pod.clone()),
            runtime_handler: String::new(),
        }))
        .await
        .expect("good sandbox")
        .into_inner()
        .pod_sandbox_id;

    // Targeted: log path traversal is refused, and nothing is created where it points.
    for (dir, path) in [
        (
            pod_logs.display().to_string(),
            "../../escape.log".to_string(),
        ),
        (
            pod_logs.display().to_string(),
            format!("{}/abs.log", escape.path().display()),
        ),
        (
            format!("{}/../../..{}", pod_logs.display(), escape.path().display()),
            "x.log".to_string(),
        ),
    ] {
        let mut sandbox_config = good_pod.clone();
        sandbox_config.log_directory = dir.clone();
        let err = rt
            .create_container(timed(cri::CreateContainerRequest {
                pod_sandbox_id: sb.clone(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "trav".into(),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: "cri-dockerd-test/busybox:latest".into(),
                        ..Default::default()
                    }),
                    command: vec!["true".into()],
                    labels: HashMap::from([("fuzz-run".to_string(), run.clone())]),
                    log_path: path.clone(),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config),
            }))
            .await
            .expect_err("log path traversal must be refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{dir} {path}: {err:?}");
        assert!(err.message().contains("log"), "{err:?}");
    }

    let mut rng = Rng(SEED);
    let mut results = BTreeMap::new();
    let started = Instant::now();
    for i in 0..CASES {
        let esc = escape.path();
        match rng.below(5) {
            0 => {
                let cfg = cri::PodSandboxConfig {
                    metadata: Some(cri::PodSandboxMetadata {
                        name: rng.string(esc),
                        namespace: rng.string(esc),
                        uid: rng.string(esc),
                        attempt: rng.next() as u32,
                    }),
                    hostname: rng.string(esc),
                    log_directory: rng.string(esc),
                    labels: rng.map(esc, &run),
                    annotations: rng.map(esc, &run),
                    dns_config: Some(cri::DnsConfig {
                        servers: vec![rng.string(esc)],
                        searches: vec![rng.string(esc)],
                        options: vec![rng.string(esc)],
                    }),
                    linux: Some(cri::LinuxPodSandboxConfig {
                        cgroup_parent: rng.string(esc),
                        sysctls: HashMap::from([(rng.string(esc), rng.string(esc))]),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let r = rt
                    .run_pod_sandbox(timed(cri::RunPodSandboxRequest {
                        config: Some(cfg),
                        runtime_handler: if rng.below(4) == 0 {
                            rng.string(esc)
                        } else {
                            String::new()
                        },
                    }))
                    .await;
                if let Ok(resp) = &r {
                    let id = resp.get_ref().pod_sandbox_id.clone();
                    let _ = rt
                        .remove_pod_sandbox(timed(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: id,
                        }))
                        .await;
                }
                check(&mut results, "RunPodSandbox", r.map(drop));
            }
            1 | 2 => {
                let mut sandbox_config = good_pod.clone();
                if rng.below(3) == 0 {
                    sandbox_config.log_directory = rng.string(esc);
                }
                let cfg = cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: rng.string(esc),
                        attempt: rng.next() as u32,
                    }),
                    image: Some(cri::ImageSpec {
                        image: if rng.below(3) == 0 {
                            rng.string(esc)
                        } else {
                            "cri-dockerd-test/busybox:latest".into()
                        },
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "1".into()],
                    args: vec![rng.string(esc)],
                    working_dir: rng.string(esc),
                    envs: vec![cri::KeyValue {
                        key: rng.string(esc),
                        value: rng.string(esc),
                    }],
                    mounts: vec![cri::Mount {
                        container_path: rng.string(esc),
                        host_path: if rng.below(2) == 0 {
                            rng.string(esc)
                        } else {
                            logs.path().display().to_string()
                        },
                        ..Default::default()
                    }],
                    labels: rng.map(esc, &run),
                    annotations: rng.map(esc, &run),
                    log_path: rng.string(esc),
                    linux: Some(cri::LinuxContainerConfig {
                        resources: Some(cri::LinuxContainerResources {
                            cpu_period: rng.int(),
                            cpu_quota: rng.int(),
                            cpu_shares: rng.int(),
                            memory_limit_in_bytes: rng.int(),
                            oom_score_adj: rng.int(),
                            cpuset_cpus: rng.string(esc),
                            cpuset_mems: rng.string(esc),
                            memory_swap_limit_in_bytes: rng.int(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let r = rt
                    .create_container(timed(cri::CreateContainerRequest {
                        pod_sandbox_id: sb.clone(),
                        config: Some(cfg),
                        sandbox_config: Some(sandbox_config),
                    }))
                    .await;
                match r {
                    Ok(resp) => {
                        let id = resp.into_inner().container_id;
                        let s = rt
                            .start_container(timed(cri::StartContainerRequest {
                                container_id: id.clone(),
                            }))
                            .await;
                        check(&mut results, "StartContainer", s.map(drop));
                        let s = rt
                            .remove_container(timed(cri::RemoveContainerRequest {
                                container_id: id,
                            }))
                            .await;
                        check(&mut results, "RemoveContainer", s.map(drop));
                        check(&mut results, "CreateContainer", Ok(()));
                    }
                    Err(e) => check(&mut results, "CreateContainer", Err(e)),
                }
            }
            3 => {
                let id = rng.string(esc);
                let r = match rng.below(5) {
                    0 => rt
                        .container_status(timed(cri::ContainerStatusRequest {
                            container_id: id,
                            verbose: true,
                        }))
                        .await
                        .map(drop),
                    1 => rt
                        .pod_sandbox_status(timed(cri::PodSandboxStatusRequest {
                            pod_sandbox_id: id,
                            verbose: true,
                        }))
                        .await
                        .map(drop),
                    2 => rt
                        .stop_container(timed(cri::StopContainerRequest {
                            container_id: id,
                            timeout: rng.int(),
                        }))
                        .await
                        .map(drop),
                    3 => rt
                        .start_container(timed(cri::StartContainerRequest { container_id: id }))
                        .await
                        .map(drop),
                    _ => rt
                        .remove_pod_sandbox(timed(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: id,
                        }))
                        .await
                        .map(drop),
                };
                check(&mut results, "by random id", r);
            }
            _ => {
                let r = rt
                    .list_containers(timed(cri::ListContainersRequest {
                        filter: Some(cri::ContainerFilter {
                            id: rng.string(esc),
                            pod_sandbox_id: rng.string(esc),
                            label_selector: rng.map(esc, &run),
                            state: Some(cri::ContainerStateValue {
                                state: rng.int() as i32,
                            }),
                        }),
                    }))
                    .await
                    .map(drop);
                check(&mut results, "ListContainers", r);
                let r = rt
                    .exec_sync(timed(cri::ExecSyncRequest {
                        container_id: rng.string(esc),
                        cmd: vec![rng.string(esc)],
                        timeout: rng.int(),
                    }))
                    .await
                    .map(drop);
                check(&mut results, "ExecSync", r);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "bounded: stopped at case {i}"
        );
    }
    eprintln!("{CASES} cases in {:?}:", started.elapsed());
    for (k, n) in &results {
        eprintln!("  {k}: {n}");
    }

    // Alive, no panic, nothing written outside.
    rt.version(timed(cri::VersionRequest::default()))
        .await
        .expect("the daemon is alive");
    assert!(
        matches!(d.child.try_wait(), Ok(None)),
        "daemon process still running"
    );
    let log = d.log();
    assert!(!log.contains("panicked"), "daemon panicked:\n{log}");
    let outside = files_under(escape.path());
    assert!(outside.is_empty(), "files written outside: {outside:?}");
    let above: Vec<_> = std::fs::read_dir(logs.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "pods")
        .collect();
    assert!(above.is_empty(), "files above the pod log dir: {above:?}");

    rt.stop_pod_sandbox(timed(cri::StopPodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    }))
    .await
    .unwrap();
    rt.remove_pod_sandbox(timed(cri::RemovePodSandboxRequest { pod_sandbox_id: sb }))
        .await
        .unwrap();
}
