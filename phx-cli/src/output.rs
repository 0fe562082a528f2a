//! Everything phx prints: JSON lines by default, text for humans with `--pretty`.
//!
//! In JSON mode every stdout line is one JSON object with a `"type"` field, notices included,
//! so a script reads a single stream. In pretty mode messages and replies go to stdout and the
//! connection notices to stderr, each line starting with a UTC timestamp; colour is used when
//! the stream is a terminal (or `--color always`). Errors always go to stderr as
//! `phx: error: …`.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, SystemTime};

use phx_tokio::proto::PresenceEntry;
use phx_tokio::{Message, Payload, Reply};

use crate::args::{Color, OutputArgs};
use crate::error;
use crate::format::{self, Line};

/// An ANSI style.
#[derive(Debug, Clone, Copy)]
enum Style {
    Dim,
    Bold,
    Red,
    Green,
    Yellow,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Self::Dim => "2",
            Self::Bold => "1",
            Self::Red => "31",
            Self::Green => "32",
            Self::Yellow => "33",
            Self::Cyan => "1;36",
        }
    }
}

/// Wraps `text` in `style` when `on`.
fn paint(on: bool, style: Style, text: &str) -> String {
    if on {
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    } else {
        text.to_owned()
    }
}

/// Whether automatic colour is on for a stream.
fn auto_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Writes one line to stdout. A closed pipe (`phx join … | head -1`) ends phx quietly.
fn stdout_line(line: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("phx: error: cannot write to stdout: {e}");
        std::process::exit(i32::from(error::FAILED));
    }
}

/// Writes one line to stderr; there is nobody left to tell if that fails.
fn stderr_line(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Prints `phx: error: message` on stderr.
pub(crate) fn error_line(message: &str) {
    let color = auto_color(io::stderr().is_terminal());
    stderr_line(&format!(
        "phx: {} {message}",
        paint(color, Style::Red, "error:")
    ));
}

/// The printer of one command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pretty: bool,
    color_out: bool,
    color_err: bool,
}

impl Out {
    /// The printer the options ask for.
    pub(crate) fn new(args: &OutputArgs) -> Self {
        let (color_out, color_err) = match args.color {
            Color::Always => (true, true),
            Color::Never => (false, false),
            Color::Auto => (
                auto_color(io::stdout().is_terminal()),
                auto_color(io::stderr().is_terminal()),
            ),
        };
        Self {
            pretty: args.pretty,
            color_out: args.pretty && color_out,
            color_err: args.pretty && color_err,
        }
    }

    fn stamp(color: bool) -> String {
        paint(color, Style::Dim, &format::timestamp(SystemTime::now()))
    }

    /// A connection or channel notice: a JSON line, or a timestamped line on stderr.
    fn notice(&self, line: Line, text: &str) {
        if self.pretty {
            let star = paint(self.color_err, Style::Yellow, "*");
            stderr_line(&format!("{} {star} {text}", Self::stamp(self.color_err)));
        } else {
            stdout_line(&line.finish());
        }
    }

    /// Connected (or reconnected) to `url`, secrets redacted.
    pub(crate) fn connected(&self, url: &str) {
        self.notice(
            Line::new("connected").str("url", url),
            &format!("connected to {url}"),
        );
    }

    /// The connection dropped; `delay` until the next attempt.
    pub(crate) fn disconnected(&self, reason: &str, delay: Option<Duration>) {
        let mut line = Line::new("disconnected").str("reason", reason);
        let text = match delay {
            Some(d) => {
                line = line.int(
                    "reconnect_in_ms",
                    u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                );
                format!(
                    "disconnected: {reason}; reconnecting in {}",
                    format::duration(d)
                )
            }
            None => format!("disconnected: {reason}"),
        };
        self.notice(line, &text);
    }

    /// The channel joined (`rejoin`: again, after a reconnect or a crash).
    pub(crate) fn joined(&self, topic: &str, response: &Payload, rejoin: bool) {
        let (kind, verb) = if rejoin {
            ("rejoined", "rejoined")
        } else {
            ("joined", "joined")
        };
        self.notice(
            Line::new(kind)
                .str("topic", topic)
                .payload("response", response),
            &format!("{verb} {topic} {}", format::payload_text(response)),
        );
    }

    /// The server channel crashed (`phx_error`); it rejoins by itself.
    pub(crate) fn channel_error(&self, topic: &str, reason: &Payload) {
        self.notice(
            Line::new("channel_error")
                .str("topic", topic)
                .payload("reason", reason),
            &format!(
                "{topic} crashed on the server {}; rejoining",
                format::payload_text(reason)
            ),
        );
    }

    /// A rejoin was refused or timed out; it is retried.
    pub(crate) fn rejoin_failed(&self, topic: &str, error: &str) {
        self.notice(
            Line::new("rejoin_failed")
                .str("topic", topic)
                .str("error", error),
            &format!("rejoining {topic} failed: {error}; retrying"),
        );
    }

    /// `missed` messages or events were dropped because phx fell behind.
    pub(crate) fn lagged(&self, missed: u64) {
        self.notice(
            Line::new("lagged").int("missed", missed),
            &format!("{missed} messages dropped: phx could not print them fast enough"),
        );
    }

    /// The server closed the channel.
    pub(crate) fn closed(&self, topic: &str) {
        self.notice(
            Line::new("closed").str("topic", topic),
            &format!("the server closed {topic}"),
        );
    }

    /// A message from the server.
    pub(crate) fn message(&self, topic: &str, message: &Message) {
        if self.pretty {
            stdout_line(&format!(
                "{} {} {}",
                Self::stamp(self.color_out),
                paint(self.color_out, Style::Cyan, message.event.as_str()),
                format::payload_text(&message.payload)
            ));
        } else {
            stdout_line(
                &Line::new("message")
                    .str("topic", topic)
                    .str("event", message.event.as_str())
                    .payload("payload", &message.payload)
                    .finish(),
            );
        }
    }

    /// What a push is called in pretty output: `#3 ping` or `ping`.
    fn push_name(&self, id: Option<u64>, event: &str) -> String {
        let event = paint(self.color_out, Style::Bold, event);
        match id {
            Some(id) => format!("#{id} {event}"),
            None => event,
        }
    }

    /// A reply to push number `id` (`None` for `phx push`).
    pub(crate) fn reply(
        &self,
        id: Option<u64>,
        topic: &str,
        event: &str,
        reply: &Reply,
        latency: Duration,
    ) {
        if self.pretty {
            let style = if reply.is_ok() {
                Style::Green
            } else {
                Style::Red
            };
            stdout_line(&format!(
                "{} {} {} {} ({}) {}",
                Self::stamp(self.color_out),
                self.push_name(id, event),
                paint(self.color_out, Style::Dim, "->"),
                paint(self.color_out, style, reply.status.as_str()),
                format::latency(latency),
                format::payload_text(&reply.response)
            ));
        } else {
            let mut line = Line::new("reply");
            if let Some(id) = id {
                line = line.int("id", id);
            }
            stdout_line(
                &line
                    .str("topic", topic)
                    .str("event", event)
                    .str("status", reply.status.as_str())
                    .payload("response", &reply.response)
                    .millis("latency_ms", latency)
                    .finish(),
            );
        }
    }

    /// Push number `id` got no reply: it timed out or failed.
    pub(crate) fn push_error(
        &self,
        id: Option<u64>,
        topic: &str,
        event: &str,
        error: &str,
        latency: Duration,
    ) {
        if self.pretty {
            stdout_line(&format!(
                "{} {} {} {} ({})",
                Self::stamp(self.color_out),
                self.push_name(id, event),
                paint(self.color_out, Style::Dim, "->"),
                paint(self.color_out, Style::Red, error),
                format::latency(latency),
            ));
        } else {
            let mut line = Line::new("push_error");
            if let Some(id) = id {
                line = line.int("id", id);
            }
            stdout_line(
                &line
                    .str("topic", topic)
                    .str("event", event)
                    .str("error", error)
                    .millis("latency_ms", latency)
                    .finish(),
            );
        }
    }

    /// A stdin line that could not be pushed.
    pub(crate) fn input_error(&self, input: &str, error: &str) {
        if self.pretty {
            let label = paint(self.color_err, Style::Red, "cannot push");
            stderr_line(&format!(
                "{} {label} {}: {error}",
                Self::stamp(self.color_err),
                format::quote(input)
            ));
        } else {
            stdout_line(
                &Line::new("input_error")
                    .str("line", input)
                    .str("error", error)
                    .finish(),
            );
        }
    }

    /// A presence key joined (pretty output only; JSON output prints the list on sync).
    pub(crate) fn presence_join(&self, key: &str) {
        if self.pretty {
            let plus = paint(self.color_out, Style::Green, "+");
            stdout_line(&format!(
                "{} {plus} {key} joined",
                Self::stamp(self.color_out)
            ));
        }
    }

    /// A presence key lost its last meta (pretty output only).
    pub(crate) fn presence_leave(&self, key: &str) {
        if self.pretty {
            let minus = paint(self.color_out, Style::Red, "-");
            stdout_line(&format!(
                "{} {minus} {key} left",
                Self::stamp(self.color_out)
            ));
        }
    }

    /// Everyone present on `topic`, after a sync.
    pub(crate) fn presence(&self, topic: &str, list: &[(String, PresenceEntry)]) {
        if self.pretty {
            let header = format!("{topic}: {} present", list.len());
            stdout_line(&format!(
                "{} {}",
                Self::stamp(self.color_out),
                paint(self.color_out, Style::Bold, &header)
            ));
            let width = list.iter().map(|(k, _)| k.chars().count()).max();
            for (key, entry) in list {
                for (i, meta) in entry.metas.iter().enumerate() {
                    let name = if i == 0 { key.as_str() } else { "" };
                    let pad = width.unwrap_or(0);
                    stdout_line(&format!(
                        "  {} {}",
                        paint(self.color_out, Style::Cyan, &format!("{name:pad$}")),
                        meta_text(meta)
                    ));
                }
            }
        } else {
            let mut presences = String::from("{");
            for (i, (key, entry)) in list.iter().enumerate() {
                if i > 0 {
                    presences.push(',');
                }
                presences.push_str(&format::quote(key));
                presences.push(':');
                presences.push_str(&entry.to_value().to_string());
            }
            presences.push('}');
            stdout_line(
                &Line::new("presence")
                    .str("topic", topic)
                    .raw("presences", &presences)
                    .finish(),
            );
        }
    }
}

/// A presence meta for humans: without Phoenix's bookkeeping refs.
fn meta_text(meta: &serde_json::Value) -> String {
    match meta {
        serde_json::Value::Object(fields) => {
            let mut fields = fields.clone();
            fields.remove("phx_ref");
            fields.remove("phx_ref_prev");
            serde_json::Value::Object(fields).to_string()
        }
        other => other.to_string(),
    }
}
