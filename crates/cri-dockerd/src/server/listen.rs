//! Listeners for `--container-runtime-endpoint`: a unix socket path (created, stale file replaced,
//! mode 0660, group `docker`, set before the socket appears at its path), a TCP address, or the systemd socket-activated descriptor.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::{TcpListener, UnixListener};

use crate::config::Endpoint;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// First file descriptor systemd passes (SD_LISTEN_FDS_START).
const SD_LISTEN_FDS_START: i32 = 3;

/// Bind the endpoint. Must run inside a tokio runtime.
pub async fn bind(endpoint: &Endpoint) -> io::Result<Listener> {
    match endpoint {
        Endpoint::Unix(path) => bind_unix(path).map(Listener::Unix),
        Endpoint::Tcp(addr) => TcpListener::bind(addr).await.map(Listener::Tcp),
        Endpoint::Fd => from_systemd().map(Listener::Unix),
    }
}

/// Bind a unix socket at `path`: create the parent directory, replace a stale socket, refuse to
/// replace a live one, set mode 0660 and group `docker` when that group exists.
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another running process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    publish_bound(path)
}

/// Bind the socket inside a fresh directory only this user can enter, give it mode 0660 and
/// group `docker`, then link it at `path` (a link never replaces an existing file, unlike a
/// rename): no client can reach the socket before its mode is right, whatever the umask.
fn publish_bound(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Short, so that the staging path fits wherever the final one does (108 bytes at most);
    // the counter keeps two binds of one process apart.
    static BINDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = BINDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = parent.join(format!(".cri-dockerd-{}-{n}", std::process::id()));
    if std::fs::symlink_metadata(&staging).is_ok() {
        // Left by an earlier process that had our pid and died between the steps below.
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let staged = staging.join("s");
    let bound = (|| -> io::Result<UnixListener> {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = group_id("docker") {
            // Not fatal: an unprivileged test run cannot chown to another group.
            if let Err(e) = std::os::unix::fs::chown(&staged, None, Some(gid)) {
                tracing::debug!(error = %e, "could not give {} to group docker", path.display());
            }
        }
        std::fs::hard_link(&staged, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} was created by another process meanwhile",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
        Ok(listener)
    })();
    let cleaned = std::fs::remove_dir_all(&staging);
    let listener = bound?;
    cleaned?;
    Ok(listener)
}

/// The gid of `name` from /etc/group, if the group exists.
pub fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    parse_group_id(&groups, name)
}

fn parse_group_id(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// The socket systemd passed (`LISTEN_PID` is us and `LISTEN_FDS` >= 1).
fn from_systemd() -> io::Result<UnixListener> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !pid_matches || fds < 1 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "fd:// needs a socket from systemd (LISTEN_PID/LISTEN_FDS not set for this process); \
             start through cri-docker.socket or use unix:///var/run/cri-dockerd.sock",
        ));
    }
    // SAFETY: systemd hands us ownership of descriptor 3 (LISTEN_PID is our pid), and it is
    // taken exactly once, here; the environment is cleared so no child inherits the claim.
    #[allow(unsafe_code)]
    let std_listener = unsafe {
        use std::os::fd::FromRawFd;
        std::os::unix::net::UnixListener::from_raw_fd(SD_LISTEN_FDS_START)
    };
    // SAFETY-free from here on: plain std calls on an owned listener.
    if std_listener.local_addr().is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fd 3 from systemd is not a unix stream socket",
        ));
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: single-threaded at this point of start-up is not guaranteed, but removing these
        // variables is advisory (so children do not claim the fds); races only lose that hint.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(var)
        };
    }
    std_listener.set_nonblocking(true)?;
    UnixListener::from_std(std_listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_group_ids() {
        let groups = "root:x:0:\ndocker:x:998:alice,bob\nstaff:x:50:\n";
        assert_eq!(parse_group_id(groups, "docker"), Some(998));
        assert_eq!(parse_group_id(groups, "root"), Some(0));
        assert_eq!(parse_group_id(groups, "dock"), None);
    }

    #[tokio::test]
    async fn replaces_stale_socket_and_refuses_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/cri.sock");
        let first = bind_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // Live: refused.
        let err = bind_unix(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        // Stale (nobody listening): replaced.
        let _second = bind_unix(&path).unwrap();
        // The staging directory is gone; the socket is the only entry left.
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("cri.sock")]);
    }

    #[tokio::test]
    async fn the_linked_socket_serves_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        let listener = bind_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        accepted.unwrap();
        connected.unwrap();
    }

    #[tokio::test]
    async fn leftover_staging_directories_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // Whichever number this process's next bind takes, its staging directory is there.
        let pid = std::process::id();
        for n in 0..64 {
            std::fs::create_dir_all(dir.path().join(format!(".cri-dockerd-{pid}-{n}/junk")))
                .unwrap();
        }
        let path = dir.path().join("cri.sock");
        let _listener = bind_unix(&path).unwrap();
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(
            left, 64,
            "one leftover replaced and removed, the socket added"
        );
    }

    #[test]
    fn refuses_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        std::fs::write(&path, "x").unwrap();
        assert_eq!(
            bind_unix(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
