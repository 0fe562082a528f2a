//! The README demo, written once for every runtime: `cargo run -p phx-tokio --example demo`
//! and `cargo run -p phx-async-std --example demo` both run [`run`] against the bundled server.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use phx_client::{Event, Payload, Runtime, Socket};
use serde_json::{Value, json};

use crate::server::ServerConfig;
use crate::server::ws::TestServer;

/// The server configuration the demo uses: the recorded Phoenix test server, with one socket id
/// per connection (so presence shows each connection as its own user).
pub fn server_config() -> ServerConfig {
    ServerConfig {
        socket_id: crate::server::SocketIdMode::PerConnection,
        ..ServerConfig::default()
    }
}

async fn within<R: Runtime + Default, F: Future>(f: F) -> Result<F::Output, Box<dyn Error>> {
    let rt = R::default();
    let deadline = rt.now() + Duration::from_secs(5);
    futures::select_biased! {
        out = f.fuse() => Ok(out),
        () = rt.sleep_until(deadline).fuse() => Err("the demo timed out".into()),
    }
}

fn text(payload: &Payload) -> String {
    payload
        .decode::<Value>()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| format!("<{} binary bytes>", payload.as_bytes().len()))
}

/// Connects, joins, pushes, receives a broadcast and a presence list, survives a forced server
/// restart by rejoining, and prints each step.
///
/// # Errors
/// Any step that fails or takes longer than 5 s.
pub async fn run<R: Runtime + Default>(server: &TestServer) -> Result<(), Box<dyn Error>> {
    println!("test server   listening on {}", server.url());
    let socket = Socket::<R>::builder(&server.url())
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
    match within::<R, _>(messages.next()).await? {
        Some(Ok(msg)) => println!("broadcast     {} {}", msg.event, text(&msg.payload)),
        Some(Err(lagged)) => return Err(lagged.into()),
        None => return Err("the channel ended before the broadcast".into()),
    }

    let (presence_channel, _) = socket
        .channel("presence:lobby")
        .params(&json!({ "user": "alice" }))
        .presence()
        .join()
        .await?;
    let bob = Socket::<R>::builder(&server.url())
        .secret_param("token", "secret")
        .connect()
        .await?;
    let (_bob_presence, _) = bob
        .channel("presence:lobby")
        .params(&json!({ "user": "bob" }))
        .join()
        .await?;
    let view = presence_channel.presence().ok_or("presence not tracked")?;
    let mut changes = view.changes();
    let mut online = Vec::new();
    while online.len() < 2 {
        online = view.list_by(|user, _| user.to_owned()).await?;
        if online.len() < 2 {
            within::<R, _>(changes.next()).await?;
        }
    }
    println!("presence      online: {}", online.join(", "));

    server.restart().await;
    println!("server        restarted: every connection dropped, every channel forgotten");
    let mut rejoined = 0;
    while rejoined < 2 {
        match within::<R, _>(events.next()).await? {
            Some(Ok(Event::Disconnected {
                reason,
                reconnect_delay,
                ..
            })) => match reconnect_delay {
                Some(d) => println!("disconnected  {reason}; reconnecting in {d:?}"),
                None => println!("disconnected  {reason}"),
            },
            Some(Ok(Event::Connected { .. })) => println!("reconnected"),
            Some(Ok(Event::Joined { rejoin: true, .. })) => rejoined += 1,
            Some(_) => {}
            None => return Err("event stream ended".into()),
        }
    }
    println!("rejoined      room:lobby, presence:lobby");
    let pong = room.push("ping", &json!({ "after": "restart" })).await?;
    println!(
        "pushed        ping -> {} {}",
        pong.status,
        text(&pong.response)
    );

    room.leave().await?;
    socket.disconnect().await?;
    bob.disconnect().await?;
    println!("left and disconnected cleanly");
    Ok(())
}
