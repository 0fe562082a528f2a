//! Temporary smoke test while the conformance suite is written.
use futures::StreamExt;
use phx_tests::server::{ServerConfig, ws::TestServer};
use phx_tokio::Socket;
use serde_json::json;

#[tokio::test]
async fn join_ping_broadcast() {
    let server = TestServer::start(ServerConfig::default()).await;
    let socket = Socket::builder(&server.url())
        .secret_param("token", "secret")
        .connect()
        .await
        .unwrap();
    let (ch, reply) = socket
        .channel("room:lobby")
        .params(&json!({"user":"alice"}))
        .join()
        .await
        .unwrap();
    println!("join reply {reply:?}");
    let r = ch.push("ping", &json!({"n": 1})).await.unwrap();
    assert_eq!(
        r.response.decode::<serde_json::Value>().unwrap(),
        json!({"n": 1})
    );
    let mut msgs = ch.messages();
    ch.cast("shout", &json!({"body": "hi"})).await.unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    assert_eq!(m.event, "shout");
    let err = ch.push("error_reply", &json!({})).await.unwrap_err();
    println!("{err}");
    ch.leave().await.unwrap();
    socket.disconnect().await.unwrap();
}
