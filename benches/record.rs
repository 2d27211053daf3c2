//! Benchmarks of the record hot paths: batch validation (one CRC-32C pass),
//! building a batch with each codec, and iterating records.
//! Run: `cargo bench --bench record`.
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::record::{records, validate, BatchBuilder, Compression};

// The broker's allocator, so allocation costs match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORD_VALUE_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 1024;
const BATCH_BYTES_MAX: usize = 4 << 20;

/// Log-like values: repeated field names with random numbers, so codecs see
/// realistic (not trivially compressible) input.
fn values(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..RECORDS_PER_BATCH)
        .map(|_| {
            let mut v = Vec::with_capacity(RECORD_VALUE_BYTES + 64);
            while v.len() < RECORD_VALUE_BYTES {
                let line = format!(
                    "{{\"user\":{},\"event\":\"click\",\"ms\":{},\"ok\":{}}} ",
                    rng.random_range(0..100_000u32),
                    rng.random_range(0..10_000u32),
                    rng.random_bool(0.9)
                );
                v.extend_from_slice(line.as_bytes());
            }
            v.truncate(RECORD_VALUE_BYTES);
            v
        })
        .collect()
}

fn build(values: &[Vec<u8>], compression: Compression) -> Bytes {
    let mut b = BatchBuilder::with_capacity(compression, values.len() * (RECORD_VALUE_BYTES + 32));
    for (i, v) in values.iter().enumerate() {
        let key = (i as u64).to_be_bytes();
        b.push(1_700_000_000_000 + i as i64, Some(&key), Some(v), &[]);
    }
    b.build().expect("build").freeze()
}

fn bench_validate(c: &mut Criterion) {
    let batch = build(&values(1), Compression::None);
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("crc32c_1MiB_batch", |b| {
        b.iter(|| validate(black_box(&batch), BATCH_BYTES_MAX).expect("valid"))
    });
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let values = values(2);
    let raw_bytes = (RECORDS_PER_BATCH * RECORD_VALUE_BYTES) as u64;
    let mut group = c.benchmark_group("build_1024x1KiB");
    group.throughput(Throughput::Bytes(raw_bytes));
    for compression in Compression::all() {
        group.bench_with_input(
            BenchmarkId::from_parameter(compression),
            &compression,
            |b, &compression| b.iter(|| build(black_box(&values), compression)),
        );
    }
    group.finish();
}

fn bench_iterate(c: &mut Criterion) {
    let values = values(3);
    let raw_bytes = (RECORDS_PER_BATCH * RECORD_VALUE_BYTES) as u64;
    let mut group = c.benchmark_group("iterate_1024x1KiB");
    group.throughput(Throughput::Bytes(raw_bytes));
    for compression in Compression::all() {
        let batch = build(&values, compression);
        group.bench_with_input(BenchmarkId::from_parameter(compression), &batch, |b, batch| {
            b.iter(|| {
                let iter = records(black_box(batch), BATCH_BYTES_MAX).expect("records");
                let mut n = 0usize;
                for record in iter {
                    n += record.expect("record").value.map_or(0, |v| v.len());
                }
                assert_eq!(n, RECORDS_PER_BATCH * RECORD_VALUE_BYTES);
                n
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_validate, bench_build, bench_iterate
}
criterion_main!(benches);
