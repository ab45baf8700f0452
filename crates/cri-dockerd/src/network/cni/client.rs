//! The libcni-equivalent client: ADD/DEL/CHECK of a network configuration list (chaining
//! `prevResult`, DEL in reverse order with the cached result), STATUS and GC for 1.1.0 lists,
//! VERSION, and the result cache.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::cache::{CACHE_KIND, CachedInfo, ResultCache};
use super::conf::{NetworkConfigList, PluginConf};
use super::exec::{self, Command, InvokeArgs, Label};
use super::result::{CniResult, SpecVersion, VersionInfo};
use super::runtime_conf::{RuntimeConf, plugin_stdin};
use crate::network::Error;

/// The Go original's CNI timeout (`network.CNITimeoutSec`), here per plugin call.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(220);

/// Plugin search path, cache and timeout (libcni's `CNIConfig`).
#[derive(Debug, Clone)]
pub struct CniClient {
    pub bin_dirs: Vec<PathBuf>,
    pub cache: ResultCache,
    pub timeout: Duration,
}

impl CniClient {
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        CniClient {
            bin_dirs,
            cache: ResultCache::new(cache_dir),
            timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }

    fn invoke_args(rt: &RuntimeConf) -> InvokeArgs {
        InvokeArgs {
            container_id: rt.container_id.clone(),
            netns: rt.netns.clone(),
            if_name: rt.if_name.clone(),
            args: rt.args.clone(),
        }
    }

    async fn run(
        &self,
        list: &NetworkConfigList,
        plugin: &PluginConf,
        command: Command,
        stdin: &[u8],
        args: &InvokeArgs,
    ) -> Result<Vec<u8>, Error> {
        let path = exec::find_plugin(&plugin.plugin_type, &self.bin_dirs)?;
        let env = exec::build_env(command, args, &self.bin_dirs);
        exec::run_plugin(
            &path,
            stdin,
            &env,
            self.timeout,
            Label {
                plugin: &plugin.plugin_type,
                network: &list.name,
                command,
            },
        )
        .await
    }

    fn validate_rt(list: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), Error> {
        let ok_id = !rt.container_id.is_empty()
            && rt
                .container_id
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && rt
                .container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok_id {
            return Err(Error::InvalidArgument(format!(
                "invalid container id {:?}",
                rt.container_id
            )));
        }
        let ifname_ok = !rt.if_name.is_empty()
            && rt.if_name.len() <= 15
            && rt.if_name != "."
            && rt.if_name != ".."
            && !rt.if_name.contains(['/', ':'])
            && !rt.if_name.chars().any(char::is_whitespace);
        if !ifname_ok {
            return Err(Error::InvalidArgument(format!(
                "invalid interface name {:?}",
                rt.if_name
            )));
        }
        if !super::conf::valid_network_name(&list.name) {
            return Err(Error::InvalidArgument(format!(
                "invalid network name {:?}",
                list.name
            )));
        }
        Ok(())
    }

    /// ADD every plugin of `list` in order, each getting the previous result; cache the final
    /// result. Nothing is cached when a plugin fails (the caller runs DEL to clean up).
    pub async fn add_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<CniResult, Error> {
        Self::validate_rt(list, rt)?;
        let args = Self::invoke_args(rt);
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let stdin = plugin_stdin(
                &list.name,
                &list.cni_version,
                plugin,
                prev.as_ref(),
                Some(&rt.capability_args),
            );
            let out = self.run(list, plugin, Command::Add, &stdin, &args).await?;
            let v: Value = serde_json::from_slice(&out).map_err(|e| Error::InvalidResult {
                plugin: plugin.plugin_type.clone(),
                command: "ADD",
                reason: format!("not JSON: {e}"),
                stdout: String::from_utf8_lossy(&out).into_owned(),
            })?;
            let r = CniResult::parse(&v, &format!("plugin {:?}", plugin.plugin_type))?;
            // Pass it on (and cache it) in the list's version, as libcni's GetAsVersion.
            prev = Some(r.to_version(list.version));
        }
        let final_value = prev.unwrap_or_else(|| json!({"cniVersion": list.cni_version}));
        let result = CniResult::parse(&final_value, &list.name)?;
        self.cache.write(&CachedInfo {
            kind: CACHE_KIND.into(),
            container_id: rt.container_id.clone(),
            config: list.bytes.clone(),
            if_name: rt.if_name.clone(),
            network_name: list.name.clone(),
            netns: rt.netns.clone(),
            cni_args: Some(
                rt.args
                    .iter()
                    .map(|(k, v)| [k.clone(), v.clone()])
                    .collect(),
            ),
            capability_args: Some(rt.capability_args.clone()),
            result: Some(final_value),
        })?;
        Ok(result)
    }

    /// The cached result of `list` for this attachment, converted to the list's version.
    pub fn cached_result(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Option<CniResult>, Error> {
        let Some(info) = self.cache.read(&list.name, &rt.container_id, &rt.if_name)? else {
            return Ok(None);
        };
        match info.result {
            Some(v) => Ok(Some(CniResult::parse(&v, "cached result")?)),
            None => Ok(None),
        }
    }

    /// DEL every plugin of `list` in reverse order. From 0.4.0 on each gets the cached result as
    /// `prevResult` and the cached CNI_ARGS/capability args; the cache entry is removed after.
    pub async fn del_list(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), Error> {
        Self::validate_rt(list, rt)?;
        let cached = self.cache.read(&list.name, &rt.container_id, &rt.if_name);
        let cached = match cached {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable CNI cache entry");
                let _ = self.cache.remove(&list.name, &rt.container_id, &rt.if_name);
                None
            }
        };
        let mut rt = rt.clone();
        if let Some(c) = &cached {
            if let Some(a) = &c.cni_args {
                rt.args = a.iter().map(|[k, v]| (k.clone(), v.clone())).collect();
            }
            if let Some(caps) = &c.capability_args {
                rt.capability_args = caps.clone();
            }
        }
        let prev: Option<Value> = if list.version.supports_check() {
            cached
                .as_ref()
                .and_then(|c| c.result.as_ref())
                .and_then(|v| CniResult::parse(v, "cached result").ok())
                .map(|r| r.to_version(list.version))
        } else {
            None
        };
        let args = Self::invoke_args(&rt);
        for plugin in list.plugins.iter().rev() {
            let stdin = plugin_stdin(
                &list.name,
                &list.cni_version,
                plugin,
                prev.as_ref(),
                Some(&rt.capability_args),
            );
            self.run(list, plugin, Command::Del, &stdin, &args).await?;
        }
        self.cache
            .remove(&list.name, &rt.container_id, &rt.if_name)?;
        Ok(())
    }

    /// CHECK every plugin with the cached result (0.4.0 and later).
    pub async fn check_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<(), Error> {
        if !list.version.supports_check() {
            return Err(Error::NotSupported(format!(
                "configuration version {:?} does not support the CHECK command",
                list.cni_version
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        Self::validate_rt(list, rt)?;
        let cached = self
            .cached_result(list, rt)?
            .ok_or_else(|| Error::NoPodIps {
                sandbox_id: rt.container_id.clone(),
                reason: format!(
                    "no cached result for network {:?} to CHECK against",
                    list.name
                ),
            })?;
        let prev = cached.to_version(list.version);
        let args = Self::invoke_args(rt);
        for plugin in &list.plugins {
            let stdin = plugin_stdin(
                &list.name,
                &list.cni_version,
                plugin,
                Some(&prev),
                Some(&rt.capability_args),
            );
            self.run(list, plugin, Command::Check, &stdin, &args)
                .await?;
        }
        Ok(())
    }

    /// STATUS of every plugin (1.1.0 lists; older ones are ready by definition).
    pub async fn status_list(&self, list: &NetworkConfigList) -> Result<(), Error> {
        if !list.version.supports_status_gc() {
            return Ok(());
        }
        for plugin in &list.plugins {
            let stdin = plugin_stdin(&list.name, &list.cni_version, plugin, None, None);
            self.run(
                list,
                plugin,
                Command::Status,
                &stdin,
                &InvokeArgs::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// libcni's `GCNetworkList`: DEL cached attachments of `list` not in `valid`
    /// (container id, ifname), then GC each plugin with `cni.dev/valid-attachments` (1.1.0).
    pub async fn gc_list(
        &self,
        list: &NetworkConfigList,
        valid: &[(String, String)],
    ) -> Result<(), Error> {
        let temporaries = self.cache.remove_temporaries(&list.name, valid);
        if temporaries > 0 {
            tracing::info!(network = %list.name, "CNI GC: removed {temporaries} unfinished cache file(s)");
        }
        let mut first_err = None;
        for a in self.cache.attachments(None) {
            if a.network_name != list.name
                || valid
                    .iter()
                    .any(|(id, ifn)| *id == a.container_id && *ifn == a.if_name)
            {
                continue;
            }
            let rt = RuntimeConf {
                container_id: a.container_id.clone(),
                netns: stale_netns(&a.netns),
                if_name: a.if_name.clone(),
                args: a
                    .cni_args
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|[k, v]| (k, v))
                    .collect(),
                capability_args: a.capability_args.clone().unwrap_or_default(),
            };
            tracing::info!(container_id = %a.container_id, network = %list.name, "CNI GC: deleting stale attachment");
            if let Err(e) = self.del_list(list, &rt).await {
                tracing::warn!(error = %e, "CNI GC: stale attachment");
                first_err.get_or_insert(e);
            }
        }
        if list.version.supports_status_gc() && !list.disable_gc {
            let valid_json: Vec<Value> = valid
                .iter()
                .map(|(id, ifn)| json!({"containerID": id, "ifname": ifn}))
                .collect();
            for plugin in &list.plugins {
                let mut p = plugin.clone();
                p.raw.insert(
                    "cni.dev/valid-attachments".into(),
                    Value::Array(valid_json.clone()),
                );
                let stdin = plugin_stdin(&list.name, &list.cni_version, &p, None, None);
                if let Err(e) = self
                    .run(list, plugin, Command::Gc, &stdin, &InvokeArgs::default())
                    .await
                {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// VERSION of one plugin.
    pub async fn version(&self, plugin_type: &str) -> Result<VersionInfo, Error> {
        let path = exec::find_plugin(plugin_type, &self.bin_dirs)?;
        let env = exec::build_env(Command::Version, &InvokeArgs::default(), &self.bin_dirs);
        let stdin = json!({"cniVersion": SpecVersion::V1_1_0.as_str()}).to_string();
        let out = exec::run_plugin(
            &path,
            stdin.as_bytes(),
            &env,
            self.timeout,
            Label {
                plugin: plugin_type,
                network: "",
                command: Command::Version,
            },
        )
        .await?;
        serde_json::from_slice(&out).map_err(|e| Error::InvalidResult {
            plugin: plugin_type.to_string(),
            command: "VERSION",
            reason: e.to_string(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
        })
    }

    /// libcni's `ValidateNetworkList`: every plugin exists and supports the list's version.
    pub async fn validate_list(&self, list: &NetworkConfigList) -> Result<(), Error> {
        for plugin in &list.plugins {
            let info = self.version(&plugin.plugin_type).await?;
            if !info.supports(&list.cni_version) {
                return Err(Error::InvalidConfig {
                    origin: format!("network {:?}", list.name),
                    reason: format!(
                        "plugin {:?} does not support config version {:?} (it supports {:?})",
                        plugin.plugin_type, list.cni_version, info.supported_versions
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The netns to pass when deleting a stale attachment: a `/proc/<pid>/ns/net` path never (the
/// sandbox is not running, so that pid is gone or reused — possibly by a host process, and DEL
/// of loopback would take the host's `lo` down); another path only while it exists and is not
/// the host's own.
pub fn stale_netns(netns: &str) -> String {
    let p = std::path::Path::new(netns);
    if netns.is_empty()
        || super::procnet::pid_of_netns(p).is_some()
        || !p.exists()
        || super::is_host_netns(p)
    {
        return String::new();
    }
    netns.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::stale_netns;

    #[test]
    fn stale_attachments_never_get_a_proc_or_host_netns() {
        assert_eq!(stale_netns(""), "");
        assert_eq!(stale_netns("/proc/1/ns/net"), "");
        assert_eq!(
            stale_netns(&format!("/proc/{}/ns/net", std::process::id())),
            ""
        );
        assert_eq!(stale_netns("/proc/self/ns/net"), "");
        assert_eq!(stale_netns("/nonexistent/netns/x"), "");
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().display().to_string();
        assert_eq!(stale_netns(&p), p);
    }
}
