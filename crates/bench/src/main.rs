//! `cri-bench`: starts cri-dockerd on a temporary socket against the local dockerd and measures
//! CRI calls side by side with the raw Docker API calls that are their floor, in one run, with
//! medians over repetitions; prints a table of ratios and writes a JSON report.
//!
//! `cargo run --release -p cri-bench -- --daemon target/release/cri-dockerd --out bench.json`
//!
//! The pod lifecycle part lives in [`lifecycle`].

mod lifecycle;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use clap::Parser;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Parser, Debug)]
#[command(about = "Benchmark cri-dockerd against direct Docker API calls")]
struct Args {
    /// The cri-dockerd binary to start.
    #[arg(long, default_value = "target/release/cri-dockerd")]
    daemon: PathBuf,
    /// Docker socket path.
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: String,
    /// Repetitions per measurement.
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Start-up measurements (daemon started this many times).
    #[arg(long, default_value_t = 5)]
    startups: usize,
    /// Image used for ImageStatus.
    #[arg(long, default_value = "cri-dockerd-test/busybox:latest")]
    image: String,
    /// Image of the pod sandbox (pause) containers, both ways.
    #[arg(long, default_value = "cri-dockerd-test/pause:latest")]
    pause_image: String,
    /// Lifecycle rounds (each: one pod through CRI and one directly), after one warm-up.
    #[arg(long, default_value_t = 7)]
    lifecycle_reps: usize,
    /// Pods started at once in the concurrency measurement.
    #[arg(long, default_value_t = 20)]
    concurrent: usize,
    /// Pods alive for the "RSS with pods" measurement.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Create/remove cycles of a container for the "RSS after churn" measurement.
    #[arg(long, default_value_t = 200)]
    churn: usize,
    /// Only the call-latency part (no containers are created).
    #[arg(long)]
    calls_only: bool,
    /// Pod counts at which List/Status calls are measured (pods created through CRI, each
    /// with `--containers-per-pod` running containers); empty to skip.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    list_pods: Vec<usize>,
    /// Running containers per pod for the List/Status measurements.
    #[arg(long, default_value_t = 1)]
    containers_per_pod: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench.json")]
    out: PathBuf,
    /// Also measure ListContainerStats at these numbers of running pods (sandbox + one
    /// container each, created through CRI), next to one Docker stats call per container.
    #[arg(long, value_delimiter = ',')]
    stats_pods: Vec<usize>,
    /// Repetitions of ListContainerStats per pod count.
    #[arg(long, default_value_t = 30)]
    stats_reps: usize,
    /// Repetitions of the Docker side (one stats call per container takes about a second each
    /// on dockerd 20.10, so keep this small).
    #[arg(long, default_value_t = 2)]
    stats_docker_reps: usize,
    /// Skip the basic calls (Version, Status, images) and start-up measurements.
    #[arg(long)]
    only_stats: bool,
}

/// Latency statistics of one measurement, in microseconds.
#[derive(Debug, Clone, Serialize)]
struct Stats {
    n: usize,
    median_us: f64,
    p90_us: f64,
    min_us: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = samples.len();
    Stats {
        n,
        median_us: us(samples[n / 2]),
        p90_us: us(samples[(n * 9 / 10).min(n - 1)]),
        min_us: us(samples[0]),
    }
}

/// One CRI call next to its Docker floor.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    cri: Stats,
    docker: Option<Stats>,
    ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: Vec<Row>,
    stats_rows: Vec<Row>,
    startup_to_ready_ms: Stats,
    idle_rss_kib: u64,
    rss_after_calls_kib: u64,
    lifecycle: Vec<Row>,
    concurrent: Option<lifecycle::Concurrent>,
    memory: Option<lifecycle::Memory>,
}

async fn time_n<F, Fut>(reps: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Warm up connections and caches first.
    for _ in 0..reps.clamp(1, 10) {
        f().await?;
    }
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    Ok(stats(samples))
}

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_daemon(args: &Args) -> anyhow::Result<(Daemon, Duration)> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("cri.sock");
    let started = Instant::now();
    let child = Command::new(&args.daemon)
        .arg(format!(
            "--container-runtime-endpoint=unix://{}",
            socket.display()
        ))
        .arg(format!(
            "--cri-dockerd-root-directory={}",
            dir.path().join("root").display()
        ))
        .arg(format!("--docker-endpoint=unix://{}", args.docker_socket))
        .arg("--network-plugin=no-op")
        .arg(format!("--pod-infra-container-image={}", args.pause_image))
        .arg("--log-level=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.daemon.display()))?;
    let d = Daemon {
        child,
        _dir: dir,
        socket,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ch) = connect(&d.socket).await {
            let mut rt = RuntimeServiceClient::new(ch);
            if rt.version(cri::VersionRequest::default()).await.is_ok() {
                return Ok((d, started.elapsed()));
            }
        }
        if Instant::now() > deadline {
            bail!("cri-dockerd did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn connect(path: &std::path::Path) -> anyhow::Result<Channel> {
    let path = path.to_path_buf();
    Ok(Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await?)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn row(name: &str, cri: Stats, docker: Option<Stats>) -> Row {
    let ratio = docker.as_ref().map(|d| cri.median_us / d.median_us);
    Row {
        name: name.into(),
        cri,
        docker,
        ratio,
    }
}

/// Pods created through CRI for the List/Status measurements; removed at the end (and by
/// namespace label through Docker if anything is left).
struct Pods {
    namespace: String,
    sandboxes: Vec<String>,
    containers: Vec<String>,
}

async fn grow_pods(
    rt: &mut RuntimeServiceClient<Channel>,
    pods: &mut Pods,
    n: usize,
    per_pod: usize,
    image: &str,
) -> anyhow::Result<()> {
    while pods.sandboxes.len() < n {
        let i = pods.sandboxes.len();
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: format!("bench-{i}"),
                namespace: pods.namespace.clone(),
                uid: format!("{}-{i}", pods.namespace),
                attempt: 0,
            }),
            ..Default::default()
        };
        let sb = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        pods.sandboxes.push(sb.clone());
        for j in 0..per_pod {
            let c = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sb.clone(),
                    config: Some(cri::ContainerConfig {
                        metadata: Some(cri::ContainerMetadata {
                            name: format!("c{j}"),
                            attempt: 0,
                        }),
                        image: Some(cri::ImageSpec {
                            image: image.to_string(),
                            ..Default::default()
                        }),
                        command: vec!["sleep".into(), "3600".into()],
                        ..Default::default()
                    }),
                    sandbox_config: Some(config.clone()),
                })
                .await?
                .into_inner()
                .container_id;
            rt.start_container(cri::StartContainerRequest {
                container_id: c.clone(),
            })
            .await?;
            pods.containers.push(c);
        }
    }
    Ok(())
}

async fn remove_pods(rt: &mut RuntimeServiceClient<Channel>, docker: &Docker, pods: &Pods) {
    for sb in &pods.sandboxes {
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.clone(),
            })
            .await;
    }
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("io.kubernetes.pod.namespace={}", pods.namespace)],
    )]);
    let left = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for c in left {
        if let Some(id) = c.id {
            let _ = docker
                .remove_container(
                    &id,
                    Some(bollard::query_parameters::RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
    }
}

fn docker_list_by_type(ty: &str) -> bollard::query_parameters::ListContainersOptions {
    bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("io.kubernetes.docker.type={ty}")],
        )])),
        ..Default::default()
    }
}

/// ListPodSandbox, ListContainers, PodSandboxStatus and ContainerStatus at `pods.len()` pods,
/// next to the Docker list/inspect calls they stand on.
async fn measure_lists(
    rt: &RuntimeServiceClient<Channel>,
    docker: &Docker,
    pods: &Pods,
    reps: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let n = pods.sandboxes.len();
    let c = time_n(reps, || {
        let mut rt = rt.clone();
        async move {
            Ok(rt
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await
                .map(drop)?)
        }
    })
    .await?;
    let d = time_n(reps, || {
        let docker = docker.clone();
        async move {
            Ok(docker
                .list_containers(Some(docker_list_by_type("podsandbox")))
                .await
                .map(drop)?)
        }
    })
    .await?;
    rows.push(row(
        &format!("ListPodSandbox @{n} pods (vs list)"),
        c,
        Some(d),
    ));
    let c = time_n(reps, || {
        let mut rt = rt.clone();
        async move {
            Ok(rt
                .list_containers(cri::ListContainersRequest { filter: None })
                .await
                .map(drop)?)
        }
    })
    .await?;
    let d = time_n(reps, || {
        let docker = docker.clone();
        async move {
            Ok(docker
                .list_containers(Some(docker_list_by_type("container")))
                .await
                .map(drop)?)
        }
    })
    .await?;
    rows.push(row(
        &format!("ListContainers @{n} pods (vs list)"),
        c,
        Some(d),
    ));
    let sb = pods.sandboxes[n / 2].clone();
    let c = time_n(reps, || {
        let mut rt = rt.clone();
        let sb = sb.clone();
        async move {
            Ok(rt
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: sb,
                    verbose: false,
                })
                .await
                .map(drop)?)
        }
    })
    .await?;
    let d = time_n(reps, || {
        let docker = docker.clone();
        let sb = sb.clone();
        async move {
            Ok(docker
                .inspect_container(
                    &sb,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .map(drop)?)
        }
    })
    .await?;
    rows.push(row(
        &format!("PodSandboxStatus @{n} pods (vs inspect)"),
        c,
        Some(d),
    ));
    if let Some(ctr) = pods.containers.get(pods.containers.len() / 2).cloned() {
        let c = time_n(reps, || {
            let mut rt = rt.clone();
            let ctr = ctr.clone();
            async move {
                Ok(rt
                    .container_status(cri::ContainerStatusRequest {
                        container_id: ctr,
                        verbose: false,
                    })
                    .await
                    .map(drop)?)
            }
        })
        .await?;
        let d = time_n(reps, || {
            let docker = docker.clone();
            let ctr = ctr.clone();
            async move {
                Ok(docker
                    .inspect_container(
                        &ctr,
                        None::<bollard::query_parameters::InspectContainerOptions>,
                    )
                    .await
                    .map(drop)?)
            }
        })
        .await?;
        rows.push(row(
            &format!("ContainerStatus @{n} pods (vs inspect)"),
            c,
            Some(d),
        ));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let docker = Docker::connect_with_unix(&args.docker_socket, 120, bollard::API_DEFAULT_VERSION)?
        .negotiate_version()
        .await?;
    let n = lifecycle::cleanup(&docker).await?;
    if n > 0 {
        eprintln!(
            "removed {n} leftover containers labelled {}=1",
            lifecycle::BENCH_LABEL
        );
    }
    let res = run(&args, &docker).await;
    let n = lifecycle::cleanup(&docker).await?;
    if n > 0 {
        eprintln!(
            "removed {n} containers labelled {}=1",
            lifecycle::BENCH_LABEL
        );
    }
    res
}

async fn run(args: &Args, docker: &Docker) -> anyhow::Result<()> {
    let mut startups = Vec::new();
    for _ in 0..if args.only_stats {
        1
    } else {
        args.startups.max(1)
    } {
        let (_d, t) = start_daemon(args).await?;
        startups.push(t);
    }
    let (daemon, _) = start_daemon(args).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(daemon.child.id());

    let ch = connect(&daemon.socket).await?;
    let rt = RuntimeServiceClient::new(ch.clone());
    let img = ImageServiceClient::new(ch);
    let reps = if args.only_stats { 1 } else { args.reps };
    let mut rows = Vec::new();

    let c = time_n(reps, || {
        let mut rt = rt.clone();
        async move { Ok(rt.version(cri::VersionRequest::default()).await.map(drop)?) }
    })
    .await?;
    let d = time_n(reps, || {
        let docker = docker.clone();
        async move { Ok(docker.version().await.map(drop)?) }
    })
    .await?;
    rows.push(row("Version (vs GET /version)", c, Some(d)));

    let c = time_n(reps, || {
        let mut rt = rt.clone();
        async move {
            Ok(rt
                .status(cri::StatusRequest { verbose: false })
                .await
                .map(drop)?)
        }
    })
    .await?;
    let d = time_n(reps, || {
        let docker = docker.clone();
        async move { Ok(docker.ping().await.map(drop)?) }
    })
    .await?;
    rows.push(row("Status (vs GET /_ping)", c, Some(d)));

    let c = time_n(reps, || {
        let mut img = img.clone();
        async move {
            Ok(img
                .list_images(cri::ListImagesRequest::default())
                .await
                .map(drop)?)
        }
    })
    .await;
    let d = time_n(reps, || {
        let docker = docker.clone();
        async move {
            Ok(docker
                .list_images(None::<bollard::query_parameters::ListImagesOptions>)
                .await
                .map(drop)?)
        }
    })
    .await?;
    match c {
        Ok(c) => rows.push(row("ListImages (vs GET /images/json)", c, Some(d))),
        Err(e) => eprintln!("ListImages not measured: {e}"),
    }

    let image = args.image.clone();
    let c = time_n(reps, || {
        let mut img = img.clone();
        let image = image.clone();
        async move {
            let req = cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image,
                    ..Default::default()
                }),
                verbose: false,
            };
            Ok(img.image_status(req).await.map(drop)?)
        }
    })
    .await;
    let d = time_n(reps, || {
        let docker = docker.clone();
        let image = image.clone();
        async move { Ok(docker.inspect_image(&image).await.map(drop)?) }
    })
    .await?;
    match c {
        Ok(c) => rows.push(row("ImageStatus (vs GET /images/{name}/json)", c, Some(d))),
        Err(e) => eprintln!("ImageStatus not measured: {e}"),
    }

    let mut counts = args.list_pods.clone();
    counts.sort_unstable();
    counts.dedup();
    if counts.iter().any(|&n| n > 0) {
        let mut pods = Pods {
            namespace: format!("bench-{}", std::process::id()),
            sandboxes: Vec::new(),
            containers: Vec::new(),
        };
        let mut rt2 = rt.clone();
        let mut result = Ok(());
        for &n in counts.iter().filter(|&&n| n > 0) {
            result = grow_pods(&mut rt2, &mut pods, n, args.containers_per_pod, &args.image).await;
            if result.is_err() {
                break;
            }
            // Let the event-fed view (if any) catch up with the burst.
            tokio::time::sleep(Duration::from_millis(500)).await;
            result = measure_lists(&rt, docker, &pods, reps, &mut rows).await;
            if result.is_err() {
                break;
            }
        }
        remove_pods(&mut rt2, docker, &pods).await;
        if let Err(e) = result {
            eprintln!("List/Status at N pods not measured: {e}");
        }
    }
    let rss_after_calls = rss_kib(daemon.child.id());
    let (mut lc, mut concurrent, mut memory) = (Vec::new(), None, None);
    if !args.calls_only {
        let images = lifecycle::Images {
            pause: args.pause_image.clone(),
            busybox: args.image.clone(),
        };
        let logs = tempfile::tempdir()?;
        let log_dir = logs.path().to_string_lossy().into_owned();
        eprintln!("lifecycle: {} rounds", args.lifecycle_reps);
        lc = lifecycle::lifecycle_rows(&rt, docker, &images, &log_dir, args.lifecycle_reps).await?;
        eprintln!("concurrent start-ups: {} pods", args.concurrent);
        concurrent = Some(
            lifecycle::concurrent_startups(&rt, docker, &images, &log_dir, args.concurrent).await?,
        );
        eprintln!("memory: {} pods, {} churn cycles", args.pods, args.churn);
        memory = Some(
            lifecycle::memory(
                &rt,
                &images,
                &log_dir,
                daemon.child.id(),
                idle_rss,
                args.pods,
                args.churn,
            )
            .await?,
        );
    }

    let stats_rows = if args.stats_pods.is_empty() {
        Vec::new()
    } else {
        stats_bench(args, docker, rt.clone()).await?
    };

    let report = Report {
        rows,
        stats_rows,
        lifecycle: lc,
        concurrent,
        memory,
        startup_to_ready_ms: {
            let s = stats(startups);
            Stats {
                n: s.n,
                median_us: s.median_us / 1000.0,
                p90_us: s.p90_us / 1000.0,
                min_us: s.min_us / 1000.0,
            }
        },
        idle_rss_kib: idle_rss,
        rss_after_calls_kib: rss_after_calls,
    };

    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "call", "cri median", "docker med.", "ratio"
    );
    for r in report
        .rows
        .iter()
        .chain(&report.lifecycle)
        .chain(report.stats_rows.iter())
    {
        println!(
            "{:<44} {:>10.0}us {:>10.0}us {:>8}",
            r.name,
            r.cri.median_us,
            r.docker.as_ref().map_or(f64::NAN, |d| d.median_us),
            r.ratio.map_or("-".into(), |x| if x >= 0.01 {
                format!("{x:.2}x")
            } else {
                format!("1/{:.0}x", 1.0 / x)
            })
        );
    }
    println!(
        "start-up to READY: median {:.1} ms (min {:.1} ms, n={})",
        report.startup_to_ready_ms.median_us,
        report.startup_to_ready_ms.min_us,
        report.startup_to_ready_ms.n
    );
    println!(
        "resident memory: idle {} KiB, after the calls {} KiB",
        report.idle_rss_kib, report.rss_after_calls_kib
    );
    if let Some(c) = &report.concurrent {
        println!(
            "{} concurrent pod start-ups (sandbox + started container): CRI {:.0} ms wall (per pod median {:.0} ms), direct Docker {:.0} ms wall (per pod median {:.0} ms), ratio {:.2}x",
            c.pods,
            c.cri_wall_ms,
            c.cri_per_pod.median_us / 1e3,
            c.direct_wall_ms,
            c.direct_per_pod.median_us / 1e3,
            c.ratio
        );
    }
    if let Some(m) = &report.memory {
        println!(
            "resident memory: idle {} KiB, before the pods {} KiB, with {} pods {} KiB, after removing them {} KiB, after {} create/remove cycles {} KiB ({:.2}x idle)",
            m.idle_kib,
            m.before_pods_kib,
            m.pods,
            m.with_pods_kib,
            m.after_pods_removed_kib,
            m.churn_cycles,
            m.after_churn_kib,
            m.churn_vs_idle
        );
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", args.out.display());
    Ok(())
}

/// Removes the benchmark's pods on drop (also on failure).
struct BenchPods(String);

impl Drop for BenchPods {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=cri-bench={}", self.0),
            ])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

/// ListContainerStats at each of `args.stats_pods` running pods vs one Docker stats call per
/// container (`GET /containers/{id}/stats?stream=false`, the Go original's method).
async fn stats_bench(
    args: &Args,
    docker: &Docker,
    rt: RuntimeServiceClient<Channel>,
) -> anyhow::Result<Vec<Row>> {
    use futures_util::StreamExt;
    let run = format!("{:x}", std::process::id() ^ 0x5a5a);
    let _cleanup = BenchPods(run.clone());
    let selector = std::collections::HashMap::from([("cri-bench".to_string(), run.clone())]);
    let mut ids: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut counts = args.stats_pods.clone();
    counts.sort_unstable();
    for n in counts {
        while ids.len() < n {
            let i = ids.len();
            ids.push(bench_pod(rt.clone(), &args.image, &run, i).await?);
        }
        eprintln!("{n} pods running; measuring ListContainerStats");
        let sel = selector.clone();
        let c = time_n(args.stats_reps, || {
            let mut rt = rt.clone();
            let sel = sel.clone();
            async move {
                let r = rt
                    .list_container_stats(cri::ListContainerStatsRequest {
                        filter: Some(cri::ContainerStatsFilter {
                            label_selector: sel,
                            ..Default::default()
                        }),
                    })
                    .await?
                    .into_inner();
                if r.stats.len() != n || r.stats.iter().any(|s| s.cpu.is_none()) {
                    bail!(
                        "expected {n} running containers with CPU stats, got {}",
                        r.stats.len()
                    );
                }
                Ok(())
            }
        })
        .await?;
        let d = time_n(args.stats_docker_reps.max(1), || {
            let docker = docker.clone();
            let ids = ids.clone();
            async move {
                for id in &ids {
                    let opts = bollard::query_parameters::StatsOptions {
                        stream: false,
                        one_shot: false,
                    };
                    let mut s = docker.stats(id, Some(opts));
                    s.next().await.context("no stats")??;
                }
                Ok(())
            }
        })
        .await?;
        rows.push(row(
            &format!("ListContainerStats, {n} pods (vs docker stats each)"),
            c,
            Some(d),
        ));
    }
    Ok(rows)
}

/// One pod (sandbox + a started `sleep` container); returns the container ID.
async fn bench_pod(
    mut rt: RuntimeServiceClient<Channel>,
    image: &str,
    run: &str,
    i: usize,
) -> anyhow::Result<String> {
    let labels = std::collections::HashMap::from([("cri-bench".to_string(), run.to_string())]);
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("bench-{run}-{i}"),
            namespace: "cri-bench".into(),
            uid: format!("bench-{run}-{i}"),
            attempt: 0,
        }),
        labels: labels.clone(),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod,
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "sleeper".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "100000".into()],
                labels,
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    Ok(id)
}
