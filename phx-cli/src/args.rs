//! Command-line arguments (clap derive) and their parsers.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::format;

const ABOUT: &str = "phx: a command-line Phoenix Channels client";

const EXAMPLES: &str = "\
Examples:
  phx serve
      the bundled test server on ws://127.0.0.1:4000/socket (token: secret)
  phx join ws://localhost:4000/socket room:lobby --token secret
      print room:lobby's messages; type `ping {\"a\":1}` to push
  phx push ws://localhost:4000/socket room:lobby ping '{\"hello\":\"world\"}' --token secret
      push once, print the reply, exit 0 on an ok reply
  phx presence ws://localhost:4000/socket presence:lobby --token secret --join-param user=alice
      print who is present on every change

Exit codes:
  0  success (join: end of input or Ctrl-C; presence: Ctrl-C)
  1  error reply, push timeout or failure; the channel ended unexpectedly
  2  usage: bad arguments, malformed JSON, KEY=VALUE or URL
  3  could not connect: refused (HTTP 403...), unreachable, timed out, TLS
  4  the join was refused (no such topic, unauthorized) or timed out

Secrets: --param values and --token never appear in phx's output; the URL it shows is
redacted (token=<redacted>). PHX_TOKEN can hold the token instead of the command line.";

const JOIN_HELP: &str = "\
Input: every stdin line `EVENT [JSON]` is pushed to the topic (payload {} when omitted).
Pushes run concurrently; each reply is printed with its latency and the push's id (its line
number among the pushes). At the end of input phx waits for the outstanding replies, leaves
and exits 0. Ctrl-C leaves and exits 0 at once. --no-stdin only listens.

Output: one JSON object per line on stdout, told apart by \"type\":
  connected     {\"type\":\"connected\",\"url\":URL}      (secrets redacted; again after reconnects)
  joined        {\"type\":\"joined\",\"topic\":T,\"response\":R}
  message       {\"type\":\"message\",\"topic\":T,\"event\":E,\"payload\":P}
  reply         {\"type\":\"reply\",\"id\":N,\"topic\":T,\"event\":E,\"status\":S,\"response\":R,
                 \"latency_ms\":F}
  push_error    {\"type\":\"push_error\",\"id\":N,\"topic\":T,\"event\":E,\"error\":TEXT,\"latency_ms\":F}
  input_error   {\"type\":\"input_error\",\"line\":TEXT,\"error\":TEXT}
  disconnected  {\"type\":\"disconnected\",\"reason\":TEXT,\"reconnect_in_ms\":N}
  rejoined      {\"type\":\"rejoined\",\"topic\":T,\"response\":R}
  channel_error {\"type\":\"channel_error\",\"topic\":T,\"reason\":R}   (the server channel crashed)
  rejoin_failed {\"type\":\"rejoin_failed\",\"topic\":T,\"error\":TEXT}
  lagged        {\"type\":\"lagged\",\"missed\":N}      (phx could not print fast enough)
  closed        {\"type\":\"closed\",\"topic\":T}       (the server closed the channel: exit 1)
Binary payloads appear as \"payload_base64\" / \"response_base64\".
With --pretty, messages and replies are printed as text on stdout and the connection notices
(connected, disconnected, rejoined...) on stderr.";

const PUSH_HELP: &str = "\
Prints the reply as one JSON line, {\"type\":\"reply\",\"topic\":T,\"event\":E,\"status\":S,
\"response\":R,\"latency_ms\":F}, or {\"type\":\"push_error\",...,\"error\":TEXT} when there is no reply
(text with --pretty). Exits 0 on an ok reply, 1 on an error or other
status, a timeout or a failed push: handy in scripts and health checks.";

const PRESENCE_HELP: &str = "\
Joins TOPIC with presence tracking and prints everyone present after every sync:
{\"type\":\"presence\",\"topic\":T,\"presences\":{KEY:{\"metas\":[...]},...}} per line, or a
readable list with --pretty (joins and leaves too). Runs until Ctrl-C. On the bundled test
server, presence:* topics track the `user` join param: --join-param user=alice.";

const SERVE_HELP: &str = "\
Prints the socket URL (ws://HOST:PORT/socket) on the first line of stdout, then serves until
Ctrl-C. Clients must send the token `secret` (--token secret or --param token=secret). Topics:
room:* (events ping, error_reply, custom_status, noreply, slow {\"ms\":N}, shout, push_me
{\"event\":E}, broadcast_from, flood {\"n\":N}, bin, crash, stop, disconnect_me; room:forbidden
refuses joins) and presence:* (tracks the `user` join param, `update` replaces the meta).";

/// `phx`: join Phoenix channels, push events and watch presence from a terminal or a script.
#[derive(Debug, Parser)]
#[command(name = "phx", version, about = ABOUT, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Join a topic, print its messages, push the `EVENT [JSON]` lines read from stdin
    #[command(after_help = JOIN_HELP)]
    Join(JoinArgs),
    /// Join a topic, push one event, print the reply; the exit code tells how it went
    #[command(after_help = PUSH_HELP)]
    Push(PushArgs),
    /// Join a topic with presence tracking and print the presence list on every change
    #[command(after_help = PRESENCE_HELP)]
    Presence(PresenceArgs),
    /// Run the bundled Phoenix-compatible test server
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
}

/// Where to connect, how to authenticate, and what to join.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// Socket URL, such as ws://localhost:4000/socket (http(s):// works; /websocket is appended)
    pub(crate) url: String,
    /// Topic to join, such as room:lobby
    pub(crate) topic: String,
    /// Connect param for the URL query, repeatable; values are treated as secrets and never shown
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) params: Vec<(String, String)>,
    /// Auth token, sent in the Sec-WebSocket-Protocol header (Phoenix 1.8 `auth_token: true`)
    #[arg(long, value_name = "TOKEN", env = "PHX_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Join payload (JSON), such as '{"user":"alice"}'
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(crate) payload: Option<format::Json>,
    /// Adds a string field to the join payload object, repeatable
    #[arg(long = "join-param", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) join_params: Vec<(String, String)>,
    /// Protocol version: 2 (JSON arrays, Phoenix's default) or 1 (JSON objects)
    #[arg(long, value_enum, value_name = "1|2", default_value = "2")]
    pub(crate) vsn: Vsn,
    /// Longest wait for each step: the connection, the join, a push's reply (such as 5s, 500ms)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

/// How results are printed.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print for humans: UTC timestamps, event names, colour when the output is a terminal
    #[arg(long)]
    pub(crate) pretty: bool,
    /// When --pretty uses colour
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub(crate) color: Color,
}

/// `phx join`.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// Where and what to join.
    #[command(flatten)]
    pub(crate) target: Target,
    /// Do not read stdin: only print what arrives, until Ctrl-C
    #[arg(long)]
    pub(crate) no_stdin: bool,
    /// Output format.
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// `phx push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// Where and what to join.
    #[command(flatten)]
    pub(crate) target: Target,
    /// Event to push, such as ping
    pub(crate) event: String,
    /// Payload (JSON); {} when omitted
    #[arg(value_name = "JSON", value_parser = parse_json)]
    pub(crate) json: Option<format::Json>,
    /// Output format.
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// `phx presence`.
#[derive(Debug, Args)]
pub(crate) struct PresenceArgs {
    /// Where and what to join.
    #[command(flatten)]
    pub(crate) target: Target,
    /// Output format.
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// `phx serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TCP port; 0 picks a free one
    #[arg(long, default_value_t = 4000)]
    pub(crate) port: u16,
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub(crate) host: IpAddr,
}

/// The wire protocol version (`vsn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Vsn {
    /// `1.0.0`: JSON objects.
    #[value(name = "1", alias = "1.0.0")]
    V1,
    /// `2.0.0`: JSON arrays and binary frames.
    #[value(name = "2", alias = "2.0.0")]
    V2,
}

/// When to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Color {
    /// When the stream is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Parses `KEY=VALUE` (the value may contain `=`; the key may not be empty).
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err("expected KEY=VALUE, such as token=secret".to_owned()),
    }
}

/// Parses JSON text, keeping it (compacted) as written.
fn parse_json(s: &str) -> Result<format::Json, String> {
    format::Json::parse(s).map_err(|e| format!("not valid JSON: {e}"))
}

/// Parses a duration: a number with an optional unit, `ms`, `s` (the default) or `m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        _ => return Err("expected a duration such as 10s, 500ms or 2m".to_owned()),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| "expected a duration such as 10s, 500ms or 2m".to_owned())?;
    match Duration::try_from_secs_f64(value * scale) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err("the duration must be more than 0".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("token=a=b"),
            Ok(("token".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(
            parse_key_value("user="),
            Ok(("user".to_owned(), String::new()))
        );
        assert!(parse_key_value("token").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
