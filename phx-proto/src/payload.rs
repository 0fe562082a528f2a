//! Message payloads and the UTF-8 string type used for envelope fields.
//!
//! Both keep the bytes of the received frame (`bytes::Bytes` slices): nothing is copied or
//! re-serialized until the user asks for a typed value.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};

use crate::codec::{DecodeError, json};

/// An immutable UTF-8 string backed by [`Bytes`], so envelope fields (topic, event, refs) can
/// point into the frame they were decoded from.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// A string pointing at static memory; no allocation.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes after checking that they are UTF-8.
    ///
    /// # Errors
    /// Returns the bytes back when they are not valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Self(bytes)),
            Err(_) => Err(bytes),
        }
    }

    /// Wraps bytes the codec's scanner has already found to be ASCII.
    pub(crate) fn from_ascii(bytes: Bytes) -> Self {
        debug_assert!(bytes.is_ascii());
        Self(bytes)
    }

    /// Wraps bytes that are ASCII (so UTF-8) without the general UTF-8 check: envelope fields
    /// are short, and `is_ascii` costs a fraction of `from_utf8`'s call. Anything else goes
    /// through [`ByteStr::from_utf8`].
    pub(crate) fn from_ascii_or_utf8(bytes: Bytes) -> Result<Self, Bytes> {
        if bytes.is_ascii() {
            Ok(Self(bytes))
        } else {
            Self::from_utf8(bytes)
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // The constructors only admit UTF-8, so this never takes the fallback. phx-proto forbids
        // `unsafe`, hence the checked conversion (fast for the short strings of an envelope).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying [`Bytes`], sharing the same memory.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        &self.0
    }
}

// Hash as bytes so that `Borrow<[u8]>` lookups agree with `Hash`.
impl Hash for ByteStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_ref().hash(state);
    }
}

impl Borrow<[u8]> for ByteStr {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<ByteStr> for Bytes {
    fn from(s: ByteStr) -> Self {
        s.0
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
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
}
