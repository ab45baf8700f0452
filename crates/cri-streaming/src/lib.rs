//! Kubelet-compatible CRI streaming server: exec, attach and port-forward over SPDY/3.1 and
//! WebSocket, behind single-use expiring tokens. No container runtime inside: the runtime side is
//! the [`Runtime`] trait.
//!
//! Flow: the CRI `Exec`/`Attach`/`PortForward` RPC calls [`Server::get_exec`] (etc.), which
//! validates the request, stores it under an unguessable token and returns an absolute
//! `http://host:port/exec/<token>` URL. The client (kubelet proxy, kubectl, crictl) connects
//! there, upgrades to SPDY/3.1 or WebSocket, and the server drives the [`Runtime`] call.
//!
//! Wiring into a CRI server:
//! ```ignore
//! let streaming = Server::new(Config { bind_addr, ..Config::default() }, Arc::new(docker_runtime));
//! streaming.start().await?;                       // at start-up
//! // in the Exec RPC, after checking the container exists and is running:
//! let url = streaming.get_exec(ExecRequest { container_id, cmd, tty, stdin, stdout, stderr })?;
//! ```
//! [`Error::InvalidArgument`] maps to gRPC `InvalidArgument`, [`Error::NotRunning`] to
//! `Unavailable`, [`Error::Io`] (OS random source) to `Internal`.
//!
//! Protocol behaviour follows kubelet's `pkg/kubelet/cri/streaming` and apimachinery's
//! `httpstream`: tokens are consumed before the handshake (a reused, expired, unknown or
//! wrong-kind token is 404); SPDY without `Connection: Upgrade`/`Upgrade: SPDY/3.1` or without
//! `X-Stream-Protocol-Version` is 400, an unsupported protocol 403 with
//! `X-Accepted-Stream-Protocol-Versions`; a WebSocket with an unsupported subprotocol is 403.

pub mod cache;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod error;
mod idle;
mod portforward;
mod remotecommand;
pub mod request;
pub mod runtime;
pub mod server;
pub mod sessions;
pub mod spdy;
mod status;
mod ws;

pub use config::Config;
pub use error::Error;
pub use request::{AttachRequest, ExecRequest, PortForwardRequest};
pub use runtime::{ExitStatus, PortStream, Runtime, StreamIo, TermSize};
pub use server::Server;
pub use sessions::{SessionCounts, SessionKind};

/// SPDY remotecommand subprotocols (`X-Stream-Protocol-Version`), newest first.
pub const SPDY_REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// SPDY port-forward subprotocol.
pub const SPDY_PORTFORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// WebSocket remotecommand subprotocols (`Sec-WebSocket-Protocol`), newest first.
pub const WS_REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// WebSocket port-forward subprotocols (kubelet's `v4.channel.k8s.io` framing; the
/// `v4.portforward.k8s.io` alias is accepted too).
pub const WS_PORTFORWARD_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "v4.portforward.k8s.io",
    "portforward.k8s.io",
];
