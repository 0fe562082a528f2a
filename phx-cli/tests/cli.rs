//! End-to-end tests of the `phx` binary against the bundled test server, started in-process on
//! a free port for each test.

mod support;

use futures::executor::block_on;
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tokio::Payload;
use serde_json::{Value, json};
use support::{Phx, server};

/// The keys of a `presence` line's list, in order.
fn present(line: &Value) -> Vec<String> {
    line["presences"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn join_prints_every_message_as_a_json_line() {
    let server = server();
    let url = server.url();
    let mut phx = Phx::spawn(&[
        "join",
        &url,
        "room:lobby",
        "--param",
        "token=secret",
        "--payload",
        r#"{"user": "alice"}"#,
    ]);
    let connected = phx.expect_type("connected");
    let shown = connected["url"].as_str().unwrap();
    assert!(shown.contains("token=<redacted>"), "{shown}");
    assert!(!shown.contains("secret"), "the token leaked: {shown}");
    let joined = phx.expect_type("joined");
    assert_eq!(
        joined["response"],
        json!({ "joined": "room:lobby", "params": { "user": "alice" } })
    );

    let payload = Payload::from_json(r#"{"z": 1, "a": [1, 2]}"#).unwrap();
    assert_eq!(block_on(server.broadcast("room:lobby", "news", payload)), 1);
    let news = phx.expect_type("message");
    assert_eq!(news["topic"], "room:lobby");
    assert_eq!(news["event"], "news");
    assert_eq!(news["payload"], json!({ "z": 1, "a": [1, 2] }));
    // The payload is printed as the server sent it (compacted), keys in their order.
    assert!(
        phx.stdout
            .last()
            .unwrap()
            .contains(r#""payload":{"z":1,"a":[1,2]}"#),
        "{:?}",
        phx.stdout.last()
    );

    let binary = Payload::binary(&b"\x00\xffhi"[..]);
    block_on(server.broadcast("room:lobby", "blob", binary));
    let blob = phx.expect_type("message");
    assert_eq!(blob["event"], "blob");
    assert_eq!(blob["payload_base64"], "AP9oaQ==");

    phx.close_stdin();
    let done = phx.finish();
    assert_eq!(done.code, Some(0), "{}", done.stderr_text());
    done.json_lines(); // every stdout line is JSON
}

#[test]
fn stdin_lines_are_pushed_and_each_reply_printed_with_its_latency() {
    let server = server();
    let url = server.url();
    let mut phx = Phx::spawn(&["join", &url, "room:lobby", "--token", "secret"]);
    phx.expect_type("joined");

    phx.send(r#"ping {"a": 1}"#);
    let reply = phx.expect_type("reply");
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["event"], "ping");
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["response"], json!({ "a": 1 }));
    assert!(reply["latency_ms"].as_f64().unwrap() > 0.0, "{reply}");

    // Pushes run concurrently: the slow one is answered last, and phx waits for it at the end
    // of input.
    phx.send(r#"slow {"ms": 300}"#);
    phx.send(r#"ping {"b": 2}"#);
    phx.send(r#"ping {oops"#);
    phx.send("");
    phx.send("error_reply");
    phx.close_stdin();
    let done = phx.finish();
    assert_eq!(done.code, Some(0), "{}", done.stderr_text());
    let lines = done.json_lines();
    let position = |id: u64| {
        lines
            .iter()
            .position(|l| l["type"] == "reply" && l["id"] == id)
            .unwrap_or_else(|| panic!("no reply to push {id}: {lines:?}"))
    };
    let slow = &lines[position(2)];
    assert_eq!(slow["response"], json!({ "ms": 300 }));
    assert!(slow["latency_ms"].as_f64().unwrap() >= 300.0, "{slow}");
    assert_eq!(lines[position(3)]["response"], json!({ "b": 2 }));
    assert!(position(3) < position(2), "{lines:?}");
    let error = &lines[position(4)];
    assert_eq!(error["event"], "error_reply");
    assert_eq!(error["status"], "error");
    assert_eq!(error["response"], json!({ "reason": "nope" }));
    let bad = lines
        .iter()
        .find(|l| l["type"] == "input_error")
        .expect("an input_error line");
    assert_eq!(bad["line"], "ping {oops");
    let why = bad["error"].as_str().unwrap();
    assert!(why.contains("line 1 column 2"), "{why}");
    assert!(why.contains("EVENT [JSON]"), "{why}");
}

#[test]
fn vsn_1_speaks_the_v1_serializer() {
    let server = server();
    let url = server.url();
    let mut phx = Phx::spawn(&[
        "join",
        &url,
        "room:lobby",
        "--token",
        "secret",
        "--vsn",
        "1",
    ]);
    let connected = phx.expect_type("connected");
    let shown = connected["url"].as_str().unwrap();
    assert!(shown.contains("vsn=1.0.0"), "{connected}");
    phx.expect_type("joined");
    phx.send(r#"ping {"over": "v1"}"#);
    let reply = phx.expect_type("reply");
    assert_eq!(reply["response"], json!({ "over": "v1" }));
    phx.close_stdin();
    let done = phx.finish();
    assert_eq!(done.code, Some(0), "{}", done.stderr_text());
}

#[test]
fn a_crashed_channel_is_reported_and_rejoined_and_a_closed_one_ends_the_session() {
    let server = server();
    let url = server.url();
    let mut phx = Phx::spawn(&["join", &url, "room:lobby", "--token", "secret"]);
    phx.expect_type("joined");
    phx.send("crash");
    let lines = phx.expect_types(&["push_error", "channel_error", "rejoined"]);
    let (failed, crashed) = (&lines[0], &lines[1]);
    assert_eq!(failed["event"], "crash");
    assert!(
        failed["error"].as_str().unwrap().contains("crashed"),
        "{failed}"
    );
    assert_eq!(crashed["reason"], json!({ "reason": "channel_crash" }));
    assert_eq!(lines[2]["topic"], "room:lobby");
    phx.send("ping");
    assert_eq!(phx.expect_type("reply")["status"], "ok");

    phx.send("stop");
    assert_eq!(phx.expect_type("closed")["topic"], "room:lobby");
    let done = phx.finish();
    assert_eq!(done.code, Some(1));
    assert!(
        done.stderr_text()
            .contains("the server closed the channel room:lobby"),
        "{}",
        done.stderr_text()
    );
}

#[test]
fn pretty_output_has_timestamps_event_names_and_colour_on_request() {
    let server = server();
    let url = server.url();
    let mut phx = Phx::spawn(&[
        "join",
        &url,
        "room:lobby",
        "--token",
        "secret",
        "--pretty",
        "--color",
        "always",
    ]);
    let notice = phx.expect_text(true, "the joined notice", |l| {
        l.contains("joined room:lobby")
    });
    assert!(notice.contains("\x1b["), "{notice:?}");
    block_on(server.broadcast(
        "room:lobby",
        "news",
        Payload::from_json(r#"{"n":1}"#).unwrap(),
    ));
    let line = phx.expect_text(false, "the message", |l| l.contains("news"));
    assert!(line.contains("\x1b[1;36mnews\x1b[0m"), "{line:?}");
    assert!(line.ends_with(r#"{"n":1}"#), "{line:?}");
    assert_timestamp(&line);
    phx.send(r#"ping {"a":1}"#);
    let reply = phx.expect_text(false, "the reply", |l| l.contains("ping"));
    for part in ["#1", "ok", " ms)", r#"{"a":1}"#] {
        assert!(reply.contains(part), "{part:?} missing from {reply:?}");
    }
    phx.close_stdin();
    assert_eq!(phx.finish().code, Some(0));

    // Colour is automatic: not when the output is a pipe.
    let done = Phx::run(&[
        "push",
        &url,
        "room:lobby",
        "ping",
        "{}",
        "--token",
        "secret",
        "--pretty",
    ]);
    assert_eq!(done.code, Some(0));
    let line = &done.stdout[0];
    assert!(!line.contains('\x1b'), "{line:?}");
    assert!(line.contains("ping -> ok ("), "{line:?}");
    assert_timestamp(line);
}

/// Pretty lines start with `HH:MM:SS.mmm` (after an optional colour code).
fn assert_timestamp(line: &str) {
    let plain = line.strip_prefix("\x1b[2m").unwrap_or(line);
    let stamp: Vec<char> = plain.chars().take(12).collect();
    let shape = stamp
        .iter()
        .map(|c| if c.is_ascii_digit() { '9' } else { *c })
        .collect::<String>();
    assert_eq!(shape, "99:99:99.999", "no timestamp in {line:?}");
}

#[test]
fn push_exit_codes_tell_ok_from_error_replies_and_timeouts() {
    let server = server();
    let url = server.url();
    let push = |args: &[&str]| {
        let mut all = vec!["push", url.as_str(), "room:lobby"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--token", "secret"]);
        Phx::run(&all)
    };

    let ok = push(&["ping", r#"{"hello": "world"}"#]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr_text());
    let reply = &ok.json_lines()[0];
    assert_eq!(reply["type"], "reply");
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["response"], json!({ "hello": "world" }));
    assert!(ok.stderr.is_empty(), "{:?}", ok.stderr);

    let error = push(&["error_reply"]);
    assert_eq!(error.code, Some(1));
    assert_eq!(error.json_lines()[0]["status"], "error");
    assert!(
        error
            .stderr_text()
            .contains(r#"the server answered error_reply with status "error": {"reason":"nope"}"#),
        "{}",
        error.stderr_text()
    );

    let custom = push(&["custom_status", "{}"]);
    assert_eq!(custom.code, Some(1));
    assert_eq!(custom.json_lines()[0]["status"], "custom");

    let timeout = push(&["noreply", "--timeout", "300ms"]);
    assert_eq!(timeout.code, Some(1));
    let line = &timeout.json_lines()[0];
    assert_eq!(line["type"], "push_error");
    assert!(line["latency_ms"].as_f64().unwrap() >= 300.0, "{line}");
    assert!(
        timeout
            .stderr_text()
            .contains("noreply: no reply within 300ms: the server is slow"),
        "{}",
        timeout.stderr_text()
    );

    let v1 = push(&["ping", r#"{"v":1}"#, "--vsn", "1"]);
    assert_eq!(v1.code, Some(0), "{}", v1.stderr_text());
    assert_eq!(v1.json_lines()[0]["response"], json!({ "v": 1 }));

    let reserved = push(&["phx_leave"]);
    assert_eq!(reserved.code, Some(2));
    assert!(reserved.stderr_text().contains("reserved"));
}

#[test]
fn a_refused_connection_says_what_to_fix_and_never_prints_the_secret() {
    let server = server();
    let url = server.url();
    for auth in [
        ["--param", "token=hunter2-wrong"],
        ["--token", "hunter2-wrong"],
    ] {
        let mut args = vec!["push", url.as_str(), "room:lobby", "ping"];
        args.extend_from_slice(&auth);
        let done = Phx::run(&args);
        assert_eq!(done.code, Some(3));
        assert_eq!(
            done.stderr_text(),
            "phx: error: the server refused the connection (HTTP 403): check --param token=… or \
             --token"
        );
        assert!(done.stdout.is_empty(), "{:?}", done.stdout);
    }
    // A joined session shows the URL with every param redacted.
    let done = Phx::run(&[
        "join",
        &url,
        "room:lobby",
        "--param",
        "token=secret",
        "--param",
        "user=hunter2",
    ]);
    assert_eq!(done.code, Some(0));
    let all = format!("{:?}{:?}", done.stdout, done.stderr);
    assert!(!all.contains("hunter2"), "{all}");
    assert!(all.contains("token=<redacted>&user=<redacted>"), "{all}");
}

#[test]
fn an_unreachable_server_exits_3() {
    // A port that was free a moment ago and is closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/socket");
    let done = Phx::run(&["push", &url, "room:lobby", "ping", "--token", "secret"]);
    assert_eq!(done.code, Some(3));
    let err = done.stderr_text();
    assert!(
        err.starts_with(&format!(
            "phx: error: could not connect to ws://127.0.0.1:{port}/socket/websocket"
        )),
        "{err}"
    );
    assert!(err.contains("check the host and port"), "{err}");
}

#[test]
fn a_silent_server_and_an_untrusted_certificate_exit_3() {
    // Accepts TCP and never answers the WebSocket upgrade.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/socket");
    let done = Phx::run(&["push", &url, "room:lobby", "ping", "--timeout", "300ms"]);
    assert_eq!(done.code, Some(3), "{}", done.stderr_text());
    let err = done.stderr_text();
    assert!(err.contains("within 300ms"), "{err}");
    drop(silent);

    // A TLS server whose certificate phx has no reason to trust.
    let ca = phx_tests::tls::TestCa::new();
    let tls = BackgroundServer::start_tls(ServerConfig::default(), ca.server_config());
    let url = tls.url();
    assert!(url.starts_with("wss://"), "{url}");
    let done = Phx::run(&["push", &url, "room:lobby", "ping", "--token", "secret"]);
    assert_eq!(done.code, Some(3), "{}", done.stderr_text());
    let err = done.stderr_text();
    assert!(err.contains("TLS failed"), "{err}");
}

#[test]
fn refused_joins_exit_4() {
    let server = server();
    let url = server.url();
    let done = Phx::run(&["push", &url, "nope:x", "ping", "--token", "secret"]);
    assert_eq!(done.code, Some(4));
    assert_eq!(
        done.stderr_text(),
        r#"phx: error: the server has no channel for topic "nope:x""#
    );

    let done = Phx::run(&["join", &url, "room:forbidden", "--token", "secret"]);
    assert_eq!(done.code, Some(4));
    let err = done.stderr_text();
    assert!(
        err.contains(
            r#"the server refused to join room:forbidden (error): {"reason":"unauthorized"}"#
        ),
        "{err}"
    );

    // The bundled server's presence topics need a `user` join param.
    let done = Phx::run(&["presence", &url, "presence:lobby", "--token", "secret"]);
    assert_eq!(done.code, Some(4));
    assert!(
        done.stderr_text().contains("--join-param"),
        "{}",
        done.stderr_text()
    );
}

#[test]
fn bad_arguments_exit_2_and_point_at_the_argument() {
    let url = "ws://127.0.0.1:9/socket";
    let done = Phx::run(&["push", url, "room:lobby", "ping", "{a:1}"]);
    assert_eq!(done.code, Some(2));
    let err = done.stderr_text();
    assert!(
        err.contains("invalid value '{a:1}' for '[JSON]': not valid JSON: key must be a string at line 1 column 2"),
        "{err}"
    );

    let done = Phx::run(&["join", url, "room:lobby", "--payload", r#"{"a": }"#]);
    assert_eq!(done.code, Some(2));
    let err = done.stderr_text();
    assert!(err.contains("for '--payload <JSON>'"), "{err}");
    assert!(err.contains("line 1 column 7"), "{err}");

    let done = Phx::run(&["join", url, "room:lobby", "--param", "token"]);
    assert_eq!(done.code, Some(2));
    assert!(done.stderr_text().contains("expected KEY=VALUE"));

    let done = Phx::run(&[
        "join",
        url,
        "room:lobby",
        "--payload",
        "[1]",
        "--join-param",
        "a=b",
    ]);
    assert_eq!(done.code, Some(2));
    assert!(
        done.stderr_text()
            .contains("--payload must be a JSON object")
    );

    let done = Phx::run(&["push", "localhost:4000", "room:lobby", "ping"]);
    assert_eq!(done.code, Some(2));
    assert!(
        done.stderr_text().contains("expected a URL such as wss://"),
        "{}",
        done.stderr_text()
    );

    for args in [
        &["join", url, "room:lobby", "--vsn", "3"][..],
        &[],
        &["push", url],
    ] {
        assert_eq!(Phx::run(args).code, Some(2), "{args:?}");
    }
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let done = Phx::run(&["--help"]);
    assert_eq!(done.code, Some(0));
    let help = done.stdout.join("\n");
    for part in [
        "Examples:",
        "phx serve",
        "phx push ws://",
        "Exit codes:",
        "4  the join",
    ] {
        assert!(help.contains(part), "{part:?} missing from:\n{help}");
    }
    let help = Phx::run(&["join", "--help"]).stdout.join("\n");
    assert!(help.contains("EVENT [JSON]"), "{help}");
    assert!(help.contains("\"type\":\"disconnected\""), "{help}");
}

#[test]
fn presence_prints_the_list_on_every_sync() {
    let server = server();
    let url = server.url();
    let mut alice = Phx::spawn(&[
        "presence",
        &url,
        "presence:lobby",
        "--token",
        "secret",
        "--join-param",
        "user=alice",
    ]);
    alice.expect_json("alice alone", |l| {
        l["type"] == "presence" && present(l) == ["alice"]
    });

    let mut bob = Phx::spawn(&[
        "join",
        &url,
        "presence:lobby",
        "--token",
        "secret",
        "--join-param",
        "user=bob",
    ]);
    bob.expect_type("joined");
    let both = alice.expect_json("alice and bob", |l| present(l) == ["alice", "bob"]);
    assert_eq!(both["topic"], "presence:lobby");
    let meta = &both["presences"]["bob"]["metas"][0];
    assert!(meta["online_at"].is_u64(), "{both}");

    bob.send(r#"update {"status": "away"}"#);
    bob.expect_type("reply");
    let away = alice.expect_json("bob away", |l| {
        l["presences"]["bob"]["metas"][0]["status"] == "away"
    });
    assert_eq!(present(&away), ["alice", "bob"]);

    bob.close_stdin();
    assert_eq!(bob.finish().code, Some(0));
    alice.expect_json("alice alone again", |l| present(l) == ["alice"]);

    alice.interrupt();
    let done = alice.finish();
    assert_eq!(done.code, Some(0), "{}", done.stderr_text());
}

#[test]
fn presence_pretty_lists_joins_and_leaves() {
    let server = server();
    let url = server.url();
    let mut alice = Phx::spawn(&[
        "presence",
        &url,
        "presence:lobby",
        "--token",
        "secret",
        "--join-param",
        "user=alice",
        "--pretty",
    ]);
    alice.expect_text(false, "alice joining", |l| l.ends_with("+ alice joined"));
    alice.expect_text(false, "the header", |l| {
        l.ends_with("presence:lobby: 1 present")
    });
    let row = alice.expect_text(false, "alice's row", |l| l.starts_with("  alice"));
    assert!(row.contains("online_at"), "{row}");
    assert!(!row.contains("phx_ref"), "{row}");
    let mut bob = Phx::spawn(&[
        "join",
        &url,
        "presence:lobby",
        "--token",
        "secret",
        "--join-param",
        "user=bob",
    ]);
    bob.expect_type("joined");
    alice.expect_text(false, "bob joining", |l| l.ends_with("+ bob joined"));
    alice.expect_text(false, "two present", |l| {
        l.ends_with("presence:lobby: 2 present")
    });
    bob.close_stdin();
    bob.finish();
    alice.expect_text(false, "bob leaving", |l| l.ends_with("- bob left"));
}

#[test]
fn a_server_restart_is_reported_and_the_channel_rejoined() {
    let server = server();
    let url = server.url();
    let mut json = Phx::spawn(&["join", &url, "room:lobby", "--token", "secret"]);
    // Listening only: ended by Ctrl-C below.
    let mut pretty = Phx::spawn(&[
        "join",
        &url,
        "room:lobby",
        "--token",
        "secret",
        "--pretty",
        "--no-stdin",
    ]);
    json.expect_type("joined");
    pretty.expect_text(true, "the joined notice", |l| {
        l.contains("joined room:lobby")
    });

    block_on(server.restart());

    let gone = json.expect_type("disconnected");
    assert!(
        gone["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{gone}"
    );
    assert!(gone["reconnect_in_ms"].is_u64(), "{gone}");
    json.expect_type("connected");
    let rejoined = json.expect_type("rejoined");
    assert_eq!(rejoined["topic"], "room:lobby");
    json.send(r#"ping {"after": "restart"}"#);
    assert_eq!(
        json.expect_type("reply")["response"],
        json!({ "after": "restart" })
    );

    pretty.expect_text(true, "the disconnect notice", |l| {
        l.contains("* disconnected: ") && l.contains("; reconnecting in ")
    });
    pretty.expect_text(true, "the reconnect notice", |l| {
        l.contains("* connected to ws://")
    });
    pretty.expect_text(true, "the rejoin notice", |l| {
        l.contains("* rejoined room:lobby")
    });

    json.close_stdin();
    assert_eq!(json.finish().code, Some(0));
    pretty.interrupt();
    assert_eq!(pretty.finish().code, Some(0));
}

#[test]
fn serve_runs_the_test_server_until_interrupted() {
    let mut serve = Phx::spawn(&["serve", "--port", "0"]);
    let url = serve.expect_text(false, "the URL", |_| true);
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/socket"),
        "{url}"
    );

    let done = Phx::run(&[
        "push",
        &url,
        "room:lobby",
        "ping",
        r#"{"x":1}"#,
        "--token",
        "secret",
    ]);
    assert_eq!(done.code, Some(0), "{}", done.stderr_text());
    assert_eq!(done.json_lines()[0]["response"], json!({ "x": 1 }));
    let refused = Phx::run(&["push", &url, "room:lobby", "ping"]);
    assert_eq!(refused.code, Some(3));

    serve.interrupt();
    let done = serve.finish();
    assert_eq!(done.code, Some(0), "{}", done.stderr_text());
    assert!(
        done.stderr_text().contains("--token secret"),
        "{}",
        done.stderr_text()
    );
}

#[test]
fn serve_reports_a_port_in_use() {
    let server = server();
    let port = server.addr().port().to_string();
    let done = Phx::run(&["serve", "--port", &port]);
    assert_eq!(done.code, Some(1));
    assert!(
        done.stderr_text().contains("cannot listen on 127.0.0.1:"),
        "{}",
        done.stderr_text()
    );
}
