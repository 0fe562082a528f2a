//! Loader for the golden traces in `../shared/traces`: frames recorded from a real Phoenix 1.8.12
//! server talking to the official JavaScript client.
//!
//! Line format: `> text` / `< text` (client → server / server → client text frame),
//! `> b:<hex>` / `< b:<hex>` (binary frame), `# ...` (annotation).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use phx_proto::Frame;

/// Who sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → server (`>`).
    ToServer,
    /// Server → client (`<`).
    ToClient,
}

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A data frame.
    Frame {
        /// Direction.
        dir: Dir,
        /// The frame, verbatim.
        frame: Frame,
        /// 1-based line number in the file.
        line: usize,
    },
    /// `# connection N: GET <path?query>` with the optional `Sec-WebSocket-Protocol` header.
    Connect {
        /// Request path and query.
        target: String,
        /// The subprotocol header, if sent.
        protocols: Option<String>,
    },
    /// `# connection N: HTTP <status> ...` with the selected subprotocol, if any.
    Handshake {
        /// HTTP status of the upgrade.
        status: u16,
        /// The selected subprotocol.
        protocol: Option<String>,
    },
    /// `# > close <code>` / `# < close <code>`.
    Close {
        /// Who sent the close frame.
        dir: Dir,
        /// The close code.
        code: u16,
    },
    /// Any other annotation.
    Note(String),
}

/// A parsed trace file.
#[derive(Debug, Clone)]
pub struct Trace {
    /// File name without extension, such as `v2_json_session`.
    pub name: String,
    /// The lines, in order.
    pub entries: Vec<Entry>,
}

impl Trace {
    /// The data frames, in order.
    pub fn frames(&self) -> impl Iterator<Item = (Dir, &Frame, usize)> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Frame { dir, frame, line } => Some((*dir, frame, *line)),
            _ => None,
        })
    }
}

/// Where the shared traces live: `$PHX_TRACES_DIR`, else the first `shared/traces` found beside
/// the workspace or one of its parents (the checkout sits next to `shared/`).
pub fn traces_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PHX_TRACES_DIR") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    workspace
        .ancestors()
        .map(|dir| dir.join("shared/traces"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| workspace.join("../../shared/traces"))
}

/// Loads every `*.txt` trace, sorted by name.
///
/// # Errors
/// An IO error, or a line that does not follow the trace format.
pub fn load_all() -> Result<Vec<Trace>, String> {
    let dir = traces_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// Loads one trace by name (`v2_json_session`).
///
/// # Errors
/// As [`load_all`].
pub fn load_named(name: &str) -> Result<Trace, String> {
    load(&traces_dir().join(format!("{name}.txt")))
}

fn load(path: &Path) -> Result<Trace, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Trace { name, entries })
}

/// Parses trace text.
///
/// # Errors
/// A message naming the line that is not in the trace format.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (dir, rest) = if let Some(rest) = line.strip_prefix("> ") {
            (Dir::ToServer, rest)
        } else if let Some(rest) = line.strip_prefix("< ") {
            (Dir::ToClient, rest)
        } else if let Some(note) = line.strip_prefix('#') {
            entries.push(annotation(note.trim()));
            continue;
        } else {
            return Err(format!("line {n}: not a frame or annotation: {line:?}"));
        };
        let frame = match rest.strip_prefix("b:") {
            Some(hex) => Frame::Binary(Bytes::from(
                unhex(hex).ok_or_else(|| format!("line {n}: bad hex"))?,
            )),
            None => Frame::Text(Bytes::copy_from_slice(rest.as_bytes())),
        };
        entries.push(Entry::Frame {
            dir,
            frame,
            line: n,
        });
    }
    Ok(entries)
}

fn annotation(note: &str) -> Entry {
    for (prefix, dir) in [("> close ", Dir::ToServer), ("< close ", Dir::ToClient)] {
        if let Some(code) = note
            .strip_prefix(prefix)
            .and_then(|c| c.trim().parse().ok())
        {
            return Entry::Close { dir, code };
        }
    }
    if let Some(rest) = note.strip_prefix("connection ")
        && let Some((_, what)) = rest.split_once(": ")
    {
        let (head, protocol) = match what.split_once("  Sec-WebSocket-Protocol: ") {
            Some((head, p)) => (head, Some(p.trim().to_owned())),
            None => (what, None),
        };
        if let Some(target) = head.strip_prefix("GET ") {
            return Entry::Connect {
                target: target.trim().to_owned(),
                protocols: protocol,
            };
        }
        if let Some(status) = head
            .strip_prefix("HTTP ")
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
        {
            return Entry::Handshake { status, protocol };
        }
    }
    Entry::Note(note.to_owned())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
