//! The frame reader checked against tungstenite's, for the unit tests and the `ws_frames` fuzz
//! target (built with `--cfg fuzzing`; not part of the API).

use std::io::{self, Read, Write};

use bytes::Bytes;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use crate::reader::{Event, Reader, Received};

/// What reading a byte stream produced, or how it ended: comparable between phx's reader and
/// tungstenite's.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// A text message.
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// The server's close frame: status and reason.
    Close(Option<(u16, String)>),
    /// A protocol violation (the bytes ending without a close frame among them).
    Protocol(ProtocolError),
    /// A frame or message over its limit.
    TooLong {
        /// Its size.
        size: usize,
        /// The limit.
        max_size: usize,
    },
    /// Text that is not UTF-8.
    Utf8,
    /// The bytes ended after the server's close frame.
    Closed,
    /// Any other error.
    Other(String),
}

fn error(e: WsError) -> Outcome {
    match e {
        WsError::Protocol(p) => Outcome::Protocol(p),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            Outcome::TooLong { size, max_size }
        }
        WsError::Utf8(_) => Outcome::Utf8,
        WsError::ConnectionClosed => Outcome::Closed,
        other => Outcome::Other(other.to_string()),
    }
}

fn close(frame: Option<CloseFrame>) -> Outcome {
    Outcome::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
}

/// The size of the `turn`th piece of input, from `chunks` in turn (1 if there are none).
fn piece(chunks: &[usize], turn: usize) -> usize {
    match chunks {
        [] => 1,
        _ => chunks[turn % chunks.len()].max(1),
    }
}

/// Reads `input` with phx's reader, handing it over in pieces of the `chunks` sizes in turn
/// (each at most what the reader asks for), to the end or the first error.
pub fn ours(config: &WebSocketConfig, input: &[u8], chunks: &[usize]) -> Vec<Outcome> {
    let mut reader = Reader::new(config, &[]);
    let mut keep = |p: Received<'_>| Bytes::copy_from_slice(p.as_slice());
    let (mut at, mut turn, mut out) = (0, 0, Vec::new());
    loop {
        match reader.next(&mut keep) {
            Ok(Some(event)) => out.push(match event {
                Event::Text(b) => Outcome::Text(b.to_vec()),
                Event::Binary(b) => Outcome::Binary(b.to_vec()),
                Event::Ping(b) => Outcome::Ping(b.to_vec()),
                Event::Pong => Outcome::Pong,
                Event::Close(f) => close(f),
            }),
            Ok(None) if at == input.len() => {
                out.push(if reader.closed() {
                    Outcome::Closed
                } else {
                    Outcome::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                });
                return out;
            }
            Ok(None) => {
                // Every fourth wait is a quiet moment, when the driver gives back a buffer
                // grown for a burst.
                if turn % 4 == 3 {
                    reader.shrink();
                }
                let dst = reader.unfilled();
                assert!(!dst.is_empty(), "the reader asked for no bytes");
                let n = dst.len().min(piece(chunks, turn)).min(input.len() - at);
                turn += 1;
                dst[..n].copy_from_slice(&input[at..at + n]);
                reader.filled(n);
                at += n;
            }
            Err(e) => {
                out.push(error(e));
                return out;
            }
        }
    }
}

/// The same bytes read by tungstenite, in the same pieces.
pub fn theirs(config: &WebSocketConfig, input: &[u8], chunks: &[usize]) -> Vec<Outcome> {
    struct Feed<'a> {
        input: &'a [u8],
        chunks: &'a [usize],
        turn: usize,
    }
    impl Read for Feed<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf
                .len()
                .min(piece(self.chunks, self.turn))
                .min(self.input.len());
            self.turn += 1;
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Ok(n)
        }
    }
    impl Write for Feed<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let feed = Feed {
        input,
        chunks,
        turn: 0,
    };
    let mut ws = tungstenite::WebSocket::from_raw_socket(feed, Role::Client, Some(*config));
    let mut out = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => out.push(Outcome::Text(t.as_bytes().to_vec())),
            Ok(Message::Binary(b)) => out.push(Outcome::Binary(b.to_vec())),
            Ok(Message::Ping(b)) => out.push(Outcome::Ping(b.to_vec())),
            Ok(Message::Pong(_)) => out.push(Outcome::Pong),
            Ok(Message::Close(f)) => out.push(close(f)),
            Ok(Message::Frame(_)) => out.push(Outcome::Other("a raw frame".into())),
            Err(e) => {
                out.push(error(e));
                return out;
            }
        }
    }
}

/// Reads `input` both ways and panics unless they agree: the same messages, then the same end.
/// One difference is allowed: phx refuses a frame by its header, where tungstenite first waits
/// for the whole frame, so where the bytes end inside a refused frame tungstenite reports that
/// they ended (the connection reset, or closed after a close frame) and phx the fault.
/// `config` must set a frame size limit (tungstenite tries to reserve any length a header
/// claims).
pub fn differential(config: &WebSocketConfig, input: &[u8], chunks: &[usize]) {
    let (ours, theirs) = (ours(config, input, chunks), theirs(config, input, chunks));
    let ended = |o: Option<&Outcome>| {
        matches!(
            o,
            Some(Outcome::Closed | Outcome::Protocol(ProtocolError::ResetWithoutClosingHandshake))
        )
    };
    let refused_early = ours.len() == theirs.len()
        && ours[..ours.len() - 1] == theirs[..theirs.len() - 1]
        && ended(theirs.last())
        && !ended(ours.last());
    assert!(
        ours == theirs || refused_early,
        "phx read {ours:?}, tungstenite {theirs:?}, from {input:x?} in pieces of {chunks:?}"
    );
}
