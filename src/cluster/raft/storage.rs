//! The raft log's storage: what a node must keep across a crash (hard
//! state, log entries, the last snapshot) behind [`LogStorage`], with an
//! in-memory implementation ([`MemStorage`], whose [`MemDisk`] outlives a
//! simulated crash) and a file-backed one (`FileStorage`).
//!
//! Both keep the whole (compacted) log in memory in a [`LogCache`], which
//! is what raft-rs reads through [`raft::Storage`]; writes go to the
//! backing store first and reach the cache only once durable, so the cache
//! never claims more than a restart would find.
//!
//! Invariants of a [`LogCache`] (checked on every write, and by
//! `FileStorage` again when it reads the files back):
//! - the log is contiguous: entry `i` has index `boundary_index + 1 + i`;
//! - `boundary_index` is at most the snapshot's index (entries between the
//!   two are kept so that a follower slightly behind catches up from the
//!   log, not by snapshot), and the log holds the snapshot's index with
//!   the snapshot's term when they differ;
//! - `boundary_index <= hard_state.commit <= last_index`.

use std::cell::RefCell;
use std::rc::Rc;

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};

use super::error::StorageError;

/// The in-memory image of a node's raft storage.
#[derive(Debug, Clone, Default)]
pub struct LogCache {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    boundary_index: u64,
    boundary_term: u64,
    entries: Vec<Entry>,
}

impl LogCache {
    /// Builds a cache from what was read back from disk, checking every
    /// invariant.
    pub(crate) fn from_parts(
        hard_state: HardState,
        snapshot: Option<Snapshot>,
        boundary: (u64, u64),
        entries: Vec<Entry>,
    ) -> Result<Self, String> {
        let cache = LogCache {
            hard_state,
            snapshot,
            boundary_index: boundary.0,
            boundary_term: boundary.1,
            entries,
        };
        cache.check()?;
        Ok(cache)
    }

    fn check(&self) -> Result<(), String> {
        let mut prev_term = self.boundary_term;
        for (i, e) in self.entries.iter().enumerate() {
            let want = self.boundary_index + 1 + i as u64;
            if e.index != want {
                return Err(format!("log entry {i} has index {}, expected {want}", e.index));
            }
            if e.term < prev_term {
                return Err(format!(
                    "log entry {} has term {} after term {prev_term}",
                    e.index, e.term
                ));
            }
            prev_term = e.term;
        }
        if let Some(snap) = &self.snapshot {
            let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
            if index < self.boundary_index {
                return Err(format!(
                    "snapshot index {index} is below the log start {}",
                    self.boundary_index
                ));
            }
            if self.term(index) != Some(term) {
                return Err(format!(
                    "the log does not hold the snapshot's index {index} with its term {term}"
                ));
            }
        } else if self.boundary_index != 0 {
            return Err(format!(
                "the log starts after {} but there is no snapshot",
                self.boundary_index
            ));
        }
        let commit = self.hard_state.commit;
        if commit < self.boundary_index || commit > self.last_index() {
            return Err(format!(
                "commit index {commit} is outside the log [{}, {}]",
                self.boundary_index,
                self.last_index()
            ));
        }
        Ok(())
    }

    /// The persisted term, vote and commit index.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The last snapshot taken or received, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The index and term just below the first entry held.
    pub fn boundary(&self) -> (u64, u64) {
        (self.boundary_index, self.boundary_term)
    }

    /// The entries held, in index order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The index of the first entry held (one past the boundary).
    pub fn first_index(&self) -> u64 {
        self.boundary_index + 1
    }

    /// The index of the last entry held (the boundary when the log is empty).
    pub fn last_index(&self) -> u64 {
        self.boundary_index + self.entries.len() as u64
    }

    /// The term of the entry at `index`, if it is held or is the boundary.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.boundary_index {
            return Some(self.boundary_term);
        }
        self.entry(index).map(|e| e.term)
    }

    fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// How many held entries survive appending `entries` (those after are
    /// overwritten); refuses a gap or an overwrite below the boundary.
    pub(crate) fn plan_append(&self, entries: &[Entry]) -> Result<usize, StorageError> {
        let Some(first) = entries.first() else {
            return Ok(self.entries.len());
        };
        if first.index <= self.boundary_index || first.index > self.last_index() + 1 {
            return Err(StorageError::Invariant(format!(
                "append at {} outside ({}, {}]",
                first.index,
                self.boundary_index,
                self.last_index() + 1
            )));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.index != first.index + i as u64 {
                return Err(StorageError::Invariant(format!(
                    "appended entries are not contiguous at {}",
                    e.index
                )));
            }
        }
        Ok((first.index - self.first_index()) as usize)
    }

    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let keep = self.plan_append(entries)?;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    pub(crate) fn set_hard_state(&mut self, hs: &HardState) {
        self.hard_state = hs.clone();
    }

    /// Refuses a snapshot from the leader that does not move past what is held.
    pub(crate) fn plan_install(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let index = snapshot.get_metadata().index;
        let own = self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        if index <= self.boundary_index || index < own {
            return Err(StorageError::Invariant(format!(
                "snapshot at {index} does not move past the log start {} / snapshot {own}",
                self.boundary_index
            )));
        }
        Ok(())
    }

    /// Replaces the whole log with the leader's snapshot.
    pub(crate) fn install(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.plan_install(snapshot)?;
        let meta = snapshot.get_metadata();
        self.boundary_index = meta.index;
        self.boundary_term = meta.term;
        self.entries.clear();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }

    /// The boundary after compacting below `compact_index` for `snapshot`
    /// (never backwards), after checking that the log holds the snapshot.
    pub(crate) fn plan_compact(&self, snapshot: &Snapshot, compact_index: u64) -> Result<(u64, u64), StorageError> {
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        let own = self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        if index < own || compact_index > index || self.term(index) != Some(term) || index > self.hard_state.commit {
            return Err(StorageError::Invariant(format!(
                "cannot compact to {compact_index} for snapshot {index}/{term}: log ({}, {}], commit {}, snapshot {own}",
                self.boundary_index,
                self.last_index(),
                self.hard_state.commit
            )));
        }
        let boundary = compact_index.max(self.boundary_index);
        let term = self
            .term(boundary)
            .ok_or_else(|| StorageError::Invariant(format!("no term at {boundary}")))?;
        Ok((boundary, term))
    }

    /// Keeps `snapshot` and drops the entries up to `compact_index`.
    pub(crate) fn compact(&mut self, snapshot: &Snapshot, compact_index: u64) -> Result<(), StorageError> {
        let (boundary, term) = self.plan_compact(snapshot, compact_index)?;
        let drop = (boundary - self.boundary_index) as usize;
        self.entries.drain(..drop);
        self.boundary_index = boundary;
        self.boundary_term = term;
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }
}

/// Durable storage of one node's raft log, hard state and snapshot.
///
/// Each write returns once it is durable (a restart finds it); a failed
/// write leaves the storage refusing further writes until reopened.
pub trait LogStorage {
    /// What is stored, as raft-rs reads it.
    fn cache(&self) -> &LogCache;
    /// Appends `entries`, first dropping held entries at and after the
    /// first one's index (a new leader overwriting an uncommitted tail).
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    /// Stores the term, vote and commit index.
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError>;
    /// Replaces the whole log with a snapshot received from the leader.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;
    /// Stores a snapshot of the local state machine and drops the entries up
    /// to `compact_index` (at most the snapshot's index).
    fn compact(&mut self, snapshot: &Snapshot, compact_index: u64) -> Result<(), StorageError>;
}

/// The "disk" of a [`MemStorage`]: it outlives the node, so that a test can
/// drop a node (a crash) and open a new one on the same disk (a restart).
/// Clones share the disk.
#[derive(Debug, Clone, Default)]
pub struct MemDisk(Rc<RefCell<MemDiskState>>);

#[derive(Debug, Default)]
struct MemDiskState {
    image: LogCache,
    fail_writes: bool,
}

impl MemDisk {
    /// A fresh, empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// While set, every write fails as a full or broken disk would.
    pub fn fail_writes(&self, fail: bool) {
        self.0.borrow_mut().fail_writes = fail;
    }

    /// A copy of what is on the disk.
    pub fn image(&self) -> LogCache {
        self.0.borrow().image.clone()
    }
}

/// In-memory [`LogStorage`] over a [`MemDisk`], for tests and simulation.
#[derive(Debug)]
pub struct MemStorage {
    cache: LogCache,
    disk: MemDisk,
    failed: Option<String>,
}

impl MemStorage {
    /// Opens the storage on `disk` as a restarted process would: it finds
    /// exactly what earlier writes made durable.
    pub fn open(disk: &MemDisk) -> Self {
        MemStorage {
            cache: disk.image(),
            disk: disk.clone(),
            failed: None,
        }
    }

    /// Storage on a fresh disk of its own.
    pub fn new() -> Self {
        Self::open(&MemDisk::new())
    }

    /// Runs `write` on the disk image then on the cache, or fails as a
    /// broken disk would (and stays failed).
    fn write(&mut self, write: impl Fn(&mut LogCache) -> Result<(), StorageError>) -> Result<(), StorageError> {
        if let Some(reason) = &self.failed {
            return Err(StorageError::Failed { reason: reason.clone() });
        }
        let mut disk = self.disk.0.borrow_mut();
        if disk.fail_writes {
            let err = StorageError::io("write", "<memory>", std::io::Error::other("injected write failure"));
            self.failed = Some(err.to_string());
            return Err(err);
        }
        write(&mut disk.image)?;
        write(&mut self.cache)
    }
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl LogStorage for MemStorage {
    fn cache(&self) -> &LogCache {
        &self.cache
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.cache.plan_append(entries)?;
        self.write(|c| c.append(entries))
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.write(|c| {
            c.set_hard_state(hs);
            Ok(())
        })
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.cache.plan_install(snapshot)?;
        self.write(|c| c.install(snapshot))
    }

    fn compact(&mut self, snapshot: &Snapshot, compact_index: u64) -> Result<(), StorageError> {
        self.cache.plan_compact(snapshot, compact_index)?;
        self.write(|c| c.compact(snapshot, compact_index))
    }
}

/// What raft-rs holds: the node's storage plus the static voter set, which
/// is the configuration until a snapshot carries one.
pub(crate) struct RaftStore<St> {
    pub(crate) inner: St,
    pub(crate) voters: ConfState,
}

impl<St: LogStorage> raft::Storage for RaftStore<St> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let cache = self.inner.cache();
        let conf_state = match cache.snapshot() {
            Some(snap) => snap.get_metadata().get_conf_state().clone(),
            None => self.voters.clone(),
        };
        Ok(RaftState::new(cache.hard_state().clone(), conf_state))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let cache = self.inner.cache();
        if low < cache.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > cache.last_index() + 1 || low > high {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let from = (low - cache.first_index()) as usize;
        let to = (high - cache.first_index()) as usize;
        let mut entries = cache.entries()[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let cache = self.inner.cache();
        match cache.term(idx) {
            Some(term) => Ok(term),
            None if idx < cache.first_index() => Err(raft::Error::Store(RaftStorageError::Compacted)),
            None => Err(raft::Error::Store(RaftStorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.cache().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner.cache().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match self.inner.cache().snapshot() {
            Some(snap) if snap.get_metadata().index >= request_index => Ok(snap.clone()),
            _ => Err(raft::Error::Store(RaftStorageError::SnapshotTemporarilyUnavailable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![1, index as u8].into(),
            ..Default::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        s.data = vec![7; 3].into();
        s
    }

    fn committed(st: &mut MemStorage, commit: u64) {
        let mut hs = st.cache().hard_state().clone();
        hs.commit = commit;
        st.set_hard_state(&hs).expect("hard state");
    }

    #[test]
    fn append_overwrites_the_tail_and_refuses_gaps() {
        let mut st = MemStorage::new();
        st.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).expect("append");
        st.append(&[entry(2, 2)]).expect("overwrite");
        assert_eq!(st.cache().last_index(), 2);
        assert_eq!(st.cache().term(2), Some(2));
        assert!(matches!(st.append(&[entry(4, 2)]), Err(StorageError::Invariant(_))));
        assert!(matches!(
            st.append(&[entry(3, 2), entry(5, 2)]),
            Err(StorageError::Invariant(_))
        ));
        assert_eq!(st.cache().last_index(), 2, "a refused append changes nothing");
    }

    #[test]
    fn compaction_keeps_a_margin_and_install_replaces_everything() {
        let mut st = MemStorage::new();
        let ents: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
        st.append(&ents).expect("append");
        assert!(
            st.compact(&snapshot(8, 1), 5).is_err(),
            "cannot snapshot beyond the commit index"
        );
        committed(&mut st, 9);
        st.compact(&snapshot(8, 1), 5).expect("compact");
        assert_eq!((st.cache().first_index(), st.cache().last_index()), (6, 10));
        assert_eq!(st.cache().term(5), Some(1));
        assert!(
            matches!(st.compact(&snapshot(8, 2), 8), Err(StorageError::Invariant(_))),
            "wrong term"
        );
        st.install_snapshot(&snapshot(20, 3)).expect("install");
        assert_eq!((st.cache().first_index(), st.cache().last_index()), (21, 20));
        assert_eq!(st.cache().hard_state().commit, 20);
        assert_eq!(st.cache().hard_state().term, 3);
        assert!(
            st.install_snapshot(&snapshot(15, 3)).is_err(),
            "an older snapshot is refused"
        );
    }

    #[test]
    fn the_disk_outlives_the_node_and_a_failed_disk_stays_failed() {
        let disk = MemDisk::new();
        let mut st = MemStorage::open(&disk);
        st.append(&[entry(1, 1)]).expect("append");
        disk.fail_writes(true);
        assert!(matches!(st.append(&[entry(2, 1)]), Err(StorageError::Io { .. })));
        disk.fail_writes(false);
        assert!(matches!(st.append(&[entry(2, 1)]), Err(StorageError::Failed { .. })));
        let reopened = MemStorage::open(&disk);
        assert_eq!(reopened.cache().last_index(), 1);
    }

    #[test]
    fn raft_reads_what_is_held() {
        use raft::Storage;
        let mut st = MemStorage::new();
        st.append(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .expect("append");
        committed(&mut st, 6);
        st.compact(&snapshot(4, 1), 3).expect("compact");
        let rs = RaftStore {
            inner: st,
            voters: ConfState::from((vec![1, 2, 3], vec![])),
        };
        assert_eq!(rs.first_index().ok(), Some(4));
        assert_eq!(rs.term(3).ok(), Some(1));
        assert!(matches!(
            rs.term(2),
            Err(raft::Error::Store(RaftStorageError::Compacted))
        ));
        assert!(matches!(
            rs.term(7),
            Err(raft::Error::Store(RaftStorageError::Unavailable))
        ));
        let got = rs
            .entries(4, 7, None, GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert!(rs.entries(3, 5, None, GetEntriesContext::empty(false)).is_err());
        assert!(rs.entries(4, 8, None, GetEntriesContext::empty(false)).is_err());
        assert_eq!(rs.snapshot(4, 2).map(|s| s.get_metadata().index).ok(), Some(4));
        assert!(rs.snapshot(5, 2).is_err());
    }
}
