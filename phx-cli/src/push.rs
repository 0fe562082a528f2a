//! `phx push`: one push, its reply, and an exit code that says how it went.

use std::time::Instant;

use phx_tokio::{Payload, PushError};

use crate::args::PushArgs;
use crate::connect::{self, Session};
use crate::error::{self, Failure};
use crate::format::{self, Json};
use crate::output::Out;

/// Runs `phx push`.
pub(crate) async fn run(args: PushArgs) -> Result<(), Failure> {
    let out = Out::new(&args.output);
    let target = &args.target;
    let topic = target.topic.as_str();
    let event = args.event.as_str();
    let payload = args
        .json
        .as_ref()
        .map_or_else(Payload::empty, Json::payload);
    let Session {
        socket, channel, ..
    } = connect::join(target, false).await?;
    let start = Instant::now();
    let result = channel.push_payload(event, payload, None).await;
    let latency = start.elapsed();
    let _ = channel.leave().await;
    let _ = socket.disconnect().await;
    match result {
        Ok(reply) => {
            out.reply(None, topic, event, &reply, latency);
            Ok(())
        }
        Err(PushError::Rejected(reply)) => {
            out.reply(None, topic, event, &reply, latency);
            Err(Failure::new(
                error::FAILED,
                format!(
                    "the server answered {event} with status {:?}: {}",
                    reply.status.as_str(),
                    format::payload_text(&reply.response)
                ),
            ))
        }
        Err(PushError::Refused(e)) => Err(Failure::new(
            error::USAGE,
            format!("cannot push {event}: {e}"),
        )),
        Err(e) => {
            let text = connect::push_error_text(&e, target.timeout);
            out.push_error(None, topic, event, &text, latency);
            let hint = if matches!(e, PushError::Timeout) {
                ": the server is slow or does not reply to this event (--timeout sets the wait)"
            } else {
                ""
            };
            Err(Failure::new(
                error::FAILED,
                format!("{event}: {text}{hint}"),
            ))
        }
    }
}
