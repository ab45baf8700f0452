//! Wake-ups for the log followers ([`super::logs`]) from inotify, so that a container that writes
//! nothing costs nothing: one inotify instance per [`super::logs::LogManager`], one watch per
//! followed container on the directory Docker keeps its json log in. Anything created, written
//! or renamed there (a log line, a rotation, Docker's `config.v2.json` recording the exit) wakes
//! the container's follower, which then looks at its files as it did when it polled. Watches on
//! the same directory are shared and go away with their last follower (or with the directory).
//! Where inotify is not available (no instance left, a watch refused), followers poll.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::{Notify, oneshot};

/// What a follower is woken for: files written, created, renamed into or out of, or removed in
/// its container's Docker directory.
const MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CREATE)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::ONLYDIR);

/// The event reader's pause after each batch of events (the followers' own pace).
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The inotify instance of one log manager and who waits on which watch.
pub(crate) struct LogWatch {
    inner: Arc<Mutex<Inner>>,
    /// Dropped with the watch: ends the task reading events (and closes the instance).
    _stop: oneshot::Sender<()>,
}

struct Inner {
    /// False once the task reading events has ended (subscribers then poll).
    live: bool,
    watches: Watches,
    /// Watch descriptor number -> (subscription token, its follower's wake-up).
    waiting: HashMap<i32, Vec<(u64, Arc<Notify>)>>,
    next_token: u64,
}

impl std::fmt::Debug for LogWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWatch").finish_non_exhaustive()
    }
}

/// One follower's interest in one directory; dropping it withdraws it.
pub(crate) struct Subscription {
    inner: Arc<Mutex<Inner>>,
    wd: WatchDescriptor,
    token: u64,
    /// Notified (one stored permit) whenever something happened in the directory.
    pub notify: Arc<Notify>,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogWatch {
    /// A new inotify instance and the task that reads it; `None` (after saying why) when the
    /// kernel gives no instance. Must be called inside a tokio runtime.
    pub(crate) fn start() -> Option<LogWatch> {
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("inotify unavailable, container logs are polled: {e}");
                return None;
            }
        };
        let inner = Arc::new(Mutex::new(Inner {
            live: true,
            watches: inotify.watches(),
            waiting: HashMap::new(),
            next_token: 0,
        }));
        let events = match inotify.into_event_stream([0u8; 4096]) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("inotify unavailable, container logs are polled: {e}");
                return None;
            }
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        let waiting = inner.clone();
        tokio::spawn(async move {
            // What is readable at once comes as one batch; after a batch the reader pauses, so
            // that a container writing thousands of lines a second wakes it (and its follower,
            // which paces itself too) a few times a second, not once per write: meanwhile the
            // kernel merges repeated events of a watch into one. A first event after a quiet
            // spell is passed on at once.
            let mut batches = events.ready_chunks(256);
            'read: loop {
                let batch = tokio::select! {
                    _ = &mut stopped => return,
                    b = batches.next() => b,
                };
                let Some(batch) = batch else { break };
                for event in batch {
                    match event {
                        Ok(ev) => dispatch(&waiting, ev.wd.get_watch_descriptor_id(), ev.mask),
                        Err(e) => {
                            tracing::warn!(
                                "reading inotify events: {e}; container logs are polled"
                            );
                            break 'read;
                        }
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(BATCH_PAUSE) => {}
                }
            }
            // No more events: everyone looks for themselves, and polls from now on.
            lock(&waiting).live = false;
            wake_all(&waiting);
        });
        Some(LogWatch { inner, _stop: stop })
    }

    /// Be woken for what happens in `dir`.
    pub(crate) fn subscribe(&self, dir: &Path) -> std::io::Result<Subscription> {
        let mut inner = lock(&self.inner);
        if !inner.live {
            return Err(std::io::Error::other(
                "the inotify event reader has stopped",
            ));
        }
        // Added under the lock: a last subscriber leaving the same directory cannot remove the
        // (shared) watch between this add and the registration below.
        let wd = inner.watches.add(dir, MASK)?;
        let token = inner.next_token;
        inner.next_token += 1;
        let notify = Arc::new(Notify::new());
        inner
            .waiting
            .entry(wd.get_watch_descriptor_id())
            .or_default()
            .push((token, notify.clone()));
        Ok(Subscription {
            inner: self.inner.clone(),
            wd,
            token,
            notify,
        })
    }

    /// How many directories are watched (for tests).
    #[cfg(test)]
    pub(crate) fn watched(&self) -> usize {
        lock(&self.inner).waiting.len()
    }
}

impl Subscription {
    /// Whether wake-ups still come (the event reader has not stopped).
    pub(crate) fn is_live(&self) -> bool {
        lock(&self.inner).live
    }
}

fn dispatch(inner: &Mutex<Inner>, wd: i32, mask: EventMask) {
    if mask.contains(EventMask::Q_OVERFLOW) {
        // Events were lost: everyone looks.
        wake_all(inner);
        return;
    }
    let mut inner = lock(inner);
    if mask.contains(EventMask::IGNORED) {
        // The directory is gone (container removed) and the kernel dropped the watch: its
        // followers look one last time; their subscriptions no longer hold it.
        for (_, n) in inner.waiting.remove(&wd).unwrap_or_default() {
            n.notify_one();
        }
        return;
    }
    if let Some(list) = inner.waiting.get(&wd) {
        for (_, n) in list {
            n.notify_one();
        }
    }
}

fn wake_all(inner: &Mutex<Inner>) {
    for (_, n) in lock(inner).waiting.values().flatten() {
        n.notify_one();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = lock(&self.inner);
        let id = self.wd.get_watch_descriptor_id();
        let Some(list) = inner.waiting.get_mut(&id) else {
            return; // the kernel dropped the watch already
        };
        list.retain(|(t, _)| *t != self.token);
        if list.is_empty() {
            inner.waiting.remove(&id);
            crate::memory::shrink_if_sparse(&mut inner.waiting);
            // Fails harmlessly when the directory went away meanwhile.
            let _ = inner.watches.remove(self.wd.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(s: &Subscription) -> bool {
        tokio::time::timeout(Duration::from_secs(2), s.notify.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn wakes_the_subscribers_of_a_directory_and_shares_its_watch() {
        let w = LogWatch::start().unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a1 = w.subscribe(a.path()).unwrap();
        let a2 = w.subscribe(a.path()).unwrap();
        let b1 = w.subscribe(b.path()).unwrap();
        assert_eq!(w.watched(), 2);

        std::fs::write(a.path().join("x-json.log"), "line\n").unwrap();
        assert!(woken(&a1).await && woken(&a2).await);
        // Nothing happened in b: its subscriber holds no permit.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), b1.notify.notified())
                .await
                .is_err()
        );
        // A rename into the directory (Docker's atomic config.v2.json) wakes too.
        std::fs::write(b.path().join(".tmp"), "{}").unwrap();
        assert!(woken(&b1).await);
        std::fs::rename(b.path().join(".tmp"), b.path().join("config.v2.json")).unwrap();
        assert!(woken(&b1).await);

        // The watch stays while one subscriber is left, and goes with the last.
        drop(a1);
        assert_eq!(w.watched(), 2);
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(a.path().join("x-json.log"))
            .unwrap();
        std::io::Write::write_all(&mut &f, b"more\n").unwrap();
        assert!(woken(&a2).await);
        drop(a2);
        assert_eq!(w.watched(), 1);
    }

    #[tokio::test]
    async fn a_removed_directory_wakes_its_subscribers_once_more() {
        let w = LogWatch::start().unwrap();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("container");
        std::fs::create_dir(&dir).unwrap();
        let s = w.subscribe(&dir).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert!(woken(&s).await);
        for _ in 0..100 {
            if w.watched() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(w.watched(), 0);
        drop(s); // no watch left to remove: harmless
        assert!(w.subscribe(&dir).is_err());
    }
}
