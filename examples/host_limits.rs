//! Memory-copy and CRC-32C bandwidth of this host, for `perf/limits.sh`:
//! the CPU-side limits of a broker that copies each batch once into an
//! aligned buffer and checks its CRC once.
//!
//! `cargo run --release --example host_limits` prints one JSON line.

use std::hint::black_box;
use std::time::Instant;

/// Bytes per pass: larger than the last-level cache, so this is memory bandwidth.
const BUF_BYTES: usize = 64 << 20;
const PASSES: usize = 16;

fn best_gb_per_s(mut pass: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..PASSES {
        let start = Instant::now();
        pass();
        best = best.min(start.elapsed().as_secs_f64());
    }
    BUF_BYTES as f64 / best / 1e9
}

fn main() {
    let src: Vec<u8> = (0..BUF_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let mut dst = vec![0u8; BUF_BYTES];
    let memcpy = best_gb_per_s(|| {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });
    let crc = best_gb_per_s(|| {
        black_box(crc32c::crc32c(black_box(&src)));
    });
    println!("{{\"memcpy_gb_per_s\":{memcpy:.2},\"crc32c_gb_per_s\":{crc:.2}}}");
}
