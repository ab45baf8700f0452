//! Real CNI plugins (Debian `containernetworking-plugins` in /usr/lib/cni) in real network
//! namespaces: ADD/DEL/CHECK, loopback, pod-to-pod traffic, hostPort on 127.0.0.1, dual stack,
//! cleanup of host-local leases, veths and iptables rules, failing plugins, the libcni cache
//! format, DEL without a netns, NetworkReady flipping, kubenet. Every test creates its own
//! namespaces, bridge (`crt<random>`) and 10.x/fdxx ranges and removes them after.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::host::{is_root, rand_u32};
use common::pods::condition;
use cri_dockerd::config::HairpinMode;
use cri_dockerd::network::cni::kubenet::KubenetSettings;
use cri_dockerd::network::{CniPlugin, Error, NetworkPlugin, PodNetwork, PortMapping, Protocol};
use serde_json::{Value, json};

const PLUGINS: &str = "/usr/lib/cni";

/// Whether these tests can run here (root, `ip`, the Debian plugins); fail under CI=true.
fn can_run() -> bool {
    let root = is_root();
    let ok = root
        && Path::new(PLUGINS).join("bridge").exists()
        && Command::new("ip").arg("-V").output().is_ok();
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("CNI tests need root, iproute2 and /usr/lib/cni (scripts/test-env.sh)");
    }
    if !ok {
        eprintln!("skipping: needs root, iproute2 and containernetworking-plugins");
    }
    ok
}

macro_rules! require_netns {
    () => {
        if !can_run() {
            return;
        }
    };
}

fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().expect(cmd)
}

fn sh_ok(cmd: &str, args: &[&str]) -> String {
    let out = sh(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One test's private network world: a bridge name, v4/v6 ranges, temp conf/cache/IPAM dirs,
/// and the namespaces it created. Everything is removed on drop.
struct World {
    id: String,
    bridge: String,
    v4: String,
    v4_prefix: String,
    v6: String,
    dir: tempfile::TempDir,
    netns: Vec<String>,
}

impl World {
    fn new() -> World {
        let r = rand_u32();
        let id = format!("{:06x}", r & 0xff_ffff);
        let a = 100 + (r % 100);
        let b = (r >> 8) % 256;
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["net.d", "cache", "ipam", "bin"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        World {
            bridge: format!("crt{id}"),
            v4: format!("10.{a}.{b}.0/24"),
            v4_prefix: format!("10.{a}.{b}."),
            v6: format!("fd{:02x}:{:x}::/64", r % 256, (r >> 8) & 0xffff),
            id,
            dir,
            netns: Vec::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn network_name(&self) -> String {
        format!("crt-{}", self.id)
    }

    /// `ip netns add cri-test-<random>`; returns (name, path).
    fn add_netns(&mut self) -> (String, PathBuf) {
        let name = format!("cri-test-{}-{:04x}", self.id, rand_u32() & 0xffff);
        sh_ok("ip", &["netns", "add", &name]);
        self.netns.push(name.clone());
        let path = PathBuf::from(format!("/var/run/netns/{name}"));
        (name, path)
    }

    fn bridge_plugin(&self, ranges: Value) -> Value {
        common::host::bridge_plugin(&self.bridge, ranges, &self.path("ipam"))
    }

    fn write_conflist(&self, file: &str, plugins: Vec<Value>) {
        let list = json!({"cniVersion": "1.0.0", "name": self.network_name(), "plugins": plugins});
        std::fs::write(self.path("net.d").join(file), list.to_string()).unwrap();
    }

    /// bridge + firewall (FORWARD accept: this host's FORWARD policy is DROP and bridged
    /// traffic goes through iptables) + portmap.
    fn standard_conflist(&self) {
        self.write_conflist(
            "10-test.conflist",
            vec![
                self.bridge_plugin(json!([[{"subnet": self.v4}]])),
                json!({"type": "firewall", "backend": "iptables"}),
                json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            ],
        );
    }

    fn plugin(&self, extra_bin: bool) -> CniPlugin {
        let mut bins = vec![PathBuf::from(PLUGINS)];
        if extra_bin {
            bins.insert(0, self.path("bin"));
        }
        CniPlugin::new_cni(self.path("net.d"), bins, self.path("cache"))
            .with_timeout(Duration::from_secs(60))
    }

    /// Leases host-local holds for our network (files named by IP).
    fn leases(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.path("ipam").join(self.network_name()))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains('.') || n.contains(':'))
                    .filter(|n| !n.starts_with("last_reserved_ip"))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cache_files(&self) -> Vec<String> {
        std::fs::read_dir(self.path("cache").join("results"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for n in &self.netns {
            let _ = sh("ip", &["netns", "del", n]);
        }
        let _ = sh("ip", &["link", "del", &self.bridge]);
    }
}

fn pod(w: &World, name: &str, netns: &Path) -> PodNetwork {
    PodNetwork {
        name: name.into(),
        namespace: "cni-test".into(),
        uid: format!("uid-{name}-{}", w.id),
        sandbox_id: format!("sb{}{}{:04x}", w.id, name, rand_u32() & 0xffff),
        netns: Some(netns.to_path_buf()),
        ..Default::default()
    }
}

fn iptables_lines() -> BTreeSet<String> {
    sh_ok("iptables-save", &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.to_string())
        .collect()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[tokio::test]
async fn two_pods_get_ips_reach_each_other_and_del_cleans_up() {
    require_netns!();
    let mut w = World::new();
    w.standard_conflist();
    let plugin = w.plugin(false);
    assert!(plugin.status().is_ok(), "{:?}", plugin.status());
    let (ns_a, path_a) = w.add_netns();
    let (_ns_b, path_b) = w.add_netns();
    let pa = pod(&w, "a", &path_a);
    let pb = pod(&w, "b", &path_b);

    let sa = plugin.setup_pod(&pa).await.expect("ADD a");
    let sb = plugin.setup_pod(&pb).await.expect("ADD b");
    for s in [&sa, &sb] {
        assert!(
            s.ip.to_string().starts_with(&w.v4_prefix),
            "{s:?} not in {}",
            w.v4
        );
        assert_eq!(s.interface, "eth0");
    }
    assert_ne!(sa.ip, sb.ip);
    assert_eq!(
        w.leases(),
        BTreeSet::from([sa.ip.to_string(), sb.ip.to_string()])
    );

    // loopback is up in the pod.
    let lo = sh_ok(
        "ip",
        &["netns", "exec", &ns_a, "ip", "-o", "link", "show", "lo"],
    );
    assert!(lo.contains("UP"), "{lo}");
    // A reaches B by pod IP.
    let ping = sh(
        "ip",
        &[
            "netns",
            "exec",
            &ns_a,
            "busybox",
            "ping",
            "-c1",
            "-W2",
            &sb.ip.to_string(),
        ],
    );
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // Status from the cache, and CHECK passes.
    assert_eq!(plugin.pod_network_status(&pa).await.unwrap(), sa);
    plugin.check_pod(&pa).await.expect("CHECK");

    // The cache file is libcni's format.
    let cache_path = w.path("cache").join("results").join(format!(
        "{}-{}-eth0",
        w.network_name(),
        pa.sandbox_id
    ));
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["containerId"], pa.sandbox_id.as_str());
    assert_eq!(cached["ifName"], "eth0");
    assert_eq!(cached["networkName"], w.network_name().as_str());
    assert_eq!(cached["netns"], path_a.display().to_string().as_str());
    let cfg = base64_decode(cached["config"].as_str().unwrap());
    let cfg: Value = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(cfg["name"], w.network_name().as_str());
    assert_eq!(
        cached["cniArgs"][1],
        json!(["K8S_POD_NAMESPACE", "cni-test"])
    );
    assert_eq!(
        cached["cniArgs"][4],
        json!(["K8S_POD_UID", pa.uid.as_str()])
    );
    assert!(cached["capabilityArgs"]["portMappings"].is_array());
    assert_eq!(cached["result"]["cniVersion"], "1.0.0");
    assert!(
        w.cache_files()
            .contains(&format!("cni-loopback-{}-eth0", pa.sandbox_id))
    );

    // Host-side veth of A, to see it go.
    let veths: Vec<String> = cached["result"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("sandbox").is_none() && i["name"] != w.bridge.as_str())
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(veths.len(), 1, "{cached}");
    assert!(link_exists(&veths[0]));
    let rules_with_a = iptables_lines()
        .into_iter()
        .filter(|l| l.contains(&sa.ip.to_string()))
        .count();
    assert!(
        rules_with_a > 0,
        "firewall rules for the pod exist while it runs"
    );

    plugin.teardown_pod(&pa).await.expect("DEL a");
    plugin
        .teardown_pod(&pa)
        .await
        .expect("DEL a again (idempotent)");
    assert_eq!(w.leases(), BTreeSet::from([sb.ip.to_string()]));
    assert!(!link_exists(&veths[0]), "veth {} left behind", veths[0]);
    assert!(!cache_path.exists());
    assert!(
        iptables_lines()
            .iter()
            .all(|l| !l.contains(&sa.ip.to_string())),
        "iptables rules for {} left behind",
        sa.ip
    );
    plugin.teardown_pod(&pb).await.expect("DEL b");
    assert!(w.leases().is_empty());
    assert!(w.cache_files().is_empty(), "{:?}", w.cache_files());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

#[tokio::test]
async fn host_port_on_localhost_reaches_the_pod_and_rules_go_on_del() {
    require_netns!();
    let mut w = World::new();
    w.standard_conflist();
    let plugin = w.plugin(false);
    let (ns, path) = w.add_netns();
    let mut p = pod(&w, "web", &path);
    let host_port = 20000 + (rand_u32() % 20000) as i32;
    p.port_mappings = vec![PortMapping {
        container_port: 8080,
        host_port,
        protocol: Protocol::Tcp,
        host_ip: "127.0.0.1".into(),
    }];
    let before = iptables_lines();
    let s = plugin.setup_pod(&p).await.expect("ADD");

    let www = w.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), format!("hello {}\n", w.id)).unwrap();
    let mut httpd = Command::new("ip")
        .args([
            "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8080", "-h",
        ])
        .arg(&www)
        .spawn()
        .expect("httpd");
    let mut body = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", host_port as u16)) else {
            continue;
        };
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
        body.clear();
        let _ = c.read_to_string(&mut body);
        if body.contains("hello") {
            break;
        }
    }
    let _ = httpd.kill();
    let _ = httpd.wait();
    let mine = |lines: &BTreeSet<String>| -> Vec<String> {
        lines
            .iter()
            .filter(|l| {
                l.contains(&p.sandbox_id) || l.contains(&s.ip.to_string()) || l.contains("CNI-DN-")
            })
            .filter(|l| !before.contains(*l))
            .cloned()
            .collect()
    };
    let during = mine(&iptables_lines());
    assert!(
        during.iter().any(|l| l.contains(&host_port.to_string())),
        "no DNAT rule for the hostPort: {during:#?}"
    );
    plugin.teardown_pod(&p).await.expect("DEL");
    let after = mine(&iptables_lines());
    // Other tests' pods may own CNI-DN chains concurrently: only ours must be gone.
    let ours: Vec<&String> = after
        .iter()
        .filter(|l| {
            l.contains(&p.sandbox_id)
                || l.contains(&s.ip.to_string())
                || l.contains(&format!("--dport {host_port}"))
        })
        .collect();
    assert!(
        ours.is_empty(),
        "portmap/firewall rules left behind: {ours:#?}"
    );
    assert!(
        body.contains(&format!("hello {}", w.id)),
        "hostPort 127.0.0.1:{host_port} did not reach the pod: {body:?}"
    );
}

#[tokio::test]
async fn dual_stack_pod_gets_both_addresses() {
    require_netns!();
    let mut w = World::new();
    w.write_conflist(
        "10-ds.conflist",
        vec![w.bridge_plugin(json!([[{"subnet": w.v4}], [{"subnet": w.v6}]]))],
    );
    let plugin = w.plugin(false);
    let (_, path) = w.add_netns();
    let p = pod(&w, "ds", &path);
    let s = plugin.setup_pod(&p).await.expect("ADD");
    assert!(s.ip.is_ipv4(), "{s:?}");
    assert_eq!(s.additional_ips.len(), 1, "{s:?}");
    assert!(s.additional_ips[0].is_ipv6());
    let v6_prefix = w.v6.split("::").next().unwrap().to_string();
    assert!(
        s.additional_ips[0].to_string().starts_with(&v6_prefix),
        "{s:?} vs {}",
        w.v6
    );
    assert_eq!(plugin.pod_network_status(&p).await.unwrap(), s);
    plugin.teardown_pod(&p).await.expect("DEL");
    assert!(w.leases().is_empty(), "{:?}", w.leases());
}

#[tokio::test]
async fn failing_plugin_surfaces_its_error_and_leaves_nothing() {
    require_netns!();
    let mut w = World::new();
    let script = w.path("bin").join("boom");
    std::fs::write(
        &script,
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  \
         echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"boom\",\"details\":\"fixture says no\"}'\n  \
         echo 'fixture stderr' >&2\n  exit 1\nfi\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    w.write_conflist(
        "10-boom.conflist",
        vec![
            w.bridge_plugin(json!([[{"subnet": w.v4}]])),
            json!({"type": "boom"}),
        ],
    );
    let plugin = w.plugin(true);
    let (_, path) = w.add_netns();
    let p = pod(&w, "boom", &path);
    let err = plugin.setup_pod(&p).await.unwrap_err();
    assert_eq!(err.cni_code(), Some(7), "{err}");
    let msg = err.to_string();
    for want in ["boom", "fixture says no", "fixture stderr", "ADD"] {
        assert!(msg.contains(want), "{want} missing in {msg}");
    }
    assert!(
        w.cache_files().is_empty(),
        "cache left: {:?}",
        w.cache_files()
    );
    assert!(w.leases().is_empty(), "IP lease left: {:?}", w.leases());
    let links = sh_ok("ip", &["-o", "link", "show", "master", &w.bridge]);
    assert!(links.trim().is_empty(), "veth left on the bridge: {links}");
}

#[tokio::test]
async fn del_after_the_netns_is_gone_succeeds() {
    require_netns!();
    let mut w = World::new();
    w.standard_conflist();
    let plugin = w.plugin(false);
    let (ns, path) = w.add_netns();
    let p = pod(&w, "gone", &path);
    let s = plugin.setup_pod(&p).await.expect("ADD");
    sh_ok("ip", &["netns", "del", &ns]);
    w.netns.retain(|n| *n != ns);
    // Still known from the cache.
    assert_eq!(plugin.pod_network_status(&p).await.unwrap().ip, s.ip);
    plugin.teardown_pod(&p).await.expect("DEL without netns");
    // Also with no netns given at all (pause container gone).
    let mut no_ns = p.clone();
    no_ns.netns = None;
    plugin.teardown_pod(&no_ns).await.expect("DEL again");
    assert!(w.leases().is_empty());
    assert!(w.cache_files().is_empty());
    assert!(
        iptables_lines()
            .iter()
            .all(|l| !l.contains(&s.ip.to_string()))
    );
}

#[tokio::test]
async fn network_ready_flips_when_a_conflist_appears() {
    require_netns!();
    let mut w = World::new();
    let plugin = w.plugin(false);
    let err = plugin.status().unwrap_err();
    assert_eq!(err.reason, "NetworkPluginNotReady");
    let (_, path) = w.add_netns();
    let e = plugin
        .setup_pod(&pod(&w, "early", &path))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotReady(_)), "{e}");
    w.standard_conflist();
    assert!(plugin.status().is_ok(), "{:?}", plugin.status());
    std::fs::remove_file(w.path("net.d").join("10-test.conflist")).unwrap();
    assert!(plugin.status().is_err());
}

#[tokio::test]
async fn unknown_cni_version_is_rejected_clearly() {
    require_netns!();
    let w = World::new();
    let list =
        json!({"cniVersion": "2.0.0", "name": w.network_name(), "plugins": [{"type": "bridge"}]});
    std::fs::write(w.path("net.d").join("10-future.conflist"), list.to_string()).unwrap();
    let plugin = w.plugin(false);
    let err = plugin.status().unwrap_err();
    assert!(
        err.message.contains("unsupported CNI version \"2.0.0\""),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn kubenet_bridge_with_hairpin_veth_and_mtu() {
    require_netns!();
    let mut w = World::new();
    let settings = KubenetSettings {
        bridge: w.bridge.clone(),
        mtu: 1400,
        hairpin: HairpinMode::HairpinVeth,
        ipam_data_dir: Some(w.path("ipam")),
        bandwidth: false,
    };
    let plugin = CniPlugin::new_kubenet(
        settings,
        false,
        vec![PathBuf::from(PLUGINS)],
        w.path("cache"),
        None,
    )
    .with_timeout(Duration::from_secs(60));
    assert!(plugin.status().is_err(), "not ready without a pod CIDR");
    plugin.set_pod_cidr(&w.v4);
    assert!(plugin.status().is_ok(), "{:?}", plugin.status());
    let (ns, path) = w.add_netns();
    let p = pod(&w, "kn", &path);
    let s = plugin.setup_pod(&p).await.expect("kubenet ADD");
    assert!(s.ip.to_string().starts_with(&w.v4_prefix), "{s:?}");
    let mtu = sh_ok(
        "ip",
        &["netns", "exec", &ns, "cat", "/sys/class/net/eth0/mtu"],
    );
    assert_eq!(mtu.trim(), "1400");
    let ports: Vec<String> = std::fs::read_dir(format!("/sys/class/net/{}/brif", w.bridge))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
    let hairpin = std::fs::read_to_string(format!(
        "/sys/class/net/{}/brif/{}/hairpin_mode",
        w.bridge, ports[0]
    ))
    .unwrap();
    assert_eq!(
        hairpin.trim(),
        "1",
        "hairpin-veth sets hairpin on the pod's bridge port"
    );
    assert!(
        w.cache_files()
            .contains(&format!("kubenet-{}-eth0", p.sandbox_id)),
        "{:?}",
        w.cache_files()
    );
    plugin.teardown_pod(&p).await.expect("kubenet DEL");
    assert!(w.leases_for("kubenet").is_empty());
    assert!(w.cache_files().is_empty());
}

impl World {
    fn leases_for(&self, network: &str) -> Vec<String> {
        std::fs::read_dir(self.path("ipam").join(network))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10.") || n.starts_with("fd"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn fixture(w: &World, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = w.path("bin").join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn status_and_gc_for_cni_1_1_0_networks() {
    require_netns!();
    let mut w = World::new();
    let log = w.path("calls.log");
    let flag = w.path("unhealthy");
    // A 1.1.0 plugin: STATUS fails while the flag file exists; every call is logged with stdin.
    fixture(
        &w,
        "fix11",
        &format!(
            r#"in=$(cat); echo "$CNI_COMMAND $in" >> {log}
case "$CNI_COMMAND" in
  VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}';;
  STATUS) if [ -e {flag} ]; then echo '{{"cniVersion":"1.1.0","code":50,"msg":"plugin not available","details":"no backend"}}'; exit 1; fi;;
  ADD) echo '{{"cniVersion":"1.1.0","interfaces":[{{"name":"eth0","sandbox":"'$CNI_NETNS'"}}],"ips":[{{"address":"10.250.0.9/24","interface":0}}]}}';;
esac
exit 0"#,
            log = log.display(),
            flag = flag.display()
        ),
    );
    let list =
        json!({"cniVersion": "1.1.0", "name": w.network_name(), "plugins": [{"type": "fix11"}]});
    std::fs::write(w.path("net.d").join("10-v11.conflist"), list.to_string()).unwrap();
    let plugin = w.plugin(true);
    plugin.refresh().await;
    assert!(plugin.status().is_ok(), "{:?}", plugin.status());
    std::fs::write(&flag, "").unwrap();
    plugin.refresh().await;
    let nr = plugin.status().unwrap_err();
    assert!(
        nr.message.contains("plugin not available"),
        "{}",
        nr.message
    );
    assert!(nr.message.contains("code 50"), "{}", nr.message);
    std::fs::remove_file(&flag).unwrap();
    plugin.refresh().await;
    assert!(plugin.status().is_ok());

    // Two attachments; GC keeps the valid one, DELs the stale one, then GC's the plugin.
    let (_, ns_keep) = w.add_netns();
    let (_, ns_stale) = w.add_netns();
    let keep = pod(&w, "keep", &ns_keep);
    let stale = pod(&w, "stale", &ns_stale);
    plugin.setup_pod(&keep).await.expect("ADD keep");
    plugin.setup_pod(&stale).await.expect("ADD stale");
    plugin
        .gc(std::slice::from_ref(&keep.sandbox_id))
        .await
        .expect("GC");
    let calls = std::fs::read_to_string(&log).unwrap();
    let del_stale = calls
        .lines()
        .filter(|l| l.starts_with("DEL ") && l.contains("\"prevResult\""))
        .count();
    assert_eq!(
        del_stale, 1,
        "one DEL (with prevResult) for the stale attachment:\n{calls}"
    );
    let gc = calls
        .lines()
        .find(|l| l.starts_with("GC "))
        .expect("a GC call");
    let gc_conf: Value = serde_json::from_str(gc.trim_start_matches("GC ")).unwrap();
    assert_eq!(
        gc_conf["cni.dev/valid-attachments"],
        json!([{"containerID": keep.sandbox_id, "ifname": "eth0"}])
    );
    let files = w.cache_files();
    assert!(
        files.iter().any(|f| f.contains(&keep.sandbox_id)),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(&stale.sandbox_id)),
        "{files:?}"
    );
    plugin.teardown_pod(&keep).await.expect("DEL keep");
    assert!(w.cache_files().is_empty());
}

#[tokio::test]
async fn teardown_uses_the_cached_config_after_the_conf_changed() {
    require_netns!();
    let mut w = World::new();
    w.standard_conflist();
    let plugin = w.plugin(false);
    let (_, path) = w.add_netns();
    let p = pod(&w, "old", &path);
    let s = plugin.setup_pod(&p).await.expect("ADD");
    // The admin replaces the network (as an upgrade or a CNI re-install would).
    std::fs::remove_file(w.path("net.d").join("10-test.conflist")).unwrap();
    let other =
        json!({"cniVersion": "1.0.0", "name": "other-net", "plugins": [{"type": "loopback"}]});
    std::fs::write(w.path("net.d").join("20-other.conflist"), other.to_string()).unwrap();
    assert_eq!(plugin.current_network().unwrap().1.name, "other-net");
    plugin.teardown_pod(&p).await.expect("DEL");
    assert!(
        w.leases().is_empty(),
        "lease of {} kept: {:?}",
        s.ip,
        w.leases()
    );
    assert!(w.cache_files().is_empty(), "{:?}", w.cache_files());
    assert!(
        iptables_lines()
            .iter()
            .all(|l| !l.contains(&s.ip.to_string()))
    );
}

#[tokio::test]
async fn the_hosts_own_netns_is_refused() {
    require_netns!();
    let w = World::new();
    w.standard_conflist();
    let plugin = w.plugin(false);
    let p = pod(&w, "host", Path::new("/proc/self/ns/net"));
    let err = plugin.setup_pod(&p).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Teardown with it runs without a netns (the loopback DEL would take the host's lo down).
    plugin.teardown_pod(&p).await.expect("DEL");
    let lo = sh_ok("ip", &["-o", "link", "show", "lo"]);
    assert!(lo.contains(",UP"), "host lo must stay up: {lo}");
}

#[tokio::test]
async fn no_op_logs_one_loud_warning() {
    require_docker!();
    let d = common::Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    for _ in 0..2 {
        let net = condition(&mut rt, "NetworkReady").await;
        assert!(net.status, "no-op is always ready");
    }
    let log = d.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("--network-plugin=cni"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}
