//! The native client against a real broker: 100k keyed records over a topic
//! of 8 partitions spread over all shards; every record comes back exactly
//! once, in order within its partition, on the partition the key chose.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Broker;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::api::TopicConfig;
use sluice::client::{
    partition_for_key, Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo,
};

const RECORDS: usize = 100_000;
const PARTITIONS: u32 = 8;
const KEYS: usize = 997;

#[test]
fn hundred_thousand_keyed_records_round_trip_in_order() {
    let broker = Broker::start(2, &[]);
    let bootstrap = broker.bootstrap();
    assert_eq!(
        Broker::metric_sum(&broker.scrape(), "sluice_produce_records_total"),
        0.0
    );
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let client = Client::connect(&bootstrap, ClientConfig::default())
                .await
                .expect("connect");
            client
                .create_topic("keyed", PARTITIONS, TopicConfig::default())
                .await
                .expect("create");
            let info = client.describe_topic("keyed").await.expect("describe");
            let shards: std::collections::HashSet<u32> = info.partitions.iter().map(|p| p.shard).collect();
            assert_eq!(shards.len(), 2, "partitions spread over every shard");

            let producer = Producer::new(client.clone(), ProducerConfig::default());
            let sends: Vec<_> = (0..RECORDS)
                .map(|i| {
                    let key = Bytes::from(format!("key-{}", i % KEYS));
                    producer.send("keyed", Some(key), Some(Bytes::from(i.to_string())), Vec::new())
                })
                .collect();
            producer.flush().await;
            for (i, sent) in sends.into_iter().enumerate() {
                let md = sent.await.expect("acknowledged");
                let key = format!("key-{}", i % KEYS);
                assert_eq!(md.partition, partition_for_key(key.as_bytes(), PARTITIONS));
            }

            let mut consumer = Consumer::new(client, ConsumerConfig::default());
            consumer.assign("keyed", &(0..PARTITIONS).collect::<Vec<_>>());
            for p in 0..PARTITIONS {
                consumer.seek("keyed", p, SeekTo::Earliest).await.expect("seek");
            }
            let mut seen = vec![false; RECORDS];
            let mut last_per_key: HashMap<String, usize> = HashMap::new();
            let mut next_offset: HashMap<u32, i64> = HashMap::new();
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while got < RECORDS {
                assert!(Instant::now() < deadline, "only {got} of {RECORDS} records came back");
                for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
                    let key = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
                    let i: usize = std::str::from_utf8(&r.value.expect("value"))
                        .expect("utf8")
                        .parse()
                        .expect("number");
                    assert_eq!(key, format!("key-{}", i % KEYS), "key and value travel together");
                    assert_eq!(r.partition, partition_for_key(key.as_bytes(), PARTITIONS));
                    assert!(!seen[i], "record {i} delivered twice");
                    seen[i] = true;
                    got += 1;
                    // Offsets are dense per partition, and a key's records
                    // keep the order they were sent in.
                    let expect = next_offset.entry(r.partition).or_insert(0);
                    assert_eq!(r.offset, *expect, "partition {} skipped or reordered", r.partition);
                    *expect += 1;
                    if let Some(prev) = last_per_key.insert(key, i) {
                        assert!(prev < i, "key order broken: {prev} after {i}");
                    }
                }
            }
            assert!(seen.iter().all(|&s| s));
        })
        .expect("executor")
        .join()
        .expect("test body");
    // The metrics endpoint saw it all: every record appended, every
    // partition owned, fdatasyncs timed, reads served.
    let text = broker.scrape();
    assert_eq!(
        Broker::metric_sum(&text, "sluice_produce_records_total"),
        RECORDS as f64
    );
    assert_eq!(Broker::metric_sum(&text, "sluice_partitions"), f64::from(PARTITIONS));
    assert!(Broker::metric_sum(&text, "sluice_fetch_bytes_total") > 0.0);
    let fsyncs: f64 = text
        .lines()
        .filter(|l| l.starts_with("sluice_fsync_latency_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(fsyncs > 0.0, "fsync latency recorded");
}
