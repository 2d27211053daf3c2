//! Restart and crash durability against real broker processes: topics,
//! their placement on shards and every record come back after a clean
//! restart; after kill -9 during acks=all production every acknowledged
//! record is present.

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{call, Broker};
use sluice::api::*;
use sluice::record::{self, BatchBuilder, Compression};

fn batch(tag: &str, n: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::Lz4);
    for i in 0..n {
        b.push(
            1_700_000_000_000,
            Some(tag.as_bytes()),
            Some(format!("{tag}/{i}").as_bytes()),
            &[],
        );
    }
    b.build().expect("builds").freeze()
}

fn create(s: &mut TcpStream, name: &str, partitions: u32) {
    let resp = call(
        s,
        1,
        Request::CreateTopics {
            topics: vec![NewTopic {
                replication: Default::default(),
                name: name.into(),
                partitions,
                config: TopicConfig::default(),
            }],
        },
    )
    .expect("create");
    assert!(
        matches!(resp, Response::CreateTopics { ref topics } if topics[0].error == ErrorCode::None),
        "{resp:?}"
    );
}

fn metadata(s: &mut TcpStream, topic: &str) -> TopicInfo {
    match call(
        s,
        2,
        Request::Metadata {
            topics: Some(vec![topic.into()]),
        },
    )
    .expect("metadata")
    {
        Response::Metadata { mut topics, .. } => topics.remove(0),
        other => panic!("{other:?}"),
    }
}

fn produce(s: &mut TcpStream, cid: i32, topic: &str, partition: u32, records: Bytes) -> ProducePartitionResponse {
    let req = Request::Produce {
        acks: Acks::All,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, records }],
        }],
    };
    match call(s, cid, req).expect("produce") {
        Response::Produce { mut topics } => topics.remove(0).partitions.remove(0),
        other => panic!("{other:?}"),
    }
}

/// Every record value of a partition, in offset order, read with fetches.
fn read_partition(s: &mut TcpStream, topic: &str, partition: u32) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let req = Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    offset,
                    max_bytes: 256 << 10,
                }],
            }],
        };
        let p = match call(s, 3, req).expect("fetch") {
            Response::Fetch { mut topics } => topics.remove(0).partitions.remove(0),
            other => panic!("{other:?}"),
        };
        assert_eq!(p.error, ErrorCode::None);
        if p.records.is_empty() {
            assert_eq!(offset, p.high_watermark, "no data below the high watermark was skipped");
            return out;
        }
        for chunk in p.records {
            let mut at = 0;
            while at < chunk.len() {
                let size = record::batch_size(&chunk[at..], 1 << 24).expect("size").expect("whole");
                let b = chunk.slice(at..at + size);
                record::validate(&b, 1 << 24).expect("served batches are valid");
                for r in record::records(&b, 1 << 24).expect("records") {
                    let r = r.expect("record");
                    if r.offset >= offset {
                        out.push((
                            r.offset,
                            String::from_utf8(r.value.expect("value").to_vec()).expect("utf8"),
                        ));
                        offset = r.offset + 1;
                    }
                }
                at += size;
            }
        }
    }
}

#[test]
fn topics_placement_and_records_survive_a_clean_restart() {
    let mut b = Broker::start(2, &[]);
    let mut s = TcpStream::connect(b.addr()).expect("connect");
    create(&mut s, "keep", 4);
    create(&mut s, "other", 3);
    let before = metadata(&mut s, "keep");
    let shards: Vec<u32> = before.partitions.iter().map(|p| p.shard).collect();
    assert_eq!(
        shards.iter().filter(|&&x| x == 0).count(),
        2,
        "even placement: {shards:?}"
    );
    for p in 0..4 {
        for i in 0..20 {
            let r = produce(&mut s, 10 + i, "keep", p, batch(&format!("p{p}b{i}"), 5));
            assert_eq!(r.error, ErrorCode::None);
        }
    }
    let want: Vec<_> = (0..4).map(|p| read_partition(&mut s, "keep", p)).collect();
    assert!(want.iter().all(|v| v.len() == 100));
    drop(s);
    assert_eq!(b.stop(), 0);
    b.restart();
    let mut s = TcpStream::connect(b.addr()).expect("connect");
    let after = metadata(&mut s, "keep");
    assert_eq!(
        after.partitions.iter().map(|p| p.shard).collect::<Vec<_>>(),
        shards,
        "placement persisted"
    );
    assert_eq!(metadata(&mut s, "other").partitions.len(), 3);
    for p in 0..4u32 {
        assert_eq!(read_partition(&mut s, "keep", p), want[p as usize]);
    }
    // Deleting a topic removes it, durably.
    let resp = call(
        &mut s,
        4,
        Request::DeleteTopics {
            names: vec!["other".into()],
        },
    )
    .expect("delete");
    assert!(matches!(resp, Response::DeleteTopics { ref topics } if topics[0].error == ErrorCode::None));
    drop(s);
    b.kill9();
    b.restart();
    let mut s = TcpStream::connect(b.addr()).expect("connect");
    assert_eq!(metadata(&mut s, "other").error, ErrorCode::UnknownTopicOrPartition);
    assert!(!b.data_dir().join("other-0").exists());
}

#[test]
fn kill9_during_acks_all_production_loses_nothing_acknowledged() {
    let mut b = Broker::start(2, &[]);
    let mut s = TcpStream::connect(b.addr()).expect("connect");
    create(&mut s, "crash", 4);
    drop(s);
    // Producers on every partition; each records the batches acknowledged.
    let acked: Arc<Mutex<HashMap<u32, Vec<String>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for p in 0..4u32 {
        let (addr, acked, stop) = (b.addr(), acked.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(addr) else { return };
            for i in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let tag = format!("p{p}b{i}");
                let req = Request::Produce {
                    acks: Acks::All,
                    timeout_ms: 10_000,
                    topics: vec![ProduceTopic {
                        name: "crash".into(),
                        partitions: vec![ProducePartition {
                            partition: p,
                            records: batch(&tag, 4),
                        }],
                    }],
                };
                match call(&mut s, i, req) {
                    Ok(Response::Produce { topics }) if topics[0].partitions[0].error == ErrorCode::None => {
                        acked.lock().expect("lock").entry(p).or_default().push(tag);
                    }
                    _ => return, // the broker died: this batch was not acknowledged
                }
            }
        }));
    }
    // Let them get going, then crash the broker under load.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().expect("lock").values().map(Vec::len).sum::<usize>() < 400 {
        assert!(std::time::Instant::now() < deadline, "producers made no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    b.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("producer thread");
    }
    b.restart();
    let mut s = TcpStream::connect(b.addr()).expect("connect");
    let acked = acked.lock().expect("lock");
    for p in 0..4u32 {
        let got = read_partition(&mut s, "crash", p);
        let values: std::collections::HashSet<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        for tag in acked.get(&p).map(Vec::as_slice).unwrap_or_default() {
            for i in 0..4 {
                let v = format!("{tag}/{i}");
                assert!(
                    values.contains(v.as_str()),
                    "acknowledged record {v} lost after kill -9"
                );
            }
        }
        // Offsets are dense and ordered.
        for (i, (offset, _)) in got.iter().enumerate() {
            assert_eq!(*offset, i as i64);
        }
    }
}
