//! Exit codes, and the failure that carries one out of a command.

/// A push got an error (or other non-`ok`) reply, timed out or failed; or the session ended
/// for a reason other than the end of input or Ctrl-C; or the server could not start.
pub(crate) const FAILED: u8 = 1;
/// Bad arguments: unknown options, malformed JSON, `KEY=VALUE` or URL. clap uses 2 as well.
pub(crate) const USAGE: u8 = 2;
/// No connection: refused (an HTTP status such as 403), unreachable, timed out, or TLS failed.
pub(crate) const CONNECT: u8 = 3;
/// The server refused the join (no channel for the topic, unauthorized) or did not answer it.
pub(crate) const JOIN: u8 = 4;

/// Why a command did not succeed: its exit code and what to tell the user on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The process exit code.
    pub(crate) code: u8,
    /// The message, printed as `phx: error: …`.
    pub(crate) message: String,
}

impl Failure {
    /// A failure with a message.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
