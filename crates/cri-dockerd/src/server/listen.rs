//! Listeners for `--container-runtime-endpoint`: a unix socket path (created, stale file replaced,
//! mode 0660, group `docker`, never more open before that), a TCP address, or the systemd
//! socket-activated descriptor.

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
            match std::os::unix::net::UnixStream::connect(path) {
                // Refused: nobody listens there any more.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?
                }
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use by another running process", path.display()),
                    ));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "{} exists and cannot be probed ({e}); not replacing it",
                            path.display()
                        ),
                    ));
                }
            }
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
    bind_private(path)
}

/// Bind and listen on a unix socket whose file is never more open than mode 0600 until it has
/// its final mode (0660) and group, whatever the umask: the file `bind` creates takes the
/// socket's own mode, masked by the umask, so the socket gets mode 0600 before it is bound.
/// Clients are refused until `listen`, which comes last.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let fd = bind_closed(path)?;
    let published = (|| -> io::Result<()> {
        if let Some(gid) = group_id("docker") {
            // Not fatal: an unprivileged test run cannot chown to another group.
            if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
                tracing::debug!(error = %e, "could not give {} to group docker", path.display());
            }
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        // The kernel caps the backlog at net.core.somaxconn.
        rustix::net::listen(&fd, 4096)?;
        Ok(())
    })();
    if let Err(e) = published {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}

/// A unix stream socket of mode 0600 bound at `path` (its file 0600 or less), not listening.
fn bind_closed(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not usable as a unix socket path ({e})", path.display()),
        )
    })?;
    rustix::net::bind(&fd, &addr)?;
    Ok(fd)
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
        // Nothing but the socket is left in its directory.
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("cri.sock")]);
    }

    #[tokio::test]
    async fn the_socket_serves_connections() {
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

    #[test]
    fn the_socket_file_is_0600_from_the_start_even_under_umask_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        // umask is per process; 0 only makes files other tests create meanwhile more open.
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let bound = bind_closed(&path);
        rustix::process::umask(old);
        let _fd = bound.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "as bound, before mode and group are set");
        assert!(
            std::os::unix::net::UnixStream::connect(&path).is_err(),
            "nobody gets in before listen"
        );
    }

    #[test]
    fn a_path_too_long_for_a_unix_socket_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("d".repeat(120)).join("cri.sock");
        let long = long.to_string_lossy().into_owned();
        let e = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
            .block_on(async { bind_unix(Path::new(&long)) });
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(&long), "{e}");
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
