//! Growing a topic against a real broker: the native client and the CLI
//! add partitions, the existing ones keep their shard and data, a record
//! keyed onto a new partition is produced and consumed there, bad counts
//! are refused, and the grown topic survives a restart.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{with_client, Broker};
use sluice::api::{ErrorCode, TopicConfig};
use sluice::client::{partition_for_key, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo};

const BEFORE: u32 = 2;
const AFTER: u32 = 5;
const VIA_CLI: u32 = 7;

/// A key that murmur2 puts on `partition` of `count`.
fn key_for(partition: u32, count: u32) -> Bytes {
    (0..10_000)
        .map(|i| format!("key-{i}"))
        .find(|k| partition_for_key(k.as_bytes(), count) == partition)
        .map(Bytes::from)
        .expect("some key lands on every partition")
}

#[test]
fn grown_topic_takes_records_on_its_new_partitions() {
    let mut broker = Broker::start(2, &[]);
    with_client(&broker.bootstrap(), |client| async move {
        client
            .create_topic("grow", BEFORE, TopicConfig::default())
            .await
            .expect("create");
        let before = client.describe_topic("grow").await.expect("describe");
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let old = producer.send("grow", Some(key_for(0, BEFORE)), Some(Bytes::from("old")), Vec::new());
        producer.flush().await;
        assert_eq!(old.await.expect("acknowledged").partition, 0);

        let refused = client.create_partitions("grow", BEFORE).await.expect_err("not larger");
        assert_eq!(refused.code(), Some(ErrorCode::InvalidPartitions), "{refused}");
        let unknown = client.create_partitions("nope", 3).await.expect_err("no topic");
        assert_eq!(unknown.code(), Some(ErrorCode::UnknownTopicOrPartition), "{unknown}");

        client.create_partitions("grow", AFTER).await.expect("grow");
        let after = client.describe_topic("grow").await.expect("describe");
        assert_eq!(after.partitions.len(), AFTER as usize);
        for (old, new) in before.partitions.iter().zip(&after.partitions) {
            assert_eq!((old.partition, old.shard), (new.partition, new.shard), "placement kept");
        }
        assert!(after.partitions.iter().all(|p| p.error == ErrorCode::None));

        let newest = AFTER - 1;
        let sent = producer.send(
            "grow",
            Some(key_for(newest, AFTER)),
            Some(Bytes::from("new")),
            Vec::new(),
        );
        producer.flush().await;
        let md = sent.await.expect("acknowledged on a new partition");
        assert_eq!((md.partition, md.offset), (newest, 0));

        let mut consumer = Consumer::new(client, ConsumerConfig::default());
        consumer.assign("grow", &[0, newest]);
        for p in [0, newest] {
            consumer.seek("grow", p, SeekTo::Earliest).await.expect("seek");
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < 2 {
            assert!(Instant::now() < deadline, "only {got:?} came back");
            for r in consumer.poll(Duration::from_millis(200)).await.expect("poll") {
                got.push((r.partition, r.value.unwrap_or_default()));
            }
        }
        got.sort();
        assert_eq!(got, vec![(0, Bytes::from("old")), (newest, Bytes::from("new"))]);
    });

    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "add-partitions", "--bootstrap", &broker.bootstrap(), "grow"])
        .args(["--partitions", &VIA_CLI.to_string()])
        .output()
        .expect("sluice runs");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let shrink = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "add-partitions", "--bootstrap", &broker.bootstrap(), "grow"])
        .args(["--partitions", "3"])
        .output()
        .expect("sluice runs");
    assert!(!shrink.status.success(), "shrinking is refused");

    assert_eq!(broker.stop(), 0, "clean shutdown");
    broker.restart();
    with_client(&broker.bootstrap(), |client| async move {
        let t = client.describe_topic("grow").await.expect("describe after restart");
        assert_eq!(t.partitions.len(), VIA_CLI as usize);
        assert!(t.partitions.iter().all(|p| p.error == ErrorCode::None));
        assert_eq!(
            t.partitions[AFTER as usize - 1].high_watermark,
            1,
            "the record is still there"
        );
    });
}
