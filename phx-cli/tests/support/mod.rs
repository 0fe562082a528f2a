//! Runs the `phx` binary and reads what it prints, line by line, with deadlines.
//!
//! Reader threads forward stdout and stderr lines over channels, so every wait is for a line
//! (or the end of the streams) to arrive, bounded by [`WAIT`]; nothing sleeps for a fixed time.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use serde_json::Value;

/// The binary under test.
pub(crate) const PHX: &str = env!("CARGO_BIN_EXE_phx");

/// The longest wait for any line or exit: generous, since a loaded machine can be slow; a
/// passing test never comes near it.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The bundled test server with its default configuration (token `secret`), on a free port.
pub(crate) fn server() -> BackgroundServer {
    BackgroundServer::start(ServerConfig::default())
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// A line, or the end of a stream.
type Item = (Stream, Option<String>);

fn forward(stream: impl Read + Send + 'static, which: Stream, tx: mpsc::Sender<Item>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.send((which, Some(line))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send((which, None));
    });
}

/// A running `phx`.
pub(crate) struct Phx {
    args: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    items: mpsc::Receiver<Item>,
    /// Every stdout line read so far.
    pub(crate) stdout: Vec<String>,
    /// Every stderr line read so far.
    pub(crate) stderr: Vec<String>,
    open_streams: usize,
}

/// A `phx` that has exited.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The exit code (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    /// Every stdout line.
    pub(crate) stdout: Vec<String>,
    /// Every stderr line.
    pub(crate) stderr: Vec<String>,
}

impl Finished {
    /// stderr as one string.
    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }

    /// stdout, each line parsed as JSON (panics on a line that is not).
    pub(crate) fn json_lines(&self) -> Vec<Value> {
        self.stdout.iter().map(|l| parse(l)).collect()
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
}

impl Phx {
    /// Starts `phx ARGS` with piped stdin, stdout and stderr, without a PHX_TOKEN or NO_COLOR
    /// from the environment.
    pub(crate) fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(PHX)
            .args(args)
            .env_remove("PHX_TOKEN")
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PHX}: {e}"));
        let (tx, items) = mpsc::channel();
        forward(
            child.stdout.take().expect("piped stdout"),
            Stream::Stdout,
            tx.clone(),
        );
        forward(
            child.stderr.take().expect("piped stderr"),
            Stream::Stderr,
            tx,
        );
        Self {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            stdin: child.stdin.take(),
            child,
            items,
            stdout: Vec::new(),
            stderr: Vec::new(),
            open_streams: 2,
        }
    }

    /// Runs `phx ARGS` with an empty stdin to completion.
    pub(crate) fn run(args: &[&str]) -> Finished {
        let mut phx = Self::spawn(args);
        phx.close_stdin();
        phx.finish()
    }

    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    fn context(&self) -> String {
        format!(
            "phx {}\n--- stdout so far:\n{}\n--- stderr so far:\n{}",
            self.args.join(" "),
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }

    /// Waits for the next line on either stream; `None` once both have ended.
    fn next_item(&mut self, deadline: Instant, what: &str) -> Option<(Stream, String)> {
        while self.open_streams > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.items.recv_timeout(left) {
                Ok((which, Some(line))) => {
                    match which {
                        Stream::Stdout => self.stdout.push(line.clone()),
                        Stream::Stderr => self.stderr.push(line.clone()),
                    }
                    return Some((which, line));
                }
                Ok((_, None)) => self.open_streams -= 1,
                Err(_) => panic!("timed out waiting for {what}\n{}", self.context()),
            }
        }
        None
    }

    /// Reads stdout until a line (which must be JSON) satisfies `pred`, and returns it.
    pub(crate) fn expect_json(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_item(deadline, what) {
                Some((Stream::Stdout, line)) => {
                    let value = parse(&line);
                    if pred(&value) {
                        return value;
                    }
                }
                Some((Stream::Stderr, _)) => {}
                None => panic!("phx exited before {what}\n{}", self.context()),
            }
        }
    }

    /// Reads stdout until a JSON line of type `kind` arrives.
    pub(crate) fn expect_type(&mut self, kind: &str) -> Value {
        self.expect_json(&format!("a {kind:?} line"), |v| v["type"] == kind)
    }

    /// Reads stdout until a JSON line of each type in `kinds` has arrived, in any order (they
    /// come from independent sources, such as a push's reply and a socket event), and returns
    /// them in the order of `kinds`.
    pub(crate) fn expect_types(&mut self, kinds: &[&str]) -> Vec<Value> {
        let mut found: Vec<Option<Value>> = vec![None; kinds.len()];
        let what = format!("lines of types {kinds:?}");
        let deadline = Instant::now() + WAIT;
        while found.iter().any(Option::is_none) {
            match self.next_item(deadline, &what) {
                Some((Stream::Stdout, line)) => {
                    let value = parse(&line);
                    let slot = kinds
                        .iter()
                        .zip(found.iter_mut())
                        .find(|(k, f)| f.is_none() && value["type"] == **k);
                    if let Some((_, f)) = slot {
                        *f = Some(value);
                    }
                }
                Some((Stream::Stderr, _)) => {}
                None => panic!("phx exited before {what}\n{}", self.context()),
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Reads until a line on stdout (`stderr: false`) or stderr satisfies `pred`.
    pub(crate) fn expect_text(
        &mut self,
        stderr: bool,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let want = if stderr {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_item(deadline, what) {
                Some((which, line)) if which == want && pred(&line) => return line,
                Some(_) => {}
                None => panic!("phx exited before {what}\n{}", self.context()),
            }
        }
    }

    /// Writes one line to phx's stdin.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is closed");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to phx: {e}\n{}", self.context()));
    }

    /// Closes phx's stdin (end of input).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub(crate) fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
    }

    /// Waits for phx to exit (its streams end first), collecting what it printed.
    pub(crate) fn finish(mut self) -> Finished {
        let deadline = Instant::now() + WAIT;
        while self.next_item(deadline, "phx to exit").is_some() {}
        let left = deadline.saturating_duration_since(Instant::now());
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                // The streams are closed, so the exit is a matter of moments.
                Ok(None) if start.elapsed() < left => std::thread::yield_now(),
                Ok(None) => panic!("phx closed its output but did not exit\n{}", self.context()),
                Err(e) => panic!("cannot wait for phx: {e}"),
            }
        };
        Finished {
            code: status.code(),
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
        }
    }
}

impl Drop for Phx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
