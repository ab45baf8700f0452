//! Pod networking end to end: the real daemon over its socket, the real dockerd, and the real
//! Debian CNI plugins (`/usr/lib/cni`) on the pause containers' network namespaces. Pods get IPs
//! from the configured range and talk to each other, hostPorts answer on 127.0.0.1, dual stack,
//! removal releases leases/veths/iptables rules, NetworkReady and RunPodSandbox before any CNI
//! config, hostNetwork pods without CNI, a failing plugin, and a daemon killed during ADD. Every
//! test uses its own bridge (`cpn<random>`), 10.x/fdxx ranges and temp IPAM/cache dirs.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Daemon;
use common::host::{is_root, rand_u32};
use common::pods::{BUSYBOX, Rt, condition, host_network, sandbox_status, try_run_pod_sandbox};
use k8s_cri::v1 as cri;
use serde_json::{Value, json};
use tonic::Code;

const PLUGINS: &str = "/usr/lib/cni";
const INDEX: &str = "hello from cri-dockerd-test";

/// Skip unless dockerd, root and the plugins are here (fail instead under CI=true).
macro_rules! require_cni {
    () => {
        if !common::docker_available() {
            return;
        }
        if !(is_root() && Path::new(PLUGINS).join("bridge").exists()) {
            assert!(
                !common::required(),
                "pod network tests need root and /usr/lib/cni (scripts/test-env.sh)"
            );
            eprintln!("skipping: needs root and containernetworking-plugins");
            return;
        }
    };
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One test's network: bridge name, ranges, temp IPAM data dir and fixture bin dir. The bridge
/// is removed on drop; pods' containers (by uid label) too.
struct Net {
    id: String,
    bridge: String,
    v4: String,
    v4_prefix: String,
    v6: String,
    v6_prefix: String,
    dir: tempfile::TempDir,
    uids: Vec<String>,
}

impl Net {
    fn new() -> Net {
        let r = rand_u32();
        let id = format!("{:06x}", r & 0xff_ffff);
        let a = 100 + (r % 100);
        let b = (r >> 8) % 256;
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["ipam", "bin"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let v6_prefix = format!("fd{:02x}:{:x}:", (r >> 3) % 256, (r >> 12) & 0xffff);
        Net {
            bridge: format!("cpn{id}"),
            v4: format!("10.{a}.{b}.0/24"),
            v4_prefix: format!("10.{a}.{b}."),
            v6: format!("{v6_prefix}:/64"),
            v6_prefix,
            id,
            dir,
            uids: Vec::new(),
        }
    }

    fn name(&self) -> String {
        format!("cpn-{}", self.id)
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn bridge(&self, plugin_type: &str, ranges: Value) -> Value {
        json!({
            "type": plugin_type,
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": ranges,
                "dataDir": self.dir.path().join("ipam").display().to_string(),
            }
        })
    }

    /// bridge + firewall (this host's FORWARD policy is DROP) + portmap.
    fn standard(&self) -> Vec<Value> {
        vec![
            self.bridge("bridge", json!([[{"subnet": self.v4}]])),
            json!({"type": "firewall", "backend": "iptables"}),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        ]
    }

    fn write_conflist(&self, d: &Daemon, plugins: Vec<Value>) {
        let list = json!({"cniVersion": "1.0.0", "name": self.name(), "plugins": plugins});
        std::fs::create_dir_all(d.cni_conf_dir()).unwrap();
        let tmp = d.cni_conf_dir().join(".tmp");
        std::fs::write(&tmp, list.to_string()).unwrap();
        std::fs::rename(tmp, d.cni_conf_dir().join("10-test.conflist")).unwrap();
    }

    fn fixture(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.bin().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Daemon flags for the `cni` plugin with this net's fixtures and the real plugins.
    fn flags(&self) -> Vec<String> {
        vec![
            "--network-plugin=cni".into(),
            format!("--cni-bin-dir={},{PLUGINS}", self.bin().display()),
        ]
    }

    /// host-local leases of this network (files named by IP).
    fn leases(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.dir.path().join("ipam").join(self.name()))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains('.') || n.contains(':'))
                    .filter(|n| !n.starts_with("last_reserved_ip"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Interfaces enslaved to the bridge (the pods' host-side veths).
    fn bridge_ports(&self) -> String {
        sh("ip", &["-o", "link", "show", "master", &self.bridge])
            .trim()
            .to_string()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for uid in &self.uids {
            let ids = sh(
                "docker",
                &[
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=io.kubernetes.pod.uid={uid}"),
                ],
            );
            for id in ids.split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Files in the daemon's CNI result cache.
fn cache_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.dir.path().join("cni-cache").join("results"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn checkpoints(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.root().join("sandbox"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn uid_containers(uid: &str) -> String {
    sh(
        "docker",
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.kubernetes.pod.uid={uid}"),
        ],
    )
    .trim()
    .to_string()
}

fn iptables_lines() -> BTreeSet<String> {
    sh("iptables-save", &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn pod_config(net: &mut Net, name: &str, d: &Daemon) -> cri::PodSandboxConfig {
    let uid = format!("{}-{name}-{:04x}", net.id, rand_u32() & 0xffff);
    net.uids.push(uid.clone());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("{name}-{}", net.id),
            namespace: "pntest".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: d.dir.path().join("pods").join(&uid).display().to_string(),
        labels: HashMap::from([("pntest".to_string(), net.id.clone())]),
        ..Default::default()
    }
}

async fn network_status(rt: &mut Rt, id: &str) -> cri::PodSandboxNetworkStatus {
    sandbox_status(rt, id)
        .await
        .network
        .expect("network status")
}

/// Start busybox httpd serving /var/www on port 80 in the pod.
async fn httpd(rt: &mut Rt, sandbox: &str, cfg: &cri::PodSandboxConfig) -> String {
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "httpd".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: ["httpd", "-f", "-p", "80", "-h", "/var/www"]
                    .map(String::from)
                    .to_vec(),
                log_path: "httpd/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(cfg.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

async fn stop_and_remove(rt: &mut Rt, id: &str) {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("RemovePodSandbox");
}

/// GET / on 127.0.0.1:`port`, retried while the server comes up.
fn get_localhost(port: u16) -> String {
    let mut body = String::new();
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(250));
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
        body.clear();
        let _ = c.read_to_string(&mut body);
        if body.contains(INDEX) {
            break;
        }
    }
    body
}

#[tokio::test]
async fn two_pods_talk_by_pod_ip_host_port_works_and_removal_cleans_up() {
    require_cni!();
    let mut net = Net::new();
    let flags = net.flags();
    let d = Daemon::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    net.write_conflist(&d, net.standard());
    let mut rt = d.runtime().await;
    let ipt_before = iptables_lines();

    let host_port = 20000 + (rand_u32() % 20000) as i32;
    let mut cfg_a = pod_config(&mut net, "a", &d);
    cfg_a.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port,
        host_ip: "127.0.0.1".into(),
    }];
    let cfg_b = pod_config(&mut net, "b", &d);
    let a = try_run_pod_sandbox(&mut rt, &cfg_a)
        .await
        .expect("RunPodSandbox a");
    let b = try_run_pod_sandbox(&mut rt, &cfg_b)
        .await
        .expect("RunPodSandbox b");
    assert_eq!(
        sh(
            "docker",
            &["inspect", "-f", "{{.HostConfig.NetworkMode}}", &a]
        )
        .trim(),
        "none"
    );
    let ip_a = network_status(&mut rt, &a).await.ip;
    let ip_b = network_status(&mut rt, &b).await.ip;
    for ip in [&ip_a, &ip_b] {
        assert!(ip.starts_with(&net.v4_prefix), "{ip} not in {}", net.v4);
    }
    assert_ne!(ip_a, ip_b);
    assert_eq!(net.leases().len(), 2, "{:?}", net.leases());
    assert_eq!(
        net.bridge_ports().lines().count(),
        2,
        "{}",
        net.bridge_ports()
    );
    assert!(
        cache_files(&d).iter().any(|f| f.contains(&a)),
        "{:?}",
        cache_files(&d)
    );

    let _srv_a = httpd(&mut rt, &a, &cfg_a).await;
    let client_b = httpd(&mut rt, &b, &cfg_b).await;
    // Pod b fetches pod a's page by pod IP (no `wget -T`: this busybox segfaults with it).
    let mut got = String::new();
    for _ in 0..20 {
        let r = rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: client_b.clone(),
                cmd: ["wget", "-qO-", &format!("http://{ip_a}/")]
                    .map(String::from)
                    .to_vec(),
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        got = String::from_utf8_lossy(&r.stdout).into_owned();
        if r.exit_code == 0 && got.contains(INDEX) {
            break;
        }
        got.push_str(&format!(
            " exit {} stderr {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(got.contains(INDEX), "pod b could not reach {ip_a}: {got:?}");
    // The hostPort answers on 127.0.0.1 from the host.
    let body = tokio::task::spawn_blocking(move || get_localhost(host_port as u16))
        .await
        .unwrap();
    assert!(
        body.contains(INDEX),
        "hostPort 127.0.0.1:{host_port} did not reach pod a: {body:?}"
    );
    let ours = |lines: &BTreeSet<String>| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !ipt_before.contains(*l))
            .filter(|l| {
                l.contains(&a)
                    || l.contains(&b)
                    || l.contains(&format!("{ip_a}/"))
                    || l.contains(&format!("{ip_b}/"))
                    || l.contains(&format!("--dport {host_port}"))
            })
            .cloned()
            .collect()
    };
    let during = ours(&iptables_lines());
    assert!(
        during
            .iter()
            .any(|l| l.contains(&format!("--dport {host_port}"))),
        "no portmap rule for the hostPort: {during:#?}"
    );

    stop_and_remove(&mut rt, &a).await;
    stop_and_remove(&mut rt, &b).await;
    assert!(net.leases().is_empty(), "leases left: {:?}", net.leases());
    assert_eq!(net.bridge_ports(), "", "veths left on the bridge");
    assert!(cache_files(&d).is_empty(), "{:?}", cache_files(&d));
    let after = ours(&iptables_lines());
    assert!(after.is_empty(), "iptables rules left: {after:#?}");
    // Stop and remove again: idempotent, no network errors.
    stop_and_remove(&mut rt, &a).await;
}

#[tokio::test]
async fn dual_stack_pod_reports_both_addresses() {
    require_cni!();
    let mut net = Net::new();
    let mut flags = net.flags();
    flags.push("--ipv6-dual-stack".into());
    let d = Daemon::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    net.write_conflist(
        &d,
        vec![net.bridge(
            "bridge",
            json!([[{"subnet": net.v4}], [{"subnet": net.v6}]]),
        )],
    );
    let mut rt = d.runtime().await;
    let cfg = pod_config(&mut net, "ds", &d);
    let id = try_run_pod_sandbox(&mut rt, &cfg)
        .await
        .expect("RunPodSandbox");
    let st = network_status(&mut rt, &id).await;
    assert!(st.ip.starts_with(&net.v4_prefix), "{st:?}");
    assert_eq!(st.additional_ips.len(), 1, "{st:?}");
    assert!(
        st.additional_ips[0].ip.starts_with(&net.v6_prefix),
        "{st:?} vs {}",
        net.v6
    );
    stop_and_remove(&mut rt, &id).await;
    assert!(net.leases().is_empty(), "{:?}", net.leases());
}

#[tokio::test]
async fn without_cni_config_pods_are_refused_host_network_pods_run_and_ready_flips() {
    require_cni!();
    let mut net = Net::new();
    let flags = net.flags();
    let d = Daemon::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut rt = d.runtime().await;
    let nr = condition(&mut rt, "NetworkReady").await;
    assert!(!nr.status);
    assert_eq!(nr.reason, "NetworkPluginNotReady");

    // A pod network pod is refused, leaving nothing.
    let cfg = pod_config(&mut net, "early", &d);
    let e = try_run_pod_sandbox(&mut rt, &cfg).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("cni config uninitialized"), "{e:?}");
    assert_eq!(uid_containers(&cfg.metadata.as_ref().unwrap().uid), "");
    assert!(checkpoints(&d).is_empty(), "{:?}", checkpoints(&d));

    // A hostNetwork pod runs without CNI: no cache file, no IP of its own.
    let mut host = pod_config(&mut net, "host", &d);
    host.linux = host_network();
    let hid = try_run_pod_sandbox(&mut rt, &host)
        .await
        .expect("hostNetwork RunPodSandbox");
    assert_eq!(network_status(&mut rt, &hid).await.ip, "");

    // A conflist appears while the daemon runs: NetworkReady flips, pods run.
    net.write_conflist(&d, net.standard());
    let nr = condition(&mut rt, "NetworkReady").await;
    assert!(nr.status, "{nr:?}");
    let id = try_run_pod_sandbox(&mut rt, &cfg)
        .await
        .expect("RunPodSandbox after the conflist");
    assert!(
        network_status(&mut rt, &id)
            .await
            .ip
            .starts_with(&net.v4_prefix)
    );
    // Only the pod-network pod has cache entries.
    let files = cache_files(&d);
    assert!(files.iter().all(|f| !f.contains(&hid)), "{files:?}");
    assert!(files.iter().any(|f| f.contains(&id)), "{files:?}");
    stop_and_remove(&mut rt, &hid).await;
    stop_and_remove(&mut rt, &id).await;
    assert!(cache_files(&d).is_empty(), "{:?}", cache_files(&d));
    assert!(net.leases().is_empty());
}

#[tokio::test]
async fn failing_plugin_fails_run_pod_sandbox_and_leaves_nothing() {
    require_cni!();
    let mut net = Net::new();
    net.fixture(
        "boom",
        "if [ \"$CNI_COMMAND\" = ADD ]; then\n  \
         echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"boom refuses\",\"details\":\"fixture says no\"}'\n  \
         exit 1\nfi\nexit 0",
    );
    let flags = net.flags();
    let d = Daemon::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    net.write_conflist(
        &d,
        vec![
            net.bridge("bridge", json!([[{"subnet": net.v4}]])),
            json!({"type": "boom"}),
        ],
    );
    let mut rt = d.runtime().await;
    let cfg = pod_config(&mut net, "boom", &d);
    let e = try_run_pod_sandbox(&mut rt, &cfg).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    for want in ["boom refuses", "fixture says no", "code 7"] {
        assert!(
            e.message().contains(want),
            "{want:?} missing: {}",
            e.message()
        );
    }
    assert_eq!(uid_containers(&cfg.metadata.as_ref().unwrap().uid), "");
    assert!(checkpoints(&d).is_empty(), "{:?}", checkpoints(&d));
    assert!(cache_files(&d).is_empty(), "{:?}", cache_files(&d));
    assert!(net.leases().is_empty(), "{:?}", net.leases());
    assert_eq!(net.bridge_ports(), "", "veth left on the bridge");
}

#[tokio::test]
async fn daemon_killed_during_cni_add_leaves_nothing_after_restart_and_stop() {
    require_cni!();
    let mut net = Net::new();
    let mark = net.dir.path().join("added");
    // The real bridge plugin, then (on ADD) a long pause before answering.
    net.fixture(
        "slowbridge",
        &format!(
            "out=$({PLUGINS}/bridge)\nrc=$?\nif [ \"$CNI_COMMAND\" = ADD ]; then touch {}; sleep 20; fi\nprintf '%s' \"$out\"\nexit $rc",
            mark.display()
        ),
    );
    let flags = net.flags();
    let mut d = Daemon::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    net.write_conflist(
        &d,
        vec![net.bridge("slowbridge", json!([[{"subnet": net.v4}]]))],
    );
    let cfg = pod_config(&mut net, "killed", &d);
    let uid = cfg.metadata.as_ref().unwrap().uid.clone();
    let mut rt = d.runtime().await;
    let pending = tokio::spawn(async move { try_run_pod_sandbox(&mut rt, &cfg).await });
    for _ in 0..200 {
        if mark.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(mark.exists(), "ADD never ran; log:\n{}", d.log());
    assert_eq!(net.leases().len(), 1, "the bridge ADD took a lease");
    d.kill_and_restart().await;
    assert!(pending.await.unwrap().is_err());

    let mut rt = d.runtime().await;
    let listed = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: HashMap::from([("pntest".to_string(), net.id.clone())]),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    // The checkpoint is written before the pause container starts, so the pod is listed
    // (NOTREADY or READY without an answer ever given) and kubelet stops and removes it.
    assert_eq!(listed.len(), 1, "{listed:?}");
    for s in &listed {
        stop_and_remove(&mut rt, &s.id).await;
    }
    assert_eq!(uid_containers(&uid), "", "containers left");
    assert!(cache_files(&d).is_empty(), "{:?}", cache_files(&d));
    assert!(net.leases().is_empty(), "leases left: {:?}", net.leases());
    assert_eq!(net.bridge_ports(), "", "veth left on the bridge");
    assert!(checkpoints(&d).is_empty(), "{:?}", checkpoints(&d));
}

#[tokio::test]
async fn start_up_gc_releases_attachments_of_vanished_sandboxes_and_remove_detaches() {
    require_cni!();
    let mut net = Net::new();
    let flags = net.flags();
    let mut d = Daemon::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    net.write_conflist(&d, net.standard());
    let mut rt = d.runtime().await;
    let gone_cfg = pod_config(&mut net, "gone", &d);
    let gone = try_run_pod_sandbox(&mut rt, &gone_cfg)
        .await
        .expect("RunPodSandbox");
    let kept_cfg = pod_config(&mut net, "kept", &d);
    let kept = try_run_pod_sandbox(&mut rt, &kept_cfg)
        .await
        .expect("RunPodSandbox");
    let kept_ip = network_status(&mut rt, &kept).await.ip;
    assert_eq!(net.leases().len(), 2);

    // The daemon dies and, meanwhile, one pause container disappears behind its back.
    let _ = d.child.kill();
    let _ = d.child.wait();
    sh("docker", &["rm", "-f", &gone]);
    d.kill_and_restart().await;
    let mut rt = d.runtime().await;
    // Any call waits for start-up recovery (and its GC).
    let listed = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(
        listed.iter().any(|s| s.id == gone),
        "checkpoint keeps it listed"
    );
    let files = cache_files(&d);
    assert!(files.iter().all(|f| !f.contains(&gone)), "{files:?}");
    assert!(files.iter().any(|f| f.contains(&kept)), "{files:?}");
    assert_eq!(
        net.leases(),
        BTreeSet::from([kept_ip.clone()]),
        "only the running pod keeps its lease"
    );
    assert_eq!(network_status(&mut rt, &kept).await.ip, kept_ip);
    stop_and_remove(&mut rt, &gone).await;

    // RemovePodSandbox without StopPodSandbox detaches the running pod first.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: kept.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    assert!(net.leases().is_empty(), "{:?}", net.leases());
    assert!(cache_files(&d).is_empty(), "{:?}", cache_files(&d));
    assert_eq!(net.bridge_ports(), "", "veth left on the bridge");
    assert!(checkpoints(&d).is_empty(), "{:?}", checkpoints(&d));
}
