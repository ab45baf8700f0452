//! Port-forward over SPDY (`portforward.k8s.io`): pairs each request's error and data streams
//! by `requestID`, then copies the data stream to the runtime's port stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::remotecommand::{PIPE, PUMP_BUF};
use crate::runtime::Runtime;
use crate::spdy::{Connection, Stream};

#[derive(Default)]
struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
    created: Option<Instant>,
}

/// The pairing key of a stream: `requestID`, or for pre-1.4 clients that omit it, derived from
/// the stream id (the error stream is created first, so data id - 2 names the pair).
fn request_id(stream: &Stream, data: bool) -> String {
    match stream.header("requestid") {
        Some(id) => id.to_string(),
        None if data => stream.id.saturating_sub(2).to_string(),
        None => stream.id.to_string(),
    }
}

/// Serves one port-forward connection until the client closes it.
pub(crate) async fn serve_spdy(
    conn: Connection,
    mut incoming: mpsc::Receiver<Stream>,
    pod_sandbox_id: String,
    runtime: Arc<dyn Runtime>,
    creation_timeout: Duration,
) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = tokio::task::JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1).min(creation_timeout));
    loop {
        tokio::select! {
            s = incoming.recv() => {
                let Some(stream) = s else { break };
                let kind = stream.header("streamtype").unwrap_or("").to_string();
                let is_data = match kind.as_str() {
                    "data" => true,
                    "error" => false,
                    other => {
                        tracing::debug!(stream_type = other, "unexpected port-forward stream type");
                        let (_, w) = stream.split();
                        w.reset().await;
                        continue;
                    }
                };
                let id = request_id(&stream, is_data);
                let pair = pairs.entry(id.clone()).or_default();
                pair.created.get_or_insert_with(Instant::now);
                let slot = if is_data { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    tracing::debug!(request_id = %id, "duplicate port-forward stream");
                    let (_, w) = stream.split();
                    w.reset().await;
                    continue;
                }
                *slot = Some(stream);
                if pair.data.is_some() && pair.error.is_some()
                    && let Some(Pair { data: Some(data), error: Some(error), .. }) = pairs.remove(&id)
                {
                    forwards.spawn(forward(data, error, pod_sandbox_id.clone(), runtime.clone()));
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let stale: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| p.created.is_some_and(|c| now.duration_since(c) >= creation_timeout))
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in stale {
                    if let Some(p) = pairs.remove(&id) {
                        tracing::info!(request_id = %id, "timed out waiting for port-forward stream pair");
                        if let Some(e) = p.error {
                            let (_, w) = e.split();
                            let _ = w.write(format!("timed out waiting for client to create streams for request {id}").as_bytes()).await;
                            w.close().await;
                        }
                        if let Some(d) = p.data {
                            let (_, w) = d.split();
                            w.reset().await;
                        }
                    }
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
    // Connection gone (client closed, idle timeout): cancel what is still running.
    forwards.abort_all();
    conn.terminate();
}

async fn forward(data: Stream, error: Stream, pod: String, runtime: Arc<dyn Runtime>) {
    let port_header = data.header("port").map(str::to_string);
    let (mut data_r, data_w) = data.split();
    let (_, error_w) = error.split();
    let port = match port_header.as_deref().map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            let msg = format!("invalid port header {port_header:?}");
            let _ = error_w.write(msg.as_bytes()).await;
            error_w.close().await;
            data_w.reset().await;
            return;
        }
    };
    let (rt_end, t_end) = tokio::io::duplex(PIPE);
    let (mut t_r, mut t_w) = tokio::io::split(t_end);
    let inbound = async move {
        while let Some(chunk) = data_r.recv().await {
            if t_w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = t_w.shutdown().await;
    };
    let dw = data_w.clone();
    let outbound = async move {
        let mut buf = vec![0u8; PUMP_BUF];
        loop {
            match t_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if dw.write(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        dw.close().await;
    };
    // Inbound ends with the client's FIN, which a client may never send after an error: it
    // runs on its own and is dropped once the runtime side is done.
    let inbound = tokio::spawn(inbound);
    let run = runtime.port_forward(&pod, port, rt_end);
    let (res, ()) = tokio::join!(run, outbound);
    inbound.abort();
    if let Err(e) = res {
        tracing::info!(pod_sandbox_id = %pod, port, error = %e, "port forward failed");
        let msg = format!("error forwarding port {port} to pod {pod}: {e}");
        let _ = error_w.write(msg.as_bytes()).await;
    }
    error_w.close().await;
    data_w.close().await;
}
