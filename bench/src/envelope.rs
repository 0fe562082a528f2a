//! The cheapest correct V2 envelope decode, for baseline (a'): topic and event borrowed from
//! the frame, the payload left as raw JSON (its end found by a structural skip that tracks
//! strings and nesting, no value built), refs borrowed. Binary frames are split by their
//! length bytes.

/// A decoded envelope, every field borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The join reference (the JSON string's contents, escapes left as sent).
    pub join_ref: Option<&'a str>,
    /// The message reference.
    pub ref_: Option<&'a str>,
    /// The topic.
    pub topic: &'a str,
    /// The event.
    pub event: &'a str,
    /// The payload: raw JSON for a text frame, raw bytes for a binary one.
    pub payload: &'a [u8],
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// Skips a JSON string starting at `i` (on the quote); the index after its closing quote.
#[inline]
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        // Runs of plain bytes go by in one search.
        i += b.get(i..)?.iter().position(|&c| c == b'"' || c == b'\\')?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// Skips one JSON value starting at `i`; the index after it. Structural only: strings and
/// nesting are tracked, scalars are not checked.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                // Jump to the next byte that matters.
                j += b
                    .get(j..)?
                    .iter()
                    .position(|&c| matches!(c, b'"' | b'{' | b'[' | b'}' | b']'))?;
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                }
                j += 1;
            }
        }
        _ => {
            let len = b[i..]
                .iter()
                .position(|&c| matches!(c, b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(b.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

/// A string or null field; the index after it.
fn opt_str(s: &str, i: usize) -> Option<(Option<&str>, usize)> {
    let b = s.as_bytes();
    let i = ws(b, i);
    if b.get(i..i + 4) == Some(b"null") {
        return Some((None, i + 4));
    }
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = skip_string(b, i)?;
    Some((Some(s.get(i + 1..end - 1)?), end))
}

fn comma(b: &[u8], i: usize) -> Option<usize> {
    let i = ws(b, i);
    (b.get(i) == Some(&b',')).then_some(i + 1)
}

/// Decodes a V2 text frame `[join_ref, ref, topic, event, payload]`.
pub fn decode_text(s: &str) -> Option<Envelope<'_>> {
    let b = s.as_bytes();
    let i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let (join_ref, i) = opt_str(s, i + 1)?;
    let (ref_, i) = opt_str(s, comma(b, i)?)?;
    let (topic, i) = opt_str(s, comma(b, i)?)?;
    let (event, i) = opt_str(s, comma(b, i)?)?;
    let start = ws(b, comma(b, i)?);
    let end = skip_value(b, start)?;
    let close = ws(b, end);
    if b.get(close) != Some(&b']') || ws(b, close + 1) != b.len() {
        return None;
    }
    Some(Envelope {
        join_ref,
        ref_,
        topic: topic?,
        event: event?,
        payload: &b[start..end],
    })
}

/// Decodes a V2 binary frame from a server: push (0), reply (1, the status in `event`) or
/// broadcast (2).
pub fn decode_binary(b: &[u8]) -> Option<Envelope<'_>> {
    fn text(r: &[u8]) -> Option<&str> {
        std::str::from_utf8(r).ok()
    }
    match *b.first()? {
        0 => {
            let (jl, tl, el) = (
                *b.get(1)? as usize,
                *b.get(2)? as usize,
                *b.get(3)? as usize,
            );
            let mut i = 4;
            let join_ref = text(b.get(i..i + jl)?)?;
            i += jl;
            let topic = text(b.get(i..i + tl)?)?;
            i += tl;
            let event = text(b.get(i..i + el)?)?;
            i += el;
            Some(Envelope {
                join_ref: Some(join_ref),
                ref_: None,
                topic,
                event,
                payload: &b[i..],
            })
        }
        1 => {
            let lens = b.get(1..5)?;
            let mut i = 5;
            let mut field = |len: u8| {
                let f = text(b.get(i..i + len as usize)?);
                i += len as usize;
                f
            };
            let join_ref = field(lens[0])?;
            let ref_ = field(lens[1])?;
            let topic = field(lens[2])?;
            let status = field(lens[3])?;
            Some(Envelope {
                join_ref: Some(join_ref),
                ref_: Some(ref_),
                topic,
                event: status,
                payload: b.get(i..)?,
            })
        }
        2 => {
            let (tl, el) = (*b.get(1)? as usize, *b.get(2)? as usize);
            let topic = text(b.get(3..3 + tl)?)?;
            let event = text(b.get(3 + tl..3 + tl + el)?)?;
            Some(Envelope {
                join_ref: None,
                ref_: None,
                topic,
                event,
                payload: &b[3 + tl + el..],
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{FLOOD_EVENT, FLOOD_JSON, flood_binary, flood_frame};

    #[test]
    fn decodes_what_the_server_floods() {
        let text = flood_frame("bench:0", false);
        let e = decode_text(std::str::from_utf8(text.as_bytes()).unwrap()).unwrap();
        assert_eq!((e.topic, e.event), ("bench:0", FLOOD_EVENT));
        assert_eq!(e.payload, FLOOD_JSON.as_bytes());
        let bin = flood_frame("bench:0", true);
        let e = decode_binary(bin.as_bytes()).unwrap();
        assert_eq!((e.topic, e.event), ("bench:0", FLOOD_EVENT));
        assert_eq!(e.payload, flood_binary().as_slice());
    }

    #[test]
    fn nested_payloads_strings_and_malformed_envelopes() {
        let e =
            decode_text(r#"["1","2","t:1","phx_reply",{"a":[1,{"b":"]}"}],"s":"x\"y"}]"#).unwrap();
        assert_eq!(e.payload, br#"{"a":[1,{"b":"]}"}],"s":"x\"y"}"#);
        assert_eq!((e.join_ref, e.ref_), (Some("1"), Some("2")));
        assert!(decode_text(r#"[null,null,"t","e",{"a":1},5]"#).is_none());
        assert!(decode_text(r#"[null,null,"t","e"]"#).is_none());
        assert!(decode_text(r#"[null,null,"t","e",{"a":1}"#).is_none());
        assert!(decode_text(r#"{"topic":"t"}"#).is_none());
    }
}
