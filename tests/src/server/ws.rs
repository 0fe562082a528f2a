//! The server model behind a real WebSocket listener (tokio + tokio-tungstenite).
//!
//! One task owns the [`Server`]; it is the only place Phoenix behaviour lives. An accept task
//! hands each TCP connection to a connection task, which reads the upgrade request, asks the
//! model (through the owner task) whether to accept it, completes the handshake with
//! tokio-tungstenite (answering the HTTP error status when refused, and the selected
//! subprotocol when accepted), then only moves frames: inbound frames to the owner task,
//! outbound frames from an unbounded queue to the socket, written in batches (`feed` for
//! everything queued, then one `flush`). Frames are encoded once by the model and shared, not
//! copied, between connections.
//!
//! The clock is `tokio::time::Instant::now().into_std()`, so tests under paused tokio time run
//! the idle timeout and delayed replies on virtual time. Frames that reach the owner task
//! together are fed to the model before its output is polled, as frames in one TCP read reach
//! Phoenix (see "How the model maps Phoenix's processes" in the [server docs](super)).
//!
//! Outbound queues are unbounded so that one slow client never stalls the model; a test that
//! floods a client that does not read grows memory.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use phx_proto::{Frame, Payload};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};

use super::{Accepted, ConnId, ConnectRequest, Output, Refused, Server, ServerConfig, ServerStats};

/// Frames the owner task feeds to the model before polling its output.
const MAX_BATCH: usize = 256;
/// Queued outbound frames written before one flush.
const MAX_WRITE_BATCH: usize = 4096;
/// Largest upgrade request head read.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection waits for the client's close echo.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

type Call = Box<dyn FnOnce(&mut Server, Instant) + Send>;

enum Command {
    Connect {
        conn: ConnId,
        req: ConnectRequest,
        writer: mpsc::UnboundedSender<WsOut>,
        reply: oneshot::Sender<Result<Accepted, Refused>>,
    },
    Frame(ConnId, Frame),
    Keepalive(ConnId),
    Disconnected(ConnId),
    Call(Call),
    Shutdown(oneshot::Sender<()>),
}

enum WsOut {
    Frame(Frame),
    Close(u16, String),
    Abort,
}

/// The bundled test server on a real socket; see the [module docs](self).
///
/// ```no_run
/// # async fn demo() {
/// use phx_tests::server::{ServerConfig, ws::TestServer};
/// let server = TestServer::start(ServerConfig::default()).await;
/// println!("connect to {}", server.url()); // ws://127.0.0.1:PORT/socket
/// server.shutdown().await;
/// # }
/// ```
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    secure: bool,
    mount: String,
    commands: mpsc::Sender<Command>,
    owner: Option<JoinHandle<()>>,
    acceptor: JoinHandle<()>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl TestServer {
    /// Starts a server on 127.0.0.1 on a free port.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(config: ServerConfig) -> Self {
        match Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await {
            Ok(server) => server,
            Err(e) => panic!("cannot bind the test server on 127.0.0.1: {e}"),
        }
    }

    /// Starts a server on `addr`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Self> {
        Self::bind_with_tls(addr, config, None).await
    }

    /// Starts a `wss://` server on 127.0.0.1 on a free port, with the given TLS configuration
    /// (see [`crate::tls::TestCa`]). Its [`TestServer::url`] names the host `localhost`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start_tls(config: ServerConfig, tls: Arc<rustls::ServerConfig>) -> Self {
        match Self::bind_with_tls(SocketAddr::from(([127, 0, 0, 1], 0)), config, Some(tls)).await {
            Ok(server) => server,
            Err(e) => panic!("cannot bind the test server on 127.0.0.1: {e}"),
        }
    }

    /// Starts a server on `addr`, serving TLS when `tls` is given.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind_with_tls(
        addr: SocketAddr,
        config: ServerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let secure = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let addr = listener.local_addr()?;
        let mount = config
            .path
            .strip_suffix("/websocket")
            .unwrap_or(&config.path)
            .to_owned();
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(config.max_frame_size))
            .max_frame_size(Some(config.max_frame_size));
        let (commands, rx) = mpsc::channel(1024);
        let owner = tokio::spawn(own_model(Server::new(config), rx));
        let acceptor = tokio::spawn(accept_loop(listener, acceptor, commands.clone(), ws_config));
        Ok(Self {
            addr,
            secure,
            mount,
            commands,
            owner: Some(owner),
            acceptor,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The socket URL a client is configured with, such as `ws://127.0.0.1:4000/socket`
    /// (clients append `/websocket` and the params).
    pub fn url(&self) -> String {
        if self.secure {
            format!("wss://localhost:{}{}", self.addr.port(), self.mount)
        } else {
            format!("ws://{}{}", self.addr, self.mount)
        }
    }

    /// The full WebSocket URL with `query` appended, such as
    /// `ws://127.0.0.1:4000/socket/websocket?token=secret&vsn=2.0.0`.
    pub fn websocket_url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("{}/websocket", self.url())
        } else {
            format!("{}/websocket?{query}", self.url())
        }
    }

    /// Runs `f` on the model (after its pending output went out) and returns its result.
    /// Outputs `f` causes are sent right after.
    ///
    /// # Panics
    /// When the server was shut down.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Server, Instant) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |server, now| {
            let _ = tx.send(f(server, now));
        });
        if self.commands.send(Command::Call(call)).await.is_err() {
            panic!("the test server is shut down");
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => panic!("the test server is shut down"),
        }
    }

    /// Restarts the server: every connection drops without a close frame, all channel and
    /// presence state is forgotten.
    pub async fn restart(&self) {
        self.call(|s, now| s.restart(now)).await;
    }

    /// Drops every connection without a close frame. Returns how many.
    pub async fn drop_all(&self) -> usize {
        self.call(|s, _| {
            let conns = s.connections();
            for &c in &conns {
                s.drop_connection(c);
            }
            conns.len()
        })
        .await
    }

    /// Stops answering heartbeats (they still count as received data).
    pub async fn stop_heartbeat_replies(&self) {
        self.call(|s, _| s.set_answer_heartbeats(false)).await;
    }

    /// Answers heartbeats again.
    pub async fn resume_heartbeat_replies(&self) {
        self.call(|s, _| s.set_answer_heartbeats(true)).await;
    }

    /// Refuses handshakes with HTTP 503 for `duration` (tokio time).
    pub async fn refuse_connects(&self, duration: Duration) {
        self.call(move |s, now| {
            let until = now.checked_add(duration).unwrap_or(now);
            s.refuse_connects_until(until);
        })
        .await;
    }

    /// Broadcasts to every connection joined to `topic`. Returns how many it went to.
    pub async fn broadcast(&self, topic: &str, event: &str, payload: Payload) -> usize {
        let (topic, event) = (topic.to_owned(), event.to_owned());
        self.call(move |s, _| s.broadcast(&topic, &event, &payload))
            .await
    }

    /// Broadcasts the same message `count` times in one command (for floods and benchmarks).
    /// Returns how many connections each copy went to.
    pub async fn broadcast_repeated(
        &self,
        topic: &str,
        event: &str,
        payload: Payload,
        count: u64,
    ) -> usize {
        let (topic, event) = (topic.to_owned(), event.to_owned());
        self.call(move |s, _| {
            let mut reached = 0;
            for _ in 0..count {
                reached = s.broadcast(&topic, &event, &payload);
            }
            reached
        })
        .await
    }

    /// Closes every connection with 1001, as a `disconnect` broadcast does. Returns how many.
    pub async fn disconnect_all(&self) -> usize {
        self.call(|s, _| s.disconnect_all()).await
    }

    /// Crashes every channel on `topic` (`phx_error` to each joiner). Returns how many.
    pub async fn crash_channel(&self, topic: &str) -> usize {
        let topic = topic.to_owned();
        self.call(move |s, _| s.crash_channel(&topic)).await
    }

    /// Stops every channel on `topic` (`phx_close` to each joiner). Returns how many.
    pub async fn stop_channel(&self, topic: &str) -> usize {
        let topic = topic.to_owned();
        self.call(move |s, _| s.stop_channel(&topic)).await
    }

    /// Server-wide counters.
    pub async fn stats(&self) -> ServerStats {
        self.call(|s, _| s.stats()).await
    }

    /// Successful joins of `topic` so far.
    pub async fn joins(&self, topic: &str) -> u64 {
        let topic = topic.to_owned();
        self.call(move |s, _| s.joins(&topic)).await
    }

    /// Connections open now.
    pub async fn open_connections(&self) -> usize {
        self.call(|s, _| s.open_connections()).await
    }

    /// Data frames received so far, all connections.
    pub async fn frames_received(&self) -> u64 {
        self.call(|s, _| s.stats().frames_received).await
    }

    /// Closes every connection with 1012, as Phoenix's drain does when the application shuts
    /// down (PROTOCOL.md §6.5), and stops listening.
    pub async fn shutdown(mut self) {
        self.acceptor.abort();
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(owner) = self.owner.take() {
            let _ = owner.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.acceptor.abort();
        if let Some(owner) = self.owner.take() {
            owner.abort();
        }
    }
}

/// The owner task: the only code that touches the model.
async fn own_model(mut server: Server, mut rx: mpsc::Receiver<Command>) {
    let mut writers: BTreeMap<ConnId, mpsc::UnboundedSender<WsOut>> = BTreeMap::new();
    let mut shutdown = None;
    while shutdown.is_none() {
        let deadline = server.poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                shutdown = apply(&mut server, &mut writers, cmd);
                for _ in 1..MAX_BATCH {
                    if shutdown.is_some() {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(cmd) => shutdown = apply(&mut server, &mut writers, cmd),
                        Err(_) => break,
                    }
                }
            }
            () = timer => server.handle_timeout(now()),
        }
        flush(&mut server, &mut writers);
    }
    for (_, writer) in writers {
        let _ = writer.send(WsOut::Close(1012, String::new()));
    }
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

/// Applies one command; returns the shutdown acknowledgement when asked to stop.
fn apply(
    server: &mut Server,
    writers: &mut BTreeMap<ConnId, mpsc::UnboundedSender<WsOut>>,
    cmd: Command,
) -> Option<oneshot::Sender<()>> {
    match cmd {
        Command::Connect {
            conn,
            req,
            writer,
            reply,
        } => {
            let result = server.handle_connect(now(), conn, &req);
            let accepted = result.is_ok();
            if reply.send(result).is_err() {
                if accepted {
                    server.handle_disconnected(now(), conn);
                }
            } else if accepted {
                writers.insert(conn, writer);
            }
        }
        Command::Frame(conn, frame) => server.handle_frame(now(), conn, frame),
        Command::Keepalive(conn) => server.handle_keepalive(now(), conn),
        Command::Disconnected(conn) => {
            writers.remove(&conn);
            server.handle_disconnected(now(), conn);
        }
        Command::Call(f) => {
            flush(server, writers);
            f(server, now());
        }
        Command::Shutdown(done) => return Some(done),
    }
    None
}

/// Drains the model's output into the connections' queues.
fn flush(server: &mut Server, writers: &mut BTreeMap<ConnId, mpsc::UnboundedSender<WsOut>>) {
    while let Some(output) = server.poll_output() {
        match output {
            Output::Frame { conn, frame } => {
                if let Some(w) = writers.get(&conn) {
                    let _ = w.send(WsOut::Frame(frame));
                }
            }
            Output::Close { conn, code, reason } => {
                if let Some(w) = writers.remove(&conn) {
                    let _ = w.send(WsOut::Close(code, reason));
                }
            }
            Output::Abort { conn } => {
                if let Some(w) = writers.remove(&conn) {
                    let _ = w.send(WsOut::Abort);
                }
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    commands: mpsc::Sender<Command>,
    ws_config: WebSocketConfig,
) {
    let mut next = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                next += 1;
                tokio::spawn(serve_connection(
                    stream,
                    tls.clone(),
                    ConnId(next),
                    commands.clone(),
                    ws_config,
                ));
            }
            // Out of descriptors and the like: let other tasks run, then try again.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// A connection's byte stream: plain TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A stream that first replays the bytes already read from it (the request head).
struct Replay {
    head: Bytes,
    inner: Box<dyn Io>,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            let chunk = self.head.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads up to the end of the HTTP request head; `None` on EOF, error or an oversized head.
async fn read_head(stream: &mut Box<dyn Io>) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(buf);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

/// The request target, the `Sec-WebSocket-Protocol` values and the other headers of a
/// request head.
fn parse_head(head: &[u8]) -> Option<ConnectRequest> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let _method = request_line.next()?;
    let target = request_line.next()?.to_owned();
    let mut protocols: Option<String> = None;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "sec-websocket-protocol" {
            protocols = Some(match protocols {
                Some(prev) => format!("{prev},{value}"),
                None => value.to_owned(),
            });
        } else {
            headers.push((name, value.to_owned()));
        }
    }
    Some(ConnectRequest {
        target,
        protocols,
        headers,
    })
}

fn error_response(status: u16) -> ErrorResponse {
    let mut resp = ErrorResponse::new(None);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

// The callback's error type is tungstenite's `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn serve_connection(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    conn: ConnId,
    commands: mpsc::Sender<Command>,
    ws_config: WebSocketConfig,
) {
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = match tls {
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) => Box::new(tls),
            // A client that does not trust the certificate aborts the handshake.
            Err(_) => return,
        },
        None => Box::new(tcp),
    };
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let Some(req) = parse_head(&head) else {
        return;
    };
    let (writer, outbound) = mpsc::unbounded_channel();
    let (reply, decision) = oneshot::channel();
    let connect = Command::Connect {
        conn,
        req,
        writer,
        reply,
    };
    if commands.send(connect).await.is_err() {
        return;
    }
    let Ok(decision) = decision.await else {
        return;
    };
    let accepted = decision.is_ok();
    let callback = move |_: &Request, mut resp: Response| match decision {
        Ok(Accepted {
            protocol: Some(p), ..
        }) => {
            resp.headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
            Ok(resp)
        }
        Ok(_) => Ok(resp),
        Err(Refused { status }) => Err(error_response(status)),
    };
    let stream = Replay {
        head: Bytes::from(head),
        inner: stream,
    };
    match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config)).await {
        Ok(ws) => pump(ws, conn, outbound, commands).await,
        Err(_) => {
            if accepted {
                let _ = commands.send(Command::Disconnected(conn)).await;
            }
        }
    }
}

fn to_ws(frame: Frame) -> Option<WsMessage> {
    match frame {
        Frame::Text(b) => Utf8Bytes::try_from(b).ok().map(WsMessage::Text),
        Frame::Binary(b) => Some(WsMessage::Binary(b)),
    }
}

fn close_message(code: u16, reason: String) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

/// What the writer does after a batch.
enum After {
    Continue,
    Closing,
    Abort,
}

/// Moves frames between one WebSocket and the owner task until the connection ends.
async fn pump(
    ws: WebSocketStream<Replay>,
    conn: ConnId,
    mut outbound: mpsc::UnboundedReceiver<WsOut>,
    commands: mpsc::Sender<Command>,
) {
    let (mut sink, mut stream) = ws.split();
    let mut reported = false;
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let close_wait = async {
            match closing {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next() => {
                let input = match msg {
                    Some(Ok(WsMessage::Text(t))) => Command::Frame(conn, Frame::Text(Bytes::from(t))),
                    Some(Ok(WsMessage::Binary(b))) => Command::Frame(conn, Frame::Binary(b)),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Command::Keepalive(conn),
                    Some(Ok(WsMessage::Frame(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) => {
                        // tungstenite queues the echo; keep reading so it goes out.
                        closing.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_WAIT);
                        if !reported {
                            reported = true;
                            let _ = commands.send(Command::Disconnected(conn)).await;
                        }
                        continue;
                    }
                    // Frames the WebSocket layer rejects before the model sees them: too big
                    // (1009) or a text frame that is not UTF-8 (1007), as Cowboy and Bandit do.
                    Some(Err(WsError::Capacity(_))) => {
                        let _ = sink.send(close_message(1009, String::new())).await;
                        break;
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        let _ = sink.send(close_message(1007, String::new())).await;
                        break;
                    }
                    None | Some(Err(_)) => break,
                };
                if closing.is_none() && commands.send(input).await.is_err() {
                    break;
                }
            }
            out = outbound.recv(), if closing.is_none() => {
                let Some(first) = out else { break };
                match write_batch(&mut sink, first, &mut outbound).await {
                    Ok(After::Continue) => {}
                    Ok(After::Closing) => {
                        // The model already forgot this connection.
                        reported = true;
                        closing = Some(tokio::time::Instant::now() + CLOSE_WAIT);
                    }
                    Ok(After::Abort) => {
                        reported = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            () = close_wait => break,
        }
    }
    if !reported {
        let _ = commands.send(Command::Disconnected(conn)).await;
    }
}

/// Writes `first` and whatever else is queued, then flushes once.
async fn write_batch(
    sink: &mut futures::stream::SplitSink<WebSocketStream<Replay>, WsMessage>,
    first: WsOut,
    outbound: &mut mpsc::UnboundedReceiver<WsOut>,
) -> Result<After, WsError> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(out) = next.take() {
        match out {
            WsOut::Frame(frame) => {
                if let Some(msg) = to_ws(frame) {
                    sink.feed(msg).await?;
                }
            }
            WsOut::Close(code, reason) => {
                sink.send(close_message(code, reason)).await?;
                return Ok(After::Closing);
            }
            WsOut::Abort => {
                // What was queued before went out before the "crash".
                sink.flush().await?;
                return Ok(After::Abort);
            }
        }
        written += 1;
        if written < MAX_WRITE_BATCH {
            next = outbound.try_recv().ok();
        }
    }
    sink.flush().await?;
    Ok(After::Continue)
}

/// A [`TestServer`] running on a tokio runtime of its own, so any executor (async-std, smol,
/// another tokio runtime, or none) can use it. Derefs to the [`TestServer`].
#[derive(Debug)]
pub struct BackgroundServer {
    server: TestServer,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BackgroundServer {
    /// Starts a server on 127.0.0.1 on a free port, on a new one-thread tokio runtime.
    ///
    /// # Panics
    /// When no runtime can be built or no loopback port bound.
    pub fn start(config: ServerConfig) -> Self {
        Self::start_with(config, None)
    }

    /// As [`BackgroundServer::start`], serving `wss://` with `tls`.
    ///
    /// # Panics
    /// As [`BackgroundServer::start`].
    pub fn start_tls(config: ServerConfig, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(config, Some(tls))
    }

    fn start_with(config: ServerConfig, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        // Built on a thread of its own: the caller may already be inside a runtime, where
        // blocking on another one is not allowed.
        let (runtime, server) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("phx-test-server")
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot build the test server's runtime: {e}"));
            let server = runtime.block_on(async {
                match tls {
                    Some(tls) => TestServer::start_tls(config, tls).await,
                    None => TestServer::start(config).await,
                }
            });
            (runtime, server)
        })
        .join()
        .unwrap_or_else(|_| panic!("the test server failed to start"));
        Self {
            server,
            runtime: Some(runtime),
        }
    }
}

impl std::ops::Deref for BackgroundServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
