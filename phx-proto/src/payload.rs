//! Message payloads and the UTF-8 string type used for envelope fields.
//!
//! A received payload is a `bytes::Bytes` slice of its frame, never copied or re-serialized
//! until the user asks for a typed value; a short envelope field is copied into its string.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};

use crate::codec::{DecodeError, json};

/// An immutable UTF-8 string for envelope fields (topic, event, refs).
///
/// A string of up to 23 bytes is held inline; a longer one is a [`Bytes`] slice of the frame it
/// was decoded from. Topics, events and refs are nearly always short, and copying them costs
/// less than sharing the frame: each slice of a shared buffer is an atomic reference-count
/// update when it is made and another when it is dropped (by the application, often on another
/// thread than the one that decoded the frame).
#[derive(Clone)]
pub struct ByteStr(Repr);

/// Bytes a [`ByteStr`] holds inline: as many as fit beside the length in a `Bytes`' 32 bytes.
const INLINE: usize = 23;

#[derive(Clone)]
enum Repr {
    /// Static memory, a string given as `Bytes`, or a long field's slice of its frame.
    Shared(Bytes),
    /// A short string: byte 0 is its length, the string follows; the rest is never read.
    Inline([u8; INLINE + 1]),
}

impl Default for ByteStr {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl ByteStr {
    /// A string pointing at static memory; no allocation.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Repr::Shared(Bytes::from_static(s.as_bytes())))
    }

    /// Wraps bytes after checking that they are UTF-8.
    ///
    /// # Errors
    /// Returns the bytes back when they are not valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Self(Repr::Shared(bytes))),
            Err(_) => Err(bytes),
        }
    }

    /// `src` held inline, if it is short enough.
    fn inline(src: &[u8]) -> Option<Self> {
        let mut buf = [0; INLINE + 1];
        buf[0] = u8::try_from(src.len()).ok()?;
        buf.get_mut(1..=src.len())?.copy_from_slice(src);
        Some(Self(Repr::Inline(buf)))
    }

    /// `frame[range]`, copied inline when short, else a slice of `frame`; `None` if the range
    /// does not lie in the frame. The caller has checked that it holds UTF-8.
    #[inline(always)]
    fn copy_or_slice(frame: &Bytes, range: std::ops::Range<usize>) -> Option<Self> {
        let src = frame.get(range.clone())?;
        if src.len() <= INLINE {
            // A fixed 24-byte window of the frame (the byte before the string, the string and
            // whatever follows it, never read), the first byte replaced by the length: a copy
            // of exactly `len` bytes would be a call to `memcpy`. Built as three words, as the
            // caller reads it back: a length byte stored beside a vector store of the string
            // makes those reads straddle two stores, and each then waits for them to reach the
            // cache (a failed store forward, about 5 ns per field).
            if let Some(window) = range
                .start
                .checked_sub(1)
                .and_then(|at| frame.get(at..at + INLINE + 1))
                && let Ok(len) = u8::try_from(src.len())
            {
                let word = |i: usize| {
                    window
                        .get(i..i + 8)
                        .and_then(|w| <[u8; 8]>::try_from(w).ok())
                        .map_or(0, u64::from_le_bytes)
                };
                let first = (word(0) & !0xff) | u64::from(len);
                let mut buf = [0; INLINE + 1];
                buf[..8].copy_from_slice(&first.to_le_bytes());
                buf[8..16].copy_from_slice(&word(8).to_le_bytes());
                buf[16..].copy_from_slice(&word(16).to_le_bytes());
                return Some(Self(Repr::Inline(buf)));
            }
            return Self::inline(src);
        }
        Some(Self(Repr::Shared(frame.slice(range))))
    }

    /// `frame[range]`, which the codec's scanner has already found to be ASCII; `None` if the
    /// range does not lie in the frame.
    #[inline]
    pub(crate) fn from_ascii_in(frame: &Bytes, range: std::ops::Range<usize>) -> Option<Self> {
        debug_assert!(frame.get(range.clone()).is_some_and(<[u8]>::is_ascii));
        Self::copy_or_slice(frame, range)
    }

    /// `frame[range]` if it lies in the frame and is UTF-8. Checks for ASCII first: envelope
    /// fields are short, and `is_ascii` costs a fraction of `from_utf8`'s call.
    #[inline]
    pub(crate) fn from_utf8_in(frame: &Bytes, range: std::ops::Range<usize>) -> Option<Self> {
        let src = frame.get(range.clone())?;
        if src.is_ascii() || std::str::from_utf8(src).is_ok() {
            Self::copy_or_slice(frame, range)
        } else {
            None
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // The constructors only admit UTF-8, so this never takes the fallback. phx-proto forbids
        // `unsafe`, hence the checked conversion (fast for the short strings of an envelope).
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The underlying bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Shared(bytes) => bytes,
            Repr::Inline(buf) => buf.get(1..=usize::from(buf[0])).unwrap_or_default(),
        }
    }

    /// The string as [`Bytes`]: the same memory for a long string, a copy of a short one held
    /// inline.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Shared(bytes) => bytes.clone(),
            Repr::Inline(_) => Bytes::copy_from_slice(self.as_bytes()),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for ByteStr {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

// Equality, order and hashing look at the string, not at where it is held. Hash as bytes so
// that `Borrow<[u8]>` lookups agree with `Hash`.
impl PartialEq for ByteStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ByteStr {}

impl PartialOrd for ByteStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByteStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for ByteStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for ByteStr {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> Self {
        Self::inline(s.as_bytes())
            .unwrap_or_else(|| Self(Repr::Shared(Bytes::copy_from_slice(s.as_bytes()))))
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> Self {
        Self::inline(s.as_bytes()).unwrap_or_else(|| Self(Repr::Shared(Bytes::from(s))))
    }
}

impl From<ByteStr> for Bytes {
    fn from(s: ByteStr) -> Self {
        match s.0 {
            Repr::Shared(bytes) => bytes,
            Repr::Inline(_) => Self::copy_from_slice(s.as_bytes()),
        }
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a payload travels as JSON text or as raw bytes in a V2 binary frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// A JSON value, sent in a text frame.
    Json,
    /// Raw bytes, sent in a V2 binary frame.
    Binary,
}

/// The payload of a message: a JSON value kept as its text, or raw binary bytes.
///
/// A received payload is a slice of the received frame. It is checked to be well-formed JSON when
/// the frame is decoded (or, with [`crate::ConfigBuilder::defer_payload_checks`], by
/// [`Payload::check`] where the message is consumed), and turned into a user type only by
/// [`Payload::decode`].
///
/// ```
/// use phx_proto::Payload;
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Msg { body: String }
///
/// let p = Payload::json(&Msg { body: "hi".into() }).unwrap();
/// assert_eq!(p.as_bytes().as_ref(), br#"{"body":"hi"}"#);
/// assert_eq!(p.decode::<Msg>().unwrap(), Msg { body: "hi".into() });
/// ```
#[derive(Clone)]
pub struct Payload {
    kind: PayloadKind,
    bytes: Bytes,
    /// False only for a JSON payload decoded with its check deferred, until [`Payload::check`].
    checked: bool,
}

// Equality and hashing look at what the payload holds, not at whether it was checked yet.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.bytes == other.bytes
    }
}

impl Eq for Payload {}

impl Hash for Payload {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.bytes.hash(state);
    }
}

/// Why a payload could not be turned into the requested type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is binary; only JSON payloads decode through serde.
    #[error("payload is binary ({len} bytes), not JSON")]
    Binary {
        /// Size of the binary payload.
        len: usize,
    },
    /// serde could not map the JSON to the requested type.
    #[error("payload does not match the requested type: {0}")]
    Json(#[from] serde_json::Error),
}

impl Payload {
    /// The empty JSON object `{}`, the payload of most control messages.
    pub const fn empty() -> Self {
        Self {
            kind: PayloadKind::Json,
            bytes: Bytes::from_static(b"{}"),
            checked: true,
        }
    }

    /// Serializes `value` to JSON once.
    ///
    /// # Errors
    /// Fails when serde cannot serialize the value (for example a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let bytes = serde_json::to_vec(value)?;
        Ok(Self {
            kind: PayloadKind::Json,
            bytes: Bytes::from(bytes),
            checked: true,
        })
    }

    /// Takes JSON text that is already encoded, after checking that it is UTF-8 and exactly one
    /// well-formed JSON value (surrounding white space allowed).
    ///
    /// # Errors
    /// [`DecodeError`] naming the offset and what was wrong.
    pub fn from_json(text: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let bytes = text.into();
        if std::str::from_utf8(&bytes).is_err() {
            return Err(DecodeError::InvalidUtf8 { field: "payload" });
        }
        json::validate_value(&bytes)?;
        Ok(Self {
            kind: PayloadKind::Json,
            bytes,
            checked: true,
        })
    }

    /// Raw bytes, sent as a V2 binary frame.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: PayloadKind::Binary,
            bytes: bytes.into(),
            checked: true,
        }
    }

    /// Builds a payload whose JSON the codec has already validated.
    pub(crate) fn json_unchecked(bytes: Bytes) -> Self {
        Self {
            kind: PayloadKind::Json,
            bytes,
            checked: true,
        }
    }

    /// Builds a payload the codec delimited but did not validate; [`Payload::check`] does.
    pub(crate) fn json_deferred(bytes: Bytes) -> Self {
        Self {
            kind: PayloadKind::Json,
            bytes,
            checked: false,
        }
    }

    /// Whether the payload is known to be well-formed: always true, except for a JSON payload
    /// decoded with [`crate::ConfigBuilder::defer_payload_checks`] that has not been through
    /// [`Payload::check`] yet.
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// Checks a payload whose check was deferred: it must be exactly one well-formed JSON
    /// value, as the decoder would have required. Does nothing for a payload already checked,
    /// so it costs nothing to call on every message.
    ///
    /// # Errors
    /// [`DecodeError`] naming the offset (within the payload) and what was wrong; the payload
    /// stays unchecked.
    pub fn check(&mut self) -> Result<(), DecodeError> {
        if !self.checked {
            json::validate_value(&self.bytes)?;
            self.checked = true;
        }
        Ok(())
    }

    /// JSON or binary.
    pub fn kind(&self) -> PayloadKind {
        self.kind
    }

    /// Whether this is a binary payload.
    pub fn is_binary(&self) -> bool {
        self.kind == PayloadKind::Binary
    }

    /// The payload bytes: JSON text, or the binary body.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The JSON text, or `None` for a binary payload.
    pub fn as_json_str(&self) -> Option<&str> {
        match self.kind {
            PayloadKind::Json => std::str::from_utf8(&self.bytes).ok(),
            PayloadKind::Binary => None,
        }
    }

    /// Consumes the payload, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Deserializes a JSON payload into `T`.
    ///
    /// # Errors
    /// [`PayloadError::Binary`] for a binary payload, [`PayloadError::Json`] when the JSON does
    /// not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.decode_borrowed()
    }

    /// Deserializes a JSON payload into `T`, which may borrow strings from the payload.
    ///
    /// # Errors
    /// As [`Payload::decode`].
    pub fn decode_borrowed<'de, T: Deserialize<'de>>(&'de self) -> Result<T, PayloadError> {
        match self.kind {
            PayloadKind::Json => Ok(serde_json::from_slice(&self.bytes)?),
            PayloadKind::Binary => Err(PayloadError::Binary {
                len: self.bytes.len(),
            }),
        }
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PayloadKind::Json => match std::str::from_utf8(&self.bytes) {
                Ok(s) => write!(f, "Json({s})"),
                Err(_) => write!(f, "Json(<{} bytes>)", self.bytes.len()),
            },
            PayloadKind::Binary => write!(f, "Binary(<{} bytes>)", self.bytes.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_json_rejects_what_a_server_would_choke_on() {
        assert!(Payload::from_json(r#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert_eq!(
            Payload::from_json(&b"{\"a\":\"caf\xe9\"}"[..]).map(|_| ()),
            Err(DecodeError::InvalidUtf8 { field: "payload" }),
            "Latin-1 is not JSON text"
        );
        assert!(Payload::from_json(" 12 ").is_ok());
        assert!(Payload::from_json("{").is_err());
        assert!(Payload::from_json("{} {}").is_err());
        assert!(Payload::from_json("").is_err());
    }

    #[test]
    fn binary_payload_refuses_serde_decode() {
        let p = Payload::binary(vec![1u8, 2, 3]);
        assert!(matches!(
            p.decode::<serde_json::Value>(),
            Err(PayloadError::Binary { len: 3 })
        ));
    }

    #[test]
    fn decode_borrowed_can_borrow_strings() {
        let p = Payload::from_json(r#"{"name":"lobby"}"#).unwrap();
        #[derive(serde::Deserialize)]
        struct Borrowing<'a> {
            name: &'a str,
        }
        let b: Borrowing<'_> = p.decode_borrowed().unwrap();
        assert_eq!(b.name, "lobby");
    }

    #[test]
    fn byte_str_compares_and_hashes_as_its_text() {
        use std::collections::HashMap;
        let a = ByteStr::from("room:1");
        let mut m = HashMap::new();
        m.insert(a.clone(), 1);
        assert_eq!(m.get(b"room:1".as_slice()), Some(&1));
        assert_eq!(a, "room:1");
        assert!(ByteStr::from_utf8(Bytes::from_static(&[0xff])).is_err());
    }

    fn hash_of(s: &ByteStr) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    }

    #[test]
    fn short_fields_are_copied_and_long_ones_share_the_frame() {
        let frame = Bytes::from(format!("{}|{}", "t".repeat(INLINE), "u".repeat(INLINE + 1)));
        let short = ByteStr::from_utf8_in(&frame, 0..INLINE).unwrap();
        let long = ByteStr::from_utf8_in(&frame, INLINE + 1..frame.len()).unwrap();
        assert!(matches!(short.0, Repr::Inline(_)));
        assert!(matches!(long.0, Repr::Shared(_)));
        assert_eq!(short, "t".repeat(INLINE).as_str());
        assert_eq!(long, "u".repeat(INLINE + 1).as_str());
        // Only the long field keeps the frame's buffer alive.
        let mut frame = frame;
        assert!(!frame.is_unique());
        drop(long);
        assert!(frame.is_unique(), "a short field holds no reference");
        // A field at the very end of its frame, with fewer than INLINE bytes after its start.
        let tail = ByteStr::from_ascii_in(&frame, frame.len() - 3..frame.len()).unwrap();
        assert!(matches!(tail.0, Repr::Inline(_)));
        assert_eq!(tail, "uuu");
        assert_eq!(ByteStr::from_utf8_in(&frame, 0..frame.len() + 1), None);
        assert_eq!(frame.split_to(1), "t", "the frame is intact");
        assert_eq!(
            ByteStr::from_utf8_in(&Bytes::from_static(b"\xe9t\xe9"), 0..3),
            None
        );
        let accented = Bytes::from("t\u{e9}".to_owned());
        assert_eq!(ByteStr::from_utf8_in(&accented, 0..3).unwrap(), "t\u{e9}");
    }

    #[test]
    fn a_short_field_reads_the_same_wherever_it_lies_in_its_frame() {
        // Fields at the frame's start, in its middle (copied with the byte before them and
        // what follows) and at its end (too near it for that), of every inline length.
        let frame = Bytes::from((0..80u8).map(|i| b'a' + i % 26).collect::<Vec<_>>());
        for start in 0..frame.len() {
            for len in 0..=INLINE.min(frame.len() - start) {
                let field = ByteStr::from_utf8_in(&frame, start..start + len).unwrap();
                assert!(matches!(field.0, Repr::Inline(_)), "{start}+{len}");
                assert_eq!(
                    field.as_bytes(),
                    &frame[start..start + len],
                    "{start}+{len}"
                );
                assert_eq!(field.len(), len);
                assert_eq!(field, ByteStr::from(&field[..]), "{start}+{len}");
            }
        }
    }

    #[test]
    fn where_a_string_is_held_never_shows() {
        let (at_most, above) = ("x".repeat(INLINE), "y".repeat(INLINE + 1));
        for text in ["", "phx_reply", &at_most, &above] {
            let inline = ByteStr::from(text);
            let shared = ByteStr::from_utf8(Bytes::copy_from_slice(text.as_bytes())).unwrap();
            let owned = ByteStr::from(text.to_owned());
            assert_eq!(inline, shared, "{text}");
            assert_eq!(owned, shared, "{text}");
            assert_eq!(inline.cmp(&shared), std::cmp::Ordering::Equal);
            assert_eq!(hash_of(&inline), hash_of(&shared), "{text}");
            assert_eq!(inline.len(), text.len());
            assert_eq!(inline.as_str(), text);
            assert_eq!(inline.to_bytes(), text.as_bytes());
            assert_eq!(Bytes::from(inline.clone()), text.as_bytes());
            assert_eq!(format!("{inline:?}"), format!("{text:?}"));
        }
        let (inline, shared) = (
            ByteStr::from("a"),
            ByteStr::from_utf8(Bytes::from_static(b"b")).unwrap(),
        );
        assert!(inline < shared);
        assert!(ByteStr::default().is_empty());
        assert_eq!(ByteStr::default(), ByteStr::from(""));
    }
}
