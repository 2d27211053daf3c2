//! Storage hot paths: append through the real direct-I/O path to a file on
//! disk (plain and durable), and offset index lookup.
//!
//! `cargo bench --bench storage`. The disk is what is measured: compare
//! with `perf/limits.sh`, which puts fio's numbers beside ours as ratios.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use mimalloc::MiMalloc;
use sluice::record::{BatchBuilder, Compression};
use sluice::storage::index::OffsetIndex;
use sluice::storage::{FlushPolicy, Log, LogConfig};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn on_executor<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("bench body does not panic")
}

/// A batch of 1 KiB records about `batch_bytes` long.
fn batch_of(batch_bytes: usize) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None);
    let value = vec![b'v'; 1024];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    while b.is_empty() || b.estimated_bytes() + 1024 + 16 <= batch_bytes {
        b.push(now, None, Some(&value), &[]);
    }
    b.build().expect("plain batch builds")
}

/// Appends `iters` copies of `template` to a fresh log and flushes; returns
/// the time taken (log creation excluded).
fn append_run(template: BytesMut, iters: u64, flush: FlushPolicy) -> Duration {
    on_executor(move || async move {
        let dir = tempfile::tempdir_in(std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "target".into()))
            .expect("tempdir");
        let cfg = LogConfig {
            flush,
            retention_ms: None,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), cfg).await.expect("open");
        let start = Instant::now();
        for _ in 0..iters {
            log.append(BytesMut::from(&template[..]), 0).await.expect("append");
        }
        log.flush().await.expect("flush");
        let elapsed = start.elapsed();
        log.close().await.expect("close");
        elapsed
    })
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_direct_io");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    let plain = FlushPolicy::Interval(Duration::from_secs(3600));
    for (name, bytes, flush) in [
        ("1MiB_batches", 1 << 20, plain),
        ("16KiB_batches", 16 << 10, plain),
        ("1MiB_batches_fdatasync_each", 1 << 20, FlushPolicy::EveryAppend),
        ("16KiB_batches_fdatasync_each", 16 << 10, FlushPolicy::EveryAppend),
    ] {
        let template = batch_of(bytes);
        group.throughput(Throughput::Bytes(template.len() as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| append_run(template.clone(), iters, flush))
        });
    }
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("offset_index_lookup");
    for entries in [1_000u32, 262_144] {
        let mut index = OffsetIndex::default();
        for i in 0..entries {
            index.push(i * 4, i * 4096);
        }
        let mut probe = 0u32;
        group.bench_with_input(BenchmarkId::from_parameter(entries), &index, |b, index| {
            b.iter(|| {
                probe = probe.wrapping_add(7919) % (entries * 4);
                std::hint::black_box(index.lookup(probe))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, index_lookup);
criterion_main!(benches);
