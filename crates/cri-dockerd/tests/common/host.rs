//! Facts about the test host and small sources of variety: root or not, a process's CPU time,
//! random-ish numbers for names, and a deterministic PRNG for seeded tests.

use std::sync::atomic::{AtomicU32, Ordering};

/// Whether this process runs as root (real uid 0), from /proc/self/status.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A different, random-looking number on every call (time, pid and a counter, xorshifted):
/// for names that must not collide with other tests' or earlier runs'.
pub fn rand_u32() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(7))
        .unwrap_or(0);
    let x = t ^ std::process::id().rotate_left(16) ^ N.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    // xorshift to spread the bits
    let mut x = x ^ (x << 13);
    x ^= x >> 17;
    x ^ (x << 5)
}

/// CPU time of `pid` (utime + stime) in nanoseconds, from /proc/<pid>/stat.
pub fn process_cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    // Fields 14 and 15 of stat; after "pid (comm) " they are at index 11 and 12.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz: u64 = super::command_output("getconf", &["CLK_TCK"])
        .parse()
        .unwrap();
    ticks * (1_000_000_000 / hz)
}

/// xorshift64*: deterministic, so a failing seeded case replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 for n = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `xs`, which must not be empty.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// The CNI `bridge` plugin with `host-local` addresses from `ranges` (host-local's `ranges`
/// value), its leases kept in `ipam_dir`: the plugin entry of the test networks' conflists.
pub fn bridge_plugin(
    bridge: &str,
    ranges: serde_json::Value,
    ipam_dir: &std::path::Path,
) -> serde_json::Value {
    serde_json::json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": ranges,
            "dataDir": ipam_dir.display().to_string(),
        }
    })
}
