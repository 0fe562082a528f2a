//! The bench server: a minimal Phoenix-protocol WebSocket server for the benchmark workloads,
//! run in its own process (`phx-bench-server`) so it never competes with a client for a
//! runtime.
//!
//! Endpoints (any path): `…?vsn=2.0.0` speaks Phoenix V2; a path starting with `/echo` echoes
//! every data frame back as-is (the raw WebSocket baseline for latency).
//!
//! Phoenix events: `phx_join`, `phx_leave`, `heartbeat` and anything else are answered `ok`
//! with an empty response; `ping` is answered `ok` with its payload; `flood` with payload
//! `{"n": N, "binary": bool}` is answered `ok`, then N broadcasts (event `msg`, about 100 bytes
//! of payload) on the push's topic follow. The flood frames are encoded and WebSocket-framed
//! once, into one buffer of [`FLOOD_CHUNK`] frames, and written straight to the TCP stream, so
//! the server spends a few system calls per thousand frames.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use phx_proto::{ByteStr, Frame, Message, Payload, ServerSerializer, V2Json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Frames per pre-encoded flood buffer.
pub const FLOOD_CHUNK: usize = 1024;

/// The JSON payload of every flood broadcast: a chat-like message of about 100 bytes.
pub const FLOOD_JSON: &str = r#"{"user":"alice","body":"hello there, a benchmark message","id":12345,"ts":1795433193,"ok":true}"#;

/// The binary payload of a binary flood: 100 bytes.
pub fn flood_binary() -> Vec<u8> {
    (0..100u8).collect()
}

/// The event name of flood broadcasts.
pub const FLOOD_EVENT: &str = "msg";

/// A flood broadcast on `topic`, encoded as the V2 serializer encodes it.
pub fn flood_frame(topic: &str, binary: bool) -> Frame {
    let payload = if binary {
        Payload::binary(flood_binary())
    } else {
        Payload::from_json(FLOOD_JSON).expect("valid JSON")
    };
    V2Json
        .encode_broadcast(topic, FLOOD_EVENT, &payload)
        .expect("encodable broadcast")
}

/// Appends a server-to-client (unmasked, final) WebSocket frame.
pub fn ws_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

fn ws_frame_of(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 10);
    let opcode = if frame.is_binary() { 2 } else { 1 };
    ws_frame(&mut out, opcode, frame.as_bytes());
    out
}

/// Accepts connections until the process ends.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = connection(tcp).await;
        });
    }
}

enum Out {
    /// Framed bytes.
    Bytes(Vec<u8>),
    /// `reps` copies of `chunk`, then `tail`.
    Flood {
        chunk: Arc<Vec<u8>>,
        reps: usize,
        tail: Vec<u8>,
    },
    Close,
}

async fn connection(tcp: TcpStream) -> io::Result<()> {
    let (rd, wr) = tcp.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let path = handshake(&mut rd).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    // The 101 response goes first.
    let echo = path.starts_with("/echo");
    tokio::spawn(writer(wr, rx));
    let _ = tx.send(Out::Bytes(upgrade_response(&path)?));
    let mut frame_buf = Vec::new();
    loop {
        let Some(opcode) = read_frame(&mut rd, &mut frame_buf).await? else {
            return Ok(());
        };
        match opcode {
            1 | 2 if echo => {
                let mut out = Vec::with_capacity(frame_buf.len() + 10);
                ws_frame(&mut out, opcode, &frame_buf);
                let _ = tx.send(Out::Bytes(out));
            }
            1 => handle_text(&tx, Bytes::from(std::mem::take(&mut frame_buf))),
            2 => {}
            8 => {
                let mut out = Vec::new();
                ws_frame(&mut out, 8, &frame_buf[..frame_buf.len().min(2)]);
                let _ = tx.send(Out::Bytes(out));
                let _ = tx.send(Out::Close);
                return Ok(());
            }
            9 => {
                let mut out = Vec::new();
                ws_frame(&mut out, 10, &frame_buf);
                let _ = tx.send(Out::Bytes(out));
            }
            _ => {}
        }
    }
}

/// Reads the upgrade request; returns its request target. The key is kept in the path string
/// after a newline (see [`upgrade_response`]).
async fn handshake(rd: &mut BufReader<OwnedReadHalf>) -> io::Result<String> {
    let mut target = String::new();
    let mut key = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if target.is_empty() {
            target = l.split(' ').nth(1).unwrap_or("/").to_owned();
        } else if let Some((name, value)) = l.split_once(':')
            && name.trim().eq_ignore_ascii_case("sec-websocket-key")
        {
            key = value.trim().to_owned();
        }
    }
    if key.is_empty() {
        return Err(io::Error::other("no Sec-WebSocket-Key"));
    }
    Ok(format!("{target}\n{key}"))
}

fn upgrade_response(path_and_key: &str) -> io::Result<Vec<u8>> {
    let key = path_and_key.split('\n').nth(1).unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes())
}

/// Reads one client data or control message (reassembling fragments) into `buf`; its opcode,
/// or `None` at the end of the stream.
async fn read_frame(
    rd: &mut BufReader<OwnedReadHalf>,
    buf: &mut Vec<u8>,
) -> io::Result<Option<u8>> {
    buf.clear();
    let mut message_opcode = None;
    loop {
        let mut head = [0u8; 2];
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => rd.read_u16().await? as usize,
            127 => rd.read_u64().await? as usize,
            n => n as usize,
        };
        let mut mask = [0u8; 4];
        if masked {
            rd.read_exact(&mut mask).await?;
        }
        if opcode >= 8 {
            // A control frame may sit between the fragments of a message: answer it on its own.
            let mut control = vec![0u8; len];
            rd.read_exact(&mut control).await?;
            unmask(&mut control, mask, masked);
            if message_opcode.is_none() {
                *buf = control;
                return Ok(Some(opcode));
            }
            continue;
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        rd.read_exact(&mut buf[start..]).await?;
        unmask(&mut buf[start..], mask, masked);
        if opcode != 0 {
            message_opcode = Some(opcode);
        }
        if fin {
            return Ok(Some(message_opcode.unwrap_or(opcode)));
        }
    }
}

fn unmask(data: &mut [u8], mask: [u8; 4], masked: bool) {
    if masked {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
    }
}

async fn writer(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Bytes(b) => {
                    batch.extend_from_slice(&b);
                    next = rx.try_recv().ok();
                }
                Out::Flood { chunk, reps, tail } => {
                    if write(&mut wr, &mut batch).await.is_err() {
                        return;
                    }
                    for _ in 0..reps {
                        if wr.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    if wr.write_all(&tail).await.is_err() {
                        return;
                    }
                    next = rx.try_recv().ok();
                }
                Out::Close => {
                    let _ = write(&mut wr, &mut batch).await;
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
        if write(&mut wr, &mut batch).await.is_err() {
            return;
        }
    }
}

async fn write(wr: &mut OwnedWriteHalf, batch: &mut Vec<u8>) -> io::Result<()> {
    if !batch.is_empty() {
        wr.write_all(batch).await?;
        batch.clear();
    }
    Ok(())
}

/// What a client sent: the envelope, with refs kept as raw JSON (some clients send numbers).
struct Request {
    join_ref: Option<String>,
    ref_: Option<String>,
    topic: String,
    event: String,
    payload: Bytes,
}

fn parse_request(frame: Bytes) -> Option<Request> {
    // The fast path: the phx codec (string refs, as phoenix.js and phx send them).
    if let Ok(m) = V2Json.decode_from_client(&Frame::Text(frame.clone())) {
        let raw =
            |s: Option<ByteStr>| s.map(|s| serde_json::to_string(s.as_str()).unwrap_or_default());
        return Some(Request {
            join_ref: raw(m.join_ref),
            ref_: raw(m.ref_),
            topic: m.topic.to_string(),
            event: m.event.to_string(),
            payload: m.payload.into_bytes(),
        });
    }
    // Any JSON values as refs (phyllo sends numbers).
    let v: serde_json::Value = serde_json::from_slice(&frame).ok()?;
    let a = v.as_array().filter(|a| a.len() == 5)?;
    let raw = |v: &serde_json::Value| (!v.is_null()).then(|| v.to_string());
    Some(Request {
        join_ref: raw(&a[0]),
        ref_: raw(&a[1]),
        topic: a[2].as_str()?.to_owned(),
        event: a[3].as_str()?.to_owned(),
        payload: Bytes::from(a[4].to_string()),
    })
}

fn reply(req: &Request, response: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(response.len() + req.topic.len() + 64);
    text.push(b'[');
    text.extend_from_slice(req.join_ref.as_deref().unwrap_or("null").as_bytes());
    text.push(b',');
    text.extend_from_slice(req.ref_.as_deref().unwrap_or("null").as_bytes());
    text.push(b',');
    text.extend_from_slice(
        serde_json::to_string(&req.topic)
            .unwrap_or_default()
            .as_bytes(),
    );
    text.extend_from_slice(br#","phx_reply",{"response":"#);
    text.extend_from_slice(if response.is_empty() { b"{}" } else { response });
    text.extend_from_slice(br#","status":"ok"}]"#);
    let mut out = Vec::with_capacity(text.len() + 10);
    ws_frame(&mut out, 1, &text);
    out
}

fn handle_text(tx: &mpsc::UnboundedSender<Out>, frame: Bytes) {
    let Some(req) = parse_request(frame) else {
        return;
    };
    let payload = if req.payload.as_ref() == b"null" {
        Bytes::new()
    } else {
        req.payload.clone()
    };
    let response: &[u8] = if req.event == "ping" { &payload } else { b"{}" };
    if req.ref_.is_some() {
        let _ = tx.send(Out::Bytes(reply(&req, response)));
    }
    if req.event == "flood" {
        let spec: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        let n = spec["n"].as_u64().unwrap_or(0) as usize;
        let binary = spec["binary"].as_bool().unwrap_or(false);
        let one = ws_frame_of(&flood_frame(&req.topic, binary));
        let chunk: Vec<u8> = one.repeat(FLOOD_CHUNK.min(n.max(1)));
        let reps = n / FLOOD_CHUNK;
        let tail = one.repeat(n % FLOOD_CHUNK);
        let _ = tx.send(Out::Flood {
            chunk: Arc::new(chunk),
            reps,
            tail,
        });
    }
}

/// Builds the reply a client gets for `msg` (used by the tests to check the encoding).
pub fn encode_reply_for_test(join_ref: &str, ref_: &str, topic: &str, response: &[u8]) -> Vec<u8> {
    reply(
        &Request {
            join_ref: Some(format!("\"{join_ref}\"")),
            ref_: Some(format!("\"{ref_}\"")),
            topic: topic.to_owned(),
            event: "ping".into(),
            payload: Bytes::new(),
        },
        response,
    )
}

/// Decodes one framed server message back into a Phoenix message (for tests).
pub fn decode_framed(bytes: &[u8]) -> Option<Message> {
    let (opcode, mut i) = (bytes.first()? & 0x0f, 2);
    let len = match bytes.get(1)? & 0x7f {
        126 => {
            i += 2;
            u16::from_be_bytes([bytes[2], bytes[3]]) as usize
        }
        127 => {
            i += 8;
            u64::from_be_bytes(bytes[2..10].try_into().ok()?) as usize
        }
        n => n as usize,
    };
    let body = Bytes::copy_from_slice(bytes.get(i..i + len)?);
    let frame = if opcode == 2 {
        Frame::Binary(body)
    } else {
        Frame::Text(body)
    };
    phx_proto::Serializer::decode(&V2Json, &frame).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_frames_decode_with_the_phx_codec() {
        for binary in [false, true] {
            let framed = ws_frame_of(&flood_frame("bench:0", binary));
            let msg = decode_framed(&framed).expect("decodes");
            assert_eq!(msg.topic.as_str(), "bench:0");
            assert_eq!(msg.event.as_str(), FLOOD_EVENT);
            assert_eq!(msg.payload.is_binary(), binary);
            if binary {
                assert_eq!(msg.payload.as_bytes().as_ref(), flood_binary().as_slice());
            } else {
                assert_eq!(msg.payload.as_bytes().as_ref(), FLOOD_JSON.as_bytes());
                assert!((90..=110).contains(&FLOOD_JSON.len()));
            }
        }
    }

    #[test]
    fn replies_decode_with_the_phx_codec() {
        let framed = encode_reply_for_test("1", "2", "bench:0", br#"{"n":1}"#);
        let msg = decode_framed(&framed).expect("decodes");
        assert_eq!(msg.status.as_deref(), Some("ok"));
        assert_eq!(msg.ref_.as_deref(), Some("2"));
        assert_eq!(msg.payload.as_bytes().as_ref(), br#"{"n":1}"#);
    }

    #[test]
    fn numeric_refs_are_echoed_as_sent() {
        let req = parse_request(Bytes::from_static(br#"[0,1,"phoenix","heartbeat",null]"#))
            .expect("parses");
        assert_eq!(req.join_ref.as_deref(), Some("0"));
        assert_eq!(req.ref_.as_deref(), Some("1"));
        assert_eq!(req.event, "heartbeat");
    }
}
