//! The V2 serializer (`vsn=2.0.0`): JSON arrays in text frames, and binary frames.

use bytes::{Buf, Bytes};

use super::json::{self, Scanner};
use super::{
    DecodeError, Digits, EncodeError, Frame, Message, Outgoing, PHX_REPLY, Serializer,
    ServerSerializer, binary, opt_str_len, opt_string_field, reply_fields, reply_payload_len,
    string_field, write_opt_str, write_reply_payload,
};
use crate::payload::{ByteStr, Payload};

/// The V2 format, Phoenix's default since 1.3 and the only one with binary frames:
/// `[join_ref, ref, topic, event, payload]` in text frames, and the binary layouts described in
/// the [module docs](crate::codec).
///
/// ```
/// use phx_proto::{Frame, Message, Payload, Serializer, V2Json};
/// let frame = Frame::Text(r#"["1","2","room:1","phx_reply",{"response":{"n":1},"status":"ok"}]"#.into());
/// let msg = V2Json.decode(&frame).unwrap();
/// assert_eq!(msg.status.as_deref(), Some("ok"));
/// assert_eq!(msg.payload.as_bytes().as_ref(), br#"{"n":1}"#);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V2Json;

impl V2Json {
    /// The `vsn` this format answers to.
    pub const VSN: &'static str = "2.0.0";
}

fn separator(s: &mut Scanner<'_>, found: usize) -> Result<(), DecodeError> {
    match s.peek() {
        Some(b',') => {
            s.bump();
            Ok(())
        }
        Some(b']') => Err(DecodeError::Arity { found }),
        _ => Err(DecodeError::Syntax {
            offset: s.pos(),
            reason: "expected ',' or ']'",
        }),
    }
}

/// How [`decode_text`] treats the payload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Server → client: a `phx_reply` payload is split into status and response.
    Server,
    /// Server → client, and the payload of anything but a reply is delimited, not checked.
    ServerDeferred,
    /// Client → server: payloads as they are.
    Client,
}

/// The payload of a frame whose envelope was read up to `s`, delimited without being read: as
/// the last element of the array, it runs from the next non-space byte to the last non-space
/// byte before the frame's final `]`, where `s` is left. Whatever lies between (a malformed
/// value, extra elements) is for [`Payload::check`] to refuse, as a full scan would have.
/// `None`, with `s` untouched, when the frame does not end that way: the full scan then says
/// what is wrong.
fn last_element(s: &mut Scanner<'_>, frame: &[u8]) -> Option<(usize, usize)> {
    let from = s.pos();
    s.skip_ws();
    let start = s.pos();
    let last = |end: usize| frame.get(start..end).and_then(|f| f.last()).copied();
    let trim = |mut end: usize| {
        while last(end).is_some_and(json::is_ws) {
            end -= 1;
        }
        end
    };
    let close = trim(frame.len());
    if last(close) == Some(b']') {
        let end = trim(close - 1);
        if end > start {
            s.seek(close - 1);
            return Some((start, end));
        }
    }
    s.seek(from);
    None
}

/// The four envelope fields of a frame written as Phoenix writes them, read without the
/// general scanner's white space and error handling: no white space, each field plain ASCII
/// between quotes (the refs may be `null`), one comma after each. The scanner is left at the
/// payload. `None` on anything else, with the scanner anywhere: the general path then reads
/// the fields again from the first one, and says what is wrong if anything is.
#[inline]
fn compact_fields(
    s: &mut Scanner<'_>,
    frame: &Bytes,
) -> Option<(Option<ByteStr>, Option<ByteStr>, ByteStr, ByteStr)> {
    // Inlined: its result is three words, returned through memory otherwise and read back
    // as vectors straddling those stores (a failed store forward, 5 ns per field).
    #[inline(always)]
    fn field(s: &mut Scanner<'_>, frame: &[u8], nullable: bool) -> Option<Option<(usize, usize)>> {
        let at = s.pos();
        let found = match frame.get(at) {
            Some(b'"') => Some(s.ascii_string()?),
            Some(b'n') if nullable && frame.get(at..at + 4) == Some(b"null") => {
                s.seek(at + 4);
                None
            }
            _ => return None,
        };
        if frame.get(s.pos()) != Some(&b',') {
            return None;
        }
        s.bump();
        Some(found)
    }
    let join_ref = field(s, frame, true)?;
    let ref_ = field(s, frame, true)?;
    let topic = field(s, frame, false)??;
    let event = field(s, frame, false)??;
    // Made only once the whole envelope is known to fit: a long field is a slice of the
    // frame, and each slice counts a reference.
    let text = |(a, b): (usize, usize)| ByteStr::from_ascii_in(frame, a..b);
    let opt_text = |field: Option<(usize, usize)>| match field {
        Some(range) => text(range).map(Some),
        None => Some(None),
    };
    Some((
        opt_text(join_ref)?,
        opt_text(ref_)?,
        text(topic)?,
        text(event)?,
    ))
}

/// Decodes `[join_ref, ref, topic, event, payload]` as `mode` says. The payload is made of
/// `frame` itself, cut down to it: no new reference to count.
fn decode_text(frame: Bytes, mode: Mode) -> Result<Message, DecodeError> {
    let mut s = Scanner::new(&frame);
    match s.peek() {
        Some(b'[') => s.bump(),
        None if frame.is_empty() => return Err(DecodeError::Empty),
        found => {
            return Err(DecodeError::NotEnvelope {
                expected: "a JSON array",
                found: json::kind_name(found),
            });
        }
    }
    let fields_at = s.pos();
    let (join_ref, ref_, topic, event) = match compact_fields(&mut s, &frame) {
        Some(fields) => fields,
        None => {
            s.seek(fields_at);
            if s.peek() == Some(b']') {
                return Err(DecodeError::Arity { found: 0 });
            }
            let join_ref = opt_string_field(&mut s, &frame, "join_ref")?;
            separator(&mut s, 1)?;
            let ref_ = opt_string_field(&mut s, &frame, "ref")?;
            separator(&mut s, 2)?;
            let topic = string_field(&mut s, &frame, "topic")?;
            separator(&mut s, 3)?;
            let event = string_field(&mut s, &frame, "event")?;
            separator(&mut s, 4)?;
            (join_ref, ref_, topic, event)
        }
    };
    let (deferred, (a, b), status) = if mode != Mode::Client && event == PHX_REPLY {
        let (status, range) = reply_fields(&mut s, &frame)?;
        (false, range, Some(status))
    } else if mode == Mode::ServerDeferred
        && let Some(range) = last_element(&mut s, &frame)
    {
        (true, range, None)
    } else {
        (false, s.value()?, None)
    };
    match s.peek() {
        Some(b']') => s.bump(),
        Some(b',') => {
            let mut found = 5;
            while s.peek() == Some(b',') {
                s.bump();
                s.value()?;
                found += 1;
            }
            s.expect(b']', "expected ',' or ']'")?;
            return Err(DecodeError::Arity { found });
        }
        _ => {
            return Err(DecodeError::Syntax {
                offset: s.pos(),
                reason: "expected ',' or ']'",
            });
        }
    }
    s.end()?;
    let mut payload = frame;
    payload.truncate(b);
    payload.advance(a);
    let payload = if deferred {
        Payload::json_deferred(payload)
    } else {
        Payload::json_unchecked(payload)
    };
    Ok(Message {
        join_ref,
        ref_,
        topic,
        event,
        payload,
        status,
    })
}

/// Writes `[join_ref, ref, topic, event, payload]` (a reply's payload as `{response,
/// status}`) into a buffer of the frame's exact size, so that the `Bytes` made of it needs no
/// allocation of its own. The fields are a `ByteStr`'s or a ref's bytes: UTF-8 already.
// Inlined so that a push's call folds the reply branch away (8% of the core's round trip
// otherwise, `cargo bench -p phx-proto --bench socket -- push_reply`).
#[inline]
fn encode_text(
    join_ref: Option<&[u8]>,
    ref_: Option<&[u8]>,
    topic: &[u8],
    event: &[u8],
    payload: &[u8],
    status: Option<&[u8]>,
) -> Bytes {
    let len = b"[,,,,]".len()
        + opt_str_len(join_ref)
        + opt_str_len(ref_)
        + json::str_len(topic)
        + json::str_len(event)
        + status.map_or(payload.len(), |s| reply_payload_len(s, payload));
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    write_opt_str(&mut out, join_ref);
    out.push(b',');
    write_opt_str(&mut out, ref_);
    out.push(b',');
    json::write_bytes_str(&mut out, topic);
    out.push(b',');
    json::write_bytes_str(&mut out, event);
    out.push(b',');
    match status {
        Some(status) => write_reply_payload(&mut out, status, payload),
        None => out.extend_from_slice(payload),
    }
    out.push(b']');
    debug_assert_eq!(out.len(), len);
    Bytes::from(out)
}

impl Serializer for V2Json {
    fn vsn(&self) -> &str {
        Self::VSN
    }

    fn encode_outgoing(&self, msg: &Outgoing<'_>) -> Result<Frame, EncodeError> {
        if msg.payload.is_binary() {
            return binary::encode_outgoing_push(msg).map(Frame::Binary);
        }
        let join_ref = msg.join_ref.map(Digits::new);
        Ok(Frame::Text(encode_text(
            join_ref.as_ref().map(Digits::as_bytes),
            Some(Digits::new(msg.ref_).as_bytes()),
            msg.topic.as_bytes(),
            msg.event.as_bytes(),
            msg.payload.as_bytes(),
            None,
        )))
    }

    fn encode(&self, msg: &Message) -> Result<Frame, EncodeError> {
        if msg.status.is_some() {
            return Err(EncodeError::ClientReply);
        }
        if msg.payload.is_binary() {
            return binary::encode_client_push(msg).map(Frame::Binary);
        }
        Ok(Frame::Text(encode_text(
            msg.join_ref.as_ref().map(ByteStr::as_bytes),
            msg.ref_.as_ref().map(ByteStr::as_bytes),
            msg.topic.as_bytes(),
            msg.event.as_bytes(),
            msg.payload.as_bytes(),
            None,
        )))
    }

    fn decode(&self, frame: &Frame) -> Result<Message, DecodeError> {
        self.decode_owned(frame.clone(), false)
    }

    fn decode_deferred(&self, frame: &Frame) -> Result<Message, DecodeError> {
        self.decode_owned(frame.clone(), true)
    }

    fn decode_owned(&self, frame: Frame, deferred: bool) -> Result<Message, DecodeError> {
        match frame {
            Frame::Text(b) if deferred => decode_text(b, Mode::ServerDeferred),
            Frame::Text(b) => decode_text(b, Mode::Server),
            Frame::Binary(b) => binary::decode_from_server(b),
        }
    }
}

impl ServerSerializer for V2Json {
    fn encode_to_client(&self, msg: &Message) -> Result<Frame, EncodeError> {
        if msg.payload.is_binary() {
            return binary::encode_server_message(msg).map(Frame::Binary);
        }
        Ok(Frame::Text(encode_text(
            msg.join_ref.as_ref().map(ByteStr::as_bytes),
            msg.ref_.as_ref().map(ByteStr::as_bytes),
            msg.topic.as_bytes(),
            msg.event.as_bytes(),
            msg.payload.as_bytes(),
            msg.status.as_ref().map(ByteStr::as_bytes),
        )))
    }

    fn encode_broadcast(
        &self,
        topic: &str,
        event: &str,
        payload: &Payload,
    ) -> Result<Frame, EncodeError> {
        if payload.is_binary() {
            return binary::encode_broadcast(topic, event, payload).map(Frame::Binary);
        }
        Ok(Frame::Text(encode_text(
            None,
            None,
            topic.as_bytes(),
            event.as_bytes(),
            payload.as_bytes(),
            None,
        )))
    }

    fn decode_from_client(&self, frame: &Frame) -> Result<Message, DecodeError> {
        match frame {
            Frame::Text(b) => decode_text(b.clone(), Mode::Client),
            Frame::Binary(b) => binary::decode_from_client(b.clone()),
        }
    }
}
