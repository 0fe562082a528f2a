//! The WebSocket connection over a runtime's byte stream: phx's frame reader
//! ([`crate::reader`]) for what arrives, tungstenite's engine for what is sent, plus dialing
//! (TLS and the upgrade handshake). Shared by every runtime: an adapter only opens the TCP
//! connection.
//!
//! tokio-tungstenite and async-tungstenite wrap tungstenite for use from any number of tasks:
//! every read registers the caller's waker in two `AtomicWaker`s (four atomic operations per
//! frame). Here one task polls at a time with the same waker (the driver's route), so the
//! stream keeps a single plain `Waker` and replaces it only when a different one polls.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Sink;
use futures::io::{AsyncRead, AsyncWrite};
use phx_proto::Frame;
use tungstenite::error::{ProtocolError, UrlError};
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::client::{ClientHandshake, Request};
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::TlsConnector;
use crate::reader::{Event, Reader, Received};
use crate::runtime::Runtime;

/// A byte stream made blocking-style for tungstenite: a call that would wait returns
/// `WouldBlock`, and the stream wakes `waker` once it can go on.
#[derive(Debug)]
struct Io<S> {
    stream: S,
    waker: Waker,
}

impl<S> Io<S> {
    /// Runs one poll of the stream with the kept waker; `Pending` becomes `WouldBlock`.
    fn poll<T>(
        &mut self,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T>
    where
        S: Unpin,
    {
        match f(
            Pin::new(&mut self.stream),
            &mut Context::from_waker(&self.waker),
        ) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + Unpin> Read for Io<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.poll(|s, cx| s.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> Write for Io<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.poll(|s, cx| s.poll_write(cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.poll(|s, cx| s.poll_flush(cx))
    }
}

/// What [`WebSocket::poll_message`] read.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A data message.
    Frame(Frame),
    /// A ping (already answered) or a pong.
    Control,
    /// The server's close frame (already answered).
    Close(Option<CloseFrame>),
}

/// An open client WebSocket over the byte stream `S`: [`WebSocket::poll_message`] reads with
/// phx's frame reader, and a [`Sink`] writes through tungstenite's engine, with the semantics
/// of tokio-tungstenite's `WebSocketStream` (ping answered, close echoed, `None` once the
/// connection has closed).
///
/// Meant for one task at a time, as the driver polls it: each poll leaves the caller's waker
/// with the stream, replacing the one before only if it would wake another task.
#[derive(Debug)]
pub(crate) struct WebSocket<S> {
    io: Io<S>,
    /// Writes: framing, masking, the write buffer, pongs and the close frame.
    context: WebSocketContext,
    reader: Reader,
    /// A pong or close reply was queued and not yet flushed.
    unflushed: bool,
    /// False after a message was queued but not yet written out (the write buffer is full).
    ready: bool,
    /// A close frame is queued; `poll_close` only flushes.
    closing: bool,
    /// The connection ended or failed; nothing more is read.
    ended: bool,
}

/// `Pending` for an IO error that means "not now".
fn would_block<T>(r: Result<T, WsError>) -> Poll<Result<T, WsError>> {
    match r {
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A connection past its handshake, `tail` the bytes that came right behind the response.
    fn open(stream: S, config: WebSocketConfig, tail: &[u8]) -> Self {
        // The engine only writes: no read buffer.
        let context = WebSocketContext::new(Role::Client, Some(config.read_buffer_size(0)));
        Self {
            io: Io {
                stream,
                waker: Waker::noop().clone(),
            },
            context,
            reader: Reader::new(&config, tail),
            unflushed: false,
            ready: true,
            closing: false,
            ended: false,
        }
    }

    /// Gives back the read buffer a burst grew (the connection is quiet).
    pub(crate) fn shrink(&mut self) {
        self.reader.shrink();
    }

    /// Reads the next message, handing a data message's payload to `keep` for the bytes to
    /// deliver. `None` once the connection has closed (after the server's close frame) or
    /// failed (after the error).
    pub(crate) fn poll_message(
        &mut self,
        cx: &Context<'_>,
        keep: &mut impl FnMut(Received<'_>) -> Bytes,
    ) -> Poll<Option<Result<Incoming, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.io.waker.clone_from(cx.waker());
        if self.unflushed {
            // A pong or close reply waits: it goes out as soon as the stream takes it.
            match would_block(self.context.flush(&mut self.io)) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return self.fail(e),
                Poll::Pending => {}
            }
        }
        loop {
            let event = match self.reader.next(keep) {
                Ok(Some(event)) => event,
                Ok(None) => match self.io.read(self.reader.unfilled()) {
                    Ok(0) => {
                        self.ended = true;
                        if self.reader.closed() {
                            return Poll::Ready(None);
                        }
                        return Poll::Ready(Some(Err(WsError::Protocol(
                            ProtocolError::ResetWithoutClosingHandshake,
                        ))));
                    }
                    Ok(n) => {
                        self.reader.filled(n);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                    Err(e) => return self.fail(WsError::Io(e)),
                },
                Err(e) => return self.fail(e),
            };
            let incoming = match event {
                Event::Text(text) => Incoming::Frame(Frame::Text(text)),
                Event::Binary(bytes) => Incoming::Frame(Frame::Binary(bytes)),
                Event::Ping(data) => {
                    // No pong once a close frame has gone out.
                    if self.context.can_write() {
                        let r = self.context.write(&mut self.io, WsMessage::Pong(data));
                        if let Some(e) = self.settle_reply(r) {
                            return self.fail(e);
                        }
                    }
                    Incoming::Control
                }
                Event::Pong => Incoming::Control,
                Event::Close(frame) => {
                    // Echoed unless this side closed first (the server's frame is the reply).
                    if self.context.can_write() {
                        let r = self.context.close(&mut self.io, frame.clone());
                        if let Some(e) = self.settle_reply(r) {
                            return self.fail(e);
                        }
                    }
                    Incoming::Close(frame)
                }
            };
            return Poll::Ready(Some(Ok(incoming)));
        }
    }

    /// After queueing a reply: remembers to flush it (`write` of a pong does not flush, and a
    /// full stream leaves the rest queued); the error, if it failed for good.
    fn settle_reply(&mut self, r: Result<(), WsError>) -> Option<WsError> {
        if let Poll::Ready(Err(e)) = would_block(r) {
            return Some(e);
        }
        self.unflushed = true;
        None
    }

    fn fail<T>(&mut self, e: WsError) -> Poll<Option<Result<T, WsError>>> {
        self.ended = true;
        match e {
            WsError::AlreadyClosed | WsError::ConnectionClosed => Poll::Ready(None),
            e => Poll::Ready(Some(Err(e))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<WsMessage> for WebSocket<S> {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        if this.ready {
            return Poll::Ready(Ok(()));
        }
        // The last message is still queued: write it out before taking another.
        this.io.waker.clone_from(cx.waker());
        let r = std::task::ready!(would_block(this.context.flush(&mut this.io)));
        this.ready = true;
        Poll::Ready(r)
    }

    fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), WsError> {
        let this = self.get_mut();
        match would_block(this.context.write(&mut this.io, item)) {
            Poll::Ready(r) => {
                this.ready = true;
                r
            }
            // Queued, but the buffer is full: `poll_ready` flushes it first.
            Poll::Pending => {
                this.ready = false;
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        this.io.waker.clone_from(cx.waker());
        let r = std::task::ready!(would_block(this.context.flush(&mut this.io)));
        this.ready = true;
        Poll::Ready(match r {
            // The close handshake has just completed: everything went out.
            Err(WsError::ConnectionClosed) => Ok(()),
            other => other,
        })
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        this.ready = true;
        this.io.waker.clone_from(cx.waker());
        let r = if this.closing {
            this.context.flush(&mut this.io)
        } else {
            this.context.close(&mut this.io, None)
        };
        match would_block(r) {
            Poll::Ready(Ok(()) | Err(WsError::ConnectionClosed)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.closing = true;
                Poll::Pending
            }
        }
    }
}

/// A stream that keeps a copy of what is read from it, so that the bytes the handshake read
/// past the server's response can be handed to the frame reader.
#[derive(Debug)]
struct Tap<S> {
    stream: S,
    seen: Vec<u8>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        this.seen.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

/// The bytes in `seen` after the HTTP response at its start (parsed as tungstenite parses it).
fn after_response(seen: &[u8]) -> Result<&[u8], WsError> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    match httparse::Response::new(&mut headers).parse(seen)? {
        httparse::Status::Complete(len) => Ok(&seen[len..]),
        httparse::Status::Partial => Err(WsError::Protocol(ProtocolError::HandshakeIncomplete)),
    }
}

/// Performs the client's upgrade handshake for `request` over `stream`.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    request: Request,
    config: WebSocketConfig,
) -> Result<WebSocket<S>, WsError> {
    let io = Io {
        stream: Tap {
            stream,
            seen: Vec::new(),
        },
        waker: Waker::noop().clone(),
    };
    let mut mid = Some(ClientHandshake::start(io, request, Some(config))?);
    let upgraded = poll_fn(|cx| {
        // Never polled again once it has returned `Ready`.
        let Some(mut m) = mid.take() else {
            return Poll::Ready(Err(WsError::AlreadyClosed));
        };
        m.get_mut().get_mut().waker.clone_from(cx.waker());
        match m.handshake() {
            Ok((ws, _response)) => Poll::Ready(Ok(ws)),
            Err(HandshakeError::Interrupted(m)) => {
                mid = Some(m);
                Poll::Pending
            }
            Err(HandshakeError::Failure(e)) => Poll::Ready(Err(e)),
        }
    })
    .await?;
    let Tap { stream, seen } = upgraded.into_inner().stream;
    let tail = after_response(&seen)?;
    Ok(WebSocket::open(stream, config, tail))
}

/// Where `request` dials: host (an IPv6 address without its brackets), port (the scheme's
/// default if none is given) and whether the scheme is `wss`.
pub(crate) fn endpoint(request: &Request) -> Result<(String, u16, bool), WsError> {
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(WsError::Url(UrlError::UnsupportedUrlScheme)),
    };
    let host = uri
        .host()
        .ok_or(WsError::Url(UrlError::NoHostName))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    Ok((host, port, secure))
}

/// A TCP stream, plain or wrapped in TLS.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum MaybeTlsStream<T> {
    /// `ws://`.
    Plain(T),
    /// `wss://` through rustls.
    #[cfg(feature = "rustls")]
    Rustls(Box<futures_rustls::client::TlsStream<T>>),
    /// `wss://` through native-tls.
    #[cfg(feature = "native-tls")]
    NativeTls(Box<async_native_tls::TlsStream<T>>),
}

/// Forwards an IO call to whichever stream is inside.
macro_rules! each_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTlsStream::Plain($s) => $e,
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Rustls($s) => $e,
            #[cfg(feature = "native-tls")]
            MaybeTlsStream::NativeTls($s) => $e,
        }
    };
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_close(cx))
    }
}

/// Wraps `tcp` in TLS for `host` with `tls`; fails when no TLS backend is compiled in.
async fn secure<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    host: &str,
    tcp: T,
    tls: Option<TlsConnector>,
) -> Result<MaybeTlsStream<T>, WsError> {
    match tls {
        #[cfg(feature = "rustls")]
        Some(TlsConnector::Rustls(config)) => {
            use tungstenite::error::TlsError;
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| WsError::Tls(TlsError::InvalidDnsName))?;
            let stream = futures_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(MaybeTlsStream::Rustls(Box::new(stream)))
        }
        #[cfg(feature = "native-tls")]
        Some(TlsConnector::NativeTls(settings)) => {
            let stream = async_native_tls::TlsConnector::from(settings.builder())
                .connect(host, tcp)
                .await
                .map_err(|e| WsError::Tls(e.into()))?;
            Ok(MaybeTlsStream::NativeTls(Box::new(stream)))
        }
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (host, tcp);
            Err(WsError::Url(UrlError::TlsFeatureNotEnabled))
        }
    }
}

/// Dials `request`: opens the TCP connection through `rt`, secures it for `wss://` with `tls`,
/// and performs the upgrade handshake.
pub(crate) async fn connect<R: Runtime>(
    rt: R,
    request: Request,
    config: WebSocketConfig,
    tls: Option<TlsConnector>,
) -> Result<WebSocket<MaybeTlsStream<R::Tcp>>, WsError> {
    let (host, port, secure_scheme) = endpoint(&request)?;
    let stream = rt.connect_tcp(host.clone(), port).await?;
    let stream = if secure_scheme {
        secure(&host, stream, tls).await?
    } else {
        MaybeTlsStream::Plain(stream)
    };
    handshake(stream, request, config).await
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::test_wake::Count;
    use tungstenite::client::IntoClientRequest;

    /// Both directions of a connection, as the server's end sees them.
    #[derive(Default)]
    struct Wire {
        inbound: VecDeque<u8>,
        outbound: Vec<u8>,
        reader: Option<Waker>,
        /// Writes accepted before the stream says `Pending` (`usize::MAX`: no limit).
        room: usize,
        writer: Option<Waker>,
        /// The server closed the connection once `inbound` is read.
        ended: bool,
    }

    #[derive(Clone)]
    struct Pipe(Arc<Mutex<Wire>>);

    impl Pipe {
        fn new() -> Self {
            Self(Arc::new(Mutex::new(Wire {
                room: usize::MAX,
                ..Wire::default()
            })))
        }

        /// The server sends `bytes`: whoever waits to read is woken.
        fn send(&self, bytes: &[u8]) {
            let mut w = self.0.lock().unwrap();
            w.inbound.extend(bytes);
            if let Some(r) = w.reader.take() {
                r.wake();
            }
        }

        /// The server closes the connection.
        fn end(&self) {
            let mut w = self.0.lock().unwrap();
            w.ended = true;
            if let Some(r) = w.reader.take() {
                r.wake();
            }
        }

        fn set_room(&self, room: usize) {
            let mut w = self.0.lock().unwrap();
            w.room = room;
            if let Some(r) = w.writer.take() {
                r.wake();
            }
        }

        fn written(&self) -> Vec<u8> {
            std::mem::take(&mut self.0.lock().unwrap().outbound)
        }
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let mut w = self.0.lock().unwrap();
            if w.inbound.is_empty() {
                if w.ended {
                    return Poll::Ready(Ok(0));
                }
                w.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = buf.len().min(w.inbound.len());
            for (b, x) in buf.iter_mut().zip(w.inbound.drain(..n)) {
                *b = x;
            }
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Pipe {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut w = self.0.lock().unwrap();
            let n = buf.len().min(w.room);
            if n == 0 {
                w.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            w.room = w.room.saturating_sub(n);
            w.outbound.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A client WebSocket past its handshake, over `pipe`.
    fn open(pipe: &Pipe) -> WebSocket<Pipe> {
        open_with(pipe, WebSocketConfig::default())
    }

    fn open_with(pipe: &Pipe, config: WebSocketConfig) -> WebSocket<Pipe> {
        WebSocket::open(pipe.clone(), config, &[])
    }

    /// What the client reads next, payloads kept in allocations of their own.
    fn poll_next(
        ws: &mut WebSocket<Pipe>,
        waker: &Waker,
    ) -> Poll<Option<Result<Incoming, WsError>>> {
        let mut keep = |payload: Received<'_>| Bytes::copy_from_slice(payload.as_slice());
        ws.poll_message(&Context::from_waker(waker), &mut keep)
    }

    /// A text message read from `ws`, or a panic with what came instead.
    fn text(polled: Poll<Option<Result<Incoming, WsError>>>) -> String {
        match polled {
            Poll::Ready(Some(Ok(Incoming::Frame(Frame::Text(t))))) => {
                String::from_utf8(t.to_vec()).unwrap()
            }
            other => panic!("not a text message: {other:?}"),
        }
    }

    #[test]
    fn a_frame_arriving_after_pending_wakes_the_task_that_polled_last() {
        let pipe = Pipe::new();
        let mut ws = open(&pipe);
        let (first, a) = Count::waker();
        let (second, b) = Count::waker();
        assert!(poll_next(&mut ws, &a).is_pending());
        // Another task polls: the wake-up is now its own.
        assert!(poll_next(&mut ws, &b).is_pending());
        pipe.send(&[0x81, 2, b'h', b'i']);
        assert_eq!((first.get(), second.get()), (0, 1));
        assert_eq!(text(poll_next(&mut ws, &b)), "hi");
        // The same task again, and again: it is woken each time data comes.
        assert!(poll_next(&mut ws, &b).is_pending());
        pipe.send(&[0x82, 1, 7]);
        assert_eq!(second.get(), 2);
        assert!(matches!(
            poll_next(&mut ws, &b),
            Poll::Ready(Some(Ok(Incoming::Frame(Frame::Binary(ref bytes))))) if bytes.as_ref() == [7]
        ));
    }

    #[test]
    fn a_ping_is_answered_and_a_close_ends_the_stream() {
        let pipe = Pipe::new();
        let mut ws = open(&pipe);
        let (_, waker) = Count::waker();
        pipe.send(&[0x89, 1, b'p']);
        assert!(matches!(
            poll_next(&mut ws, &waker),
            Poll::Ready(Some(Ok(Incoming::Control)))
        ));
        assert!(poll_next(&mut ws, &waker).is_pending());
        let pong = pipe.written();
        // A masked pong carrying the ping's byte.
        assert_eq!(&pong[..2], [0x8a, 0x81], "{pong:?}");
        assert_eq!(pong[6] ^ pong[2], b'p');
        // The server closes with 1000: the close is echoed, then the stream ends.
        pipe.send(&[0x88, 2, 0x03, 0xe8]);
        assert!(matches!(
            poll_next(&mut ws, &waker),
            Poll::Ready(Some(Ok(Incoming::Close(Some(ref f))))) if u16::from(f.code) == 1000
        ));
        // A client waits for the server to close the TCP connection.
        assert!(poll_next(&mut ws, &waker).is_pending());
        assert_eq!(pipe.written()[..2], [0x88, 0x82], "the close is echoed");
        pipe.end();
        assert!(matches!(poll_next(&mut ws, &waker), Poll::Ready(None)));
        assert!(matches!(poll_next(&mut ws, &waker), Poll::Ready(None)));
    }

    #[test]
    fn a_message_queued_on_a_full_stream_goes_out_before_the_next_is_taken() {
        let pipe = Pipe::new();
        // No write buffer: each message is written out as it is sent.
        let mut ws = open_with(&pipe, WebSocketConfig::default().write_buffer_size(0));
        let (woken, waker) = Count::waker();
        let cx = &mut Context::from_waker(&waker);
        pipe.set_room(3);
        assert!(Pin::new(&mut ws).poll_ready(cx).is_ready());
        // Accepted, though the stream took only part of it: the next waits.
        Pin::new(&mut ws)
            .start_send(WsMessage::text("hello"))
            .unwrap();
        assert!(Pin::new(&mut ws).poll_ready(cx).is_pending());
        assert!(Pin::new(&mut ws).poll_flush(cx).is_pending());
        assert_eq!(pipe.written().len(), 3);
        pipe.set_room(usize::MAX);
        assert_eq!(woken.get(), 1, "the stream woke the writer");
        assert!(matches!(
            Pin::new(&mut ws).poll_ready(cx),
            Poll::Ready(Ok(()))
        ));
        assert!(matches!(
            Pin::new(&mut ws).poll_flush(cx),
            Poll::Ready(Ok(()))
        ));
        // The rest of the masked frame: 2 header bytes + 4 mask bytes + 5 payload bytes.
        assert_eq!(pipe.written().len(), 11 - 3);
    }

    #[test]
    fn the_handshake_completes_over_a_stream_that_makes_it_wait() {
        let pipe = Pipe::new();
        let request = "ws://example.com/socket/websocket?vsn=2.0.0"
            .into_client_request()
            .unwrap();
        let mut dial = std::pin::pin!(handshake(pipe.clone(), request, WebSocketConfig::default()));
        let (woken, waker) = Count::waker();
        let cx = &mut Context::from_waker(&waker);
        assert!(dial.as_mut().poll(cx).is_pending());
        let sent = String::from_utf8(pipe.written()).unwrap();
        assert!(
            sent.starts_with("GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n"),
            "{sent}"
        );
        let key = sent
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        // The answer comes in two parts, the second with a frame right behind it.
        pipe.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n");
        assert_eq!(woken.get(), 1);
        assert!(dial.as_mut().poll(cx).is_pending());
        let rest = format!("Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        let mut bytes = rest.into_bytes();
        bytes.extend_from_slice(&[0x81, 2, b'o', b'k']);
        pipe.send(&bytes);
        let Poll::Ready(Ok(mut ws)) = dial.as_mut().poll(cx) else {
            panic!("the handshake did not complete");
        };
        assert_eq!(
            text(poll_next(&mut ws, &waker)),
            "ok",
            "the frame read with the response"
        );
    }

    #[test]
    fn a_refused_upgrade_is_an_http_error() {
        let pipe = Pipe::new();
        let request = "ws://example.com/socket".into_client_request().unwrap();
        let mut dial = std::pin::pin!(handshake(pipe.clone(), request, WebSocketConfig::default()));
        let (_, waker) = Count::waker();
        let cx = &mut Context::from_waker(&waker);
        assert!(dial.as_mut().poll(cx).is_pending());
        pipe.send(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
        match dial.as_mut().poll(cx) {
            Poll::Ready(Err(WsError::Http(response))) => assert_eq!(response.status(), 403),
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Ready(Ok(_)) => panic!("a refused upgrade connected"),
            Poll::Pending => panic!("still waiting"),
        }
    }

    #[test]
    fn endpoints_take_the_scheme_port_and_a_bare_ipv6_host() {
        let at = |url: &str| endpoint(&url.into_client_request().unwrap());
        assert_eq!(at("ws://h/s").unwrap(), ("h".to_owned(), 80, false));
        assert_eq!(at("wss://h/s").unwrap(), ("h".to_owned(), 443, true));
        assert_eq!(
            at("ws://[::1]:4000/s").unwrap(),
            ("::1".to_owned(), 4000, false)
        );
    }
}
