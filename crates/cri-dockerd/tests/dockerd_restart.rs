//! dockerd really restarted while pods run and calls are in flight: the running dockerd is
//! stopped with SIGTERM (it stops its containers, as it does without `live-restore`) and started
//! again with its own executable, arguments and environment. Calls made meanwhile fail with
//! `Unavailable` instead of hanging, RuntimeReady follows dockerd, and once it is back the
//! lists, statuses and events agree with what Docker says of every container; the pods can then
//! be removed through CRI without leftovers.
//!
//! `tests/load.rs` and `tests/docker_recovery.rs` cut a proxy instead, so that the shared
//! dockerd keeps running for the tests beside them; this one is a test binary of its own with a
//! single test, and cargo runs test binaries one after another, so no other test loses dockerd.
//! It needs root (a failure under `CI=true` without) and a dockerd started from a command line,
//! as `scripts/test-env.sh` and this kind of machine start it; it skips a dockerd that a
//! service manager would restart by itself (systemd's `docker.service`, any parent but pid 1).
//! The new dockerd gets the old one's cgroups, open-files limit and `oom_score_adj`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use common::load::{NamespaceCleanup, assert_failed_as_unavailable, docker_ids, read_call, req};
use common::pods::{Pod, Rt, condition, container_config, wait_runtime_ready, wait_until};
use k8s_cri::v1 as cri;
use tokio::task::JoinSet;
use tonic::Code;

/// How long dockerd may take to stop (it stops its containers first) or to answer again.
const DOCKERD_TIMEOUT: Duration = Duration::from_secs(60);
const PID_FILE: &str = "/var/run/docker.pid";

/// How to start the dockerd that runs now again: its executable, arguments, environment,
/// working directory, cgroups and limits, read from /proc.
#[derive(Clone)]
struct DockerdCommand {
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    /// The `cgroup.procs` file of each of its cgroups.
    cgroup_procs: Vec<PathBuf>,
    /// Its open-files limit (soft, hard), as `ulimit` takes them.
    nofile: Option<(String, String)>,
    oom_score_adj: String,
}

/// The `cgroup.procs` files of the cgroups `/proc/<pid>/cgroup` names (`text`), under the
/// hierarchies mounted here; named hierarchies (systemd's) are left alone.
fn cgroup_procs(text: &str) -> Vec<PathBuf> {
    use cri_dockerd::cgroups::{Layout, parse_mountinfo};
    let layout = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let dir = match &layout {
            Layout::V1 { hierarchies } if !controllers.is_empty() => {
                let mut wanted: Vec<&str> = controllers.split(',').collect();
                wanted.sort_unstable();
                hierarchies
                    .iter()
                    .find(|h| {
                        let mut have: Vec<&str> =
                            h.controllers.iter().map(String::as_str).collect();
                        have.sort_unstable();
                        have == wanted
                    })
                    .map(|h| h.mount.join(rel))
            }
            Layout::Unified { root } if controllers.is_empty() => Some(root.join(rel)),
            _ => None,
        };
        out.extend(dir.map(|d| d.join("cgroup.procs")));
    }
    out
}

/// `Max open files` of `/proc/<pid>/limits` text: (soft, hard).
fn nofile_limit(limits: &str) -> Option<(String, String)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace();
    Some((values.next()?.to_string(), values.next()?.to_string()))
}

fn nul_separated(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn dockerd_pid() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(PID_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dockerd").then_some(pid)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // State is the field after the parenthesised command; Z = exited, not yet reaped.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The running dockerd's pid and command, or why this test cannot restart it.
fn restartable_dockerd() -> Result<(u32, DockerdCommand), String> {
    if !common::host::is_root() {
        return Err("not root".into());
    }
    let pid = dockerd_pid().ok_or_else(|| format!("no dockerd named by {PID_FILE}"))?;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .unwrap_or_default();
    if cgroup.contains(".service") || ppid != "1" {
        return Err(format!(
            "dockerd {pid} is supervised (parent {ppid}, cgroups {:?}); its manager would \
             restart it",
            cgroup.lines().collect::<Vec<_>>()
        ));
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| e.to_string())?;
    let args =
        nul_separated(&std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?)
            .into_iter()
            .skip(1)
            .collect();
    let env =
        nul_separated(&std::fs::read(format!("/proc/{pid}/environ")).map_err(|e| e.to_string())?)
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| "/".into());
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let oom_score_adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok((
        pid,
        DockerdCommand {
            exe,
            args,
            env,
            cwd,
            cgroup_procs: cgroup_procs(&cgroup),
            nofile: nofile_limit(&limits),
            oom_score_adj,
        },
    ))
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Start dockerd in a session of its own (it outlives this test), output appended to a log.
fn start_dockerd(cmd: &DockerdCommand) -> Result<(), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/var/log/dockerd-restart-test.log")
        .map_err(|e| format!("open the dockerd log: {e}"))?;
    // A shell joins the old cgroups and takes the old limits, then `setsid --fork` starts
    // dockerd in a session of its own (not a child of ours) and returns.
    // `-` (limits not read): keep the shell's own.
    let (soft, hard) = cmd
        .nofile
        .clone()
        .unwrap_or_else(|| ("-".into(), "-".into()));
    let script = r#"
        if [ "$1" != - ]; then
            # Soft first (fails when raising above the current hard limit), hard, soft again.
            ulimit -Sn "$2" 2>/dev/null; ulimit -Hn "$1" && ulimit -Sn "$2" || exit 1
        fi
        # Raising works for anyone; lowering below the current value needs CAP_SYS_RESOURCE,
        # which these machines lack: not fatal.
        echo "$3" > /proc/self/oom_score_adj 2>/dev/null
        shift 3
        # Best effort (a cgroup may be gone with the old dockerd): dockerd must come back.
        while [ "$1" != -- ]; do
            echo $$ > "$1" || echo "dockerd restart: not joining $1" >&2
            shift
        done
        shift
        exec setsid --fork "$@"
    "#;
    let started = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args([&hard, &soft, &cmd.oom_score_adj])
        .args(&cmd.cgroup_procs)
        .arg("--")
        .arg(&cmd.exe)
        .args(&cmd.args)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .status()
        .map_err(|e| format!("sh: {e}"))?;
    if started.success() {
        Ok(())
    } else {
        Err(format!(
            "starting {} (see /var/log/dockerd-restart-test.log): {started}",
            cmd.exe.display()
        ))
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DOCKERD_TIMEOUT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DOCKERD_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes sure dockerd runs again when the test ends, also when it failed half-way: waits for
/// the stopped one (`pid`) to be gone, then starts it again if nothing answers.
struct DockerdBack(u32, DockerdCommand);

impl Drop for DockerdBack {
    fn drop(&mut self) {
        let deadline = Instant::now() + DOCKERD_TIMEOUT;
        while alive(self.0) && !docker_answers() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !docker_answers() && !dockerd_pid().is_some_and(alive) {
            if let Err(e) = start_dockerd(&self.1) {
                eprintln!("could not start dockerd again: {e}");
                return;
            }
            let deadline = Instant::now() + DOCKERD_TIMEOUT;
            while !docker_answers() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What Docker says of `id`: `running`, `exited`, `created` …
fn docker_state(id: &str) -> String {
    common::docker(&["inspect", "-f", "{{.State.Status}}", id])
        .trim()
        .to_string()
}

fn cri_container_state(docker: &str) -> cri::ContainerState {
    match docker {
        "created" => cri::ContainerState::ContainerCreated,
        "running" | "paused" | "restarting" => cri::ContainerState::ContainerRunning,
        "exited" | "dead" => cri::ContainerState::ContainerExited,
        _ => cri::ContainerState::ContainerUnknown,
    }
}

fn cri_sandbox_state(docker: &str) -> cri::PodSandboxState {
    if docker == "running" {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

/// Every listed container and sandbox of the pods `pods`, by ID, with its CRI state.
async fn listed_states(rt: &mut Rt, pods: &[Pod]) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    let in_pods = |sb: &str| pods.iter().any(|p| p.id == sb);
    for s in rt
        .list_pod_sandbox(req(cri::ListPodSandboxRequest { filter: None }))
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
    {
        if in_pods(&s.id) {
            out.insert(s.id, s.state);
        }
    }
    for c in rt
        .list_containers(req(cri::ListContainersRequest { filter: None }))
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
    {
        if in_pods(&c.pod_sandbox_id) {
            out.insert(c.id, c.state);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dockerd_really_restarted_under_load() {
    require_docker!();
    let (pid, cmd) = match restartable_dockerd() {
        Ok(found) => found,
        Err(why) if common::required() && !why.contains("supervised") => {
            panic!("cannot restart dockerd under CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipping: cannot restart dockerd here: {why}");
            return;
        }
    };
    eprintln!(
        "dockerd {pid}: cgroups {:?}, open files {:?}, oom_score_adj {}",
        cmd.cgroup_procs, cmd.nofile, cmd.oom_score_adj
    );
    let ns = format!("restart-{}", common::pods::unique());
    // Declared before `DockerdBack`, so it runs after dockerd is back.
    let _cleanup = NamespaceCleanup(ns.clone());
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    wait_runtime_ready(&mut rt, true, Duration::from_secs(20)).await;
    let mut events = rt
        .get_container_events(cri::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();

    // Two pods with a container each that ends at once on SIGTERM, so dockerd stops quickly.
    let mut pods = Vec::new();
    let mut containers = Vec::new();
    for i in 0..2 {
        let p = Pod::run(&mut rt, &d, &format!("pod{i}"), &ns).await;
        let script = "trap 'exit 0' TERM; sleep 600 & wait";
        let c = p
            .run_container(&mut rt, container_config("sleeper", &["sh", "-c", script]))
            .await;
        containers.push(c);
        pods.push(p);
    }

    // Calls in flight from several tasks until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = JoinSet::new();
    for w in 0..4 {
        let mut rt = rt.clone();
        let stop = stop.clone();
        let sb = pods[w % 2].id.clone();
        let c = containers[w % 2].clone();
        load.spawn(async move {
            let mut failures: Vec<(Code, String, Duration)> = Vec::new();
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let t = Instant::now();
                let r = read_call(&mut rt, n + w, &sb, &c).await;
                if let Err(e) = r {
                    failures.push((e.code(), e.message().to_string(), t.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stop dockerd for real and keep it away for a moment.
    let _back = DockerdBack(pid, cmd.clone());
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "SIGTERM to dockerd {pid}");
    let t = Instant::now();
    tokio::task::spawn_blocking(move || wait_for("dockerd exiting", || !alive(pid)))
        .await
        .unwrap();
    eprintln!("dockerd stopped in {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !condition(&mut rt, "RuntimeReady").await.status,
        "RuntimeReady is false while dockerd is down"
    );
    let t = Instant::now();
    let down = rt
        .run_pod_sandbox(req(cri::RunPodSandboxRequest {
            config: Some(common::pods::pod_config("while-down", &ns, "while-down")),
            runtime_handler: String::new(),
        }))
        .await
        .expect_err("RunPodSandbox while dockerd is down");
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Back, by the same command.
    let t = Instant::now();
    start_dockerd(&cmd).expect("start dockerd again");
    tokio::task::spawn_blocking(|| wait_for("dockerd answering again", docker_answers))
        .await
        .unwrap();
    eprintln!("dockerd answering again after {:?}", t.elapsed());
    // In the old one's cgroups, with its limits.
    let new_pid = dockerd_pid().expect("the new dockerd's pid");
    let cgroup = std::fs::read_to_string(format!("/proc/{new_pid}/cgroup")).unwrap();
    assert_eq!(cgroup_procs(&cgroup), cmd.cgroup_procs, "{cgroup}");
    let limits = std::fs::read_to_string(format!("/proc/{new_pid}/limits")).unwrap();
    assert_eq!(nofile_limit(&limits), cmd.nofile);
    wait_runtime_ready(&mut rt, true, Duration::from_secs(30)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = Vec::new();
    while let Some(r) = load.join_next().await {
        failures.extend(r.unwrap());
    }
    assert_failed_as_unavailable(&failures);

    // Consistent after: what CRI lists and reports is what Docker says, for every object.
    let mut want = BTreeMap::new();
    for p in &pods {
        want.insert(p.id.clone(), cri_sandbox_state(&docker_state(&p.id)) as i32);
    }
    for c in &containers {
        want.insert(c.clone(), cri_container_state(&docker_state(c)) as i32);
    }
    eprintln!("after the restart Docker says: {want:?}");
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        format!("lists agreeing with Docker ({want:?})"),
        async || (listed_states(&mut rt, &pods).await == want).then_some(()),
    )
    .await;
    for c in &containers {
        let status = common::pods::container_status(&mut rt, c).await;
        assert_eq!(status.state, want[c], "ContainerStatus of {c}");
    }
    for p in &pods {
        let status = common::pods::sandbox_status(&mut rt, &p.id).await;
        assert_eq!(status.state, want[&p.id], "PodSandboxStatus of {}", p.id);
    }
    // Containers Docker stopped on its way down were reported stopped to subscribers.
    let stopped: Vec<&String> = containers
        .iter()
        .filter(|c| want[*c] == cri::ContainerState::ContainerExited as i32)
        .collect();
    let mut seen_stopped = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stopped.iter().any(|c| !seen_stopped.contains(*c)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, events.message())
            .await
            .unwrap_or_else(|_| panic!("no stopped event for all of {stopped:?} in time"))
            .expect("event stream")
            .expect("event stream open");
        if ev.container_event_type == cri::ContainerEventType::ContainerStoppedEvent as i32 {
            seen_stopped.insert(ev.container_id);
        }
    }

    // Life goes on: a new pod runs, and everything is removed through CRI without leftovers.
    let p = Pod::run(&mut rt, &d, "after", &ns).await;
    let c = p
        .run_container(&mut rt, container_config("after", &["sleep", "600"]))
        .await;
    assert_eq!(
        common::pods::container_status(&mut rt, &c).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    pods.push(p);
    for p in &pods {
        common::pods::stop_and_remove_pod(&mut rt, &p.id).await;
    }
    let left = docker_ids(&ns);
    assert!(left.is_empty(), "left in Docker: {left:?}");
    let checkpoints: Vec<_> = std::fs::read_dir(d.root().join("sandbox"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(checkpoints.is_empty(), "checkpoints left: {checkpoints:?}");
}
