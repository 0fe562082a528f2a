//! JSON as Phoenix's encoder (Jason) writes it back: object keys sorted (Erlang orders small
//! maps by key), no white space, control characters escaped as `\u00XX` with upper-case hex.
//!
//! Known differences from Jason, all outside what the traces use: maps with more than 32 keys
//! are hash-ordered in Erlang but sorted here; floats print in serde_json's shortest form (`1e21`
//! where Erlang prints `1.0e21`); integers beyond 64 bits lose precision.

use bytes::Bytes;
use phx_proto::Payload;
use serde_json::Value;

/// Writes `v` the way Jason encodes the decoded term.
pub(super) fn write(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write(out, v);
            }
            out.push(b'}');
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The encoded text of `v`.
pub(super) fn to_bytes(v: &Value) -> Bytes {
    let mut out = Vec::new();
    write(&mut out, v);
    Bytes::from(out)
}

/// `v` as a JSON payload.
pub(super) fn payload(v: &Value) -> Payload {
    // The writer only produces well-formed JSON, so the check cannot fail; the fallback keeps
    // this free of panics all the same.
    Payload::from_json(to_bytes(v)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(to_bytes(&v).to_vec()).unwrap()
    }

    #[test]
    fn sorts_keys_recursively_and_drops_white_space() {
        assert_eq!(
            canon(r#"{ "n": 1, "body": "hello", "z": {"b": [1, 2.5, null], "a": true} }"#),
            r#"{"body":"hello","n":1,"z":{"a":true,"b":[1,2.5,null]}}"#
        );
    }

    #[test]
    fn escapes_like_jason() {
        assert_eq!(
            canon(r#""a\"b\\c\n\u0001\u001f/é\u2028""#),
            "\"a\\\"b\\\\c\\n\\u0001\\u001F/é\u{2028}\""
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(canon(r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
    }

    #[test]
    fn floats_keep_a_fraction() {
        assert_eq!(canon("[1.0, 0.5, -3]"), "[1.0,0.5,-3]");
    }
}
