//! Upgrade in place from the Go cri-dockerd: a pod made exactly as the Go version makes it
//! (container names, labels, the `<root>/sandbox/<id>` checkpoint in its JSON format, the kubelet
//! log symlink) and attached to a real CNI network as the Go version attaches it (libcni v1.1.2,
//! which the Go version vendors: the loopback and the configured network ADDed into the pause
//! container's netns with the real plugins, the `results/<net>-<id>-eth0` cache files written in
//! libcni's format) is listed, inspected, stopped and removed by our daemon. The CNI
//! configuration is changed before the stop: DEL must run with the configuration cached at ADD
//! time, release the lease and the veth of the old network, and remove the cache entries.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::host::{is_root, rand_u32};
use common::pods::unique;
use k8s_cri::v1 as cri;
use serde_json::{Value, json};

const PAUSE: &str = "cri-dockerd-test/pause:latest";
const BUSYBOX: &str = "cri-dockerd-test/busybox:latest";
/// The real plugins (Debian's containernetworking-plugins, linked here by scripts/test-env.sh).
const PLUGINS: &str = "/opt/cni/bin";
/// The plugins the test's bin dir wraps (each call is logged, then the real one runs).
const WRAPPED: [&str; 5] = ["bridge", "host-local", "loopback", "firewall", "portmap"];

/// The Go cri-dockerd's loopback network, byte for byte (`getLoNetwork` in
/// `network/cni/cni_others.go`): libcni caches these bytes as the entry's `config`.
const GO_LOOPBACK: &str = "{\n  \"cniVersion\": \"0.2.0\",\n  \"name\": \"cni-loopback\",\n  \"plugins\":[{\n    \"type\": \"loopback\"\n  }]\n}";

/// Skip unless dockerd, root, iproute2 and the plugins are here (fail instead under CI=true).
macro_rules! require_cni {
    () => {
        if !common::docker_available() {
            return;
        }
        let ok = is_root()
            && WRAPPED.iter().all(|p| Path::new(PLUGINS).join(p).exists())
            && Command::new("ip").arg("-V").output().is_ok();
        if !ok {
            assert!(
                !common::required(),
                "the upgrade test needs root, iproute2 and the CNI plugins in {PLUGINS} \
                 (scripts/test-env.sh)"
            );
            eprintln!("skipping: needs root, iproute2 and containernetworking-plugins");
            return;
        }
    };
}

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn link_exists(name: &str) -> bool {
    sh("ip", &["link", "show", name]).0
}

/// iptables rules naming `ip` (as `ip/32`, `ip:port`, …; not a longer address).
fn iptables_lines_with_ip(ip: &str) -> Vec<String> {
    sh("iptables-save", &[])
        .1
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && l.match_indices(ip).any(|(at, _)| {
                    !l[at + ip.len()..].starts_with(|c: char| c.is_ascii_digit())
                        && !l[..at].ends_with(|c: char| c.is_ascii_digit() || c == '.')
                })
        })
        .map(str::to_string)
        .collect()
}

fn label_args(labels: &[(&str, String)]) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
}

fn docker_owned(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::docker(&args)
}

/// The Go version's checkpoint (`PodSandboxCheckpoint`, `json.Marshal`ed: compact, its
/// checksum a number).
fn go_checkpoint(name: &str, ns: &str, host_port: u16) -> String {
    format!(
        r#"{{"version":"v1","name":"{name}","namespace":"{ns}","data":{{"port_mappings":[{{"protocol":"tcp","container_port":80,"host_port":{host_port}}}]}},"checksum":2847192215}}"#
    )
}

/// libcni's `RuntimeConf` as the Go cri-dockerd's `buildCNIRuntimeConf` fills it.
struct GoRuntimeConf {
    container_id: String,
    netns: String,
    /// `Args`: IgnoreUnknown and the three K8S_POD_* (no K8S_POD_UID in the Go version).
    args: Vec<[String; 2]>,
    /// `CapabilityArgs` as Go marshals it: a map (keys sorted) of Go structs (fields in
    /// declaration order), `ipRanges` always present (empty subnet without a pod CIDR).
    capability_args_json: String,
}

impl GoRuntimeConf {
    fn new(
        sandbox_id: &str,
        netns: &str,
        name: &str,
        ns: &str,
        host_port: u16,
        cidr: &str,
    ) -> Self {
        GoRuntimeConf {
            container_id: sandbox_id.into(),
            netns: netns.into(),
            args: vec![
                ["IgnoreUnknown".into(), "1".into()],
                ["K8S_POD_NAMESPACE".into(), ns.into()],
                ["K8S_POD_NAME".into(), name.into()],
                ["K8S_POD_INFRA_CONTAINER_ID".into(), sandbox_id.into()],
            ],
            capability_args_json: format!(
                r#"{{"ipRanges":[[{{"subnet":"{cidr}"}}]],"portMappings":[{{"hostPort":{host_port},"containerPort":80,"protocol":"tcp","hostIP":""}}]}}"#
            ),
        }
    }

    fn capability_args(&self) -> Value {
        serde_json::from_str(&self.capability_args_json).unwrap()
    }
}

/// One plugin call as libcni makes it: `buildOneConfig` (name, cniVersion, prevResult, and the
/// `runtimeConfig` of the capabilities the plugin declares) on stdin, `CNI_*` in the
/// environment. Returns the plugin's stdout.
fn exec_plugin(
    bin: &Path,
    command: &str,
    list: &Value,
    plugin: &Value,
    prev: Option<&Value>,
    rt: &GoRuntimeConf,
) -> Result<String, String> {
    let mut conf = plugin.as_object().unwrap().clone();
    conf.insert("name".into(), list["name"].clone());
    conf.insert("cniVersion".into(), list["cniVersion"].clone());
    if let Some(p) = prev {
        conf.insert("prevResult".into(), p.clone());
    }
    let caps = rt.capability_args();
    let mut rc = serde_json::Map::new();
    if let Some(declared) = plugin["capabilities"].as_object() {
        for (cap, on) in declared {
            if on.as_bool() == Some(true)
                && let Some(v) = caps.get(cap)
            {
                rc.insert(cap.clone(), v.clone());
            }
        }
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    let plugin_type = plugin["type"].as_str().unwrap();
    let cni_args: Vec<String> = rt.args.iter().map(|[k, v]| format!("{k}={v}")).collect();
    let mut child = Command::new(bin.join(plugin_type))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &rt.container_id)
        .env("CNI_NETNS", &rt.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", cni_args.join(";"))
        .env("CNI_PATH", bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&Value::Object(conf)).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{plugin_type} {command}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// libcni v1.1.2 `AddNetworkList`: ADD every plugin in order, each given the previous result;
/// then `cacheAdd`. Returns the final result and the cache file's text.
fn libcni_add_list(
    bin: &Path,
    cache_dir: &Path,
    list_bytes: &str,
    rt: &GoRuntimeConf,
) -> (Value, String) {
    let list: Value = serde_json::from_str(list_bytes).unwrap();
    let mut prev: Option<Value> = None;
    for plugin in list["plugins"].as_array().unwrap() {
        let out = exec_plugin(bin, "ADD", &list, plugin, prev.as_ref(), rt)
            .unwrap_or_else(|e| panic!("Go-side CNI ADD: {e}"));
        prev = Some(serde_json::from_str(&out).unwrap());
    }
    let result = prev.unwrap();
    let net = list["name"].as_str().unwrap();
    // `cachedInfo` of libcni v1.1.2 (no `netns` field yet), `json.Marshal`ed: fields in
    // declaration order, `config` as base64, the result re-read into a map (keys sorted: as
    // serde_json's default map writes them).
    let text = format!(
        r#"{{"kind":"cniCacheV1","containerId":"{}","config":"{}","ifName":"eth0","networkName":"{net}","cniArgs":{},"capabilityArgs":{},"result":{}}}"#,
        rt.container_id,
        base64::engine::general_purpose::STANDARD.encode(list_bytes),
        serde_json::to_string(&rt.args).unwrap(),
        rt.capability_args_json,
        serde_json::to_string(&result).unwrap(),
    );
    let results = cache_dir.join("results");
    std::fs::create_dir_all(&results).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = results.join(format!("{net}-{}-eth0", rt.container_id));
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (result, text)
}

/// libcni's DEL from a cache entry's text (the configuration, args and result it holds), run
/// without a netns: for the clean-up after a failed test only.
fn libcni_del_from_cache(bin: &Path, text: &str) {
    let Ok(info) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(config) = info["config"]
        .as_str()
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
    else {
        return;
    };
    let Ok(list) = serde_json::from_slice::<Value>(&config) else {
        return;
    };
    let rt = GoRuntimeConf {
        container_id: info["containerId"].as_str().unwrap_or_default().into(),
        netns: String::new(),
        args: serde_json::from_value(info["cniArgs"].clone()).unwrap_or_default(),
        capability_args_json: info["capabilityArgs"].to_string(),
    };
    for plugin in list["plugins"].as_array().into_iter().flatten().rev() {
        let _ = exec_plugin(bin, "DEL", &list, plugin, Some(&info["result"]), &rt);
    }
}

/// The CNI side of the test: a bin dir of logging wrappers around the real plugins, the old and
/// the new network (bridge, subnet, host-local data dir). On drop (also when the test failed):
/// DEL what the Go side set up and the daemon did not release, remove the pod's containers and
/// both bridges.
struct Fixture {
    dir: tempfile::TempDir,
    uid: String,
    net: String,
    old_bridge: String,
    new_bridge: String,
    old_subnet: String,
    new_subnet: String,
    /// The Go-written cache entry of the pod network, until the daemon's DEL is verified.
    pending_del: Option<String>,
}

impl Fixture {
    fn new(uid: &str) -> Fixture {
        // Ranges no interface or route of the host (other tests' bridges) uses.
        let routes = sh("ip", &["-4", "route", "show", "table", "all"]).1;
        let (r, a, b) = (0..64)
            .map(|i| {
                let r = rand_u32().rotate_left(i);
                (r, 200 + (r % 50), (r >> 8) % 255)
            })
            .find(|(_, a, b)| {
                !routes.contains(&format!("10.{a}.{b}."))
                    && !routes.contains(&format!("10.{a}.{}.", b + 1))
            })
            .expect("a free 10.x.y.0/24");
        let id = format!("{:06x}", r & 0xff_ffff);
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture {
            uid: uid.into(),
            net: format!("gonet-{id}"),
            old_bridge: format!("cgo{id}"),
            new_bridge: format!("cnw{id}"),
            old_subnet: format!("10.{a}.{b}.0/24"),
            new_subnet: format!("10.{a}.{}.0/24", b + 1),
            pending_del: None,
            dir,
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(f.bin()).unwrap();
        for p in WRAPPED {
            let path = f.bin().join(p);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\nin=$(cat)\nprintf '%s %s %s\\n' \"$CNI_COMMAND\" {p} \"$in\" >> {log}\nprintf '%s' \"$in\" | {PLUGINS}/{p}\n",
                    log = f.calls_log().display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        f
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn calls_log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    fn ipam_dir(&self, which: &str) -> PathBuf {
        self.dir.path().join(format!("ipam-{which}"))
    }

    /// The network's conflist (as an operator or a CNI installer writes it, pretty-printed).
    fn conflist(&self, bridge: &str, subnet: &str, ipam: &Path) -> String {
        serde_json::to_string_pretty(&json!({
            "cniVersion": "1.0.0",
            "name": self.net,
            "plugins": [
                common::host::bridge_plugin(bridge, json!([[{"subnet": subnet}]]), ipam),
                {"type": "firewall", "backend": "iptables"},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ]
        }))
        .unwrap()
    }

    fn old_conflist(&self) -> String {
        self.conflist(&self.old_bridge, &self.old_subnet, &self.ipam_dir("old"))
    }

    fn new_conflist(&self) -> String {
        self.conflist(&self.new_bridge, &self.new_subnet, &self.ipam_dir("new"))
    }

    /// Plugin calls logged from byte `from` of the log on: (command, plugin, stdin).
    fn calls_since(&self, from: usize) -> Vec<(String, String, Value)> {
        let text = std::fs::read_to_string(self.calls_log()).unwrap_or_default();
        text.get(from..)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut it = l.splitn(3, ' ');
                let cmd = it.next().unwrap_or_default().to_string();
                let plugin = it.next().unwrap_or_default().to_string();
                let stdin = serde_json::from_str(it.next().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("logged stdin is not JSON ({e}): {l}"));
                (cmd, plugin, stdin)
            })
            .collect()
    }

    fn calls_log_len(&self) -> usize {
        std::fs::metadata(self.calls_log())
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(text) = self.pending_del.take() {
            libcni_del_from_cache(&self.bin(), &text);
        }
        let (_, ids) = common::docker_try(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.kubernetes.pod.uid={}", self.uid),
        ]);
        for id in ids.split_whitespace() {
            let _ = common::docker_try(&["rm", "-f", id]);
        }
        for b in [&self.old_bridge, &self.new_bridge] {
            let _ = Command::new("ip").args(["link", "del", b]).output();
        }
    }
}

fn as_map(m: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort();
    v
}

#[tokio::test]
async fn go_made_pod_is_listed_stopped_and_removed_with_cni_del_of_the_cached_config() {
    require_cni!();
    let id = unique();
    let (name, ns, uid) = (
        format!("web-{id}"),
        "upgrade".to_string(),
        format!("uid-{id}"),
    );
    let mut fx = Fixture::new(&uid);
    let host_port = 20000 + (rand_u32() % 10000) as u16;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pods").join(format!("{ns}_{name}_{uid}"));
    std::fs::create_dir_all(logs.join("app")).unwrap();

    // The pause container, as the Go version creates it for a kubelet RunPodSandbox.
    let pod_labels = vec![
        ("io.kubernetes.pod.name", name.clone()),
        ("io.kubernetes.pod.namespace", ns.clone()),
        ("io.kubernetes.pod.uid", uid.clone()),
        ("app", "web".to_string()),
        ("annotation.kubernetes.io/config.source", "api".to_string()),
        (
            "annotation.kubernetes.io/config.seen",
            "2024-01-01T00:00:00Z".to_string(),
        ),
        ("io.kubernetes.docker.type", "podsandbox".to_string()),
        ("io.kubernetes.container.name", "POD".to_string()),
    ];
    let mut args: Vec<String> = ["create", "--name"].map(String::from).to_vec();
    args.push(format!("k8s_POD_{name}_{ns}_{uid}_0"));
    args.extend(label_args(&pod_labels));
    args.extend(
        [
            "--network",
            "none",
            "--ipc",
            "shareable",
            "--hostname",
            &name,
            "--cpu-shares",
            "2",
            PAUSE,
        ]
        .map(String::from),
    );
    let sid = docker_owned(&args);
    common::docker(&["start", &sid]);
    let pid = common::docker(&["inspect", "-f", "{{.State.Pid}}", &sid]);
    assert_ne!(
        pid,
        "0",
        "pause container not running: {}\n{}",
        common::docker(&["inspect", "-f", "{{json .State}}", &sid]),
        common::docker_try(&["logs", &sid]).1
    );
    let netns = format!("/proc/{pid}/ns/net");

    // The Go version's SetUpPod with its conf dir as it was: libcni ADDs its loopback network,
    // then the configured one, into the pause container's netns, caching both.
    let conf_dir = dir.path().join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("10-gonet.conflist"), fx.old_conflist()).unwrap();
    let cache_dir = dir.path().join("cni-cache");
    let go_rt = GoRuntimeConf::new(&sid, &netns, &name, &ns, host_port, &fx.old_subnet);
    let (lo_result, _) = libcni_add_list(&fx.bin(), &cache_dir, GO_LOOPBACK, &go_rt);
    assert_eq!(lo_result["cniVersion"], "0.2.0", "{lo_result}");
    let (result, cache_text) = libcni_add_list(&fx.bin(), &cache_dir, &fx.old_conflist(), &go_rt);
    fx.pending_del = Some(cache_text);
    let pod_ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no IP in {result}"))
        .to_string();
    let host_veth = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none() && i["name"] != fx.old_bridge.as_str())
        .and_then(|i| i["name"].as_str())
        .unwrap_or_else(|| panic!("no host veth in {result}"))
        .to_string();
    let lease = fx.ipam_dir("old").join(&fx.net).join(&pod_ip);
    let cache_file = cache_dir
        .join("results")
        .join(format!("{}-{sid}-eth0", fx.net));
    let lo_cache_file = cache_dir
        .join("results")
        .join(format!("cni-loopback-{sid}-eth0"));
    assert!(lease.exists(), "host-local lease {}", lease.display());
    assert!(link_exists(&host_veth));
    assert!(
        iptables_lines_with_ip(&pod_ip).len() >= 2,
        "firewall/portmap rules for {pod_ip}"
    );

    // The app container in the pod's namespaces.
    let log_path = logs.join("app/0.log");
    let app_labels = vec![
        ("io.kubernetes.pod.name", name.clone()),
        ("io.kubernetes.pod.namespace", ns.clone()),
        ("io.kubernetes.pod.uid", uid.clone()),
        ("io.kubernetes.container.name", "app".to_string()),
        (
            "annotation.io.kubernetes.container.hash",
            "5f3c2b1a".to_string(),
        ),
        (
            "annotation.io.kubernetes.container.restartCount",
            "0".to_string(),
        ),
        (
            "annotation.io.kubernetes.container.terminationMessagePath",
            "/dev/termination-log".to_string(),
        ),
        ("io.kubernetes.docker.type", "container".to_string()),
        ("io.kubernetes.sandbox.id", sid.clone()),
        (
            "io.kubernetes.container.logpath",
            log_path.display().to_string(),
        ),
    ];
    let mut args: Vec<String> = ["create", "--name"].map(String::from).to_vec();
    args.push(format!("k8s_app_{name}_{ns}_{uid}_0"));
    args.extend(label_args(&app_labels));
    for opt in ["--network", "--ipc", "--pid"] {
        args.push(opt.into());
        args.push(format!("container:{sid}"));
    }
    args.extend([BUSYBOX, "sh", "-c", "echo hello-from-go; sleep 3600"].map(String::from));
    let cid = docker_owned(&args);
    common::docker(&["start", &cid]);
    // The Go version's StartContainer: the kubelet log path is a symlink to Docker's json log.
    let docker_log = common::docker(&["inspect", "-f", "{{.LogPath}}", &cid]);
    std::os::unix::fs::symlink(&docker_log, &log_path).unwrap();

    // Its root directory.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sandbox")).unwrap();
    std::fs::write(
        root.join("sandbox").join(&sid),
        go_checkpoint(&name, &ns, host_port),
    )
    .unwrap();

    // Swap the binary: our daemon on the same root, conf dir and CNI cache.
    let bin_flag = format!("--cni-bin-dir={}", fx.bin().display());
    let daemon = common::Daemon::start_in(dir, &["--network-plugin=cni", &bin_flag], &[]).await;
    let mut rt = daemon.runtime().await;

    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [("io.kubernetes.pod.uid".to_string(), uid.clone())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "{pods:#?}\n{}", daemon.log());
    let pod = &pods[0];
    assert_eq!(pod.id, sid);
    assert_eq!(pod.state, cri::PodSandboxState::SandboxReady as i32);
    let md = pod.metadata.as_ref().unwrap();
    assert_eq!(
        (
            md.name.as_str(),
            md.namespace.as_str(),
            md.uid.as_str(),
            md.attempt
        ),
        (name.as_str(), ns.as_str(), uid.as_str(), 0)
    );
    let want_labels: HashMap<String, String> = [
        ("io.kubernetes.pod.name", name.clone()),
        ("io.kubernetes.pod.namespace", ns.clone()),
        ("io.kubernetes.pod.uid", uid.clone()),
        ("app", "web".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(as_map(&pod.labels), as_map(&want_labels));
    let want_annotations: HashMap<String, String> = [
        ("kubernetes.io/config.source", "api"),
        ("kubernetes.io/config.seen", "2024-01-01T00:00:00Z"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(as_map(&pod.annotations), as_map(&want_annotations));

    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sid.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(status.metadata.as_ref().unwrap().name, name);
    assert_eq!(as_map(&status.annotations), as_map(&want_annotations));
    let nsopts = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .unwrap();
    assert_eq!(nsopts.network, cri::NamespaceMode::Pod as i32);
    // The pod IP comes from the Go-written cache entry.
    assert_eq!(
        status.network.as_ref().map(|n| n.ip.as_str()),
        Some(pod_ip.as_str()),
        "{}",
        daemon.log()
    );

    let containers = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sid.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 1, "{containers:#?}");
    let c = &containers[0];
    assert_eq!(c.id, cid);
    assert_eq!(c.pod_sandbox_id, sid);
    assert_eq!(c.state, cri::ContainerState::ContainerRunning as i32);
    let cmd = c.metadata.as_ref().unwrap();
    assert_eq!((cmd.name.as_str(), cmd.attempt), ("app", 0));
    assert_eq!(
        c.labels
            .get("io.kubernetes.container.name")
            .map(String::as_str),
        Some("app")
    );
    assert_eq!(c.labels.get("io.kubernetes.pod.uid"), Some(&uid));
    assert!(
        !c.labels.contains_key("io.kubernetes.sandbox.id"),
        "{:?}",
        c.labels
    );
    assert_eq!(
        c.annotations
            .get("io.kubernetes.container.hash")
            .map(String::as_str),
        Some("5f3c2b1a")
    );
    assert_eq!(c.annotations.len(), 3, "{:?}", c.annotations);

    let cstatus = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: cid.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(cstatus.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(cstatus.log_path, log_path.display().to_string());
    assert_eq!(cstatus.image.as_ref().unwrap().image, BUSYBOX);

    // The kubelet log path still points at Docker's own log, untouched.
    let target = std::fs::read_link(&log_path).unwrap();
    assert_eq!(target, Path::new(&docker_log));
    let json_log = std::fs::read_to_string(&docker_log).unwrap();
    assert!(json_log.contains("hello-from-go"), "{json_log}");
    for line in json_log.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "Docker's json log was written to through the symlink: {line:?}"
        );
    }

    // Start-up and the calls so far released nothing.
    assert!(cache_file.exists() && lo_cache_file.exists());
    assert!(lease.exists() && link_exists(&host_veth));

    // The CNI configuration changes (a CNI upgrade or re-install: same network name, another
    // bridge, subnet and IPAM data dir), and our daemon takes the new one up.
    std::fs::remove_file(daemon.cni_conf_dir().join("10-gonet.conflist")).unwrap();
    std::fs::write(
        daemon.cni_conf_dir().join("20-gonet.conflist"),
        fx.new_conflist(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon
        .log()
        .lines()
        .any(|l| l.contains("using CNI network configuration") && l.contains("20-gonet.conflist"))
    {
        assert!(
            Instant::now() < deadline,
            "new conf not taken up:\n{}",
            daemon.log()
        );
        rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kubelet deletes the pod: stop and remove everything.
    let log_mark = fx.calls_log_len();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("stop: {e:?}\n{}", daemon.log()));

    // DEL ran with the configuration, args and result cached at ADD time, not the new one.
    let calls = fx.calls_since(log_mark);
    let dels: Vec<_> = calls
        .iter()
        .filter(|(cmd, _, conf)| cmd == "DEL" && conf["name"] == fx.net.as_str())
        .collect();
    let plugins: Vec<&str> = dels.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        plugins,
        ["portmap", "firewall", "bridge", "host-local"],
        "{calls:#?}"
    );
    for (_, plugin, conf) in &dels {
        assert_eq!(
            conf["prevResult"]["ips"][0]["address"].as_str(),
            result["ips"][0]["address"].as_str(),
            "{plugin}: {conf}"
        );
    }
    let bridge_del = &dels[2].2;
    assert_eq!(bridge_del["bridge"], fx.old_bridge.as_str(), "{bridge_del}");
    assert_eq!(
        bridge_del["ipam"]["ranges"][0][0]["subnet"],
        fx.old_subnet.as_str()
    );
    assert_eq!(
        dels[0].2["runtimeConfig"]["portMappings"][0]["hostPort"], host_port,
        "portmap DEL gets the cached capability args: {}",
        dels[0].2
    );
    assert!(
        calls
            .iter()
            .all(|(_, _, conf)| !conf.to_string().contains(&fx.new_bridge)),
        "the new configuration was used: {calls:#?}"
    );
    assert!(
        calls.iter().any(|(cmd, p, conf)| cmd == "DEL"
            && p == "loopback"
            && conf["name"] == "cni-loopback"),
        "{calls:#?}"
    );
    // ... and released what the old network held.
    assert!(!lease.exists(), "lease {} kept", lease.display());
    assert!(!link_exists(&host_veth), "veth {host_veth} kept");
    assert_eq!(
        sh("ip", &["-o", "link", "show", "master", &fx.old_bridge])
            .1
            .trim(),
        "",
        "ports left on the old bridge"
    );
    assert_eq!(
        iptables_lines_with_ip(&pod_ip),
        Vec::<String>::new(),
        "iptables rules of {pod_ip} kept"
    );
    assert!(
        !cache_file.exists(),
        "cache entry {} kept",
        cache_file.display()
    );
    assert!(
        !lo_cache_file.exists(),
        "cache entry {} kept",
        lo_cache_file.display()
    );
    fx.pending_del = None;
    let state = common::docker(&["inspect", "-f", "{{.State.Status}}", &cid]);
    assert_eq!(state, "exited");
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                id: sid.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxNotready as i32);
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: cid.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("remove: {e:?}\n{}", daemon.log()));

    let (_, left) = common::docker_try(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.kubernetes.pod.uid={uid}"),
    ]);
    assert_eq!(left.trim(), "", "containers left behind");
    assert!(
        std::fs::symlink_metadata(&log_path).is_err(),
        "the kubelet log symlink is left behind"
    );
    assert!(
        !daemon.root().join("sandbox").join(&sid).exists(),
        "checkpoint left behind"
    );
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.iter().all(|p| p.id != sid));
}
