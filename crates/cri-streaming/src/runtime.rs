//! The runtime side of streaming: the trait a container runtime implements, and the I/O handles
//! the server passes to it.

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::mpsc;

use crate::Error;

/// Terminal size as sent by clients on the resize channel (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TermSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Exit status of an exec'd process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Process exit code; non-zero is reported to the client in the v4 status, not as an error.
    pub code: i32,
}

/// Byte stream of one forwarded port: read what the client sends, write what goes back.
/// Shutting down the write side (or dropping the stream) signals EOF to the client.
pub type PortStream = DuplexStream;

/// The client's streams for an exec or attach. `None` means the client did not ask for it.
///
/// Dropping `stdout`/`stderr` (or shutting them down) ends the corresponding client stream;
/// `stdin` reads EOF when the client closes its stdin. `resize` yields terminal size changes
/// (only with `tty`). The call's future is dropped when the client goes away or the idle timeout
/// fires: implementations must treat drop as cancellation and clean up.
pub struct StreamIo {
    /// Client's stdin.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Client's stdout (with `tty`, the terminal output).
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Client's stderr (never set with `tty`).
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Whether a terminal was requested.
    pub tty: bool,
    /// Terminal size changes (only with `tty`).
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

impl std::fmt::Debug for StreamIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.tty)
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// What a container runtime provides to the streaming server.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Runs `cmd` in the container wired to `io`; returns when the process exits.
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        io: StreamIo,
    ) -> Result<ExitStatus, Error>;

    /// Attaches `io` to the container's main process; returns when the streams end.
    async fn attach(&self, container_id: &str, io: StreamIo) -> Result<(), Error>;

    /// Connects `stream` to `port` on localhost inside the sandbox's network namespace and
    /// copies both ways until both directions are closed.
    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        stream: PortStream,
    ) -> Result<(), Error>;
}
