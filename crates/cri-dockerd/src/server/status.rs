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
        let msg = e.to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

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
