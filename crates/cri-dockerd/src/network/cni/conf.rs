//! CNI network configuration: parsing `.conflist` and single-plugin `.conf`/`.json` files (the
//! latter wrapped into a list as libcni does), choosing the first valid file of the conf dir in
//! lexical order, and a cheap fingerprint of the dir to notice changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::result::SpecVersion;
use crate::network::Error;

/// File name extensions considered, as libcni's `ConfFiles`.
pub const CONF_EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// One plugin of a chain: its raw JSON object plus what we read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// The `type` (plugin binary name).
    pub plugin_type: String,
    /// Capabilities the plugin declares as enabled.
    pub capabilities: BTreeSet<String>,
    /// The plugin's JSON object as written in the file.
    pub raw: Map<String, Value>,
}

/// A network configuration list (libcni's `NetworkConfigList`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    /// The `cniVersion` as written.
    pub cni_version: String,
    pub version: SpecVersion,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<PluginConf>,
    /// The list's JSON bytes (what the cache stores as `config`).
    pub bytes: Vec<u8>,
}

fn invalid(origin: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// libcni's `ValidateNetworkName`.
pub fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn parse_plugin(v: &Value, origin: &str) -> Result<PluginConf, Error> {
    let raw = v
        .as_object()
        .ok_or_else(|| invalid(origin, "a plugin entry is not a JSON object"))?
        .clone();
    let plugin_type = raw
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid(origin, "a plugin has no \"type\""))?
        .to_string();
    if plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
        return Err(invalid(
            origin,
            format!("plugin type {plugin_type:?} is not a file name"),
        ));
    }
    let capabilities = match raw.get("capabilities") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(k, _)| k.clone())
            .collect(),
        Some(_) => return Err(invalid(origin, "\"capabilities\" is not an object")),
    };
    Ok(PluginConf {
        plugin_type,
        capabilities,
        raw,
    })
}

impl NetworkConfigList {
    /// Parse a `.conflist`.
    pub fn from_list_bytes(bytes: &[u8], origin: &str) -> Result<Self, Error> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(origin, format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid(origin, "not a JSON object"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !valid_network_name(&name) {
            return Err(invalid(
                origin,
                format!("network name {name:?} is missing or invalid"),
            ));
        }
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let version = SpecVersion::parse(&cni_version, origin)?;
        let plugins = obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(origin, "no \"plugins\" list"))?;
        if plugins.is_empty() {
            return Err(invalid(origin, "\"plugins\" is empty"));
        }
        let plugins = plugins
            .iter()
            .map(|p| parse_plugin(p, origin))
            .collect::<Result<Vec<_>, _>>()?;
        let flag = |k: &str| {
            obj.get(k)
                .map(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
                .unwrap_or(false)
        };
        Ok(NetworkConfigList {
            name,
            cni_version,
            version,
            disable_check: flag("disableCheck"),
            disable_gc: flag("disableGC"),
            plugins,
            bytes: bytes.to_vec(),
        })
    }

    /// Parse a single-plugin `.conf`/`.json` and wrap it into a list, as libcni's
    /// `ConfListFromConf`: `{"cniVersion":…,"name":…,"plugins":[<conf>]}`.
    pub fn from_conf_bytes(bytes: &[u8], origin: &str) -> Result<Self, Error> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(origin, format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid(origin, "not a JSON object"))?;
        if obj
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid(
                origin,
                "no \"type\" (perhaps this is a .conflist?)",
            ));
        }
        let mut list = Map::new();
        list.insert(
            "cniVersion".into(),
            obj.get("cniVersion").cloned().unwrap_or(Value::Null),
        );
        list.insert(
            "name".into(),
            obj.get("name").cloned().unwrap_or(Value::Null),
        );
        list.insert("plugins".into(), Value::Array(vec![v.clone()]));
        let bytes =
            serde_json::to_vec(&Value::Object(list)).map_err(|e| invalid(origin, e.to_string()))?;
        Self::from_list_bytes(&bytes, origin)
    }

    /// Parse a file by its extension.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| invalid(&origin, e.to_string()))?;
        if path.extension().and_then(|e| e.to_str()) == Some("conflist") {
            Self::from_list_bytes(&bytes, &origin)
        } else {
            Self::from_conf_bytes(&bytes, &origin)
        }
    }

    /// Capabilities any plugin of the chain declares.
    pub fn capabilities(&self) -> BTreeSet<String> {
        self.plugins
            .iter()
            .flat_map(|p| p.capabilities.iter().cloned())
            .collect()
    }
}

/// Candidate files of `dir` in lexical order.
pub fn conf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| CONF_EXTENSIONS.contains(&e))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Find the first file of `dir` (lexical order) that parses and whose plugins all exist on
/// `bin_dirs`. The error explains what was wrong with every candidate.
pub fn load_first_valid(
    dir: &Path,
    bin_dirs: &[PathBuf],
) -> Result<(PathBuf, NetworkConfigList), String> {
    let files = conf_files(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!("no networks found in {}", dir.display()));
    }
    let mut problems = Vec::new();
    for f in files {
        let list = match NetworkConfigList::from_file(&f) {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(file = %f.display(), error = %e, "skipping CNI config");
                problems.push(e.to_string());
                continue;
            }
        };
        if let Some(missing) = list
            .plugins
            .iter()
            .find(|p| super::exec::find_plugin(&p.plugin_type, bin_dirs).is_err())
        {
            let e = Error::PluginNotFound {
                plugin: missing.plugin_type.clone(),
                dirs: bin_dirs.to_vec(),
            };
            tracing::debug!(file = %f.display(), error = %e, "skipping CNI config");
            problems.push(format!("{}: {e}", f.display()));
            continue;
        }
        return Ok((f, list));
    }
    Err(format!(
        "no valid networks found in {}: {}",
        dir.display(),
        problems.join("; ")
    ))
}

/// What changes when a conf dir (or a file in it) changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, Option<SystemTime>, u64)>);

/// Fingerprint of `dir` and its candidate files: the dir's mtime plus each file's mtime and
/// size. A few `stat`s, cheap enough for every `Status` call.
pub fn fingerprint(dir: &Path) -> Fingerprint {
    let mut entries = Vec::new();
    let meta = std::fs::metadata(dir).ok();
    entries.push((
        dir.to_path_buf(),
        meta.as_ref().and_then(|m| m.modified().ok()),
        meta.map(|_| 1).unwrap_or(0),
    ));
    if let Ok(files) = conf_files(dir) {
        for f in files {
            let m = std::fs::metadata(&f).ok();
            entries.push((
                f,
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map(|m| m.len()).unwrap_or(0),
            ));
        }
    }
    Fingerprint(entries)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bin_dir_with(names: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for n in names {
            let p = d.path().join(n);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        d
    }

    #[test]
    fn conflist_parses_with_capabilities() {
        let l = NetworkConfigList::from_list_bytes(
            br#"{"cniVersion":"1.0.0","name":"net","disableCheck":true,"plugins":[
                {"type":"bridge","bridge":"b0"},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            "t",
        )
        .unwrap();
        assert_eq!(l.name, "net");
        assert_eq!(l.version, SpecVersion::V1_0_0);
        assert!(l.disable_check);
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[0].raw["bridge"], "b0");
        assert_eq!(
            l.capabilities().into_iter().collect::<Vec<_>>(),
            vec!["portMappings"]
        );
    }

    #[test]
    fn single_conf_is_wrapped_like_libcni() {
        let l = NetworkConfigList::from_conf_bytes(
            br#"{"cniVersion":"0.4.0","name":"single","type":"bridge","ipam":{"type":"host-local"}}"#,
            "t",
        )
        .unwrap();
        assert_eq!(l.name, "single");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0].plugin_type, "bridge");
        let v: Value = serde_json::from_slice(&l.bytes).unwrap();
        assert_eq!(v["plugins"][0]["ipam"]["type"], "host-local");
        assert_eq!(v["cniVersion"], "0.4.0");
        // A conflist in a .conf file is refused, as the Go original does.
        let err = NetworkConfigList::from_conf_bytes(
            br#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"}]}"#,
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("conflist"), "{err}");
    }

    #[test]
    fn invalid_lists_rejected_with_reason() {
        let cases: &[(&str, &str)] = &[
            ("{nope", "not JSON"),
            (r#"{"cniVersion":"1.0.0","plugins":[{"type":"b"}]}"#, "name"),
            (
                r#"{"cniVersion":"1.0.0","name":"-x","plugins":[{"type":"b"}]}"#,
                "name",
            ),
            (r#"{"cniVersion":"1.0.0","name":"x"}"#, "plugins"),
            (r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#, "empty"),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[{}]}"#,
                "type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"../b"}]}"#,
                "file name",
            ),
            (
                r#"{"cniVersion":"7.0.0","name":"x","plugins":[{"type":"b"}]}"#,
                "unsupported CNI version \"7.0.0\"",
            ),
            (
                r#"{"name":"x","plugins":[{"type":"b"}]}"#,
                "unsupported CNI version \"\"",
            ),
        ];
        for (json, want) in cases {
            let err =
                NetworkConfigList::from_list_bytes(json.as_bytes(), "f.conflist").unwrap_err();
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn first_valid_file_in_lexical_order() {
        let conf = tempfile::tempdir().unwrap();
        let bins = bin_dir_with(&["bridge", "portmap"]);
        let bin_dirs = vec![PathBuf::from("/nonexistent"), bins.path().to_path_buf()];
        let err = load_first_valid(conf.path(), &bin_dirs).unwrap_err();
        assert!(err.contains("no networks found"), "{err}");
        let w = |n: &str, s: &str| std::fs::write(conf.path().join(n), s).unwrap();
        w("00-broken.conflist", "{");
        w(
            "05-readme.txt",
            r#"{"cniVersion":"1.0.0","name":"txt","type":"bridge"}"#,
        );
        w(
            "10-missing.conflist",
            r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"calico"}]}"#,
        );
        let err = load_first_valid(conf.path(), &bin_dirs).unwrap_err();
        assert!(err.contains("calico"), "{err}");
        w(
            "30-later.conf",
            r#"{"cniVersion":"1.0.0","name":"later","type":"bridge"}"#,
        );
        w(
            "20-good.conflist",
            r#"{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        );
        let (path, list) = load_first_valid(conf.path(), &bin_dirs).unwrap();
        assert_eq!(path, conf.path().join("20-good.conflist"));
        assert_eq!(list.name, "good");
        std::fs::remove_file(conf.path().join("20-good.conflist")).unwrap();
        let (_, list) = load_first_valid(conf.path(), &bin_dirs).unwrap();
        assert_eq!(list.name, "later");
    }

    #[test]
    fn fingerprint_changes_with_files() {
        let conf = tempfile::tempdir().unwrap();
        let a = fingerprint(conf.path());
        assert_eq!(a, fingerprint(conf.path()));
        std::fs::write(conf.path().join("10.conflist"), "{}").unwrap();
        let b = fingerprint(conf.path());
        assert_ne!(a, b);
        std::fs::write(conf.path().join("10.conflist"), "{ }").unwrap();
        assert_ne!(b, fingerprint(conf.path()));
        assert_ne!(
            fingerprint(Path::new("/nonexistent-x")),
            fingerprint(conf.path())
        );
    }
}
