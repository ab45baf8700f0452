//! Streaming requests as stored behind a token, and their validation.

use crate::Error;

/// An exec request (the fields of CRI `ExecRequest` that matter for streaming).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// Container to run in.
    pub container_id: String,
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Stream stdin.
    pub stdin: bool,
    /// Stream stdout.
    pub stdout: bool,
    /// Stream stderr (not with `tty`).
    pub stderr: bool,
}

/// An attach request (CRI `AttachRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Container to attach to.
    pub container_id: String,
    /// Stream stdin.
    pub stdin: bool,
    /// Container has a terminal.
    pub tty: bool,
    /// Stream stdout.
    pub stdout: bool,
    /// Stream stderr (not with `tty`).
    pub stderr: bool,
}

/// A port-forward request (CRI `PortForwardRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// Sandbox whose network namespace is the target.
    pub pod_sandbox_id: String,
    /// Ports to forward (required for WebSocket clients; SPDY clients name the port per stream).
    pub port: Vec<i32>,
}

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// `/exec/{token}`.
    Exec(ExecRequest),
    /// `/attach/{token}`.
    Attach(AttachRequest),
    /// `/portforward/{token}`.
    PortForward(PortForwardRequest),
}

fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), Error> {
    if !(stdin || stdout || stderr) {
        return Err(Error::InvalidArgument(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    if tty && stderr {
        return Err(Error::InvalidArgument(
            "tty and stderr cannot both be true".into(),
        ));
    }
    Ok(())
}

impl ExecRequest {
    /// Checks the request as kubelet's streaming server does.
    pub fn validate(&self) -> Result<(), Error> {
        if self.container_id.is_empty() {
            return Err(Error::InvalidArgument(
                "missing required container_id".into(),
            ));
        }
        if self.cmd.is_empty() {
            return Err(Error::InvalidArgument("missing required cmd".into()));
        }
        check_streams(self.stdin, self.stdout, self.stderr, self.tty)
    }
}

impl AttachRequest {
    /// Checks the request as kubelet's streaming server does.
    pub fn validate(&self) -> Result<(), Error> {
        if self.container_id.is_empty() {
            return Err(Error::InvalidArgument(
                "missing required container_id".into(),
            ));
        }
        check_streams(self.stdin, self.stdout, self.stderr, self.tty)
    }
}

impl PortForwardRequest {
    /// Checks the sandbox id and that every port is in 1..=65535.
    pub fn validate(&self) -> Result<(), Error> {
        if self.pod_sandbox_id.is_empty() {
            return Err(Error::InvalidArgument(
                "missing required pod_sandbox_id".into(),
            ));
        }
        for p in &self.port {
            if !(1..=65535).contains(p) {
                return Err(Error::InvalidArgument(format!(
                    "port {p} must be between 1 and 65535, inclusive"
                )));
            }
        }
        Ok(())
    }

    /// The ports as `u16` (valid after [`Self::validate`]).
    pub fn ports(&self) -> Vec<u16> {
        self.port
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> ExecRequest {
        ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            tty,
            stdin,
            stdout,
            stderr,
        }
    }

    #[test]
    fn exec_validation_table() {
        let cases = [
            (exec(false, false, false, false), false),
            (exec(true, false, false, false), true),
            (exec(false, true, false, false), true),
            (exec(false, false, true, false), true),
            (exec(false, true, true, true), false),
            (exec(true, true, false, true), true),
            (
                ExecRequest {
                    cmd: vec![],
                    ..exec(true, true, false, false)
                },
                false,
            ),
            (
                ExecRequest {
                    container_id: String::new(),
                    ..exec(true, true, false, false)
                },
                false,
            ),
        ];
        for (req, ok) in cases {
            assert_eq!(req.validate().is_ok(), ok, "{req:?}");
        }
    }

    #[test]
    fn attach_and_portforward_validation() {
        let a = AttachRequest {
            container_id: "c".into(),
            stdout: true,
            stderr: true,
            tty: true,
            stdin: false,
        };
        assert!(a.validate().is_err());
        let a = AttachRequest { stderr: false, ..a };
        assert!(a.validate().is_ok());
        let p = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80, 65535],
        };
        assert!(p.validate().is_ok());
        assert_eq!(p.ports(), vec![80, 65535]);
        for bad in [0, -1, 65536] {
            let p = PortForwardRequest {
                pod_sandbox_id: "p".into(),
                port: vec![bad],
            };
            assert!(p.validate().is_err(), "{bad}");
        }
        assert!(PortForwardRequest::default().validate().is_err());
    }
}
