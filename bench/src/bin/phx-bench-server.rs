//! The bench server, run by `phx-bench` as a child process: prints `LISTENING <port>` and
//! serves until killed. One runtime thread: a flood is a few system calls per thousand frames.

use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("LISTENING {}", listener.local_addr()?.port());
        phx_bench::server::serve(listener).await
    })
}
