//! Shared test harness: start the real `cri-dockerd` binary on a temporary unix socket against
//! the local dockerd and connect generated CRI clients to it.
#![allow(dead_code)]

pub mod host;
pub mod load;
pub mod pods;
pub mod process;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1alpha2::image_service_client::ImageServiceClient as AlphaImageClient;
use k8s_cri::v1alpha2::runtime_service_client::RuntimeServiceClient as AlphaRuntimeClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// The docker endpoint the tests use.
pub fn docker_endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Whether tests that need dockerd must run (CI) rather than skip.
pub fn required() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// True when dockerd answers; panics under `CI=true` when it does not.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok && required() {
        panic!("dockerd is not reachable and CI=true: run scripts/test-env.sh first");
    }
    if !ok {
        eprintln!("skipping: dockerd is not reachable (run scripts/test-env.sh)");
    }
    ok
}

/// Skip the calling test (return) unless dockerd is up; fail instead under CI.
#[macro_export]
macro_rules! require_docker {
    () => {
        if !common::docker_available() {
            return;
        }
    };
}

/// A running daemon on a private socket and root directory. Killed on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub args: Vec<String>,
}

/// Path of the built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cri-dockerd"))
}

impl Daemon {
    /// Start with the default test flags plus `extra`.
    pub async fn start(extra: &[&str]) -> Daemon {
        Self::start_with_env(extra, &[]).await
    }

    /// Start with extra flags and environment.
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_in(tempfile::tempdir().expect("tempdir"), extra, env).await
    }

    /// Start in a directory prepared beforehand (e.g. `root/` and `cni-cache/` already filled).
    pub async fn start_in(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let socket = dir.path().join("cri.sock");
        let root = dir.path().join("root");
        let cni_conf = dir.path().join("net.d");
        let mut args: Vec<String> = vec![
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--cri-dockerd-root-directory={}", root.display()),
            format!("--cni-conf-dir={}", cni_conf.display()),
            format!("--cni-cache-dir={}", dir.path().join("cni-cache").display()),
        ];
        if !extra.iter().any(|a| a.starts_with("--log-level")) {
            args.push("--log-level=debug".into());
        }
        if !extra
            .iter()
            .any(|a| a.starts_with("--pod-infra-container-image"))
        {
            args.push("--pod-infra-container-image=cri-dockerd-test/pause:latest".into());
        }
        // RunPodSandbox fails while the default `cni` plugin has no configuration (as kubelet
        // expects): tests that do not choose a plugin get Docker's bridge.
        if !extra
            .iter()
            .any(|a| *a == "--network-plugin" || a.starts_with("--network-plugin="))
        {
            args.push("--network-plugin=no-op".into());
        }
        if !extra.iter().any(|a| a.starts_with("--docker-endpoint")) {
            args.push(format!("--docker-endpoint={}", docker_endpoint()));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = spawn(&args, env, &dir.path().join("daemon.log"));
        let d = Daemon {
            child,
            dir,
            socket,
            args,
        };
        d.wait_ready().await;
        d
    }

    /// Wait until the socket accepts connections.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("daemon did not start; log:\n{}", self.log());
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The daemon's root directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The CNI conf dir the daemon watches.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.socket).await
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn image(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    pub async fn runtime_alpha(&self) -> AlphaRuntimeClient<Channel> {
        AlphaRuntimeClient::new(self.channel().await)
    }

    pub async fn image_alpha(&self) -> AlphaImageClient<Channel> {
        AlphaImageClient::new(self.channel().await)
    }

    /// Kill with SIGKILL and start again with the same arguments and directories.
    pub async fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.args, &[], &self.dir.path().join("daemon.log"));
        self.wait_ready().await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String], env: &[(&str, &str)], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn cri-dockerd")
}

/// A gRPC channel over the unix socket at `path`.
pub async fn connect(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .expect("connect to cri-dockerd")
}

/// Run `docker` with `args`, returning stdout; panics on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run `docker` with `args`, returning success and combined output.
pub fn docker_try(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    let mut s = String::from_utf8_lossy(&out.stdout).to_string();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Run a command, returning trimmed stdout; panics on failure.
pub fn command_output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
