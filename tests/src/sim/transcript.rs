//! The transcript of a run: one line per input, output, fault and check, in the order they
//! happened, each stamped with the elapsed virtual time and who acted.
//!
//! ```text
//! +  12.034512s c1      > n7 ["3","9","room:b","ping",{"k":4}]
//! +  12.051230s srv     < n7 ["3","9","room:b","ping",{"k":4}]
//! +  12.051230s srv     > n7 ["3","9","room:b","phx_reply",{"response":{"k":4},"status":"ok"}]
//! +  12.070001s c1      < n7 ["3","9","room:b","phx_reply",{"response":{"k":4},"status":"ok"}]
//! +  12.070001s c1      event Replied ch#1.0 ref 9 ok {"k":4}
//! ```
//!
//! Text frames are shown as their text, binary frames as `b:` and hex. Instants are shown as
//! elapsed time, never as raw `Instant`s, so the same seed gives the same bytes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use phx_proto::{ChannelClosed, ChannelError, Event, Frame, Message, Payload, PresenceChange};

use super::clock::{Clock, Elapsed};

/// The lines of a run, kept only when asked for (formatting costs more than simulating).
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    out: Option<String>,
    lines: usize,
}

impl Transcript {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            out: enabled.then(String::new),
            lines: 0,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.out.is_some()
    }

    pub(crate) fn push(&mut self, at: Duration, who: &str, what: &str) {
        if let Some(out) = &mut self.out {
            let _ = writeln!(out, "{} {who:<7} {what}", Elapsed(at));
            self.lines += 1;
        }
    }

    pub(crate) fn text(&self) -> Option<&str> {
        self.out.as_deref()
    }

    pub(crate) fn take(&mut self) -> Option<String> {
        self.out.take()
    }
}

/// Appends a transcript line, formatting it only when the transcript is on.
macro_rules! note {
    ($sim:expr, $who:expr, $($arg:tt)*) => {
        if $sim.transcript.enabled() {
            let what = format!($($arg)*);
            let at = $sim.clock.elapsed();
            $sim.transcript.push(at, &$who, &what);
        }
    };
}
pub(crate) use note;

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A frame as text (text frames) or `b:` + hex (binary frames, and text frames that are not
/// UTF-8, as `t:` + hex).
pub(crate) fn frame(f: &Frame) -> String {
    match f {
        Frame::Text(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => format!("t:{}", hex(b)),
        },
        Frame::Binary(b) => format!("b:{}", hex(b)),
    }
}

/// A payload as its JSON text, or `b:` + hex.
pub(crate) fn payload(p: &Payload) -> String {
    match p.as_json_str() {
        Some(s) => s.to_owned(),
        None => format!("b:{}", hex(p.as_bytes())),
    }
}

fn opt(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("{s:?}"),
        None => "null".to_owned(),
    }
}

/// A decoded message as `[join_ref, ref, topic, event, payload]`.
pub(crate) fn message(m: &Message) -> String {
    format!(
        "[{}, {}, {:?}, {:?}, {}]",
        opt(m.join_ref.as_deref()),
        opt(m.ref_.as_deref()),
        m.topic.as_str(),
        m.event.as_str(),
        payload(&m.payload)
    )
}

fn at(clock: &Clock, t: Option<Instant>) -> String {
    match t {
        Some(t) => Elapsed(clock.since_epoch(t)).to_string(),
        None => "never".to_owned(),
    }
}

/// An event, with instants shown as elapsed time.
pub(crate) fn event(clock: &Clock, e: &Event) -> String {
    match e {
        Event::Connecting { conn, attempt } => format!("Connecting {conn} attempt {attempt}"),
        Event::Connected { conn } => format!("Connected {conn}"),
        Event::Disconnected {
            reason,
            reconnect_at,
            reconnect_delay,
        } => format!(
            "Disconnected ({reason}) reconnect at {} after {reconnect_delay:?}",
            at(clock, *reconnect_at)
        ),
        Event::ReconnectGaveUp { attempts } => format!("ReconnectGaveUp after {attempts}"),
        Event::Heartbeat { rtt } => format!("Heartbeat rtt {rtt:?}"),
        Event::Joined {
            channel,
            response,
            rejoin,
        } => format!("Joined {channel} rejoin={rejoin} {}", payload(response)),
        Event::JoinFailed {
            channel,
            status,
            response,
            retry_at,
        } => format!(
            "JoinFailed {channel} {status} {} retry at {}",
            payload(response),
            at(clock, *retry_at)
        ),
        Event::JoinTimedOut { channel, retry_at } => {
            format!("JoinTimedOut {channel} retry at {}", at(clock, *retry_at))
        }
        Event::ChannelErrored {
            channel,
            reason,
            retry_at,
        } => {
            let why = match reason {
                ChannelError::Server(p) => format!("server {}", payload(p)),
                ChannelError::ConnectionLost => "connection lost".to_owned(),
                other => format!("{other:?}"),
            };
            format!(
                "ChannelErrored {channel} ({why}) retry at {}",
                at(clock, *retry_at)
            )
        }
        Event::Left { channel, confirmed } => format!("Left {channel} confirmed={confirmed}"),
        Event::ChannelClosed { channel, reason } => {
            let why = match reason {
                ChannelClosed::Server => "server",
                ChannelClosed::Disconnected => "disconnected",
                _ => "other",
            };
            format!("ChannelClosed {channel} ({why})")
        }
        Event::Message {
            channel,
            message: m,
        } => format!("Message {channel} {}", message(m)),
        Event::Replied {
            channel,
            push_ref,
            status,
            response,
        } => format!(
            "Replied {channel} ref {push_ref} {status} {}",
            payload(response)
        ),
        Event::PushTimedOut { channel, push_ref } => {
            format!("PushTimedOut {channel} ref {push_ref}")
        }
        Event::PushFailed {
            channel,
            push_ref,
            reason,
        } => format!("PushFailed {channel} ref {push_ref} ({reason:?})"),
        Event::Presence { channel, change } => {
            let what = match change {
                PresenceChange::Join { key, joined, .. } => {
                    format!("join {key:?} +{}", joined.metas.len())
                }
                PresenceChange::Leave { key, left, current } => format!(
                    "leave {key:?} -{} ({} left)",
                    left.metas.len(),
                    current.metas.len()
                ),
                PresenceChange::Sync => "sync".to_owned(),
                other => format!("{other:?}"),
            };
            format!("Presence {channel} {what}")
        }
        Event::Unexpected(u) => format!("Unexpected {u:?}"),
        other => format!("{other:?}"),
    }
}
