//! Append throughput of one partition log through the real direct-I/O path.
//! Used by `perf/limits.sh` to put Sluice's number beside fio's.
//!
//! ```sh
//! cargo run --release --example append_throughput -- \
//!     --dir /data/bench --batch-bytes 1048576 --total-mib 1024 --durable
//! ```
//! Prints one JSON line: batch size, bytes, seconds, MB/s, fdatasyncs.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::record::{BatchBuilder, Compression};
use sluice::storage::{FlushPolicy, Log, LogConfig};

struct Args {
    dir: std::path::PathBuf,
    batch_bytes: usize,
    record_bytes: usize,
    total_bytes: u64,
    durable: bool,
    producers: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dir: std::env::temp_dir().join("sluice-append-bench"),
        batch_bytes: 1 << 20,
        record_bytes: 1024,
        total_bytes: 1 << 30,
        durable: false,
        producers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--dir" => a.dir = val()?.into(),
            "--batch-bytes" => a.batch_bytes = num(val()?)? as usize,
            "--record-bytes" => a.record_bytes = num(val()?)? as usize,
            "--total-mib" => a.total_bytes = num(val()?)? << 20,
            "--producers" => a.producers = num(val()?)?.max(1) as usize,
            "--durable" => a.durable = true,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// One batch of `record_bytes` records, about `batch_bytes` long in all.
fn batch(batch_bytes: usize, record_bytes: usize) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None);
    let value = vec![b'v'; record_bytes];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    while b.estimated_bytes() + record_bytes + 16 <= batch_bytes || b.is_empty() {
        b.push(now, None, Some(&value), &[]);
    }
    match b.build() {
        Ok(batch) => batch,
        Err(e) => panic!("building a plain batch cannot fail: {e}"),
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("append_throughput: {e}");
            std::process::exit(2);
        }
    };
    let _ = std::fs::remove_dir_all(&args.dir);
    let result = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .spawn(move || async move {
            let template = batch(args.batch_bytes, args.record_bytes);
            let cfg = LogConfig {
                flush: if args.durable { FlushPolicy::EveryAppend } else { FlushPolicy::Interval(Duration::from_secs(3600)) },
                batch_bytes_max: template.len().max(1 << 20),
                retention_ms: None,
                ..LogConfig::default()
            };
            let log = Log::open(&args.dir, cfg).await.map_err(|e| e.to_string())?;
            let appends = (args.total_bytes / template.len() as u64).max(1);
            let per_producer = appends.div_ceil(args.producers as u64);
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..args.producers {
                let log = log.clone();
                let template = template.clone();
                tasks.push(glommio::spawn_local(async move {
                    for _ in 0..per_producer {
                        // A fresh buffer per append, as one arriving from the network.
                        log.append(BytesMut::from(&template[..]), 0).await?;
                    }
                    Ok::<(), sluice::storage::StorageError>(())
                }));
            }
            for t in tasks {
                t.await.map_err(|e| e.to_string())?;
            }
            log.flush().await.map_err(|e| e.to_string())?;
            let secs = start.elapsed().as_secs_f64();
            let bytes = per_producer * args.producers as u64 * template.len() as u64;
            let syncs = log.sync_count();
            log.close().await.map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(&args.dir);
            Ok::<_, String>(format!(
                "{{\"batch_bytes\":{},\"durable\":{},\"producers\":{},\"bytes\":{bytes},\"seconds\":{secs:.3},\"mb_per_s\":{:.1},\"fdatasyncs\":{syncs}}}",
                template.len(),
                args.durable,
                args.producers,
                bytes as f64 / secs / 1e6
            ))
        })
        .map_err(|e| e.to_string())
        .and_then(|h| h.join().map_err(|e| format!("{e:?}")));
    match result {
        Ok(Ok(line)) => println!("{line}"),
        Ok(Err(e)) | Err(e) => {
            eprintln!("append_throughput: {e}");
            std::process::exit(1);
        }
    }
}
