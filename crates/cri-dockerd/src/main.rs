//! The `cri-dockerd` binary: parse flags, set up logging, serve CRI until SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use cri_dockerd::cgroups;
use cri_dockerd::config::{self, Action, Config, Flags, LogFormat};
use cri_dockerd::docker::DockerClient;
use cri_dockerd::memory;
use cri_dockerd::metrics;
use cri_dockerd::server::{self, notify::notify};
use cri_dockerd::service::Runtime;
use cri_dockerd::version;

/// Exit status for a bad command line.
const EXIT_USAGE: i32 = 2;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "doctor") {
        std::process::exit(doctor(&args[2..]));
    }
    let flags = match Flags::try_parse_args(std::env::args_os()) {
        Ok(f) => f,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // Help goes to stdout, exit 0.
                let _ = e.print();
                return;
            }
            eprintln!("cri-dockerd: {}", config::usage_error_line(&e));
            std::process::exit(EXIT_USAGE);
        }
    };
    match flags.action() {
        Ok(Action::Version) => {
            println!("{}", version::version_line());
            return;
        }
        Ok(Action::BuildInfo) => {
            print!("{}", version::build_info());
            return;
        }
        Ok(Action::Serve) => {}
        Err(e) => {
            eprintln!("cri-dockerd: {e}");
            std::process::exit(EXIT_USAGE);
        }
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let config = match flags.validate(docker_host.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cri-dockerd: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    init_tracing(&config);
    if let Some(name) = &config.runtime_cgroups {
        enter_runtime_cgroups(name);
    }
    if let Err(e) = run(config) {
        // One line, in the configured log format.
        tracing::error!("cri-dockerd failed: {e:#}");
        std::process::exit(1);
    }
}

/// `cri-dockerd doctor …`: print the report, exit 1 on any FAIL (2 on a bad command line).
fn doctor(args: &[std::ffi::OsString]) -> i32 {
    use cri_dockerd::doctor;
    if args.iter().any(|a| a == "--help" || a == "-h") {
        let mut full = vec![std::ffi::OsString::from("doctor")];
        full.extend(args.iter().cloned());
        if let Err(e) = <doctor::DoctorFlags as clap::Parser>::try_parse_from(full) {
            let _ = e.print();
        }
        return 0;
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let (inputs, json) = match doctor::parse_args(args, docker_host.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cri-dockerd doctor: {}", e.trim_end());
            return EXIT_USAGE;
        }
    };
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(doctor::run(&inputs)),
        Err(e) => {
            eprintln!("cri-dockerd doctor: starting the async runtime: {e}");
            return 1;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cri-dockerd doctor: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", report.to_text());
    }
    i32::from(report.verdict == doctor::Verdict::Fail)
}

/// `--runtime-cgroups`: move this process (still single-threaded) into the cgroup; one warning
/// and carry on where it is if that is impossible.
fn enter_runtime_cgroups(name: &str) {
    match cgroups::enter(name, std::process::id()) {
        Ok(dirs) => tracing::info!(
            cgroup = name,
            hierarchies = dirs.len(),
            "running in --runtime-cgroups"
        ),
        Err(e) => tracing::warn!(
            "--runtime-cgroups={name}: cannot move cri-dockerd into it, staying in the current cgroups: {e}"
        ),
    }
}

/// Libraries whose debug output is per frame or per body (HTTP/2 frames of every kubelet poll,
/// whole Docker responses): at `--log-level=debug` they stay at info, so debug shows our own
/// per-call lines; `--log-level=trace` or `RUST_LOG` opens them up.
const QUIET_AT_DEBUG: &[&str] = &["h2", "hyper", "hyper_util", "tower", "tonic", "bollard"];

fn init_tracing(config: &Config) {
    let mut filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(
            tracing::level_filters::LevelFilter::from_level(config.log_level).into(),
        )
        .from_env_lossy();
    if config.log_level == tracing::Level::DEBUG && std::env::var_os("RUST_LOG").is_none() {
        for lib in QUIET_AT_DEBUG {
            if let Ok(d) = format!("{lib}=info").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// How long in-flight calls and open client connections get after SIGTERM before they are
/// closed. The upstream unit has `TimeoutSec=0` (no stop timeout), so without this a client
/// that never closes its connection would keep `systemctl stop` waiting forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Raise the soft limit of open files to the hard one, as Go programs (the original among
/// them) do at start: the stats path keeps each container's cgroup usage files open, and a
/// busy node has hundreds of containers. Failing to raise it only means fewer kept files.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(
            "open files limit raised from {:?} to {:?}",
            limit.current,
            limit.maximum
        ),
        Err(e) => tracing::debug!("cannot raise the open files limit: {e}"),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A blocking-pool thread ends after 10 s idle and frees what it held: give that back
        // too once things are quiet.
        .on_thread_stop(memory::note_activity)
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async move {
        let config = Arc::new(config);
        let docker = Arc::new(DockerClient::new(&config.docker_endpoint));
        let runtime = Arc::new(Runtime::new(docker, config.clone()));
        // Signal handlers before the socket exists: a client may connect (the kernel accepts
        // into the backlog) and a supervisor may send SIGTERM as soon as the socket is there,
        // and SIGTERM's default action would kill us without the clean stop.
        let signals = StopSignals::install();
        // Bind the CRI socket first: if it fails, that is the only line logged.
        let listener = server::listen::bind(&config.cri_endpoint)
            .await
            .with_context(|| format!("listening on {}", config.cri_endpoint))?;
        let streaming_addr = runtime
            .start_streaming()
            .await
            .context("starting the streaming server")?;
        let metrics_addr = match config.metrics_bind_addr {
            Some(addr) => {
                metrics::enable();
                Some(serve_metrics(addr, runtime.clone()).await?)
            }
            None => None,
        };
        runtime.spawn_startup();
        memory::spawn_releaser();
        // The first line at info: a failure before this point is the only line logged.
        tracing::info!(
            version = %version::full_version(),
            endpoint = %config.cri_endpoint,
            streaming = %streaming_addr,
            metrics = %metrics_addr.map_or_else(|| "off".to_string(), |a| format!("http://{a}/metrics")),
            "cri-dockerd serving CRI v1 and v1alpha2"
        );
        notify("READY=1");
        let draining = Arc::new(tokio::sync::Notify::new());
        let signal = {
            let draining = draining.clone();
            async move {
                signals.wait().await;
                draining.notify_one();
            }
        };
        let serve = server::serve(runtime.clone(), listener, signal);
        tokio::select! {
            served = serve => served.context("serving gRPC")?,
            () = async {
                draining.notified().await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => {
                tracing::warn!(
                    "calls or client connections still open {}s after the stop signal: closing them",
                    DRAIN_TIMEOUT.as_secs()
                );
            }
        }
        runtime.stop_streaming();
        tracing::info!("cri-dockerd stopped");
        Ok(())
    });
    // Do not wait on blocking work (a stuck Docker call) past the drain.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// `--metrics-bind-addr`: bind (a failure is the one error, naming the flag), serve `/metrics`
/// in the background, and return the bound address (port 0 resolved).
async fn serve_metrics(
    addr: std::net::SocketAddr,
    runtime: Arc<Runtime>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = metrics::http::bind(addr)
        .await
        .with_context(|| format!("--metrics-bind-addr={addr}: cannot listen"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("--metrics-bind-addr={addr}"))?;
    metrics::set_session_source(move || runtime.streaming_sessions());
    metrics::http::spawn(listener);
    Ok(bound)
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment they are installed.
struct StopSignals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl StopSignals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Self(Some((term, int, hup))),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                Self(None)
            }
        }
    }

    /// Resolves on SIGTERM or SIGINT (after telling systemd STOPPING=1). SIGHUP, which the
    /// upstream unit's `ExecReload` sends, is logged and otherwise ignored: there is nothing to
    /// reload.
    async fn wait(self) {
        let Some((mut term, mut int, mut hup)) = self.0 else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: nothing to reload (restart the service to apply new flags)");
                }
            }
        }
        tracing::info!("shutting down: draining in-flight calls");
        notify("STOPPING=1");
    }
}
