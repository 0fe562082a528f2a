//! Text helpers: JSON kept as written, one-line JSON objects, base64, times and latencies.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phx_tokio::Payload;
use serde_json::Value;

/// JSON text from the user, checked and compacted, keys kept in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Json(String);

impl Json {
    /// Checks `text` and removes the white space between tokens.
    ///
    /// # Errors
    /// serde_json's error, with the line and column of the problem.
    pub(crate) fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Value>(text)?;
        Ok(Self(compact(text)))
    }

    /// The compact text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The payload carrying this JSON.
    pub(crate) fn payload(&self) -> Payload {
        // Checked by `parse`; the codec's check cannot disagree on valid JSON.
        Payload::from_json(self.0.clone()).unwrap_or_else(|_| Payload::empty())
    }
}

/// Removes the white space outside strings from valid JSON text.
pub(crate) fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// A JSON string literal.
pub(crate) fn quote(s: &str) -> String {
    Value::from(s).to_string()
}

/// A payload as one line of text: compact JSON, or `<N bytes: BASE64>` for binary.
pub(crate) fn payload_text(payload: &Payload) -> String {
    match payload.as_json_str() {
        Some(json) => compact(json),
        None if payload.is_binary() => {
            let bytes = payload.as_bytes();
            format!("<{} bytes: {}>", bytes.len(), base64(bytes))
        }
        // JSON that is not UTF-8 cannot come out of the codec; show it escaped anyway.
        None => quote(&String::from_utf8_lossy(payload.as_bytes())),
    }
}

/// A one-line JSON object whose first field is `"type"`, built field by field so that payloads
/// keep their key order.
#[derive(Debug)]
pub(crate) struct Line(String);

impl Line {
    /// `{"type": kind`.
    pub(crate) fn new(kind: &str) -> Self {
        Self(format!("{{\"type\":{}", quote(kind)))
    }

    /// Adds a string field.
    pub(crate) fn str(mut self, key: &str, value: &str) -> Self {
        let _ = write!(self.0, ",{}:{}", quote(key), quote(value));
        self
    }

    /// Adds a field holding compact JSON text.
    pub(crate) fn raw(mut self, key: &str, json: &str) -> Self {
        let _ = write!(self.0, ",{}:{}", quote(key), json);
        self
    }

    /// Adds an integer field.
    pub(crate) fn int(mut self, key: &str, value: u64) -> Self {
        let _ = write!(self.0, ",{}:{value}", quote(key));
        self
    }

    /// Adds a duration as milliseconds with microsecond precision.
    pub(crate) fn millis(mut self, key: &str, value: Duration) -> Self {
        let _ = write!(
            self.0,
            ",{}:{:.3}",
            quote(key),
            value.as_secs_f64() * 1000.0
        );
        self
    }

    /// Adds a payload: `key` with its JSON, or `key_base64` with a binary payload's bytes.
    pub(crate) fn payload(self, key: &str, payload: &Payload) -> Self {
        match payload.as_json_str() {
            Some(json) => self.raw(key, &compact(json)),
            None => {
                let encoded = base64(payload.as_bytes());
                self.str(&format!("{key}_base64"), &encoded)
            }
        }
    }

    /// Closes the object.
    pub(crate) fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The time of day in UTC, `HH:MM:SS.mmm`.
pub(crate) fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

/// A latency for humans: `0.42 ms`, `12.3 ms`, `1.20 s`.
pub(crate) fn latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// A duration as the user would write it for `--timeout`: `10s`, `250ms`.
pub(crate) fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_order() {
        assert_eq!(
            compact("{ \"b\" : 1,\n \"a\": \"x  y\\\" z \" }"),
            "{\"b\":1,\"a\":\"x  y\\\" z \"}"
        );
        assert_eq!(compact("[1, \"\\\\\", 2]"), "[1,\"\\\\\",2]");
    }

    #[test]
    fn json_is_checked() {
        assert_eq!(
            Json::parse(" {\"a\": [1, 2]} ").unwrap().as_str(),
            "{\"a\":[1,2]}"
        );
        let err = Json::parse("{a:1}").unwrap_err().to_string();
        assert!(err.contains("line 1 column 2"), "{err}");
        assert!(Json::parse("{} {}").is_err());
    }

    #[test]
    fn lines_are_json_objects_with_type_first() {
        let line = Line::new("reply")
            .str("event", "pi\"ng")
            .raw("response", "{\"z\":1,\"a\":2}")
            .int("id", 3)
            .millis("latency_ms", Duration::from_micros(1500))
            .payload("bin", &Payload::binary(&b"\x00\x01\xff"[..]))
            .finish();
        assert_eq!(
            line,
            r#"{"type":"reply","event":"pi\"ng","response":{"z":1,"a":2},"id":3,"latency_ms":1.500,"bin_base64":"AAH/"}"#
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "reply");
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 * 3 + 3_723_045);
        assert_eq!(timestamp(t), "01:02:03.045");
        assert_eq!(latency(Duration::from_micros(420)), "0.42 ms");
        assert_eq!(latency(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(latency(Duration::from_millis(1200)), "1.20 s");
        assert_eq!(duration(Duration::from_secs(10)), "10s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
    }
}
