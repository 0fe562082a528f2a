//! `phx`: a command-line Phoenix Channels client, built on `phx-tokio`.
//!
//! `phx join` joins a topic, prints its messages and pushes `event {json}` lines read from
//! stdin; `phx push` pushes once and exits with the outcome; `phx presence` watches a presence
//! list; `phx serve` runs the bundled Phoenix-compatible test server. Run `phx --help` for the
//! options, output formats and exit codes.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod connect;
mod error;
mod format;
mod join;
mod output;
mod presence;
mod push;
mod serve;
mod signal;
mod stdin;

use args::{Cli, Command};
use error::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("phx: cannot start the async runtime: {e}");
            return ExitCode::from(error::FAILED);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Join(a) => join::run(a).await,
            Command::Push(a) => push::run(a).await,
            Command::Presence(a) => presence::run(a).await,
            Command::Serve(a) => serve::run(a).await,
        }
    });
    // Nothing left is worth waiting for (a DNS lookup that lost the race, say).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, message }) => {
            output::error_line(&message);
            ExitCode::from(code)
        }
    }
}
