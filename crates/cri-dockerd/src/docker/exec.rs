//! Exec and attach calls: create an exec instance, run it to completion collecting its output,
//! inspect it; and the streaming forms (attached exec, container attach, TTY resize) that the
//! CRI streaming server drives.

use std::pin::Pin;

use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{AttachContainerOptions, ResizeContainerTTYOptions};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;

use super::client::DockerClient;
use super::error::{Error, Result};

/// A process to exec in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
}

/// What an exec printed, each stream capped by the caller's limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond the limit was discarded.
    pub truncated: bool,
}

/// An exec instance, from inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecInfo {
    pub running: bool,
    /// `None` while running.
    pub exit_code: Option<i64>,
    /// Host PID of the exec'd process (0 before it started).
    pub pid: i64,
}

/// A chunk of an attached process's output. With a TTY everything is `Stdout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// The hijacked connection of an attached exec or container attach.
pub struct AttachedStreams {
    /// The process's output, demultiplexed (ends when the process closes its output).
    pub output: Pin<Box<dyn Stream<Item = Result<OutputChunk>> + Send>>,
    /// The process's stdin; shutting it down half-closes the connection (stdin EOF).
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for AttachedStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttachedStreams")
    }
}

/// Which streams to attach to a running container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachSpec {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

fn attached(
    output: Pin<
        Box<
            dyn Stream<
                    Item = std::result::Result<
                        bollard::container::LogOutput,
                        bollard::errors::Error,
                    >,
                > + Send,
        >,
    >,
    input: Pin<Box<dyn AsyncWrite + Send>>,
) -> AttachedStreams {
    use bollard::container::LogOutput;
    let output = output.filter_map(|chunk| async move {
        match chunk {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                Some(Ok(OutputChunk::Stdout(message)))
            }
            Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk::Stderr(message))),
            Ok(LogOutput::StdIn { .. }) => None,
            Err(e) => Some(Err(Error::from(e))),
        }
    });
    AttachedStreams {
        output: Box::pin(output),
        input,
    }
}

/// Exec- and attach-level Docker calls.
#[async_trait]
pub trait ExecApi {
    /// Create an exec instance in `container_id`; returns its ID. `NotFound` for an unknown
    /// container, `Conflict` when it is not running.
    async fn create_exec(&self, container_id: &str, spec: &ExecSpec) -> Result<String>;
    /// Start `exec_id` attached and collect stdout/stderr until the process closes them. At
    /// most `limit` bytes are kept in total; the rest is read and discarded.
    async fn run_exec(&self, exec_id: &str, limit: usize) -> Result<ExecOutput>;
    /// Inspect `exec_id`.
    async fn inspect_exec(&self, exec_id: &str) -> Result<ExecInfo>;
    /// Start `exec_id` attached and hand over its streams (`tty`: raw, not multiplexed).
    async fn start_exec_streaming(&self, exec_id: &str, tty: bool) -> Result<AttachedStreams>;
    /// Resize the TTY of a started exec.
    async fn resize_exec(&self, exec_id: &str, width: u16, height: u16) -> Result<()>;
    /// Attach to the main process of running `container_id` (live streams only, no logs).
    async fn attach_container(
        &self,
        container_id: &str,
        spec: AttachSpec,
    ) -> Result<AttachedStreams>;
    /// Resize the TTY of `container_id`.
    async fn resize_container(&self, container_id: &str, width: u16, height: u16) -> Result<()>;
}

fn keep(buf: &mut Vec<u8>, data: &[u8], budget: &mut usize, truncated: &mut bool) {
    let n = data.len().min(*budget);
    buf.extend_from_slice(&data[..n]);
    *budget -= n;
    if n < data.len() {
        *truncated = true;
    }
}

#[async_trait]
impl ExecApi for DockerClient {
    async fn create_exec(&self, container_id: &str, spec: &ExecSpec) -> Result<String> {
        super::container::check_reference(container_id)?;
        let opts = CreateExecOptions::<String> {
            cmd: Some(spec.cmd.clone()),
            tty: Some(spec.tty),
            attach_stdin: Some(spec.attach_stdin),
            attach_stdout: Some(spec.attach_stdout),
            attach_stderr: Some(spec.attach_stderr),
            ..Default::default()
        };
        let id = container_id.to_string();
        let res = self
            .call(
                "create_exec",
                |d| async move { d.create_exec(&id, opts).await },
            )
            .await?;
        Ok(res.id)
    }

    async fn run_exec(&self, exec_id: &str, limit: usize) -> Result<ExecOutput> {
        let id = exec_id.to_string();
        let opts = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(64 * 1024),
        };
        let started = self
            .call("start_exec", |d| async move {
                d.start_exec(&id, Some(opts)).await
            })
            .await?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(Error::Client(format!(
                "exec {exec_id} started detached although attached was asked"
            )));
        };
        drop(input);
        let mut out = ExecOutput::default();
        let mut budget = limit;
        while let Some(chunk) = output.next().await {
            use bollard::container::LogOutput;
            match chunk.map_err(Error::from)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    keep(&mut out.stdout, &message, &mut budget, &mut out.truncated)
                }
                LogOutput::StdErr { message } => {
                    keep(&mut out.stderr, &message, &mut budget, &mut out.truncated)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        Ok(out)
    }

    async fn inspect_exec(&self, exec_id: &str) -> Result<ExecInfo> {
        let id = exec_id.to_string();
        let r = self
            .call("inspect_exec", |d| async move { d.inspect_exec(&id).await })
            .await?;
        let running = r.running.unwrap_or(false);
        Ok(ExecInfo {
            running,
            exit_code: if running { None } else { r.exit_code },
            pid: r.pid.unwrap_or(0),
        })
    }

    async fn start_exec_streaming(&self, exec_id: &str, tty: bool) -> Result<AttachedStreams> {
        let id = exec_id.to_string();
        let opts = StartExecOptions {
            detach: false,
            tty,
            output_capacity: Some(64 * 1024),
        };
        let started = self
            .call("start_exec", |d| async move {
                d.start_exec(&id, Some(opts)).await
            })
            .await?;
        match started {
            StartExecResults::Attached { output, input } => Ok(attached(output, input)),
            StartExecResults::Detached => Err(Error::Client(format!(
                "exec {exec_id} started detached although attached was asked"
            ))),
        }
    }

    async fn resize_exec(&self, exec_id: &str, width: u16, height: u16) -> Result<()> {
        let id = exec_id.to_string();
        let opts = ResizeExecOptions { height, width };
        self.call(
            "resize_exec",
            |d| async move { d.resize_exec(&id, opts).await },
        )
        .await
    }

    async fn attach_container(
        &self,
        container_id: &str,
        spec: AttachSpec,
    ) -> Result<AttachedStreams> {
        let id = container_id.to_string();
        let opts = AttachContainerOptions {
            stdin: spec.stdin,
            stdout: spec.stdout,
            stderr: spec.stderr,
            stream: true,
            logs: false,
            detach_keys: None,
        };
        let r = self
            .call("attach", |d| async move {
                d.attach_container(&id, Some(opts)).await
            })
            .await?;
        Ok(attached(r.output, r.input))
    }

    async fn resize_container(&self, container_id: &str, width: u16, height: u16) -> Result<()> {
        let id = container_id.to_string();
        let opts = ResizeContainerTTYOptions {
            w: i32::from(width),
            h: i32::from(height),
        };
        self.call("resize_container", |d| async move {
            d.resize_container_tty(&id, opts).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_caps_total_output() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut budget = 5;
        let mut truncated = false;
        keep(&mut a, b"abc", &mut budget, &mut truncated);
        assert!(!truncated);
        keep(&mut b, b"defg", &mut budget, &mut truncated);
        assert!(truncated);
        keep(&mut a, b"h", &mut budget, &mut truncated);
        assert_eq!(
            (a.as_slice(), b.as_slice(), budget),
            (&b"abc"[..], &b"de"[..], 0)
        );
    }
}
