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

use std::collections::VecDeque;

use bytes::Bytes;

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
    hits: u64,
    misses: u64,
}

impl BatchCache {
    pub fn new(budget_bytes: usize) -> Self {
        BatchCache {
            entries: VecDeque::new(),
            bytes: 0,
            budget_bytes,
            hits: 0,
            misses: 0,
        }
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
        self.bytes += batch.len();
        self.entries.push_back(Entry {
            base_offset,
            next_offset,
            batch,
        });
        while self.bytes > self.budget_bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.batch.len(),
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
                self.bytes -= e.batch.len();
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// (hits, misses) since the cache was made.
    pub fn hit_counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
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
}
