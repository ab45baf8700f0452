//! `cri-dockerd doctor`: checks a node's setup for the configuration the daemon would run with
//! and prints each finding as OK / WARN / FAIL with the fix.
//!
//! The checks only read: nothing is pulled, created or removed. Each check has a stable `name`
//! (the JSON field names and check names are an interface for tools, see [`Report`]).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::config::{Endpoint, Flags, NetworkPluginKind};
use crate::docker::{DockerClient, Error as DockerError, ImageApi, SystemApi};
use crate::network;

/// Where kubelet's config file lives on a kubeadm node.
pub const DEFAULT_KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// The CRI sockets kubeadm looks for besides ours (containerd, CRI-O).
pub const DEFAULT_OTHER_CRI_SOCKETS: &str =
    "/var/run/containerd/containerd.sock,/var/run/crio/crio.sock";
/// Where `cri-docker.socket` puts the socket (`%t/cri-dockerd.sock`), as kubeadm names it.
const SOCKET_ACTIVATED_PATH: &str = "/var/run/cri-dockerd.sock";
/// How long doctor waits for any one answer (dockerd, our socket).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// `cri-dockerd doctor [daemon flags] [--output text|json] …`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cri-dockerd doctor",
    about = "Check this node's setup for cri-dockerd and explain how to fix what is wrong",
    disable_version_flag = true
)]
pub struct DoctorFlags {
    /// Output format: text or json.
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    pub output: String,

    /// kubelet's configuration file, read for its cgroupDriver.
    #[arg(long, default_value = DEFAULT_KUBELET_CONFIG, value_name = "PATH",
          env = "CRI_DOCKERD_DOCTOR_KUBELET_CONFIG")]
    pub kubelet_config: PathBuf,

    /// Comma-separated paths of other CRI sockets that make kubeadm ask which one to use.
    #[arg(long, default_value = DEFAULT_OTHER_CRI_SOCKETS, value_name = "PATHS",
          env = "CRI_DOCKERD_DOCTOR_OTHER_CRI_SOCKETS")]
    pub other_cri_sockets: String,

    /// The daemon's flags: doctor checks the configuration they describe.
    #[command(flatten)]
    pub daemon: Flags,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name: `docker`, `cgroup-driver`, `network-plugin`, `pause-image`, `cri-socket`,
    /// `other-cri-sockets`, `cri-versions`.
    pub name: &'static str,
    pub verdict: Verdict,
    /// What was found.
    pub message: String,
    /// What to do about it (empty when nothing needs doing).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(name: &'static str, verdict: Verdict, message: impl Into<String>) -> Check {
    Check {
        name,
        verdict,
        message: message.into(),
        fix: String::new(),
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = fix.into();
        self
    }
}

/// All findings; `verdict` is the worst of them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        let verdict = checks
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Ok);
        Report { verdict, checks }
    }

    /// Human-readable: one line per check, the fix indented below it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<5} {:<18} {}\n",
                c.verdict.as_str(),
                c.name,
                c.message
            ));
            if !c.fix.is_empty() {
                out.push_str(&format!("{:<24} fix: {}\n", "", c.fix));
            }
        }
        out.push_str(&format!("doctor: {}\n", self.verdict.as_str()));
        out
    }
}

/// What the doctor looks at: the daemon's configuration plus doctor's own paths.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub docker_endpoint: String,
    pub cri_endpoint: Endpoint,
    pub pause_image: String,
    pub network_plugin: NetworkPluginKind,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: PathBuf,
    pub kubelet_config: PathBuf,
    pub other_cri_sockets: Vec<PathBuf>,
}

/// Parse `cri-dockerd doctor …` (`args` without the program name and `doctor`) into [`Inputs`]
/// and the output format (true for JSON). Errors are one line naming the problem.
pub fn parse_args(
    args: &[std::ffi::OsString],
    docker_host_env: Option<&str>,
) -> Result<(Inputs, bool), String> {
    let mut full = vec![std::ffi::OsString::from("cri-dockerd doctor")];
    full.extend(args.iter().cloned());
    let flags = DoctorFlags::try_parse_from(full).map_err(|e| e.to_string())?;
    let json = match flags.output.as_str() {
        "json" => true,
        "text" => false,
        other => {
            return Err(format!(
                "invalid value {other:?} for flag --output: use text or json"
            ));
        }
    };
    let config = flags
        .daemon
        .validate(docker_host_env)
        .map_err(|e| e.to_string())?;
    let inputs = Inputs {
        docker_endpoint: config.docker_endpoint,
        cri_endpoint: config.cri_endpoint,
        pause_image: config.pause_image,
        network_plugin: config.network_plugin,
        cni_bin_dirs: config.cni_bin_dirs,
        cni_conf_dir: config.cni_conf_dir,
        kubelet_config: flags.kubelet_config,
        other_cri_sockets: flags
            .other_cri_sockets
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
    };
    Ok((inputs, json))
}

/// Run every check.
pub async fn run(inputs: &Inputs) -> Report {
    let docker = DockerClient::new(&inputs.docker_endpoint);
    let mut checks = Vec::new();
    let docker_up = match tokio::time::timeout(CALL_TIMEOUT, docker.version()).await {
        Ok(Ok(v)) => {
            checks.push(check(
                "docker",
                Verdict::Ok,
                format!(
                    "dockerd {} reachable at {}, API version {}",
                    v.version, inputs.docker_endpoint, v.api_version
                ),
            ));
            true
        }
        Ok(Err(e)) => {
            checks.push(docker_unreachable(&inputs.docker_endpoint, &e.to_string()));
            false
        }
        Err(_) => {
            checks.push(docker_unreachable(
                &inputs.docker_endpoint,
                &format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
            ));
            false
        }
    };
    checks.push(if docker_up {
        match tokio::time::timeout(CALL_TIMEOUT, docker.info()).await {
            Ok(Ok(info)) => cgroup_driver(&info.cgroup_driver, &inputs.kubelet_config),
            Ok(Err(e)) => check("cgroup-driver", Verdict::Warn, format!("docker info: {e}")),
            Err(_) => check("cgroup-driver", Verdict::Warn, "docker info: no answer"),
        }
    } else {
        skipped("cgroup-driver")
    });
    checks.push(network_plugin(inputs));
    checks.push(if docker_up {
        match tokio::time::timeout(CALL_TIMEOUT, docker.inspect_image(&inputs.pause_image)).await {
            Ok(r) => pause_image(&inputs.pause_image, r.map(|i| i.id)),
            Err(_) => check(
                "pause-image",
                Verdict::Warn,
                "docker image inspect: no answer",
            ),
        }
    } else {
        skipped("pause-image")
    });
    checks.push(cri_socket(&inputs.cri_endpoint));
    checks.push(other_cri_sockets(
        &inputs.cri_endpoint,
        &inputs.other_cri_sockets,
    ));
    checks.push(cri_versions(&inputs.cri_endpoint).await);
    Report::new(checks)
}

fn docker_unreachable(endpoint: &str, why: &str) -> Check {
    check(
        "docker",
        Verdict::Fail,
        format!("dockerd is not reachable at {endpoint}: {why}"),
    )
    .fix(
        "start Docker (systemctl enable --now docker) or point --docker-endpoint / DOCKER_HOST \
         at the daemon's socket",
    )
}

fn skipped(name: &'static str) -> Check {
    check(name, Verdict::Warn, "not checked: dockerd is not reachable")
        .fix("fix the docker check first")
}

/// `cgroupDriver` from kubelet's config file: `Ok(None)` when the file has no such key.
/// Only this one top-level key is read (`cgroupDriver: systemd`, optionally quoted).
pub fn kubelet_cgroup_driver(yaml: &str) -> Option<String> {
    yaml.lines().find_map(|line| {
        let rest = line.strip_prefix("cgroupDriver:")?;
        let value = rest.split('#').next().unwrap_or("").trim();
        Some(value.trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

fn cgroup_driver(docker_driver: &str, kubelet_config: &Path) -> Check {
    const NAME: &str = "cgroup-driver";
    let yaml = match std::fs::read_to_string(kubelet_config) {
        Ok(y) => y,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                NAME,
                Verdict::Ok,
                format!(
                    "Docker uses the {docker_driver} cgroup driver; {} does not exist yet \
                     (kubelet not configured): give kubelet cgroupDriver: {docker_driver}",
                    kubelet_config.display()
                ),
            );
        }
        Err(e) => {
            return check(
                NAME,
                Verdict::Warn,
                format!("cannot read {}: {e}", kubelet_config.display()),
            )
            .fix("run doctor as root");
        }
    };
    // kubelet's own default when the key is absent.
    let (kubelet, source) = match kubelet_cgroup_driver(&yaml) {
        Some(d) if !d.is_empty() => (d, "set"),
        _ => ("cgroupfs".to_string(), "default"),
    };
    if kubelet == docker_driver {
        check(
            NAME,
            Verdict::Ok,
            format!(
                "Docker and kubelet ({source} in {}) both use the {docker_driver} cgroup driver",
                kubelet_config.display()
            ),
        )
    } else {
        check(
            NAME,
            Verdict::Fail,
            format!(
                "Docker uses the {docker_driver} cgroup driver but kubelet uses {kubelet} \
                 ({source} in {}): pods fail to start",
                kubelet_config.display()
            ),
        )
        .fix(format!(
            "set cgroupDriver: {docker_driver} in {} and restart kubelet, or set \
             \"exec-opts\": [\"native.cgroupdriver={kubelet}\"] in /etc/docker/daemon.json and \
             restart Docker",
            kubelet_config.display()
        ))
    }
}

/// The plugin `type`s of a CNI config file (`.conflist`: each plugin's; `.conf`: its own).
fn cni_plugin_types(conf: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(conf) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    let ty = |p: &serde_json::Value| p.get("type").and_then(|t| t.as_str()).map(String::from);
    match v.get("plugins").and_then(|p| p.as_array()) {
        Some(plugins) => plugins.iter().filter_map(ty).collect(),
        None => ty(&v).into_iter().collect(),
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn missing_binaries(types: &[String], bin_dirs: &[PathBuf]) -> Vec<String> {
    types
        .iter()
        .filter(|t| !bin_dirs.iter().any(|d| is_executable(&d.join(t))))
        .cloned()
        .collect()
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn network_plugin(inputs: &Inputs) -> Check {
    const NAME: &str = "network-plugin";
    let bins = dirs_text(&inputs.cni_bin_dirs);
    match inputs.network_plugin {
        NetworkPluginKind::NoOp => check(
            NAME,
            Verdict::Warn,
            "--network-plugin=no-op: pods get Docker bridge addresses (172.17.x.x) that other \
             nodes cannot reach",
        )
        .fix(
            "use --network-plugin=cni and install a CNI (Calico, Flannel, Cilium, …) for a cluster",
        ),
        NetworkPluginKind::Kubenet => {
            let needed: Vec<String> = ["bridge", "host-local", "loopback"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let missing = missing_binaries(&needed, &inputs.cni_bin_dirs);
            if missing.is_empty() {
                check(
                    NAME,
                    Verdict::Ok,
                    format!(
                        "--network-plugin=kubenet; bridge, host-local, loopback found in {bins}"
                    ),
                )
            } else {
                check(
                    NAME,
                    Verdict::Fail,
                    format!(
                        "--network-plugin=kubenet needs CNI plugins missing from {bins}: {}",
                        missing.join(", ")
                    ),
                )
                .fix("install the CNI reference plugins (containernetworking-plugins) into --cni-bin-dir")
            }
        }
        NetworkPluginKind::Cni => {
            let conf_dir = inputs.cni_conf_dir.display();
            let Some(conf) = network::first_valid_conf(&inputs.cni_conf_dir) else {
                return check(
                    NAME,
                    Verdict::Warn,
                    format!(
                        "--network-plugin=cni but no valid CNI config in {conf_dir}: the network \
                         stays not ready and pods do not start"
                    ),
                )
                .fix(
                    "install a CNI (Calico, Flannel, Cilium, …); it writes its config into \
                     --cni-conf-dir and its binaries into --cni-bin-dir",
                );
            };
            let types = cni_plugin_types(&conf);
            let missing = missing_binaries(&types, &inputs.cni_bin_dirs);
            if missing.is_empty() {
                check(
                    NAME,
                    Verdict::Ok,
                    format!(
                        "--network-plugin=cni: {} uses plugins {} found in {bins}",
                        conf.display(),
                        types.join(", ")
                    ),
                )
            } else {
                check(
                    NAME,
                    Verdict::Fail,
                    format!(
                        "--network-plugin=cni: {} needs plugins missing from {bins}: {}",
                        conf.display(),
                        missing.join(", ")
                    ),
                )
                .fix("install the missing plugin binaries into --cni-bin-dir (or point --cni-bin-dir at them)")
            }
        }
    }
}

fn pause_image(image: &str, found: Result<String, DockerError>) -> Check {
    const NAME: &str = "pause-image";
    match found {
        Ok(id) => check(NAME, Verdict::Ok, format!("{image} is present ({id})")),
        Err(DockerError::NotFound(_)) => check(
            NAME,
            Verdict::Warn,
            format!(
                "{image} is not present locally; it is pulled when the first pod starts \
                 (doctor does not pull)"
            ),
        )
        .fix(format!(
            "make sure the registry is reachable (docker pull {image}), or on an air-gapped node \
             docker load the image or set --pod-infra-container-image to one that is present"
        )),
        Err(e) => check(NAME, Verdict::Warn, format!("cannot inspect {image}: {e}")),
    }
}

/// Whether something accepts connections on the unix socket at `path`.
fn listening(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The path kubelet and kubeadm should be given for our endpoint, if it is a unix socket.
fn our_socket_path(endpoint: &Endpoint) -> Option<PathBuf> {
    match endpoint {
        Endpoint::Unix(p) => Some(p.clone()),
        Endpoint::Fd => Some(PathBuf::from(SOCKET_ACTIVATED_PATH)),
        Endpoint::Tcp(_) => None,
    }
}

fn group_name(gid: u32) -> String {
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|g| {
            g.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == gid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

fn cri_socket(endpoint: &Endpoint) -> Check {
    const NAME: &str = "cri-socket";
    let path = match endpoint {
        Endpoint::Tcp(addr) => {
            return check(
                NAME,
                Verdict::Warn,
                format!("the CRI endpoint is tcp://{addr}: unauthenticated, anyone who can reach it controls Docker"),
            )
            .fix("use a unix socket (the default unix:///var/run/cri-dockerd.sock) unless kubelet runs elsewhere");
        }
        other => our_socket_path(other).unwrap_or_default(),
    };
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                NAME,
                Verdict::Warn,
                format!("{shown} does not exist: cri-dockerd is not running"),
            )
            .fix("start it: systemctl enable --now cri-docker.socket cri-docker.service");
        }
        Err(e) => return check(NAME, Verdict::Warn, format!("cannot stat {shown}: {e}")),
    };
    // `/var/run` is usually a symlink to `/run`; the socket itself must not be one we cannot follow.
    let meta = if meta.file_type().is_symlink() {
        match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                return check(
                    NAME,
                    Verdict::Fail,
                    format!("{shown} is a dangling symlink: {e}"),
                )
                .fix(format!("remove {shown} and restart cri-dockerd"));
            }
        }
    } else {
        meta
    };
    if !meta.file_type().is_socket() {
        return check(
            NAME,
            Verdict::Fail,
            format!("{shown} exists but is not a socket: cri-dockerd cannot listen there"),
        )
        .fix(format!("remove {shown} and restart cri-dockerd"));
    }
    let mode = meta.permissions().mode() & 0o777;
    let group = group_name(meta.gid());
    let perms = format!("mode {mode:04o}, owner uid {}, group {group}", meta.uid());
    if !listening(&path) {
        return check(
            NAME,
            Verdict::Warn,
            format!("{shown} is a socket ({perms}) but nothing is listening: a stale socket"),
        )
        .fix("start cri-dockerd (it replaces the stale socket): systemctl restart cri-docker.socket cri-docker.service");
    }
    if mode & 0o002 != 0 {
        return check(
            NAME,
            Verdict::Warn,
            format!(
                "{shown} is listening but world-writable ({perms}): any local user controls Docker"
            ),
        )
        .fix(format!(
            "chmod 0660 {shown} (cri-docker.socket sets SocketMode=0660)"
        ));
    }
    check(
        NAME,
        Verdict::Ok,
        format!("{shown} is a socket with a listener ({perms})"),
    )
}

fn other_cri_sockets(endpoint: &Endpoint, candidates: &[PathBuf]) -> Check {
    const NAME: &str = "other-cri-sockets";
    let ours = our_socket_path(endpoint);
    let found: Vec<String> = candidates
        .iter()
        .filter(|p| Some(*p) != ours.as_ref())
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
        .map(|p| p.display().to_string())
        .collect();
    let flag = format!(
        "--cri-socket unix://{}",
        ours.unwrap_or_else(|| PathBuf::from(SOCKET_ACTIVATED_PATH))
            .display()
    );
    if found.is_empty() {
        check(
            NAME,
            Verdict::Ok,
            format!(
                "no other CRI socket found (looked at {})",
                dirs_text(candidates)
            ),
        )
    } else {
        check(
            NAME,
            Verdict::Warn,
            format!(
                "other CRI sockets exist: {}; kubeadm finds several CRI endpoints and refuses to \
                 guess",
                found.join(", ")
            ),
        )
        .fix(format!(
            "pass {flag} to kubeadm init/join (or set nodeRegistration.criSocket), and \
             --container-runtime-endpoint the same to kubelet"
        ))
    }
}

async fn cri_versions(endpoint: &Endpoint) -> Check {
    const NAME: &str = "cri-versions";
    let uri = match endpoint {
        Endpoint::Tcp(addr) => format!("http://{addr}"),
        other => match our_socket_path(other) {
            Some(p) => format!("unix://{}", p.display()),
            None => String::new(),
        },
    };
    let channel = match tonic::transport::Endpoint::from_shared(uri.clone()) {
        Ok(ep) => ep.connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT),
        Err(e) => return check(NAME, Verdict::Fail, format!("bad endpoint {uri}: {e}")),
    };
    let channel = match channel.connect().await {
        Ok(c) => c,
        Err(_) => {
            return check(
                NAME,
                Verdict::Warn,
                format!(
                    "cannot connect to {uri}: cri-dockerd is not running, versions not checked"
                ),
            )
            .fix("start cri-dockerd and run doctor again");
        }
    };
    let v1 = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel.clone())
        .version(k8s_cri::v1::VersionRequest {
            version: "v1".into(),
        })
        .await;
    let alpha = k8s_cri::v1alpha2::runtime_service_client::RuntimeServiceClient::new(channel)
        .version(k8s_cri::v1alpha2::VersionRequest {
            version: "v1alpha2".into(),
        })
        .await;
    let alpha_text = match &alpha {
        Ok(r) => format!("v1alpha2 ({})", r.get_ref().runtime_api_version),
        Err(s) => format!("v1alpha2 not served ({:?}: {})", s.code(), s.message()),
    };
    match v1 {
        Ok(r) => {
            let r = r.into_inner();
            check(
                NAME,
                if alpha.is_ok() {
                    Verdict::Ok
                } else {
                    Verdict::Warn
                },
                format!(
                    "{uri} serves CRI v1 ({} {}, API {}) and {alpha_text}",
                    r.runtime_name, r.runtime_version, r.runtime_api_version
                ),
            )
        }
        Err(s) => check(
            NAME,
            Verdict::Fail,
            format!(
                "{uri} does not serve CRI v1 ({:?}: {}); {alpha_text}: kubelet 1.26+ needs v1",
                s.code(),
                s.message()
            ),
        )
        .fix("make sure the socket is cri-dockerd's and cri-dockerd is current"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_cgroup_driver_key() {
        let cases = [
            (
                "kind: KubeletConfiguration\ncgroupDriver: systemd\n",
                Some("systemd"),
            ),
            ("cgroupDriver: \"cgroupfs\" # comment\n", Some("cgroupfs")),
            ("cgroupDriver: 'systemd'\n", Some("systemd")),
            ("kind: KubeletConfiguration\n", None),
            ("  cgroupDriver: systemd\n", None),
        ];
        for (yaml, want) in cases {
            assert_eq!(kubelet_cgroup_driver(yaml).as_deref(), want, "{yaml:?}");
        }
    }

    #[test]
    fn report_verdict_is_the_worst() {
        let r = Report::new(vec![
            check("a", Verdict::Ok, "x"),
            check("b", Verdict::Warn, "y").fix("z"),
        ]);
        assert_eq!(r.verdict, Verdict::Warn);
        let text = r.to_text();
        assert!(text.contains("WARN  b"), "{text}");
        assert!(text.contains("fix: z"), "{text}");
        assert!(text.ends_with("doctor: WARN\n"), "{text}");
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["verdict"], "WARN");
        assert_eq!(v["checks"][0]["verdict"], "OK");
        assert!(v["checks"][0].get("fix").is_none());
    }

    #[test]
    fn cgroup_driver_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yaml");
        assert_eq!(cgroup_driver("systemd", &cfg).verdict, Verdict::Ok);
        std::fs::write(&cfg, "cgroupDriver: systemd\n").unwrap();
        assert_eq!(cgroup_driver("systemd", &cfg).verdict, Verdict::Ok);
        let c = cgroup_driver("cgroupfs", &cfg);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.fix.contains("cgroupDriver: cgroupfs"), "{}", c.fix);
        std::fs::write(&cfg, "kind: KubeletConfiguration\n").unwrap();
        assert_eq!(cgroup_driver("cgroupfs", &cfg).verdict, Verdict::Ok);
        assert_eq!(cgroup_driver("systemd", &cfg).verdict, Verdict::Fail);
    }
}
