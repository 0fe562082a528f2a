//! The V1 serializer (`vsn=1.0.0`): one JSON object per text frame, no binary frames.

use bytes::Bytes;

use super::json::{self, Scanner};
use super::{
    DecodeError, Digits, EncodeError, Frame, Message, Outgoing, PHX_REPLY, Serializer,
    ServerSerializer, key_name, opt_string_field, reply_fields, string_field, write_opt_str,
    write_reply_payload,
};
use crate::payload::{ByteStr, Payload};

/// The V1 format: `{"topic":…,"event":…,"payload":…,"ref":…}` objects.
///
/// Servers never send `join_ref` in V1, so a V1 client cannot tell a stale message from a current
/// one except through the `ref` that `phx_close` and `phx_error` carry. V1 has no binary frames.
/// A client sends `join_ref` when the message has one (Phoenix accepts it as an optional key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V1Json;

impl V1Json {
    /// The `vsn` this format answers to.
    pub const VSN: &'static str = "1.0.0";
    const NAME: &'static str = "the V1 serializer";
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Topic,
    Event,
    Payload,
    Ref,
    JoinRef,
}

/// Decodes a V1 object. Keys may come in any order; unknown keys are ignored; `topic`, `event`,
/// `payload` and `ref` are required (`ref` may be null), as Phoenix requires them.
fn decode_object(frame: &Bytes, replies: bool) -> Result<Message, DecodeError> {
    let mut s = Scanner::new(frame);
    match s.peek() {
        Some(b'{') => s.bump(),
        None if frame.is_empty() => return Err(DecodeError::Empty),
        found => {
            return Err(DecodeError::NotEnvelope {
                expected: "a JSON object",
                found: json::kind_name(found),
            });
        }
    }
    let mut topic = None;
    let mut event = None;
    let mut payload = None;
    let mut ref_ = None;
    let mut join_ref = None;
    s.members(|s, span, key_at| {
        let key = match key_name(frame, span).as_deref() {
            Some(b"topic") => Some(Key::Topic),
            Some(b"event") => Some(Key::Event),
            Some(b"payload") => Some(Key::Payload),
            Some(b"ref") => Some(Key::Ref),
            Some(b"join_ref") => Some(Key::JoinRef),
            _ => None,
        };
        let dup = |field| DecodeError::DuplicateField {
            field,
            offset: key_at,
        };
        match key {
            Some(Key::Topic) if topic.is_some() => return Err(dup("topic")),
            Some(Key::Topic) => topic = Some(string_field(s, frame, "topic")?),
            Some(Key::Event) if event.is_some() => return Err(dup("event")),
            Some(Key::Event) => event = Some(string_field(s, frame, "event")?),
            Some(Key::Payload) if payload.is_some() => return Err(dup("payload")),
            Some(Key::Payload) => payload = Some(s.value()?),
            Some(Key::Ref) if ref_.is_some() => return Err(dup("ref")),
            Some(Key::Ref) => ref_ = Some(opt_string_field(s, frame, "ref")?),
            Some(Key::JoinRef) if join_ref.is_some() => return Err(dup("join_ref")),
            Some(Key::JoinRef) => join_ref = Some(opt_string_field(s, frame, "join_ref")?),
            None => {
                s.value()?;
            }
        }
        Ok(())
    })?;
    s.end()?;
    let topic = topic.ok_or(DecodeError::MissingField { field: "topic" })?;
    let event = event.ok_or(DecodeError::MissingField { field: "event" })?;
    let (a, b) = payload.ok_or(DecodeError::MissingField { field: "payload" })?;
    let ref_ = ref_.ok_or(DecodeError::MissingField { field: "ref" })?;
    let join_ref = join_ref.flatten();
    if replies && event == PHX_REPLY {
        let mut inner = Scanner::new(frame);
        inner.seek(a);
        let (status, (ra, rb)) = reply_fields(&mut inner, frame)?;
        return Ok(Message::reply(
            join_ref,
            ref_,
            topic,
            status,
            Payload::json_unchecked(frame.slice(ra..rb)),
        ));
    }
    Ok(Message::new(
        join_ref,
        ref_,
        topic,
        event,
        Payload::json_unchecked(frame.slice(a..b)),
    ))
}

impl Serializer for V1Json {
    fn vsn(&self) -> &str {
        Self::VSN
    }

    fn encode_outgoing(&self, msg: &Outgoing<'_>) -> Result<Frame, EncodeError> {
        if msg.payload.is_binary() {
            return Err(EncodeError::BinaryUnsupported {
                serializer: Self::NAME,
            });
        }
        let join_ref = msg.join_ref.map(Digits::new);
        Ok(Frame::Text(encode_client(
            msg.topic.as_bytes(),
            msg.event.as_bytes(),
            msg.payload.as_bytes(),
            Some(Digits::new(msg.ref_).as_bytes()),
            join_ref.as_ref().map(Digits::as_bytes),
        )))
    }

    fn encode(&self, msg: &Message) -> Result<Frame, EncodeError> {
        if msg.status.is_some() {
            return Err(EncodeError::ClientReply);
        }
        if msg.payload.is_binary() {
            return Err(EncodeError::BinaryUnsupported {
                serializer: Self::NAME,
            });
        }
        Ok(Frame::Text(encode_client(
            msg.topic.as_bytes(),
            msg.event.as_bytes(),
            msg.payload.as_bytes(),
            msg.ref_.as_ref().map(ByteStr::as_bytes),
            msg.join_ref.as_ref().map(ByteStr::as_bytes),
        )))
    }

    fn decode(&self, frame: &Frame) -> Result<Message, DecodeError> {
        match frame {
            Frame::Text(b) => decode_object(b, true),
            Frame::Binary(_) => Err(DecodeError::BinaryUnsupported {
                serializer: Self::NAME,
            }),
        }
    }
}

/// A client message as V1 writes it: `ref` is `null` when absent, `join_ref` left out.
fn encode_client(
    topic: &[u8],
    event: &[u8],
    payload: &[u8],
    ref_: Option<&[u8]>,
    join_ref: Option<&[u8]>,
) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + topic.len() + event.len() + 100);
    out.extend_from_slice(b"{\"topic\":");
    json::write_bytes_str(&mut out, topic);
    out.extend_from_slice(b",\"event\":");
    json::write_bytes_str(&mut out, event);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload);
    out.extend_from_slice(b",\"ref\":");
    write_opt_str(&mut out, ref_);
    if let Some(join_ref) = join_ref {
        out.extend_from_slice(b",\"join_ref\":");
        json::write_bytes_str(&mut out, join_ref);
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Writes a server frame the way Phoenix's V1 serializer does: keys sorted, never a join_ref.
fn encode_server(
    ref_: Option<&ByteStr>,
    topic: &str,
    event: &str,
    payload: &[u8],
    status: Option<&ByteStr>,
) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + topic.len() + event.len() + 80);
    out.extend_from_slice(b"{\"event\":");
    json::write_str(&mut out, event);
    out.extend_from_slice(b",\"payload\":");
    match status {
        Some(status) => write_reply_payload(&mut out, status.as_bytes(), payload),
        None => out.extend_from_slice(payload),
    }
    out.extend_from_slice(b",\"ref\":");
    write_opt_str(&mut out, ref_.map(ByteStr::as_bytes));
    out.extend_from_slice(b",\"topic\":");
    json::write_str(&mut out, topic);
    out.push(b'}');
    Bytes::from(out)
}

impl ServerSerializer for V1Json {
    fn encode_to_client(&self, msg: &Message) -> Result<Frame, EncodeError> {
        if msg.payload.is_binary() {
            return Err(EncodeError::BinaryUnsupported {
                serializer: Self::NAME,
            });
        }
        Ok(Frame::Text(encode_server(
            msg.ref_.as_ref(),
            &msg.topic,
            &msg.event,
            msg.payload.as_bytes(),
            msg.status.as_ref(),
        )))
    }

    fn encode_broadcast(
        &self,
        topic: &str,
        event: &str,
        payload: &Payload,
    ) -> Result<Frame, EncodeError> {
        if payload.is_binary() {
            return Err(EncodeError::BinaryUnsupported {
                serializer: Self::NAME,
            });
        }
        Ok(Frame::Text(encode_server(
            None,
            topic,
            event,
            payload.as_bytes(),
            None,
        )))
    }

    fn decode_from_client(&self, frame: &Frame) -> Result<Message, DecodeError> {
        match frame {
            Frame::Text(b) => decode_object(b, false),
            Frame::Binary(_) => Err(DecodeError::BinaryUnsupported {
                serializer: Self::NAME,
            }),
        }
    }
}
