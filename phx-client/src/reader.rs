//! Reading the server's WebSocket frames (RFC 6455, client side) out of the connection's bytes.
//!
//! tungstenite still writes (framing, masking, pongs, the close handshake); this reads. Its
//! reader splits each frame off its read buffer as a reference-counted slice, which the driver
//! then copied into its frame arena and dropped: two atomic operations and a copy per frame,
//! on top of tungstenite's own per-read bookkeeping. Here a frame's payload goes from the read
//! buffer to wherever the caller keeps it in one copy, and the buffer, never shared, is reused
//! for every read.
//!
//! Sans-IO: [`Reader::unfilled`] says where the next bytes go and [`Reader::filled`] takes
//! them; [`Reader::next`] turns what has arrived into [`Event`]s.

use bytes::Bytes;
use tungstenite::Error as WsError;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::coding::{CloseCode, Data as OpData};
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};

/// A received payload, for the caller to keep: a slice of the read buffer (valid only during
/// the call), or one already in its own allocation (a large frame, a reassembled message).
#[derive(Debug)]
pub(crate) enum Received<'a> {
    /// Bytes in the read buffer.
    Slice(&'a [u8]),
    /// Bytes that already have an allocation of their own.
    Owned(Bytes),
}

impl Received<'_> {
    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Received::Slice(s) => s,
            Received::Owned(b) => b,
        }
    }
}

/// What a complete frame (or message) means for the client.
#[derive(Debug, PartialEq)]
pub(crate) enum Event {
    /// A text message; its bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, with its payload (to be answered with a pong).
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The server's close frame (`None`: it carried no status). A disallowed status is
    /// replaced with 1002 "Protocol violation", as tungstenite does.
    Close(Option<CloseFrame>),
}

/// The smallest read buffer: room for the longest header a server may send.
const MIN_BUFFER: usize = 16;

/// What the read buffer grows to while reads keep filling it (tungstenite's default buffer):
/// a flood then takes an eighth of the `recv` calls of a 16 KiB buffer (paired against a
/// buffer that stays at 16 KiB: 0.958 of the time for a binary flood, 0.945 for JSON). It
/// goes back to the configured size once the connection is quiet ([`Reader::shrink`]), so
/// an idle connection keeps only that.
pub(crate) const BURST_BUFFER: usize = 128 * 1024;

/// A frame too large for the read buffer grows its own allocation at least this much at a
/// time, and at most as fast as its bytes arrive, so a length claimed but never sent costs
/// nothing.
const LARGE_STEP: usize = 64 * 1024;

/// A frame's header.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    /// Any of the three reserved bits (no extension is negotiated).
    reserved: bool,
    masked: bool,
    opcode: u8,
    len: usize,
}

/// A frame whose payload is read straight into its own allocation.
#[derive(Debug)]
struct Large {
    head: Head,
    /// Zero-filled up to its length; `filled` bytes of it have arrived.
    payload: Vec<u8>,
    filled: usize,
}

/// A fragmented message being put together.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
    /// For text: how much of `data` is known to be valid UTF-8 (all but a character cut off
    /// by the end of the last fragment).
    valid: usize,
}

impl Partial {
    /// Adds a fragment of at most `max` bytes in all. Text is checked as it comes, as
    /// tungstenite does: invalid UTF-8 fails the connection before the message is complete.
    fn extend(&mut self, fragment: &[u8], max: usize) -> Result<(), WsError> {
        check_size(self.data.len().saturating_add(fragment.len()), max)?;
        self.data.extend_from_slice(fragment);
        if self.text {
            match std::str::from_utf8(&self.data[self.valid..]) {
                Ok(_) => self.valid = self.data.len(),
                // A character cut off at the end: the next fragment may complete it.
                Err(e) if e.error_len().is_none() => self.valid += e.valid_up_to(),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The whole message's bytes; an error if it is text that ends inside a character.
    fn finish(self) -> Result<Bytes, WsError> {
        if self.text && self.valid < self.data.len() {
            std::str::from_utf8(&self.data[self.valid..])?;
        }
        Ok(self.data.into())
    }
}

/// What the frames so far leave pending: a fragmented message, whether the server has closed.
#[derive(Debug)]
struct Assembly {
    partial: Option<Partial>,
    /// The server's close frame was read: nothing may follow it.
    closed: bool,
    max_message: usize,
}

/// The client's frame reader: a read buffer and the rules of RFC 6455 for what the server sends.
#[derive(Debug)]
pub(crate) struct Reader {
    /// Allocated at the first read; `buf[start..end]` is not parsed yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The configured size: what the buffer is when allocated and after [`Reader::shrink`],
    /// and the largest frame read into it rather than into an allocation of its own.
    size: usize,
    /// The last read filled all that was offered, so more is probably waiting: the buffer
    /// grows to [`BURST_BUFFER`] before the next read.
    grow: bool,
    large: Option<Large>,
    assembly: Assembly,
    max_frame: usize,
}

impl Reader {
    /// A reader with `config`'s buffer size and limits, holding `tail`: bytes that came right
    /// behind the handshake's response.
    pub(crate) fn new(config: &WebSocketConfig, tail: &[u8]) -> Self {
        let size = config.read_buffer_size.max(MIN_BUFFER);
        let mut buf = Vec::new();
        if !tail.is_empty() {
            buf = vec![0; size.max(tail.len())];
            buf[..tail.len()].copy_from_slice(tail);
        }
        Self {
            buf,
            start: 0,
            end: tail.len(),
            size,
            grow: false,
            large: None,
            assembly: Assembly {
                partial: None,
                closed: false,
                max_message: config.max_message_size.unwrap_or(usize::MAX),
            },
            max_frame: config.max_frame_size.unwrap_or(usize::MAX),
        }
    }

    /// Whether the server's close frame has been read.
    pub(crate) fn closed(&self) -> bool {
        self.assembly.closed
    }

    /// Where the next bytes from the connection go (never empty).
    pub(crate) fn unfilled(&mut self) -> &mut [u8] {
        if self.large.is_some() {
            return self.large_unfilled();
        }
        if self.buf.is_empty() {
            self.buf = vec![0; self.size];
        } else if std::mem::take(&mut self.grow) && self.buf.len() < BURST_BUFFER {
            self.resize(BURST_BUFFER);
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 && self.buf.len() - self.end < self.buf.len() / 2 {
            // What is left is the start of one frame that fits the buffer: move it to the
            // front, so that the frame can be completed.
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        &mut self.buf[self.end..]
    }

    /// Where the next bytes of a frame too large for the buffer go.
    fn large_unfilled(&mut self) -> &mut [u8] {
        let Some(large) = &mut self.large else {
            return &mut [];
        };
        if large.filled == large.payload.len() {
            let grown = (large.filled * 2).max(LARGE_STEP).min(large.head.len);
            large.payload.resize(grown, 0);
        }
        &mut large.payload[large.filled..]
    }

    /// `n` bytes were read into [`Reader::unfilled`].
    pub(crate) fn filled(&mut self, n: usize) {
        match &mut self.large {
            Some(large) => large.filled += n,
            None => {
                self.end += n;
                self.grow = self.end == self.buf.len();
            }
        }
    }

    /// Gives back a buffer grown for a burst (the connection is quiet): the configured size
    /// again, allocated at the next read if nothing waits in it. Bytes not parsed yet are kept.
    pub(crate) fn shrink(&mut self) {
        self.grow = false;
        if self.buf.len() <= self.size {
            return;
        }
        if self.start == self.end {
            (self.buf, self.start, self.end) = (Vec::new(), 0, 0);
        } else if self.end - self.start <= self.size {
            self.resize(self.size);
        }
    }

    /// Moves what is not parsed yet into a new buffer of `len` bytes (at least that many).
    fn resize(&mut self, len: usize) {
        let pending = &self.buf[self.start..self.end];
        let mut buf = vec![0; len.max(pending.len())];
        buf[..pending.len()].copy_from_slice(pending);
        (self.end, self.start) = (pending.len(), 0);
        self.buf = buf;
    }

    /// The next event in the bytes read so far, or `None` until more arrive. A data
    /// message's payload is handed to `keep`, which returns the bytes to deliver. An error
    /// breaks the connection: the reader must not be used after one.
    pub(crate) fn next(
        &mut self,
        keep: &mut impl FnMut(Received<'_>) -> Bytes,
    ) -> Result<Option<Event>, WsError> {
        loop {
            if self.large.as_ref().is_some_and(|l| l.filled < l.head.len) {
                return Ok(None);
            }
            if let Some(Large { head, payload, .. }) = self.large.take() {
                match self
                    .assembly
                    .frame(head, Received::Owned(payload.into()), keep)?
                {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            let avail = &self.buf[self.start..self.end];
            let Some((head, header_len)) = parse_head(avail, self.max_frame)? else {
                return Ok(None);
            };
            self.assembly.check(head)?;
            let total = header_len.saturating_add(head.len);
            if avail.len() >= total {
                let at = self.start;
                self.start += total;
                let payload = Received::Slice(&self.buf[at + header_len..at + total]);
                match self.assembly.frame(head, payload, keep)? {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            // A frame of up to the configured size is completed in the buffer (grown or not);
            // a larger one is read into its own memory rather than copied out afterwards.
            if total <= self.size {
                // Fits the buffer once the rest arrives.
                return Ok(None);
            }
            // Too large for the buffer: its payload gets an allocation of its own, which the
            // following reads fill directly.
            let arrived = &avail[header_len..];
            let mut payload = vec![0; arrived.len().max(LARGE_STEP.min(head.len))];
            payload[..arrived.len()].copy_from_slice(arrived);
            self.large = Some(Large {
                head,
                filled: arrived.len(),
                payload,
            });
            (self.start, self.end) = (0, 0);
        }
    }
}

impl Assembly {
    /// The checks tungstenite makes of a whole frame, in its order, made here as soon as the
    /// header has arrived.
    fn check(&self, head: Head) -> Result<(), WsError> {
        if self.closed {
            return Err(WsError::Protocol(ProtocolError::ReceivedAfterClosing));
        }
        if head.reserved {
            return Err(WsError::Protocol(ProtocolError::NonZeroReservedBits));
        }
        // A client must fail the connection on a masked frame (RFC 6455, 5.1).
        if head.masked {
            return Err(WsError::Protocol(ProtocolError::MaskedFrameFromServer));
        }
        if head.opcode >= 8 {
            if !head.fin {
                return Err(WsError::Protocol(ProtocolError::FragmentedControlFrame));
            }
            if head.len > 125 {
                return Err(WsError::Protocol(ProtocolError::ControlFrameTooBig));
            }
        }
        Ok(())
    }

    /// Takes a checked frame: an event, or `None` for a fragment of a message not yet whole.
    fn frame(
        &mut self,
        head: Head,
        payload: Received<'_>,
        keep: &mut impl FnMut(Received<'_>) -> Bytes,
    ) -> Result<Option<Event>, WsError> {
        match head.opcode {
            0x8 => {
                self.closed = true;
                Ok(Some(Event::Close(close_frame(payload.as_slice())?)))
            }
            0x9 => Ok(Some(Event::Ping(match payload {
                Received::Slice(s) => Bytes::copy_from_slice(s),
                Received::Owned(b) => b,
            }))),
            0xA => Ok(Some(Event::Pong)),
            0x0 => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(WsError::Protocol(ProtocolError::UnexpectedContinueFrame));
                };
                partial.extend(payload.as_slice(), self.max_message)?;
                if !head.fin {
                    self.partial = Some(partial);
                    return Ok(None);
                }
                let text = partial.text;
                let data = keep(Received::Owned(partial.finish()?));
                Ok(Some(if text {
                    Event::Text(data)
                } else {
                    Event::Binary(data)
                }))
            }
            opcode @ (0x1 | 0x2) => {
                let text = opcode == 0x1;
                if self.partial.is_some() {
                    return Err(WsError::Protocol(ProtocolError::ExpectedFragment(
                        if text { OpData::Text } else { OpData::Binary },
                    )));
                }
                if !head.fin {
                    let mut partial = Partial {
                        text,
                        data: Vec::new(),
                        valid: 0,
                    };
                    partial.extend(payload.as_slice(), self.max_message)?;
                    self.partial = Some(partial);
                    return Ok(None);
                }
                check_size(head.len, self.max_message)?;
                if text {
                    std::str::from_utf8(payload.as_slice())?;
                    Ok(Some(Event::Text(keep(payload))))
                } else {
                    Ok(Some(Event::Binary(keep(payload))))
                }
            }
            // Refused with the header.
            opcode => Err(WsError::Protocol(ProtocolError::InvalidOpcode(opcode))),
        }
    }
}

/// `MessageTooLong` for a message or frame of `size` bytes above `max`.
fn check_size(size: usize, max: usize) -> Result<(), WsError> {
    if size > max {
        return Err(WsError::Capacity(CapacityError::MessageTooLong {
            size,
            max_size: max,
        }));
    }
    Ok(())
}

/// The header at the start of `bytes` and its length, or `None` if it has not all arrived.
/// Refuses a reserved opcode, then a frame above `max_frame`, as tungstenite does.
fn parse_head(bytes: &[u8], max_frame: usize) -> Result<Option<(Head, usize)>, WsError> {
    let [first, second, rest @ ..] = bytes else {
        return Ok(None);
    };
    let (len, header_len) = match second & 0x7F {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
            _ => return Ok(None),
        },
        127 => match rest.first_chunk::<8>() {
            Some(l) => (u64::from_be_bytes(*l), 10),
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    let masked = second & 0x80 != 0;
    let header_len = header_len + if masked { 4 } else { 0 };
    if bytes.len() < header_len {
        return Ok(None);
    }
    let opcode = first & 0x0F;
    if matches!(opcode, 0x3..=0x7 | 0xB..=0xF) {
        return Err(WsError::Protocol(ProtocolError::InvalidOpcode(opcode)));
    }
    // Compared as u64, so that a length above usize::MAX cannot wrap past the limit.
    if len > max_frame as u64 {
        return Err(WsError::Capacity(CapacityError::MessageTooLong {
            size: usize::try_from(len).unwrap_or(usize::MAX),
            max_size: max_frame,
        }));
    }
    let head = Head {
        fin: first & 0x80 != 0,
        reserved: first & 0x70 != 0,
        masked,
        opcode,
        len: usize::try_from(len).unwrap_or(usize::MAX),
    };
    Ok(Some((head, header_len)))
}

/// A close frame's status and reason; a disallowed status becomes 1002.
fn close_frame(payload: &[u8]) -> Result<Option<CloseFrame>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol(ProtocolError::InvalidCloseSequence)),
        [a, b, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*a, *b]));
            let reason = std::str::from_utf8(reason)?;
            Ok(Some(if code.is_allowed() {
                CloseFrame {
                    code,
                    reason: Utf8Bytes::from(reason.to_owned()),
                }
            } else {
                CloseFrame {
                    code: CloseCode::Protocol,
                    reason: Utf8Bytes::from_static("Protocol violation"),
                }
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::{Outcome, ours, theirs};

    /// A server frame: FIN, opcode, payload; unmasked, no reserved bits.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        raw(u8::from(fin) << 7 | opcode, payload, false)
    }

    /// A frame with the first byte `first`, masked (with a zero mask) if `masked`.
    fn raw(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mask = if masked { 0x80 } else { 0 };
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(mask | n as u8),
            n @ 126..=0xFFFF => {
                out.push(mask | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&[0; 4]);
        }
        out.extend_from_slice(payload);
        out
    }

    fn read_all(input: &[u8]) -> Vec<Outcome> {
        ours(&WebSocketConfig::default(), input, &[usize::MAX])
    }

    #[test]
    fn frames_of_every_length_format_arrive_whole_however_the_bytes_are_split() {
        let long = vec![b'x'; 300];
        let longer = vec![7u8; 70_000];
        let mut input = frame(true, 1, b"hello");
        input.extend(frame(true, 2, &long));
        input.extend(frame(true, 2, &longer));
        input.extend(frame(true, 1, b""));
        let expected = vec![
            Outcome::Text(b"hello".to_vec()),
            Outcome::Binary(long.clone()),
            Outcome::Binary(longer.clone()),
            Outcome::Text(Vec::new()),
            Outcome::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        ];
        let config = WebSocketConfig::default().read_buffer_size(64);
        for chunks in [&[1][..], &[3, 7], &[usize::MAX], &[100, 1, 5000]] {
            assert_eq!(ours(&config, &input, chunks), expected, "{chunks:?}");
        }
    }

    #[test]
    fn a_frame_larger_than_the_buffer_is_read_into_its_own_memory_as_it_arrives() {
        let config = WebSocketConfig::default().read_buffer_size(1024);
        let mut reader = Reader::new(&config, &[]);
        let mut keep = |p: Received<'_>| match p {
            Received::Owned(b) => b,
            Received::Slice(_) => panic!("a large frame was copied out of the buffer"),
        };
        // A header claiming 10 MB, and 100 bytes of it.
        let mut claimed = raw(0x82, &[], false);
        claimed.truncate(1);
        claimed.push(127);
        claimed.extend_from_slice(&10_000_000u64.to_be_bytes());
        claimed.extend_from_slice(&[1; 100]);
        reader.unfilled()[..claimed.len()].copy_from_slice(&claimed);
        reader.filled(claimed.len());
        assert_eq!(reader.next(&mut keep).unwrap(), None);
        assert!(
            reader.unfilled().len() <= LARGE_STEP,
            "memory follows the bytes that came, not the length claimed"
        );
        assert!(reader.buf.len() == 1024, "the read buffer did not grow");
    }

    #[test]
    fn the_read_buffer_grows_once_for_a_burst_is_reused_and_shrinks_when_quiet() {
        let config = WebSocketConfig::default().read_buffer_size(1024);
        let mut reader = Reader::new(&config, &[]);
        let one = frame(true, 2, &[5; 100]);
        let count = 3 * BURST_BUFFER / one.len();
        let stream: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * count)
            .collect();
        let mut keep = |p: Received<'_>| Bytes::copy_from_slice(p.as_slice());
        let (mut at, mut frames, mut reads) = (0, 0, 0);
        let mut grown = None;
        // Every read fills what it is offered, as in a flood, except the last; the stream
        // stops 50 bytes into a frame.
        let end = stream.len() - one.len() + 50;
        while at < end {
            let offered = reader.unfilled().len();
            if reads == 0 {
                assert_eq!(offered, 1024, "the configured size first");
            } else {
                // Grown after the first full read, then one buffer throughout.
                let ptr = *grown.get_or_insert(reader.buf.as_ptr());
                assert_eq!(reader.buf.as_ptr(), ptr, "one buffer once grown");
                assert_eq!(reader.buf.len(), BURST_BUFFER);
                assert!(
                    offered >= BURST_BUFFER - one.len(),
                    "a read of {offered} bytes"
                );
            }
            let dst = reader.unfilled();
            let n = dst.len().min(end - at);
            dst[..n].copy_from_slice(&stream[at..at + n]);
            reader.filled(n);
            (at, reads) = (at + n, reads + 1);
            while let Some(event) = reader.next(&mut keep).unwrap() {
                assert_eq!(event, Event::Binary(Bytes::from(vec![5; 100])));
                frames += 1;
            }
        }
        assert_eq!(frames, count - 1);
        assert!(reads <= 5, "{reads} reads");
        // Quiet: back to the configured size, with the partial frame kept.
        reader.shrink();
        assert_eq!(reader.buf.len(), 1024);
        let rest = &stream[end..];
        reader.unfilled()[..rest.len()].copy_from_slice(rest);
        reader.filled(rest.len());
        assert_eq!(
            reader.next(&mut keep).unwrap(),
            Some(Event::Binary(Bytes::from(vec![5; 100])))
        );
        // Nothing pending: the buffer itself goes until the next read.
        reader.unfilled()[..one.len()].copy_from_slice(&one);
        reader.filled(one.len());
        assert!(reader.next(&mut keep).unwrap().is_some());
        reader.shrink();
        assert_eq!(
            reader.buf.len(),
            1024,
            "never grown by a read that did not fill it"
        );
    }

    #[test]
    fn a_frame_larger_than_the_configured_size_gets_its_own_memory_in_a_grown_buffer() {
        let config = WebSocketConfig::default().read_buffer_size(1024);
        let mut reader = Reader::new(&config, &[]);
        let small = frame(true, 2, &[1; 100]);
        let big = frame(true, 2, &[2; 5000]);
        // A full read grows the buffer; then a frame of 5,000 bytes starts to arrive.
        let n = reader.unfilled().len();
        let mut first: Vec<u8> = small.iter().copied().cycle().take(n).collect();
        let whole = n / small.len() * small.len();
        first.truncate(whole);
        first.extend_from_slice(&big[..n - whole]);
        reader.unfilled().copy_from_slice(&first);
        reader.filled(n);
        let mut owned = 0;
        let mut keep = |p: Received<'_>| match p {
            Received::Owned(b) => {
                owned += 1;
                b
            }
            Received::Slice(s) => Bytes::copy_from_slice(s),
        };
        while reader.next(&mut keep).unwrap().is_some() {}
        assert!(reader.buf.len() < BURST_BUFFER, "grows at the next read");
        let rest = &big[n - whole..];
        let dst = reader.unfilled();
        dst[..rest.len()].copy_from_slice(rest);
        reader.filled(rest.len());
        assert_eq!(
            reader.next(&mut keep).unwrap(),
            Some(Event::Binary(Bytes::from(vec![2; 5000])))
        );
        assert_eq!(
            owned, 1,
            "read into its own memory, not copied out of the buffer"
        );
    }

    #[test]
    fn bytes_read_with_the_handshake_come_first() {
        let mut tail = frame(true, 1, b"early");
        tail.extend(&frame(true, 1, b"la")[..2]);
        let mut reader = Reader::new(&WebSocketConfig::default(), &tail);
        let mut keep = |p: Received<'_>| Bytes::copy_from_slice(p.as_slice());
        assert_eq!(
            reader.next(&mut keep).unwrap(),
            Some(Event::Text(Bytes::from_static(b"early")))
        );
        assert_eq!(reader.next(&mut keep).unwrap(), None);
        reader.unfilled()[..2].copy_from_slice(b"la");
        reader.filled(2);
        assert_eq!(
            reader.next(&mut keep).unwrap(),
            Some(Event::Text(Bytes::from_static(b"la")))
        );
    }

    #[test]
    fn fragments_are_joined_around_control_frames() {
        let mut input = frame(false, 1, "h\u{e9}".as_bytes()[..2].as_ref());
        input.extend(frame(true, 9, b"p"));
        input.extend(frame(false, 0, &"h\u{e9}".as_bytes()[2..]));
        input.extend(frame(true, 0, b"!"));
        input.extend(frame(true, 8, &[0x03, 0xe8, b'o', b'k']));
        assert_eq!(
            read_all(&input),
            vec![
                Outcome::Ping(b"p".to_vec()),
                Outcome::Text("h\u{e9}!".as_bytes().to_vec()),
                Outcome::Close(Some((1000, "ok".into()))),
                Outcome::Closed,
            ]
        );
    }

    #[test]
    fn what_rfc_6455_forbids_fails_the_connection() {
        let p = |e| vec![Outcome::Protocol(e)];
        use ProtocolError as E;
        let cases: Vec<(Vec<u8>, Vec<Outcome>)> = vec![
            (raw(0xC1, b"x", false), p(E::NonZeroReservedBits)),
            (raw(0x81, b"x", true), p(E::MaskedFrameFromServer)),
            (frame(false, 9, b""), p(E::FragmentedControlFrame)),
            (frame(true, 9, &[0; 126]), p(E::ControlFrameTooBig)),
            (frame(true, 0xB, b""), p(E::InvalidOpcode(0xB))),
            (frame(true, 3, b""), p(E::InvalidOpcode(3))),
            (frame(true, 0, b""), p(E::UnexpectedContinueFrame)),
            (
                [frame(false, 2, b"a"), frame(true, 1, b"b")].concat(),
                p(E::ExpectedFragment(OpData::Text)),
            ),
            (frame(true, 8, &[3]), p(E::InvalidCloseSequence)),
            (
                [frame(true, 8, &[]), frame(true, 1, b"late")].concat(),
                vec![
                    Outcome::Close(None),
                    Outcome::Protocol(E::ReceivedAfterClosing),
                ],
            ),
            (frame(true, 1, &[0xff]), vec![Outcome::Utf8]),
            // Invalid UTF-8 fails at its fragment, before the message is complete.
            (
                [frame(false, 1, &[b'a', 0xff]), frame(true, 8, &[3])].concat(),
                vec![Outcome::Utf8],
            ),
            // A message ending inside a character.
            (
                [frame(false, 1, &[0xc3]), frame(true, 0, b"")].concat(),
                vec![Outcome::Utf8],
            ),
            // A status no endpoint may send is reported as a protocol violation.
            (
                frame(true, 8, &[0x03, 0xed]),
                vec![
                    Outcome::Close(Some((1002, "Protocol violation".into()))),
                    Outcome::Closed,
                ],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(read_all(&input), expected, "{input:x?}");
        }
    }

    #[test]
    fn limits_on_frames_and_messages_hold() {
        let config = WebSocketConfig::default()
            .max_frame_size(Some(10))
            .max_message_size(Some(15));
        let too_long = |size, max_size| vec![Outcome::TooLong { size, max_size }];
        assert_eq!(
            ours(&config, &frame(true, 2, &[0; 11]), &[usize::MAX]),
            too_long(11, 10)
        );
        let fragments = [frame(false, 2, &[0; 10]), frame(true, 0, &[0; 6])].concat();
        assert_eq!(ours(&config, &fragments, &[usize::MAX]), too_long(16, 15));
        // A length no allocation could hold, with no limit set.
        let unlimited = WebSocketConfig::default().max_frame_size(None);
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            ours(&unlimited, &huge, &[usize::MAX]),
            vec![Outcome::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )]
        );
    }

    /// One frame of a differential run: mostly what a server sends, sometimes what it must not.
    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        let payload = prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..40),
            4 => "[a-z\u{e9}\u{1F600}]{0,40}".prop_map(String::into_bytes),
            1 => proptest::collection::vec(any::<u8>(), 100..300),
            1 => Just(vec![b'y'; 70_000]),
        ];
        let first = prop_oneof![
            6 => Just(0x81u8),
            6 => Just(0x82),
            2 => Just(0x01),
            2 => Just(0x02),
            3 => Just(0x00),
            3 => Just(0x80),
            2 => Just(0x89),
            2 => Just(0x8A),
            1 => Just(0x88),
            1 => any::<u8>(),
        ];
        (first, payload, proptest::bool::weighted(0.02)).prop_map(|(first, payload, masked)| {
            let payload = if first == 0x88 && payload.len() >= 2 {
                // A close frame: mostly a status that may be sent.
                let mut close = payload;
                if close[0] % 4 != 0 {
                    close[..2].copy_from_slice(&1000u16.to_be_bytes());
                }
                close
            } else {
                payload
            };
            raw(first, &payload, masked)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever a server sends, in whatever pieces, this reader sees what tungstenite's
        /// reader sees: the same messages, then the same end or the same error.
        #[test]
        fn reads_what_tungstenite_reads(
            frames in proptest::collection::vec(any_frame(), 0..12),
            chunks in proptest::collection::vec(1usize..400, 1..6),
            buffer in prop_oneof![Just(1usize), 16usize..200, Just(16 * 1024)],
            max_frame in prop_oneof![Just(None), (1usize..400).prop_map(Some)],
            max_message in prop_oneof![Just(None), (1usize..600).prop_map(Some)],
        ) {
            let config = WebSocketConfig::default()
                .read_buffer_size(buffer)
                .max_frame_size(max_frame)
                .max_message_size(max_message);
            let input = frames.concat();
            prop_assert_eq!(ours(&config, &input, &chunks), theirs(&config, &input, &chunks));
        }
    }
}
