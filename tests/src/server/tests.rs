//! Unit tests of the server model: each rule, with explicit instants and the exact frames.

use std::time::{Duration, Instant};

use bytes::Bytes;
use phx_proto::{Frame, Payload};
use proptest::prelude::*;

use super::*;

const V2: &str = "/socket/websocket?token=secret&vsn=2.0.0";
const V1: &str = "/socket/websocket?token=secret&vsn=1.0.0";

struct H {
    s: Server,
    now: Instant,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl H {
    fn new() -> Self {
        Self::with(ServerConfig::default())
    }

    fn with(config: ServerConfig) -> Self {
        Self {
            s: Server::new(config),
            now: Instant::now(),
        }
    }

    fn connect(&mut self, conn: u64, target: &str) -> ConnId {
        let id = ConnId(conn);
        self.s
            .handle_connect(self.now, id, &ConnectRequest::new(target))
            .expect("accepted");
        id
    }

    /// Feeds one text frame without polling.
    fn feed(&mut self, conn: u64, text: &str) {
        self.s.handle_frame(
            self.now,
            ConnId(conn),
            Frame::Text(Bytes::copy_from_slice(text.as_bytes())),
        );
    }

    /// Feeds one text frame and returns what the server sent.
    fn send(&mut self, conn: u64, text: &str) -> Vec<String> {
        self.feed(conn, text);
        self.out()
    }

    fn send_bin(&mut self, conn: u64, bytes: &[u8]) -> Vec<String> {
        self.s.handle_frame(
            self.now,
            ConnId(conn),
            Frame::Binary(Bytes::copy_from_slice(bytes)),
        );
        self.out()
    }

    /// Drains the output: `"<conn> <text>"`, `"<conn> b:<hex>"`, `"<conn> close <code>"` or
    /// `"<conn> abort"`.
    fn out(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(o) = self.s.poll_output() {
            v.push(match o {
                Output::Frame {
                    conn,
                    frame: Frame::Text(b),
                } => format!("{} {}", conn.0, String::from_utf8(b.to_vec()).unwrap()),
                Output::Frame {
                    conn,
                    frame: Frame::Binary(b),
                } => format!("{} b:{}", conn.0, hex(&b)),
                Output::Close { conn, code, .. } => format!("{} close {code}", conn.0),
                Output::Abort { conn } => format!("{} abort", conn.0),
            });
        }
        v
    }

    fn advance(&mut self, d: Duration) -> Vec<String> {
        self.now += d;
        self.s.handle_timeout(self.now);
        self.out()
    }

    /// Connects on V2 and joins `topic` with join_ref = ref = `jr`.
    fn joined(&mut self, conn: u64, topic: &str, jr: &str) -> Vec<String> {
        if !self.s.is_open(ConnId(conn)) {
            self.connect(conn, V2);
        }
        self.send(
            conn,
            &format!(r#"["{jr}","{jr}","{topic}","phx_join",{{}}]"#),
        )
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn heartbeat_is_answered_on_topic_phoenix_with_null_join_ref() {
    let mut h = H::new();
    h.connect(1, V2);
    assert_eq!(
        h.send(1, r#"["9","7","phoenix","heartbeat",{}]"#),
        lines(&[r#"1 [null,"7","phoenix","phx_reply",{"response":{},"status":"ok"}]"#])
    );
    h.connect(2, V1);
    assert_eq!(
        h.send(
            2,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"3"}"#
        ),
        lines(&[
            r#"2 {"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"3","topic":"phoenix"}"#
        ])
    );
    assert_eq!(h.s.stats().heartbeats, 2);
}

#[test]
fn unanswered_heartbeats_still_count_as_data() {
    let mut h = H::new();
    h.connect(1, V2);
    h.s.set_answer_heartbeats(false);
    h.advance(Duration::from_secs(50));
    assert!(
        h.send(1, r#"[null,"1","phoenix","heartbeat",{}]"#)
            .is_empty()
    );
    assert!(
        h.advance(Duration::from_secs(50)).is_empty(),
        "idle timer was reset"
    );
    h.s.set_answer_heartbeats(true);
    assert_eq!(h.send(1, r#"[null,"2","phoenix","heartbeat",{}]"#).len(), 1);
}

#[test]
fn join_reply_echoes_refs_and_sorted_params() {
    let mut h = H::new();
    h.connect(1, V2);
    assert_eq!(
        h.send(
            1,
            r#"["5","5","room:lobby","phx_join",{"user":"alice","a":[1, 2]}]"#
        ),
        lines(&[
            r#"1 ["5","5","room:lobby","phx_reply",{"response":{"joined":"room:lobby","params":{"a":[1,2],"user":"alice"}},"status":"ok"}]"#
        ])
    );
    assert_eq!(h.s.joins("room:lobby"), 1);
    assert_eq!(h.s.subscribers("room:lobby"), 1);
    assert_eq!(h.s.channels(ConnId(1)), vec!["room:lobby".to_owned()]);
}

#[test]
fn forbidden_join_is_an_error_reply_and_leaves_nothing_joined() {
    let mut h = H::new();
    assert_eq!(
        h.joined(1, "room:forbidden", "5"),
        lines(&[
            r#"1 ["5","5","room:forbidden","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]"#
        ])
    );
    assert_eq!(h.s.joins("room:forbidden"), 0);
    // Leaving a channel that does not exist is answered ok at once, echoing the join_ref.
    assert_eq!(
        h.send(1, r#"["5","6","room:forbidden","phx_leave",{}]"#),
        lines(&[r#"1 ["5","6","room:forbidden","phx_reply",{"response":{},"status":"ok"}]"#])
    );
}

#[test]
fn unmatched_topic_replies_carry_a_null_join_ref() {
    let mut h = H::new();
    h.connect(1, V2);
    assert_eq!(
        h.send(1, r#"["3","3","nope:1","phx_join",{}]"#),
        lines(&[
            r#"1 [null,"3","nope:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        ])
    );
    assert_eq!(
        h.send(1, r#"["3","4","room:1","ping",{}]"#),
        lines(&[
            r#"1 [null,"4","room:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        ])
    );
    assert_eq!(
        h.send(1, r#"[null,"5","phoenix","phx_join",{}]"#),
        lines(&[
            r#"1 [null,"5","phoenix","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        ])
    );
}

#[test]
fn leave_replies_then_closes_with_ref_equal_to_join_ref() {
    let mut h = H::new();
    h.joined(1, "room:a", "5");
    assert_eq!(
        h.send(1, r#"["5","6","room:a","phx_leave",{}]"#),
        lines(&[
            r#"1 ["5","6","room:a","phx_reply",{"response":{},"status":"ok"}]"#,
            r#"1 ["5","5","room:a","phx_close",{}]"#,
        ])
    );
    assert!(h.s.channels(ConnId(1)).is_empty());
    assert_eq!(h.s.subscribers("room:a"), 0);
}

#[test]
fn duplicate_join_replies_to_the_new_join_then_closes_the_old_one() {
    let mut h = H::new();
    h.joined(1, "room:dup", "1");
    assert_eq!(
        h.send(1, r#"["3","3","room:dup","phx_join",{"n":2}]"#),
        lines(&[
            r#"1 ["3","3","room:dup","phx_reply",{"response":{"joined":"room:dup","params":{"n":2}},"status":"ok"}]"#,
            r#"1 ["1","1","room:dup","phx_close",{}]"#,
        ])
    );
    // The stale join_ref is dropped without a reply; the new one works.
    assert!(h.send(1, r#"["1","5","room:dup","ping",{}]"#).is_empty());
    assert_eq!(
        h.send(1, r#"["3","6","room:dup","ping",{"x":1}]"#),
        lines(&[r#"1 ["3","6","room:dup","phx_reply",{"response":{"x":1},"status":"ok"}]"#])
    );
    assert_eq!(h.s.joins("room:dup"), 2);
    assert_eq!(h.s.subscribers("room:dup"), 1);
}

#[test]
fn leave_then_join_in_one_read_loses_the_leave_reply() {
    let mut h = H::new();
    h.joined(1, "room:dup", "5");
    h.feed(1, r#"["5","8","room:dup","phx_leave",{}]"#);
    h.feed(1, r#"["9","9","room:dup","phx_join",{}]"#);
    assert_eq!(
        h.out(),
        lines(&[
            r#"1 ["9","9","room:dup","phx_reply",{"response":{"joined":"room:dup","params":{}},"status":"ok"}]"#,
            r#"1 ["5","5","room:dup","phx_close",{}]"#,
        ])
    );
}

#[test]
fn leave_then_join_polled_apart_answers_both() {
    let mut h = H::new();
    h.joined(1, "room:dup", "5");
    assert_eq!(
        h.send(1, r#"["5","8","room:dup","phx_leave",{}]"#),
        lines(&[
            r#"1 ["5","8","room:dup","phx_reply",{"response":{},"status":"ok"}]"#,
            r#"1 ["5","5","room:dup","phx_close",{}]"#,
        ])
    );
    assert_eq!(
        h.send(1, r#"["9","9","room:dup","phx_join",{}]"#),
        lines(&[
            r#"1 ["9","9","room:dup","phx_reply",{"response":{"joined":"room:dup","params":{}},"status":"ok"}]"#
        ])
    );
}

#[test]
fn messages_queued_behind_a_leave_are_lost_with_the_channel() {
    let mut h = H::new();
    h.joined(1, "room:a", "5");
    h.feed(1, r#"["5","6","room:a","phx_leave",{}]"#);
    h.feed(1, r#"["5","7","room:a","ping",{}]"#);
    assert_eq!(
        h.out(),
        lines(&[
            r#"1 ["5","6","room:a","phx_reply",{"response":{},"status":"ok"}]"#,
            r#"1 ["5","5","room:a","phx_close",{}]"#,
        ])
    );
}

/// What each rule does with a `ping` carrying `sent` to a channel joined with `stored`.
fn ping_delivered(
    rule: JoinRefRule,
    stored: Option<&str>,
    sent: Option<&str>,
    leave: bool,
) -> bool {
    let mut h = H::with(ServerConfig {
        join_ref_rule: rule,
        ..ServerConfig::default()
    });
    h.connect(1, V2);
    let q = |s: Option<&str>| s.map_or("null".to_owned(), |s| format!("\"{s}\""));
    h.send(
        1,
        &format!(r#"[{},"1","room:a","phx_join",{{}}]"#, q(stored)),
    );
    let event = if leave { "phx_leave" } else { "ping" };
    !h.send(1, &format!(r#"[{},"2","room:a","{event}",{{}}]"#, q(sent)))
        .is_empty()
}

#[test]
fn join_ref_rule_of_1_8_12_accepts_current_or_null_and_drops_stale() {
    let r = JoinRefRule::Phoenix1_8_12;
    for leave in [false, true] {
        assert!(ping_delivered(r, Some("1"), Some("1"), leave));
        assert!(ping_delivered(r, Some("1"), None, leave));
        assert!(!ping_delivered(r, Some("1"), Some("0"), leave));
        assert!(!ping_delivered(r, Some("1"), Some(""), leave));
        assert!(ping_delivered(r, None, None, leave));
        assert!(!ping_delivered(r, None, Some("1"), leave));
    }
}

#[test]
fn join_ref_rule_of_1_8_3_requires_the_stored_join_ref() {
    let r = JoinRefRule::Phoenix1_8_3;
    for leave in [false, true] {
        assert!(ping_delivered(r, Some("1"), Some("1"), leave));
        assert!(!ping_delivered(r, Some("1"), None, leave));
        assert!(!ping_delivered(r, Some("1"), Some("0"), leave));
        assert!(ping_delivered(r, None, None, leave));
    }
}

#[test]
fn join_ref_rule_of_1_8_2_delivers_stale_messages_but_not_stale_leaves() {
    let r = JoinRefRule::Phoenix1_8_2;
    assert!(ping_delivered(r, Some("1"), Some("0"), false));
    assert!(ping_delivered(r, Some("1"), None, false));
    assert!(!ping_delivered(r, Some("1"), Some("0"), true));
    assert!(!ping_delivered(r, Some("1"), None, true));
    assert!(ping_delivered(r, Some("1"), Some("1"), true));
}

#[test]
fn join_without_join_ref_uses_the_ref_for_replies_and_null_for_close() {
    let mut h = H::new();
    h.connect(1, V2);
    assert_eq!(
        h.send(1, r#"[null,"4","room:a","phx_join",{}]"#),
        lines(&[
            r#"1 [null,"4","room:a","phx_reply",{"response":{"joined":"room:a","params":{}},"status":"ok"}]"#
        ])
    );
    assert_eq!(
        h.send(1, r#"[null,"5","room:a","ping",{}]"#),
        lines(&[r#"1 ["4","5","room:a","phx_reply",{"response":{},"status":"ok"}]"#])
    );
    assert!(h.send(1, r#"["4","6","room:a","ping",{}]"#).is_empty());
    assert_eq!(
        h.send(1, r#"[null,"7","room:a","stop",{}]"#),
        lines(&[r#"1 [null,null,"room:a","phx_close",{}]"#])
    );
}

#[test]
fn v1_frames_never_carry_a_join_ref() {
    let mut h = H::new();
    h.connect(1, V1);
    h.send(
        1,
        r#"{"topic":"room:a","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}"#,
    );
    assert_eq!(
        h.send(
            1,
            r#"{"topic":"room:a","event":"crash","payload":{},"ref":"2","join_ref":"1"}"#
        ),
        lines(&[
            r#"1 {"event":"phx_error","payload":{"reason":"channel_crash"},"ref":"1","topic":"room:a"}"#
        ])
    );
}

#[test]
fn channel_limit_refuses_the_next_join() {
    let mut h = H::with(ServerConfig {
        max_channels_per_transport: 2,
        ..ServerConfig::default()
    });
    h.joined(1, "room:1", "1");
    h.joined(1, "room:2", "2");
    assert_eq!(
        h.joined(1, "room:3", "3"),
        lines(&[
            r#"1 ["3","3","room:3","phx_reply",{"response":{"reason":"too many channels joined"},"status":"error"}]"#
        ])
    );
    // A duplicate join replaces a channel, so it is not over the limit.
    assert_eq!(h.joined(1, "room:2", "4").len(), 2);
    // The default is 100.
    let mut h = H::new();
    for i in 0..100 {
        assert!(h.joined(1, &format!("room:{i}"), &i.to_string())[0].contains(r#""status":"ok""#));
    }
    assert!(h.joined(1, "room:100", "100")[0].contains("too many channels joined"));
}

#[test]
fn malformed_frames_close_the_connection_with_1011() {
    for bad in [
        "",
        "[",
        "{}",
        r#"["1","1","room:a","phx_join"]"#,
        r#"[1,"1","room:a","phx_join",{}]"#,
        r#"{"topic":"room:a","event":"x","payload":{}}"#,
        "[null,null,null,null,null]",
        "garbage",
    ] {
        let mut h = H::new();
        h.joined(1, "room:a", "1");
        assert_eq!(h.send(1, bad), lines(&["1 close 1011"]), "{bad:?}");
        assert!(!h.s.is_open(ConnId(1)));
        assert!(
            h.send(1, r#"[null,"1","phoenix","heartbeat",{}]"#)
                .is_empty()
        );
        assert_eq!(h.s.subscribers("room:a"), 0);
    }
    let mut h = H::new();
    h.connect(1, V2);
    assert_eq!(h.send_bin(1, &[1, 0, 0, 0, 0]), lines(&["1 close 1011"]));
    let mut h = H::new();
    h.connect(1, V2);
    assert_eq!(
        h.send_bin(1, &[0, 5, 0, 0, 0, b'x']),
        lines(&["1 close 1011"])
    );
    let mut h = H::new();
    h.connect(1, V1);
    assert_eq!(h.send_bin(1, &[0, 0, 0, 0, 0]), lines(&["1 close 1011"]));
    assert_eq!(h.s.stats().malformed_frames, 1);
}

#[test]
fn invalid_utf8_closes_with_1007_and_oversized_frames_with_1009() {
    let mut h = H::new();
    h.connect(1, V2);
    h.s.handle_frame(h.now, ConnId(1), Frame::Text(Bytes::from_static(b"[\xff]")));
    assert_eq!(h.out(), lines(&["1 close 1007"]));
    let mut h = H::with(ServerConfig {
        max_frame_size: 10,
        ..ServerConfig::default()
    });
    h.connect(1, V2);
    assert_eq!(
        h.send(1, r#"[null,"1","phoenix","heartbeat",{}]"#),
        lines(&["1 close 1009"])
    );
}

#[test]
fn extra_v2_elements_are_ignored_as_phoenix_does() {
    let mut h = H::new();
    h.connect(1, V2);
    assert_eq!(
        h.send(1, r#"[null,"1","phoenix","heartbeat",{},"extra",[1]]"#),
        lines(&[r#"1 [null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]"#])
    );
}

#[test]
fn idle_connections_close_after_the_idle_timeout() {
    let mut h = H::new();
    let t0 = h.now;
    h.connect(1, V2);
    assert_eq!(h.s.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    assert!(h.advance(Duration::from_secs(59)).is_empty());
    h.send(1, r#"[null,"1","phoenix","heartbeat",{}]"#);
    assert_eq!(h.s.poll_timeout(), Some(t0 + Duration::from_secs(59 + 60)));
    assert!(h.advance(Duration::from_secs(59)).is_empty());
    // Pings count as data too.
    h.s.handle_keepalive(h.now, ConnId(1));
    assert!(h.advance(Duration::from_secs(59)).is_empty());
    assert_eq!(h.advance(Duration::from_secs(1)), lines(&["1 close 1000"]));
    assert_eq!(h.s.poll_timeout(), None);
    // Server pushes do not keep a connection alive.
    let mut h = H::with(ServerConfig {
        idle_close_code: 1002,
        ..ServerConfig::default()
    });
    h.joined(1, "room:a", "1");
    h.advance(Duration::from_secs(30));
    h.s.broadcast("room:a", "x", &Payload::empty());
    h.out();
    assert_eq!(h.advance(Duration::from_secs(30)), lines(&["1 close 1002"]));
    // Disabled.
    let mut h = H::with(ServerConfig {
        idle_timeout: None,
        ..ServerConfig::default()
    });
    h.connect(1, V2);
    assert_eq!(h.s.poll_timeout(), None);
    assert!(h.advance(Duration::from_secs(3600)).is_empty());
    assert!(h.s.is_open(ConnId(1)));
}

#[test]
fn crash_sends_phx_error_and_no_reply() {
    let mut h = H::new();
    h.joined(1, "room:a", "5");
    assert_eq!(
        h.send(1, r#"["5","6","room:a","crash",{}]"#),
        lines(&[r#"1 ["5","5","room:a","phx_error",{"reason":"channel_crash"}]"#])
    );
    assert!(h.s.channels(ConnId(1)).is_empty());
    // Before 1.8.10 the payload was empty.
    let mut h = H::with(ServerConfig {
        channel_crash_reason: false,
        ..ServerConfig::default()
    });
    h.joined(1, "room:a", "5");
    assert_eq!(
        h.send(1, r#"["5","6","room:a","whatever",{}]"#),
        lines(&[r#"1 ["5","5","room:a","phx_error",{}]"#])
    );
}

#[test]
fn unknown_events_and_bad_payloads_crash_the_channel() {
    for msg in [
        r#"["5","6","room:a","no_such_event",{}]"#,
        r#"["5","6","room:a","shout",[1]]"#,
        r#"["5","6","room:a","shout","text"]"#,
        r#"["5","6","room:a","slow",{"ms":"soon"}]"#,
        r#"["5","6","room:a","slow",{}]"#,
        r#"["5","6","room:a","push_me",{"payload":{}}]"#,
        r#"["5","6","room:a","push_me",{"event":"e","payload":[1]}]"#,
        r#"["5","6","room:a","flood",{"n":-1}]"#,
        r#"["5","6","room:a","flood",{"n":1,"event":5}]"#,
        r#"["5","6","room:a","broadcast_from",5]"#,
    ] {
        let mut h = H::new();
        h.joined(1, "room:a", "5");
        assert_eq!(
            h.send(1, msg),
            lines(&[r#"1 ["5","5","room:a","phx_error",{"reason":"channel_crash"}]"#]),
            "{msg}"
        );
    }
}

#[test]
fn stop_sends_phx_close_and_no_reply() {
    let mut h = H::new();
    h.joined(1, "room:a", "5");
    assert_eq!(
        h.send(1, r#"["5","6","room:a","stop",{}]"#),
        lines(&[r#"1 ["5","5","room:a","phx_close",{}]"#])
    );
    assert!(h.s.channels(ConnId(1)).is_empty());
}

#[test]
fn replies_with_each_status() {
    let mut h = H::new();
    h.joined(1, "room:a", "5");
    assert_eq!(
        h.send(1, r#"["5","6","room:a","error_reply",{}]"#),
        lines(&[
            r#"1 ["5","6","room:a","phx_reply",{"response":{"reason":"nope"},"status":"error"}]"#
        ])
    );
    assert_eq!(
        h.send(1, r#"["5","7","room:a","custom_status",{"k":true}]"#),
        lines(&[r#"1 ["5","7","room:a","phx_reply",{"response":{"k":true},"status":"custom"}]"#])
    );
    assert!(h.send(1, r#"["5","8","room:a","noreply",{}]"#).is_empty());
    assert_eq!(
        h.send(1, r#"["5","9","room:a","ping",42]"#),
        lines(&[r#"1 ["5","9","room:a","phx_reply",{"response":42,"status":"ok"}]"#])
    );
}

#[test]
fn shout_reaches_every_subscriber_in_its_own_format() {
    let mut h = H::new();
    h.joined(1, "room:a", "1");
    h.connect(2, V1);
    h.send(
        2,
        r#"{"topic":"room:a","event":"phx_join","payload":{},"ref":"1"}"#,
    );
    h.joined(3, "room:b", "1");
    assert_eq!(
        h.send(1, r#"["1","2","room:a","shout",{"z":1,"a":"x"}]"#),
        lines(&[
            r#"1 [null,null,"room:a","shout",{"a":"x","z":1}]"#,
            r#"2 {"event":"shout","payload":{"a":"x","z":1},"ref":null,"topic":"room:a"}"#,
        ])
    );
    // broadcast_from skips the sender.
    assert_eq!(
        h.send(
            1,
            r#"["1","3","room:a","broadcast_from",{"event":"hey","payload":{"n":1}}]"#
        ),
        lines(&[
            r#"2 {"event":"hey","payload":{"n":1},"ref":null,"topic":"room:a"}"#,
            r#"1 ["1","3","room:a","phx_reply",{"response":{},"status":"ok"}]"#,
        ])
    );
}

#[test]
fn push_me_and_flood_push_to_the_sender() {
    let mut h = H::new();
    h.joined(1, "room:a", "1");
    assert_eq!(
        h.send(
            1,
            r#"["1","2","room:a","push_me",{"event":"note","payload":{"b":2,"a":1}}]"#
        ),
        lines(&[
            r#"1 ["1",null,"room:a","note",{"a":1,"b":2}]"#,
            r#"1 ["1","2","room:a","phx_reply",{"response":{},"status":"ok"}]"#,
        ])
    );
    assert_eq!(
        h.send(1, r#"["1","3","room:a","flood",{"n":3,"event":"tick"}]"#),
        lines(&[
            r#"1 ["1",null,"room:a","tick",{"i":1}]"#,
            r#"1 ["1",null,"room:a","tick",{"i":2}]"#,
            r#"1 ["1",null,"room:a","tick",{"i":3}]"#,
            r#"1 ["1","3","room:a","phx_reply",{"response":{"n":3},"status":"ok"}]"#,
        ])
    );
    assert_eq!(
        h.send(1, r#"["1","4","room:a","flood",{"n":0}]"#),
        lines(&[r#"1 ["1","4","room:a","phx_reply",{"response":{"n":0},"status":"ok"}]"#])
    );
    let mut h = H::with(ServerConfig {
        max_flood: 10,
        ..ServerConfig::default()
    });
    h.joined(1, "room:a", "1");
    assert_eq!(
        h.send(1, r#"["1","2","room:a","flood",{"n":10}]"#).len(),
        11
    );
    assert_eq!(
        h.send(1, r#"["1","3","room:a","flood",{"n":11}]"#),
        lines(&[r#"1 ["1","1","room:a","phx_error",{"reason":"channel_crash"}]"#])
    );
}

#[test]
fn slow_replies_after_its_delay_on_model_time() {
    let mut h = H::new();
    let t0 = h.now;
    h.joined(1, "room:a", "1");
    assert!(
        h.send(1, r#"["1","2","room:a","slow",{"ms":1500}]"#)
            .is_empty()
    );
    assert!(
        h.send(1, r#"["1","3","room:a","slow",{"ms":500}]"#)
            .is_empty()
    );
    assert_eq!(h.s.poll_timeout(), Some(t0 + ms(500)));
    assert!(h.advance(ms(499)).is_empty());
    assert_eq!(
        h.advance(ms(1)),
        lines(&[r#"1 ["1","3","room:a","phx_reply",{"response":{"ms":500},"status":"ok"}]"#])
    );
    assert_eq!(
        h.advance(ms(1000)),
        lines(&[r#"1 ["1","2","room:a","phx_reply",{"response":{"ms":1500},"status":"ok"}]"#])
    );
    // The reply dies with the channel.
    h.send(1, r#"["1","4","room:a","slow",{"ms":100}]"#);
    h.send(1, r#"["1","5","room:a","phx_leave",{}]"#);
    assert!(h.advance(ms(100)).is_empty());
    // A delay past the end of time never fires and does not panic.
    h.joined(1, "room:b", "6");
    h.send(
        1,
        &format!(r#"["6","7","room:b","slow",{{"ms":{}}}]"#, u64::MAX),
    );
    assert!(h.advance(ms(1)).is_empty());
}

#[test]
fn binary_events_produce_the_v2_binary_layouts() {
    let mut h = H::new();
    h.joined(1, "room:bin", "5");
    // Binary push "bin" → binary reply (trace v2_binary.txt).
    assert_eq!(
        h.send_bin(
            1,
            &unhex("00010108033536726f6f6d3a62696e62696e01020300fffe")
        ),
        lines(&["1 b:01010108023536726f6f6d3a62696e6f6b01020300fffe"])
    );
    // JSON push "bin" → binary reply holding the JSON text.
    assert_eq!(
        h.send(1, r#"["5","7","room:bin","bin",{"json":"in"}]"#),
        lines(&["1 b:01010108023537726f6f6d3a62696e6f6b7b226a736f6e223a22696e227d"])
    );
    // bin_push → binary server push (no ref) then a JSON reply.
    assert_eq!(
        h.send_bin(
            1,
            &unhex("00010108083538726f6f6d3a62696e62696e5f7075736870757368206d65")
        ),
        lines(&[
            "1 b:0001080835726f6f6d3a62696e62696e5f7075736870757368206d65",
            r#"1 ["5","8","room:bin","phx_reply",{"response":{},"status":"ok"}]"#,
        ])
    );
    // bin_shout → binary broadcast (kind 2).
    assert_eq!(
        h.send_bin(
            1,
            &unhex("00010108093539726f6f6d3a62696e62696e5f73686f7574deadbeef")
        ),
        lines(&[
            "1 b:020809726f6f6d3a62696e62696e5f73686f7574deadbeef",
            r#"1 ["5","9","room:bin","phx_reply",{"response":{},"status":"ok"}]"#,
        ])
    );
}

#[test]
fn unencodable_replies_crash_the_channel_and_unencodable_broadcasts_skip_v1() {
    let mut h = H::new();
    h.connect(1, V1);
    h.send(
        1,
        r#"{"topic":"room:a","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}"#,
    );
    assert_eq!(
        h.send(
            1,
            r#"{"topic":"room:a","event":"bin","payload":{},"ref":"2","join_ref":"1"}"#
        ),
        lines(&[
            r#"1 {"event":"phx_error","payload":{"reason":"channel_crash"},"ref":"1","topic":"room:a"}"#
        ])
    );
    h.send(
        1,
        r#"{"topic":"room:a","event":"phx_join","payload":{},"ref":"3","join_ref":"3"}"#,
    );
    h.joined(2, "room:a", "1");
    assert_eq!(h.s.broadcast("room:a", "b", &Payload::binary(vec![1u8])), 1);
    // kind 2, topic "room:a", event "b", payload 01; nothing for the V1 connection.
    assert_eq!(h.out(), lines(&["2 b:020601726f6f6d3a616201"]));
    // A topic too long for a binary frame crashes the channel on a binary reply.
    let long = format!("room:{}", "x".repeat(300));
    let mut h = H::new();
    h.joined(1, &long, "1");
    let out = h.send(1, &format!(r#"["1","2","{long}","bin",{{}}]"#));
    assert_eq!(out.len(), 1);
    assert!(out[0].contains("phx_error"), "{out:?}");
}

#[test]
fn binary_join_params_close_the_connection() {
    let mut h = H::new();
    h.connect(1, V2);
    // kind 0, join_ref "1", ref "1", topic "room:a", event "phx_join", payload 01
    let mut frame = vec![0, 1, 1, 6, 8];
    frame.extend_from_slice(b"11room:aphx_join");
    frame.push(1);
    assert_eq!(h.send_bin(1, &frame), lines(&["1 close 1011"]));
}

#[test]
fn disconnect_me_closes_every_connection_sharing_the_socket_id() {
    let mut h = H::new();
    h.joined(1, "room:a", "1");
    h.joined(2, "room:b", "1");
    assert_eq!(
        h.send(1, r#"["1","2","room:a","disconnect_me",{}]"#),
        lines(&["1 close 1001", "2 close 1001"])
    );
    assert_eq!(h.s.open_connections(), 0);

    let mut h = H::with(ServerConfig {
        socket_id: SocketIdMode::PerConnection,
        ..ServerConfig::default()
    });
    h.joined(1, "room:a", "1");
    h.joined(2, "room:b", "1");
    assert_eq!(
        h.send(1, r#"["1","2","room:a","disconnect_me",{}]"#),
        lines(&["1 close 1001"])
    );
    assert!(h.s.is_open(ConnId(2)));

    let mut h = H::with(ServerConfig {
        socket_id: SocketIdMode::None,
        ..ServerConfig::default()
    });
    h.joined(1, "room:a", "1");
    assert!(
        h.send(1, r#"["1","2","room:a","disconnect_me",{}]"#)
            .is_empty()
    );
    assert!(h.s.is_open(ConnId(1)));
}

/// Every `phx_ref` value in the output, in order.
fn refs_of(out: &[String]) -> Vec<String> {
    let mut refs = Vec::new();
    for line in out {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("\"phx_ref\":\"") {
            rest = &rest[i + 11..];
            let end = rest.find('"').unwrap();
            refs.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    refs
}

/// alice joins `presence:lobby` on connection 1 of a server sending presence in `order`: the
/// server (which sent the reply, then the diff and the state in `order`) and alice's `phx_ref`.
fn alice_joins_presence(order: PresenceOrder) -> (H, String) {
    let mut h = H::with(ServerConfig {
        unix_time_at_start: 1_000,
        presence_order: order,
        ..ServerConfig::default()
    });
    h.connect(1, V2);
    let out = h.send(
        1,
        r#"["5","5","presence:lobby","phx_join",{"user":"alice"}]"#,
    );
    let r = refs_of(&out);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0], r[1]);
    assert_eq!(r[0].len(), 16, "12 bytes in URL-safe base64");
    let alice = format!(
        r#"{{"alice":{{"metas":[{{"online_at":1000,"phx_ref":"{}"}}]}}}}"#,
        r[0]
    );
    let diff = format!(
        r#"1 [null,null,"presence:lobby","presence_diff",{{"joins":{alice},"leaves":{{}}}}]"#
    );
    let state = format!(r#"1 ["5",null,"presence:lobby","presence_state",{alice}]"#);
    let (first, second) = match order {
        PresenceOrder::DiffFirst => (diff, state),
        PresenceOrder::StateFirst => (state, diff),
    };
    assert_eq!(
        out,
        vec![
            r#"1 ["5","5","presence:lobby","phx_reply",{"response":{"joined":"presence:lobby"},"status":"ok"}]"#.to_owned(),
            first,
            second,
        ]
    );
    let alice_ref = r[0].clone();
    (h, alice_ref)
}

#[test]
fn presence_join_pushes_the_diff_then_the_state() {
    let (mut h, alice_ref) = alice_joins_presence(PresenceOrder::DiffFirst);
    // Bob joins 2 s later on another connection.
    h.now += Duration::from_secs(2);
    h.connect(2, V2);
    let out = h.send(2, r#"["1","1","presence:lobby","phx_join",{"user":"bob"}]"#);
    let bob_ref = refs_of(&out[1..2])[0].clone();
    assert_ne!(bob_ref, alice_ref);
    let bob = format!(r#"{{"bob":{{"metas":[{{"online_at":1002,"phx_ref":"{bob_ref}"}}]}}}}"#);
    let diff =
        format!(r#"[null,null,"presence:lobby","presence_diff",{{"joins":{bob},"leaves":{{}}}}]"#);
    assert_eq!(out[1], format!("1 {diff}"));
    assert_eq!(out[2], format!("2 {diff}"));
    assert!(out[3].starts_with(r#"2 ["1",null,"presence:lobby","presence_state",{"alice":"#));
    assert!(out[3].contains(r#""bob":"#));
    assert_eq!(out.len(), 4);
    // Bob leaves: alice sees the leave.
    let out = h.send(2, r#"["1","2","presence:lobby","phx_leave",{}]"#);
    assert_eq!(
        out[2],
        format!(
            r#"1 [null,null,"presence:lobby","presence_diff",{{"joins":{{}},"leaves":{bob}}}]"#
        )
    );
    assert_eq!(out.len(), 3);
    // Bob comes back and his connection drops: alice sees the leave again.
    h.send(2, r#"["3","3","presence:lobby","phx_join",{"user":"bob"}]"#);
    h.s.handle_disconnected(h.now, ConnId(2));
    let out = h.out();
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with("1 ") && out[0].contains(r#""leaves":{"bob":"#),
        "{out:?}"
    );
    assert!(h.s.presence_list("presence:lobby").get("bob").is_none());
}

#[test]
fn presence_join_can_push_the_state_before_the_diff() {
    alice_joins_presence(PresenceOrder::StateFirst);
}

#[test]
fn presence_update_diffs_new_meta_in_joins_and_old_in_leaves() {
    let mut h = H::new();
    h.connect(1, V2);
    let out = h.send(
        1,
        r#"["5","5","presence:lobby","phx_join",{"user":"alice"}]"#,
    );
    let old_ref = refs_of(&out)[0].clone();
    let out = h.send(
        1,
        r#"["5","6","presence:lobby","update",{"status":"away"}]"#,
    );
    assert_eq!(out.len(), 2);
    let new_ref = refs_of(&out[..1])[0].clone();
    assert_ne!(new_ref, old_ref);
    let online_at = ServerConfig::default().unix_time_at_start;
    assert_eq!(
        out[0],
        format!(
            r#"1 [null,null,"presence:lobby","presence_diff",{{"joins":{{"alice":{{"metas":[{{"phx_ref":"{new_ref}","phx_ref_prev":"{old_ref}","status":"away"}}]}}}},"leaves":{{"alice":{{"metas":[{{"online_at":{online_at},"phx_ref":"{old_ref}"}}]}}}}}}]"#
        )
    );
    assert_eq!(
        out[1],
        r#"1 ["5","6","presence:lobby","phx_reply",{"response":{},"status":"ok"}]"#
    );
    assert_eq!(
        h.s.presence_list("presence:lobby")["alice"]["metas"][0]["status"],
        "away"
    );
    // A non-object update crashes the channel, which untracks alice (no one left to tell).
    assert_eq!(
        h.send(1, r#"["5","7","presence:lobby","update",[1]]"#),
        lines(&[r#"1 ["5","5","presence:lobby","phx_error",{"reason":"channel_crash"}]"#])
    );
    assert_eq!(h.s.presence_list("presence:lobby"), serde_json::json!({}));
}

#[test]
fn presence_join_without_a_user_crashes_the_join() {
    let mut h = H::new();
    h.connect(1, V2);
    for params in ["{}", r#"{"user":5}"#, "[1]"] {
        assert_eq!(
            h.send(1, &format!(r#"["1","1","presence:x","phx_join",{params}]"#)),
            lines(&[
                r#"1 ["1","1","presence:x","phx_reply",{"response":{"reason":"join crashed"},"status":"error"}]"#
            ])
        );
    }
    assert_eq!(h.s.joins("presence:x"), 0);
}

#[test]
fn presence_duplicate_join_replaces_the_meta() {
    let mut h = H::new();
    h.connect(1, V2);
    h.send(1, r#"["1","1","presence:x","phx_join",{"user":"u"}]"#);
    let out = h.send(1, r#"["2","2","presence:x","phx_join",{"user":"u"}]"#);
    assert!(out[0].contains(r#""phx_reply""#));
    assert_eq!(out[1], r#"1 ["1","1","presence:x","phx_close",{}]"#);
    assert!(out[2].contains(r#""leaves":{"u":"#));
    assert!(out[3].contains(r#""joins":{"u":"#));
    assert!(out[4].contains("presence_state"));
    assert_eq!(
        h.s.presence_list("presence:x")["u"]["metas"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn restart_drops_everything_but_counters() {
    let mut h = H::new();
    h.joined(1, "room:a", "1");
    h.joined(2, "room:a", "1");
    h.send(1, r#"["1","2","room:a","slow",{"ms":10}]"#);
    h.s.restart(h.now);
    assert_eq!(h.out(), lines(&["1 abort", "2 abort"]));
    assert_eq!(h.s.open_connections(), 0);
    assert_eq!(h.s.subscribers("room:a"), 0);
    assert!(h.advance(ms(10)).is_empty());
    assert_eq!(h.s.poll_timeout(), None);
    // The client reconnects; its channel is gone.
    h.connect(1, V2);
    assert!(h.send(1, r#"["1","3","room:a","ping",{}]"#)[0].contains("unmatched topic"));
    assert_eq!(h.s.joins("room:a"), 2);
    assert_eq!(h.s.stats().connections_accepted, 3);
}

#[test]
fn drop_connection_aborts_and_tells_presence_subscribers() {
    let mut h = H::new();
    h.connect(1, V2);
    h.connect(2, V2);
    h.send(1, r#"["1","1","presence:x","phx_join",{"user":"a"}]"#);
    h.send(2, r#"["1","1","presence:x","phx_join",{"user":"b"}]"#);
    assert!(h.s.drop_connection(ConnId(2)));
    let out = h.out();
    assert_eq!(out[0], "2 abort");
    assert!(out[1].starts_with("1 ") && out[1].contains(r#""leaves":{"b":"#));
    assert!(!h.s.drop_connection(ConnId(2)));
}

#[test]
fn refused_connects_get_503_until_the_deadline() {
    let mut h = H::new();
    h.s.refuse_connects_until(h.now + Duration::from_secs(5));
    let req = ConnectRequest::new(V2);
    assert_eq!(
        h.s.handle_connect(h.now, ConnId(1), &req),
        Err(Refused { status: 503 })
    );
    h.now += Duration::from_secs(5);
    assert!(h.s.handle_connect(h.now, ConnId(1), &req).is_ok());
    assert_eq!(h.s.stats().connections_refused, 1);
    // An id already open is refused.
    assert_eq!(
        h.s.handle_connect(h.now, ConnId(1), &req),
        Err(Refused { status: 500 })
    );
}

#[test]
fn connect_with_auth_token_selects_phoenix() {
    let mut h = H::new();
    let req = ConnectRequest::new("/socket/websocket?vsn=2.0.0").with_protocols(format!(
        "phoenix,{AUTH_TOKEN_PREFIX}{}",
        encode_base64(b"secret")
    ));
    assert_eq!(
        h.s.handle_connect(h.now, ConnId(1), &req),
        Ok(Accepted {
            protocol: Some("phoenix"),
            vsn: Vsn::V2
        })
    );
    let req = ConnectRequest::new("/socket/websocket?token=wrong&vsn=2.0.0");
    assert_eq!(
        h.s.handle_connect(h.now, ConnId(2), &req),
        Err(Refused { status: 403 })
    );
}

#[test]
fn hooks_crash_stop_broadcast_push_and_disconnect() {
    let mut h = H::new();
    h.joined(1, "room:a", "1");
    h.joined(2, "room:a", "7");
    assert_eq!(h.s.crash_channel("room:a"), 2);
    assert_eq!(
        h.out(),
        lines(&[
            r#"1 ["1","1","room:a","phx_error",{"reason":"channel_crash"}]"#,
            r#"2 ["7","7","room:a","phx_error",{"reason":"channel_crash"}]"#,
        ])
    );
    h.joined(1, "room:a", "3");
    assert_eq!(h.s.stop_channel("room:a"), 1);
    assert_eq!(h.out(), lines(&[r#"1 ["3","3","room:a","phx_close",{}]"#]));
    h.joined(1, "room:a", "4");
    h.joined(2, "room:a", "5");
    let payload = Payload::from_json(r#"{"x":1}"#).unwrap();
    assert_eq!(h.s.broadcast("room:a", "news", &payload), 2);
    assert_eq!(h.s.broadcast("room:none", "news", &payload), 0);
    assert_eq!(
        h.out(),
        lines(&[
            r#"1 [null,null,"room:a","news",{"x":1}]"#,
            r#"2 [null,null,"room:a","news",{"x":1}]"#,
        ])
    );
    assert!(h.s.push(ConnId(2), "room:a", "direct", payload.clone()));
    assert!(!h.s.push(ConnId(2), "room:b", "direct", payload));
    assert_eq!(
        h.out(),
        lines(&[r#"2 ["5",null,"room:a","direct",{"x":1}]"#])
    );
    assert_eq!(h.s.disconnect_all(), 2);
    assert_eq!(h.out(), lines(&["1 close 1001", "2 close 1001"]));
    assert!(!h.s.close_connection(ConnId(1), 1000, "bye"));
}

#[test]
fn counters_and_recorded_frames() {
    let mut h = H::with(ServerConfig {
        record_frames: true,
        ..ServerConfig::default()
    });
    h.joined(1, "room:a", "1");
    h.send(1, r#"["1","2","room:a","ping",{}]"#);
    h.connect(2, V2);
    h.send(2, r#"[null,"1","phoenix","heartbeat",{}]"#);
    assert_eq!(h.s.frames_received_on(ConnId(1)), 2);
    assert_eq!(h.s.frames_received_on(ConnId(2)), 1);
    assert_eq!(h.s.stats().frames_received, 3);
    assert_eq!(h.s.stats().joins, 1);
    assert_eq!(h.s.received(ConnId(1)).len(), 2);
    assert_eq!(
        h.s.received(ConnId(1))[1],
        Frame::Text(Bytes::from_static(br#"["1","2","room:a","ping",{}]"#))
    );
    h.s.handle_disconnected(h.now, ConnId(1));
    assert_eq!(h.s.received(ConnId(1)).len(), 2, "kept after close");
    assert!(H::new().s.received(ConnId(1)).is_empty());
}

#[test]
fn closed_connections_leave_nothing_behind_without_recording() {
    let mut h = H::new();
    h.joined(1, "room:a", "1");
    assert_eq!(h.s.frames_received_on(ConnId(1)), 1);
    h.s.handle_disconnected(h.now, ConnId(1));
    assert_eq!(h.s.frames_received_on(ConnId(1)), 0);
    assert!(h.s.per_conn.is_empty());
}

#[test]
fn time_running_backwards_is_clamped() {
    let mut h = H::new();
    h.joined(1, "room:a", "1");
    h.send(1, r#"["1","2","room:a","slow",{"ms":100}]"#);
    let earlier = h.now - Duration::from_secs(10);
    h.s.handle_timeout(earlier);
    h.s.handle_frame(
        earlier,
        ConnId(1),
        Frame::Text(Bytes::from_static(br#"["1","3","room:a","ping",{}]"#)),
    );
    assert_eq!(h.out().len(), 1);
    assert_eq!(h.advance(ms(100)).len(), 1);
}

/// A fixed script run on a fresh server; returns everything it produced.
fn script() -> Vec<String> {
    let mut h = H::new();
    let mut all = Vec::new();
    h.connect(1, V2);
    h.connect(2, V1);
    all.extend(h.send(1, r#"["1","1","presence:p","phx_join",{"user":"a"}]"#));
    all.extend(h.send(
        2,
        r#"{"topic":"presence:p","event":"phx_join","payload":{"user":"b"},"ref":"1"}"#,
    ));
    all.extend(h.send(1, r#"["1","2","presence:p","update",{"s":1}]"#));
    all.extend(h.joined(1, "room:x", "3"));
    all.extend(h.send(1, r#"["3","4","room:x","slow",{"ms":5}]"#));
    all.extend(h.send(1, r#"["3","5","room:x","flood",{"n":2}]"#));
    all.extend(h.advance(ms(5)));
    h.s.drop_connection(ConnId(2));
    all.extend(h.out());
    all
}

#[test]
fn same_inputs_give_byte_identical_outputs() {
    let a = script();
    assert!(a.len() > 10);
    assert_eq!(a, script());
}

#[derive(Debug, Clone)]
enum Op {
    Connect(u8, bool),
    Text(u8, String),
    Binary(u8, Vec<u8>),
    Advance(u16),
    Disconnect(u8),
    Restart,
    Crash(u8),
    Hook(u8),
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("room:a".to_owned()),
        Just("room:forbidden".to_owned()),
        Just("presence:p".to_owned()),
        Just("phoenix".to_owned()),
        "[a-z:]{0,12}",
    ]
}

fn event() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("phx_join".to_owned()),
        Just("phx_leave".to_owned()),
        Just("heartbeat".to_owned()),
        Just("ping".to_owned()),
        Just("shout".to_owned()),
        Just("slow".to_owned()),
        Just("flood".to_owned()),
        Just("update".to_owned()),
        Just("bin_shout".to_owned()),
        Just("push_me".to_owned()),
        Just("disconnect_me".to_owned()),
        Just("crash".to_owned()),
        "[a-z_]{0,10}",
    ]
}

fn json_payload() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_owned()),
        Just(r#"{"user":"u"}"#.to_owned()),
        Just(r#"{"ms":3}"#.to_owned()),
        Just(r#"{"n":3,"event":"e"}"#.to_owned()),
        Just(r#"{"event":"e","payload":{"a":1}}"#.to_owned()),
        Just("[1,2]".to_owned()),
        Just("null".to_owned()),
        Just(r#"{"ms":18446744073709551615}"#.to_owned()),
        Just(r#"{"n":99999999999}"#.to_owned()),
        "[ -~]{0,16}",
    ]
}

fn opt_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just(r#""1""#.to_owned()),
        Just(r#""2""#.to_owned()),
        Just(r#""""#.to_owned()),
    ]
}

fn text_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        (opt_ref(), opt_ref(), topic(), event(), json_payload())
            .prop_map(|(j, r, t, e, p)| format!(r#"[{j},{r},"{t}","{e}",{p}]"#)),
        (topic(), event(), json_payload(), opt_ref()).prop_map(|(t, e, p, r)| format!(
            r#"{{"topic":"{t}","event":"{e}","payload":{p},"ref":{r}}}"#
        )),
        "\\PC{0,40}",
    ]
}

fn binary_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            0u8..3,
            "[0-9]{0,2}",
            "[0-9]{0,2}",
            topic(),
            event(),
            any::<Vec<u8>>()
        )
            .prop_map(|(kind, j, r, t, e, p)| {
                let mut f = vec![
                    kind,
                    j.len() as u8,
                    r.len() as u8,
                    t.len() as u8,
                    e.len() as u8,
                ];
                for s in [&j, &r, &t, &e] {
                    f.extend_from_slice(s.as_bytes());
                }
                f.extend_from_slice(&p);
                f
            }),
        any::<Vec<u8>>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..3, any::<bool>()).prop_map(|(c, v2)| Op::Connect(c, v2)),
        4 => (0u8..3, text_frame()).prop_map(|(c, t)| Op::Text(c, t)),
        2 => (0u8..3, binary_frame()).prop_map(|(c, b)| Op::Binary(c, b)),
        1 => (0u16..5000).prop_map(Op::Advance),
        1 => (0u8..3).prop_map(Op::Disconnect),
        1 => Just(Op::Restart),
        1 => (0u8..3).prop_map(Op::Crash),
        1 => (0u8..6).prop_map(Op::Hook),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Hostile and random inputs never panic the model, never address a closed connection,
    /// and its timers never go backwards.
    #[test]
    fn arbitrary_inputs_never_panic(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = H::with(ServerConfig {
            max_flood: 50,
            max_channels_per_transport: 3,
            record_frames: true,
            ..ServerConfig::default()
        });
        let mut open = BTreeSet::new();
        for op in ops {
            match op {
                Op::Connect(c, v2) => {
                    let target = if v2 { V2 } else { V1 };
                    if h.s.handle_connect(h.now, ConnId(c.into()), &ConnectRequest::new(target)).is_ok() {
                        open.insert(c);
                    }
                }
                Op::Text(c, t) => h.s.handle_frame(h.now, ConnId(c.into()), Frame::Text(Bytes::from(t))),
                Op::Binary(c, b) => h.s.handle_frame(h.now, ConnId(c.into()), Frame::Binary(Bytes::from(b))),
                Op::Advance(n) => {
                    h.now += ms(n.into());
                    h.s.handle_timeout(h.now);
                    // Everything due has fired.
                    prop_assert!(h.s.poll_timeout().is_none_or(|at| at > h.now));
                }
                Op::Disconnect(c) => {
                    h.s.handle_disconnected(h.now, ConnId(c.into()));
                    open.remove(&c);
                }
                Op::Restart => h.s.restart(h.now),
                Op::Crash(c) => {
                    h.s.crash_channel(["room:a", "presence:p", "x"][usize::from(c)]);
                }
                Op::Hook(n) => match n {
                    0 => { h.s.broadcast("room:a", "b", &Payload::binary(vec![1u8])); }
                    1 => { h.s.broadcast("presence:p", "j", &Payload::empty()); }
                    2 => { h.s.stop_channel("room:a"); }
                    3 => { h.s.disconnect_all(); }
                    4 => { h.s.drop_connection(ConnId(1)); }
                    _ => {
                        let answer = !h.s.answers_heartbeats();
                        h.s.set_answer_heartbeats(answer);
                    }
                },
            }
            while let Some(o) = h.s.poll_output() {
                let c = u8::try_from(o.conn().0).unwrap();
                prop_assert!(open.contains(&c), "output for a connection never opened: {o:?}");
                if matches!(o, Output::Close { .. } | Output::Abort { .. }) {
                    open.remove(&c);
                }
            }
            open.retain(|&c| h.s.is_open(ConnId(c.into())));
        }
    }

    /// Arbitrary bytes in either frame type, on either serializer, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in any::<Vec<u8>>(), text in any::<bool>(), v2 in any::<bool>()) {
        let mut h = H::new();
        h.connect(1, if v2 { V2 } else { V1 });
        let frame = if text { Frame::Text(Bytes::from(bytes)) } else { Frame::Binary(Bytes::from(bytes)) };
        h.s.handle_frame(h.now, ConnId(1), frame);
        let out = h.out();
        prop_assert!(out.len() <= 2);
    }
}
