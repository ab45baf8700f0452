//! Container logs at the kubelet log path, in the CRI format
//! (`<RFC3339Nano> <stdout|stderr> <P|F> <text>`), and ReopenContainerLog.
//!
//! Docker keeps capturing output with its json-file driver, so nothing is lost while this daemon
//! is down. A follower task per container tails Docker's json log and appends CRI lines to the
//! kubelet path. After each batch it records, under `state_dir`, how far it read Docker's file
//! (offset + inode) and how long the CRI file was after the batch was written. On restart it
//! resumes from that offset; bytes of the CRI file beyond the recorded length (a batch written
//! just before a kill, whose offset was not yet saved) are recognised and not written again, since
//! the conversion is deterministic. Guarantee: no line is lost while Docker's file (or its
//! rotated `.1`) still holds it, and none is duplicated unless kubelet rotated the CRI file while
//! this daemon was down. State is written with write+rename but not fsync'd: it survives a
//! daemon crash, not a power loss.
//!
//! Docker's own rotation (`max-size`, set daemon-wide on some hosts) is followed: when the file
//! at the path is replaced, the old one is drained first (and on resume, `<path>.1` is searched).
//! A follower is woken by inotify (`log_watch.rs`) when anything changes in the directory
//! Docker keeps the container's log in, looks at most every 50 ms while output keeps coming, and
//! otherwise sleeps: an idle container costs nothing but a look every 30 seconds (a safety net).
//! Without inotify it polls, backing off from 50 ms to 500 ms while the file is idle. A follower
//! ends, after draining, when the container exits: when told so by
//! [`LogManager::mark_exited`], or when it sees Docker record the exit in the container's
//! `config.v2.json` next to the log (re-read only when its mtime changes; Docker writes it after
//! the log copier has finished). Exited containers therefore cost nothing.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::log_watch::{LogWatch, Subscription};
use super::{Error, Result};

/// Shortest time between two looks at a container's files while output keeps coming (batches
/// lines, and the saved copy position, of a chatty container).
const MIN_POLL: Duration = Duration::from_millis(50);
/// Longest poll interval without inotify, and the retry interval after a failed copy.
const MAX_POLL: Duration = Duration::from_millis(500);
/// With inotify: a look this long after the last one even without a wake-up.
const SAFETY_POLL: Duration = Duration::from_secs(30);
/// Rotated Docker log files looked at (`<path>.1` … `<path>.9`; Docker's `max-file`).
const MAX_ROTATED: usize = 9;
/// Largest amount of Docker log read per batch.
const READ_CHUNK: usize = 256 * 1024;
/// Capacity of the partial-line buffer kept between polls.
const PENDING_KEEP: usize = 4 * 1024;

/// Copies container output to CRI-format log files.
#[derive(Debug, Default)]
pub struct LogManager {
    /// Where resume offsets are kept.
    pub state_dir: PathBuf,
    followers: Arc<Mutex<HashMap<String, Follower>>>,
    /// Held by [`LogManager::follow_again`] (rare: containers started again outside CRI).
    replacing: tokio::sync::Mutex<()>,
    /// Wake-ups for the followers, set up with the first one (`None` inside: followers poll).
    watch: std::sync::OnceLock<Option<LogWatch>>,
}

#[derive(Debug)]
struct Follower {
    ctl: mpsc::UnboundedSender<Ctl>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
enum Ctl {
    Reopen(oneshot::Sender<Result<()>>),
    Flush(oneshot::Sender<()>),
    Exited,
    Stop,
}

/// What the follower persists per container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowState {
    pub docker_log_path: String,
    pub cri_log_path: String,
    /// Inode of the Docker json file being read.
    pub docker_inode: u64,
    /// Bytes of that file already converted.
    pub docker_offset: u64,
    /// Inode of the CRI file written to.
    pub cri_inode: u64,
    /// Its length after the last recorded batch.
    pub cri_len: u64,
}

impl LogManager {
    /// A manager keeping its state under `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        LogManager {
            state_dir,
            followers: Arc::default(),
            replacing: tokio::sync::Mutex::default(),
            watch: std::sync::OnceLock::new(),
        }
    }

    fn state_path(&self, container_id: &str) -> PathBuf {
        self.state_dir.join(format!("{container_id}.json"))
    }

    /// Start (or resume after a daemon restart) copying `container_id`'s output, found at Docker's
    /// `docker_log_path`, into `cri_log_path`. Idempotent. Must be called inside a tokio runtime.
    pub fn follow(
        &self,
        container_id: &str,
        docker_log_path: &str,
        cri_log_path: &str,
    ) -> Result<()> {
        if container_id.is_empty() || container_id.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "bad container id {container_id:?} for log following"
            )));
        }
        if docker_log_path.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "container {container_id} has no json-file log (is Docker's log driver json-file?)"
            )));
        }
        if cri_log_path.is_empty() {
            return Ok(());
        }
        let mut map = self.lock()?;
        if map.get(container_id).is_some_and(|f| !f.task.is_finished()) {
            return Ok(());
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Internal(format!("log follower needs a tokio runtime: {e}")))?;
        std::fs::create_dir_all(&self.state_dir)?;
        let state_path = self.state_path(container_id);
        let saved = load_state(&state_path);
        let mut copier = Copier::resume(saved, docker_log_path, cri_log_path, state_path)?;
        let wake = self.subscribe(docker_log_path);
        let (tx, rx) = mpsc::unbounded_channel();
        let id = container_id.to_string();
        let task = handle.spawn(async move { copier.run(&id, rx, wake).await });
        map.insert(container_id.to_string(), Follower { ctl: tx, task });
        tracing::debug!(container_id, cri_log_path, "following container log");
        Ok(())
    }

    /// Follow a container that was started again (outside CRI) afresh: the follower of its
    /// earlier run, if any, is stopped and awaited first, then a new one resumes from the saved
    /// copy position. Two followers never write the same file: while the old one finishes, a
    /// placeholder task holds its place, so that a concurrent [`LogManager::follow`] (a
    /// StartContainer) leaves the start to this call; calls of this function take turns.
    pub async fn follow_again(
        &self,
        container_id: &str,
        docker_log_path: &str,
        cri_log_path: &str,
    ) -> Result<()> {
        let _turn = self.replacing.lock().await;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Internal(format!("log follower needs a tokio runtime: {e}")))?;
        let old = self.lock()?.get_mut(container_id).map(|f| {
            let _ = f.ctl.send(Ctl::Stop);
            let placeholder = handle.spawn(std::future::pending::<()>());
            let placeholder_id = placeholder.id();
            (std::mem::replace(&mut f.task, placeholder), placeholder_id)
        });
        if let Some((task, placeholder_id)) = old {
            // Ends at its next wait, after the batch it may be writing; a panic there is the
            // old follower's own business.
            let _ = task.await;
            let mut map = self.lock()?;
            if map
                .get(container_id)
                .is_none_or(|f| f.task.id() != placeholder_id)
            {
                // Removed meanwhile (RemoveContainer aborted the placeholder): nothing to copy.
                return Ok(());
            }
            if let Some(f) = map.remove(container_id) {
                f.task.abort();
            }
        }
        self.follow(container_id, docker_log_path, cri_log_path)
    }

    /// Close and reopen the CRI log file (after kubelet rotated it). `NotFound` when the
    /// container's log is not followed, `FailedPrecondition` when the container has exited.
    pub async fn reopen(&self, container_id: &str) -> Result<()> {
        let ctl = {
            let map = self.lock()?;
            let f = map.get(container_id).ok_or_else(|| {
                Error::NotFound(format!("no log is followed for container {container_id}"))
            })?;
            if f.task.is_finished() {
                return Err(not_running(container_id));
            }
            f.ctl.clone()
        };
        let (tx, rx) = oneshot::channel();
        ctl.send(Ctl::Reopen(tx))
            .map_err(|_| not_running(container_id))?;
        rx.await.map_err(|_| not_running(container_id))?
    }

    /// Copy everything Docker has logged so far now, and wait (at most `limit`) until it is in
    /// the CRI file. Docker writes a container's last output before it reports the container
    /// exited, so after this a reader of the CRI file sees all output of an exited container
    /// (critest and `kubectl logs` read it right after seeing the exit). No-op when the log is
    /// not (or no longer) followed: a finished follower has drained everything.
    pub async fn flush(&self, container_id: &str, limit: Duration) {
        let ctl = match self.lock() {
            Ok(map) => match map.get(container_id) {
                Some(f) if !f.task.is_finished() => f.ctl.clone(),
                _ => return,
            },
            Err(_) => return,
        };
        let (tx, rx) = oneshot::channel();
        if ctl.send(Ctl::Flush(tx)).is_err() {
            return;
        }
        if tokio::time::timeout(limit, rx).await.is_err() {
            tracing::warn!(container_id, "log flush did not finish within {limit:?}");
        }
    }

    /// The container exited: copy what is left, then stop following (reopen is refused after).
    pub fn mark_exited(&self, container_id: &str) {
        if let Some(f) = self.lock().ok().as_ref().and_then(|m| m.get(container_id)) {
            let _ = f.ctl.send(Ctl::Exited);
        }
    }

    /// Whether a follower for `container_id` is still running.
    pub fn is_following(&self, container_id: &str) -> bool {
        self.lock()
            .map(|m| m.get(container_id).is_some_and(|f| !f.task.is_finished()))
            .unwrap_or(false)
    }

    /// Stop copying (container removed); forget its state.
    pub fn forget(&self, container_id: &str) {
        let _ = std::fs::remove_file(self.stop_following(container_id));
    }

    /// [`LogManager::forget`] but for deleting the copy position file, whose path it returns
    /// (for the caller to remove, e.g. on a blocking thread).
    pub fn stop_following(&self, container_id: &str) -> PathBuf {
        let removed = self.lock().ok().and_then(|mut m| {
            let f = m.remove(container_id);
            crate::memory::shrink_if_sparse(&mut m);
            f
        });
        if let Some(f) = removed {
            let _ = f.ctl.send(Ctl::Stop);
            f.task.abort();
        }
        self.state_path(container_id)
    }

    /// Wake-ups for changes beside `docker_log_path`; `None` (polling) without inotify.
    fn subscribe(&self, docker_log_path: &str) -> Option<Subscription> {
        let watch = self.watch.get_or_init(LogWatch::start).as_ref()?;
        let dir = Path::new(docker_log_path).parent()?;
        match watch.subscribe(dir) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}); polling this container's log",
                    dir.display()
                );
                None
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Follower>>> {
        self.followers
            .lock()
            .map_err(|_| Error::Internal("log follower map lock poisoned".into()))
    }
}

impl Drop for LogManager {
    fn drop(&mut self) {
        if let Ok(map) = self.followers.lock() {
            for f in map.values() {
                f.task.abort();
            }
        }
    }
}

fn not_running(container_id: &str) -> Error {
    Error::FailedPrecondition(format!(
        "container {container_id} is not running: its log cannot be reopened"
    ))
}

fn load_state(path: &Path) -> Option<FollowState> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unreadable log follower state: {e}");
            None
        }
    }
}

fn save_state(path: &Path, state: &FollowState) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(state).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

fn open_cri(path: &str) -> std::io::Result<File> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// The conversion loop's state for one container.
struct Copier {
    state: FollowState,
    state_path: PathBuf,
    /// The Docker file being read, positioned at `state.docker_offset`.
    docker: Option<File>,
    cri: File,
    /// Bytes of converted output already present in the CRI file (written before a kill).
    skip: u64,
    /// Bytes read from Docker's file past the last complete line.
    pending: Vec<u8>,
    exit_probe: ExitProbe,
}

/// Watches Docker's on-disk record of the container (`config.v2.json` beside the log).
#[derive(Debug, Default)]
struct ExitProbe {
    path: PathBuf,
    mtime: Option<std::time::SystemTime>,
    exited: bool,
}

impl ExitProbe {
    fn new(docker_log_path: &str) -> ExitProbe {
        let path = Path::new(docker_log_path)
            .parent()
            .map(|d| d.join("config.v2.json"))
            .unwrap_or_default();
        ExitProbe {
            path,
            ..Default::default()
        }
    }

    /// Whether Docker has recorded that the container ran and stopped.
    fn exited(&mut self) -> bool {
        let Ok(mtime) = std::fs::metadata(&self.path).and_then(|m| m.modified()) else {
            return self.exited;
        };
        if self.mtime != Some(mtime) {
            self.mtime = Some(mtime);
            self.exited = std::fs::read(&self.path)
                .ok()
                .is_some_and(|b| docker_state_exited(&b));
        }
        self.exited
    }
}

/// From Docker's `config.v2.json`: not running, and finished at some real time (a created but
/// not yet started container also is not running).
pub fn docker_state_exited(config_v2: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct State {
        running: bool,
        #[serde(default)]
        restarting: bool,
        #[serde(default)]
        finished_at: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Config {
        state: State,
    }
    serde_json::from_slice::<Config>(config_v2).is_ok_and(|c| {
        !c.state.running
            && !c.state.restarting
            && !c.state.finished_at.is_empty()
            && !c.state.finished_at.starts_with("0001-")
    })
}

impl Copier {
    fn resume(
        saved: Option<FollowState>,
        docker_log_path: &str,
        cri_log_path: &str,
        state_path: PathBuf,
    ) -> Result<Copier> {
        let cri = open_cri(cri_log_path)?;
        let cri_meta = cri.metadata()?;
        let mut state = FollowState {
            docker_log_path: docker_log_path.to_string(),
            cri_log_path: cri_log_path.to_string(),
            cri_inode: cri_meta.ino(),
            cri_len: cri_meta.len(),
            ..Default::default()
        };
        let mut skip = 0;
        let mut docker = None;
        if let Some(saved) = saved.filter(|s| s.docker_log_path == docker_log_path) {
            if saved.cri_inode == cri_meta.ino() && saved.cri_log_path == cri_log_path {
                skip = cri_meta.len().saturating_sub(saved.cri_len);
                state.cri_len = cri_meta.len() - skip;
            }
            let candidates = std::iter::once(docker_log_path.to_string())
                .chain((1..=MAX_ROTATED).map(|i| format!("{docker_log_path}.{i}")));
            for candidate in candidates {
                let Ok(f) = File::open(&candidate) else {
                    continue;
                };
                let m = f.metadata()?;
                if m.ino() == saved.docker_inode && m.len() >= saved.docker_offset {
                    state.docker_inode = saved.docker_inode;
                    state.docker_offset = saved.docker_offset;
                    docker = Some(f);
                    break;
                }
            }
            if docker.is_none() {
                tracing::warn!(
                    docker_log_path,
                    "docker log was rotated away while not followed: output may be missing"
                );
                // Whatever Docker still keeps is newer than what was copied: start with the oldest.
                if let Some((f, ino)) = next_file(docker_log_path, saved.docker_inode) {
                    state.docker_inode = ino;
                    docker = Some(f);
                }
            }
        } else if let Some((f, ino)) = next_file(docker_log_path, 0) {
            // First follow of a container whose log Docker has rotated already (it started
            // before being followed): begin with the oldest file Docker keeps.
            state.docker_inode = ino;
            docker = Some(f);
        }
        let mut c = Copier {
            state,
            state_path,
            docker,
            cri,
            skip,
            pending: Vec::new(),
            exit_probe: ExitProbe::new(docker_log_path),
        };
        if let Some(f) = c.docker.as_mut() {
            f.seek(SeekFrom::Start(c.state.docker_offset))?;
        }
        Ok(c)
    }

    async fn run(
        &mut self,
        container_id: &str,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
        wake: Option<Subscription>,
    ) {
        // Polling: the interval, backing off while idle. With wake-ups: the longest wait.
        let mut interval = MIN_POLL;
        // No look before this: a chatty container (or one whose directory keeps changing) is
        // looked at once per MIN_POLL, and after a failed look once per MAX_POLL.
        let mut not_before = tokio::time::Instant::now();
        let mut exited = false;
        // The first look comes at once: output may be waiting (a resumed follower), and a
        // wake-up only comes for what happens after the subscription.
        let mut look_now = true;
        loop {
            // Wake-ups while the event reader lives; polling otherwise.
            let woken = wake.as_ref().filter(|w| w.is_live());
            let msg = if std::mem::take(&mut look_now) {
                None
            } else {
                tokio::select! {
                    m = ctl.recv() => Some(m.unwrap_or(Ctl::Stop)),
                    _ = tokio::time::sleep(interval) => None,
                    () = async {
                        match woken {
                            Some(w) => {
                                // The wake-up first, then the pace: a quiet container has no
                                // timer of its own besides the safety look. A control message
                                // that wins during the pace takes the wake-up's place: each
                                // one leads to a look (or a stop) at once.
                                w.notify.notified().await;
                                tokio::time::sleep_until(not_before).await;
                            }
                            None => std::future::pending().await,
                        }
                    } => None,
                }
            };
            match msg {
                Some(Ctl::Stop) => return,
                Some(Ctl::Exited) => exited = true,
                Some(Ctl::Flush(reply)) => {
                    if let Err(e) = self.pump() {
                        tracing::warn!(container_id, "copying container log: {e}");
                    }
                    let _ = reply.send(());
                    // A full look next (the exit probe too): this message may have ended a wait
                    // whose wake-up was already taken.
                    look_now = true;
                    continue;
                }
                Some(Ctl::Reopen(reply)) => {
                    // Copy what is already there into the old file first.
                    let _ = self.pump();
                    let _ = reply.send(self.reopen().map_err(Error::from));
                    look_now = true;
                    continue;
                }
                None => {}
            }
            let looked = tokio::time::Instant::now();
            not_before = looked + MIN_POLL;
            match self.pump() {
                Ok(0) if exited => {
                    // Docker may still be flushing the last lines: one more look, then stop.
                    tokio::time::sleep(MIN_POLL * 2).await;
                    if matches!(self.pump(), Ok(0) | Err(_)) {
                        tracing::debug!(container_id, "container exited: log drained");
                        return;
                    }
                }
                Ok(0) => {
                    exited = self.exit_probe.exited();
                    if exited {
                        // Drain and stop without waiting for another wake-up.
                        look_now = true;
                    } else if woken.is_some() {
                        interval = SAFETY_POLL;
                    } else {
                        interval = (interval * 2).min(MAX_POLL);
                    }
                }
                // One more look soon in any case: it finds the end of a burst, and the exit of
                // a container that wrote its last line before it was followed.
                Ok(_) => interval = MIN_POLL,
                Err(e) => {
                    tracing::warn!(container_id, "copying container log: {e}");
                    interval = MAX_POLL;
                    not_before = looked + MAX_POLL;
                }
            }
        }
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.cri = open_cri(&self.state.cri_log_path)?;
        let m = self.cri.metadata()?;
        self.state.cri_inode = m.ino();
        self.state.cri_len = m.len();
        self.skip = 0;
        save_state(&self.state_path, &self.state)
    }

    /// Copy everything new; returns the Docker bytes consumed.
    fn pump(&mut self) -> std::io::Result<u64> {
        let mut total = 0;
        loop {
            if self.docker.is_none() {
                match File::open(&self.state.docker_log_path) {
                    Ok(f) => {
                        self.state.docker_inode = f.metadata()?.ino();
                        self.state.docker_offset = 0;
                        self.pending.clear();
                        self.docker = Some(f);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(total),
                    Err(e) => return Err(e),
                }
            }
            let n = self.copy_available()?;
            total += n;
            if n > 0 {
                continue;
            }
            // At the end of the file: has Docker rotated it (a new file at the path)?
            match std::fs::metadata(&self.state.docker_log_path) {
                Ok(m) if m.ino() != self.state.docker_inode => {
                    // Drained (copy_available returned 0): go on with the next newer file, a
                    // rotated one if Docker rotated more than once since, else the current one.
                    self.pending.clear();
                    self.state.docker_offset = 0;
                    match next_file(&self.state.docker_log_path, self.state.docker_inode) {
                        Some((f, ino)) => {
                            self.state.docker_inode = ino;
                            self.docker = Some(f);
                        }
                        None => self.docker = None,
                    }
                }
                Ok(m) if m.len() < self.state.docker_offset => {
                    // Truncated in place: start over.
                    if let Some(f) = self.docker.as_mut() {
                        f.seek(SeekFrom::Start(0))?;
                    }
                    self.state.docker_offset = 0;
                    self.pending.clear();
                }
                _ => return Ok(total),
            }
        }
    }

    /// Read what the current Docker file holds past our offset and write it as CRI lines.
    fn copy_available(&mut self) -> std::io::Result<u64> {
        if self.docker.is_none() {
            return Ok(0);
        }
        let mut consumed = 0u64;
        loop {
            // Straight into `pending`, as much as there is (up to a chunk): no buffer is
            // allocated (or zeroed) for the usual poll that finds nothing new.
            let n = match self.docker.as_mut() {
                Some(f) => Read::by_ref(f)
                    .take(READ_CHUNK as u64)
                    .read_to_end(&mut self.pending)?,
                None => 0,
            };
            if n == 0 {
                break;
            }
            let Some(last_nl) = self.pending.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let complete: Vec<u8> = self.pending.drain(..=last_nl).collect();
            let mut out = Vec::with_capacity(complete.len());
            for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match json_to_cri(line) {
                    Some(cri) => out.extend_from_slice(cri.as_bytes()),
                    None => tracing::debug!(
                        line = %String::from_utf8_lossy(line),
                        "skipping unparsable docker log line"
                    ),
                }
            }
            self.write_out(&out)?;
            consumed += complete.len() as u64;
            self.state.docker_offset += complete.len() as u64;
            save_state(&self.state_path, &self.state)?;
        }
        // A burst of output grew `pending`; do not keep that much per container.
        if self.pending.capacity() > PENDING_KEEP {
            self.pending.shrink_to(PENDING_KEEP);
        }
        Ok(consumed)
    }

    /// Append converted output, leaving out what a killed predecessor already wrote.
    fn write_out(&mut self, out: &[u8]) -> std::io::Result<()> {
        let skip = (self.skip as usize).min(out.len());
        self.skip -= skip as u64;
        let rest = &out[skip..];
        self.cri.write_all(rest)?;
        self.state.cri_len += out.len() as u64;
        Ok(())
    }
}

/// The rotated Docker log file that follows the one with inode `after` (`<path>.k` is followed
/// by `<path>.k-1`); `None` when the next one is the current file at `path`. If `after` is no
/// longer among the rotated files, every rotated file left is newer: the oldest comes next.
fn next_file(path: &str, after: u64) -> Option<(File, u64)> {
    let mut rotated = Vec::new();
    for i in 1..=MAX_ROTATED {
        let Ok(f) = File::open(format!("{path}.{i}")) else {
            break;
        };
        let Ok(ino) = f.metadata().map(|m| m.ino()) else {
            break;
        };
        if ino == after {
            return rotated.pop();
        }
        rotated.push((f, ino));
    }
    rotated.pop()
}

#[derive(Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    stream: std::borrow::Cow<'a, str>,
    time: std::borrow::Cow<'a, str>,
}

/// Convert one line of Docker's json-file log into CRI log lines (normally one). A `log` value
/// without a trailing newline is a partial line (`P`): Docker splits lines longer than 16 KiB.
/// Returns `None` for lines that are not Docker log records.
pub fn json_to_cri(line: &[u8]) -> Option<String> {
    let rec: JsonLine<'_> = serde_json::from_slice(line).ok()?;
    let stream = match rec.stream.as_ref() {
        "stdout" | "stderr" => rec.stream.as_ref(),
        _ => return None,
    };
    let time = if chrono::DateTime::parse_from_rfc3339(&rec.time).is_ok() {
        rec.time.into_owned()
    } else {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    let mut out = String::with_capacity(rec.log.len() + time.len() + 12);
    let mut rest = rec.log.as_ref();
    loop {
        let (text, tag, more) = match rest.find('\n') {
            Some(i) => (&rest[..i], 'F', &rest[i + 1..]),
            None => (rest, 'P', ""),
        };
        if tag == 'P' && text.is_empty() {
            break;
        }
        out.push_str(&time);
        out.push(' ');
        out.push_str(stream);
        out.push(' ');
        out.push(tag);
        out.push(' ');
        out.push_str(text);
        out.push('\n');
        if tag == 'P' || more.is_empty() {
            break;
        }
        rest = more;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(log: &str, stream: &str, time: &str) -> String {
        serde_json::json!({"log": log, "stream": stream, "time": time}).to_string()
    }

    #[test]
    fn converts_docker_json_lines() {
        let t = "2026-11-23T09:33:00.123456789Z";
        let table = [
            (
                json("hello\n", "stdout", t),
                format!("{t} stdout F hello\n"),
            ),
            (json("oops\n", "stderr", t), format!("{t} stderr F oops\n")),
            (json("part", "stdout", t), format!("{t} stdout P part\n")),
            (json("\n", "stdout", t), format!("{t} stdout F \n")),
            (
                json("héllo ☃ 日本\n", "stdout", t),
                format!("{t} stdout F héllo ☃ 日本\n"),
            ),
            (
                json("a\tb \"q\"\n", "stdout", t),
                format!("{t} stdout F a\tb \"q\"\n"),
            ),
            (
                json("one\ntwo\n", "stdout", t),
                format!("{t} stdout F one\n{t} stdout F two\n"),
            ),
            (
                json("one\ntail", "stderr", t),
                format!("{t} stderr F one\n{t} stderr P tail\n"),
            ),
            (
                json("x\n", "stdout", "2026-11-23T09:33:00.1Z"),
                "2026-11-23T09:33:00.1Z stdout F x\n".to_string(),
            ),
        ];
        for (input, want) in table {
            assert_eq!(
                json_to_cri(input.as_bytes()).as_deref(),
                Some(want.as_str()),
                "{input}"
            );
        }
        // Extra fields Docker may add are ignored.
        let with_attrs =
            format!(r#"{{"log":"x\n","stream":"stdout","attrs":{{"a":"b"}},"time":"{t}"}}"#);
        assert_eq!(
            json_to_cri(with_attrs.as_bytes()),
            Some(format!("{t} stdout F x\n"))
        );
    }

    #[test]
    fn rejects_non_log_lines() {
        assert_eq!(json_to_cri(b"not json"), None);
        assert_eq!(
            json_to_cri(br#"{"log":"x","stream":"stdin","time":"2026-11-23T09:33:00Z"}"#),
            None
        );
        assert_eq!(json_to_cri(br#"{"stream":"stdout"}"#), None);
        // A bad time is replaced by the current time, keeping the line.
        let line = json_to_cri(br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#);
        let line = line.expect("converted");
        assert!(line.ends_with(" stdout F x\n"), "{line}");
        let ts = line.split(' ').next().expect("timestamp");
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    }

    fn write_docker(path: &Path, lines: &[(&str, &str)]) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("docker log");
        for (i, (stream, log)) in lines.iter().enumerate() {
            let t = format!("2026-11-23T09:33:{:02}.000000001Z", i % 60);
            writeln!(f, "{}", json(log, stream, &t)).expect("write");
        }
    }

    fn cri_texts(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("cri log")
            .lines()
            .map(|l| l.splitn(4, ' ').skip(1).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn copier(dir: &Path, docker: &Path, cri: &Path) -> Copier {
        let state = dir.join("state.json");
        Copier::resume(
            load_state(&state),
            docker.to_str().expect("utf8"),
            cri.to_str().expect("utf8"),
            state,
        )
        .expect("copier")
    }

    #[test]
    fn resumes_without_loss_or_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("c-json.log");
        let cri = dir.path().join("pod/c/0.log");
        write_docker(&docker, &[("stdout", "a\n"), ("stderr", "b\n")]);

        let mut c = copier(dir.path(), &docker, &cri);
        assert!(c.pump().expect("pump") > 0);
        drop(c);
        write_docker(&docker, &[("stdout", "c\n")]);
        // A restarted copier resumes at the saved offset.
        let mut c = copier(dir.path(), &docker, &cri);
        c.pump().expect("pump");
        assert_eq!(cri_texts(&cri), ["stdout F a", "stderr F b", "stdout F c"]);

        // Killed after writing a batch but before saving its offset: the batch is not repeated.
        let saved = std::fs::read(dir.path().join("state.json")).expect("state");
        write_docker(&docker, &[("stdout", "d\n"), ("stdout", "long")]);
        c.pump().expect("pump");
        drop(c);
        std::fs::write(dir.path().join("state.json"), saved).expect("restore old state");
        write_docker(&docker, &[("stdout", "e\n")]);
        let mut c = copier(dir.path(), &docker, &cri);
        c.pump().expect("pump");
        assert_eq!(
            cri_texts(&cri),
            [
                "stdout F a",
                "stderr F b",
                "stdout F c",
                "stdout F d",
                "stdout P long",
                "stdout F e"
            ]
        );
    }

    #[test]
    fn follows_docker_rotation_and_incomplete_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("c-json.log");
        let cri = dir.path().join("0.log");
        write_docker(&docker, &[("stdout", "1\n")]);
        let mut c = copier(dir.path(), &docker, &cri);
        c.pump().expect("pump");

        // Half a json line is left for the next round.
        let mut f = OpenOptions::new().append(true).open(&docker).expect("open");
        let line = json("2\n", "stdout", "2026-11-23T09:33:00Z");
        let (head, tail) = line.split_at(10);
        f.write_all(head.as_bytes()).expect("write");
        c.pump().expect("pump");
        assert_eq!(cri_texts(&cri), ["stdout F 1"]);
        writeln!(f, "{tail}").expect("write");
        drop(f);

        // Docker rotates: the rest of the old file is drained before the new one is read.
        std::fs::rename(&docker, dir.path().join("c-json.log.1")).expect("rotate");
        write_docker(&docker, &[("stdout", "3\n")]);
        c.pump().expect("pump");
        assert_eq!(cri_texts(&cri), ["stdout F 1", "stdout F 2", "stdout F 3"]);

        // Rotated again while we were down: resume in `.1`, then the new file.
        drop(c);
        write_docker(&docker, &[("stdout", "4\n")]);
        std::fs::rename(&docker, dir.path().join("c-json.log.1")).expect("rotate");
        write_docker(&docker, &[("stdout", "5\n")]);
        let mut c = copier(dir.path(), &docker, &cri);
        c.pump().expect("pump");
        assert_eq!(
            cri_texts(&cri),
            [
                "stdout F 1",
                "stdout F 2",
                "stdout F 3",
                "stdout F 4",
                "stdout F 5"
            ]
        );

        // Two rotations between two looks (live), then two more while down.
        let rotate = || {
            for i in (1..3).rev() {
                let from = dir.path().join(format!("c-json.log.{i}"));
                if from.exists() {
                    std::fs::rename(&from, dir.path().join(format!("c-json.log.{}", i + 1)))
                        .expect("shift");
                }
            }
            std::fs::rename(&docker, dir.path().join("c-json.log.1")).expect("rotate");
        };
        write_docker(&docker, &[("stdout", "6\n")]);
        rotate();
        write_docker(&docker, &[("stdout", "7\n")]);
        rotate();
        write_docker(&docker, &[("stdout", "8\n")]);
        c.pump().expect("pump");
        drop(c);
        write_docker(&docker, &[("stdout", "9\n")]);
        rotate();
        write_docker(&docker, &[("stdout", "10\n")]);
        rotate();
        write_docker(&docker, &[("stdout", "11\n")]);
        let mut c = copier(dir.path(), &docker, &cri);
        c.pump().expect("pump");
        let want: Vec<String> = (1..=11).map(|i| format!("stdout F {i}")).collect();
        assert_eq!(cri_texts(&cri), want);
    }

    #[test]
    fn reads_docker_exit_state() {
        let state = |running: bool, finished: &str| {
            format!(
                r#"{{"State":{{"Running":{running},"Paused":false,"Restarting":false,"FinishedAt":"{finished}"}},"ID":"x"}}"#
            )
        };
        assert!(docker_state_exited(
            state(false, "2026-11-23T09:53:58.9Z").as_bytes()
        ));
        assert!(!docker_state_exited(
            state(true, "2026-11-23T09:53:58.9Z").as_bytes()
        ));
        assert!(!docker_state_exited(
            state(false, "0001-01-01T00:00:00Z").as_bytes()
        ));
        assert!(!docker_state_exited(b"{}"));
        assert!(!docker_state_exited(b"garbage"));
    }

    #[tokio::test]
    async fn follower_stops_when_docker_records_the_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("c-json.log");
        let config = dir.path().join("config.v2.json");
        let cri = dir.path().join("0.log");
        std::fs::write(
            &config,
            r#"{"State":{"Running":true,"FinishedAt":"0001-01-01T00:00:00Z"}}"#,
        )
        .expect("state");
        write_docker(&docker, &[("stdout", "1\n")]);
        let m = LogManager::new(dir.path().join("state"));
        m.follow(
            "cid",
            docker.to_str().expect("utf8"),
            cri.to_str().expect("utf8"),
        )
        .expect("follow");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(m.is_following("cid"));
        write_docker(&docker, &[("stdout", "last\n")]);
        std::fs::write(
            &config,
            r#"{"State":{"Running":false,"FinishedAt":"2026-11-23T09:53:58Z"}}"#,
        )
        .expect("state");
        wait_for(|| !m.is_following("cid")).await;
        assert_eq!(cri_texts(&cri), ["stdout F 1", "stdout F last"]);
        assert!(matches!(
            m.reopen("cid").await,
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[tokio::test]
    async fn flush_copies_everything_before_returning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("c-json.log");
        let cri = dir.path().join("0.log");
        let m = following(dir.path(), &docker, &cri, "first").await;
        // Quiet long enough for a polling follower to look only every 500 ms.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        write_docker(&docker, &[("stdout", "last words\n"), ("stderr", "oops\n")]);
        m.flush("cid", Duration::from_secs(2)).await;
        assert_eq!(
            cri_texts(&cri),
            ["stdout F first", "stdout F last words", "stderr F oops"]
        );
        // Not followed: returns at once.
        m.flush("other", Duration::from_secs(2)).await;
        m.forget("cid");
    }

    #[tokio::test]
    async fn output_after_a_quiet_spell_is_copied_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker_dir = dir.path().join("docker");
        std::fs::create_dir(&docker_dir).expect("mkdir");
        let docker = docker_dir.join("c-json.log");
        let cri = dir.path().join("0.log");
        let m = following(dir.path(), &docker, &cri, "0").await;
        // Each line after a quiet spell long enough for a polling follower to look only every
        // 500 ms must arrive well within that: woken by inotify, not found by the next poll. (A
        // poller backing off 50, 100, 200, 400, 500, 500 ms from the last line looks 1250 and
        // 1750 ms after it; written about 1350 ms after it, a line would wait some 400 ms.)
        for i in 1..=4 {
            tokio::time::sleep(Duration::from_millis(1330)).await;
            write_docker(&docker, &[("stdout", &format!("{i}\n"))]);
            let t = std::time::Instant::now();
            wait_for(|| cri_texts(&cri).len() == i + 1).await;
            assert!(
                t.elapsed() < Duration::from_millis(250),
                "line {i} took {:?}",
                t.elapsed()
            );
        }
        m.forget("cid");
    }

    #[tokio::test]
    async fn reopen_after_kubelet_rotation_and_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("c-json.log");
        let cri = dir.path().join("0.log");
        write_docker(&docker, &[("stdout", "before\n")]);
        let m = LogManager::new(dir.path().join("state"));
        let (d, p) = (docker.to_str().expect("utf8"), cri.to_str().expect("utf8"));
        m.follow("cid", d, p).expect("follow");
        m.follow("cid", d, p).expect("follow is idempotent");
        wait_for(|| cri_texts(&cri).len() == 1).await;

        std::fs::rename(&cri, dir.path().join("0.log.20261123")).expect("kubelet rotates");
        m.reopen("cid").await.expect("reopen");
        write_docker(&docker, &[("stdout", "after\n")]);
        wait_for(|| cri.exists() && cri_texts(&cri) == ["stdout F after"]).await;

        assert!(matches!(m.reopen("other").await, Err(Error::NotFound(_))));
        m.mark_exited("cid");
        wait_for(|| !m.is_following("cid")).await;
        assert!(matches!(
            m.reopen("cid").await,
            Err(Error::FailedPrecondition(_))
        ));
        m.forget("cid");
        assert!(!dir.path().join("state/cid.json").exists());
    }

    #[tokio::test]
    async fn follow_again_replaces_the_follower_without_losing_or_repeating_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("c-json.log");
        let cri = dir.path().join("0.log");
        let m = following(dir.path(), &docker, &cri, "1").await;
        let (d, p) = (docker.to_str().expect("utf8"), cri.to_str().expect("utf8"));
        // The first run's follower is still copying when the container runs again; a
        // concurrent plain `follow` (a StartContainer) leaves the start to `follow_again`.
        write_docker(&docker, &[("stdout", "2\n")]);
        let (again, plain) = tokio::join!(m.follow_again("cid", d, p), async {
            tokio::task::yield_now().await;
            m.follow("cid", d, p)
        });
        again.expect("follow again");
        plain.expect("follow");
        assert!(m.is_following("cid"));
        write_docker(&docker, &[("stdout", "3\n")]);
        wait_for(|| cri_texts(&cri).len() >= 3).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cri_texts(&cri), ["stdout F 1", "stdout F 2", "stdout F 3"]);
        // Nothing followed yet: it simply starts.
        m.forget("cid");
        m.follow_again("cid", d, p).await.expect("follow again");
        assert!(m.is_following("cid"));
        m.forget("cid");
    }

    /// A manager (state under `dir`) following container `cid` from `docker` into `cri`, once
    /// the `first` line Docker logged has been copied.
    async fn following(dir: &Path, docker: &Path, cri: &Path, first: &str) -> LogManager {
        write_docker(docker, &[("stdout", &format!("{first}\n"))]);
        let m = LogManager::new(dir.join("state"));
        let (d, p) = (docker.to_str().expect("utf8"), cri.to_str().expect("utf8"));
        m.follow("cid", d, p).expect("follow");
        wait_for(|| cri_texts(cri).len() == 1).await;
        m
    }

    async fn wait_for(mut f: impl FnMut() -> bool) {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not reached in time");
    }
}
