//! The cgroup reader against real containers: a CPU burner uses about one core, and 64 MiB
//! written to the container's shm shows up in its working set.

mod common;

use std::time::{Duration, Instant};

use common::host::process_cpu_ns;
use cri_dockerd::service::cgroup::{self, CgroupMounts, CgroupPaths};

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = common::docker_try(&["rm", "-f", &self.0]);
    }
}

fn run(name: &str, script: &str) -> (Container, CgroupPaths) {
    common::docker(&[
        "run",
        "-d",
        "--name",
        name,
        "cri-dockerd-test/busybox:latest",
        "sh",
        "-c",
        script,
    ]);
    let c = Container(name.to_string());
    let pid: u32 = common::docker(&["inspect", "-f", "{{.State.Pid}}", name])
        .parse()
        .unwrap();
    let paths = CgroupPaths::for_pid(pid, &CgroupMounts::detect().unwrap()).unwrap();
    (c, paths)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn cpu_burner_usage_matches_the_process_cpu_time() {
    require_docker!();
    let name = format!("cgstats-cpu-{}", std::process::id());
    let (_c, paths) = run(&name, "while :; do :; done");
    let pid: u32 = common::docker(&["inspect", "-f", "{{.State.Pid}}", &name])
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (u0, p0, t0) = (
        cgroup::read_usage(&paths).unwrap(),
        process_cpu_ns(pid),
        now_ns(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (u1, p1, t1) = (
        cgroup::read_usage(&paths).unwrap(),
        process_cpu_ns(pid),
        now_ns(),
    );
    let cgroup_delta = u1.cpu_usage_ns - u0.cpu_usage_ns;
    let process_delta = p1 - p0;
    // The burner is the only process in the container: both views agree (ticks are 10 ms coarse).
    let diff = cgroup_delta.abs_diff(process_delta);
    assert!(
        diff <= process_delta / 10 + 30_000_000,
        "cgroup {cgroup_delta} ns vs process {process_delta} ns"
    );
    let cores = cgroup::nano_cores(u0.cpu_usage_ns, t0, u1.cpu_usage_ns, t1).unwrap();
    // Up to one core; less only when the (shared, 2-core) machine is busy.
    assert!(
        (100_000_000..=1_100_000_000).contains(&cores),
        "usage_nano_cores = {cores}"
    );
    assert!(u1.pids >= 1);
}

#[test]
fn memory_working_set_tracks_allocation() {
    require_docker!();
    let name = format!("cgstats-mem-{}", std::process::id());
    let (_c, paths) = run(
        &name,
        "head -c 67108864 /dev/zero > /dev/shm/fill; sleep 1000",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let target = 64u64 << 20;
    loop {
        let u = cgroup::read_usage(&paths).unwrap();
        if u.working_set >= target {
            assert!(
                u.working_set <= target + target / 10,
                "working set {} vs 64 MiB",
                u.working_set
            );
            assert!(u.memory_usage >= u.working_set);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "working set stayed at {}",
            u.working_set
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
