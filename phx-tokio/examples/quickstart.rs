//! The README's quick start as a program: the code a phx-tokio user writes, against the bundled
//! test server (started in-process here; point `Socket::builder` at your own endpoint instead).
//!
//! Run: `cargo run -p phx-tokio --example quickstart`

use std::time::Duration;

use futures::StreamExt;
use phx_tokio::Socket;
use serde::Deserialize;
use serde_json::json;

/// What the room broadcasts, decoded from the payload only when asked.
#[derive(Debug, Deserialize)]
struct Shout {
    body: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server =
        phx_tests::server::ws::TestServer::start(phx_tests::server::ServerConfig::default()).await;

    let socket = Socket::builder(&server.url())
        .secret_param("token", "secret") // never logged, never in Debug output
        .heartbeat(Duration::from_secs(30))
        .connect() // waits for the first connection
        .await?;
    let mut events = socket.events(); // connects, disconnects, rejoins, heartbeats...

    let (room, joined) = socket
        .channel("room:lobby")
        .params(&json!({ "user": "alice" }))
        .join()
        .await?;
    println!("joined room:lobby: {:?}", joined.response.as_json_str());

    let reply = room.push("ping", &json!({ "hello": "world" })).await?;
    println!(
        "ping -> {} {:?}",
        reply.status,
        reply.response.as_json_str()
    );

    let mut messages = room.messages();
    room.cast("shout", &json!({ "body": "hi everyone" }))
        .await?;
    if let Some(Ok(msg)) = messages.next().await {
        let shout: Shout = msg.payload.decode()?;
        println!("{}: {}", msg.event, shout.body);
    }
    if let Some(Ok(event)) = events.next().await {
        println!("first socket event: {event:?}");
    }

    room.leave().await?;
    socket.disconnect().await?;
    server.shutdown().await;
    Ok(())
}
