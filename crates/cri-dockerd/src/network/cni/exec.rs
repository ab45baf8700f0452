//! Running CNI plugin binaries: finding them on the bin dirs, the `CNI_*` environment, stdin,
//! a timeout (the plugin is killed when it expires) and turning failures into typed errors with
//! the plugin's own code, message, details and stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::network::Error;

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// The per-invocation arguments passed in the environment (libcni's `invoke.Args`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvokeArgs {
    pub container_id: String,
    pub netns: String,
    pub if_name: String,
    /// `CNI_ARGS` pairs, in order.
    pub args: Vec<(String, String)>,
}

/// The `CNI_*` environment for `command` with plugin search path `path`.
pub fn build_env(command: Command, a: &InvokeArgs, path: &[PathBuf]) -> Vec<(String, String)> {
    let cni_args = a
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let cni_path = path
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    vec![
        ("CNI_COMMAND".into(), command.as_str().into()),
        ("CNI_CONTAINERID".into(), a.container_id.clone()),
        ("CNI_NETNS".into(), a.netns.clone()),
        ("CNI_ARGS".into(), cni_args),
        ("CNI_IFNAME".into(), a.if_name.clone()),
        ("CNI_PATH".into(), cni_path),
    ]
}

/// The first executable file named `plugin` in `dirs`.
pub fn find_plugin(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    if !plugin.is_empty() && !plugin.contains('/') {
        for d in dirs {
            let p = d.join(plugin);
            if let Ok(m) = std::fs::metadata(&p)
                && m.is_file()
                && m.permissions().mode() & 0o111 != 0
            {
                return Ok(p);
            }
        }
    }
    Err(Error::PluginNotFound {
        plugin: plugin.to_string(),
        dirs: dirs.to_vec(),
    })
}

/// Who is being run, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Label<'a> {
    pub plugin: &'a str,
    pub network: &'a str,
    pub command: Command,
}

/// Run the plugin at `path` with `stdin` and `env` (added to our own environment, CNI_* ones
/// replaced). Returns stdout on success. Each run is recorded in the CNI operation metrics
/// (latency by command and plugin type, and failures).
pub async fn run_plugin(
    path: &Path,
    stdin: &[u8],
    env: &[(String, String)],
    timeout: Duration,
    label: Label<'_>,
) -> Result<Vec<u8>, Error> {
    let start = std::time::Instant::now();
    let result = run_plugin_unmeasured(path, stdin, env, timeout, label).await;
    crate::metrics::record_cni(
        label.command.as_str(),
        label.plugin,
        start.elapsed(),
        result.is_err(),
    );
    result
}

/// How often a spawn that found the binary busy (`ETXTBSY`) is tried again, and the pause before
/// each retry.
const BUSY_RETRIES: u32 = 10;
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// Spawn `cmd`, trying again for a short while when the kernel says the binary is busy
/// (`ETXTBSY`): the plugin file is still open for writing somewhere, e.g. it is being installed or
/// replaced, or another process forked while holding it open and has not exec'd yet. The
/// condition is transient; failing the pod's network set-up over it would not be.
async fn spawn_retrying_busy(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < BUSY_RETRIES => {
                tries += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            other => return other,
        }
    }
}

async fn run_plugin_unmeasured(
    path: &Path,
    stdin: &[u8],
    env: &[(String, String)],
    timeout: Duration,
    label: Label<'_>,
) -> Result<Vec<u8>, Error> {
    let mut cmd = tokio::process::Command::new(path);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = spawn_retrying_busy(&mut cmd)
        .await
        .map_err(|source| Error::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
    let input = stdin.to_vec();
    let mut child_stdin = child.stdin.take();
    let writer = async move {
        if let Some(s) = child_stdin.as_mut() {
            // A plugin that exits without reading stdin is not our error: ignore EPIPE.
            let _ = s.write_all(&input).await;
            let _ = s.shutdown().await;
        }
        drop(child_stdin);
    };
    let run = async {
        let (_, out) = tokio::join!(writer, child.wait_with_output());
        out
    };
    let out = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(Error::Spawn {
                path: path.to_path_buf(),
                source,
            });
        }
        // Dropping the future dropped the child: kill_on_drop killed it.
        Err(_) => {
            return Err(Error::Timeout {
                plugin: label.plugin.to_string(),
                network: label.network.to_string(),
                command: label.command.as_str(),
                after: timeout,
            });
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !stderr.trim().is_empty() {
        tracing::debug!(plugin = label.plugin, command = label.command.as_str(), stderr = %stderr.trim_end(), "CNI plugin stderr");
    }
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(plugin_error(
        &out.stdout,
        &stderr,
        &out.status.to_string(),
        label,
    ))
}

/// The typed error for a plugin that exited non-zero: the CNI error object on stdout when there
/// is one, else exit status and output.
pub fn plugin_error(stdout: &[u8], stderr: &str, status: &str, label: Label<'_>) -> Error {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout)
        && let Some(code) = v.get("code").and_then(Value::as_u64)
    {
        let text = |k: &str| {
            v.get(k)
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        return Error::Plugin(Box::new(crate::network::error::PluginError {
            plugin: label.plugin.to_string(),
            network: label.network.to_string(),
            command: label.command.as_str(),
            code,
            msg: text("msg"),
            details: text("details"),
            stderr: stderr.to_string(),
        }));
    }
    Error::PluginFailed(Box::new(crate::network::error::PluginExit {
        plugin: label.plugin.to_string(),
        network: label.network.to_string(),
        command: label.command.as_str(),
        status: status.to_string(),
        stdout: String::from_utf8_lossy(stdout).into_owned(),
        stderr: stderr.to_string(),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn label(c: Command) -> Label<'static> {
        Label {
            plugin: "fake",
            network: "net",
            command: c,
        }
    }

    #[test]
    fn env_is_libcni_shaped() {
        let a = InvokeArgs {
            container_id: "abc".into(),
            netns: "/proc/42/ns/net".into(),
            if_name: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), "ns".into()),
                ("K8S_POD_NAME".into(), "p".into()),
            ],
        };
        let env = build_env(
            Command::Add,
            &a,
            &[PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("CNI_COMMAND"), "ADD");
        assert_eq!(get("CNI_CONTAINERID"), "abc");
        assert_eq!(get("CNI_NETNS"), "/proc/42/ns/net");
        assert_eq!(get("CNI_IFNAME"), "eth0");
        assert_eq!(
            get("CNI_ARGS"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"
        );
        assert_eq!(get("CNI_PATH"), "/opt/cni/bin:/usr/lib/cni");
    }

    #[test]
    fn find_plugin_searches_dirs_in_order_and_needs_exec_bit() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("bridge"), "not executable").unwrap();
        let good = script(b.path(), "bridge", "exit 0");
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find_plugin("bridge", &dirs).unwrap(), good);
        assert!(matches!(
            find_plugin("nope", &dirs),
            Err(Error::PluginNotFound { .. })
        ));
        assert!(find_plugin("../bridge", &dirs).is_err());
    }

    #[tokio::test]
    async fn runs_with_stdin_and_env() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "echo",
            r#"read -r line; echo "{\"got\":$line,\"cmd\":\"$CNI_COMMAND\"}""#,
        );
        let env = build_env(Command::Check, &InvokeArgs::default(), &[]);
        let out = run_plugin(
            &p,
            b"{\"a\":1}\n",
            &env,
            Duration::from_secs(10),
            label(Command::Check),
        )
        .await
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["got"]["a"], 1);
        assert_eq!(v["cmd"], "CHECK");
    }

    #[tokio::test]
    async fn a_busy_plugin_file_is_run_once_it_is_released() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "busy", "echo '{}'");
        // Held open for writing, as while a package manager replaces it or while another
        // process that forked with it open has not exec'd yet: exec fails with ETXTBSY.
        let writer = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let busy = std::process::Command::new(&p).output().unwrap_err();
        assert_eq!(busy.raw_os_error(), Some(libc::ETXTBSY), "{busy}");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            drop(writer);
        });
        let out = run_plugin(&p, b"", &[], Duration::from_secs(10), label(Command::Add))
            .await
            .unwrap();
        release.join().unwrap();
        assert_eq!(out, b"{}\n");
    }

    #[tokio::test]
    async fn a_plugin_that_stays_busy_is_a_spawn_error() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "busy", "echo '{}'");
        let _writer = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let err = run_plugin(&p, b"", &[], Duration::from_secs(10), label(Command::Add))
            .await
            .unwrap_err();
        match err {
            Error::Spawn { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ETXTBSY)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn cni_error_keeps_code_msg_details_and_stderr() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "bad",
            r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"boom","details":"the details"}'; echo oops >&2; exit 1"#,
        );
        let err = run_plugin(&p, b"{}", &[], Duration::from_secs(10), label(Command::Add))
            .await
            .unwrap_err();
        assert_eq!(err.cni_code(), Some(7));
        let s = err.to_string();
        for want in ["boom", "the details", "oops", "code 7", "\"fake\"", "ADD"] {
            assert!(s.contains(want), "{want} in {s}");
        }
    }

    #[tokio::test]
    async fn non_cni_failure_keeps_output() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "crash", "echo garbage; echo panic >&2; exit 3");
        let err = run_plugin(&p, b"{}", &[], Duration::from_secs(10), label(Command::Del))
            .await
            .unwrap_err();
        match &err {
            Error::PluginFailed(e) => {
                assert!(e.stdout.contains("garbage"));
                assert!(e.stderr.contains("panic"));
                assert!(e.status.contains('3'), "{}", e.status);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_plugin() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("still-running");
        let p = script(
            d.path(),
            "slow",
            &format!("sleep 3; touch {}", marker.display()),
        );
        let t = std::time::Instant::now();
        let err = run_plugin(
            &p,
            b"{}",
            &[],
            Duration::from_millis(300),
            label(Command::Add),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(!marker.exists(), "the plugin was not killed");
    }
}
