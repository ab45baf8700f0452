//! The process's memory allocator: jemalloc, set up to give freed memory back within a second.
//!
//! With glibc's allocator the daemon did not come back down after a burst (a hundred pods
//! started, listed and removed): glibc keeps freed memory in per-thread arenas and caches and
//! can only give back whole free pages, and what a burst leaves behind is live allocations
//! scattered over many pages. Measured here after the benchmark's burst and 1,000
//! create/remove cycles, even with `malloc_trim` after every removal, glibc stayed 2.3-2.6 MiB
//! above its idle anonymous memory with about 0.6 MiB more live; one arena, no thread cache
//! and a fixed mmap threshold (`GLIBC_TUNABLES`) still 1.3 MiB; mimalloc 4-5 MiB. jemalloc with
//! the options in [`CONF`] stayed 0.9-1.1 MiB above idle, and its size classes keep what a burst
//! leaves behind on fewer pages.
//!
//! [`CONF`]: one arena (the daemon is I/O bound; two worker threads do not contend) and no
//! per-thread cache. The thread cache is a trade-off: with it, calls answered from memory were
//! 60-150 us faster, but memory stayed 1.4-1.6 MiB above idle after the burst (a cache fills
//! from many slabs at once and scatters what stays live), also with smaller caches or with each
//! worker flushing its cache when it goes idle.
//!
//! Free pages go back to the kernel in two ways. While calls come in, jemalloc's decay
//! (`dirty_decay_ms:1000`, `muzzy_decay_ms:0`) returns them about a second after they were
//! freed; and a second after the last CRI call [`spawn_releaser`]'s task purges everything
//! still free at once, because decay only advances while the process allocates and an idle
//! daemon would otherwise keep what its last burst freed. An earlier setting returned every
//! page the moment it was freed (`dirty_decay_ms:0`); it left the same memory behind after a
//! burst but made busy calls pay for it: each call's buffers emptied a run of pages, which went
//! back with an `madvise` and its TLB shootdown and came back with page faults on the next
//! call. Measured side by side, calls answered from memory were 0.1-0.2 ms faster with the
//! decay (ListPodSandbox at 10 pods 0.26-0.42 instead of 0.46-0.58 ms).
//!
//! `slab_sizes:1-16384:1` makes each slab of small objects (up to 16 KiB) one page where its
//! size class allows, instead of up to several pages: a slab that keeps one live object pins
//! less. After the benchmark's burst and churn, anonymous memory stayed 640-740 KiB above idle
//! with it, against 790-840 KiB without it (three runs each, side by side).

use std::ffi::{CStr, c_char};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// jemalloc's run-time options (see `man jemalloc`, "TUNING").
pub const CONF: &CStr =
    c"narenas:1,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0,slab_sizes:1-16384:1";

/// How long the daemon must go without a finished CRI call before [`purge`] runs.
pub const QUIET: Duration = Duration::from_secs(1);

/// Every allocation of the process goes through jemalloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc when it initialises (before `main`), as the C variable `malloc_conf` of the
/// prefixed build. `_RJEM_MALLOC_CONF` in the environment still overrides it, for experiments
/// (this build's jemalloc has prefixed names, so plain `MALLOC_CONF` is not read).
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static c_char> = {
    // SAFETY: CONF is a NUL-terminated string that lives for the whole program; this only
    // turns its pointer into the reference type jemalloc's `const char *` has in Rust.
    Some(unsafe { &*CONF.as_ptr() })
};

/// Purges so far (for tests and the curious).
static PURGES: AtomicU64 = AtomicU64::new(0);

/// Give every free page of every arena back to the kernel now (`arena.<all>.purge`).
pub fn purge() {
    // 4096 is MALLCTL_ARENAS_ALL.
    let name = c"arena.4096.purge";
    // SAFETY: `arena.<i>.purge` takes and returns no value, so all four value pointers are null
    // and the length 0; `name` is NUL-terminated and outlives the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc == 0 {
        PURGES.fetch_add(1, Ordering::Relaxed);
    } else {
        tracing::debug!("jemalloc arena purge failed: error {rc}");
    }
}

/// How many times [`purge`] has given memory back.
pub fn purges() -> u64 {
    PURGES.load(Ordering::Relaxed)
}

/// Runs a purge once things have gone [`QUIET`] after activity: see [`spawn_releaser`].
struct Releaser {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last [`Releaser::note`].
    last_ms: AtomicU64,
    /// A purge is due (activity since the last one).
    armed: AtomicBool,
    wake: Notify,
}

static RELEASER: OnceLock<Releaser> = OnceLock::new();

impl Releaser {
    fn new() -> Releaser {
        Releaser {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn note(&self) {
        let ms = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        if !self.armed.swap(true, Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    fn since_last(&self) -> Duration {
        let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last)
    }

    async fn run(&self, purge: impl Fn()) {
        loop {
            self.wake.notified().await;
            loop {
                let quiet = self.since_last();
                if quiet >= QUIET {
                    break;
                }
                tokio::time::sleep(QUIET - quiet).await;
            }
            // Disarm first: activity during the purge arms the next one.
            self.armed.store(false, Ordering::SeqCst);
            purge();
        }
    }
}

/// Start giving memory back when the daemon goes quiet: [`QUIET`] after the last CRI call
/// (and once after start-up), all free pages go back to the kernel in one [`purge`]. While
/// calls keep coming, jemalloc's own decay ([`CONF`]: `dirty_decay_ms`) returns free pages
/// about a second after they were freed; the purge covers the moment activity stops, when
/// nothing would drive that decay. Nothing runs while the daemon stays idle. Call once, inside
/// the runtime.
pub fn spawn_releaser() {
    let r = RELEASER.get_or_init(Releaser::new);
    tokio::spawn(r.run(purge));
    r.note();
}

/// Something happened that freed memory (a CRI call finished): purge once things go quiet.
/// A few nanoseconds; does nothing before [`spawn_releaser`].
pub fn note_activity() {
    if let Some(r) = RELEASER.get() {
        r.note();
    }
}

/// Give a map's table back once it is mostly empty (after a hundred pods went away), so that
/// the memory of a past peak does not stay pinned under a few live entries.
pub fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(m: &mut std::collections::HashMap<K, V>) {
    if m.capacity() > 64 && m.len() < m.capacity() / 4 {
        m.shrink_to_fit();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rss_anon_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn jemalloc_runs_with_our_options() {
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 1);
        assert!(!tikv_jemalloc_ctl::opt::tcache::read().unwrap());
        assert!(CONF.to_str().unwrap().contains("dirty_decay_ms:1000"));
    }

    /// Small size class `bin`: its object size and its slab size in bytes, as jemalloc reports.
    fn slab_size(bin: usize) -> (usize, usize) {
        let read = |what: &str| {
            let name = format!("arenas.bin.{bin}.{what}\0");
            // SAFETY: both names are size_t values of jemalloc's mallctl namespace.
            #[allow(unsafe_code)]
            unsafe {
                tikv_jemalloc_ctl::raw::read::<usize>(name.as_bytes()).unwrap()
            }
        };
        (read("size"), read("slab_size"))
    }

    #[test]
    fn small_size_classes_use_the_smallest_slabs() {
        let page = rustix::param::page_size();
        // SAFETY: `arenas.nbins` is an unsigned of jemalloc's mallctl namespace.
        #[allow(unsafe_code)]
        let nbins = unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"arenas.nbins\0").unwrap() };
        assert!(nbins > 30, "{nbins} small size classes");
        for bin in 0..nbins as usize {
            let (size, slab) = slab_size(bin);
            // Without the option jemalloc gives e.g. the 48-byte class a 3-page slab and the
            // 80-byte class a 5-page one.
            assert_eq!(
                slab,
                size.div_ceil(page) * page,
                "size class {size} has a {slab}-byte slab"
            );
        }
    }

    #[test]
    fn purge_gives_back_memory_freed_between_live_allocations() {
        const CHUNK: usize = 16 * 1024;
        const CHUNKS: usize = 4096; // 64 MiB
        // Fill 64 MiB in chunks and free all but every 64th: the live ones sit between the
        // freed ones (glibc could give none of it back without malloc_trim), and the other
        // tests' allocations are noise next to 64 MiB.
        let (before, filled, after_purge) = std::thread::spawn(|| {
            let before = rss_anon_kib();
            let mut chunks: Vec<Vec<u8>> = (0..CHUNKS).map(|i| vec![i as u8; CHUNK]).collect();
            let filled = rss_anon_kib();
            let kept: Vec<Vec<u8>> = chunks
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| i % 64 == 63)
                .map(|(_, c)| std::mem::take(c))
                .collect();
            drop(chunks);
            let n = purges();
            purge();
            assert!(purges() > n, "the purge mallctl failed");
            let after_purge = rss_anon_kib();
            drop(kept);
            (before, filled, after_purge)
        })
        .join()
        .unwrap();
        assert!(
            filled > before + 48 * 1024,
            "filling 64 MiB did not show: {before} -> {filled} KiB"
        );
        assert!(
            after_purge + 48 * 1024 < filled,
            "freeing 63/64 of it and purging gave back too little: {filled} -> {after_purge} KiB"
        );
    }

    /// Lets the releaser task run until it waits again (paused clock: no time passes).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn releaser_purges_once_per_quiet_spell_and_never_while_idle() {
        let r: &'static Releaser = Box::leak(Box::new(Releaser::new()));
        let runs: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        tokio::spawn(r.run(move || {
            runs.fetch_add(1, Ordering::SeqCst);
        }));
        let n = || runs.load(Ordering::SeqCst);
        settle().await;
        tokio::time::advance(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(n(), 0, "purged without any activity");

        // Calls every 600 ms: never a quiet second, no purge.
        for _ in 0..5 {
            r.note();
            tokio::time::advance(Duration::from_millis(600)).await;
            settle().await;
        }
        assert_eq!(n(), 0, "purged while calls kept coming");
        // A second after the last call: one purge.
        tokio::time::advance(Duration::from_millis(500)).await;
        settle().await;
        assert_eq!(n(), 1);
        // Then nothing, however long it stays idle.
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(n(), 1, "purged again while idle");
        // New activity, new purge a second later.
        r.note();
        r.note();
        tokio::time::advance(Duration::from_millis(1001)).await;
        settle().await;
        assert_eq!(n(), 2);
    }
}
