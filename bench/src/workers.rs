//! The client side of every workload. Each runs in a child process of the orchestrator and
//! returns its figures as JSON (printed as one `RESULT {…}` line).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use phx_client::{Lagged, Runtime, Socket};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::envelope;

/// The topic every workload joins (and floods).
pub const TOPIC: &str = "bench:0";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a workload reports: its figures, or why it failed.
pub type Outcome = Result<Value, Error>;

/// Receive-throughput figures.
fn recv_result(frames: u64, lagged: u64, bytes: u64, secs: f64) -> Value {
    json!({ "frames": frames, "lagged": lagged, "bytes": bytes, "secs": secs })
}

fn flood_request(n: u64, binary: bool) -> Value {
    json!({ "n": n, "binary": binary })
}

/// (a) and (a'): a raw tokio-tungstenite read loop; with `decode`, plus the cheapest correct
/// envelope decode of every frame.
pub async fn raw_recv(url: &str, n: u64, binary: bool, decode: bool) -> Result<Value, Error> {
    let url = format!("{url}/websocket?vsn=2.0.0");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    ws.send(WsMessage::text(format!(
        r#"["1","1","{TOPIC}","phx_join",{{}}]"#
    )))
    .await?;
    ws.next().await.ok_or("closed before the join reply")??;
    let request = format!(
        r#"["1","2","{TOPIC}","flood",{}]"#,
        flood_request(n, binary)
    );
    let start = Instant::now();
    ws.send(WsMessage::text(request)).await?;
    // The flood's reply comes first, then n broadcasts.
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut seen = 0u64;
    while frames < n {
        let msg = ws.next().await.ok_or("closed during the flood")??;
        seen += 1;
        if !decode {
            if seen > 1 {
                frames += 1;
                bytes += msg.len() as u64;
            }
            continue;
        }
        let env = match &msg {
            WsMessage::Text(t) => envelope::decode_text(t.as_str()),
            WsMessage::Binary(b) => envelope::decode_binary(b),
            _ => None,
        };
        if let Some(env) = env
            && env.topic == TOPIC
            && env.event == crate::server::FLOOD_EVENT
        {
            frames += 1;
            bytes += env.payload.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(recv_result(frames, 0, bytes, secs))
}

/// (b) and (c): a phx client on runtime `R`, reading the channel's message stream as a user
/// would. With `channels > 1`, that many channels are joined first (routing cost).
pub async fn phx_recv<R: Runtime + Default>(
    url: &str,
    n: u64,
    binary: bool,
    channels: usize,
) -> Result<Value, Error> {
    let mut builder = Socket::<R>::builder(url);
    // For experiments only: the bench itself measures phx's defaults.
    if let Some(n) = std::env::var("PHX_BENCH_READ_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder =
            builder.websocket_config(phx_client::WebSocketConfig::default().read_buffer_size(n));
    }
    let socket = builder.connect().await?;
    let mut others = Vec::new();
    for i in 1..channels {
        let (ch, _) = socket.channel(format!("bench:{i}")).join().await?;
        others.push(ch);
    }
    let (channel, _) = socket.channel(TOPIC).join().await?;
    let mut messages = channel.messages();
    let start = Instant::now();
    channel.cast("flood", &flood_request(n, binary)).await?;
    let (mut frames, mut lagged, mut bytes) = (0u64, 0u64, 0u64);
    while frames + lagged < n {
        match messages.next().await {
            Some(Ok(msg)) => {
                frames += 1;
                bytes += msg.payload.as_bytes().len() as u64;
            }
            Some(Err(Lagged(k))) => lagged += k,
            None => return Err("the message stream ended".into()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(others);
    Ok(recv_result(frames, lagged, bytes, secs))
}

/// Latency figures in microseconds from round-trip times.
fn latency_result(mut rtts: Vec<Duration>, secs: f64) -> Value {
    rtts.sort_unstable();
    let pick = |q: f64| {
        let i = ((rtts.len() as f64 * q).ceil() as usize).clamp(1, rtts.len()) - 1;
        rtts[i].as_secs_f64() * 1e6
    };
    json!({
        "count": rtts.len(),
        "p50_us": pick(0.50),
        "p99_us": pick(0.99),
        "p999_us": pick(0.999),
        "secs": secs,
    })
}

/// The ping payload every latency workload sends.
#[derive(serde::Serialize)]
struct Ping {
    n: u64,
}

/// Push → reply round trips on a phx client: sequential (`inflight == 1`) or with `inflight`
/// pushes outstanding.
pub async fn phx_latency<R: Runtime + Default>(
    url: &str,
    n: u64,
    inflight: usize,
) -> Result<Value, Error> {
    let socket = Socket::<R>::builder(url).connect().await?;
    let (channel, _) = socket.channel(TOPIC).join().await?;
    // Warm up.
    for i in 0..100 {
        channel.push("ping", &Ping { n: i }).await?;
    }
    let mut rtts = Vec::with_capacity(n as usize);
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut sent = 0u64;
    while rtts.len() < n as usize {
        while sent < n && pending.len() < inflight {
            let ch = channel.clone();
            let i = sent;
            pending.push(async move {
                let t = Instant::now();
                ch.push("ping", &Ping { n: i }).await.map(|_| t.elapsed())
            });
            sent += 1;
        }
        let rtt = pending.next().await.ok_or("no push pending")??;
        rtts.push(rtt);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(latency_result(rtts, secs))
}

/// The raw WebSocket echo baseline: the same frame a phx push sends, echoed by the server's
/// `/echo` endpoint, sequential or with `inflight` frames outstanding.
pub async fn raw_echo_latency(url: &str, n: u64, inflight: usize) -> Result<Value, Error> {
    let (ws, _) = tokio_tungstenite::connect_async(echo_url(url).as_str()).await?;
    echo_rounds(ws, n, inflight).await
}

/// The same echo on async-std (async-tungstenite over async-std's TCP): the floor for
/// phx-async-std, whose runtime pays more per wake-up than tokio's.
pub async fn raw_echo_latency_async_std(
    url: &str,
    n: u64,
    inflight: usize,
) -> Result<Value, Error> {
    let url = echo_url(url);
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or("the echo needs a ws:// URL")?;
    let tcp = async_std::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = async_tungstenite::client_async(url.as_str(), tcp).await?;
    echo_rounds(ws, n, inflight).await
}

fn echo_url(socket_url: &str) -> String {
    format!("{}/echo", socket_url.trim_end_matches("/socket"))
}

/// `n` echoes with `inflight` outstanding, after 100 to warm up.
async fn echo_rounds<S>(mut ws: S, n: u64, inflight: usize) -> Result<Value, Error>
where
    S: futures::Sink<WsMessage, Error = tungstenite::Error>
        + futures::Stream<Item = Result<WsMessage, tungstenite::Error>>
        + Unpin,
{
    let frame = |i: u64| WsMessage::text(format!(r#"["1","{i}","{TOPIC}","ping",{{"n":{i}}}]"#));
    for i in 0..100 {
        ws.send(frame(i)).await?;
        ws.next().await.ok_or("closed")??;
    }
    let mut rtts = Vec::with_capacity(n as usize);
    let mut sent_at = VecDeque::with_capacity(inflight);
    let start = Instant::now();
    let mut sent = 0u64;
    while rtts.len() < n as usize {
        while sent < n && sent_at.len() < inflight {
            ws.feed(frame(sent)).await?;
            sent_at.push_back(Instant::now());
            sent += 1;
        }
        ws.flush().await?;
        ws.next().await.ok_or("closed")??;
        let t = sent_at.pop_front().ok_or("an echo nobody sent")?;
        rtts.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(latency_result(rtts, secs))
}
