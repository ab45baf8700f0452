//! A tiny in-test Docker registry (HTTP, one image) whose layer blob can stall or drip slowly,
//! to exercise `--image-pull-progress-deadline` without a real stall source.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the layer blob is served.
#[derive(Debug, Clone, Copy)]
pub enum LayerMode {
    /// Send the headers, then nothing, forever.
    Stall,
    /// Send `chunk` bytes every `every`.
    Drip { chunk: usize, every: Duration },
}

/// A running fake registry with one repository `repo` and tag `latest`.
pub struct FakeRegistry {
    pub addr: std::net::SocketAddr,
    pub repo: String,
    /// `sha256:<hex>` of the config blob: the image ID Docker will report.
    pub config_digest: String,
    pub manifest_digest: String,
    /// Number of layer GETs seen.
    pub layer_requests: Arc<AtomicUsize>,
    /// Set when the client closed a stalled layer connection. Docker 20.10 does not: a cancelled
    /// pull leaves its blocked blob read (and this connection) behind inside dockerd.
    pub stalled_closed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sha(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    let out = h.finalize();
    let mut s = String::from("sha256:");
    for b in out {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A one-file tar archive (ustar) holding `name` with `content`.
pub fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    // ustar header fields at their offsets: mode, uid, gid, size, mtime, type, magic, version.
    let put = |h: &mut [u8; 512], off: usize, v: &str| {
        h[off..off + v.len()].copy_from_slice(v.as_bytes());
    };
    put(&mut h, 100, "0000644\0");
    put(&mut h, 108, "0000000\0");
    put(&mut h, 116, "0000000\0");
    put(&mut h, 124, &format!("{:011o}\0", content.len()));
    put(&mut h, 136, &format!("{:011o}\0", 1_700_000_000u64));
    h[156] = b'0';
    put(&mut h, 257, "ustar\0");
    put(&mut h, 263, "00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, &format!("{sum:06o}\0 "));
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

impl FakeRegistry {
    /// Start on 127.0.0.1:0 serving `repo:latest`, a unique image (its config carries `label`),
    /// whose layer is `layer_size` bytes of tar served as `mode` says.
    pub async fn start(repo: &str, label: &str, layer_size: usize, mode: LayerMode) -> Self {
        let layer = tar_with_file("payload", &vec![b'x'; layer_size]);
        let layer_digest = sha(&layer);
        let config = serde_json::json!({
            "architecture": go_arch(),
            "os": "linux",
            "config": { "Labels": { "cri-dockerd-test": label }, "Cmd": ["/payload"] },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created_by": "cri-dockerd fake registry" }],
        })
        .to_string()
        .into_bytes();
        let config_digest = sha(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": [{
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": layer.len(),
                "digest": layer_digest,
            }],
        })
        .to_string()
        .into_bytes();
        let manifest_digest = sha(&manifest);

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let layer_requests = Arc::new(AtomicUsize::new(0));
        let stalled_closed = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            repo: repo.to_string(),
            manifest,
            manifest_digest: manifest_digest.clone(),
            config,
            config_digest: config_digest.clone(),
            layer,
            layer_digest,
            mode,
            layer_requests: layer_requests.clone(),
            stalled_closed: stalled_closed.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = state.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        FakeRegistry {
            addr,
            repo: repo.to_string(),
            config_digest,
            manifest_digest,
            layer_requests,
            stalled_closed,
            task,
        }
    }

    /// `127.0.0.1:<port>/<repo>:latest`.
    pub fn reference(&self) -> String {
        format!("{}/{}:latest", self.addr, self.repo)
    }
}

struct State {
    repo: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
    mode: LayerMode,
    layer_requests: Arc<AtomicUsize>,
    stalled_closed: Arc<AtomicBool>,
}

async fn read_head(sock: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Docker-Distribution-API-Version: registry/2.0\r\n\r\n");
    sock.write_all(out.as_bytes()).await?;
    if let (Some(b), false) = (body, head_only) {
        sock.write_all(b).await?;
    }
    sock.flush().await
}

async fn serve(mut sock: TcpStream, st: Arc<State>) -> std::io::Result<()> {
    // dockerd tries HTTPS first even for insecure registries: refuse a TLS ClientHello by
    // closing, so it falls back to plain HTTP at once.
    let mut first = [0u8; 1];
    if sock.peek(&mut first).await? == 0 || first[0] == 0x16 {
        return Ok(());
    }
    while let Some(head) = read_head(&mut sock).await? {
        let mut parts = head.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let head_only = method == "HEAD";
        let manifest_paths = [
            format!("/v2/{}/manifests/latest", st.repo),
            format!("/v2/{}/manifests/{}", st.repo, st.manifest_digest),
        ];
        if path == "/v2/" || path == "/v2" {
            respond(
                &mut sock,
                "200 OK",
                &[
                    ("Content-Length", "2".into()),
                    ("Content-Type", "application/json".into()),
                ],
                Some(b"{}"),
                head_only,
            )
            .await?;
        } else if manifest_paths.contains(&path) {
            respond(
                &mut sock,
                "200 OK",
                &[
                    ("Content-Length", st.manifest.len().to_string()),
                    (
                        "Content-Type",
                        "application/vnd.docker.distribution.manifest.v2+json".into(),
                    ),
                    ("Docker-Content-Digest", st.manifest_digest.clone()),
                ],
                Some(&st.manifest),
                head_only,
            )
            .await?;
        } else if path == format!("/v2/{}/blobs/{}", st.repo, st.config_digest) {
            respond(
                &mut sock,
                "200 OK",
                &[
                    ("Content-Length", st.config.len().to_string()),
                    ("Content-Type", "application/octet-stream".into()),
                    ("Docker-Content-Digest", st.config_digest.clone()),
                ],
                Some(&st.config),
                head_only,
            )
            .await?;
        } else if path == format!("/v2/{}/blobs/{}", st.repo, st.layer_digest) {
            let headers = [
                ("Content-Length", st.layer.len().to_string()),
                ("Content-Type", "application/octet-stream".into()),
                ("Docker-Content-Digest", st.layer_digest.clone()),
            ];
            if head_only {
                respond(&mut sock, "200 OK", &headers, None, true).await?;
                continue;
            }
            st.layer_requests.fetch_add(1, Ordering::SeqCst);
            respond(&mut sock, "200 OK", &headers, None, false).await?;
            match st.mode {
                LayerMode::Stall => {
                    // Hold the connection open without sending a byte; note when the client
                    // gives up and closes it.
                    let mut sink = [0u8; 1024];
                    loop {
                        match sock.read(&mut sink).await {
                            Ok(0) | Err(_) => {
                                st.stalled_closed.store(true, Ordering::SeqCst);
                                return Ok(());
                            }
                            Ok(_) => {}
                        }
                    }
                }
                LayerMode::Drip { chunk, every } => {
                    for piece in st.layer.chunks(chunk) {
                        sock.write_all(piece).await?;
                        sock.flush().await?;
                        tokio::time::sleep(every).await;
                    }
                }
            }
        } else {
            let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
            respond(
                &mut sock,
                "404 Not Found",
                &[
                    ("Content-Length", body.len().to_string()),
                    ("Content-Type", "application/json".into()),
                ],
                Some(body),
                head_only,
            )
            .await?;
        }
    }
    Ok(())
}
