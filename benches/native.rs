//! Benchmarks of the native codec on the data path: encoding and decoding
//! a produce request and a fetch response of 16 partitions × 64 KiB of
//! records. Records are never copied by the codec, so the times are those
//! of the FlatBuffer metadata alone, whatever the record bytes.
//! Run: `cargo bench --bench native`.
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::api::{
    Acks, ApiKey, ErrorCode, FetchPartitionResponse, FetchTopicResponse, ProducePartition, ProduceTopic, Request,
    RequestHeader, Response, ResponseHeader,
};
use sluice::protocol::native::{decode_request, decode_response, encode_request, encode_response, FRAME_PREFIX_BYTES};
use sluice::record::{BatchBuilder, Compression};

// The broker's allocator, so allocation costs match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: u32 = 16;
const RECORDS_BYTES_PER_PARTITION: usize = 64 << 10;
const RECORD_VALUE_BYTES: usize = 1000;

/// A real v2 batch of about `bytes` bytes.
fn batch(bytes: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    let value = vec![b'x'; RECORD_VALUE_BYTES];
    for i in 0..bytes / (RECORD_VALUE_BYTES + 32) {
        b.push(
            1_700_000_000_000 + i as i64,
            Some(&(i as u64).to_be_bytes()),
            Some(&value),
            &[],
        );
    }
    b.finish().expect("build").freeze()
}

fn produce() -> Request {
    let partitions = (0..PARTITIONS)
        .map(|p| ProducePartition {
            partition: p,
            records: batch(RECORDS_BYTES_PER_PARTITION),
        })
        .collect();
    Request::Produce {
        acks: Acks::All,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: "bench".into(),
            partitions,
        }],
    }
}

fn fetch() -> Response {
    // Two stored chunks per partition, as a fetch spanning cached batches sends.
    let partitions = (0..PARTITIONS)
        .map(|p| FetchPartitionResponse {
            partition: p,
            error: ErrorCode::None,
            high_watermark: 1_000_000,
            log_start_offset: 0,
            records: vec![
                batch(RECORDS_BYTES_PER_PARTITION / 2),
                batch(RECORDS_BYTES_PER_PARTITION / 2),
            ],
        })
        .collect();
    Response::Fetch {
        topics: vec![FetchTopicResponse {
            name: "bench".into(),
            partitions,
        }],
    }
}

/// The frame body as a reader receives it: chunks concatenated, prefix stripped.
fn body(chunks: &[Bytes]) -> Bytes {
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    Bytes::from(all).slice(FRAME_PREFIX_BYTES..)
}

fn bench_produce(c: &mut Criterion) {
    let req = produce();
    let header = RequestHeader {
        correlation_id: 1,
        api: ApiKey::Produce,
        version: 0,
        client_id: "bench".into(),
    };
    let frame = body(&encode_request(&header, &req));
    let mut group = c.benchmark_group("produce_16x64KiB");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_request(black_box(&header), black_box(&req)))
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode_request(black_box(frame.clone())).expect("valid"))
    });
    group.finish();
}

fn bench_fetch(c: &mut Criterion) {
    let resp = fetch();
    let header = ResponseHeader { correlation_id: 1 };
    let frame = body(&encode_response(&header, ApiKey::Fetch, &resp));
    let mut group = c.benchmark_group("fetch_16x64KiB");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_response(black_box(&header), ApiKey::Fetch, black_box(&resp)))
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode_response(black_box(frame.clone()), ApiKey::Fetch).expect("valid"))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_produce, bench_fetch
}
criterion_main!(benches);
