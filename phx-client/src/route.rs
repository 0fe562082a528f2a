//! Where the WebSocket's wake-ups go: to the driver's task, or, while a task awaits the reply
//! to a lone push and reads the socket itself, to that task.
//!
//! Every poll of the WebSocket (read, write, flush) registers the same waker, this route's, so
//! whoever polls the socket never replaces another's registration: the route decides at wake-up
//! time whom to wake. A caller that reads its own reply spares the reply two thread hops on a
//! runtime whose `block_on` runs the reactor (async-std): reactor → driver's thread → caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};

use crate::driver::{Direct, Held};
use crate::oneshot;

/// The WebSocket's waker: wakes the holder if there is one, else the driver.
#[derive(Debug, Default)]
pub(crate) struct Route {
    state: Mutex<RouteState>,
}

#[derive(Debug, Default)]
struct RouteState {
    driver: Option<Waker>,
    holder: Option<Holder>,
    /// Tickets handed out so far; a holder's ticket tells it apart from later holders.
    issued: u64,
}

#[derive(Debug)]
struct Holder {
    ticket: u64,
    waker: Waker,
    /// The socket woke the holder since its last turn: something may wait to be read (or
    /// written), and if the holder leaves without a turn, the driver must have it.
    woken: bool,
}

impl Route {
    fn lock(&self) -> MutexGuard<'_, RouteState> {
        // Every section leaves the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver task's waker, from its latest poll.
    pub(crate) fn set_driver(&self, waker: &Waker) {
        let mut s = self.lock();
        if !s.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.driver = Some(waker.clone());
        }
    }

    /// Wakes the driver's task, whoever holds the socket.
    pub(crate) fn wake_driver(&self) {
        let driver = self.lock().driver.clone();
        if let Some(w) = driver {
            w.wake();
        }
    }

    /// Makes `waker`'s task the holder, if there is none; its ticket.
    pub(crate) fn hold(&self, waker: &Waker) -> Option<u64> {
        let mut s = self.lock();
        if s.holder.is_some() {
            return None;
        }
        s.issued += 1;
        let ticket = s.issued;
        s.holder = Some(Holder {
            ticket,
            waker: waker.clone(),
            woken: false,
        });
        Some(ticket)
    }

    /// Whether `ticket` still holds the socket; keeps its waker current.
    pub(crate) fn holds(&self, ticket: u64, waker: &Waker) -> bool {
        let mut s = self.lock();
        match s.holder.as_mut() {
            Some(h) if h.ticket == ticket => {
                if !h.waker.will_wake(waker) {
                    h.waker = waker.clone();
                }
                true
            }
            _ => false,
        }
    }

    /// Whether the socket woke `ticket`'s holder since its last turn; clears the mark (the
    /// holder is about to take its turn).
    pub(crate) fn take_woken(&self, ticket: u64) -> bool {
        let mut s = self.lock();
        match s.holder.as_mut() {
            Some(h) if h.ticket == ticket => std::mem::take(&mut h.woken),
            _ => false,
        }
    }

    /// `ticket`'s holder leaves: later wake-ups go to the driver, and one the holder took
    /// without a turn is handed on to it.
    pub(crate) fn release(&self, ticket: u64) {
        let pass_on = {
            let mut s = self.lock();
            match s.holder.take() {
                Some(h) if h.ticket == ticket => h.woken.then(|| s.driver.clone()).flatten(),
                other => {
                    s.holder = other;
                    None
                }
            }
        };
        if let Some(w) = pass_on {
            w.wake();
        }
    }
}

impl Wake for Route {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let target = {
            let mut s = self.lock();
            match s.holder.as_mut() {
                Some(h) => {
                    h.woken = true;
                    Some(h.waker.clone())
                }
                None => s.driver.clone(),
            }
        };
        if let Some(w) = target {
            w.wake();
        }
    }
}

/// A push's reply, read by the waiting task itself while it holds the socket (see
/// [`Direct::try_apply`]); otherwise delivered by the driver.
pub(crate) struct OwnReply<T> {
    rx: oneshot::Receiver<T>,
    direct: Weak<dyn Direct>,
    held: Option<Held>,
}

impl<T> OwnReply<T> {
    pub(crate) fn new(
        rx: oneshot::Receiver<T>,
        direct: Weak<dyn Direct>,
        held: Option<Held>,
    ) -> Self {
        Self { rx, direct, held }
    }

    fn release(&mut self) {
        if let Some((route, ticket)) = self.held.take() {
            route.release(ticket);
        }
    }
}

impl<T> Future for OwnReply<T> {
    type Output = Result<T, oneshot::Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(r) = Pin::new(&mut this.rx).poll(cx) {
            this.release();
            return Poll::Ready(r);
        }
        if let Some((route, ticket)) = &this.held {
            if !route.holds(*ticket, cx.waker()) {
                this.held = None;
                return Poll::Pending;
            }
            if let Some(direct) = this.direct.upgrade() {
                direct.holder_turn(route, *ticket);
            }
            if let Poll::Ready(r) = Pin::new(&mut this.rx).poll(cx) {
                this.release();
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for OwnReply<T> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_wake::Count;

    #[test]
    fn wake_ups_go_to_the_holder_while_there_is_one_and_to_the_driver_otherwise() {
        let route = Arc::new(Route::default());
        let socket = Waker::from(route.clone());
        let (driver, driver_waker) = Count::waker();
        let (caller, caller_waker) = Count::waker();
        route.set_driver(&driver_waker);
        socket.wake_by_ref();
        assert_eq!((driver.get(), caller.get()), (1, 0));

        let ticket = route.hold(&caller_waker).expect("no holder yet");
        let (other, other_waker) = Count::waker();
        assert_eq!(route.hold(&other_waker), None, "one holder at a time");
        socket.wake_by_ref();
        assert_eq!((driver.get(), caller.get()), (1, 1));
        assert!(route.take_woken(ticket));
        assert!(!route.take_woken(ticket), "the mark is cleared by the turn");

        route.release(ticket);
        assert_eq!(
            driver.get(),
            1,
            "nothing left untaken: the driver sleeps on"
        );
        socket.wake_by_ref();
        assert_eq!((driver.get(), caller.get(), other.get()), (2, 1, 0));
    }

    #[test]
    fn a_wake_up_the_holder_took_without_a_turn_is_handed_to_the_driver() {
        let route = Arc::new(Route::default());
        let socket = Waker::from(route.clone());
        let (driver, driver_waker) = Count::waker();
        let (_, caller_waker) = Count::waker();
        route.set_driver(&driver_waker);
        let ticket = route.hold(&caller_waker).unwrap();
        socket.wake_by_ref();
        route.release(ticket);
        assert_eq!(driver.get(), 1);
    }

    #[test]
    fn a_stale_ticket_neither_holds_nor_releases_a_later_holder() {
        let route = Arc::new(Route::default());
        let (_, a) = Count::waker();
        let (b_count, b) = Count::waker();
        let first = route.hold(&a).unwrap();
        route.release(first);
        let second = route.hold(&b).unwrap();
        assert_ne!(first, second);
        assert!(!route.holds(first, &a));
        route.release(first);
        assert!(route.holds(second, &b));
        Waker::from(route.clone()).wake_by_ref();
        assert_eq!(b_count.get(), 1, "the later holder is still woken");
    }
}
