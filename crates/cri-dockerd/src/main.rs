//! The `cri-dockerd` binary: parse flags, set up logging, serve CRI until SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use cri_dockerd::config::{Config, Flags, LogFormat};
use cri_dockerd::docker::DockerClient;
use cri_dockerd::server::{self, notify::notify};
use cri_dockerd::service::Runtime;

fn main() {
    let flags = Flags::parse();
    if flags.version {
        println!("{}", cri_dockerd::version::version_line());
        return;
    }
    if flags.buildinfo {
        println!("{}", cri_dockerd::version::version_line());
        return;
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let config = match flags.validate(docker_host.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cri-dockerd: {e}");
            std::process::exit(2);
        }
    };
    init_tracing(&config);
    if let Err(e) = run(config) {
        tracing::error!("{e:#}");
        eprintln!("cri-dockerd: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(
            tracing::level_filters::LevelFilter::from_level(config.log_level).into(),
        )
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let config = Arc::new(config);
        let docker = Arc::new(DockerClient::new(&config.docker_endpoint));
        let runtime = Arc::new(Runtime::new(docker, config.clone()));
        runtime.spawn_startup();
        let listener = server::listen::bind(&config.cri_endpoint)
            .await
            .with_context(|| format!("listening on {:?}", config.cri_endpoint))?;
        tracing::info!(endpoint = ?config.cri_endpoint, "cri-dockerd serving CRI v1 and v1alpha2");
        notify("READY=1");
        server::serve(runtime, listener, shutdown_signal())
            .await
            .context("serving gRPC")?;
        tracing::info!("cri-dockerd stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down: draining in-flight calls");
    notify("STOPPING=1");
}
