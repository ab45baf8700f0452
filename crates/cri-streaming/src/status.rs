//! The remotecommand error-channel payloads: v4+ JSON `metav1.Status`, v1-v3 plain text.

use serde::Serialize;

use crate::Error;

#[derive(Serialize)]
struct Meta {}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Status {
    metadata: Meta,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

/// How a remotecommand ended: `Ok(Some(code))` for exec, `Ok(None)` for attach.
pub(crate) type Outcome = Result<Option<i32>, Error>;

fn exit_message(code: i32) -> String {
    format!("command terminated with non-zero exit code: exit status {code}")
}

/// JSON body for the v4/v5 error channel.
pub(crate) fn v4(outcome: &Outcome) -> Vec<u8> {
    let status = match outcome {
        Ok(None) | Ok(Some(0)) => Status {
            metadata: Meta {},
            status: "Success",
            message: None,
            reason: None,
            details: None,
            code: None,
        },
        Ok(Some(code)) => Status {
            metadata: Meta {},
            status: "Failure",
            message: Some(exit_message(*code)),
            reason: Some("NonZeroExitCode"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: Some("ExitCode"),
                    message: code.to_string(),
                }],
            }),
            code: None,
        },
        Err(e) => Status {
            metadata: Meta {},
            status: "Failure",
            message: Some(format!("Internal error occurred: {e}")),
            reason: Some("InternalError"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: None,
                    message: e.to_string(),
                }],
            }),
            code: Some(500),
        },
    };
    serde_json::to_vec(&status)
        .unwrap_or_else(|_| br#"{"metadata":{},"status":"Failure"}"#.to_vec())
}

/// Text for the v1-v3 error channel; `None` on success.
pub(crate) fn legacy(outcome: &Outcome) -> Option<String> {
    match outcome {
        Ok(None) | Ok(Some(0)) => None,
        Ok(Some(code)) => Some(exit_message(*code)),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_bodies() {
        assert_eq!(v4(&Ok(Some(0))), br#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(v4(&Ok(None)), br#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(
            String::from_utf8(v4(&Ok(Some(3)))).expect("utf8"),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let e = String::from_utf8(v4(&Err(Error::Runtime("boom".into())))).expect("utf8");
        assert_eq!(
            e,
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","details":{"causes":[{"message":"boom"}]},"code":500}"#
        );
    }

    #[test]
    fn legacy_text() {
        assert_eq!(legacy(&Ok(Some(0))), None);
        assert_eq!(
            legacy(&Ok(Some(2))).as_deref(),
            Some("command terminated with non-zero exit code: exit status 2")
        );
    }
}
