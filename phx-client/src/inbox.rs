//! Bounded queues from the driver to the application, with an explicit lag policy.
//!
//! The driver never waits for a consumer (a blocked driver would miss heartbeats). Each queue
//! holds at most its capacity in items, and at most its byte budget (what the items
//! [weigh](Weigh): a message's payload; an empty queue takes an item of any weight, so one
//! message larger than the budget still gets through). When either is reached, further items
//! are dropped and counted, and the consumer receives [`Lagged`] with the count at the exact
//! place in the stream where the items were lost. So `received + sum(lagged) == sent`, always.
//!
//! The consumer takes everything queued in one lock, and the driver wakes it once per batch of
//! frames rather than once per item.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use futures::Stream;

/// Items were dropped because the consumer fell behind; the value says how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("consumer lagged behind: {0} items dropped")]
pub struct Lagged(pub u64);

/// Slots an emptied queue keeps for the next items; a larger buffer is freed once its reader
/// has caught up with a burst that is over.
const KEEP_SLOTS: usize = 64;

/// Takes `queue`'s buffer if it is empty and larger than [`KEEP_SLOTS`] (for the caller to
/// drop, outside any lock), leaving an unallocated queue; otherwise takes nothing.
fn take_if_large<T>(queue: &mut VecDeque<T>) -> VecDeque<T> {
    if queue.is_empty() && queue.capacity() > KEEP_SLOTS {
        std::mem::take(queue)
    } else {
        VecDeque::new()
    }
}

/// What an item counts against its queue's byte budget.
pub(crate) trait Weigh {
    /// The bytes the item holds that a queue of it should be bounded by.
    fn weight(&self) -> usize;
}

impl Weigh for phx_proto::Message {
    fn weight(&self) -> usize {
        self.payload.as_bytes().len()
    }
}

/// Socket events and presence changes are bounded by count alone.
impl Weigh for phx_proto::Event {
    fn weight(&self) -> usize {
        0
    }
}

impl Weigh for phx_proto::PresenceChange {
    fn weight(&self) -> usize {
        0
    }
}

#[derive(Debug)]
enum Slot<T> {
    Item(T),
    Lagged(u64),
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<Slot<T>>,
    /// Items (not lag markers) in `queue`; never above `capacity`.
    items: u32,
    /// The most items `queue` holds; a `u32` so an idle channel's inbox stays small.
    capacity: u32,
    /// What the items in `queue` weigh; above `max_bytes` only if a single item does.
    bytes: usize,
    /// The byte budget.
    max_bytes: usize,
    closed: bool,
    /// Whether the producer said nothing more is coming for now (see [`Inbox::push_batch`]).
    settled: bool,
    waker: Option<Waker>,
}

/// Items a producer gathers for one inbox, to hand over in one go with [`Inbox::push_batch`].
/// Holds only items; lag markers are the inbox's to place.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    slots: VecDeque<Slot<T>>,
    /// What the items weigh.
    bytes: usize,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Self {
            slots: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<T: Weigh> Batch<T> {
    pub(crate) fn push(&mut self, item: T) {
        self.bytes = self.bytes.saturating_add(item.weight());
        self.slots.push_back(Slot::Item(item));
    }
}

impl<T> Batch<T> {
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.bytes = 0;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Frees the buffer if it is empty and sized for a burst.
    pub(crate) fn trim(&mut self) {
        drop(take_if_large(&mut self.slots));
    }
}

/// The shared queue. The driver holds it weakly or strongly, the consumer through a
/// [`Receiver`] (either on its own, or inside the structure that owns it: see [`Source`]).
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
}

/// Whatever holds an inbox a [`Receiver`] reads: the inbox itself, or a larger shared structure
/// it is embedded in (a channel's, which saves an allocation per channel).
pub(crate) trait Source<T>: Send + Sync {
    fn inbox(&self) -> &Inbox<T>;
}

impl<T: Send> Source<T> for Inbox<T> {
    fn inbox(&self) -> &Self {
        self
    }
}

impl<T> Inbox<T> {
    /// An inbox on its own, ready to share, bounded by count alone.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Self::with_budget(capacity, usize::MAX)
    }

    /// An inbox on its own, ready to share, holding at most `capacity` items and `max_bytes`
    /// of their weight.
    pub(crate) fn with_budget(capacity: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self::with_limits(capacity, max_bytes))
    }

    /// An inbox to embed in a shared structure.
    pub(crate) fn with_limits(capacity: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                items: 0,
                capacity: u32::try_from(capacity).unwrap_or(u32::MAX).max(1),
                bytes: 0,
                max_bytes: max_bytes.max(1),
                closed: false,
                settled: true,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A consumer that panicked while holding the lock leaves a consistent queue behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Weigh> Inbox<T> {
    /// Queues `item`, or counts it as lost if the queue is full. Returns the consumer's waker if
    /// it was waiting; the caller wakes it after its batch.
    pub(crate) fn push(&self, item: T) -> Option<Waker> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        s.push(item);
        s.settled = true;
        s.waker.take()
    }

    /// Queues every item of `batch` under one lock, counting those past the capacity as lost,
    /// and leaves `batch` empty. When the queue is empty (the consumer keeps up) and the batch
    /// fits, the two trade places instead of moving each item. `settled` says that nothing
    /// more is coming for now: once the reader has caught up, buffers sized for a burst are
    /// freed (while a burst goes on they are kept, and trade places batch after batch).
    /// Returns the consumer's waker if it was waiting, and whether the queue is now
    /// [behind](State::behind).
    pub(crate) fn push_batch(&self, batch: &mut Batch<T>, settled: bool) -> (Option<Waker>, bool) {
        let mut s = self.lock();
        s.settled = settled;
        if s.closed {
            batch.clear();
            return (None, false);
        }
        if s.queue.is_empty()
            && batch.slots.len() <= s.capacity as usize
            && (batch.bytes <= s.max_bytes || batch.slots.len() == 1)
        {
            std::mem::swap(&mut s.queue, &mut batch.slots);
            s.items = s.queue.len() as u32;
            s.bytes = std::mem::take(&mut batch.bytes);
        } else {
            batch.bytes = 0;
            for slot in batch.slots.drain(..) {
                if let Slot::Item(item) = slot {
                    s.push(item);
                }
            }
        }
        (s.waker.take(), s.behind())
    }
}

impl<T> Inbox<T> {
    /// Nothing more is coming for now (after batches pushed with `settled` false). Returns the
    /// consumer's waker if it was waiting on an empty queue, so that it wakes to free what a
    /// burst left it.
    pub(crate) fn settle(&self) -> Option<Waker> {
        let mut s = self.lock();
        s.settled = true;
        if s.queue.is_empty() {
            s.waker.take()
        } else {
            None
        }
    }

    /// Whether the stream has been ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Ends the stream after what is queued.
    pub(crate) fn close(&self) -> Option<Waker> {
        let mut s = self.lock();
        s.closed = true;
        s.waker.take()
    }
}

impl<T> State<T> {
    /// At least half full, in items or in bytes: the consumer is behind (and may be waiting
    /// for the producer's thread, as a task woken by a tokio worker waits for the task that
    /// woke it).
    fn behind(&self) -> bool {
        self.items >= self.capacity.div_ceil(2) || self.bytes >= self.max_bytes.div_ceil(2)
    }
}

impl<T: Weigh> State<T> {
    fn push(&mut self, item: T) {
        let weight = item.weight();
        let over_budget = self.items > 0 && self.bytes.saturating_add(weight) > self.max_bytes;
        if self.items >= self.capacity || over_budget {
            match self.queue.back_mut() {
                Some(Slot::Lagged(n)) => *n += 1,
                _ => self.queue.push_back(Slot::Lagged(1)),
            }
        } else {
            self.items += 1;
            self.bytes = self.bytes.saturating_add(weight);
            self.queue.push_back(Slot::Item(item));
        }
    }
}

/// Queues a copy of `item` in each inbox of `subs` still alive, handing `wake` the waker of
/// every consumer that was waiting.
pub(crate) fn offer<T: Clone + Weigh>(
    subs: &[Weak<Inbox<T>>],
    item: &T,
    mut wake: impl FnMut(Waker),
) {
    for inbox in subs.iter().filter_map(Weak::upgrade) {
        if let Some(w) = inbox.push(item.clone()) {
            wake(w);
        }
    }
}

/// Decides, on the consumer's task, whether an item reaches the reader; it may also finish
/// preparing it (a message's deferred payload check runs here).
pub(crate) type Admit<T> = Arc<dyn Fn(&mut T) -> bool + Send + Sync>;

/// The consuming end of an inbox: a [`Stream`] of `Result<T, Lagged>` that ends when the
/// producer closes it.
pub struct Receiver<T> {
    source: Arc<dyn Source<T>>,
    local: VecDeque<Slot<T>>,
    admit: Option<Admit<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T> Receiver<T> {
    pub(crate) fn new(source: Arc<dyn Source<T>>) -> Self {
        Self {
            source,
            local: VecDeque::new(),
            admit: None,
        }
    }

    /// A receiver that hands out only the items `admit` accepts.
    pub(crate) fn filtered(source: Arc<dyn Source<T>>, admit: Admit<T>) -> Self {
        Self {
            admit: Some(admit),
            ..Self::new(source)
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
        local + self.source.inbox().lock().items as usize
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many items this stream holds at most before it starts dropping (and reporting
    /// [`Lagged`]).
    pub fn capacity(&self) -> usize {
        self.source.inbox().lock().capacity as usize
    }
}

// The receiver never pins its items: they live in a VecDeque that moves freely.
impl<T> Unpin for Receiver<T> {}

impl<T> Stream for Receiver<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.local.is_empty() {
                let mut s = this.source.inbox().lock();
                if s.queue.is_empty() {
                    if s.closed {
                        return Poll::Ready(None);
                    }
                    s.waker = Some(cx.waker().clone());
                    if !s.settled {
                        return Poll::Pending;
                    }
                    // Caught up with a burst that is over: its buffers go back, or every
                    // channel that ever took a burst would hold them while idle.
                    let queue = take_if_large(&mut s.queue);
                    drop(s);
                    drop(queue);
                    drop(take_if_large(&mut this.local));
                    return Poll::Pending;
                }
                std::mem::swap(&mut this.local, &mut s.queue);
                s.items = 0;
                s.bytes = 0;
            }
            let mut item = match this.local.pop_front() {
                Some(Slot::Item(item)) => item,
                Some(Slot::Lagged(n)) => return Poll::Ready(Some(Err(Lagged(n)))),
                None => continue,
            };
            if this.admit.as_ref().is_none_or(|admit| admit(&mut item)) {
                return Poll::Ready(Some(Ok(item)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use futures::executor::block_on;

    /// Plain numbers are counted, not weighed.
    macro_rules! weightless {
        ($($t:ty),*) => {$(
            impl Weigh for $t {
                fn weight(&self) -> usize {
                    0
                }
            }
        )*};
    }
    weightless!(u8, i32, u32);

    /// An item that weighs its value.
    #[derive(Debug, PartialEq)]
    struct Blob(usize);

    impl Weigh for Blob {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn the_byte_budget_drops_and_reports_like_the_count() {
        let inbox = Inbox::with_budget(100, 1000);
        let mut rx = Receiver::new(inbox.clone());
        for w in [400, 400, 300, 100, 50] {
            inbox.push(Blob(w));
        }
        assert_eq!(
            block_on(rx.next()),
            Some(Ok(Blob(400))),
            "the reader takes what is queued, which frees the budget"
        );
        for w in [900, 200] {
            inbox.push(Blob(w));
        }
        inbox.close();
        let rest: Vec<_> = block_on(rx.collect::<Vec<_>>());
        assert_eq!(
            rest,
            [
                Ok(Blob(400)),
                Err(Lagged(1)),
                Ok(Blob(100)),
                Ok(Blob(50)),
                Ok(Blob(900)),
                Err(Lagged(1)),
            ],
            "300 would have made 1,100 of 1,000; 100 and 50 still fit"
        );
    }

    #[test]
    fn an_empty_queue_takes_one_item_over_the_budget() {
        let inbox = Inbox::with_budget(100, 1000);
        let mut rx = Receiver::new(inbox.clone());
        inbox.push(Blob(5000));
        inbox.push(Blob(1));
        let mut batch = Batch::default();
        batch.push(Blob(7000));
        assert!(
            inbox.push_batch(&mut batch, true).1,
            "over half the budget: behind"
        );
        assert_eq!(block_on(rx.next()), Some(Ok(Blob(5000))));
        assert_eq!(block_on(rx.next()), Some(Err(Lagged(2))));
        let mut batch = Batch::default();
        batch.push(Blob(7000));
        inbox.push_batch(&mut batch, true);
        inbox.close();
        let rest: Vec<_> = block_on(rx.collect::<Vec<_>>());
        assert_eq!(
            rest,
            [Ok(Blob(7000))],
            "a lone item handed to an empty queue"
        );
    }

    #[test]
    fn a_batch_over_the_budget_is_queued_item_by_item() {
        let inbox = Inbox::with_budget(100, 1000);
        let mut rx = Receiver::new(inbox.clone());
        let mut batch = Batch::default();
        for w in [600, 600, 300] {
            batch.push(Blob(w));
        }
        assert_eq!(batch.bytes, 1500);
        inbox.push_batch(&mut batch, true);
        assert!(batch.is_empty() && batch.bytes == 0);
        // Under the budget, the batch trades places with the empty queue.
        let mut batch = Batch::default();
        batch.push(Blob(10));
        let got: Vec<_> = {
            let first = block_on(rx.next());
            let second = block_on(rx.next());
            let third = block_on(rx.next());
            vec![first, second, third]
        };
        assert_eq!(
            got,
            [
                Some(Ok(Blob(600))),
                Some(Err(Lagged(1))),
                Some(Ok(Blob(300)))
            ]
        );
        inbox.push_batch(&mut batch, true);
        assert_eq!(inbox.lock().bytes, 10);
        inbox.close();
        assert_eq!(block_on(rx.collect::<Vec<_>>()), [Ok(Blob(10))]);
    }

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
        let mut batch = Batch::default();
        for i in 1..6 {
            batch.push(i);
        }
        assert!(inbox.push_batch(&mut batch, true).0.is_none());
        assert!(batch.slots.is_empty());
        inbox.close();
        let got: Vec<_> = block_on(rx.by_ref().collect::<Vec<_>>());
        assert_eq!(got, [Ok(0), Ok(1), Ok(2), Err(Lagged(3))]);
    }

    #[test]
    fn a_batch_says_when_its_queue_is_half_full() {
        let inbox = Inbox::new(8);
        let mut rx = Receiver::new(inbox.clone());
        assert!(!burst(&inbox, 3, false), "3 of 8");
        assert!(burst(&inbox, 1, false), "4 of 8");
        assert_eq!(drain(&mut rx).0, 4);
        assert!(!burst(&inbox, 3, false), "read, then 3 of 8 again");
        assert!(burst(&inbox, 20, false), "full, with items lost");
        let odd = Inbox::new(3);
        assert!(!burst(&odd, 1, false), "1 of 3");
        assert!(burst(&odd, 1, false), "2 of 3 (half, rounded up)");
    }

    #[test]
    fn a_batch_handed_to_an_empty_queue_respects_capacity_and_order() {
        let inbox = Inbox::new(3);
        let mut rx = Receiver::new(inbox.clone());
        let mut batch = Batch::default();
        for round in 0..3 {
            // Fits in an empty queue: traded whole, and counted against the capacity.
            batch.push(round * 10);
            batch.push(round * 10 + 1);
            inbox.push_batch(&mut batch, true);
            assert!(batch.slots.is_empty());
            assert_eq!(rx.len(), 2);
            inbox.push(round * 10 + 2);
            inbox.push(round * 10 + 3);
            let got: Vec<_> = (0..3).map(|_| block_on(rx.next()).unwrap()).collect();
            assert_eq!(
                got,
                [Ok(round * 10), Ok(round * 10 + 1), Ok(round * 10 + 2)]
            );
            assert_eq!(block_on(rx.next()), Some(Err(Lagged(1))));
        }
        // Larger than the capacity: pushed one by one, the rest counted.
        for i in 0..5 {
            batch.push(i);
        }
        inbox.push_batch(&mut batch, true);
        inbox.close();
        let got: Vec<_> = block_on(rx.collect::<Vec<_>>());
        assert_eq!(got, [Ok(0), Ok(1), Ok(2), Err(Lagged(2))]);
    }

    #[test]
    fn a_filtered_receiver_skips_refused_items_and_keeps_lag_markers_in_place() {
        let inbox = Inbox::new(4);
        let admit: Admit<i32> = Arc::new(|item: &mut i32| {
            *item *= 10;
            *item != 20
        });
        let mut rx = Receiver::filtered(inbox.clone(), admit);
        for i in 1..=6 {
            inbox.push(i);
        }
        inbox.push(7);
        inbox.close();
        let got: Vec<_> = block_on(rx.by_ref().collect::<Vec<_>>());
        assert_eq!(got, [Ok(10), Ok(30), Ok(40), Err(Lagged(3))]);
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

    /// Polls `rx` until it has nothing more: what it read, and its (and its queue's) capacity.
    fn drain(rx: &mut Receiver<u32>) -> (usize, usize, usize) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut read = 0;
        while let Poll::Ready(Some(item)) = Pin::new(&mut *rx).poll_next(&mut cx) {
            assert!(item.is_ok());
            read += 1;
        }
        let queue = rx.source.inbox().lock().queue.capacity();
        (read, rx.local.capacity(), queue)
    }

    fn assert_freed((read, local, queue): (usize, usize, usize), expected: usize) {
        assert_eq!(read, expected);
        assert!(
            local <= KEEP_SLOTS && queue <= KEEP_SLOTS,
            "{local} {queue}"
        );
    }

    /// Pushes `n` items in one batch; whether the queue is then behind.
    fn burst(inbox: &Inbox<u32>, n: u32, settled: bool) -> bool {
        let mut batch = Batch::default();
        for i in 0..n {
            batch.push(i);
        }
        inbox.push_batch(&mut batch, settled).1
    }

    #[test]
    fn a_burst_keeps_its_buffers_while_it_lasts_and_frees_them_once_over() {
        let inbox = Inbox::new(4096);
        let mut rx = Receiver::new(inbox.clone());
        // A flood: each batch trades places with the emptied queue, no buffer is freed.
        burst(&inbox, 1024, false);
        let (read, local, _) = drain(&mut rx);
        assert_eq!(read, 1024);
        assert!(
            local >= 1024,
            "the reader keeps the batch's buffer mid-burst"
        );
        burst(&inbox, 1024, false);
        let (read, local, queue) = drain(&mut rx);
        assert_eq!(read, 1024);
        assert!(local >= 1024 && queue >= 1024, "{local} {queue}");
        // The connection ran dry: the reader, waiting, is woken to free both.
        assert!(inbox.settle().is_some(), "a waiting reader is woken");
        assert_freed(drain(&mut rx), 0);
        // A burst that ends with its last batch is freed as soon as it is read.
        burst(&inbox, 1024, true);
        assert_freed(drain(&mut rx), 1024);
        // A queue grown item by item (more than a batch can trade for) too.
        burst(&inbox, 10, false);
        burst(&inbox, 1000, true);
        assert_eq!(drain(&mut rx), (1010, 0, 0));
    }

    #[test]
    fn a_trimmed_batch_frees_only_a_burst_sized_buffer() {
        let mut batch = Batch::<u32>::default();
        for i in 0..10 {
            batch.push(i);
        }
        batch.clear();
        batch.trim();
        assert!(batch.slots.capacity() >= 10, "a small buffer is kept");
        for i in 0..1000 {
            batch.push(i);
        }
        batch.trim();
        assert_eq!(batch.slots.len(), 1000, "a batch in use is never freed");
        batch.clear();
        batch.trim();
        assert_eq!(batch.slots.capacity(), 0);
    }
}
