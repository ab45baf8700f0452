//! The pod lifecycle side by side: each CRI call (RunPodSandbox … RemovePodSandbox) next to the
//! Docker API calls that are its floor, made directly with bollard with the same images and
//! the configuration the daemon gave its own containers (see [`Bodies`]); concurrent pod
//! start-ups; resident memory under pods and churn.
//!
//! Everything created here (through CRI or directly) carries the label [`BENCH_LABEL`]`=1`, and
//! [`cleanup`] removes every container with it, at start and at end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::client::Conn;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;

use crate::{Row, Stats, paired_ratio_ci, row, stats};

/// The Docker label on everything the benchmark creates.
pub const BENCH_LABEL: &str = "cri-bench";
/// The grace period of StopContainer, both ways (seconds).
const STOP_GRACE: i64 = 2;

/// Images used by the lifecycle benchmark (the pause image is the daemon's
/// `--pod-infra-container-image`; the direct floor copies the daemon's pause container).
#[derive(Clone)]
pub struct Images {
    pub busybox: String,
}

/// Remove every container labelled [`BENCH_LABEL`]; returns how many were removed.
pub async fn cleanup(docker: &Docker) -> anyhow::Result<usize> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{BENCH_LABEL}=1")])]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    // Containers first, pause containers last (others join their namespaces).
    let mut ids: Vec<(bool, String)> = list
        .into_iter()
        .filter_map(|c| {
            let pause = c
                .labels
                .as_ref()
                .and_then(|l| l.get("io.kubernetes.docker.type"))
                .is_some_and(|t| t == "podsandbox")
                || c.labels
                    .as_ref()
                    .and_then(|l| l.get("cri-bench.role"))
                    .is_some_and(|r| r == "pause");
            c.id.map(|id| (pause, id))
        })
        .collect();
    ids.sort();
    let n = ids.len();
    for (_, id) in ids {
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    link: false,
                }),
            )
            .await;
    }
    Ok(n)
}

pub fn unique(tag: &str, i: usize) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{:x}-{}-{i}", n & 0xffff_ffff, std::process::id())
}

fn pod_config(uid: &str, log_dir: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("bench-{uid}"),
            namespace: "cri-bench".into(),
            uid: uid.into(),
            attempt: 0,
        }),
        log_directory: log_dir.into(),
        labels: HashMap::from([(BENCH_LABEL.to_string(), "1".to_string())]),
        ..Default::default()
    }
}

fn container_config(image: &str, name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        labels: HashMap::from([(BENCH_LABEL.to_string(), "1".to_string())]),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

/// A pod made through CRI: sandbox id and container ids.
pub struct CriPod {
    pub sandbox: String,
    pub containers: Vec<String>,
}

/// A sandbox with `containers` busybox `sleep` containers (`c0`, `c1`, …), started if `start`.
pub async fn cri_run_pod(
    rt: &mut RuntimeServiceClient<Conn>,
    uid: &str,
    log_dir: &str,
    images: &Images,
    containers: usize,
    start: bool,
) -> anyhow::Result<CriPod> {
    let config = pod_config(uid, log_dir);
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let mut pod = CriPod {
        sandbox,
        containers: Vec::new(),
    };
    for j in 0..containers {
        let id = cri_create(rt, &pod.sandbox, &config, images, &format!("c{j}")).await?;
        if start {
            rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        }
        pod.containers.push(id);
    }
    Ok(pod)
}

async fn cri_create(
    rt: &mut RuntimeServiceClient<Conn>,
    sandbox: &str,
    config: &cri::PodSandboxConfig,
    images: &Images,
    name: &str,
) -> anyhow::Result<String> {
    Ok(rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(container_config(&images.busybox, name)),
            sandbox_config: Some(config.clone()),
        })
        .await?
        .into_inner()
        .container_id)
}

/// StopPodSandbox then RemovePodSandbox.
pub async fn cri_remove_pod(rt: &mut RuntimeServiceClient<Conn>, id: &str) -> anyhow::Result<()> {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await?;
    Ok(())
}

fn labels(role: &str) -> HashMap<String, String> {
    HashMap::from([
        (BENCH_LABEL.to_string(), "1".to_string()),
        ("cri-bench.role".to_string(), role.to_string()),
    ])
}

/// The create bodies of the direct floor: copies of the configuration the daemon itself gave
/// a pod's pause container and a workload container (image, command, host config with its
/// mounts, cgroup parent, security options, namespaces …), so that both sides create, start,
/// stop and remove containers Docker sees as the same. Only the labels differ (the bench's
/// own, so the daemon does not track the copies) and the namespaces joined (the copy's pause).
#[derive(Clone)]
pub struct Bodies {
    pause: ContainerCreateBody,
    container: ContainerCreateBody,
}

impl Bodies {
    fn pause(&self) -> ContainerCreateBody {
        self.pause.clone()
    }

    /// The workload container, joined to pause container `pause`'s namespaces where the
    /// daemon's joined its own.
    fn container(&self, pause: &str) -> ContainerCreateBody {
        let mut b = self.container.clone();
        let join = format!("container:{pause}");
        if let Some(h) = b.host_config.as_mut() {
            for mode in [&mut h.network_mode, &mut h.ipc_mode, &mut h.pid_mode] {
                if mode.as_deref().is_some_and(|m| m.starts_with("container:")) {
                    *mode = Some(join.clone());
                }
            }
        }
        b
    }
}

/// A pod made through CRI (one container, created) whose containers' configuration the
/// direct floor copies; it stays until [`Template::remove`] (the copies' bind mounts point into
/// its files).
pub struct Template {
    pub bodies: Bodies,
    sandbox: String,
}

impl Template {
    pub async fn make(
        rt: &mut RuntimeServiceClient<Conn>,
        docker: &Docker,
        images: &Images,
        log_dir: &str,
    ) -> anyhow::Result<Template> {
        let pod = cri_run_pod(rt, &unique("template", 0), log_dir, images, 1, false).await?;
        let copy = |id: String, role: &'static str| async move {
            let i = docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await?;
            let config = serde_json::to_value(i.config.unwrap_or_default())?;
            let mut b: ContainerCreateBody = serde_json::from_value(config)?;
            b.host_config = i.host_config;
            b.labels = Some(labels(role));
            anyhow::Ok(b)
        };
        let mut container = copy(pod.containers[0].clone(), "container").await?;
        // Inspect reports the hostname Docker gave it (the pause container's); a container
        // joining another's network may not ask for one.
        container.hostname = None;
        container.domainname = None;
        let bodies = Bodies {
            pause: copy(pod.sandbox.clone(), "pause").await?,
            container,
        };
        Ok(Template {
            bodies,
            sandbox: pod.sandbox,
        })
    }

    pub async fn remove(self, rt: &mut RuntimeServiceClient<Conn>) -> anyhow::Result<()> {
        cri_remove_pod(rt, &self.sandbox).await
    }
}

async fn direct_create(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> anyhow::Result<String> {
    Ok(docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.into()),
                ..Default::default()
            }),
            body,
        )
        .await?
        .id)
}

async fn direct_start(docker: &Docker, id: &str) -> anyhow::Result<()> {
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await?;
    Ok(())
}

async fn direct_stop(docker: &Docker, id: &str, t: i32) -> anyhow::Result<()> {
    docker
        .stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(t),
                signal: None,
            }),
        )
        .await?;
    Ok(())
}

async fn direct_remove(docker: &Docker, id: &str) -> anyhow::Result<()> {
    docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                link: false,
            }),
        )
        .await?;
    Ok(())
}

/// Names of the seven lifecycle steps, with the Docker calls that are their floor.
const STEPS: [(&str, &str); 7] = [
    ("RunPodSandbox", "create+start pause"),
    ("CreateContainer", "create busybox"),
    ("StartContainer", "start"),
    ("StopContainer", "stop t=2"),
    ("RemoveContainer", "rm -f"),
    ("StopPodSandbox", "stop pause"),
    ("RemovePodSandbox", "rm -f pause"),
];

async fn timed<T, E: Into<anyhow::Error>>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<(T, Duration)> {
    let t = Instant::now();
    let v = f.await.map_err(Into::into)?;
    Ok((v, t.elapsed()))
}

/// One CRI lifecycle: the seven durations.
async fn cri_lifecycle(
    rt: &mut RuntimeServiceClient<Conn>,
    images: &Images,
    log_dir: &str,
    i: usize,
) -> anyhow::Result<[Duration; 7]> {
    let uid = unique("lc", i);
    let config = pod_config(&uid, log_dir);
    let mut d = [Duration::ZERO; 7];
    let (sb, t) = timed(rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    }))
    .await?;
    d[0] = t;
    let sb = sb.into_inner().pod_sandbox_id;
    let (c, t) = timed(cri_create(rt, &sb, &config, images, "sleeper")).await?;
    d[1] = t;
    let container_id = || c.clone();
    d[2] = timed(rt.start_container(cri::StartContainerRequest {
        container_id: container_id(),
    }))
    .await?
    .1;
    d[3] = timed(rt.stop_container(cri::StopContainerRequest {
        container_id: container_id(),
        timeout: STOP_GRACE,
    }))
    .await?
    .1;
    d[4] = timed(rt.remove_container(cri::RemoveContainerRequest {
        container_id: container_id(),
    }))
    .await?
    .1;
    d[5] = timed(rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    }))
    .await?
    .1;
    d[6] = timed(rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb }))
        .await?
        .1;
    Ok(d)
}

/// The same lifecycle with direct Docker calls.
async fn direct_lifecycle(
    docker: &Docker,
    bodies: &Bodies,
    i: usize,
) -> anyhow::Result<[Duration; 7]> {
    let mut d = [Duration::ZERO; 7];
    let name = unique("bench-direct-pause", i);
    let (pause, t) = timed(async {
        let id = direct_create(docker, &name, bodies.pause()).await?;
        direct_start(docker, &id).await?;
        anyhow::Ok(id)
    })
    .await?;
    d[0] = t;
    let name = unique("bench-direct-sleeper", i);
    let (c, t) = timed(direct_create(docker, &name, bodies.container(&pause))).await?;
    d[1] = t;
    d[2] = timed(direct_start(docker, &c)).await?.1;
    d[3] = timed(direct_stop(docker, &c, STOP_GRACE as i32)).await?.1;
    d[4] = timed(direct_remove(docker, &c)).await?.1;
    d[5] = timed(direct_stop(docker, &pause, 10)).await?.1;
    d[6] = timed(direct_remove(docker, &pause)).await?.1;
    Ok(d)
}

/// The lifecycle rows: `reps` alternating CRI and direct rounds, medians and ratios.
pub async fn lifecycle_rows(
    rt: &RuntimeServiceClient<Conn>,
    docker: &Docker,
    images: &Images,
    log_dir: &str,
    reps: usize,
) -> anyhow::Result<(Vec<Row>, Hops)> {
    let mut rt = rt.clone();
    let template = Template::make(&mut rt, docker, images, log_dir).await?;
    let result = async {
        let rounds =
            lifecycle_rounds(&mut rt, docker, images, &template.bodies, log_dir, reps).await?;
        let hops = hops(&mut rt, docker, &template.bodies, reps).await?;
        anyhow::Ok((rounds, hops))
    }
    .await;
    template.remove(&mut rt).await?;
    let ((cri_s, dir_s), hops) = result?;
    let rows = STEPS
        .iter()
        .zip(cri_s.into_iter().zip(dir_s))
        .map(|((cri_name, floor), (c, d))| {
            let ci = paired_ratio_ci(&c, &d);
            Row {
                ratio_ci95: Some(ci),
                ..row(
                    &format!("{cri_name} (vs {floor})"),
                    stats(c),
                    Some(stats(d)),
                )
            }
        })
        .collect();
    Ok((rows, hops))
}

/// Round trips that do no work, the part of a lifecycle call's time that is transport alone.
#[derive(Debug, serde::Serialize)]
pub struct Hops {
    /// A CRI call answered from the daemon's memory (ListContainers filtered to an ID that
    /// does not exist) made right after the bench removed a container through Docker: the
    /// state RemoveContainer's and RemovePodSandbox's answers travel in (dockerd and
    /// fuse-overlayfs have just worked on both vCPUs, caches are cold).
    pub cri_after_removal: Stats,
    /// The same call made again at once (warm).
    pub cri_after_call: Stats,
    /// Docker's `GET /_ping` right after a removal: the floor's own round trip.
    pub docker_after_removal: Stats,
    /// The CRI call after [`IDLE`] of nothing (no Docker work): whether a removal's cost to
    /// the next round trip is idleness or what Docker does meanwhile.
    pub cri_after_idle: Stats,
    /// Docker's ping after [`IDLE`] of nothing.
    pub docker_after_idle: Stats,
}

/// How long the bench waits after the last removal before the "after idle" round trips.
const QUIET: Duration = Duration::from_millis(500);

/// The pause before the "after idle" round trips: about as long as a removal takes here.
/// (Measured 2026-12-03: 0.38-0.45 ms for the CRI no-op and 0.55-0.74 ms for Docker's ping,
/// which dials per request, after it; 0.13 and 0.15 ms warm.)
pub const IDLE: Duration = Duration::from_millis(5);

/// [`Hops`]: `reps` rounds, each one direct create + remove then the CRI pair, and one more
/// then the Docker ping; then, after [`QUIET`], `reps` rounds of each side after [`IDLE`]
/// without any work (which goes first alternates).
async fn hops(
    rt: &mut RuntimeServiceClient<Conn>,
    docker: &Docker,
    bodies: &Bodies,
    reps: usize,
) -> anyhow::Result<Hops> {
    let request = || cri::ListContainersRequest {
        filter: Some(cri::ContainerFilter {
            id: "0".repeat(64),
            ..Default::default()
        }),
    };
    let (mut cold, mut warm, mut ping) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cri_idle, mut ping_idle) = (Vec::new(), Vec::new());
    for i in 0..reps.max(1) {
        let cri_first = i % 2 == 0;
        for (k, cri_side) in [cri_first, !cri_first].into_iter().enumerate() {
            let id = direct_create(docker, &unique("bench-hop", 2 * i + k), bodies.pause()).await?;
            direct_remove(docker, &id).await?;
            if cri_side {
                cold.push(timed(rt.list_containers(request())).await?.1);
                warm.push(timed(rt.list_containers(request())).await?.1);
            } else {
                ping.push(timed(docker.ping()).await?.1);
            }
        }
    }
    // Away from any removal: Docker's clean-up after the last one is over first.
    tokio::time::sleep(QUIET).await;
    for i in 0..reps.max(1) {
        let cri_first = i % 2 == 0;
        for cri_side in [cri_first, !cri_first] {
            tokio::time::sleep(IDLE).await;
            if cri_side {
                cri_idle.push(timed(rt.list_containers(request())).await?.1);
            } else {
                ping_idle.push(timed(docker.ping()).await?.1);
            }
        }
    }
    Ok(Hops {
        cri_after_removal: stats(cold),
        cri_after_call: stats(warm),
        docker_after_removal: stats(ping),
        cri_after_idle: stats(cri_idle),
        docker_after_idle: stats(ping_idle),
    })
}

type Samples = Vec<Vec<Duration>>;

/// One warm-up round each way (not counted), then `reps` rounds of both, the side that goes
/// first alternating.
async fn lifecycle_rounds(
    rt: &mut RuntimeServiceClient<Conn>,
    docker: &Docker,
    images: &Images,
    bodies: &Bodies,
    log_dir: &str,
    reps: usize,
) -> anyhow::Result<(Samples, Samples)> {
    cri_lifecycle(rt, images, log_dir, 0).await?;
    direct_lifecycle(docker, bodies, 0).await?;
    let mut cri_s: Samples = vec![Vec::new(); 7];
    let mut dir_s: Samples = vec![Vec::new(); 7];
    for i in 1..=reps.max(1) {
        // Which side goes first alternates: Docker is still busy for a moment after a
        // removal, and that should not always fall on the same side.
        let (c, d) = if i % 2 == 1 {
            let c = cri_lifecycle(rt, images, log_dir, i).await?;
            (c, direct_lifecycle(docker, bodies, i).await?)
        } else {
            let d = direct_lifecycle(docker, bodies, i).await?;
            (cri_lifecycle(rt, images, log_dir, i).await?, d)
        };
        for k in 0..7 {
            cri_s[k].push(c[k]);
            dir_s[k].push(d[k]);
        }
    }
    Ok((cri_s, dir_s))
}

/// Concurrent pod start-ups: wall time for `n` pods at once and each pod's time.
#[derive(Debug, serde::Serialize)]
pub struct Concurrent {
    pub pods: usize,
    pub cri_wall_ms: f64,
    pub direct_wall_ms: f64,
    pub ratio: f64,
    pub cri_per_pod: Stats,
    pub direct_per_pod: Stats,
}

/// `n` pods (sandbox + started container) at once, through CRI and then directly.
pub async fn concurrent_startups(
    rt: &RuntimeServiceClient<Conn>,
    docker: &Docker,
    images: &Images,
    log_dir: &str,
    n: usize,
) -> anyhow::Result<Concurrent> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut rt = rt.clone();
        let images = images.clone();
        let log_dir = log_dir.to_string();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let pod = cri_run_pod(&mut rt, &unique("cc", i), &log_dir, &images, 1, true).await?;
            anyhow::Ok((pod, t.elapsed()))
        }));
    }
    let mut cri_times = Vec::new();
    let mut pods = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await? {
            Ok((p, d)) => {
                cri_times.push(d);
                pods.push(p);
            }
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let cri_wall = started.elapsed();
    for p in &pods {
        cri_remove_pod(&mut rt.clone(), &p.sandbox).await?;
    }
    if let Some(e) = first_err {
        return Err(e.context("concurrent CRI pod start-up"));
    }

    let template = Template::make(&mut rt.clone(), docker, images, log_dir).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let docker = docker.clone();
        let bodies = template.bodies.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let pause =
                direct_create(&docker, &unique("bench-cc-pause", i), bodies.pause()).await?;
            direct_start(&docker, &pause).await?;
            let c = direct_create(
                &docker,
                &unique("bench-cc-sleeper", i),
                bodies.container(&pause),
            )
            .await?;
            direct_start(&docker, &c).await?;
            anyhow::Ok(((pause, c), t.elapsed()))
        }));
    }
    let mut dir_times = Vec::new();
    let mut made = Vec::new();
    for t in tasks {
        match t.await? {
            Ok((ids, d)) => {
                dir_times.push(d);
                made.push(ids);
            }
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let direct_wall = started.elapsed();
    for (pause, c) in made {
        let _ = direct_remove(docker, &c).await;
        let _ = direct_remove(docker, &pause).await;
    }
    template.remove(&mut rt.clone()).await?;
    if let Some(e) = first_err {
        return Err(e.context("concurrent direct pod start-up"));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Concurrent {
        pods: n,
        cri_wall_ms: ms(cri_wall),
        direct_wall_ms: ms(direct_wall),
        ratio: cri_wall.as_secs_f64() / direct_wall.as_secs_f64(),
        cri_per_pod: stats(cri_times),
        direct_per_pod: stats(dir_times),
    })
}

/// How long after the last churn cycle resident memory is read: what the daemon holds once the
/// burst is over. tokio ends a blocking-pool thread after 10 s idle, and until then its stack
/// (tens to hundreds of KiB touched) counts as resident; what the thread frees as it ends goes
/// back to the kernel a second later ([`crate::QUIET_SETTLE`]).
pub const CHURN_SETTLE: Duration = Duration::from_millis(12_500);

/// `cycles` CreateContainer/RemoveContainer cycles in one sandbox (made and removed around
/// them); returns the daemon's resident memory (KiB) before and [`CHURN_SETTLE`] after.
pub async fn churn(
    rt: &RuntimeServiceClient<Conn>,
    images: &Images,
    log_dir: &str,
    pid: u32,
    cycles: usize,
) -> anyhow::Result<(u64, u64)> {
    tokio::time::sleep(crate::QUIET_SETTLE).await;
    let before = crate::rss_kib(pid);
    let mut rt = rt.clone();
    let uid = unique("churn", 0);
    let config = pod_config(&uid, log_dir);
    let pod = cri_run_pod(&mut rt, &uid, log_dir, images, 0, false).await?;
    for _ in 0..cycles {
        let c = cri_create(&mut rt, &pod.sandbox, &config, images, "sleeper").await?;
        rt.remove_container(cri::RemoveContainerRequest { container_id: c })
            .await?;
    }
    cri_remove_pod(&mut rt, &pod.sandbox).await?;
    tokio::time::sleep(CHURN_SETTLE).await;
    Ok((before, crate::rss_kib(pid)))
}
