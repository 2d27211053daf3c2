//! The batch cache: the most recently appended batches of one log, kept as
//! the very `Bytes` that were appended, within a byte budget.
//!
//! With direct I/O there is no page cache, so this is what lets a tailing
//! consumer read new data without a disk read or a copy.
//!
//! Invariants: entries are contiguous in offset order (each starts where the
//! previous ended) and end at the log end; `bytes` is the sum of their sizes
//! and, after every insert, at most `budget_bytes` (an entry larger than the
//! whole budget is not cached).

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

/// A byte budget shared by the batch caches of every log on one shard, so
/// that the shard's cache memory is bounded whatever its partition count.
/// A cache that inserts while the shard is over budget evicts its own
/// oldest batches first (so the busiest partitions recycle their memory).
#[derive(Debug)]
pub struct CacheBudget {
    max_bytes: usize,
    used: Cell<usize>,
}

impl CacheBudget {
    pub fn new(max_bytes: usize) -> Rc<CacheBudget> {
        Rc::new(CacheBudget {
            max_bytes,
            used: Cell::new(0),
        })
    }

    /// Bytes held by all caches sharing this budget.
    pub fn used_bytes(&self) -> usize {
        self.used.get()
    }

    fn over(&self) -> bool {
        self.used.get() > self.max_bytes
    }
}

#[derive(Debug)]
struct Entry {
    base_offset: i64,
    next_offset: i64,
    batch: Bytes,
}

/// Recent batches of one log, newest last.
#[derive(Debug)]
pub struct BatchCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    budget_bytes: usize,
    shared: Option<Rc<CacheBudget>>,
    hits: u64,
    misses: u64,
}

impl BatchCache {
    pub fn new(budget_bytes: usize) -> Self {
        Self::with_shared(budget_bytes, None)
    }

    /// A cache of at most `budget_bytes` that also counts against `shared`.
    pub fn with_shared(budget_bytes: usize, shared: Option<Rc<CacheBudget>>) -> Self {
        BatchCache {
            entries: VecDeque::new(),
            bytes: 0,
            budget_bytes,
            shared,
            hits: 0,
            misses: 0,
        }
    }

    fn add_bytes(&mut self, n: usize) {
        self.bytes += n;
        if let Some(s) = &self.shared {
            s.used.set(s.used.get() + n);
        }
    }

    fn sub_bytes(&mut self, n: usize) {
        self.bytes -= n;
        if let Some(s) = &self.shared {
            s.used.set(s.used.get() - n);
        }
    }

    fn shared_over(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.over())
    }

    /// Adds the batch that was just appended, covering `[base_offset, next_offset)`.
    pub fn insert(&mut self, base_offset: i64, next_offset: i64, batch: Bytes) {
        if let Some(last) = self.entries.back() {
            if last.next_offset != base_offset {
                // Not contiguous (never expected after truncate/clear); restart.
                self.clear();
            }
        }
        if batch.len() > self.budget_bytes {
            self.clear();
            return;
        }
        self.add_bytes(batch.len());
        self.entries.push_back(Entry {
            base_offset,
            next_offset,
            batch,
        });
        // Evict our oldest while over our own budget, or while the shard is
        // over its budget (but keep the batch just added).
        while self.bytes > self.budget_bytes || (self.shared_over() && self.entries.len() > 1) {
            match self.entries.pop_front() {
                Some(old) => self.sub_bytes(old.batch.len()),
                None => break,
            }
        }
    }

    /// First offset the cache can serve, if any.
    pub fn first_offset(&self) -> Option<i64> {
        self.entries.front().map(|e| e.base_offset)
    }

    /// Batches holding `offset` and after, whole, up to `max_bytes` (at least
    /// one batch), stopping before any batch that starts at or after
    /// `max_offset`. `None` when the cache does not hold `offset`.
    pub fn read(&mut self, offset: i64, max_bytes: usize, max_offset: i64) -> Option<(Vec<Bytes>, usize, i64)> {
        let first = match self.first_offset() {
            Some(first) if first <= offset => first,
            _ => {
                self.misses += 1;
                return None;
            }
        };
        debug_assert!(first <= offset);
        let start = self.entries.partition_point(|e| e.next_offset <= offset);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = offset;
        for entry in self.entries.iter().skip(start) {
            if entry.base_offset >= max_offset {
                break;
            }
            if !out.is_empty() && bytes + entry.batch.len() > max_bytes {
                break;
            }
            bytes += entry.batch.len();
            next = entry.next_offset;
            out.push(entry.batch.clone());
        }
        self.hits += 1;
        Some((out, bytes, next))
    }

    /// Drops every batch that ends after `offset` (truncation).
    pub fn truncate_to(&mut self, offset: i64) {
        while let Some(last) = self.entries.back() {
            if last.next_offset <= offset {
                break;
            }
            if let Some(e) = self.entries.pop_back() {
                self.sub_bytes(e.batch.len());
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        let held = self.bytes;
        self.sub_bytes(held);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// (hits, misses) since the cache was made.
    pub fn hit_counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

impl Drop for BatchCache {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn evicts_oldest_within_budget_and_serves_same_bytes() {
        let mut cache = BatchCache::new(250);
        let b0 = batch(100);
        cache.insert(0, 10, b0.clone());
        cache.insert(10, 20, batch(100));
        cache.insert(20, 30, batch(100));
        assert_eq!(cache.bytes(), 200);
        assert_eq!(cache.first_offset(), Some(10));
        assert!(cache.read(5, 1000, i64::MAX).is_none());
        let (got, bytes, next) = cache.read(15, 1000, i64::MAX).expect("cached");
        assert_eq!((got.len(), bytes, next), (2, 200, 30));
        // max_bytes stops after the first batch but always returns one.
        let (got, _, next) = cache.read(10, 1, i64::MAX).expect("cached");
        assert_eq!((got.len(), next), (1, 20));
        // max_offset bounds what is visible.
        let (got, _, next) = cache.read(10, 1000, 20).expect("cached");
        assert_eq!((got.len(), next), (1, 20));
        // zero copy: the served Bytes points at the inserted memory.
        let mut c2 = BatchCache::new(1000);
        c2.insert(0, 10, b0.clone());
        let (got, _, _) = c2.read(0, 1000, i64::MAX).expect("cached");
        assert_eq!(got[0].as_ptr(), b0.as_ptr());
    }

    #[test]
    fn truncate_and_oversized() {
        let mut cache = BatchCache::new(250);
        cache.insert(0, 10, batch(100));
        cache.insert(10, 20, batch(100));
        cache.truncate_to(15);
        assert_eq!(cache.bytes(), 100);
        cache.insert(10, 12, batch(50));
        assert_eq!(cache.bytes(), 150);
        cache.insert(12, 13, batch(300));
        assert_eq!(cache.bytes(), 0);
        assert!(cache.read(12, 10, i64::MAX).is_none());
    }

    #[test]
    fn shared_budget_bounds_all_caches_and_is_released() {
        let budget = CacheBudget::new(300);
        let mut a = BatchCache::with_shared(1000, Some(budget.clone()));
        let mut b = BatchCache::with_shared(1000, Some(budget.clone()));
        a.insert(0, 1, batch(100));
        a.insert(1, 2, batch(100));
        b.insert(0, 1, batch(100));
        assert_eq!(budget.used_bytes(), 300);
        // b goes over the shard budget: it evicts its own oldest first, but
        // keeps the batch it just added.
        b.insert(1, 2, batch(100));
        assert_eq!((a.bytes(), b.bytes(), budget.used_bytes()), (200, 100, 300));
        a.insert(2, 3, batch(100));
        assert_eq!((a.bytes(), budget.used_bytes()), (200, 300));
        drop(a);
        assert_eq!(budget.used_bytes(), 100);
        b.truncate_to(0);
        assert_eq!(budget.used_bytes(), 0);
    }
}
