//! End-to-end tests of the client against `FakeBroker`: batching,
//! routing, retries, back-pressure, ordering, admin and the consumer, over
//! real sockets on one glommio executor, with faults injected.
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};

use super::fake_broker::{FakeBroker, Fault};
use crate::api::{Acks, ErrorCode, TopicConfig};
use crate::client::*;
use crate::record::{Compression, RecordHeader};

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap();
}

fn fast() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(500),
        retry_backoff: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(20),
        ..ClientConfig::default()
    }
}

/// The values the fake broker stored in `topic`/`partition`, in order.
fn stored_values(broker: &FakeBroker, topic: &str, partition: u32) -> Vec<Bytes> {
    let st = broker.state.borrow();
    st.records(topic, partition as usize)
        .into_iter()
        .map(|r| r.value.unwrap_or_default())
        .collect()
}

async fn setup(partitions: u32) -> (FakeBroker, Client) {
    let broker = FakeBroker::start();
    let client = Client::connect(&broker.bootstrap(), fast()).await.unwrap();
    client
        .create_topic("t", partitions, TopicConfig::default())
        .await
        .unwrap();
    (broker, client)
}

#[test]
fn keyed_records_round_trip_in_order() {
    run(|| async {
        let (broker, client) = setup(4).await;
        let config = ProducerConfig {
            compression: Compression::Zstd,
            batch_bytes: 2048,
            ..Default::default()
        };
        let producer = Producer::new(client.clone(), config);
        let sends: Vec<_> = (0..1000)
            .map(|i| {
                let headers = vec![RecordHeader {
                    key: "i".into(),
                    value: Some(Bytes::from(format!("{i}"))),
                }];
                producer.send(
                    "t",
                    Some(format!("key-{i}").into()),
                    Some(format!("value-{i}").into()),
                    headers,
                )
            })
            .collect();
        producer.flush().await;
        let mut next: BTreeMap<u32, i64> = BTreeMap::new();
        for (i, sent) in sends.into_iter().enumerate() {
            let md = sent.await.unwrap();
            assert_eq!(md.partition, partition_for_key(format!("key-{i}").as_bytes(), 4));
            let expected = next.entry(md.partition).or_insert(0);
            assert_eq!(md.offset, *expected, "offsets follow send order per partition");
            *expected += 1;
        }
        let n = broker.state.borrow().produce_requests;
        assert!(n < 100, "records were batched: {n} requests");

        let mut consumer = Consumer::new(client, ConsumerConfig::default());
        assert_eq!(consumer.assign_all("t").await.unwrap(), 4);
        let mut got = Vec::new();
        while got.len() < 1000 {
            let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
            assert!(!records.is_empty(), "stalled at {}", got.len());
            got.extend(records);
        }
        let mut last: BTreeMap<u32, i64> = BTreeMap::new();
        for r in &got {
            let key = String::from_utf8(r.key.as_ref().unwrap().to_vec()).unwrap();
            let i: usize = key.strip_prefix("key-").unwrap().parse().unwrap();
            assert_eq!(r.value.as_deref(), Some(format!("value-{i}").as_bytes()));
            assert_eq!(r.headers[0].value.as_deref(), Some(format!("{i}").as_bytes()));
            let prev = last.insert(r.partition, r.offset);
            assert_eq!(r.offset, prev.map_or(0, |p| p + 1), "each record once, in order");
        }
        for (p, n) in next {
            assert_eq!(consumer.position("t", p), Some(n));
            assert_eq!(consumer.high_watermark("t", p), Some(n));
        }
        assert!(consumer.poll(Duration::from_millis(50)).await.unwrap().is_empty());
    });
}

#[test]
fn retriable_errors_are_retried_without_loss_or_reordering() {
    run(|| async {
        let (broker, client) = setup(1).await;
        broker.state.borrow_mut().produce_faults.extend([
            Fault::Code(ErrorCode::NotLeaderOrFollower),
            Fault::Code(ErrorCode::RequestTimedOut),
        ]);
        let producer = Producer::new(
            client,
            ProducerConfig {
                linger: Duration::ZERO,
                ..Default::default()
            },
        );
        let sends: Vec<_> = (0..50)
            .map(|i| producer.send("t", None, Some(format!("{i}").into()), Vec::new()))
            .collect();
        for (i, s) in sends.into_iter().enumerate() {
            assert_eq!(s.await.unwrap().offset, i as i64);
        }
        let values = stored_values(&broker, "t", 0);
        assert_eq!(values, (0..50).map(|i| Bytes::from(format!("{i}"))).collect::<Vec<_>>());
    });
}

#[test]
fn a_lost_answer_times_out_and_is_retried() {
    run(|| async {
        let (broker, client) = setup(1).await;
        broker.state.borrow_mut().produce_faults.push_back(Fault::Silence);
        let producer = Producer::new(client, ProducerConfig::default());
        let md = producer.send("t", None, Some("v".into()), Vec::new()).await.unwrap();
        // At least once: the unanswered attempt was stored too.
        assert_eq!(md.offset, 1);
        assert_eq!(broker.state.borrow().records("t", 0).len(), 2);
    });
}

#[test]
fn a_fatal_error_fails_the_records() {
    run(|| async {
        let (broker, client) = setup(1).await;
        broker
            .state
            .borrow_mut()
            .produce_faults
            .push_back(Fault::Code(ErrorCode::MessageTooLarge));
        let producer = Producer::new(client, ProducerConfig::default());
        let err = producer
            .send("t", None, Some("v".into()), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::MessageTooLarge));
        assert_eq!(broker.state.borrow().produce_requests, 1, "not retried");
        // The partition is usable again afterwards.
        assert_eq!(
            producer
                .send("t", None, Some("w".into()), Vec::new())
                .await
                .unwrap()
                .offset,
            0
        );
    });
}

#[test]
fn retries_are_bounded() {
    run(|| async {
        let (broker, client) = setup(1).await;
        let retries = client.config().retries_max as usize;
        broker.state.borrow_mut().produce_faults.extend(std::iter::repeat_n(
            Fault::Code(ErrorCode::NotEnoughReplicas),
            retries + 5,
        ));
        let producer = Producer::new(client, ProducerConfig::default());
        let err = producer
            .send("t", None, Some("v".into()), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotEnoughReplicas));
        assert_eq!(broker.state.borrow().produce_requests, retries + 1);
    });
}

#[test]
fn acks_none_is_fire_and_forget() {
    run(|| async {
        let (broker, client) = setup(2).await;
        let producer = Producer::new(
            client,
            ProducerConfig {
                acks: Acks::None,
                ..Default::default()
            },
        );
        let sends: Vec<_> = (0..10)
            .map(|i| producer.send("t", Some(format!("{i}").into()), None, Vec::new()))
            .collect();
        producer.flush().await;
        for s in sends {
            assert_eq!(s.await.unwrap().offset, -1);
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let st = broker.state.borrow();
        assert_eq!(st.records("t", 0).len() + st.records("t", 1).len(), 10);
    });
}

#[test]
fn unknown_topics_and_oversized_records_fail() {
    run(|| async {
        let (_broker, client) = setup(1).await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                delivery_timeout: Duration::from_millis(200),
                request_bytes_max: 1000,
                ..Default::default()
            },
        );
        let err = producer
            .send("nope", None, Some("v".into()), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::UnknownTopicOrPartition));
        let big = Bytes::from(vec![0u8; 2000]);
        let err = producer.send("t", None, Some(big), Vec::new()).await.unwrap_err();
        assert!(matches!(err, ClientError::RecordTooLarge { .. }), "{err:?}");
        let err = client.describe_topic("nope").await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::UnknownTopicOrPartition));
    });
}

#[test]
fn a_small_buffer_applies_back_pressure_and_keeps_order() {
    run(|| async {
        let (broker, client) = setup(1).await;
        let config = ProducerConfig {
            buffer_bytes_max: 600,
            batch_bytes: 300,
            ..Default::default()
        };
        let producer = Producer::new(client, config);
        let sends: Vec<_> = (0..200)
            .map(|i| producer.send("t", None, Some(format!("{i:05}").into()), Vec::new()))
            .collect();
        for (i, s) in sends.into_iter().enumerate() {
            assert_eq!(s.await.unwrap().offset, i as i64);
        }
        let values = stored_values(&broker, "t", 0);
        assert_eq!(values.len(), 200);
        assert!(values.windows(2).all(|w| w[0] < w[1]), "stored in send order");
    });
}

#[test]
fn sends_to_an_uncached_topic_go_out_in_order_even_unpolled() {
    run(|| async {
        let (broker, admin) = setup(1).await;
        let client = Client::connect(&broker.bootstrap(), fast()).await.unwrap();
        admin.create_topic("fresh", 2, TopicConfig::default()).await.unwrap();
        let producer = Producer::new(client, ProducerConfig::default());
        for i in 0..100 {
            // Futures dropped at once: the records still go.
            drop(producer.send("fresh", Some("k".into()), Some(format!("{i:03}").into()), Vec::new()));
        }
        producer.flush().await;
        let values = stored_values(&broker, "fresh", partition_for_key(b"k", 2));
        assert_eq!(
            values,
            (0..100).map(|i| Bytes::from(format!("{i:03}"))).collect::<Vec<_>>()
        );
        let st = broker.state.borrow();
        assert!(st.produce_requests <= 3, "batched: {} requests", st.produce_requests);
    });
}

#[test]
fn dropping_the_producer_fails_unsent_records() {
    run(|| async {
        let (broker, client) = setup(1).await;
        let producer = Producer::new(
            client,
            ProducerConfig {
                linger: Duration::from_secs(60),
                ..Default::default()
            },
        );
        let sent = producer.send("t", None, Some("v".into()), Vec::new());
        let later = producer.send("nope", None, Some("v".into()), Vec::new());
        assert_eq!(producer.records_queued(), 1);
        drop(producer);
        assert!(matches!(sent.await, Err(ClientError::Closed)));
        assert!(later.await.is_err());
        assert_eq!(broker.state.borrow().produce_requests, 0);
    });
}

#[test]
fn unkeyed_records_stick_to_a_partition_per_batch() {
    run(|| async {
        let (broker, client) = setup(4).await;
        let producer = Producer::new(client, ProducerConfig::default());
        let sends: Vec<_> = (0..10)
            .map(|_| producer.send("t", None, Some("v".into()), Vec::new()))
            .collect();
        producer.flush().await;
        let mut partitions = Vec::new();
        for s in sends {
            partitions.push(s.await.unwrap().partition);
        }
        assert!(
            partitions.iter().all(|&p| p == partitions[0]),
            "one batch, one partition: {partitions:?}"
        );
        assert_eq!(broker.state.borrow().produce_requests, 1);
    });
}

#[test]
fn consumer_seeks_skip_earlier_records_of_a_batch() {
    run(|| async {
        let (_broker, client) = setup(1).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let sends: Vec<_> = (0..20)
            .map(|i| producer.send("t", None, Some(format!("{i}").into()), Vec::new()))
            .collect();
        producer.flush().await;
        drop(sends);
        let mut consumer = Consumer::new(client, ConsumerConfig::default());
        consumer.assign("t", &[0]);
        consumer.seek("t", 0, SeekTo::Offset(7)).await.unwrap();
        let got = consumer.poll(Duration::from_secs(2)).await.unwrap();
        assert_eq!(got.first().map(|r| r.offset), Some(7));
        assert_eq!(got.len(), 13);
        consumer.seek("t", 0, SeekTo::Latest).await.unwrap();
        assert_eq!(consumer.position("t", 0), Some(20));
        consumer.seek("t", 0, SeekTo::Earliest).await.unwrap();
        assert_eq!(consumer.position("t", 0), Some(0));
        assert_eq!(consumer.end_offsets("t", &[0]).await.unwrap(), [(0, 20)]);
        // Past the end: the broker says out of range and the consumer resets.
        consumer.seek("t", 0, SeekTo::Offset(99)).await.unwrap();
        assert_eq!(consumer.poll(Duration::from_secs(2)).await.unwrap().len(), 20);
        assert!(consumer.seek("u", 0, SeekTo::Earliest).await.is_err(), "not assigned");
    });
}

#[test]
fn admin_lists_describes_and_deletes() {
    run(|| async {
        let (_broker, client) = setup(3).await;
        client.create_topic("a", 1, TopicConfig::default()).await.unwrap();
        let err = client.create_topic("a", 1, TopicConfig::default()).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TopicAlreadyExists));
        let names: Vec<String> = client
            .list_topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "t"]);
        let t = client.describe_topic("t").await.unwrap();
        assert_eq!(t.partitions.len(), 3);
        client.delete_topic("a").await.unwrap();
        assert_eq!(
            client.delete_topic("a").await.unwrap_err().code(),
            Some(ErrorCode::UnknownTopicOrPartition)
        );
        assert_eq!(client.list_topics().await.unwrap().len(), 1);
    });
}

#[test]
fn many_requests_share_one_connection() {
    run(|| async {
        let broker = FakeBroker::start();
        let config = ClientConfig {
            inflight_requests_max_per_connection: 4,
            ..fast()
        };
        let client = Client::connect(&broker.bootstrap(), config).await.unwrap();
        let endpoint = Endpoint::parse(&broker.bootstrap()).unwrap();
        let conn = client.connection(&endpoint).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let conn = conn.clone();
                glommio::spawn_local(async move { conn.request(crate::api::Request::Metadata { topics: None }).await })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await, Ok(crate::api::Response::Metadata { .. })));
        }
        assert_eq!(conn.inflight(), 0);
        assert!(!conn.is_closed());
    });
}

#[test]
fn a_corrupt_batch_fails_the_poll_after_the_records_before_it() {
    run(|| async {
        let (broker, client) = setup(1).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        for batch in 0..3 {
            let sends: Vec<_> = (0..5)
                .map(|i| producer.send("t", None, Some(format!("{batch}-{i}").into()), Vec::new()))
                .collect();
            producer.flush().await;
            for s in sends {
                s.await.unwrap();
            }
        }
        {
            let mut st = broker.state.borrow_mut();
            let stored = &mut st.topics.get_mut("t").unwrap()[0][1];
            let mut bad = stored.to_vec();
            let at = bad.len() - 2;
            bad[at] ^= 0x01;
            *stored = Bytes::from(bad);
        }
        let mut consumer = Consumer::new(client, ConsumerConfig::default());
        consumer.assign("t", &[0]);
        let first = consumer.poll(Duration::from_secs(2)).await.unwrap();
        assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let err = consumer.poll(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, ClientError::Record(_)), "{err:?}");
        assert_eq!(consumer.position("t", 0), Some(5), "stuck before the corrupt batch");
    });
}

#[test]
fn polls_return_at_most_max_poll_records_and_reuse_fetched_bytes() {
    run(|| async {
        let (broker, client) = setup(2).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let sends: Vec<_> = (0..100)
            .map(|i| producer.send("t", Some(format!("{i}").into()), Some("v".into()), Vec::new()))
            .collect();
        producer.flush().await;
        for s in sends {
            s.await.unwrap();
        }
        let fetches_before = broker.state.borrow().fetch_requests;
        let config = ConsumerConfig {
            max_poll_records: 7,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(client, config);
        consumer.assign_all("t").await.unwrap();
        let mut next: BTreeMap<u32, i64> = BTreeMap::new();
        let mut total = 0;
        while total < 100 {
            let got = consumer.poll(Duration::from_secs(2)).await.unwrap();
            assert!((1..=7).contains(&got.len()), "{} records", got.len());
            for r in got {
                let expected = next.entry(r.partition).or_insert(0);
                assert_eq!(r.offset, *expected);
                *expected += 1;
                total += 1;
            }
        }
        let fetches = broker.state.borrow().fetch_requests - fetches_before;
        assert!(
            fetches <= 6,
            "fetched bytes are decoded over several polls: {fetches} fetches"
        );
    });
}

#[test]
fn callbacks_hear_every_record_once_from_one_reused_buffer_even_under_back_pressure() {
    use std::cell::RefCell;
    use std::rc::Rc;
    run(|| async {
        let (broker, client) = setup(1).await;
        // A small buffer: most sends wait their turn and must copy what
        // they borrow, since the caller rewrites its buffer at once.
        let config = ProducerConfig {
            buffer_bytes_max: 600,
            batch_bytes: 300,
            ..Default::default()
        };
        let producer = Producer::new(client, config);
        let heard: Rc<RefCell<Vec<(usize, i64)>>> = Rc::default();
        let mut value = *b"00000";
        for i in 0..200usize {
            value.copy_from_slice(format!("{i:05}").as_bytes());
            let heard = heard.clone();
            producer.send_with_callback("t", None, Some(&value), &[], move |r| {
                heard.borrow_mut().push((i, r.map_or(-1, |m| m.offset)));
            });
        }
        // Refused at once: too large, and an unknown topic (after retries).
        let refused: Rc<RefCell<Vec<String>>> = Rc::default();
        let big = vec![0u8; 2 << 20];
        for topic in ["t", "nope"] {
            let refused = refused.clone();
            let value = if topic == "t" { &big[..] } else { &b"v"[..] };
            producer.send_with_callback(topic, None, Some(value), &[], move |r| {
                refused
                    .borrow_mut()
                    .push(r.err().map(|e| e.to_string()).unwrap_or_default());
            });
        }
        producer.flush().await;
        let heard = heard.borrow().clone();
        assert_eq!(heard.len(), 200, "one callback per record");
        assert!(
            heard.iter().all(|&(i, offset)| offset == i as i64),
            "each record at its send position"
        );
        let values = stored_values(&broker, "t", 0);
        assert_eq!(
            values,
            (0..200).map(|i| Bytes::from(format!("{i:05}"))).collect::<Vec<_>>(),
            "the stored values are what the buffer held at each send"
        );
        let refused = refused.borrow().clone();
        assert_eq!(refused.len(), 2, "both refusals reached their callbacks: {refused:?}");
        assert!(
            refused.iter().all(|e| !e.is_empty()),
            "each with its error: {refused:?}"
        );
    });
}
