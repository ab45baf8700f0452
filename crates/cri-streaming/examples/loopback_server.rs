//! A streaming server over a loopback runtime, for trying real clients against it: `exec`
//! runs `cat` (stdin to stdout) or `echo ARGS`, `attach` echoes, port-forward connects to
//! 127.0.0.1:PORT on the host. Prints one exec URL per line on stdin Enter.
//!
//! `cargo run -p cri-streaming --example loopback_server`

use std::sync::Arc;

use async_trait::async_trait;
use cri_streaming::{
    Config, Error, ExecRequest, ExitStatus, PortForwardRequest, PortStream, Runtime, Server,
    StreamIo,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct Loopback;

#[async_trait]
impl Runtime for Loopback {
    async fn exec(&self, _: &str, cmd: &[String], mut io: StreamIo) -> Result<ExitStatus, Error> {
        let mut out = io.stdout.take();
        match (
            cmd.first().map(String::as_str),
            io.stdin.take(),
            out.as_mut(),
        ) {
            (Some("cat"), Some(mut i), Some(o)) => {
                tokio::io::copy(&mut i, o).await?;
            }
            (Some("echo"), _, Some(o)) => {
                o.write_all(format!("{}\n", cmd[1..].join(" ")).as_bytes())
                    .await?;
            }
            _ => return Ok(ExitStatus { code: 127 }),
        }
        Ok(ExitStatus { code: 0 })
    }

    async fn attach(&self, _: &str, mut io: StreamIo) -> Result<(), Error> {
        if let (Some(mut i), Some(mut o)) = (io.stdin.take(), io.stdout.take()) {
            tokio::io::copy(&mut i, &mut o).await?;
        }
        Ok(())
    }

    async fn port_forward(&self, _: &str, port: u16, mut s: PortStream) -> Result<(), Error> {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tokio::io::copy_bidirectional(&mut s, &mut tcp).await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let server = Server::new(Config::default(), Arc::new(Loopback));
    let addr = server.start().await?;
    eprintln!("listening on {addr}; Enter prints: exec-cat exec-echo portforward URLs");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {
        let cat = server.get_exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec!["cat".into()],
            stdin: true,
            stdout: true,
            ..Default::default()
        })?;
        let echo = server.get_exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec!["echo".into(), "hi".into()],
            stdout: true,
            stderr: true,
            ..Default::default()
        })?;
        let pf = server.get_port_forward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![],
        })?;
        println!("{cat} {echo} {pf}");
    }
    Ok(())
}
