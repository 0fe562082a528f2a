//! V2 binary frames: a kind byte, one length byte per string field, the fields, then the payload.

use bytes::{Buf, Bytes};

use super::{DecodeError, Digits, EncodeError, Message, Outgoing};
use crate::payload::{ByteStr, Payload};

const KIND_PUSH: u8 = 0;
const KIND_REPLY: u8 = 1;
const KIND_BROADCAST: u8 = 2;

fn len_byte(field: &'static str, s: &[u8]) -> Result<u8, EncodeError> {
    u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: s.len(),
    })
}

/// Writes `kind`, the length of each field, each field, then the payload.
fn write(kind: u8, fields: &[(&'static str, &[u8])], payload: &[u8]) -> Result<Bytes, EncodeError> {
    let mut lens = [0u8; 4];
    let mut total = 1 + fields.len() + payload.len();
    for ((name, value), len) in fields.iter().zip(lens.iter_mut()) {
        *len = len_byte(name, value)?;
        total += value.len();
    }
    let mut out = Vec::with_capacity(total);
    out.push(kind);
    out.extend_from_slice(lens.get(..fields.len()).unwrap_or_default());
    for (_, value) in fields {
        out.extend_from_slice(value);
    }
    out.extend_from_slice(payload);
    Ok(Bytes::from(out))
}

fn opt(s: Option<&ByteStr>) -> &[u8] {
    s.map(ByteStr::as_bytes).unwrap_or_default()
}

/// Client → server push (kind 0, four length bytes).
pub(crate) fn encode_client_push(msg: &Message) -> Result<Bytes, EncodeError> {
    write(
        KIND_PUSH,
        &[
            ("join_ref", opt(msg.join_ref.as_ref())),
            ("ref", opt(msg.ref_.as_ref())),
            ("topic", msg.topic.as_bytes()),
            ("event", msg.event.as_bytes()),
        ],
        msg.payload.as_bytes(),
    )
}

/// [`encode_client_push`] of an [`Outgoing`] message.
pub(crate) fn encode_outgoing_push(msg: &Outgoing<'_>) -> Result<Bytes, EncodeError> {
    let join_ref = msg.join_ref.map(Digits::new);
    write(
        KIND_PUSH,
        &[
            ("join_ref", join_ref.as_ref().map_or(&[], Digits::as_bytes)),
            ("ref", Digits::new(msg.ref_).as_bytes()),
            ("topic", msg.topic.as_bytes()),
            ("event", msg.event.as_bytes()),
        ],
        msg.payload.as_bytes(),
    )
}

/// Server → client push (kind 0, three length bytes, no ref) or reply (kind 1).
pub(crate) fn encode_server_message(msg: &Message) -> Result<Bytes, EncodeError> {
    match &msg.status {
        Some(status) => write(
            KIND_REPLY,
            &[
                ("join_ref", opt(msg.join_ref.as_ref())),
                ("ref", opt(msg.ref_.as_ref())),
                ("topic", msg.topic.as_bytes()),
                ("status", status.as_bytes()),
            ],
            msg.payload.as_bytes(),
        ),
        None => write(
            KIND_PUSH,
            &[
                ("join_ref", opt(msg.join_ref.as_ref())),
                ("topic", msg.topic.as_bytes()),
                ("event", msg.event.as_bytes()),
            ],
            msg.payload.as_bytes(),
        ),
    }
}

/// Server → client broadcast (kind 2).
pub(crate) fn encode_broadcast(
    topic: &str,
    event: &str,
    payload: &Payload,
) -> Result<Bytes, EncodeError> {
    write(
        KIND_BROADCAST,
        &[("topic", topic.as_bytes()), ("event", event.as_bytes())],
        payload.as_bytes(),
    )
}

/// The payload of a frame whose fields were read: the frame from `at` on.
fn tail(mut frame: Bytes, at: usize) -> Payload {
    frame.advance(at.min(frame.len()));
    Payload::binary(frame)
}

struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads the kind byte and `N` length bytes.
    fn header<const N: usize>(frame: &'a Bytes) -> Result<(Self, [u8; N]), DecodeError> {
        let lens = frame
            .get(1..1 + N)
            .and_then(|l| <[u8; N]>::try_from(l).ok())
            .ok_or(DecodeError::Truncated {
                field: "header",
                needed: 1 + N,
                len: frame.len(),
            })?;
        Ok((Self { frame, pos: 1 + N }, lens))
    }

    fn field(&mut self, field: &'static str, len: u8) -> Result<ByteStr, DecodeError> {
        let end = self.pos + usize::from(len);
        if end > self.frame.len() {
            return Err(DecodeError::Truncated {
                field,
                needed: end,
                len: self.frame.len(),
            });
        }
        let s = ByteStr::from_utf8_in(self.frame, self.pos..end)
            .ok_or(DecodeError::InvalidUtf8 { field })?;
        self.pos = end;
        Ok(s)
    }

    /// A field where zero length means "absent", as the server writes nil.
    fn opt_field(&mut self, field: &'static str, len: u8) -> Result<Option<ByteStr>, DecodeError> {
        let s = self.field(field, len)?;
        Ok((!s.is_empty()).then_some(s))
    }

    /// Where the payload starts, from the header's lengths.
    fn payload_at(&self, lens: &[u8]) -> usize {
        self.pos + lens.iter().map(|&l| usize::from(l)).sum::<usize>()
    }
}

/// Decodes a server → client binary frame (push, reply or broadcast). The payload is made of
/// `frame` itself, cut down to it: no new reference to count.
pub(crate) fn decode_from_server(frame: Bytes) -> Result<Message, DecodeError> {
    match frame.first() {
        None => Err(DecodeError::Empty),
        Some(&KIND_PUSH) => {
            let (mut r, lens @ [j, t, e]) = Reader::header::<3>(&frame)?;
            let at = r.payload_at(&lens);
            let join_ref = r.opt_field("join_ref", j)?;
            let topic = r.field("topic", t)?;
            let event = r.field("event", e)?;
            Ok(Message::new(join_ref, None, topic, event, tail(frame, at)))
        }
        Some(&KIND_REPLY) => {
            let (mut r, lens @ [j, rf, t, s]) = Reader::header::<4>(&frame)?;
            let at = r.payload_at(&lens);
            let join_ref = r.opt_field("join_ref", j)?;
            let ref_ = r.opt_field("ref", rf)?;
            let topic = r.field("topic", t)?;
            let status = r.field("status", s)?;
            Ok(Message::reply(
                join_ref,
                ref_,
                topic,
                status,
                tail(frame, at),
            ))
        }
        Some(&KIND_BROADCAST) => {
            let (mut r, lens @ [t, e]) = Reader::header::<2>(&frame)?;
            let at = r.payload_at(&lens);
            let topic = r.field("topic", t)?;
            let event = r.field("event", e)?;
            Ok(Message::new(None, None, topic, event, tail(frame, at)))
        }
        Some(&kind) => Err(DecodeError::BinaryKind {
            kind,
            expected: "0, 1 or 2",
        }),
    }
}

/// Decodes a client → server binary frame; the server accepts only kind 0 with four lengths.
/// Zero-length refs stay `Some("")`, as Phoenix decodes them (and then treats `""` as stale).
/// The payload is made of `frame` itself, as in [`decode_from_server`].
pub(crate) fn decode_from_client(frame: Bytes) -> Result<Message, DecodeError> {
    match frame.first() {
        None => Err(DecodeError::Empty),
        Some(&KIND_PUSH) => {
            let (mut r, lens @ [j, rf, t, e]) = Reader::header::<4>(&frame)?;
            let at = r.payload_at(&lens);
            let join_ref = r.field("join_ref", j)?;
            let ref_ = r.field("ref", rf)?;
            let topic = r.field("topic", t)?;
            let event = r.field("event", e)?;
            Ok(Message::new(
                Some(join_ref),
                Some(ref_),
                topic,
                event,
                tail(frame, at),
            ))
        }
        Some(&kind) => Err(DecodeError::BinaryKind {
            kind,
            expected: "0",
        }),
    }
}
