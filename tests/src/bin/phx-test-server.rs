//! Runs the bundled Phoenix-compatible test server so that external clients (such as the
//! official JavaScript client under node) can talk to it.
//!
//! ```text
//! phx-test-server [--port N] [--host ADDR] [--no-idle-timeout]
//! ```
//!
//! Prints the socket URL (`ws://HOST:PORT/socket`) on its first line, then serves until
//! interrupted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use phx_tests::server::ServerConfig;
use phx_tests::server::ws::TestServer;

const USAGE: &str = "usage: phx-test-server [--port N] [--host ADDR] [--no-idle-timeout]
  --port N           TCP port (default 4000; 0 picks a free one)
  --host ADDR        address to bind (default 127.0.0.1)
  --no-idle-timeout  never close idle connections (default: 60 s, like Phoenix)";

struct Args {
    addr: SocketAddr,
    idle_timeout: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port = 4000u16;
    let mut idle_timeout = true;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let v = args.next().ok_or("--port needs a value")?;
                port = v.parse().map_err(|_| format!("bad port: {v}"))?;
            }
            "--host" => {
                let v = args.next().ok_or("--host needs a value")?;
                host = v.parse().map_err(|_| format!("bad address: {v}"))?;
            }
            "--no-idle-timeout" => idle_timeout = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(Args {
        addr: SocketAddr::new(host, port),
        idle_timeout,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let config = ServerConfig {
        idle_timeout: args
            .idle_timeout
            .then_some(ServerConfig::default().idle_timeout)
            .flatten(),
        ..ServerConfig::default()
    };
    let server = match TestServer::bind(args.addr, config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    println!("{}", server.url());
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("cannot wait for ctrl-c; stopping");
    }
    server.shutdown().await;
    ExitCode::SUCCESS
}
