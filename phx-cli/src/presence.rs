//! `phx presence`: a live presence list.

use futures::StreamExt;
use phx_tokio::Lagged;
use phx_tokio::proto::PresenceChange;

use crate::args::PresenceArgs;
use crate::connect::Session;
use crate::error::{self, Failure};
use crate::join::{closed, report, start};
use crate::output::Out;
use crate::signal;

/// Runs `phx presence` until Ctrl-C.
pub(crate) async fn run(args: PresenceArgs) -> Result<(), Failure> {
    let out = Out::new(&args.output);
    let target = &args.target;
    let topic = target.topic.as_str();
    let Session {
        socket,
        mut events,
        channel,
        ..
    } = start(&out, target, true).await?;
    let mut ctrl_c = signal::ctrl_c();
    let Some(view) = channel.presence() else {
        return Err(Failure::new(error::FAILED, "presence is not tracked"));
    };
    let mut changes = view.changes();
    let outcome = loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(PresenceChange::Sync)) => match view.list().await {
                    Ok(list) => out.presence(topic, &list),
                    Err(e) => break Err(Failure::new(error::FAILED, e.to_string())),
                },
                Some(Ok(PresenceChange::Join { key, current: None, .. })) => {
                    out.presence_join(&key);
                }
                Some(Ok(PresenceChange::Leave { key, current, .. })) if current.metas.is_empty() => {
                    out.presence_leave(&key);
                }
                Some(Ok(_)) => {}
                Some(Err(Lagged(n))) => out.lagged(n),
                None => break Err(closed(&out, topic)),
            },
            Some(event) = events.next() => match event {
                Ok(event) => report(&out, socket.url(), topic, channel.id(), event),
                Err(Lagged(n)) => out.lagged(n),
            },
            _ = &mut ctrl_c => break Ok(()),
        }
    };
    if outcome.is_ok() {
        let _ = channel.leave().await;
    }
    let _ = socket.disconnect().await;
    outcome
}
