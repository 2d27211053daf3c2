//! `sluice serve`: starts one pinned glommio executor per shard, joins them
//! in the cross-shard mesh, opens each shard's partitions, and listens:
//! every shard accepts on the shared native port and on the Kafka port
//! (both SO_REUSEPORT) and on its own shard port. SIGINT/SIGTERM stop accepting, let in-flight requests
//! finish, flush and close every log.

mod connection;
mod frames;
mod kafka;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::broker::{MetadataStore, ProducerIdAllocator, Shard, ShardMsg};
use crate::cluster::identity::NodeRole;
use crate::config::ServeConfig;
use crate::metrics::ShardMetrics;

/// How long a clean shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a shard checks whether a shutdown was asked for.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts) and
/// starts a thread that waits for them and raises `flag`.
pub fn install_signal_thread(flag: Arc<AtomicBool>) {
    // SAFETY: sigset manipulation on a local, zeroed sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                if libc::sigwait(&set, &mut sig) == 0 {
                    tracing::info!(signal = sig, "signal received: stopping");
                    flag.store(true, Ordering::SeqCst);
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::warn!(error = %e, "no signal thread: stop with SIGKILL only"));
    }
}

/// glommio's io memory per shard, fitted to RLIMIT_MEMLOCK (registered
/// buffers are pinned and charged to it).
fn io_memory_per_shard(cfg: &ServeConfig) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return cfg.io_memory_bytes_max;
    }
    // Leave a quarter for the rings themselves.
    let share = (lim.rlim_cur as usize / cfg.shards) * 3 / 4;
    let bytes = cfg.io_memory_bytes_max.min(share) & !((1 << 20) - 1);
    if bytes < cfg.io_memory_bytes_max {
        tracing::warn!(
            memlock_bytes = lim.rlim_cur,
            io_memory_bytes = bytes.max(1 << 20),
            "RLIMIT_MEMLOCK limits glommio's registered io memory; raise it (ulimit -l, LimitMEMLOCK=) for \
             fixed-buffer I/O (see tuning.md)"
        );
    }
    bytes.max(1 << 20)
}

/// Runs the broker until a signal asks it to stop. Returns an error message
/// if it cannot start (port in use, damaged metadata or producer id file,
/// unreadable data dir).
pub fn run(cfg: ServeConfig) -> Result<(), String> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| format!("creating {}: {e}", cfg.data_dir.display()))?;
    // Before anything else reads or writes the directory.
    let role = match &cfg.cluster {
        Some(c) => NodeRole::Cluster {
            node_id: c.node_id,
            voters: c.voters.clone(),
        },
        None => NodeRole::Single {
            node_id: u32::try_from(cfg.node_id).unwrap_or(0),
        },
    };
    let identity = crate::cluster::identity::check_or_record(&cfg.data_dir, &role)?;
    let meta = Arc::new(MetadataStore::open(&cfg.data_dir)?);
    // Moved into shard 0, its only user. In cluster mode the quorum hands
    // out producer ids instead.
    let mut producer_ids = match cfg.cluster {
        None => Some(ProducerIdAllocator::open(&cfg.data_dir)?),
        Some(_) => None,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    install_signal_thread(shutdown.clone());
    let io_memory = io_memory_per_shard(&cfg);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = cfg.shards;
    let spin_us = cfg.spin_before_park_us;
    let cfg = Arc::new(cfg);
    let mesh = MeshBuilder::<ShardMsg, _>::full(cfg.shards, cfg.mesh_channel_depth);
    let peers: Arc<Vec<AtomicUsize>> = Arc::new((0..cfg.shards).map(|_| AtomicUsize::new(usize::MAX)).collect());
    let view = cfg
        .cluster
        .as_ref()
        .map(|c| Arc::new(crate::cluster::view::ClusterView::new(c.node_id)));
    if let (Some(view), Some(id)) = (&view, &identity.cluster_id) {
        view.learn_cluster_id(id);
    }
    let node = Node {
        view,
        cfg,
        meta,
        peers,
        shutdown,
        listening: Arc::new(AtomicUsize::new(0)),
        metrics: Arc::new((0..shards).map(|_| Arc::new(ShardMetrics::default())).collect()),
    };
    let mut handles = Vec::new();
    for id in 0..shards {
        let (node, mesh) = (node.clone(), mesh.clone());
        let producer_ids = if id == 0 { producer_ids.take() } else { None };
        let handle = LocalExecutorBuilder::new(Placement::Fixed(id % cores))
            .name(&format!("shard-{id}"))
            .io_memory(io_memory)
            .spin_before_park(Duration::from_micros(spin_us))
            .spawn(move || async move {
                let shutdown = node.shutdown.clone();
                let result = shard_main(id, node, mesh, producer_ids).await;
                if let Err(e) = &result {
                    tracing::error!(shard = id, error = %e, "shard failed; stopping the node");
                    shutdown.store(true, Ordering::SeqCst);
                }
                result
            })
            .map_err(|e| format!("starting shard {id}: {e}"))?;
        handles.push(handle);
    }
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("shard thread: {e:?}"));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

/// What every shard of the node shares.
#[derive(Clone)]
struct Node {
    cfg: Arc<ServeConfig>,
    /// Cluster mode: the applied cluster metadata, shared by the shards.
    view: Option<Arc<crate::cluster::view::ClusterView>>,
    meta: Arc<MetadataStore>,
    /// `peers[s]`: shard s's id in the mesh, once it has joined.
    peers: Arc<Vec<AtomicUsize>>,
    shutdown: Arc<AtomicBool>,
    listening: Arc<AtomicUsize>,
    metrics: Arc<Vec<Arc<ShardMetrics>>>,
}

async fn shard_main(
    id: usize,
    node: Node,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    producer_ids: Option<ProducerIdAllocator>,
) -> Result<(), String> {
    let Node {
        cfg,
        view,
        meta,
        peers,
        shutdown,
        listening,
        metrics,
    } = node;
    crate::metrics::install(metrics[id].clone());
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| format!("joining the shard mesh failed: {e}"))?;
    peers[id].store(senders.peer_id(), Ordering::SeqCst);
    let started = Instant::now();
    while peers.iter().any(|p| p.load(Ordering::SeqCst) == usize::MAX) {
        if started.elapsed() > Duration::from_secs(30) || shutdown.load(Ordering::SeqCst) {
            return Err("other shards did not start".into());
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let peer_of_shard = peers.iter().map(|p| p.load(Ordering::SeqCst)).collect();
    let shard = Shard::new(
        id,
        cfg.clone(),
        meta.clone(),
        senders,
        peer_of_shard,
        metrics[id].clone(),
        producer_ids,
        view.clone(),
    );
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                glommio::spawn_local(shard.clone().handle_msg(msg)).detach();
            }
        })
        .detach();
    }
    // In cluster mode shard 0 opens the partitions this node hosts once
    // the quorum's state is loaded.
    if cfg.cluster.is_none() {
        for topic in meta.snapshot().topics.values() {
            shard.open_topic(topic).await?;
        }
    }
    // Cluster mode runs on shard 0, and is up before clients are let in
    // (InitProducerId needs it).
    let cluster = match (&cfg.cluster, id) {
        (Some(settings), 0) => {
            let view = view.clone().ok_or("cluster mode without a cluster view")?;
            let (cluster, links) = crate::cluster::runtime::Cluster::open(&cfg, settings, view)?;
            let cluster = crate::cluster::runtime::start(cluster, links, settings, shard.clone())?;
            shard.use_cluster(cluster.clone());
            let changed = cluster.borrow().changed();
            let reconciler = shard.clone();
            glommio::spawn_local(async move {
                let mut seen = 0;
                loop {
                    changed.wait_for(seen + 1).await;
                    seen = changed.get();
                    reconciler.reconcile().await;
                }
            })
            .detach();
            Some(cluster)
        }
        _ => None,
    };
    let shared = TcpListener::bind(cfg.native_addr).map_err(|e| format!("listening on {}: {e}", cfg.native_addr))?;
    let own_addr = std::net::SocketAddr::new(cfg.native_addr.ip(), cfg.shard_port(id));
    let own = TcpListener::bind(own_addr).map_err(|e| format!("listening on {own_addr}: {e}"))?;
    let kafka = TcpListener::bind(cfg.kafka_addr).map_err(|e| format!("kafka listener on {}: {e}", cfg.kafka_addr))?;
    let accepts = [(shared, Wire::Native), (own, Wire::Native), (kafka, Wire::Kafka)]
        .map(|(l, wire)| glommio::spawn_local(accept_loop(shard.clone(), l, wire)));
    glommio::spawn_local(retention_loop(shard.clone())).detach();
    if id == 0 {
        let listener = TcpListener::bind(cfg.metrics_addr)
            .map_err(|e| format!("metrics listener on {}: {e}", cfg.metrics_addr))?;
        glommio::spawn_local(metrics_loop(listener, metrics.clone(), cluster.clone(), shard.clone())).detach();
    }
    if listening.fetch_add(1, Ordering::SeqCst) + 1 == cfg.shards {
        tracing::info!(
            native = %cfg.native_addr,
            kafka = %cfg.kafka_addr,
            shard_ports = %format!("{}..={}", cfg.shard_port(0), cfg.shard_port(cfg.shards - 1)),
            data_dir = %cfg.data_dir.display(),
            shards = cfg.shards,
            partitions = meta.snapshot().topics.values().map(|t| t.shards.len()).sum::<usize>(),
            "sluice is listening"
        );
    }
    let mut fatal = None;
    while !shutdown.load(Ordering::SeqCst) {
        glommio::timer::sleep(SHUTDOWN_POLL).await;
        if let Some(why) = cluster.as_ref().and_then(|c| c.borrow().fatal().map(str::to_string)) {
            shutdown.store(true, Ordering::SeqCst);
            fatal = Some(why);
        }
    }
    for a in accepts {
        drop(a.cancel());
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while shard.inflight.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    shard.close_all().await;
    match fatal {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy)]
enum Wire {
    Native,
    Kafka,
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, wire: Wire) {
    let max_conns = (shard.config.connections_max / shard.config.shards).max(1);
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if open.get() >= max_conns {
                    tracing::warn!(max_conns, "refusing a connection: shard at its connection limit");
                    drop(stream);
                    continue;
                }
                open.set(open.get() + 1);
                shard.metrics.connections.fetch_add(1, Ordering::Relaxed);
                let (shard, open, metrics) = (shard.clone(), open.clone(), shard.metrics.clone());
                glommio::spawn_local(async move {
                    match wire {
                        Wire::Native => connection::serve(shard, stream).await,
                        Wire::Kafka => kafka::serve(shard, stream).await,
                    }
                    open.set(open.get() - 1);
                    metrics.connections.fetch_sub(1, Ordering::Relaxed);
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn retention_loop(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(shard.config.retention_check_interval_ms)).await;
        let now_ms = crate::record::now_ms();
        for part in shard.partitions() {
            match part.log().enforce_retention(now_ms).await {
                Ok(out) if out.segments_deleted > 0 => tracing::info!(
                    topic = %part.topic, partition = part.index, segments = out.segments_deleted,
                    bytes = out.bytes_deleted, log_start = out.log_start_offset, "retention deleted segments"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(topic = %part.topic, partition = part.index, error = %e, "retention failed"),
            }
        }
        shard.maintain_groups().await;
    }
}

/// Serves `GET /metrics` in Prometheus text format and, in cluster mode,
/// `GET /cluster` (controller, brokers, partitions); anything else is 404.
async fn metrics_loop(
    listener: TcpListener,
    metrics: Arc<Vec<Arc<ShardMetrics>>>,
    cluster: Option<Rc<std::cell::RefCell<crate::cluster::runtime::Cluster>>>,
    shard: Rc<Shard>,
) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    /// Largest request head we read before answering.
    const HEAD_BYTES_MAX: usize = 8 << 10;
    loop {
        let Ok(mut stream) = listener.accept().await else {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let metrics = metrics.clone();
        let cluster = cluster.clone();
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_BYTES_MAX {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let (status, body) = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
                ("200 OK", crate::metrics::render(&metrics))
            } else if head.starts_with(b"GET /cluster ") {
                match &cluster {
                    Some(c) => {
                        let mut text = c.borrow().describe();
                        for line in shard.replication_report().await {
                            text.push_str(&line);
                            text.push('\n');
                        }
                        ("200 OK", text)
                    }
                    None => ("404 Not Found", "not in cluster mode\n".to_string()),
                }
            } else if head.starts_with(b"POST /cluster/reassign?") {
                // The query runs to the space before HTTP/1.1.
                let line = String::from_utf8_lossy(&head[b"POST /cluster/reassign?".len()..]).into_owned();
                let query = line.split(' ').next().unwrap_or_default();
                match (&cluster, crate::cluster::runtime::parse_reassign(query)) {
                    (None, _) => ("404 Not Found", "not in cluster mode\n".to_string()),
                    (Some(_), Err(e)) => ("400 Bad Request", format!("{e}\n")),
                    (Some(_), Ok(cmd)) => {
                        let done = match cmd {
                            crate::cluster::metadata::Command::CancelReassignment { .. } => "reassignment cancelled\n",
                            _ => "reassignment started\n",
                        };
                        match shard.propose(cmd).await {
                            Ok(_) => ("200 OK", done.to_string()),
                            Err(e) => ("409 Conflict", format!("{e}\n")),
                        }
                    }
                }
            } else if head.starts_with(b"POST /cluster/elect-leaders ") {
                match &cluster {
                    Some(c) => {
                        let n = c.borrow_mut().elect_preferred_leaders();
                        ("200 OK", format!("proposed {n} preferred-leader elections\n"))
                    }
                    None => ("404 Not Found", "not in cluster mode\n".to_string()),
                }
            } else {
                ("404 Not Found", "see /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.close().await;
        })
        .detach();
    }
}
