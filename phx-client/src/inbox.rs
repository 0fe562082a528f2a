//! Bounded queues from the driver to the application, with an explicit lag policy.
//!
//! The driver never waits for a consumer (a blocked driver would miss heartbeats). Each queue
//! holds at most its capacity; when it is full, further items are dropped and counted, and the
//! consumer receives [`Lagged`] with the count at the exact place in the stream where the items
//! were lost. So `received + sum(lagged) == sent`, always.
//!
//! The consumer takes everything queued in one lock, and the driver wakes it once per batch of
//! frames rather than once per item.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::Stream;

/// Items were dropped because the consumer fell behind; the value says how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("consumer lagged behind: {0} items dropped")]
pub struct Lagged(pub u64);

#[derive(Debug)]
enum Slot<T> {
    Item(T),
    Lagged(u64),
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<Slot<T>>,
    /// Items (not lag markers) in `queue`.
    items: usize,
    closed: bool,
    waker: Option<Waker>,
}

/// The shared queue. The driver holds it weakly (through [`Inbox::downgrade`]) or strongly,
/// the consumer through a [`Receiver`].
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
    capacity: usize,
}

impl<T> Inbox<T> {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                items: 0,
                closed: false,
                waker: None,
            }),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A consumer that panicked while holding the lock leaves a consistent queue behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`, or counts it as lost if the queue is full. Returns the consumer's waker if
    /// it was waiting; the caller wakes it after its batch.
    pub(crate) fn push(&self, item: T) -> Option<Waker> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        if s.items >= self.capacity {
            match s.queue.back_mut() {
                Some(Slot::Lagged(n)) => *n += 1,
                _ => s.queue.push_back(Slot::Lagged(1)),
            }
        } else {
            s.items += 1;
            s.queue.push_back(Slot::Item(item));
        }
        s.waker.take()
    }

    /// Queues every item of `items` under one lock, counting those past the capacity as lost.
    /// Returns the consumer's waker if it was waiting.
    pub(crate) fn push_all(&self, items: impl Iterator<Item = T>) -> Option<Waker> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        for item in items {
            if s.items >= self.capacity {
                match s.queue.back_mut() {
                    Some(Slot::Lagged(n)) => *n += 1,
                    _ => s.queue.push_back(Slot::Lagged(1)),
                }
            } else {
                s.items += 1;
                s.queue.push_back(Slot::Item(item));
            }
        }
        s.waker.take()
    }

    /// Ends the stream after what is queued.
    pub(crate) fn close(&self) -> Option<Waker> {
        let mut s = self.lock();
        s.closed = true;
        s.waker.take()
    }
}

/// The consuming end of an inbox: a [`Stream`] of `Result<T, Lagged>` that ends when the
/// producer closes it.
#[derive(Debug)]
pub struct Receiver<T> {
    inbox: Arc<Inbox<T>>,
    local: VecDeque<Slot<T>>,
}

impl<T> Receiver<T> {
    pub(crate) fn new(inbox: Arc<Inbox<T>>) -> Self {
        Self {
            inbox,
            local: VecDeque::new(),
        }
    }

    /// Items waiting to be read; never more than twice the capacity (what this reader took
    /// in its last batch plus what queued since).
    pub fn len(&self) -> usize {
        let local = self
            .local
            .iter()
            .filter(|s| matches!(s, Slot::Item(_)))
            .count();
        local + self.inbox.lock().items
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many items this stream holds at most before it starts dropping (and reporting
    /// [`Lagged`]).
    pub fn capacity(&self) -> usize {
        self.inbox.capacity
    }
}

// The receiver never pins its items: they live in a VecDeque that moves freely.
impl<T> Unpin for Receiver<T> {}

impl<T> Stream for Receiver<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.local.is_empty() {
            let mut s = this.inbox.lock();
            if s.queue.is_empty() {
                if s.closed {
                    return Poll::Ready(None);
                }
                s.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            std::mem::swap(&mut this.local, &mut s.queue);
            s.items = 0;
        }
        match this.local.pop_front() {
            Some(Slot::Item(item)) => Poll::Ready(Some(Ok(item))),
            Some(Slot::Lagged(n)) => Poll::Ready(Some(Err(Lagged(n)))),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use futures::executor::block_on;

    #[test]
    fn overflow_is_reported_in_place_and_nothing_is_lost_silently() {
        let inbox = Inbox::new(3);
        let mut rx = Receiver::new(inbox.clone());
        for i in 0..10 {
            inbox.push(i);
        }
        inbox.close();
        let got: Vec<_> = block_on(rx.by_ref().collect::<Vec<_>>());
        assert_eq!(got, [Ok(0), Ok(1), Ok(2), Err(Lagged(7))]);
        let received = got.iter().filter(|r| r.is_ok()).count() as u64;
        let dropped: u64 = got.iter().filter_map(|r| r.err()).map(|l| l.0).sum();
        assert_eq!(received + dropped, 10);
    }

    #[test]
    fn draining_makes_room_again_and_order_is_kept() {
        let inbox = Inbox::new(2);
        let mut rx = Receiver::new(inbox.clone());
        inbox.push(1);
        inbox.push(2);
        inbox.push(3);
        assert_eq!(block_on(rx.next()), Some(Ok(1)));
        inbox.push(4);
        inbox.push(5);
        inbox.close();
        let rest: Vec<_> = block_on(rx.collect::<Vec<_>>());
        assert_eq!(rest, [Ok(2), Err(Lagged(1)), Ok(4), Ok(5)]);
    }

    #[test]
    fn a_batch_is_queued_in_order_and_overflow_counted() {
        let inbox = Inbox::new(3);
        let mut rx = Receiver::new(inbox.clone());
        inbox.push(0);
        assert!(inbox.push_all(1..6).is_none());
        inbox.close();
        let got: Vec<_> = block_on(rx.by_ref().collect::<Vec<_>>());
        assert_eq!(got, [Ok(0), Ok(1), Ok(2), Err(Lagged(3))]);
    }

    #[test]
    fn a_waiting_consumer_is_handed_back_for_waking() {
        let inbox = Inbox::<u8>::new(4);
        let mut rx = Receiver::new(inbox.clone());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut rx).poll_next(&mut cx).is_pending());
        assert!(inbox.push(1).is_some(), "first item hands back the waker");
        assert!(inbox.push(2).is_none(), "later items in the batch do not");
    }
}
