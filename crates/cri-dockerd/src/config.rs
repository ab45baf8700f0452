//! Command-line flags (the Go cri-dockerd's names and defaults) and their validation into [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// Default CRI socket, as the Go cri-dockerd.
pub const DEFAULT_CRI_ENDPOINT: &str = "unix:///var/run/cri-dockerd.sock";
/// Default Docker socket.
pub const DEFAULT_DOCKER_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// Default pause image.
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// Raw flags as given on the command line. Validated into [`Config`] by [`Flags::validate`].
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cri-dockerd",
    about = "CRI that connects to the Docker Daemon",
    long_about = "cri-dockerd serves the Kubernetes Container Runtime Interface (CRI v1 and v1alpha2) \
                  over gRPC and runs pods and containers on Docker Engine.",
    disable_version_flag = true
)]
pub struct Flags {
    /// The endpoint of the CRI server: unix://<path>, tcp://<host:port> or fd:// (systemd socket activation).
    #[arg(long, default_value = DEFAULT_CRI_ENDPOINT, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: String,

    /// Use this for the docker endpoint to communicate with (unix:// or tcp://). Defaults to $DOCKER_HOST, then unix:///var/run/docker.sock.
    #[arg(long, value_name = "ENDPOINT")]
    pub docker_endpoint: Option<String>,

    /// Path to the cri-dockerd root directory (checkpoints and other state).
    #[arg(long, default_value = "/var/lib/cri-dockerd", value_name = "DIR")]
    pub cri_dockerd_root_directory: PathBuf,

    /// The image whose network/ipc namespaces containers in each pod will use.
    #[arg(long, default_value = DEFAULT_PAUSE_IMAGE, value_name = "IMAGE")]
    pub pod_infra_container_image: String,

    /// If no pulling progress is made before this deadline, the image pull is cancelled (e.g. 1m, 90s, 1m30s).
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    pub image_pull_progress_deadline: String,

    /// Timeout of all runtime requests except long running requests such as pull, logs, exec and attach.
    #[arg(long, default_value = "2m", value_name = "DURATION")]
    pub runtime_request_timeout: String,

    /// The address the streaming server (exec, attach, port-forward) binds to; default is loopback with a random port.
    #[arg(long, default_value = "", value_name = "HOST:PORT")]
    pub streaming_bind_addr: String,

    /// The name of the network plugin to be invoked for various events in pod lifecycle: cni, kubenet, or no-op/empty.
    #[arg(long, default_value = "cni", value_name = "NAME")]
    pub network_plugin: String,

    /// A comma-separated list of full paths of directories in which to search for CNI plugin binaries.
    #[arg(long, default_value = "/opt/cni/bin", value_name = "DIRS")]
    pub cni_bin_dir: String,

    /// The full path of the directory in which to search for CNI config files.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub cni_conf_dir: PathBuf,

    /// The full path of the directory in which CNI should store cache files.
    #[arg(long, default_value = "/var/lib/cni/cache", value_name = "DIR")]
    pub cni_cache_dir: PathBuf,

    /// The CIDR to use for pod IP addresses, only used in standalone mode (kubenet).
    #[arg(long, default_value = "", value_name = "CIDR")]
    pub pod_cidr: String,

    /// Enable IPv6 dual stack support.
    #[arg(long, default_value_t = false)]
    pub ipv6_dual_stack: bool,

    /// The MTU to be passed to the network plugin, to override the default. Set to 0 to use the default.
    #[arg(long, default_value_t = 0, value_name = "MTU")]
    pub network_plugin_mtu: u32,

    /// How hairpin NAT is configured: promiscuous-bridge, hairpin-veth or none.
    #[arg(long, default_value = "promiscuous-bridge", value_name = "MODE")]
    pub hairpin_mode: String,

    /// Optional absolute name of cgroups to create and run the runtime in.
    #[arg(long, default_value = "", value_name = "CGROUP")]
    pub runtime_cgroups: String,

    /// The log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// Log format: text or json.
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    pub log_format: String,

    /// Clamp negative oom_score_adj values to what this host allows: auto (detect), true or false.
    #[arg(long, default_value = "auto", value_name = "auto|true|false")]
    pub restrict_oom_score_adj: String,

    /// Prints the version of cri-dockerd.
    #[arg(long, default_value_t = false)]
    pub version: bool,

    /// Prints the build information about cri-dockerd.
    #[arg(long, default_value_t = false)]
    pub buildinfo: bool,
}

/// Where the CRI server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
    /// The systemd socket-activated listener (LISTEN_FDS).
    Fd,
}

/// How hairpin traffic is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HairpinMode {
    /// Put the bridge into promiscuous mode.
    PromiscuousBridge,
    /// Set hairpin on each pod's bridge port.
    HairpinVeth,
    /// Do nothing.
    None,
}

/// Network plugin choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkPluginKind {
    /// CNI plugins from --cni-bin-dir / --cni-conf-dir.
    Cni,
    /// The built-in kubenet configuration.
    Kubenet,
    /// Docker's own bridge networking (not for Kubernetes clusters).
    NoOp,
}

/// Whether negative oom_score_adj values are clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomScoreRestrict {
    /// Detect at start-up.
    Auto,
    /// Always clamp.
    Always,
    /// Never clamp.
    Never,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub cri_endpoint: Endpoint,
    /// Docker endpoint as a URL (`unix:///…` or `tcp://…`).
    pub docker_endpoint: String,
    pub root_dir: PathBuf,
    pub pause_image: String,
    pub image_pull_progress_deadline: Duration,
    pub runtime_request_timeout: Duration,
    pub streaming_bind_addr: Option<SocketAddr>,
    pub network_plugin: NetworkPluginKind,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: PathBuf,
    pub cni_cache_dir: PathBuf,
    pub pod_cidr: Option<String>,
    pub ipv6_dual_stack: bool,
    pub network_plugin_mtu: u32,
    pub hairpin_mode: HairpinMode,
    pub runtime_cgroups: Option<String>,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    pub restrict_oom_score_adj: OomScoreRestrict,
}

/// A flag with a bad value. Displays as one line naming the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid value {value:?} for flag --{flag}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

fn flag_err(flag: &'static str, value: &str, reason: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Flags {
    /// Validate the flags into a [`Config`]. `docker_host_env` is `$DOCKER_HOST`, used when
    /// `--docker-endpoint` is not given.
    pub fn validate(&self, docker_host_env: Option<&str>) -> Result<Config, FlagError> {
        let cri_endpoint = parse_cri_endpoint(&self.container_runtime_endpoint).map_err(|r| {
            flag_err(
                "container-runtime-endpoint",
                &self.container_runtime_endpoint,
                r,
            )
        })?;

        let docker_endpoint = match (&self.docker_endpoint, docker_host_env) {
            (Some(e), _) => e.clone(),
            (None, Some(env)) if !env.is_empty() => env.to_string(),
            _ => DEFAULT_DOCKER_ENDPOINT.to_string(),
        };
        validate_docker_endpoint(&docker_endpoint)
            .map_err(|r| flag_err("docker-endpoint", &docker_endpoint, r))?;

        if self.pod_infra_container_image.trim().is_empty() {
            return Err(flag_err(
                "pod-infra-container-image",
                "",
                "must not be empty",
            ));
        }

        let image_pull_progress_deadline = parse_go_duration(&self.image_pull_progress_deadline)
            .map_err(|r| {
                flag_err(
                    "image-pull-progress-deadline",
                    &self.image_pull_progress_deadline,
                    r,
                )
            })?;
        let runtime_request_timeout = parse_go_duration(&self.runtime_request_timeout)
            .map_err(|r| flag_err("runtime-request-timeout", &self.runtime_request_timeout, r))?;

        let streaming_bind_addr = if self.streaming_bind_addr.is_empty() {
            None
        } else {
            Some(
                self.streaming_bind_addr
                    .parse::<SocketAddr>()
                    .map_err(|e| {
                        flag_err(
                            "streaming-bind-addr",
                            &self.streaming_bind_addr,
                            e.to_string(),
                        )
                    })?,
            )
        };

        let network_plugin = match self.network_plugin.as_str() {
            "cni" => NetworkPluginKind::Cni,
            "kubenet" => NetworkPluginKind::Kubenet,
            "" | "no-op" | "noop" => NetworkPluginKind::NoOp,
            _ => {
                return Err(flag_err(
                    "network-plugin",
                    &self.network_plugin,
                    "must be one of cni, kubenet, no-op",
                ));
            }
        };

        let cni_bin_dirs: Vec<PathBuf> = self
            .cni_bin_dir
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if network_plugin != NetworkPluginKind::NoOp && cni_bin_dirs.is_empty() {
            return Err(flag_err(
                "cni-bin-dir",
                &self.cni_bin_dir,
                "needs at least one directory",
            ));
        }
        for d in &cni_bin_dirs {
            check_dir_if_exists(d).map_err(|r| flag_err("cni-bin-dir", &self.cni_bin_dir, r))?;
        }
        check_dir_if_exists(&self.cni_conf_dir)
            .map_err(|r| flag_err("cni-conf-dir", &self.cni_conf_dir.to_string_lossy(), r))?;
        check_dir_if_exists(&self.cni_cache_dir)
            .map_err(|r| flag_err("cni-cache-dir", &self.cni_cache_dir.to_string_lossy(), r))?;
        check_dir_if_exists(&self.cri_dockerd_root_directory).map_err(|r| {
            flag_err(
                "cri-dockerd-root-directory",
                &self.cri_dockerd_root_directory.to_string_lossy(),
                r,
            )
        })?;
        if !self.cri_dockerd_root_directory.is_absolute() {
            return Err(flag_err(
                "cri-dockerd-root-directory",
                &self.cri_dockerd_root_directory.to_string_lossy(),
                "must be an absolute path",
            ));
        }

        let pod_cidr = if self.pod_cidr.is_empty() {
            None
        } else {
            validate_cidr(&self.pod_cidr).map_err(|r| flag_err("pod-cidr", &self.pod_cidr, r))?;
            Some(self.pod_cidr.clone())
        };

        let hairpin_mode = match self.hairpin_mode.as_str() {
            "promiscuous-bridge" => HairpinMode::PromiscuousBridge,
            "hairpin-veth" => HairpinMode::HairpinVeth,
            "none" => HairpinMode::None,
            _ => {
                return Err(flag_err(
                    "hairpin-mode",
                    &self.hairpin_mode,
                    "must be one of promiscuous-bridge, hairpin-veth, none",
                ));
            }
        };

        if self.network_plugin_mtu != 0 && !(68..=65535).contains(&self.network_plugin_mtu) {
            return Err(flag_err(
                "network-plugin-mtu",
                &self.network_plugin_mtu.to_string(),
                "must be 0 (plugin default) or between 68 and 65535",
            ));
        }

        let runtime_cgroups = if self.runtime_cgroups.is_empty() {
            None
        } else if !self.runtime_cgroups.starts_with('/') {
            return Err(flag_err(
                "runtime-cgroups",
                &self.runtime_cgroups,
                "must be an absolute cgroup name starting with /",
            ));
        } else {
            Some(self.runtime_cgroups.clone())
        };

        let log_level = match self.log_level.to_ascii_lowercase().as_str() {
            "error" | "fatal" | "panic" => tracing::Level::ERROR,
            "warn" | "warning" => tracing::Level::WARN,
            "info" => tracing::Level::INFO,
            "debug" => tracing::Level::DEBUG,
            "trace" => tracing::Level::TRACE,
            _ => {
                return Err(flag_err(
                    "log-level",
                    &self.log_level,
                    "must be one of error, warn, info, debug, trace",
                ));
            }
        };
        let log_format = match self.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(flag_err(
                    "log-format",
                    &self.log_format,
                    "must be text or json",
                ));
            }
        };
        let restrict_oom_score_adj = match self.restrict_oom_score_adj.as_str() {
            "auto" => OomScoreRestrict::Auto,
            "true" => OomScoreRestrict::Always,
            "false" => OomScoreRestrict::Never,
            _ => {
                return Err(flag_err(
                    "restrict-oom-score-adj",
                    &self.restrict_oom_score_adj,
                    "must be auto, true or false",
                ));
            }
        };

        Ok(Config {
            cri_endpoint,
            docker_endpoint,
            root_dir: self.cri_dockerd_root_directory.clone(),
            pause_image: self.pod_infra_container_image.clone(),
            image_pull_progress_deadline,
            runtime_request_timeout,
            streaming_bind_addr,
            network_plugin,
            cni_bin_dirs,
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_cache_dir: self.cni_cache_dir.clone(),
            pod_cidr,
            ipv6_dual_stack: self.ipv6_dual_stack,
            network_plugin_mtu: self.network_plugin_mtu,
            hairpin_mode,
            runtime_cgroups,
            log_level,
            log_format,
            restrict_oom_score_adj,
        })
    }
}

impl Config {
    /// A configuration with every default, rooted in `root_dir` and serving on `socket`.
    /// For tests and embedders.
    pub fn for_test(root_dir: &Path, socket: &Path) -> Config {
        let flags = Flags::parse_from(["cri-dockerd"]);
        let mut cfg = flags
            .validate(None)
            .unwrap_or_else(|e| panic!("default flags: {e}"));
        cfg.root_dir = root_dir.to_path_buf();
        cfg.cri_endpoint = Endpoint::Unix(socket.to_path_buf());
        cfg
    }
}

/// Parse `--container-runtime-endpoint`.
pub fn parse_cri_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if path.is_empty() || !path.starts_with('/') {
            return Err("unix:// needs an absolute socket path".into());
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    if let Some(addr) = s.strip_prefix("tcp://") {
        return addr
            .parse::<SocketAddr>()
            .map(Endpoint::Tcp)
            .map_err(|e| format!("tcp:// needs host:port with an IP address ({e})"));
    }
    if s == "fd://" || s.starts_with("fd://") && s["fd://".len()..].is_empty() {
        return Ok(Endpoint::Fd);
    }
    if s.starts_with('/') {
        // The Go original accepts a bare path as a unix socket.
        return Ok(Endpoint::Unix(PathBuf::from(s)));
    }
    Err("unknown scheme: use unix://<path>, tcp://<ip:port> or fd://".into())
}

fn validate_docker_endpoint(s: &str) -> Result<(), String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if path.starts_with('/') {
            return Ok(());
        }
        return Err("unix:// needs an absolute socket path".into());
    }
    if let Some(rest) = s
        .strip_prefix("tcp://")
        .or_else(|| s.strip_prefix("http://"))
    {
        if !rest.is_empty() {
            return Ok(());
        }
        return Err("tcp:// needs host:port".into());
    }
    Err("unknown scheme: use unix://<path> or tcp://<host:port>".into())
}

fn check_dir_if_exists(p: &Path) -> Result<(), String> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("directory is not readable: {e}")),
        },
        Ok(_) => Err("exists and is not a directory".into()),
        // A directory that does not exist yet is created when needed (or watched for, as --cni-conf-dir).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

fn validate_cidr(s: &str) -> Result<(), String> {
    for part in s.split(',') {
        let (ip, len) = part
            .split_once('/')
            .ok_or_else(|| format!("{part:?} is not a CIDR (address/prefix)"))?;
        let ip: std::net::IpAddr = ip.parse().map_err(|e| format!("{part:?}: {e}"))?;
        let len: u8 = len.parse().map_err(|e| format!("{part:?}: prefix: {e}"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("{part:?}: prefix longer than {max}"));
        }
    }
    Ok(())
}

/// Parse a Go `time.ParseDuration` string ("1m", "1m30s", "1.5h", "300ms", "0").
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err("duration must not be negative".into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += n * mult;
    }
    Ok(Duration::from_secs_f64(total))
}
