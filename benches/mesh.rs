//! The cost of a cross-shard hop: a request sent from one glommio executor
//! to another over the channel mesh (as a partition request for another
//! shard travels) and its answer sent back through a oneshot.
//!
//! `cargo bench --bench mesh`. Each executor is pinned to its own core when
//! the host has two or more; on a busy 2-core host this includes waking the
//! other core, which is exactly the cost the shard-aware client avoids.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

enum Msg {
    Ping { reply: oneshot::Sender<u64>, n: u64 },
    Stop,
}

/// Runs `iters` round trips from executor 0 to executor 1 and back, both
/// spinning `spin` before they park; returns the time they took (executor
/// start-up excluded).
fn round_trips(iters: u64, spin: Duration) -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mesh = MeshBuilder::<Msg, _>::full(2, 64);
    let server_mesh = mesh.clone();
    let server = LocalExecutorBuilder::new(if cores > 1 {
        Placement::Fixed(1)
    } else {
        Placement::Unbound
    })
    .io_memory(1 << 20)
    .spin_before_park(spin)
    .spawn(move || async move {
        let (_senders, mut receivers) = server_mesh.join().await.expect("join");
        for (_, rx) in receivers.streams() {
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Ping { reply, n } => {
                        let _ = reply.send(n + 1);
                    }
                    Msg::Stop => return,
                }
            }
        }
    })
    .expect("server executor");
    let client = LocalExecutorBuilder::new(Placement::Fixed(0))
        .io_memory(1 << 20)
        .spin_before_park(spin)
        .spawn(move || async move {
            let (senders, _receivers) = mesh.join().await.expect("join");
            let peer = 1 - senders.peer_id();
            let start = Instant::now();
            for n in 0..iters {
                let (tx, rx) = oneshot::channel();
                if senders.send_to(peer, Msg::Ping { reply: tx, n }).await.is_err() {
                    panic!("peer gone");
                }
                assert_eq!(rx.await.expect("answer"), n + 1);
            }
            let elapsed = start.elapsed();
            let _ = senders.send_to(peer, Msg::Stop).await;
            elapsed
        })
        .expect("client executor");
    let elapsed = client.join().expect("client");
    server.join().expect("server");
    elapsed
}

fn mesh(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_shard");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function("mesh_round_trip", |b| b.iter_custom(|n| round_trips(n, Duration::ZERO)));
    // Both executors spin 200 us before parking: no wake-up on the hop.
    group.bench_function("mesh_round_trip_spinning", |b| {
        b.iter_custom(|n| round_trips(n, Duration::from_micros(200)))
    });
    group.finish();
}

criterion_group!(benches, mesh);
criterion_main!(benches);
