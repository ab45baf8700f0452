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

/// Default `--runtime-request-timeout`; `0` also means this, as in the Go original.
pub const DEFAULT_RUNTIME_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

const AFTER_HELP: &str = "\
Flags take --name=value or --name value; boolean flags take --name or --name=<true|false> \
(Go forms 1, t, T, TRUE, True, 0, f, F, FALSE, False are accepted).
Durations use Go syntax: 300ms, 90s, 1m30s, 1.5h.
Every flag of the Go cri-dockerd is accepted with the same name, default and meaning, except: \
--network-plugin defaults to cni and --pod-infra-container-image to registry.k8s.io/pause:3.10. \
--log-format, --restrict-oom-score-adj and --metrics-bind-addr are additions of this \
implementation.";

/// Raw flags as given on the command line. Validated into [`Config`] by [`Flags::validate`].
///
/// Values are kept as strings so that every bad value is reported by [`Flags::validate`] as a
/// [`FlagError`] naming the flag, the way the Go original's pflag set reports them.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cri-dockerd",
    about = "CRI that connects to the Docker Daemon",
    long_about = "CRI that connects to the Docker Daemon.\n\n\
                  cri-dockerd serves the Kubernetes Container Runtime Interface (CRI v1 and \
                  v1alpha2) over gRPC and runs pods and containers on Docker Engine.",
    after_help = AFTER_HELP,
    disable_version_flag = true
)]
pub struct Flags {
    /// The endpoint of the CRI server: unix://PATH, tcp://HOST:PORT or fd:// (the socket
    /// systemd passes, as with cri-docker.socket).
    #[arg(long, default_value = DEFAULT_CRI_ENDPOINT, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: String,

    /// Use this for the docker endpoint to communicate with: unix://PATH, tcp://HOST:PORT
    /// or http://HOST:PORT. When unset: $DOCKER_HOST, then unix:///var/run/docker.sock.
    #[arg(long, value_name = "ENDPOINT")]
    pub docker_endpoint: Option<String>,

    /// Path to the cri-dockerd root directory (sandbox checkpoints and other state).
    #[arg(long, default_value = "/var/lib/cri-dockerd", value_name = "DIR", value_parser = any_path)]
    pub cri_dockerd_root_directory: PathBuf,

    /// The image whose network/ipc namespaces containers in each pod will use.
    #[arg(long, default_value = DEFAULT_PAUSE_IMAGE, value_name = "IMAGE")]
    pub pod_infra_container_image: String,

    /// If no pulling progress is made before this deadline, the image pulling will be cancelled.
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    pub image_pull_progress_deadline: String,

    /// If no runtime progress is made before this deadline, the operation will be cancelled
    /// (all calls except long-running ones: pull, logs, exec, attach). 0 means the default, 2m.
    #[arg(long, default_value = "2m", value_name = "DURATION")]
    pub runtime_request_timeout: String,

    /// The address to bind the CRI streaming server (exec, attach, port-forward) to: IP:PORT,
    /// or IP for a random port. Empty: the streaming server's default.
    #[arg(long, default_value = "", value_name = "ADDR")]
    pub streaming_bind_addr: String,

    /// The address to serve Prometheus metrics on, at http://ADDR/metrics: IP:PORT, e.g.
    /// 127.0.0.1:9321 (an IPv6 address in brackets; port 0 picks a free port, logged at
    /// start-up). Empty (the default): off. It has no authentication: keep it on loopback or a
    /// trusted network.
    #[arg(long, default_value = "", value_name = "ADDR")]
    pub metrics_bind_addr: String,

    /// The name of the network plugin to be invoked for various events in pod lifecycle:
    /// cni, kubenet, or no-op (also given as an empty value: Docker's own bridge networking).
    #[arg(long, default_value = "cni", value_name = "NAME")]
    pub network_plugin: String,

    /// A comma-separated list of full paths of directories in which to search for CNI plugin
    /// binaries.
    #[arg(long, default_value = "/opt/cni/bin", value_name = "DIRS")]
    pub cni_bin_dir: String,

    /// The full path of the directory in which to search for CNI config files.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR", value_parser = any_path)]
    pub cni_conf_dir: PathBuf,

    /// The full path of the directory in which CNI should store cache files.
    #[arg(long, default_value = "/var/lib/cni/cache", value_name = "DIR", value_parser = any_path)]
    pub cni_cache_dir: PathBuf,

    /// The CIDR to use for pod IP addresses, only used in standalone mode (kubenet); in
    /// cluster mode kubelet sends it. Comma-separated for dual stack.
    #[arg(long, default_value = "", value_name = "CIDR")]
    pub pod_cidr: String,

    /// Enable IPv6 dual stack support.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true"
    )]
    pub ipv6_dual_stack: String,

    /// The MTU to be passed to the network plugin, to override the default. Set to 0 to use the
    /// plugin's default.
    #[arg(
        long,
        default_value = "0",
        value_name = "MTU",
        allow_hyphen_values = true
    )]
    pub network_plugin_mtu: String,

    /// The mode of hairpin to use: none, promiscuous-bridge or hairpin-veth.
    #[arg(long, default_value = "none", value_name = "MODE")]
    pub hairpin_mode: String,

    /// Optional absolute name of cgroups to create and run the runtime in. cri-dockerd moves
    /// itself there at start-up (each cgroup v1 controller hierarchy but cpuset, or the v2
    /// tree); unlike the Go original it neither moves dockerd/containerd nor sets a memory limit.
    #[arg(long, default_value = "", value_name = "CGROUP")]
    pub runtime_cgroups: String,

    /// The log level: panic, fatal, error, warn, info, debug or trace.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// Log format: text or json (one JSON object per line).
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    pub log_format: String,

    /// Clamp negative oom_score_adj values to what this host allows: auto (detect), true or false.
    #[arg(long, default_value = "auto", value_name = "auto|true|false")]
    pub restrict_oom_score_adj: String,

    /// Prints the version of cri-dockerd.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        hide_default_value = true,
        hide_possible_values = true
    )]
    pub version: String,

    /// Prints the build information about cri-dockerd.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        hide_default_value = true
    )]
    pub buildinfo: String,
}

/// A path value that may be empty (clap's own refuses empty paths; pflag takes them, and
/// [`Flags::validate`] explains what is wrong with one).
fn any_path(s: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(s))
}

/// Flags that take an optional `=<bool>` value.
const BOOL_FLAGS: [&str; 3] = ["--ipv6-dual-stack", "--version", "--buildinfo"];

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `--version`.
    Version,
    /// `--buildinfo`.
    BuildInfo,
    /// Serve CRI.
    Serve,
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

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Fd => f.write_str("fd://"),
        }
    }
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
    /// `--metrics-bind-addr`; `None`: no metrics listener.
    pub metrics_bind_addr: Option<SocketAddr>,
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
    /// Parse `args` (program name first) without exiting; a usage error (unknown flag, missing
    /// value, `--help`) comes back as the clap error for the caller to print.
    pub fn try_parse_args<I, T>(args: I) -> Result<Flags, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        // `--ipv6-dual-stack true` (a space instead of '='): pflag, like us, takes the value only
        // after '='; say so naming the flag rather than complaining about a stray "true".
        for pair in args.windows(2) {
            let (flag, next) = (pair[0].to_string_lossy(), pair[1].to_string_lossy());
            if BOOL_FLAGS.contains(&flag.as_ref()) && parse_go_bool(&next).is_ok() {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::UnknownArgument,
                    format!("boolean flag {flag} takes its value after '=': use {flag}={next}\n"),
                ));
            }
        }
        Flags::try_parse_from(args)
    }

    /// `--version`, `--buildinfo` or serve (in that precedence, as the Go original).
    pub fn action(&self) -> Result<Action, FlagError> {
        if parse_go_bool(&self.version).map_err(|r| flag_err("version", &self.version, r))? {
            return Ok(Action::Version);
        }
        if parse_go_bool(&self.buildinfo).map_err(|r| flag_err("buildinfo", &self.buildinfo, r))? {
            return Ok(Action::BuildInfo);
        }
        Ok(Action::Serve)
    }

    /// Validate the flags into a [`Config`]. `docker_host_env` is `$DOCKER_HOST`, used when
    /// `--docker-endpoint` is not given (or given empty).
    pub fn validate(&self, docker_host_env: Option<&str>) -> Result<Config, FlagError> {
        let cri_endpoint = parse_cri_endpoint(&self.container_runtime_endpoint).map_err(|r| {
            flag_err(
                "container-runtime-endpoint",
                &self.container_runtime_endpoint,
                r,
            )
        })?;

        let docker_endpoint = match (self.docker_endpoint.as_deref(), docker_host_env) {
            (Some(e), _) if !e.is_empty() => {
                validate_docker_endpoint(e).map_err(|r| flag_err("docker-endpoint", e, r))?;
                e.to_string()
            }
            (_, Some(env)) if !env.is_empty() => {
                validate_docker_endpoint(env).map_err(|r| {
                    flag_err(
                        "docker-endpoint",
                        env,
                        format!("(taken from $DOCKER_HOST) {r}"),
                    )
                })?;
                env.to_string()
            }
            _ => DEFAULT_DOCKER_ENDPOINT.to_string(),
        };

        validate_image_ref(&self.pod_infra_container_image).map_err(|r| {
            flag_err(
                "pod-infra-container-image",
                &self.pod_infra_container_image,
                r,
            )
        })?;

        let image_pull_progress_deadline = parse_go_duration(&self.image_pull_progress_deadline)
            .map_err(|r| {
                flag_err(
                    "image-pull-progress-deadline",
                    &self.image_pull_progress_deadline,
                    r,
                )
            })?;
        let runtime_request_timeout = match parse_go_duration(&self.runtime_request_timeout)
            .map_err(|r| flag_err("runtime-request-timeout", &self.runtime_request_timeout, r))?
        {
            Duration::ZERO => DEFAULT_RUNTIME_REQUEST_TIMEOUT,
            d => d,
        };

        let streaming_bind_addr = parse_streaming_bind_addr(&self.streaming_bind_addr)
            .map_err(|r| flag_err("streaming-bind-addr", &self.streaming_bind_addr, r))?;
        let metrics_bind_addr = parse_metrics_bind_addr(&self.metrics_bind_addr)
            .map_err(|r| flag_err("metrics-bind-addr", &self.metrics_bind_addr, r))?;

        let network_plugin = match self.network_plugin.as_str() {
            "cni" => NetworkPluginKind::Cni,
            "kubenet" => NetworkPluginKind::Kubenet,
            "" | "no-op" | "noop" => NetworkPluginKind::NoOp,
            _ => {
                return Err(flag_err(
                    "network-plugin",
                    &self.network_plugin,
                    "must be one of cni, kubenet, no-op (or empty for no-op)",
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
            check_dir_if_exists(d).map_err(|r| {
                flag_err(
                    "cni-bin-dir",
                    &self.cni_bin_dir,
                    format!("{}: {r}", d.display()),
                )
            })?;
        }
        if network_plugin == NetworkPluginKind::Cni && self.cni_conf_dir.as_os_str().is_empty() {
            return Err(flag_err(
                "cni-conf-dir",
                "",
                "must not be empty with --network-plugin=cni",
            ));
        }
        check_dir_if_exists(&self.cni_conf_dir)
            .map_err(|r| flag_err("cni-conf-dir", &self.cni_conf_dir.to_string_lossy(), r))?;
        check_dir_if_exists(&self.cni_cache_dir)
            .map_err(|r| flag_err("cni-cache-dir", &self.cni_cache_dir.to_string_lossy(), r))?;
        if !self.cri_dockerd_root_directory.is_absolute() {
            return Err(flag_err(
                "cri-dockerd-root-directory",
                &self.cri_dockerd_root_directory.to_string_lossy(),
                "must be an absolute path",
            ));
        }
        check_dir_if_exists(&self.cri_dockerd_root_directory).map_err(|r| {
            flag_err(
                "cri-dockerd-root-directory",
                &self.cri_dockerd_root_directory.to_string_lossy(),
                r,
            )
        })?;

        let pod_cidr = if self.pod_cidr.is_empty() {
            None
        } else {
            validate_cidrs(&self.pod_cidr).map_err(|r| flag_err("pod-cidr", &self.pod_cidr, r))?;
            Some(self.pod_cidr.clone())
        };

        let ipv6_dual_stack = parse_go_bool(&self.ipv6_dual_stack)
            .map_err(|r| flag_err("ipv6-dual-stack", &self.ipv6_dual_stack, r))?;

        let network_plugin_mtu = parse_mtu(&self.network_plugin_mtu)
            .map_err(|r| flag_err("network-plugin-mtu", &self.network_plugin_mtu, r))?;

        let hairpin_mode = match self.hairpin_mode.as_str() {
            "promiscuous-bridge" => HairpinMode::PromiscuousBridge,
            "hairpin-veth" => HairpinMode::HairpinVeth,
            "none" => HairpinMode::None,
            _ => {
                return Err(flag_err(
                    "hairpin-mode",
                    &self.hairpin_mode,
                    "must be one of none, promiscuous-bridge, hairpin-veth",
                ));
            }
        };

        let runtime_cgroups = if self.runtime_cgroups.is_empty() {
            None
        } else {
            validate_cgroup_name(&self.runtime_cgroups)
                .map_err(|r| flag_err("runtime-cgroups", &self.runtime_cgroups, r))?;
            Some(self.runtime_cgroups.clone())
        };

        let log_level = parse_log_level(&self.log_level)
            .map_err(|r| flag_err("log-level", &self.log_level, r))?;
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
            metrics_bind_addr,
            network_plugin,
            cni_bin_dirs,
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_cache_dir: self.cni_cache_dir.clone(),
            pod_cidr,
            ipv6_dual_stack,
            network_plugin_mtu,
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

/// The one line to print for a clap usage error (unknown flag, missing value, stray argument):
/// clap's first line without its `error: ` prefix and without the usage/tip lines after it.
pub fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid command line");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Parse a boolean as Go's `strconv.ParseBool` (what pflag uses): 1, t, T, TRUE, true, True,
/// 0, f, F, FALSE, false, False.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("must be a boolean (true or false)".into()),
    }
}

/// Parse `--container-runtime-endpoint`.
pub fn parse_cri_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if path.is_empty() || !path.starts_with('/') {
            return Err(
                "unix:// needs an absolute socket path, as unix:///run/cri-dockerd.sock".into(),
            );
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    if let Some(addr) = s.strip_prefix("tcp://") {
        return parse_tcp_listen_addr(addr).map(Endpoint::Tcp);
    }
    if let Some(name) = s.strip_prefix("fd://") {
        if name.is_empty() {
            return Ok(Endpoint::Fd);
        }
        return Err("named systemd sockets (fd://<name>) are not supported: use fd://".into());
    }
    if s.starts_with('/') {
        // The Go original falls back to unix for an endpoint without a scheme.
        return Ok(Endpoint::Unix(PathBuf::from(s)));
    }
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Err("unknown scheme: use unix://PATH, tcp://HOST:PORT or fd://".into())
}

/// `host:port` to listen on: an IP, a resolvable name (first address) or empty host (all
/// IPv4 addresses), as Go's `net.Listen("tcp", …)` takes.
fn parse_tcp_listen_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "tcp:// needs host:port".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("tcp:// port {port:?} is not a number from 0 to 65535"))?;
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("tcp:// host {host:?} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("tcp:// host {host:?} has no address"))
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
        let host = rest.trim_end_matches('/');
        if !host.is_empty() && !host.contains('/') {
            return Ok(());
        }
        return Err("tcp:// needs host:port".into());
    }
    if s.starts_with("https://") || s.starts_with("ssh://") || s.starts_with("npipe://") {
        return Err(
            "TLS, ssh and named-pipe Docker endpoints are not supported: use unix:// or tcp://"
                .into(),
        );
    }
    Err("unknown scheme: use unix://PATH or tcp://HOST:PORT".into())
}

/// Basic shape of an image reference: `[registry[:port]/]name[:tag][@algo:hex]`, name lowercase.
fn validate_image_ref(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an image reference has no spaces".into());
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d
            .split_once(':')
            .ok_or_else(|| format!("digest {d:?} is not <algorithm>:<hex>"))?;
        if algo.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("digest {d:?} is not <algorithm>:<hex>"));
        }
    }
    // A tag follows the last ':' after the last '/'.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!("tag {tag:?} is not valid"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first component is a registry host when it has a '.' or ':' or is localhost.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        parts.remove(0);
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !ok {
            return Err(format!(
                "repository path component {p:?} must be lowercase letters, digits and . _ -"
            ));
        }
    }
    Ok(())
}

/// `--streaming-bind-addr`: empty, `<ip>:<port>` or a bare `<ip>` (random port), as upstream.
fn parse_streaming_bind_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Some(a));
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, 0)));
    }
    Err("must be <ip>:<port> or <ip> (IPv6 as [::1]:10010)".into())
}

/// `--metrics-bind-addr`: empty (off) or `<ip>:<port>`.
fn parse_metrics_bind_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<SocketAddr>().map(Some).map_err(|_| {
        "must be <ip>:<port>, as 127.0.0.1:9321 (IPv6 as [::1]:9321), or empty for no metrics \
         endpoint"
            .into()
    })
}

fn parse_mtu(s: &str) -> Result<u32, String> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| "must be an integer".to_string())?;
    if n == 0 || (68..=65535).contains(&n) {
        Ok(n as u32)
    } else {
        Err("must be 0 (plugin default) or between 68 and 65535".into())
    }
}

fn parse_log_level(s: &str) -> Result<tracing::Level, String> {
    // logrus.ParseLevel's names, case-insensitive.
    match s.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => Ok(tracing::Level::ERROR),
        "warn" | "warning" => Ok(tracing::Level::WARN),
        "info" => Ok(tracing::Level::INFO),
        "debug" => Ok(tracing::Level::DEBUG),
        "trace" => Ok(tracing::Level::TRACE),
        _ => Err("must be one of panic, fatal, error, warn, info, debug, trace".into()),
    }
}

/// An absolute cgroup name: `/a/b`, no `.`/`..` components, no empty components.
fn validate_cgroup_name(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err("must be an absolute cgroup name starting with /".into());
    };
    if rest.is_empty() {
        return Err("must name a cgroup below the root, as /cri-dockerd".into());
    }
    for c in rest.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(format!("component {c:?} is not allowed"));
        }
    }
    Ok(())
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

/// One CIDR or a comma-separated list (dual stack: at most one per address family).
fn validate_cidrs(s: &str) -> Result<(), String> {
    let (mut v4, mut v6) = (0, 0);
    for part in s.split(',') {
        let part = part.trim();
        let (ip, len) = part
            .split_once('/')
            .ok_or_else(|| format!("{part:?} is not a CIDR (address/prefix)"))?;
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("{part:?}: {ip:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{part:?}: prefix length must be 0 to {max}"))?;
        let _ = len;
        if ip.is_ipv4() {
            v4 += 1;
        } else {
            v6 += 1;
        }
    }
    if v4 > 1 || v6 > 1 {
        return Err("at most one IPv4 and one IPv6 CIDR".into());
    }
    Ok(())
}

/// Largest duration Go's `time.Duration` holds (int64 nanoseconds, ~292 years).
const GO_MAX_DURATION_NANOS: u128 = i64::MAX as u128;

/// Parse a Go `time.ParseDuration` string ("1m", "1m30s", "1.5h", "300ms", "0"). Negative
/// durations, which Go accepts, are refused: no flag of ours means anything by them.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    if s.is_empty() {
        return Err("empty duration: use a number with a unit, as 1m30s".into());
    }
    if s.starts_with('-') {
        return Err("duration must not be negative".into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(format!("invalid duration {orig:?}"));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        // Integer part, optional fraction.
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_end];
        rest = &rest[int_end..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            frac_part = &after_dot[..frac_end];
            rest = &after_dot[frac_end..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("invalid duration {orig:?}"));
        }
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "" => {
                return Err(format!(
                    "missing unit in duration {orig:?}: use ns, us, ms, s, m or h"
                ));
            }
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in duration {orig:?}: use ns, us, ms, s, m or h"
                ));
            }
        };
        let too_big = || format!("duration {orig:?} is too large");
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_big())?
        };
        let mut nanos = int.checked_mul(unit_nanos).ok_or_else(too_big)?;
        // Fraction: digits beyond nanosecond precision are dropped, as Go does.
        let mut scale = unit_nanos;
        for d in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(too_big)?;
        if total > GO_MAX_DURATION_NANOS {
            return Err(too_big());
        }
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("duration {orig:?} is too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["cri-dockerd"];
        all.extend_from_slice(args);
        Flags::try_parse_args(all).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn parse(args: &[&str]) -> Result<Config, FlagError> {
        flags(args).validate(None)
    }

    type Check = Box<dyn Fn(&Config)>;

    fn ok(args: &[&str]) -> Config {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn defaults_match_upstream_except_our_two_decisions() {
        let c = ok(&[]);
        assert_eq!(
            c.cri_endpoint,
            Endpoint::Unix("/var/run/cri-dockerd.sock".into())
        );
        assert_eq!(c.docker_endpoint, "unix:///var/run/docker.sock");
        assert_eq!(c.root_dir, PathBuf::from("/var/lib/cri-dockerd"));
        assert_eq!(c.pause_image, "registry.k8s.io/pause:3.10");
        assert_eq!(c.image_pull_progress_deadline, Duration::from_secs(60));
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(120));
        assert_eq!(c.streaming_bind_addr, None);
        assert_eq!(c.metrics_bind_addr, None);
        assert_eq!(c.network_plugin, NetworkPluginKind::Cni);
        assert_eq!(c.cni_bin_dirs, vec![PathBuf::from("/opt/cni/bin")]);
        assert_eq!(c.cni_conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(c.cni_cache_dir, PathBuf::from("/var/lib/cni/cache"));
        assert_eq!(c.pod_cidr, None);
        assert!(!c.ipv6_dual_stack);
        assert_eq!(c.network_plugin_mtu, 0);
        // Upstream's hairpin flag value is empty by default, which it reads as "none".
        assert_eq!(c.hairpin_mode, HairpinMode::None);
        assert_eq!(c.runtime_cgroups, None);
        assert_eq!(c.log_level, tracing::Level::INFO);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.restrict_oom_score_adj, OomScoreRestrict::Auto);
        assert_eq!(flags(&[]).action(), Ok(Action::Serve));
    }

    #[test]
    fn good_values() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let cases: Vec<(Vec<String>, Check)> = vec![
            (
                vec!["--container-runtime-endpoint=unix:///run/x.sock".into()],
                Box::new(|c| assert_eq!(c.cri_endpoint, Endpoint::Unix("/run/x.sock".into()))),
            ),
            (
                vec![
                    "--container-runtime-endpoint".into(),
                    "/run/bare.sock".into(),
                ],
                Box::new(|c| assert_eq!(c.cri_endpoint, Endpoint::Unix("/run/bare.sock".into()))),
            ),
            (
                vec!["--container-runtime-endpoint=tcp://127.0.0.1:10010".into()],
                Box::new(|c| {
                    assert_eq!(
                        c.cri_endpoint,
                        Endpoint::Tcp("127.0.0.1:10010".parse().unwrap())
                    )
                }),
            ),
            (
                vec!["--container-runtime-endpoint=tcp://[::1]:10010".into()],
                Box::new(|c| {
                    assert_eq!(
                        c.cri_endpoint,
                        Endpoint::Tcp("[::1]:10010".parse().unwrap())
                    )
                }),
            ),
            (
                vec!["--container-runtime-endpoint=tcp://:10010".into()],
                Box::new(|c| {
                    assert_eq!(
                        c.cri_endpoint,
                        Endpoint::Tcp("0.0.0.0:10010".parse().unwrap())
                    )
                }),
            ),
            (
                vec!["--container-runtime-endpoint=tcp://localhost:10010".into()],
                Box::new(|c| match c.cri_endpoint {
                    Endpoint::Tcp(a) => {
                        assert!(a.ip().is_loopback());
                        assert_eq!(a.port(), 10010)
                    }
                    ref e => panic!("{e:?}"),
                }),
            ),
            (
                vec!["--container-runtime-endpoint".into(), "fd://".into()],
                Box::new(|c| assert_eq!(c.cri_endpoint, Endpoint::Fd)),
            ),
            (
                vec!["--docker-endpoint=unix:///run/docker.sock".into()],
                Box::new(|c| assert_eq!(c.docker_endpoint, "unix:///run/docker.sock")),
            ),
            (
                vec!["--docker-endpoint=tcp://127.0.0.1:2375".into()],
                Box::new(|c| assert_eq!(c.docker_endpoint, "tcp://127.0.0.1:2375")),
            ),
            (
                vec!["--docker-endpoint=http://docker.local:2375".into()],
                Box::new(|c| assert_eq!(c.docker_endpoint, "http://docker.local:2375")),
            ),
            (
                vec![format!("--cri-dockerd-root-directory={d}/state")],
                Box::new(move |c| assert!(c.root_dir.ends_with("state"))),
            ),
            (
                vec![
                    "--pod-infra-container-image=registry.aliyuncs.com/google_containers/pause:3.9"
                        .into(),
                ],
                Box::new(|c| {
                    assert_eq!(
                        c.pause_image,
                        "registry.aliyuncs.com/google_containers/pause:3.9"
                    )
                }),
            ),
            (
                vec!["--pod-infra-container-image=localhost:5000/pause".into()],
                Box::new(|c| assert_eq!(c.pause_image, "localhost:5000/pause")),
            ),
            (
                vec![format!(
                    "--pod-infra-container-image=pause@sha256:{}",
                    "a".repeat(64)
                )],
                Box::new(|c| assert!(c.pause_image.starts_with("pause@sha256:"))),
            ),
            (
                vec!["--image-pull-progress-deadline=1m30s".into()],
                Box::new(|c| assert_eq!(c.image_pull_progress_deadline, Duration::from_secs(90))),
            ),
            (
                vec!["--runtime-request-timeout=10s".into()],
                Box::new(|c| assert_eq!(c.runtime_request_timeout, Duration::from_secs(10))),
            ),
            (
                vec!["--runtime-request-timeout=0".into()],
                Box::new(|c| {
                    assert_eq!(c.runtime_request_timeout, DEFAULT_RUNTIME_REQUEST_TIMEOUT)
                }),
            ),
            (
                vec!["--streaming-bind-addr=127.0.0.1:10010".into()],
                Box::new(|c| {
                    assert_eq!(
                        c.streaming_bind_addr,
                        Some("127.0.0.1:10010".parse().unwrap())
                    )
                }),
            ),
            (
                vec!["--streaming-bind-addr=0.0.0.0".into()],
                Box::new(|c| assert_eq!(c.streaming_bind_addr, Some("0.0.0.0:0".parse().unwrap()))),
            ),
            (
                vec!["--streaming-bind-addr=::1".into()],
                Box::new(|c| assert_eq!(c.streaming_bind_addr, Some("[::1]:0".parse().unwrap()))),
            ),
            (
                vec!["--metrics-bind-addr=127.0.0.1:9321".into()],
                Box::new(|c| {
                    assert_eq!(c.metrics_bind_addr, Some("127.0.0.1:9321".parse().unwrap()))
                }),
            ),
            (
                vec!["--metrics-bind-addr".into(), "[::1]:0".into()],
                Box::new(|c| assert_eq!(c.metrics_bind_addr, Some("[::1]:0".parse().unwrap()))),
            ),
            (
                vec!["--metrics-bind-addr=0.0.0.0:9321".into()],
                Box::new(|c| {
                    assert_eq!(c.metrics_bind_addr, Some("0.0.0.0:9321".parse().unwrap()))
                }),
            ),
            (
                vec!["--metrics-bind-addr=".into()],
                Box::new(|c| assert_eq!(c.metrics_bind_addr, None)),
            ),
            (
                vec!["--network-plugin=kubenet".into()],
                Box::new(|c| assert_eq!(c.network_plugin, NetworkPluginKind::Kubenet)),
            ),
            (
                vec!["--network-plugin=".into()],
                Box::new(|c| assert_eq!(c.network_plugin, NetworkPluginKind::NoOp)),
            ),
            (
                vec!["--network-plugin".into(), "no-op".into()],
                Box::new(|c| assert_eq!(c.network_plugin, NetworkPluginKind::NoOp)),
            ),
            (
                vec![format!("--cni-bin-dir=/opt/cni/bin, {d} ,/usr/lib/cni")],
                Box::new(move |c| assert_eq!(c.cni_bin_dirs.len(), 3)),
            ),
            (
                vec![format!("--cni-conf-dir={d}")],
                Box::new(|c| assert!(c.cni_conf_dir.is_dir())),
            ),
            (
                vec![format!("--cni-cache-dir={d}/not-yet")],
                Box::new(|c| assert!(c.cni_cache_dir.ends_with("not-yet"))),
            ),
            (
                vec!["--pod-cidr=10.244.0.0/16".into()],
                Box::new(|c| assert_eq!(c.pod_cidr.as_deref(), Some("10.244.0.0/16"))),
            ),
            (
                vec!["--pod-cidr=10.244.0.0/16,fd00:10:244::/56".into()],
                Box::new(|c| assert!(c.pod_cidr.is_some())),
            ),
            (
                vec!["--ipv6-dual-stack".into()],
                Box::new(|c| assert!(c.ipv6_dual_stack)),
            ),
            (
                vec!["--ipv6-dual-stack=True".into()],
                Box::new(|c| assert!(c.ipv6_dual_stack)),
            ),
            (
                vec!["--ipv6-dual-stack=1".into()],
                Box::new(|c| assert!(c.ipv6_dual_stack)),
            ),
            (
                vec!["--ipv6-dual-stack=false".into()],
                Box::new(|c| assert!(!c.ipv6_dual_stack)),
            ),
            (
                vec!["--network-plugin-mtu=1450".into()],
                Box::new(|c| assert_eq!(c.network_plugin_mtu, 1450)),
            ),
            (
                vec!["--network-plugin-mtu".into(), "0".into()],
                Box::new(|c| assert_eq!(c.network_plugin_mtu, 0)),
            ),
            (
                vec!["--hairpin-mode=promiscuous-bridge".into()],
                Box::new(|c| assert_eq!(c.hairpin_mode, HairpinMode::PromiscuousBridge)),
            ),
            (
                vec!["--hairpin-mode=hairpin-veth".into()],
                Box::new(|c| assert_eq!(c.hairpin_mode, HairpinMode::HairpinVeth)),
            ),
            (
                vec!["--runtime-cgroups=/system.slice/cri-dockerd".into()],
                Box::new(|c| {
                    assert_eq!(
                        c.runtime_cgroups.as_deref(),
                        Some("/system.slice/cri-dockerd")
                    )
                }),
            ),
            (
                vec!["--log-level=DEBUG".into()],
                Box::new(|c| assert_eq!(c.log_level, tracing::Level::DEBUG)),
            ),
            (
                vec!["--log-level=warning".into()],
                Box::new(|c| assert_eq!(c.log_level, tracing::Level::WARN)),
            ),
            (
                vec!["--log-level=fatal".into()],
                Box::new(|c| assert_eq!(c.log_level, tracing::Level::ERROR)),
            ),
            (
                vec!["--log-level=trace".into()],
                Box::new(|c| assert_eq!(c.log_level, tracing::Level::TRACE)),
            ),
            (
                vec!["--log-format=json".into()],
                Box::new(|c| assert_eq!(c.log_format, LogFormat::Json)),
            ),
            (
                vec!["--restrict-oom-score-adj=true".into()],
                Box::new(|c| assert_eq!(c.restrict_oom_score_adj, OomScoreRestrict::Always)),
            ),
            (
                vec!["--restrict-oom-score-adj=false".into()],
                Box::new(|c| assert_eq!(c.restrict_oom_score_adj, OomScoreRestrict::Never)),
            ),
        ];
        for (args, check) in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            check(&ok(&args));
        }
    }

    #[test]
    fn docker_host_is_used_only_when_docker_endpoint_is_unset() {
        let f = flags(&[]);
        let c = f.validate(Some("tcp://10.0.0.1:2375")).unwrap();
        assert_eq!(c.docker_endpoint, "tcp://10.0.0.1:2375");
        let c = f.validate(Some("")).unwrap();
        assert_eq!(c.docker_endpoint, DEFAULT_DOCKER_ENDPOINT);
        let f = flags(&["--docker-endpoint=unix:///run/d.sock"]);
        let c = f.validate(Some("tcp://10.0.0.1:2375")).unwrap();
        assert_eq!(c.docker_endpoint, "unix:///run/d.sock");
        // Explicitly empty: as unset.
        let f = flags(&["--docker-endpoint="]);
        let c = f.validate(Some("unix:///run/env.sock")).unwrap();
        assert_eq!(c.docker_endpoint, "unix:///run/env.sock");
        let e = flags(&[]).validate(Some("bogus")).unwrap_err();
        assert_eq!(e.flag, "docker-endpoint");
        assert!(e.reason.contains("DOCKER_HOST"), "{e}");
    }

    #[test]
    fn version_and_buildinfo_actions() {
        assert_eq!(flags(&["--version"]).action(), Ok(Action::Version));
        assert_eq!(flags(&["--version=true"]).action(), Ok(Action::Version));
        assert_eq!(flags(&["--version=false"]).action(), Ok(Action::Serve));
        assert_eq!(flags(&["--buildinfo"]).action(), Ok(Action::BuildInfo));
        assert_eq!(
            flags(&["--buildinfo", "--version"]).action(),
            Ok(Action::Version)
        );
        assert_eq!(
            flags(&["--version=yes"]).action().unwrap_err().flag,
            "version"
        );
        assert_eq!(
            flags(&["--buildinfo=2"]).action().unwrap_err().flag,
            "buildinfo"
        );
    }

    /// Every bad value: a [`FlagError`] naming the flag, displayed as one line.
    #[test]
    fn bad_values_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let file = file.to_str().unwrap().to_string();
        let cases: Vec<(String, &str)> = vec![
            (
                "--container-runtime-endpoint=npipe:////./pipe/cri".into(),
                "container-runtime-endpoint",
            ),
            (
                "--container-runtime-endpoint=unix://relative.sock".into(),
                "container-runtime-endpoint",
            ),
            (
                "--container-runtime-endpoint=tcp://127.0.0.1".into(),
                "container-runtime-endpoint",
            ),
            (
                "--container-runtime-endpoint=tcp://127.0.0.1:99999".into(),
                "container-runtime-endpoint",
            ),
            (
                "--container-runtime-endpoint=fd://cri".into(),
                "container-runtime-endpoint",
            ),
            (
                "--container-runtime-endpoint=".into(),
                "container-runtime-endpoint",
            ),
            ("--docker-endpoint=ssh://me@host".into(), "docker-endpoint"),
            (
                "--docker-endpoint=https://host:2376".into(),
                "docker-endpoint",
            ),
            (
                "--docker-endpoint=unix://docker.sock".into(),
                "docker-endpoint",
            ),
            ("--docker-endpoint=tcp://".into(), "docker-endpoint"),
            (
                "--docker-endpoint=/var/run/docker.sock".into(),
                "docker-endpoint",
            ),
            (
                "--cri-dockerd-root-directory=relative/dir".into(),
                "cri-dockerd-root-directory",
            ),
            (
                format!("--cri-dockerd-root-directory={file}"),
                "cri-dockerd-root-directory",
            ),
            (
                format!("--cri-dockerd-root-directory={file}/sub"),
                "cri-dockerd-root-directory",
            ),
            (
                "--pod-infra-container-image=".into(),
                "pod-infra-container-image",
            ),
            (
                "--pod-infra-container-image=Registry/Pause:3.9".into(),
                "pod-infra-container-image",
            ),
            (
                "--pod-infra-container-image=pause:bad tag".into(),
                "pod-infra-container-image",
            ),
            (
                "--pod-infra-container-image=pause:".into(),
                "pod-infra-container-image",
            ),
            (
                "--pod-infra-container-image=pause@sha256:xyz".into(),
                "pod-infra-container-image",
            ),
            (
                "--image-pull-progress-deadline=5".into(),
                "image-pull-progress-deadline",
            ),
            (
                "--image-pull-progress-deadline=-1s".into(),
                "image-pull-progress-deadline",
            ),
            (
                "--image-pull-progress-deadline=1x".into(),
                "image-pull-progress-deadline",
            ),
            (
                "--image-pull-progress-deadline=".into(),
                "image-pull-progress-deadline",
            ),
            (
                "--runtime-request-timeout=two minutes".into(),
                "runtime-request-timeout",
            ),
            (
                "--streaming-bind-addr=localhost:10010".into(),
                "streaming-bind-addr",
            ),
            (
                "--streaming-bind-addr=1.2.3.4:x".into(),
                "streaming-bind-addr",
            ),
            (
                "--metrics-bind-addr=localhost:9321".into(),
                "metrics-bind-addr",
            ),
            ("--metrics-bind-addr=127.0.0.1".into(), "metrics-bind-addr"),
            ("--metrics-bind-addr=:9321".into(), "metrics-bind-addr"),
            (
                "--metrics-bind-addr=127.0.0.1:65536".into(),
                "metrics-bind-addr",
            ),
            ("--metrics-bind-addr=::1:9321".into(), "metrics-bind-addr"),
            ("--network-plugin=flannel".into(), "network-plugin"),
            ("--network-plugin=CNI".into(), "network-plugin"),
            ("--cni-bin-dir=".into(), "cni-bin-dir"),
            (format!("--cni-bin-dir=/opt/cni/bin,{file}"), "cni-bin-dir"),
            (format!("--cni-conf-dir={file}"), "cni-conf-dir"),
            (format!("--cni-conf-dir={file}/net.d"), "cni-conf-dir"),
            ("--cni-conf-dir=".into(), "cni-conf-dir"),
            (format!("--cni-cache-dir={file}"), "cni-cache-dir"),
            ("--pod-cidr=10.244.0.0".into(), "pod-cidr"),
            ("--pod-cidr=10.244.0.0/33".into(), "pod-cidr"),
            ("--pod-cidr=10.244.0/16".into(), "pod-cidr"),
            ("--pod-cidr=fd00::/129".into(), "pod-cidr"),
            ("--pod-cidr=10.1.0.0/16,10.2.0.0/16".into(), "pod-cidr"),
            ("--ipv6-dual-stack=yes".into(), "ipv6-dual-stack"),
            ("--ipv6-dual-stack=".into(), "ipv6-dual-stack"),
            ("--network-plugin-mtu=-1".into(), "network-plugin-mtu"),
            ("--network-plugin-mtu=67".into(), "network-plugin-mtu"),
            ("--network-plugin-mtu=65536".into(), "network-plugin-mtu"),
            ("--network-plugin-mtu=1500b".into(), "network-plugin-mtu"),
            ("--hairpin-mode=promiscuous".into(), "hairpin-mode"),
            ("--hairpin-mode=".into(), "hairpin-mode"),
            ("--runtime-cgroups=cri-dockerd".into(), "runtime-cgroups"),
            ("--runtime-cgroups=/".into(), "runtime-cgroups"),
            ("--runtime-cgroups=/a/../b".into(), "runtime-cgroups"),
            ("--runtime-cgroups=/a//b".into(), "runtime-cgroups"),
            ("--log-level=verbose".into(), "log-level"),
            ("--log-format=yaml".into(), "log-format"),
            (
                "--restrict-oom-score-adj=maybe".into(),
                "restrict-oom-score-adj",
            ),
        ];
        for (arg, flag) in cases {
            let e = parse(&[arg.as_str()]).expect_err(&arg);
            assert_eq!(e.flag, flag, "{arg}: {e}");
            let line = e.to_string();
            assert!(line.contains(&format!("--{flag}")), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn unreadable_directory_is_refused() {
        // Root reads any directory, so an unreadable one needs an unprivileged process: use a
        // directory below a file instead (ENOTDIR), which every user gets.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = check_dir_if_exists(&file.join("d")).unwrap_err();
        assert!(e.contains("cannot be read"), "{e}");
    }

    #[test]
    fn usage_errors_are_one_line() {
        let e = Flags::try_parse_args(["cri-dockerd", "--no-such-flag"]).unwrap_err();
        let line = usage_error_line(&e);
        assert!(line.contains("--no-such-flag"), "{line}");
        assert!(!line.contains('\n'));
        let e = Flags::try_parse_args(["cri-dockerd", "--ipv6-dual-stack", "true"]).unwrap_err();
        let line = usage_error_line(&e);
        assert!(line.contains("--ipv6-dual-stack=true"), "{line}");
        let e = Flags::try_parse_args(["cri-dockerd", "--hairpin-mode"]).unwrap_err();
        assert!(usage_error_line(&e).contains("--hairpin-mode"));
        let e = Flags::try_parse_args(["cri-dockerd", "serve"]).unwrap_err();
        assert!(usage_error_line(&e).contains("serve"));
    }

    #[test]
    fn go_durations() {
        let good: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1m", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("2h45m", Duration::from_secs(9900)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("1µs", Duration::from_micros(1)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("0.3s", Duration::from_millis(300)),
            ("1.0000000001s", Duration::from_secs(1)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (s, want) in good {
            assert_eq!(parse_go_duration(s), Ok(*want), "{s}");
        }
        for bad in [
            "",
            "5",
            "-1s",
            "1x",
            "s",
            ".",
            "1h-1m",
            "1e3s",
            "m1",
            "1 m",
            "+",
            "2562048h",
            "99999999999999999999999h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false));
        }
        for bad in ["", "yes", "tRuE", "2"] {
            assert!(parse_go_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_display_round_trips() {
        for s in ["unix:///run/a.sock", "tcp://127.0.0.1:1", "fd://"] {
            assert_eq!(parse_cri_endpoint(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn help_lists_every_flag() {
        use clap::CommandFactory;
        let help = Flags::command().render_long_help().to_string();
        for flag in [
            "--container-runtime-endpoint",
            "--docker-endpoint",
            "--cri-dockerd-root-directory",
            "--pod-infra-container-image",
            "--image-pull-progress-deadline",
            "--runtime-request-timeout",
            "--streaming-bind-addr",
            "--metrics-bind-addr",
            "--network-plugin ",
            "--cni-bin-dir",
            "--cni-conf-dir",
            "--cni-cache-dir",
            "--pod-cidr",
            "--ipv6-dual-stack",
            "--network-plugin-mtu",
            "--hairpin-mode",
            "--runtime-cgroups",
            "--log-level",
            "--log-format",
            "--restrict-oom-score-adj",
            "--version",
            "--buildinfo",
            "--help",
        ] {
            assert!(help.contains(flag), "help lacks {flag}:\n{help}");
        }
    }
}
