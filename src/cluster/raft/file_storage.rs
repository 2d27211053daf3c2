//! [`FileStorage`]: the controller's raft log in `<data_dir>/raft/`.
//!
//! ```text
//! <data_dir>/raft/hard_state  frame "SLRH": protobuf HardState (term, vote, commit)
//! <data_dir>/raft/snapshot    frame "SLRS": protobuf Snapshot (metadata + state-machine bytes)
//! <data_dir>/raft/log         frame "SLRL": boundary index u64 LE, boundary term u64 LE;
//!                             then records: len u32 LE | crc32c u32 LE | protobuf Entry
//! ```
//! (frames: see `frame.rs`: magic, version, length, CRC-32C.)
//!
//! Durability: `hard_state` and `snapshot` are replaced atomically (write
//! a `.tmp`, fsync, rename, fsync the directory); appends to `log` are
//! fsynced (fdatasync) before they return; compaction and snapshot
//! installation rewrite `log` the same atomic way, after the snapshot is
//! durable. A crash between the two leaves an older log beside a newer
//! snapshot, which opening reconciles: entries the snapshot covers are
//! dropped, and a log that does not hold the snapshot's index with its
//! term (a leader's snapshot replacing a divergent log) is discarded.
//!
//! Opening truncates a torn tail (a last record cut short, or zeros where
//! a record should be: a write that never completed, hence was never
//! acknowledged); any other damage (a bad checksum in the middle, an
//! unknown version, a gap) is [`StorageError::Corrupt`] naming the file,
//! and nothing is changed.
//!
//! This is blocking `std::fs`, on purpose: the controller's log is small
//! (compacted every few thousand entries), written at metadata rates, by
//! shard 0 only; the partition logs use direct I/O on glommio instead.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};

use super::error::StorageError;
use super::frame::{self, FRAME_HEADER_BYTES, MAGIC_HARD_STATE, MAGIC_LOG, MAGIC_SNAPSHOT};
use super::storage::{LogCache, LogStorage};

/// Largest log record (one entry) read or written.
pub const ENTRY_BYTES_MAX: usize = 16 << 20;
/// Largest snapshot file read or written.
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;
const HARD_STATE_BYTES_MAX: usize = 256;
const LOG_HEADER_PAYLOAD_BYTES: usize = 16;
const LOG_HEADER_BYTES: u64 = (FRAME_HEADER_BYTES + LOG_HEADER_PAYLOAD_BYTES) as u64;
const RECORD_HEADER_BYTES: usize = 8;

const HARD_STATE_FILE: &str = "hard_state";
const SNAPSHOT_FILE: &str = "snapshot";
const LOG_FILE: &str = "log";

/// File-backed [`LogStorage`] in `<data_dir>/raft/`.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    cache: LogCache,
    log: File,
    /// Bytes of the log file that hold whole records.
    log_bytes: u64,
    /// File offset of each held entry's record, parallel to the cache.
    offsets: Vec<u64>,
    failed: Option<String>,
}

/// What the log file holds, as read back.
struct LogFile {
    boundary: (u64, u64),
    entries: Vec<Entry>,
    offsets: Vec<u64>,
    /// Length up to the end of the last whole record (a torn tail is cut).
    valid_bytes: u64,
    file_bytes: u64,
}

impl LogFile {
    fn empty() -> Self {
        LogFile {
            boundary: (0, 0),
            entries: Vec::new(),
            offsets: Vec::new(),
            valid_bytes: LOG_HEADER_BYTES,
            file_bytes: LOG_HEADER_BYTES,
        }
    }
}

impl FileStorage {
    /// Opens (creating if needed) the raft storage under `data_dir`, and
    /// recovers what earlier runs made durable.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let dir = data_dir.join("raft");
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
            File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StorageError::io("fsync directory", data_dir, e))?;
        }
        for name in [HARD_STATE_FILE, SNAPSHOT_FILE, LOG_FILE] {
            let tmp = tmp_path(&dir.join(name));
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(StorageError::io("remove", tmp, e)),
                _ => {}
            }
        }
        let hs_path = dir.join(HARD_STATE_FILE);
        let mut hard_state: HardState = match read_framed(&hs_path, MAGIC_HARD_STATE, HARD_STATE_BYTES_MAX)? {
            Some(bytes) => parse(&hs_path, &bytes)?,
            None => HardState::default(),
        };
        let snap_path = dir.join(SNAPSHOT_FILE);
        let snapshot: Option<Snapshot> = match read_framed(&snap_path, MAGIC_SNAPSHOT, SNAPSHOT_BYTES_MAX)? {
            Some(bytes) => Some(parse(&snap_path, &bytes)?),
            None => None,
        };
        let log_path = dir.join(LOG_FILE);
        let (mut log, mut rewrite) = match read_log(&log_path)? {
            Some(log) => (log, false),
            None => (LogFile::empty(), true),
        };
        if let Some(snap) = &snapshot {
            rewrite |= reconcile(&log_path, &mut log, snap)?;
        }
        // A crash after a snapshot's log rewrite but before the hard state
        // write: everything the snapshot covers is committed.
        hard_state.commit = hard_state.commit.max(log.boundary.0);
        let LogFile {
            boundary,
            entries,
            offsets,
            valid_bytes,
            file_bytes,
        } = log;
        let cache = LogCache::from_parts(hard_state, snapshot, boundary, entries)
            .map_err(|reason| StorageError::corrupt(&dir, reason))?;
        let (log, offsets, log_bytes) = if rewrite {
            rewrite_log(&dir, cache.boundary(), cache.entries())?
        } else {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&log_path)
                .map_err(|e| StorageError::io("open", &log_path, e))?;
            if valid_bytes < file_bytes {
                tracing::warn!(
                    path = %log_path.display(),
                    cut_bytes = file_bytes - valid_bytes,
                    "raft log: truncating a torn tail left by an interrupted write"
                );
                file.set_len(valid_bytes)
                    .map_err(|e| StorageError::io("truncate", &log_path, e))?;
                file.sync_all().map_err(|e| StorageError::io("fsync", &log_path, e))?;
            }
            (file, offsets, valid_bytes)
        };
        Ok(FileStorage {
            dir,
            cache,
            log,
            log_bytes,
            offsets,
            failed: None,
        })
    }

    /// The directory holding the files (`<data_dir>/raft`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_failed(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(reason) => Err(StorageError::Failed { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Records a failed write: memory may now be ahead of the disk.
    fn fail(&mut self, err: StorageError) -> StorageError {
        self.failed = Some(err.to_string());
        err
    }

    fn replace_log(&mut self, boundary: (u64, u64), entries: &[Entry]) -> Result<(), StorageError> {
        let (file, offsets, bytes) = rewrite_log(&self.dir, boundary, entries)?;
        self.log = file;
        self.offsets = offsets;
        self.log_bytes = bytes;
        Ok(())
    }

    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let payload = snapshot
            .write_to_bytes()
            .map_err(|e| StorageError::Invariant(format!("snapshot does not encode: {e}")))?;
        if payload.len() > SNAPSHOT_BYTES_MAX {
            return Err(StorageError::Invariant(format!(
                "snapshot of {} bytes exceeds the maximum of {SNAPSHOT_BYTES_MAX} bytes",
                payload.len()
            )));
        }
        let framed = frame::encode(MAGIC_SNAPSHOT, &payload).map_err(|e| StorageError::Invariant(e.to_string()))?;
        write_atomic(&path, &framed)
    }
}

impl LogStorage for FileStorage {
    fn cache(&self) -> &LogCache {
        &self.cache
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_failed()?;
        let keep = self.cache.plan_append(entries)?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        let start = self.offsets.get(keep).copied().unwrap_or(self.log_bytes);
        for e in entries {
            offsets.push(start + buf.len() as u64);
            encode_record(e, &mut buf)?;
        }
        let path = self.dir.join(LOG_FILE);
        let written = (|| {
            if start < self.log_bytes {
                self.log
                    .set_len(start)
                    .map_err(|e| StorageError::io("truncate", &path, e))?;
            }
            self.log
                .write_all_at(&buf, start)
                .map_err(|e| StorageError::io("write", &path, e))?;
            self.log
                .sync_data()
                .map_err(|e| StorageError::io("fdatasync", &path, e))
        })();
        if let Err(e) = written {
            return Err(self.fail(e));
        }
        self.offsets.truncate(keep);
        self.offsets.extend(offsets);
        self.log_bytes = start + buf.len() as u64;
        self.cache.append(entries)
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.check_failed()?;
        if hs == self.cache.hard_state() {
            return Ok(());
        }
        let payload = hs
            .write_to_bytes()
            .map_err(|e| StorageError::Invariant(format!("hard state does not encode: {e}")))?;
        let framed = frame::encode(MAGIC_HARD_STATE, &payload).map_err(|e| StorageError::Invariant(e.to_string()))?;
        if let Err(e) = write_atomic(&self.dir.join(HARD_STATE_FILE), &framed) {
            return Err(self.fail(e));
        }
        self.cache.set_hard_state(hs);
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.check_failed()?;
        self.cache.plan_install(snapshot)?;
        let meta = snapshot.get_metadata();
        let written = self
            .write_snapshot(snapshot)
            .and_then(|()| self.replace_log((meta.index, meta.term), &[]));
        if let Err(e) = written {
            return Err(self.fail(e));
        }
        self.cache.install(snapshot)
    }

    fn compact(&mut self, snapshot: &Snapshot, compact_index: u64) -> Result<(), StorageError> {
        self.check_failed()?;
        let (boundary, term) = self.cache.plan_compact(snapshot, compact_index)?;
        let kept = &self.cache.entries()[(boundary - self.cache.boundary().0) as usize..];
        let kept = kept.to_vec();
        let written = self
            .write_snapshot(snapshot)
            .and_then(|()| self.replace_log((boundary, term), &kept));
        if let Err(e) = written {
            return Err(self.fail(e));
        }
        self.cache.compact(snapshot, compact_index)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn parse<M: protobuf::Message>(path: &Path, bytes: &[u8]) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes).map_err(|e| StorageError::corrupt(path, format!("undecodable protobuf: {e}")))
}

/// Reads a whole framed file; `None` when it does not exist.
fn read_framed(path: &Path, magic: [u8; 4], payload_bytes_max: usize) -> Result<Option<Vec<u8>>, StorageError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("open", path, e)),
    };
    let len = file.metadata().map_err(|e| StorageError::io("stat", path, e))?.len();
    if len > (FRAME_HEADER_BYTES + payload_bytes_max) as u64 {
        return Err(StorageError::corrupt(
            path,
            format!("{len} bytes is larger than any valid file"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| StorageError::io("read", path, e))?;
    let payload =
        frame::decode(magic, &bytes, payload_bytes_max).map_err(|e| StorageError::corrupt(path, e.to_string()))?;
    Ok(Some(payload.to_vec()))
}

/// Reads the log file; `None` when it does not exist.
fn read_log(path: &Path) -> Result<Option<LogFile>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read", path, e)),
    };
    let Some(header) = bytes.get(..LOG_HEADER_BYTES as usize) else {
        return Err(StorageError::corrupt(
            path,
            format!("{} bytes is shorter than the log header", bytes.len()),
        ));
    };
    let payload = frame::decode(MAGIC_LOG, header, LOG_HEADER_PAYLOAD_BYTES)
        .map_err(|e| StorageError::corrupt(path, format!("log header: {e}")))?;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&payload[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut log = LogFile {
        boundary: (word(0), word(8)),
        entries: Vec::new(),
        offsets: Vec::new(),
        valid_bytes: LOG_HEADER_BYTES,
        file_bytes: bytes.len() as u64,
    };
    let mut pos = LOG_HEADER_BYTES as usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = || rest.iter().all(|&b| b == 0);
        let Some((head, body)) = rest.split_first_chunk::<RECORD_HEADER_BYTES>() else {
            break; // a record header cut short: torn tail
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > ENTRY_BYTES_MAX {
            if torn() {
                break;
            }
            return Err(StorageError::corrupt(
                path,
                format!("record at byte {pos} has length {len}"),
            ));
        }
        let Some(payload) = body.get(..len) else {
            break; // a record cut short: torn tail
        };
        if crc32c::crc32c(payload) != crc {
            if torn() {
                break;
            }
            return Err(StorageError::corrupt(
                path,
                format!("record at byte {pos}: checksum mismatch"),
            ));
        }
        let entry: Entry = parse(path, payload)?;
        log.offsets.push(pos as u64);
        log.entries.push(entry);
        pos += RECORD_HEADER_BYTES + len;
        log.valid_bytes = pos as u64;
    }
    Ok(Some(log))
}

/// Makes the log agree with a snapshot written just before a crash;
/// returns whether the log file must be rewritten.
fn reconcile(path: &Path, log: &mut LogFile, snapshot: &Snapshot) -> Result<bool, StorageError> {
    let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
    if log.boundary.0 > index {
        return Err(StorageError::corrupt(
            path,
            format!("the log starts after {} but the snapshot is at {index}", log.boundary.0),
        ));
    }
    let held_term = if index == log.boundary.0 {
        Some(log.boundary.1)
    } else {
        let offset = (index - log.boundary.0 - 1) as usize;
        log.entries.get(offset).map(|e| e.term)
    };
    if held_term == Some(term) {
        return Ok(false);
    }
    tracing::warn!(
        path = %path.display(),
        snapshot_index = index,
        "raft log: discarding a log that the newer snapshot replaced"
    );
    log.boundary = (index, term);
    log.entries.clear();
    log.offsets.clear();
    log.valid_bytes = LOG_HEADER_BYTES;
    log.file_bytes = LOG_HEADER_BYTES;
    Ok(true)
}

fn encode_record(entry: &Entry, out: &mut Vec<u8>) -> Result<(), StorageError> {
    let payload = entry
        .write_to_bytes()
        .map_err(|e| StorageError::Invariant(format!("entry {} does not encode: {e}", entry.index)))?;
    if payload.len() > ENTRY_BYTES_MAX {
        return Err(StorageError::Invariant(format!(
            "entry {} of {} bytes exceeds the maximum of {ENTRY_BYTES_MAX} bytes",
            entry.index,
            payload.len()
        )));
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// The bytes of a whole log file, the offsets of its records and its length.
fn rewrite_log_parts(boundary: (u64, u64), entries: &[Entry]) -> Result<(Vec<u8>, Vec<u64>, u64), StorageError> {
    let mut header = [0u8; LOG_HEADER_PAYLOAD_BYTES];
    header[..8].copy_from_slice(&boundary.0.to_le_bytes());
    header[8..].copy_from_slice(&boundary.1.to_le_bytes());
    let mut buf = frame::encode(MAGIC_LOG, &header).map_err(|e| StorageError::Invariant(e.to_string()))?;
    let mut offsets = Vec::with_capacity(entries.len());
    for e in entries {
        offsets.push(buf.len() as u64);
        encode_record(e, &mut buf)?;
    }
    let len = buf.len() as u64;
    Ok((buf, offsets, len))
}

/// Atomically replaces the log file with `boundary` and `entries`.
fn rewrite_log(dir: &Path, boundary: (u64, u64), entries: &[Entry]) -> Result<(File, Vec<u64>, u64), StorageError> {
    let (buf, offsets, len) = rewrite_log_parts(boundary, entries)?;
    let path = dir.join(LOG_FILE);
    write_atomic(&path, &buf)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    Ok((file, offsets, len))
}

/// Replaces `path` with `bytes`: write a temporary file, fsync it, rename
/// it over `path`, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = tmp_path(path);
    let file = File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    file.write_all_at(bytes, 0)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    file.sync_all().map_err(|e| StorageError::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| StorageError::io("rename", &tmp, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}
