//! One-shot answers from the driver to a handle (a push's reply, a join's outcome...).
//!
//! `futures::channel::oneshot` keeps a flag and three locks, each its own atomic, and takes
//! several of them on every step; a push's reply crosses between the driver's thread and the
//! caller's, where each such operation waits for the other core. This one is a small mutex
//! around the whole state: one lock and one unlock per step.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// The receiving side was dropped, or the sending side without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Canceled;

enum State<T> {
    /// Nothing sent yet; the receiver's waker once it has polled.
    Waiting(Option<Waker>),
    Sent(T),
    /// Taken, or one side gone.
    Closed,
}

struct Slot<T>(Mutex<State<T>>);

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every step leaves the state whole; a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sender's last step: `Some(value)` is sent, `None` cancels. The waker of a waiting
    /// receiver, for the caller to wake, and the value back if the receiver is gone.
    fn finish(&self, value: Option<T>) -> (Option<Waker>, Option<T>) {
        let mut state = self.lock();
        let State::Waiting(waker) = &mut *state else {
            return (None, value);
        };
        let waker = waker.take();
        *state = value.map_or(State::Closed, State::Sent);
        (waker, None)
    }
}

/// Answers once.
pub(crate) struct Sender<T>(Option<Arc<Slot<T>>>);

/// Resolves to the answer, or to [`Canceled`] if the sender was dropped without one.
pub(crate) struct Receiver<T>(Arc<Slot<T>>);

/// A sender and its receiver.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot(Mutex::new(State::Waiting(None))));
    (Sender(Some(slot.clone())), Receiver(slot))
}

impl<T> Sender<T> {
    /// Hands `value` to the receiver; gives it back if the receiver is gone.
    pub(crate) fn send(self, value: T) -> Result<(), T> {
        let waker = self.send_unwoken(value)?;
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// As [`Sender::send`], but a waiting receiver is not woken: its waker is returned, for
    /// the caller to wake once it is ready for what that task will do next.
    pub(crate) fn send_unwoken(mut self, value: T) -> Result<Option<Waker>, T> {
        match self.0.take() {
            Some(slot) => match slot.finish(Some(value)) {
                (_, Some(refused)) => Err(refused),
                (waker, None) => Ok(waker),
            },
            None => Err(value),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take()
            && let (Some(w), _) = slot.finish(None)
        {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// Takes an answer that arrived but was never polled for, closing the slot either way:
    /// what a caller that gives up must still act on (a join accepted meanwhile is left).
    pub(crate) fn close_taking(&self) -> Option<T> {
        match std::mem::replace(&mut *self.0.lock(), State::Closed) {
            State::Sent(value) => Some(value),
            State::Waiting(_) | State::Closed => None,
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.lock();
        match &mut *state {
            State::Waiting(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            State::Sent(_) => match std::mem::replace(&mut *state, State::Closed) {
                State::Sent(value) => Poll::Ready(Ok(value)),
                State::Waiting(_) | State::Closed => Poll::Ready(Err(Canceled)),
            },
            State::Closed => Poll::Ready(Err(Canceled)),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // A later `send` then hands its value back, which tells the driver nobody is waiting
        // (a join whose caller gave up is left again).
        let mut state = self.0.lock();
        if matches!(*state, State::Waiting(_)) {
            *state = State::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_wake::Count;

    fn poll<T>(rx: &mut Receiver<T>, waker: &Waker) -> Poll<Result<T, Canceled>> {
        Pin::new(rx).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_value_sent_before_or_after_the_first_poll_arrives_once() {
        let (tx, mut rx) = channel();
        assert_eq!(tx.send(1), Ok(()));
        let waker = Waker::noop();
        assert_eq!(poll(&mut rx, waker), Poll::Ready(Ok(1)));
        assert_eq!(poll(&mut rx, waker), Poll::Ready(Err(Canceled)));

        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let (tx, mut rx) = channel();
        assert_eq!(poll(&mut rx, &waker), Poll::Pending);
        assert_eq!(poll(&mut rx, &waker), Poll::Pending);
        assert_eq!(tx.send(2), Ok(()));
        assert_eq!(count.get(), 1);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Ok(2)));
    }

    #[test]
    fn a_sender_dropped_without_sending_wakes_and_cancels() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let (tx, mut rx) = channel::<u8>();
        assert_eq!(poll(&mut rx, &waker), Poll::Pending);
        drop(tx);
        assert_eq!(count.get(), 1);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Err(Canceled)));
    }

    #[test]
    fn sending_to_a_dropped_receiver_gives_the_value_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send("reply"), Err("reply"));
    }

    #[test]
    fn an_answer_never_polled_for_is_taken_on_closing() {
        let (tx, rx) = channel();
        tx.send(7).unwrap();
        assert_eq!(rx.close_taking(), Some(7));
        assert_eq!(rx.close_taking(), None);
        let (tx, rx) = channel::<u8>();
        assert_eq!(rx.close_taking(), None);
        assert_eq!(tx.send(8), Err(8), "closed: the sender gets its value back");
    }

    #[test]
    fn the_latest_waker_is_the_one_woken() {
        let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (tx, mut rx) = channel();
        assert_eq!(poll(&mut rx, &Waker::from(first.clone())), Poll::Pending);
        assert_eq!(poll(&mut rx, &Waker::from(second.clone())), Poll::Pending);
        tx.send(()).unwrap();
        assert_eq!(first.get(), 0);
        assert_eq!(second.get(), 1);
    }

    #[test]
    fn an_answer_sent_unwoken_hands_the_waker_over() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let (tx, mut rx) = channel();
        assert_eq!(poll(&mut rx, &waker), Poll::Pending);
        let handed = tx
            .send_unwoken(5)
            .unwrap()
            .expect("the receiver was waiting");
        assert_eq!(count.get(), 0, "not woken by the send");
        handed.wake();
        assert_eq!(count.get(), 1);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Ok(5)));

        let (tx, mut rx) = channel();
        assert!(matches!(tx.send_unwoken(6), Ok(None)), "nobody waiting yet");
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Ok(6)));
        let (tx, rx) = channel();
        drop(rx);
        assert!(matches!(tx.send_unwoken(7), Err(7)));
    }

    #[test]
    fn the_answer_crosses_threads() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || tx.send(vec![1, 2, 3]));
        assert_eq!(futures::executor::block_on(rx), Ok(vec![1, 2, 3]));
        assert_eq!(t.join().unwrap(), Ok(()));
    }
}
