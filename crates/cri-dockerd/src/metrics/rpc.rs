//! Per-RPC metrics: the known CRI methods (a path outside them is counted as `unknown`, so a
//! client sending random paths cannot grow the label set), gRPC code names, and per-method
//! handles resolved once so that recording a successful call takes no lock.

use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};

use super::metrics;

/// Every method the daemon serves, CRI v1 and v1alpha2, sorted (binary search).
const KNOWN_METHODS: &[&str] = &[
    "/runtime.v1.ImageService/ImageFsInfo",
    "/runtime.v1.ImageService/ImageStatus",
    "/runtime.v1.ImageService/ListImages",
    "/runtime.v1.ImageService/PullImage",
    "/runtime.v1.ImageService/RemoveImage",
    "/runtime.v1.RuntimeService/Attach",
    "/runtime.v1.RuntimeService/CheckpointContainer",
    "/runtime.v1.RuntimeService/ContainerStats",
    "/runtime.v1.RuntimeService/ContainerStatus",
    "/runtime.v1.RuntimeService/CreateContainer",
    "/runtime.v1.RuntimeService/Exec",
    "/runtime.v1.RuntimeService/ExecSync",
    "/runtime.v1.RuntimeService/GetContainerEvents",
    "/runtime.v1.RuntimeService/ListContainerStats",
    "/runtime.v1.RuntimeService/ListContainers",
    "/runtime.v1.RuntimeService/ListMetricDescriptors",
    "/runtime.v1.RuntimeService/ListPodSandbox",
    "/runtime.v1.RuntimeService/ListPodSandboxMetrics",
    "/runtime.v1.RuntimeService/ListPodSandboxStats",
    "/runtime.v1.RuntimeService/PodSandboxStats",
    "/runtime.v1.RuntimeService/PodSandboxStatus",
    "/runtime.v1.RuntimeService/PortForward",
    "/runtime.v1.RuntimeService/RemoveContainer",
    "/runtime.v1.RuntimeService/RemovePodSandbox",
    "/runtime.v1.RuntimeService/ReopenContainerLog",
    "/runtime.v1.RuntimeService/RunPodSandbox",
    "/runtime.v1.RuntimeService/RuntimeConfig",
    "/runtime.v1.RuntimeService/StartContainer",
    "/runtime.v1.RuntimeService/Status",
    "/runtime.v1.RuntimeService/StopContainer",
    "/runtime.v1.RuntimeService/StopPodSandbox",
    "/runtime.v1.RuntimeService/UpdateContainerResources",
    "/runtime.v1.RuntimeService/UpdateRuntimeConfig",
    "/runtime.v1.RuntimeService/Version",
    "/runtime.v1alpha2.ImageService/ImageFsInfo",
    "/runtime.v1alpha2.ImageService/ImageStatus",
    "/runtime.v1alpha2.ImageService/ListImages",
    "/runtime.v1alpha2.ImageService/PullImage",
    "/runtime.v1alpha2.ImageService/RemoveImage",
    "/runtime.v1alpha2.RuntimeService/Attach",
    "/runtime.v1alpha2.RuntimeService/ContainerStats",
    "/runtime.v1alpha2.RuntimeService/ContainerStatus",
    "/runtime.v1alpha2.RuntimeService/CreateContainer",
    "/runtime.v1alpha2.RuntimeService/Exec",
    "/runtime.v1alpha2.RuntimeService/ExecSync",
    "/runtime.v1alpha2.RuntimeService/ListContainerStats",
    "/runtime.v1alpha2.RuntimeService/ListContainers",
    "/runtime.v1alpha2.RuntimeService/ListPodSandbox",
    "/runtime.v1alpha2.RuntimeService/ListPodSandboxStats",
    "/runtime.v1alpha2.RuntimeService/PodSandboxStats",
    "/runtime.v1alpha2.RuntimeService/PodSandboxStatus",
    "/runtime.v1alpha2.RuntimeService/PortForward",
    "/runtime.v1alpha2.RuntimeService/RemoveContainer",
    "/runtime.v1alpha2.RuntimeService/RemovePodSandbox",
    "/runtime.v1alpha2.RuntimeService/ReopenContainerLog",
    "/runtime.v1alpha2.RuntimeService/RunPodSandbox",
    "/runtime.v1alpha2.RuntimeService/StartContainer",
    "/runtime.v1alpha2.RuntimeService/Status",
    "/runtime.v1alpha2.RuntimeService/StopContainer",
    "/runtime.v1alpha2.RuntimeService/StopPodSandbox",
    "/runtime.v1alpha2.RuntimeService/UpdateContainerResources",
    "/runtime.v1alpha2.RuntimeService/UpdateRuntimeConfig",
    "/runtime.v1alpha2.RuntimeService/Version",
];

/// The `grpc_method` label of a path that is none of [`KNOWN_METHODS`].
const UNKNOWN_METHOD: &str = "unknown";

/// The label handles of one method for its common outcome (code OK), made on first use.
#[derive(Default)]
struct MethodSlot {
    handles: OnceLock<(Histogram, IntCounter)>,
}

/// One slot per known method, plus the last for `unknown`.
static SLOTS: LazyLock<Vec<MethodSlot>> = LazyLock::new(|| {
    (0..=KNOWN_METHODS.len())
        .map(|_| MethodSlot::default())
        .collect()
});

fn method_index(path: &str) -> usize {
    KNOWN_METHODS
        .binary_search(&path)
        .unwrap_or(KNOWN_METHODS.len())
}

fn method_name(index: usize) -> &'static str {
    KNOWN_METHODS.get(index).copied().unwrap_or(UNKNOWN_METHOD)
}

/// gRPC status code number -> its name as gRPC and go-grpc-prometheus spell it.
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// An RPC being measured: which method, since when.
#[derive(Debug, Clone, Copy)]
pub struct RpcCall {
    method: usize,
    start: Instant,
}

/// Start measuring a call to `path` (the HTTP/2 `:path`, e.g.
/// `/runtime.v1.RuntimeService/Version`).
pub fn start_rpc(path: &str) -> RpcCall {
    RpcCall {
        method: method_index(path),
        start: Instant::now(),
    }
}

impl RpcCall {
    /// The `grpc_method` label this call is counted under.
    pub fn method(&self) -> &'static str {
        method_name(self.method)
    }

    /// Time since the call started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Record the end of `call` with gRPC status `code`.
pub fn record_rpc(call: RpcCall, code: i32) {
    let Some(m) = metrics() else { return };
    let secs = call.elapsed().as_secs_f64();
    let method = call.method();
    let (hist, ok) = SLOTS[call.method].handles.get_or_init(|| {
        (
            m.grpc_seconds.with_label_values(&[method]),
            m.grpc_handled.with_label_values(&[method, "OK"]),
        )
    });
    hist.observe(secs);
    if code == 0 {
        ok.inc();
    } else {
        m.grpc_handled
            .with_label_values(&[method, code_name(code)])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_sorted_and_unique() {
        assert!(KNOWN_METHODS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(KNOWN_METHODS.len(), 34 + 29);
    }

    #[test]
    fn paths_map_to_their_method_or_unknown() {
        for path in KNOWN_METHODS {
            assert_eq!(method_name(method_index(path)), *path);
        }
        for path in [
            "",
            "/",
            "/runtime.v1.RuntimeService/NoSuch",
            "/runtime.v1alpha2.RuntimeService/CheckpointContainer",
            "/grpc.health.v1.Health/Check",
            "/runtime.v1.RuntimeService/Version/x",
        ] {
            assert_eq!(method_name(method_index(path)), UNKNOWN_METHOD, "{path}");
        }
    }

    #[test]
    fn code_names_follow_grpc() {
        let table = [
            (tonic::Code::Ok, "OK"),
            (tonic::Code::Cancelled, "Canceled"),
            (tonic::Code::Unknown, "Unknown"),
            (tonic::Code::InvalidArgument, "InvalidArgument"),
            (tonic::Code::DeadlineExceeded, "DeadlineExceeded"),
            (tonic::Code::NotFound, "NotFound"),
            (tonic::Code::AlreadyExists, "AlreadyExists"),
            (tonic::Code::PermissionDenied, "PermissionDenied"),
            (tonic::Code::ResourceExhausted, "ResourceExhausted"),
            (tonic::Code::FailedPrecondition, "FailedPrecondition"),
            (tonic::Code::Aborted, "Aborted"),
            (tonic::Code::OutOfRange, "OutOfRange"),
            (tonic::Code::Unimplemented, "Unimplemented"),
            (tonic::Code::Internal, "Internal"),
            (tonic::Code::Unavailable, "Unavailable"),
            (tonic::Code::DataLoss, "DataLoss"),
            (tonic::Code::Unauthenticated, "Unauthenticated"),
        ];
        for (code, name) in table {
            assert_eq!(code_name(code as i32), name);
        }
        assert_eq!(code_name(17), "Unknown");
        assert_eq!(code_name(-1), "Unknown");
    }

    #[test]
    fn recording_counts_per_method_and_code() {
        super::super::enable();
        let m = metrics().expect("enabled");
        let path = "/runtime.v1alpha2.RuntimeService/ReopenContainerLog";
        let before_ok = m.grpc_handled.with_label_values(&[path, "OK"]).get();
        let before_nf = m.grpc_handled.with_label_values(&[path, "NotFound"]).get();
        let hist = m.grpc_seconds.with_label_values(&[path]);
        let before_count = hist.get_sample_count();
        record_rpc(start_rpc(path), 0);
        record_rpc(start_rpc(path), 0);
        record_rpc(start_rpc(path), 5);
        assert_eq!(
            m.grpc_handled.with_label_values(&[path, "OK"]).get(),
            before_ok + 2
        );
        assert_eq!(
            m.grpc_handled.with_label_values(&[path, "NotFound"]).get(),
            before_nf + 1
        );
        assert_eq!(hist.get_sample_count(), before_count + 3);
    }
}
