//! ExecSync: run a command in a running container, collect stdout/stderr and the exit code, and
//! really kill the process (and its descendants) when the CRI timeout expires.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::{Error, Result, Runtime};
use crate::docker::{self, DockerApi, ExecOutput, ExecSpec};

/// Most output ExecSync returns (stdout and stderr together): kubelet's CRI client accepts
/// messages up to 16 MiB; a little room is kept for the rest of the message.
pub const MAX_EXEC_OUTPUT: usize = 16 * 1024 * 1024 - 4096;

impl Runtime {
    /// `ExecSync`. `NotFound` for an unknown container, `FailedPrecondition` when it is not
    /// running, `DeadlineExceeded` (after killing the process) when `timeout` seconds pass.
    #[tracing::instrument(skip_all, fields(container_id = %req.container_id))]
    pub async fn exec_sync(&self, req: &cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse> {
        if req.container_id.is_empty() {
            return Err(Error::InvalidArgument("container_id is required".into()));
        }
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument("cmd is required".into()));
        }
        if req.timeout < 0 {
            return Err(Error::InvalidArgument(format!(
                "timeout must not be negative, got {}",
                req.timeout
            )));
        }
        let spec = ExecSpec {
            cmd: req.cmd.clone(),
            attach_stdout: true,
            attach_stderr: true,
            ..Default::default()
        };
        let exec_id = self
            .docker
            .create_exec(&req.container_id, &spec)
            .await
            .map_err(|e| match e {
                docker::Error::NotFound(m) => {
                    Error::NotFound(format!("container {} not found: {m}", req.container_id))
                }
                docker::Error::Conflict(m) => Error::FailedPrecondition(format!(
                    "container {} is not running: {m}",
                    req.container_id
                )),
                other => other.into(),
            })?;
        tracing::debug!(exec_id = %exec_id, cmd = ?req.cmd, timeout = req.timeout, "exec sync");
        // The run (and the kill on timeout) is a task of its own: if the client gives up first
        // (its deadline is usually the same timeout), the process is still killed on time.
        let docker = self.docker.clone();
        let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout.unsigned_abs()));
        let id = exec_id.clone();
        let task = tokio::spawn(async move { run_exec(docker.as_ref(), &id, timeout).await });
        let output = match task.await {
            Ok(Ok(Some(out))) => out,
            Ok(Ok(None)) => {
                return Err(Error::DeadlineExceeded(format!(
                    "command {:?} timed out after {}s and was killed",
                    req.cmd, req.timeout
                )));
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(Error::Internal(format!("exec task failed: {e}"))),
        };
        if output.truncated {
            tracing::warn!(exec_id = %exec_id, "exec output beyond {MAX_EXEC_OUTPUT} bytes was discarded");
        }
        let exit_code = exec_exit_code(self.docker.as_ref(), &exec_id).await?;
        Ok(cri::ExecSyncResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code,
        })
    }
}

/// Run `exec_id` to completion; `None` when `timeout` expired (the process is then killed).
async fn run_exec(
    docker: &dyn DockerApi,
    exec_id: &str,
    timeout: Option<Duration>,
) -> Result<Option<ExecOutput>> {
    let run = docker.run_exec(exec_id, MAX_EXEC_OUTPUT);
    let Some(limit) = timeout else {
        return Ok(Some(run.await?));
    };
    match tokio::time::timeout(limit, run).await {
        Ok(out) => Ok(Some(out?)),
        Err(_) => {
            kill_exec(docker, exec_id, "timed-out").await;
            Ok(None)
        }
    }
}

/// The exit code, once Docker has recorded it (the output stream can close a moment before).
pub(crate) async fn exec_exit_code(docker: &dyn DockerApi, exec_id: &str) -> Result<i32> {
    for _ in 0..100 {
        let info = docker.inspect_exec(exec_id).await?;
        if let Some(code) = info.exit_code.filter(|_| !info.running) {
            return i32::try_from(code)
                .map_err(|_| Error::Internal(format!("exec exit code {code} out of range")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(Error::Internal(format!(
        "exec {exec_id} closed its output but Docker reports it still running"
    )))
}

/// How long [`kill_exec`] waits for Docker to record the PID of a just-started exec.
const PID_WAIT: Duration = Duration::from_secs(3);

/// SIGKILL the exec'd process and its descendants (Docker has no exec kill). Best effort:
/// failures are logged. Needs this daemon in dockerd's PID namespace (Docker reports host PIDs).
/// `why` says why, for the log.
pub(crate) async fn kill_exec(docker: &dyn DockerApi, exec_id: &str, why: &str) {
    // Docker records the exec's PID only once runc has started the process, so just after a
    // start the process can already run while the exec shows no PID: wait for it (or for the
    // exit) rather than leave the process behind.
    let deadline = tokio::time::Instant::now() + PID_WAIT;
    let pid = loop {
        match docker.inspect_exec(exec_id).await {
            Ok(info) if info.running && info.pid > 0 => break info.pid,
            Ok(info) if info.exit_code.is_some() => {
                tracing::debug!(exec_id, "{why} exec already exited: nothing to kill");
                return;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) => {
                tracing::debug!(exec_id, "{why} exec never started: nothing to kill");
                return;
            }
            Err(e) => {
                tracing::warn!(exec_id, "cannot inspect {why} exec to kill it: {e}");
                return;
            }
        }
    };
    let pids = process_tree(pid);
    tracing::info!(exec_id, pid, ?pids, "killing {why} exec");
    kill_pids(&pids).await;
}

/// `root` and every descendant, from `/proc/*/stat`. Parents come before children.
pub fn process_tree(root: i64) -> Vec<i64> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
            {
                parents.push((pid, ppid));
            }
        }
    }
    descendants(root, &parents)
}

/// The parent PID field of a `/proc/<pid>/stat` line (the comm field may hold spaces and `)`).
pub fn parent_pid(stat: &str) -> Option<i64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` followed by all its descendants in `(pid, ppid)` pairs, breadth first.
pub fn descendants(root: i64, pairs: &[(i64, i64)]) -> Vec<i64> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            pairs
                .iter()
                .filter(|(pid, ppid)| *ppid == parent && !out.contains(pid))
                .map(|(pid, _)| *pid)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    out
}

/// SIGKILL `pids` with the system `kill` (no unsafe code here).
async fn kill_pids(pids: &[i64]) {
    let mut cmd = tokio::process::Command::new("kill");
    cmd.arg("-KILL").arg("--");
    cmd.args(pids.iter().map(|p| p.to_string()));
    match cmd.output().await {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::warn!(
            ?pids,
            "kill -KILL failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => tracing::warn!(?pids, "cannot run kill: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parent_pid() {
        assert_eq!(parent_pid("42 (sleep) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_pid("42 (a b) c) R 9 1 1"), Some(9));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn collects_descendants() {
        let pairs = [(2, 1), (3, 2), (4, 2), (5, 3), (6, 1), (7, 6)];
        assert_eq!(descendants(2, &pairs), vec![2, 3, 4, 5]);
        assert_eq!(descendants(9, &pairs), vec![9]);
    }
}
