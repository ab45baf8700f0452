//! CRI-format logs from real Docker json-file logs: exact lines, partial lines, and resume after
//! the follower is dropped and recreated (daemon restart) without loss or duplicates.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cri_dockerd::service::logs::LogManager;

struct Container {
    id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = common::docker_try(&["rm", "-f", &self.id]);
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// `docker run -d` a busybox shell script with the json-file driver.
fn run_script(script: &str) -> Container {
    run_script_with(&[], script)
}

fn run_script_with(opts: &[&str], script: &str) -> Container {
    let name = unique("cri-logs-test");
    let mut args = vec!["run", "-d", "--name", &name, "--log-driver", "json-file"];
    args.extend_from_slice(opts);
    args.extend(["cri-dockerd-test/busybox:latest", "sh", "-c", script]);
    Container {
        id: common::docker(&args),
    }
}

fn docker_log_path(id: &str) -> String {
    common::docker(&["inspect", "--format", "{{.LogPath}}", id])
}

/// `docker wait`, off the async runtime's thread (the followers run there).
async fn wait_exit(id: &str) {
    let id = id.to_string();
    tokio::task::spawn_blocking(move || common::docker(&["wait", &id]))
        .await
        .expect("docker wait");
}

/// `(stream, tag, text)` of every CRI line; checks the timestamp parses.
fn cri_lines(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let ts = parts.next().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                "bad timestamp in {l:?}"
            );
            let stream = parts.next().unwrap_or_default().to_string();
            let tag = parts.next().unwrap_or_default().to_string();
            let text = parts.next().unwrap_or_default().to_string();
            (stream, tag, text)
        })
        .collect()
}

/// Wait for the follower to stop; `tell` says the container exited, otherwise the follower must
/// notice by itself (from Docker's on-disk state).
async fn wait_until_drained(m: &LogManager, id: &str, tell: bool) {
    if tell {
        m.mark_exited(id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.is_following(id) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!m.is_following(id), "follower did not stop after exit");
}

#[tokio::test]
async fn docker_json_log_becomes_exact_cri_lines() {
    require_docker!();
    let long = "x".repeat(20 * 1024);
    let c = run_script(&format!(
        "echo one; echo two >&2; printf 'ünï ☃\\n'; echo {long}; printf 'no newline'"
    ));
    wait_exit(&c.id).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cri = dir.path().join("pod/ctr/0.log");
    let m = LogManager::new(dir.path().join("state"));
    m.follow(&c.id, &docker_log_path(&c.id), cri.to_str().expect("utf8"))
        .expect("follow");
    // Not told: the follower sees the exit in Docker's state and stops after draining.
    wait_until_drained(&m, &c.id, false).await;
    let err = m.reopen(&c.id).await.expect_err("reopen after exit");
    assert!(
        matches!(err, cri_dockerd::service::Error::FailedPrecondition(_)),
        "{err:?}"
    );

    let lines = cri_lines(&cri);
    let mut stdout: Vec<_> = lines.iter().filter(|l| l.0 == "stdout").cloned().collect();
    let stderr: Vec<_> = lines.iter().filter(|l| l.0 == "stderr").cloned().collect();
    assert_eq!(stderr, [("stderr".into(), "F".into(), "two".into())]);
    assert_eq!(stdout[0], ("stdout".into(), "F".into(), "one".into()));
    assert_eq!(stdout[1], ("stdout".into(), "F".into(), "ünï ☃".into()));
    // Docker splits the 20 KiB line into 16 KiB chunks: P ... F, re-joined it is the line.
    let last = stdout.pop().expect("last line");
    assert_eq!(last, ("stdout".into(), "P".into(), "no newline".into()));
    let chunks = &stdout[2..];
    assert!(
        chunks.len() >= 2,
        "long line was not split: {}",
        chunks.len()
    );
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.1 == "P"));
    assert_eq!(chunks[chunks.len() - 1].1, "F");
    let joined: String = chunks.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(joined, long);
}

#[tokio::test]
async fn follower_restart_loses_and_duplicates_nothing() {
    require_docker!();
    let n = 300;
    let c = run_script(&format!(
        "i=1; while [ $i -le {n} ]; do echo out $i; echo err $i >&2; i=$((i+1)); usleep 5000; done"
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let cri = dir.path().join("0.log");
    let state = dir.path().join("state");
    let docker_path = docker_log_path(&c.id);

    // Three daemon "lives", each dropped (as a kill would) while the container is printing.
    for _ in 0..3 {
        let m = LogManager::new(state.clone());
        m.follow(&c.id, &docker_path, cri.to_str().expect("utf8"))
            .expect("follow");
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(m);
    }
    let m = LogManager::new(state.clone());
    m.follow(&c.id, &docker_path, cri.to_str().expect("utf8"))
        .expect("follow");
    wait_exit(&c.id).await;
    wait_until_drained(&m, &c.id, true).await;

    let lines = cri_lines(&cri);
    let out: Vec<String> = lines
        .iter()
        .filter(|l| l.0 == "stdout")
        .map(|l| l.2.clone())
        .collect();
    let err: Vec<String> = lines
        .iter()
        .filter(|l| l.0 == "stderr")
        .map(|l| l.2.clone())
        .collect();
    let want_out: Vec<String> = (1..=n).map(|i| format!("out {i}")).collect();
    let want_err: Vec<String> = (1..=n).map(|i| format!("err {i}")).collect();
    assert_eq!(out, want_out);
    assert_eq!(err, want_err);
    assert!(lines.iter().all(|l| l.1 == "F"));
    m.forget(&c.id);
    assert!(!state.join(format!("{}.json", c.id)).exists());
}

#[tokio::test]
async fn docker_log_rotation_is_followed() {
    require_docker!();
    // 4 KiB files: Docker rotates every ~50 lines (~150 ms), while the follower is running.
    let n = 400;
    let c = run_script_with(
        &["--log-opt", "max-size=4k", "--log-opt", "max-file=5"],
        &format!(
            "i=1; while [ $i -le {n} ]; do echo rotating line $i; i=$((i+1)); usleep 2000; done"
        ),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cri = dir.path().join("0.log");
    let m = LogManager::new(dir.path().join("state"));
    m.follow(&c.id, &docker_log_path(&c.id), cri.to_str().expect("utf8"))
        .expect("follow");
    wait_exit(&c.id).await;
    wait_until_drained(&m, &c.id, false).await;
    let got: Vec<String> = cri_lines(&cri).into_iter().map(|l| l.2).collect();
    let want: Vec<String> = (1..=n).map(|i| format!("rotating line {i}")).collect();
    assert_eq!(got, want);
}

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the comm field.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Cost measurement: 10 containers printing ~100 lines/s each for 5 s, then 3 s idle.
#[tokio::test]
async fn follower_cpu_cost_of_ten_busy_containers() {
    require_docker!();
    let containers: Vec<Container> = (0..10)
        .map(|_| run_script("i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); usleep 10000; done; sleep 1000"))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = LogManager::new(dir.path().join("state"));
    for (i, c) in containers.iter().enumerate() {
        let cri = dir.path().join(format!("{i}.log"));
        m.follow(&c.id, &docker_log_path(&c.id), cri.to_str().expect("utf8"))
            .expect("follow");
    }
    let t0 = cpu_ticks();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let busy = cpu_ticks() - t0;
    let busy_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t1 = cpu_ticks();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = cpu_ticks() - t1;
    let idle_secs = start.elapsed().as_secs_f64();
    let hz = 100.0; // USER_HZ on Linux
    let busy_pct = busy as f64 / hz / busy_secs * 100.0;
    let idle_pct = idle as f64 / hz / idle_secs * 100.0;
    eprintln!(
        "log followers, 10 containers: {busy_pct:.1}% of a core while printing, {idle_pct:.1}% idle"
    );
    let total: usize = (0..10)
        .map(|i| cri_lines(&dir.path().join(format!("{i}.log"))).len())
        .sum();
    assert!(total > 1000, "only {total} lines copied");
    assert!(busy_pct < 25.0, "followers too expensive: {busy_pct:.1}%");
    assert!(
        idle_pct < 5.0,
        "idle followers too expensive: {idle_pct:.1}%"
    );
}
