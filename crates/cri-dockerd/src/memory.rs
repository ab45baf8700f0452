//! Giving freed heap memory back to the kernel.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena and only returns memory
//! at the very top of an arena, so after a burst (a hundred pods listed, started and removed)
//! the daemon's resident size would stay at the burst's high-water mark although almost all
//! of it is free: measured here, about 4.5 MiB held in two worker arenas with 1.3 MiB live.
//! `malloc_trim(0)` walks every arena and gives whole free pages back (`MADV_DONTNEED`). It runs
//! [`SETTLE`] after containers or sandboxes were removed (their memory is what became free)
//! and every [`PERIOD`] otherwise; it takes well under a millisecond on a heap of this size.
//! Elsewhere than glibc it does nothing.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::Notify;

/// How long after a removal the trim runs (further removals in the meantime share it).
pub const SETTLE: Duration = Duration::from_millis(200);
/// The trim also runs this often, for bursts that removed nothing (large lists, pulls).
pub const PERIOD: Duration = Duration::from_secs(60);

static WANTED: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Ask for freed memory to be given back soon: objects went away.
pub fn release_soon() {
    WANTED.notify_one();
}

/// Start the task that gives freed memory back (once per process).
pub fn spawn_releaser() {
    tokio::spawn(async {
        loop {
            tokio::select! {
                () = WANTED.notified() => {}
                () = tokio::time::sleep(PERIOD) => {}
            }
            tokio::time::sleep(SETTLE).await;
            let released = trim();
            tracing::trace!(released, "gave freed heap memory back");
        }
    });
}

/// `malloc_trim(0)`: whether glibc gave anything back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and has no preconditions; it only walks and
    // madvises glibc's own arenas under their locks.
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    released != 0
}

/// Not glibc: nothing to do (other allocators return memory on their own terms).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
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

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_gives_back_memory_freed_below_live_allocations() {
        const CHUNK: usize = 16 * 1024;
        const CHUNKS: usize = 4096; // 64 MiB
        // On a thread of its own (so in an arena of its own), fill 64 MiB in small chunks and
        // free all but every 64th: the live ones pin the arena's top, so free() alone returns
        // (almost) nothing, and the other tests' allocations are noise next to 64 MiB.
        let (before, after_free, after_trim) = std::thread::spawn(|| {
            let before = rss_anon_kib();
            let mut chunks: Vec<Vec<u8>> = (0..CHUNKS).map(|i| vec![i as u8; CHUNK]).collect();
            let kept: Vec<Vec<u8>> = chunks
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| i % 64 == 63)
                .map(|(_, c)| std::mem::take(c))
                .collect();
            drop(chunks);
            let after_free = rss_anon_kib();
            assert!(trim(), "nothing was given back");
            let after_trim = rss_anon_kib();
            drop(kept);
            (before, after_free, after_trim)
        })
        .join()
        .unwrap();
        assert!(
            after_free > before + 48 * 1024,
            "free() alone kept the memory: {before} -> {after_free} KiB"
        );
        assert!(
            after_trim + 40 * 1024 < after_free,
            "trim gave back too little: {after_free} -> {after_trim} KiB"
        );
    }
}
