use std::time::{Duration, Instant};

use super::*;
use crate::backoff::Backoff;
use crate::codec::V1Json;
use crate::config::ConfigBuilder;

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Drives a socket with explicit instants and records everything it outputs.
struct T {
    s: Socket,
    start: Instant,
    now: Instant,
    conn: Option<ConnectionId>,
    frames: Vec<String>,
    closes: Vec<(u16, &'static str)>,
    connects: Vec<ConnectRequest>,
    events: Vec<Event>,
}

fn config() -> ConfigBuilder {
    Config::builder("ws://example.com/socket").unwrap()
}

impl T {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(b: ConfigBuilder) -> Self {
        Self::starting_at(b, Instant::now())
    }

    fn starting_at(b: ConfigBuilder, start: Instant) -> Self {
        Self {
            s: Socket::new(b.build().unwrap(), start),
            start,
            now: start,
            conn: None,
            frames: Vec::new(),
            closes: Vec::new(),
            connects: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.s.poll_transmit() {
            match t {
                Transmit::Connect { conn, request } => {
                    self.conn = Some(conn);
                    self.connects.push(request);
                }
                Transmit::Frame(Frame::Text(b)) => {
                    self.frames.push(String::from_utf8(b.to_vec()).unwrap())
                }
                Transmit::Frame(Frame::Binary(b)) => self.frames.push(format!("bin:{b:02x?}")),
                Transmit::Close { code, reason, .. } => self.closes.push((code, reason)),
            }
        }
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
        self.s.check_invariants().unwrap();
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + MS(ms)
    }

    /// Moves the clock to `start + ms` and fires due timers.
    fn advance_to(&mut self, ms: u64) {
        self.advance_to_instant(self.at(ms));
    }

    fn advance_to_instant(&mut self, at: Instant) {
        self.now = at;
        self.s.handle_timeout(self.now);
        self.drain();
        if let Some(t) = self.s.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout in the past after handle_timeout"
            );
        }
    }

    fn advance(&mut self, d: Duration) {
        self.advance_to_instant(self.now + d);
    }

    fn connect(&mut self) {
        self.s.connect(self.now);
        self.drain();
    }

    fn opened(&mut self) {
        let conn = self.conn.unwrap();
        self.s.handle_connected(self.now, conn);
        self.drain();
    }

    fn open(&mut self) {
        self.connect();
        self.opened();
    }

    fn closed(&mut self, reason: CloseReason) {
        let conn = self.conn.unwrap();
        self.s.handle_closed(self.now, conn, reason);
        self.drain();
    }

    fn recv(&mut self, text: &str) {
        self.feed(text).unwrap();
        self.drain();
    }

    /// Feeds a text frame without draining what it produced.
    fn feed(&mut self, text: &str) -> Result<(), DecodeError> {
        let conn = self.conn.unwrap();
        self.s
            .handle_frame(self.now, conn, Frame::Text(text.to_owned().into()))
    }

    fn join(&mut self, topic: &str) -> ChannelId {
        let id = self.s.join(self.now, topic, Payload::empty()).unwrap();
        self.drain();
        id
    }

    fn cast(&mut self, ch: ChannelId, event: &str) {
        self.s.cast(self.now, ch, event, Payload::empty()).unwrap();
        self.drain();
    }

    fn push(&mut self, ch: ChannelId, event: &str) -> PushRef {
        let r = self
            .s
            .push(self.now, ch, event, Payload::empty(), None)
            .unwrap();
        self.drain();
        r
    }

    fn take_frames(&mut self) -> Vec<String> {
        std::mem::take(&mut self.frames)
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Joins `topic` on an open socket and answers the join with ok.
    fn joined(&mut self, topic: &str) -> ChannelId {
        let id = self.join(topic);
        let jr = self.s.channel(id).unwrap().join_ref().unwrap().to_string();
        self.recv(&ok_reply(&jr, &jr, topic, "{}"));
        id
    }
}

fn ok_reply(join_ref: &str, r: &str, topic: &str, response: &str) -> String {
    format!(r#"["{join_ref}","{r}","{topic}","phx_reply",{{"response":{response},"status":"ok"}}]"#)
}

fn reply(join_ref: &str, r: &str, topic: &str, status: &str, response: &str) -> String {
    format!(
        r#"["{join_ref}","{r}","{topic}","phx_reply",{{"response":{response},"status":"{status}"}}]"#
    )
}

fn joined_events(events: &[Event]) -> Vec<(ChannelId, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Joined {
                channel, rejoin, ..
            } => Some((*channel, *rejoin)),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------ socket lifecycle

#[test]
fn connect_dials_the_endpoint_and_reports_connected() {
    let mut t = T::with(config().param("token", "abc"));
    assert_eq!(t.s.state(), SocketState::Disconnected);
    t.connect();
    assert_eq!(t.s.state(), SocketState::Connecting);
    assert_eq!(
        t.connects[0].url(),
        "ws://example.com/socket/websocket?token=abc&vsn=2.0.0"
    );
    assert!(t.connects[0].subprotocols().is_empty());
    t.opened();
    assert_eq!(t.s.state(), SocketState::Connected);
    let conn = t.conn.unwrap();
    assert_eq!(
        t.take_events(),
        [
            Event::Connecting { conn, attempt: 1 },
            Event::Connected { conn }
        ]
    );
    // A second connect while open does nothing.
    t.connect();
    assert_eq!(t.connects.len(), 1);
}

#[test]
fn auth_token_is_offered_as_subprotocols() {
    let mut t = T::with(config().auth_token("secret"));
    t.connect();
    assert_eq!(
        t.connects[0].subprotocols(),
        ["phoenix", "base64url.bearer.phx.c2VjcmV0"]
    );
}

#[test]
fn param_and_token_updates_apply_to_the_next_connect() {
    let mut t = T::with(config().secret_param("token", "old"));
    t.open();
    t.s.set_secret_param("token", "new");
    t.s.set_auth_token(Some("tok".into()));
    t.closed(CloseReason::Error("reset".into()));
    t.advance_to(10);
    let req = t.connects.last().unwrap();
    assert_eq!(
        req.url(),
        "ws://example.com/socket/websocket?token=new&vsn=2.0.0"
    );
    assert_eq!(req.subprotocols().len(), 2);
    assert!(!format!("{req:?}").contains("new&"));
    assert!(t.s.set_endpoint("gopher://x").is_err());
    t.s.set_endpoint("wss://other.example/live").unwrap();
    assert!(
        t.s.connect_request()
            .url()
            .starts_with("wss://other.example/live/websocket?")
    );
}

#[test]
fn reconnect_follows_the_phoenix_schedule_then_five_seconds() {
    let mut t = T::new();
    t.connect();
    let mut at = 0;
    let mut delays = Vec::new();
    let mut attempts = Vec::new();
    for _ in 0..11 {
        t.closed(CloseReason::Error("refused".into()));
        let Some(Event::Disconnected {
            reconnect_delay: Some(d),
            reconnect_at: Some(when),
            ..
        }) = t
            .take_events()
            .into_iter()
            .find(|e| matches!(e, Event::Disconnected { .. }))
        else {
            panic!("expected a scheduled reconnect")
        };
        assert_eq!(when, t.at(at) + d);
        delays.push(d.as_millis() as u64);
        at += d.as_millis() as u64;
        assert_eq!(t.s.state(), SocketState::Reconnecting);
        let before = t.connects.len();
        t.advance_to(at - 1);
        assert_eq!(t.connects.len(), before, "no dial before the delay");
        t.advance_to(at);
        assert_eq!(t.connects.len(), before + 1);
        attempts.extend(connect_attempts(&t.take_events()));
    }
    assert_eq!(
        delays,
        [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]
    );
    // Reconnect attempt n is reported as such (the first connect was attempt 1).
    assert_eq!(attempts, (2..=12).collect::<Vec<u32>>());
    assert_eq!(t.s.stats().reconnects, 11);
}

/// The attempt numbers of the `Connecting` events in `events`.
fn connect_attempts(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Connecting { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

/// Two dials fail (at 0 and 10 ms); the third starts at 60 ms, when this returns.
fn fail_two_dials(t: &mut T) {
    t.connect();
    t.closed(CloseReason::Error("x".into()));
    t.advance_to(10);
    t.closed(CloseReason::Error("x".into()));
    t.advance_to(60);
}

/// The reconnect delays announced by the `Disconnected` events in `events`, in ms.
fn reconnect_delays(events: &[Event]) -> Vec<u128> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected {
                reconnect_delay: Some(d),
                ..
            } => Some(d.as_millis()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_server_that_accepts_and_closes_at_once_is_redialled_on_the_backoff() {
    // phoenix.js starts the backoff over on every open: such a server is redialled every
    // 10 ms forever (PROTOCOL.md §9 item 23). phx goes on along the schedule.
    let mut t = T::new();
    t.connect();
    for _ in 0..11 {
        t.opened();
        t.closed(CloseReason::Closed {
            code: 1011,
            reason: String::new(),
        });
        let next = t.s.poll_timeout().unwrap();
        t.advance_to_instant(next);
    }
    assert_eq!(
        reconnect_delays(&t.take_events()),
        [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]
    );
}

#[test]
fn the_backoff_starts_over_once_a_connection_stayed_open_five_seconds() {
    let mut t = T::new();
    fail_two_dials(&mut t);
    t.opened();
    t.advance_to(60 + 4_999);
    t.closed(CloseReason::Error("x".into()));
    t.advance_to(5_059 + 100);
    t.opened();
    t.advance_to(5_159 + 5_000);
    t.closed(CloseReason::Error("x".into()));
    assert_eq!(reconnect_delays(&t.take_events()), [10, 50, 100, 10]);
}

#[test]
fn an_open_stamped_earlier_than_the_core_clock_counts_from_the_core_clock() {
    // The driver's clock reading for "opened" may be older than the last input's (it was read
    // before a timer fired, say). The connection's age counts from the core's clock, so a
    // connection that lived 4 s does not start the backoff over.
    let mut t = T::new();
    fail_two_dials(&mut t);
    t.advance_to(2_000);
    let conn = t.conn.unwrap();
    t.s.handle_connected(t.at(60), conn);
    t.drain();
    t.advance_to(2_000 + 4_000);
    t.closed(CloseReason::Error("x".into()));
    assert_eq!(reconnect_delays(&t.take_events()), [10, 50, 100]);
}

#[test]
fn attempt_numbers_saturate_instead_of_overflowing() {
    let mut t = T::new();
    t.connect();
    // 2^32 failed dials in a row are not testable in real time; start from just below.
    t.s.failures = u32::MAX - 1;
    for _ in 0..3 {
        t.closed(CloseReason::Error("refused".into()));
        let next = t.s.poll_timeout().unwrap();
        t.advance_to_instant(next);
    }
    let attempts = connect_attempts(&t.take_events());
    assert_eq!(attempts.last(), Some(&u32::MAX));
    assert_eq!(t.s.state(), SocketState::Connecting);
}

#[test]
fn refused_handshake_keeps_backing_off_and_says_refused() {
    let mut t = T::new();
    t.connect();
    t.closed(CloseReason::Refused { status: 403 });
    let ev = t.take_events();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::Transport(CloseReason::Refused { status: 403 }),
            reconnect_at: Some(_),
            ..
        }
    )));
}

#[test]
fn server_close_1000_reconnects_by_default_like_phoenix_js() {
    let mut t = T::new();
    t.open();
    let lobby = t.joined("room:lobby");
    t.closed(CloseReason::Closed {
        code: 1000,
        reason: String::new(),
    });
    assert_eq!(t.s.state(), SocketState::Reconnecting);
    t.advance_to(10);
    t.opened();
    assert!(t.take_frames().iter().any(|f| f.contains("phx_join")));
    let _ = lobby;
}

#[test]
fn server_close_1000_without_reconnect_leaves_it_to_the_app() {
    let mut t = T::with(config().reconnect_on_normal_close(false));
    t.open();
    let lobby = t.joined("room:lobby");
    t.take_events();
    t.closed(CloseReason::Closed {
        code: 1000,
        reason: String::new(),
    });
    assert_eq!(t.s.state(), SocketState::Disconnected);
    let ev = t.take_events();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reconnect_at: None,
            ..
        }
    )));
    assert_eq!(t.s.channel(lobby).unwrap().state(), ChannelState::Errored);
    t.advance_to(60_000);
    assert_eq!(t.connects.len(), 1);
    // The application decides to come back: channels rejoin.
    t.take_frames();
    t.open();
    assert_eq!(t.take_frames(), [r#"["2","2","room:lobby","phx_join",{}]"#]);
}

#[test]
fn exponential_backoff_is_jittered_under_its_ceiling_and_replays_by_seed() {
    let run = |seed| {
        let mut t = T::with(
            config()
                .reconnect(Backoff::exponential(MS(100), SECS(5)))
                .rng_seed(seed),
        );
        t.connect();
        let mut delays = Vec::new();
        for n in 0..8u32 {
            t.closed(CloseReason::Error("x".into()));
            let d = t
                .take_events()
                .into_iter()
                .find_map(|e| match e {
                    Event::Disconnected {
                        reconnect_delay, ..
                    } => reconnect_delay,
                    _ => None,
                })
                .unwrap();
            assert!(d <= MS(100 * (1 << n)).min(SECS(5)));
            delays.push(d);
            t.advance(d);
        }
        delays
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn gives_up_after_max_attempts_and_fails_buffered_pushes() {
    let mut t = T::with(config().max_reconnect_attempts(3));
    let lobby = t.join("room:lobby");
    let p = t.push(lobby, "ping");
    t.connect();
    for _ in 0..2 {
        t.closed(CloseReason::Error("x".into()));
        let d = t.s.poll_timeout().unwrap();
        t.advance_to((d - t.start).as_millis() as u64);
    }
    t.take_events();
    t.closed(CloseReason::Error("x".into()));
    let ev = t.take_events();
    assert!(ev.contains(&Event::ReconnectGaveUp { attempts: 3 }));
    assert!(ev.contains(&Event::PushFailed {
        channel: lobby,
        push_ref: p,
        reason: PushFailure::Disconnected
    }));
    assert_eq!(t.s.state(), SocketState::Disconnected);
    // connect() starts a new series.
    t.connect();
    assert_eq!(t.s.state(), SocketState::Connecting);
}

#[test]
fn connect_timeout_abandons_the_attempt_and_retries() {
    let mut t = T::with(config().connect_timeout(SECS(5)));
    t.connect();
    t.advance_to(4_999);
    assert!(t.closes.is_empty());
    t.advance_to(5_000);
    assert_eq!(t.closes, [(1000, "connect timeout")]);
    assert!(t.take_events().iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::ConnectTimeout,
            reconnect_at: Some(_),
            ..
        }
    )));
    // A late "connected" for the abandoned attempt is ignored.
    let old = t.conn.unwrap();
    t.s.handle_connected(t.now, old);
    t.drain();
    assert_eq!(t.s.state(), SocketState::Reconnecting);
}

#[test]
fn inputs_for_an_old_connection_are_ignored() {
    let mut t = T::new();
    t.open();
    let old = t.conn.unwrap();
    t.closed(CloseReason::Error("x".into()));
    t.advance_to(10);
    t.opened();
    t.take_events();
    t.s.handle_closed(t.now, old, CloseReason::Error("late".into()));
    t.s.handle_frame(t.now, old, Frame::Text("garbage".into()))
        .unwrap();
    t.drain();
    assert!(t.take_events().is_empty());
    assert_eq!(t.s.state(), SocketState::Connected);
}

// ------------------------------------------------------------------ heartbeat

#[test]
fn heartbeat_is_sent_every_interval_after_the_reply_and_reports_rtt() {
    let mut t = T::new();
    t.open();
    t.advance_to(29_999);
    assert!(t.take_frames().is_empty());
    t.advance_to(30_000);
    assert_eq!(t.take_frames(), [r#"[null,"1","phoenix","heartbeat",{}]"#]);
    t.now = t.at(30_040);
    t.recv(r#"[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]"#);
    assert!(t.take_events().contains(&Event::Heartbeat { rtt: MS(40) }));
    assert_eq!(t.s.stats().last_rtt, Some(MS(40)));
    // Next one 30 s after the reply, not after the send.
    assert_eq!(t.s.poll_timeout(), Some(t.at(60_040)));
    t.advance_to(60_040);
    assert_eq!(t.take_frames(), [r#"[null,"2","phoenix","heartbeat",{}]"#]);
}

#[test]
fn missed_heartbeat_closes_errors_channels_and_reconnects() {
    // The client closes with 1000 itself (as phoenix.js does); that close must not be taken
    // for a server's "normal close", so it reconnects even when those do not.
    for reconnect_on_normal_close in [true, false] {
        let mut t = T::with(config().reconnect_on_normal_close(reconnect_on_normal_close));
        t.open();
        let lobby = t.joined("room:lobby");
        t.take_events();
        t.advance_to(30_000); // heartbeat sent, never answered
        t.advance_to(59_999);
        assert!(t.closes.is_empty());
        t.advance_to(60_000);
        assert_eq!(t.closes, [(1000, "heartbeat timeout")]);
        let ev = t.take_events();
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::Disconnected { reason: DisconnectReason::HeartbeatTimeout, reconnect_delay: Some(d), .. } if *d == MS(10)
            )),
            "{ev:?}"
        );
        assert!(ev.contains(&Event::ChannelErrored {
            channel: lobby,
            reason: ChannelError::ConnectionLost,
            retry_at: None
        }));
        assert_eq!(t.s.stats().heartbeat_timeouts, 1);
        // The transport then reports the close it was asked for: ignored.
        t.closed(CloseReason::Closed {
            code: 1000,
            reason: "heartbeat timeout".into(),
        });
        assert!(t.take_events().is_empty());
        t.advance_to(60_010);
        assert_eq!(t.connects.len(), 2);
    }
}

#[test]
fn server_closes_other_than_1000_reconnect_even_when_normal_closes_do_not() {
    // 1001 (disconnect broadcast), 1002 (Bandit's idle timeout), 1011, 1012 (drain).
    for code in [1001, 1002, 1011, 1012] {
        let mut t = T::with(config().reconnect_on_normal_close(false));
        t.open();
        let ch = t.joined("room:lobby");
        t.take_events();
        t.closed(CloseReason::Closed {
            code,
            reason: String::new(),
        });
        let ev = t.take_events();
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::Disconnected { reconnect_delay: Some(d), .. } if *d == MS(10)
            )),
            "{code}: {ev:?}"
        );
        assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Errored);
        t.advance_to(10);
        assert_eq!(t.connects.len(), 2, "{code}");
    }
}

#[test]
fn a_missed_heartbeat_fails_a_push_as_lost_before_its_own_deadline_fires() {
    // One handle_timeout call past both deadlines: the heartbeat's (60 s) comes first and
    // loses the connection, so the push (due at 65 s) fails as lost, not as timed out.
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.advance_to(30_000);
    t.now = t.at(55_000);
    let p = t.push(ch, "slow");
    t.take_events();
    t.advance_to(70_000);
    let ev = t.take_events();
    let lost = ev.iter().position(|e| {
        matches!(e, Event::PushFailed { push_ref, reason: PushFailure::ConnectionLost, .. } if *push_ref == p)
    });
    let down = ev.iter().position(|e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout,
                ..
            }
        )
    });
    assert!(down.is_some() && lost.is_some(), "{ev:?}");
    assert!(
        !ev.iter().any(|e| matches!(e, Event::PushTimedOut { .. })),
        "{ev:?}"
    );
}

#[test]
fn other_traffic_does_not_count_as_heartbeat_reply() {
    let mut t = T::new();
    t.open();
    let lobby = t.joined("room:lobby");
    t.take_frames();
    t.advance_to(30_000);
    assert_eq!(t.take_frames(), [r#"[null,"2","phoenix","heartbeat",{}]"#]);
    t.now = t.at(45_000);
    t.recv(r#"[null,null,"room:lobby","new_msg",{}]"#);
    t.recv(r#"[null,"99","phoenix","phx_reply",{"response":{},"status":"ok"}]"#);
    // The heartbeat's ref on another topic (phoenix.js would take this for the answer).
    t.recv(r#"["1","2","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#);
    t.advance_to(60_000);
    assert_eq!(t.closes, [(1000, "heartbeat timeout")]);
    let _ = lobby;
}

// ------------------------------------------------------------------ joins

#[test]
fn join_sends_phx_join_with_join_ref_equal_to_ref() {
    let mut t = T::new();
    t.open();
    t.take_events();
    let lobby = t.join("room:lobby");
    assert_eq!(t.take_frames(), [r#"["1","1","room:lobby","phx_join",{}]"#]);
    assert_eq!(t.s.channel(lobby).unwrap().state(), ChannelState::Joining);
    t.recv(&ok_reply("1", "1", "room:lobby", r#"{"hello":1}"#));
    let ev = t.take_events();
    assert_eq!(
        ev,
        [Event::Joined {
            channel: lobby,
            response: Payload::from_json(r#"{"hello":1}"#).unwrap(),
            rejoin: false
        }]
    );
    assert!(t.s.channel(lobby).unwrap().is_joined());
}

#[test]
fn join_before_connect_is_sent_when_the_socket_opens() {
    let mut t = T::new();
    let lobby = t.join("room:lobby");
    let chat = t.join("room:chat");
    assert!(t.take_frames().is_empty());
    t.open();
    assert_eq!(
        t.take_frames(),
        [
            r#"["1","1","room:lobby","phx_join",{}]"#,
            r#"["2","2","room:chat","phx_join",{}]"#
        ]
    );
    let _ = (lobby, chat);
}

#[test]
fn duplicate_join_of_a_live_topic_is_a_typed_error() {
    let mut t = T::new();
    t.open();
    let lobby = t.join("room:lobby");
    let before = t.s.stats();
    assert_eq!(
        t.s.join(t.now, "room:lobby", Payload::empty()),
        Err(JoinError::AlreadyJoined {
            topic: "room:lobby".into(),
            channel: lobby
        })
    );
    assert_eq!(t.s.stats(), before);
    assert!(matches!(
        t.s.join(t.now, "", Payload::empty()),
        Err(JoinError::InvalidTopic { .. })
    ));
    assert!(matches!(
        t.s.join(t.now, "phoenix", Payload::empty()),
        Err(JoinError::InvalidTopic { .. })
    ));
}

#[test]
fn first_join_refused_ends_the_channel_without_retry() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:forbidden");
    let p = t.push(ch, "ping");
    t.take_frames();
    t.recv(&reply(
        "1",
        "1",
        "room:forbidden",
        "error",
        r#"{"reason":"unauthorized"}"#,
    ));
    let ev = t.take_events();
    assert!(ev.contains(&Event::JoinFailed {
        channel: ch,
        status: "error".into(),
        response: Payload::from_json(r#"{"reason":"unauthorized"}"#).unwrap(),
        retry_at: None
    }));
    assert!(ev.contains(&Event::PushFailed {
        channel: ch,
        push_ref: p,
        reason: PushFailure::JoinFailed
    }));
    assert!(t.s.channel(ch).is_none());
    t.advance_to(60_000);
    assert!(!t.take_frames().iter().any(|f| f.contains("phx_join")));
    // The topic is free again.
    assert!(t.s.join(t.now, "room:forbidden", Payload::empty()).is_ok());
}

#[test]
fn unmatched_topic_reply_with_null_join_ref_is_matched_by_ref() {
    let mut t = T::new();
    t.open();
    let ch = t.join("nope:1");
    t.recv(r#"[null,"1","nope:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#);
    assert!(t.take_events().iter().any(|e| matches!(
        e,
        Event::JoinFailed { channel, retry_at: None, .. } if *channel == ch
    )));
}

#[test]
fn first_join_timeout_sends_a_cancelling_leave_and_ends_the_channel() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:slow");
    t.take_frames();
    t.advance_to(10_000);
    assert_eq!(t.take_frames(), [r#"["1","2","room:slow","phx_leave",{}]"#]);
    assert!(t.take_events().contains(&Event::JoinTimedOut {
        channel: ch,
        retry_at: None
    }));
    assert!(t.s.channel(ch).is_none());
    // The late join reply changes nothing (it answers a ref no longer tracked, and is
    // reported as such); the leave's reply is consumed quietly (PROTOCOL.md §9 item 14),
    // though its channel has ended, and its timer goes with it.
    t.recv(&ok_reply("1", "1", "room:slow", "{}"));
    assert!(matches!(
        &t.take_events()[..],
        [Event::Unexpected(Unexpected::UnknownRef { ref_: Some(r), .. })] if r.as_str() == "1"
    ));
    t.recv(&ok_reply("1", "2", "room:slow", "{}"));
    assert_eq!(t.take_events(), []);
    assert_eq!(t.s.stats().unknown_refs, 1);
    assert_eq!(
        t.s.poll_timeout(),
        Some(t.at(30_000)),
        "the heartbeat's is next"
    );
}

#[test]
fn join_timeout_counts_from_the_join_call_even_while_disconnected() {
    let mut t = T::new();
    let ch = t.join("room:lobby");
    t.connect();
    t.advance_to(9_000);
    t.opened();
    assert_eq!(t.take_frames(), [r#"["1","1","room:lobby","phx_join",{}]"#]);
    t.advance_to(10_000);
    assert!(t.take_events().contains(&Event::JoinTimedOut {
        channel: ch,
        retry_at: None
    }));
}

// ------------------------------------------------------------------ rejoin

#[test]
fn channels_rejoin_after_reconnect_with_fresh_join_refs_in_creation_order() {
    let mut t = T::new();
    t.open();
    let a = t.joined("room:a");
    let b = t.joined("room:b");
    t.take_frames();
    t.closed(CloseReason::Error("reset".into()));
    t.advance_to(10);
    t.opened();
    assert_eq!(
        t.take_frames(),
        [
            r#"["3","3","room:a","phx_join",{}]"#,
            r#"["4","4","room:b","phx_join",{}]"#
        ]
    );
    t.take_events();
    t.recv(&ok_reply("4", "4", "room:b", "{}"));
    t.recv(&ok_reply("3", "3", "room:a", "{}"));
    assert_eq!(joined_events(&t.take_events()), [(b, true), (a, true)]);
}

#[test]
fn a_first_join_in_flight_when_the_connection_drops_is_sent_again_with_a_fresh_ref() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:a");
    assert_eq!(t.take_frames(), [r#"["1","1","room:a","phx_join",{}]"#]);
    t.closed(CloseReason::Error("reset".into()));
    t.advance_to(10);
    t.opened();
    assert_eq!(t.take_frames(), [r#"["2","2","room:a","phx_join",{}]"#]);
    t.take_events();
    // A reply to the first attempt (it cannot come on a new connection, but a hostile server
    // may send one) answers nothing; the second attempt's joins the channel.
    t.recv(&ok_reply("1", "1", "room:a", "{}"));
    assert!(matches!(
        &t.take_events()[..],
        [Event::Unexpected(Unexpected::UnknownRef { .. })]
    ));
    assert!(!t.s.channel(ch).unwrap().is_joined());
    t.recv(&ok_reply("2", "2", "room:a", "{}"));
    assert_eq!(joined_events(&t.take_events()), [(ch, false)]);
}

#[test]
fn a_first_join_that_never_gets_through_times_out_from_its_join_call() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:a");
    t.closed(CloseReason::Error("reset".into()));
    t.advance_to(10);
    t.opened();
    t.take_events();
    t.advance_to(9_999);
    assert!(t.take_events().is_empty());
    t.advance_to(10_000);
    assert!(t.take_events().contains(&Event::JoinTimedOut {
        channel: ch,
        retry_at: None
    }));
}

#[test]
fn rejoins_follow_creation_order_when_a_channel_reuses_a_slot() {
    let mut t = T::new();
    t.open();
    let a = t.joined("room:a");
    t.joined("room:b");
    t.joined("room:c");
    t.s.leave(t.now, a).unwrap();
    t.drain();
    let leave = t.take_frames().pop().unwrap();
    assert!(leave.contains("phx_leave"), "{leave}");
    t.recv(&ok_reply("1", "4", "room:a", "{}"));
    assert!(t.s.channel(a).is_none());
    // room:d takes room:a's slot; it was created last, so it rejoins last.
    let d = t.joined("room:d");
    let slot = |id: ChannelId| id.to_string().split('.').next().map(str::to_owned);
    assert_eq!(slot(d), slot(a), "{d} reuses {a}'s slot");
    t.take_frames();
    t.closed(CloseReason::Error("reset".into()));
    t.advance_to(10);
    t.opened();
    let topics: Vec<String> = t
        .take_frames()
        .iter()
        .map(|f| f.split(',').nth(2).unwrap().trim_matches('"').to_owned())
        .collect();
    assert_eq!(topics, ["room:b", "room:c", "room:d"]);
}

#[test]
fn a_join_made_while_dialing_is_sent_once_after_a_failed_dial() {
    let mut t = T::new();
    t.connect();
    t.join("room:a");
    t.closed(CloseReason::Error("refused".into()));
    t.advance_to(10);
    assert_eq!(t.connects.len(), 2);
    t.opened();
    assert_eq!(t.take_frames(), [r#"["1","1","room:a","phx_join",{}]"#]);
}

#[test]
fn phx_error_errors_the_channel_and_rejoins_on_the_rejoin_schedule() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    let p = t.push(ch, "crash");
    t.take_frames();
    t.take_events();
    t.recv(r#"["1","1","room:lobby","phx_error",{"reason":"channel_crash"}]"#);
    let ev = t.take_events();
    assert!(ev.contains(&Event::PushFailed {
        channel: ch,
        push_ref: p,
        reason: PushFailure::ChannelErrored
    }));
    assert!(ev.contains(&Event::ChannelErrored {
        channel: ch,
        reason: ChannelError::Server(Payload::from_json(r#"{"reason":"channel_crash"}"#).unwrap()),
        retry_at: Some(t.at(1000)),
    }));
    // Rejoin attempts at 1 s, then (refused) 2 s, 5 s, 10 s later, each with a new join_ref.
    let mut at = 0;
    let mut join_refs = Vec::new();
    for wait in [1000, 2000, 5000, 10_000, 10_000] {
        at += wait;
        t.advance_to(at - 1);
        assert!(t.take_frames().is_empty(), "no rejoin before {at}");
        t.advance_to(at);
        let frames = t.take_frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        let jr = t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
        assert_eq!(
            frames[0],
            format!(r#"["{jr}","{jr}","room:lobby","phx_join",{{}}]"#)
        );
        join_refs.push(jr.clone());
        t.recv(&reply(&jr, &jr, "room:lobby", "error", "{}"));
    }
    join_refs.dedup();
    assert_eq!(join_refs.len(), 5);
    // A successful rejoin resets the schedule.
    t.advance_to(at + 10_000);
    let jr = t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
    t.take_events();
    t.recv(&ok_reply(&jr, &jr, "room:lobby", "{}"));
    assert_eq!(joined_events(&t.take_events()), [(ch, true)]);
}

#[test]
fn rejoin_timeout_cancels_the_join_and_retries() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.recv(r#"["1","1","room:lobby","phx_error",{}]"#);
    t.take_frames();
    t.advance_to(1000);
    assert_eq!(t.take_frames(), [r#"["2","2","room:lobby","phx_join",{}]"#]);
    t.advance_to(11_000);
    assert_eq!(
        t.take_frames(),
        [r#"["2","3","room:lobby","phx_leave",{}]"#]
    );
    assert!(t.take_events().contains(&Event::JoinTimedOut {
        channel: ch,
        retry_at: Some(t.at(13_000))
    }));
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Errored);
    // The server completes the abandoned join late, then answers the cancelling leave and
    // closes that join: none of it is the channel's any more, and it rejoins on schedule.
    t.recv(&ok_reply("2", "2", "room:lobby", "{}"));
    t.recv(&ok_reply("2", "3", "room:lobby", "{}"));
    t.recv(r#"["2","3","room:lobby","phx_close",{}]"#);
    let ev = t.take_events();
    assert!(
        !ev.iter().any(|e| matches!(
            e,
            Event::ChannelClosed { .. } | Event::Joined { .. } | Event::Left { .. }
        )),
        "{ev:?}"
    );
    assert!(ev.contains(&Event::Unexpected(Unexpected::Stale {
        channel: ch,
        event: "phx_close".into()
    })));
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Errored);
    assert_eq!(t.s.channel(ch).unwrap().join_ref(), None);
    t.advance_to(13_000);
    assert_eq!(t.take_frames(), [r#"["4","4","room:lobby","phx_join",{}]"#]);
    t.recv(&ok_reply("4", "4", "room:lobby", "{}"));
    let ev = t.take_events();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::Joined { channel, rejoin: true, .. } if *channel == ch
        )),
        "{ev:?}"
    );
}

/// A custom wire format that cannot write some topics.
#[derive(Debug)]
struct PickyFormat;

impl crate::Serializer for PickyFormat {
    fn vsn(&self) -> &str {
        "2.0.0-picky"
    }

    fn encode(&self, msg: &Message) -> Result<Frame, EncodeError> {
        if msg.topic.starts_with("unwritable:") {
            return Err(EncodeError::FieldTooLong {
                field: "topic",
                len: msg.topic.len(),
            });
        }
        crate::V2Json.encode(msg)
    }

    fn decode(&self, frame: &Frame) -> Result<Message, DecodeError> {
        crate::V2Json.decode(frame)
    }
}

#[test]
fn a_custom_serializer_is_used_and_its_refusal_is_a_typed_join_error() {
    let mut t = T::with(config().serializer(PickyFormat));
    t.open();
    assert!(t.connects[0].redacted_url().contains("vsn=2.0.0-picky"));
    let ok = t.joined("room:lobby");
    assert!(t.s.channel(ok).unwrap().is_joined());
    t.take_frames();
    assert_eq!(
        t.s.join(t.now, "unwritable:x", Payload::empty()),
        Err(JoinError::Encode(EncodeError::FieldTooLong {
            field: "topic",
            len: 12
        }))
    );
    t.drain();
    assert!(t.take_frames().is_empty(), "nothing was sent");
    assert!(t.s.channel_by_topic("unwritable:x").is_none());
}

#[test]
fn a_second_phx_error_is_reported_not_acted_on() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.recv(r#"["1","1","room:lobby","phx_error",{}]"#);
    t.take_events();
    t.recv(r#"["1","1","room:lobby","phx_error",{}]"#);
    assert_eq!(
        t.take_events(),
        [Event::Unexpected(Unexpected::Stale {
            channel: ch,
            event: "phx_error".into()
        })]
    );
    assert_eq!(t.s.stats().stale, 1);
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Errored);
}

#[test]
fn a_join_broken_while_in_flight_leaves_its_ref_stale() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.recv(r#"["1","1","room:lobby","phx_error",{}]"#);
    t.take_frames();
    t.advance_to(1000);
    assert_eq!(t.take_frames(), [r#"["2","2","room:lobby","phx_join",{}]"#]);
    // The rejoin crashes on the server before replying; its phx_close arriving afterwards
    // belongs to that abandoned join.
    t.recv(r#"["2","2","room:lobby","phx_error",{}]"#);
    t.take_events();
    assert_eq!(t.s.channel(ch).unwrap().join_ref(), None);
    t.recv(r#"["2","2","room:lobby","phx_close",{}]"#);
    let ev = t.take_events();
    assert!(
        !ev.iter().any(|e| matches!(e, Event::ChannelClosed { .. })),
        "{ev:?}"
    );
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Errored);
}

#[test]
fn server_phx_close_ends_the_channel_for_good() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    let p = t.push(ch, "stop");
    t.take_events();
    t.recv(r#"["1","1","room:lobby","phx_close",{}]"#);
    let ev = t.take_events();
    assert!(ev.contains(&Event::ChannelClosed {
        channel: ch,
        reason: ChannelClosed::Server
    }));
    assert!(ev.contains(&Event::PushFailed {
        channel: ch,
        push_ref: p,
        reason: PushFailure::ChannelClosed
    }));
    assert!(t.s.channel(ch).is_none());
    t.take_frames();
    t.advance_to(30_000);
    assert!(!t.take_frames().iter().any(|f| f.contains("phx_join")));
}

#[test]
fn phx_close_and_phx_error_without_any_ref_act_on_the_current_channel() {
    // PROTOCOL.md §5.3: a close or error with a null join ref is the current channel's (only a
    // join ref that is not the current one marks it stale).
    let mut t = T::new();
    t.open();
    let errored = t.joined("room:a");
    let closed = t.joined("room:b");
    t.take_events();
    t.recv(r#"[null,null,"room:a","phx_error",{}]"#);
    assert!(t.take_events().iter().any(|e| matches!(
        e,
        Event::ChannelErrored { channel, reason: ChannelError::Server(_), .. } if *channel == errored
    )));
    assert_eq!(t.s.channel(errored).unwrap().state(), ChannelState::Errored);
    t.recv(r#"[null,null,"room:b","phx_close",{}]"#);
    assert!(t.take_events().contains(&Event::ChannelClosed {
        channel: closed,
        reason: ChannelClosed::Server
    }));
    assert!(t.s.channel(closed).is_none());
}

// ------------------------------------------------------------------ routing

#[test]
fn no_message_is_delivered_before_the_join_reply() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:lobby");
    t.take_events();
    t.recv(r#"[null,null,"room:lobby","new_msg",{"early":true}]"#);
    let ev = t.take_events();
    assert!(!ev.iter().any(|e| matches!(e, Event::Message { .. })));
    assert!(ev.contains(&Event::Unexpected(Unexpected::NotJoined {
        channel: ch,
        event: "new_msg".into()
    })));
    t.recv(&ok_reply("1", "1", "room:lobby", "{}"));
    t.recv(r#"[null,null,"room:lobby","new_msg",{"late":true}]"#);
    let ev = t.take_events();
    assert!(
        matches!(&ev[..], [Event::Joined { .. }, Event::Message { channel, message }]
        if *channel == ch && message.payload.as_bytes().as_ref() == br#"{"late":true}"#)
    );
    // Nor while the channel is errored (after `phx_error`, until the rejoin's reply): such a
    // message belongs to a join that is over (phoenix.js would deliver it).
    t.recv(r#"["1","1","room:lobby","phx_error",{}]"#);
    t.take_events();
    t.recv(r#"[null,null,"room:lobby","new_msg",{"errored":true}]"#);
    assert_eq!(
        t.take_events(),
        [Event::Unexpected(Unexpected::NotJoined {
            channel: ch,
            event: "new_msg".into()
        })]
    );
}

#[test]
fn stale_join_ref_messages_are_dropped_and_null_ones_delivered() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:dup");
    t.recv(r#"["1","1","room:dup","phx_error",{}]"#);
    t.advance_to(1000);
    t.recv(&ok_reply("2", "2", "room:dup", "{}"));
    t.take_events();
    // Duplicate-join style: the old instance's close arrives after the new join reply.
    t.recv(r#"["1","1","room:dup","phx_close",{}]"#);
    t.recv(r#"["1",null,"room:dup","old_push",{}]"#);
    // Refs are compared as the strings they were sent as: "+2" and "02" are not "2".
    t.recv(r#"["+2",null,"room:dup","signed",{}]"#);
    t.recv(r#"["02",null,"room:dup","padded",{}]"#);
    // "" is no join ref either (phoenix.js takes it for none and delivers it).
    t.recv(r#"["",null,"room:dup","empty",{}]"#);
    let ev = t.take_events();
    let stale = |event: &str| {
        Event::Unexpected(Unexpected::Stale {
            channel: ch,
            event: event.into(),
        })
    };
    assert_eq!(
        ev,
        [
            stale("phx_close"),
            stale("old_push"),
            stale("signed"),
            stale("padded"),
            stale("empty")
        ]
    );
    assert!(t.s.channel(ch).unwrap().is_joined());
    t.recv(r#"["2",null,"room:dup","current",{}]"#);
    t.recv(r#"[null,null,"room:dup","broadcast",{}]"#);
    let delivered: Vec<String> = t
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message.event.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, ["current", "broadcast"]);
    assert_eq!(t.s.stats().stale, 5);
}

#[test]
fn v1_filters_a_stale_phx_close_by_its_ref() {
    let mut t = T::with(config().serializer(V1Json));
    t.open();
    let ch = t.join("room:dup");
    assert_eq!(
        t.take_frames(),
        [r#"{"topic":"room:dup","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}"#]
    );
    t.recv(r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"room:dup"}"#);
    t.recv(r#"{"event":"phx_close","payload":{},"ref":"77","topic":"room:dup"}"#);
    assert!(t.s.channel(ch).unwrap().is_joined());
    t.recv(r#"{"event":"phx_close","payload":{},"ref":"1","topic":"room:dup"}"#);
    assert!(t.s.channel(ch).is_none());
}

#[test]
fn hostile_input_is_counted_and_reported_and_nothing_is_lost() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    let p = t.push(ch, "ping");
    t.take_events();
    let conn = t.conn.unwrap();
    for garbage in ["", "{", "[1,2]", r#"[null,null,5,"e",{}]"#, "\u{0}\u{1}"] {
        let e =
            t.s.handle_frame(t.now, conn, Frame::Text(garbage.to_owned().into()));
        assert!(e.is_err(), "{garbage:?}");
    }
    t.s.handle_frame(t.now, conn, Frame::Binary(vec![9u8, 1, 2].into()))
        .unwrap_err();
    t.drain();
    t.recv(r#"[null,null,"room:unknown","x",{}]"#);
    t.recv(&ok_reply("1", "999", "room:lobby", "{}"));
    t.recv(&ok_reply("1", &p.to_string(), "room:other", "{}"));
    let stats = t.s.stats();
    assert_eq!(stats.invalid_frames, 6);
    assert_eq!(stats.unknown_topics, 1);
    assert_eq!(stats.unknown_refs, 2);
    let ev = t.take_events();
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Unexpected(_)))
            .count(),
        9
    );
    // The push is still pending and its real reply still resolves it.
    t.recv(&ok_reply(
        "1",
        &p.to_string(),
        "room:lobby",
        r#"{"pong":1}"#,
    ));
    assert!(t.take_events().contains(&Event::Replied {
        channel: ch,
        push_ref: p,
        status: "ok".into(),
        response: Payload::from_json(r#"{"pong":1}"#).unwrap()
    }));
}

#[test]
fn deferred_checks_leave_messages_to_the_consumer_and_check_what_the_socket_reads() {
    let mut t = T::with(config().defer_payload_checks(true));
    t.open();
    let ch = t.joined("room:lobby");
    t.take_events();
    // A channel's message arrives delimited, not read; checking it is the consumer's part.
    t.recv(r#"[null,null,"room:lobby","new_msg",{"body":"hi"}]"#);
    t.recv(r#"[null,null,"room:lobby","new_msg",{"body":]"#);
    let mut payloads: Vec<Payload> = t
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { channel, message } if channel == ch => Some(message.payload),
            _ => None,
        })
        .collect();
    assert_eq!(payloads.len(), 2);
    assert!(payloads.iter().all(|p| !p.is_checked()));
    assert!(payloads[0].check().is_ok());
    assert!(payloads[1].check().is_err());
    assert_eq!(t.s.stats().invalid_frames, 0);
    // A payload the socket acts on itself is checked on arrival: a malformed phx_error is an
    // invalid frame, and the channel stays joined.
    let conn = t.conn.unwrap();
    let bad_error = r#"["1",null,"room:lobby","phx_error",{"reason":}]"#;
    assert!(
        t.s.handle_frame(t.now, conn, Frame::Text(bad_error.into()))
            .is_err()
    );
    t.drain();
    assert_eq!(t.s.stats().invalid_frames, 1);
    assert!(t.s.channel(ch).unwrap().is_joined());
    let ev = t.take_events();
    assert!(
        matches!(
            ev.as_slice(),
            [Event::Unexpected(Unexpected::InvalidFrame(_))]
        ),
        "{ev:?}"
    );
    // A well-formed one errors the channel with a checked payload.
    t.recv(r#"["1",null,"room:lobby","phx_error",{"reason":"crash"}]"#);
    let errored = t.take_events().into_iter().find_map(|e| match e {
        Event::ChannelErrored {
            reason: ChannelError::Server(p),
            ..
        } => Some(p),
        _ => None,
    });
    assert!(errored.is_some_and(|p| p.is_checked()));
}

#[test]
fn a_received_payload_passed_on_unchecked_is_checked_before_it_is_sent() {
    let mut t = T::with(config().defer_payload_checks(true));
    t.open();
    let ch = t.joined("room:a");
    t.take_frames();
    t.recv(r#"[null,null,"room:a","m",{"body":"hi"}]"#);
    t.recv(r#"[null,null,"room:a","m",{"body":]"#);
    let mut payloads = t.take_events().into_iter().filter_map(|e| match e {
        Event::Message { message, .. } => Some(message.payload),
        _ => None,
    });
    let (good, bad) = (payloads.next().unwrap(), payloads.next().unwrap());
    assert!(!good.is_checked() && !bad.is_checked());
    // Sent as they are, the malformed bytes would make the server close the connection.
    let refused = |e: &PushError| matches!(e, PushError::Encode(EncodeError::InvalidJson(_)));
    let e = t.s.push(t.now, ch, "fwd", bad.clone(), None).unwrap_err();
    assert!(refused(&e), "{e:?}");
    let e = t.s.cast(t.now, ch, "fwd", bad.clone()).unwrap_err();
    assert!(refused(&e), "{e:?}");
    let e = t.s.join(t.now, "room:b", bad.clone()).unwrap_err();
    assert!(
        matches!(e, JoinError::Encode(EncodeError::InvalidJson(_))),
        "{e:?}"
    );
    let e = t.s.set_join_params(ch, bad).unwrap_err();
    assert!(
        matches!(e, JoinError::Encode(EncodeError::InvalidJson(_))),
        "{e:?}"
    );
    t.drain();
    assert!(t.take_frames().is_empty(), "nothing sent");
    assert!(
        t.s.channel_by_topic("room:b").is_none(),
        "the refused join changed nothing"
    );
    // A well-formed one goes out.
    t.s.push(t.now, ch, "fwd", good, None).unwrap();
    t.drain();
    assert_eq!(
        t.take_frames(),
        [r#"["1","2","room:a","fwd",{"body":"hi"}]"#]
    );
}

// ------------------------------------------------------------------ pushes

#[test]
fn push_carries_the_current_join_ref_and_its_reply_resolves_exactly_it() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.take_frames();
    let p1 = t.push(ch, "a");
    let p2 = t.push(ch, "b");
    assert_eq!(
        t.take_frames(),
        [
            r#"["1","2","room:lobby","a",{}]"#,
            r#"["1","3","room:lobby","b",{}]"#
        ]
    );
    t.take_events();
    // Out of order replies; custom status.
    t.recv(&reply("1", "3", "room:lobby", "custom", "{}"));
    t.recv(&reply(
        "1",
        "2",
        "room:lobby",
        "error",
        r#"{"reason":"nope"}"#,
    ));
    assert_eq!(
        t.take_events(),
        [
            Event::Replied {
                channel: ch,
                push_ref: p2,
                status: "custom".into(),
                response: Payload::empty()
            },
            Event::Replied {
                channel: ch,
                push_ref: p1,
                status: "error".into(),
                response: Payload::from_json(r#"{"reason":"nope"}"#).unwrap()
            },
        ]
    );
    // A second reply to the same ref resolves nothing.
    t.recv(&ok_reply("1", "2", "room:lobby", "{}"));
    assert!(matches!(
        t.take_events()[..],
        [Event::Unexpected(Unexpected::UnknownRef { .. })]
    ));
}

#[test]
fn phx_close_and_phx_error_are_never_taken_for_replies() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:lobby");
    t.take_events();
    // ref == join_ref, but the event is not phx_reply: this is not the join's reply (a
    // client matching replies by ref alone would take it for one). It is the channel's
    // crash: errored, to rejoin on the rejoin schedule.
    t.recv(r#"["1","1","room:lobby","phx_error",{}]"#);
    let ev = t.take_events();
    assert!(
        matches!(
            ev.as_slice(),
            [Event::ChannelErrored { channel, retry_at: Some(at), .. }] if *channel == ch && *at == t.at(1_000)
        ),
        "{ev:?}"
    );
    assert_eq!(
        t.s.channel(ch).map(|c| c.state()),
        Some(ChannelState::Errored)
    );
    // Likewise phx_close with the join's ref ends the channel; it is not a reply either.
    let other = t.join("room:other");
    t.take_events();
    let jr = t.s.channel(other).unwrap().join_ref().unwrap().to_string();
    t.recv(&format!(r#"["{jr}","{jr}","room:other","phx_close",{{}}]"#));
    let ev = t.take_events();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::Joined { .. } | Event::JoinFailed { .. })),
        "{ev:?}"
    );
    assert!(t.s.channel(other).is_none(), "{ev:?}");
}

#[test]
fn pushes_wait_for_the_join_and_go_out_in_order_after_it() {
    let mut t = T::new();
    let ch = t.join("room:lobby");
    let a = t.push(ch, "a");
    let b = t.push(ch, "b");
    t.open();
    assert_eq!(t.take_frames(), [r#"["3","3","room:lobby","phx_join",{}]"#]);
    t.recv(&ok_reply("3", "3", "room:lobby", "{}"));
    assert_eq!(
        t.take_frames(),
        [
            r#"["3","1","room:lobby","a",{}]"#,
            r#"["3","2","room:lobby","b",{}]"#
        ]
    );
    assert_eq!((a.get(), b.get()), (1, 2));
    assert_eq!(t.s.stats().pushes_buffered, 0);
}

#[test]
fn a_reply_cannot_resolve_a_push_that_was_never_sent() {
    let mut t = T::new();
    let ch = t.join("room:lobby");
    let p = t.push(ch, "waiting");
    t.open();
    t.take_events();
    t.recv(&ok_reply("2", &p.to_string(), "room:lobby", "{}"));
    assert!(matches!(
        t.take_events()[..],
        [Event::Unexpected(Unexpected::UnknownRef { .. })]
    ));
    assert_eq!(t.s.channel(ch).unwrap().buffered(), 1);
}

#[test]
fn buffered_push_times_out_from_the_push_call_and_is_never_sent() {
    let mut t = T::new();
    let ch = t.join("room:lobby");
    let p =
        t.s.push(t.now, ch, "late", Payload::empty(), Some(SECS(2)))
            .unwrap();
    t.drain();
    t.advance_to(2_000);
    assert!(t.take_events().contains(&Event::PushTimedOut {
        channel: ch,
        push_ref: p
    }));
    t.open();
    t.recv(&ok_reply("2", "2", "room:lobby", "{}"));
    assert!(!t.take_frames().iter().any(|f| f.contains("late")));
}

#[test]
fn full_send_buffer_is_an_immediate_typed_error_and_changes_nothing() {
    let mut t = T::with(config().send_buffer_capacity(2));
    let ch = t.join("room:lobby");
    t.push(ch, "a");
    t.push(ch, "b");
    let before = t.s.stats();
    assert_eq!(
        t.s.push(t.now, ch, "c", Payload::empty(), None),
        Err(PushError::BufferFull { limit: 2 })
    );
    assert_eq!(t.s.stats(), before);
    // Once joined, pushes bypass the buffer.
    t.open();
    t.recv(&ok_reply("3", "3", "room:lobby", "{}"));
    assert!(t.s.push(t.now, ch, "c", Payload::empty(), None).is_ok());
}

#[test]
fn a_cast_is_sent_and_never_tracked() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.take_frames();
    t.take_events();
    t.cast(ch, "typing");
    assert_eq!(t.take_frames(), [r#"["1","2","room:lobby","typing",{}]"#]);
    assert_eq!(t.s.stats().pushes_pending, 0);
    // The server may answer it: dropped without a word. Or never: no timeout follows.
    t.recv(&ok_reply("1", "2", "room:lobby", "{}"));
    t.advance_to(60_000);
    let ev = t.take_events();
    assert!(
        !ev.iter().any(|e| matches!(
            e,
            Event::Replied { .. }
                | Event::PushTimedOut { .. }
                | Event::PushFailed { .. }
                | Event::Unexpected(_)
        )),
        "{ev:?}"
    );
    assert_eq!(t.s.stats().unknown_refs, 0);
    // Casts do not use up the pending-push limit.
    let mut t = T::with(config().max_pending_pushes(1));
    t.open();
    let ch = t.joined("room:lobby");
    t.push(ch, "tracked");
    for _ in 0..3 {
        t.cast(ch, "typing");
    }
    assert_eq!(
        t.s.push(t.now, ch, "another", Payload::empty(), None),
        Err(PushError::TooManyPending { limit: 1 })
    );
}

#[test]
fn casts_wait_for_the_join_in_order_with_pushes_and_end_with_the_channel() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:lobby");
    t.cast(ch, "first");
    let p = t.push(ch, "second");
    t.cast(ch, "third");
    assert_eq!(t.s.stats().pushes_buffered, 3);
    t.take_frames();
    t.recv(&ok_reply("1", "1", "room:lobby", "{}"));
    assert_eq!(
        t.take_frames(),
        [
            r#"["1","2","room:lobby","first",{}]"#,
            r#"["1","3","room:lobby","second",{}]"#,
            r#"["1","4","room:lobby","third",{}]"#,
        ]
    );
    assert_eq!(t.s.stats().pushes_pending, 1, "only the push is tracked");
    t.recv(&ok_reply("1", "3", "room:lobby", "{}"));
    assert!(
        t.take_events()
            .iter()
            .any(|e| matches!(e, Event::Replied { push_ref, .. } if *push_ref == p))
    );
    // A cast still buffered when the channel ends goes with it, silently.
    let other = t.join("room:other");
    t.cast(other, "lost");
    t.take_events();
    t.recv(&reply(
        "5",
        "5",
        "room:other",
        "error",
        r#"{"reason":"no"}"#,
    ));
    let ev = t.take_events();
    assert!(
        !ev.iter().any(|e| matches!(e, Event::PushFailed { .. })),
        "{ev:?}"
    );
    assert_eq!(t.s.stats().pushes_buffered, 0);
    assert!(!t.take_frames().iter().any(|f| f.contains("lost")));
}

#[test]
fn push_timeout_fires_and_a_late_reply_is_reported_unexpected() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    let p = t.push(ch, "noreply");
    t.advance_to(9_999);
    assert!(
        !t.events
            .iter()
            .any(|e| matches!(e, Event::PushTimedOut { .. }))
    );
    t.advance_to(10_000);
    assert!(t.take_events().contains(&Event::PushTimedOut {
        channel: ch,
        push_ref: p
    }));
    t.recv(&ok_reply("1", &p.to_string(), "room:lobby", "{}"));
    assert!(matches!(
        t.take_events()[..],
        [Event::Unexpected(Unexpected::UnknownRef { .. })]
    ));
}

#[test]
fn in_flight_pushes_fail_on_connection_loss_and_buffered_ones_survive() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    let sent = t.push(ch, "sent");
    t.closed(CloseReason::Error("reset".into()));
    let waiting = t.push(ch, "waiting");
    let ev = t.take_events();
    assert!(ev.contains(&Event::PushFailed {
        channel: ch,
        push_ref: sent,
        reason: PushFailure::ConnectionLost
    }));
    t.advance_to(10);
    t.opened();
    t.take_frames();
    let jr = t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
    t.recv(&ok_reply(&jr, &jr, "room:lobby", "{}"));
    assert_eq!(
        t.take_frames(),
        [format!(
            r#"["{jr}","{}","room:lobby","waiting",{{}}]"#,
            waiting
        )]
    );
}

#[test]
fn reserved_events_and_dead_channels_are_refused() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    assert_eq!(
        t.s.push(t.now, ch, "phx_leave", Payload::empty(), None),
        Err(PushError::ReservedEvent("phx_leave".into()))
    );
    t.s.leave(t.now, ch).unwrap();
    assert_eq!(
        t.s.push(t.now, ch, "x", Payload::empty(), None),
        Err(PushError::Leaving(ch))
    );
    t.drain();
    t.recv(&ok_reply("1", "2", "room:lobby", "{}"));
    assert_eq!(
        t.s.push(t.now, ch, "x", Payload::empty(), None),
        Err(PushError::UnknownChannel(ch))
    );
}

#[test]
fn binary_pushes_are_encoded_and_oversized_fields_refused() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:bin");
    t.take_frames();
    t.s.push(t.now, ch, "bin", Payload::binary(vec![1u8, 2]), None)
        .unwrap();
    t.drain();
    assert_eq!(t.take_frames().len(), 1);
    let long = "e".repeat(256);
    assert!(matches!(
        t.s.push(t.now, ch, &long, Payload::binary(vec![1u8]), None),
        Err(PushError::Encode(EncodeError::FieldTooLong {
            field: "event",
            len: 256
        }))
    ));
    let mut v1 = T::with(config().serializer(V1Json));
    let ch = v1.join("room:x");
    assert!(matches!(
        v1.s.push(v1.now, ch, "bin", Payload::binary(vec![1u8]), None),
        Err(PushError::Encode(EncodeError::BinaryUnsupported { .. }))
    ));
}

#[test]
fn a_push_over_the_frame_limit_fails_at_once_and_the_socket_carries_on() {
    let mut t = T::with(config().max_frame_size(200));
    t.open();
    let ch = t.joined("room:lobby");
    t.take_frames();
    let big = Payload::json(&"x".repeat(300)).unwrap();
    assert!(matches!(
        t.s.push(t.now, ch, "big", big.clone(), None),
        Err(PushError::Encode(EncodeError::FrameTooLarge {
            max: 200,
            ..
        }))
    ));
    assert!(matches!(
        t.s.join(t.now, "room:big", big),
        Err(JoinError::Encode(EncodeError::FrameTooLarge { .. }))
    ));
    assert!(t.take_frames().is_empty());
    t.push(ch, "small");
    assert_eq!(t.take_frames().len(), 1);
}

#[test]
fn too_many_pending_pushes_is_refused() {
    let mut t = T::with(config().max_pending_pushes(2));
    t.open();
    let ch = t.joined("room:lobby");
    t.push(ch, "a");
    t.push(ch, "b");
    assert_eq!(
        t.s.push(t.now, ch, "c", Payload::empty(), None),
        Err(PushError::TooManyPending { limit: 2 })
    );
}

// ------------------------------------------------------------------ leave and disconnect

#[test]
fn leave_sends_phx_leave_and_completes_on_the_reply() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.take_frames();
    t.take_events();
    t.s.leave(t.now, ch).unwrap();
    t.drain();
    assert_eq!(
        t.take_frames(),
        [r#"["1","2","room:lobby","phx_leave",{}]"#]
    );
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Leaving);
    assert_eq!(t.s.leave(t.now, ch), Err(LeaveError::AlreadyLeaving(ch)));
    // The topic is free at once; the new channel ignores the old instance's frames.
    let again = t.join("room:lobby");
    t.take_events();
    // A broadcast of the instance being left is not delivered, but it is reported.
    t.recv(r#"["1",null,"room:lobby","new_msg",{}]"#);
    assert_eq!(
        t.take_events(),
        [Event::Unexpected(Unexpected::Stale {
            channel: ch,
            event: "new_msg".into()
        })]
    );
    t.recv(&ok_reply("1", "2", "room:lobby", "{}"));
    t.recv(r#"["1","1","room:lobby","phx_close",{}]"#);
    let ev = t.take_events();
    assert!(ev.contains(&Event::Left {
        channel: ch,
        confirmed: true
    }));
    assert!(t.s.channel(ch).is_none());
    assert_eq!(t.s.channel(again).unwrap().state(), ChannelState::Joining);
}

#[test]
fn join_reply_arriving_while_leaving_is_absorbed() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:lobby");
    t.s.leave(t.now, ch).unwrap();
    t.drain();
    t.take_events();
    t.recv(&ok_reply("1", "1", "room:lobby", "{}"));
    assert!(t.take_events().is_empty());
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Leaving);
    t.recv(&ok_reply("1", "2", "room:lobby", "{}"));
    assert_eq!(
        t.take_events(),
        [Event::Left {
            channel: ch,
            confirmed: true
        }]
    );
}

#[test]
fn leave_completes_on_timeout_when_the_server_never_answers() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:dup");
    t.s.leave(t.now, ch).unwrap();
    t.drain();
    t.take_events();
    t.advance_to(9_999);
    assert!(t.s.channel(ch).is_some());
    t.advance_to(10_000);
    assert_eq!(
        t.take_events(),
        [Event::Left {
            channel: ch,
            confirmed: false
        }]
    );
}

#[test]
fn leave_while_disconnected_completes_locally_and_sends_nothing() {
    let mut t = T::new();
    let ch = t.join("room:lobby");
    let p = t.push(ch, "x");
    t.s.leave(t.now, ch).unwrap();
    t.drain();
    assert_eq!(
        t.take_events(),
        [
            Event::PushFailed {
                channel: ch,
                push_ref: p,
                reason: PushFailure::ChannelClosed
            },
            Event::Left {
                channel: ch,
                confirmed: false
            }
        ]
    );
    t.open();
    assert!(t.take_frames().is_empty());
}

#[test]
fn disconnect_leaves_every_channel_closes_1000_and_resolves_everything() {
    let mut t = T::new();
    t.open();
    let a = t.joined("room:a");
    let b = t.join("room:b"); // join in flight
    let pa = t.push(a, "x");
    let pb = t.push(b, "y"); // buffered
    t.take_frames();
    t.take_events();
    t.s.disconnect(t.now);
    t.drain();
    assert_eq!(
        t.take_frames(),
        [
            r#"["1","5","room:a","phx_leave",{}]"#,
            r#"["2","6","room:b","phx_leave",{}]"#
        ]
    );
    assert_eq!(t.closes, [(1000, "client disconnect")]);
    let ev = t.take_events();
    for e in [
        Event::PushFailed {
            channel: a,
            push_ref: pa,
            reason: PushFailure::Disconnected,
        },
        Event::PushFailed {
            channel: b,
            push_ref: pb,
            reason: PushFailure::Disconnected,
        },
        Event::ChannelClosed {
            channel: a,
            reason: ChannelClosed::Disconnected,
        },
        Event::ChannelClosed {
            channel: b,
            reason: ChannelClosed::Disconnected,
        },
    ] {
        assert!(ev.contains(&e), "missing {e:?} in {ev:?}");
    }
    assert_eq!(t.s.state(), SocketState::Disconnected);
    assert_eq!(t.s.poll_timeout(), None);
    t.advance_to(120_000);
    assert_eq!(t.connects.len(), 1, "no reconnect after disconnect");
    assert_eq!(t.s.stats().pushes_pending, 0);
}

// ------------------------------------------------------------------ determinism

#[test]
fn same_seed_and_inputs_give_the_same_outputs() {
    let start = Instant::now();
    let run = || {
        let mut t = T::starting_at(
            config()
                .reconnect(Backoff::phoenix_reconnect().with_jitter(0.5))
                .rejoin(Backoff::exponential(MS(100), SECS(10)))
                .rng_seed(42),
            start,
        );
        t.open();
        let ch = t.joined("room:lobby");
        t.push(ch, "a");
        t.recv(r#"["1","1","room:lobby","phx_error",{}]"#);
        t.closed(CloseReason::Error("x".into()));
        for ms in [5, 20, 100, 1000, 5000] {
            t.advance_to(ms);
            if t.s.state() == SocketState::Connecting {
                t.closed(CloseReason::Error("x".into()));
            }
        }
        (t.frames, format!("{:?}", t.events), t.s.poll_timeout())
    };
    assert_eq!(run(), run());
}

#[test]
fn stats_count_frames_bytes_and_channels() {
    let mut t = T::new();
    t.open();
    t.joined("room:a");
    t.join("room:b");
    let s = t.s.stats();
    assert_eq!((s.frames_out, s.frames_in), (2, 1));
    assert_eq!(s.channels.joined, 1);
    assert_eq!(s.channels.joining, 1);
    assert_eq!(s.connects, 1);
    // Exactly the frames' bytes: two joins out, one reply in.
    let out =
        r#"["1","1","room:a","phx_join",{}]"#.len() + r#"["2","2","room:b","phx_join",{}]"#.len();
    let reply = ok_reply("1", "1", "room:a", "{}").len();
    assert_eq!((s.bytes_out, s.bytes_in), (out as u64, reply as u64));
    // Every state is counted: one errored, one leaving.
    let c = t.joined("room:c");
    t.recv(r#"["1","1","room:a","phx_error",{}]"#);
    t.s.leave(t.now, c).unwrap();
    t.drain();
    let s = t.s.stats();
    assert_eq!(
        (
            s.channels.joining,
            s.channels.joined,
            s.channels.errored,
            s.channels.leaving
        ),
        (1, 0, 1, 1)
    );
}

// ------------------------------------------------------------------ presence

fn presence_keys(t: &T, ch: ChannelId) -> Vec<String> {
    t.s.channel(ch)
        .unwrap()
        .presence()
        .unwrap()
        .list()
        .map(|(k, _)| k.to_owned())
        .collect()
}

#[test]
fn presence_with_custom_event_names_feeds_the_view_not_the_messages() {
    let mut t = T::new();
    t.open();
    let options = JoinOptions {
        presence: Some(PresenceEvents {
            state: "who_state".into(),
            diff: "who_diff".into(),
        }),
        ..JoinOptions::default()
    };
    let ch =
        t.s.join_with_options(t.now, "room:custom", Payload::empty(), options)
            .unwrap();
    t.drain();
    t.recv(&ok_reply("1", "1", "room:custom", "{}"));
    t.take_events();
    t.recv(r#"["1",null,"room:custom","who_state",{"alice":{"metas":[{"phx_ref":"a1"}]}}]"#);
    t.recv(r#"["1",null,"room:custom","who_diff",{"joins":{"bob":{"metas":[{"phx_ref":"b1"}]}},"leaves":{}}]"#);
    // The default names are ordinary messages on this channel.
    t.recv(r#"["1",null,"room:custom","presence_state",{}]"#);
    let ev = t.take_events();
    assert_eq!(presence_keys(&t, ch), ["alice", "bob"]);
    let messages: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message.event.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["presence_state"]);
    assert!(ev.iter().any(|e| matches!(e, Event::Presence { .. })));
}

#[test]
fn presence_is_tracked_per_channel_and_resynced_after_a_rejoin() {
    let mut t = T::new();
    t.open();
    let ch =
        t.s.join_with_options(
            t.now,
            "presence:lobby",
            Payload::empty(),
            JoinOptions::default().presence(),
        )
        .unwrap();
    t.drain();
    t.recv(&ok_reply("1", "1", "presence:lobby", "{}"));
    t.take_events();
    // The joiner's own diff races ahead of the state: held.
    t.recv(r#"[null,null,"presence:lobby","presence_diff",{"joins":{"alice":{"metas":[{"phx_ref":"a1"}]}},"leaves":{}}]"#);
    assert!(t.take_events().is_empty());
    t.recv(r#"["1",null,"presence:lobby","presence_state",{"alice":{"metas":[{"phx_ref":"a1"}]},"bob":{"metas":[{"phx_ref":"b1"}]}}]"#);
    let ev = t.take_events();
    assert!(
        ev.iter()
            .all(|e| matches!(e, Event::Presence { channel, .. } if *channel == ch))
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::Message { .. })));
    assert_eq!(presence_keys(&t, ch), ["alice", "bob"]);
    // Reconnect: bob left while we were away, carol came.
    t.closed(CloseReason::Error("reset".into()));
    t.advance_to(10);
    t.opened();
    t.recv(&ok_reply("2", "2", "presence:lobby", "{}"));
    t.take_events();
    t.recv(r#"[null,null,"presence:lobby","presence_diff",{"joins":{"dave":{"metas":[{"phx_ref":"d1"}]}},"leaves":{}}]"#);
    assert_eq!(
        presence_keys(&t, ch),
        ["alice", "bob"],
        "held until the new state"
    );
    t.recv(r#"["2",null,"presence:lobby","presence_state",{"alice":{"metas":[{"phx_ref":"a1"}]},"carol":{"metas":[{"phx_ref":"c1"}]}}]"#);
    assert_eq!(presence_keys(&t, ch), ["alice", "carol", "dave"]);
    let changes: Vec<String> = t
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Presence {
                change: crate::PresenceChange::Join { key, .. },
                ..
            } => Some(format!("+{key}")),
            Event::Presence {
                change: crate::PresenceChange::Leave { key, .. },
                ..
            } => Some(format!("-{key}")),
            _ => None,
        })
        .collect();
    assert_eq!(changes, ["+carol", "-bob", "+dave"]);
    // Malformed presence is reported, not applied.
    t.recv(r#"["2",null,"presence:lobby","presence_state",[1,2]]"#);
    assert!(matches!(
        t.take_events()[..],
        [Event::Unexpected(Unexpected::Presence { .. })]
    ));
    assert_eq!(t.s.stats().invalid_presence, 1);
}

#[test]
fn channels_without_presence_tracking_get_presence_as_messages() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("presence:lobby");
    t.take_events();
    t.recv(r#"["1",null,"presence:lobby","presence_state",{}]"#);
    assert!(matches!(&t.take_events()[..], [Event::Message { channel, .. }] if *channel == ch));
    assert!(t.s.channel(ch).unwrap().presence().is_none());
}

/// PROTOCOL.md §5.4: a push that waited in the buffer gets its whole timeout again when it is
/// sent, so the server always has the full timeout to answer.
#[test]
fn a_push_sent_from_the_buffer_gets_its_whole_timeout_again() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:lobby");
    t.closed(CloseReason::Error("reset".into()));
    let p = t.push(ch, "waiting"); // buffered at 0 s, 10 s timeout
    t.advance_to(10); // redial
    t.advance_to(9_000);
    t.opened(); // the rejoin goes out at 9 s
    let jr = t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
    t.recv(&ok_reply(&jr, &jr, "room:lobby", "{}"));
    assert!(t.take_frames().iter().any(|f| f.contains("waiting")));
    t.take_events();
    let timed_out = Event::PushTimedOut {
        channel: ch,
        push_ref: p,
    };
    t.advance_to(18_999);
    assert!(
        !t.take_events().contains(&timed_out),
        "sent at 9 s, it may not time out before 19 s"
    );
    assert_eq!(t.s.poll_timeout(), Some(t.at(19_000)));
    t.advance_to(19_000);
    assert!(t.take_events().contains(&timed_out));
    assert_eq!(t.s.stats().pushes_pending, 0);
    t.s.check_invariants().unwrap();
}

/// A driver may drain once per batch of frames, taking messages with `poll_message_with`:
/// they come in the order received, and an event between them waits its turn.
#[test]
fn messages_taken_one_by_one_keep_their_place_among_events() {
    let mut t = T::new();
    t.open();
    let a = t.joined("room:a");
    let b = t.joined("room:b");
    t.take_events();
    t.feed(r#"[null,null,"room:a","m1",{}]"#).unwrap();
    t.feed(r#"[null,null,"room:b","m2",{}]"#).unwrap();
    t.feed(r#"[null,null,"room:nowhere","m3",{}]"#).unwrap();
    t.feed(r#"[null,null,"room:a","m4",{}]"#).unwrap();
    let mut taken = Vec::new();
    let mut take = |t: &mut T| t.s.poll_message_with(|m| taken.push(m.event.to_string()));
    assert_eq!(t.s.peek_message(), Some(a));
    assert!(take(&mut t));
    assert_eq!(t.s.peek_message(), Some(b));
    assert!(take(&mut t));
    assert_eq!(t.s.peek_message(), None);
    assert!(!take(&mut t), "the next event is not a message");
    assert!(matches!(
        t.s.poll_event(),
        Some(Event::Unexpected(Unexpected::UnknownTopic { .. }))
    ));
    assert_eq!(t.s.peek_message(), Some(a));
    assert!(take(&mut t));
    assert!(!take(&mut t));
    assert_eq!(taken, ["m1", "m2", "m4"]);
    assert!(t.s.poll_event().is_none());
}

/// Queues grown by a batch of frames drained at once give their buffers back on request,
/// once empty, and never drop what waits in them.
#[test]
fn queues_sized_for_a_burst_shrink_once_drained() {
    let mut t = T::new();
    t.open();
    t.joined("room:a");
    t.take_events();
    for i in 0..1_000 {
        t.feed(&format!(r#"[null,null,"room:a","m{i}",{{}}]"#))
            .unwrap();
    }
    assert!(t.s.events.capacity() >= 1_000);
    t.s.shrink_queues();
    assert_eq!(t.s.events.len(), 1_000, "nothing waiting is dropped");
    let mut left = 0;
    while t.s.poll_message_with(|_| left += 1) {}
    assert_eq!(left, 1_000);
    t.s.shrink_queues();
    assert!(t.s.events.capacity() <= QUEUE_KEEP);
    // A queue that never outgrew the allowance keeps its buffer.
    t.feed(r#"[null,null,"room:a","m",{}]"#).unwrap();
    let kept = t.s.events.capacity();
    assert!(t.s.poll_message_with(|_| {}));
    t.s.shrink_queues();
    assert_eq!(t.s.events.capacity(), kept);
    assert!(kept > 0);
}

/// Draining once after a batch of frames, messages through `poll_message_with`, yields the
/// events and orders that draining after every frame does, in the same order.
#[test]
fn a_batch_drained_at_once_yields_what_frame_by_frame_draining_does() {
    let start = Instant::now();
    let setup = || {
        let mut t = T::starting_at(config(), start);
        t.open();
        let a = t.joined("room:a");
        let b = t.joined("room:b");
        let p = t.push(a, "ping");
        t.take_events();
        t.take_frames();
        let jr = |ch| t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
        let (ja, jb) = (jr(a), jr(b));
        let frames = vec![
            r#"[null,null,"room:a","m1",{}]"#.to_owned(),
            r#"[null,null,"room:b","m2",{}]"#.to_owned(),
            ok_reply(&ja, &p.to_string(), "room:a", r#"{"n":1}"#),
            r#"[null,null,"room:nowhere","m3",{}]"#.to_owned(),
            r#"[null,null,"room:a","m4",{}]"#.to_owned(),
            format!(r#"["{jb}","{jb}","room:b","phx_error",{{}}]"#),
            r#"[null,null,"room:b","m5",{}]"#.to_owned(),
            "not a frame".to_owned(),
            r#"[null,null,"room:a","m6",{}]"#.to_owned(),
            format!(r#"["{ja}","{ja}","room:a","phx_close",{{}}]"#),
        ];
        (t, frames)
    };
    let (mut one, frames) = setup();
    let mut each = Vec::new();
    for f in &frames {
        // One frame is malformed: refused, counted and reported, as in a driver.
        let _ = one.feed(f);
        each.extend(std::iter::from_fn(|| one.s.poll_transmit()));
        one.drain();
    }
    let each_events = one.take_events();

    let (mut batch, frames) = setup();
    for f in &frames {
        let _ = batch.feed(f);
    }
    let at_once: Vec<Transmit> = std::iter::from_fn(|| batch.s.poll_transmit()).collect();
    let mut events = Vec::new();
    loop {
        if let Some(channel) = batch.s.peek_message() {
            assert!(
                batch
                    .s
                    .poll_message_with(|message| events.push(Event::Message { channel, message }))
            );
        } else if let Some(e) = batch.s.poll_event() {
            events.push(e);
        } else {
            break;
        }
    }
    assert_eq!(events, each_events);
    assert_eq!(at_once, each);
    let messages = events
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!(
        messages, 4,
        "m1, m2, m4 and m6; m3 has no channel, m5 came after phx_error"
    );
    assert!(events.iter().any(|e| matches!(e, Event::Replied { .. })));
}

// ------------------------------------------------------------------ transport loss during a join

#[test]
fn a_rejoin_lost_with_the_connection_leaves_the_channel_without_a_join_ref() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:a");
    t.recv(r#"["1","1","room:a","phx_error",{}]"#);
    t.take_frames();
    t.advance_to(1000);
    assert_eq!(t.take_frames(), [r#"["2","2","room:a","phx_join",{}]"#]);
    assert_eq!(t.s.channel(ch).unwrap().join_ref(), Some(2));
    t.closed(CloseReason::Error("reset".into()));
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Errored);
    assert_eq!(t.s.channel(ch).unwrap().join_ref(), None);
    // The next connection's join brings a new one.
    t.advance(MS(10));
    t.opened();
    assert_eq!(t.take_frames(), [r#"["3","3","room:a","phx_join",{}]"#]);
    assert_eq!(t.s.channel(ch).unwrap().join_ref(), Some(3));
}

#[test]
fn a_first_join_lost_with_the_connection_has_no_join_ref_until_it_is_sent_again() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:a");
    assert_eq!(t.take_frames(), [r#"["1","1","room:a","phx_join",{}]"#]);
    t.closed(CloseReason::Error("reset".into()));
    assert_eq!(t.s.channel(ch).unwrap().state(), ChannelState::Joining);
    assert_eq!(t.s.channel(ch).unwrap().join_ref(), None);
    t.advance(MS(10));
    t.opened();
    assert_eq!(t.take_frames(), [r#"["2","2","room:a","phx_join",{}]"#]);
    assert_eq!(t.s.channel(ch).unwrap().join_ref(), Some(2));
}

// ------------------------------------------------------------------ rules without a test of their own

#[test]
fn a_reply_read_before_its_push_deadline_is_handled_wins_over_the_timeout() {
    // PROTOCOL.md §10.4 rule 6: the reply is read at the deadline, before the timer is handled.
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:a");
    let p = t.push(ch, "x");
    t.take_events();
    t.now = t.at(10_000);
    t.recv(&ok_reply("1", &p.to_string(), "room:a", "{}"));
    t.advance_to(10_000);
    let ev = t.take_events();
    assert!(
        matches!(&ev[..], [Event::Replied { push_ref, .. }] if *push_ref == p),
        "{ev:?}"
    );
}

#[test]
fn an_errored_channel_rejoins_at_once_on_open_and_its_old_rejoin_timer_is_gone() {
    // PROTOCOL.md §5.3 and §6.3: on open an errored channel rejoins at once and its rejoin
    // schedule starts over.
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:a");
    t.recv(r#"["1","1","room:a","phx_error",{}]"#);
    for at in [1000, 3000, 8000] {
        t.advance_to(at);
        let jr = t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
        t.recv(&reply(&jr, &jr, "room:a", "error", "{}"));
    }
    // The next rejoin would be at 18 s; the connection drops before.
    t.take_frames();
    t.now = t.at(8500);
    t.closed(CloseReason::Error("reset".into()));
    t.advance_to(8510);
    t.opened();
    let frames = t.take_frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(frames[0].contains("phx_join"), "{frames:?}");
    let jr = t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
    t.take_events();
    t.recv(&reply(&jr, &jr, "room:a", "error", "{}"));
    assert!(t.take_events().iter().any(|e| matches!(
        e,
        Event::JoinFailed { retry_at: Some(at), .. } if *at == t.at(9510)
    )));
    t.advance_to(18_000);
    let joins = t.take_frames();
    assert_eq!(
        joins.iter().filter(|f| f.contains("phx_join")).count(),
        1,
        "only the rejoin at 9.51 s: {joins:?}"
    );
}

#[test]
fn a_join_reply_with_a_custom_status_fails_the_join() {
    let mut t = T::new();
    t.open();
    let ch = t.join("room:a");
    t.recv(&reply("1", "1", "room:a", "custom", "{}"));
    assert!(t.take_events().iter().any(|e| matches!(
        e,
        Event::JoinFailed { channel, status, .. } if *channel == ch && status == "custom"
    )));
}

#[test]
fn a_zero_join_or_push_timeout_is_refused_and_changes_nothing() {
    let mut t = T::new();
    t.open();
    assert_eq!(
        t.s.join_with_timeout(t.now, "room:a", Payload::empty(), Duration::ZERO),
        Err(JoinError::ZeroTimeout)
    );
    t.drain();
    assert!(t.take_frames().is_empty());
    let ch = t.joined("room:a");
    t.take_frames();
    assert_eq!(
        t.s.push(t.now, ch, "x", Payload::empty(), Some(Duration::ZERO)),
        Err(PushError::ZeroTimeout)
    );
    t.drain();
    assert!(t.take_frames().is_empty());
    assert_eq!(t.s.stats().pushes_pending, 0);
}

#[test]
fn messages_handed_over_at_once_keep_their_place_among_events() {
    let mut t = T::new();
    t.open();
    let ch = t.joined("room:1");
    let other = t.joined("room:2");
    let jr = t.s.channel(ch).unwrap().join_ref().unwrap().to_string();
    let conn = t.conn.unwrap();
    let msg = |topic: &str, body: &str| {
        Frame::Text(format!(r#"[null,null,"{topic}","new_msg",{{"body":"{body}"}}]"#).into())
    };
    let body = |m: &Message| m.payload.decode::<serde_json::Value>().unwrap()["body"].clone();
    let mut handed = Vec::new();

    // Nothing waits to be polled: each channel's message is handed over, nothing is queued.
    for (topic, b) in [("room:1", "a"), ("room:2", "b")] {
        t.s.handle_frame_with(t.now, conn, msg(topic, b), |c, m| handed.push((c, m)))
            .unwrap();
    }
    let got: Vec<_> = handed.iter().map(|(c, m)| (*c, body(m))).collect();
    assert_eq!(got, [(ch, "a".into()), (other, "b".into())]);
    assert_eq!(t.s.poll_event(), None);
    assert_eq!(t.s.stats().messages, 2);

    // A push's reply waits unpolled: the next message queues behind it, in order.
    let p = t.push(ch, "ping");
    t.feed(&ok_reply(&jr, &p.to_string(), "room:1", "{}"))
        .unwrap();
    t.s.handle_frame_with(t.now, conn, msg("room:1", "c"), |c, m| handed.push((c, m)))
        .unwrap();
    assert_eq!(handed.len(), 2, "not handed over past the waiting reply");
    let events: Vec<Event> = std::iter::from_fn(|| t.s.poll_event()).collect();
    match &events[..] {
        [
            Event::Replied { push_ref, .. },
            Event::Message { channel, message },
        ] => {
            assert_eq!(*push_ref, p);
            assert_eq!((*channel, body(message)), (ch, "c".into()));
        }
        other => panic!("{other:?}"),
    }

    // Polled empty again: handed over again. Other outputs never are.
    t.s.handle_frame_with(t.now, conn, msg("room:1", "d"), |c, m| handed.push((c, m)))
        .unwrap();
    assert_eq!(handed.len(), 3);
    t.s.handle_frame_with(t.now, conn, msg("room:9", "e"), |c, m| handed.push((c, m)))
        .unwrap();
    assert_eq!(
        handed.len(),
        3,
        "an unknown topic is reported, not handed over"
    );
    assert!(matches!(
        t.s.poll_event(),
        Some(Event::Unexpected(Unexpected::UnknownTopic { .. }))
    ));
    t.s.check_invariants().unwrap();
}
