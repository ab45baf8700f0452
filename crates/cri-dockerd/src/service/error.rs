//! Domain errors, in CRI terms. `server::status` maps them to gRPC codes.

use crate::{docker, network};

/// What went wrong, as the CRI client needs to know it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (empty name, bad reference, impossible field).
    #[error("{0}")]
    InvalidArgument(String),
    /// The object the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The registry refused the credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Refused for lack of permission.
    #[error("{0}")]
    PermissionDenied(String),
    /// dockerd (or another dependency) cannot be reached now; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The call ran out of time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The CRI call or field is not supported by this runtime.
    #[error("{0}")]
    Unimplemented(String),
    /// A failure of ours or dockerd's that the client cannot fix.
    #[error("{0}")]
    Internal(String),
}

/// Result of a domain call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<docker::Error> for Error {
    fn from(e: docker::Error) -> Self {
        use docker::Error as D;
        let msg = e.to_string();
        match e {
            D::NotFound(_) => Error::NotFound(msg),
            D::Conflict(_) => Error::FailedPrecondition(msg),
            D::BadRequest(_) => Error::InvalidArgument(msg),
            D::Unauthorized(_) => Error::Unauthenticated(msg),
            D::Unavailable(_) | D::RegistryUnreachable(_) => Error::Unavailable(msg),
            D::Timeout(_) => Error::DeadlineExceeded(msg),
            D::Api { .. } | D::Client(_) => Error::Internal(msg),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

/// The one place network-plugin errors become CRI errors: a plugin that is not ready yet is a
/// precondition, a bad pod request the client's fault, anything else (a plugin's own failure,
/// with its code, message and stderr kept) internal.
impl From<network::Error> for Error {
    fn from(e: network::Error) -> Self {
        let msg = e.to_string();
        match e {
            network::Error::NotReady(_) => Error::FailedPrecondition(msg),
            network::Error::InvalidArgument(_) => Error::InvalidArgument(msg),
            _ => Error::Internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_errors_map_to_cri_codes() {
        let nr: Error = network::Error::NotReady("cni config uninitialized".into()).into();
        assert!(
            matches!(&nr, Error::FailedPrecondition(m) if m.contains("cni config uninitialized")),
            "{nr:?}"
        );
        let bad: Error = network::Error::InvalidArgument("bad bandwidth".into()).into();
        assert!(matches!(bad, Error::InvalidArgument(_)), "{bad:?}");
        let plugin: Error = network::Error::Plugin(Box::new(network::PluginError {
            plugin: "bridge".into(),
            network: "net".into(),
            command: "ADD",
            code: 11,
            msg: "no IP addresses available".into(),
            details: String::new(),
            stderr: String::new(),
        }))
        .into();
        assert!(
            matches!(&plugin, Error::Internal(m) if m.contains("code 11: no IP addresses available")),
            "{plugin:?}"
        );
    }
}
