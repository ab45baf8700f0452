//! `cri-bench`: starts cri-dockerd on a temporary socket against the local dockerd and measures
//! CRI calls side by side with the raw Docker API calls that are their floor, in one run, with
//! medians over repetitions; prints a table of ratios ending with the verdicts on issue #8's
//! targets, and writes the same as a JSON report.
//!
//! `cargo run --release -p cri-bench -- --daemon target/release/cri-dockerd --out bench.json`
//!
//! The pod lifecycle part lives in [`lifecycle`].

mod client;
mod lifecycle;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use clap::Parser;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use serde::Serialize;

use lifecycle::CriPod;

/// Targets of issue #8.
const LIFECYCLE_MAX_RATIO: f64 = 1.05;
const LIST_TARGET_PODS: usize = 100;
const LIST_MAX_MS: f64 = 10.0;
const IDLE_MAX_KIB: u64 = 15 * 1024;
const CHURN_MAX_RATIO: f64 = 1.10;

/// How long the daemon is left without calls before its resident memory is read: it gives
/// free memory back to the kernel a second after its last call (`cri_dockerd::memory::QUIET`),
/// and a reading taken earlier would count pages it has freed but not yet returned.
pub(crate) const QUIET_SETTLE: Duration = Duration::from_millis(1500);

#[derive(Parser, Debug)]
#[command(about = "Benchmark cri-dockerd against direct Docker API calls")]
struct Args {
    /// The cri-dockerd binary to start.
    #[arg(long, default_value = "target/release/cri-dockerd")]
    daemon: PathBuf,
    /// Docker socket path.
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: String,
    /// Repetitions per measurement of a cheap call (Version, Status, images, List/Status).
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Start-up measurements (daemon started this many times).
    #[arg(long, default_value_t = 5)]
    startups: usize,
    /// Image of the workload containers (busybox with `sleep`); also used for ImageStatus.
    #[arg(long, default_value = "cri-dockerd-test/busybox:latest")]
    image: String,
    /// Image of the pod sandbox (pause) containers, both ways.
    #[arg(long, default_value = "cri-dockerd-test/pause:latest")]
    pause_image: String,
    /// Lifecycle rounds (each: one pod through CRI and one directly), after one warm-up. Docker's
    /// own times vary by 10-20 % from round to round: with 21 rounds the medians' ratio of two
    /// equal sides still came out anywhere in 0.95-1.12 from run to run here, so the default
    /// is 41 (about 40 s).
    #[arg(long, default_value_t = 41)]
    lifecycle_reps: usize,
    /// Pods started at once in the concurrency measurement (0: skip it).
    #[arg(long, default_value_t = 20)]
    concurrent: usize,
    /// Create/remove cycles of a container for the "RSS after churn" measurement (0: skip it).
    #[arg(long, default_value_t = 1000)]
    churn: usize,
    /// Only the call-latency parts (no lifecycle, concurrency or churn).
    #[arg(long)]
    calls_only: bool,
    /// Seconds the daemon is left without calls at the largest `--list-pods` count, its CPU
    /// time and dockerd's read before and after (0: skip). A stats call has started the
    /// writable-layer walker by then, as kubelet's do.
    #[arg(long, default_value_t = 30)]
    idle_cpu_secs: u64,
    /// Running pods at which List/Status calls (and resident memory) are measured, pods
    /// created through CRI with `--containers-per-pod` running containers each; 0 to skip.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    list_pods: Vec<usize>,
    /// Running containers per pod for the List/Status measurements.
    #[arg(long, default_value_t = 2)]
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
    /// Skip the basic calls (Version, Status, images), the List/Status part and the start-up
    /// measurements.
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

/// Resamples behind [`paired_ratio_ci`].
const BOOTSTRAP_RESAMPLES: usize = 2000;

/// A 95 % interval for `median(cri) / median(docker)` from rounds that measured both sides
/// (`cri[i]` and `docker[i]` in the same round): a bootstrap over whole rounds, so that Docker
/// being slower in some rounds than in others moves both sides of a resample together. The seed
/// is fixed: the same samples always give the same interval.
fn paired_ratio_ci(cri: &[Duration], docker: &[Duration]) -> [f64; 2] {
    let n = cri.len().min(docker.len());
    assert!(n > 0, "no rounds");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // SplitMix64: small, well mixed, and no dependency for a benchmark's resampling.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (mut c, mut d) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            c.clear();
            d.clear();
            for _ in 0..n {
                let i = (next() % n as u64) as usize;
                c.push(cri[i].as_secs_f64());
                d.push(docker[i].as_secs_f64());
            }
            median(&mut c) / median(&mut d)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    [at(0.025), at(0.975)]
}

/// One CRI call next to its Docker floor (if it has one).
#[derive(Debug, Serialize)]
struct Row {
    /// The table's label.
    name: String,
    /// The CRI call.
    call: String,
    /// Running pods during the measurement (List/Status rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pods: Option<usize>,
    cri: Stats,
    docker: Option<Stats>,
    ratio: Option<f64>,
    /// Lifecycle rows: 95 % interval of `ratio` over the rounds ([`paired_ratio_ci`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_ci95: Option<[f64; 2]>,
}

fn row(name: &str, cri: Stats, docker: Option<Stats>) -> Row {
    let ratio = docker.as_ref().map(|d| cri.median_us / d.median_us);
    Row {
        name: name.into(),
        call: name.split(' ').next().unwrap_or(name).into(),
        pods: None,
        cri,
        docker,
        ratio,
        ratio_ci95: None,
    }
}

/// How one List/Status call's median grows with the number of pods.
#[derive(Debug, Serialize)]
struct Growth {
    call: String,
    /// (pods, median µs), by pods.
    points: Vec<(usize, f64)>,
    /// Median at the most pods over median at the fewest.
    factor: f64,
    /// Most pods over fewest.
    pods_factor: f64,
}

/// Resident memory of the daemon (KiB).
#[derive(Debug, Default, Serialize)]
struct Memory {
    /// Right after start-up, before any call.
    idle_kib: u64,
    /// After the basic calls.
    after_calls_kib: u64,
    /// With N running pods (`--containers-per-pod` containers each).
    with_pods: Vec<(usize, u64)>,
    /// After those pods were removed.
    after_pods_removed_kib: Option<u64>,
    /// Before and after the churn cycles.
    before_churn_kib: Option<u64>,
    churn_cycles: usize,
    after_churn_kib: Option<u64>,
    churn_vs_idle: Option<f64>,
    /// RssAnon and RssFile idle and after the churn.
    idle_anon_file_kib: (u64, u64),
    after_churn_anon_file_kib: Option<(u64, u64)>,
    /// CPU used while left alone with the largest number of running pods.
    idle_cpu: Option<IdleCpu>,
}

/// CPU time (user + system) used by the daemon and by dockerd over the same quiet window, with
/// `pods` running pods and no calls. The daemon's background work (log followers, the
/// writable-layer walker that a stats call starts, as kubelet's do) is what shows here.
#[derive(Debug, Serialize)]
struct IdleCpu {
    pods: usize,
    secs: u64,
    daemon_ms: u64,
    /// `None` when dockerd's pid is unknown (no `/var/run/docker.pid`).
    dockerd_ms: Option<u64>,
}

/// One target of issue #8 and how this run did.
#[derive(Debug, Serialize)]
struct Verdict {
    target: String,
    measured: String,
    /// `None` when this run did not measure it.
    pass: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: Vec<Row>,
    list_rows: Vec<Row>,
    growth: Vec<Growth>,
    stats_rows: Vec<Row>,
    startup_to_ready_ms: Option<Stats>,
    lifecycle: Vec<Row>,
    hops: Option<lifecycle::Hops>,
    concurrent: Option<lifecycle::Concurrent>,
    memory: Memory,
    verdicts: Vec<Verdict>,
}

/// Times `reps` calls of `f`, each on a fresh clone of `client` (cloned outside the timing),
/// after up to ten warm-up calls.
async fn time_n<C, F, Fut, T, E>(reps: usize, client: &C, mut f: F) -> anyhow::Result<Stats>
where
    C: Clone,
    F: FnMut(C) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    for _ in 0..reps.clamp(1, 10) {
        f(client.clone()).await.map_err(Into::into)?;
    }
    let mut samples = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let c = client.clone();
        let t = Instant::now();
        f(c).await.map_err(Into::into)?;
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
        if let Ok(ch) = client::connect(&d.socket).await {
            let mut rt = RuntimeServiceClient::with_origin(ch, client::origin());
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

/// A `/proc/<pid>/status` figure in KiB (0 when unreadable).
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of process `pid` so far, in ms (`/proc/<pid>/stat` counts in
/// USER_HZ, 100 a second on Linux; its threads that have ended are included).
fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields after the last `)`
    // start at field 3 (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10)
}

/// dockerd's pid, from its pid file (if that process is a dockerd: the file may come from
/// another pid namespace).
fn dockerd_pid() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string("/var/run/docker.pid")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dockerd").then_some(pid)
}

/// CPU used by the daemon `pid` and by dockerd over `secs` seconds without calls.
async fn idle_cpu(pid: u32, pods: usize, secs: u64) -> anyhow::Result<IdleCpu> {
    let dockerd = dockerd_pid();
    let before = cpu_ms(pid).context("reading the daemon's CPU time")?;
    let dockerd_before = dockerd.and_then(cpu_ms);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = cpu_ms(pid).context("reading the daemon's CPU time")?;
    let dockerd_ms = match (dockerd_before, dockerd.and_then(cpu_ms)) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    Ok(IdleCpu {
        pods,
        secs,
        daemon_ms: after.saturating_sub(before),
        dockerd_ms,
    })
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Resident memory split into anonymous (heap, stacks) and file-backed (mostly the
/// executable's own code pages, faulted in as code paths first run), KiB.
fn rss_parts(pid: u32) -> (u64, u64) {
    (status_kib(pid, "RssAnon:"), status_kib(pid, "RssFile:"))
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

type Rt = RuntimeServiceClient<client::Conn>;

/// ListPodSandbox, ListContainers, PodSandboxStatus, ContainerStatus and ListContainerStats at
/// `pods.len()` running pods, next to the Docker list/inspect calls they stand on
/// (ListContainerStats has no single Docker floor: see `--stats-pods`).
async fn measure_lists(
    rt: &Rt,
    docker: &Docker,
    pods: &[CriPod],
    reps: usize,
) -> anyhow::Result<Vec<Row>> {
    let n = pods.len();
    let mut rows = Vec::new();
    let mut push = |call: &str, floor: &str, c: Stats, d: Option<Stats>| {
        let mut r = row(&format!("{call} @{n} pods ({floor})"), c, d);
        r.call = call.into();
        r.pods = Some(n);
        rows.push(r);
    };
    let c = time_n(reps, rt, |mut rt| async move {
        rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
    })
    .await?;
    let d = time_n(reps, docker, |docker| async move {
        docker
            .list_containers(Some(docker_list_by_type("podsandbox")))
            .await
    })
    .await?;
    push("ListPodSandbox", "vs list", c, Some(d));

    let c = time_n(reps, rt, |mut rt| async move {
        rt.list_containers(cri::ListContainersRequest { filter: None })
            .await
    })
    .await?;
    let d = time_n(reps, docker, |docker| async move {
        docker
            .list_containers(Some(docker_list_by_type("container")))
            .await
    })
    .await?;
    push("ListContainers", "vs list", c, Some(d));

    let sb = pods[n / 2].sandbox.clone();
    let req = cri::PodSandboxStatusRequest {
        pod_sandbox_id: sb.clone(),
        verbose: false,
    };
    let c = time_n(reps, &(rt.clone(), req), |(mut rt, req)| async move {
        rt.pod_sandbox_status(req).await
    })
    .await?;
    let d = time_n(reps, &(docker.clone(), sb), |(docker, sb)| async move {
        docker
            .inspect_container(
                &sb,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
    })
    .await?;
    push("PodSandboxStatus", "vs inspect", c, Some(d));

    if let Some(ctr) = pods[n / 2].containers.first().cloned() {
        let req = cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        };
        let c = time_n(reps, &(rt.clone(), req), |(mut rt, req)| async move {
            rt.container_status(req).await
        })
        .await?;
        let d = time_n(reps, &(docker.clone(), ctr), |(docker, ctr)| async move {
            docker
                .inspect_container(
                    &ctr,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
        })
        .await?;
        push("ContainerStatus", "vs inspect", c, Some(d));
    }

    let c = time_n(reps, rt, |mut rt| async move {
        rt.list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await
    })
    .await?;
    push("ListContainerStats", "cgroup files", c, None);
    Ok(rows)
}

/// The List/Status part: pods grown through CRI to each count of `--list-pods`, measured at
/// each, resident memory noted at each; then removed.
async fn list_phase(
    args: &Args,
    rt: &Rt,
    docker: &Docker,
    pid: u32,
    memory: &mut Memory,
) -> anyhow::Result<Vec<Row>> {
    let mut counts: Vec<usize> = args.list_pods.iter().copied().filter(|&n| n > 0).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.is_empty() {
        return Ok(Vec::new());
    }
    let images = lifecycle::Images {
        busybox: args.image.clone(),
    };
    let logs = tempfile::tempdir()?;
    let log_dir = logs.path().to_string_lossy().into_owned();
    let mut rt2 = rt.clone();
    let mut pods: Vec<CriPod> = Vec::new();
    let mut rows = Vec::new();
    let mut result = Ok(());
    for n in counts {
        eprintln!(
            "List/Status: growing to {n} pods of {} containers",
            args.containers_per_pod
        );
        while pods.len() < n && result.is_ok() {
            let uid = lifecycle::unique("list", pods.len());
            match lifecycle::cri_run_pod(
                &mut rt2,
                &uid,
                &log_dir,
                &images,
                args.containers_per_pod,
                true,
            )
            .await
            {
                Ok(p) => pods.push(p),
                Err(e) => result = Err(e),
            }
        }
        if result.is_err() {
            break;
        }
        // Let the event-fed view catch up with the burst.
        tokio::time::sleep(Duration::from_millis(500)).await;
        match measure_lists(rt, docker, &pods, args.reps).await {
            Ok(r) => rows.extend(r),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        tokio::time::sleep(QUIET_SETTLE).await;
        memory.with_pods.push((n, rss_kib(pid)));
        if args.idle_cpu_secs > 0 && Some(&n) == args.list_pods.iter().max() {
            eprintln!(
                "idle CPU: {} s without calls at {n} pods",
                args.idle_cpu_secs
            );
            match idle_cpu(pid, n, args.idle_cpu_secs).await {
                Ok(c) => memory.idle_cpu = Some(c),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    eprintln!("List/Status: removing {} pods", pods.len());
    for p in &pods {
        if let Err(e) = lifecycle::cri_remove_pod(&mut rt2, &p.sandbox).await {
            eprintln!("removing pod {}: {e}", p.sandbox);
        }
    }
    tokio::time::sleep(QUIET_SETTLE).await;
    memory.after_pods_removed_kib = Some(rss_kib(pid));
    result.context("List/Status at N pods")?;
    Ok(rows)
}

/// Medians of each List/Status call by pod count.
fn growth(rows: &[Row]) -> Vec<Growth> {
    let mut calls: Vec<&str> = Vec::new();
    for r in rows {
        if !calls.contains(&r.call.as_str()) {
            calls.push(&r.call);
        }
    }
    calls
        .into_iter()
        .filter_map(|call| {
            let points: Vec<(usize, f64)> = rows
                .iter()
                .filter(|r| r.call == call)
                .filter_map(|r| Some((r.pods?, r.cri.median_us)))
                .collect();
            let (first, last) = (points.first()?, points.last()?);
            Some(Growth {
                call: call.into(),
                factor: last.1 / first.1,
                pods_factor: last.0 as f64 / first.0 as f64,
                points,
            })
        })
        .collect()
}

fn verdicts(r: &Report) -> Vec<Verdict> {
    let mut out = Vec::new();
    for row in &r.lifecycle {
        out.push(Verdict {
            target: format!("{} <= {LIFECYCLE_MAX_RATIO}x direct Docker", row.call),
            measured: match (row.ratio, row.ratio_ci95) {
                (Some(x), Some([lo, hi])) => format!("{x:.2}x (95 % interval {lo:.2}-{hi:.2}x)"),
                (Some(x), None) => format!("{x:.2}x"),
                (None, _) => "-".into(),
            },
            pass: row.ratio.map(|x| x <= LIFECYCLE_MAX_RATIO),
        });
    }
    for call in ["ListPodSandbox", "ListContainers", "ListContainerStats"] {
        let at = r
            .list_rows
            .iter()
            .find(|x| x.call == call && x.pods == Some(LIST_TARGET_PODS));
        out.push(Verdict {
            target: format!("{call} at {LIST_TARGET_PODS} pods <= {LIST_MAX_MS} ms median"),
            measured: at.map_or("not measured".into(), |x| {
                format!("{:.2} ms", x.cri.median_us / 1e3)
            }),
            pass: at.map(|x| x.cri.median_us / 1e3 <= LIST_MAX_MS),
        });
    }
    let m = &r.memory;
    out.push(Verdict {
        target: format!("idle RSS <= {} MiB", IDLE_MAX_KIB / 1024),
        measured: format!("{:.1} MiB", m.idle_kib as f64 / 1024.0),
        pass: Some(m.idle_kib <= IDLE_MAX_KIB),
    });
    out.push(Verdict {
        target: format!(
            "RSS after {} churn cycles <= {CHURN_MAX_RATIO}x idle",
            m.churn_cycles
        ),
        measured: m.churn_vs_idle.map_or("not measured".into(), |x| {
            format!(
                "{:.2}x ({:.1} MiB)",
                x,
                m.after_churn_kib.unwrap_or(0) as f64 / 1024.0
            )
        }),
        pass: m.churn_vs_idle.map(|x| x <= CHURN_MAX_RATIO),
    });
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.reps == 0 || args.lifecycle_reps == 0 {
        bail!("--reps and --lifecycle-reps must be at least 1");
    }
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

/// Version, Status, ListImages and ImageStatus next to their Docker calls.
async fn basic_calls(
    reps: usize,
    rt: &Rt,
    img: &ImageServiceClient<client::Conn>,
    docker: &Docker,
    image: &str,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let c = time_n(reps, rt, |mut rt| async move {
        rt.version(cri::VersionRequest::default()).await
    })
    .await?;
    let d = time_n(reps, docker, |docker| async move { docker.version().await }).await?;
    rows.push(row("Version (vs GET /version)", c, Some(d)));

    let c = time_n(reps, rt, |mut rt| async move {
        rt.status(cri::StatusRequest { verbose: false }).await
    })
    .await?;
    let d = time_n(reps, docker, |docker| async move { docker.ping().await }).await?;
    rows.push(row("Status (vs GET /_ping)", c, Some(d)));

    let c = time_n(reps, img, |mut img| async move {
        img.list_images(cri::ListImagesRequest::default()).await
    })
    .await?;
    let d = time_n(reps, docker, |docker| async move {
        docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
    })
    .await?;
    rows.push(row("ListImages (vs GET /images/json)", c, Some(d)));

    let req = cri::ImageStatusRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        verbose: false,
    };
    let c = time_n(reps, &(img.clone(), req), |(mut img, req)| async move {
        img.image_status(req).await
    })
    .await?;
    let d = time_n(
        reps,
        &(docker.clone(), image.to_string()),
        |(docker, image)| async move { docker.inspect_image(&image).await },
    )
    .await?;
    rows.push(row("ImageStatus (vs GET /images/{name}/json)", c, Some(d)));
    Ok(rows)
}

async fn run(args: &Args, docker: &Docker) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut startups = Vec::new();
    if !args.only_stats {
        for _ in 0..args.startups.max(1) {
            let (_d, t) = start_daemon(args).await?;
            startups.push(t);
        }
    }
    let (daemon, _) = start_daemon(args).await?;
    let pid = daemon.child.id();
    tokio::time::sleep(QUIET_SETTLE).await;
    let mut memory = Memory {
        idle_kib: rss_kib(pid),
        idle_anon_file_kib: rss_parts(pid),
        ..Default::default()
    };

    let ch = client::connect(&daemon.socket).await?;
    let rt = RuntimeServiceClient::with_origin(ch.clone(), client::origin());
    let img = ImageServiceClient::with_origin(ch, client::origin());
    let (mut rows, mut list_rows) = (Vec::new(), Vec::new());
    if !args.only_stats {
        rows = basic_calls(args.reps, &rt, &img, docker, &args.image).await?;
        tokio::time::sleep(QUIET_SETTLE).await;
        memory.after_calls_kib = rss_kib(pid);
        list_rows = list_phase(args, &rt, docker, pid, &mut memory).await?;
    }
    let (mut lc, mut hops, mut concurrent) = (Vec::new(), None, None);
    if !args.calls_only && !args.only_stats {
        let images = lifecycle::Images {
            busybox: args.image.clone(),
        };
        let logs = tempfile::tempdir()?;
        let log_dir = logs.path().to_string_lossy().into_owned();
        eprintln!("lifecycle: {} rounds", args.lifecycle_reps);
        let (rows, h) =
            lifecycle::lifecycle_rows(&rt, docker, &images, &log_dir, args.lifecycle_reps).await?;
        (lc, hops) = (rows, Some(h));
        if args.concurrent > 0 {
            eprintln!("concurrent start-ups: {} pods", args.concurrent);
            concurrent = Some(
                lifecycle::concurrent_startups(&rt, docker, &images, &log_dir, args.concurrent)
                    .await?,
            );
        }
        if args.churn > 0 {
            eprintln!("churn: {} create/remove cycles", args.churn);
            let (before, after) = lifecycle::churn(&rt, &images, &log_dir, pid, args.churn).await?;
            memory.before_churn_kib = Some(before);
            memory.churn_cycles = args.churn;
            memory.after_churn_kib = Some(after);
            memory.after_churn_anon_file_kib = Some(rss_parts(pid));
            memory.churn_vs_idle = Some(after as f64 / memory.idle_kib.max(1) as f64);
        }
    }

    let stats_rows = if args.stats_pods.is_empty() {
        Vec::new()
    } else {
        stats_bench(args, docker, rt.clone()).await?
    };

    let mut report = Report {
        growth: growth(&list_rows),
        rows,
        list_rows,
        stats_rows,
        lifecycle: lc,
        hops,
        concurrent,
        memory,
        startup_to_ready_ms: (!startups.is_empty()).then(|| {
            let s = stats(startups);
            Stats {
                n: s.n,
                median_us: s.median_us / 1000.0,
                p90_us: s.p90_us / 1000.0,
                min_us: s.min_us / 1000.0,
            }
        }),
        verdicts: Vec::new(),
    };
    report.verdicts = verdicts(&report);
    print_report(&report);
    println!("bench run took {:.0} s", started.elapsed().as_secs_f64());
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", args.out.display());
    Ok(())
}

fn print_report(report: &Report) {
    println!(
        "{:<48} {:>12} {:>12} {:>8} {:>12}",
        "call", "cri median", "docker med.", "ratio", "95 % int."
    );
    for r in report
        .rows
        .iter()
        .chain(&report.lifecycle)
        .chain(&report.list_rows)
        .chain(&report.stats_rows)
    {
        println!(
            "{:<48} {:>10.0}us {:>10}us {:>8} {:>12}",
            r.name,
            r.cri.median_us,
            r.docker
                .as_ref()
                .map_or("-".into(), |d| format!("{:.0}", d.median_us)),
            r.ratio.map_or("-".into(), |x| if x >= 0.01 {
                format!("{x:.2}x")
            } else {
                format!("1/{:.0}x", 1.0 / x)
            }),
            r.ratio_ci95
                .map_or(String::new(), |[lo, hi]| format!("{lo:.2}-{hi:.2}x"))
        );
    }
    if let Some(h) = &report.hops {
        println!(
            "round trip doing no work (ListContainers from memory): {:.2} ms right after a Docker \
             removal, {:.2} ms right after another call; Docker's GET /_ping right after a \
             removal {:.2} ms; after {} ms idle: CRI {:.2} ms, Docker {:.2} ms",
            h.cri_after_removal.median_us / 1e3,
            h.cri_after_call.median_us / 1e3,
            h.docker_after_removal.median_us / 1e3,
            lifecycle::IDLE.as_millis(),
            h.cri_after_idle.median_us / 1e3,
            h.docker_after_idle.median_us / 1e3
        );
    }
    for g in &report.growth {
        let points: Vec<String> = g
            .points
            .iter()
            .map(|(n, us)| format!("{:.2} ms @{n}", us / 1e3))
            .collect();
        println!(
            "growth {:<18} {} (x{:.1} for x{:.0} pods)",
            g.call,
            points.join(", "),
            g.factor,
            g.pods_factor
        );
    }
    if let Some(s) = &report.startup_to_ready_ms {
        println!(
            "start-up to READY: median {:.1} ms (min {:.1} ms, n={})",
            s.median_us, s.min_us, s.n
        );
    }
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
    let m = &report.memory;
    let with: Vec<String> = m
        .with_pods
        .iter()
        .map(|(n, k)| format!("{k} KiB with {n} pods"))
        .collect();
    let opt = |k: Option<u64>| k.map_or("-".into(), |k| format!("{k} KiB"));
    println!(
        "resident memory: idle {} KiB, after the calls {} KiB, {}, after removing them {}, before churn {}, after {} create/remove cycles {}",
        m.idle_kib,
        m.after_calls_kib,
        if with.is_empty() {
            "no pods".into()
        } else {
            with.join(", ")
        },
        opt(m.after_pods_removed_kib),
        opt(m.before_churn_kib),
        m.churn_cycles,
        opt(m.after_churn_kib),
    );
    if let Some((anon, file)) = m.after_churn_anon_file_kib {
        println!(
            "  of which anonymous / file-backed: idle {} / {} KiB, after churn {anon} / {file} KiB",
            m.idle_anon_file_kib.0, m.idle_anon_file_kib.1
        );
    }
    if let Some(c) = &m.idle_cpu {
        println!(
            "CPU over {} s without calls at {} pods: daemon {} ms, dockerd {}",
            c.secs,
            c.pods,
            c.daemon_ms,
            c.dockerd_ms.map_or("-".into(), |d| format!("{d} ms"))
        );
    }
    println!("verdicts (issue #8 targets):");
    for v in &report.verdicts {
        println!(
            "  {:<4} {:<52} {}",
            match v.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "-",
            },
            v.target,
            v.measured
        );
    }
}

/// ListContainerStats at each of `args.stats_pods` running pods vs one Docker stats call per
/// container (`GET /containers/{id}/stats?stream=false`, the Go original's method). The pods
/// are left to the final clean-up by label.
async fn stats_bench(args: &Args, docker: &Docker, rt: Rt) -> anyhow::Result<Vec<Row>> {
    use futures_util::StreamExt;
    let images = lifecycle::Images {
        busybox: args.image.clone(),
    };
    let logs = tempfile::tempdir()?;
    let log_dir = logs.path().to_string_lossy().into_owned();
    let selector =
        std::collections::HashMap::from([(lifecycle::BENCH_LABEL.to_string(), "1".to_string())]);
    let mut ids: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut counts = args.stats_pods.clone();
    counts.sort_unstable();
    let mut rt2 = rt.clone();
    for n in counts {
        while ids.len() < n {
            let uid = lifecycle::unique("stats", ids.len());
            let pod = lifecycle::cri_run_pod(&mut rt2, &uid, &log_dir, &images, 1, true).await?;
            ids.extend(pod.containers);
        }
        eprintln!("{n} pods running; measuring ListContainerStats");
        let req = cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        };
        let c = time_n(
            args.stats_reps,
            &(rt.clone(), req),
            |(mut rt, req)| async move {
                let r = rt.list_container_stats(req).await?.into_inner();
                if r.stats.len() != n || r.stats.iter().any(|s| s.cpu.is_none()) {
                    bail!(
                        "expected {n} running containers with CPU stats, got {}",
                        r.stats.len()
                    );
                }
                Ok(())
            },
        )
        .await?;
        let d = time_n(
            args.stats_docker_reps,
            &(docker.clone(), ids.clone()),
            |(docker, ids)| async move {
                for id in &ids {
                    let opts = bollard::query_parameters::StatsOptions {
                        stream: false,
                        one_shot: false,
                    };
                    let mut s = docker.stats(id, Some(opts));
                    s.next().await.context("no stats")??;
                }
                anyhow::Ok(())
            },
        )
        .await?;
        rows.push(row(
            &format!("ListContainerStats, {n} pods (vs docker stats each)"),
            c,
            Some(d),
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[f64]) -> Vec<Duration> {
        v.iter().map(|x| Duration::from_secs_f64(x / 1e3)).collect()
    }

    #[test]
    fn interval_of_a_constant_ratio_is_that_ratio() {
        let d = ms(&[4.0, 5.0, 6.0, 5.5, 4.5, 7.0, 5.2]);
        let c: Vec<Duration> = d.iter().map(|x| x.mul_f64(1.1)).collect();
        let [lo, hi] = paired_ratio_ci(&c, &d);
        assert!(
            (lo - 1.1).abs() < 1e-9 && (hi - 1.1).abs() < 1e-9,
            "{lo} {hi}"
        );
    }

    #[test]
    fn interval_holds_the_estimate_and_narrows_with_more_rounds() {
        // Docker drifts from round to round; the CRI side pays it plus a noisy 0.5 ms.
        let drift = |i: usize| 4.0 + (i * 37 % 17) as f64 * 0.25;
        let noise = |i: usize| (i * 53 % 11) as f64 * 0.1;
        let make = |n: usize| {
            let d: Vec<f64> = (0..n).map(drift).collect();
            let c: Vec<f64> = (0..n).map(|i| drift(i) + noise(i)).collect();
            (ms(&c), ms(&d))
        };
        let (c, d) = make(21);
        let est = stats(c.clone()).median_us / stats(d.clone()).median_us;
        let [lo, hi] = paired_ratio_ci(&c, &d);
        assert!(lo <= est && est <= hi, "{lo} {est} {hi}");
        assert!(lo > 1.0, "every round has CRI slower: {lo}");
        let (c, d) = make(201);
        let [lo2, hi2] = paired_ratio_ci(&c, &d);
        assert!(hi2 - lo2 < hi - lo, "{lo2}-{hi2} vs {lo}-{hi}");
        // Deterministic.
        assert_eq!(paired_ratio_ci(&c, &d), [lo2, hi2]);
    }
}
