//! Exec, Attach and PortForward: the CRI calls that hand out streaming URLs, and
//! [`DockerStreamingRuntime`], the Docker side of the `cri-streaming` server (attached exec,
//! container attach, TTY resize, port-forward inside the pod's network namespace).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cri_streaming::{ExitStatus, PortStream, StreamIo, TermSize};
use futures_util::StreamExt;
use k8s_cri::v1 as cri;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::exec::{exec_exit_code, kill_exec};
use super::{Error, Result, Runtime};
use crate::docker::{AttachSpec, AttachedStreams, DockerApi, ExecSpec, OutputChunk};

/// How long a port-forward connect inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn from_stream_err(e: cri_streaming::Error) -> Error {
    use cri_streaming::Error as S;
    match e {
        S::InvalidArgument(m) => Error::InvalidArgument(m),
        S::NotFound(m) => Error::NotFound(m),
        S::FailedPrecondition(m) => Error::FailedPrecondition(m),
        S::NotRunning => Error::Unavailable("the streaming server is not running".into()),
        S::Runtime(m) => Error::Internal(m),
        S::Io(e) => Error::Internal(format!("streaming server: {e}")),
    }
}

fn to_stream_err(e: impl Into<Error>) -> cri_streaming::Error {
    use cri_streaming::Error as S;
    match e.into() {
        Error::InvalidArgument(m) => S::InvalidArgument(m),
        Error::NotFound(m) => S::NotFound(m),
        Error::FailedPrecondition(m) => S::FailedPrecondition(m),
        other => S::Runtime(other.to_string()),
    }
}

impl Runtime {
    /// Start the streaming server on `--streaming-bind-addr` (default: loopback, random port).
    /// Call once at start-up; returns the bound address.
    pub async fn start_streaming(&self) -> Result<SocketAddr> {
        let bind_addr = self
            .config
            .streaming_bind_addr
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let server = self.streaming.get_or_init(|| {
            let runtime = DockerStreamingRuntime {
                docker: self.docker.clone(),
            };
            let config = cri_streaming::Config {
                bind_addr,
                ..Default::default()
            };
            cri_streaming::Server::new(config, Arc::new(runtime))
        });
        server.start().await.map_err(|e| match e {
            cri_streaming::Error::Io(e) => Error::Unavailable(format!(
                "streaming server cannot listen on {bind_addr}: {e}"
            )),
            other => from_stream_err(other),
        })
    }

    /// Stop accepting streaming connections (at shutdown).
    pub fn stop_streaming(&self) {
        if let Some(s) = self.streaming.get() {
            s.shutdown();
        }
    }

    /// Exec/attach/port-forward sessions open and started, once the streaming server runs.
    pub fn streaming_sessions(&self) -> Option<cri_streaming::SessionCounts> {
        self.streaming.get().map(cri_streaming::Server::sessions)
    }

    fn streaming_server(&self) -> Result<&cri_streaming::Server> {
        self.streaming
            .get()
            .ok_or_else(|| Error::Unavailable("the streaming server is not running".into()))
    }

    /// A CRI container that is running, by full ID or prefix; returns its full ID.
    async fn running_container(&self, id: &str) -> Result<String> {
        self.host().await?;
        let info = self.require_container(id).await?;
        if !info.state.running {
            return Err(Error::FailedPrecondition(format!(
                "container {id:?} is not running (state {:?})",
                info.state.status
            )));
        }
        Ok(info.id)
    }

    /// `Exec`: validate, then hand out the single-use URL of the streaming exec.
    #[tracing::instrument(skip_all, fields(container_id = %req.container_id))]
    pub async fn exec(&self, req: &cri::ExecRequest) -> Result<cri::ExecResponse> {
        let mut sreq = cri_streaming::ExecRequest {
            container_id: req.container_id.clone(),
            cmd: req.cmd.clone(),
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        };
        sreq.validate().map_err(from_stream_err)?;
        sreq.container_id = self.running_container(&req.container_id).await?;
        let url = self
            .streaming_server()?
            .get_exec(sreq)
            .map_err(from_stream_err)?;
        tracing::debug!(cmd = ?req.cmd, tty = req.tty, "exec URL issued");
        Ok(cri::ExecResponse { url })
    }

    /// `Attach`: validate, then hand out the single-use URL of the streaming attach.
    #[tracing::instrument(skip_all, fields(container_id = %req.container_id))]
    pub async fn attach(&self, req: &cri::AttachRequest) -> Result<cri::AttachResponse> {
        let mut sreq = cri_streaming::AttachRequest {
            container_id: req.container_id.clone(),
            stdin: req.stdin,
            tty: req.tty,
            stdout: req.stdout,
            stderr: req.stderr,
        };
        sreq.validate().map_err(from_stream_err)?;
        sreq.container_id = self.running_container(&req.container_id).await?;
        let url = self
            .streaming_server()?
            .get_attach(sreq)
            .map_err(from_stream_err)?;
        tracing::debug!(tty = req.tty, "attach URL issued");
        Ok(cri::AttachResponse { url })
    }

    /// `PortForward`: the sandbox must exist and be ready; hands out the single-use URL.
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %req.pod_sandbox_id))]
    pub async fn port_forward(
        &self,
        req: &cri::PortForwardRequest,
    ) -> Result<cri::PortForwardResponse> {
        let mut sreq = cri_streaming::PortForwardRequest {
            pod_sandbox_id: req.pod_sandbox_id.clone(),
            port: req.port.clone(),
        };
        sreq.validate().map_err(from_stream_err)?;
        self.host().await?;
        let entry = self
            .find_sandbox(&req.pod_sandbox_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
            })?;
        if entry.state() != cri::PodSandboxState::SandboxReady {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {:?} is not ready",
                req.pod_sandbox_id
            )));
        }
        sreq.pod_sandbox_id = entry.id;
        let url = self
            .streaming_server()?
            .get_port_forward(sreq)
            .map_err(from_stream_err)?;
        tracing::debug!(ports = ?req.port, "port-forward URL issued");
        Ok(cri::PortForwardResponse { url })
    }
}

/// The Docker side of the streaming server.
pub struct DockerStreamingRuntime {
    docker: Arc<dyn DockerApi>,
}

impl DockerStreamingRuntime {
    /// A streaming runtime over `docker`.
    pub fn new(docker: Arc<dyn DockerApi>) -> Self {
        Self { docker }
    }
}

impl std::fmt::Debug for DockerStreamingRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DockerStreamingRuntime")
    }
}

/// Whose TTY a resize applies to.
enum ResizeTarget {
    Exec(String),
    Container(String),
}

/// Kills an exec's processes when dropped armed: the client went away (the server dropped the
/// exec future) before the process ended.
struct KillOnDrop {
    docker: Arc<dyn DockerApi>,
    exec_id: String,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(exec_id = %self.exec_id, "cannot kill abandoned exec: no runtime");
            return;
        };
        let docker = self.docker.clone();
        let exec_id = std::mem::take(&mut self.exec_id);
        tracing::debug!(exec_id, "exec abandoned by its client: killing it");
        handle.spawn(async move { kill_exec(docker.as_ref(), &exec_id, "abandoned").await });
    }
}

#[async_trait]
impl cri_streaming::Runtime for DockerStreamingRuntime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        io: StreamIo,
    ) -> std::result::Result<ExitStatus, cri_streaming::Error> {
        let spec = ExecSpec {
            cmd: cmd.to_vec(),
            tty: io.tty,
            attach_stdin: io.stdin.is_some(),
            attach_stdout: io.stdout.is_some(),
            attach_stderr: io.stderr.is_some(),
        };
        let exec_id = self
            .docker
            .create_exec(container_id, &spec)
            .await
            .map_err(to_stream_err)?;
        tracing::info!(container_id, exec_id = %exec_id, ?cmd, tty = io.tty, "streaming exec");
        let mut guard = KillOnDrop {
            docker: self.docker.clone(),
            exec_id: exec_id.clone(),
            armed: true,
        };
        let streams = self
            .docker
            .start_exec_streaming(&exec_id, io.tty)
            .await
            .map_err(to_stream_err)?;
        let target = ResizeTarget::Exec(exec_id.clone());
        pump(self.docker.as_ref(), &target, streams, io, true).await?;
        // The output can end with the process still running: Docker ends a TTY exec's attach
        // when its stdin is closed, as it is when the client goes away. The guard stays armed
        // until the exit is seen, so a client that leaves meanwhile, or a process still
        // running when the wait gives up, is killed rather than left behind.
        let code = exec_exit_code(self.docker.as_ref(), &exec_id)
            .await
            .map_err(to_stream_err)?;
        guard.armed = false;
        tracing::debug!(exec_id = %exec_id, code, "streaming exec ended");
        Ok(ExitStatus { code })
    }

    async fn attach(
        &self,
        container_id: &str,
        io: StreamIo,
    ) -> std::result::Result<(), cri_streaming::Error> {
        let info = self
            .docker
            .inspect_container(container_id)
            .await
            .map_err(to_stream_err)?;
        // As kubelet defines stdin_once: the end of the client's stdin closes the container's
        // stdin only for a StdinOnce container without TTY (Docker does the close on the
        // half-close). Otherwise the container's stdin stays open and the output keeps
        // streaming (a half-close would make Docker end the whole attach).
        let close_stdin = info.stdin_once && !info.tty;
        let spec = AttachSpec {
            stdin: io.stdin.is_some(),
            stdout: io.stdout.is_some(),
            stderr: io.stderr.is_some(),
        };
        let streams = self
            .docker
            .attach_container(container_id, spec)
            .await
            .map_err(to_stream_err)?;
        tracing::info!(container_id, tty = io.tty, "attached");
        let target = ResizeTarget::Container(container_id.to_string());
        pump(self.docker.as_ref(), &target, streams, io, close_stdin).await
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        mut stream: PortStream,
    ) -> std::result::Result<(), cri_streaming::Error> {
        let info = self
            .docker
            .inspect_container(pod_sandbox_id)
            .await
            .map_err(to_stream_err)?;
        if !info.state.running || info.state.pid <= 0 {
            return Err(cri_streaming::Error::FailedPrecondition(format!(
                "pod sandbox {pod_sandbox_id} is not running"
            )));
        }
        let mut tcp = connect_in_netns(info.state.pid, port).await.map_err(|e| {
            cri_streaming::Error::Runtime(format!(
                "port-forward to port {port} in pod sandbox {pod_sandbox_id}: {e}"
            ))
        })?;
        tracing::debug!(pod_sandbox_id, port, "port-forward connected");
        // Errors here are the two peers closing in their own ways: the forward is over.
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
        Ok(())
    }
}

/// Copy client stdin to the process and the process's output to the client until the process
/// closes its output; forward resizes meanwhile. `close_stdin`: half-close the connection when
/// the client's stdin ends.
async fn pump(
    docker: &dyn DockerApi,
    target: &ResizeTarget,
    streams: AttachedStreams,
    io: StreamIo,
    close_stdin: bool,
) -> std::result::Result<(), cri_streaming::Error> {
    let AttachedStreams { mut output, input } = streams;
    let StreamIo {
        stdin,
        mut stdout,
        mut stderr,
        resize,
        ..
    } = io;
    let feed_stdin = async move {
        let mut input = input;
        if let Some(mut stdin) = stdin {
            if let Err(e) = tokio::io::copy(&mut stdin, &mut input).await {
                tracing::debug!("stdin copy ended: {e}");
            }
            if close_stdin {
                // Half-close: the process reads EOF.
                let _ = input.shutdown().await;
            } else {
                let _ = input.flush().await;
            }
        }
        // Keep the write half until the output ends.
        std::future::pending::<()>().await;
    };
    let forward_resizes = async move {
        if let Some(mut rx) = resize {
            while let Some(size) = rx.recv().await {
                resize_tty(docker, target, size).await;
            }
        }
        std::future::pending::<()>().await;
    };
    let copy_output = async {
        while let Some(chunk) = output.next().await {
            let (writer, data) = match chunk.map_err(to_stream_err)? {
                OutputChunk::Stdout(d) => (&mut stdout, d),
                OutputChunk::Stderr(d) => (&mut stderr, d),
            };
            write_or_drop(writer, &data).await;
        }
        for w in [&mut stdout, &mut stderr].into_iter().flatten() {
            let _ = w.shutdown().await;
        }
        Ok(())
    };
    tokio::select! {
        r = copy_output => r,
        () = feed_stdin => Ok(()),
        () = forward_resizes => Ok(()),
    }
}

/// Write `data` to the client; a client that stopped reading is dropped (output is drained).
async fn write_or_drop(writer: &mut Option<Box<dyn AsyncWrite + Send + Unpin>>, data: &[u8]) {
    if let Some(w) = writer.as_mut()
        && w.write_all(data).await.is_err()
    {
        *writer = None;
    }
}

async fn resize_tty(docker: &dyn DockerApi, target: &ResizeTarget, size: TermSize) {
    let r = match target {
        ResizeTarget::Exec(id) => docker.resize_exec(id, size.width, size.height).await,
        ResizeTarget::Container(id) => docker.resize_container(id, size.width, size.height).await,
    };
    if let Err(e) = r {
        tracing::debug!(?size, "terminal resize failed: {e}");
    }
}

/// Connect to `localhost:port` inside the network namespace of `pid`: IPv4 first, then IPv6.
/// The socket is created by a dedicated thread that enters the namespace and ends after the
/// connect (a thread whose namespace changed is never reused).
async fn connect_in_netns(pid: i64, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("netns-connect-{pid}"))
        .spawn(move || {
            let _ = tx.send(connect_in_netns_blocking(pid, port));
        })?;
    let std_stream = rx
        .await
        .map_err(|_| std::io::Error::other("port-forward connect thread died"))??;
    std_stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_stream)
}

/// Runs on a dedicated thread only: moves the calling thread into the netns of `pid`.
fn connect_in_netns_blocking(pid: i64, port: u16) -> std::io::Result<TcpStream> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| std::io::Error::other(format!("setns into the pod network namespace: {e}")))?;
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| {
                std::io::Error::new(
                    e4.kind(),
                    format!("connect to localhost:{port}: IPv4: {e4}; IPv6: {e6}"),
                )
            })
        }
    }
}
