//! Deterministic simulation testing: `phx_proto::Socket` clients, the server model and a
//! faulty network, on one virtual clock, driven by one seed.
//!
//! # What a run is
//!
//! A [`Sim`] holds one to three clients (each a [`phx_proto::Socket`] with its own settings),
//! the sans-IO Phoenix server model ([`crate::server::Server`]) and the network between them.
//! Nothing runs on its own: the harness repeatedly takes the earliest thing due (a packet
//! arriving, a client or server deadline, an operation of the workload, a fault, a check), sets
//! the clock to it and hands it to its party, then drains that party's output (frames to send,
//! events for the application) and checks the invariants. Packets due at the same instant go
//! before timers, as the driving contract asks.
//!
//! - **Clock** ([`Clock`]): `epoch + elapsed`; the epoch is the run's one real-clock read, and
//!   a run gives the same transcript from any epoch.
//! - **Network**: one link per connection attempt, each direction a FIFO with a per-link
//!   latency and per-frame jitter. Faults keep TCP's promise (frames arrive once and in order,
//!   or the connection dies): stalls delay a direction and everything behind it; a cut loses
//!   what is in flight and resets both ends; a half-open link swallows everything in both
//!   directions and tells nobody; dials can be refused or go nowhere.
//! - **Faults** ([`Fault`]), random until the heal: cuts, clean server closes (1000, 1001,
//!   1002, 1011, 1012), half-open links, stalls, refused connects (503) for a while, server
//!   restarts (every channel and presence lost), channel crashes and stops, unanswered
//!   heartbeats, `disconnect` broadcasts, and forged frames (malformed bytes, unknown topics
//!   and refs, stale join_refs, messages before the join reply).
//! - **Workload**, random until the heal: joins (with presence tracking on `presence:*`, as a
//!   `user`), leaves, pushes of every `room:*` event with and without replies (`ping`,
//!   `error_reply`, `custom_status`, `noreply`, `slow`, `shout`, `push_me`, `flood`, `bin`,
//!   `bin_push`, `broadcast_from`, `crash`, `stop`, unknown events, `disconnect_me`), presence
//!   `update`s, server broadcasts, disconnects and reconnects, param and token changes, join
//!   param updates. The application also reconnects when its socket stops by itself.
//! - **Invariants**, after every step, per client: every push ends exactly once, in time, and a
//!   reply is the server's answer to that push; nothing is delivered before the reply to the
//!   channel's current join or with a stale join_ref, and no genuine frame is lost; forged
//!   frames change nothing; frames go out only on an open connection and never with a stale
//!   join_ref; buffered pushes go out in order, exactly once, as soon as their channel joins;
//!   refs are never reused; at most one join per channel and one heartbeat are in flight;
//!   reconnect and rejoin delays follow the configured schedules and happen when announced; a
//!   half-open connection is closed within two heartbeat intervals and a dial within the
//!   connect timeout; the send buffer, pending pushes and held presence diffs stay within their
//!   limits; and the socket's own `check_invariants` holds. After the heal: every client connected with every channel it still
//!   wants joined within [`ClientParams::heal_bound`]; once settled, the server holds exactly
//!   the channels each client has joined, and every presence view equals the server's. At the
//!   end: after a disconnect nothing is pending and no timer is armed. A panic is caught and
//!   reported like any other failure.
//!
//! # Replaying
//!
//! A failure names its seed and the command that replays it with the full transcript:
//!
//! ```text
//! PHX_SIM_SEED=1234 cargo test -p phx-tests --test sim -- --nocapture
//! ```
//!
//! The same seed always gives the same transcript, byte for byte: all randomness comes from the
//! seed, nothing reads the real clock after the epoch, and nothing iterates a `HashMap`.

mod clock;
mod faults;
mod harness;
mod hostile;
mod model;
mod net;
mod options;
mod phases;
mod rng;
mod transcript;
mod workload;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

pub use clock::{Clock, Elapsed};
pub use faults::Fault;
pub use harness::{Failure, RunStats, Sim};
pub use options::{APP_RECONNECT_DELAY, Chaos, ClientParams, SimOptions, TOPICS, USERS, Workload};

/// The environment variable that selects one seed to replay (with its transcript).
pub const SEED_ENV: &str = "PHX_SIM_SEED";

/// The one-line command that replays `seed` and prints its transcript.
pub fn replay_command(seed: u64) -> String {
    format!("{SEED_ENV}={seed} cargo test -p phx-tests --test sim -- --nocapture")
}

/// The outcome of one random run.
#[derive(Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// `Ok` when every invariant held.
    pub result: Result<(), Failure>,
    /// The run's counters.
    pub stats: RunStats,
    /// Virtual time the run covered.
    pub elapsed: Duration,
    /// The transcript, when it was asked for.
    pub transcript: Option<String>,
}

/// Runs the random plan of `seed` ([`SimOptions::random`], then [`Sim::run_plan`]), catching
/// panics; keeps the transcript when `trace` is set.
pub fn run_seed(seed: u64, trace: bool) -> RunReport {
    let mut sim = Sim::new(SimOptions::random(seed).trace(trace));
    let outcome = catch_unwind(AssertUnwindSafe(|| sim.run_plan()));
    let result = match outcome {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Err(Failure {
                seed,
                elapsed: sim.elapsed(),
                message: format!("panic: {what}"),
            })
        }
    };
    RunReport {
        seed,
        result,
        stats: sim.stats(),
        elapsed: sim.elapsed(),
        transcript: sim.take_transcript(),
    }
}
