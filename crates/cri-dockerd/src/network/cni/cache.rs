//! The CNI result cache in libcni's on-disk format (`<cacheDir>/results/<network>-<id>-<ifname>`,
//! `kind: "cniCacheV1"`), so pods set up by the Go cri-dockerd (or containerd) can be torn down
//! here and the other way round.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::network::Error;

/// libcni's `CNICacheV1`.
pub const CACHE_KIND: &str = "cniCacheV1";

/// libcni's `cachedInfo`, field for field (names and order as Go marshals them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedInfo {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network configuration list bytes (Go `[]byte`: base64 in JSON).
    #[serde(with = "b64")]
    pub config: Vec<u8>,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Option::is_none")]
    pub cni_args: Option<Vec<[String; 2]>>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub capability_args: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Go writes null for a nil slice.
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The cache directory (`--cni-cache-dir`).
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ResultCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/results/<network>-<containerID>-<ifName>`.
    pub fn path(&self, network: &str, container_id: &str, if_name: &str) -> PathBuf {
        self.dir
            .join("results")
            .join(format!("{network}-{container_id}-{if_name}"))
    }

    /// The temporary file [`ResultCache::write`] renames into place.
    fn temporary(&self, network: &str, container_id: &str, if_name: &str) -> PathBuf {
        self.dir
            .join("results")
            .join(format!(".{network}-{container_id}-{if_name}.tmp"))
    }

    /// Write atomically (temp file + rename), 0600 in a 0700 dir, as libcni's permissions.
    pub fn write(&self, info: &CachedInfo) -> Result<PathBuf, Error> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = self.path(&info.network_name, &info.container_id, &info.if_name);
        let err = |reason: String| Error::Cache {
            path: path.clone(),
            reason,
        };
        let results = self.dir.join("results");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&results)
            .map_err(|e| err(format!("create dir: {e}")))?;
        let bytes = serde_json::to_vec(info).map_err(|e| err(e.to_string()))?;
        let tmp = self.temporary(&info.network_name, &info.container_id, &info.if_name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(format!("write: {e}")))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| err(format!("write: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(format!("rename: {e}")))?;
        Ok(path)
    }

    /// Read one entry. `Ok(None)` when there is none (or it is not a v1 entry, as libcni).
    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        if_name: &str,
    ) -> Result<Option<CachedInfo>, Error> {
        let path = self.path(network, container_id, if_name);
        read_file(&path)
    }

    /// Remove one entry, and the temporary file of a write of it that a kill interrupted;
    /// missing is fine.
    pub fn remove(&self, network: &str, container_id: &str, if_name: &str) -> Result<(), Error> {
        let path = self.path(network, container_id, if_name);
        let _ = std::fs::remove_file(self.temporary(network, container_id, if_name));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Cache {
                path,
                reason: format!("remove: {e}"),
            }),
        }
    }

    /// Remove the temporary files [`ResultCache::write`] leaves when killed between creating
    /// and renaming one (`.<network>-<id>-<ifname>.tmp`), for `network` and attachments not in
    /// `valid` (container ID, interface). The directory is shared with other runtimes: only
    /// names of exactly this form (a 64-hex container ID) are touched. Returns how many.
    pub fn remove_temporaries(&self, network: &str, valid: &[(String, String)]) -> usize {
        let Ok(rd) = std::fs::read_dir(self.dir.join("results")) else {
            return 0;
        };
        let prefix = format!(".{network}-");
        rd.filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                let Some(rest) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(&prefix))
                    .and_then(|n| n.strip_suffix(".tmp"))
                else {
                    return false;
                };
                let Some((id, if_name)) = rest.split_at_checked(64) else {
                    return false;
                };
                let Some(if_name) = if_name.strip_prefix('-').filter(|i| !i.is_empty()) else {
                    return false;
                };
                id.bytes().all(|b| b.is_ascii_hexdigit())
                    && !valid.iter().any(|(v, i)| v == id && i == if_name)
            })
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// Every v1 entry, for `container_id` only when given (libcni's `GetCachedAttachments`).
    pub fn attachments(&self, container_id: Option<&str>) -> Vec<CachedInfo> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("results")) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        names
            .into_iter()
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                !name.starts_with('.')
                    && container_id.is_none_or(|id| name.contains(&format!("-{id}-")))
            })
            .filter_map(|p| read_file(&p).ok().flatten())
            .filter(|c| container_id.is_none_or(|id| c.container_id == id))
            .filter(|c| !c.if_name.is_empty() && !c.network_name.is_empty())
            .collect()
    }
}

fn read_file(path: &Path) -> Result<Option<CachedInfo>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Cache {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let info: CachedInfo = serde_json::from_slice(&bytes).map_err(|e| Error::Cache {
        path: path.to_path_buf(),
        reason: format!("not a libcni cache entry: {e}"),
    })?;
    if info.kind != CACHE_KIND {
        return Ok(None);
    }
    Ok(Some(info))
}

/// Encode for tests and tools: the base64 libcni writes for `config`.
pub fn encode_config(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A cache file as libcni v1.x writes it (json.Marshal of cachedInfo).
    const GO_WRITTEN: &str = r#"{"kind":"cniCacheV1","containerId":"5f0c1d","config":"eyJjbmlWZXJzaW9uIjoiMC40LjAiLCJuYW1lIjoibmV0IiwicGx1Z2lucyI6W3sidHlwZSI6ImJyaWRnZSJ9XX0=","ifName":"eth0","networkName":"net","netns":"/proc/99/ns/net","cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAMESPACE","default"],["K8S_POD_NAME","web"],["K8S_POD_INFRA_CONTAINER_ID","5f0c1d"]],"capabilityArgs":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},"result":{"cniVersion":"0.4.0","dns":{},"interfaces":[{"mac":"aa:bb:cc:dd:ee:ff","name":"eth0","sandbox":"/proc/99/ns/net"}],"ips":[{"address":"10.22.0.7/24","gateway":"10.22.0.1","interface":0,"version":"4"}]}}"#;

    #[test]
    fn removes_only_its_own_unfinished_writes_of_stale_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResultCache::new(dir.path());
        let results = dir.path().join("results");
        std::fs::create_dir_all(&results).unwrap();
        let (live, dead) = ("a".repeat(64), "b".repeat(64));
        let names = [
            format!(".net-{dead}-eth0.tmp"),          // removed
            format!(".net-{live}-eth0.tmp"),          // a valid attachment's: kept
            format!(".net-{dead}-eth1.tmp"),          // removed (eth1 is not valid)
            format!(".net-b-{dead}-eth0.tmp"),        // another network's ("net-b"): kept
            format!(".other-{dead}-eth0.tmp"),        // another network's: kept
            format!(".net-{}-eth0.tmp", &dead[..12]), // not a full ID: kept
            format!(".net-{dead}-.tmp"),              // no interface: kept
            format!("net-{dead}-eth0"),               // an entry, not a temporary file: kept
        ];
        for n in &names {
            std::fs::write(results.join(n), b"{").unwrap();
        }
        let valid = vec![(live.clone(), "eth0".to_string())];
        assert_eq!(c.remove_temporaries("net", &valid), 2);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(results.join(n).exists(), !matches!(i, 0 | 2), "{n}");
        }
        assert_eq!(
            ResultCache::new(dir.path().join("x")).remove_temporaries("net", &[]),
            0
        );
    }

    #[test]
    fn reads_what_libcni_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResultCache::new(dir.path());
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(c.path("net", "5f0c1d", "eth0"), GO_WRITTEN).unwrap();
        let info = c.read("net", "5f0c1d", "eth0").unwrap().unwrap();
        assert_eq!(
            info.config,
            br#"{"cniVersion":"0.4.0","name":"net","plugins":[{"type":"bridge"}]}"#
        );
        assert_eq!(info.netns, "/proc/99/ns/net");
        assert_eq!(
            info.cni_args.as_ref().unwrap()[2],
            ["K8S_POD_NAME".to_string(), "web".into()]
        );
        assert_eq!(
            info.result.as_ref().unwrap()["ips"][0]["address"],
            "10.22.0.7/24"
        );
        assert_eq!(c.attachments(Some("5f0c1d")).len(), 1);
        assert!(c.attachments(Some("5f0c")).is_empty());
    }

    #[test]
    fn writes_what_libcni_reads() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResultCache::new(dir.path());
        let info = CachedInfo {
            kind: CACHE_KIND.into(),
            container_id: "abc".into(),
            config: b"{\"name\":\"net\"}".to_vec(),
            if_name: "eth0".into(),
            network_name: "net".into(),
            netns: "/proc/1/ns/net".into(),
            cni_args: Some(vec![["IgnoreUnknown".into(), "1".into()]]),
            capability_args: Some(json!({"portMappings": []}).as_object().unwrap().clone()),
            result: Some(json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]})),
        };
        let path = c.write(&info).unwrap();
        assert_eq!(path, dir.path().join("results/net-abc-eth0"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        // Field names and order of Go's cachedInfo.
        let keys = [
            "\"kind\":\"cniCacheV1\"",
            "\"containerId\":",
            "\"config\":\"eyJuYW1lIjoibmV0In0=\"",
            "\"ifName\":",
            "\"networkName\":",
            "\"netns\":",
            "\"cniArgs\":[[\"IgnoreUnknown\",\"1\"]]",
            "\"capabilityArgs\":",
            "\"result\":",
        ];
        let mut last = 0;
        for k in keys {
            let at = text.find(k).unwrap_or_else(|| panic!("{k} in {text}"));
            assert!(at >= last, "{k} out of order in {text}");
            last = at;
        }
        assert_eq!(c.read("net", "abc", "eth0").unwrap().unwrap(), info);
        c.remove("net", "abc", "eth0").unwrap();
        c.remove("net", "abc", "eth0").unwrap();
        assert!(c.read("net", "abc", "eth0").unwrap().is_none());
    }

    #[test]
    fn other_kinds_are_ignored_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResultCache::new(dir.path());
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(
            c.path("n", "a", "eth0"),
            r#"{"kind":"other","containerId":"a","config":null,"ifName":"eth0","networkName":"n"}"#,
        )
        .unwrap();
        assert!(c.read("n", "a", "eth0").unwrap().is_none());
        std::fs::write(c.path("n", "b", "eth0"), "{").unwrap();
        assert!(c.read("n", "b", "eth0").is_err());
        assert!(c.attachments(None).is_empty());
    }
}
