//! Producer APIs beyond Produce: InitProducerId, which idempotent producers
//! send before their first batch (librdkafka with enable.idempotence,
//! kafka-python >= 2.1, the Java client >= 3.0 by default).
//!
//! The request maps field for field onto the neutral one; the broker
//! decides (a fresh id for non-transactional producers, a refusal for
//! transactional ones). Versions 0 to 5 are served: the producer id and
//! epoch fields exist from v3 on and read as -1 before; v6 adds
//! ongoing-transaction fields and 2PC, which need transactions.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::api::{ErrorCode, Request};

pub(super) fn init_producer_id(req: InitProducerIdRequest) -> Request {
    Request::InitProducerId {
        transactional_id: req.transactional_id.map(|t| t.0.to_string()),
        transaction_timeout_ms: req.transaction_timeout_ms,
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
    }
}

/// The same fields at every served version.
pub(super) fn init_producer_id_response(
    error: ErrorCode,
    producer_id: i64,
    producer_epoch: i16,
) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
}
