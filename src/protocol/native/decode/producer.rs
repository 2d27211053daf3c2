//! Decoding of the producer APIs beyond Produce (ApiKey 18 on).
//!
//! InitProducerId's transactional id reads as `None` when absent and `Some`
//! (possibly "") when present: absence is what makes a producer
//! non-transactional. Absent id and epoch read as -1 (none).
use super::{error_code, fb, Result, MISSING_BODY};
use crate::api::{Request, Response};

pub(super) fn init_producer_id_request(root: &fb::RequestFrame<'_>) -> Result<Request> {
    let b = root.body_as_init_producer_id_request().ok_or(MISSING_BODY)?;
    Ok(Request::InitProducerId {
        transactional_id: b.transactional_id().map(str::to_owned),
        transaction_timeout_ms: b.transaction_timeout_ms(),
        producer_id: b.producer_id(),
        producer_epoch: b.producer_epoch(),
    })
}

pub(super) fn init_producer_id_response(root: &fb::ResponseFrame<'_>) -> Result<Response> {
    let b = root.body_as_init_producer_id_response().ok_or(MISSING_BODY)?;
    Ok(Response::InitProducerId {
        error: error_code(b.error()),
        producer_id: b.producer_id(),
        producer_epoch: b.producer_epoch(),
    })
}
