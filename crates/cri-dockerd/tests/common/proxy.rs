//! A unix-socket proxy in front of the real dockerd that a test stops and starts again, to
//! simulate dockerd going away (a restart, an outage) without touching the shared dockerd.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// A proxy from `path` to the real docker socket. Stopping it does what a dockerd restart does:
/// the socket goes away and every open connection is cut.
pub struct DockerProxy {
    path: PathBuf,
    listener: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl DockerProxy {
    /// A proxy for `path`, not listening yet.
    pub fn new(path: &Path) -> DockerProxy {
        DockerProxy {
            path: path.to_path_buf(),
            listener: None,
            conns: Arc::default(),
            accepted: Arc::default(),
        }
    }

    /// A proxy listening on `path`.
    pub fn started(path: &Path) -> DockerProxy {
        let mut p = Self::new(path);
        p.start();
        p
    }

    /// The `--docker-endpoint` flag that points the daemon at this proxy.
    pub fn endpoint_flag(&self) -> String {
        format!("--docker-endpoint=unix://{}", self.path.display())
    }

    /// Listen on the path (again) and forward each connection to the real dockerd.
    pub fn start(&mut self) {
        assert!(self.listener.is_none(), "proxy already started");
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy");
        let upstream = super::docker_endpoint()
            .trim_start_matches("unix://")
            .to_string();
        let conns = self.conns.clone();
        let accepted = self.accepted.clone();
        self.listener = Some(tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    break;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) = UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                let mut conns = conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn);
            }
        }));
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Remove the socket, stop listening and cut every open connection; returns once all of
    /// them are closed.
    pub async fn stop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(listener) = self.listener.take() {
            listener.abort();
            let _ = listener.await;
        }
        let conns: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await;
        }
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
