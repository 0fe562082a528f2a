//! A connection's reading, moved to a task of its own while a flood lasts.
//!
//! The driver reads the WebSocket on its own task while traffic is light, so that a reply
//! reaches it with no hop between tasks. Once one of its read rounds fills a whole batch, the
//! stream's reading half goes to a [`Reader`] task: tungstenite's framing and the copy of each
//! frame into the arena then run on one worker while the driver decodes, routes and delivers on
//! another, instead of one task doing both in turn. The reader passes its frames on in batches
//! through a [`Handover`], and once the socket runs dry it passes the stream back and ends; the
//! end of the connection is passed on after the frames that came before it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::Stream;
use phx_proto::{CloseReason, Frame};
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::transport::{self, FrameArena, Incoming};

/// Frames a reader reads before it passes them on (one lock, at most one wake-up of the
/// driver, per batch).
const BATCH: usize = 256;
/// Frames waiting for the driver above which the reader stops reading until it has taken
/// some: a driver held up (by a slow consumer, or its own thread) holds the reader up in turn,
/// so what waits stays bounded.
const ROOM: usize = 2048;
/// Batches a reader passes on per poll before it lets its worker run other tasks.
const ROUNDS: usize = 16;

/// What comes after the frames a reader has passed on.
pub(crate) enum After<S> {
    /// The connection ended, and why.
    End(CloseReason),
    /// The socket ran dry: the stream and the arena come back to the driver, which reads
    /// them itself again.
    Back(S, FrameArena),
}

/// Where a [`Reader`] leaves what it reads for the driver.
pub(crate) struct Handover<S> {
    shared: Mutex<Shared<S>>,
}

struct Shared<S> {
    frames: VecDeque<Frame>,
    /// What follows `frames`, once the reader has ended.
    after: Option<After<S>>,
    /// The driver's waker (the route's), left when it found nothing to take.
    driver: Option<Waker>,
    /// The reader's waker, left when it found no room.
    reader: Option<Waker>,
    /// The connection is gone: the reader stops.
    gone: bool,
}

/// Whether a reader may read another batch.
enum Room {
    Free,
    /// Full: the reader's waker is left for the driver's next take.
    Full,
    /// The connection is gone.
    Gone,
}

impl<S> Handover<S> {
    /// An empty handover.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            shared: Mutex::new(Shared {
                frames: VecDeque::new(),
                after: None,
                driver: None,
                reader: None,
                gone: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared<S>> {
        // Nothing here can panic while the lock is held; a poisoned lock's data is whole.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The driver's side: moves up to `limit` frames, oldest first, onto `out`, and returns
    /// what follows them once every frame is taken. When there is nothing at all to take,
    /// `waker` is left for the reader to wake.
    pub(crate) fn take(
        &self,
        limit: usize,
        out: &mut Vec<Frame>,
        waker: &Waker,
    ) -> Option<After<S>> {
        let (after, reader) = {
            let mut s = self.lock();
            let n = limit.min(s.frames.len());
            out.extend(s.frames.drain(..n));
            let after = if s.frames.is_empty() {
                s.after.take()
            } else {
                None
            };
            if after.is_some() {
                // The reader has ended: what it grew is not needed until the next flood.
                s.frames = VecDeque::new();
            } else if n == 0 && !s.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
                s.driver = Some(waker.clone());
            }
            let reader = if s.frames.len() < ROOM {
                s.reader.take()
            } else {
                None
            };
            (after, reader)
        };
        if let Some(w) = reader {
            w.wake();
        }
        after
    }

    /// The connection is gone: a reader still running stops.
    pub(crate) fn close(&self) {
        let reader = {
            let mut s = self.lock();
            s.gone = true;
            s.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
    }

    fn room(&self, waker: &Waker) -> Room {
        let mut s = self.lock();
        if s.gone {
            Room::Gone
        } else if s.frames.len() >= ROOM {
            s.reader = Some(waker.clone());
            Room::Full
        } else {
            Room::Free
        }
    }

    /// The reader's side: passes `batch` on, then `after` if the reader ends. Whether the
    /// driver was waiting (and is now woken).
    fn give(&self, batch: &mut Vec<Frame>, after: Option<After<S>>) -> bool {
        let driver = {
            let mut s = self.lock();
            s.frames.extend(batch.drain(..));
            if after.is_some() {
                s.after = after;
            }
            s.driver.take()
        };
        let waiting = driver.is_some();
        if let Some(w) = driver {
            w.wake();
        }
        waiting
    }
}

/// The task that reads a connection during a flood (see the module's documentation).
pub(crate) struct Reader<S> {
    stream: Option<S>,
    arena: FrameArena,
    handover: Arc<Handover<S>>,
    batch: Vec<Frame>,
}

impl<S> Reader<S> {
    /// A reader of `stream`, copying small frames into `arena`, passing them on to `handover`.
    pub(crate) fn new(stream: S, arena: FrameArena, handover: Arc<Handover<S>>) -> Self {
        Self {
            stream: Some(stream),
            arena,
            handover,
            batch: Vec::with_capacity(BATCH),
        }
    }
}

impl<S> Future for Reader<S>
where
    S: Stream<Item = Result<WsMessage, WsError>> + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..ROUNDS {
            match this.handover.room(cx.waker()) {
                Room::Free => {}
                Room::Full => return Poll::Pending,
                Room::Gone => return Poll::Ready(()),
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(());
            };
            let mut end = None;
            let mut dry = false;
            while this.batch.len() < BATCH {
                match Pin::new(&mut *stream).poll_next(cx) {
                    Poll::Ready(item) => match transport::incoming(item, &mut this.arena) {
                        Incoming::Frame(frame) => this.batch.push(frame),
                        Incoming::Control => {}
                        Incoming::End(reason) => {
                            end = Some(After::End(reason));
                            break;
                        }
                    },
                    Poll::Pending => {
                        dry = true;
                        break;
                    }
                }
            }
            let after = match (end, dry) {
                (Some(end), _) => Some(end),
                (None, true) => {
                    this.arena.dry();
                    this.stream
                        .take()
                        .map(|s| After::Back(s, std::mem::take(&mut this.arena)))
                }
                (None, false) => None,
            };
            let ends = after.is_some();
            let woke = this.handover.give(&mut this.batch, after);
            if ends {
                return Poll::Ready(());
            }
            if woke {
                // On tokio's multi-thread runtime a task woken from a worker runs on that
                // worker, next: going to the back of the queue lets the other worker take this
                // task, so that the driver and the reader run side by side rather than in turn.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_wake::Count;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tungstenite::protocol::CloseFrame;
    use tungstenite::protocol::frame::coding::CloseCode;

    /// One step of a scripted WebSocket stream.
    enum Step {
        Msg(WsMessage),
        Pending,
    }

    /// A WebSocket stream that plays its script, then stays pending; `dropped` is set when it
    /// goes.
    struct Script {
        steps: VecDeque<Step>,
        dropped: Arc<AtomicBool>,
    }

    impl Script {
        fn new(steps: impl IntoIterator<Item = Step>) -> (Self, Arc<AtomicBool>) {
            let dropped = Arc::new(AtomicBool::new(false));
            let script = Self {
                steps: steps.into_iter().collect(),
                dropped: dropped.clone(),
            };
            (script, dropped)
        }
    }

    impl Drop for Script {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    impl Stream for Script {
        type Item = Result<WsMessage, WsError>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.steps.pop_front() {
                Some(Step::Msg(m)) => Poll::Ready(Some(Ok(m))),
                Some(Step::Pending) | None => Poll::Pending,
            }
        }
    }

    fn text(i: usize) -> Step {
        Step::Msg(WsMessage::text(format!(
            r#"[null,null,"t","e",{{"i":{i}}}]"#
        )))
    }

    fn expect_text(frame: &Frame, i: usize) {
        let want = format!(r#"[null,null,"t","e",{{"i":{i}}}]"#);
        match frame {
            Frame::Text(b) => assert_eq!(&b[..], want.as_bytes(), "frame {i}"),
            Frame::Binary(_) => panic!("frame {i} came out binary"),
        }
    }

    /// Polls `reader` until it ends, at most `polls` times; whether it ended.
    fn run(reader: &mut Reader<Script>, polls: usize) -> bool {
        let (_, waker) = Count::waker();
        let cx = &mut Context::from_waker(&waker);
        (0..polls).any(|_| Pin::new(&mut *reader).poll(cx).is_ready())
    }

    #[test]
    fn a_flood_is_passed_on_in_order_and_the_stream_comes_back_once_dry() {
        const N: usize = 3 * BATCH + 10;
        let steps = (0..N)
            .flat_map(|i| {
                let ping = (i == 5).then(|| Step::Msg(WsMessage::Ping(vec![1].into())));
                std::iter::once(text(i)).chain(ping)
            })
            .chain([Step::Pending, text(N)]);
        let (script, dropped) = Script::new(steps);
        let handover = Handover::new();
        let mut reader = Reader::new(script, FrameArena::default(), handover.clone());
        assert!(run(&mut reader, 10), "a reader ends once the socket is dry");
        let (_, waker) = Count::waker();
        let mut out = Vec::new();
        // The driver's limit holds: the stream comes back only after the last frame.
        assert!(handover.take(BATCH, &mut out, &waker).is_none());
        assert_eq!(out.len(), BATCH);
        let Some(After::Back(mut stream, _)) = handover.take(N, &mut out, &waker) else {
            panic!("the stream did not come back after the frames");
        };
        assert_eq!(out.len(), N, "every frame, and not the ping");
        for (i, frame) in out.iter().enumerate() {
            expect_text(frame, i);
        }
        // The stream goes on where the reader left it.
        let cx = &mut Context::from_waker(&waker);
        let Poll::Ready(Some(Ok(WsMessage::Text(next)))) = Pin::new(&mut stream).poll_next(cx)
        else {
            panic!("the frame after the dry spell is lost");
        };
        assert!(next.as_str().contains(&format!(r#""i":{N}"#)));
        drop(reader);
        assert!(
            !dropped.load(Ordering::SeqCst),
            "the driver holds the stream"
        );
    }

    #[test]
    fn the_end_of_the_connection_comes_after_the_frames_before_it() {
        let close = WsMessage::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }));
        let (script, dropped) = Script::new((0..10).map(text).chain([Step::Msg(close)]));
        let handover = Handover::new();
        let mut reader = Reader::new(script, FrameArena::default(), handover.clone());
        assert!(run(&mut reader, 1));
        drop(reader);
        assert!(
            dropped.load(Ordering::SeqCst),
            "an ended reader drops its stream"
        );
        let (_, waker) = Count::waker();
        let mut out = Vec::new();
        let after = handover.take(100, &mut out, &waker);
        assert_eq!(out.len(), 10);
        let Some(After::End(reason)) = after else {
            panic!("the close was not passed on");
        };
        assert_eq!(
            reason,
            CloseReason::Closed {
                code: 1001,
                reason: "bye".into()
            }
        );
    }

    #[test]
    fn a_waiting_driver_is_woken_by_the_next_batch() {
        let (script, _) = Script::new([Step::Pending]);
        let handover = Handover::new();
        let (driver, driver_waker) = Count::waker();
        let mut out = Vec::new();
        assert!(handover.take(10, &mut out, &driver_waker).is_none());
        assert!(out.is_empty());
        let mut batch = vec![Frame::Text(bytes::Bytes::from_static(b"x"))];
        handover.give(&mut batch, None);
        assert_eq!(driver.get(), 1, "the driver waits for frames");
        // It ran dry at once: the stream comes back, and wakes the driver again.
        let mut reader = Reader::new(script, FrameArena::default(), handover.clone());
        assert!(handover.take(10, &mut out, &driver_waker).is_none());
        assert!(handover.take(10, &mut out, &driver_waker).is_none());
        assert!(run(&mut reader, 1));
        assert_eq!(driver.get(), 2);
        assert!(matches!(
            handover.take(10, &mut out, &driver_waker),
            Some(After::Back(..))
        ));
    }

    #[test]
    fn a_full_handover_holds_the_reader_until_the_driver_takes_some() {
        let (script, _) = Script::new((0..3 * ROOM).map(text));
        let handover = Handover::new();
        let mut reader = Reader::new(script, FrameArena::default(), handover.clone());
        let (woken, waker) = Count::waker();
        let cx = &mut Context::from_waker(&waker);
        let mut polls = 0;
        while handover.lock().frames.len() < ROOM {
            assert!(Pin::new(&mut reader).poll(cx).is_pending());
            polls += 1;
            assert!(polls < 100, "the reader never filled its room");
        }
        let before = woken.get();
        assert!(Pin::new(&mut reader).poll(cx).is_pending());
        assert_eq!(woken.get(), before, "a reader with no room waits");
        assert_eq!(handover.lock().frames.len(), ROOM, "and reads no further");
        let (_, driver) = Count::waker();
        let mut out = Vec::new();
        handover.take(1, &mut out, &driver);
        assert_eq!(woken.get(), before + 1, "room wakes the reader");
        assert!(Pin::new(&mut reader).poll(cx).is_pending());
        assert_eq!(
            handover.lock().frames.len(),
            ROOM - 1 + BATCH,
            "and it reads on"
        );
    }

    #[test]
    fn a_gone_connection_stops_its_reader() {
        let (script, dropped) = Script::new((0..3 * ROOM).map(text));
        let handover = Handover::new();
        let mut reader = Reader::new(script, FrameArena::default(), handover.clone());
        let (woken, waker) = Count::waker();
        let cx = &mut Context::from_waker(&waker);
        while handover.lock().frames.len() < ROOM {
            assert!(Pin::new(&mut reader).poll(cx).is_pending());
        }
        let before = woken.get();
        handover.close();
        assert_eq!(
            woken.get(),
            before + 1,
            "a reader waiting for room is woken"
        );
        assert!(Pin::new(&mut reader).poll(cx).is_ready());
        drop(reader);
        assert!(dropped.load(Ordering::SeqCst));
    }
}
