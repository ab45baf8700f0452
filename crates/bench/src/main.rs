//! `cri-bench`: starts cri-dockerd on a temporary socket against the local dockerd and measures
//! CRI calls side by side with the raw Docker API calls that are their floor, in one run, with
//! medians over repetitions; prints a table of ratios and writes a JSON report.
//!
//! `cargo run --release -p cri-bench -- --daemon target/release/cri-dockerd --out bench.json`

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
    /// Pause image for the pods of the stats benchmark.
    #[arg(long, default_value = "cri-dockerd-test/pause:latest")]
    pause_image: String,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let docker = Docker::connect_with_unix(&args.docker_socket, 120, bollard::API_DEFAULT_VERSION)?
        .negotiate_version()
        .await?;

    let mut startups = Vec::new();
    for _ in 0..if args.only_stats {
        1
    } else {
        args.startups.max(1)
    } {
        let (_d, t) = start_daemon(&args).await?;
        startups.push(t);
    }
    let (daemon, _) = start_daemon(&args).await?;
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

    let stats_rows = if args.stats_pods.is_empty() {
        Vec::new()
    } else {
        stats_bench(&args, &docker, rt.clone()).await?
    };

    let report = Report {
        rows,
        stats_rows,
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
        rss_after_calls_kib: rss_kib(daemon.child.id()),
    };

    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "call", "cri median", "docker med.", "ratio"
    );
    for r in report.rows.iter().chain(report.stats_rows.iter()) {
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
