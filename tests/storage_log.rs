//! The partition log against real files on disk, through the real direct-I/O
//! path, inside a glommio executor: recovery after torn and corrupted tails,
//! index lookups against a linear scan, retention, truncation, flush policy.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::{LocalExecutorBuilder, Placement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::record::{self, BatchBuilder, Compression};
use sluice::storage::{FlushPolicy, Log, LogConfig, StorageError};

/// Runs `f` on a fresh glommio executor thread (small io memory so it fits
/// an 8 MiB RLIMIT_MEMLOCK) and waits for it.
fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(16 << 20)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("test body does not panic");
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 << 10,
        index_interval_bytes: 1024,
        cache_bytes_max: 0,
        write_chunk_bytes: 16 << 10,
        write_behind_chunks_max: 2,
        batch_bytes_max: 8 << 10,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Wall-clock milliseconds when the test binary started: record timestamps
/// are offsets from it, because a segment whose first record is older than
/// `segment_age_ms_max` rolls at the next append.
fn t0() -> i64 {
    static T0: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T0.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        now.as_millis() as i64
    })
}

/// A batch of `n` records whose values encode (tag, i); timestamps from
/// `t0() + ts`.
fn make_batch(tag: u64, n: usize, ts: i64, compression: Compression) -> BytesMut {
    let mut b = BatchBuilder::new(compression);
    for i in 0..n {
        let value = format!("{tag}:{i}:{}", "x".repeat((tag as usize * 7 + i) % 50));
        b.push(
            t0() + ts + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(value.as_bytes()),
            &[],
        );
    }
    b.build().expect("builds")
}

/// Reads the whole log from `from` with small reads; returns every batch.
/// A log in `dir` holding `batches` batches of `records` records each,
/// appended as leader at `epoch`, timestamps 0, 1, 2...
async fn filled(dir: &std::path::Path, cfg: &LogConfig, batches: u64, records: usize, epoch: i32) -> Log {
    let log = Log::open(dir, cfg.clone()).await.expect("open");
    for i in 0..batches {
        log.append(make_batch(i, records, i as i64, Compression::None), epoch)
            .await
            .expect("append");
    }
    log
}

async fn read_all(log: &Log, from: i64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.next_offset() {
        let got = log.read(offset, 3000, i64::MAX).await.expect("read");
        assert!(!got.batches.is_empty(), "no progress at {offset}");
        assert!(got.next_offset > offset);
        out.extend(got.batches);
        offset = got.next_offset;
    }
    out
}

/// The stored batch with its base offset and leader epoch zeroed, so it can
/// be compared with what was appended before stamping.
fn unstamped(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    record::stamp(&mut v, 0, -1);
    v
}

#[test]
fn append_read_roundtrip_across_rolls_with_and_without_cache() {
    for cache in [0usize, 1 << 20] {
        run(move || async move {
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = LogConfig {
                cache_bytes_max: cache,
                flush: FlushPolicy::Interval(Duration::from_secs(60)),
                ..small_config()
            };
            let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
            let mut sent = Vec::new();
            for i in 0..300u64 {
                let codec = Compression::all()[i as usize % 5];
                let batch = make_batch(i, 1 + (i as usize % 9), 1_000 + i as i64, codec);
                sent.push(batch.to_vec());
                let info = log.append(batch, 3).await.expect("append");
                assert_eq!(info.last_offset + 1, log.next_offset());
            }
            assert!(log.segment_count() > 3, "segments rolled: {}", log.segment_count());
            let got = read_all(&log, 0).await;
            assert_eq!(got.len(), sent.len());
            let mut expect_offset = 0;
            for (g, s) in got.iter().zip(&sent) {
                let h = record::validate(g, 1 << 20).expect("stored batch valid");
                assert_eq!(h.base_offset, expect_offset);
                assert_eq!(h.partition_leader_epoch, 3);
                assert_eq!(unstamped(g), *s);
                expect_offset = h.next_offset();
            }
            // Reopen after a clean close: same content, indexes from checkpoints.
            let end = log.next_offset();
            log.close().await.expect("close");
            let log = Log::open(dir.path(), cfg).await.expect("reopen");
            assert_eq!(log.next_offset(), end);
            assert_eq!(read_all(&log, 0).await, got);
        });
    }
}

#[test]
fn cache_serves_appended_bytes_without_copy() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            cache_bytes_max: 1 << 20,
            flush: FlushPolicy::Interval(Duration::from_secs(60)),
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg).await.expect("open");
        let batch = make_batch(1, 5, 0, Compression::None);
        let ptr = batch.as_ptr();
        log.append(batch, 0).await.expect("append");
        let got = log.read(0, 1 << 20, i64::MAX).await.expect("read");
        assert!(got.from_cache);
        assert_eq!(got.batches[0].as_ptr(), ptr, "cache hands back the appended memory");
    });
}

#[test]
fn every_offset_lookup_matches_linear_scan() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(
            dir.path(),
            LogConfig {
                flush: FlushPolicy::Bytes(1 << 30),
                ..small_config()
            },
        )
        .await
        .expect("open");
        let mut rng = StdRng::seed_from_u64(7);
        // (base, next, max_ts) of each batch, from a linear account of appends.
        let mut batches = Vec::new();
        let mut ts = 10_000i64;
        for i in 0..400u64 {
            let n = rng.random_range(1..12);
            ts += rng.random_range(-5..20);
            let info = log
                .append(make_batch(i, n, ts, Compression::None), 0)
                .await
                .expect("append");
            batches.push((info.base_offset, info.last_offset + 1, info.max_timestamp));
        }
        log.flush().await.expect("flush");
        assert!(log.segment_count() > 5);
        for offset in 0..log.next_offset() {
            let got = log.read(offset, 1, i64::MAX).await.expect("read");
            let h = record::validate(&got.batches[0], 1 << 20).expect("valid");
            let want = batches.iter().find(|b| b.0 <= offset && offset < b.1).expect("linear");
            assert_eq!((h.base_offset, h.next_offset()), (want.0, want.1), "offset {offset}");
        }
        // Timestamp lookups against a linear scan over every record.
        let mut records = Vec::new();
        for b in read_all(&log, 0).await {
            for r in record::records(&b, 1 << 20).expect("records") {
                let r = r.expect("record");
                records.push((r.offset, r.timestamp));
            }
        }
        for probe in (t0() + 9_990..t0() + ts + 30).step_by(3) {
            let want = records.iter().find(|r| r.1 >= probe).map(|r| r.0);
            assert_eq!(
                log.offset_for_timestamp(probe).await.expect("lookup"),
                want,
                "ts {probe}"
            );
        }
        // max_offset bounds what a read returns (the high watermark).
        let got = log.read(0, 1 << 20, batches[3].0).await.expect("read");
        assert_eq!(got.next_offset, batches[3].0);
    });
}

/// Appends random batches to a log with small segments, syncs, drops it
/// without close, damages the last segment (cut at a random byte, then flip
/// random bits after a random point), reopens, and checks the log ends at the
/// last batch wholly before the damage with every earlier batch identical.
fn crash_and_corrupt(seed: u64) {
    run(move || async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = StdRng::seed_from_u64(seed);
        let cfg = LogConfig {
            flush: FlushPolicy::Bytes(u64::MAX),
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        let mut sent: Vec<(i64, Vec<u8>)> = Vec::new();
        for i in 0..rng.random_range(20..120u64) {
            let codec = Compression::all()[rng.random_range(0..5)];
            let batch = make_batch(seed * 1000 + i, rng.random_range(1..30), i as i64, codec);
            let bytes = batch.to_vec();
            let info = log.append(batch, 1).await.expect("append");
            sent.push((info.base_offset, bytes));
        }
        log.sync().await.expect("sync");
        let bases = log.segment_bases();
        drop(log);

        // Batches of the last segment, with their positions in its file.
        let last_base = *bases.last().expect("a segment");
        let mut layout = Vec::new();
        let mut pos = 0usize;
        for (base, bytes) in sent.iter().filter(|(b, _)| *b >= last_base) {
            layout.push((pos, pos + bytes.len(), *base));
            pos += bytes.len();
        }
        let seg_path = dir.path().join(format!("{last_base:020}.log"));
        let mut data = std::fs::read(&seg_path).expect("segment");
        assert!(data.len() >= pos);
        let mut damage = pos; // first byte that is no longer what was written
        if pos > 0 {
            let cut = rng.random_range(0..=pos);
            data.truncate(cut);
            damage = cut;
            if cut > 0 && rng.random_bool(0.7) {
                let from = rng.random_range(0..cut);
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(from..cut);
                    // The partition leader epoch (bytes 12..16 of a batch) is
                    // outside Kafka's CRC by design, so a flip there cannot be
                    // detected by any reader: leave it alone.
                    let in_epoch = layout.iter().any(|&(s, _, _)| at >= s + 12 && at < s + 16);
                    if !in_epoch {
                        data[at] ^= 1 << rng.random_range(0..8);
                        damage = damage.min(at);
                    }
                }
            }
        }
        std::fs::write(&seg_path, &data).expect("write damaged");
        let want_end = layout
            .iter()
            .filter(|&&(_, end, _)| end <= damage)
            .map(|&(_, _, base)| base)
            .next_back();
        let want_end = match want_end {
            Some(base) => sent
                .iter()
                .find(|(b, _)| *b == base)
                .map(|(b, bytes)| b + record::BatchHeader::parse(bytes).expect("hdr").last_offset_delta as i64 + 1)
                .expect("sent"),
            None => last_base,
        };

        let log = Log::open(dir.path(), cfg).await.expect("reopen after damage");
        assert_eq!(
            log.next_offset(),
            want_end,
            "seed {seed}: log must end at the last intact batch"
        );
        let got = read_all(&log, 0).await;
        let kept: Vec<&(i64, Vec<u8>)> = sent.iter().filter(|(b, _)| *b < want_end).collect();
        assert_eq!(got.len(), kept.len(), "seed {seed}");
        for (g, (base, s)) in got.iter().zip(kept) {
            assert_eq!(record::BatchHeader::parse(g).expect("hdr").base_offset, *base);
            assert_eq!(unstamped(g), *s, "seed {seed}: batch at {base} changed");
        }
        // The log keeps working after recovery and survives another reopen.
        let info = log
            .append(make_batch(9, 3, 0, Compression::Lz4), 2)
            .await
            .expect("append after recovery");
        assert_eq!(info.base_offset, want_end);
        log.sync().await.expect("sync");
        drop(log);
        let log = Log::open(dir.path(), small_config()).await.expect("reopen again");
        assert_eq!(log.next_offset(), want_end + 3);
    });
}

#[test]
fn crash_recovery_cuts_at_last_intact_batch_many_seeds() {
    for seed in 0..48 {
        crash_and_corrupt(seed);
    }
}

#[test]
fn damaged_or_missing_sealed_index_is_rebuilt() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            flush: FlushPolicy::Bytes(u64::MAX),
            ..small_config()
        };
        let log = filled(dir.path(), &cfg, 200, 4, 0).await;
        let before = read_all(&log, 0).await;
        let bases = log.segment_bases();
        log.close().await.expect("close");
        assert!(bases.len() >= 3);
        std::fs::remove_file(dir.path().join(format!("{:020}.index", bases[0]))).expect("rm index");
        let ti = dir.path().join(format!("{:020}.timeindex", bases[1]));
        let mut t = std::fs::read(&ti).expect("timeindex");
        let n = t.len();
        t[n / 2] ^= 0xff;
        std::fs::write(&ti, t).expect("corrupt");
        let log = Log::open(dir.path(), cfg).await.expect("reopen");
        assert_eq!(read_all(&log, 0).await, before);
        assert!(
            dir.path().join(format!("{:020}.index", bases[0])).exists(),
            "index rebuilt"
        );
        for offset in (0..log.next_offset()).step_by(7) {
            let got = log.read(offset, 1, i64::MAX).await.expect("read");
            let h = record::BatchHeader::parse(&got.batches[0]).expect("hdr");
            assert!(h.base_offset <= offset && offset < h.next_offset());
        }
    });
}

#[test]
fn retention_by_time_and_by_size_deletes_whole_old_segments() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            retention_ms: Some(1_000),
            flush: FlushPolicy::Bytes(u64::MAX),
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg).await.expect("open");
        // Old records (an hour ago) then new ones (now); retention is 1 s.
        for i in 0..150 {
            log.append(make_batch(i, 5, -3_600_000 + i as i64, Compression::None), 0)
                .await
                .expect("append");
        }
        let old_end = log.next_offset();
        for i in 0..150 {
            log.append(make_batch(i, 5, i as i64, Compression::None), 0)
                .await
                .expect("append");
        }
        let segments = log.segment_count();
        let now = t0() + 500;
        let out = log.enforce_retention(now).await.expect("retention");
        assert!(out.segments_deleted > 0);
        assert_eq!(log.segment_count(), segments - out.segments_deleted);
        // Every deleted segment was wholly old; the segment holding old_end-1
        // may stay if it also holds new records.
        assert!(out.log_start_offset <= old_end);
        assert_eq!(log.log_start_offset(), out.log_start_offset);
        let err = log.read(0, 100, i64::MAX).await.expect_err("below log start");
        assert!(matches!(err, StorageError::OffsetOutOfRange { .. }));
        for b in log.segment_bases() {
            assert!(b >= out.log_start_offset);
        }
        assert!(!dir.path().join(format!("{:020}.log", 0)).exists());
        // Records after the log start are all still readable.
        let got = read_all(&log, out.log_start_offset).await;
        assert_eq!(
            record::BatchHeader::parse(&got[0]).expect("hdr").base_offset,
            out.log_start_offset
        );
        // Nothing left is old enough: a second pass deletes nothing.
        assert_eq!(log.enforce_retention(now).await.expect("retention").segments_deleted, 0);
        // Every segment left holds a record newer than the retention time.
        // Exactly the wholly old segments went: the first one left holds a
        // new record (it spans old_end), every earlier one is gone.
        let bases = log.segment_bases();
        assert!(
            bases[0] <= old_end && bases.get(1).is_none_or(|&b| b > old_end),
            "bases {bases:?}, old end {old_end}"
        );
    });
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            retention_bytes: Some(100 << 10),
            flush: FlushPolicy::Bytes(u64::MAX),
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg).await.expect("open");
        for i in 0..1000 {
            log.append(make_batch(i, 5, 0, Compression::None), 0)
                .await
                .expect("append");
        }
        let before = log.size_bytes();
        let out = log.enforce_retention(t0()).await.expect("retention");
        assert!(out.segments_deleted > 0);
        assert_eq!(log.size_bytes(), before - out.bytes_deleted);
        // Kafka's rule: delete the oldest segment while the log stays at or
        // above the budget without it. So the log is at or above the budget,
        // and dropping its oldest segment would take it below.
        let first = log.segment_bases()[0];
        let first_bytes = std::fs::metadata(dir.path().join(format!("{first:020}.log")))
            .expect("segment")
            .len();
        assert!(log.size_bytes() >= 100 << 10, "deleted too much: {}", log.size_bytes());
        assert!(
            log.size_bytes() - first_bytes < 100 << 10,
            "deleted too little: {}",
            log.size_bytes()
        );
    });
}

#[test]
fn truncate_to_then_append_again_and_reopen() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            flush: FlushPolicy::Bytes(u64::MAX),
            cache_bytes_max: 1 << 20,
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        let mut infos = Vec::new();
        for i in 0..200 {
            infos.push(
                log.append(make_batch(i, 3, i as i64, Compression::None), 0)
                    .await
                    .expect("append"),
            );
        }
        let segments = log.segment_count();
        // Cut in the middle of a batch: the log ends at that batch's start.
        let victim = infos[120];
        let end = log.truncate_to(victim.base_offset + 1).await.expect("truncate");
        assert_eq!(end, victim.base_offset);
        assert_eq!(log.next_offset(), end);
        assert!(log.segment_count() < segments);
        let err = log.read(end + 1, 100, i64::MAX).await.expect_err("past end");
        assert!(matches!(err, StorageError::OffsetOutOfRange { .. }));
        // New, different data takes the freed offsets.
        let info = log
            .append(make_batch(7777, 2, 5, Compression::Gzip), 1)
            .await
            .expect("append");
        assert_eq!(info.base_offset, end);
        let got = log.read(end, 1 << 20, i64::MAX).await.expect("read");
        let recs: Vec<_> = record::records(&got.batches[0], 1 << 20)
            .expect("records")
            .map(|r| r.expect("record"))
            .collect();
        assert!(recs[0].value.as_deref().is_some_and(|v| v.starts_with(b"7777:0:")));
        log.sync().await.expect("sync");
        drop(log);
        let log = Log::open(dir.path(), cfg).await.expect("reopen");
        assert_eq!(log.next_offset(), end + 2);
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 121);
        // Truncating to the log start empties the log.
        let end = log.truncate_to(0).await.expect("truncate all");
        assert_eq!((end, log.next_offset(), log.segment_count()), (0, 0, 1));
    });
}

#[test]
fn restart_at_empties_the_log_and_continues_from_the_new_start() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            flush: FlushPolicy::Bytes(u64::MAX),
            ..small_config()
        };
        let log = filled(dir.path(), &cfg, 300, 3, 1).await;
        assert!(log.segment_count() > 1);
        // A follower whose leader's log now starts far above its end.
        let end = log.restart_at(5000).await.expect("restart");
        assert_eq!(end, 5000);
        assert_eq!(
            (log.log_start_offset(), log.next_offset(), log.segment_count()),
            (5000, 5000, 1)
        );
        assert!(log.epochs().entries().is_empty(), "an empty log has no epochs");
        let err = log.read(0, 100, i64::MAX).await.expect_err("below the new start");
        assert!(matches!(err, StorageError::OffsetOutOfRange { .. }));
        let info = log
            .append(make_batch(9, 2, 0, Compression::None), 2)
            .await
            .expect("append");
        assert_eq!(info.base_offset, 5000);
        assert_eq!(log.epochs().latest(), Some((2, 5000)));
        log.sync().await.expect("sync");
        drop(log);
        let log = Log::open(dir.path(), cfg).await.expect("reopen");
        assert_eq!((log.log_start_offset(), log.next_offset()), (5000, 5002));
        assert_eq!(log.epochs().latest(), Some((2, 5000)));
        assert_eq!(read_all(&log, 5000).await.len(), 1);
    });
}

#[test]
fn invalid_batches_are_rejected_and_nothing_is_written() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = small_config();
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        log.append(make_batch(1, 3, 0, Compression::None), 0)
            .await
            .expect("append");
        let mut bad = make_batch(2, 3, 0, Compression::None);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(log.append(bad, 0).await, Err(StorageError::InvalidBatch(_))));
        let huge = make_batch(3, 2000, 0, Compression::None);
        assert!(matches!(
            log.append(huge, 0).await,
            Err(StorageError::BatchTooLarge { .. })
        ));
        assert!(matches!(
            log.append(BytesMut::from(&b"garbage"[..]), 0).await,
            Err(StorageError::InvalidBatch(_))
        ));
        assert_eq!(log.next_offset(), 3);
        drop(log);
        let log = Log::open(dir.path(), cfg).await.expect("reopen");
        assert_eq!(log.next_offset(), 3);
    });
}

#[test]
fn durable_appends_survive_drop_without_close_and_share_syncs() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            flush: FlushPolicy::EveryAppend,
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        let syncs_before = log.sync_count();
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                log.append(make_batch(i, 2, 0, Compression::None), 0).await
            }));
        }
        for t in tasks {
            t.await.expect("durable append");
        }
        assert_eq!(log.durable_offset(), 128);
        let syncs = log.sync_count() - syncs_before;
        assert!(
            syncs < 8,
            "64 concurrent durable appends took {syncs} fdatasyncs: no group commit"
        );
        drop(log);
        let log = Log::open(dir.path(), cfg).await.expect("reopen");
        assert_eq!(log.next_offset(), 128);
        assert_eq!(read_all(&log, 0).await.len(), 64);
    });
    // Interval policy: durable once the interval passes, without any call.
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            flush: FlushPolicy::Interval(Duration::from_millis(20)),
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        let info = log
            .append(make_batch(1, 4, 0, Compression::None), 0)
            .await
            .expect("append");
        assert!(log.durable_offset() <= info.last_offset);
        // Nobody asks for a sync: the interval timer must make it durable.
        let target = info.last_offset + 1;
        glommio::timer::timeout(Duration::from_secs(20), async {
            log.durable_watermark().wait_for(target).await;
            Ok(())
        })
        .await
        .expect("interval sync happened");
        drop(log);
        let log = Log::open(dir.path(), cfg).await.expect("reopen");
        assert_eq!(log.next_offset(), 4);
    });
}

/// acks=1 under every-append: the append returns before its fdatasync, one
/// background task keeps syncing until the durable watermark reaches the
/// log end, and many buffered appends share few syncs.
#[test]
fn buffered_appends_become_durable_in_the_background() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            flush: FlushPolicy::EveryAppend,
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        let syncs_before = log.sync_count();
        let mut last = 0;
        for i in 0..200u64 {
            let info = log
                .append_buffered(make_batch(i, 2, 0, Compression::None), 0)
                .await
                .expect("append");
            assert_eq!(log.next_offset(), info.last_offset + 1, "readable at once");
            last = info.last_offset;
        }
        // Nobody waits for durability: the background sync must get there.
        glommio::timer::timeout(Duration::from_secs(20), async {
            log.durable_watermark().wait_for(last + 1).await;
            Ok(())
        })
        .await
        .expect("background sync reached the log end");
        let syncs = log.sync_count() - syncs_before;
        assert!(
            syncs < 200,
            "{syncs} fdatasyncs for 200 buffered appends: no group commit"
        );
        log.close().await.expect("close");
        let log = Log::open(dir.path(), cfg).await.expect("reopen");
        assert_eq!(log.next_offset(), 400);
    });
}

#[test]
fn config_limits_are_checked() {
    let bad = LogConfig {
        segment_bytes_max: 5 << 30,
        ..LogConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = LogConfig {
        write_chunk_bytes: 1000,
        ..LogConfig::default()
    };
    assert!(bad.validate().is_err());
    assert!(LogConfig::default().validate().is_ok());
}

#[test]
fn relative_directory_paths_work() {
    // Regression: glommio's directory handle refused relative paths, so a
    // log opened as "data/..." failed at its first directory fsync.
    run(|| async {
        let base = tempfile::tempdir_in(".").expect("tempdir in cwd");
        let name = base.path().file_name().expect("name").to_owned();
        let rel = std::path::PathBuf::from(name).join("p0");
        let log = Log::open(&rel, small_config()).await.expect("open relative");
        log.append(make_batch(1, 2, 0, Compression::None), 0)
            .await
            .expect("append");
        log.close().await.expect("close");
        let log = Log::open(&rel, small_config()).await.expect("reopen relative");
        assert_eq!(log.next_offset(), 2);
    });
}

#[test]
fn old_client_timestamps_do_not_roll_a_segment_per_batch() {
    // Regression: rolling by the first batch's timestamp alone made every
    // batch stamped more than segment_age_ms_max ago start a new segment.
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes_max: 1 << 20,
            segment_age_ms_max: 60_000,
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg).await.expect("open");
        for i in 0..20 {
            log.append(make_batch(i, 2, -30 * 24 * 3600 * 1000, Compression::None), 0)
                .await
                .expect("append");
        }
        assert_eq!(log.segment_count(), 1);
    });
}

#[test]
fn preallocation_runs_a_step_ahead_not_a_whole_segment() {
    // Regression: reserving a whole 1 GiB segment per partition made a
    // thousand partitions need a terabyte of free disk.
    use std::os::unix::fs::MetadataExt;
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes_max: 1 << 30,
            preallocate_step_bytes: 1 << 20,
            write_chunk_bytes: 64 << 10,
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg).await.expect("open");
        let seg = dir.path().join(format!("{:020}.log", 0));
        let reserved = |p: &std::path::Path| std::fs::metadata(p).expect("segment").blocks() * 512;
        assert!(reserved(&seg) >= 1 << 20, "a step is reserved up front");
        assert!(reserved(&seg) < 4 << 20, "not the whole segment: {}", reserved(&seg));
        // Appending past the first step reserves the next one before writing.
        let mut appended = 0u64;
        while appended < 3 << 20 {
            let b = make_batch(appended, 40, 0, Compression::None);
            appended += b.len() as u64;
            log.append(b, 0).await.expect("append");
        }
        log.sync().await.expect("sync");
        assert!(reserved(&seg) >= appended, "writes stay inside reserved blocks");
        assert!(
            reserved(&seg) < appended + (4 << 20),
            "reservation stays a step ahead: {}",
            reserved(&seg)
        );
        assert_eq!(log.segment_count(), 1);
    });
}

/// A batch of `n` records from idempotent producer `pid` (epoch 0)
/// starting at sequence `seq`.
fn producer_batch(pid: i64, seq: i32, n: usize) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None).producer(pid, 0, seq);
    for i in 0..n {
        let value = format!("{pid}:{}:{}", seq as usize + i, "v".repeat(200));
        b.push(t0() + i as i64, None, Some(value.as_bytes()), &[]);
    }
    b.build().expect("builds")
}

/// A batch of a producer, (producer id, first sequence), and where it
/// landed, (base offset, last offset).
type Landed = ((i64, i32), (i64, i64));

/// Appends the next batch of each of three producers, `rounds` times, and
/// returns where each batch landed.
async fn produce_rounds(log: &Log, rounds: i32, seq0: i32) -> Vec<Landed> {
    let mut landed = Vec::new();
    for r in 0..rounds {
        for pid in 1..=3i64 {
            let seq = seq0 + r * 4;
            let info = log.append(producer_batch(pid, seq, 4), 0).await.expect("append");
            assert!(!info.duplicate, "fresh batch taken as a duplicate");
            landed.push(((pid, seq), (info.base_offset, info.last_offset)));
        }
    }
    landed
}

/// Every batch in `landed` is recognised as a duplicate at its offsets,
/// and nothing is appended for them.
async fn assert_retries_are_duplicates(log: &Log, landed: &[Landed]) {
    let end = log.next_offset();
    for &((pid, seq), (base, last)) in landed {
        let info = log.append(producer_batch(pid, seq, 4), 0).await.expect("retry");
        assert!(info.duplicate, "retry of {pid}/{seq} appended again");
        assert_eq!((info.base_offset, info.last_offset), (base, last));
    }
    assert_eq!(log.next_offset(), end);
}

#[test]
fn idempotent_retries_are_recognised_across_rolls_crashes_and_clean_restarts() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = small_config();
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        // Enough rounds to roll several segments (16 KiB each).
        let early = produce_rounds(&log, 40, 0).await;
        assert!(log.segment_count() > 2, "the test must cross rolls");
        let last: Vec<_> = early[early.len() - 15..].to_vec();
        assert_retries_are_duplicates(&log, &last).await;
        // A gap is refused, and nothing is written.
        let end = log.next_offset();
        let gap = log.append(producer_batch(1, 40 * 4 + 1, 1), 0).await;
        assert!(matches!(gap, Err(StorageError::Sequence(_))), "gap accepted: {gap:?}");
        assert_eq!(log.next_offset(), end);

        // Crash: drop without close (everything was durable: append waits).
        drop(log);
        let log = Log::open(dir.path(), cfg.clone()).await.expect("reopen after crash");
        assert_eq!(log.producer_count(), 3);
        assert_retries_are_duplicates(&log, &last).await;
        let more = produce_rounds(&log, 3, 40 * 4).await;

        // Clean close writes a snapshot at the end: nothing to replay.
        log.close().await.expect("close");
        let log = Log::open(dir.path(), cfg.clone()).await.expect("reopen after close");
        assert_retries_are_duplicates(&log, &more).await;

        // Damage every snapshot: the state is rebuilt from the log alone.
        log.close().await.expect("close");
        let mut damaged = 0;
        for entry in std::fs::read_dir(dir.path()).expect("list") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "producers") {
                let mut bytes = std::fs::read(&path).expect("read snapshot");
                let at = bytes.len() / 2;
                bytes[at] ^= 0xff;
                std::fs::write(&path, bytes).expect("write snapshot");
                damaged += 1;
            }
        }
        assert!(damaged >= 2, "snapshots at rolls and at close: {damaged}");
        let log = Log::open(dir.path(), cfg.clone())
            .await
            .expect("reopen with damaged snapshots");
        assert_retries_are_duplicates(&log, &more).await;

        // Truncating away a producer's last batches rewinds its sequence:
        // the batch after the cut is new again, and lands at the cut.
        let &((pid, seq), (base, _)) = more.last().expect("batches");
        let cut = log.truncate_to(base).await.expect("truncate");
        assert_eq!(cut, base);
        let info = log
            .append(producer_batch(pid, seq, 4), 0)
            .await
            .expect("append after cut");
        assert!(!info.duplicate);
        assert_eq!(info.base_offset, base);
        log.close().await.expect("close");
    });
}

#[test]
fn idle_producers_are_forgotten_by_the_retention_pass() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            producer_id_expiration_ms: 60_000,
            ..small_config()
        };
        let log = Log::open(dir.path(), cfg).await.expect("open");
        log.append(producer_batch(9, 0, 2), 0).await.expect("append");
        let now = record::now_ms();
        log.enforce_retention(now).await.expect("retention");
        assert_eq!(log.producer_count(), 1);
        log.enforce_retention(now + 120_000).await.expect("retention");
        assert_eq!(log.producer_count(), 0);
        // Its next batch is now from an unknown producer mid-sequence.
        let next = log.append(producer_batch(9, 2, 1), 0).await;
        assert!(matches!(next, Err(StorageError::Sequence(_))), "{next:?}");
        log.close().await.expect("close");
    });
}

/// The leader epochs of the batches of `log`, read back from disk.
async fn stored_epochs(log: &Log) -> Vec<(i32, i64)> {
    read_all(log, log.log_start_offset())
        .await
        .iter()
        .map(|b| {
            let h = record::BatchHeader::parse(b).expect("stored batch");
            (h.partition_leader_epoch, h.base_offset)
        })
        .collect()
}

#[test]
fn leader_epochs_are_tracked_and_survive_crashes_restarts_and_truncation() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = small_config();
        let log = Log::open(dir.path(), cfg.clone()).await.expect("open");
        // Epochs 0, 3 (across a roll) and 5, each writing several batches.
        for (epoch, n) in [(0, 10), (3, 40), (5, 10)] {
            for i in 0..n {
                log.append(make_batch(epoch as u64 * 100 + i, 20, 0, Compression::None), epoch)
                    .await
                    .expect("append");
            }
        }
        assert!(log.segment_count() > 2, "the test must cross rolls");
        let want = log.epochs();
        assert_eq!(want.entries().iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 3, 5]);
        let stored = stored_epochs(&log).await;
        for &(epoch, start) in want.entries() {
            let first = stored.iter().find(|(e, _)| *e == epoch).expect("epoch stored");
            assert_eq!(first.1, start, "epoch {epoch} starts at its first batch");
        }
        drop(log); // crash
        let log = Log::open(dir.path(), cfg.clone()).await.expect("reopen");
        assert_eq!(log.epochs(), want, "after a crash");
        log.close().await.expect("close");
        std::fs::remove_file(dir.path().join("leader-epochs")).expect("checkpoint written at close");
        let log = Log::open(dir.path(), cfg.clone()).await.expect("reopen");
        assert_eq!(log.epochs(), want, "rebuilt from the batches alone");
        // Cut into epoch 3: epoch 5 goes, epoch 3 stays.
        let (_, start5) = want.entries()[2];
        let cut = log.truncate_to(start5 - 1).await.expect("truncate");
        let after = log.epochs();
        assert_eq!(after.entries(), &want.entries()[..2]);
        assert!(cut <= start5);
        log.close().await.expect("close");
    });
}

#[test]
fn a_follower_copies_the_leaders_batches_byte_for_byte() {
    run(|| async {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let cfg = small_config();
        let leader = Log::open(leader_dir.path(), cfg.clone()).await.expect("open");
        for i in 0..60u64 {
            let epoch = if i < 30 { 1 } else { 2 };
            let b = BatchBuilder::new(Compression::Lz4).producer(7, 0, (i * 2) as i32);
            let mut b = b;
            b.push(t0(), None, Some(format!("{i}a").as_bytes()), &[]);
            b.push(t0() + 1, None, Some(format!("{i}b").as_bytes()), &[]);
            leader.append(b.build().expect("builds"), epoch).await.expect("append");
        }
        let follower = Log::open(follower_dir.path(), cfg.clone()).await.expect("open");
        let batches = read_all(&leader, 0).await;
        // A batch that does not start at the follower's end is refused.
        let wrong = follower.append_replica(BytesMut::from(&batches[1][..])).await;
        assert!(
            matches!(wrong, Err(StorageError::OffsetMismatch { expected: 0, got: 2 })),
            "{wrong:?}"
        );
        for b in &batches {
            follower
                .append_replica(BytesMut::from(&b[..]))
                .await
                .expect("replica append");
        }
        follower.sync().await.expect("sync");
        assert_eq!(
            read_all(&follower, 0).await,
            batches,
            "identical bytes at identical offsets"
        );
        assert_eq!(follower.epochs(), leader.epochs());
        assert_eq!(follower.producer_count(), 1);
        // The follower knows the producer's sequence: were it to lead, a
        // retry of the last batch is a duplicate, the next one goes on.
        let mut retry = BatchBuilder::new(Compression::Lz4).producer(7, 0, 118);
        retry.push(t0(), None, Some(b"59a"), &[]);
        retry.push(t0() + 1, None, Some(b"59b"), &[]);
        let info = follower.append(retry.build().expect("builds"), 3).await.expect("retry");
        assert!(info.duplicate);
        drop(follower);
        let follower = Log::open(follower_dir.path(), cfg.clone()).await.expect("reopen");
        assert_eq!(follower.epochs(), leader.epochs());
        leader.close().await.expect("close");
        follower.close().await.expect("close");
    });
}
