//! Push commands typed on stdin: `EVENT [JSON]` lines.

use std::io::BufRead;

use tokio::sync::mpsc;

use crate::format::Json;

/// Reads stdin lines on a thread of its own and hands them over; the receiver yields `None` at
/// the end of input. A blocking read cannot be cancelled, so the thread is simply left behind
/// when phx exits. Bytes that are not UTF-8 are replaced, never fatal.
pub(crate) fn lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    let reader = move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            }
        }
    };
    if std::thread::Builder::new()
        .name("phx-stdin".to_owned())
        .spawn(reader)
        .is_err()
    {
        // No thread, no input: the receiver reports the end of input at once.
        return mpsc::channel(1).1;
    }
    rx
}

/// A push read from a line: its event and payload (`{}` when the line has only the event).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Input {
    /// The event.
    pub(crate) event: String,
    /// The payload.
    pub(crate) payload: Json,
}

/// Parses `EVENT [JSON]`; `Ok(None)` for a blank line.
///
/// # Errors
/// What is wrong with the line, and the expected form.
pub(crate) fn parse(line: &str) -> Result<Option<Input>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (event, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(e, r)| (e, r.trim()));
    let payload = if rest.is_empty() {
        Json::parse("{}")
    } else {
        Json::parse(rest)
    };
    match payload {
        Ok(payload) => Ok(Some(Input {
            event: event.to_owned(),
            payload,
        })),
        Err(e) => Err(format!(
            "the payload is not valid JSON ({e}); lines are EVENT [JSON], such as ping {{\"a\":1}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(event: &str, json: &str) -> Option<Input> {
        Some(Input {
            event: event.to_owned(),
            payload: Json::parse(json).unwrap(),
        })
    }

    #[test]
    fn lines_are_an_event_and_optional_json() {
        assert_eq!(parse("ping {\"a\": 1}"), Ok(input("ping", "{\"a\":1}")));
        assert_eq!(parse("  ping\t[1, 2]  \r"), Ok(input("ping", "[1,2]")));
        assert_eq!(parse("noreply"), Ok(input("noreply", "{}")));
        assert_eq!(parse("   "), Ok(None));
        let err = parse("ping {oops}").unwrap_err();
        assert!(err.contains("line 1 column 2"), "{err}");
        assert!(err.contains("EVENT [JSON]"), "{err}");
    }
}
