//! Receive-throughput workload for the other Rust Phoenix clients on crates.io, run by
//! `phx-bench` as a child process: join `bench:0`, ask the bench server for a flood of `n`
//! broadcasts (event `msg`), count them, and print one `RESULT` line.
//!
//! Usage: `phx-bench-others <pcc|phyllo> <url> <n> <binary: 0|1>`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A run that makes no progress for this long fails.
const STALL: Duration = Duration::from_secs(10);
/// After the first message, a pause this long means the rest was dropped.
const QUIET: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: phx-bench-others <pcc|phyllo> <url> <n> <binary: 0|1>");
        std::process::exit(2);
    }
    let url = args[2].clone();
    let n: u64 = args[3].parse().expect("n");
    let binary = args[4] == "1";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async move {
        match args[1].as_str() {
            "pcc" => pcc(&url, n, binary).await,
            "phyllo" => phyllo_run(&url, n, binary).await,
            other => Err(format!("unknown client {other}")),
        }
    });
    match result {
        Ok((frames, lost, bytes, secs)) => {
            println!(
                r#"RESULT {{"frames":{frames},"bytes":{bytes},"lagged":{lost},"secs":{secs}}}"#
            )
        }
        Err(e) => {
            println!("ERROR {}", e.replace('\n', " "));
            std::process::exit(1);
        }
    }
}

fn flood_request(n: u64, binary: bool) -> Value {
    json!({ "n": n, "binary": binary })
}

/// Waits until `count` reaches `n`, or stops moving for [`QUIET`] (a client that drops
/// messages silently never reaches `n`); returns when the last message arrived.
async fn wait_for(count: &AtomicU64, n: u64) -> Result<Instant, String> {
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let c = count.load(Ordering::Relaxed);
        if c >= n {
            return Ok(Instant::now());
        }
        if c != last {
            last = c;
            last_change = Instant::now();
        } else if c > 0 && last_change.elapsed() > QUIET {
            return Ok(last_change);
        } else if last_change.elapsed() > STALL {
            return Err(format!("stalled after {c} of {n} messages"));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// phoenix_channels_client 0.1.2: callbacks registered with `Channel::on`.
async fn pcc(url: &str, n: u64, binary: bool) -> Result<(u64, u64, u64, f64), String> {
    use phoenix_channels_client::{Client, Config, Payload};
    let config = Config::new(format!("{url}/websocket").as_str()).map_err(|e| e.to_string())?;
    let mut client = Client::new(config).map_err(|e| e.to_string())?;
    client.connect().await.map_err(|e| e.to_string())?;
    let channel = client
        .join("bench:0", Some(Duration::from_secs(10)))
        .await
        .map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let (c, b) = (count.clone(), bytes.clone());
    channel
        .on("msg", move |_channel, payload: &Payload| {
            let len = match payload {
                Payload::Value(v) => v.as_object().map_or(0, |o| o.len()),
                Payload::Binary(b) => b.len(),
            };
            b.fetch_add(len as u64, Ordering::Relaxed);
            c.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    channel
        .send_noreply("flood", flood_request(n, binary))
        .await
        .map_err(|e| e.to_string())?;
    // Its broadcast queue holds 50 messages and drops the rest silently: what never arrives
    // is counted as lost.
    let end = wait_for(&count, n).await?;
    let secs = (end - start).as_secs_f64();
    let frames = count.load(Ordering::Relaxed);
    Ok((
        frames,
        n.saturating_sub(frames),
        bytes.load(Ordering::Relaxed),
        secs,
    ))
}

/// phyllo 0.3.0: a tokio broadcast receiver per channel (buffer raised to phx's 4096).
async fn phyllo_run(url: &str, n: u64, binary: bool) -> Result<(u64, u64, u64, f64), String> {
    use phyllo::channel::ChannelBuilder;
    use phyllo::message::{Event, Payload};
    use phyllo::socket::SocketBuilder;
    use tokio::sync::broadcast::error::RecvError;

    let endpoint = url::Url::parse(&format!("{url}/websocket")).map_err(|e| e.to_string())?;
    let mut socket = SocketBuilder::new(endpoint).build::<String>().await;
    let (mut channel, mut rx) = socket
        .channel::<Value, Value, Value>(
            ChannelBuilder::new("bench:0".to_string()).broadcast_buffer(4096),
        )
        .await
        .map_err(|e| e.to_string())?;
    // The join happens in the background: wait for its reply by sending a no-op push first.
    tokio::time::timeout(
        STALL,
        channel.send(Event::Event(json!("noop")), Payload::Custom(json!({}))),
    )
    .await
    .map_err(|_| "no reply to a push within 10 s".to_string())?
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut sender = channel.clone();
    tokio::spawn(async move {
        let _ = sender
            .send(
                Event::Event(json!("flood")),
                Payload::Custom(flood_request(n, binary)),
            )
            .await;
    });
    let (mut frames, mut lagged, mut bytes) = (0u64, 0u64, 0u64);
    while frames + lagged < n {
        match tokio::time::timeout(STALL, rx.recv()).await {
            // phyllo 0.3.0 only reads text frames: binary ones are dropped before decoding.
            Err(_) if binary && frames == 0 => {
                return Err("no message in 10 s: phyllo 0.3.0 ignores binary frames".into());
            }
            Err(_) => return Err(format!("stalled after {frames} of {n} messages")),
            Ok(Ok(msg)) => {
                if let Some(Payload::Custom(v)) = &msg.payload {
                    bytes += v.as_object().map_or(0, |o| o.len()) as u64;
                }
                frames += 1;
            }
            Ok(Err(RecvError::Lagged(k))) => lagged += k,
            Ok(Err(RecvError::Closed)) => return Err("channel closed".into()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((frames, lagged, bytes, secs))
}
