//! Pod networking: the [`NetworkPlugin`] trait and its `cni`, `kubenet` and `no-op` plugins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, NetworkPluginKind};

/// Why the network is not ready (the `NetworkReady` condition's reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub reason: String,
    pub message: String,
}

/// A pod network plugin.
pub trait NetworkPlugin: Send + Sync + 'static {
    /// `cni`, `kubenet` or `no-op`.
    fn name(&self) -> &'static str;
    /// Ready, or why not.
    fn status(&self) -> Result<(), NotReady>;
    /// The pod CIDR changed (`UpdateRuntimeConfig`).
    fn set_pod_cidr(&self, _cidr: &str) {}
}

/// Build the plugin `config` selects.
pub fn from_config(config: &Config) -> Arc<dyn NetworkPlugin> {
    match config.network_plugin {
        NetworkPluginKind::Cni => Arc::new(CniPlugin {
            conf_dir: config.cni_conf_dir.clone(),
        }),
        NetworkPluginKind::Kubenet => Arc::new(Kubenet {
            pod_cidr: std::sync::RwLock::new(config.pod_cidr.clone()),
        }),
        NetworkPluginKind::NoOp => Arc::new(NoOp),
    }
}

/// CNI: ready once a valid network configuration exists in the conf dir.
pub struct CniPlugin {
    conf_dir: PathBuf,
}

impl NetworkPlugin for CniPlugin {
    fn name(&self) -> &'static str {
        "cni"
    }
    fn status(&self) -> Result<(), NotReady> {
        match first_valid_conf(&self.conf_dir) {
            Some(_) => Ok(()),
            None => Err(NotReady {
                reason: "NetworkPluginNotReady".into(),
                message: format!(
                    "docker: network plugin is not ready: cni config uninitialized: no valid network configuration found in {}",
                    self.conf_dir.display()
                ),
            }),
        }
    }
}

/// The first file in lexical order of `dir` ending in `.conflist`, `.conf` or `.json` that
/// parses as a CNI network configuration (list).
pub fn first_valid_conf(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    files.into_iter().find(|p| is_valid_conf(p))
}

fn is_valid_conf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let has_name = v
        .get("name")
        .and_then(|n| n.as_str())
        .is_some_and(|n| !n.is_empty());
    let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
    if is_list {
        has_name
            && v.get("plugins")
                .and_then(|p| p.as_array())
                .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p.get("type").is_some()))
    } else {
        has_name && v.get("type").and_then(|t| t.as_str()).is_some()
    }
}

/// kubenet: ready once a pod CIDR is known.
pub struct Kubenet {
    pod_cidr: std::sync::RwLock<Option<String>>,
}

impl NetworkPlugin for Kubenet {
    fn name(&self) -> &'static str {
        "kubenet"
    }
    fn status(&self) -> Result<(), NotReady> {
        let known = self.pod_cidr.read().map(|c| c.is_some()).unwrap_or(false);
        if known {
            Ok(())
        } else {
            Err(NotReady {
                reason: "NetworkPluginNotReady".into(),
                message:
                    "docker: network plugin is not ready: kubenet does not have a pod CIDR yet"
                        .into(),
            })
        }
    }
    fn set_pod_cidr(&self, cidr: &str) {
        if let Ok(mut slot) = self.pod_cidr.write() {
            *slot = Some(cidr.to_string());
        }
    }
}

/// no-op: Docker's default bridge. Always ready.
pub struct NoOp;

impl NetworkPlugin for NoOp {
    fn name(&self) -> &'static str {
        "no-op"
    }
    fn status(&self) -> Result<(), NotReady> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_ready_only_with_a_valid_conf() {
        let dir = tempfile::tempdir().unwrap();
        let p = CniPlugin {
            conf_dir: dir.path().to_path_buf(),
        };
        assert!(p.status().is_err());
        std::fs::write(dir.path().join("00-bad.conflist"), "{not json").unwrap();
        std::fs::write(dir.path().join("05-notes.txt"), "{}").unwrap();
        assert!(p.status().is_err());
        std::fs::write(
            dir.path().join("10-net.conflist"),
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        assert!(p.status().is_ok());
        assert_eq!(
            first_valid_conf(dir.path()).unwrap(),
            dir.path().join("10-net.conflist")
        );
    }

    #[test]
    fn cni_not_ready_when_dir_missing() {
        let p = CniPlugin {
            conf_dir: PathBuf::from("/nonexistent/cni/net.d"),
        };
        let err = p.status().unwrap_err();
        assert_eq!(err.reason, "NetworkPluginNotReady");
        assert!(err.message.contains("/nonexistent/cni/net.d"));
    }
}
