//! Exec calls: create an exec instance, run it to completion collecting its output, inspect it.

use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;

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

/// Exec-level Docker calls.
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
            .call(|d| async move { d.create_exec(&id, opts).await })
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
            .call(|d| async move { d.start_exec(&id, Some(opts)).await })
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
            .call(|d| async move { d.inspect_exec(&id).await })
            .await?;
        let running = r.running.unwrap_or(false);
        Ok(ExecInfo {
            running,
            exit_code: if running { None } else { r.exit_code },
            pid: r.pid.unwrap_or(0),
        })
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
