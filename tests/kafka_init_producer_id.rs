//! InitProducerId against a real broker, spoken as Kafka clients speak it
//! (the `kafka-protocol` crate over a plain TcpStream) and through the
//! native client: idempotent producers get distinct ids >= 0 with epoch 0
//! at every served version, also after a clean restart and after kill -9;
//! transactional producers are refused with UNSUPPORTED_VERSION and the
//! broker keeps serving; a damaged producer id file stops the broker from
//! starting.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kafka_wire, wait_bounded, with_client, Broker};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse, ProducerId,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

/// Two shards, so that requests reaching shard 1 are forwarded to shard 0.
const SHARDS: usize = 2;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REQUEST: i16 = 42;

/// InitProducerId at `version`; the producer id and epoch go on the wire
/// only from v3 on.
fn init_producer_id(
    stream: &mut TcpStream,
    version: i16,
    transactional_id: Option<&'static str>,
    current: (i64, i16),
) -> InitProducerIdResponse {
    let mut req = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(|t| TransactionalId(StrBytes::from_static_str(t))))
        .with_transaction_timeout_ms(60_000);
    if version >= 3 {
        req = req
            .with_producer_id(ProducerId(current.0))
            .with_producer_epoch(current.1);
    }
    kafka_wire::call(stream, ApiKey::InitProducerId, version, &req)
}

/// One fresh id per served version, each on a new connection (so both
/// shards take some); every answer is a success with epoch 0.
fn fresh_ids(broker: &Broker) -> Vec<i64> {
    let mut ids = Vec::new();
    for round in 0..3 {
        for version in 0..=5 {
            let mut stream = kafka_wire::connect(broker.kafka_addr());
            // From v3 a producer may present its old id (KIP-360): a
            // non-transactional one gets a new id all the same.
            let current = if round == 1 { (5, 7) } else { (-1, -1) };
            let resp = init_producer_id(&mut stream, version, None, current);
            assert_eq!(resp.error_code, 0, "v{version}");
            assert_eq!(resp.producer_epoch, 0, "v{version}");
            assert!(resp.producer_id.0 >= 0, "v{version}: {}", resp.producer_id.0);
            ids.push(resp.producer_id.0);
        }
    }
    ids
}

fn native_id(broker: &Broker) -> i64 {
    let (id, epoch) =
        with_client(&broker.bootstrap(), |c| async move { c.init_producer_id().await }).expect("native InitProducerId");
    assert_eq!(epoch, 0);
    assert!(id >= 0, "{id}");
    id
}

/// Requests shard 1 has handled (`sluice_other_requests_total`).
fn shard_1_requests(broker: &Broker) -> u64 {
    let text = broker.scrape();
    let line = text
        .lines()
        .find(|l| l.starts_with("sluice_other_requests_total{shard=\"1\"}"))
        .expect("shard 1's request count");
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count")
}

/// Adds `new` to `seen`, failing on any repeat; returns the largest new one.
fn all_new(seen: &mut BTreeSet<i64>, new: &[i64]) -> i64 {
    for id in new {
        assert!(seen.insert(*id), "producer id {id} handed out twice");
    }
    new.iter().copied().max().expect("some ids")
}

#[test]
fn init_producer_id_hands_out_unique_ids_across_restarts() {
    let mut broker = Broker::start(SHARDS, &[]);
    let mut seen = BTreeSet::new();

    let versions: ApiVersionsResponse = kafka_wire::call(
        &mut kafka_wire::connect(broker.kafka_addr()),
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    );
    let advertised = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::InitProducerId as i16)
        .expect("InitProducerId advertised");
    assert_eq!((advertised.min_version, advertised.max_version), (0, 5));

    let before = shard_1_requests(&broker);
    let first = fresh_ids(&broker);
    // 18 connections spread by SO_REUSEPORT: some reach shard 1, which
    // forwards to shard 0's allocator (all on shard 0: p = 2^-18).
    assert!(shard_1_requests(&broker) > before, "no request reached shard 1");
    let mut max = all_new(&mut seen, &first);
    max = max.max(all_new(&mut seen, &[native_id(&broker)]));

    // A clean stop: the next ids are new, and above every earlier one.
    assert_eq!(broker.stop(), 0, "clean stop");
    broker.restart();
    let after_stop = fresh_ids(&broker);
    assert!(after_stop.iter().all(|id| *id > max), "{after_stop:?} after {max}");
    max = all_new(&mut seen, &after_stop);

    // A crash: likewise.
    broker.kill9();
    broker.restart();
    let after_crash = [fresh_ids(&broker), vec![native_id(&broker)]].concat();
    assert!(after_crash.iter().all(|id| *id > max), "{after_crash:?} after {max}");
    all_new(&mut seen, &after_crash);
}

#[test]
fn transactional_producers_are_refused_and_the_broker_keeps_serving() {
    let broker = Broker::start(SHARDS, &[]);
    let mut stream = kafka_wire::connect(broker.kafka_addr());
    for version in [0, 2, 3, 5] {
        // A transactional producer retries; every attempt is refused.
        for _ in 0..3 {
            let resp = init_producer_id(&mut stream, version, Some("tx-1"), (-1, -1));
            assert_eq!(
                (resp.error_code, resp.producer_id.0, resp.producer_epoch),
                (UNSUPPORTED_VERSION, -1, -1),
                "v{version}"
            );
        }
        // "" is neither a transactional id nor its absence (as in Kafka).
        let resp = init_producer_id(&mut stream, version, Some(""), (-1, -1));
        assert_eq!(resp.error_code, INVALID_REQUEST, "v{version}");
        // The same connection still gets ids for idempotent producers.
        let resp = init_producer_id(&mut stream, version, None, (-1, -1));
        assert_eq!((resp.error_code, resp.producer_epoch), (0, 0), "v{version}");
        assert!(resp.producer_id.0 >= 0);
    }
    let native = with_client(&broker.bootstrap(), |c| async move {
        c.send_any(sluice::api::Request::InitProducerId {
            transactional_id: Some("tx-native".into()),
            transaction_timeout_ms: 1000,
            producer_id: -1,
            producer_epoch: -1,
        })
        .await
    })
    .expect("answered");
    assert_eq!(
        native,
        sluice::api::Response::InitProducerId {
            error: sluice::api::ErrorCode::UnsupportedVersion,
            producer_id: -1,
            producer_epoch: -1,
        }
    );
    assert!(native_id(&broker) >= 0, "still serving");
}

#[test]
fn a_damaged_producer_id_file_refuses_to_start() {
    let mut broker = Broker::start(1, &[]);
    assert!(native_id(&broker) >= 0);
    assert_eq!(broker.stop(), 0, "clean stop");
    let path = broker.data_dir().join("meta/producer_ids");
    let mut bytes = std::fs::read(&path).expect("producer id file written");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).expect("damage it");
    // Its own ports, in case it got past the check and started listening.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .arg("--data-dir")
        .arg(broker.data_dir())
        .args(["--native-addr", &broker.bootstrap()])
        .args(["--shard-port-base", &(broker.port + 1).to_string()])
        .args(["--shards", "1"])
        .args(["--metrics-addr", &broker.metrics_addr().to_string()])
        .args(["--kafka-addr", &broker.kafka_bootstrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice starts");
    let status = wait_bounded(&mut child, "sluice serve on a damaged file", Duration::from_secs(30));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr read");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("producer id file") && stderr.contains("refusing to start"),
        "{stderr}"
    );
}
