//! Frame codec tests: round trips, golden bytes built by hand from the SPDY/3 spec, fuzzing.

use super::*;

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut enc = Encoder::new().expect("encoder");
    let mut buf = BytesMut::new();
    for f in frames {
        enc.encode(f, &mut buf).expect("encode");
    }
    buf
}

fn decode_all(mut buf: BytesMut) -> Vec<Frame> {
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).expect("decode") {
        out.push(f);
    }
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    out
}

fn every_frame_type() -> Vec<Frame> {
    vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: h(&[("streamtype", "error")]),
        },
        Frame::SynStream {
            stream_id: 3,
            associated_to: 1,
            priority: 7,
            slot: 2,
            flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
            headers: h(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: vec![],
        },
        Frame::SynReply {
            stream_id: 3,
            flags: FLAG_FIN,
            headers: h(&[("a", "b"), ("a", "c")]),
        },
        Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 0x7fff_ffff,
            flags: FLAG_FIN,
            data: Bytes::new(),
        },
        Frame::RstStream {
            stream_id: 5,
            status: rst::CANCEL,
        },
        Frame::Settings {
            flags: 1,
            entries: vec![
                Setting {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: DEFAULT_WINDOW,
                },
                Setting {
                    flags: 1,
                    id: 0x00ab_cdef,
                    value: u32::MAX,
                },
            ],
        },
        Frame::Settings {
            flags: 0,
            entries: vec![],
        },
        Frame::Ping { id: 1 },
        Frame::Ping { id: u32::MAX },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: 0,
        },
        Frame::Headers {
            stream_id: 9,
            flags: FLAG_FIN,
            headers: h(&[("x-y", "z")]),
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 1,
        },
        Frame::WindowUpdate {
            stream_id: 11,
            delta: 0x7fff_ffff,
        },
    ]
}

#[test]
fn round_trip_every_frame_type() {
    let frames = every_frame_type();
    assert_eq!(decode_all(encode_all(&frames)), frames);
}

#[test]
fn golden_data_frame() {
    // DATA: C=0 | stream id (31) ; flags (8) | length (24) ; payload.
    let expected: &[u8] = &[0x00, 0x00, 0x00, 0x05, 0x01, 0x00, 0x00, 0x02, b'h', b'i'];
    let f = Frame::Data {
        stream_id: 5,
        flags: FLAG_FIN,
        data: Bytes::from_static(b"hi"),
    };
    assert_eq!(&encode_all(std::slice::from_ref(&f))[..], expected);
    assert_eq!(decode_all(BytesMut::from(expected)), vec![f]);
}

#[test]
fn golden_window_update_rst_ping_goaway() {
    // Control frame: C=1 | version 3 (15) | type (16) ; flags (8) | length (24) ; payload.
    let cases: Vec<(Frame, Vec<u8>)> = vec![
        (
            Frame::WindowUpdate {
                stream_id: 3,
                delta: 0x1_0000,
            },
            vec![
                0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 3, 0x00, 0x01, 0x00, 0x00,
            ],
        ),
        (
            Frame::RstStream {
                stream_id: 1,
                status: rst::CANCEL,
            },
            vec![
                0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0, 5,
            ],
        ),
        (
            Frame::Ping { id: 2 },
            vec![0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 2],
        ),
        (
            Frame::GoAway {
                last_good_stream_id: 9,
                status: 0,
            },
            vec![
                0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 9, 0, 0, 0, 0,
            ],
        ),
        (
            Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 0,
                    id: 7,
                    value: 65_536,
                }],
            },
            vec![
                0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0c, 0, 0, 0, 1, 0x00, 0x00, 0x00, 0x07,
                0x00, 0x01, 0x00, 0x00,
            ],
        ),
    ];
    for (frame, bytes) in cases {
        assert_eq!(
            &encode_all(std::slice::from_ref(&frame))[..],
            &bytes[..],
            "{frame:?}"
        );
        assert_eq!(decode_all(BytesMut::from(&bytes[..])), vec![frame]);
    }
}

/// The uncompressed name/value block of `streamtype: stdin`, per spec 2.6.10.
fn raw_streamtype_stdin() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1]; // one pair
    v.extend_from_slice(&[0, 0, 0, 10]);
    v.extend_from_slice(b"streamtype");
    v.extend_from_slice(&[0, 0, 0, 5]);
    v.extend_from_slice(b"stdin");
    v
}

/// A zlib stream as a SPDY peer may send it, built by hand: CMF 0x78 (deflate, 32K window),
/// FLG 0x20 (FDICT set; 0x7820 % 31 == 0), DICTID = Adler-32 of the SPDY/3 dictionary
/// (0xe3c6a7c2), then one non-final *stored* deflate block (0x00, LEN, !LEN, bytes) — which is
/// exactly what a sync flush of uncompressed data looks like.
fn hand_zlib_stored(raw: &[u8]) -> Vec<u8> {
    let mut v = vec![0x78, 0x20, 0xe3, 0xc6, 0xa7, 0xc2, 0x00];
    let len = u16::try_from(raw.len()).expect("small");
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&(!len).to_le_bytes());
    v.extend_from_slice(raw);
    v
}

#[test]
fn dictionary_is_the_spdy3_one() {
    assert_eq!(DICTIONARY.len(), 1423);
    // Adler-32 of the dictionary, as carried in DICTID of every SPDY/3 header stream.
    let (mut a, mut b) = (1u32, 0u32);
    for &x in DICTIONARY {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    assert_eq!((b << 16) | a, 0xe3c6_a7c2);
}

#[test]
fn golden_syn_stream_decodes() {
    // SYN_STREAM, flags 0, stream 1, assoc 0, pri 0, slot 0, header block streamtype=stdin.
    let block = hand_zlib_stored(&raw_streamtype_stdin());
    let mut bytes = vec![0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00];
    bytes.push(u8::try_from(10 + block.len()).expect("small"));
    bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x00, 0x00]);
    bytes.extend_from_slice(&block);
    let frames = decode_all(BytesMut::from(&bytes[..]));
    assert_eq!(
        frames,
        vec![Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: h(&[("streamtype", "stdin")]),
        }]
    );
}

#[test]
fn golden_syn_stream_and_reply_encode() {
    // Encoded SYN_STREAM: fixed part by hand; header block must inflate (with the dictionary)
    // to the hand-built raw block. Then a SYN_REPLY on the same compression stream.
    let f = Frame::SynStream {
        stream_id: 3,
        associated_to: 0,
        priority: 2,
        slot: 0,
        flags: FLAG_FIN,
        headers: h(&[("streamtype", "stdin")]),
    };
    let r = Frame::SynReply {
        stream_id: 3,
        flags: 0,
        headers: h(&[("streamtype", "stdin")]),
    };
    let mut enc = Encoder::new().expect("encoder");
    let mut buf = BytesMut::new();
    enc.encode(&f, &mut buf).expect("encode");
    let syn_len = buf.len();
    enc.encode(&r, &mut buf).expect("encode");
    let (syn, reply) = buf.split_at(syn_len);
    assert_eq!(&syn[..5], &[0x80, 0x03, 0x00, 0x01, 0x01]);
    assert_eq!(
        usize::from(syn[6]) * 256 + usize::from(syn[7]),
        syn.len() - 8
    );
    assert_eq!(&syn[8..18], &[0, 0, 0, 3, 0, 0, 0, 0, 0x40, 0x00]);
    assert_eq!(&reply[..5], &[0x80, 0x03, 0x00, 0x02, 0x00]);
    assert_eq!(&reply[8..12], &[0, 0, 0, 3]);
    // zlib header with FDICT and the SPDY/3 DICTID.
    assert_eq!(syn[18], 0x78);
    assert_ne!(syn[19] & 0x20, 0);
    assert_eq!(&syn[20..24], &[0xe3, 0xc6, 0xa7, 0xc2]);
    let mut z = Decompress::new(true);
    let mut out = Vec::with_capacity(4096);
    let mut input = syn[18..].to_vec();
    input.extend_from_slice(&reply[12..]);
    let first = z.decompress_vec(&input, &mut out, FlushDecompress::Sync);
    assert!(first.is_err_and(|e| e.needs_dictionary() == Some(0xe3c6_a7c2)));
    z.set_dictionary(DICTIONARY).expect("dict");
    let used = usize::try_from(z.total_in()).expect("fits");
    z.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
        .expect("inflate");
    let mut want = raw_streamtype_stdin();
    want.extend_from_slice(&raw_streamtype_stdin());
    assert_eq!(out, want);
}

#[test]
fn header_block_multi_values_and_case() {
    let raw =
        raw_header_block(&h(&[("Port", "80"), ("port", "81"), ("RequestID", "1")])).expect("raw");
    assert_eq!(
        parse_header_block(&raw).expect("parse"),
        h(&[("port", "80"), ("port", "81"), ("requestid", "1")])
    );
    assert!(parse_header_block(&[0, 0, 0, 9]).is_err());
    assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, 1]).is_err());
}

#[test]
fn partial_input_waits_for_more() {
    let frames = every_frame_type();
    let all = encode_all(&frames);
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in all.iter() {
        buf.put_u8(*b);
        while let Some(f) = dec.decode(&mut buf).expect("decode") {
            got.push(f);
        }
    }
    assert_eq!(got, frames);
}

#[test]
fn bad_frames_are_errors() {
    let mut dec = Decoder::new();
    // Version 2 control frame.
    let mut b = BytesMut::from(&[0x80u8, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
    assert!(matches!(dec.decode(&mut b), Err(FrameError::Version(2))));
    // PING with 3 bytes.
    let mut b = BytesMut::from(&[0x80u8, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 1][..]);
    assert!(dec.decode(&mut b).is_err());
    // SYN_STREAM whose header block is garbage.
    let mut b = BytesMut::from(
        &[
            0x80u8, 0x03, 0x00, 0x01, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2,
        ][..],
    );
    assert!(Decoder::new().decode(&mut b).is_err());
    // Unknown control type 0x42 is skipped.
    let mut b = BytesMut::from(
        &[
            0x80u8, 0x03, 0x00, 0x42, 0, 0, 0, 1, 9, 0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 7,
        ][..],
    );
    assert_eq!(
        Decoder::new().decode(&mut b).expect("ok"),
        Some(Frame::Ping { id: 7 })
    );
}

/// xorshift64*: deterministic, dependency-free randomness for the fuzz loops.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn u32(&mut self) -> u32 {
        u32::try_from(self.next() >> 32).expect("fits")
    }
    fn u8(&mut self) -> u8 {
        u8::try_from(self.next() >> 56).expect("fits")
    }
    fn string(&mut self, max: u64) -> String {
        let n = self.below(max);
        (0..n)
            .map(|_| char::from(b'a' + u8::try_from(self.below(26)).expect("fits")))
            .collect()
    }
    fn headers(&mut self) -> Headers {
        let mut out: Headers = Vec::new();
        for _ in 0..self.below(6) {
            let name = format!("h{}", self.string(12));
            // Repeated names are grouped on the wire: keep generated names unique.
            if out.iter().all(|(n, _)| *n != name) {
                out.push((name, self.string(40)));
            }
        }
        out
    }
    fn frame(&mut self) -> Frame {
        let sid = self.u32() & 0x7fff_ffff;
        match self.below(9) {
            0 => Frame::Data {
                stream_id: sid,
                flags: self.u8() & 1,
                data: Bytes::from((0..self.below(3000)).map(|_| self.u8()).collect::<Vec<_>>()),
            },
            1 => Frame::SynStream {
                stream_id: sid.max(1),
                associated_to: self.u32() & 0x7fff_ffff,
                priority: self.u8() & 7,
                slot: self.u8(),
                flags: self.u8() & 3,
                headers: self.headers(),
            },
            2 => Frame::SynReply {
                stream_id: sid,
                flags: self.u8() & 1,
                headers: self.headers(),
            },
            3 => Frame::RstStream {
                stream_id: sid,
                status: self.u32(),
            },
            4 => Frame::Settings {
                flags: self.u8(),
                entries: (0..self.below(5))
                    .map(|_| Setting {
                        flags: self.u8(),
                        id: self.u32() & 0xff_ffff,
                        value: self.u32(),
                    })
                    .collect(),
            },
            5 => Frame::Ping { id: self.u32() },
            6 => Frame::GoAway {
                last_good_stream_id: sid,
                status: self.u32(),
            },
            7 => Frame::Headers {
                stream_id: sid,
                flags: self.u8() & 1,
                headers: self.headers(),
            },
            _ => Frame::WindowUpdate {
                stream_id: sid,
                delta: (self.u32() & 0x7fff_ffff).max(1),
            },
        }
    }
}

#[test]
fn fuzz_round_trip_random_frames_random_chunking() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..50 {
        let frames: Vec<Frame> = (0..rng.below(60) + 1).map(|_| rng.frame()).collect();
        let wire = encode_all(&frames);
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let n = usize::try_from(rng.below(700) + 1)
                .expect("fits")
                .min(wire.len() - pos);
            buf.extend_from_slice(&wire[pos..pos + n]);
            pos += n;
            while let Some(f) = dec.decode(&mut buf).expect("decode") {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }
}

#[test]
fn fuzz_garbage_never_panics() {
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let mut dec = Decoder::new();
        let mut wire = encode_all(&[rng.frame(), rng.frame()]);
        // Flip some bytes, keep 0x80 0x03 at times so control parsing is reached.
        for _ in 0..rng.below(6) {
            if !wire.is_empty() {
                let i = usize::try_from(rng.below(wire.len() as u64)).expect("fits");
                wire[i] = rng.u8();
            }
        }
        for _ in 0..4 {
            match dec.decode(&mut wire) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[test]
fn long_runs_of_unknown_control_frames_are_skipped_iteratively() {
    let mut b = BytesMut::new();
    for _ in 0..100_000 {
        b.extend_from_slice(&[0x80, 0x03, 0x00, 0x42, 0, 0, 0, 0]);
    }
    b.extend_from_slice(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 9]);
    assert_eq!(
        Decoder::new().decode(&mut b).expect("ok"),
        Some(Frame::Ping { id: 9 })
    );
    assert!(b.is_empty());
}
