//! A SPDY/3.1 session over any byte stream: a reader task (decodes frames, dispatches them to
//! streams), a writer task (owns the header compressor), flow control and the idle timeout.
//!
//! Flow control: we always grant the peer window as our application consumes data (stream and
//! session WINDOW_UPDATE), and count what we send against the peer's windows. Go's
//! `spdystream`, which kubelet clients use, neither sends WINDOW_UPDATE nor honours windows, so
//! the rest depends on whether the peer has shown it speaks flow control (sent SETTINGS or
//! WINDOW_UPDATE):
//!
//! - It has: we wait for its window before sending, and hold it to ours. Data beyond the window
//!   we granted resets that stream (FLOW_CONTROL_ERROR); the reader task never waits for the
//!   application, so WINDOW_UPDATEs behind unconsumed data still get through. Blocking the
//!   reader here deadlocks an echo (`cat`): the reader waits for the stdin consumer, which
//!   waits for the stdout sender, which waits for a WINDOW_UPDATE only the reader can deliver.
//!   A server answers the peer's SETTINGS with its own, before any SYN_REPLY, so a client that
//!   waits for its replies never sends a byte unpaced.
//! - It has not: we send unpaced, and the reader stops reading the socket while a stream holds
//!   more than `MAX_BUFFERED` (4 MiB) unconsumed bytes. That cannot deadlock the session, since
//!   nothing we send waits for frames from such a peer.
//!
//! Data nobody will consume (unknown or reset stream, dropped reader) is credited back to the
//! session window at once, so it cannot starve the other streams.

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
const MAX_CHUNK: usize = 64 * 1024;
/// Receive windows we announce to a peer that speaks flow control: per stream (SETTINGS) and
/// for the session (grown from the SPDY default by a WINDOW_UPDATE). The 64 KiB default caps
/// a transfer at one window per round trip through both sessions and the application.
const RECV_WINDOW: u32 = 1 << 20;
const RECV_SESSION_WINDOW: u32 = 4 << 20;
/// Bytes buffered per stream before the reader stops reading the socket, for peers without flow
/// control only (a flow-controlled peer is held to the windows we grant).
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
    /// What the peer may still send on this stream: our initial window plus the updates we
    /// sent, minus the data received.
    recv_window: i64,
}

struct Flow {
    /// The peer has shown it speaks flow control (sent SETTINGS or WINDOW_UPDATE).
    peer_flow_control: bool,
    /// We have told the peer our windows (a client at once, a server in reply).
    announced: bool,
    /// Receive window of a new stream: the SPDY default, [`RECV_WINDOW`] once announced.
    recv_initial: i64,
    /// The peer's initial stream window, and its session and stream windows for our sending
    /// (negative after sending unpaced to a peer without flow control).
    initial: i64,
    session: i64,
    streams: HashMap<u32, i64>,
    /// What the peer may still send on the session (as `StreamEntry::recv_window`).
    recv_session: i64,
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
        // Nobody will consume: release a reader waiting on this stream's buffer, and give the
        // session window of what is queued back to the peer (later data is credited by the
        // reader, which then finds the channel closed).
        self.rx.close();
        let mut unread = 0;
        while let Ok(chunk) = self.rx.try_recv() {
            unread += chunk.len();
        }
        self.buffered.bytes.store(0, Ordering::SeqCst);
        self.buffered.drained.notify_waiters();
        self.conn.grant(None, unread);
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
        self.conn.grant(Some(self.id), chunk.len());
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
                peer_flow_control: false,
                announced: false,
                recv_initial: i64::from(DEFAULT_WINDOW),
                initial: i64::from(DEFAULT_WINDOW),
                session: i64::from(DEFAULT_WINDOW),
                streams: HashMap::new(),
                recv_session: i64::from(DEFAULT_WINDOW),
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
        // a bufio.Reader and would lose frames that arrive with it. It answers a peer that shows
        // flow control with the same SETTINGS (see `peer_speaks_flow_control`).
        if role == Role::Client {
            conn.announce(&mut lock(&conn.shared.flow));
        }
        Ok((conn, incoming_rx))
    }

    /// Notes that the peer speaks flow control; a server that has not yet told it so answers
    /// with its own SETTINGS (queued ahead of any SYN_REPLY it has not sent yet).
    fn peer_speaks_flow_control(&self, flow: &mut Flow) {
        flow.peer_flow_control = true;
        if !flow.announced {
            self.announce(flow);
        }
    }

    /// Tells the peer our receive windows: SETTINGS for the streams (which also resizes those
    /// already open), and a session WINDOW_UPDATE.
    fn announce(&self, flow: &mut Flow) {
        flow.announced = true;
        let more = i64::from(RECV_WINDOW) - flow.recv_initial;
        flow.recv_initial = i64::from(RECV_WINDOW);
        for e in lock(&self.shared.streams).values_mut() {
            e.recv_window += more;
        }
        self.send_ctl(settings());
        let delta = RECV_SESSION_WINDOW - DEFAULT_WINDOW;
        flow.recv_session += i64::from(delta);
        self.send_ctl(Frame::WindowUpdate {
            stream_id: 0,
            delta,
        });
    }

    /// Gives `n` consumed (or discarded) bytes of window back to the peer: on the stream `id`
    /// if given, and on the session.
    fn grant(&self, id: Option<u32>, n: usize) {
        let Ok(delta) = u32::try_from(n) else { return };
        if delta == 0 {
            return;
        }
        if let Some(stream_id) = id {
            if let Some(e) = lock(&self.shared.streams).get_mut(&stream_id) {
                e.recv_window += i64::from(delta);
            }
            self.send_ctl(Frame::WindowUpdate { stream_id, delta });
        }
        lock(&self.shared.flow).recv_session += i64::from(delta);
        self.send_ctl(Frame::WindowUpdate {
            stream_id: 0,
            delta,
        });
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
        let recv_window = lock(&self.shared.flow).recv_initial;
        lock(&self.shared.streams).insert(
            id,
            StreamEntry {
                data_tx: (!fin).then_some(tx),
                buffered: buffered.clone(),
                reply_tx,
                local_closed: false,
                recv_window,
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
                let enforce = flow.peer_flow_control;
                let Some(win) = flow.streams.get_mut(&id) else {
                    return Err(io::ErrorKind::BrokenPipe.into());
                };
                // Unpaced data still counts: should the peer later show flow control, its
                // updates only grant what it consumed, not fresh window.
                let avail = if enforce {
                    (*win).min(session)
                } else {
                    i64::try_from(want).unwrap_or(i64::MAX)
                };
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
                if !data.is_empty() {
                    self.deliver(stream_id, data).await;
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
                self.peer_speaks_flow_control(&mut flow);
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
                self.peer_speaks_flow_control(&mut flow);
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

    /// Queues a DATA payload for its stream's reader, enforcing our receive windows on a peer
    /// that speaks flow control and applying backpressure to one that does not.
    async fn deliver(&self, stream_id: u32, data: Bytes) {
        let len = data.len();
        let len64 = i64::try_from(len).unwrap_or(i64::MAX);
        let (strict, session_exceeded) = {
            let mut flow = lock(&self.shared.flow);
            flow.recv_session -= len64;
            (flow.peer_flow_control, flow.recv_session < 0)
        };
        let target = lock(&self.shared.streams)
            .get_mut(&stream_id)
            .and_then(|e| {
                let tx = e.data_tx.clone()?;
                e.recv_window -= len64;
                Some((tx, e.buffered.clone(), e.recv_window < 0))
            });
        let Some((tx, buffered, stream_exceeded)) = target else {
            // Unknown, reset or finished stream: nobody will consume this.
            self.grant(None, len);
            return;
        };
        if strict && (stream_exceeded || session_exceeded) {
            tracing::debug!(
                stream_id,
                "SPDY peer exceeded its flow-control window, resetting stream"
            );
            self.forget(stream_id);
            self.send_ctl(Frame::RstStream {
                stream_id,
                status: rst::FLOW_CONTROL_ERROR,
            });
            self.grant(None, len);
            return;
        }
        buffered.bytes.fetch_add(len, Ordering::SeqCst);
        if tx.send(data).is_err() {
            // The reader was dropped after we looked it up.
            let _ = buffered
                .bytes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                    Some(b.saturating_sub(len))
                });
            self.grant(None, len);
            return;
        }
        if !strict {
            self.wait_buffer(&buffered).await;
        }
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

/// SETTINGS announcing our stream receive window (we grant more as data is consumed).
fn settings() -> Frame {
    Frame::Settings {
        flags: 0,
        entries: vec![Setting {
            flags: 0,
            id: SETTINGS_INITIAL_WINDOW_SIZE,
            value: RECV_WINDOW,
        }],
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

    fn data(stream_id: u32, len: usize) -> Frame {
        Frame::Data {
            stream_id,
            flags: 0,
            data: Bytes::from(vec![0u8; len]),
        }
    }

    /// Sums the WINDOW_UPDATE deltas (stream, session) the peer gets until nothing comes.
    async fn window_updates(peer: &mut Peer, stream: u32) -> (u64, u64) {
        let (mut on_stream, mut on_session) = (0, 0);
        while let Some(f) = peer.next(Duration::from_millis(200)).await {
            match f {
                Frame::WindowUpdate { stream_id, delta } if stream_id == stream => {
                    on_stream += u64::from(delta)
                }
                Frame::WindowUpdate {
                    stream_id: 0,
                    delta,
                } => on_session += u64::from(delta),
                _ => {}
            }
        }
        (on_stream, on_session)
    }

    #[tokio::test]
    async fn server_announces_flow_control_only_to_a_peer_that_speaks_it() {
        // A Go client (no SETTINGS): nothing but the SYN_REPLY.
        let (_conn, _incoming, mut peer) = server();
        peer.send(syn(1)).await;
        assert!(matches!(
            peer.next(Duration::from_secs(2)).await,
            Some(Frame::SynReply { stream_id: 1, .. })
        ));
        assert_eq!(peer.next(Duration::from_millis(200)).await, None);
        // A flow-controlled client hears about our windows before its first reply, so it can
        // pace its first bytes.
        let (_conn, _incoming, mut peer) = server();
        peer.send(settings()).await;
        peer.send(syn(1)).await;
        assert_eq!(peer.next(Duration::from_secs(2)).await, Some(settings()));
        assert_eq!(
            peer.next(Duration::from_secs(2)).await,
            Some(Frame::WindowUpdate {
                stream_id: 0,
                delta: RECV_SESSION_WINDOW - DEFAULT_WINDOW
            })
        );
        assert!(matches!(
            peer.next(Duration::from_secs(2)).await,
            Some(Frame::SynReply { stream_id: 1, .. })
        ));
        peer.send(syn(3)).await;
        assert!(matches!(
            peer.next(Duration::from_secs(2)).await,
            Some(Frame::SynReply { stream_id: 3, .. })
        ));
    }

    #[tokio::test]
    async fn window_counts_data_sent_before_the_peer_showed_flow_control() {
        let (_conn, mut incoming, mut peer) = server();
        peer.send(syn(1)).await;
        let (_, w) = incoming.recv().await.expect("stream").split();
        // Unpaced while the peer has shown no flow control.
        w.write(&[1u8; 100_000]).await.expect("write");
        assert_eq!(peer.data_bytes(1, 100_000).await, 100_000);
        // Now it does, granting 50_000 more on both windows: 65_536 - 100_000 + 50_000 left.
        peer.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 50_000,
        })
        .await;
        peer.send(Frame::WindowUpdate {
            stream_id: 0,
            delta: 50_000,
        })
        .await;
        let writer = tokio::spawn(async move { w.write(&[2u8; 100_000]).await });
        assert_eq!(peer.data_bytes(1, 100_000).await, 15_536);
        for id in [1, 0] {
            peer.send(Frame::WindowUpdate {
                stream_id: id,
                delta: 84_464,
            })
            .await;
        }
        assert_eq!(peer.data_bytes(1, 100_000).await, 84_464);
        writer.await.expect("join").expect("write");
    }

    #[tokio::test]
    async fn flow_controlled_peer_overrunning_its_window_is_reset_without_stalling_the_session() {
        let (_conn, mut incoming, mut peer) = server();
        peer.send(settings()).await;
        peer.send(syn(1)).await;
        // Held but never read, like stdin of a process that is busy writing stdout.
        let _unread = incoming.recv().await.expect("stream");
        // 5 MiB against a 1 MiB window: more than a stream may buffer, so a reader that
        // waited for the application would stop reading here and never see the PING.
        let sent = tokio::time::timeout(Duration::from_secs(30), async {
            for _ in 0..320 {
                peer.send(data(1, 16 * 1024)).await;
            }
            peer.send(Frame::Ping { id: 7 }).await;
        })
        .await;
        assert!(sent.is_ok(), "session stopped reading the socket");
        let (mut reset, mut pong, mut credited) = (false, false, 0u64);
        while let Some(f) = peer.next(Duration::from_millis(500)).await {
            match f {
                Frame::RstStream {
                    stream_id: 1,
                    status,
                } => {
                    assert_eq!(status, rst::FLOW_CONTROL_ERROR);
                    reset = true;
                }
                Frame::Ping { id: 7 } => pong = true,
                Frame::WindowUpdate {
                    stream_id: 0,
                    delta,
                } => credited += u64::from(delta),
                _ => {}
            }
        }
        assert!(reset && pong, "reset {reset}, pong {pong}");
        // Everything past the window was dropped and given back to the session (on top of the
        // session window announced at the start).
        let announced = u64::from(RECV_SESSION_WINDOW - DEFAULT_WINDOW);
        assert_eq!(
            credited - announced,
            320 * 16 * 1024 - u64::from(RECV_WINDOW)
        );
    }

    #[tokio::test]
    async fn discarded_data_is_credited_to_the_session() {
        let (_conn, mut incoming, mut peer) = server();
        peer.send(syn(1)).await;
        peer.send(data(1, 10_000)).await;
        let (r, _) = incoming.recv().await.expect("stream").split();
        // Queued for a reader that goes away, sent after it went away, sent to no stream.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(r);
        peer.send(data(1, 20_000)).await;
        peer.send(data(5, 30_000)).await;
        assert_eq!(window_updates(&mut peer, 1).await, (0, 60_000));
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Both ends of a session over an in-memory pipe.
    fn pair() -> (Connection, mpsc::Receiver<Stream>, Connection) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (server, incoming) =
            Connection::new(a, Role::Server, BytesMut::new(), None).expect("server");
        let (client, _) = Connection::new(b, Role::Client, BytesMut::new(), None).expect("client");
        (server, incoming, client)
    }

    // An echo whose consumer starts only once the client has pushed all it can (the paused
    // clock advances only when every task waits). Before the server announced its flow control
    // and unpaced bytes counted, the client pushed megabytes unpaced, the server's reader
    // stopped at the stream buffer limit, and the echo's WINDOW_UPDATEs sat behind the stdin
    // data it would not read: a deadlock.
    #[tokio::test(start_paused = true)]
    async fn echo_with_a_late_consumer_does_not_deadlock() {
        let (server, mut incoming, client) = pair();
        let echo = tokio::spawn(async move {
            let stdin = incoming.recv().await.expect("stdin");
            let stdout = incoming.recv().await.expect("stdout");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ((mut r, _), (_, w)) = (stdin.split(), stdout.split());
            while let Some(chunk) = r.recv().await {
                w.write(&chunk).await.expect("echo");
            }
            w.close().await;
            server
        });
        let stdin = client
            .open_stream(vec![("streamtype".into(), "stdin".into())])
            .await
            .expect("stdin");
        let stdout = client
            .open_stream(vec![("streamtype".into(), "stdout".into())])
            .await
            .expect("stdout");
        let data = payload(8 << 20);
        let ((_, w), (mut r, _)) = (stdin.split(), stdout.split());
        let send = async {
            w.write(&data).await.expect("send");
            w.close().await;
        };
        let got = tokio::time::timeout(Duration::from_secs(600), async {
            tokio::join!(send, r.read_to_end()).1
        })
        .await
        .expect("session deadlocked");
        assert!(got == data, "echo corrupted ({} bytes back)", got.len());
        drop(echo.await.expect("echo"));
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
