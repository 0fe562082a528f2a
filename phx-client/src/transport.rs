//! Turning the core's connect orders into tungstenite requests, and tungstenite's results into
//! core inputs. Shared by every runtime.

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

/// A WebSocket data message as a core frame; `None` for control messages.
pub(crate) fn from_ws(msg: WsMessage) -> Option<Frame> {
    match msg {
        WsMessage::Text(text) => Some(Frame::Text(text.into())),
        WsMessage::Binary(bytes) => Some(Frame::Binary(bytes)),
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_) => None,
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
