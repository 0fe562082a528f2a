//! Turning the core's connect orders into tungstenite requests, and tungstenite's results into
//! core inputs. Shared by every runtime.

use bytes::{Bytes, BytesMut};
use phx_proto::{CloseReason, ConnectRequest, Frame};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message as WsMessage};

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
        Frame::Text(bytes) => match tungstenite::Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => WsMessage::Text(text),
            // Only a custom serializer can get here; never send invalid UTF-8 as text.
            Err(_) => WsMessage::text(String::from_utf8_lossy(&bytes).into_owned()),
        },
        Frame::Binary(bytes) => WsMessage::Binary(bytes),
    }
}

/// A WebSocket data message as a core frame, its bytes copied into `arena` when small; `None`
/// for control messages.
pub(crate) fn from_ws(msg: WsMessage, arena: &mut FrameArena) -> Option<Frame> {
    match msg {
        WsMessage::Text(text) => Some(Frame::Text(arena.keep(text.into()))),
        WsMessage::Binary(bytes) => Some(Frame::Binary(arena.keep(bytes))),
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_) => None,
    }
}

/// Where received frames live while the application holds their messages.
///
/// tungstenite hands out each frame as a slice of its read buffer. While any slice is alive the
/// buffer cannot be reused, and its refills then come in small pieces: delivering a flood of
/// small messages to a consumer cost about six `recv` calls per 16 KiB read instead of one
/// (60,000 instead of 10,000 for a million 125-byte frames). Copying small frames into chunks
/// of our own leaves tungstenite's buffer free to reuse at the price of one short `memcpy`.
/// Large frames are passed through: tungstenite gives each its own allocation anyway.
#[derive(Debug, Default)]
pub(crate) struct FrameArena {
    chunk: BytesMut,
}

impl FrameArena {
    /// Frames up to this size are copied.
    const MAX_COPY: usize = 4 * 1024;
    /// The size of a chunk.
    const CHUNK: usize = 16 * 1024;

    /// `frame`'s bytes, in the arena when small.
    pub(crate) fn keep(&mut self, frame: Bytes) -> Bytes {
        if frame.len() > Self::MAX_COPY {
            return frame;
        }
        if self.chunk.capacity() - self.chunk.len() < frame.len() {
            // The full chunk lives on in the messages that point into it.
            self.chunk = BytesMut::with_capacity(Self::CHUNK);
        }
        self.chunk.extend_from_slice(&frame);
        self.chunk.split().freeze()
    }

    /// Lets go of the current chunk (when the connection is idle), so an idle socket holds no
    /// chunk of its own.
    pub(crate) fn release(&mut self) {
        self.chunk = BytesMut::new();
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

    #[test]
    fn small_frames_are_copied_out_of_the_read_buffer_and_large_ones_kept() {
        let mut arena = FrameArena::default();
        let read_buffer = Bytes::from(vec![7u8; 2 * FrameArena::MAX_COPY]);
        let small = read_buffer.slice(0..100);
        let kept = arena.keep(small.clone());
        assert_eq!(kept, small);
        assert_ne!(
            kept.as_ptr(),
            small.as_ptr(),
            "a small frame no longer pins the buffer"
        );
        let next = arena.keep(read_buffer.slice(100..150));
        assert_eq!(
            next.as_ptr(),
            kept.as_ptr().wrapping_add(100),
            "packed in one chunk"
        );
        let large = read_buffer.slice(0..FrameArena::MAX_COPY + 1);
        assert_eq!(arena.keep(large.clone()).as_ptr(), large.as_ptr());
        arena.release();
        assert_eq!(
            arena.chunk.capacity(),
            0,
            "an idle connection holds no chunk"
        );
        assert_eq!(kept, small, "released chunks live on in their frames");
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
