//! The standard process collector's metrics (`process_*`, as Prometheus' Go and Rust clients
//! name them), read from `/proc/self` at each scrape.

use prometheus::core::Collector;
use prometheus::{Counter, Gauge, IntGauge};

use super::catch_up;

/// What `/proc/self/stat` tells (fields 14, 15, 20, 22, 23 of proc(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub(crate) fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    // rest starts at field 3 (state): field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: num(14)? + num(15)?,
        threads: num(20)?,
        start_ticks: num(22)?,
        vsize_bytes: num(23)?,
    })
}

/// Resident pages: the second field of `/proc/<pid>/statm`.
pub(crate) fn parse_statm_resident(s: &str) -> Option<u64> {
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Boot time in seconds since the epoch: the `btime` line of `/proc/stat`.
pub(crate) fn parse_btime(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits` (`None` when unlimited).
pub(crate) fn parse_max_fds(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(crate) struct ProcessMetrics {
    cpu: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    virtual_bytes: IntGauge,
    resident_bytes: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ProcessMetrics {
    pub(crate) fn new() -> Self {
        ProcessMetrics {
            cpu: Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )
            .unwrap_or_else(|e| panic!("metric: {e}")),
            open_fds: gauge("process_open_fds", "Number of open file descriptors."),
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            virtual_bytes: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            resident_bytes: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            start_time: Gauge::new(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )
            .unwrap_or_else(|e| panic!("metric: {e}")),
            threads: gauge("process_threads", "Number of OS threads in the process."),
        }
    }

    pub(crate) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.cpu.clone()),
            Box::new(self.open_fds.clone()),
            Box::new(self.max_fds.clone()),
            Box::new(self.virtual_bytes.clone()),
            Box::new(self.resident_bytes.clone()),
            Box::new(self.start_time.clone()),
            Box::new(self.threads.clone()),
        ]
    }

    /// Read `/proc/self` into the metrics; what cannot be read keeps its last value.
    pub(crate) fn refresh(&self) {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let ticks = rustix::param::clock_ticks_per_second();
        let page = rustix::param::page_size() as u64;
        if let Some(stat) = read("/proc/self/stat").as_deref().and_then(parse_stat) {
            if ticks > 0 {
                catch_up(&self.cpu, stat.cpu_ticks as f64 / ticks as f64);
                if let Some(btime) = read("/proc/stat").as_deref().and_then(parse_btime) {
                    self.start_time
                        .set(btime as f64 + stat.start_ticks as f64 / ticks as f64);
                }
            }
            self.threads.set(to_i64(stat.threads));
            self.virtual_bytes.set(to_i64(stat.vsize_bytes));
        }
        if let Some(pages) = read("/proc/self/statm")
            .as_deref()
            .and_then(parse_statm_resident)
        {
            self.resident_bytes.set(to_i64(pages.saturating_mul(page)));
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle being read is one of the entries: not counted.
            self.open_fds
                .set(to_i64(dir.count().saturating_sub(1) as u64));
        }
        if let Some(max) = read("/proc/self/limits").as_deref().and_then(parse_max_fds) {
            self.max_fds.set(to_i64(max));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_counted_after_the_command_name() {
        // A command name with spaces and a ')' inside, as a process can name itself.
        let line = "4242 (cri d) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 70 0 0 20 0 \
                    9 0 123456 1073741824 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
                    1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 320,
                threads: 9,
                start_ticks: 123456,
                vsize_bytes: 1073741824,
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn statm_btime_and_limits() {
        assert_eq!(parse_statm_resident("2500 312 200 10 0 400 0\n"), Some(312));
        assert_eq!(parse_statm_resident("2500"), None);
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5\nbtime 1763900000\nprocesses 9\n"),
            Some(1_763_900_000)
        );
        assert_eq!(parse_btime("cpu 1\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1048576              1048576              files     \n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
    }

    #[test]
    fn refresh_reads_this_process() {
        let p = ProcessMetrics::new();
        p.refresh();
        assert!(p.resident_bytes.get() > 0);
        assert!(p.virtual_bytes.get() >= p.resident_bytes.get());
        assert!(p.threads.get() >= 1);
        assert!(p.open_fds.get() >= 3, "{}", p.open_fds.get());
        assert!(p.max_fds.get() >= p.open_fds.get());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time.get();
        assert!(start > now - 24.0 * 3600.0 && start <= now + 1.0, "{start}");
    }
}
