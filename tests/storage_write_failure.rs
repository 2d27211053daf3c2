//! A write that fails in the middle of a segment (the disk filled up, the
//! device errored) must not lose or corrupt what was acknowledged: the log
//! refuses further appends with a clear error, keeps serving reads, and a
//! reopen recovers exactly the acknowledged data.
//!
//! The failure is made real with RLIMIT_FSIZE (writes past the limit fail
//! with EFBIG), so this test has a process of its own: its own test binary,
//! with this single test.

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::record::{BatchBuilder, Compression};
use sluice::storage::{FlushPolicy, Log, LogConfig, StorageError};

const FILE_BYTES_MAX: u64 = 40 << 10;

fn batch(tag: usize) -> BytesMut {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..8 {
        b.push(
            now,
            None,
            Some(format!("{tag}:{i}:{}", "p".repeat(100)).as_bytes()),
            &[],
        );
    }
    b.build().expect("builds")
}

fn set_file_size_limit(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain libc calls with valid arguments; SIGXFSZ would otherwise
    // kill the process instead of letting the write fail with EFBIG.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0, "setrlimit");
    }
}

#[test]
fn failed_write_refuses_appends_keeps_acknowledged_data_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let cfg = LogConfig {
        segment_bytes_max: 1 << 20,
        preallocate: false,
        write_chunk_bytes: 16 << 10,
        flush: FlushPolicy::EveryAppend,
        retention_ms: None,
        ..LogConfig::default()
    };
    let cfg2 = cfg.clone();
    let acked = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let log = Log::open(&path, cfg).await.expect("open");
            set_file_size_limit(FILE_BYTES_MAX);
            let mut acked = 0i64;
            let mut failure = None;
            for i in 0..1000 {
                match log.append(batch(i), 0).await {
                    Ok(info) => acked = info.last_offset + 1,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let failure = failure.expect("the file size limit must make a write fail");
            assert!(
                matches!(failure, StorageError::Io { .. }),
                "first error is the I/O error: {failure}"
            );
            assert!(acked > 0, "some appends succeeded before the limit");
            // The log now refuses appends with a clear error...
            let again = log.append(batch(9999), 0).await.expect_err("appends refused");
            assert!(matches!(again, StorageError::Failed { .. }), "{again}");
            // ...but still serves what was acknowledged.
            let got = log.read(0, 1 << 20, acked).await.expect("reads still work");
            assert!(!got.batches.is_empty());
            drop(log);
            set_file_size_limit(libc::RLIM_INFINITY);
            acked
        })
        .expect("executor")
        .join()
        .expect("first phase");

    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let log = Log::open(dir.path(), cfg2).await.expect("reopen after failure");
            assert!(
                log.next_offset() >= acked,
                "acknowledged data lost: end {} < {acked}",
                log.next_offset()
            );
            let mut offset = 0;
            while offset < acked {
                let got = log.read(offset, 1 << 20, i64::MAX).await.expect("read");
                offset = got.next_offset;
            }
            let info = log.append(batch(1), 0).await.expect("appends work after reopen");
            assert_eq!(info.base_offset, log.next_offset() - 8);
        })
        .expect("executor")
        .join()
        .expect("second phase");
}
