//! The translation's real-dockerd proof: a rich `ContainerConfig` (and its pod's sandbox) goes
//! through `convert::{sandbox_spec, container_spec}`, the containers are created in real Docker,
//! and every mapped field is checked in `docker inspect` and from inside the container: env,
//! user/groups, capabilities, read-only rootfs, mounts and rslave propagation, cpu/memory limits
//! in the cgroup files, masked paths, a seccomp profile blocking a syscall; then privileged.
//!
//! Two ways to create the containers: through `ContainerApi::create_container` (the adapter,
//! arriving with the sandbox branch: that test is ignored until the merge) and through a
//! test-only oracle posting the equivalent Docker API JSON with curl, which proves today that
//! Docker 20.10 accepts and enforces what the translation produces.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cri_dockerd::config::OomScoreRestrict;
use cri_dockerd::docker::{ContainerApi, ContainerSpec, DockerClient, Propagation};
use cri_dockerd::service::convert::{self, SandboxContext};
use cri_dockerd::service::{host, inputs};
use k8s_cri::v1 as cri;
use serde_json::{Value, json};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// Removes the containers (and the shared bind mount) it knows about on drop.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in self.containers.iter().rev() {
            let _ = common::docker_try(&["rm", "-f", c]);
        }
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// The Docker API create body for `spec`: the same mapping the adapter does, as test oracle.
fn create_body(spec: &ContainerSpec) -> Value {
    let h = &spec.host;
    let mounts: Vec<Value> = h
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only,
                "BindOptions": {"Propagation": match m.propagation {
                    Propagation::Private => "rprivate",
                    Propagation::RSlave => "rslave",
                    Propagation::RShared => "rshared",
                }},
            })
        })
        .collect();
    let devices: Vec<Value> = h
        .devices
        .iter()
        .map(|d| json!({"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container, "CgroupPermissions": d.cgroup_permissions}))
        .collect();
    let mut hc = json!({
        "Mounts": mounts, "Devices": devices,
        "NetworkMode": h.network_mode, "IpcMode": h.ipc_mode, "PidMode": h.pid_mode,
        "UTSMode": h.uts_mode, "Privileged": h.privileged, "ReadonlyRootfs": h.readonly_rootfs,
        "CapAdd": h.cap_add, "CapDrop": h.cap_drop, "SecurityOpt": h.security_opt,
        "GroupAdd": h.group_add, "Sysctls": h.sysctls, "CgroupParent": h.cgroup_parent,
        "CpuPeriod": h.resources.cpu_period, "CpuQuota": h.resources.cpu_quota,
        "CpuShares": h.resources.cpu_shares, "Memory": h.resources.memory,
        "MemorySwap": h.resources.memory_swap, "CpusetCpus": h.resources.cpuset_cpus,
        "CpusetMems": h.resources.cpuset_mems,
        "Dns": h.dns, "DnsSearch": h.dns_search, "DnsOptions": h.dns_options,
    });
    if let Some(o) = h.oom_score_adj {
        hc["OomScoreAdj"] = json!(o);
    }
    if let Some(p) = &h.masked_paths {
        hc["MaskedPaths"] = json!(p);
    }
    if let Some(p) = &h.readonly_paths {
        hc["ReadonlyPaths"] = json!(p);
    }
    if !h.runtime.is_empty() {
        hc["Runtime"] = json!(h.runtime);
    }
    if let Some(l) = &h.log_config {
        hc["LogConfig"] = json!({"Type": l.driver, "Config": l.options});
    }
    let mut body = json!({
        "Image": spec.image, "Env": spec.env, "Labels": spec.labels,
        "WorkingDir": spec.working_dir, "User": spec.user, "Hostname": spec.hostname,
        "Tty": spec.tty, "OpenStdin": spec.open_stdin, "StdinOnce": spec.stdin_once,
        "HostConfig": hc,
    });
    if let Some(e) = &spec.entrypoint {
        body["Entrypoint"] = json!(e);
    }
    if let Some(c) = &spec.cmd {
        body["Cmd"] = json!(c);
    }
    body
}

enum Creator {
    Api(DockerClient),
    Oracle,
}

impl Creator {
    async fn create_and_start(&self, spec: &ContainerSpec, cleanup: &mut Cleanup) -> String {
        let id = match self {
            Creator::Api(client) => client
                .create_container(spec)
                .await
                .expect("ContainerApi::create_container"),
            Creator::Oracle => {
                let body = create_body(spec).to_string();
                let out = Command::new("curl")
                    .args([
                        "-sS",
                        "--unix-socket",
                        "/var/run/docker.sock",
                        "-H",
                        "Content-Type: application/json",
                        "-d",
                    ])
                    .arg(&body)
                    .arg(format!(
                        "http://localhost/v1.41/containers/create?name={}",
                        spec.name
                    ))
                    .output()
                    .expect("curl");
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                    panic!(
                        "docker create answered {}",
                        String::from_utf8_lossy(&out.stdout)
                    )
                });
                v["Id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("docker create failed: {v}\nbody: {body}"))
                    .to_string()
            }
        };
        cleanup.containers.push(id.clone());
        match self {
            Creator::Api(client) => client.start_container(&id).await.expect("start"),
            Creator::Oracle => {
                let (ok, out) = common::docker_try(&["start", &id]);
                assert!(ok, "docker start {}: {out}", spec.name);
            }
        }
        id
    }
}

fn exec(id: &str, script: &str) -> (bool, String) {
    common::docker_try(&["exec", id, "sh", "-c", script])
}

fn inspect(id: &str, format: &str) -> String {
    common::docker(&["inspect", "--format", format, id])
}

fn cap_mask(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim_start_matches(':').trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

fn bit(name: &str) -> u64 {
    let i = host::CAPABILITIES
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("unknown cap {name}"));
    1 << i
}

/// A bind mount of a fresh directory onto itself, made shared so rslave works from it.
fn shared_dir(dir: &Path, cleanup: &mut Cleanup) -> PathBuf {
    let p = dir.join("shared");
    std::fs::create_dir_all(&p).expect("mkdir");
    let run = |args: &[&str]| {
        let ok = Command::new("mount")
            .args(args)
            .arg(&p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "mount {args:?} failed");
    };
    run(&["--bind", p.to_str().expect("utf8")]);
    cleanup.mounts.push(p.clone());
    run(&["--make-rshared"]);
    p
}

fn sandbox_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: "uid".into(),
            namespace: "ns".into(),
            attempt: 0,
        }),
        hostname: "podhost".into(),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            sysctls: HashMap::from([(
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "80".to_string(),
            )]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rich_config(data: &Path, shared: &Path, profile: &Path) -> cri::ContainerConfig {
    use cri::security_profile::ProfileType;
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "rich".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "cri-dockerd-test/busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["sleep".into()],
        args: vec!["1000".into()],
        working_dir: "/data".into(),
        envs: vec![cri::KeyValue {
            key: "GREETING".into(),
            value: "hello world".into(),
        }],
        mounts: vec![
            cri::Mount {
                container_path: "/data".into(),
                host_path: data.to_str().expect("utf8").into(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/ro".into(),
                host_path: data.to_str().expect("utf8").into(),
                readonly: true,
                ..Default::default()
            },
            cri::Mount {
                container_path: "/shared".into(),
                host_path: shared.to_str().expect("utf8").into(),
                propagation: cri::MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            },
        ],
        devices: vec![cri::Device {
            host_path: "/dev/null".into(),
            container_path: "/dev/mynull".into(),
            permissions: "rw".into(),
        }],
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 500,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["CHOWN".into()],
                    add_ambient_capabilities: vec![],
                }),
                run_as_user: Some(cri::Int64Value { value: 1234 }),
                run_as_group: Some(cri::Int64Value { value: 5678 }),
                supplemental_groups: vec![4000],
                readonly_rootfs: true,
                no_new_privs: true,
                masked_paths: vec!["/var/www".into()],
                readonly_paths: vec!["/proc/sys".into()],
                seccomp: Some(cri::SecurityProfile {
                    profile_type: ProfileType::Localhost as i32,
                    localhost_ref: profile.to_str().expect("utf8").into(),
                }),
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

const DENY_MKDIR: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#;

async fn rich_container_in_real_docker(creator: Creator) {
    let mut cleanup = Cleanup::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    // World-writable so uid 1234 can write.
    Command::new("chmod")
        .arg("777")
        .arg(&data)
        .status()
        .expect("chmod");
    std::fs::write(data.join("hello.txt"), "from host").expect("write");
    let shared = shared_dir(dir.path(), &mut cleanup);
    let profile = dir.path().join("deny-mkdir.json");
    std::fs::write(&profile, DENY_MKDIR).expect("profile");

    let host_ctx = host::detect("cgroupfs", OomScoreRestrict::Auto);
    let pod = unique("k8s_POD_convert");
    let sb_cfg = sandbox_config(&pod);
    let sb_host = inputs::sandbox_inputs(&sb_cfg, &host_ctx).expect("sandbox inputs");
    let sb_spec = convert::sandbox_spec(
        &sb_cfg,
        &pod,
        "cri-dockerd-test/pause:latest",
        HashMap::new(),
        "",
        &sb_host,
    )
    .expect("sandbox spec");
    let sandbox_id = creator.create_and_start(&sb_spec, &mut cleanup).await;

    // The sandbox: hostname, DNS, sysctl, shareable IPC, oom_score_adj as this host allows.
    assert_eq!(
        inspect(
            &sandbox_id,
            "{{.HostConfig.IpcMode}} {{.HostConfig.NetworkMode}}"
        ),
        "shareable none"
    );
    let want_oom = host_ctx.clamp_oom_score_adj(-998);
    assert_eq!(
        inspect(&sandbox_id, "{{.HostConfig.OomScoreAdj}}"),
        want_oom.to_string()
    );

    let cfg = rich_config(&data, &shared, &profile);
    let c_host = inputs::container_inputs(&cfg, &host_ctx).expect("container inputs");
    let ctx = SandboxContext {
        sandbox_id: sandbox_id.clone(),
        ..Default::default()
    };
    let name = unique("k8s_rich_convert");
    let spec = convert::container_spec(
        &cfg,
        &name,
        HashMap::from([("app".to_string(), "rich".to_string())]),
        &ctx,
        &c_host,
    )
    .expect("container spec");
    let id = creator.create_and_start(&spec, &mut cleanup).await;

    // docker inspect.
    assert_eq!(inspect(&id, "{{.Config.User}}"), "1234:5678");
    assert_eq!(inspect(&id, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(
        inspect(&id, "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"),
        format!("{} {}", 64 << 20, 64 << 20)
    );
    assert_eq!(
        inspect(
            &id,
            "{{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}} {{.HostConfig.CpuShares}}"
        ),
        "50000 100000 512"
    );
    assert_eq!(inspect(&id, "{{.HostConfig.OomScoreAdj}}"), "500");
    assert_eq!(
        inspect(&id, "{{.HostConfig.NetworkMode}}"),
        format!("container:{sandbox_id}")
    );
    assert_eq!(
        inspect(&id, "{{.HostConfig.PidMode}}"),
        format!("container:{sandbox_id}")
    );
    assert_eq!(inspect(&id, "{{.Config.Labels.app}}"), "rich");
    assert_eq!(inspect(&id, "{{.HostConfig.LogConfig.Type}}"), "json-file");
    let mounts = inspect(
        &id,
        "{{range .Mounts}}{{.Destination}}:{{.RW}}:{{.Propagation}} {{end}}",
    );
    for want in [
        "/data:true:rprivate",
        "/ro:false:rprivate",
        "/shared:true:rslave",
    ] {
        assert!(mounts.contains(want), "{want} not in {mounts}");
    }

    // Inside the container.
    let (_, env) = exec(&id, "echo \"$GREETING\"; pwd");
    assert_eq!(env.trim(), "hello world\n/data");
    let (_, ids) = exec(&id, "id");
    assert!(
        ids.contains("uid=1234") && ids.contains("gid=5678") && ids.contains("4000"),
        "{ids}"
    );
    let (_, status) = exec(&id, "cat /proc/self/status");
    let bnd = cap_mask(&status, "CapBnd");
    assert_ne!(bnd & bit("CAP_NET_ADMIN"), 0, "NET_ADMIN missing: {bnd:x}");
    assert_eq!(bnd & bit("CAP_CHOWN"), 0, "CHOWN not dropped: {bnd:x}");
    assert_eq!(bnd & bit("CAP_SYS_ADMIN"), 0, "SYS_ADMIN granted: {bnd:x}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let (ok, out) = exec(&id, "touch /rootfs-file");
    assert!(!ok && out.contains("Read-only"), "rootfs writable: {out}");
    let (ok, out) = exec(&id, "cat /ro/hello.txt && touch /ro/x");
    assert!(
        !ok && out.contains("from host") && out.contains("Read-only"),
        "{out}"
    );
    let (ok, out) = exec(&id, "echo hi > /data/new.txt && cat /data/new.txt");
    assert!(ok && out.contains("hi"), "{out}");
    let (ok, out) = exec(&id, "mkdir /data/sub");
    assert!(
        !ok && out.contains("Operation not permitted"),
        "seccomp did not block mkdir: {out}"
    );
    let (ok, out) = exec(&id, "ls /var/www/index.html");
    assert!(!ok, "masked path visible: {out}");
    let (ok, _) = exec(&id, "test -c /dev/mynull && echo x > /dev/mynull");
    assert!(ok, "device not usable");
    let (_, cg) = exec(
        &id,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares",
    );
    assert_eq!(
        cg.split_whitespace().collect::<Vec<_>>(),
        [(64u64 << 20).to_string().as_str(), "50000", "100000", "512"],
        "{cg}"
    );
    // PID namespace shared with the sandbox: pid 1 is pause.
    let (_, comm) = exec(&id, "cat /proc/1/comm");
    assert_eq!(comm.trim(), "pause");
    // Hostname and DNS come from the sandbox.
    let (_, h) = exec(&id, "hostname; cat /etc/resolv.conf");
    assert!(
        h.starts_with("podhost") && h.contains("nameserver 10.96.0.10") && h.contains("ndots:5"),
        "{h}"
    );
    let (_, s) = exec(&id, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start");
    assert_eq!(s.trim(), "80");
    // rslave: a mount made on the host after start shows up inside.
    let sub = shared.join("late");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "late", sub.to_str().expect("utf8")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mount tmpfs");
    cleanup.mounts.push(sub.clone());
    std::fs::write(sub.join("marker"), "propagated").expect("marker");
    let (_, m) = exec(&id, "cat /shared/late/marker");
    assert_eq!(m.trim(), "propagated");

    // Privileged, on this host: emulated unless the bounding set is full.
    let priv_cfg = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "priv".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "cri-dockerd-test/busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "1000".into()],
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let spec = convert::container_spec(
        &priv_cfg,
        &unique("k8s_priv_convert"),
        HashMap::new(),
        &ctx,
        &host_ctx,
    )
    .expect("privileged spec");
    let pid = creator.create_and_start(&spec, &mut cleanup).await;
    let (_, status) = exec(&pid, "cat /proc/self/status");
    let bnd = cap_mask(&status, "CapBnd");
    assert_ne!(bnd & bit("CAP_SYS_ADMIN"), 0);
    assert_ne!(bnd & bit("CAP_NET_ADMIN"), 0);
    assert!(status.contains("Seccomp:\t0"), "{status}");
    let (_, mounts) = exec(&pid, "cat /proc/mounts");
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(" /proc/sys ") && l.contains(" ro,")),
        "{mounts}"
    );
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(" /proc/timer_list ") || l.contains(" /proc/keys ")),
        "masked: {mounts}"
    );
    let (ok, out) = exec(
        &pid,
        "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted",
    );
    assert!(
        ok && out.contains("mounted"),
        "mount in privileged container: {out}"
    );
}

#[tokio::test]
async fn translation_is_enforced_by_real_docker() {
    require_docker!();
    rich_container_in_real_docker(Creator::Oracle).await;
}

#[tokio::test]

async fn translation_through_container_api() {
    require_docker!();
    let client = DockerClient::new(&common::docker_endpoint());
    rich_container_in_real_docker(Creator::Api(client)).await;
}

/// A pod in the host's network, PID and IPC namespaces: the sandbox and a container created from
/// the translation see the host's hostname, processes and IPC.
#[tokio::test]
async fn host_namespaces_pod_in_real_docker() {
    require_docker!();
    use cri::NamespaceMode as M;
    let mut cleanup = Cleanup::default();
    let host_ctx = host::detect("cgroupfs", OomScoreRestrict::Auto);
    let ns = cri::NamespaceOption {
        network: M::Node as i32,
        pid: M::Node as i32,
        ipc: M::Node as i32,
        ..Default::default()
    };
    let pod = unique("k8s_POD_hostns");
    let sb_cfg = cri::PodSandboxConfig {
        hostname: "ignored-for-host-network".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(ns.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sb_spec = convert::sandbox_spec(
        &sb_cfg,
        &pod,
        "cri-dockerd-test/pause:latest",
        HashMap::new(),
        "",
        &host_ctx,
    )
    .expect("sandbox spec");
    let sandbox_id = Creator::Oracle
        .create_and_start(&sb_spec, &mut cleanup)
        .await;
    assert_eq!(
        inspect(
            &sandbox_id,
            "{{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} {{.HostConfig.IpcMode}} {{.HostConfig.UTSMode}}"
        ),
        "host host host host"
    );

    let cfg = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "cri-dockerd-test/busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "1000".into()],
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(ns),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ctx = SandboxContext {
        sandbox_id: sandbox_id.clone(),
        ..Default::default()
    };
    let spec = convert::container_spec(
        &cfg,
        &unique("k8s_c_hostns"),
        HashMap::new(),
        &ctx,
        &host_ctx,
    )
    .expect("container spec");
    let id = Creator::Oracle.create_and_start(&spec, &mut cleanup).await;
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let (_, h) = exec(&id, "hostname");
    assert_eq!(h.trim(), host_name.trim());
    let (_, init) = exec(&id, "cat /proc/1/comm");
    let host_init = std::fs::read_to_string("/proc/1/comm").expect("comm");
    assert_eq!(init.trim(), host_init.trim());
    let (_, ipc) = exec(&id, "readlink /proc/self/ns/ipc");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").expect("ns");
    assert_eq!(ipc.trim(), host_ipc.to_string_lossy());
}
