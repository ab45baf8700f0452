//! The process's memory allocator: jemalloc, set up to give freed memory back at once.
//!
//! With glibc's allocator the daemon did not come back down after a burst (a hundred pods
//! started, listed and removed): glibc keeps freed memory in per-thread arenas and caches and
//! can only give back whole free pages, and what a burst leaves behind is live allocations
//! scattered over many pages. Measured here after the benchmark's burst and 1,000
//! create/remove cycles, even with `malloc_trim` after every removal, glibc stayed 2.3-2.6 MiB
//! above its idle anonymous memory with about 0.6 MiB more live; one arena, no thread cache
//! and a fixed mmap threshold (`GLIBC_TUNABLES`) still 1.3 MiB; mimalloc 4-5 MiB. jemalloc with
//! the options in [`CONF`] stayed 0.9 MiB above idle, and its size classes keep what a burst
//! leaves behind on fewer pages.
//!
//! [`CONF`]: one arena (the daemon is I/O bound; two worker threads do not contend), no
//! per-thread cache, and dirty/muzzy decay of 0: pages that become free are returned to the
//! kernel when they are freed, not after jemalloc's default 10 s (which, without allocation
//! activity to drive it, may be never). The decay costs an `madvise` per freed run of pages, not
//! measurable next to the Docker call a CRI call makes. The thread cache is the trade-off: with
//! it, calls answered from memory were 60-150 us faster (ListContainers at 20 containers 0.21
//! instead of 0.33 ms, Status 0.29 instead of 0.35 ms), but memory stayed 1.4-1.6 MiB above idle
//! after the burst (a cache fills from many slabs at once and scatters what stays live), also
//! with smaller caches or with each worker flushing its cache when it goes idle.

use std::ffi::{CStr, c_char};

/// jemalloc's run-time options (see `man jemalloc`, "TUNING").
pub const CONF: &CStr = c"narenas:1,tcache:false,dirty_decay_ms:0,muzzy_decay_ms:0";

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
        assert!(CONF.to_str().unwrap().contains("dirty_decay_ms:0"));
    }

    #[test]
    fn memory_freed_below_live_allocations_goes_back_at_once() {
        const CHUNK: usize = 16 * 1024;
        const CHUNKS: usize = 4096; // 64 MiB
        // Fill 64 MiB in chunks and free all but every 64th: the live ones sit between the
        // freed ones (glibc could give none of it back without malloc_trim), and the other
        // tests' allocations are noise next to 64 MiB.
        let (before, filled, after_free) = std::thread::spawn(|| {
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
            let after_free = rss_anon_kib();
            drop(kept);
            (before, filled, after_free)
        })
        .join()
        .unwrap();
        assert!(
            filled > before + 48 * 1024,
            "filling 64 MiB did not show: {before} -> {filled} KiB"
        );
        assert!(
            after_free + 48 * 1024 < filled,
            "freeing 63/64 of it gave back too little: {filled} -> {after_free} KiB"
        );
    }
}
