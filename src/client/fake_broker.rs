//! Test only: a one-node broker in memory that speaks the native protocol
//! on a real socket, with faults to inject, so the client's batching,
//! routing, retries and consumer run end to end without `sluice serve`.
//!
//! It keeps each partition as a list of stamped batches, answers a fetch
//! with whole batches from the one holding the asked offset (as the real
//! broker does), and advertises its own port as every shard's port.
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::api::*;
use crate::protocol::native;
use crate::record;

/// What the next produce to any partition meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The partition answers with this code (nothing is stored).
    Code(ErrorCode),
    /// The request is stored but never answered.
    Silence,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Topic → partitions → stamped batches.
    pub topics: BTreeMap<String, Vec<Vec<Bytes>>>,
    pub produce_faults: VecDeque<Fault>,
    pub produce_requests: usize,
    pub fetch_requests: usize,
}

impl State {
    fn high_watermark(batches: &[Bytes]) -> i64 {
        batches
            .last()
            .and_then(|b| record::BatchHeader::parse(b).ok())
            .map_or(0, |h| h.next_offset())
    }

    /// Every stored record of a partition, in offset order.
    pub fn records(&self, topic: &str, partition: usize) -> Vec<record::Record> {
        self.topics[topic][partition]
            .iter()
            .flat_map(|b| record::records(b, 1 << 24).unwrap().map(Result::unwrap))
            .collect()
    }
}

pub(crate) struct FakeBroker {
    pub port: u16,
    pub state: Rc<RefCell<State>>,
    _accept: glommio::Task<()>,
}

impl FakeBroker {
    pub fn start() -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Rc::new(RefCell::new(State::default()));
        let st = state.clone();
        let accept = glommio::spawn_local(async move {
            while let Ok(stream) = listener.accept().await {
                glommio::spawn_local(serve(stream, st.clone(), port)).detach();
            }
        });
        FakeBroker {
            port,
            state,
            _accept: accept,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

async fn serve(mut stream: TcpStream, state: Rc<RefCell<State>>, port: u16) {
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let Ok(Some(len)) = native::frame_len(&prefix, 64 << 20) else {
            return;
        };
        let mut buf = BytesMut::zeroed(len);
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let (header, req) = native::decode_request(buf.freeze()).unwrap();
        let api = req.api();
        let silent = matches!(req, Request::Produce { acks: Acks::None, .. });
        let Some(resp) = handle(&state, req, port).await else {
            continue;
        };
        if silent {
            continue;
        }
        let rh = ResponseHeader {
            correlation_id: header.correlation_id,
        };
        for chunk in native::encode_response(&rh, api, &resp) {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
    }
}

async fn handle(state: &RefCell<State>, req: Request, port: u16) -> Option<Response> {
    Some(match req {
        Request::ApiVersions => Response::ApiVersions {
            apis: native::SUPPORTED.to_vec(),
        },
        Request::Metadata { topics } => metadata(&state.borrow(), topics, port),
        Request::CreateTopics { topics } => {
            let mut st = state.borrow_mut();
            let results = topics
                .into_iter()
                .map(|t| {
                    let error = match st.topics.contains_key(&t.name) {
                        true => ErrorCode::TopicAlreadyExists,
                        false => {
                            st.topics
                                .insert(t.name.clone(), vec![Vec::new(); t.partitions as usize]);
                            ErrorCode::None
                        }
                    };
                    TopicResult {
                        name: t.name,
                        error,
                        message: String::new(),
                    }
                })
                .collect();
            Response::CreateTopics { topics: results }
        }
        Request::DeleteTopics { names } => {
            let mut st = state.borrow_mut();
            let results = names
                .into_iter()
                .map(|name| {
                    let error = match st.topics.remove(&name) {
                        Some(_) => ErrorCode::None,
                        None => ErrorCode::UnknownTopicOrPartition,
                    };
                    TopicResult {
                        name,
                        error,
                        message: String::new(),
                    }
                })
                .collect();
            Response::DeleteTopics { topics: results }
        }
        Request::Produce { topics, .. } => {
            let mut st = state.borrow_mut();
            st.produce_requests += 1;
            let fault = st.produce_faults.pop_front();
            let mut out = Vec::new();
            for t in topics {
                let mut parts = Vec::new();
                for p in t.partitions {
                    let (error, base_offset) = match fault {
                        Some(Fault::Code(code)) => (code, -1),
                        _ => produce(&mut st, &t.name, p.partition, p.records),
                    };
                    parts.push(ProducePartitionResponse {
                        partition: p.partition,
                        error,
                        base_offset,
                        log_start_offset: 0,
                    });
                }
                out.push(ProduceTopicResponse {
                    name: t.name,
                    partitions: parts,
                });
            }
            if fault == Some(Fault::Silence) {
                return None;
            }
            Response::Produce { topics: out }
        }
        Request::Fetch {
            max_wait_ms, topics, ..
        } => {
            let resp = fetch(&mut state.borrow_mut(), topics.clone());
            let empty = matches!(&resp, Response::Fetch { topics } if topics.iter().all(|t| t.partitions.iter().all(|p| p.records.is_empty())));
            if !empty {
                return Some(resp);
            }
            // A crude long poll: wait a little, then answer with what there is.
            glommio::timer::sleep(Duration::from_millis(u64::from(max_wait_ms).min(20))).await;
            fetch(&mut state.borrow_mut(), topics)
        }
        Request::ListOffsets { topics } => {
            let st = state.borrow();
            let out = topics
                .into_iter()
                .map(|t| ListOffsetsTopicResponse {
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| {
                            let Some(batches) = st.topics.get(&t.name).and_then(|ps| ps.get(p.partition as usize))
                            else {
                                return ListOffsetsPartitionResponse {
                                    partition: p.partition,
                                    error: ErrorCode::UnknownTopicOrPartition,
                                    offset: -1,
                                };
                            };
                            let offset = match p.spec {
                                OffsetSpec::Earliest => 0,
                                OffsetSpec::Latest => State::high_watermark(batches),
                                OffsetSpec::Timestamp(ts) => batches
                                    .iter()
                                    .filter_map(|b| record::BatchHeader::parse(b).ok())
                                    .find(|h| h.max_timestamp >= ts)
                                    .map_or(-1, |h| h.base_offset),
                            };
                            ListOffsetsPartitionResponse {
                                partition: p.partition,
                                error: ErrorCode::None,
                                offset,
                            }
                        })
                        .collect(),
                    name: t.name,
                })
                .collect();
            Response::ListOffsets { topics: out }
        }
        // The fake serves the data path only; group tests use a real broker.
        other => Response::Error {
            error: ErrorCode::UnsupportedVersion,
            message: format!("fake broker does not serve {:?}", other.api()),
        },
    })
}

fn metadata(st: &State, wanted: Option<Vec<String>>, port: u16) -> Response {
    let names = wanted.unwrap_or_else(|| st.topics.keys().cloned().collect());
    let topics = names
        .into_iter()
        .map(|name| match st.topics.get(&name) {
            None => TopicInfo {
                name,
                error: ErrorCode::UnknownTopicOrPartition,
                partitions: Vec::new(),
                config: TopicConfig::default(),
            },
            Some(parts) => TopicInfo {
                partitions: parts
                    .iter()
                    .enumerate()
                    .map(|(i, batches)| PartitionInfo {
                        isr: Vec::new(),
                        replicas: Vec::new(),
                        partition: i as u32,
                        error: ErrorCode::None,
                        leader: 0,
                        shard: i as u32 % 2,
                        shard_port: port,
                        log_start_offset: 0,
                        high_watermark: State::high_watermark(batches),
                    })
                    .collect(),
                name,
                error: ErrorCode::None,
                config: TopicConfig::default(),
            },
        })
        .collect();
    let brokers = vec![BrokerInfo {
        kafka: String::new(),
        node_id: 0,
        host: "0.0.0.0".into(),
        port,
    }];
    Response::Metadata { brokers, topics }
}

fn produce(st: &mut State, topic: &str, partition: u32, records: Bytes) -> (ErrorCode, i64) {
    let Some(batches) = st.topics.get_mut(topic).and_then(|ps| ps.get_mut(partition as usize)) else {
        return (ErrorCode::UnknownTopicOrPartition, -1);
    };
    let first = State::high_watermark(batches);
    let mut rest = records;
    while !rest.is_empty() {
        let Ok(Some(size)) = record::batch_size(&rest, 1 << 24) else {
            return (ErrorCode::CorruptMessage, -1);
        };
        let batch = rest.split_to(size);
        let Ok(h) = record::validate(&batch, 1 << 24) else {
            return (ErrorCode::CorruptMessage, -1);
        };
        let mut stamped = BytesMut::from(&batch[..]);
        record::stamp(&mut stamped, State::high_watermark(batches), 0);
        assert_eq!(h.records_count, h.last_offset_delta + 1);
        batches.push(stamped.freeze());
    }
    (ErrorCode::None, first)
}

fn fetch(st: &mut State, topics: Vec<FetchTopic>) -> Response {
    st.fetch_requests += 1;
    let out = topics
        .into_iter()
        .map(|t| FetchTopicResponse {
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let Some(batches) = st.topics.get(&t.name).and_then(|ps| ps.get(p.partition as usize)) else {
                        return FetchPartitionResponse {
                            partition: p.partition,
                            error: ErrorCode::UnknownTopicOrPartition,
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: Vec::new(),
                        };
                    };
                    let hw = State::high_watermark(batches);
                    if p.offset > hw {
                        return FetchPartitionResponse {
                            partition: p.partition,
                            error: ErrorCode::OffsetOutOfRange,
                            high_watermark: hw,
                            log_start_offset: 0,
                            records: Vec::new(),
                        };
                    }
                    let mut records = Vec::new();
                    let mut bytes = 0usize;
                    for b in batches {
                        let h = record::BatchHeader::parse(b).unwrap();
                        if h.next_offset() <= p.offset {
                            continue;
                        }
                        if !records.is_empty() && bytes + b.len() > p.max_bytes as usize {
                            break;
                        }
                        bytes += b.len();
                        records.push(b.clone());
                    }
                    FetchPartitionResponse {
                        partition: p.partition,
                        error: ErrorCode::None,
                        high_watermark: hw,
                        log_start_offset: 0,
                        records,
                    }
                })
                .collect(),
            name: t.name,
        })
        .collect();
    Response::Fetch { topics: out }
}
