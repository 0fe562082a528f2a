//! Connecting and joining, with errors that say what to fix.

use phx_tokio::proto::{Config, V1Json};
use phx_tokio::{
    Channel, ConnectError, Events, JoinError, Payload, PushError, PushFailure, Socket,
};
use serde_json::{Map, Value};

use crate::args::{Target, Vsn};
use crate::error::{self, Failure};
use crate::format;

/// The socket of `target`, connected; the first attempt must succeed.
pub(crate) async fn connect(target: &Target) -> Result<Socket, Failure> {
    let mut builder = Socket::builder(&target.url)
        .timeout(target.timeout)
        .connect_timeout(target.timeout);
    for (key, value) in &target.params {
        builder = builder.secret_param(key, value);
    }
    if let Some(token) = &target.token {
        builder = builder.auth_token(token);
    }
    if target.vsn == Vsn::V1 {
        builder = builder.serializer(V1Json);
    }
    builder
        .connect()
        .await
        .map_err(|e| connect_failure(target, &e))
}

/// The URL as phx shows it: every param value redacted.
fn shown_url(target: &Target) -> String {
    let mut config = match Config::builder(&target.url) {
        Ok(c) => c,
        Err(_) => return target.url.split('?').next().unwrap_or_default().to_owned(),
    };
    for (key, value) in &target.params {
        config = config.secret_param(key, value);
    }
    if target.vsn == Vsn::V1 {
        config = config.serializer(V1Json);
    }
    match config.build() {
        Ok(c) => c.redacted_url(),
        Err(_) => target.url.split('?').next().unwrap_or_default().to_owned(),
    }
}

/// What a failed first connection means for the user.
fn connect_failure(target: &Target, e: &ConnectError) -> Failure {
    let url = shown_url(target);
    let timeout = format::duration(target.timeout);
    match e {
        ConnectError::Config(e) => Failure::new(error::USAGE, e.to_string()),
        ConnectError::Refused { status: 403 } => Failure::new(
            error::CONNECT,
            "the server refused the connection (HTTP 403): check --param token=… or --token",
        ),
        ConnectError::Refused { status: 404 } => Failure::new(
            error::CONNECT,
            format!(
                "the server refused the connection (HTTP 404): there is no socket at {url}; \
                 check the URL's path (Phoenix sockets are usually at /socket)"
            ),
        ),
        ConnectError::Refused { status } => Failure::new(
            error::CONNECT,
            format!("the server refused the connection (HTTP {status})"),
        ),
        ConnectError::Tls(e) => Failure::new(error::CONNECT, format!("TLS failed for {url}: {e}")),
        ConnectError::Timeout => Failure::new(
            error::CONNECT,
            format!("no connection to {url} within {timeout}: is the address right? (--timeout)"),
        ),
        ConnectError::Closed { code } => Failure::new(
            error::CONNECT,
            format!("the server closed the connection at once (close code {code})"),
        ),
        ConnectError::Transport(e) => Failure::new(
            error::CONNECT,
            format!(
                "could not connect to {url}: {e}: check the host and port, and that the server \
                 is running"
            ),
        ),
        other => Failure::new(error::CONNECT, other.to_string()),
    }
}

/// The join payload: `--payload` (or `{}`) with the `--join-param` fields added.
///
/// # Errors
/// A usage failure when `--join-param` is given with a `--payload` that is not an object.
pub(crate) fn join_payload(target: &Target) -> Result<Payload, Failure> {
    if target.join_params.is_empty() {
        return Ok(target
            .payload
            .as_ref()
            .map_or_else(Payload::empty, format::Json::payload));
    }
    let mut object = match &target.payload {
        None => Map::new(),
        Some(json) => match serde_json::from_str::<Value>(json.as_str()) {
            Ok(Value::Object(object)) => object,
            _ => {
                return Err(Failure::new(
                    error::USAGE,
                    "--join-param adds fields to the join payload, so --payload must be a JSON \
                     object",
                ));
            }
        },
    };
    for (key, value) in &target.join_params {
        object.insert(key.clone(), Value::from(value.as_str()));
    }
    Payload::json(&Value::Object(object)).map_err(|e| Failure::new(error::USAGE, e.to_string()))
}

/// What a failed join means for the user.
pub(crate) fn join_failure(target: &Target, e: &JoinError) -> Failure {
    let topic = &target.topic;
    match e {
        JoinError::Rejected(reply) => {
            let reason = reply
                .decode::<Value>()
                .ok()
                .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned));
            if reason.as_deref() == Some("unmatched topic") {
                Failure::new(
                    error::JOIN,
                    format!("the server has no channel for topic {topic:?}"),
                )
            } else {
                let hint = if target.payload.is_none() && target.join_params.is_empty() {
                    "; no join params were sent: does the topic need --join-param KEY=VALUE or \
                     --payload JSON?"
                } else {
                    ""
                };
                Failure::new(
                    error::JOIN,
                    format!(
                        "the server refused to join {topic} ({}): {}{hint}",
                        reply.status,
                        format::payload_text(&reply.response)
                    ),
                )
            }
        }
        JoinError::Timeout => Failure::new(
            error::JOIN,
            format!(
                "no reply to the join of {topic} within {} (--timeout)",
                format::duration(target.timeout)
            ),
        ),
        JoinError::Invalid(e) => Failure::new(error::USAGE, format!("cannot join {topic}: {e}")),
        JoinError::Serialize(e) => {
            Failure::new(error::USAGE, format!("cannot encode the join payload: {e}"))
        }
        JoinError::Closed => Failure::new(
            error::JOIN,
            format!("the connection closed before {topic} was joined"),
        ),
        other => Failure::new(error::FAILED, other.to_string()),
    }
}

/// A joined session: the socket, its events from before the join, the channel and the join
/// response.
pub(crate) struct Session {
    /// The socket.
    pub(crate) socket: Socket,
    /// The socket's events, subscribed before the join.
    pub(crate) events: Events,
    /// The joined channel.
    pub(crate) channel: Channel,
    /// The server's join response.
    pub(crate) response: Payload,
}

/// Connects and joins `target`'s topic, presence-tracked when `presence` is set.
pub(crate) async fn join(target: &Target, presence: bool) -> Result<Session, Failure> {
    let payload = join_payload(target)?;
    let socket = connect(target).await?;
    let events = socket.events();
    let mut builder = socket
        .channel(target.topic.as_str())
        .payload(payload)
        .timeout(target.timeout);
    if presence {
        builder = builder.presence();
    }
    match builder.join().await {
        Ok((channel, reply)) => Ok(Session {
            socket,
            events,
            channel,
            response: reply.response,
        }),
        Err(e) => {
            let _ = socket.disconnect().await;
            Err(join_failure(target, &e))
        }
    }
}

/// A push that got no `ok` reply, for humans.
pub(crate) fn push_error_text(e: &PushError, timeout: std::time::Duration) -> String {
    match e {
        PushError::Rejected(reply) => format!(
            "the server replied {}: {}",
            reply.status,
            format::payload_text(&reply.response)
        ),
        PushError::Timeout => format!("no reply within {}", format::duration(timeout)),
        PushError::Failed(PushFailure::ChannelErrored) => {
            "the channel crashed on the server before replying".to_owned()
        }
        PushError::Failed(PushFailure::ChannelClosed) => {
            "the server closed the channel before replying".to_owned()
        }
        PushError::Failed(PushFailure::ConnectionLost) => {
            "the connection dropped before the reply arrived; the server may or may not have \
             handled the push"
                .to_owned()
        }
        PushError::Failed(other) => format!("the push failed: {other:?}"),
        other => other.to_string(),
    }
}
