//! A small, allocation-free JSON scanner: just enough to read a Phoenix envelope once, validate
//! the payload and remember where it lies, without building a value tree.

use super::DecodeError;

/// Deepest nesting accepted in a payload: the most serde_json's default recursion limit admits,
/// so any payload that passes here can also be decoded by [`crate::Payload::decode`].
pub(crate) const MAX_DEPTH: usize = 127;

/// A JSON string found by the scanner: the byte range of its contents (without quotes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StrSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The contents hold at least one backslash escape and must be unescaped before use.
    pub(crate) escaped: bool,
}

pub(crate) struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The end of the run of bytes accepted by `plain` starting at `pos`, eight bytes at a time:
/// `flags` sets the top bit of every byte of a little-endian word that `plain` refuses, and must
/// be exact for the lowest such byte (the word tricks below only carry and borrow upwards).
#[inline(always)]
fn scan(
    buf: &[u8],
    mut pos: usize,
    flags: impl Fn(u64) -> u64,
    plain: impl Fn(u8) -> bool,
) -> usize {
    while let Some(chunk) = buf.get(pos..pos + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let flagged = flags(u64::from_le_bytes(bytes)) & HI;
        if flagged != 0 {
            return pos + (flagged.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while buf.get(pos).is_some_and(|&b| plain(b)) {
        pos += 1;
    }
    pos
}

/// The end of the run of plain string bytes (not `"`, `\\` or a control character; with
/// `ASCII`, not 0x80 or above either) starting at `pos`. A byte needs attention when it equals
/// `"` or `\\`, or is below 0x20, which the classic "has a zero byte" bit trick finds for a
/// whole word.
#[inline]
fn run<const ASCII: bool>(buf: &[u8], pos: usize) -> usize {
    scan(
        buf,
        pos,
        |v| {
            let quote = v ^ (LO * u64::from(b'"'));
            let backslash = v ^ (LO * u64::from(b'\\'));
            let flags = quote.wrapping_sub(LO) & !quote
                | backslash.wrapping_sub(LO) & !backslash
                | v.wrapping_sub(LO * 0x20) & !v;
            if ASCII { flags | v } else { flags }
        },
        |b| !(b == b'"' || b == b'\\' || b < 0x20 || (ASCII && b >= 0x80)),
    )
}

/// The end of the run of ASCII digits starting at `pos` (ids and timestamps are long). A byte
/// is a digit when subtracting `'0'` neither borrows nor sets its top bit, and adding `0x46`
/// (= 0x80 - 0x3a) does not set it either; a borrow or a carry only leaves a byte that is
/// itself flagged.
#[inline]
fn digit_run(buf: &[u8], pos: usize) -> usize {
    scan(
        buf,
        pos,
        |v| v.wrapping_sub(LO * 0x30) | v.wrapping_add(LO * 0x46),
        |b| b.is_ascii_digit(),
    )
}

/// Whether `b` is JSON white space. Compact JSON, as Phoenix sends it, has none: one comparison
/// settles most bytes.
#[inline(always)]
pub(crate) fn is_ws(b: u8) -> bool {
    b <= b' ' && matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Checks that `buf` is exactly one JSON value, optionally surrounded by white space.
pub(crate) fn validate_value(buf: &[u8]) -> Result<(), DecodeError> {
    let mut s = Scanner::new(buf);
    s.value()?;
    s.end()
}

/// What kind of JSON value starts with this byte, for error messages.
pub(crate) fn kind_name(b: Option<u8>) -> &'static str {
    match b {
        None => "end of input",
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(_) => "an invalid character",
    }
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to `pos`, a position an earlier scan returned.
    pub(crate) fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    fn syntax(&self, reason: &'static str) -> DecodeError {
        DecodeError::Syntax {
            offset: self.pos,
            reason,
        }
    }

    #[inline]
    pub(crate) fn skip_ws(&mut self) {
        while let Some(&b) = self.buf.get(self.pos)
            && is_ws(b)
        {
            self.pos += 1;
        }
    }

    /// The next byte after white space, without consuming it.
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.buf.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn bump(&mut self) {
        self.pos += 1;
    }

    /// Consumes `b` (after white space) or fails with `reason`.
    #[inline]
    pub(crate) fn expect(&mut self, b: u8, reason: &'static str) -> Result<(), DecodeError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(reason))
        }
    }

    /// Only white space may follow.
    pub(crate) fn end(&mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::Trailing { offset: self.pos })
        }
    }

    /// Reads the members of an object whose `{` has just been consumed, up to its `}`. For each
    /// member, `member` gets the key and its offset, and must read the value.
    pub(crate) fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, StrSpan, usize) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key_at = self.pos;
            let key = self.string()?;
            self.expect(b':', "expected ':' after object key")?;
            member(self, key, key_at)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax("expected ',' or '}'")),
            }
        }
    }

    /// Consumes the literal `null` if it comes next.
    #[inline]
    pub(crate) fn null(&mut self) -> Result<bool, DecodeError> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), DecodeError> {
        let end = self.pos + word.len();
        if self.buf.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.syntax("invalid literal"))
        }
    }

    /// Reads the string that starts here (on its `"`) if it is plain ASCII: no escape, no
    /// control character, no byte above 0x7f, as envelope fields almost always are. Returns
    /// the range of its contents; `None` leaves the position alone for [`Scanner::string`].
    #[inline]
    pub(crate) fn ascii_string(&mut self) -> Option<(usize, usize)> {
        debug_assert_eq!(self.buf.get(self.pos), Some(&b'"'));
        let start = self.pos + 1;
        let end = run::<true>(self.buf, start);
        if self.buf.get(end) == Some(&b'"') {
            self.pos = end + 1;
            Some((start, end))
        } else {
            None
        }
    }

    /// Reads a string starting at the next non-space byte, which must be `"`.
    #[inline]
    pub(crate) fn string(&mut self) -> Result<StrSpan, DecodeError> {
        if self.peek() != Some(b'"') {
            return Err(self.syntax("expected a string"));
        }
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Fast path: run over plain bytes.
            self.pos = run::<false>(self.buf, self.pos);
            match self.buf.get(self.pos) {
                Some(b'"') => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok(StrSpan {
                        start,
                        end,
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.buf.get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            for _ in 0..4 {
                                match self.buf.get(self.pos) {
                                    Some(b) if b.is_ascii_hexdigit() => self.pos += 1,
                                    _ => return Err(self.syntax("invalid \\u escape")),
                                }
                            }
                        }
                        _ => return Err(self.syntax("invalid escape")),
                    }
                }
                Some(_) => return Err(self.syntax("control character in string")),
                None => return Err(self.syntax("unterminated string")),
            }
        }
    }

    /// Skips the string that starts here (on its `"`), checked as [`Scanner::string`] checks
    /// it. Inlined into [`Scanner::value`] for the plain strings payloads are mostly made of;
    /// anything else takes the full path.
    #[inline(always)]
    fn skip_string(&mut self) -> Result<(), DecodeError> {
        let end = run::<false>(self.buf, self.pos + 1);
        if self.buf.get(end) == Some(&b'"') {
            self.pos = end + 1;
            Ok(())
        } else {
            self.string().map(drop)
        }
    }

    /// Skips an object key and the `:` after it.
    #[inline(always)]
    fn key(&mut self) -> Result<(), DecodeError> {
        if self.peek() != Some(b'"') {
            return Err(self.syntax("expected a string"));
        }
        self.skip_string()?;
        self.expect(b':', "expected ':' after object key")
    }

    fn number(&mut self) -> Result<(), DecodeError> {
        if self.buf.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.buf.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax("invalid number")),
        }
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !matches!(self.buf.get(self.pos), Some(b'0'..=b'9')) {
                return Err(self.syntax("invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.buf.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.buf.get(self.pos) {
                self.pos += 1;
            }
            if !matches!(self.buf.get(self.pos), Some(b'0'..=b'9')) {
                return Err(self.syntax("invalid number"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        self.pos = digit_run(self.buf, self.pos);
    }

    /// Reads and validates one value of any kind, returning its byte range.
    ///
    /// Iterative, with the container stack kept in a 128-bit set, so hostile nesting costs
    /// neither recursion nor allocation.
    pub(crate) fn value(&mut self) -> Result<(usize, usize), DecodeError> {
        self.skip_ws();
        let start = self.pos;
        // Bit i of `objects` is set when the container at depth i is an object.
        let mut objects: u128 = 0;
        let mut depth: usize = 0;
        // Whether the innermost open container is an object (bit `depth - 1` of `objects`).
        let mut in_object = false;
        'value: loop {
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    let is_object = self.buf.get(self.pos) == Some(&b'{');
                    if depth == MAX_DEPTH {
                        return Err(DecodeError::TooDeep {
                            limit: MAX_DEPTH,
                            offset: self.pos,
                        });
                    }
                    self.pos += 1;
                    if is_object {
                        objects |= 1u128 << depth;
                    } else {
                        objects &= !(1u128 << depth);
                    }
                    depth += 1;
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        depth -= 1;
                    } else {
                        in_object = is_object;
                        if is_object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => self.skip_string()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(self.syntax("expected a value")),
                None => return Err(self.syntax("unexpected end of input")),
            }
            // A value is complete: close containers or move to the next element.
            loop {
                if depth == 0 {
                    return Ok((start, self.pos));
                }
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if in_object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b) if b == if in_object { b'}' } else { b']' } => {
                        self.pos += 1;
                        depth -= 1;
                        in_object = depth > 0 && objects & (1u128 << (depth - 1)) != 0;
                    }
                    Some(_) => {
                        return Err(self.syntax(if in_object {
                            "expected ',' or '}'"
                        } else {
                            "expected ',' or ']'"
                        }));
                    }
                    None => return Err(self.syntax("unexpected end of input")),
                }
            }
        }
    }
}

/// Decodes the contents of a JSON string that holds escapes.
pub(crate) fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *raw.get(i + 1)?;
        i += 2;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw.get(i..i + 4)?)?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if raw.get(i..i + 2) != Some(b"\\u") {
                        return None;
                    }
                    let lo = hex4(raw.get(i + 2..i + 6)?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code)?
            }
            _ => return None,
        };
        let mut tmp = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
    }
    String::from_utf8(out).ok()
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

/// Appends `s` as a JSON string literal, escaping as `JSON.stringify` does (and so as
/// serde_json does): `"` and `\`, the short forms `\b \f \n \r \t`, other control characters as
/// `\u00xx` in lowercase hex; everything else verbatim.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    write_bytes_str(out, s.as_bytes());
}

/// The length of `bytes` written by [`write_bytes_str`], quotes included.
pub(crate) fn str_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
        + 2
}

/// [`write_str`] for text held as bytes (a [`crate::ByteStr`]'s, known to be UTF-8): escaping
/// only ever looks at ASCII bytes, so the text need not be checked again to be written.
pub(crate) fn write_bytes_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain_from..i).unwrap_or_default());
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            // Both indices are nibbles, below 16.
            #[allow(clippy::indexing_slicing)]
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(esc);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(bytes.get(plain_from..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        validate_value(s.as_bytes()).is_ok()
    }

    #[test]
    fn accepts_every_kind_of_value() {
        for s in [
            "null",
            "true",
            "false",
            "0",
            "-0.5e+10",
            "12E3",
            r#""a\"b\\c\/\u00e9""#,
            "[]",
            "{}",
            r#"{"a":[1,{"b":[]},"x"],"c":{}}"#,
            " [ 1 , 2 ] ",
        ] {
            assert!(ok(s), "{s}");
        }
    }

    #[test]
    fn rejects_malformed_values() {
        for s in [
            "",
            "nul",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":1,}",
            "{1:2}",
            "[}",
            "{]",
            "\"abc",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"a\u{1}b\"",
            "[1] x",
        ] {
            assert!(!ok(s), "{s:?} should be rejected");
        }
    }

    #[test]
    fn rejects_nesting_beyond_the_serde_limit_without_recursion() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            validate_value(deep.as_bytes()),
            Err(DecodeError::TooDeep { limit: 127, .. })
        ));
        let fits = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert!(ok(&fits));
        let v: serde_json::Value = serde_json::from_str(&fits).unwrap();
        assert!(v.is_array());
        let over = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(!ok(&over));
    }

    #[test]
    fn unescape_handles_surrogate_pairs_and_rejects_lone_ones() {
        assert_eq!(unescape(br"a\nb\u00e9\ud83d\ude00").unwrap(), "a\nbé😀");
        assert!(unescape(br"\ud83d").is_none());
        assert!(unescape(br"\ude00").is_none());
    }

    #[test]
    fn write_str_escapes_like_serde_json() {
        for s in [
            "plain",
            "quote\"back\\slash",
            "ctl\u{1}\u{1f}\n\t\r\u{8}\u{c}",
            "é/😀",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }
}

#[cfg(test)]
mod run_tests {
    use super::{digit_run, run};

    fn naive(buf: &[u8], mut pos: usize, ascii: bool) -> usize {
        while let Some(&b) = buf.get(pos) {
            if b == b'"' || b == b'\\' || b < 0x20 || (ascii && b >= 0x80) {
                break;
            }
            pos += 1;
        }
        pos
    }

    #[test]
    fn word_at_a_time_digit_run_matches_the_byte_loop() {
        // Every byte value at every offset of a word, after a run of digits, from every start.
        for stop in 0..=255u8 {
            for at in 0..20 {
                let mut buf: Vec<u8> = b"0123456789".iter().cycle().take(at).copied().collect();
                buf.push(stop);
                buf.extend_from_slice(b"987");
                for start in 0..buf.len() {
                    let naive = start
                        + buf[start..]
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .count();
                    assert_eq!(digit_run(&buf, start), naive, "{buf:?} from {start}");
                }
            }
        }
    }

    #[test]
    fn word_at_a_time_scan_matches_the_byte_loop() {
        // Every special byte at every offset of a word, after runs of plain ASCII, UTF-8 and
        // high bytes, from every start; with and without stopping at non-ASCII bytes.
        let fillers: [&[u8]; 4] = [
            b"abcdefghijklmnopqrstu",
            "héllo wörld ✓✓".as_bytes(),
            &[0x7f, 0x80, 0xff, 0x21, 0x5b, 0x5d, 0x1f + 1],
            b" ",
        ];
        for filler in fillers {
            for special in [b'"', b'\\', 0x00, 0x1f, 0x0a, 0x80, 0xc3, 0xff] {
                for at in 0..20 {
                    let mut buf: Vec<u8> = filler.iter().cycle().take(at).copied().collect();
                    buf.push(special);
                    buf.extend_from_slice(b"tail\"");
                    for start in 0..buf.len() {
                        let what = format!("{buf:?} from {start}");
                        assert_eq!(
                            run::<false>(&buf, start),
                            naive(&buf, start, false),
                            "{what}"
                        );
                        assert_eq!(run::<true>(&buf, start), naive(&buf, start, true), "{what}");
                    }
                }
            }
            let plain: Vec<u8> = filler.iter().cycle().take(37).copied().collect();
            assert_eq!(run::<false>(&plain, 0), plain.len());
            assert_eq!(run::<true>(&plain, 0), naive(&plain, 0, true));
        }
    }
}

#[cfg(test)]
mod validator_tests {
    use proptest::prelude::*;

    use super::validate_value;

    /// Valid JSON of a few levels: every kind of value, escapes, numbers with fractions and
    /// exponents, white space between tokens.
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9])?",
            "\"([a-zA-Z ~]|é|\\\\[nrtbf\"\\\\/]|\\\\u00[0-7][0-9a-f]){0,12}\"",
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let ws = || prop_oneof![Just(""), Just(""), Just(" "), Just("\n\t")];
            prop_oneof![
                prop::collection::vec((inner.clone(), ws()), 0..5).prop_map(|items| {
                    let items: Vec<_> = items.iter().map(|(v, w)| format!("{w}{v}{w}")).collect();
                    format!("[{}]", items.join(","))
                }),
                prop::collection::vec(("\"[a-z]{0,6}\"", inner, ws()), 0..5).prop_map(|members| {
                    let members: Vec<_> = members
                        .iter()
                        .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    /// One edit of `text`: a byte deleted, or one of the bytes JSON is made of inserted or
    /// substituted, so most results are invalid in some small way. Half the edits land on a
    /// structural byte (brackets, commas, colons, quotes), where the validator decides most.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let bytes = prop::sample::select(&b"{}[],:\"\\ tfn-.e0x\x01\x7f"[..]);
        let edit = (any::<prop::sample::Index>(), any::<bool>(), 0..3u8, bytes);
        (json(), edit).prop_map(|(text, (at, structural, op, b))| {
            let mut v = text.into_bytes();
            let marks: Vec<usize> = (0..v.len())
                .filter(|&i| b"{}[],:\"".contains(&v[i]))
                .collect();
            let i = if structural && !marks.is_empty() {
                marks[at.index(marks.len())]
            } else {
                at.index(v.len() + 1)
            };
            match op {
                0 if i < v.len() => {
                    v.remove(i);
                }
                1 if i < v.len() => v[i] = b,
                _ => v.insert(i, b),
            }
            v
        })
    }

    fn serde_accepts(bytes: &[u8]) -> Option<bool> {
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Some(true),
            // A syntactically valid number beyond f64 is serde_json's limit, not JSON's.
            Err(e) if e.to_string().contains("out of range") => None,
            Err(_) => Some(false),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn valid_json_is_accepted(text in json()) {
            prop_assert!(validate_value(text.as_bytes()).is_ok(), "{}", text);
        }

        #[test]
        fn accepts_exactly_what_serde_json_accepts(bytes in mutated()) {
            if let Some(serde) = serde_accepts(&bytes) {
                prop_assert_eq!(
                    validate_value(&bytes).is_ok(),
                    serde,
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
}
