//! The real binary's command line: --version, --buildinfo, --help, one-line errors for every bad
//! flag value, JSON logs, socket parent creation, refusing a live socket, and $DOCKER_HOST.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

/// Run the binary to completion with `args`, no inherited Docker/systemd environment.
fn run(args: &[&str]) -> Output {
    Command::new(common::binary())
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .output()
        .expect("run cri-dockerd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A daemon started with exactly `args` (plus a private root), stderr to `dir/stderr.log`.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Proc {
        let stderr = dir.join("stderr.log");
        let log = std::fs::File::create(&stderr).expect("stderr log");
        let mut cmd = Command::new(common::binary());
        cmd.args(args)
            .arg(format!(
                "--cri-dockerd-root-directory={}",
                dir.join("root").display()
            ))
            .arg(format!("--cni-conf-dir={}", dir.join("net.d").display()))
            .arg("--pod-infra-container-image=cri-dockerd-test/pause:latest")
            .env_remove("DOCKER_HOST")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn cri-dockerd"),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_socket(&mut self, socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("daemon exited with {st}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "daemon did not listen on {}: {}",
            socket.display(),
            self.stderr()
        );
    }

    /// Wait up to `secs` for the process to exit.
    fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {secs}s: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn version_prints_name_version_and_commit() {
    let out = run(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = stdout.strip_suffix('\n').expect("one line");
    assert!(!line.contains('\n'), "{stdout}");
    let rest = line.strip_prefix("cri-dockerd ").expect(line);
    let (version, commit) = rest.split_once(' ').expect(line);
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let commit = commit
        .strip_prefix('(')
        .and_then(|c| c.strip_suffix(')'))
        .expect(line);
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    // The Go form `--version=true` also works; `--version=false` does not print it.
    assert_eq!(text(&run(&["--version=true"]).stdout), stdout);
}

#[test]
fn buildinfo_prints_program_version_commit_date_and_rustc() {
    let out = run(&["--buildinfo"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let fields: Vec<(&str, &str)> = stdout
        .lines()
        .map(|l| l.split_once(": ").expect(l))
        .collect();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        ["Program", "Version", "GitCommit", "Built", "RustVersion"]
    );
    assert_eq!(fields[0].1, "cri-dockerd");
    assert!(fields[1].1.starts_with(env!("CARGO_PKG_VERSION")));
    assert!(fields[1].1.ends_with(&format!("({})", fields[2].1)));
    let built = fields[3].1;
    assert!(
        built.len() == 20 && built.ends_with('Z') && built.as_bytes()[10] == b'T',
        "{built}"
    );
    assert!(fields[4].1.starts_with("rustc 1."), "{}", fields[4].1);
}

#[test]
fn help_lists_every_flag() {
    for h in ["--help", "-h"] {
        let out = run(&[h]);
        assert!(out.status.success(), "{out:?}");
        let help = text(&out.stdout);
        for flag in [
            "--container-runtime-endpoint",
            "--docker-endpoint",
            "--cri-dockerd-root-directory",
            "--pod-infra-container-image",
            "--image-pull-progress-deadline",
            "--runtime-request-timeout",
            "--streaming-bind-addr",
            "--network-plugin ",
            "--cni-bin-dir",
            "--cni-conf-dir",
            "--cni-cache-dir",
            "--pod-cidr",
            "--ipv6-dual-stack",
            "--network-plugin-mtu",
            "--hairpin-mode",
            "--runtime-cgroups",
            "--log-level",
            "--log-format",
            "--restrict-oom-score-adj",
            "--version",
            "--buildinfo",
            "--help",
        ] {
            assert!(help.contains(flag), "{h} lacks {flag}:\n{help}");
        }
        assert!(help.contains("registry.k8s.io/pause:3.10"), "{help}");
    }
}

#[test]
fn every_bad_value_exits_nonzero_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let file = file.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--container-runtime-endpoint=http://x".into()],
            "container-runtime-endpoint",
        ),
        (
            vec!["--container-runtime-endpoint=tcp://1.2.3.4".into()],
            "container-runtime-endpoint",
        ),
        (
            vec!["--container-runtime-endpoint".into()],
            "container-runtime-endpoint",
        ),
        (
            vec!["--docker-endpoint=ssh://host".into()],
            "docker-endpoint",
        ),
        (
            vec![format!("--cri-dockerd-root-directory={file}")],
            "cri-dockerd-root-directory",
        ),
        (
            vec!["--cri-dockerd-root-directory=rel".into()],
            "cri-dockerd-root-directory",
        ),
        (
            vec!["--pod-infra-container-image=".into()],
            "pod-infra-container-image",
        ),
        (
            vec!["--image-pull-progress-deadline=5".into()],
            "image-pull-progress-deadline",
        ),
        (
            vec!["--image-pull-progress-deadline=-1s".into()],
            "image-pull-progress-deadline",
        ),
        (
            vec!["--runtime-request-timeout=1x".into()],
            "runtime-request-timeout",
        ),
        (
            vec!["--runtime-request-timeout=".into()],
            "runtime-request-timeout",
        ),
        (
            vec!["--streaming-bind-addr=nowhere".into()],
            "streaming-bind-addr",
        ),
        (vec!["--network-plugin=calico".into()], "network-plugin"),
        (vec![format!("--cni-bin-dir={file}")], "cni-bin-dir"),
        (vec![format!("--cni-conf-dir={file}/sub")], "cni-conf-dir"),
        (vec![format!("--cni-cache-dir={file}")], "cni-cache-dir"),
        (vec!["--pod-cidr=10.0.0.0/40".into()], "pod-cidr"),
        (vec!["--ipv6-dual-stack=maybe".into()], "ipv6-dual-stack"),
        (
            vec!["--ipv6-dual-stack".into(), "true".into()],
            "ipv6-dual-stack",
        ),
        (
            vec!["--network-plugin-mtu=big".into()],
            "network-plugin-mtu",
        ),
        (vec!["--hairpin-mode=sometimes".into()], "hairpin-mode"),
        (vec!["--runtime-cgroups=relative".into()], "runtime-cgroups"),
        (vec!["--log-level=loud".into()], "log-level"),
        (vec!["--log-format=xml".into()], "log-format"),
        (
            vec!["--restrict-oom-score-adj=2".into()],
            "restrict-oom-score-adj",
        ),
        (vec!["--version=perhaps".into()], "version"),
        (vec!["--no-such-flag".into()], "no-such-flag"),
    ];
    for (args, flag) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&argv);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(&format!("--{flag}")), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}

#[test]
fn bad_docker_host_is_reported_as_the_docker_endpoint() {
    let out = Command::new(common::binary())
        .env("DOCKER_HOST", "npipe:////./pipe/docker_engine")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--docker-endpoint") && stderr.contains("DOCKER_HOST"),
        "{stderr}"
    );
}

#[test]
fn json_log_format_writes_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let mut d = Proc::spawn(
        dir.path(),
        &[
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--docker-endpoint={}", common::docker_endpoint()),
            "--log-format=json".into(),
            "--log-level=debug".into(),
        ],
        &[],
    );
    d.wait_socket(&socket);
    d.terminate();
    assert!(d.wait_exit(20).success(), "{}", d.stderr());
    let log = d.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{log}");
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{l}"
        );
    }
    assert!(log.contains("serving CRI"), "{log}");
}

#[test]
fn creates_missing_socket_parent_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("run/nested/deeper/cri.sock");
    assert!(!socket.parent().expect("parent").exists());
    let mut d = Proc::spawn(
        dir.path(),
        &[format!(
            "--container-runtime-endpoint=unix://{}",
            socket.display()
        )],
        &[],
    );
    d.wait_socket(&socket);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let endpoint = format!("--container-runtime-endpoint=unix://{}", socket.display());
    let mut first = Proc::spawn(dir.path(), std::slice::from_ref(&endpoint), &[]);
    first.wait_socket(&socket);

    let second_dir = tempfile::tempdir().expect("tempdir");
    let mut second = Proc::spawn(second_dir.path(), &[endpoint], &[]);
    let st = second.wait_exit(20);
    assert!(!st.success());
    let stderr = second.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("in use") && stderr.contains(&socket.display().to_string()),
        "{stderr}"
    );
    // The first daemon still owns and serves the socket.
    assert!(first.child.try_wait().expect("try_wait").is_none());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok());
}

/// `$DOCKER_HOST` picks the Docker daemon when `--docker-endpoint` is not given.
#[tokio::test]
async fn docker_host_is_honoured_without_docker_endpoint() {
    require_docker!();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let endpoint = format!("--container-runtime-endpoint=unix://{}", socket.display());

    // The real dockerd through $DOCKER_HOST: Version answers with its version.
    let real = common::docker_endpoint();
    let mut d = Proc::spawn(
        dir.path(),
        std::slice::from_ref(&endpoint),
        &[("DOCKER_HOST", real.as_str())],
    );
    d.wait_socket(&socket);
    let mut rt =
        cri::runtime_service_client::RuntimeServiceClient::new(common::connect(&socket).await);
    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .expect("Version through $DOCKER_HOST")
        .into_inner();
    let server = common::docker(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(v.runtime_version, server);
    drop(rt);
    drop(d);

    // A $DOCKER_HOST with no daemon behind it: the same call cannot reach Docker.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let socket2 = dir2.path().join("cri.sock");
    let missing = format!("unix://{}", dir2.path().join("no-docker.sock").display());
    let mut d2 = Proc::spawn(
        dir2.path(),
        &[format!(
            "--container-runtime-endpoint=unix://{}",
            socket2.display()
        )],
        &[("DOCKER_HOST", missing.as_str())],
    );
    d2.wait_socket(&socket2);
    let mut rt2 =
        cri::runtime_service_client::RuntimeServiceClient::new(common::connect(&socket2).await);
    let err = rt2
        .version(cri::VersionRequest::default())
        .await
        .expect_err("no dockerd behind $DOCKER_HOST");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The cgroup path of `pid` for `controller` (v1) or in the unified tree (`controller` = "").
fn cgroup_of(pid: u32, controller: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

/// Removes the cgroup directories a test created (deepest first), after the daemon is gone.
struct CgroupCleanup(Vec<PathBuf>);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `--runtime-cgroups` moves the daemon into the named cgroup in every controller hierarchy it
/// joins (cpu and memory among them on cgroup v1; the unified tree on v2).
#[test]
fn runtime_cgroups_moves_the_daemon_into_the_cgroup() {
    use cri_dockerd::cgroups::{Layout, cgroup_dirs, parse_mountinfo};
    if !is_root() {
        eprintln!("skipping: creating cgroups needs root");
        return;
    }
    let layout =
        parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"));
    let checked: &[&str] = match layout {
        Layout::V1 { .. } => &["cpu", "memory"],
        Layout::Unified { .. } => &[""],
        Layout::None => {
            eprintln!("skipping: no cgroup filesystem");
            return;
        }
    };
    // Nest below the cgroup this test already runs in (the deepest of its paths), so the daemon
    // stays inside whatever limits the test runner set.
    let me = std::process::id();
    let base = ["memory", "cpu", "pids", ""]
        .iter()
        .filter_map(|c| cgroup_of(me, c))
        .max_by_key(String::len)
        .unwrap_or_else(|| "/".into());
    let unique = format!(
        "cri-dockerd-test-{}-{}",
        me,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos()
    );
    let name = format!("{}/{unique}", base.trim_end_matches('/'));
    // Every directory the daemon will have to create, to remove afterwards.
    let mut created = Vec::new();
    for dir in cgroup_dirs(&layout, &name) {
        let mut missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.exists())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        created.extend(missing);
    }
    let _cleanup = CgroupCleanup(created);

    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let mut d = Proc::spawn(
        dir.path(),
        &[
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--runtime-cgroups={name}"),
        ],
        &[],
    );
    d.wait_socket(&socket);
    let pid = d.child.id();
    for c in checked {
        assert_eq!(
            cgroup_of(pid, c).as_deref(),
            Some(name.as_str()),
            "controller {c:?}; log:\n{}",
            d.stderr()
        );
    }
    let log = d.stderr();
    assert!(
        log.contains("running in --runtime-cgroups") && !log.contains("WARN"),
        "{log}"
    );
    d.terminate();
    assert!(d.wait_exit(20).success(), "{}", d.stderr());
}

/// A cgroup that cannot be created: one warning naming the flag, and the daemon serves anyway.
#[test]
fn runtime_cgroups_failure_is_one_warning_and_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    // Below a file that every hierarchy root has: creating it fails (ENOTDIR) everywhere and
    // nothing is created. (A very long name is no good: cgroupfs accepts 300-byte names.)
    let name = "/cgroup.procs/cri-dockerd-test";
    let mut d = Proc::spawn(
        dir.path(),
        &[
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--runtime-cgroups={name}"),
        ],
        &[],
    );
    d.wait_socket(&socket);
    let log = d.stderr();
    // One warning for the cgroup failure (the host's oom_score_adj clamping warning, which
    // some hosts print at start-up, is a separate matter).
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && !l.contains("oom_score_adj"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("--runtime-cgroups="), "{log}");
}
