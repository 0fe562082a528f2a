//! The Phoenix wire formats: V1 JSON objects, V2 JSON arrays and V2 binary frames.
//!
//! A [`Frame`] is what travels in one WebSocket message; a [`Message`] is its decoded envelope.
//! Decoding reads the envelope once and keeps every field, payload included, as a slice of the
//! frame's [`Bytes`]. Encoding writes the envelope around the payload bytes without re-serializing
//! them.
//!
//! | serializer | `vsn` | frames |
//! |---|---|---|
//! | [`V1Json`] | `1.0.0` | text: `{"topic":…,"event":…,"payload":…,"ref":…}` |
//! | [`V2Json`] | `2.0.0` | text: `[join_ref,ref,topic,event,payload]`; binary: see below |
//!
//! V2 binary frames start with a kind byte and one length byte per string field (each field at
//! most 255 bytes); the payload is the rest of the frame. Kind 0 has two layouts: a client push
//! carries `join_ref, ref, topic, event`, a server push has no `ref`. Kind 1 is a server reply
//! (`join_ref, ref, topic, status`), kind 2 a server broadcast (`topic, event`).
//!
//! The client side uses [`Serializer`] (encode what a client sends, decode what a server sends).
//! The built-in serializers also implement [`ServerSerializer`], the other direction, which the
//! bundled test server uses.

use std::fmt;

use bytes::Bytes;

use crate::payload::{ByteStr, Payload};

mod binary;
pub(crate) mod json;
mod v1;
mod v2;

pub use v1::V1Json;
pub use v2::V2Json;

/// The event name of replies.
pub const PHX_REPLY: &str = "phx_reply";

/// One WebSocket data message, as read from or written to the transport.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message; holds UTF-8 JSON.
    Text(Bytes),
    /// A binary message (V2 binary frames).
    Binary(Bytes),
}

impl Frame {
    /// The frame's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        match self {
            Self::Text(b) | Self::Binary(b) => b,
        }
    }

    /// Size of the frame in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Whether this is a binary frame.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(b) => match std::str::from_utf8(b) {
                Ok(s) => write!(f, "Text({s})"),
                Err(_) => write!(f, "Text(<{} bytes, not UTF-8>)", b.len()),
            },
            Self::Binary(b) => {
                f.write_str("Binary(")?;
                for byte in b.iter().take(64) {
                    write!(f, "{byte:02x}")?;
                }
                if b.len() > 64 {
                    write!(f, "…<{} bytes>", b.len())?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A decoded Phoenix message: the five envelope fields.
///
/// For a reply (`event == "phx_reply"`), the wire payload `{"status": S, "response": R}` (or the
/// status and response of a binary reply frame) is split: [`Message::status`] holds `S` and
/// [`Message::payload`] holds `R`. For every other message `status` is `None` and `payload` is
/// the payload as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The join reference of the channel instance this message belongs to, if any.
    pub join_ref: Option<ByteStr>,
    /// The message reference, echoed by the server in the reply.
    pub ref_: Option<ByteStr>,
    /// The channel topic, such as `room:lobby`, or `phoenix` for socket-level messages.
    pub topic: ByteStr,
    /// The event name.
    pub event: ByteStr,
    /// The payload, or a reply's response.
    pub payload: Payload,
    /// A reply's status (`ok`, `error` or any name the server channel chose); `None` otherwise.
    pub status: Option<ByteStr>,
}

impl Message {
    /// A message that is not a reply.
    pub fn new(
        join_ref: Option<ByteStr>,
        ref_: Option<ByteStr>,
        topic: impl Into<ByteStr>,
        event: impl Into<ByteStr>,
        payload: Payload,
    ) -> Self {
        Self {
            join_ref,
            ref_,
            topic: topic.into(),
            event: event.into(),
            payload,
            status: None,
        }
    }

    /// A reply (`phx_reply`) carrying `status` and `response`.
    pub fn reply(
        join_ref: Option<ByteStr>,
        ref_: Option<ByteStr>,
        topic: impl Into<ByteStr>,
        status: impl Into<ByteStr>,
        response: Payload,
    ) -> Self {
        Self {
            join_ref,
            ref_,
            topic: topic.into(),
            event: ByteStr::from_static(PHX_REPLY),
            payload: response,
            status: Some(status.into()),
        }
    }

    /// Whether this is a reply.
    pub fn is_reply(&self) -> bool {
        self.status.is_some()
    }
}

/// A message the client is about to send, with its refs still the socket's numbers: what the
/// core hands to [`Serializer::encode_outgoing`], so that a format can write the refs' digits
/// straight into the frame instead of allocating a string for each.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The join ref of the channel instance the message belongs to, if any.
    pub join_ref: Option<u64>,
    /// The message ref (every message the client sends has one).
    pub ref_: u64,
    /// The channel topic, or `phoenix` for socket-level messages.
    pub topic: &'a ByteStr,
    /// The event name.
    pub event: &'a str,
    /// The payload.
    pub payload: &'a Payload,
}

impl Outgoing<'_> {
    /// The same message as a [`Message`], refs as decimal strings.
    pub fn to_message(&self) -> Message {
        let digits = |r: u64| ByteStr::from(Digits::new(r).as_str());
        Message::new(
            self.join_ref.map(digits),
            Some(digits(self.ref_)),
            self.topic.clone(),
            self.event,
            self.payload.clone(),
        )
    }
}

/// A ref's decimal digits, on the stack.
pub(crate) struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    pub(crate) fn new(mut n: u64) -> Self {
        let mut buf = [b'0'; 20];
        let mut start = buf.len();
        // u64::MAX has 20 digits, so `start` stays in bounds; `n % 10` is a digit.
        #[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Self { buf, start }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// The client's half of a wire format: encodes what a client sends and decodes what a server
/// sends. Implement it to plug in a custom format, and give it to
/// [`ConfigBuilder::serializer`](crate::ConfigBuilder::serializer).
///
/// ```
/// use std::time::Instant;
/// use phx_proto::{
///     Config, DecodeError, EncodeError, Frame, Message, Serializer, Socket, Transmit, V2Json,
/// };
///
/// /// The V2 JSON format, announced under the `vsn` a custom server endpoint expects.
/// #[derive(Debug)]
/// struct Custom;
///
/// impl Serializer for Custom {
///     fn vsn(&self) -> &str {
///         "2.0.0-custom"
///     }
///     fn encode(&self, msg: &Message) -> Result<Frame, EncodeError> {
///         V2Json.encode(msg)
///     }
///     fn decode(&self, frame: &Frame) -> Result<Message, DecodeError> {
///         V2Json.decode(frame)
///     }
/// }
///
/// let now = Instant::now();
/// let config = Config::builder("wss://example.com/socket")?
///     .serializer(Custom)
///     .build()?;
/// let mut socket = Socket::new(config, now);
/// socket.connect(now);
/// let Some(Transmit::Connect { request, .. }) = socket.poll_transmit() else {
///     panic!("a connect comes first");
/// };
/// assert!(request.redacted_url().ends_with("vsn=2.0.0-custom"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Serializer: fmt::Debug + Send + Sync {
    /// The value of the `vsn` URL parameter that selects this format on the server.
    fn vsn(&self) -> &str;

    /// Encodes a client-to-server message.
    ///
    /// # Errors
    /// [`EncodeError`] when the message cannot be represented (a binary field over 255 bytes, a
    /// binary payload in a text-only format).
    fn encode(&self, msg: &Message) -> Result<Frame, EncodeError>;

    /// Encodes a message the client sends, its refs given as numbers: how the core encodes
    /// everything it sends. By default [`Serializer::encode`] of [`Outgoing::to_message`]; the
    /// bundled formats write the frame directly, with no allocation but the frame's.
    ///
    /// # Errors
    /// As [`Serializer::encode`].
    fn encode_outgoing(&self, msg: &Outgoing<'_>) -> Result<Frame, EncodeError> {
        self.encode(&msg.to_message())
    }

    /// Decodes a server-to-client frame.
    ///
    /// # Errors
    /// [`DecodeError`] saying what is wrong and where. It never panics, whatever the bytes.
    fn decode(&self, frame: &Frame) -> Result<Message, DecodeError>;

    /// Decodes a server-to-client frame like [`Serializer::decode`], except that a format may
    /// leave a message's JSON payload unchecked ([`Payload::is_checked`] is then false) when it
    /// can delimit it without reading it. The envelope is checked as strictly as by `decode`;
    /// [`Payload::check`] later fails exactly when `decode` would have. Used with
    /// [`crate::ConfigBuilder::defer_payload_checks`]; by default the same as `decode`.
    ///
    /// # Errors
    /// As [`Serializer::decode`], for everything but the deferred payload.
    fn decode_deferred(&self, frame: &Frame) -> Result<Message, DecodeError> {
        self.decode(frame)
    }

    /// Decodes a frame the caller is done with: [`Serializer::decode_deferred`] if `deferred`,
    /// else [`Serializer::decode`]. A format may make the payload of the frame itself rather than
    /// of a new reference to it, which saves updating a reference count shared with the frames
    /// around it (the bundled V2 format does); by default it decodes the frame as borrowed.
    ///
    /// # Errors
    /// As [`Serializer::decode`] or [`Serializer::decode_deferred`].
    fn decode_owned(&self, frame: Frame, deferred: bool) -> Result<Message, DecodeError> {
        if deferred {
            self.decode_deferred(&frame)
        } else {
            self.decode(&frame)
        }
    }
}

/// The server's half of a wire format: encodes what a server sends and decodes what a client
/// sends. Used by the bundled test server.
pub trait ServerSerializer: fmt::Debug + Send + Sync {
    /// Encodes a push or reply to one client.
    ///
    /// # Errors
    /// As [`Serializer::encode`].
    fn encode_to_client(&self, msg: &Message) -> Result<Frame, EncodeError>;

    /// Encodes a fastlane broadcast (no join_ref, no ref).
    ///
    /// # Errors
    /// As [`Serializer::encode`].
    fn encode_broadcast(
        &self,
        topic: &str,
        event: &str,
        payload: &Payload,
    ) -> Result<Frame, EncodeError>;

    /// Decodes a client-to-server frame.
    ///
    /// # Errors
    /// As [`Serializer::decode`].
    fn decode_from_client(&self, frame: &Frame) -> Result<Message, DecodeError>;
}

/// Why a frame could not be decoded. Every variant says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame holds no bytes.
    #[error("empty frame")]
    Empty,
    /// The JSON is malformed.
    #[error("invalid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset of the fault in the frame.
        offset: usize,
        /// What was expected.
        reason: &'static str,
    },
    /// The text frame is not the envelope the format expects.
    #[error("expected {expected}, found {found}")]
    NotEnvelope {
        /// The envelope, such as "a JSON array".
        expected: &'static str,
        /// What the frame starts with.
        found: &'static str,
    },
    /// A V2 envelope has the wrong number of elements.
    #[error("wrong arity: a V2 message has 5 elements, this one has {found}")]
    Arity {
        /// Number of elements found.
        found: usize,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}, found {found} at byte {offset}")]
    FieldType {
        /// The envelope field.
        field: &'static str,
        /// The accepted types.
        expected: &'static str,
        /// The type found.
        found: &'static str,
        /// Byte offset of the field.
        offset: usize,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The envelope field.
        field: &'static str,
    },
    /// A field appears twice in a V1 object or a reply payload.
    #[error("duplicate field `{field}` at byte {offset}")]
    DuplicateField {
        /// The envelope field.
        field: &'static str,
        /// Byte offset of the second occurrence.
        offset: usize,
    },
    /// A string field is not valid UTF-8 or holds an invalid escape sequence.
    #[error("field `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The envelope field.
        field: &'static str,
    },
    /// A binary frame starts with a kind byte this direction does not use.
    #[error("unknown binary frame kind {kind} (expected {expected})")]
    BinaryKind {
        /// The kind byte found.
        kind: u8,
        /// The kinds valid in this direction.
        expected: &'static str,
    },
    /// A binary frame ends before the header or a length-prefixed field it announces.
    #[error("truncated binary frame: `{field}` needs {needed} bytes, the frame has {len}")]
    Truncated {
        /// The header or field being read.
        field: &'static str,
        /// Bytes the frame needs up to the end of that field.
        needed: usize,
        /// Actual frame size.
        len: usize,
    },
    /// A payload is nested deeper than serde_json would decode.
    #[error("JSON nested deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
        /// Byte offset where the limit was exceeded.
        offset: usize,
    },
    /// Bytes follow the end of the message.
    #[error("trailing characters at byte {offset}")]
    Trailing {
        /// Byte offset of the first trailing character.
        offset: usize,
    },
    /// The format has no binary frames (V1).
    #[error("{serializer} has no binary frames")]
    BinaryUnsupported {
        /// The serializer's name.
        serializer: &'static str,
    },
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string field is longer than the 255 bytes a binary length prefix can express.
    #[error("field `{field}` is {len} bytes; binary frames allow at most 255")]
    FieldTooLong {
        /// The envelope field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The format cannot carry a binary payload (V1).
    #[error("{serializer} cannot carry a binary payload")]
    BinaryUnsupported {
        /// The serializer's name.
        serializer: &'static str,
    },
    /// A message that only a server sends (a reply) was given to a client encoder.
    #[error("a client cannot send a reply")]
    ClientReply,
    /// The encoded frame is larger than the configured limit.
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Size of the encoded frame.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A JSON payload whose check was deferred (a received message's, passed on) is not
    /// well-formed JSON: sent, it would make the server close the connection.
    #[error("the payload is not valid JSON: {0}")]
    InvalidJson(DecodeError),
}

/// Reads a JSON string as a [`ByteStr`], slicing the frame unless escapes force a copy.
fn str_field(
    frame: &Bytes,
    span: json::StrSpan,
    field: &'static str,
) -> Result<ByteStr, DecodeError> {
    let raw = frame
        .get(span.start..span.end)
        .ok_or(DecodeError::InvalidUtf8 { field })?;
    if span.escaped {
        json::unescape(raw)
            .map(ByteStr::from)
            .ok_or(DecodeError::InvalidUtf8 { field })
    } else {
        ByteStr::from_utf8_in(frame, span.start..span.end).ok_or(DecodeError::InvalidUtf8 { field })
    }
}

/// Reads a JSON string field, failing with a typed error naming `field` for any other type.
fn string_field(
    s: &mut json::Scanner<'_>,
    frame: &Bytes,
    field: &'static str,
) -> Result<ByteStr, DecodeError> {
    let found = s.peek();
    if found != Some(b'"') {
        return Err(DecodeError::FieldType {
            field,
            expected: "a string",
            found: json::kind_name(found),
            offset: s.pos(),
        });
    }
    if let Some((a, b)) = s.ascii_string() {
        return ByteStr::from_ascii_in(frame, a..b).ok_or(DecodeError::InvalidUtf8 { field });
    }
    let span = s.string()?;
    str_field(frame, span, field)
}

/// Reads a field that is a JSON string or `null`.
fn opt_string_field(
    s: &mut json::Scanner<'_>,
    frame: &Bytes,
    field: &'static str,
) -> Result<Option<ByteStr>, DecodeError> {
    match s.peek() {
        Some(b'n') => {
            s.null()?;
            Ok(None)
        }
        Some(b'"') => string_field(s, frame, field).map(Some),
        found => Err(DecodeError::FieldType {
            field,
            expected: "a string or null",
            found: json::kind_name(found),
            offset: s.pos(),
        }),
    }
}

/// Reads a reply payload object `{"status": S, "response": R}` (keys in any order, others
/// ignored), returning the status and the response's byte range.
fn reply_fields(
    s: &mut json::Scanner<'_>,
    frame: &Bytes,
) -> Result<(ByteStr, (usize, usize)), DecodeError> {
    let found = s.peek();
    if found != Some(b'{') {
        return Err(DecodeError::FieldType {
            field: "payload",
            expected: "a reply object",
            found: json::kind_name(found),
            offset: s.pos(),
        });
    }
    s.bump();
    let mut status = None;
    let mut response = None;
    s.members(|s, key, key_at| {
        let dup = |field| DecodeError::DuplicateField {
            field,
            offset: key_at,
        };
        match key_name(frame, key).as_deref() {
            Some(b"status") if status.is_some() => return Err(dup("status")),
            Some(b"status") => status = Some(string_field(s, frame, "status")?),
            Some(b"response") if response.is_some() => return Err(dup("response")),
            Some(b"response") => response = Some(s.value()?),
            _ => {
                s.value()?;
            }
        }
        Ok(())
    })?;
    let status = status.ok_or(DecodeError::MissingField { field: "status" })?;
    let response = response.ok_or(DecodeError::MissingField { field: "response" })?;
    Ok((status, response))
}

/// An object key's bytes, unescaped if needed; `None` if its escapes are malformed.
fn key_name(frame: &[u8], key: json::StrSpan) -> Option<std::borrow::Cow<'_, [u8]>> {
    let raw = frame.get(key.start..key.end)?;
    if key.escaped {
        json::unescape(raw).map(|k| std::borrow::Cow::Owned(k.into_bytes()))
    } else {
        // Compared with ASCII names only: bytes that are not UTF-8 simply match none.
        Some(std::borrow::Cow::Borrowed(raw))
    }
}

/// Writes a reply payload the way Phoenix's JSON encoder does (keys sorted).
fn write_reply_payload(out: &mut Vec<u8>, status: &[u8], response: &[u8]) {
    out.extend_from_slice(b"{\"response\":");
    out.extend_from_slice(response);
    out.extend_from_slice(b",\"status\":");
    json::write_bytes_str(out, status);
    out.push(b'}');
}

/// The length [`write_reply_payload`] writes.
fn reply_payload_len(status: &[u8], response: &[u8]) -> usize {
    br#"{"response":,"status":}"#.len() + response.len() + json::str_len(status)
}

/// Writes a string field, or `null`.
fn write_opt_str(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => json::write_bytes_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// The length [`write_opt_str`] writes.
fn opt_str_len(s: Option<&[u8]>) -> usize {
    s.map_or(b"null".len(), json::str_len)
}

#[cfg(test)]
mod tests;
