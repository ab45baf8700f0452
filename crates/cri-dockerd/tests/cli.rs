//! The real binary's command line: --version, --buildinfo, --help, one-line errors for every bad
//! flag value, JSON logs, socket parent creation, the socket's mode and group, refusing a live
//! socket, and $DOCKER_HOST.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::host::is_root;
use common::process::Proc;
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

/// The daemon started with exactly `args` (plus a private root), its output in `dir/stderr.log`.
fn spawn(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(common::binary());
    cmd.args(args)
        .arg(format!(
            "--cri-dockerd-root-directory={}",
            dir.join("root").display()
        ))
        .arg(format!("--cni-conf-dir={}", dir.join("net.d").display()))
        .arg("--pod-infra-container-image=cri-dockerd-test/pause:latest");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn(cmd, dir.join("stderr.log"))
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
            "--metrics-bind-addr",
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
    let root_is_a_file = format!("--cri-dockerd-root-directory={file}");
    let cni_bin_is_a_file = format!("--cni-bin-dir={file}");
    let cni_conf_under_a_file = format!("--cni-conf-dir={file}/sub");
    let cni_cache_is_a_file = format!("--cni-cache-dir={file}");
    // Each case names the flag it gets wrong first.
    let cases: Vec<Vec<&str>> = vec![
        vec!["--container-runtime-endpoint=http://x"],
        vec!["--container-runtime-endpoint=tcp://1.2.3.4"],
        vec!["--container-runtime-endpoint"],
        vec!["--docker-endpoint=ssh://host"],
        vec![&root_is_a_file],
        vec!["--cri-dockerd-root-directory=rel"],
        vec!["--pod-infra-container-image="],
        vec!["--image-pull-progress-deadline=5"],
        vec!["--image-pull-progress-deadline=-1s"],
        vec!["--runtime-request-timeout=1x"],
        vec!["--runtime-request-timeout="],
        vec!["--streaming-bind-addr=nowhere"],
        vec!["--metrics-bind-addr=localhost:9321"],
        vec!["--network-plugin=calico"],
        vec![&cni_bin_is_a_file],
        vec![&cni_conf_under_a_file],
        vec![&cni_cache_is_a_file],
        vec!["--pod-cidr=10.0.0.0/40"],
        vec!["--ipv6-dual-stack=maybe"],
        vec!["--ipv6-dual-stack", "true"],
        vec!["--network-plugin-mtu=big"],
        vec!["--hairpin-mode=sometimes"],
        vec!["--runtime-cgroups=relative"],
        vec!["--log-level=loud"],
        vec!["--log-format=xml"],
        vec!["--restrict-oom-score-adj=2"],
        vec!["--version=perhaps"],
        vec!["--no-such-flag"],
    ];
    for args in cases {
        let flag = args[0].trim_start_matches("--").split('=').next().unwrap();
        let out = run(&args);
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

/// SIGTERM the moment the socket exists (a supervisor may send it then) is a clean stop, not
/// a death by signal: the handlers are in place before the socket is bound.
#[test]
fn sigterm_as_soon_as_the_socket_exists_is_a_clean_stop() {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("cri.sock");
        let mut d = spawn(
            dir.path(),
            &[
                format!("--container-runtime-endpoint=unix://{}", socket.display()),
                format!("--docker-endpoint={}", common::docker_endpoint()),
            ],
            &[],
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no socket: {}",
                d.log()
            );
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        d.terminate();
        let st = d.wait_exit(20);
        assert!(st.success(), "round {round}: {st:?}; log:\n{}", d.log());
    }
}

#[test]
fn json_log_format_writes_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let mut d = spawn(
        dir.path(),
        &[
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--docker-endpoint={}", common::docker_endpoint()),
            "--log-format=json".into(),
            "--log-level=debug".into(),
        ],
        &[],
    );
    d.connect(&socket, 20);
    d.terminate();
    assert!(d.wait_exit(20).success(), "{}", d.log());
    let log = d.log();
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
    let mut d = spawn(
        dir.path(),
        &[format!(
            "--container-runtime-endpoint=unix://{}",
            socket.display()
        )],
        &[],
    );
    d.connect(&socket, 20);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

/// Security default for a socket the daemon creates itself (not systemd's): mode 0660 and, when
/// the group exists, group `docker`, so only root and that group reach the CRI.
#[test]
fn own_socket_is_0660_and_group_docker() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let docker_gid = std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"docker"))
                .then(|| f.get(2)?.parse::<u32>().ok())
                .flatten()
        });
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let mut d = spawn(
        dir.path(),
        &[format!(
            "--container-runtime-endpoint=unix://{}",
            socket.display()
        )],
        &[],
    );
    d.connect(&socket, 20);
    let meta = std::fs::metadata(&socket).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    match docker_gid {
        Some(gid) if is_root() => assert_eq!(meta.gid(), gid, "socket group is not docker"),
        Some(_) => eprintln!("not root: the group docker is not checked"),
        None => {
            assert!(
                !common::required(),
                "no group docker on this host (docker.io creates it)"
            );
            eprintln!("no group docker here: the group is not checked");
        }
    }
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let endpoint = format!("--container-runtime-endpoint=unix://{}", socket.display());
    let mut first = spawn(dir.path(), std::slice::from_ref(&endpoint), &[]);
    first.connect(&socket, 20);

    let second_dir = tempfile::tempdir().expect("tempdir");
    let mut second = spawn(second_dir.path(), &[endpoint], &[]);
    let st = second.wait_exit(20);
    assert!(!st.success());
    let stderr = second.log();
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
    let mut d = spawn(
        dir.path(),
        std::slice::from_ref(&endpoint),
        &[("DOCKER_HOST", real.as_str())],
    );
    d.connect(&socket, 20);
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
    let mut d2 = spawn(
        dir2.path(),
        &[format!(
            "--container-runtime-endpoint=unix://{}",
            socket2.display()
        )],
        &[("DOCKER_HOST", missing.as_str())],
    );
    d2.connect(&socket2, 20);
    let mut rt2 =
        cri::runtime_service_client::RuntimeServiceClient::new(common::connect(&socket2).await);
    let err = rt2
        .version(cri::VersionRequest::default())
        .await
        .expect_err("no dockerd behind $DOCKER_HOST");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
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
    let mut d = spawn(
        dir.path(),
        &[
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--runtime-cgroups={name}"),
        ],
        &[],
    );
    d.connect(&socket, 20);
    let pid = d.child.id();
    for c in checked {
        assert_eq!(
            cgroup_of(pid, c).as_deref(),
            Some(name.as_str()),
            "controller {c:?}; log:\n{}",
            d.log()
        );
    }
    let log = d.log();
    // No warning (the host's oom_score_adj clamping warning, which hosts without
    // CAP_SYS_RESOURCE print at start-up at any moment, is a separate matter).
    let warned = log
        .lines()
        .any(|l| l.contains("WARN") && !l.contains("oom_score_adj"));
    assert!(
        log.contains("running in --runtime-cgroups") && !warned,
        "{log}"
    );
    d.terminate();
    assert!(d.wait_exit(20).success(), "{}", d.log());
}

/// A cgroup that cannot be created: one warning naming the flag, and the daemon serves anyway.
#[test]
fn runtime_cgroups_failure_is_one_warning_and_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    // Below a file that every hierarchy root has: creating it fails (ENOTDIR) everywhere and
    // nothing is created. (A very long name is no good: cgroupfs accepts 300-byte names.)
    let name = "/cgroup.procs/cri-dockerd-test";
    let mut d = spawn(
        dir.path(),
        &[
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--runtime-cgroups={name}"),
        ],
        &[],
    );
    d.connect(&socket, 20);
    let log = d.log();
    // One warning for the cgroup failure (the host's oom_score_adj clamping warning, which
    // some hosts print at start-up, is a separate matter).
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && !l.contains("oom_score_adj"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("--runtime-cgroups="), "{log}");
}
