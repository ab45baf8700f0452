//! SPDY/3.1 frames: the frame model, wire encoding/decoding, and the name/value header block
//! compressed with one zlib stream per direction primed with the SPDY/3 dictionary.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// Protocol version carried in control frames (SPDY/3 and 3.1 both say 3).
pub const VERSION: u16 = 3;
/// The header compression dictionary of SPDY/3 (draft-mbelshe-httpbis-spdy-00, 2.6.10.1).
pub const DICTIONARY: &[u8] = include_bytes!("dictionary.bin");
/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Initial stream and session flow-control window.
pub const DEFAULT_WINDOW: u32 = 65_536;
/// SETTINGS id of SETTINGS_INITIAL_WINDOW_SIZE.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// Largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// RST_STREAM status codes used here.
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL.
    pub const CANCEL: u32 = 5;
    /// FLOW_CONTROL_ERROR: the peer sent more than the window we granted.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
}

const T_SYN_STREAM: u16 = 1;
const T_SYN_REPLY: u16 = 2;
const T_RST_STREAM: u16 = 3;
const T_SETTINGS: u16 = 4;
const T_PING: u16 = 6;
const T_GOAWAY: u16 = 7;
const T_HEADERS: u16 = 8;
const T_WINDOW_UPDATE: u16 = 9;

/// Header name/value pairs; names are lower case on the wire. Repeated names are joined with
/// NUL when encoded and split again when decoded.
pub type Headers = Vec<(String, String)>;

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Entry flags (FLAG_SETTINGS_PERSIST_VALUE, FLAG_SETTINGS_PERSISTED).
    pub flags: u8,
    /// 24-bit id.
    pub id: u32,
    /// Value.
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data {
        /// Stream id (31 bits).
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Payload.
        data: Bytes,
    },
    /// SYN_STREAM: opens a stream.
    SynStream {
        /// New stream id (odd from clients, even from servers).
        stream_id: u32,
        /// Associated stream (0 for none).
        associated_to: u32,
        /// Priority 0 (highest) to 7.
        priority: u8,
        /// Credential slot.
        slot: u8,
        /// FLAG_FIN / FLAG_UNIDIRECTIONAL.
        flags: u8,
        /// Header block.
        headers: Headers,
    },
    /// SYN_REPLY: accepts a stream.
    SynReply {
        /// Stream id.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Header block.
        headers: Headers,
    },
    /// RST_STREAM: aborts a stream.
    RstStream {
        /// Stream id.
        stream_id: u32,
        /// Status code (see [`rst`]).
        status: u32,
    },
    /// SETTINGS.
    Settings {
        /// FLAG_SETTINGS_CLEAR_SETTINGS.
        flags: u8,
        /// Entries.
        entries: Vec<Setting>,
    },
    /// PING.
    Ping {
        /// Ping id (odd from clients).
        id: u32,
    },
    /// GOAWAY.
    GoAway {
        /// Last stream id the sender processed.
        last_good_stream_id: u32,
        /// Status code.
        status: u32,
    },
    /// HEADERS: extra headers for a stream.
    Headers {
        /// Stream id.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Header block.
        headers: Headers,
    },
    /// WINDOW_UPDATE (stream 0: the session window, SPDY/3.1).
    WindowUpdate {
        /// Stream id.
        stream_id: u32,
        /// Window increase (31 bits, > 0).
        delta: u32,
    },
}

/// Framing or header-compression error; the session cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A control frame with a version other than 3.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A frame whose payload does not fit its type.
    #[error("invalid {0} frame: {1}")]
    Invalid(&'static str, String),
    /// The header block could not be (de)compressed or parsed.
    #[error("header block: {0}")]
    HeaderBlock(String),
    /// A payload longer than 2^24-1 bytes.
    #[error("frame payload too large: {0} bytes")]
    TooLarge(usize),
}

/// Builds the uncompressed name/value block.
pub fn raw_header_block(headers: &Headers) -> Result<Vec<u8>, FrameError> {
    let mut grouped: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name.is_empty() {
            return Err(FrameError::HeaderBlock("empty header name".into()));
        }
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => grouped.push((name, value.clone())),
        }
    }
    let mut out = Vec::new();
    out.put_u32(len32(grouped.len())?);
    for (n, v) in &grouped {
        out.put_u32(len32(n.len())?);
        out.put_slice(n.as_bytes());
        out.put_u32(len32(v.len())?);
        out.put_slice(v.as_bytes());
    }
    Ok(out)
}

fn len32(n: usize) -> Result<u32, FrameError> {
    u32::try_from(n).map_err(|_| FrameError::TooLarge(n))
}

/// Parses an uncompressed name/value block.
pub fn parse_header_block(mut b: &[u8]) -> Result<Headers, FrameError> {
    let bad = |m: &str| FrameError::HeaderBlock(m.to_string());
    if b.len() < 4 {
        return Err(bad("short block"));
    }
    let n = b.get_u32() as usize;
    if n > b.len() / 8 {
        return Err(bad("pair count exceeds block"));
    }
    let mut out = Vec::with_capacity(n);
    let take = |b: &mut &[u8]| -> Result<String, FrameError> {
        if b.len() < 4 {
            return Err(bad("short length"));
        }
        let l = b.get_u32() as usize;
        if b.len() < l {
            return Err(bad("short string"));
        }
        let s = String::from_utf8(b[..l].to_vec()).map_err(|_| bad("non-UTF-8 header"))?;
        b.advance(l);
        Ok(s)
    };
    for _ in 0..n {
        let name = take(&mut b)?;
        let value = take(&mut b)?;
        if name.is_empty() {
            return Err(bad("empty header name"));
        }
        for v in value.split('\0') {
            out.push((name.clone(), v.to_string()));
        }
    }
    if !b.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// Looks up a header by (case-insensitive) name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Encodes frames; owns the sending direction's compression context, so frames must be
/// written in the order they are encoded.
pub struct Encoder {
    z: Compress,
}

impl Encoder {
    /// A fresh encoder (new zlib stream primed with [`DICTIONARY`]).
    pub fn new() -> Result<Self, FrameError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY)
            .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
        Ok(Self { z })
    }

    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        let raw = raw_header_block(headers)?;
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let start = self.z.total_in();
        loop {
            let used = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.z
                .compress_vec(&raw[used.min(raw.len())..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
            let used = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            if used >= raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Appends the wire form of `frame` to `dst`.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let len = check_len(data.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32((u32::from(*flags) << 24) | len);
                dst.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                let block = self.compress(headers)?;
                control(dst, T_SYN_STREAM, *flags, 10 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(associated_to & 0x7fff_ffff);
                dst.put_u8((priority & 0x07) << 5);
                dst.put_u8(*slot);
                dst.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compress(headers)?;
                control(dst, T_SYN_REPLY, *flags, 4 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_slice(&block);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compress(headers)?;
                control(dst, T_HEADERS, *flags, 4 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(dst, T_RST_STREAM, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control(dst, T_SETTINGS, *flags, 4 + 8 * entries.len())?;
                dst.put_u32(len32(entries.len())?);
                for s in entries {
                    dst.put_u32((u32::from(s.flags) << 24) | (s.id & 0x00ff_ffff));
                    dst.put_u32(s.value);
                }
            }
            Frame::Ping { id } => {
                control(dst, T_PING, 0, 4)?;
                dst.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(dst, T_GOAWAY, 0, 8)?;
                dst.put_u32(last_good_stream_id & 0x7fff_ffff);
                dst.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(dst, T_WINDOW_UPDATE, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(delta & 0x7fff_ffff);
            }
        }
        Ok(())
    }
}

fn check_len(n: usize) -> Result<u32, FrameError> {
    if n > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(n));
    }
    len32(n)
}

fn control(dst: &mut BytesMut, ty: u16, flags: u8, len: usize) -> Result<(), FrameError> {
    let len = check_len(len)?;
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(ty);
    dst.put_u32((u32::from(flags) << 24) | len);
    Ok(())
}

/// Decodes frames; owns the receiving direction's decompression context.
pub struct Decoder {
    z: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    fn decompress(&mut self, input: &[u8]) -> Result<Headers, FrameError> {
        let err = |m: String| FrameError::HeaderBlock(m);
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 4 + 64);
        let start_in = self.z.total_in();
        loop {
            let before = (self.z.total_in(), self.z.total_out());
            let used = usize::try_from(self.z.total_in() - start_in).unwrap_or(usize::MAX);
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            if let Err(e) = self.z.decompress_vec(
                &input[used.min(input.len())..],
                &mut out,
                FlushDecompress::Sync,
            ) {
                if e.needs_dictionary().is_some() {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| err(e.to_string()))?;
                    continue;
                }
                return Err(err(e.to_string()));
            }
            let used = usize::try_from(self.z.total_in() - start_in).unwrap_or(usize::MAX);
            if used >= input.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(err("decompressed header block too large".into()));
            }
            if (self.z.total_in(), self.z.total_out()) == before {
                return Err(err("zlib made no progress".into()));
            }
        }
        parse_header_block(&out)
    }

    /// Takes one complete frame off the front of `buf`, or returns `None` if more bytes are
    /// needed. Unknown control frame types are skipped (spec 2.2.1).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.decode_one(buf)? {
                Step::Frame(f) => return Ok(Some(f)),
                Step::NeedMore => return Ok(None),
                Step::Skipped => {}
            }
        }
    }

    fn decode_one(&mut self, buf: &mut BytesMut) -> Result<Step, FrameError> {
        if buf.len() < 8 {
            return Ok(Step::NeedMore);
        }
        let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if buf.len() < 8 + len {
            return Ok(Step::NeedMore);
        }
        let mut head = buf.split_to(8);
        let mut p = buf.split_to(len).freeze();
        let word = head.get_u32();
        let flags = head.get_u8();
        if word & 0x8000_0000 == 0 {
            return Ok(Step::Frame(Frame::Data {
                stream_id: word & 0x7fff_ffff,
                flags,
                data: p,
            }));
        }
        let version = u16::try_from((word >> 16) & 0x7fff).unwrap_or(0);
        let ty = u16::try_from(word & 0xffff).unwrap_or(0);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let need = |name: &'static str, n: usize, p: &Bytes| {
            if p.len() < n {
                Err(FrameError::Invalid(name, format!("{} bytes", p.len())))
            } else {
                Ok(())
            }
        };
        let exact = |name: &'static str, n: usize, p: &Bytes| {
            if p.len() != n {
                Err(FrameError::Invalid(name, format!("{} bytes", p.len())))
            } else {
                Ok(())
            }
        };
        let frame = match ty {
            T_SYN_STREAM => {
                need("SYN_STREAM", 10, &p)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                if stream_id == 0 {
                    return Err(FrameError::Invalid("SYN_STREAM", "stream id 0".into()));
                }
                let headers = self.decompress(&p)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    flags,
                    headers,
                }
            }
            T_SYN_REPLY | T_HEADERS => {
                let name = if ty == T_SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                need(name, 4, &p)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.decompress(&p)?;
                if ty == T_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            T_RST_STREAM => {
                exact("RST_STREAM", 8, &p)?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            T_SETTINGS => {
                need("SETTINGS", 4, &p)?;
                let n = p.get_u32() as usize;
                if p.len() != n.saturating_mul(8) {
                    return Err(FrameError::Invalid("SETTINGS", format!("{n} entries")));
                }
                let entries = (0..n)
                    .map(|_| {
                        let w = p.get_u32();
                        Setting {
                            flags: u8::try_from(w >> 24).unwrap_or(0),
                            id: w & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            T_PING => {
                exact("PING", 4, &p)?;
                Frame::Ping { id: p.get_u32() }
            }
            T_GOAWAY => {
                // SPDY/3 GOAWAY has a status; SPDY/2-style 4-byte bodies are tolerated.
                need("GOAWAY", 4, &p)?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            T_WINDOW_UPDATE => {
                exact("WINDOW_UPDATE", 8, &p)?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => {
                tracing::debug!(frame_type = other, "ignoring unknown SPDY control frame");
                return Ok(Step::Skipped);
            }
        };
        Ok(Step::Frame(frame))
    }
}

enum Step {
    Frame(Frame),
    NeedMore,
    Skipped,
}

#[cfg(test)]
mod tests;
