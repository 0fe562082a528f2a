//! Turning the core's connect orders into tungstenite requests, and tungstenite's results into
//! core inputs. Shared by every runtime.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use phx_proto::{CloseReason, ConfigError, ConnectRequest, Frame};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::reader::Received;

/// Builds the upgrade request: URL, `Sec-WebSocket-Protocol` (auth token) and extra headers.
pub(crate) fn build_request(req: &ConnectRequest) -> Result<Request, WsError> {
    let mut request = req.url().into_client_request()?;
    let headers = request.headers_mut();
    if !req.subprotocols().is_empty() {
        let value = HeaderValue::from_str(&req.subprotocols().join(","))
            .map_err(|e| WsError::HttpFormat(e.into()))?;
        headers.insert("sec-websocket-protocol", value);
    }
    for (name, value) in req.headers() {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| WsError::HttpFormat(e.into()))?;
        let value = HeaderValue::from_str(value).map_err(|e| WsError::HttpFormat(e.into()))?;
        headers.append(name, value);
    }
    Ok(request)
}

/// Whether HTTP can carry `req`'s URL, which the core's endpoint rules let through in forms
/// the request line cannot hold (a space in the query, a second ':' in the authority...). The
/// headers need no such check: the core's options refuse what a request could not send.
pub(crate) fn check_url(req: &ConnectRequest) -> Result<(), ConfigError> {
    match req.url().into_client_request() {
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError::Endpoint {
            url: req
                .redacted_url()
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned(),
            reason: "not a URL an HTTP request can carry (a space, a second ':' in the \
                     authority, an unclosed '[', or a host that is not ASCII?)",
        }),
    }
}

/// How a failed dial or read ends the connection, for the core.
pub(crate) fn close_reason(e: &WsError) -> CloseReason {
    match e {
        WsError::Http(response) => CloseReason::Refused {
            status: response.status().as_u16(),
        },
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            CloseReason::Error("connection closed".into())
        }
        WsError::Tls(e) => CloseReason::Tls(e.to_string()),
        // TLS libraries report handshake failures as IO errors wrapping their own error.
        #[cfg(feature = "rustls")]
        WsError::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            CloseReason::Tls(io.get_ref().map(ToString::to_string).unwrap_or_default())
        }
        WsError::Capacity(tungstenite::error::CapacityError::MessageTooLong { size, max_size }) => {
            CloseReason::MessageTooLarge {
                size: *size,
                max: *max_size,
            }
        }
        other => CloseReason::Error(other.to_string()),
    }
}

/// A received close frame, for the core.
pub(crate) fn close_frame(frame: Option<CloseFrame>) -> CloseReason {
    match frame {
        Some(f) => CloseReason::Closed {
            code: f.code.into(),
            reason: f.reason.to_string(),
        },
        None => CloseReason::Closed {
            code: 1005,
            reason: String::new(),
        },
    }
}

/// A core frame as a WebSocket message. The codec only produces UTF-8 text.
pub(crate) fn to_ws(frame: Frame) -> WsMessage {
    match frame {
        // Checked before the conversion (which checks again) rather than converting a clone:
        // cloning a frame's `Bytes` may allocate.
        Frame::Text(bytes) => match std::str::from_utf8(&bytes) {
            Ok(_) => WsMessage::Text(tungstenite::Utf8Bytes::try_from(bytes).unwrap_or_default()),
            // Only a custom serializer can get here; never send invalid UTF-8 as text.
            Err(_) => WsMessage::text(String::from_utf8_lossy(&bytes).into_owned()),
        },
        Frame::Binary(bytes) => WsMessage::Binary(bytes),
    }
}

/// Where received frames live while the application holds their messages.
///
/// The frame reader hands out each payload as a slice of its read buffer, which it reuses for
/// the next read; what the application keeps must be copied out. Small payloads in a burst are
/// packed into chunks of our own, one allocation for many messages (tungstenite's reader split
/// each frame off its buffer instead, and a buffer pinned by frames still alive was refilled
/// in small pieces: about six `recv` calls per 16 KiB read). Any other payload gets an
/// allocation of its own (a large frame already has one), so a message the application holds
/// on to pins nothing else.
///
/// Copying into chunks starts once a burst is under way ([`crate::burst`]: a chunk for a few
/// frames at a time would be an allocation per wake-up, and would hold memory an idle
/// connection does not need). A full chunk is retired; once every frame in a retired chunk has been dropped, the
/// chunk is filled again, so a flood runs on a few warm chunks rather than fresh memory (each
/// fresh chunk cost its page faults). The driver releases the chunks once the connection is
/// quiet, so a quiet socket holds none.
#[derive(Debug, Default)]
pub(crate) struct FrameArena {
    chunk: Option<BytesMut>,
    retired: VecDeque<BytesMut>,
}

impl FrameArena {
    /// Frames up to this size are copied.
    const MAX_COPY: usize = 4 * 1024;
    /// The size of a chunk.
    const CHUNK: usize = 16 * 1024;
    /// Retired chunks kept for reuse (1 MiB): a read round of small frames fills about 30, and
    /// the consumer holds the round before while the driver reads the next, so with fewer the
    /// oldest was still in use nearly every time. With 4, 82-97% of the chunks of a 1,000,000-frame
    /// flood were fresh allocations (and page faults, and frees on the consumer's thread);
    /// with 64, 1-2% (the first 64 among them). Only a burst holds them: a quiet connection
    /// releases them all.
    const RETIRED: usize = 64;

    /// `payload`'s bytes: in the arena when small and a burst is `under_way` or was not over
    /// when this frame came (the arena holds a chunk), else in an allocation of their own.
    pub(crate) fn keep(&mut self, payload: Received<'_>, under_way: bool) -> Bytes {
        let frame = match payload {
            Received::Owned(bytes) => return bytes,
            Received::Slice(frame) => frame,
        };
        if frame.len() > Self::MAX_COPY || (self.chunk.is_none() && !under_way) {
            return Bytes::copy_from_slice(frame);
        }
        let room = self.chunk.as_ref().map_or(0, |c| c.capacity() - c.len());
        if room < frame.len() {
            self.next_chunk();
        }
        let chunk = self.chunk.get_or_insert_with(BytesMut::new);
        chunk.extend_from_slice(frame);
        chunk.split().freeze()
    }

    /// Retires the current chunk (it lives on in the frames that point into it) and takes the
    /// oldest retired one if all of its frames are gone, or a new one.
    fn next_chunk(&mut self) {
        let reclaimed = if self.retired.len() >= Self::RETIRED {
            self.retired
                .pop_front()
                .and_then(|mut oldest| oldest.try_reclaim(Self::CHUNK).then_some(oldest))
        } else {
            None
        };
        let next = reclaimed.unwrap_or_else(|| BytesMut::with_capacity(Self::CHUNK));
        if let Some(full) = self.chunk.replace(next) {
            self.retired.push_back(full);
        }
    }

    /// Lets go of every chunk (the connection is quiet or gone). Chunks live on in the frames
    /// that point into them.
    pub(crate) fn release(&mut self) {
        self.chunk = None;
        self.retired.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phx_proto::Config;

    #[test]
    fn request_carries_url_subprotocols_and_headers() {
        let config = Config::builder("ws://h:4000/socket")
            .unwrap()
            .param("a", "1")
            .auth_token("secret")
            .header("X-Trace", "t1")
            .build()
            .unwrap();
        let socket = phx_proto::Socket::new(config, std::time::Instant::now());
        let req = build_request(&socket.connect_request()).unwrap();
        assert_eq!(req.uri(), "ws://h:4000/socket/websocket?a=1&vsn=2.0.0");
        assert_eq!(
            req.headers()["sec-websocket-protocol"],
            "phoenix,base64url.bearer.phx.c2VjcmV0"
        );
        assert_eq!(req.headers()["x-trace"], "t1");
    }

    /// Every header value the options accept can be sent: a value the request could not carry
    /// would fail every connection attempt, so the options refuse it up front.
    #[test]
    fn every_header_byte_the_options_accept_can_be_sent() {
        for b in 0..=u8::MAX {
            // One byte; those from 0x80 inside a UTF-8 character, as a `String` requires.
            let value = if b < 0x80 {
                format!("a{}b", b as char)
            } else {
                format!("a{}b", char::from_u32(0x80 + u32::from(b)).unwrap())
            };
            let built = Config::builder("ws://h/socket")
                .unwrap()
                .header("x-v", value.clone())
                .build();
            let Ok(config) = built else { continue };
            let socket = phx_proto::Socket::new(config, std::time::Instant::now());
            assert!(
                build_request(&socket.connect_request()).is_ok(),
                "{value:?} is accepted by the options but cannot be sent"
            );
        }
    }

    fn slice(bytes: &[u8]) -> Received<'_> {
        Received::Slice(bytes)
    }

    /// A fresh arena: its frames get allocations of their own until a burst is under way.
    fn cold() -> FrameArena {
        let mut arena = FrameArena::default();
        let frame = b"[null,null,\"t\",\"e\",{}]";
        let f = arena.keep(slice(frame), false);
        assert_eq!(f, &frame[..]);
        assert!(arena.chunk.is_none(), "before a burst, no chunk");
        arena
    }

    #[test]
    fn small_frames_are_packed_into_chunks_and_others_get_their_own_allocation() {
        let mut arena = cold();
        let read_buffer = vec![7u8; 2 * FrameArena::MAX_COPY];
        let small = &read_buffer[..100];
        let kept = arena.keep(slice(small), true);
        assert_eq!(kept, small);
        let next = arena.keep(slice(&read_buffer[100..150]), true);
        assert_eq!(
            next.as_ptr(),
            kept.as_ptr().wrapping_add(100),
            "packed in one chunk"
        );
        let large = &read_buffer[..=FrameArena::MAX_COPY];
        let own = arena.keep(slice(large), true);
        assert_eq!(own, large);
        assert!(
            !arena
                .chunk
                .as_ref()
                .unwrap()
                .as_ptr_range()
                .contains(&own.as_ptr()),
            "a large frame is not in the chunk"
        );
        let owned = Bytes::from(vec![1u8; 10]);
        assert_eq!(
            arena.keep(Received::Owned(owned.clone()), true).as_ptr(),
            owned.as_ptr(),
            "a payload with its own allocation is passed through"
        );
        arena.release();
        assert!(
            arena.chunk.is_none() && arena.retired.is_empty(),
            "an idle connection holds no chunk"
        );
        assert_eq!(kept, small, "released chunks live on in their frames");
    }

    #[test]
    fn a_retired_chunk_is_refilled_once_its_frames_are_gone_and_never_while_one_lives() {
        let frame = |b: u8| vec![b; FrameArena::MAX_COPY];
        let per_chunk = FrameArena::CHUNK / FrameArena::MAX_COPY;
        let mut arena = cold();
        // Chunk 0 keeps one frame alive; every other frame is dropped at once.
        let held = arena.keep(slice(&frame(0xaa)), true);
        let mut starts = vec![held.as_ptr()];
        for i in 1..(FrameArena::RETIRED + 3) * per_chunk {
            let f = arena.keep(slice(&frame(i as u8)), true);
            assert_ne!(
                f.as_ptr(),
                held.as_ptr(),
                "frame {i}: chunk 0 refilled while in use"
            );
            if i % per_chunk == 0 {
                starts.push(f.as_ptr());
            }
        }
        assert!(held.iter().all(|&b| b == 0xaa));
        // Chunks are taken oldest first once RETIRED are waiting: chunk 0 is skipped (new
        // memory instead), and chunk 1, whose frames are all gone, is refilled. The arena
        // held on to chunk 1 throughout, so its address coming back is a reuse, not malloc's.
        let k = FrameArena::RETIRED + 1;
        assert!(
            !starts[..k].contains(&starts[k]),
            "a fresh chunk after skipping chunk 0"
        );
        assert_eq!(starts[k + 1], starts[1], "chunk 1 refilled");
    }

    #[test]
    fn chunks_stay_warm_through_a_burst_and_go_when_released() {
        let mut arena = FrameArena::default();
        let frame = b"[null,null,\"t\",\"e\",{}]";
        let first = arena.keep(slice(frame), true);
        // A pause inside the burst restarts the driver's count; the arena, still warm, packs
        // the first frame after it into the same chunk.
        let second = arena.keep(slice(frame), false);
        assert_eq!(second.as_ptr(), first.as_ptr().wrapping_add(frame.len()));
        arena.release();
        assert!(
            arena.chunk.is_none() && arena.retired.is_empty(),
            "released when quiet"
        );
        // Cold again: a quiet connection's frames take no chunk.
        assert_eq!(arena.keep(slice(frame), false), &frame[..]);
        assert!(arena.chunk.is_none());
    }

    #[test]
    fn refused_upgrade_maps_to_its_http_status() {
        let response = tungstenite::http::Response::builder()
            .status(403)
            .body(None)
            .unwrap();
        assert_eq!(
            close_reason(&WsError::Http(Box::new(response))),
            CloseReason::Refused { status: 403 }
        );
    }
}
