//! Idempotent produce over the Kafka protocol against a real broker, with
//! the exact batches a Kafka producer sends (the `kafka-protocol` crate's
//! codecs over a TcpStream, batches built by sluice's record builder):
//! a retried batch is acknowledged with its original offsets and stored
//! once, also after kill -9 and a restart; a sequence gap, an unknown
//! producer mid-sequence, a fenced epoch and a transactional batch each
//! get Kafka's error code and append nothing; the broker keeps serving.

mod common;

use std::net::TcpStream;

use bytes::Bytes;
use common::{create_topic_cli, kafka_wire, Broker};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice::record::{BatchBuilder, Compression};

const TOPIC: &str = "idem";
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_PRODUCER_ID: i16 = 59;
const INVALID_RECORD: i16 = 87;
/// Records per batch in this test.
const N: i32 = 3;

/// A batch of `N` records of producer `pid` at `epoch` from sequence `seq`.
fn batch(pid: i64, epoch: i16, seq: i32, transactional: bool) -> Bytes {
    let mut b = BatchBuilder::new(Compression::Lz4)
        .producer(pid, epoch, seq)
        .transactional(transactional);
    for i in 0..N {
        let value = format!("{pid}/{epoch}/{}", seq + i);
        b.push(
            1_700_000_000_000 + i64::from(i),
            Some(b"k"),
            Some(value.as_bytes()),
            &[],
        );
    }
    b.build().expect("batch builds").freeze()
}

/// Produces `records` to partition 0 with acks=all; (error, base offset).
fn produce(stream: &mut TcpStream, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let resp: ProduceResponse = kafka_wire::call(stream, ApiKey::Produce, 9, &req);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Partition 0's log end (the high watermark).
fn log_end(stream: &mut TcpStream) -> i64 {
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-1)])]);
    let resp: ListOffsetsResponse = kafka_wire::call(stream, ApiKey::ListOffsets, 5, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn new_producer(stream: &mut TcpStream) -> i64 {
    let resp: InitProducerIdResponse = kafka_wire::call(
        stream,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!((resp.error_code, resp.producer_epoch), (0, 0));
    resp.producer_id.0
}

#[test]
fn retries_are_stored_once_and_bad_sequences_get_kafkas_errors_across_a_crash() {
    let mut broker = Broker::start(2, &[]);
    create_topic_cli(&broker, TOPIC, 2);
    let mut s = kafka_wire::connect(broker.kafka_addr());
    let pid = new_producer(&mut s);

    assert_eq!(produce(&mut s, batch(pid, 0, 0, false)), (0, 0));
    // The retry of a batch that was stored: acknowledged where it is.
    assert_eq!(produce(&mut s, batch(pid, 0, 0, false)), (0, 0));
    assert_eq!(produce(&mut s, batch(pid, 0, N, false)), (0, i64::from(N)));
    assert_eq!(produce(&mut s, batch(pid, 0, 0, false)), (0, 0));
    assert_eq!(log_end(&mut s), 2 * i64::from(N));

    // Refused, each with Kafka's code, and nothing appended.
    let gap = batch(pid, 0, 2 * N + 1, false);
    assert_eq!(produce(&mut s, gap).0, OUT_OF_ORDER_SEQUENCE_NUMBER);
    let stranger = new_producer(&mut s);
    assert_eq!(produce(&mut s, batch(stranger, 0, 7, false)).0, UNKNOWN_PRODUCER_ID);
    assert_eq!(produce(&mut s, batch(pid, 0, 2 * N, true)).0, INVALID_RECORD);
    assert_eq!(log_end(&mut s), 2 * i64::from(N));

    // A bumped epoch starts over at 0 and fences the old one.
    assert_eq!(produce(&mut s, batch(pid, 1, 0, false)), (0, 2 * i64::from(N)));
    assert_eq!(produce(&mut s, batch(pid, 0, 2 * N, false)).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(log_end(&mut s), 3 * i64::from(N));

    // A crash right after the acknowledgement: the state comes back from
    // the log, so the retry is still recognised, and the sequence goes on.
    drop(s);
    broker.kill9();
    broker.restart();
    let mut s = kafka_wire::connect(broker.kafka_addr());
    assert_eq!(produce(&mut s, batch(pid, 1, 0, false)), (0, 2 * i64::from(N)));
    assert_eq!(produce(&mut s, batch(pid, 0, 2 * N, false)).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(produce(&mut s, batch(pid, 1, N, false)), (0, 3 * i64::from(N)));

    // And after a clean restart (from the snapshot written at close).
    drop(s);
    assert_eq!(broker.stop(), 0, "clean stop");
    broker.restart();
    let mut s = kafka_wire::connect(broker.kafka_addr());
    assert_eq!(produce(&mut s, batch(pid, 1, N, false)), (0, 3 * i64::from(N)));
    assert_eq!(
        produce(&mut s, batch(pid, 1, 3 * N, false)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(log_end(&mut s), 4 * i64::from(N));
}
