//! Decodes SPDY bytes captured from the real Go client stack (moby/spdystream) — see
//! `fixtures/README.md` — and checks every frame, including the zlib header blocks.

use bytes::BytesMut;
use cri_streaming::spdy::frame::{Decoder, FLAG_FIN, Frame};

fn decode(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    while let Some(mut f) = dec.decode(&mut buf).expect("valid SPDY from Go") {
        // Go writes headers in map order: compare sorted.
        if let Frame::SynStream { headers, .. } = &mut f {
            headers.sort();
        }
        out.push(f);
    }
    assert!(buf.is_empty(), "{} trailing bytes", buf.len());
    out
}

fn syn(id: u32, headers: &[(&str, &str)]) -> Frame {
    Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        flags: 0,
        headers: headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    }
}

fn data(id: u32, flags: u8, d: &'static [u8]) -> Frame {
    Frame::Data {
        stream_id: id,
        flags,
        data: bytes::Bytes::from_static(d),
    }
}

#[test]
fn go_exec_v4_client_frames() {
    let frames = decode(include_bytes!("fixtures/go-exec-v4.bin"));
    assert_eq!(
        frames,
        vec![
            syn(1, &[("streamtype", "error")]),
            syn(3, &[("streamtype", "stdin")]),
            syn(5, &[("streamtype", "stdout")]),
            data(3, 0, b"hello from go\n"),
            data(3, FLAG_FIN, b""),
            // No GOAWAY: our server sent its GOAWAY first, after which spdystream's Close()
            // writes nothing.
        ]
    );
}

#[test]
fn go_portforward_client_frames() {
    let frames = decode(include_bytes!("fixtures/go-portforward.bin"));
    assert_eq!(
        frames,
        vec![
            syn(
                1,
                &[
                    ("port", "18099"),
                    ("requestid", "0"),
                    ("streamtype", "error")
                ]
            ),
            syn(
                3,
                &[
                    ("port", "18099"),
                    ("requestid", "0"),
                    ("streamtype", "data")
                ]
            ),
            data(3, 0, b"ping over go\n"),
            data(3, FLAG_FIN, b""),
            Frame::GoAway {
                last_good_stream_id: 0,
                status: 0
            },
        ]
    );
}
