//! Docker errors, classified once at the adapter boundary.

/// A failed Docker call, by what it means to the caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object (container, image, exec …) does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the object's state or name (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request was refused as malformed (HTTP 400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The registry refused the credentials, or none were given for a private image.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// dockerd cannot be reached (socket missing, connection refused or reset).
    #[error("docker daemon unavailable: {0}")]
    Unavailable(String),
    /// The call did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// dockerd could not reach the image registry (name resolution, connection, TLS handshake
    /// or a timeout on the way): nothing wrong with the request or with dockerd.
    #[error("registry unreachable: {0}")]
    RegistryUnreachable(String),
    /// Any other error answer from dockerd.
    #[error("docker API error (HTTP {status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// dockerd's message.
        message: String,
    },
    /// A failure on our side of the connection (bad URL, undecodable answer).
    #[error("docker client error: {0}")]
    Client(String),
}

/// Result of a Docker call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the error means dockerd could not be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// The error's kind as a metric label value.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Unavailable(_) => "unavailable",
            Error::Timeout(_) => "timeout",
            Error::RegistryUnreachable(_) => "registry_unreachable",
            Error::Api { .. } => "api",
            Error::Client(_) => "client",
        }
    }
}

fn looks_unauthorized(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unauthorized")
        || m.contains("authentication required")
        || m.contains("no basic auth credentials")
        || m.contains("denied: ")
        || m.contains("access denied")
        || m.contains("incorrect username or password")
}

/// Whether dockerd's message says a registry could not be reached over the network (Go's
/// net/http and crypto/tls wording, as dockerd passes it on). A local socket failing (dockerd
/// to containerd, `dial unix …`) is not that.
fn looks_unreachable(message: &str) -> bool {
    const SIGNS: [&str; 6] = [
        "dial tcp",
        "proxyconnect tcp",
        "read tcp",
        "no such host",
        "TLS handshake timeout",
        "Client.Timeout exceeded",
    ];
    !message.contains("dial unix") && SIGNS.iter().any(|sign| message.contains(sign))
}

/// A pull's failure, with the registry's unreachability told apart from dockerd's own errors
/// (both come as HTTP 500 or an error inside the progress stream).
pub(crate) fn classify_pull_error(e: Error) -> Error {
    match e {
        Error::Api { message, .. } if looks_unreachable(&message) => {
            Error::RegistryUnreachable(message)
        }
        other => other,
    }
}

/// Classify a message dockerd sent inside an otherwise successful stream (pull progress).
pub(crate) fn classify_stream_message(message: String) -> Error {
    if looks_unauthorized(&message) {
        Error::Unauthorized(message)
    } else if message.contains("not found") || message.contains("manifest unknown") {
        Error::NotFound(message)
    } else {
        Error::Api {
            status: 500,
            message,
        }
    }
}

impl From<bollard::errors::Error> for Error {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => Error::NotFound(message),
                409 => Error::Conflict(message),
                400 => Error::BadRequest(message),
                401 | 403 => Error::Unauthorized(message),
                500 if looks_unauthorized(&message) => Error::Unauthorized(message),
                503 => Error::Unavailable(message),
                status => Error::Api { status, message },
            },
            B::DockerStreamError { error } => classify_stream_message(error),
            B::RequestTimeoutError => Error::Timeout("docker request timed out".into()),
            B::SocketNotFoundError(path) => {
                Error::Unavailable(format!("docker socket {path} does not exist"))
            }
            B::IOError { err } => Error::Unavailable(err.to_string()),
            B::HyperResponseError { err } => Error::Unavailable(err.to_string()),
            B::HyperLegacyError { err } => Error::Unavailable(format!("{err:?}")),
            other => Error::Client(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn classifies_http_statuses() {
        assert!(matches!(
            Error::from(server(404, "No such container: x")),
            Error::NotFound(_)
        ));
        assert!(matches!(
            Error::from(server(409, "name in use")),
            Error::Conflict(_)
        ));
        assert!(matches!(
            Error::from(server(400, "bad")),
            Error::BadRequest(_)
        ));
        assert!(matches!(
            Error::from(server(401, "auth")),
            Error::Unauthorized(_)
        ));
        assert!(matches!(
            Error::from(server(
                500,
                "Head \"https://r/v2/x/manifests/1\": unauthorized: authentication required"
            )),
            Error::Unauthorized(_)
        ));
        assert!(matches!(
            Error::from(server(500, "boom")),
            Error::Api { status: 500, .. }
        ));
    }

    #[test]
    fn classifies_transport_errors() {
        assert!(
            Error::from(bollard::errors::Error::SocketNotFoundError("/x".into())).is_unavailable()
        );
        assert!(matches!(
            Error::from(bollard::errors::Error::RequestTimeoutError),
            Error::Timeout(_)
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::from(bollard::errors::Error::IOError { err: io }).is_unavailable());
    }

    #[test]
    fn tells_an_unreachable_registry_from_other_pull_failures() {
        for message in [
            "Get \"https://registry.k8s.io/v2/\": dial tcp: lookup registry.k8s.io on \
             10.255.255.53:53: no such host",
            "Get \"https://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
            "Get \"https://r.example/v2/\": net/http: TLS handshake timeout",
            "Get \"https://r.example/v2/\": context deadline exceeded (Client.Timeout exceeded \
             while awaiting headers)",
        ] {
            let e = classify_pull_error(Error::from(server(500, message)));
            assert!(
                matches!(e, Error::RegistryUnreachable(_)),
                "{message}: {e:?}"
            );
            assert!(!e.is_unavailable(), "dockerd itself is fine: {message}");
            let streamed = classify_pull_error(classify_stream_message(message.to_string()));
            assert!(
                matches!(streamed, Error::RegistryUnreachable(_)),
                "{message}"
            );
        }
        for (e, what) in [
            (server(500, "manifest for x:latest not found"), "not found"),
            (
                server(
                    500,
                    "failed to register layer: rpc error: code = Unavailable desc = connection \
                     error: desc = \"transport: Error while dialing: dial unix \
                     /run/containerd/containerd.sock: connect: connection refused\"",
                ),
                "containerd down",
            ),
            (
                server(500, "failed to register layer: no space left"),
                "api",
            ),
            (server(401, "unauthorized"), "unauthorized"),
        ] {
            let e = classify_pull_error(Error::from(e));
            assert!(!matches!(e, Error::RegistryUnreachable(_)), "{what}: {e:?}");
        }
    }
}
