//! Encoding of the producer APIs beyond Produce (ApiKey 18 on); the mirror
//! of `decode/producer.rs`. A `None` transactional id is left out, `Some`
//! is written even when empty, so the two stay apart.
use super::{fb, Body, Fbb};

pub(super) fn init_producer_id_request(
    fbb: &mut Fbb<'_>,
    transactional_id: Option<&str>,
    transaction_timeout_ms: i32,
    producer_id: i64,
    producer_epoch: i16,
) -> (fb::RequestBody, Body) {
    let transactional_id = transactional_id.map(|t| fbb.create_string(t));
    let args = fb::InitProducerIdRequestArgs {
        transactional_id,
        transaction_timeout_ms,
        producer_id,
        producer_epoch,
    };
    let b = fb::InitProducerIdRequest::create(fbb, &args);
    (fb::RequestBody::InitProducerIdRequest, b.as_union_value())
}

pub(super) fn init_producer_id_response(
    fbb: &mut Fbb<'_>,
    error: crate::api::ErrorCode,
    producer_id: i64,
    producer_epoch: i16,
) -> (fb::ResponseBody, Body) {
    let args = fb::InitProducerIdResponseArgs {
        error: error.code(),
        producer_id,
        producer_epoch,
    };
    let b = fb::InitProducerIdResponse::create(fbb, &args);
    (fb::ResponseBody::InitProducerIdResponse, b.as_union_value())
}
