//! The bundled test server over a real WebSocket, driven by a plain tokio-tungstenite client.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use phx_proto::Payload;
use phx_tests::server::ws::TestServer;
use phx_tests::server::{ServerConfig, encode_base64};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(server: &TestServer, query: &str) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(server.websocket_url(query))
        .await
        .expect("handshake accepted");
    assert_eq!(resp.status(), 101);
    ws
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The next data or close message.
async fn recv(ws: &mut Ws) -> Message {
    recv_within(ws, WAIT).await
}

/// The next data or close message, waiting at most `wait` (tokio time).
async fn recv_within(ws: &mut Ws, wait: Duration) -> Message {
    loop {
        let msg = tokio::time::timeout(wait, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no transport error");
        if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
            return msg;
        }
    }
}

async fn recv_text(ws: &mut Ws) -> String {
    text(recv(ws).await)
}

fn text(msg: Message) -> String {
    match msg {
        Message::Text(t) => t.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn join_ping_heartbeat_and_broadcast_over_a_real_socket() {
    let server = TestServer::start(ServerConfig::default()).await;
    assert!(server.url().starts_with("ws://127.0.0.1:"));
    assert!(server.url().ends_with("/socket"));
    let mut ws = connect(&server, "token=secret&vsn=2.0.0").await;
    send(
        &mut ws,
        r#"["1","1","room:lobby","phx_join",{"user":"alice"}]"#,
    )
    .await;
    assert_eq!(
        recv_text(&mut ws).await,
        r#"["1","1","room:lobby","phx_reply",{"response":{"joined":"room:lobby","params":{"user":"alice"}},"status":"ok"}]"#
    );
    send(&mut ws, r#"["1","2","room:lobby","ping",{"n":1}]"#).await;
    assert_eq!(
        recv_text(&mut ws).await,
        r#"["1","2","room:lobby","phx_reply",{"response":{"n":1},"status":"ok"}]"#
    );
    send(&mut ws, r#"[null,"3","phoenix","heartbeat",{}]"#).await;
    assert_eq!(
        recv_text(&mut ws).await,
        r#"[null,"3","phoenix","phx_reply",{"response":{},"status":"ok"}]"#
    );
    let reached = server
        .broadcast(
            "room:lobby",
            "news",
            Payload::from_json(r#"{"x":1}"#).unwrap(),
        )
        .await;
    assert_eq!(reached, 1);
    assert_eq!(
        recv_text(&mut ws).await,
        r#"[null,null,"room:lobby","news",{"x":1}]"#
    );
    assert_eq!(server.joins("room:lobby").await, 1);
    assert_eq!(server.frames_received().await, 3);
    assert_eq!(server.open_connections().await, 1);
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    // The server saw the close.
    for _ in 0..100 {
        if server.open_connections().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.open_connections().await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_handshake_is_an_http_403() {
    let server = TestServer::start(ServerConfig::default()).await;
    let err = tokio_tungstenite::connect_async(server.websocket_url("token=wrong&vsn=2.0.0"))
        .await
        .expect_err("refused");
    match err {
        WsError::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    let err = tokio_tungstenite::connect_async(server.websocket_url("token=secret&vsn=2.1.0"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, WsError::Http(ref r) if r.status() == 403),
        "{err:?}"
    );
    assert_eq!(server.stats().await.connections_refused, 2);
    // The listener is still fine.
    let _ws = connect(&server, "token=secret").await;
}

#[tokio::test]
async fn refuse_connects_answers_503_for_a_while() {
    let server = TestServer::start(ServerConfig::default()).await;
    server.refuse_connects(Duration::from_secs(3600)).await;
    let err = tokio_tungstenite::connect_async(server.websocket_url("token=secret"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, WsError::Http(ref r) if r.status() == 503),
        "{err:?}"
    );
    server.call(|s, now| s.refuse_connects_until(now)).await;
    connect(&server, "token=secret").await;
}

#[tokio::test]
async fn the_auth_token_travels_in_the_subprotocol_header() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut req = server
        .websocket_url("vsn=2.0.0")
        .into_client_request()
        .unwrap();
    let offer = format!("phoenix, base64url.bearer.phx.{}", encode_base64(b"secret"));
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&offer).unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("accepted");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("phoenix")
    );
    send(&mut ws, r#"["1","1","room:a","phx_join",{}]"#).await;
    assert!(recv_text(&mut ws).await.contains(r#""status":"ok""#));
}

#[tokio::test]
async fn binary_frames_round_trip_end_to_end() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut ws = connect(&server, "token=secret&vsn=2.0.0").await;
    send(&mut ws, r#"["5","5","room:bin","phx_join",{}]"#).await;
    recv_text(&mut ws).await;
    // The binary `bin` push of v2_binary.txt, answered with a binary reply.
    ws.send(Message::binary(hex(
        "00010108033536726f6f6d3a62696e62696e01020300fffe",
    )))
    .await
    .unwrap();
    assert_eq!(
        recv(&mut ws).await,
        Message::Binary(Bytes::from(hex(
            "01010108023536726f6f6d3a62696e6f6b01020300fffe"
        )))
    );
    // A binary broadcast reaches every subscriber as kind 2.
    let mut other = connect(&server, "token=secret&vsn=2.0.0").await;
    send(&mut other, r#"["1","1","room:bin","phx_join",{}]"#).await;
    recv_text(&mut other).await;
    ws.send(Message::binary(hex(
        "00010108093539726f6f6d3a62696e62696e5f73686f7574deadbeef",
    )))
    .await
    .unwrap();
    let kind2 = Message::Binary(Bytes::from(hex(
        "020809726f6f6d3a62696e62696e5f73686f7574deadbeef",
    )));
    assert_eq!(recv(&mut ws).await, kind2);
    assert_eq!(
        recv_text(&mut ws).await,
        r#"["5","9","room:bin","phx_reply",{"response":{},"status":"ok"}]"#
    );
    assert_eq!(recv(&mut other).await, kind2);
}

#[tokio::test]
async fn server_closes_and_drops_reach_the_client() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut a = connect(&server, "token=secret&vsn=2.0.0").await;
    let mut b = connect(&server, "token=secret&vsn=2.0.0").await;
    send(&mut a, r#"["1","1","room:a","phx_join",{}]"#).await;
    recv_text(&mut a).await;
    assert_eq!(server.open_connections().await, 2);
    // `disconnect_me` closes every connection of the shared socket id with 1001.
    send(&mut a, r#"["1","2","room:a","disconnect_me",{}]"#).await;
    for ws in [&mut a, &mut b] {
        match recv(ws).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    // A restart drops connections without a close frame.
    let mut c = connect(&server, "token=secret&vsn=2.0.0").await;
    server.restart().await;
    let end = tokio::time::timeout(WAIT, c.next()).await.expect("in time");
    assert!(
        matches!(end, None | Some(Err(_))),
        "expected the stream to end without a close frame, got {end:?}"
    );
    assert_eq!(server.open_connections().await, 0);
    // Shutting down closes with 1012, as Phoenix's drain does.
    let mut d = connect(&server, "token=secret&vsn=2.0.0").await;
    server.shutdown().await;
    match recv(&mut d).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected close 1012, got {other:?}"),
    }
}

#[tokio::test]
async fn unanswered_heartbeats_and_malformed_frames() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut ws = connect(&server, "token=secret&vsn=2.0.0").await;
    server.stop_heartbeat_replies().await;
    send(&mut ws, r#"[null,"1","phoenix","heartbeat",{}]"#).await;
    // The frame travels through the connection task: wait until the model has it.
    while server.stats().await.heartbeats < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.resume_heartbeat_replies().await;
    send(&mut ws, r#"[null,"2","phoenix","heartbeat",{}]"#).await;
    // Only the second one is answered.
    assert!(
        recv_text(&mut ws)
            .await
            .starts_with(r#"[null,"2","phoenix","phx_reply""#)
    );
    send(&mut ws, "not json").await;
    match recv(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1011),
        other => panic!("expected close 1011, got {other:?}"),
    }
    assert_eq!(server.stats().await.malformed_frames, 1);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_delayed_replies_run_on_tokio_time() {
    // Paused time jumps to the next timer whenever the runtime idles, so waits must outlast
    // the server's timers.
    const LONG: Duration = Duration::from_secs(3600);
    let server = TestServer::start(ServerConfig::default()).await;
    let mut ws = connect(&server, "token=secret&vsn=2.0.0").await;
    send(&mut ws, r#"["1","1","room:a","phx_join",{}]"#).await;
    text(recv_within(&mut ws, LONG).await);
    let start = tokio::time::Instant::now();
    send(&mut ws, r#"["1","2","room:a","slow",{"ms":20000}]"#).await;
    assert_eq!(
        text(recv_within(&mut ws, LONG).await),
        r#"["1","2","room:a","phx_reply",{"response":{"ms":20000},"status":"ok"}]"#
    );
    assert!(start.elapsed() >= Duration::from_secs(20));
    // Nothing else is sent: the server closes after 60 s without data (Cowboy: 1000).
    match recv_within(&mut ws, LONG).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected close 1000, got {other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_secs(60));
}

#[tokio::test]
async fn a_flood_of_broadcasts_arrives_in_order() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut ws = connect(&server, "token=secret&vsn=2.0.0").await;
    send(&mut ws, r#"["1","1","room:flood","phx_join",{}]"#).await;
    recv_text(&mut ws).await;
    let n = 20_000;
    let reached = server
        .broadcast_repeated("room:flood", "tick", Payload::empty(), n)
        .await;
    assert_eq!(reached, 1);
    for _ in 0..n {
        assert_eq!(
            recv_text(&mut ws).await,
            r#"[null,null,"room:flood","tick",{}]"#
        );
    }
    send(&mut ws, r#"["1","2","room:flood","flood",{"n":3}]"#).await;
    for i in 1..=3 {
        assert_eq!(
            recv_text(&mut ws).await,
            format!(r#"["1",null,"room:flood","flood",{{"i":{i}}}]"#)
        );
    }
    assert!(
        recv_text(&mut ws)
            .await
            .contains(r#"{"response":{"n":3},"status":"ok"}"#)
    );
}
