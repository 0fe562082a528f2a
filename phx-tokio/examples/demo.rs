//! The README demo: starts the bundled Phoenix-compatible test server in-process on a free
//! port, then connects, joins, pushes, receives a broadcast, survives a forced server restart
//! by rejoining, and prints what happened.
//!
//! Run: `cargo run -p phx-tokio --example demo`

use std::error::Error;
use std::time::Duration;

use futures::StreamExt;
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::TestServer;
use phx_tokio::{Event, Socket};
use serde_json::{Value, json};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let server = TestServer::start(ServerConfig::default()).await;
    println!("test server   listening on {}", server.url());

    let socket = Socket::builder(&server.url())
        .secret_param("token", "secret")
        .connect()
        .await?;
    println!("connected     {}", socket.url());
    let mut events = socket.events();

    let (room, reply) = socket
        .channel("room:lobby")
        .params(&json!({ "user": "alice" }))
        .join()
        .await?;
    println!("joined        room:lobby -> {}", text(&reply.response));

    let pong = room.push("ping", &json!({ "hello": "world" })).await?;
    println!(
        "pushed        ping -> {} {}",
        pong.status,
        text(&pong.response)
    );

    let mut messages = room.messages();
    room.cast("shout", &json!({ "body": "hi everyone" }))
        .await?;
    if let Some(Ok(msg)) = timeout(WAIT, messages.next()).await? {
        println!("broadcast     {} {}", msg.event, text(&msg.payload));
    }

    server.restart().await;
    println!("server        restarted: every connection dropped, every channel forgotten");
    loop {
        match timeout(WAIT, events.next()).await? {
            Some(Ok(Event::Disconnected {
                reason,
                reconnect_delay,
                ..
            })) => match reconnect_delay {
                Some(d) => println!("disconnected  {reason}; reconnecting in {d:?}"),
                None => println!("disconnected  {reason}"),
            },
            Some(Ok(Event::Connected { .. })) => println!("reconnected"),
            Some(Ok(Event::Joined { rejoin: true, .. })) => {
                println!("rejoined      room:lobby");
                break;
            }
            Some(_) => {}
            None => return Err("event stream ended".into()),
        }
    }
    let pong = room.push("ping", &json!({ "after": "restart" })).await?;
    println!(
        "pushed        ping -> {} {}",
        pong.status,
        text(&pong.response)
    );

    room.leave().await?;
    socket.disconnect().await?;
    println!("left and disconnected cleanly");
    server.shutdown().await;
    Ok(())
}

fn text(payload: &phx_tokio::Payload) -> String {
    payload
        .decode::<Value>()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| format!("<{} binary bytes>", payload.as_bytes().len()))
}
