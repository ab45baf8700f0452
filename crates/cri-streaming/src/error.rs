//! Error type of the streaming crate, in terms a CRI server can map to gRPC codes.

/// Errors returned by the streaming server and expected from [`crate::Runtime`] implementations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (maps to gRPC `InvalidArgument`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The container or sandbox does not exist (maps to `NotFound`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The object is in the wrong state, e.g. container not running (maps to `FailedPrecondition`).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The server has not been started yet, or was shut down (maps to `Unavailable`).
    #[error("streaming server is not running")]
    NotRunning,
    /// The runtime failed to run the request (maps to `Internal`).
    #[error("{0}")]
    Runtime(String),
    /// Local I/O failure (binding the listener, reading the OS random source, ...).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
