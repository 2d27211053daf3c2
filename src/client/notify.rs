//! `Notify`, a shard-local "something changed" signal many tasks can wait
//! on, and `timeout`, a deadline around any future.
//!
//! A `Notified` future captures the generation when it is created and is
//! ready once any `notify_all` happens after that: a waiter that creates
//! its future before checking the state it waits on never misses a wakeup.
//! `!Send`: used by one executor thread only.
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Wakes every waiter on each `notify_all`.
#[derive(Debug, Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Bumps the generation and wakes every registered waiter.
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// A future that is ready after the next `notify_all`.
    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

/// Ready once the `Notify` it came from is notified after its creation.
#[derive(Debug)]
pub(crate) struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        // A waiter polled again re-registers; drop its stale waker so the
        // list stays bounded by the number of live waiters.
        waiters.retain(|w| !w.will_wake(cx.waker()));
        waiters.push(cx.waker().clone());
        Poll::Pending
    }
}

/// Runs `fut` for at most `limit`: `None` if the time ran out first.
/// Needs a glommio executor (its timer).
pub(crate) async fn timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notified_created_before_notify_is_ready() {
        let n = Notify::default();
        let waiter = n.notified();
        n.notify_all();
        futures_lite::future::block_on(waiter);
    }

    #[test]
    fn notified_waits_for_a_later_notify() {
        let n = Notify::default();
        let mut waiter = Box::pin(n.notified());
        assert!(futures_lite::future::block_on(futures_lite::future::poll_once(&mut waiter)).is_none());
        assert!(futures_lite::future::block_on(futures_lite::future::poll_once(&mut waiter)).is_none());
        assert_eq!(n.waiters.borrow().len(), 1, "a re-polled waiter registers once");
        n.notify_all();
        assert!(futures_lite::future::block_on(futures_lite::future::poll_once(&mut waiter)).is_some());
    }
}
