//! A daemon process a test starts by hand (its own flags, socket activation, a launcher in
//! front), with stdout and stderr in a log file; killed on drop.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process with its output in `log`, killed on drop.
pub struct Proc {
    pub child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with stdin closed and stdout and stderr to `log`, without the test's own
    /// DOCKER_HOST, NOTIFY_SOCKET, LISTEN_FDS and LISTEN_PID (unless `cmd` sets them).
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        for var in ["DOCKER_HOST", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"] {
            if !cmd.get_envs().any(|(k, _)| k == var) {
                cmd.env_remove(var);
            }
        }
        Proc {
            child: cmd.spawn().expect("spawn"),
            log,
        }
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `sig` (as kill(1) takes it, e.g. "-TERM").
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Wait up to `secs` for the process to exit.
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {secs}s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connect to `socket` once it accepts, waiting up to `secs`; panics with the log if the
    /// process exits first or the time runs out.
    pub fn connect(&mut self, socket: &Path, secs: u64) -> UnixStream {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(s) = UnixStream::connect(socket) {
                return s;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("exited with {st} before listening; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nothing listening on {} after {secs}s; log:\n{}",
                socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
