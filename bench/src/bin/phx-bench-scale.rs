//! Scale workloads, run by `phx-bench` as a child process, with a counting allocator (kept out
//! of the throughput and latency workers, whose allocations it would slow down):
//!
//! - `channels URL N`: join N channels on one phx-tokio socket; the time, and the client heap
//!   per joined channel (channel handles held, as an application would).
//! - `sockets URL N READ_BUFFER`: N phx-tokio sockets with one joined channel each; RSS and
//!   heap per socket, with the WebSocket read buffer set to READ_BUFFER bytes (0: phx's
//!   default).

use std::alloc::System;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use phx_bench::{print_result, rss_bytes, workers::TOPIC};
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn net_heap(region: &Region<'_, System>) -> i64 {
    let c = region.change();
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

async fn channels(url: &str, n: usize) -> Result<Value, Error> {
    let socket = phx_tokio::Socket::builder(url).connect().await?;
    // One channel first, so one-off costs (the driver's maps, first allocations) are not
    // charged to the channels measured.
    let (first, _) = socket.channel(TOPIC).join().await?;
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    let mut joins: FuturesUnordered<_> = (1..=n)
        .map(|i| socket.channel(format!("bench:{i}")).join())
        .collect();
    let mut handles = Vec::with_capacity(n);
    while let Some(joined) = joins.next().await {
        handles.push(joined?.0);
    }
    let secs = start.elapsed().as_secs_f64();
    drop(joins);
    // Let the driver finish whatever the last replies left behind.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let heap = net_heap(&region);
    let result = json!({
        "channels": handles.len(),
        "secs": secs,
        "heap_per_channel": heap as f64 / n as f64,
    });
    drop(first);
    Ok(result)
}

async fn sockets(url: &str, n: usize, read_buffer: usize) -> Result<Value, Error> {
    let builder = || {
        let b = phx_tokio::Socket::builder(url);
        if read_buffer > 0 {
            b.websocket_config(phx_tokio::WsConfig::default().read_buffer_size(read_buffer))
        } else {
            b
        }
    };
    // Warm up the runtime and the allocator with one socket, not counted.
    let warm = builder().connect().await?;
    let (warm_ch, _) = warm.channel(TOPIC).join().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = rss_bytes();
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    let mut open = Vec::with_capacity(n);
    let mut pending = FuturesUnordered::new();
    let mut started = 0;
    while open.len() < n {
        while started < n && pending.len() < 256 {
            let b = builder();
            pending.push(async move {
                let socket = b.connect().await?;
                let (ch, _) = socket.channel(TOPIC).join().await?;
                Ok::<_, Error>((socket, ch))
            });
            started += 1;
        }
        open.push(pending.next().await.ok_or("nothing pending")??);
    }
    let secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heap = net_heap(&region);
    let rss = rss_bytes().saturating_sub(rss_before);
    let result = json!({
        "sockets": open.len(),
        "secs": secs,
        "rss_per_socket": rss as f64 / n as f64,
        "heap_per_socket": heap as f64 / n as f64,
        "read_buffer": read_buffer,
    });
    drop((warm, warm_ch));
    Ok(result)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: phx-bench-scale channels URL N | sockets URL N READ_BUFFER";
    if args.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let n: usize = args[3].parse().unwrap_or(10_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt.block_on(async {
        match args[1].as_str() {
            "channels" => channels(&args[2], n).await,
            "sockets" => {
                let read_buffer = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
                sockets(&args[2], n, read_buffer).await
            }
            _ => Err(usage.into()),
        }
    });
    print_result(result);
    // Closing thousands of sockets one by one is not part of the measurement.
    std::process::exit(0);
}
