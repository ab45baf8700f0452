//! The event-fed in-memory view of our containers (sandboxes and CRI containers): what
//! ListPodSandbox and ListContainers serve without a Docker call, and the source of the CRI
//! container events (every state change the view sees becomes a [`Transition`]).
//!
//! How it stays right:
//! - a full resync (one Docker list) when the Docker event stream is (re)connected and every
//!   [`RESYNC_PERIOD`] as a safety net; what Docker no longer has is dropped (and reported
//!   deleted), unless it was touched after the list began;
//! - Docker events update it as they arrive, and the lifecycle RPCs update it from their own
//!   result before they return, so a List right after an RPC reflects that RPC;
//! - states only move forward (created -> running -> exited -> deleted): CRI never restarts a
//!   container, so an older answer that arrives late cannot undo a newer one, and a deleted ID
//!   (tombstoned) never comes back. The one way back, exited -> running (someone ran
//!   `docker start` or `docker restart` on a container or a pause container), is taken only
//!   from a Docker inspect asked for after the entry was last touched (inspect reads the live
//!   state; a list can still say running for a moment after `docker stop` returned): that
//!   answer is newer than anything the view holds of it. A Docker start event of an exited
//!   entry asks at once; a resync whose list says running for an exited entry asks too, which
//!   catches a start whose event was missed;
//! - while the event stream is down (dockerd unreachable, or not yet synced) the view is not
//!   served: readers fall back to asking Docker, which answers `Unavailable` when dockerd is
//!   gone rather than last-known data dressed up as current.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::labels::{CONTAINER_TYPE, LOG_PATH, SANDBOX_ID, TYPE_SANDBOX};
use super::{Error, Result, Runtime};
use crate::docker::{ContainerAction, ContainerEvent, ContainerSpec, ContainerSummary, ListFilter};

/// How often the view is checked against one full Docker list even while events flow.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);
/// How many deleted IDs are remembered so that a late answer cannot resurrect them.
const TOMBSTONES: usize = 4096;
/// Replay margin for the event subscription (seconds before the resync's list).
const REPLAY_MARGIN_SECS: i64 = 2;

/// A CRI-level change of a container or sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// A change the view observed, with the last-known Docker summary of the object.
#[derive(Debug, Clone)]
pub struct Transition {
    pub change: Change,
    pub id: String,
    /// The pod: the sandbox's own ID for a sandbox.
    pub sandbox_id: String,
    pub is_sandbox: bool,
    pub last: ContainerSummary,
}

/// Lifecycle rank of a Docker state word; `None` for words that say nothing (`removing`, …).
pub fn rank(state: &str) -> Option<u8> {
    match state {
        "created" => Some(0),
        "running" | "paused" | "restarting" => Some(1),
        "exited" | "dead" => Some(2),
        _ => None,
    }
}

/// The CRI changes between two ranks (`None` = absent), in order.
pub fn changes(old: Option<u8>, new: Option<u8>) -> Vec<Change> {
    let mut out = Vec::new();
    match (old, new) {
        (_, Some(n)) => {
            let from = old.map_or(-1, i16::from);
            let n = i16::from(n);
            if from < 0 {
                out.push(Change::Created);
            }
            if from < 1 && n >= 1 {
                out.push(Change::Started);
            }
            if from < 2 && n >= 2 {
                out.push(Change::Stopped);
            }
            if from == 2 && n == 1 {
                // Started again outside CRI (see [`View::apply_listed`]).
                out.push(Change::Started);
            }
        }
        (Some(o), None) => {
            if o == 1 {
                out.push(Change::Stopped);
            }
            out.push(Change::Deleted);
        }
        (None, None) => {}
    }
    out
}

struct Entry {
    summary: ContainerSummary,
    /// The mutation counter when this entry was last touched.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Deleted IDs, by [`tomb_key`] (8 bytes instead of a 64-character string each).
    tombstones: HashSet<u64>,
    tomb_order: VecDeque<u64>,
    seq: u64,
    healthy: bool,
    /// Image reference (as containers were created with it) -> image ID, as Docker last listed
    /// a container of that reference; kept after the container is gone (see
    /// [`View::image_id_of`]), at most [`IMAGE_IDS`] references.
    image_ids: HashMap<String, String>,
}

/// Most image references [`Inner::image_ids`] keeps (it is emptied when full).
const IMAGE_IDS: usize = 512;

/// The view. All updates are synchronous and cheap; Docker calls happen outside it.
pub struct View {
    inner: Mutex<Inner>,
    tx: mpsc::UnboundedSender<Transition>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Transition>>>,
    /// Asks the feed for a full resync (after a failed single-container refresh).
    resync_wanted: tokio::sync::Notify,
}

impl Default for View {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        View {
            inner: Mutex::new(Inner::default()),
            tx,
            rx: Mutex::new(Some(rx)),
            resync_wanted: tokio::sync::Notify::new(),
        }
    }
}

/// Whether `s` carries the container type label `container_type`.
fn is_type(s: &ContainerSummary, container_type: &str) -> bool {
    s.labels.get(CONTAINER_TYPE).map(String::as_str) == Some(container_type)
}

/// Whether the entry `id` exists and is exited (or dead).
fn exited(inner: &Inner, id: &str) -> bool {
    inner
        .entries
        .get(id)
        .is_some_and(|e| rank(&e.summary.state) == Some(2))
}

/// Whether the entry `id` exists and has not been touched since mutation counter `seq`.
fn untouched_since(inner: &Inner, id: &str, seq: u64) -> bool {
    inner.entries.get(id).is_some_and(|e| e.seq <= seq)
}

/// A deleted ID's key in the tombstone set: a 64-bit hash (a false match among at most
/// [`TOMBSTONES`] keys is a chance of about 2^-52 per lookup).
fn tomb_key(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id)
}

fn transition(change: Change, s: &ContainerSummary) -> Transition {
    let is_sandbox = is_type(s, TYPE_SANDBOX);
    Transition {
        change,
        id: s.id.clone(),
        sandbox_id: if is_sandbox {
            s.id.clone()
        } else {
            s.labels.get(SANDBOX_ID).cloned().unwrap_or_default()
        },
        is_sandbox,
        last: s.clone(),
    }
}

impl View {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the view; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The receiver of every transition; taken once by the event publisher.
    pub fn take_transitions(&self) -> Option<mpsc::UnboundedReceiver<Transition>> {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn emit(&self, old: Option<u8>, new: Option<u8>, s: &ContainerSummary) {
        for c in changes(old, new) {
            // The receiver lives as long as the runtime; a send can only fail at shutdown.
            let _ = self.tx.send(transition(c, s));
        }
    }

    /// Whether the view is synced with a live event stream (and so may be served).
    pub fn healthy(&self) -> bool {
        self.lock().healthy
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.lock().healthy = healthy;
    }

    /// The mutation counter now: pass it to [`View::resync`] for a list taken after this.
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Insert or update from a fresh Docker summary (states only move forward).
    pub fn apply(&self, s: ContainerSummary) {
        let mut inner = self.lock();
        self.apply_locked(&mut inner, s, false);
    }

    /// [`View::apply`] of a summary Docker gave (from an inspect) for a question asked when the
    /// mutation counter was `seq_before`: if the entry has not been touched since, the answer
    /// is newer than what the view holds and may move it back from exited to running (CRI
    /// never restarts a container, but `docker start` or `docker restart` by hand does).
    /// Whether it did.
    pub fn apply_listed(&self, s: ContainerSummary, seq_before: u64) -> bool {
        let mut inner = self.lock();
        let newer = untouched_since(&inner, &s.id, seq_before);
        self.apply_locked(&mut inner, s, newer)
    }

    /// Apply `s`; `newer`: it is newer than the entry (see [`View::apply_listed`]). Whether the
    /// entry moved back from exited to running.
    fn apply_locked(&self, inner: &mut Inner, s: ContainerSummary, newer: bool) -> bool {
        if inner.tombstones.contains(&tomb_key(&s.id)) {
            return false;
        }
        if !s.image_id.is_empty() && inner.image_ids.get(&s.image) != Some(&s.image_id) {
            if inner.image_ids.len() >= IMAGE_IDS {
                inner.image_ids = HashMap::new();
            }
            inner.image_ids.insert(s.image.clone(), s.image_id.clone());
        }
        inner.seq += 1;
        let seq = inner.seq;
        match inner.entries.get_mut(&s.id) {
            Some(e) => {
                let old = rank(&e.summary.state);
                let new = rank(&s.state);
                let restarted = newer && old == Some(2) && new == Some(1);
                let forward = match (old, new) {
                    (Some(2), Some(1)) => restarted,
                    (Some(o), Some(n)) => n >= o,
                    (_, None) => false,
                    (None, Some(_)) => true,
                };
                e.seq = seq;
                if forward {
                    let emit_old = old.or(Some(0));
                    e.summary = s;
                    let snapshot = e.summary.clone();
                    self.emit(emit_old, new, &snapshot);
                }
                restarted
            }
            None => {
                let new = rank(&s.state).or(Some(0));
                self.emit(None, new, &s);
                inner
                    .entries
                    .insert(s.id.clone(), Entry { summary: s, seq });
                false
            }
        }
    }

    /// Move a known entry to Docker state `state`; `false` when the ID is not in the view.
    pub fn set_state(&self, id: &str, state: &str) -> bool {
        let mut inner = self.lock();
        let Some(e) = inner.entries.get(id) else {
            return inner.tombstones.contains(&tomb_key(id));
        };
        let mut s = e.summary.clone();
        s.state = state.to_string();
        self.apply_locked(&mut inner, s, false);
        true
    }

    /// The container is gone from Docker.
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        Self::remove_locked(self, &mut inner, id);
    }

    fn remove_locked(&self, inner: &mut Inner, id: &str) {
        inner.seq += 1;
        if let Some(e) = inner.entries.remove(id) {
            let old = rank(&e.summary.state).or(Some(0));
            self.emit(old, None, &e.summary);
            super::shrink_if_sparse(&mut inner.entries);
        }
        let key = tomb_key(id);
        if inner.tombstones.insert(key) {
            inner.tomb_order.push_back(key);
            while inner.tomb_order.len() > TOMBSTONES {
                if let Some(old) = inner.tomb_order.pop_front() {
                    inner.tombstones.remove(&old);
                }
            }
        }
    }

    /// Replace the view with a full Docker list taken after mutation counter `seq_before`:
    /// entries the list lacks are deleted unless touched since. Returns the entries, untouched
    /// since, that the view holds as exited and the list as running: to be confirmed by an
    /// inspect before they move back (see [`View::apply_listed`]).
    pub fn resync(&self, list: Vec<ContainerSummary>, seq_before: u64) -> Vec<String> {
        let mut inner = self.lock();
        let present: HashSet<String> = list.iter().map(|s| s.id.clone()).collect();
        let mut restarted = Vec::new();
        for s in list {
            if rank(&s.state) == Some(1)
                && untouched_since(&inner, &s.id, seq_before)
                && exited(&inner, &s.id)
            {
                // Left untouched for the inspect to move (nothing else would change).
                restarted.push(s.id);
                continue;
            }
            self.apply_locked(&mut inner, s, false);
        }
        let gone: Vec<String> = inner
            .entries
            .iter()
            .filter(|(id, e)| !present.contains(*id) && e.seq <= seq_before)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove_locked(&mut inner, &id);
        }
        restarted
    }

    /// The image ID Docker gave, when it last listed one, for a container made from image
    /// reference `image`. It is stale when the reference has been moved to another image since
    /// (a pull or tag outside [`View::forget_image_ids`]'s callers).
    pub fn image_id_of(&self, image: &str) -> Option<String> {
        self.lock().image_ids.get(image).cloned()
    }

    /// Forget every learned image ID (an image was pulled or removed).
    pub fn forget_image_ids(&self) {
        self.lock().image_ids = HashMap::new();
    }

    /// Every entry of type `container_type` (newest first, like Docker's list); `None` while the
    /// view may not be served.
    pub fn list(&self, container_type: &str) -> Option<Vec<ContainerSummary>> {
        self.list_where(container_type, |_| true)
    }

    /// [`View::list`] of the entries `keep` accepts (only those are copied).
    pub fn list_where(
        &self,
        container_type: &str,
        keep: impl Fn(&ContainerSummary) -> bool,
    ) -> Option<Vec<ContainerSummary>> {
        let inner = self.lock();
        if !inner.healthy {
            return None;
        }
        let mut out: Vec<ContainerSummary> = inner
            .entries
            .values()
            .filter(|e| is_type(&e.summary, container_type) && keep(&e.summary))
            .map(|e| e.summary.clone())
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Some(out)
    }

    /// The IDs of every entry of type `container_type`, in no particular order; `None` while
    /// the view may not be served.
    pub fn ids(&self, container_type: &str) -> Option<Vec<String>> {
        let inner = self.lock();
        if !inner.healthy {
            return None;
        }
        Some(
            inner
                .entries
                .iter()
                .filter(|(_, e)| is_type(&e.summary, container_type))
                .map(|(id, _)| id.clone())
                .collect(),
        )
    }

    /// The entry `id` if it is of type `container_type`; `None` also while the view may not
    /// be served.
    pub fn list_one(&self, id: &str, container_type: &str) -> Option<ContainerSummary> {
        let inner = self.lock();
        if !inner.healthy {
            return None;
        }
        inner
            .entries
            .get(id)
            .filter(|e| is_type(&e.summary, container_type))
            .map(|e| e.summary.clone())
    }

    /// Whether the view holds `id` as exited (or dead).
    pub fn has_exited(&self, id: &str) -> bool {
        exited(&self.lock(), id)
    }

    /// Whether the view holds `id` (served or not).
    pub fn contains(&self, id: &str) -> bool {
        self.lock().entries.contains_key(id)
    }

    /// The last-known summary of `id`, served or not.
    pub fn get(&self, id: &str) -> Option<ContainerSummary> {
        self.lock().entries.get(id).map(|e| e.summary.clone())
    }
}

/// The list filter for everything the view holds.
fn all_ours() -> ListFilter {
    ListFilter {
        all: true,
        labels: vec![CONTAINER_TYPE.to_string()],
        id: None,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Runtime {
    /// Re-read one container from Docker into the view (gone from Docker = removed).
    pub(crate) async fn view_refresh(&self, id: &str) {
        self.view_reread(id).await
    }

    /// Docker may have started the exited entry `id` again (its start event, or a list saying
    /// so): ask Docker's live state, with the view's mutation counter at `seq_before` or
    /// earlier, and move the entry back to running if it runs and was not touched since.
    pub(super) async fn confirm_restart(&self, id: &str, seq_before: u64) {
        let info = match self.docker.inspect_container(id).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(container_id = %id, "checking a restart: {e}");
                return;
            }
        };
        let Some(mut s) = self.view.get(id) else {
            return;
        };
        if !info.state.running {
            return;
        }
        s.state = "running".into();
        if self.view.apply_listed(s, seq_before) {
            self.follow_restarted(id, &info.log_path).await;
        }
    }

    /// [`Runtime::view_refresh`].
    async fn view_reread(&self, id: &str) {
        let filter = ListFilter {
            id: Some(id.to_string()),
            ..all_ours()
        };
        match self.docker.list_containers(&filter).await {
            Ok(list) => match list.into_iter().find(|s| s.id == id) {
                Some(s) => self.view.apply(s),
                None => self.view.remove(id),
            },
            Err(e) => {
                // The view cannot vouch for this ID any more: stop serving it until a resync.
                tracing::debug!(container_id = %id, "refreshing the container view: {e}");
                self.view.set_healthy(false);
                self.view.resync_wanted.notify_one();
            }
        }
    }

    /// Record a container this process just created from `spec` without asking Docker again:
    /// what a Docker list would say of it is known (name, image, labels, state `created`) but
    /// for the image ID, taken from the last listed container of the same image reference. When
    /// no container of that image was listed yet, the container is listed instead. Docker's create event refreshes
    /// the entry a moment later in any case, adding the labels it inherits from its image and
    /// correcting the image ID should the tag have moved since that entry was listed.
    pub(crate) async fn view_created(&self, id: &str, spec: &ContainerSpec) {
        match self.view.image_id_of(&spec.image) {
            Some(image_id) => self.view.apply(ContainerSummary {
                id: id.to_string(),
                name: spec.name.clone(),
                image: spec.image.clone(),
                image_id,
                labels: spec.labels.clone(),
                state: "created".into(),
                created: now_secs(),
            }),
            None => self.view_refresh(id).await,
        }
    }

    /// Record the Docker state an RPC just produced (or re-read the container if the view
    /// does not know it).
    pub(crate) async fn view_note(&self, id: &str, state: &str) {
        if !self.view.set_state(id, state) {
            self.view_refresh(id).await;
        }
    }

    /// One full Docker list into the view.
    async fn view_resync(&self) -> Result<()> {
        let seq = self.view.seq();
        let list = self.docker.list_containers(&all_ours()).await?;
        for id in self.view.resync(list, seq) {
            self.confirm_restart(&id, seq).await;
        }
        Ok(())
    }

    /// A container started again outside CRI writes to the same Docker log: copy it into the
    /// CRI log again (from where the copy stopped), so that its output and ReopenContainerLog
    /// work as for any running container. Sandboxes have no CRI log.
    async fn follow_restarted(&self, id: &str, docker_log: &str) {
        let Some(s) = self.view.get(id) else { return };
        tracing::info!(container_id = %id, "container started again outside CRI");
        if is_type(&s, TYPE_SANDBOX) {
            return;
        }
        let cri_log = s.labels.get(LOG_PATH).cloned().unwrap_or_default();
        if let Err(e) = self.logs.follow_again(id, docker_log, &cri_log).await {
            tracing::warn!(container_id = %id, "not copying the log of a restarted container: {e}");
        }
    }

    async fn on_docker_event(&self, ev: ContainerEvent) {
        tracing::debug!(container_id = %ev.id, action = ?ev.action, "docker event");
        match ev.action {
            ContainerAction::Create | ContainerAction::Rename => self.view_refresh(&ev.id).await,
            ContainerAction::Start if self.view.has_exited(&ev.id) => {
                // Started again outside CRI, or a start that is old news (replayed after a
                // reconnect, or processed after a quick stop): ask Docker which.
                let seq = self.view.seq();
                self.confirm_restart(&ev.id, seq).await
            }
            ContainerAction::Start | ContainerAction::Unpause => {
                self.view_note(&ev.id, "running").await
            }
            ContainerAction::Pause => self.view_note(&ev.id, "paused").await,
            ContainerAction::Die => self.view_note(&ev.id, "exited").await,
            ContainerAction::Destroy => {
                self.view.remove(&ev.id);
                self.stats.removed(&ev.id);
                self.sandbox_hosts.remove(&ev.id);
            }
            ContainerAction::Oom | ContainerAction::Other(_) => {}
        }
    }

    /// Keep the view fed from Docker's event stream for the life of the process: subscribe,
    /// resync, apply events; on any stream failure mark the view unserved and start over.
    pub(crate) fn spawn_view_feed(self: &Arc<Self>) {
        let rt = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut was_synced = false;
            loop {
                let since = now_secs() - REPLAY_MARGIN_SECS;
                let stream = rt.docker.container_events(CONTAINER_TYPE, since).await;
                let synced = match stream {
                    Ok(s) => rt.view_resync().await.map(|()| s),
                    Err(e) => Err(Error::from(e)),
                };
                let mut stream = match synced {
                    Ok(s) => s,
                    Err(e) => {
                        rt.view.set_healthy(false);
                        tracing::debug!("container view waits for dockerd: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                };
                backoff = Duration::from_millis(100);
                rt.view.set_healthy(true);
                if was_synced {
                    tracing::info!("docker event stream reconnected; container view resynced");
                } else {
                    tracing::debug!("container view synced");
                }
                was_synced = true;
                let mut tick = tokio::time::interval(RESYNC_PERIOD);
                tick.reset();
                loop {
                    tokio::select! {
                        item = stream.next() => match item {
                            Some(Ok(ev)) => rt.on_docker_event(ev).await,
                            Some(Err(e)) => {
                                tracing::warn!("docker event stream failed: {e}");
                                break;
                            }
                            None => {
                                tracing::warn!("docker event stream ended");
                                break;
                            }
                        },
                        _ = tick.tick() => {
                            if let Err(e) = rt.view_resync().await {
                                tracing::warn!("periodic container view resync failed: {e}");
                                break;
                            }
                        }
                        () = rt.view.resync_wanted.notified() => {
                            if let Err(e) = rt.view_resync().await {
                                tracing::warn!("container view resync failed: {e}");
                                break;
                            }
                            rt.view.set_healthy(true);
                        }
                    }
                }
                rt.view.set_healthy(false);
            }
        });
    }

    /// Every container of `container_type` (`podsandbox` or `container`): from the view when
    /// it is served, else one Docker list.
    pub(crate) async fn list_of_type(&self, container_type: &str) -> Result<Vec<ContainerSummary>> {
        if let Some(list) = self.view.list(container_type) {
            return Ok(list);
        }
        Ok(self
            .docker
            .list_containers(&ListFilter {
                all: true,
                labels: vec![format!("{CONTAINER_TYPE}={container_type}")],
                id: None,
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::labels::TYPE_CONTAINER;

    fn s(id: &str, state: &str, ty: &str) -> ContainerSummary {
        ContainerSummary {
            id: id.into(),
            name: format!("n-{id}"),
            state: state.into(),
            labels: HashMap::from([
                (CONTAINER_TYPE.to_string(), ty.to_string()),
                (SANDBOX_ID.to_string(), "sb".to_string()),
            ]),
            ..Default::default()
        }
    }

    fn drain(v: &View, rx: &mut mpsc::UnboundedReceiver<Transition>) -> Vec<(String, Change)> {
        let _ = v;
        let mut out = Vec::new();
        while let Ok(t) = rx.try_recv() {
            out.push((t.id, t.change));
        }
        out
    }

    #[test]
    fn changes_between_ranks() {
        use Change::*;
        for (old, new, want) in [
            (None, Some(0), vec![Created]),
            (None, Some(1), vec![Created, Started]),
            (None, Some(2), vec![Created, Started, Stopped]),
            (Some(0), Some(1), vec![Started]),
            (Some(1), Some(2), vec![Stopped]),
            (Some(0), Some(2), vec![Started, Stopped]),
            (Some(1), Some(1), vec![]),
            (Some(2), Some(1), vec![Started]),
            (Some(1), None, vec![Stopped, Deleted]),
            (Some(2), None, vec![Deleted]),
            (Some(0), None, vec![Deleted]),
            (None, None, vec![]),
        ] {
            assert_eq!(changes(old, new), want, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn states_only_move_forward_and_deleted_ids_stay_deleted() {
        let v = View::default();
        let mut rx = v.take_transitions().unwrap();
        v.apply(s("a", "created", TYPE_CONTAINER));
        v.apply(s("a", "exited", TYPE_CONTAINER));
        v.apply(s("a", "running", TYPE_CONTAINER)); // a late, older answer
        assert_eq!(v.get("a").unwrap().state, "exited");
        v.remove("a");
        v.apply(s("a", "exited", TYPE_CONTAINER));
        assert!(v.get("a").is_none());
        assert!(
            v.set_state("a", "running"),
            "a tombstoned ID counts as known"
        );
        assert!(!v.set_state("zz", "running"));
        use Change::*;
        assert_eq!(
            drain(&v, &mut rx),
            vec![
                ("a".into(), Created),
                ("a".into(), Started),
                ("a".into(), Stopped),
                ("a".into(), Deleted)
            ]
        );
    }

    #[test]
    fn only_a_list_newer_than_the_entry_moves_it_back_to_running() {
        let v = View::default();
        let mut rx = v.take_transitions().unwrap();
        v.apply(s("a", "running", TYPE_CONTAINER));
        v.apply(s("a", "exited", TYPE_CONTAINER));
        drain(&v, &mut rx);
        assert!(v.has_exited("a") && !v.has_exited("zz"));
        v.apply(s("a", "running", TYPE_CONTAINER));
        assert_eq!(v.get("a").unwrap().state, "exited");
        assert!(!v.apply_listed(s("a", "exited", TYPE_CONTAINER), v.seq()));
        assert_eq!(v.get("a").unwrap().state, "exited");
        assert_eq!(drain(&v, &mut rx), vec![]);
        // A list asked for before the entry was last touched is not newer than it.
        let before = v.seq();
        v.set_state("a", "exited");
        assert!(!v.apply_listed(s("a", "running", TYPE_CONTAINER), before));
        assert_eq!(v.get("a").unwrap().state, "exited");
        assert!(v.apply_listed(s("a", "running", TYPE_CONTAINER), v.seq()));
        assert_eq!(v.get("a").unwrap().state, "running");
        v.apply(s("a", "exited", TYPE_CONTAINER));
        use Change::*;
        assert_eq!(
            drain(&v, &mut rx),
            vec![("a".into(), Started), ("a".into(), Stopped)]
        );
        // Never back to created, and never back from deleted.
        assert!(!v.apply_listed(s("a", "created", TYPE_CONTAINER), v.seq()));
        assert_eq!(v.get("a").unwrap().state, "exited");
        v.remove("a");
        assert!(!v.apply_listed(s("a", "running", TYPE_CONTAINER), v.seq()));
        assert!(v.get("a").is_none());
    }

    #[test]
    fn a_resync_names_untouched_exited_entries_the_list_has_running() {
        let v = View::default();
        let mut rx = v.take_transitions().unwrap();
        v.apply(s("old", "exited", TYPE_CONTAINER));
        v.apply(s("busy", "exited", TYPE_CONTAINER));
        drain(&v, &mut rx);
        let seq = v.seq();
        // Touched after the list began: the list may be older than what the view holds.
        v.set_state("busy", "exited");
        let restarted = v.resync(
            vec![
                s("old", "running", TYPE_CONTAINER),
                s("busy", "running", TYPE_CONTAINER),
            ],
            seq,
        );
        assert_eq!(restarted, vec!["old".to_string()]);
        // Named, not moved: an inspect confirms first.
        assert_eq!(v.get("old").unwrap().state, "exited");
        assert_eq!(v.get("busy").unwrap().state, "exited");
        assert_eq!(drain(&v, &mut rx), vec![]);
        assert!(v.apply_listed(s("old", "running", TYPE_CONTAINER), seq));
        assert_eq!(drain(&v, &mut rx), vec![("old".into(), Change::Started)]);
    }

    #[test]
    fn resync_synthesizes_missed_changes_and_spares_newer_entries() {
        let v = View::default();
        let mut rx = v.take_transitions().unwrap();
        v.apply(s("run", "running", TYPE_CONTAINER));
        v.apply(s("gone", "running", TYPE_SANDBOX));
        drain(&v, &mut rx);
        let seq = v.seq();
        // Created after the list began: the list does not have it, and it must stay.
        v.apply(s("new", "created", TYPE_CONTAINER));
        v.resync(
            vec![
                s("run", "exited", TYPE_CONTAINER),
                s("other", "created", TYPE_CONTAINER),
            ],
            seq,
        );
        use Change::*;
        let mut got = drain(&v, &mut rx);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("gone".into(), Stopped),
                ("gone".into(), Deleted),
                ("new".into(), Created),
                ("other".into(), Created),
                ("run".into(), Stopped),
            ]
        );
        assert!(v.get("new").is_some());
        assert!(v.get("gone").is_none());
    }

    #[test]
    fn unserved_until_healthy_and_lists_by_type() {
        let v = View::default();
        v.apply(s("c", "running", TYPE_CONTAINER));
        v.apply(s("p", "running", TYPE_SANDBOX));
        assert!(v.list(TYPE_CONTAINER).is_none());
        v.set_healthy(true);
        let c = v.list(TYPE_CONTAINER).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, "c");
        assert_eq!(v.list(TYPE_SANDBOX).unwrap()[0].id, "p");
    }

    #[test]
    fn sandbox_transitions_name_the_sandbox_as_pod() {
        let v = View::default();
        let mut rx = v.take_transitions().unwrap();
        v.apply(s("p", "created", TYPE_SANDBOX));
        let t = rx.try_recv().unwrap();
        assert!(t.is_sandbox);
        assert_eq!(t.sandbox_id, "p");
        v.apply(s("c", "created", TYPE_CONTAINER));
        let t = rx.try_recv().unwrap();
        assert!(!t.is_sandbox);
        assert_eq!(t.sandbox_id, "sb");
    }

    #[test]
    fn image_ids_are_learned_from_listings_and_outlive_their_containers() {
        let v = View::default();
        let with_image = |id: &str, image: &str, image_id: &str| ContainerSummary {
            image: image.into(),
            image_id: image_id.into(),
            ..s(id, "running", TYPE_CONTAINER)
        };
        assert_eq!(v.image_id_of("busybox"), None);
        v.apply(with_image("a", "busybox", "sha256:1"));
        v.apply(with_image("b", "pause", ""));
        assert_eq!(v.image_id_of("busybox").as_deref(), Some("sha256:1"));
        assert_eq!(v.image_id_of("pause"), None, "no ID given, none learned");
        v.remove("a");
        assert_eq!(v.image_id_of("busybox").as_deref(), Some("sha256:1"));
        // A later listing wins (the tag moved).
        v.apply(with_image("c", "busybox", "sha256:2"));
        assert_eq!(v.image_id_of("busybox").as_deref(), Some("sha256:2"));
        v.forget_image_ids();
        assert_eq!(v.image_id_of("busybox"), None);
        // Bounded: a full map starts over.
        for i in 0..=IMAGE_IDS {
            v.apply(with_image(&format!("x{i}"), &format!("img{i}"), "sha256:3"));
        }
        assert!(v.lock().image_ids.len() <= IMAGE_IDS);
        assert_eq!(
            v.image_id_of(&format!("img{IMAGE_IDS}")).as_deref(),
            Some("sha256:3")
        );
    }

    #[test]
    fn list_where_copies_only_the_matching_entries() {
        let v = View::default();
        v.set_healthy(true);
        v.apply(s("a", "running", TYPE_CONTAINER));
        v.apply(ContainerSummary {
            labels: HashMap::from([
                (CONTAINER_TYPE.to_string(), TYPE_CONTAINER.to_string()),
                (SANDBOX_ID.to_string(), "other".to_string()),
            ]),
            ..s("b", "running", TYPE_CONTAINER)
        });
        v.apply(s("p", "running", TYPE_SANDBOX));
        let of_sb =
            |c: &ContainerSummary| c.labels.get(SANDBOX_ID).map(String::as_str) == Some("sb");
        let ids: Vec<String> = v
            .list_where(TYPE_CONTAINER, of_sb)
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, vec!["a".to_string()]);
        v.set_healthy(false);
        assert!(v.list_where(TYPE_CONTAINER, of_sb).is_none());
    }
}
