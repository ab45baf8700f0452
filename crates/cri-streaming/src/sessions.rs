//! Counters of streaming sessions (open now, and opened since start), by kind: the hook a
//! runtime reads to export in-flight streams without this crate knowing any metrics library.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a session streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// `exec`.
    Exec,
    /// `attach`.
    Attach,
    /// `portforward`.
    PortForward,
}

impl SessionKind {
    /// Every kind, in a fixed order.
    pub const ALL: [SessionKind; 3] = [
        SessionKind::Exec,
        SessionKind::Attach,
        SessionKind::PortForward,
    ];

    /// `exec`, `attach` or `port_forward`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Exec => "exec",
            SessionKind::Attach => "attach",
            SessionKind::PortForward => "port_forward",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A snapshot of the session counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    open: [u64; 3],
    started: [u64; 3],
}

impl SessionCounts {
    /// Sessions of `kind` open now (upgraded and not yet ended).
    pub fn open(&self, kind: SessionKind) -> u64 {
        self.open[kind.index()]
    }

    /// Sessions of `kind` started since the server was created.
    pub fn started(&self, kind: SessionKind) -> u64 {
        self.started[kind.index()]
    }
}

/// The live counters: one relaxed atomic add when a session starts and one when it ends.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: [AtomicU64; 3],
    started: [AtomicU64; 3],
}

impl Sessions {
    /// Count a session of `kind` as open until the returned guard is dropped.
    pub(crate) fn open(self: &Arc<Self>, kind: SessionKind) -> SessionGuard {
        self.started[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.open[kind.index()].fetch_add(1, Ordering::Relaxed);
        SessionGuard {
            sessions: self.clone(),
            kind,
        }
    }

    pub(crate) fn snapshot(&self) -> SessionCounts {
        let load = |a: &[AtomicU64; 3]| {
            [
                a[0].load(Ordering::Relaxed),
                a[1].load(Ordering::Relaxed),
                a[2].load(Ordering::Relaxed),
            ]
        };
        SessionCounts {
            open: load(&self.open),
            started: load(&self.started),
        }
    }
}

/// Marks one open session; dropping it (however the session ends) closes it.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    sessions: Arc<Sessions>,
    kind: SessionKind,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.open[self.kind.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_open_and_started_per_kind() {
        let s = Arc::new(Sessions::default());
        let a = s.open(SessionKind::Exec);
        let b = s.open(SessionKind::Exec);
        let c = s.open(SessionKind::PortForward);
        let snap = s.snapshot();
        assert_eq!(snap.open(SessionKind::Exec), 2);
        assert_eq!(snap.open(SessionKind::Attach), 0);
        assert_eq!(snap.open(SessionKind::PortForward), 1);
        drop(a);
        drop(c);
        let snap = s.snapshot();
        assert_eq!(snap.open(SessionKind::Exec), 1);
        assert_eq!(snap.open(SessionKind::PortForward), 0);
        assert_eq!(snap.started(SessionKind::Exec), 2);
        assert_eq!(snap.started(SessionKind::PortForward), 1);
        drop(b);
        assert_eq!(s.snapshot().open(SessionKind::Exec), 0);
    }
}
