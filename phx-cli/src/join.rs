//! `phx join`: print a topic's messages, push what stdin says.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use phx_tokio::proto::ChannelError;
use phx_tokio::{Channel, ChannelId, Event, Lagged, PushError, Reply};
use tokio::sync::mpsc;

use crate::args::{JoinArgs, Target};
use crate::connect::{self, Session};
use crate::error::{self, Failure};
use crate::format::Json;
use crate::output::Out;
use crate::signal;
use crate::stdin;

/// Connects and joins for an interactive session (`join`, `presence`), and says so.
pub(crate) async fn start(out: &Out, target: &Target, presence: bool) -> Result<Session, Failure> {
    let session = connect::join(target, presence).await?;
    out.connected(session.socket.url());
    out.joined(target.topic.as_str(), &session.response, false);
    Ok(session)
}

/// The server ended the channel: says so, and the failure to exit with.
pub(crate) fn closed(out: &Out, topic: &str) -> Failure {
    out.closed(topic);
    Failure::new(
        error::FAILED,
        format!("the server closed the channel {topic}"),
    )
}

/// Prints what a socket event means for the session on `topic` (channel `id`).
pub(crate) fn report(out: &Out, url: &str, topic: &str, id: ChannelId, event: Event) {
    match event {
        Event::Connected { .. } => out.connected(url),
        Event::Disconnected {
            reason,
            reconnect_delay,
            ..
        } => out.disconnected(&reason.to_string(), reconnect_delay),
        Event::Joined {
            channel,
            response,
            rejoin: true,
        } if channel == id => out.joined(topic, &response, true),
        Event::ChannelErrored {
            channel,
            reason: ChannelError::Server(payload),
            ..
        } if channel == id => out.channel_error(topic, &payload),
        Event::JoinFailed {
            channel,
            status,
            response,
            retry_at: Some(_),
        } if channel == id => out.rejoin_failed(
            topic,
            &format!("{status} {}", crate::format::payload_text(&response)),
        ),
        Event::JoinTimedOut {
            channel,
            retry_at: Some(_),
        } if channel == id => out.rejoin_failed(topic, "no reply"),
        _ => {}
    }
}

/// The next stdin line; never ready once the input is gone.
async fn next_line(input: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A finished push: its id, event, outcome and latency.
struct Pushed {
    id: u64,
    event: String,
    result: Result<Reply, PushError>,
    latency: Duration,
}

/// Pushes one stdin line's event and times the reply.
async fn push(channel: Channel, id: u64, event: String, payload: Json) -> Pushed {
    let start = Instant::now();
    let result = channel.push_payload(&event, payload.payload(), None).await;
    Pushed {
        id,
        event,
        result,
        latency: start.elapsed(),
    }
}

/// Runs `phx join`.
pub(crate) async fn run(args: JoinArgs) -> Result<(), Failure> {
    let out = Out::new(&args.output);
    let target = &args.target;
    let topic = target.topic.as_str();
    let Session {
        socket,
        mut events,
        channel,
        ..
    } = start(&out, target, false).await?;
    let mut ctrl_c = signal::ctrl_c();

    let mut messages = channel.messages();
    let mut input = (!args.no_stdin).then(stdin::lines);
    let mut pending = FuturesUnordered::new();
    let mut pushes = 0u64;
    let outcome = loop {
        if !args.no_stdin && input.is_none() && pending.is_empty() {
            break Ok(());
        }
        tokio::select! {
            line = next_line(&mut input), if input.is_some() => match line {
                Some(line) => match stdin::parse(&line) {
                    Ok(Some(push_input)) => {
                        pushes += 1;
                        let stdin::Input { event, payload } = push_input;
                        pending.push(push(channel.clone(), pushes, event, payload));
                    }
                    Ok(None) => {}
                    Err(e) => out.input_error(&line, &e),
                },
                None => input = None,
            },
            Some(done) = pending.next(), if !pending.is_empty() => {
                let Pushed { id, event, result, latency } = done;
                match result {
                    Ok(reply) | Err(PushError::Rejected(reply)) => {
                        out.reply(Some(id), topic, &event, &reply, latency);
                    }
                    Err(e) => {
                        let text = connect::push_error_text(&e, target.timeout);
                        out.push_error(Some(id), topic, &event, &text, latency);
                    }
                }
            }
            message = messages.next() => match message {
                Some(Ok(message)) => out.message(topic, &message),
                Some(Err(Lagged(n))) => out.lagged(n),
                None => break Err(closed(&out, topic)),
            },
            Some(event) = events.next() => match event {
                Ok(event) => report(&out, socket.url(), topic, channel.id(), event),
                Err(Lagged(n)) => out.lagged(n),
            },
            _ = &mut ctrl_c => break Ok(()),
            else => break Ok(()),
        }
    };
    if outcome.is_ok() {
        let _ = channel.leave().await;
    }
    let _ = socket.disconnect().await;
    outcome
}
