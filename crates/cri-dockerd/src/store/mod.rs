//! Checkpoints: per-sandbox state under `--cri-dockerd-root-directory`, written atomically.
//!
//! One file per sandbox at `<root>/sandbox/<sandbox id>`. Ours is versioned JSON with a SHA-256
//! checksum over the data; a write goes to a temporary file that is fsynced, renamed over the
//! target and followed by an fsync of the directory, so a crash leaves the old or the new file,
//! never a torn one. Checkpoints written by the Go cri-dockerd (`"version":"v1"`) are read too.
//!
//! The files are the source of truth across restarts; while the process runs, an in-memory
//! index of them (read once, on first use, then updated by every write and remove) serves
//! reads, so List and Status calls do not touch the directory. Files put into the directory by
//! anything else while we run are not seen until the next start.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Our format's name, in every file we write.
pub const FORMAT: &str = "cri-dockerd-rs/sandbox";
/// Our format's version.
pub const VERSION: u32 = 1;
/// The Go cri-dockerd's schema version.
pub const GO_VERSION: &str = "v1";

/// A checkpoint failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Result of a checkpoint operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A published port of a sandbox, recorded for the network layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// Which file format a checkpoint was read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    #[default]
    Ours,
    /// Written by the Go cri-dockerd: only name, namespace, ports and host network are known.
    Go,
}

/// What we keep about a sandbox outside Docker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxCheckpoint {
    /// Docker ID of the pause container.
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub host_network: bool,
    pub port_mappings: Vec<PortMapping>,
    /// CRI `NamespaceMode` values.
    pub network_mode: i32,
    pub pid_mode: i32,
    pub ipc_mode: i32,
    pub target_id: String,
    pub runtime_handler: String,
    pub log_directory: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The network plugin (`cni`, `kubenet`, `no-op`) that owns the pod's network; `None` for
    /// host-network pods and for checkpoints written before this field existed. Absent from
    /// the file when `None`, so older files keep their checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_plugin: Option<String>,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Serialize, Deserialize)]
struct OurFile {
    format: String,
    version: u32,
    data: SandboxCheckpoint,
    checksum: String,
}

/// The Go cri-dockerd's `PodSandboxCheckpoint` (`core/docker_checkpoint.go`).
#[derive(Deserialize)]
struct GoFile {
    version: String,
    name: String,
    namespace: String,
    #[serde(default)]
    data: Option<GoData>,
    // `checksum` is Go's hash of the Go struct's memory layout (k8s `hashutil.DeepHashObject`
    // with fnv); it cannot be recomputed outside Go, so it is accepted without verification.
}

#[derive(Deserialize, Default)]
struct GoData {
    #[serde(default)]
    port_mappings: Option<Vec<GoPort>>,
    #[serde(default)]
    host_network: bool,
}

#[derive(Deserialize)]
struct GoPort {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    container_port: Option<i32>,
    #[serde(default)]
    host_port: Option<i32>,
    #[serde(default)]
    host_ip: Option<String>,
}

fn checksum(data: &SandboxCheckpoint) -> Result<String, serde_json::Error> {
    let bytes = serde_json::to_vec(data)?;
    let digest = Sha256::digest(&bytes);
    Ok(format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// Parse a checkpoint file's bytes (ours, verified; or the Go cri-dockerd's).
pub fn decode(path: &Path, id: &str, bytes: &[u8]) -> Result<SandboxCheckpoint> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    if v.get("format").and_then(|f| f.as_str()) == Some(FORMAT) {
        let f: OurFile =
            serde_json::from_value(v).map_err(|e| corrupt(format!("bad fields: {e}")))?;
        if f.version != VERSION {
            return Err(corrupt(format!("unsupported version {}", f.version)));
        }
        let want = checksum(&f.data).map_err(|e| corrupt(e.to_string()))?;
        if want != f.checksum {
            return Err(corrupt(format!(
                "checksum mismatch: recorded {}, computed {want}",
                f.checksum
            )));
        }
        if f.data.id != id {
            return Err(corrupt(format!("holds sandbox {:?}", f.data.id)));
        }
        return Ok(f.data);
    }
    if v.get("version").and_then(|f| f.as_str()) == Some(GO_VERSION) {
        let g: GoFile =
            serde_json::from_value(v).map_err(|e| corrupt(format!("bad Go checkpoint: {e}")))?;
        debug_assert_eq!(g.version, GO_VERSION);
        let data = g.data.unwrap_or_default();
        return Ok(SandboxCheckpoint {
            id: id.to_string(),
            name: g.name,
            namespace: g.namespace,
            host_network: data.host_network,
            port_mappings: data
                .port_mappings
                .unwrap_or_default()
                .into_iter()
                .map(|p| PortMapping {
                    protocol: p.protocol.unwrap_or_else(|| "tcp".into()),
                    container_port: p.container_port.unwrap_or(0),
                    host_port: p.host_port.unwrap_or(0),
                    host_ip: p.host_ip.unwrap_or_default(),
                })
                .collect(),
            // Go's NamespaceMode NODE = 2 for host network, POD = 0 otherwise.
            network_mode: if data.host_network { 2 } else { 0 },
            origin: Origin::Go,
            ..Default::default()
        });
    }
    Err(corrupt("unknown format".into()))
}

/// Serialize `cp` in our format.
pub fn encode(cp: &SandboxCheckpoint) -> Result<Vec<u8>, serde_json::Error> {
    let file = OurFile {
        format: FORMAT.into(),
        version: VERSION,
        checksum: checksum(cp)?,
        data: cp.clone(),
    };
    serde_json::to_vec_pretty(&file)
}

/// What the index holds for one file: its checkpoint, or why it could not be read (kept so
/// that a corrupt file still counts as present, and is reported the same way on every read).
#[derive(Debug, Clone)]
enum Slot {
    Good(Box<SandboxCheckpoint>),
    Corrupt(String),
}

/// The sandbox checkpoints of one cri-dockerd root directory.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    /// Every file of the directory by sandbox ID; `None` until read (a failed read, e.g. an
    /// unreadable directory, is tried again on the next use).
    index: Mutex<Option<HashMap<String, Slot>>>,
}

impl CheckpointStore {
    /// Checkpoints under `<root>/sandbox`; the directory is read on first use.
    pub fn new(root: &Path) -> Self {
        CheckpointStore {
            dir: root.join("sandbox"),
            index: Mutex::new(None),
        }
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(Error::Corrupt {
                path: self.dir.clone(),
                reason: format!("invalid sandbox id {id:?}"),
            });
        }
        Ok(self.dir.join(id))
    }

    fn lock(&self) -> MutexGuard<'_, Option<HashMap<String, Slot>>> {
        // The index is only replaced whole or changed one entry at a time; a panic elsewhere
        // while the lock was held cannot leave it half-updated.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The index, read from the directory if it has not been yet.
    fn index(&self) -> Result<MutexGuard<'_, Option<HashMap<String, Slot>>>> {
        let mut guard = self.lock();
        if guard.is_none() {
            *guard = Some(self.load()?);
        }
        Ok(guard)
    }

    /// Read the directory into the index now (at start-up) rather than on first use; returns
    /// how many files it holds.
    pub fn preload(&self) -> Result<usize> {
        Ok(self.index()?.as_ref().map_or(0, HashMap::len))
    }

    /// Apply `f` to the index if it has been read (else the next read sees the files).
    fn update(&self, f: impl FnOnce(&mut HashMap<String, Slot>)) {
        if let Some(index) = self.lock().as_mut() {
            f(index);
        }
    }

    /// Read every file of the directory (the one time it is read).
    fn load(&self) -> Result<HashMap<String, Slot>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut index = HashMap::new();
        for name in entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
        {
            let path = self.dir.join(&name);
            let slot = match std::fs::read(&path) {
                Ok(bytes) => match decode(&path, &name, &bytes) {
                    Ok(cp) => Slot::Good(Box::new(cp)),
                    Err(e) => {
                        tracing::warn!(pod_sandbox_id = %name, "unreadable checkpoint: {e}");
                        Slot::Corrupt(match e {
                            Error::Corrupt { reason, .. } => reason,
                            other => other.to_string(),
                        })
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Io { path, source }),
            };
            index.insert(name, slot);
        }
        Ok(index)
    }

    /// Write atomically and durably, then record it in the index.
    pub fn write(&self, cp: &SandboxCheckpoint) -> Result<()> {
        let path = self.path(&cp.id)?;
        // Read the directory before the first write, so the index knows the older files (if
        // that fails, the index stays unread and a later read finds this file too). The file
        // work below is done without holding the index, so that readers do not wait on fsync.
        let _ = self.preload();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let bytes = encode(cp).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self.dir.join(format!(".{}.tmp", cp.id));
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.update(|i| {
            i.insert(cp.id.clone(), Slot::Good(Box::new(cp.clone())));
        });
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Remove what interrupted writes left (`.<id>.tmp`: a process killed between creating the
    /// temporary file and renaming it); only start-up recovery calls this, before any write of
    /// this process. Returns how many were removed.
    pub fn remove_temporaries(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.len() > 5 && n.starts_with('.') && n.ends_with(".tmp"))
            })
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// One checkpoint; `Ok(None)` when there is none.
    pub fn read(&self, id: &str) -> Result<Option<SandboxCheckpoint>> {
        let path = self.path(id)?;
        match self.index()?.as_ref().and_then(|i| i.get(id)) {
            None => Ok(None),
            Some(Slot::Good(cp)) => Ok(Some(cp.as_ref().clone())),
            Some(Slot::Corrupt(reason)) => Err(Error::Corrupt {
                path,
                reason: reason.clone(),
            }),
        }
    }

    /// Remove one checkpoint; absent is fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id)?;
        let _ = self.preload();
        let unlinked = std::fs::remove_file(&path);
        self.removed(id, path, unlinked)
    }

    /// [`CheckpointStore::remove`] with the file's unlink on a blocking thread, so that the
    /// caller can overlap it with other work (an unlink of a synced file costs a few hundred
    /// microseconds on ext4).
    pub async fn remove_async(&self, id: &str) -> Result<()> {
        let path = self.path(id)?;
        let _ = self.preload();
        let unlink = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::remove_file(path))
        };
        let unlinked = unlink
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.removed(id, path, unlinked)
    }

    /// After the unlink of checkpoint `id`'s file at `path`: drop it from the index unless the
    /// unlink failed (an absent file counts as removed).
    fn removed(&self, id: &str, path: PathBuf, unlinked: std::io::Result<()>) -> Result<()> {
        match unlinked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path, source }),
        }
        self.update(|i| {
            i.remove(id);
            crate::memory::shrink_if_sparse(i);
        });
        Ok(())
    }

    /// IDs of every checkpoint file (readable or not), sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .index()?
            .as_ref()
            .map(|i| i.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        Ok(ids)
    }

    /// Every readable checkpoint, sorted by ID; unreadable ones were logged when first read.
    pub fn list(&self) -> Result<Vec<SandboxCheckpoint>> {
        let mut out: Vec<SandboxCheckpoint> = self
            .index()?
            .as_ref()
            .map(|i| {
                i.values()
                    .filter_map(|s| match s {
                        Slot::Good(cp) => Some(cp.as_ref().clone()),
                        Slot::Corrupt(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SandboxCheckpoint {
        SandboxCheckpoint {
            id: "abc123".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            attempt: 3,
            created_at: 1_700_000_000_123_456_789,
            host_network: false,
            port_mappings: vec![PortMapping {
                protocol: "tcp".into(),
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            }],
            network_mode: 0,
            pid_mode: 1,
            ipc_mode: 0,
            target_id: String::new(),
            runtime_handler: "runc".into(),
            log_directory: "/var/log/pods/x".into(),
            labels: BTreeMap::from([("a".into(), "1".into())]),
            annotations: BTreeMap::from([("b".into(), "2".into())]),
            network_plugin: Some("cni".into()),
            origin: Origin::Ours,
        }
    }

    #[test]
    fn files_without_the_network_plugin_field_still_verify() {
        // A file written before `network_plugin` existed: same data, no such key.
        let old = SandboxCheckpoint {
            network_plugin: None,
            ..sample()
        };
        let bytes = encode(&old).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("network_plugin"));
        let back = decode(Path::new("/x"), "abc123", &bytes).unwrap();
        assert_eq!(back, old);
        // And with the field, it round-trips.
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(Path::new("/x"), "abc123", &bytes).unwrap(), sample());
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStore::new(dir.path());
        assert_eq!(s.read("abc123").unwrap(), None);
        s.write(&sample()).unwrap();
        assert_eq!(s.read("abc123").unwrap(), Some(sample()));
        assert_eq!(s.ids().unwrap(), vec!["abc123".to_string()]);
        assert_eq!(s.list().unwrap(), vec![sample()]);
        s.remove("abc123").unwrap();
        s.remove("abc123").unwrap();
        assert_eq!(s.read("abc123").unwrap(), None);
        assert!(s.ids().unwrap().is_empty());
    }

    #[test]
    fn interrupted_writes_leave_nothing_after_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStore::new(dir.path());
        s.write(&sample()).unwrap();
        // What a process killed between create and rename leaves, next to a hidden file that is
        // not a temporary one.
        let files = dir.path().join("sandbox");
        std::fs::write(files.join(".def456.tmp"), b"{\"half\"").unwrap();
        std::fs::write(files.join(".keep"), b"").unwrap();
        assert_eq!(s.remove_temporaries(), 1);
        let mut left: Vec<String> = std::fs::read_dir(&files)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![".keep".to_string(), "abc123".to_string()]);
        assert_eq!(s.read("abc123").unwrap(), Some(sample()));
        assert_eq!(
            CheckpointStore::new(&dir.path().join("absent")).remove_temporaries(),
            0
        );
    }

    #[test]
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStore::new(dir.path());
        s.write(&sample()).unwrap();
        let path = dir.path().join("sandbox/abc123");
        let text = std::fs::read_to_string(&path).unwrap();
        // Files are read when a store first needs them (a restart): a fresh store each time.
        let reopen = || CheckpointStore::new(dir.path());
        // A changed value with the old checksum.
        std::fs::write(&path, text.replace("\"web\"", "\"wob\"")).unwrap();
        let e = reopen().read("abc123").unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // Truncated file.
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(matches!(
            reopen().read("abc123"),
            Err(Error::Corrupt { .. })
        ));
        // A checkpoint copied under another ID.
        std::fs::write(dir.path().join("sandbox/other"), &text).unwrap();
        let s = reopen();
        assert!(matches!(s.read("other"), Err(Error::Corrupt { .. })));
        // Corrupt files are skipped by list, still counted by ids.
        assert!(s.list().unwrap().is_empty());
        assert_eq!(
            s.ids().unwrap(),
            vec!["abc123".to_string(), "other".to_string()]
        );
        // Path traversal is refused.
        assert!(s.read("../x").is_err());
    }

    #[test]
    fn reads_come_from_the_index_loaded_once() {
        let dir = tempfile::tempdir().unwrap();
        // A Go-format file and one of ours, written before the store is opened (an upgrade,
        // a restart).
        let before = CheckpointStore::new(dir.path());
        before.write(&sample()).unwrap();
        let go = r#"{"version":"v1","name":"old","namespace":"ns","checksum":1}"#;
        std::fs::write(dir.path().join("sandbox/goid"), go).unwrap();
        let s = CheckpointStore::new(dir.path());
        assert_eq!(s.preload().unwrap(), 2);
        assert_eq!(s.read("goid").unwrap().unwrap().origin, Origin::Go);
        assert_eq!(s.read("abc123").unwrap(), Some(sample()));
        // Once loaded, the directory is not read again: a file removed behind the store's
        // back is still served, and one added is not seen.
        std::fs::remove_file(dir.path().join("sandbox/goid")).unwrap();
        std::fs::write(dir.path().join("sandbox/late"), go).unwrap();
        assert_eq!(s.list().unwrap().len(), 2);
        assert_eq!(s.read("late").unwrap(), None);
        // Writes and removes through the store keep the index and the files in step.
        let mut changed = sample();
        changed.id = "new1".into();
        s.write(&changed).unwrap();
        assert_eq!(s.read("new1").unwrap(), Some(changed.clone()));
        s.remove("abc123").unwrap();
        assert_eq!(s.read("abc123").unwrap(), None);
        assert!(!dir.path().join("sandbox/abc123").exists());
        let fresh = CheckpointStore::new(dir.path());
        assert_eq!(fresh.read("new1").unwrap(), Some(changed));
        assert_eq!(
            fresh.ids().unwrap(),
            vec!["late".to_string(), "new1".to_string()]
        );
    }

    #[test]
    fn an_unreadable_directory_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: reads fail, and the failure is not
        // remembered as an empty index.
        std::fs::write(dir.path().join("sandbox"), b"x").unwrap();
        let s = CheckpointStore::new(dir.path());
        assert!(s.list().is_err());
        assert!(s.write(&sample()).is_err());
        std::fs::remove_file(dir.path().join("sandbox")).unwrap();
        std::fs::create_dir(dir.path().join("sandbox")).unwrap();
        std::fs::write(
            dir.path().join("sandbox/abc123"),
            encode(&sample()).unwrap(),
        )
        .unwrap();
        assert_eq!(s.list().unwrap(), vec![sample()]);
    }

    #[test]
    fn reads_the_go_format() {
        let go = r#"{"version":"v1","name":"nginx","namespace":"default","data":{"port_mappings":[{"protocol":"tcp","container_port":80,"host_port":30080,"host_ip":"0.0.0.0"},{"protocol":"udp","container_port":53}],"host_network":true},"checksum":3012345678}"#;
        let cp = decode(Path::new("/x"), "id1", go.as_bytes()).unwrap();
        assert_eq!(cp.origin, Origin::Go);
        assert_eq!(cp.id, "id1");
        assert_eq!(cp.name, "nginx");
        assert_eq!(cp.namespace, "default");
        assert!(cp.host_network);
        assert_eq!(cp.network_mode, 2);
        assert_eq!(
            cp.port_mappings,
            vec![
                PortMapping {
                    protocol: "tcp".into(),
                    container_port: 80,
                    host_port: 30080,
                    host_ip: "0.0.0.0".into()
                },
                PortMapping {
                    protocol: "udp".into(),
                    container_port: 53,
                    host_port: 0,
                    host_ip: String::new()
                }
            ]
        );
        let minimal = r#"{"version":"v1","name":"a","namespace":"b","checksum":1}"#;
        let cp = decode(Path::new("/x"), "id2", minimal.as_bytes()).unwrap();
        assert!(!cp.host_network);
        assert!(cp.port_mappings.is_empty());
        assert!(decode(Path::new("/x"), "id", br#"{"version":"v9"}"#).is_err());
    }
}
