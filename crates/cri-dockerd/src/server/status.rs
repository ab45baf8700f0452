//! The one map from domain errors to gRPC status codes. Logs each failure once, here.

use tonic::{Code, Status};

use crate::service::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Internal(_) => Code::Internal,
        };
        let msg = bounded(e.to_string());
        match code {
            // kubelet asks for removed objects all the time; that is not worth a log line.
            Code::NotFound => tracing::debug!(code = ?code, "{msg}"),
            Code::InvalidArgument | Code::Unimplemented | Code::FailedPrecondition => {
                tracing::info!(code = ?code, "{msg}")
            }
            _ => tracing::warn!(code = ?code, "{msg}"),
        }
        Status::new(code, msg)
    }
}

/// Longest message sent back: it travels in an HTTP/2 header (`grpc-message`), and messages
/// that echo huge request fields would exceed the client's header limit, turning a clean error
/// into an h2 protocol error.
const MAX_MESSAGE: usize = 4096;

fn bounded(mut msg: String) -> String {
    if msg.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let cut = msg.len() - end;
        msg.truncate(end);
        msg.push_str(&format!("… ({cut} more bytes)"));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let s = Status::from(Error::InvalidArgument("é".repeat(5000)));
        assert!(
            s.message().len() < MAX_MESSAGE + 40,
            "{}",
            s.message().len()
        );
        assert!(s.message().ends_with("more bytes)"));
        assert_eq!(
            Status::from(Error::NotFound("short".into())).message(),
            "short"
        );
    }

    #[test]
    fn maps_every_domain_error() {
        let cases = [
            (Error::InvalidArgument("a".into()), Code::InvalidArgument),
            (Error::NotFound("a".into()), Code::NotFound),
            (Error::AlreadyExists("a".into()), Code::AlreadyExists),
            (
                Error::FailedPrecondition("a".into()),
                Code::FailedPrecondition,
            ),
            (Error::Unauthenticated("a".into()), Code::Unauthenticated),
            (Error::PermissionDenied("a".into()), Code::PermissionDenied),
            (Error::Unavailable("a".into()), Code::Unavailable),
            (Error::DeadlineExceeded("a".into()), Code::DeadlineExceeded),
            (Error::Unimplemented("a".into()), Code::Unimplemented),
            (Error::Internal("a".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let s = Status::from(err);
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), "a");
        }
    }
}
