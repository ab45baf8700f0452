//! A SPDY/3.1 session over any byte stream: a reader task (decodes frames, dispatches them to
//! streams), a writer task (owns the header compressor), flow control and the idle timeout.
//!
//! Flow control: we always grant the peer window as our application consumes data (stream and
//! session WINDOW_UPDATE). Our own sending honours the peer's windows only once the peer has
//! shown it speaks flow control (sent SETTINGS or WINDOW_UPDATE): Go's `spdystream`, which
//! kubelet clients use, never sends WINDOW_UPDATE and would stall a strict sender at 64 KiB.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::frame::{
    DEFAULT_WINDOW, Decoder, Encoder, FLAG_FIN, Frame, FrameError, Headers,
    SETTINGS_INITIAL_WINDOW_SIZE, Setting, rst,
};
use crate::idle::Activity;

/// Largest DATA payload we send.
const MAX_CHUNK: usize = 16 * 1024;
/// Bytes buffered per stream before the reader stops reading the socket. A peer that honours
/// our 64 KiB window never gets near it; it only bounds memory for peers without flow control.
const MAX_BUFFERED: usize = 4 << 20;

/// Which end of the connection we are (decides stream and ping id parity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts streams; auto-replies SYN_REPLY to each.
    Server,
    /// Opens streams.
    Client,
}

enum Out {
    Frame(Frame),
    Close,
}

/// Bytes queued for the application on one stream.
#[derive(Default)]
struct Buffered {
    bytes: std::sync::atomic::AtomicUsize,
    drained: Notify,
}

struct StreamEntry {
    data_tx: Option<mpsc::UnboundedSender<Bytes>>,
    buffered: Arc<Buffered>,
    reply_tx: Option<oneshot::Sender<Headers>>,
    local_closed: bool,
}

struct Flow {
    enforce: bool,
    initial: i64,
    session: i64,
    streams: HashMap<u32, i64>,
}

struct Shared {
    role: Role,
    out: mpsc::Sender<Out>,
    /// Control frames (replies, resets, pings, window updates): never block the sender and are
    /// written before queued data, so a reader or consumer can't wait on a blocked writer.
    ctl: mpsc::UnboundedSender<Frame>,
    streams: Mutex<HashMap<u32, StreamEntry>>,
    flow: Mutex<Flow>,
    flow_changed: Notify,
    next_id: AtomicU32,
    closed: watch::Sender<bool>,
    kill: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Handle to a session; cheap to clone.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

/// One SPDY stream: its headers plus reading and writing halves.
pub struct Stream {
    /// Stream id.
    pub id: u32,
    /// Headers of the SYN_STREAM (incoming) or SYN_REPLY (outgoing).
    pub headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

/// Receiving half of a stream.
pub struct StreamReader {
    id: u32,
    rx: mpsc::UnboundedReceiver<Bytes>,
    buffered: Arc<Buffered>,
    conn: Connection,
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // Nobody will consume: release a reader waiting on this stream's buffer.
        self.buffered.bytes.store(0, Ordering::SeqCst);
        self.buffered.drained.notify_waiters();
    }
}

/// Sending half of a stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    conn: Connection,
}

impl Stream {
    /// Looks up a header of the stream.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::frame::header(&self.headers, name)
    }

    /// Splits into independently usable halves.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

impl StreamReader {
    /// Next chunk from the peer; `None` after FIN, reset or session end.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let chunk = self.rx.recv().await?;
        let _ = self
            .buffered
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_sub(chunk.len()))
            });
        self.buffered.drained.notify_waiters();
        if let Ok(delta) = u32::try_from(chunk.len())
            && delta > 0
        {
            let c = &self.conn;
            c.send_ctl(Frame::WindowUpdate {
                stream_id: self.id,
                delta,
            });
            c.send_ctl(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
        Some(chunk)
    }

    /// Reads everything until the peer half-closes.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = self.recv().await {
            out.extend_from_slice(&c);
        }
        out
    }
}

impl StreamWriter {
    /// Sends `data`, split into DATA frames and paced by the peer's window when enforced.
    pub async fn write(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self
                .conn
                .reserve(self.id, data.len().min(MAX_CHUNK))
                .await?;
            let chunk = Bytes::copy_from_slice(&data[..n]);
            if !self
                .conn
                .send(Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: chunk,
                })
                .await
            {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Half-closes our side (empty DATA with FIN).
    pub async fn close(&self) {
        let remove = {
            let mut streams = lock(&self.conn.shared.streams);
            match streams.get_mut(&self.id) {
                Some(e) if e.local_closed => return,
                Some(e) => {
                    e.local_closed = true;
                    e.data_tx.is_none()
                }
                None => false,
            }
        };
        self.conn
            .send(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
        if remove {
            self.conn.forget(self.id);
        }
    }

    /// Aborts the stream (RST_STREAM CANCEL).
    pub async fn reset(&self) {
        self.conn.forget(self.id);
        self.conn.send_ctl(Frame::RstStream {
            stream_id: self.id,
            status: rst::CANCEL,
        });
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Connection {
    /// Starts a session over `io`. `initial` holds bytes already read past the HTTP upgrade.
    /// Returns the handle and the channel of streams opened by the peer.
    pub fn new<S>(
        io: S,
        role: Role,
        initial: BytesMut,
        idle_timeout: Option<Duration>,
    ) -> Result<(Self, mpsc::Receiver<Stream>), FrameError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let encoder = Encoder::new()?;
        let (out_tx, out_rx) = mpsc::channel(64);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            role,
            out: out_tx,
            ctl: ctl_tx,
            streams: Mutex::new(HashMap::new()),
            flow: Mutex::new(Flow {
                enforce: false,
                initial: i64::from(DEFAULT_WINDOW),
                session: i64::from(DEFAULT_WINDOW),
                streams: HashMap::new(),
            }),
            flow_changed: Notify::new(),
            next_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            closed: watch::channel(false).0,
            kill: watch::channel(false).0,
        });
        let conn = Connection { shared };
        let (rd, wr) = tokio::io::split(io);
        let activity = Activity::new();
        activity.touch();
        tokio::spawn(writer_task(
            wr,
            out_rx,
            ctl_rx,
            encoder,
            activity.clone(),
            conn.clone(),
        ));
        tokio::spawn(reader_task(
            rd,
            initial,
            incoming_tx,
            activity.clone(),
            conn.clone(),
        ));
        if let Some(t) = idle_timeout {
            let c = conn.clone();
            tokio::spawn(async move {
                let mut closed = c.shared.closed.subscribe();
                tokio::select! {
                    _ = activity.expired(t) => {
                        tracing::info!(timeout = ?t, "SPDY stream idle timeout, closing connection");
                        c.terminate();
                    }
                    _ = closed.wait_for(|c| *c) => {}
                }
            });
        }
        // A client announces its receive window (which also tells the server it does flow
        // control). A server sends nothing unsolicited: Go clients read the 101 response through
        // a bufio.Reader and would lose frames that arrive with it.
        if role == Role::Client {
            let _ = conn.shared.out.try_send(Out::Frame(Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: DEFAULT_WINDOW,
                }],
            }));
        }
        Ok((conn, incoming_rx))
    }

    async fn send(&self, frame: Frame) -> bool {
        self.shared.out.send(Out::Frame(frame)).await.is_ok()
    }

    fn send_ctl(&self, frame: Frame) {
        let _ = self.shared.ctl.send(frame);
    }

    fn forget(&self, id: u32) {
        if let Some(e) = lock(&self.shared.streams).remove(&id) {
            e.buffered.bytes.store(0, Ordering::SeqCst);
            e.buffered.drained.notify_waiters();
        }
        lock(&self.shared.flow).streams.remove(&id);
        self.shared.flow_changed.notify_waiters();
    }

    fn register(&self, id: u32, reply_tx: Option<oneshot::Sender<Headers>>, fin: bool) -> Stream {
        let (tx, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(Buffered::default());
        lock(&self.shared.streams).insert(
            id,
            StreamEntry {
                data_tx: (!fin).then_some(tx),
                buffered: buffered.clone(),
                reply_tx,
                local_closed: false,
            },
        );
        {
            let mut flow = lock(&self.shared.flow);
            let initial = flow.initial;
            flow.streams.insert(id, initial);
        }
        Stream {
            id,
            headers: Vec::new(),
            reader: StreamReader {
                id,
                rx,
                buffered,
                conn: self.clone(),
            },
            writer: StreamWriter {
                id,
                conn: self.clone(),
            },
        }
    }

    /// Opens a stream with `headers` and waits for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> io::Result<Stream> {
        let id = self.shared.next_id.fetch_add(2, Ordering::SeqCst);
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut stream = self.register(id, Some(reply_tx), false);
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers,
        };
        if !self.send(syn).await {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        stream.headers = reply_rx
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionReset, "stream refused"))?;
        Ok(stream)
    }

    async fn reserve(&self, id: u32, want: usize) -> io::Result<usize> {
        loop {
            let notified = self.shared.flow_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut flow = lock(&self.shared.flow);
                if *self.shared.closed.borrow() {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                let session = flow.session;
                let enforce = flow.enforce;
                let Some(win) = flow.streams.get_mut(&id) else {
                    return Err(io::ErrorKind::BrokenPipe.into());
                };
                if !enforce {
                    return Ok(want);
                }
                let avail = (*win).min(session);
                if avail > 0 {
                    let n = want.min(usize::try_from(avail).unwrap_or(want));
                    let n64 = i64::try_from(n).unwrap_or(i64::MAX);
                    *win -= n64;
                    flow.session -= n64;
                    return Ok(n);
                }
            }
            notified.await;
        }
    }

    /// Sends GOAWAY and closes our sending side once queued frames are written.
    pub async fn close(&self) {
        let _ = self.shared.out.send(Out::Close).await;
    }

    /// Tears the session down now (drops the socket, ends every stream).
    pub fn terminate(&self) {
        self.shared.kill.send_replace(true);
        let _ = self.shared.out.try_send(Out::Close);
    }

    /// Resolves when the session has ended (peer closed, error, idle timeout or terminate).
    pub async fn closed(&self) {
        let mut rx = self.shared.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    async fn handle(
        &self,
        frame: Frame,
        incoming: &mpsc::Sender<Stream>,
    ) -> Result<(), FrameError> {
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                let ours = (stream_id % 2 == 0) == (self.shared.role == Role::Server);
                if ours || lock(&self.shared.streams).contains_key(&stream_id) {
                    self.send_ctl(Frame::RstStream {
                        stream_id,
                        status: rst::PROTOCOL_ERROR,
                    });
                    return Ok(());
                }
                let mut stream = self.register(stream_id, None, flags & FLAG_FIN != 0);
                stream.headers = headers;
                if self.shared.role == Role::Server {
                    self.send_ctl(Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: Vec::new(),
                    });
                }
                // Never wait on the application here: a stream nobody takes is refused.
                if incoming.try_send(stream).is_err() {
                    self.forget(stream_id);
                    self.send_ctl(Frame::RstStream {
                        stream_id,
                        status: rst::REFUSED_STREAM,
                    });
                }
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let tx = lock(&self.shared.streams)
                    .get_mut(&stream_id)
                    .and_then(|e| e.reply_tx.take());
                if let Some(tx) = tx {
                    let _ = tx.send(headers);
                }
                if flags & FLAG_FIN != 0 {
                    self.remote_fin(stream_id);
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let entry = lock(&self.shared.streams)
                    .get(&stream_id)
                    .and_then(|e| Some((e.data_tx.clone()?, e.buffered.clone())));
                if let Some((tx, buffered)) = entry
                    && !data.is_empty()
                {
                    let len = data.len();
                    if tx.send(data).is_ok() {
                        buffered.bytes.fetch_add(len, Ordering::SeqCst);
                        self.wait_buffer(&buffered).await;
                    }
                }
                if flags & FLAG_FIN != 0 {
                    self.remote_fin(stream_id);
                }
            }
            Frame::Headers {
                stream_id, flags, ..
            } => {
                if flags & FLAG_FIN != 0 {
                    self.remote_fin(stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => self.forget(stream_id),
            Frame::Settings { entries, .. } => {
                let mut flow = lock(&self.shared.flow);
                flow.enforce = true;
                for s in entries {
                    if s.id == SETTINGS_INITIAL_WINDOW_SIZE {
                        let diff = i64::from(s.value) - flow.initial;
                        flow.initial = i64::from(s.value);
                        for w in flow.streams.values_mut() {
                            *w += diff;
                        }
                    }
                }
                drop(flow);
                self.shared.flow_changed.notify_waiters();
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut flow = lock(&self.shared.flow);
                flow.enforce = true;
                if stream_id == 0 {
                    flow.session += i64::from(delta);
                } else if let Some(w) = flow.streams.get_mut(&stream_id) {
                    *w += i64::from(delta);
                }
                drop(flow);
                self.shared.flow_changed.notify_waiters();
            }
            Frame::Ping { id } => {
                let peer_parity = if self.shared.role == Role::Server {
                    1
                } else {
                    0
                };
                if id % 2 == peer_parity {
                    self.send_ctl(Frame::Ping { id });
                }
            }
            Frame::GoAway { .. } => {}
        }
        Ok(())
    }

    /// Applies backpressure to the socket while a stream holds more than [`MAX_BUFFERED`].
    async fn wait_buffer(&self, buffered: &Buffered) {
        loop {
            let drained = buffered.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if buffered.bytes.load(Ordering::SeqCst) <= MAX_BUFFERED {
                return;
            }
            drained.await;
        }
    }

    fn remote_fin(&self, id: u32) {
        let mut streams = lock(&self.shared.streams);
        let remove = match streams.get_mut(&id) {
            Some(e) => {
                e.data_tx = None;
                e.local_closed
            }
            None => false,
        };
        if remove {
            streams.remove(&id);
            drop(streams);
            lock(&self.shared.flow).streams.remove(&id);
        }
    }

    fn shut_down(&self) {
        lock(&self.shared.streams).clear();
        lock(&self.shared.flow).streams.clear();
        self.shared.closed.send_replace(true);
        self.shared.flow_changed.notify_waiters();
    }
}

async fn reader_task<R: AsyncRead + Unpin>(
    mut rd: R,
    mut buf: BytesMut,
    incoming: mpsc::Sender<Stream>,
    activity: Activity,
    conn: Connection,
) {
    let mut decoder = Decoder::new();
    let mut kill = conn.shared.kill.subscribe();
    'outer: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let handled = tokio::select! {
                        r = conn.handle(frame, &incoming) => r,
                        _ = kill.wait_for(|k| *k) => break 'outer,
                    };
                    if let Err(e) = handled {
                        tracing::debug!(error = %e, "SPDY frame handling failed");
                        break 'outer;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY framing error, closing connection");
                    let _ = conn.shared.out.try_send(Out::Frame(Frame::GoAway {
                        last_good_stream_id: 0,
                        status: 1,
                    }));
                    break 'outer;
                }
            }
        }
        buf.reserve(64 * 1024);
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = kill.wait_for(|k| *k) => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => activity.touch(),
        }
    }
    conn.shut_down();
    conn.terminate();
}

async fn writer_task<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Out>,
    mut ctl: mpsc::UnboundedReceiver<Frame>,
    mut encoder: Encoder,
    activity: Activity,
    conn: Connection,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut kill = conn.shared.kill.subscribe();
    let mut closing = false;
    loop {
        let first = tokio::select! {
            biased;
            Some(f) = ctl.recv() => Some(Out::Frame(f)),
            m = rx.recv() => m,
            _ = kill.wait_for(|k| *k) => None,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Frame(f) => {
                    if let Err(e) = encoder.encode(&f, &mut buf) {
                        tracing::debug!(error = %e, "SPDY encode failed");
                        closing = true;
                    }
                }
                Out::Close => {
                    let _ = encoder.encode(
                        &Frame::GoAway {
                            last_good_stream_id: 0,
                            status: 0,
                        },
                        &mut buf,
                    );
                    closing = true;
                }
            }
            if closing || buf.len() > 256 * 1024 {
                break;
            }
            next = match ctl.try_recv() {
                Ok(f) => Some(Out::Frame(f)),
                Err(_) => rx.try_recv().ok(),
            };
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        buf.clear();
        activity.touch();
        if closing {
            break;
        }
    }
    let _ = wr.shutdown().await;
    if !closing {
        conn.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::frame::Decoder;
    use tokio::io::DuplexStream;

    /// A raw peer speaking frames directly, like Go's spdystream would.
    struct Peer {
        io: DuplexStream,
        enc: Encoder,
        dec: Decoder,
        buf: BytesMut,
    }

    impl Peer {
        async fn send(&mut self, f: Frame) {
            let mut b = BytesMut::new();
            self.enc.encode(&f, &mut b).expect("encode");
            self.io.write_all(&b).await.expect("write");
        }
        async fn next(&mut self, wait: Duration) -> Option<Frame> {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).expect("decode") {
                    return Some(f);
                }
                match tokio::time::timeout(wait, self.io.read_buf(&mut self.buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return None,
                }
            }
        }
        /// Sums DATA bytes on `id` until `want` arrived or nothing comes for a while.
        async fn data_bytes(&mut self, id: u32, want: usize) -> usize {
            let mut got = 0;
            while got < want {
                match self.next(Duration::from_millis(200)).await {
                    Some(Frame::Data {
                        stream_id, data, ..
                    }) if stream_id == id => got += data.len(),
                    Some(_) => {}
                    None => break,
                }
            }
            got
        }
    }

    fn server() -> (Connection, mpsc::Receiver<Stream>, Peer) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (conn, incoming) =
            Connection::new(a, Role::Server, BytesMut::new(), None).expect("conn");
        let peer = Peer {
            io: b,
            enc: Encoder::new().expect("enc"),
            dec: Decoder::new(),
            buf: BytesMut::new(),
        };
        (conn, incoming, peer)
    }

    fn syn(id: u32) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: vec![("streamtype".into(), "stdout".into())],
        }
    }

    #[tokio::test]
    async fn send_window_enforced_once_peer_does_flow_control() {
        let (_conn, mut incoming, mut peer) = server();
        peer.send(Frame::Settings {
            flags: 0,
            entries: vec![Setting {
                flags: 0,
                id: SETTINGS_INITIAL_WINDOW_SIZE,
                value: 1000,
            }],
        })
        .await;
        peer.send(syn(1)).await;
        let stream = incoming.recv().await.expect("stream");
        let (_, w) = stream.split();
        let writer = tokio::spawn(async move { w.write(&[7u8; 5000]).await });
        assert_eq!(peer.data_bytes(1, 5000).await, 1000);
        peer.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 1500,
        })
        .await;
        assert_eq!(peer.data_bytes(1, 5000).await, 1500);
        peer.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 10_000,
        })
        .await;
        assert_eq!(peer.data_bytes(1, 2500).await, 2500);
        writer.await.expect("join").expect("write");
    }

    #[tokio::test]
    async fn peer_without_flow_control_is_never_stalled() {
        // spdystream never sends SETTINGS or WINDOW_UPDATE.
        let (_conn, mut incoming, mut peer) = server();
        peer.send(syn(1)).await;
        let (_, w) = incoming.recv().await.expect("stream").split();
        let writer = tokio::spawn(async move { w.write(&vec![1u8; 1 << 20]).await });
        assert_eq!(peer.data_bytes(1, 1 << 20).await, 1 << 20);
        writer.await.expect("join").expect("write");
    }

    #[tokio::test]
    async fn receive_window_is_granted_as_data_is_consumed() {
        let (_conn, mut incoming, mut peer) = server();
        peer.send(syn(1)).await;
        let (mut r, _) = incoming.recv().await.expect("stream").split();
        for _ in 0..10 {
            peer.send(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from(vec![0u8; 10_000]),
            })
            .await;
        }
        peer.send(Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await;
        assert_eq!(r.read_to_end().await.len(), 100_000);
        let (mut stream_win, mut session_win) = (0u64, 0u64);
        while let Some(f) = peer.next(Duration::from_millis(200)).await {
            match f {
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta,
                } => stream_win += u64::from(delta),
                Frame::WindowUpdate {
                    stream_id: 0,
                    delta,
                } => session_win += u64::from(delta),
                _ => {}
            }
        }
        assert_eq!((stream_win, session_win), (100_000, 100_000));
    }

    #[tokio::test]
    async fn ping_is_echoed_and_bad_stream_ids_reset() {
        let (_conn, _incoming, mut peer) = server();
        peer.send(Frame::Ping { id: 1 }).await;
        assert_eq!(
            peer.next(Duration::from_secs(2)).await,
            Some(Frame::Ping { id: 1 })
        );
        // Even ids are the server's to open.
        peer.send(syn(2)).await;
        assert_eq!(
            peer.next(Duration::from_secs(2)).await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: rst::PROTOCOL_ERROR
            })
        );
    }

    #[tokio::test]
    async fn peer_eof_ends_session_and_streams() {
        let (conn, mut incoming, mut peer) = server();
        peer.send(syn(1)).await;
        let (mut r, _) = incoming.recv().await.expect("stream").split();
        drop(peer);
        assert_eq!(r.recv().await, None);
        tokio::time::timeout(Duration::from_secs(2), conn.closed())
            .await
            .expect("closed");
    }
}
