//! `--metrics-bind-addr`: the real binary serves `/metrics`, scraped with a plain HTTP client and
//! parsed here as the Prometheus text format 0.0.4 (HELP/TYPE, labelled samples, histogram
//! consistency); the counts are those of the CRI calls, pod and container lifecycle and exec the
//! test makes. Also: off by default (no listener), a bind failure names the flag, and a scrape
//! does not wait on a dockerd that does not answer.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Daemon;
use common::pods::{self, Pod, PodCleanup};
use cri_streaming::client::{self, ExecOptions};
use k8s_cri::v1 as cri;
use k8s_cri::v1alpha2 as alpha;

// ---------------------------------------------------------------------------------------------
// A small parser of the text exposition format 0.0.4.

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Default)]
struct Scrape {
    families: BTreeMap<String, Family>,
}

fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y\"z"}` (the part after the name) -> labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((labels, s));
    };
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value not quoted".into());
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\n' => return Err("newline in label value".into()),
                c => value.push(c),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample name belongs to, given the family's TYPE.
fn family_of<'a>(sample: &'a str, families: &BTreeMap<String, Family>) -> Option<&'a str> {
    if families.contains_key(sample) {
        return Some(sample);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && families
                .get(base)
                .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
        {
            return Some(base);
        }
    }
    None
}

fn parse(text: &str) -> Result<Scrape, String> {
    let mut s = Scrape::default();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut parts = c.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !valid_metric_name(name) {
                        return Err(err("bad metric name".into()));
                    }
                    let f = s.families.entry(name.to_string()).or_default();
                    if f.help.replace(help.unwrap_or("").to_string()).is_some() {
                        return Err(err("HELP twice".into()));
                    }
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(err("bad type".into()));
                    }
                    let f = s.families.entry(name.to_string()).or_default();
                    if !f.kind.is_empty() || !f.samples.is_empty() {
                        return Err(err("TYPE twice or after samples".into()));
                    }
                    f.kind = kind.to_string();
                }
                _ => {} // a comment
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(err)?;
        let mut fields = rest.split_whitespace();
        let value =
            parse_value(fields.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let family = family_of(name, &s.families)
            .ok_or_else(|| err("sample of no TYPE'd family".into()))?
            .to_string();
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(err("duplicate series".into()));
        }
        s.families
            .get_mut(&family)
            .expect("family")
            .samples
            .push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
    }
    for (name, f) in &s.families {
        if f.kind.is_empty() {
            return Err(format!("{name}: HELP without TYPE"));
        }
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
        if f.kind == "counter" && f.samples.iter().any(|x| x.value < 0.0) {
            return Err(format!("{name}: negative counter"));
        }
    }
    Ok(s)
}

/// For each label set: `le` buckets ascending, cumulative counts non-decreasing, a `+Inf` bucket
/// equal to `_count`, and a `_sum`.
fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut by_labels: BTreeMap<BTreeMap<String, String>, Series> = BTreeMap::new();
    for x in &f.samples {
        let mut labels = x.labels.clone();
        let le = labels.remove("le");
        let e = by_labels.entry(labels).or_default();
        match x.name.strip_prefix(name) {
            Some("_bucket") => {
                let le = le.ok_or(format!("{name}: bucket without le"))?;
                e.0.push((parse_value(&le)?, x.value));
            }
            Some("_sum") => e.1 = Some(x.value),
            Some("_count") => e.2 = Some(x.value),
            _ => return Err(format!("{name}: stray sample {}", x.name)),
        }
    }
    if by_labels.is_empty() {
        return Ok(());
    }
    for (labels, (buckets, sum, count)) in by_labels {
        let what = format!("{name}{labels:?}");
        let count = count.ok_or(format!("{what}: no _count"))?;
        let sum = sum.ok_or(format!("{what}: no _sum"))?;
        if buckets.is_empty() {
            return Err(format!("{what}: no buckets"));
        }
        for w in buckets.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err(format!("{what}: le not ascending"));
            }
            if w[0].1 > w[1].1 {
                return Err(format!("{what}: buckets not cumulative"));
            }
        }
        let (last_le, last) = *buckets.last().expect("buckets");
        if last_le != f64::INFINITY || last != count {
            return Err(format!("{what}: +Inf bucket {last} vs _count {count}"));
        }
        if sum < 0.0 || (count == 0.0 && sum != 0.0) {
            return Err(format!("{what}: _sum {sum} with _count {count}"));
        }
    }
    Ok(())
}

impl Scrape {
    /// The value of the sample `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let family = family_of(name, &self.families)?;
        self.families[family]
            .samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], 0 for a series not (yet) exported.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    fn kind(&self, family: &str) -> &str {
        self.families.get(family).map_or("", |f| f.kind.as_str())
    }

    fn samples(&self, family: &str) -> &[Sample] {
        self.families.get(family).map_or(&[], |f| &f.samples)
    }
}

#[test]
fn parser_accepts_the_format_and_refuses_broken_text() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n\
                # a comment\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 0.75\nh_count 2\n# TYPE g gauge\ng -1.5e3 1700000000000\n";
    let s = parse(good).expect("good text");
    assert_eq!(s.get("a_total", &[("x", "1"), ("y", "q\"\\\n")]), Some(3.0));
    assert_eq!(s.get("h_count", &[]), Some(2.0));
    assert_eq!(s.get("g", &[]), Some(-1500.0));
    for bad in [
        "x 1\n",                                                             // no TYPE
        "# TYPE x counter\nx{a=1} 1\n",                                      // unquoted
        "# TYPE x counter\nx 1\nx 2\n",                                      // duplicate
        "# TYPE x counter\nx one\n",                                         // value
        "# TYPE x widget\n",                                                 // type
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", // +Inf != count
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // no sum
        "# TYPE x counter\nx -1\n",                                 // negative counter
        "# HELP x a\n",                                             // HELP without TYPE
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Scraping.

/// One HTTP/1.1 request; (status, headers, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head.to_string(), body.to_string())
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, head, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// The metrics address from the start-up line (`metrics=http://ADDR/metrics`).
async fn metrics_addr(d: &Daemon) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = d.log();
        if let Some(rest) = log.split("metrics=http://").nth(1) {
            let addr = rest.split('/').next().expect("addr");
            return addr.parse().expect("socket address");
        }
        assert!(
            Instant::now() < deadline,
            "no metrics address logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// TCP ports `pid` listens on: its socket inodes matched against /proc/net/tcp{,6} LISTEN rows.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(t) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in t.lines().skip(1) {
            let f: Vec<&str> = row.split_whitespace().collect();
            // local_address is field 1 (HEX_IP:HEX_PORT), st field 3 (0A = LISTEN), inode 9.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().expect("port");
                ports.push(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports.sort_unstable();
    ports
}

// ---------------------------------------------------------------------------------------------

const V1: &str = "/runtime.v1.RuntimeService/";
const GRPC_HANDLED: &str = "cri_dockerd_grpc_server_handled_total";
const GRPC_SECONDS_COUNT: &str = "cri_dockerd_grpc_server_handling_seconds_count";

fn handled(s: &Scrape, method: &str, code: &str) -> f64 {
    s.count(
        GRPC_HANDLED,
        &[("grpc_method", method), ("grpc_code", code)],
    )
}

fn docker_ops(s: &Scrape, op: &str) -> f64 {
    s.count("kubelet_docker_operations_total", &[("operation_type", op)])
}

fn exec_in_flight(s: &Scrape) -> f64 {
    s.get(
        "cri_dockerd_streaming_sessions_in_flight",
        &[("kind", "exec")],
    )
    .expect("exec in-flight gauge")
}

/// The Docker calls a container's lifecycle costs once the daemon's view knows the pod and the
/// image: one Docker call per CRI call, no inspect or list on the way (the direct floor the
/// benchmark compares with makes just those).
#[tokio::test]
async fn container_lifecycle_makes_one_docker_call_per_cri_call() {
    require_docker!();
    let d = Daemon::start(&["--metrics-bind-addr=127.0.0.1:0"]).await;
    let addr = metrics_addr(&d).await;
    let mut rt = d.runtime().await;
    let pod = Pod::run(&mut rt, &d, "hotpath", "hotpathtest").await;
    let with_log = |name: &str| cri::ContainerConfig {
        log_path: format!("{name}/0.log"),
        ..pods::container_config(name, &["sh", "-c", "echo hot; sleep 3600"])
    };
    // The first container of the image teaches the view the image's ID.
    pod.run_container(&mut rt, with_log("first")).await;

    let ops = [
        "create_container",
        "start_container",
        "stop_container",
        "remove_container",
    ];
    let before = scrape(addr);
    let id = pod.create(&mut rt, with_log("second")).await;
    pods::start_container(&mut rt, &id).await;
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    let log = std::path::Path::new(&pod.config.log_directory).join("second/0.log");
    assert!(log.exists(), "CRI log {log:?}");
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    let after = scrape(addr);
    let delta = |op: &str| docker_ops(&after, op) - docker_ops(&before, op);
    for op in ops {
        assert_eq!(delta(op), 1.0, "{op}");
    }
    assert_eq!(delta("inspect_container"), 0.0, "inspects");
    assert!(!log.exists(), "RemoveContainer removes the CRI log {log:?}");

    // The container's output was copied from Docker's json-file log, found without inspect.
    pod.run_container(&mut rt, with_log("third")).await;
    let log = std::path::Path::new(&pod.config.log_directory).join("third/0.log");
    pods::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        format!("the CRI log {log:?} has the output"),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(" stdout F hot").then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn metrics_count_the_calls_made() {
    require_docker!();
    let d = Daemon::start(&["--metrics-bind-addr=127.0.0.1:0"]).await;
    let addr = metrics_addr(&d).await;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let mut rt = d.runtime().await;
    let mut rt_alpha = d.runtime_alpha().await;

    // Nothing counted before the first call (the harness only connects); a labelled family
    // appears with its first series.
    let before = scrape(addr);
    assert_eq!(before.samples(GRPC_HANDLED), &[]);
    assert_eq!(
        before.kind("cri_dockerd_streaming_sessions_in_flight"),
        "gauge"
    );
    assert_eq!(before.kind("process_resident_memory_bytes"), "gauge");

    // A known number of calls: 3 Version, 1 v1alpha2 Version, 2 ListContainers, 1
    // ContainerStatus on an unknown id (NotFound).
    for _ in 0..3 {
        rt.version(cri::VersionRequest::default())
            .await
            .expect("Version");
    }
    rt_alpha
        .version(alpha::VersionRequest::default())
        .await
        .expect("v1alpha2 Version");
    for _ in 0..2 {
        rt.list_containers(cri::ListContainersRequest::default())
            .await
            .expect("ListContainers");
    }
    let nf = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "0123456789abcdef-no-such-container".into(),
            verbose: false,
        })
        .await
        .expect_err("unknown container");
    assert_eq!(nf.code(), tonic::Code::NotFound);

    let s = scrape(addr);
    for family in [
        "cri_dockerd_grpc_server_handling_seconds",
        "kubelet_docker_operations_duration_seconds",
    ] {
        assert_eq!(s.kind(family), "histogram", "{family}");
    }
    assert_eq!(s.kind(GRPC_HANDLED), "counter");
    assert_eq!(s.kind("kubelet_docker_operations_total"), "counter");
    let version = format!("{V1}Version");
    assert_eq!(handled(&s, &version, "OK"), 3.0);
    assert_eq!(
        s.get(GRPC_SECONDS_COUNT, &[("grpc_method", &version)]),
        Some(3.0)
    );
    assert_eq!(
        handled(&s, "/runtime.v1alpha2.RuntimeService/Version", "OK"),
        1.0
    );
    assert_eq!(handled(&s, &format!("{V1}ListContainers"), "OK"), 2.0);
    let status = format!("{V1}ContainerStatus");
    assert_eq!(handled(&s, &status, "NotFound"), 1.0);
    assert_eq!(handled(&s, &status, "OK"), 0.0);
    assert_eq!(
        s.get(GRPC_SECONDS_COUNT, &[("grpc_method", &status)]),
        Some(1.0)
    );
    // Every call is counted once: handled totals equal the latency histograms' counts.
    let total_handled: f64 = s.samples(GRPC_HANDLED).iter().map(|x| x.value).sum();
    let total_timed: f64 = s
        .samples("cri_dockerd_grpc_server_handling_seconds")
        .iter()
        .filter(|x| x.name == GRPC_SECONDS_COUNT)
        .map(|x| x.value)
        .sum();
    assert_eq!((total_handled, total_timed), (7.0, 7.0));
    // Version asks dockerd.
    assert!(
        docker_ops(&s, "version") >= 4.0,
        "{:?}",
        s.samples("kubelet_docker_operations_total")
    );

    // A pod and a container, an exec through the streaming server, and their removal.
    let pod = Pod::run(&mut rt, &d, "metrics", "metricstest").await;
    let container_id = pod
        .run_container(
            &mut rt,
            pods::container_config("sleeper", &["sleep", "3600"]),
        )
        .await;

    let exec_url = |cmd: &[&str]| cri::ExecRequest {
        container_id: container_id.clone(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: false,
    };
    // A finished exec.
    let url = rt
        .exec(exec_url(&["echo", "hi"]))
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let out = client::spdy_exec(
        &url,
        "v4.channel.k8s.io",
        ExecOptions {
            stdout: true,
            ..Default::default()
        },
    )
    .await
    .expect("exec echo");
    assert_eq!(out.stdout, b"hi\n");
    // A running exec is in flight, and no longer once its client is gone.
    let url = rt
        .exec(exec_url(&["sleep", "600"]))
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let (ws, _) = client::ws_connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("ws exec");
    // Docker has started the process (a session dropped before that never gets Docker's
    // answer, so its start is not counted: under load that can take more than a moment).
    let s = pods::wait_until(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "the exec's start was not counted",
        async || Some(scrape(addr)).filter(|s| docker_ops(s, "start_exec") >= 2.0),
    )
    .await;
    assert_eq!(exec_in_flight(&s), 1.0);
    assert_eq!(
        s.get("cri_dockerd_streaming_sessions_total", &[("kind", "exec")]),
        Some(2.0)
    );
    drop(ws);
    let s = pods::wait_until(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "exec sessions in flight did not go back to 0",
        async || Some(scrape(addr)).filter(|s| exec_in_flight(s) == 0.0),
    )
    .await;
    assert_eq!(
        s.get(
            "cri_dockerd_streaming_sessions_in_flight",
            &[("kind", "port_forward")]
        ),
        Some(0.0)
    );

    rt.stop_container(cri::StopContainerRequest {
        container_id: container_id.clone(),
        timeout: 1,
    })
    .await
    .expect("StopContainer");
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: container_id.clone(),
    })
    .await
    .expect("RemoveContainer");
    pods::stop_and_remove_pod(&mut rt, &pod.id).await;

    let s = scrape(addr);
    for method in [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
    ] {
        assert_eq!(handled(&s, &format!("{V1}{method}"), "OK"), 1.0, "{method}");
    }
    assert_eq!(handled(&s, &format!("{V1}Exec"), "OK"), 2.0);
    // Earlier counts stay as they were.
    assert_eq!(handled(&s, &version, "OK"), 3.0);
    assert_eq!(handled(&s, &status, "NotFound"), 1.0);
    // Docker operations, under the Go original's operation_type names: the pause and the
    // busybox containers were created, started, stopped and removed.
    for op in [
        "create_container",
        "start_container",
        "stop_container",
        "remove_container",
    ] {
        assert!(docker_ops(&s, op) >= 2.0, "{op}: {}", docker_ops(&s, op));
    }
    assert!(docker_ops(&s, "create_exec") >= 2.0);
    assert!(docker_ops(&s, "start_exec") >= 2.0);
    // The Go pair (total counter, latency histogram) agrees for every operation.
    for x in s.samples("kubelet_docker_operations_total") {
        let op = &x.labels["operation_type"];
        assert_eq!(
            s.get(
                "kubelet_docker_operations_duration_seconds_count",
                &[("operation_type", op)]
            ),
            Some(x.value),
            "{op}"
        );
    }
    // Errors by kind add up to the Go error counter.
    for x in s.samples("kubelet_docker_operations_errors_total") {
        let op = &x.labels["operation_type"];
        let by_kind: f64 = s
            .samples("cri_dockerd_docker_operation_errors_total")
            .iter()
            .filter(|k| &k.labels["operation_type"] == op)
            .map(|k| k.value)
            .sum();
        assert_eq!(by_kind, x.value, "{op}");
    }

    // The process collector.
    assert!(s.count("process_resident_memory_bytes", &[]) > 0.0);
    assert!(s.count("process_virtual_memory_bytes", &[]) > 0.0);
    assert!(s.count("process_open_fds", &[]) > 0.0);
    assert!(s.count("process_threads", &[]) >= 1.0);
    assert_eq!(s.kind("process_cpu_seconds_total"), "counter");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = s.count("process_start_time_seconds", &[]);
    assert!(
        started > now - 600.0 && started <= now + 1.0,
        "{started} vs {now}"
    );

    // Anything but /metrics is 404; a POST is 405; HEAD has no body.
    assert_eq!(http(addr, "GET", "/").0, 404);
    assert_eq!(http(addr, "GET", "/metrics/x").0, 404);
    assert_eq!(http(addr, "POST", "/metrics").0, 405);
    let (code, _, body) = http(addr, "HEAD", "/metrics");
    assert_eq!((code, body.as_str()), (200, ""));
}

/// CNI plugins of Debian's containernetworking-plugins (loopback runs for every pod).
const CNI_PLUGINS: &str = "/usr/lib/cni";

#[tokio::test]
async fn network_plugin_and_cni_runs_are_counted() {
    require_docker!();
    if !std::path::Path::new(CNI_PLUGINS).join("loopback").exists() {
        assert!(!common::required(), "{CNI_PLUGINS}/loopback missing");
        return;
    }
    // A fixture plugin that refuses ADD (a CNI error object) and accepts everything else: the
    // pod's only network changes are loopback's, inside the pause container's netns.
    let bin = tempfile::tempdir().expect("tempdir");
    let plugin = bin.path().join("metricsfake");
    std::fs::write(
        &plugin,
        "#!/bin/sh
case \"$CNI_COMMAND\" in
         ADD) echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"metrics fixture refuses\"}'; exit 1;;
         VERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}';;
         esac
exit 0
",
    )
    .expect("write plugin");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let bin_dirs = format!("--cni-bin-dir={},{CNI_PLUGINS}", bin.path().display());
    let d = Daemon::start(&[
        "--metrics-bind-addr=127.0.0.1:0",
        "--network-plugin=cni",
        &bin_dirs,
    ])
    .await;
    std::fs::create_dir_all(d.cni_conf_dir()).expect("conf dir");
    std::fs::write(
        d.cni_conf_dir().join("10-metrics.conflist"),
        r#"{"cniVersion":"1.0.0","name":"metrics-test","plugins":[{"type":"metricsfake"}]}"#,
    )
    .expect("conflist");
    let addr = metrics_addr(&d).await;
    let mut rt = d.runtime().await;
    let uid = pods::unique();
    let _cleanup = PodCleanup(uid.clone());
    let config = pods::pod_config(&format!("metrics-net-{uid}"), "metricstest", &uid);
    let e = pods::try_run_pod_sandbox(&mut rt, &config)
        .await
        .expect_err("the fixture refuses ADD");
    assert!(e.message().contains("metrics fixture refuses"), "{e:?}");

    let s = scrape(addr);
    let code = match e.code() {
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        other => panic!("unexpected code {other:?}"),
    };
    assert_eq!(handled(&s, &format!("{V1}RunPodSandbox"), code), 1.0);
    let net = |family: &str, op: &str| s.count(family, &[("operation_type", op)]);
    assert_eq!(
        net("kubelet_network_plugin_operations_total", "set_up_pod"),
        1.0
    );
    assert_eq!(
        net(
            "kubelet_network_plugin_operations_errors_total",
            "set_up_pod"
        ),
        1.0
    );
    assert_eq!(
        s.get(
            "kubelet_network_plugin_operations_duration_seconds_count",
            &[("operation_type", "set_up_pod")]
        ),
        Some(1.0)
    );
    let cni = |family: &str, op: &str, plugin: &str| {
        s.count(family, &[("operation", op), ("plugin_type", plugin)])
    };
    const RUNS: &str = "cri_dockerd_cni_operations_duration_seconds_count";
    const FAILED: &str = "cri_dockerd_cni_operations_errors_total";
    assert_eq!(
        cni(RUNS, "ADD", "metricsfake"),
        1.0,
        "{:?}",
        s.samples(FAILED)
    );
    assert_eq!(cni(FAILED, "ADD", "metricsfake"), 1.0);
    // The failed ADD is undone with DEL, which the fixture accepts.
    assert!(cni(RUNS, "DEL", "metricsfake") >= 1.0);
    assert_eq!(cni(FAILED, "DEL", "metricsfake"), 0.0);
    // Loopback was brought up (and taken down again with the failed sandbox).
    assert!(cni(RUNS, "ADD", "loopback") >= 1.0);
    assert_eq!(cni(FAILED, "ADD", "loopback"), 0.0);
}

#[tokio::test]
async fn off_by_default_no_listener() {
    // No dockerd needed: nothing here talks to it.
    let d = Daemon::start(&["--docker-endpoint=unix:///nonexistent/docker.sock"]).await;
    let on = Daemon::start(&[
        "--docker-endpoint=unix:///nonexistent/docker.sock",
        "--metrics-bind-addr=127.0.0.1:0",
    ])
    .await;
    let addr = metrics_addr(&on).await;
    // The start-up line says it is off; the only TCP listener is the streaming server's.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.log().contains("metrics=off") {
        assert!(Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listening_ports(d.child.id()).len(), 1, "{}", d.log());
    let with = listening_ports(on.child.id());
    assert_eq!(with.len(), 2, "{with:?}");
    assert!(with.contains(&addr.port()), "{with:?} lacks {addr}");
}

/// In this process (the only test here that calls the library's metrics; the others scrape a
/// daemon): calls recorded before `enable` leave nothing behind, calls after it are counted.
#[test]
fn recording_is_off_until_enabled() {
    use cri_dockerd::metrics;
    let call = metrics::start_rpc("/runtime.v1.RuntimeService/Version");
    metrics::record_rpc(call, 0);
    metrics::record_docker("version", Duration::from_millis(1), None);
    metrics::record_network("set_up_pod", Duration::from_millis(1), false);
    metrics::record_cni("ADD", "bridge", Duration::from_millis(1), false);
    metrics::enable();
    let before = parse(&metrics::render()).expect("parse");
    let recorded: Vec<&Sample> = before
        .families
        .values()
        .flat_map(|f| &f.samples)
        .filter(|s| {
            s.name.starts_with("kubelet_docker_operations")
                || s.name.starts_with("kubelet_network_plugin")
                || s.name.starts_with("cri_dockerd_cni_")
                || s.name.starts_with("cri_dockerd_grpc_")
        })
        .collect();
    assert!(recorded.is_empty(), "recorded while off: {recorded:?}");
    metrics::record_rpc(metrics::start_rpc("/runtime.v1.RuntimeService/Version"), 0);
    metrics::record_docker("version", Duration::from_millis(1), None);
    metrics::record_cni("ADD", "bridge", Duration::from_millis(1), false);
    let after = parse(&metrics::render()).expect("parse");
    assert_eq!(
        handled(&after, "/runtime.v1.RuntimeService/Version", "OK"),
        1.0
    );
    assert_eq!(docker_ops(&after, "version"), 1.0);
}

#[test]
fn bind_failure_is_one_error_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(common::binary())
        .args([
            format!(
                "--container-runtime-endpoint=unix://{}",
                dir.path().join("cri.sock").display()
            ),
            format!(
                "--cri-dockerd-root-directory={}",
                dir.path().join("root").display()
            ),
            "--network-plugin=no-op".into(),
            "--docker-endpoint=unix:///nonexistent/docker.sock".into(),
            format!("--metrics-bind-addr=127.0.0.1:{port}"),
        ])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!("--metrics-bind-addr=127.0.0.1:{port}"))
            && errors[0].contains("in use"),
        "{stderr}"
    );
    // Nothing was served: the start-up line never came.
    assert!(!stderr.contains("serving CRI"), "{stderr}");
    drop(taken);
}

#[tokio::test]
async fn scrape_does_not_wait_on_docker() {
    // A "dockerd" that accepts connections and never answers.
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let endpoint = format!("--docker-endpoint=unix://{}", sock.display());
    let d = Daemon::start(&[&endpoint, "--metrics-bind-addr=127.0.0.1:0"]).await;
    let addr = metrics_addr(&d).await;
    let mut rt = d.runtime().await;
    // A call that waits on dockerd, in flight during the scrape.
    let pending = tokio::spawn(async move { rt.version(cri::VersionRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "Version answered without dockerd");
    let s = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .expect("scrape");
    assert!(s.count("process_resident_memory_bytes", &[]) > 0.0);
    // The hanging call is not counted yet.
    assert_eq!(handled(&s, &format!("{V1}Version"), "OK"), 0.0);
    assert!(!pending.is_finished());
    pending.abort();
    held.abort();
}
