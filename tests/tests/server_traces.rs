//! Replays the client side of every golden trace into the server model and checks that the
//! model answers with the recorded server frames, byte for byte, and the recorded handshake
//! outcome and server-initiated closes.
//!
//! Presence `phx_ref` and `online_at` values differ between recordings, so both sides are
//! normalized: each distinct `phx_ref` becomes `REF<n>` by order of first appearance (which
//! still checks that the same meta carries the same ref) and `online_at` becomes `T`.
//!
//! Client frames recorded back to back are fed together before the output is polled, as they
//! reached Phoenix in one read. Presence diffs about users of other, unrecorded connections are
//! reproduced by joining (or leaving) with that user on a second connection when the trace shows
//! the diff.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use phx_proto::Frame;
use phx_tests::server::{ConnId, ConnectRequest, Output, Server, ServerConfig};
use phx_tests::traces::{self, Dir, Entry, Trace};

const RECORDED: ConnId = ConnId(1);
const OTHER: ConnId = ConnId(2);

fn show(frame: &Frame) -> String {
    match frame {
        Frame::Text(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Binary(b) => format!(
            "b:{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// Replaces `"phx_ref":"…"` (and `phx_ref_prev`) values by `REF<n>` and `"online_at":<n>` by
/// `T`, numbering refs across the whole transcript.
fn normalize(lines: &[String]) -> Vec<String> {
    let mut refs: Vec<String> = Vec::new();
    lines
        .iter()
        .map(|line| {
            let mut out = String::new();
            let mut rest = line.as_str();
            loop {
                let next_ref = rest.find("\"phx_ref");
                let next_at = rest.find("\"online_at\":");
                match (next_ref, next_at) {
                    (Some(i), at) if at.is_none_or(|a| i < a) => {
                        // `"phx_ref":"` or `"phx_ref_prev":"`
                        let Some(colon) = rest[i..].find(":\"") else {
                            out.push_str(rest);
                            break;
                        };
                        let start = i + colon + 2;
                        let Some(len) = rest[start..].find('"') else {
                            out.push_str(rest);
                            break;
                        };
                        let value = &rest[start..start + len];
                        let n = match refs.iter().position(|r| r == value) {
                            Some(n) => n,
                            None => {
                                refs.push(value.to_owned());
                                refs.len() - 1
                            }
                        };
                        out.push_str(&rest[..start]);
                        out.push_str(&format!("REF{n}"));
                        rest = &rest[start + len..];
                    }
                    (_, Some(a)) => {
                        let start = a + "\"online_at\":".len();
                        let digits = rest[start..].bytes().take_while(u8::is_ascii_digit).count();
                        out.push_str(&rest[..start]);
                        out.push('T');
                        rest = &rest[start + digits..];
                    }
                    _ => {
                        out.push_str(rest);
                        break;
                    }
                }
            }
            out
        })
        .collect()
}

/// The keys under `joins` and `leaves` of a V2 `presence_diff` frame.
fn diff_keys(frame: &Frame) -> Option<(Vec<String>, Vec<String>)> {
    let Frame::Text(b) = frame else { return None };
    let v: serde_json::Value = serde_json::from_slice(b).ok()?;
    if v.get(3)?.as_str()? != "presence_diff" {
        return None;
    }
    let keys = |k: &str| -> Vec<String> {
        v[4][k]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    Some((keys("joins"), keys("leaves")))
}

/// The `user` join param and topic of a V2 `phx_join` frame.
fn presence_join(frame: &Frame) -> Option<(String, String)> {
    let Frame::Text(b) = frame else { return None };
    let v: serde_json::Value = serde_json::from_slice(b).ok()?;
    if v.get(3)?.as_str()? != "phx_join" {
        return None;
    }
    Some((v[2].as_str()?.to_owned(), v[4]["user"].as_str()?.to_owned()))
}

struct Replay {
    server: Server,
    now: Instant,
    actual: Vec<String>,
    expected: Vec<String>,
    own_users: BTreeSet<String>,
    /// Users of the second connection, with the join_ref their join used.
    other_tracks: BTreeMap<String, u32>,
    other_ref: u32,
}

impl Replay {
    /// Polls everything the model has to say; keeps what concerns the recorded connection.
    fn drain(&mut self) {
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Frame { conn, frame } if conn == RECORDED => self.actual.push(show(&frame)),
                Output::Close { conn, code, .. } if conn == RECORDED => {
                    self.actual.push(format!("close {code}"));
                }
                Output::Abort { conn } if conn == RECORDED => self.actual.push("abort".to_owned()),
                _ => {}
            }
        }
    }

    /// Makes an unrecorded user join `topic` on the second connection (`leave_ref` `None`),
    /// or leave the channel it joined with that join_ref. Returns the ref it used.
    fn other_user(&mut self, topic: &str, user: &str, leave_ref: Option<u32>) -> u32 {
        self.now += Duration::from_secs(1);
        if !self.server.is_open(OTHER) {
            let req = ConnectRequest::new("/socket/websocket?token=secret&vsn=2.0.0");
            self.server
                .handle_connect(self.now, OTHER, &req)
                .expect("second connection accepted");
        }
        self.other_ref += 1;
        let r = self.other_ref;
        let text = match leave_ref {
            None => format!(r#"["{r}","{r}","{topic}","phx_join",{{"user":"{user}"}}]"#),
            Some(jr) => format!(r#"["{jr}","{r}","{topic}","phx_leave",{{}}]"#),
        };
        self.server
            .handle_frame(self.now, OTHER, Frame::Text(text.into()));
        r
    }
}

fn replay(trace: &Trace) -> Replay {
    let mut r = Replay {
        server: Server::new(ServerConfig::default()),
        now: Instant::now(),
        actual: Vec::new(),
        expected: Vec::new(),
        own_users: BTreeSet::new(),
        other_tracks: BTreeMap::new(),
        other_ref: 0,
    };
    let mut presence_topic = String::new();
    let mut connect_result = None;
    let mut closes_seen = 0;
    for entry in &trace.entries {
        match entry {
            Entry::Connect { target, protocols } => {
                let req = ConnectRequest {
                    target: target.clone(),
                    protocols: protocols.clone(),
                    headers: Vec::new(),
                };
                connect_result = Some(r.server.handle_connect(r.now, RECORDED, &req));
            }
            Entry::Handshake { status, protocol } => {
                let got = connect_result
                    .take()
                    .expect("handshake after a connect line");
                match got {
                    Ok(accepted) => {
                        assert_eq!(
                            *status, 101,
                            "{}: model accepted, recording says {status}",
                            trace.name
                        );
                        assert_eq!(
                            accepted.protocol.map(str::to_owned),
                            protocol.clone(),
                            "{}: selected subprotocol",
                            trace.name
                        );
                    }
                    Err(refused) => {
                        assert_eq!(refused.status, *status, "{}: handshake status", trace.name)
                    }
                }
            }
            Entry::Frame {
                dir: Dir::ToServer,
                frame,
                ..
            } => {
                if let Some((topic, user)) = presence_join(frame) {
                    r.own_users.insert(user);
                    presence_topic = topic;
                }
                r.now += Duration::from_millis(10);
                r.server.handle_frame(r.now, RECORDED, frame.clone());
            }
            Entry::Frame {
                dir: Dir::ToClient,
                frame,
                ..
            } => {
                if let Some((joins, leaves)) = diff_keys(frame) {
                    let topic = presence_topic.clone();
                    for user in joins {
                        if !r.own_users.contains(&user) && !r.other_tracks.contains_key(&user) {
                            let jr = r.other_user(&topic, &user, None);
                            r.other_tracks.insert(user, jr);
                        }
                    }
                    for user in leaves {
                        if let Some(jr) = r.other_tracks.remove(&user) {
                            r.other_user(&topic, &user, Some(jr));
                        }
                    }
                }
                r.drain();
                r.expected.push(show(frame));
            }
            Entry::Close { dir, code } => {
                closes_seen += 1;
                // The first close line is the side that started the close, the second the echo.
                if closes_seen == 1 {
                    r.drain();
                    match dir {
                        Dir::ToClient => r.expected.push(format!("close {code}")),
                        Dir::ToServer => r.server.handle_disconnected(r.now, RECORDED),
                    }
                }
            }
            Entry::Note(_) => {}
        }
    }
    assert!(
        connect_result.is_none(),
        "{}: connect without outcome",
        trace.name
    );
    r.drain();
    r
}

#[test]
fn the_model_reproduces_every_recorded_server_frame() {
    let all = traces::load_all().expect("traces load");
    assert!(all.len() >= 12, "expected the 12 recorded traces");
    let mut failures = Vec::new();
    for trace in &all {
        let r = replay(trace);
        let (actual, expected) = (normalize(&r.actual), normalize(&r.expected));
        if actual != expected {
            failures.push(format!(
                "{}:\n  expected:\n    {}\n  model:\n    {}",
                trace.name,
                expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refused_and_accepted_handshakes_are_counted() {
    let refused = replay(&traces::load_named("connect_refused").unwrap());
    assert_eq!(refused.server.stats().connections_refused, 1);
    assert_eq!(refused.server.stats().connections_accepted, 0);
    let session = replay(&traces::load_named("v2_json_session").unwrap());
    assert_eq!(session.server.stats().connections_accepted, 1);
    assert_eq!(session.server.joins("room:lobby"), 1);
    assert_eq!(session.server.stats().heartbeats, 1);
    assert_eq!(session.server.open_connections(), 0, "the client closed");
}

#[test]
fn normalization_keeps_everything_but_presence_refs_and_times() {
    let a = normalize(&[
        r#"{"a":{"metas":[{"online_at":17,"phx_ref":"X1"}]},"b":{"metas":[{"online_at":3,"phx_ref":"Y"}]}}"#.to_owned(),
        r#"{"phx_ref":"Y","phx_ref_prev":"X1"}"#.to_owned(),
    ]);
    assert_eq!(
        a,
        vec![
            r#"{"a":{"metas":[{"online_at":T,"phx_ref":"REF0"}]},"b":{"metas":[{"online_at":T,"phx_ref":"REF1"}]}}"#,
            r#"{"phx_ref":"REF1","phx_ref_prev":"REF0"}"#,
        ]
    );
    // Different values in the same places normalize alike; a swapped identity does not.
    let b = normalize(&[
        r#"{"phx_ref":"p","x":"q"}"#.to_owned(),
        r#"{"phx_ref":"p"}"#.to_owned(),
    ]);
    let c = normalize(&[
        r#"{"phx_ref":"p","x":"q"}"#.to_owned(),
        r#"{"phx_ref":"z"}"#.to_owned(),
    ]);
    assert_ne!(b, c);
}
