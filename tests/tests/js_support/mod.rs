//! Running the official JavaScript `phoenix` client under node against the bundled test server.
//!
//! The scripts live in `tests/js/`; `tests/js/install.sh` installs the pinned packages from the
//! committed lockfile. A script gets the server URL as its only argument and talks back over
//! a line protocol: a stdout line `@@phx-ctl <command>` asks the driver to act on the server
//! (see [`control`]); the driver answers `@@phx-ctl-ok <command>` on the script's stdin once
//! it is done. Every other line is kept for the failure report.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use phx_tests::server::ws::TestServer;
use tokio::sync::mpsc;

/// Oldest node major version the scripts are run with.
const MIN_NODE_MAJOR: u32 = 20;

const HOW_TO_INSTALL: &str = "The JavaScript conformance tests run the official phoenix client \
under Node.js and need `node` (20 or newer) and `npm` on PATH. Install them, for example with \
`apt-get install nodejs npm` on Debian or Ubuntu, or from https://nodejs.org; the tests then \
install the pinned npm packages themselves (tests/js/install.sh).";

/// `tests/js`.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

fn tool_version(tool: &str) -> Result<String, String> {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(out) => Err(format!(
            "`{tool} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("`{tool}` cannot be run: {e}")),
    }
}

/// Checks that node and npm are installed (and node recent enough), then installs the pinned
/// packages into `tests/js/node_modules` (`install.sh` returns at once when they are already
/// there). Done once per test process.
///
/// # Panics
/// When node or npm is missing, with instructions, or when the install fails.
pub fn prepare() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ready = READY.get_or_init(|| {
        let node = tool_version("node").map_err(|e| format!("{e}\n{HOW_TO_INSTALL}"))?;
        tool_version("npm").map_err(|e| format!("{e}\n{HOW_TO_INSTALL}"))?;
        let major = node
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m < MIN_NODE_MAJOR) {
            return Err(format!("node {node} is too old.\n{HOW_TO_INSTALL}"));
        }
        let out = Command::new("bash")
            .arg(js_dir().join("install.sh"))
            .output()
            .map_err(|e| format!("cannot run tests/js/install.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tests/js/install.sh failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!("{e}");
    }
}

/// What the driver can do to the server when a script asks.
pub async fn control(server: &TestServer, command: &str) -> Result<(), String> {
    match command {
        // The server process dies and comes back: connections end without a close frame.
        "restart" => server.restart().await,
        // Every connection ends without a close frame; the server keeps running.
        "drop" => {
            server.drop_all().await;
        }
        // Every connection is closed with 1000 (as Cowboy's idle timeout does).
        "close-normal" => {
            server
                .call(|s, _| {
                    for conn in s.connections() {
                        s.close_connection(conn, 1000, "");
                    }
                })
                .await;
        }
        // Handshakes are refused (HTTP 503) until "accept".
        "refuse" => server.refuse_connects(Duration::from_secs(3600)).await,
        "accept" => server.refuse_connects(Duration::ZERO).await,
        // Heartbeats go unanswered until "heartbeats-on".
        "heartbeats-off" => server.stop_heartbeat_replies().await,
        "heartbeats-on" => server.resume_heartbeat_replies().await,
        other => return Err(format!("unknown control command {other:?}")),
    }
    Ok(())
}

/// How a script run ended.
#[derive(Debug)]
pub struct NodeRun {
    /// The exit status (`None` when it was killed after the timeout).
    pub status: Option<ExitStatus>,
    /// Everything it printed, stdout and stderr interleaved as received.
    pub output: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl NodeRun {
    /// Whether the script exited with 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the script's output unless it succeeded.
    pub fn assert_success(&self, script: &str) {
        assert!(
            self.success(),
            "node {script} failed ({}) after {:?}; its output:\n{}",
            self.status
                .map_or_else(|| "killed after the timeout".to_owned(), |s| s.to_string()),
            self.elapsed,
            self.output
        );
    }
}

enum Line {
    Out(String),
    Err(String),
}

fn forward(
    reader: impl std::io::Read + Send + 'static,
    tx: mpsc::UnboundedSender<Line>,
    err: bool,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let line = if err {
                Line::Err(line)
            } else {
                Line::Out(line)
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// Kills the child if the run is abandoned (a panic or the timeout).
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `node tests/js/<script> <server url>`, serving its control requests, for at most
/// `timeout`. Call [`prepare`] first.
pub async fn run_script(script: &str, server: &TestServer, timeout: Duration) -> NodeRun {
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(js_dir().join(script))
        .arg(server.url())
        .current_dir(js_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node: {e}\n{HOW_TO_INSTALL}"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        forward(out, tx.clone(), false);
    }
    if let Some(err) = child.stderr.take() {
        forward(err, tx, true);
    }
    let mut stdin = child.stdin.take();
    let mut child = Reaper(child);
    let mut output = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let finished = loop {
        let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => break false,
            Ok(None) => break true,
            Ok(Some(line)) => line,
        };
        let text = match line {
            Line::Out(t) => t,
            Line::Err(t) => {
                output.push_str(&t);
                output.push('\n');
                continue;
            }
        };
        output.push_str(&text);
        output.push('\n');
        let Some(command) = text.strip_prefix("@@phx-ctl ") else {
            continue;
        };
        match control(server, command).await {
            Ok(()) => {
                if let Some(stdin) = stdin.as_mut() {
                    // A script that died meanwhile is reported by its exit status.
                    let _ = writeln!(stdin, "@@phx-ctl-ok {command}").and_then(|()| stdin.flush());
                }
            }
            Err(e) => {
                output.push_str(&format!("driver: {e}\n"));
                drop(stdin.take());
            }
        }
    };
    drop(stdin);
    let status = if finished {
        // Both pipes are closed: the process is exiting, so this wait is short.
        match child.0.wait() {
            Ok(s) => Some(s),
            Err(e) => panic!("cannot wait for node: {e}"),
        }
    } else {
        output.push_str(&format!("driver: killed after {timeout:?}\n"));
        None
    };
    NodeRun {
        status,
        output,
        elapsed: started.elapsed(),
    }
}
