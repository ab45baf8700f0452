//! The daemon's own Prometheus metrics (not the pods' cAdvisor metrics, which are
//! `service::metrics`): every metric family, the recording functions the layers call, and the
//! text rendering the `/metrics` endpoint ([`http`]) serves.
//!
//! Recording is off until [`enable`] (the daemon calls it when `--metrics-bind-addr` is given):
//! without an endpoint nobody can read the figures, so no family is made and every recording
//! function returns at once. Once on, a recording costs a few relaxed atomic operations (plus the
//! crate's read-locked label lookup for the labelled families); the registry is only read when
//! `/metrics` is scraped.
//! Names follow the Go cri-dockerd where it had the metric (`kubelet_docker_operations_*`,
//! `kubelet_network_plugin_operations_*`, with its `operation_type` values), the standard process
//! collector for `process_*`, and `cri_dockerd_*` for what is new. README.md lists them all.

pub mod http;
mod process;
mod rpc;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus::{
    Counter, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub use rpc::{RpcCall, record_rpc, start_rpc};

/// Buckets of the Go original's histograms (Prometheus' default buckets), in seconds.
const GO_BUCKETS: &[f64] = prometheus::DEFAULT_BUCKETS;

/// Buckets for CRI calls and CNI plugin runs, in seconds: from the sub-millisecond List calls
/// kubelet makes every second to image pulls and pod start-ups.
const CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// Every metric family, registered in one [`Registry`].
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) grpc_seconds: HistogramVec,
    pub(crate) grpc_handled: IntCounterVec,
    docker_seconds: HistogramVec,
    docker_total: IntCounterVec,
    docker_errors: IntCounterVec,
    docker_timeouts: IntCounterVec,
    docker_errors_by_kind: IntCounterVec,
    net_seconds: HistogramVec,
    net_total: IntCounterVec,
    net_errors: IntCounterVec,
    cni_seconds: HistogramVec,
    cni_errors: IntCounterVec,
    streams_open: IntGaugeVec,
    streams_total: IntCounterVec,
    process: process::ProcessMetrics,
    /// Serialises scrapes: refreshing the scrape-time values (a counter catches up by a delta)
    /// must not interleave.
    scrape: Mutex<()>,
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            grpc_seconds: histogram(
                "cri_dockerd_grpc_server_handling_seconds",
                "Latency in seconds of CRI gRPC calls, until the response is complete, by full method name.",
                CALL_BUCKETS,
                &["grpc_method"],
            ),
            grpc_handled: counter(
                "cri_dockerd_grpc_server_handled_total",
                "CRI gRPC calls completed, by full method name and gRPC status code name.",
                &["grpc_method", "grpc_code"],
            ),
            docker_seconds: histogram(
                "kubelet_docker_operations_duration_seconds",
                "Latency in seconds of Docker operations. Broken down by operation type.",
                GO_BUCKETS,
                &["operation_type"],
            ),
            docker_total: counter(
                "kubelet_docker_operations_total",
                "Cumulative number of Docker operations by operation type.",
                &["operation_type"],
            ),
            docker_errors: counter(
                "kubelet_docker_operations_errors_total",
                "Cumulative number of Docker operation errors by operation type.",
                &["operation_type"],
            ),
            docker_timeouts: counter(
                "kubelet_docker_operations_timeout_total",
                "Cumulative number of Docker operation timeout by operation type.",
                &["operation_type"],
            ),
            docker_errors_by_kind: counter(
                "cri_dockerd_docker_operation_errors_total",
                "Docker operation errors by operation type and kind (not_found, conflict, bad_request, unauthorized, unavailable, timeout, registry_unreachable, api, client).",
                &["operation_type", "kind"],
            ),
            net_seconds: histogram(
                "kubelet_network_plugin_operations_duration_seconds",
                "Latency in seconds of network plugin operations. Broken down by operation type.",
                GO_BUCKETS,
                &["operation_type"],
            ),
            net_total: counter(
                "kubelet_network_plugin_operations_total",
                "Cumulative number of network plugin operations by operation type.",
                &["operation_type"],
            ),
            net_errors: counter(
                "kubelet_network_plugin_operations_errors_total",
                "Cumulative number of network plugin operation errors by operation type.",
                &["operation_type"],
            ),
            cni_seconds: histogram(
                "cri_dockerd_cni_operations_duration_seconds",
                "Latency in seconds of CNI plugin runs, by CNI command (ADD, DEL, CHECK, STATUS, VERSION, GC) and plugin type.",
                CALL_BUCKETS,
                &["operation", "plugin_type"],
            ),
            cni_errors: counter(
                "cri_dockerd_cni_operations_errors_total",
                "Failed CNI plugin runs (error result, non-zero exit, timeout), by CNI command and plugin type.",
                &["operation", "plugin_type"],
            ),
            streams_open: IntGaugeVec::new(
                Opts::new(
                    "cri_dockerd_streaming_sessions_in_flight",
                    "Exec, attach and port-forward streaming sessions open now, by kind.",
                ),
                &["kind"],
            )
            .unwrap_or_else(|e| panic!("metric: {e}")),
            streams_total: counter(
                "cri_dockerd_streaming_sessions_total",
                "Exec, attach and port-forward streaming sessions started, by kind.",
                &["kind"],
            ),
            process: process::ProcessMetrics::new(),
            scrape: Mutex::new(()),
        };
        let build_info = IntGauge::with_opts(
            Opts::new(
                "cri_dockerd_build_info",
                "Always 1; the version of this cri-dockerd in the version label.",
            )
            .const_label("version", crate::version::full_version()),
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        build_info.set(1);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.grpc_seconds.clone()),
            Box::new(m.grpc_handled.clone()),
            Box::new(m.docker_seconds.clone()),
            Box::new(m.docker_total.clone()),
            Box::new(m.docker_errors.clone()),
            Box::new(m.docker_timeouts.clone()),
            Box::new(m.docker_errors_by_kind.clone()),
            Box::new(m.net_seconds.clone()),
            Box::new(m.net_total.clone()),
            Box::new(m.net_errors.clone()),
            Box::new(m.cni_seconds.clone()),
            Box::new(m.cni_errors.clone()),
            Box::new(m.streams_open.clone()),
            Box::new(m.streams_total.clone()),
            Box::new(build_info),
        ];
        for c in collectors.into_iter().chain(m.process.collectors()) {
            m.registry
                .register(c)
                .unwrap_or_else(|e| panic!("registering a metric: {e}"));
        }
        // The in-flight gauges exist (at 0) before the first session, so "back to 0" and
        // "never used" read the same.
        for kind in cri_streaming::SessionKind::ALL {
            m.streams_open.with_label_values(&[kind.as_str()]).set(0);
            m.streams_total.with_label_values(&[kind.as_str()]);
        }
        m
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Where the streaming session counts come from, once the streaming server runs.
type SessionSource = Box<dyn Fn() -> Option<cri_streaming::SessionCounts> + Send + Sync>;
static SESSIONS: OnceLock<SessionSource> = OnceLock::new();

/// Turn recording on: make every metric family (once) and count from now on. Call before the
/// `/metrics` endpoint serves.
pub fn enable() {
    METRICS.get_or_init(Metrics::new);
}

/// The metric families once recording is on ([`enable`]), else `None`.
pub(crate) fn metrics() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Read the streaming server's session counters at each scrape (set once, at start-up).
pub fn set_session_source(
    source: impl Fn() -> Option<cri_streaming::SessionCounts> + Send + Sync + 'static,
) {
    let _ = SESSIONS.set(Box::new(source));
}

/// Record one Docker API call: `operation` is the Go original's `operation_type` name
/// (`create_container`, `pull_image`, …); `error` its failure kind and whether it timed out.
pub fn record_docker(operation: &'static str, elapsed: Duration, error: Option<(&str, bool)>) {
    let Some(m) = metrics() else { return };
    let op = [operation];
    m.docker_seconds
        .with_label_values(&op)
        .observe(elapsed.as_secs_f64());
    m.docker_total.with_label_values(&op).inc();
    if let Some((kind, timeout)) = error {
        m.docker_errors.with_label_values(&op).inc();
        if timeout {
            m.docker_timeouts.with_label_values(&op).inc();
        }
        m.docker_errors_by_kind
            .with_label_values(&[operation, kind])
            .inc();
    }
}

/// Record one network plugin operation on a pod (`set_up_pod`, `tear_down_pod`,
/// `get_pod_network_status`, `check_pod`), as the Go original's network plugin manager.
pub fn record_network(operation: &'static str, elapsed: Duration, failed: bool) {
    let Some(m) = metrics() else { return };
    let op = [operation];
    m.net_seconds
        .with_label_values(&op)
        .observe(elapsed.as_secs_f64());
    m.net_total.with_label_values(&op).inc();
    if failed {
        m.net_errors.with_label_values(&op).inc();
    }
}

/// Record one CNI plugin run: `command` is `ADD`, `DEL`, …; `plugin_type` the plugin's `type`.
pub fn record_cni(command: &'static str, plugin_type: &str, elapsed: Duration, failed: bool) {
    let Some(m) = metrics() else { return };
    let labels = [command, plugin_type];
    m.cni_seconds
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
    if failed {
        m.cni_errors.with_label_values(&labels).inc();
    }
}

/// Everything in the Prometheus text exposition format 0.0.4 (turns recording on if it was not).
/// Reads atomics and `/proc/self`; never waits on Docker.
pub fn render() -> String {
    let m = METRICS.get_or_init(Metrics::new);
    let _scrape = m
        .scrape
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    m.process.refresh();
    if let Some(counts) = SESSIONS.get().and_then(|f| f()) {
        for kind in cri_streaming::SessionKind::ALL {
            let k = [kind.as_str()];
            m.streams_open
                .with_label_values(&k)
                .set(i64::try_from(counts.open(kind)).unwrap_or(i64::MAX));
            let total = m.streams_total.with_label_values(&k);
            let started = counts.started(kind);
            if started > total.get() {
                total.inc_by(started - total.get());
            }
        }
    }
    let families = m.registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_else(|e| format!("# encoding the metrics failed: {e}\n"))
}

/// Catch `counter` up with a cumulative value read elsewhere (CPU seconds).
fn catch_up(counter: &Counter, value: f64) {
    let delta = value - counter.get();
    if delta > 0.0 {
        counter.inc_by(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_text_format_with_every_unlabelled_family() {
        enable();
        record_docker("version", Duration::from_millis(3), None);
        record_docker(
            "inspect_container",
            Duration::from_millis(1),
            Some(("not_found", false)),
        );
        record_docker(
            "pull_image",
            Duration::from_secs(60),
            Some(("timeout", true)),
        );
        record_network("set_up_pod", Duration::from_millis(40), true);
        record_cni("ADD", "bridge", Duration::from_millis(30), false);
        let text = render();
        for line in [
            "# TYPE kubelet_docker_operations_duration_seconds histogram",
            "kubelet_docker_operations_errors_total{operation_type=\"inspect_container\"} ",
            "cri_dockerd_docker_operation_errors_total{kind=\"not_found\",operation_type=\"inspect_container\"} ",
            "kubelet_docker_operations_timeout_total{operation_type=\"pull_image\"} ",
            "cri_dockerd_docker_operation_errors_total{kind=\"timeout\",operation_type=\"pull_image\"} ",
            "kubelet_network_plugin_operations_errors_total{operation_type=\"set_up_pod\"} ",
            "cri_dockerd_cni_operations_duration_seconds_count{operation=\"ADD\",plugin_type=\"bridge\"} ",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_start_time_seconds gauge",
            "cri_dockerd_streaming_sessions_in_flight{kind=\"exec\"} 0",
        ] {
            assert!(text.contains(line), "{line:?} missing:\n{text}");
        }
        // A success is no error.
        assert!(
            !text.contains("kubelet_docker_operations_errors_total{operation_type=\"version\"}")
        );
    }

    /// What one recording costs (`cargo test --release -p cri-dockerd --lib recording_cost --
    /// --ignored --nocapture`): prints nanoseconds per call, next to one `Instant::now()`.
    #[test]
    #[ignore = "benchmark: prints timings"]
    fn recording_cost() {
        const N: u32 = 1_000_000;
        let time = |f: &dyn Fn()| {
            let start = std::time::Instant::now();
            for _ in 0..N {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(N)
        };
        let clock = time(&|| {
            std::hint::black_box(std::time::Instant::now());
        });
        let rpc_ok = time(&|| {
            record_rpc(start_rpc("/runtime.v1.RuntimeService/ListContainers"), 0);
        });
        let rpc_err = time(&|| {
            record_rpc(start_rpc("/runtime.v1.RuntimeService/ContainerStatus"), 5);
        });
        let docker = time(&|| record_docker("inspect_container", Duration::from_micros(300), None));
        println!(
            "ns per call: Instant::now {clock:.0}, RPC OK {rpc_ok:.0} ({:.1}x), RPC NotFound \
             {rpc_err:.0} ({:.1}x), Docker call {docker:.0} ({:.1}x)",
            rpc_ok / clock,
            rpc_err / clock,
            docker / clock
        );
    }
}
