//! Checkpoints: per-sandbox state under `--cri-dockerd-root-directory`, written atomically.
//!
//! One file per sandbox at `<root>/sandbox/<sandbox id>`. Ours is versioned JSON with a SHA-256
//! checksum over the data; a write goes to a temporary file that is fsynced, renamed over the
//! target and followed by an fsync of the directory, so a crash leaves the old or the new file,
//! never a torn one. Checkpoints written by the Go cri-dockerd (`"version":"v1"`) are read too.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// The sandbox checkpoints of one cri-dockerd root directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// Checkpoints under `<root>/sandbox`.
    pub fn new(root: &Path) -> Self {
        CheckpointStore {
            dir: root.join("sandbox"),
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

    /// Write atomically and durably.
    pub fn write(&self, cp: &SandboxCheckpoint) -> Result<()> {
        let path = self.path(&cp.id)?;
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
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Read one checkpoint; `Ok(None)` when there is none.
    pub fn read(&self, id: &str) -> Result<Option<SandboxCheckpoint>> {
        let path = self.path(id)?;
        match std::fs::read(&path) {
            Ok(bytes) => decode(&path, id, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Remove one checkpoint; absent is fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// IDs of every checkpoint file (not their validity).
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every readable checkpoint; corrupt ones are logged and skipped.
    pub fn list(&self) -> Result<Vec<SandboxCheckpoint>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.read(&id) {
                Ok(Some(cp)) => out.push(cp),
                Ok(None) => {}
                Err(e) => tracing::warn!(pod_sandbox_id = %id, "skipping checkpoint: {e}"),
            }
        }
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
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStore::new(dir.path());
        s.write(&sample()).unwrap();
        let path = dir.path().join("sandbox/abc123");
        let text = std::fs::read_to_string(&path).unwrap();
        // A changed value with the old checksum.
        std::fs::write(&path, text.replace("\"web\"", "\"wob\"")).unwrap();
        let e = s.read("abc123").unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // Truncated file.
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(matches!(s.read("abc123"), Err(Error::Corrupt { .. })));
        // A checkpoint copied under another ID.
        std::fs::write(dir.path().join("sandbox/other"), &text).unwrap();
        assert!(matches!(s.read("other"), Err(Error::Corrupt { .. })));
        // Corrupt files are skipped by list.
        assert!(s.list().unwrap().is_empty());
        // Path traversal is refused.
        assert!(s.read("../x").is_err());
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
