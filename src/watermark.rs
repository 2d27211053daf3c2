//! A shard-local monotonic watermark that async tasks can wait on.
//!
//! Owned by one shard (it is `!Send`); used for "log end reached offset N"
//! (long-poll fetch) and "durable up to offset N" (acks waiting on group
//! commit). A waiter that is dropped (a timed-out long poll) removes itself,
//! so abandoned waits never accumulate.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A value that waiters can await reaching a target.
#[derive(Debug, Default)]
pub struct Watermark {
    value: Cell<i64>,
    next_waiter_id: Cell<u64>,
    waiters: RefCell<BTreeMap<u64, (i64, Waker)>>,
}

impl Watermark {
    /// A watermark starting at `value`.
    pub fn new(value: i64) -> Self {
        Watermark {
            value: Cell::new(value),
            ..Default::default()
        }
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.get()
    }

    /// Sets the value (it may move backwards, e.g. on truncation) and wakes
    /// every waiter whose target is now reached.
    pub fn set(&self, value: i64) {
        self.value.set(value);
        let ready: Vec<Waker> = {
            let mut waiters = self.waiters.borrow_mut();
            let ids: Vec<u64> = waiters
                .iter()
                .filter(|(_, (target, _))| *target <= value)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| waiters.remove(&id))
                .map(|(_, w)| w)
                .collect()
        };
        for waker in ready {
            waker.wake();
        }
    }

    /// Raises the value to `value` if that is higher; never lowers it.
    pub fn advance(&self, value: i64) {
        if value > self.value.get() {
            self.set(value);
        }
    }

    /// Wakes every waiter, reached or not (they re-check their condition).
    pub fn wake_all(&self) {
        let all: Vec<Waker> = std::mem::take(&mut *self.waiters.borrow_mut())
            .into_values()
            .map(|(_, w)| w)
            .collect();
        for waker in all {
            waker.wake();
        }
    }

    /// Completes when the value is at least `target`, or when `wake_all` is
    /// called; returns the value seen.
    pub fn wait_for(&self, target: i64) -> WaitFor<'_> {
        WaitFor {
            mark: self,
            target,
            id: None,
        }
    }

    /// Number of registered waiters (for tests and metrics).
    pub fn waiter_count(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// Future returned by [`Watermark::wait_for`].
#[derive(Debug)]
pub struct WaitFor<'a> {
    mark: &'a Watermark,
    target: i64,
    id: Option<u64>,
}

impl Future for WaitFor<'_> {
    type Output = i64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i64> {
        let value = self.mark.value.get();
        if value >= self.target {
            if let Some(id) = self.id.take() {
                self.mark.waiters.borrow_mut().remove(&id);
            }
            return Poll::Ready(value);
        }
        match self.id {
            // Registered before: if our entry is gone we were woken by
            // `wake_all`; report the current value and let the caller decide.
            Some(id) => {
                let mut waiters = self.mark.waiters.borrow_mut();
                match waiters.get_mut(&id) {
                    Some(entry) => {
                        entry.1.clone_from(cx.waker());
                        Poll::Pending
                    }
                    None => {
                        drop(waiters);
                        self.id = None;
                        Poll::Ready(value)
                    }
                }
            }
            None => {
                let id = self.mark.next_waiter_id.get();
                self.mark.next_waiter_id.set(id + 1);
                self.mark
                    .waiters
                    .borrow_mut()
                    .insert(id, (self.target, cx.waker().clone()));
                self.id = Some(id);
                Poll::Pending
            }
        }
    }
}

impl Drop for WaitFor<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.mark.waiters.borrow_mut().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn waits_until_target_and_cleans_up() {
        let mark = Watermark::new(5);
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(mark.wait_for(10));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(mark.waiter_count(), 1);
        mark.advance(9);
        assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
        mark.advance(10);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(10));
        assert_eq!(mark.waiter_count(), 0);
    }

    #[test]
    fn dropped_waiter_is_removed_and_advance_never_lowers() {
        let mark = Watermark::new(0);
        let waker = Waker::from(Arc::new(Flag(false.into())));
        let mut cx = Context::from_waker(&waker);
        {
            let mut fut = Box::pin(mark.wait_for(3));
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert_eq!(mark.waiter_count(), 1);
        }
        assert_eq!(mark.waiter_count(), 0);
        mark.advance(7);
        mark.advance(2);
        assert_eq!(mark.get(), 7);
        mark.set(2);
        assert_eq!(mark.get(), 2);
    }

    #[test]
    fn wake_all_releases_waiters_below_target() {
        let mark = Watermark::new(0);
        let waker = Waker::from(Arc::new(Flag(false.into())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(mark.wait_for(100));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        mark.wake_all();
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(0));
    }
}
